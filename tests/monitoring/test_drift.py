"""monitoring/drift.py: PSI and KS against hand-computed values and scipy, counts that add up, the verdicts."""
from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.stats import ks_2samp

from exporters.stats import feature_stats, reference_stats
from modelstore.metadata import FeatureStats, PredictionStats, ReferenceStats, TensorSpec, TokenizerInfo
from monitoring.drift import PSI_FLOOR, DriftLayout, DriftThresholds, drift_report
from tests.factories import minimal_metadata


def metadata_with(stats: ReferenceStats, **fields):
    spec = TensorSpec(name="input", dtype="float32", shape=["batch", max(len(stats.features), 1)])
    return minimal_metadata("m", "v1.0.0", [spec], [TensorSpec(name="label", dtype="int64", shape=["batch"])],
                            **fields).model_copy(update={"reference_stats": stats})


def layout_of(rows: np.ndarray, names: list[str] | None = None, prediction: PredictionStats | None = None):
    stats = reference_stats(rows, "input", feature_names=names)
    layout = DriftLayout.of(metadata_with(stats.model_copy(update={"prediction": prediction})))
    assert layout is not None
    return layout


def report(layout: DriftLayout, rows: np.ndarray, thresholds: DriftThresholds = DriftThresholds(),
           outputs: dict | None = None):
    return drift_report(layout, layout.count_features(rows),
                        layout.count_predictions(outputs or {}), len(rows), thresholds, model="m", version="v1.0.0",
                        environment="production")


def hand_layout() -> DriftLayout:
    """One feature, bins [0, 1), [1, 2), [2, 3] holding 50, 30 and 20 reference rows; no quantiles (old format)."""
    feature = FeatureStats(name="x", bin_edges=[0.0, 1.0, 2.0, 3.0], counts=[50, 30, 20], mean=1.0, std=1.0,
                           min=0.0, max=3.0)
    layout = DriftLayout.of(metadata_with(ReferenceStats(available=True, input="input", rows=100,
                                                         features=[feature])))
    assert layout is not None
    return layout


def test_psi_matches_the_hand_computed_value_with_out_of_range_values_in_the_end_bins():
    layout = hand_layout()
    # -1 and 0.5 in the first bin, 1.0 (an edge) and 1.5 in the second, 3.0 (the closed last edge) and 9 in the last
    live = np.array([-1.0] * 20 + [0.5] * 20 + [1.0] * 10 + [1.5] * 30 + [3.0] * 5 + [9.0] * 15)[:, None]
    result = report(layout, live, DriftThresholds(min_rows=1))
    expected = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.4 - 0.3) * math.log(0.4 / 0.3) + 0.0
    assert result.features[0].psi == pytest.approx(expected, abs=1e-12)
    # KS of an old-format version: just below the inner edges 1 and 2 (reference 0.5 and 0.8, live 0.4 and 0.8)
    assert result.features[0].ks == pytest.approx(0.1, abs=1e-12)
    assert result.notes and "10 bins" in result.notes[0]


def test_psi_floors_an_empty_live_bin():
    layout = hand_layout()
    live = np.array([0.5] * 50 + [1.5] * 50)[:, None]
    result = report(layout, live, DriftThresholds(min_rows=1))
    expected = ((0.5 - 0.5) * 0 + (0.5 - 0.3) * math.log(0.5 / 0.3)
                + (PSI_FLOOR - 0.2) * math.log(PSI_FLOOR / 0.2))
    assert result.features[0].psi == pytest.approx(expected, abs=1e-12)
    assert result.features[0].drifted  # 0.1022 + 1.5194 > 0.25


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.3, 1.0])
def test_ks_is_within_0_02_of_scipy_on_normal_skewed_and_discrete_columns(shift: float):
    rng = np.random.default_rng(7)
    n, m = 20_000, 3_000
    reference = np.column_stack([rng.normal(size=n), rng.lognormal(size=n), rng.integers(0, 6, n),
                                 rng.poisson(2.0, n)])
    live = np.column_stack([rng.normal(shift, 1.0, m), rng.lognormal(shift, 1.0, m),
                            rng.integers(0, 6, m) + shift, rng.poisson(2.0 + shift, m)])
    result = report(layout_of(reference), live)
    for column, feature in enumerate(result.features):
        exact = ks_2samp(reference[:, column], live[:, column]).statistic
        assert abs(feature.ks - exact) <= 0.02, (column, feature.ks, exact)
        assert feature.ks <= exact + 1e-12  # evaluated at real points: never above the exact statistic


def test_counts_add_up_across_requests_and_the_small_and_large_paths_agree():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(2000, 5))
    reference[:, 2] = rng.integers(0, 5, 2000)  # values equal to the quantiles and edges themselves
    layout = layout_of(reference)
    rows = rng.normal(0.2, 1.3, size=(500, 5))
    rows[:, 2] = rng.integers(-1, 7, 500)  # below, at and above the reference's values
    rows[3, 1], rows[10, 4], rows[200, 0] = np.nan, np.inf, -np.inf
    whole = layout.count_features(rows)  # more than 64 rows: searchsorted per feature
    pieces = sum((layout.count_features(rows[i:i + 7]) for i in range(0, 500, 7)), layout.empty_feature_counts())
    assert whole.dtype == np.int64 and whole.shape == layout.empty_feature_counts().shape
    np.testing.assert_array_equal(whole, pieces)
    result = report(layout, rows)
    assert [f.non_finite for f in result.features] == [1, 1, 0, 0, 1]


def test_no_drift_on_fresh_rows_and_drift_when_a_few_features_shift():
    rng = np.random.default_rng(3)
    layout = layout_of(rng.normal(size=(5000, 5)), names=list("abcde"))
    fresh = report(layout, rng.normal(size=(2000, 5)))
    assert fresh.status == "ok" and fresh.drifted_share == 0.0
    shifted_rows = rng.normal(size=(2000, 5))
    shifted_rows[:, [1, 3]] += 1.0
    shifted = report(layout, shifted_rows)
    assert shifted.status == "drift" and shifted.drifted_share == pytest.approx(0.4)
    assert [f.name for f in shifted.features if f.drifted] == ["b", "d"]


def test_huge_windows_of_the_same_distribution_do_not_drift():
    rng = np.random.default_rng(4)
    layout = layout_of(rng.normal(size=(20_000, 2)))
    assert report(layout, rng.normal(size=(400_000, 2))).status == "ok"


def test_insufficient_data_below_min_rows_never_drift():
    rng = np.random.default_rng(5)
    layout = layout_of(rng.normal(size=(2000, 3)))
    result = report(layout, rng.normal(5.0, 1.0, size=(499, 3)))
    assert result.status == "insufficient data" and result.drifted_share is None
    assert not any(f.drifted for f in result.features) and result.features[0].psi > 1
    assert report(layout, rng.normal(5.0, 1.0, size=(500, 3))).status == "drift"


def test_a_feature_with_only_non_finite_values_is_reported_drifted():
    rng = np.random.default_rng(6)
    layout = layout_of(rng.normal(size=(2000, 2)))
    rows = rng.normal(size=(600, 2))
    rows[:, 0] = np.nan
    result = report(layout, rows)
    assert result.features[0].psi is None and result.features[0].drifted and result.features[0].non_finite == 600
    assert not result.features[1].drifted


def test_prediction_drift_on_class_shares():
    rng = np.random.default_rng(8)
    prediction = PredictionStats(kind="classes", output="label", rows=1000, classes=["0", "1", "2"],
                                 counts=[500, 300, 200])
    layout = layout_of(rng.normal(size=(1000, 2)), prediction=prediction)
    rows = rng.normal(size=(1000, 2))
    same = report(layout, rows, outputs={"label": np.repeat(np.array([0, 1, 2], dtype=np.int64), [500, 300, 200])})
    assert same.prediction.available and same.prediction.psi == pytest.approx(0.0, abs=1e-12)
    assert not same.prediction.drifted and same.prediction.rows == 1000
    # a class the reference never saw lands in the "other" cell, floored on the reference side
    moved = np.repeat(np.array([0, 1, 7], dtype=np.int64), [200, 300, 500])
    result = report(layout, rows, outputs={"label": moved})
    expected = ((0.2 - 0.5) * math.log(0.2 / 0.5) + 0.0 + (PSI_FLOOR - 0.2) * math.log(PSI_FLOOR / 0.2)
                + (0.5 - PSI_FLOOR) * math.log(0.5 / PSI_FLOOR))
    assert result.prediction.psi == pytest.approx(expected, abs=1e-12)
    assert result.prediction.total_variation == pytest.approx(0.5 * (0.3 + 0.0 + 0.2 + 0.5))
    assert result.prediction.drifted


def test_prediction_drift_on_a_regression_value():
    rng = np.random.default_rng(9)
    value = feature_stats("variable", rng.normal(size=5000))
    prediction = PredictionStats(kind="values", output="variable", rows=5000, value=value)
    layout = layout_of(rng.normal(size=(5000, 2)), prediction=prediction)
    rows = rng.normal(size=(1000, 2))
    same = report(layout, rows, outputs={"variable": rng.normal(size=(1000, 1)).astype(np.float32)})
    shifted = report(layout, rows, outputs={"variable": rng.normal(2.0, 1.0, size=(1000, 1)).astype(np.float32)})
    assert same.prediction.psi < 0.05 and not same.prediction.drifted
    assert shifted.prediction.drifted and shifted.prediction.total_variation is None


def test_no_prediction_reference_reports_prediction_drift_unavailable():
    layout = layout_of(np.random.default_rng(10).normal(size=(1000, 2)))
    assert layout.count_predictions({"label": np.zeros(3)}).shape == (0,)
    result = report(layout, np.zeros((10, 2)), outputs={"label": np.zeros(10)})
    assert not result.prediction.available and "no reference distribution" in result.prediction.reason


def test_a_version_without_usable_reference_has_no_layout():
    stats = ReferenceStats(available=False, reason="no sample or training rows were given", input="input")
    assert DriftLayout.of(metadata_with(stats)) is None


def test_feature_table_from_feeds_and_token_counts_for_text_models():
    rng = np.random.default_rng(11)
    layout = layout_of(rng.normal(size=(100, 3)))
    rows = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(layout.feature_table({"input": rows}), rows.astype(np.float64))
    assert layout.feature_table({"input": rows[:, :2]}) is None
    assert layout.feature_table({"other": rows}) is None

    counts = feature_stats("token_count", rng.integers(1, 8, 200).astype(np.float64))
    stats = ReferenceStats(available=True, input="input_ids", rows=200, features=[counts])
    tokenizer = TokenizerInfo(max_length=8, pad_id=0, input_ids="input_ids", attention_mask="attention_mask")
    text = DriftLayout.of(metadata_with(stats, tokenizer=tokenizer))
    ids = np.array([[5, 6, 0, 0], [5, 0, 0, 0]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    np.testing.assert_array_equal(text.feature_table({"input_ids": ids, "attention_mask": mask}), [[2.0], [1.0]])
    no_mask = DriftLayout.of(metadata_with(stats, tokenizer=tokenizer.model_copy(update={"attention_mask": None})))
    np.testing.assert_array_equal(no_mask.feature_table({"input_ids": ids}), [[2.0], [1.0]])


def test_thresholds_refuse_unknown_fields_and_bad_values():
    with pytest.raises(ValidationError):
        DriftThresholds(psi_limit=0.1)
    with pytest.raises(ValidationError):
        DriftThresholds(min_rows=0)


def test_counts_of_another_layout_are_refused():
    rng = np.random.default_rng(12)
    layout = layout_of(rng.normal(size=(100, 3)))
    with pytest.raises(ValueError, match="do not belong"):
        drift_report(layout, np.zeros(3, dtype=np.int64), layout.empty_prediction_counts(), 0, DriftThresholds(),
                     model="m", version="v", environment=None)


def test_text_class_labels_are_counted_by_name():
    prediction = PredictionStats(kind="classes", output="label", rows=4, classes=["cat", "dog"], counts=[2, 2])
    layout = layout_of(np.random.default_rng(13).normal(size=(100, 1)), prediction=prediction)
    counts = layout.count_predictions({"label": np.array(["dog", "cat", "eel", "dog"], dtype=object)})
    np.testing.assert_array_equal(counts, [1, 2, 1])
    np.testing.assert_array_equal(layout.count_predictions({"label": np.array([b"cat"])}), [1, 0, 0])


@pytest.mark.parametrize("seed", range(12))
def test_ks_bound_holds_on_random_mixtures_with_ties(seed: int):
    rng = np.random.default_rng(100 + seed)
    def draw(n: int, shift: float) -> np.ndarray:
        continuous = rng.normal(shift, rng.uniform(0.5, 2.0), n)
        ties = np.round(rng.exponential(2.0, n) + shift, int(rng.integers(0, 2)))  # many repeated values
        return np.where(rng.random(n) < 0.5, continuous, ties)
    reference = draw(int(rng.integers(1000, 10_000)), 0.0)[:, None]
    live = draw(int(rng.integers(500, 5000)), float(rng.uniform(0, 0.5)))[:, None]
    feature = report(layout_of(reference), live).features[0]
    exact = ks_2samp(reference[:, 0], live[:, 0]).statistic
    assert exact - 0.02 <= feature.ks <= exact + 1e-12
