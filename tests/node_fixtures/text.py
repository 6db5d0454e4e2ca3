"""The text fixture: a WordPiece tokenizer trained here on a few sentences (truncation and padding saved in
tokenizer.json) and a tiny PyTorch bag-of-embeddings classifier exported with torch.onnx.export (dynamo)."""
from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from modelstore.metadata import TokenizerInfo
from tests.node_fixtures.specs import make_metadata
from tests.node_fixtures.tabular import Fixture

MAX_LENGTH = 12
PAD_ID = 0
LABELS = ["ok", "spam", "abuse"]
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]

TRAINING_TEXT = [
    "great product, works as described", "terrible service and rude staff", "buy cheap pills now click here",
    "café au lait and crème brûlée", "naïve résumé from Zoë", "日本語のテキスト 我喜欢这个 한국어",
    "I love it 😍🔥 so much", "free money!!! win win win", "you are an idiot and I hate you",
    "the weather is nice today", "meeting moved to 3pm", "señor piñata jalapeño",
]

# Accents, emoji, CJK, punctuation, unknown characters, and texts past MAX_LENGTH tokens.
TEST_TEXTS = [
    "great product",
    "Café déjà vu, crème brûlée!",
    "I love it 😍🔥",
    "我喜欢这个 product 日本語",
    "buy cheap pills now click here free money win win win you are an idiot and I hate you",
    "naïve résumé from Zoë and señor piñata at the café with crème brûlée and jalapeño",
    "",
    "   spaced\tout\nlines   ",
    "ÀÉÎÕÜ ßø ﬁ Ωmega",
    "🙂🙃🤖",
]


def train_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=SPECIAL_TOKENS, min_frequency=1)
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    tokenizer.enable_truncation(max_length=MAX_LENGTH)
    tokenizer.enable_padding(length=MAX_LENGTH, pad_id=PAD_ID, pad_token="[PAD]")
    return tokenizer


class BagClassifier(torch.nn.Module):
    """Mean of the token embeddings under the attention mask, then a linear layer: probabilities and the class id."""

    def __init__(self, vocab_size: int, classes: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab_size, 8)
        self.classify = torch.nn.Linear(8, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        pooled = (self.embedding(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classify(pooled)
        return torch.softmax(logits, dim=-1), torch.argmax(logits, dim=-1)


def export_classifier(vocab_size: int) -> bytes:
    torch.manual_seed(0)
    model = BagClassifier(vocab_size, len(LABELS)).eval()
    example = (torch.ones(2, MAX_LENGTH, dtype=torch.int64), torch.ones(2, MAX_LENGTH, dtype=torch.int64))
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(model, example, input_names=["input_ids", "attention_mask"],
                                output_names=["probabilities", "label"], opset_version=18, dynamo=True,
                                dynamic_shapes={"input_ids": {0: batch}, "attention_mask": {0: batch}}, verbose=False)
    return program.model_proto.SerializeToString()


def text_classifier() -> tuple[Fixture, Tokenizer]:
    tokenizer = train_tokenizer()
    model_bytes = export_classifier(tokenizer.get_vocab_size())
    info = TokenizerInfo(max_length=MAX_LENGTH, pad_id=PAD_ID, input_ids="input_ids", attention_mask="attention_mask")
    metadata = make_metadata(model_bytes, name="safety", version="v1.0.0", framework="pytorch",
                             framework_version=torch.__version__, task="text-classification", labels=LABELS,
                             label_output="label", score_output="probabilities", tokenizer=info)
    requests = [{"text": TEST_TEXTS}, {"text": TEST_TEXTS[4:5]}, "I love it 😍🔥"]
    return Fixture(metadata, model_bytes, requests, {"tokenizer.json": tokenizer.to_str().encode()}), tokenizer


def tokenizer_vectors(tokenizer: Tokenizer) -> list[dict]:
    return [{"text": text, "ids": encoding.ids, "attention_mask": encoding.attention_mask}
            for text, encoding in zip(TEST_TEXTS, tokenizer.encode_batch(TEST_TEXTS), strict=True)]
