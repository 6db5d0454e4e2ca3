"""Text models: a Hugging Face `tokenizer.json` saved with truncation and padding to max_length, so every runtime that
loads it (the gateway, the Node loader) produces the same fixed-length ids the model was exported with."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from exporters.errors import ExportError
from modelstore.metadata import TokenizerInfo

TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class FixedLengthTokenizer:
    tokenizer: Tokenizer
    max_length: int
    pad_id: int

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (input_ids, attention_mask), both int64 [len(texts), max_length]."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64).reshape(len(texts), self.max_length)
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64).reshape(ids.shape)
        return ids, mask

    def to_json_bytes(self) -> bytes:
        return self.tokenizer.to_str(pretty=True).encode("utf-8")

    def info(self, input_ids: str, attention_mask: str | None) -> TokenizerInfo:
        return TokenizerInfo(file=TOKENIZER_FILE, max_length=self.max_length, pad_id=self.pad_id,
                             input_ids=input_ids, attention_mask=attention_mask)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()


def fixed_length(tokenizer: Tokenizer, max_length: int | None = None) -> FixedLengthTokenizer:
    """Enable truncation and padding to `max_length` (default: the tokenizer's own saved settings)."""
    padding = tokenizer.padding or {}
    truncation = tokenizer.truncation or {}
    max_length = max_length or padding.get("length") or truncation.get("max_length")
    if not max_length:
        raise ExportError("the tokenizer has no fixed length: pass --max-length N")
    pad_token = padding.get("pad_token") or _pad_token(tokenizer)
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise ExportError(f"the tokenizer has no padding token {pad_token!r} in its vocabulary")
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(length=max_length, pad_id=pad_id, pad_token=pad_token)
    return FixedLengthTokenizer(tokenizer=tokenizer, max_length=int(max_length), pad_id=int(pad_id))


def load_tokenizer(path: str | Path, max_length: int | None = None) -> FixedLengthTokenizer:
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception subclasses from Rust
        raise ExportError(f"cannot load tokenizer {path}: {exc}") from None
    return fixed_length(tokenizer, max_length)


def _pad_token(tokenizer: Tokenizer) -> str:
    for candidate in ("[PAD]", "<pad>", "<PAD>"):
        if tokenizer.token_to_id(candidate) is not None:
            return candidate
    raise ExportError("the tokenizer has no padding token ([PAD] or <pad>) and no padding settings")


def saved_settings(tokenizer_json: bytes) -> dict:
    """The truncation and padding blocks as saved in tokenizer.json (for checks)."""
    payload = json.loads(tokenizer_json)
    return {"truncation": payload.get("truncation"), "padding": payload.get("padding")}
