"""isicstack.vision."""
