"""Builds the store the Node loader is tested against: tiny real models, their Python onnxruntime answers, and the
tokenizer and routing vectors, so both runtimes are held to the same numbers.

Run as `python -m tests.node_fixtures OUTDIR`; writes OUTDIR/store, OUTDIR/packages and OUTDIR/vectors.json.
"""
from __future__ import annotations

from tests.node_fixtures.build import build_fixtures

__all__ = ["build_fixtures"]
