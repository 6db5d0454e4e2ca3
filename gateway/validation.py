"""Turning request values into the arrays a model takes: dtype, rank, fixed axes, finite floats, batch size.

Rules: integer inputs take only JSON integers (a float is refused rather than truncated); float and integer inputs
take numbers only (no strings, no booleans, not even one `true` among numbers, which numpy would read as 1); NaN and
+-Inf are refused in float inputs (JSON cannot spell them, so they only arise from overflow such as 1e39 in a float32
input, which is a client bug worth reporting); an empty batch is refused; more rows than max_batch_rows is 413.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import orjson

from gateway.codec import numpy_dtype
from gateway.errors import BatchTooLarge, InvalidInput
from modelstore.metadata import TensorSpec

# A float overflowing its dtype in the cast below becomes inf and is refused with a clear error; numpy's warning about
# it would only add noise to the logs. Filtered once here: a per-request np.errstate costs more than the cast.
warnings.filterwarnings("ignore", message="overflow encountered in cast", category=RuntimeWarning,
                        module=__name__)



def _overflow_raising_state() -> tuple[object, object] | None:
    """numpy >= 2 keeps its floating-point error state in a context variable: with its value for "raise on overflow"
    made once, a cast sets and resets it directly, ~0.8 µs a request less than building and entering an np.errstate.
    None (use np.errstate) where that private variable is not there."""
    try:
        from numpy._core._ufunc_config import _extobj_contextvar
    except ImportError:
        return None
    with np.errstate(over="raise"):
        return _extobj_contextvar, _extobj_contextvar.get()


_OVERFLOW_RAISING = _overflow_raising_state()


def as_dtype_raising_on_overflow(values: object, dtype: np.dtype) -> np.ndarray:
    """np.asarray(values, dtype) (for an array: its astype, copying only to change the dtype), raising
    FloatingPointError where a value overflows the dtype."""
    if _OVERFLOW_RAISING is None:
        with np.errstate(over="raise"):
            return np.asarray(values, dtype=dtype)
    variable, raising = _OVERFLOW_RAISING
    token = variable.set(raising)
    try:
        return np.asarray(values, dtype=dtype)
    finally:
        variable.reset(token)


ACCEPTED_KINDS = {"f": "fiu", "i": "iuO", "u": "iuO", "b": "b", "O": "U"}  # "O" for ints only: see _big_integers
KIND_NAMES = {"f": "numbers", "i": "integers", "u": "non-negative integers", "b": "booleans", "O": "strings"}


class Decoded(NamedTuple):
    """A request body turned into onnxruntime feeds. `units` is its size as the rollout judge divides latency by (0:
    its rows; text: see gateway.requests.text_units)."""

    feeds: dict[str, np.ndarray]
    rows: int
    output_names: list[str] | None = None
    request_id: object = None
    units: int = 0


def parse_json(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    rank: int
    fixed_axes: tuple[tuple[int, int], ...]
    described: str
    row_shape: tuple[int, ...] | None = None
    """Every axis but the first, when the first is the free batch axis and all the others are fixed; else None."""

    @classmethod
    def from_tensor_spec(cls, spec: TensorSpec) -> InputSpec:
        fixed = tuple((axis, size) for axis, size in enumerate(spec.shape) if isinstance(size, int) and size >= 0)
        rank = len(spec.shape)
        free_batch_only = rank >= 1 and [axis for axis, _ in fixed] == list(range(1, rank))
        row_shape = tuple(size for _, size in fixed) if free_batch_only else None
        return cls(spec.name, numpy_dtype(spec.dtype), rank, fixed, spec.describe(), row_shape)


def raw_array(spec: InputSpec, value: object) -> np.ndarray:
    """Request values as numpy reads them, before any conversion to the spec's dtype."""
    if isinstance(value, np.ndarray):
        return value
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError):
        raise InvalidInput(f"input {spec.name!r}: not a rectangular array") from None
    if spec.dtype.kind in "iu" and raw.dtype.kind == "f":
        raw = _big_integers(value, raw)
    return raw


def coerce(spec: InputSpec, value: object, signature: str, max_rows: int, numbers: bool = False) -> np.ndarray:
    """A request value (nested lists or an array) -> a checked array of the spec's dtype. `numbers`: the value is
    known to hold JSON numbers only (gateway.endpoints.plain_predict_body), so it converts to a float dtype at once,
    without first being read as numpy sees it."""
    dtype = spec.dtype
    kind = dtype.kind
    if kind == "f" and (type(value) is list or type(value) is np.ndarray):
        # the common case, inlined (raw_array's checks for a list and a float input)
        try:
            raw = value if numbers else np.asarray(value)
            if numbers or raw.dtype.kind in "fiu":
                # JSON numbers are finite (orjson refuses NaN, Infinity and literals past a double), so only a
                # narrowing conversion can make them infinite, and numpy reports that itself: no scan of the values,
                # whose reduction (np.isfinite(...).all()) cost ~10% of a small model's request over HTTP
                # (bench/README.md)
                array = as_dtype_raising_on_overflow(raw, dtype)
                check_shape(spec, array, signature, max_rows)
                return array
        except (ValueError, TypeError):
            raise InvalidInput(f"input {spec.name!r}: not a rectangular array; expected {signature}") from None
        except ArithmeticError:  # FloatingPointError from the cast; OverflowError for an integer past a double
            raise InvalidInput(f"input {spec.name!r}: values overflow {dtype.name} (they would be infinite); "
                               f"expected {signature}") from None
    else:
        try:
            raw = raw_array(spec, value)
        except InvalidInput as exc:
            raise InvalidInput(f"{exc}; expected {signature}") from None
    if raw.size and raw.dtype.kind not in ACCEPTED_KINDS[kind]:
        raise InvalidInput(f"input {spec.name!r}: expected {KIND_NAMES[kind]} ({spec.dtype.name if kind != 'O' else 'string'}),"
                           f" got {_kind_of(raw)}; expected {signature}")
    try:
        array = raw.astype(spec.dtype, copy=False)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"input {spec.name!r}: values do not fit {spec.dtype.name}; expected {signature}") from None
    if kind in "iu" and raw.dtype.kind in "iuO" and raw.size and not np.array_equal(array, raw):
        raise InvalidInput(f"input {spec.name!r}: values out of range for {spec.dtype.name}; expected {signature}")
    check_shape(spec, array, signature, max_rows)
    if kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(f"input {spec.name!r}: NaN or infinite values (or overflow of {spec.dtype.name}); "
                           f"expected {signature}")
    return array


def refuse_booleans(spec: InputSpec, value: object, signature: str) -> None:
    """JSON booleans in a numeric input: refused, where np.asarray would quietly read `true` beside numbers as 1."""
    if spec.dtype.kind in "fiu" and _holds_boolean(value):
        raise InvalidInput(f"input {spec.name!r}: expected {KIND_NAMES[spec.dtype.kind]} ({spec.dtype.name}), got "
                           f"booleans; expected {signature}")


def _holds_boolean(value: object) -> bool:
    if type(value) is list:
        return any(_holds_boolean(item) for item in value)
    return type(value) is bool


def _big_integers(value: object, raw: np.ndarray) -> np.ndarray:
    """numpy reads a list holding an integer above the int64 range as floats; keep such lists as exact integers
    (object dtype, converted and range-checked by astype) so uint64 inputs can use their whole range."""
    exact = np.asarray(value, dtype=object)
    if all(isinstance(item, int) and not isinstance(item, bool) for item in exact.ravel()):
        return exact
    return raw


def check_shape(spec: InputSpec, array: np.ndarray, signature: str, max_rows: int) -> None:
    shape = array.shape  # a new tuple at each read of the attribute: read once
    if shape and shape[1:] == spec.row_shape and 0 < shape[0] <= max_rows:  # the usual input, in one comparison
        return
    rows = shape[0] if shape else None
    if rows == 0:
        raise InvalidInput(f"input {spec.name!r}: empty batch; expected {signature}")
    if len(shape) != spec.rank:
        raise InvalidInput(f"input {spec.name!r}: got shape {list(shape)}, expected {spec.rank} axes "
                           f"({spec.described}); expected {signature}")
    for axis, size in spec.fixed_axes:
        if shape[axis] != size:
            raise InvalidInput(f"input {spec.name!r}: got shape {list(shape)}, axis {axis} must be {size} "
                               f"({spec.described}); expected {signature}")
    if rows is not None and rows > max_rows:
        raise BatchTooLarge(f"input {spec.name!r}: {rows} rows is over the limit of {max_rows} per request")


def _kind_of(array: np.ndarray) -> str:
    return {"f": "floats", "i": "integers", "u": "integers", "b": "booleans", "U": "strings",
            "O": "mixed or nested values"}.get(array.dtype.kind, array.dtype.name)


def check_names(inputs: dict, specs: dict, signature: str) -> None:
    missing = [name for name in specs if name not in inputs]
    if missing:
        raise InvalidInput(f"missing input(s) {missing}; expected {signature}")
    extra = [name for name in inputs if name not in specs]
    if extra:
        raise InvalidInput(f"unknown input(s) {extra}; expected {signature}")


def rows_of(feeds: dict[str, np.ndarray]) -> int:
    for array in feeds.values():
        return array.shape[0] if array.ndim else 1
    return 1
