"""The Open Inference Protocol's binary tensor data extension over HTTP: the framing of a request body (a JSON header of
Inference-Header-Content-Length bytes, then each binary input's `binary_data_size` raw bytes, in the order of the
inputs) and of an answer with binary outputs. The raw bytes of one tensor are gateway.tensor_bytes' business.

Every size is checked against the body here, before any input is read: a body is refused (400, naming the input)
unless its binary inputs' sizes add up to exactly what follows the header.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import orjson

from gateway.codec import flat_data, v2_datatype
from gateway.errors import InvalidInput, shown
from gateway.tensor_bytes import raw_from_array
from gateway.v2 import parameters_of

EXTENSION = "binary_tensor_data"  # as Triton names it in its server metadata
HEADER_LENGTH = "Inference-Header-Content-Length"
_MAX_LENGTH_DIGITS = 19  # more digits than any body the gateway accepts (and int() of a huge string is slow)


class BinaryRequest:
    """A request body split at its header: the header parsed, each binary input's bytes (views of the body)."""

    __slots__ = ("payload", "raw", "header")

    def __init__(self, payload: object, raw: dict[str, memoryview], header: bytes) -> None:
        self.payload = payload
        self.raw = raw
        self.header = header


def split_body(body: bytes, header_length: bytes) -> BinaryRequest:
    """`body` as the header `Inference-Header-Content-Length: header_length` says it is framed."""
    length = _header_length(header_length, len(body))
    header = body[:length]
    try:
        payload = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the inference header (the body's first {length} bytes, as {HEADER_LENGTH} says) is not "
                           f"valid JSON: {exc}") from None
    view = memoryview(body)
    raw: dict[str, memoryview] = {}
    offset = length
    for name, size in _binary_sizes(payload):
        if size > len(body) - offset:
            raise InvalidInput(f"input {name!r}: binary_data_size {size} is past the end of the body (its binary "
                               f"data has {len(body) - offset} bytes left)")
        raw[name] = view[offset:offset + size]
        offset += size
    if offset != len(body):
        raise InvalidInput(f"{len(body) - offset} bytes after the inputs' binary data: the binary_data_size of the "
                           f"inputs add up to {offset - length} bytes, the body has {len(body) - length} after its "
                           f"inference header")
    return BinaryRequest(payload, raw, header)


def _header_length(value: bytes, body_size: int) -> int:
    if not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
        raise InvalidInput(f"header {HEADER_LENGTH} must be a non-negative integer no larger than the body, got "
                           f"{shown(value.decode('latin-1'))}")
    length = int(value)
    if length > body_size:
        raise InvalidInput(f"header {HEADER_LENGTH} is {length}, past the end of the {body_size}-byte body")
    return length


def _binary_sizes(payload: object) -> Iterable[tuple[str, int]]:
    """(name, binary_data_size) of each input that has one, in order. Inputs too malformed to tell (not objects, no
    string name, parameters not an object) are left to the request's decoding, which names what is wrong. An input
    named twice is refused: which of the two a tensor's bytes belong to would be a guess."""
    inputs = payload.get("inputs") if type(payload) is dict else None
    if type(inputs) is not list:
        return
    names: set[str] = set()
    for item in inputs:
        if type(item) is not dict or type(item.get("name")) is not str:
            continue
        name = item["name"]
        if name in names:
            raise InvalidInput(f"input {name!r} is sent more than once")
        names.add(name)
        if type(item.get("parameters")) is not dict:
            continue
        size = item["parameters"].get("binary_data_size")
        if size is None:
            continue
        if type(size) is not int or size < 0:
            raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
        if "data" in item:
            raise InvalidInput(f"input {name!r}: has both \"data\" and binary_data_size; send one")
        yield name, size


def binary_output_names(body: dict, names: Iterable[str]) -> set[str]:
    """The outputs to answer as binary tensor data: those whose parameters say `binary_data: true`, and, when the
    request's parameters say `binary_data_output: true`, every other output whose own parameters do not say false.
    (The types of both were checked when the request was decoded.)"""
    default = parameters_of(body, "the request").get("binary_data_output", False)
    outputs = body.get("outputs")
    if not outputs:
        return set(names) if default else set()
    chosen = {output["name"]: parameters_of(output, "output").get("binary_data", default) for output in outputs}
    return {name for name in names if chosen.get(name, default)}


def encode_outputs(outputs: dict[str, np.ndarray], binary: set[str]) -> tuple[list[dict], list[bytes]]:
    """The outputs' JSON entries, those in `binary` announced by their `binary_data_size`, and their raw bytes in
    order."""
    entries, tensors = [], []
    for name, value in outputs.items():
        if name in binary:
            datatype, raw = raw_from_array(value)
            entries.append({"name": name, "shape": list(value.shape), "datatype": datatype,
                            "parameters": {"binary_data_size": len(raw)}})
            tensors.append(raw)
        else:
            entries.append({"name": name, "shape": list(value.shape), "datatype": v2_datatype(value.dtype),
                            "data": flat_data(value)})
    return entries, tensors
