"""Training code that produces the example models (nothing is downloaded)."""
