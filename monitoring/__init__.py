"""Watching deployed models: input and prediction drift against a version's reference statistics, captured
requests, labelled feedback and live quality. Used by the gateway (online) and the CLI (offline) alike, so that both
compute the same figures with the same code. Lean like the gateway: numpy, no scikit-learn or scipy."""
