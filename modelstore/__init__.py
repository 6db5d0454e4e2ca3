"""The onnxgate store format: the contract shared by exporters, the CLI, the gateway and the Node loader.

Imports only the standard library, pydantic and numpy (cryptography lazily, for optional signing).
"""
from __future__ import annotations

from modelstore.errors import StoreError
from modelstore.layout import Store, resolve_store_root
from modelstore.metadata import ModelMetadata, TensorSpec

__all__ = ["ModelMetadata", "Store", "StoreError", "TensorSpec", "resolve_store_root"]
