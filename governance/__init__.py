"""Governance: measuring a version on held-out data (and, later, gates on deployment changes). Not the serving path:
it may use scikit-learn and scipy (the `govern` extra), never the gateway or the exporters."""
