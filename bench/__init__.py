"""Benchmarks: the gateway against a bare onnxruntime floor and MLServer. Run `python -m bench.run` from the repo root."""
