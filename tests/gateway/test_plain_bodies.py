"""The decoding shortcuts of a plain /predict body: what counts as `{"inputs": <numbers>}` alone (converted in one
step, gateway.validation.coerce), and the input shapes accepted in one comparison (InputSpec.row_shape). Whatever a
shortcut does not take goes the general way, whose refusals tests/gateway/test_bad_input.py checks over HTTP."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gateway.endpoints import plain_predict_body
from gateway.errors import BatchTooLarge, InvalidInput
from gateway.validation import InputSpec, check_shape, coerce
from modelstore.metadata import TensorSpec


@pytest.mark.parametrize("body", [
    {"inputs": [[5.1, 3.5, 1.4, 0.2]]},
    {"inputs": [[1, -2, 3e-5, 4E+10]] * 3},
    {"inputs": []},
    {"inputs": 5},
])
def test_numbers_in_lists_under_inputs_alone_are_plain(body: dict):
    assert plain_predict_body(json.dumps(body).encode())
    assert plain_predict_body(json.dumps(body, separators=(",", ":")).encode())
    spaced = json.dumps(body, indent=2).encode()
    assert plain_predict_body(b'{"inputs"' + spaced.split(b'"inputs"', 1)[1])  # whitespace and newlines too
    assert not plain_predict_body(spaced)  # not starting with the key: the general way, just as right


@pytest.mark.parametrize("body", [
    {"inputs": [["1", "2"]]},
    {"inputs": [[True, 1.0]]},
    {"inputs": [[None, 1.0]]},
    {"inputs": {"X": [[1.0, 2.0]]}},
    {"inputs": [[1.0]], "id": 7},
    {"text": ["good"]},
    {"input": [[1.0]]},
])
def test_anything_else_is_not(body: dict):
    assert not plain_predict_body(json.dumps(body).encode())


def spec(*shape: int | None) -> InputSpec:
    return InputSpec.from_tensor_spec(TensorSpec(name="X", dtype="float32", shape=list(shape)))


def test_the_one_comparison_shape_is_kept_only_for_a_free_batch_axis_and_fixed_others():
    assert spec(None, 4).row_shape == (4,)
    assert spec(None, 3, 2).row_shape == (3, 2)
    assert spec(None).row_shape == ()
    assert spec(1, 4).row_shape is None  # a fixed batch axis: checked the general way
    assert spec(None, None).row_shape is None
    assert spec().row_shape is None  # a scalar input takes no row axis


@pytest.mark.parametrize(("shape", "array", "error"), [
    ((None, 4), np.zeros((2, 4), np.float32), None),
    ((None, 4), np.zeros((2, 3), np.float32), "axis 1 must be 4"),
    ((None, 4), np.zeros((0, 4), np.float32), "empty batch"),
    ((None, 4), np.zeros((9, 4), np.float32), "over the limit"),
    ((None,), np.zeros(3, np.float32), None),
    ((None,), np.zeros((3, 1), np.float32), "expected 1 axes"),
    ((), np.zeros(3, np.float32), "expected 0 axes"),
    ((), np.zeros((), np.float32), None),
])
def test_shapes_are_checked_the_same_with_or_without_the_shortcut(shape: tuple, array: np.ndarray, error: str | None):
    if error is None:
        check_shape(spec(*shape), array, "sig", max_rows=8)
        return
    with pytest.raises((InvalidInput, BatchTooLarge), match=error):
        check_shape(spec(*shape), array, "sig", max_rows=8)


@pytest.mark.parametrize("numbers", [True, False])
def test_plain_numbers_convert_to_the_same_array_and_refusals(numbers: bool):
    x = spec(None, 4)
    assert coerce(x, [[1, 2.5, 3, 4]], "sig", 8, numbers).tolist() == [[1.0, 2.5, 3.0, 4.0]]
    assert coerce(x, [[1, 2.5, 3, 4]], "sig", 8, numbers).dtype == np.float32
    with pytest.raises(InvalidInput, match="rectangular"):
        coerce(x, [[1, 2, 3, 4], [1, 2]], "sig", 8, numbers)
    with pytest.raises(InvalidInput, match="infinite"):
        coerce(x, [[1e39, 1, 2, 3]], "sig", 8, numbers)
    with pytest.raises(InvalidInput, match="infinite" if numbers else "mixed"):
        coerce(x, [[10 ** 40, 1, 2, 3]], "sig", 8, numbers)  # a Python int past float32 (orjson reads such as floats)
