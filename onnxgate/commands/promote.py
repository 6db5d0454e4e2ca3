"""`onnxgate promote`: not written yet (placeholder so the CLI imports while the command is built)."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("promote", help="(not available yet)")
    parser.set_defaults(run=lambda args: print("not available yet") or 1)
