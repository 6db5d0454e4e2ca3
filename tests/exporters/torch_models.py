"""Tiny torch models for the exporter tests (importable, so `module:attr` specs can name them)."""
from __future__ import annotations

import torch
from torch import nn


class TabularMLP(nn.Module):
    input_shape = (6,)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.conv(x), 1))


class LSTMText(nn.Module):
    def __init__(self, vocab: int = 64, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.embedding = nn.Embedding(vocab, 8, padding_idx=0)
        self.lstm = nn.LSTM(8, 12, batch_first=True)
        self.head = nn.Linear(12, classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(self.embedding(input_ids))
        return self.head(hidden[-1])


class TinyBert(nn.Module):
    """A BERT-like encoder from a config, randomly initialised: token + position embeddings, encoder layers with a
    key padding mask, masked mean pooling, a classification head."""

    def __init__(self, vocab: int = 64, dim: int = 16, heads: int = 2, layers: int = 2, max_length: int = 16,
                 classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.tokens = nn.Embedding(vocab, dim, padding_idx=0)
        self.positions = nn.Embedding(max_length, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        hidden = self.encoder(self.tokens(input_ids) + self.positions(positions),
                              src_key_padding_mask=attention_mask == 0)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))


class Unexportable(nn.Module):
    """Data-dependent Python control flow on a tensor value: torch.export cannot capture it."""

    input_shape = (4,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum().item() > 0:
            return x * 2
        return x.numpy().tolist()


def make_mlp() -> TabularMLP:
    return TabularMLP().eval()


mlp_instance = TabularMLP().eval()
