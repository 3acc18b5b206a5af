"""isicstack.stacking."""
