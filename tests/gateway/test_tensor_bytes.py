"""gateway.tensor_bytes against tritonclient's own encoders (an independent implementation of the same wire format),
and every way raw bytes can lie about a tensor."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.utils import deserialize_bytes_tensor, np_to_triton_dtype, serialize_byte_tensor

from gateway.codec import DTYPE_NAME_BY_V2
from gateway.errors import InvalidInput
from gateway.tensor_bytes import array_from_raw, raw_from_array

FIXED = sorted(v2 for v2 in DTYPE_NAME_BY_V2 if v2 != "BYTES")


def triton_raw(array: np.ndarray) -> bytes:
    """What tritonclient's InferInput.set_data_from_numpy(binary_data=True) sends for `array`."""
    if array.dtype == np.object_:
        serialized = serialize_byte_tensor(array)
        return serialized.item() if serialized.size else b""
    return array.tobytes()


def sample(datatype: str) -> np.ndarray:
    dtype = np.dtype(DTYPE_NAME_BY_V2[datatype])
    if dtype.kind == "b":
        return np.array([[True, False, True], [False, False, True]])
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    return np.array([[info.min, 0, 1], [2, info.max, info.max // 2 if dtype.kind != "f" else -0.5]], dtype=dtype)


@pytest.mark.parametrize("datatype", FIXED)
def test_fixed_datatypes_read_what_tritonclient_writes_and_write_it_back(datatype: str):
    array = sample(datatype)
    assert np_to_triton_dtype(array.dtype) == datatype
    decoded = array_from_raw("x", datatype, [2, 3], triton_raw(array))
    assert decoded.dtype == array.dtype and decoded.shape == (2, 3)
    np.testing.assert_array_equal(decoded, array)
    assert raw_from_array(array) == (datatype, triton_raw(array))


def test_a_tensor_at_an_odd_offset_of_the_body_is_read_correctly():
    array = np.arange(6, dtype=np.float64).reshape(2, 3)
    body = memoryview(b"\x00" + array.tobytes())
    decoded = array_from_raw("x", "FP64", [2, 3], body[1:])
    np.testing.assert_array_equal(decoded, array)
    assert decoded.flags.aligned


def test_bytes_are_length_prefixed_and_decoded_as_utf8_text():
    texts = np.array([["a", "bé", ""], ["日本", "z" * 300, " "]], dtype=object)
    decoded = array_from_raw("t", "BYTES", [2, 3], triton_raw(texts))
    assert decoded.dtype == np.object_ and decoded.shape == (2, 3)
    assert decoded.tolist() == texts.tolist()
    datatype, raw = raw_from_array(texts)
    assert datatype == "BYTES" and raw == triton_raw(texts)
    assert deserialize_bytes_tensor(raw).tolist() == [t.encode() for t in texts.ravel()]
    as_bytes = np.array([b"\xff\x00", b"x"], dtype=object)  # bytes outputs go out as they are, not as their repr
    assert raw_from_array(as_bytes) == ("BYTES", triton_raw(as_bytes))


def test_empty_tensors():
    assert array_from_raw("x", "FP32", [0, 4], b"").shape == (0, 4)
    assert array_from_raw("t", "BYTES", [2, 0], b"").shape == (2, 0)
    assert raw_from_array(np.zeros((0, 3), dtype=np.int32)) == ("INT32", b"")


@given(hnp.arrays(st.sampled_from([np.dtype(DTYPE_NAME_BY_V2[d]) for d in FIXED]),
                  hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
                  elements={"allow_nan": False, "allow_infinity": False}))
def test_round_trip(array: np.ndarray):
    datatype, raw = raw_from_array(array)
    np.testing.assert_array_equal(array_from_raw("x", datatype, list(array.shape), raw), array)


@given(st.lists(st.text(max_size=20), max_size=12))
def test_round_trip_text(texts: list[str]):
    array = np.array(texts + [""], dtype=object)  # the extra "" keeps numpy from making a 2-D array of chars
    datatype, raw = raw_from_array(array)
    assert array_from_raw("t", datatype, [len(array)], raw).tolist() == array.tolist()


def prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


@pytest.mark.parametrize(("datatype", "shape", "raw", "words"), [
    ("FP32", [2, 2], bytes(12), ["takes 16 bytes, got 12"]),
    ("FP32", [2, 2], bytes(20), ["takes 16 bytes, got 20"]),
    ("INT64", [2, -1], bytes(16), ["negative"]),
    ("INT64", [2**62, 2**62], bytes(16), ["takes", "got 16"]),  # the product overflows int64: never trusted
    ("INT8", [0, 2**64], b"", ["numpy's limits"]),
    ("FP32", [2, 2.0], bytes(16), ["list of integers"]),
    ("FP32", [2, True], bytes(8), ["list of integers"]),
    ("FP32", "2,2", bytes(16), ["list of integers"]),
    ("FP8", [2], bytes(2), ["'FP8'", "datatype"]),
    (None, [2], bytes(2), ["None", "datatype"]),
    ("BOOL", [3], b"\x00\x01\x02", ["0 or 1"]),
    ("FP32", [2], np.array([1.0, np.nan], np.float32).tobytes(), ["NaN"]),
    ("FP16", [2], np.array([np.inf, 1], np.float16).tobytes(), ["infinite"]),
    ("BYTES", [2], prefixed(b"ab"), ["2 BYTES elements need at least 8 bytes"]),
    ("BYTES", [2], prefixed(b"ab") + b"\x05\x00", ["element 1's length prefix runs past the end"]),
    ("BYTES", [2], prefixed(b"ab") + struct.pack("<I", 9) + b"xyz", ["element 1 of 9 bytes runs past the end"]),
    ("BYTES", [1], struct.pack("<I", 2**32 - 1) + b"x", ["element 0 of 4294967295 bytes"]),
    ("BYTES", [1], prefixed(b"ab") + b"!", ["1 bytes after its 1 BYTES elements"]),
    ("BYTES", [1], prefixed(b"\xff\xfe"), ["element 0 is not UTF-8"]),
    ("BYTES", [2**40], bytes(64), ["need at least"]),
])
def test_bytes_that_do_not_fit_are_refused_naming_the_input(datatype: object, shape: object, raw: bytes,
                                                            words: list[str]):
    with pytest.raises(InvalidInput) as caught:
        array_from_raw("feature", datatype, shape, raw)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith("input 'feature': ")
    for word in words:
        assert word in message
