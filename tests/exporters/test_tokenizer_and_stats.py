from __future__ import annotations

import json

import numpy as np
import pytest

from exporters.stats import reference_stats, token_count_stats
from exporters.tokenizer import load_tokenizer
from ml.examples.intent_classifier import train_tokenizer

MAX_LENGTH = 24
CORPUS = ["café crème brûlée", "naïve façade déjà vu", "emoji 🍣 and 😡 here", "東京 の ラーメン", "hello world",
          "order a café au lait 🙂", "さようなら 東京"] * 3


@pytest.fixture(scope="module")
def saved_tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(CORPUS, max_length=MAX_LENGTH).save(str(path))
    return path


def test_saved_tokenizer_keeps_padding_and_truncation(saved_tokenizer):
    payload = json.loads(saved_tokenizer.read_text(encoding="utf-8"))
    assert payload["truncation"]["max_length"] == MAX_LENGTH
    assert payload["padding"]["strategy"] == {"Fixed": MAX_LENGTH}


@pytest.mark.parametrize("text", ["café crème brûlée", "emoji 🍣 and 😡 here", "東京 の ラーメン"])
def test_non_ascii_text_round_trips(saved_tokenizer, text):
    tokenizer = load_tokenizer(saved_tokenizer)
    ids, mask = tokenizer.encode([text])

    assert ids.shape == (1, MAX_LENGTH) and ids.dtype == np.int64
    assert tokenizer.tokenizer.token_to_id("[UNK]") not in ids[0][mask[0] == 1]
    decoded = tokenizer.tokenizer.decode(ids[0].tolist(), skip_special_tokens=True)
    assert decoded.replace(" ", "") == text.lower().replace(" ", "")


def test_short_input_is_padded_and_long_input_truncated(saved_tokenizer):
    tokenizer = load_tokenizer(saved_tokenizer)
    long_text = " ".join(["café 🍣 東京"] * 40)
    ids, mask = tokenizer.encode(["hello", long_text])

    assert ids.shape == (2, MAX_LENGTH)
    assert mask[0].sum() < MAX_LENGTH and set(ids[0][mask[0] == 0]) == {tokenizer.pad_id}
    assert mask[1].sum() == MAX_LENGTH


def test_max_length_option_overrides_the_saved_length(saved_tokenizer):
    ids, _ = load_tokenizer(saved_tokenizer, max_length=8).encode(["naïve façade déjà vu"])
    assert ids.shape == (1, 8)


def test_feature_stats_describe_the_rows():
    rows = np.random.default_rng(0).normal(size=(200, 3))
    rows[:, 2] = 5.0

    stats = reference_stats(rows, "input", feature_names=["a", "b", "c"])

    assert stats.available and stats.rows == 200 and [f.name for f in stats.features] == ["a", "b", "c"]
    for index, feature in enumerate(stats.features):
        assert sum(feature.counts) == 200 and len(feature.counts) == len(feature.bin_edges) - 1
        assert feature.bin_edges == sorted(feature.bin_edges)
        assert feature.mean == pytest.approx(rows[:, index].mean()) and feature.max == rows[:, index].max()
    assert len(stats.features[0].counts) == 10
    assert stats.features[2].bin_edges == [5.0, 5.0]


def test_stats_without_rows_say_why():
    assert reference_stats(None, "input").reason
    assert not reference_stats(np.zeros((3, 2)), "input", synthetic=True).available
    assert not reference_stats(np.zeros((3, 1000)), "input").available


def test_token_count_stats():
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    stats = token_count_stats(mask, "input_ids")
    assert stats.features[0].name == "token_count" and stats.features[0].max == 4 and stats.features[0].min == 1
