"""Open Inference Protocol (KServe v2) gRPC messages: a ModelInferRequest as a request for the service, and an answer
as a ModelInferResponse. The messages are tritonclient's generated ones (onnxgate[grpc]).

Inputs come either all as `raw_input_contents` (one bytes entry per input, in order: what tritonclient.grpc sends)
or each in its typed `contents` field (`fp32_contents`, `int64_contents`, ...; FP16 has none and travels raw only).
Either way they pass the same checks as JSON inputs (gateway.validation.coerce): dtype, rank, fixed axes, batch size.
Outputs always go back as `raw_output_contents`, which is what tritonclient.grpc reads.
"""
from __future__ import annotations

import math

import numpy as np
from tritonclient.grpc import service_pb2

from gateway.codec import V2_BY_DTYPE_NAME
from gateway.errors import InvalidInput, shown
from gateway.loader import LoadedModel
from gateway.service import Answer
from gateway.tensor_bytes import array_from_raw, raw_from_array
from gateway.validation import Decoded, InputSpec, check_names, coerce, rows_of

# The typed contents field each datatype travels in, and the numpy dtype its values read as (narrower integers are
# range-checked by coerce when cast to the input's dtype)
CONTENTS_FIELD: dict[str, tuple[str, np.dtype]] = {
    "BOOL": ("bool_contents", np.dtype(bool)),
    "INT8": ("int_contents", np.dtype(np.int32)),
    "INT16": ("int_contents", np.dtype(np.int32)),
    "INT32": ("int_contents", np.dtype(np.int32)),
    "INT64": ("int64_contents", np.dtype(np.int64)),
    "UINT8": ("uint_contents", np.dtype(np.uint32)),
    "UINT16": ("uint_contents", np.dtype(np.uint32)),
    "UINT32": ("uint_contents", np.dtype(np.uint32)),
    "UINT64": ("uint64_contents", np.dtype(np.uint64)),
    "FP32": ("fp32_contents", np.dtype(np.float32)),
    "FP64": ("fp64_contents", np.dtype(np.float64)),
    "BYTES": ("bytes_contents", np.dtype(object)),
}


class GrpcInferRequest:
    """A ModelInferRequest, decoded for whichever version the service selects (see gateway.requests)."""

    __slots__ = ("message", "heavy")

    def __init__(self, message: service_pb2.ModelInferRequest, heavy: bool = False) -> None:
        self.message = message
        self.heavy = heavy

    def feeds(self, loaded: LoadedModel, max_rows: int) -> Decoded:
        message = self.message
        output_names = [output.name for output in message.outputs] or None
        if output_names is not None:
            unknown = [name for name in output_names if name not in loaded.output_names]
            if unknown:
                raise InvalidInput(f"unknown output(s) {unknown}; expected {loaded.signature}")
        feeds = decode_inputs(message, loaded, max_rows)
        return Decoded(feeds, rows_of(feeds), output_names, message.id or None)


def heavy_to_decode(message: service_pb2.ModelInferRequest, inline_max_bytes: int) -> bool:
    """Whether decoding belongs on a worker thread (see gateway.requests): never for fixed-size raw tensors, which
    numpy reads in place (a thread hop would cost more); typed contents and BYTES go value by value, so over
    `inline_max_bytes` they are."""
    if message.raw_input_contents and all(tensor.datatype != "BYTES" for tensor in message.inputs):
        return False
    return message.ByteSize() > inline_max_bytes


def decode_inputs(message: service_pb2.ModelInferRequest, loaded: LoadedModel, max_rows: int) -> dict[str, np.ndarray]:
    tensors = {}
    for index, tensor in enumerate(message.inputs):
        if tensor.name in tensors:
            raise InvalidInput(f"input {shown(tensor.name)} is sent more than once")
        tensors[tensor.name] = index
    specs = loaded.inputs
    if tensors.keys() != specs.keys():
        check_names(tensors, specs, loaded.signature)
    raw_contents = message.raw_input_contents
    if raw_contents and len(raw_contents) != len(message.inputs):
        raise InvalidInput(f"raw_input_contents has {len(raw_contents)} entries for {len(message.inputs)} inputs: "
                           "send every input raw, or none")
    feeds = {}
    for name, spec in specs.items():
        tensor = message.inputs[tensors[name]]
        expected = expected_datatype(spec)
        if tensor.datatype != expected:
            raise InvalidInput(f"input {name!r}: datatype {shown(tensor.datatype)}, expected {expected}; "
                               f"expected {loaded.signature}")
        shape = list(tensor.shape)
        if raw_contents:
            if tensor.HasField("contents"):
                raise InvalidInput(f"input {name!r}: both raw_input_contents and contents; send one")
            array = array_from_raw(name, expected, shape, raw_contents[tensors[name]])
        else:
            array = typed_contents(spec, tensor, expected, shape)
        if array.dtype.kind == "O":  # strings: coerce takes them as numpy's str arrays
            array = array.astype(str)
        feeds[name] = coerce(spec, array, loaded.signature, max_rows)
    return feeds


_EXPECTED: dict[np.dtype, str | None] = {}


def expected_datatype(spec: InputSpec) -> str | None:
    """The v2 datatype an input must declare (cached per dtype: numpy builds dtype.name on every access)."""
    dtype = spec.dtype
    try:
        return _EXPECTED[dtype]
    except KeyError:
        expected = _EXPECTED[dtype] = V2_BY_DTYPE_NAME.get(dtype.name if dtype.kind != "O" else "string")
        return expected


def typed_contents(spec: InputSpec, tensor: service_pb2.ModelInferRequest.InferInputTensor, datatype: str,
                   shape: list[int]) -> np.ndarray:
    """The input's values from its typed contents field: the one its datatype names, and only that one."""
    name = spec.name
    if datatype not in CONTENTS_FIELD:
        raise InvalidInput(f"input {name!r}: {datatype} has no typed contents field; send it in raw_input_contents")
    field, dtype = CONTENTS_FIELD[datatype]
    present = [descriptor.name for descriptor, _ in tensor.contents.ListFields()]
    if present != [field]:
        sent = ", ".join(present) or "no contents"
        raise InvalidInput(f"input {name!r}: {datatype} values go in contents.{field}, got {sent}")
    if any(size < 0 for size in shape):
        raise InvalidInput(f"input {name!r}: shape {shape} has a negative size")
    values = getattr(tensor.contents, field)
    if len(values) != math.prod(shape):
        raise InvalidInput(f"input {name!r}: {len(values)} values do not fill shape {shape}")
    if datatype == "BYTES":
        try:
            array = np.array([value.decode("utf-8") for value in values], dtype=str)
        except UnicodeDecodeError:
            raise InvalidInput(f"input {name!r}: bytes_contents holds an element that is not UTF-8 text") from None
    else:
        array = np.array(values, dtype=dtype)
        if dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(f"input {name!r}: NaN or infinite values")
    try:
        return array.reshape(shape)
    except ValueError:  # numpy refuses axes past its limits even when they hold no values
        raise InvalidInput(f"input {name!r}: shape {shape} is over numpy's limits") from None


def infer_response(answer: Answer) -> service_pb2.ModelInferResponse:
    """The answer with its outputs as raw_output_contents, and what HTTP's v2 answer puts in `parameters`."""
    response = service_pb2.ModelInferResponse(model_name=answer.model, model_version=answer.version,
                                              id=answer.request_id or "")
    for name, array in answer.outputs.items():
        datatype, raw = raw_from_array(array)
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(raw)
    parameters = response.parameters
    parameters["environment"].string_param = answer.environment
    parameters["arm"].string_param = answer.arm
    if answer.retried_from is not None:
        parameters["retried_from"].string_param = answer.retried_from
    return response
