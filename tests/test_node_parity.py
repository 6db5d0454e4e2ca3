"""The committed routing vectors (shared with the Node loader's tests) agree with the Python reference.

The Node suite itself runs with node's own runner from `make test` (`cd node && npm test`)."""
from __future__ import annotations

import json

from tests.node_fixtures.routing import ROUTING_VECTORS_PATH, routing_vectors


def test_committed_routing_vectors_match_hashlib() -> None:
    committed = json.loads(ROUTING_VECTORS_PATH.read_text(encoding="utf-8"))
    assert committed == routing_vectors()
