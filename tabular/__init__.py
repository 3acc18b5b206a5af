"""isicstack.tabular."""
