"""Requests as the transports hand them to the service: parsed bodies that turn into onnxruntime feeds for whichever
version the service selects (the feeds depend on that version's signature). No transport's bytes reach the service."""
from __future__ import annotations

from typing import Protocol

from gateway import v2
from gateway.errors import InvalidInput
from gateway.loader import LoadedModel
from gateway.validation import Decoded, check_names, coerce, refuse_booleans, rows_of

TEXT_UNIT_CHARS = 100


def text_units(texts: list[str]) -> int:
    """A text request's size for the rollout judge: one unit per text and one per 100 characters. Its whole latency
    grows with the characters, not only the tokenizing (the model's run right after tokenizing 100 KB is slower too,
    measured at 0.33 against 0.045 ms a run for a tiny text), and a 100 KB text is still one row."""
    return len(texts) + sum(len(text) for text in texts) // TEXT_UNIT_CHARS


class ModelRequest(Protocol):
    heavy: bool  # decoding may take long enough (a big body: tokenizing text) to belong on a worker thread

    def feeds(self, loaded: LoadedModel, max_rows: int) -> Decoded:
        """The request's inputs as `loaded` takes them; InvalidInput when they do not fit its signature."""


class PredictRequest:
    """`POST /predict/{model}`: `{"inputs": [[...]]}`, `{"inputs": {"name": [[...]]}}` or `{"text": [...]}`."""

    __slots__ = ("payload", "heavy", "booleans", "numbers")

    def __init__(self, payload: object, heavy: bool = False, booleans: bool = True, numbers: bool = False) -> None:
        """`booleans`: whether the body may hold JSON booleans (false when its bytes have no `true` or `false`);
        `numbers`: whether it is known to be `{"inputs": [...]}` with JSON numbers alone in its lists."""
        self.payload = payload
        self.heavy = heavy
        self.booleans = booleans
        self.numbers = numbers

    def feeds(self, loaded: LoadedModel, max_rows: int) -> Decoded:
        payload = self.payload
        spec = loaded.single_input
        if self.numbers and spec is not None:  # {"inputs": <numbers>} alone, for a model of one input
            array = coerce(spec, payload["inputs"], loaded.signature, max_rows, numbers=True)
            # rows_of, for one input; made by tuple.__new__, as a NamedTuple's own constructor is a Python function
            return tuple.__new__(Decoded, ({spec.name: array}, array.shape[0] if array.ndim else 1, None, None, 0))
        if not isinstance(payload, dict):
            raise InvalidInput(f'body must be a JSON object with "inputs" or "text"; expected {loaded.signature}')
        if "text" in payload:
            if loaded.text is None:
                raise InvalidInput(f"model {loaded.name!r} takes no raw text; expected {loaded.signature}")
            texts = payload["text"]
            feeds = loaded.text.encode(texts, max_rows)
            return Decoded(feeds, len(texts), None, None, text_units(texts))
        if "inputs" not in payload:
            raise InvalidInput(f'body must have "inputs" (or "text" for text models); expected {loaded.signature}')
        inputs = payload["inputs"]
        specs = loaded.inputs
        if not isinstance(inputs, dict):
            if len(specs) != 1:
                raise InvalidInput(f"model {loaded.name!r} has {len(specs)} inputs: name them, "
                                   f'{{"inputs": {{"name": [...]}}}}; expected {loaded.signature}')
            [spec] = specs.values()
            if self.booleans:
                refuse_booleans(spec, inputs, loaded.signature)
            array = coerce(spec, inputs, loaded.signature, max_rows)
            return Decoded({spec.name: array}, array.shape[0] if array.ndim else 1)  # rows_of, for one input
        check_names(inputs, specs, loaded.signature)
        if self.booleans:
            for name, spec in specs.items():
                refuse_booleans(spec, inputs[name], loaded.signature)
        feeds = {name: coerce(spec, inputs[name], loaded.signature, max_rows) for name, spec in specs.items()}
        return Decoded(feeds, rows_of(feeds))


class InferRequest:
    """An Open Inference Protocol (v2) infer request: inputs as tensors, optionally the outputs wanted and an id.
    `raw`: the binary inputs' bytes by input name (gateway.v2_binary), None when the body is all JSON."""

    __slots__ = ("payload", "heavy", "booleans", "raw")

    def __init__(self, payload: object, heavy: bool = False, booleans: bool = True,
                 raw: dict[str, memoryview] | None = None) -> None:
        self.payload = payload
        self.heavy = heavy
        self.booleans = booleans
        self.raw = raw

    def feeds(self, loaded: LoadedModel, max_rows: int) -> Decoded:
        return v2.decode_request(self.payload, loaded, max_rows, self.booleans, self.raw)
