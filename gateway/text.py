"""Raw text -> token ids with the package's tokenizer.json, padded and truncated to what metadata.tokenizer says."""
from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer

from gateway.errors import BatchTooLarge, InvalidInput
from modelstore.errors import InvalidMetadata
from modelstore.metadata import ModelMetadata, TokenizerInfo


class TextEncoder:
    def __init__(self, tokenizer_json: bytes, metadata: ModelMetadata) -> None:
        info: TokenizerInfo = metadata.tokenizer  # type: ignore[assignment]
        try:
            tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        except Exception as exc:  # the tokenizers library raises plain Exception subclasses
            raise InvalidMetadata(f"{metadata.name} {metadata.version}: {info.file} is not a usable tokenizer: {exc}") from None
        saved_truncation = tokenizer.truncation or {}
        if info.truncation:
            tokenizer.enable_truncation(max_length=info.max_length, stride=saved_truncation.get("stride", 0),
                                        strategy=saved_truncation.get("strategy", "longest_first"))
        else:
            tokenizer.no_truncation()
        saved_padding = tokenizer.padding or {}
        pad_token = tokenizer.id_to_token(info.pad_id) or saved_padding.get("pad_token", "[PAD]")
        tokenizer.enable_padding(length=info.max_length, pad_id=info.pad_id, pad_token=pad_token,
                                 direction=saved_padding.get("direction", "right"))
        self.tokenizer = tokenizer
        self.info = info
        self.ids_dtype = _dtype_of(metadata, info.input_ids)
        self.mask_dtype = _dtype_of(metadata, info.attention_mask) if info.attention_mask else None

    def encode(self, texts: object, max_rows: int) -> dict[str, np.ndarray]:
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise InvalidInput('"text" must be a list of strings')
        if not texts:
            raise InvalidInput('"text": empty batch')
        if len(texts) > max_rows:
            raise BatchTooLarge(f'"text": {len(texts)} rows is over the limit of {max_rows} per request')
        encodings = self.tokenizer.encode_batch(texts)
        if not self.info.truncation and any(len(e.ids) > self.info.max_length for e in encodings):
            raise InvalidInput(f'"text": a text is longer than {self.info.max_length} tokens and truncation is off')
        feeds = {self.info.input_ids: np.array([e.ids for e in encodings], dtype=self.ids_dtype)}
        if self.info.attention_mask:
            feeds[self.info.attention_mask] = np.array([e.attention_mask for e in encodings], dtype=self.mask_dtype)
        return feeds


def _dtype_of(metadata: ModelMetadata, input_name: str) -> np.dtype:
    try:
        return np.dtype(metadata.input(input_name).dtype)
    except KeyError:
        raise InvalidMetadata(
            f"{metadata.name} {metadata.version}: tokenizer feeds {input_name!r}, which is not a model input"
        ) from None
