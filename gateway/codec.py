"""Tensor element types: metadata dtype names, numpy dtypes and Open Inference Protocol (v2) datatypes."""
from __future__ import annotations

import numpy as np

# metadata.json names dtypes as numpy does, except "string", which onnxruntime takes as an object array of str.
V2_BY_DTYPE_NAME = {
    "bool": "BOOL",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64",
    "string": "BYTES",
}
DTYPE_NAME_BY_V2 = {v2: name for name, v2 in V2_BY_DTYPE_NAME.items()}


def numpy_dtype(dtype_name: str) -> np.dtype:
    return np.dtype(object) if dtype_name == "string" else np.dtype(dtype_name)


_V2_BY_DTYPE: dict[np.dtype, str] = {}  # dtype.name is slow (numpy builds it per call): cached per dtype


def v2_datatype(dtype: np.dtype) -> str:
    datatype = _V2_BY_DTYPE.get(dtype)
    if datatype is None:
        if dtype.kind in "OUS":  # not cached: "<U7", "<U9", ... would each add a key
            return "BYTES"
        datatype = _V2_BY_DTYPE[dtype] = V2_BY_DTYPE_NAME[dtype.name]
    return datatype


def v2_shape(shape: list[int | str | None]) -> list[int]:
    """Symbolic or unknown axes become -1, as the protocol spells a dynamic dimension."""
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


def flat_data(array: np.ndarray) -> list:
    flat = array if array.ndim == 1 else array.ravel()
    if flat.dtype.kind == "S":
        return [item.decode("utf-8", "replace") for item in flat]
    return flat.tolist()
