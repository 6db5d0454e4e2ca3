"""Open Inference Protocol (KServe v2) bodies: decoding infer inputs, encoding outputs and model metadata.

Tensors come as JSON `data`, or as raw bytes split off the body by gateway.v2_binary (the binary tensor data
extension), read here by gateway.tensor_bytes.
"""
from __future__ import annotations

import math

import numpy as np

from gateway.codec import V2_BY_DTYPE_NAME, flat_data, v2_datatype, v2_shape
from gateway.errors import InvalidInput, shown
from gateway.loader import LoadedModel
from gateway.request_ids import checked_request_id
from gateway.tensor_bytes import array_from_raw
from gateway.validation import Decoded, InputSpec, check_names, check_shape, coerce, raw_array, refuse_booleans, rows_of
from modelstore.metadata import TensorSpec


def model_metadata(name: str, versions: list[str], loaded: LoadedModel) -> dict:
    return {
        "name": name,
        "versions": versions,
        "platform": "onnxruntime",
        "inputs": [_tensor_metadata(spec) for spec in loaded.metadata.inputs],
        "outputs": [_tensor_metadata(spec) for spec in loaded.metadata.outputs],
    }


def _tensor_metadata(spec: TensorSpec) -> dict:
    return {"name": spec.name, "datatype": V2_BY_DTYPE_NAME.get(spec.dtype, "BYTES"), "shape": v2_shape(spec.shape)}


def decode_request(body: object, loaded: LoadedModel, max_rows: int, booleans: bool = True,
                   raw: dict[str, memoryview] | None = None) -> Decoded:
    """`booleans`: whether the body may hold JSON booleans (see gateway.requests); `raw`: the binary inputs' bytes,
    by input name (gateway.v2_binary), None for a JSON body."""
    inputs, output_names, request_id = request_fields(body)
    if output_names is not None:
        unknown = [n for n in output_names if n not in loaded.output_names]
        if unknown:
            raise InvalidInput(f"unknown output(s) {unknown}; expected {loaded.signature}")
    feeds, rows = decode_inputs(inputs, loaded, max_rows, booleans, raw)
    return Decoded(feeds, rows, output_names, request_id)


def request_fields(body: object) -> tuple[list, list[str] | None, object]:
    """(inputs, requested output names or None, id) from an infer request body. Every field the protocol defines is
    checked for its JSON type: `parameters` (of the request, an input or an output) is an object or absent (null is
    taken as absent), `id` a string, `binary_data_output` (request) and `binary_data` (output) booleans."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise InvalidInput('infer request must be a JSON object with an "inputs" list')
    if body.get("parameters") is not None:
        _check_flag(parameters_of(body, "the request"), "binary_data_output", "the request")
    request_id = body.get("id")
    if request_id is not None:
        checked_request_id(request_id, '"id"')
    outputs = body.get("outputs")
    names = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                    for o in outputs):
            raise InvalidInput('"outputs" must be a list of {"name": ...} objects')
        names = [o["name"] for o in outputs]
        for output in outputs:
            _check_flag(parameters_of(output, "output", output["name"]), "binary_data", "output", output["name"])
    return body["inputs"], names, request_id


def _check_flag(parameters: dict, flag_name: str, kind: str, name: str | None = None) -> None:
    flag = parameters.get(flag_name)
    if flag is not None and type(flag) is not bool:
        owner = kind if name is None else f"{kind} {shown(name)}"
        raise InvalidInput(f"parameter {flag_name} of {owner} must be true or false, got {shown(repr(flag))}")


_NO_PARAMETERS: dict = {}


def parameters_of(item: dict, kind: str, name: str | None = None) -> dict:
    """`item["parameters"]`: an object, or {} when absent or null; anything else is refused (400)."""
    parameters = item.get("parameters")
    if parameters is None:
        return _NO_PARAMETERS
    if type(parameters) is not dict:
        owner = kind if name is None else f"{kind} {shown(name)}"
        raise InvalidInput(f'"parameters" of {owner} must be a JSON object, got {type(parameters).__name__}')
    return parameters


def decode_inputs(inputs: list, loaded: LoadedModel, max_rows: int, booleans: bool = True,
                  raw: dict[str, memoryview] | None = None) -> tuple[dict[str, np.ndarray], int]:
    tensors: dict[str, dict] = {}
    for item in inputs:
        if type(item) is not dict or type(item.get("name")) is not str:
            raise InvalidInput(f'each input needs "name", "shape", "datatype" and "data"; expected {loaded.signature}')
        tensors[item["name"]] = item
    specs = loaded.inputs
    if tensors.keys() != specs.keys():
        check_names(tensors, specs, loaded.signature)
    feeds = {}
    for name, spec in specs.items():
        item = tensors[name]
        shape, datatype, data = item.get("shape"), item.get("datatype"), item.get("data")
        binary = raw.get(name) if raw else None
        if binary is not None:
            feeds[name] = _binary_input(spec, binary, datatype, shape, loaded, max_rows)
            continue
        if parameters_of(item, "input", name).get("binary_data_size") is not None:
            raise InvalidInput(f"input {name!r}: binary_data_size needs the Inference-Header-Content-Length header "
                               "(the binary tensor data extension)")
        if not _is_shape(shape):
            raise InvalidInput(f"input {name!r}: \"shape\" must be a list of non-negative integers")
        expected = _expected_datatype(spec.dtype)
        if datatype != expected:
            raise InvalidInput(f"input {name!r}: datatype {datatype!r}, expected {expected}; expected {loaded.signature}")
        if data is None:
            raise InvalidInput(f"input {name!r}: \"data\" is missing")
        if booleans:
            refuse_booleans(spec, data, loaded.signature)
        feeds[name] = coerce(spec, _as_array(spec, data, datatype, shape), loaded.signature, max_rows)
    return feeds, rows_of(feeds)


def _binary_input(spec: InputSpec, binary: memoryview, datatype: object, shape: object, loaded: LoadedModel,
                  max_rows: int) -> np.ndarray:
    """A binary input: its declared datatype must be the model's, so its bytes read straight into the model's dtype."""
    expected = _expected_datatype(spec.dtype)
    if datatype != expected:
        raise InvalidInput(f"input {spec.name!r}: datatype {datatype!r}, expected {expected}; expected {loaded.signature}")
    array = array_from_raw(spec.name, datatype, shape, binary)  # type: ignore[arg-type]
    check_shape(spec, array, loaded.signature, max_rows)
    return array


def _is_shape(shape: object) -> bool:
    """A list of non-negative integers (JSON booleans are not integers here)."""
    return type(shape) is list and all(type(size) is int and size >= 0 for size in shape)


_EXPECTED_BY_DTYPE: dict[np.dtype, str | None] = {}


def _expected_datatype(dtype: np.dtype) -> str | None:
    """The v2 datatype an input of this dtype must declare (cached: numpy builds dtype.name on every access)."""
    try:
        return _EXPECTED_BY_DTYPE[dtype]
    except KeyError:
        expected = _EXPECTED_BY_DTYPE[dtype] = V2_BY_DTYPE_NAME.get(dtype.name if dtype.kind != "O" else "string")
        return expected


def _as_array(spec: InputSpec, data: object, datatype: str, shape: list[int]) -> np.ndarray:
    """Flat or nested `data` -> an array of `shape` (dtype checked later against the model's signature)."""
    name = spec.name
    if spec.dtype.kind == "f" and type(data) is list:  # the common case, without raw_array's integer handling
        try:
            array = np.asarray(data)
        except (ValueError, TypeError):
            raise InvalidInput(f"input {name!r}: not a rectangular array") from None
    else:
        array = raw_array(spec, data)
    if datatype == "BYTES" and array.dtype.kind == "S":
        array = np.char.decode(array, "utf-8")
    if array.size != math.prod(shape):
        raise InvalidInput(f"input {name!r}: {array.size} values do not fill shape {shape}")
    try:
        return array.reshape(shape)
    except ValueError:  # numpy refuses axes past its limits (over 2**63, over 32 axes) even when they hold no values
        raise InvalidInput(f"input {name!r}: shape {shape} is over numpy's limits") from None


def encode_outputs(outputs: dict[str, np.ndarray]) -> list[dict]:
    return [{"name": name, "shape": list(value.shape), "datatype": v2_datatype(value.dtype), "data": flat_data(value)}
            for name, value in outputs.items()]

