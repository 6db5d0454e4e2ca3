"""monitoring/drift.py's counting: many rows counted from sorted columns, and a few against every edge at once, equal
the cells of each value found one by one (`_Bins.cells`), on random tables with ties, values at and right next to the
edges, out-of-range and non-finite values, for exported statistics and hand-written edges alike."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters.stats import feature_stats, reference_stats
from modelstore.metadata import FeatureStats, ReferenceStats
from monitoring.drift import LOWEST, SMALL_TABLE_ROWS, DriftLayout
from tests.monitoring.test_drift import metadata_with

SPECIAL = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e300, -1e300, np.finfo(np.float64).max, np.finfo(np.float64).min]


def layout_of(features: list[FeatureStats]) -> DriftLayout:
    layout = DriftLayout.of(metadata_with(ReferenceStats(available=True, input="input", rows=1, features=features)))
    assert layout is not None
    return layout


def value_by_value(layout: DriftLayout, table: np.ndarray) -> np.ndarray:
    """The counts of `table` with each finite value's cells found on its own (`_Bins.cells`), the non-finite ones
    counted in their cell."""
    counts = layout.empty_feature_counts()
    for column, bins in enumerate(layout._features):
        values = table[:, column]
        finite = values[np.isfinite(values)]
        counts[bins.non_finite_at] += len(values) - len(finite)
        for cells in bins.cells(finite):
            np.add.at(counts, cells, 1)
    return counts


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
def test_counts_equal_the_cells_of_each_value_on_exported_statistics(data, columns, rows: int):
    features = [feature_stats(f"f{index}", column) for index, column in enumerate(columns)]
    layout = layout_of(features)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    table = np.column_stack([live_column(data.draw, stats, rows, rng) for stats in features])
    expected = value_by_value(layout, table)
    assert np.array_equal(layout.count_features(table), expected)
    # the small-table path (a comparison against every edge at once) agrees, chunk by chunk
    chunks = [layout.count_features(table[start:start + SMALL_TABLE_ROWS])
              for start in range(0, rows, SMALL_TABLE_ROWS)]
    assert np.array_equal(np.sum(chunks, axis=0), expected)
    assert expected.sum() == 2 * rows * len(features) - sum(
        int((~np.isfinite(table[:, column])).sum()) for column in range(len(features)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), column=reference_column(), rows=st.sampled_from([SMALL_TABLE_ROWS + 1, 500]))
def test_hand_written_edges_count_as_each_value_would(data, column, rows: int):
    """Metadata not written by today's exporter: edges that are some of the quantile points, or any floats."""
    stats = feature_stats("x", column)
    points = np.unique(stats.quantiles)
    if len(points) >= 2 and data.draw(st.booleans()):
        edges = sorted(data.draw(st.sets(st.sampled_from(list(points)), min_size=2, max_size=min(len(points), 11))))
    else:
        edges = sorted(set(data.draw(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=11))))
        edges = edges if len(edges) >= 2 else [edges[0], edges[0] + 1]
    counts = data.draw(st.lists(st.integers(1, 50), min_size=len(edges) - 1, max_size=len(edges) - 1))
    stats = stats.model_copy(update={"bin_edges": [float(edge) for edge in edges], "counts": counts})
    layout = layout_of([stats])
    table = live_column(data.draw, stats, rows, np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))))[:, None]
    assert np.array_equal(layout.count_features(table), value_by_value(layout, table))


def test_old_versions_whose_edges_are_not_quantile_points_count_the_same():
    """Before the exporter took the edges from the quantiles, np.quantile at 0.1 x i and at 0.01 x 10i could differ
    in the last bit: such a version's PSI bins straddle its KS cells, and still count as each value would."""
    values = np.sort(np.random.default_rng(0).normal(size=1000))
    old_edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, 11)))
    stats = feature_stats("x", values)
    assert not np.isin(old_edges[1:-1], stats.quantiles).all()  # the case this test is about
    old = stats.model_copy(update={"bin_edges": [float(edge) for edge in old_edges],
                                   "counts": [int(count) for count in np.histogram(values, bins=old_edges)[0]]})
    layout = layout_of([old])
    table = np.random.default_rng(1).normal(size=(500, 1))
    assert np.array_equal(layout.count_features(table), value_by_value(layout, table))


def test_quantile_points_one_float_apart_and_at_the_largest_float():
    """The KS cell strictly between two points one float apart is empty, and the next float above the largest one
    is +inf: values there still count where each value would."""
    top = np.finfo(np.float64).max
    values = np.array([1.0, np.nextafter(1.0, 2.0), 2.0, top] * 50)
    with np.errstate(over="ignore"):  # the reference's mean and std overflow
        layout = layout_of([feature_stats("x", values)])
    table = np.concatenate([values, [np.nextafter(top, 0), np.inf, -np.inf, np.nan, LOWEST, 0.5, 3.0]] * 10)[:, None]
    counts = layout.count_features(table)
    assert np.array_equal(counts, value_by_value(layout, table))
    assert counts[layout._features[0].non_finite_at] == 30


def test_exported_bin_edges_are_quantile_points_and_count_the_reference():
    rng = np.random.default_rng(3)
    table = np.column_stack([rng.normal(size=997), rng.integers(0, 4, 997), rng.lognormal(size=997)])
    for feature in reference_stats(table, "input").features:
        assert np.isin(feature.bin_edges, feature.quantiles).all()
        assert sum(feature.counts) == 997 and len(feature.counts) == len(feature.bin_edges) - 1
