from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from exporters.errors import ExportError
from exporters.publish import PublishOptions, export_source, export_torch
from exporters.source import load_source
from exporters.tokenizer import fixed_length
from monitoring.drift import DriftLayout
from tests.exporters.conftest import run_stored
from tests.exporters.torch_models import LSTMText, SmallCNN, TabularMLP, TinyBert, Unexportable

NO_NODE = PublishOptions(check_node=False)
MAX_LENGTH = 16


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def word_tokenizer():
    words = ["[PAD]", "[UNK]"] + [f"w{i}" for i in range(62)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return fixed_length(tokenizer, MAX_LENGTH)


def texts(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{i}" for i in rng.integers(0, 62, size=rng.integers(1, 24))) for _ in range(count)]


def test_mlp_classifier_exports_labels_and_probabilities(store):
    module = TabularMLP().eval()
    rows = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)

    metadata = export_torch(store, module, name="mlp", version="v1.0.0", sample=rows, labels=["a", "b", "c"],
                            options=NO_NODE)

    assert metadata.parity.passed and metadata.parity.label_agreement == 1.0
    assert metadata.inputs[0].name == "input" and metadata.inputs[0].shape == ["batch", 6]
    stored = run_stored(store, "mlp", "v1.0.0", {"input": rows[:7]})
    with torch.no_grad():
        logits = module(torch.from_numpy(rows[:7])).numpy()
    np.testing.assert_allclose(stored["probabilities"], softmax(logits), atol=1e-5)
    np.testing.assert_array_equal(stored["label"], logits.argmax(axis=1))
    assert metadata.reference_stats.available and len(metadata.reference_stats.features) == 6


def test_cnn_on_images_with_dynamic_batch(store):
    module = SmallCNN().eval()
    images = np.random.default_rng(1).normal(size=(12, 1, 8, 8)).astype(np.float32)

    metadata = export_torch(store, module, name="cnn", version="v1.0.0", sample=images, options=NO_NODE)

    assert metadata.task == "other" and metadata.parity.passed
    assert metadata.inputs[0].shape == ["batch", 1, 8, 8]
    stored = run_stored(store, "cnn", "v1.0.0", {"input": images[:3]})
    with torch.no_grad():
        np.testing.assert_allclose(stored["output"], module(torch.from_numpy(images[:3])).numpy(), atol=1e-5)


def test_lstm_text_classifier(store, word_tokenizer):
    module = LSTMText().eval()
    sample = texts(24)

    metadata = export_torch(store, module, name="lstm", version="v1.0.0", sample=sample, labels=["x", "y", "z"],
                            tokenizer=word_tokenizer, options=NO_NODE)

    assert metadata.task == "text-classification" and metadata.parity.passed
    assert [s.name for s in metadata.inputs] == ["input_ids"] and metadata.tokenizer.attention_mask is None
    assert metadata.reference_stats.features[0].name == "token_count"
    ids, _ = word_tokenizer.encode(sample[:5])
    stored = run_stored(store, "lstm", "v1.0.0", {"input_ids": ids})
    with torch.no_grad():
        expected = softmax(module(torch.from_numpy(ids)).numpy())
    np.testing.assert_allclose(stored["probabilities"], expected, atol=1e-5)
    reference = metadata.reference_stats
    assert len(reference.features[0].quantiles) == 101
    assert reference.prediction.kind == "classes" and sum(reference.prediction.counts) == len(sample)
    table = DriftLayout.of(metadata).feature_table({"input_ids": ids})  # drift's token count: ids that are not padding
    np.testing.assert_array_equal(table[:, 0], (ids != word_tokenizer.pad_id).sum(axis=1))


def test_transformer_encoder_with_attention_mask(store, word_tokenizer):
    module = TinyBert(max_length=MAX_LENGTH).eval()
    sample = texts(16, seed=1)

    metadata = export_torch(store, module, name="tinybert", version="v1.0.0", sample=sample,
                            labels=["x", "y", "z"], tokenizer=word_tokenizer, options=NO_NODE)

    assert [s.name for s in metadata.inputs] == ["input_ids", "attention_mask"]
    assert metadata.tokenizer.max_length == MAX_LENGTH and metadata.parity.passed
    assert "tokenizer.json" in metadata.files
    ids, mask = word_tokenizer.encode(sample[:4])
    stored = run_stored(store, "tinybert", "v1.0.0", {"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        expected = softmax(module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy())
    np.testing.assert_allclose(stored["probabilities"], expected, atol=1e-5)


def test_torchscript_file_exports(tmp_path, store):
    path = tmp_path / "mlp.pt"
    torch.jit.script(TabularMLP().eval()).save(str(path))
    rows = np.random.default_rng(2).normal(size=(10, 6)).astype(np.float32)

    source = load_source(str(path))
    metadata = export_source(store, source, name="scripted", version="v1.0.0", sample=rows, labels=["a", "b", "c"],
                             options=NO_NODE)

    assert source.kind == "torch" and metadata.parity.passed
    assert metadata.parity.reference.startswith("TorchScript")


@pytest.mark.parametrize("spec", ["tests.exporters.torch_models:make_mlp", "tests.exporters.torch_models:mlp_instance"])
def test_module_attr_spec_without_sample_uses_declared_shape(spec, store):
    source = load_source(spec)
    metadata = export_source(store, source, name="spec", version="v1.0.0", options=NO_NODE)

    assert source.kind == "torch" and metadata.parity.passed and metadata.parity.synthetic_rows
    assert metadata.inputs[0].shape == ["batch", 6]


def test_module_without_sample_or_shape_is_refused(store):
    with pytest.raises(ExportError, match="--sample"):
        export_torch(store, SmallCNN(), name="cnn", version="v1.0.0", options=NO_NODE)


def test_unexportable_module_is_a_clean_export_error(store):
    with pytest.raises(ExportError, match="Unexportable"):
        export_torch(store, Unexportable(), name="bad", version="v1.0.0", options=NO_NODE)
    assert not store.root.exists() or store.list_models() == []
