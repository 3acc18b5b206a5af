"""isicstack.features."""
