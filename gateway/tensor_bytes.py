"""Raw tensor bytes <-> numpy arrays, as the Open Inference Protocol's binary forms lay them out: the HTTP binary tensor
data extension and gRPC's raw_input_contents / raw_output_contents.

Fixed-size elements are little-endian, in row-major order; BOOL is one byte (0 or 1); BYTES is each element as a
4-byte little-endian length followed by its bytes. Nothing here trusts a size it is given: the bytes must be exactly
what the datatype and shape take, checked before numpy reads any of them.
"""
from __future__ import annotations

import math
import struct

import numpy as np

from gateway.codec import DTYPE_NAME_BY_V2, v2_datatype
from gateway.errors import InvalidInput

LENGTH_PREFIX = struct.Struct("<I")

_WIRE_DTYPES = {v2: np.dtype(name).newbyteorder("<") for v2, name in DTYPE_NAME_BY_V2.items() if v2 != "BYTES"}


def array_from_raw(name: str, datatype: str, shape: list[int], raw: bytes | memoryview) -> np.ndarray:
    """The tensor `name` of `datatype` and `shape` read from exactly `raw`; InvalidInput (naming the input) for an
    unknown datatype, a shape that is not non-negative integers, bytes that are not what the shape takes, BOOL bytes
    other than 0 and 1, NaN or infinite floats, or BYTES elements that overrun, fall short, or are not UTF-8.
    BYTES gives an object array of str, as the JSON path and onnxruntime's string inputs take them."""
    if type(shape) is not list or not all(type(size) is int for size in shape):
        raise InvalidInput(f"input {name!r}: \"shape\" must be a list of integers")
    if any(size < 0 for size in shape):
        raise InvalidInput(f"input {name!r}: shape {shape} has a negative size")
    count = math.prod(shape)
    if datatype == "BYTES":
        flat = _strings(name, count, raw)
    else:
        wire = _WIRE_DTYPES.get(datatype) if type(datatype) is str else None
        if wire is None:
            raise InvalidInput(f"input {name!r}: datatype {datatype!r} is not an Open Inference Protocol datatype")
        flat = _fixed(name, datatype, wire, count, shape, raw)
    try:
        return flat.reshape(shape)
    except ValueError:  # numpy refuses axes past its limits (over 2**63, too many axes) even when they hold no values
        raise InvalidInput(f"input {name!r}: shape {shape} is over numpy's limits") from None


def _fixed(name: str, datatype: str, wire: np.dtype, count: int, shape: list[int],
           raw: bytes | memoryview) -> np.ndarray:
    expected = count * wire.itemsize
    if expected != len(raw):
        raise InvalidInput(f"input {name!r}: shape {shape} of {datatype} takes {expected} bytes, got {len(raw)}")
    array = np.frombuffer(raw, dtype=wire)
    if not wire.isnative:  # a big-endian host
        array = array.astype(wire.newbyteorder("="))
    elif not array.flags.aligned:  # a tensor at an odd offset in the body
        array = array.copy()
    kind = wire.kind
    if kind == "b":
        if array.view(np.uint8).max(initial=0) > 1:
            raise InvalidInput(f"input {name!r}: BOOL bytes must be 0 or 1")
    elif kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(f"input {name!r}: NaN or infinite values")
    return array


def _strings(name: str, count: int, raw: bytes | memoryview) -> np.ndarray:
    size = len(raw)
    if count * LENGTH_PREFIX.size > size:
        raise InvalidInput(f"input {name!r}: {count} BYTES elements need at least {count * LENGTH_PREFIX.size} bytes "
                           f"of length prefixes, got {size}")
    values = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + LENGTH_PREFIX.size > size:
            raise InvalidInput(f"input {name!r}: BYTES element {index}'s length prefix runs past the end of its "
                               f"{size} bytes")
        (length,) = LENGTH_PREFIX.unpack_from(raw, offset)
        offset += LENGTH_PREFIX.size
        end = offset + length
        if end > size:
            raise InvalidInput(f"input {name!r}: BYTES element {index} of {length} bytes runs past the end of its "
                               f"{size} bytes")
        try:
            values[index] = bytes(raw[offset:end]).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"input {name!r}: BYTES element {index} is not UTF-8 text") from None
        offset = end
    if offset != size:
        raise InvalidInput(f"input {name!r}: {size - offset} bytes after its {count} BYTES elements")
    return values


def raw_from_array(array: np.ndarray) -> tuple[str, bytes]:
    """(v2 datatype, raw bytes) of an array: fixed-size elements little-endian in row-major order, BOOL one byte each,
    strings (str as UTF-8, or bytes) length-prefixed."""
    datatype = v2_datatype(array.dtype)
    if datatype == "BYTES":
        return datatype, _length_prefixed(array)
    wire = array.dtype.newbyteorder("<")
    return datatype, np.ascontiguousarray(array, dtype=wire).tobytes()


def _length_prefixed(array: np.ndarray) -> bytes:
    parts: list[bytes] = []
    pack = LENGTH_PREFIX.pack
    for item in array.ravel().tolist():
        encoded = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(pack(len(encoded)))
        parts.append(encoded)
    return b"".join(parts)
