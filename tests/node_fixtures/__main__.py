"""Build the Node parity fixtures into OUTDIR, or regenerate tests/vectors/routing.json."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.node_fixtures.build import build_fixtures
from tests.node_fixtures.routing import ROUTING_VECTORS_PATH, write_routing_vectors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.node_fixtures", description=__doc__)
    parser.add_argument("outdir", type=Path, nargs="?", help="where to write store/, packages/ and vectors.json")
    parser.add_argument("--write-routing", action="store_true",
                        help=f"regenerate {ROUTING_VECTORS_PATH} (buckets computed with hashlib) and exit")
    args = parser.parse_args(argv)
    if args.write_routing:
        write_routing_vectors(ROUTING_VECTORS_PATH)
        print(ROUTING_VECTORS_PATH)
        return 0
    if args.outdir is None:
        parser.error("OUTDIR is required")
    vectors_path = build_fixtures(args.outdir)
    print(vectors_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
