"""The retraining loop: retrain.toml, triggers, jobs (train -> export -> challenge) and the watch loop."""
