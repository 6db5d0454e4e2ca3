"""monitoring/drift.py's counting: the PSI counts derived from the KS cells (when every PSI edge is a quantile point)
equal the PSI bins counted row by row, on random tables with ties, out-of-range and non-finite values."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters.stats import feature_stats, reference_stats
from modelstore.metadata import FeatureStats, ReferenceStats
from monitoring.drift import SMALL_TABLE_ROWS, DriftLayout
from tests.monitoring.test_drift import metadata_with

SPECIAL = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e300, -1e300, np.finfo(np.float64).max, np.finfo(np.float64).min]


def layouts(features: list[FeatureStats]) -> tuple[DriftLayout, DriftLayout]:
    """The same metadata with the PSI counts derived (where possible) and counted per row (today's path before)."""
    metadata = metadata_with(ReferenceStats(available=True, input="input", rows=1, features=features))
    fast, slow = DriftLayout.of(metadata), DriftLayout.of(metadata, derive_psi=False)
    assert fast is not None and slow is not None
    return fast, slow


@st.composite
def reference_column(draw) -> np.ndarray:
    """Continuous values, or few distinct ones (ties, quantiles that coincide), or a single repeated one."""
    size = draw(st.integers(1, 300))
    kind = draw(st.sampled_from(["continuous", "discrete", "constant"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "continuous":
        return rng.normal(draw(st.floats(-1e6, 1e6)), draw(st.floats(1e-9, 1e6)), size)
    if kind == "discrete":
        return rng.integers(-3, draw(st.integers(-2, 8)), size).astype(np.float64) * draw(st.sampled_from([1, 0.1,
                                                                                                            1e-300]))
    return np.full(size, draw(st.sampled_from([0.0, -0.0, 2.5, -1e150])))


def live_column(draw, stats: FeatureStats, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Values at the quantile points and bin edges, the floats right next to them, between them, out of the
    reference's range, and non-finite."""
    known = np.asarray([*(stats.quantiles or []), *stats.bin_edges] or [0.0], dtype=np.float64)
    points = np.unique(known)
    with np.errstate(over="ignore"):
        outside = [known.min() - np.abs(known).max() - 1, known.max() + np.abs(known).max() + 1]
        pool = np.concatenate([known, np.nextafter(known, np.inf), np.nextafter(known, -np.inf),
                               points[:-1] / 2 + points[1:] / 2, outside, SPECIAL])
    share_special = draw(st.sampled_from([0.0, 0.05, 0.5]))
    column = rng.choice(pool, rows)
    special = rng.random(rows) < share_special
    column[special] = rng.choice(np.array(SPECIAL), int(special.sum()))
    return column


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), columns=st.lists(reference_column(), min_size=1, max_size=4),
       rows=st.sampled_from([1, 7, SMALL_TABLE_ROWS, SMALL_TABLE_ROWS + 1, 300, 1024]))
def test_derived_psi_counts_equal_the_per_row_counts_on_exported_statistics(data, columns, rows: int):
    features = [feature_stats(f"f{index}", column) for index, column in enumerate(columns)]
    fast, slow = layouts(features)
    # exporters/stats.py takes the bin edges from the quantiles: every new version gets the derived PSI counts
    assert all(bins.psi_of_ks is not None for bins in fast._features)
    assert all(bins.psi_of_ks is None for bins in slow._features)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    table = np.column_stack([live_column(data.draw, stats, rows, rng) for stats in features])
    expected = slow.count_features(table)
    assert np.array_equal(fast.count_features(table), expected)
    # the small-table path (a comparison against every edge at once) agrees, chunk by chunk
    chunks = [fast.count_features(table[start:start + SMALL_TABLE_ROWS])
              for start in range(0, rows, SMALL_TABLE_ROWS)]
    assert np.array_equal(np.sum(chunks, axis=0), expected)
    assert expected.sum() == 2 * rows * len(features) - sum(
        int((~np.isfinite(table[:, column])).sum()) for column in range(len(features)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), column=reference_column(), rows=st.sampled_from([SMALL_TABLE_ROWS + 1, 500]))
def test_hand_written_edges_derive_only_when_they_are_quantile_points(data, column, rows: int):
    """Metadata not written by today's exporter: edges that are some of the points (derived), or any floats
    (counted per row, as before); the counts are the same either way."""
    stats = feature_stats("x", column)
    points = np.unique(stats.quantiles)
    if len(points) >= 2 and data.draw(st.booleans()):
        edges = sorted(data.draw(st.sets(st.sampled_from(list(points)), min_size=2, max_size=min(len(points), 11))))
    else:
        edges = sorted(set(data.draw(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=11))))
        edges = edges if len(edges) >= 2 else [edges[0], edges[0] + 1]
    counts = data.draw(st.lists(st.integers(1, 50), min_size=len(edges) - 1, max_size=len(edges) - 1))
    stats = stats.model_copy(update={"bin_edges": [float(edge) for edge in edges], "counts": counts})
    fast, slow = layouts([stats])
    subset = bool(np.isin(edges[1:-1], points).all())
    assert (fast._features[0].psi_of_ks is not None) == subset
    table = live_column(data.draw, stats, rows, np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))))[:, None]
    assert np.array_equal(fast.count_features(table), slow.count_features(table))


def test_old_versions_whose_edges_are_not_quantile_points_are_counted_per_row():
    """Before the exporter took the edges from the quantiles, np.quantile at 0.1 x i and at 0.01 x 10i could differ
    in the last bit: such a version keeps the per-row PSI count, with the same figures."""
    values = np.sort(np.random.default_rng(0).normal(size=1000))
    old_edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, 11)))
    stats = feature_stats("x", values)
    assert not np.isin(old_edges[1:-1], stats.quantiles).all()  # the case this test is about
    old = stats.model_copy(update={"bin_edges": [float(edge) for edge in old_edges],
                                   "counts": [int(count) for count in np.histogram(values, bins=old_edges)[0]]})
    fast, slow = layouts([old])
    assert fast._features[0].psi_of_ks is None
    table = np.random.default_rng(1).normal(size=(500, 1))
    assert np.array_equal(fast.count_features(table), slow.count_features(table))


def test_exported_bin_edges_are_quantile_points_and_count_the_reference():
    rng = np.random.default_rng(3)
    table = np.column_stack([rng.normal(size=997), rng.integers(0, 4, 997), rng.lognormal(size=997)])
    for feature in reference_stats(table, "input").features:
        assert np.isin(feature.bin_edges, feature.quantiles).all()
        assert sum(feature.counts) == 997 and len(feature.counts) == len(feature.bin_edges) - 1
