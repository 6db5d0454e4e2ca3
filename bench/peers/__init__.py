"""The peer servers (each run in its own venv, see bench/peer_targets.py) and the code they share."""
