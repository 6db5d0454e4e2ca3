"""intent_classifier: a PyTorch text classifier (token embeddings, mean over the attention mask, a linear layer) on a
small multilingual intent dataset generated here, with a WordPiece tokenizer trained locally.

The artefact is TorchScript (`intent_classifier.pt`): self-contained, so `onnxgate export` loads it without importing
this module and without unpickling code.
"""
from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from tokenizers.trainers import WordPieceTrainer
from torch import nn

from ml.examples.artefacts import output_dir, write_labels, write_metrics

NAME = "intent_classifier"
MAX_LENGTH = 32
SEED = 0
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
INTENTS: dict[str, list[str]] = {
    "greeting": ["hello", "hi there", "good morning", "hey", "good evening", "bonjour", "hola", "hallo",
                 "こんにちは", "salut 👋", "olá, tudo bem", "hey, nice to meet you"],
    "goodbye": ["bye", "goodbye", "see you later", "see you tomorrow", "au revoir", "adiós", "tschüss", "さようなら",
                "bye 👋", "take care, ciao", "have a nice day, bye", "farewell"],
    "order": ["i want to order a pizza", "can i buy two coffees", "order a café au lait", "je voudrais commander",
              "quiero pedir una pizza", "add three croissants to my order", "i would like to buy a crème brûlée",
              "ピザを注文したい", "please order sushi 🍣", "get me a large latte", "i'll take the menu of the day",
              "buy a ticket for tonight"],
    "complaint": ["my order arrived broken", "this is terrible", "the food was cold 😡", "c'est inacceptable",
                  "worst service ever", "the delivery is late again", "i am very unhappy with the product",
                  "el pedido llegó tarde", "最悪のサービス", "the coffee tasted awful", "you charged me twice",
                  "nobody answered my emails"],
    "question": ["what time do you open", "where is my order", "how much does it cost", "¿dónde está la tienda?",
                 "à quelle heure fermez-vous ?", "do you deliver on sundays", "can you tell me the price",
                 "何時に開きますか", "is there a vegan option?", "how long does delivery take",
                 "what is the wifi password", "which payment methods do you accept"],
}
PREFIXES = ["", "um ", "so ", "ok ", "please ", "well, "]
SUFFIXES = ["", "!", "?", " please", " thanks", " 🙂"]


class IntentClassifier(nn.Module):
    """Token embeddings averaged over the real (unpadded) tokens, then one linear layer to intent logits."""

    def __init__(self, vocab_size: int, classes: int, dim: int = 32, pad_id: int = 0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        summed = (self.embedding(input_ids) * mask).sum(dim=1)
        return self.head(summed / mask.sum(dim=1).clamp(min=1.0))


@dataclass(frozen=True)
class TrainedIntent:
    model: torch.jit.ScriptModule
    tokenizer: Tokenizer
    labels: list[str]
    metrics: dict[str, float]
    held_out: list[str]
    training_samples: int


def dataset(seed: int = SEED) -> list[tuple[str, int]]:
    rows = [(f"{prefix}{core}{suffix}", label)
            for label, cores in enumerate(INTENTS.values())
            for core, prefix, suffix in itertools.product(cores, PREFIXES, SUFFIXES)]
    random.Random(seed).shuffle(rows)
    return rows


def train_tokenizer(texts: list[str], max_length: int = MAX_LENGTH) -> Tokenizer:
    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False, clean_text=True,
                                                      handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(texts, WordPieceTrainer(vocab_size=800, special_tokens=SPECIAL_TOKENS,
                                                                   show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")),
                                                 ("[SEP]", tokenizer.token_to_id("[SEP]"))])
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(length=max_length, pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    return tokenizer


def encode(tokenizer: Tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    encodings = tokenizer.encode_batch(texts)
    return (torch.tensor([e.ids for e in encodings], dtype=torch.int64),
            torch.tensor([e.attention_mask for e in encodings], dtype=torch.int64))


def train(epochs: int = 60) -> TrainedIntent:
    torch.manual_seed(SEED)
    rows = dataset()
    split = int(len(rows) * 0.8)
    train_rows, test_rows = rows[:split], rows[split:]
    tokenizer = train_tokenizer([text for text, _ in train_rows])
    ids, mask = encode(tokenizer, [text for text, _ in train_rows])
    targets = torch.tensor([label for _, label in train_rows])
    model = IntentClassifier(tokenizer.get_vocab_size(), len(INTENTS), pad_id=tokenizer.token_to_id("[PAD]"))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(ids, mask), targets)
        loss.backward()
        optimiser.step()
    model.eval()
    test_ids, test_mask = encode(tokenizer, [text for text, _ in test_rows])
    with torch.no_grad():
        predicted = model(test_ids, test_mask).argmax(dim=-1)
    accuracy = float((predicted == torch.tensor([label for _, label in test_rows])).float().mean())
    return TrainedIntent(model=torch.jit.script(model), tokenizer=tokenizer, labels=list(INTENTS),
                         metrics={"accuracy": accuracy, "final_loss": float(loss.detach())},
                         held_out=[text for text, _ in test_rows], training_samples=len(train_rows))


def save(trained: TrainedIntent, out: Path) -> Path:
    path = out / f"{NAME}.pt"
    trained.model.save(str(path))
    trained.tokenizer.save(str(out / "tokenizer.json"))
    write_metrics(out, trained.metrics)
    write_labels(out, trained.labels)
    (out / "sample.json").write_text(json.dumps(trained.held_out, ensure_ascii=False, indent=1) + "\n",
                                     encoding="utf-8")
    return path


def main() -> None:
    out = output_dir(__doc__)
    print(save(train(), out))


if __name__ == "__main__":
    main()
