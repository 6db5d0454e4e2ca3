"""Input and prediction drift of one model version against the reference statistics in its metadata.

A `DriftLayout` is derived once per version from metadata.json: the fixed cells every row is counted into. Counts
are int64 vectors of one shape per layout, so windows, requests and workers add them up with `+`; memory is fixed
whatever the traffic. `drift_report` turns summed counts into the figures; the gateway (online) and `onnxgate drift`
(offline) both go through these functions, so both give the same report on the same rows.

Per feature the cells are:
- the reference's PSI bins (10 quantile bins at export, fewer when quantiles coincide): bin i is
  [edge i, edge i+1), the last one closed, as numpy.histogram built them; live values below the first edge count in
  the first bin, above the last edge in the last bin;
- when the version kept its 101 quantiles q_0..q_K (exported since drift monitoring), 2K+1 cells: below q_0, at q_0,
  strictly between q_0 and q_1, at q_1, ..., above q_K, so the live CDF is known exactly at every q_k and just
  below it (see `_ks`);
- one cell for non-finite values (NaN, +-inf): they are counted there and left out of PSI and KS, which compare the
  finite values only; the report gives their number per feature.
Many rows (the gateway's buffer of 1,024) are counted by sorting each feature's column once and searching the cells'
edges in it (`_SortedCells`), not by searching every value among the edges: a cell [a, b) holds the values at or above
a and below b, the difference of two positions in the sorted column.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from modelstore.metadata import FeatureStats, ModelMetadata, PredictionStats

PSI_FLOOR = 1e-4
"""A bin's share on either side is raised to at least this before PSI: an empty bin would make PSI infinite, and a
bin the live window has not reached yet should weigh what a 1-in-10,000 row would, not more."""

SMALL_TABLE_ROWS = 64  # up to this many rows, count_features compares against all edges at once
LOWEST = np.nextafter(-np.inf, 0.0)  # the lowest finite float: only -inf sorts below it

DriftStatus = Literal["ok", "drift", "insufficient data"]


class DriftThresholds(BaseModel):
    """When a feature, a window and the predictions count as drifted."""

    model_config = ConfigDict(extra="forbid")

    psi: float = Field(default=0.25, gt=0, description="a feature drifts when its PSI is above this (or its KS "
                                                       "statistic above `ks`)")
    ks: float = Field(default=0.1, gt=0, le=1, description="a feature drifts when its two-sample Kolmogorov-Smirnov "
                      "statistic (max |F_ref - F_live|, not a p-value, so that huge windows do not always drift) is "
                      "above this")
    drifted_share: float = Field(default=0.3, gt=0, le=1, description="status 'drift' when at least this share of "
                                 "the features drifted")
    min_rows: int = Field(default=500, ge=1, description="with fewer rows in the window the status is 'insufficient "
                          "data' and nothing is marked drifted")
    prediction_psi: float = Field(default=0.25, gt=0, description="the predictions drift when the PSI of their "
                                  "distribution (class shares, or the score's 10 bins) is above this")


class FeatureDrift(BaseModel):
    name: str
    psi: float | None = Field(description="over the reference bins; None when the window has no finite value")
    ks: float | None = Field(description="max |F_ref - F_live| at the reference quantiles (or bin edges for "
                             "versions without quantiles); None when the window has no finite value")
    drifted: bool
    non_finite: int = Field(default=0, description="values in the window that are NaN or infinite, left out of "
                            "psi and ks")


class PredictionDrift(BaseModel):
    available: bool
    reason: str | None = Field(default=None, description="why prediction drift is unavailable")
    output: str | None = None
    kind: Literal["classes", "values"] | None = None
    rows: int = 0
    psi: float | None = None
    total_variation: float | None = Field(default=None, description="classes only: half the sum of |share "
                                          "difference| over the classes")
    drifted: bool = False


class DriftReport(BaseModel):
    """The JSON of GET /drift/{model} and of `onnxgate drift --json`."""

    model: str
    version: str
    environment: str | None
    window_rows: int
    status: DriftStatus
    drifted_share: float | None
    thresholds: DriftThresholds
    features: list[FeatureDrift]
    prediction: PredictionDrift
    notes: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class _Bins:
    """The cells of one distribution inside a layout's count vector."""

    name: str
    inner_edges: np.ndarray     # PSI bin edges without the outer two: searchsorted(side="right") gives the bin
    ref_shares: np.ndarray      # reference share per PSI bin
    psi_at: int
    points: np.ndarray | None   # distinct reference quantiles, sorted
    ref_cdf: np.ndarray | None  # F_ref just below and at each point, interleaved: (below q_0, at q_0, below q_1, ..)
    ks_at: int
    non_finite_at: int
    size: int                   # cells used, from psi_at

    @classmethod
    def of(cls, stats: FeatureStats, start: int, *, quantiles: bool = True) -> _Bins:
        edges = np.asarray(stats.bin_edges, dtype=np.float64)
        counts = np.asarray(stats.counts, dtype=np.float64)
        if len(edges) < 2 or counts.sum() <= 0:  # no finite reference value: one bin holds everything
            edges, counts = np.zeros(2), np.ones(1)
        ref_shares = counts / counts.sum()
        points = ref_cdf = None
        bins = len(counts)
        ks_cells = 0
        if quantiles and stats.quantiles and stats.cdf and stats.cdf_below:
            quantiles = np.asarray(stats.quantiles, dtype=np.float64)
            points, first = np.unique(quantiles, return_index=True)
            ref_cdf = np.empty(2 * len(points))
            ref_cdf[0::2] = np.asarray(stats.cdf_below, dtype=np.float64)[first]
            ref_cdf[1::2] = np.asarray(stats.cdf, dtype=np.float64)[first]
            ks_cells = 2 * len(points) + 1
        return cls(name=stats.name, inner_edges=edges[1:-1].copy(), ref_shares=ref_shares, psi_at=start,
                   points=points, ref_cdf=ref_cdf, ks_at=start + bins, non_finite_at=start + bins + ks_cells,
                   size=bins + ks_cells + 1)

    def cells(self, values: np.ndarray) -> list[np.ndarray]:
        """Cell indexes (in the layout's vector) of finite `values`, PSI bins then KS cells."""
        found = [self.psi_at + np.searchsorted(self.inner_edges, values, side="right")]
        if self.points is not None:
            below = np.searchsorted(self.points, values, side="left")
            at_point = values == self.points[np.minimum(below, len(self.points) - 1)]
            found.append(self.ks_at + 2 * below + at_point)
        return found

    def runs(self) -> list[tuple[int, np.ndarray]]:
        """The same cells as `cells`, as runs of neighbouring cells (first cell's index, edges): the run's cell i
        holds the finite values v with edges[i] <= v < edges[i + 1]. PSI bins: the lowest finite float, the inner
        edges, +inf. KS cells (below q_0, at q_0, strictly between q_0 and q_1, ..., above q_K): the lowest finite
        float, then q_k and the next float above it for each k, then +inf."""
        runs = [(self.psi_at, np.concatenate(([LOWEST], self.inner_edges, [np.inf])))]
        if self.points is not None:
            ks_edges = np.empty(2 * len(self.points) + 2)
            ks_edges[0], ks_edges[-1] = LOWEST, np.inf
            ks_edges[1:-1:2] = self.points
            with np.errstate(over="ignore"):  # above the largest float is +inf
                ks_edges[2:-1:2] = np.nextafter(self.points, np.inf)
            runs.append((self.ks_at, ks_edges))
        return runs

    def psi_counts(self, counts: np.ndarray) -> np.ndarray:
        return counts[self.psi_at:self.psi_at + len(self.ref_shares)]

    def ks_counts(self, counts: np.ndarray) -> np.ndarray | None:
        if self.points is None:
            return None
        return counts[self.ks_at:self.ks_at + 2 * len(self.points) + 1]


@dataclass(frozen=True)
class _SortedCells:
    """count_features for many rows: each feature's column sorted once, then one searchsorted of all its cells' edges
    (see _Bins.runs) into it, so that the cost per value is a share of a sort (~0.1 µs a row for 30 features) rather
    than a binary search that mispredicts its branches (~2 µs a row). A run's positions p_0..p_n (values below each
    edge, side="left") give its cells' counts p_1 - p_0, .., p_n - p_n-1. Non-finite values fall in no run: -inf is
    below the lowest finite float, +inf and NaN (sorted last) are not below +inf; their number is the rows less the
    finite ones, which the first run spans (from the lowest finite float to +inf)."""

    edges: list[np.ndarray]      # per feature, its runs' edges one after the other
    slots: list[slice]           # where each feature's positions go in the positions vector
    cell_at: np.ndarray          # the cell of each count kept from np.diff(positions) ...
    diff_at: np.ndarray          # ... and where it is in np.diff(positions) (the differences across runs are not)
    first_run: np.ndarray        # per feature, where its first run's first and last positions are: its finite values
    first_run_end: np.ndarray
    non_finite_at: np.ndarray
    size: int

    @classmethod
    def of(cls, features: list[_Bins], size: int) -> _SortedCells:
        edges, slots, cell_at, diff_at, first_run, first_run_end = [], [], [], [], [], []
        taken = 0
        for bins in features:
            runs = bins.runs()
            edges.append(np.concatenate([run_edges for _, run_edges in runs]))
            slots.append(slice(taken, taken + len(edges[-1])))
            first_run.append(taken)
            first_run_end.append(taken + len(runs[0][1]) - 1)
            for cell, run_edges in runs:
                cells = len(run_edges) - 1
                cell_at.append(np.arange(cell, cell + cells))
                diff_at.append(np.arange(taken, taken + cells))
                taken += len(run_edges)
        return cls(edges=edges, slots=slots, cell_at=np.concatenate(cell_at), diff_at=np.concatenate(diff_at),
                   first_run=np.array(first_run), first_run_end=np.array(first_run_end),
                   non_finite_at=np.array([bins.non_finite_at for bins in features]), size=size)

    def count(self, table: np.ndarray) -> np.ndarray:
        columns = np.sort(table.T, axis=1)
        positions = np.empty(self.slots[-1].stop, dtype=np.int64)
        for column, edges, slot in zip(columns, self.edges, self.slots, strict=True):
            positions[slot] = np.searchsorted(column, edges)
        counts = np.empty(self.size, dtype=np.int64)
        counts[self.cell_at] = np.diff(positions)[self.diff_at]
        counts[self.non_finite_at] = len(table) - (positions[self.first_run_end] - positions[self.first_run])
        return counts


class DriftLayout:
    """Fixed binning of one version, derived once from its metadata's reference statistics (never recomputed per
    check). Build it with `DriftLayout.of(metadata)`."""

    def __init__(self, *, input_name: str, features: list[_Bins], prediction: PredictionStats | None,
                 prediction_reason: str | None, token_count: tuple[str | None, int] | None, notes: list[str]):
        self.input_name = input_name
        self.feature_names: list[str] = [bins.name for bins in features]
        self._features = features
        self._feature_size = sum(bins.size for bins in features)
        self._sorted_cells = _SortedCells.of(features, self._feature_size)
        self._token_count = token_count  # (attention mask input or None, pad id) for text models
        # The same edges padded with +inf into (features, n) matrices, for _count_small.
        self._inner = _padded([bins.inner_edges for bins in features])
        self._points = _padded([bins.points if bins.points is not None else np.zeros(0) for bins in features])
        self._has_points = np.array([bins.points is not None for bins in features])
        self._feature_index = np.arange(len(features))[None, :]
        self._psi_at = np.array([bins.psi_at for bins in features], dtype=np.int64)
        self._ks_at = np.array([bins.ks_at for bins in features], dtype=np.int64)
        self._non_finite_at = np.array([bins.non_finite_at for bins in features], dtype=np.int64)
        self._prediction = prediction
        self._prediction_reason = prediction_reason
        self._classes: dict[str, int] = {}
        self._prediction_bins: _Bins | None = None
        self._class_numbers: tuple[np.ndarray, np.ndarray] | None = None  # integer classes, sorted, and their cells
        if prediction is not None and prediction.kind == "classes":
            self._classes = {label: index for index, label in enumerate(prediction.classes or [])}
            self._class_numbers = _integer_classes(list(self._classes))
        elif prediction is not None and prediction.value is not None:
            self._prediction_bins = _Bins.of(prediction.value, 0, quantiles=False)  # PSI only
        self.notes = notes

    @classmethod
    def of(cls, metadata: ModelMetadata) -> DriftLayout | None:
        """None when the version has no usable reference (no statistics, or none per feature)."""
        stats = metadata.reference_stats
        if not stats.available or not stats.features or stats.input is None:
            return None
        features, start = [], 0
        for feature in stats.features:
            bins = _Bins.of(feature, start)
            features.append(bins)
            start += bins.size
        notes = []
        if any(bins.points is None for bins in features):
            notes.append("this version was exported before quantiles were kept: PSI and KS come from its 10 bins "
                         "per feature (KS only at the bin edges, so it can fall short of the exact one by up to "
                         "about 0.1)")
        token_count = None
        if metadata.tokenizer is not None:
            token_count = (metadata.tokenizer.attention_mask, metadata.tokenizer.pad_id)
        prediction, reason = _usable_prediction(stats.prediction, stats.prediction_reason)
        return cls(input_name=stats.input, features=features, prediction=prediction, prediction_reason=reason,
                   token_count=token_count, notes=notes)

    @property
    def has_prediction_reference(self) -> bool:
        return self._prediction is not None

    def empty_feature_counts(self) -> np.ndarray:
        return np.zeros(self._feature_size, dtype=np.int64)

    def empty_prediction_counts(self) -> np.ndarray:
        if self._prediction is None:
            return np.zeros(0, dtype=np.int64)
        if self._prediction_bins is not None:
            return np.zeros(self._prediction_bins.size, dtype=np.int64)
        return np.zeros(len(self._classes) + 1, dtype=np.int64)  # the last cell: classes the reference never saw

    def feature_table(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """(rows, features) float64 from a request's decoded input feeds: the reference's input, or for a text
        model the token count per row (the attention mask's sum, else the ids that are not padding). None when the
        feeds do not hold it in a shape that matches the reference."""
        value = feeds.get(self.input_name)
        if value is None:
            return None
        value = np.asarray(value)
        if value.ndim == 0 or value.dtype.kind not in "biuf":
            return None
        rows = value.shape[0]
        if self._token_count is not None:
            mask_name, pad_id = self._token_count
            mask = feeds.get(mask_name) if mask_name else None
            mask = np.asarray(mask) if mask is not None else (value != pad_id)
            if mask.shape[:1] != (rows,):
                return None
            value = mask.reshape(rows, -1).sum(axis=1)
        table = value.reshape(rows, -1).astype(np.float64, copy=False)
        return table if table.shape[1] == len(self._features) else None

    def count_features(self, table: np.ndarray) -> np.ndarray:
        """int64 counts of the rows of `table` (see feature_table): always the same shape, addable."""
        table = np.asarray(table, dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != len(self._features):
            raise ValueError(f"expected a (rows, {len(self._features)}) table, got shape {table.shape}")
        if table.shape[0] == 0:
            return self.empty_feature_counts()
        if table.shape[0] <= SMALL_TABLE_ROWS:
            return self._count_small(table)
        return self._sorted_cells.count(table)

    def _count_small(self, table: np.ndarray) -> np.ndarray:
        """count_features for a few rows (a request): one broadcast comparison against every feature's edges at
        once, which costs less than a searchsorted call per feature. Same cells as the searchsorted path."""
        values = table[:, :, None]
        finite = np.isfinite(table)
        psi_cells = (values >= self._inner).sum(axis=2, dtype=np.int64) + self._psi_at
        psi_cells = np.where(finite, psi_cells, self._non_finite_at)
        below = (values > self._points).sum(axis=2, dtype=np.int64)  # points < value; the +inf padding never counts
        at_point = self._points[0][self._feature_index, below] == table
        ks_cells = np.where(finite & self._has_points, 2 * below + at_point + self._ks_at,
                            self._feature_size)  # the last cell: discarded
        found = np.bincount(np.concatenate((psi_cells.ravel(), ks_cells.ravel())), minlength=self._feature_size + 1)
        return found[:-1].astype(np.int64, copy=False)

    def count_predictions(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """int64 counts of the model's answers (outputs by name): fixed shape, addable; empty when the version has
        no output reference; zeros when `outputs` lacks the reference's output."""
        counts = self.empty_prediction_counts()
        if self._prediction is None or self._prediction.output not in outputs:
            return counts
        value = np.asarray(outputs[self._prediction.output])
        if value.ndim == 0:
            return counts
        if self._prediction_bins is not None:
            if value.dtype.kind not in "biuf" or value.reshape(value.shape[0], -1).shape[1] != 1:
                return counts
            values = value.reshape(-1).astype(np.float64, copy=False)
            usable = np.isfinite(values)
            counts[self._prediction_bins.non_finite_at] += int((~usable).sum())
            cells = self._prediction_bins.cells(values[usable])[0]
            return counts + np.bincount(cells, minlength=len(counts)).astype(np.int64, copy=False)
        values = value.reshape(-1)
        other = len(self._classes)
        if self._class_numbers is not None and values.dtype.kind in "biu":
            sorted_numbers, order = self._class_numbers
            at = np.minimum(np.searchsorted(sorted_numbers, values), len(sorted_numbers) - 1)
            index = np.where(sorted_numbers[at] == values, order[at], other)
            return counts + np.bincount(index, minlength=len(counts)).astype(np.int64, copy=False)
        distinct, inverse = np.unique(values, return_inverse=True)
        index = np.array([self._classes.get(class_text(item), other) for item in distinct], dtype=np.int64)
        return counts + np.bincount(index[inverse.reshape(-1)], minlength=len(counts)).astype(np.int64, copy=False)

    def _feature_drift(self, counts: np.ndarray, thresholds: DriftThresholds, judge: bool) -> list[FeatureDrift]:
        found = []
        for bins in self._features:
            live = bins.psi_counts(counts)
            non_finite = int(counts[bins.non_finite_at])
            if live.sum() == 0:
                # Only non-finite values (or none): nothing to compare, and a reference that had finite values
                # is not what the window shows, so it counts as drifted when there are values at all.
                found.append(FeatureDrift(name=bins.name, psi=None, ks=None, drifted=judge and non_finite > 0,
                                          non_finite=non_finite))
                continue
            psi_value = psi(bins.ref_shares, live)
            ks_value = _ks(bins, counts)
            drifted = judge and (psi_value > thresholds.psi or ks_value > thresholds.ks)
            found.append(FeatureDrift(name=bins.name, psi=psi_value, ks=ks_value, drifted=drifted,
                                      non_finite=non_finite))
        return found

    def _prediction_drift(self, counts: np.ndarray, thresholds: DriftThresholds) -> PredictionDrift:
        reference = self._prediction
        if reference is None:
            return PredictionDrift(available=False, reason=self._prediction_reason)
        if self._prediction_bins is not None:
            live = self._prediction_bins.psi_counts(counts)
            ref_shares = self._prediction_bins.ref_shares
            total_variation = None
        else:
            live = counts
            ref_counts = np.asarray(list(reference.counts or []) + [0], dtype=np.float64)
            ref_shares = ref_counts / ref_counts.sum()
        rows = int(live.sum())
        if rows == 0:
            return PredictionDrift(available=True, output=reference.output, kind=reference.kind, rows=0)
        value = psi(ref_shares, live)
        if self._prediction_bins is None:
            total_variation = float(0.5 * np.abs(live / rows - ref_shares).sum())
        return PredictionDrift(available=True, output=reference.output, kind=reference.kind, rows=rows, psi=value,
                               total_variation=total_variation,
                               drifted=rows >= thresholds.min_rows and value > thresholds.prediction_psi)


def psi(ref_shares: np.ndarray, live_counts: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index sum((live - ref) * ln(live / ref)) over the bins, each share raised to at least
    `floor` on both sides (shares are not renormalised after the floor)."""
    ref = np.maximum(np.asarray(ref_shares, dtype=np.float64), floor)
    live_counts = np.asarray(live_counts, dtype=np.float64)
    live = np.maximum(live_counts / live_counts.sum(), floor)
    return float(np.sum((live - ref) * np.log(live / ref)))


def _ks(bins: _Bins, counts: np.ndarray) -> float:
    """max |F_ref - F_live| over the reference quantiles q_k, evaluated at each q_k and just below it.

    Both CDFs are steps, so between two neighbouring points q_k < q_k+1 the exact statistic can exceed what the two
    ends show by at most the reference share strictly between them (F_ref moves by that much there, F_live is
    bracketed by its values at q_k and just below q_k+1). With 101 quantiles that share is at most about 1% (plus
    one reference row), and 0 for discrete features whose values are all quantiles: this value is never above the
    exact two-sample statistic (scipy.stats.ks_2samp on the same rows) and at most ~0.01 below it.
    Without quantiles (older versions) it is evaluated just below each inner bin edge, which is coarser (~0.1)."""
    cells = bins.ks_counts(counts)
    if cells is None:
        live = bins.psi_counts(counts).astype(np.float64)
        live_cdf = np.cumsum(live)[:-1] / live.sum()
        ref_cdf = np.cumsum(bins.ref_shares)[:-1]
        return float(np.max(np.abs(live_cdf - ref_cdf))) if len(ref_cdf) else 0.0
    cells = cells.astype(np.float64)
    live_cdf = np.cumsum(cells)[:-1] / cells.sum()
    return float(np.max(np.abs(live_cdf - bins.ref_cdf)))


def drift_report(layout: DriftLayout, feature_counts: np.ndarray, prediction_counts: np.ndarray, rows: int,
                 thresholds: DriftThresholds, *, model: str, version: str, environment: str | None) -> DriftReport:
    """The report of a window of `rows` rows whose counts (from `layout`) are summed in the two vectors."""
    feature_counts = np.asarray(feature_counts)
    prediction_counts = np.asarray(prediction_counts)
    if feature_counts.shape != layout.empty_feature_counts().shape:
        raise ValueError(f"feature counts of shape {feature_counts.shape} do not belong to this layout")
    if prediction_counts.shape != layout.empty_prediction_counts().shape:
        raise ValueError(f"prediction counts of shape {prediction_counts.shape} do not belong to this layout")
    enough = rows >= thresholds.min_rows
    features = layout._feature_drift(feature_counts, thresholds, enough)
    prediction = layout._prediction_drift(prediction_counts, thresholds)
    if not enough:
        status: DriftStatus = "insufficient data"
        share = None
    else:
        share = sum(feature.drifted for feature in features) / len(features)
        status = "drift" if share >= thresholds.drifted_share else "ok"
    return DriftReport(model=model, version=version, environment=environment, window_rows=rows, status=status,
                       drifted_share=share, thresholds=thresholds, features=features, prediction=prediction,
                       notes=list(layout.notes))


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    padded = np.full((len(rows), max(len(row) for row in rows) + 1), np.inf)  # at least one +inf per row
    for index, row in enumerate(rows):
        padded[index, :len(row)] = row
    return padded[None, :, :]


def _integer_classes(classes: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Classes that are all integers written as text ("0", "7"): sorted as numbers with their cell indexes, so that
    integer label outputs are counted with searchsorted instead of text lookups. None otherwise."""
    try:
        numbers = np.array([int(label) for label in classes], dtype=np.int64)
    except ValueError:
        return None
    if not len(numbers) or [str(number) for number in numbers] != classes:
        return None
    order = np.argsort(numbers, kind="stable")
    return numbers[order], order.astype(np.int64)


def _usable_prediction(stats: PredictionStats | None, reason: str | None) -> tuple[PredictionStats | None, str]:
    if stats is None:
        return None, reason or "this version has no reference distribution of its outputs (exported before drift "\
                               "monitoring, or without reference rows)"
    if stats.kind == "classes" and (not stats.classes or not stats.counts or sum(stats.counts) == 0):
        return None, "the reference has no class counts"
    if stats.kind == "values" and stats.value is None:
        return None, "the reference has no value distribution"
    return stats, ""


def class_text(value: object) -> str:
    """A class as the reference names it: the text of the output's value (bytes decoded)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)
