"""Reference statistics of the rows a model was checked with (or its training rows, `--reference-data`): per feature
10 quantile bins, 101 quantiles with the exact CDF at each, mean, std, min, max; and the distribution of the model's
answers on the same rows (monitoring/drift.py compares live traffic with both).

The gateway compares live traffic against these to spot drift. Text models get one feature, the token count per
row (tokens that are not padding), since per-position token ids carry no meaningful distribution.
"""
from __future__ import annotations

import numpy as np

from modelstore.metadata import FeatureStats, PredictionStats, ReferenceStats
from monitoring.drift import class_text

DEFAULT_BINS = 10
QUANTILES = 101  # 0%, 1%, .., 100%
MAX_FEATURES = 256
TOKEN_COUNT_FEATURE = "token_count"


def reference_stats(rows: np.ndarray | None, input_name: str, *, feature_names: list[str] | None = None,
                    bins: int = DEFAULT_BINS, synthetic: bool = False) -> ReferenceStats:
    if rows is None or len(rows) == 0:
        return ReferenceStats(available=False, reason="no sample or training rows were given", input=input_name)
    if synthetic:
        return ReferenceStats(available=False, reason="only synthetic rows were available; they describe no real data",
                              input=input_name)
    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    if table.shape[1] > MAX_FEATURES:
        return ReferenceStats(available=False, input=input_name, rows=len(table),
                              reason=f"input has {table.shape[1]} values per row; statistics are kept for at most "
                                     f"{MAX_FEATURES}")
    names = feature_names if feature_names and len(feature_names) == table.shape[1] else [
        f"f{index}" for index in range(table.shape[1])]
    features = [feature_stats(name, table[:, index], bins) for index, name in enumerate(names)]
    return ReferenceStats(available=True, input=input_name, rows=len(table), features=features)


def token_count_stats(attention_mask: np.ndarray, input_name: str, *, bins: int = DEFAULT_BINS) -> ReferenceStats:
    counts = np.asarray(attention_mask).reshape(len(attention_mask), -1).sum(axis=1).astype(np.float64)
    if len(counts) == 0:
        return ReferenceStats(available=False, reason="no sample texts were given", input=input_name)
    return ReferenceStats(available=True, input=input_name, rows=len(counts),
                          features=[feature_stats(TOKEN_COUNT_FEATURE, counts, bins)])


def feature_stats(name: str, column: np.ndarray, bins: int = DEFAULT_BINS) -> FeatureStats:
    column = np.asarray(column, dtype=np.float64).reshape(-1)
    finite = np.isfinite(column)
    values = np.sort(column[finite])
    non_finite = int(len(column) - len(values))
    if len(values) == 0:
        return FeatureStats(name=name, bin_edges=[], counts=[], mean=0.0, std=0.0, min=0.0, max=0.0,
                            non_finite=non_finite)
    quantiles = np.quantile(values, np.linspace(0.0, 1.0, QUANTILES))
    if (QUANTILES - 1) % bins == 0:
        # The bin edges taken from the quantiles themselves (np.quantile at 0.3 and at 30 x 0.01 can differ in the
        # last bit), so that every PSI edge is also a KS point: a PSI bin is a run of whole KS cells.
        edges = np.unique(quantiles[::(QUANTILES - 1) // bins])
    else:
        edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
        counts = np.array([len(values)])
    else:
        counts, _ = np.histogram(values, bins=edges)
    # The exact reference CDF at each quantile and just below it, so that drift's KS needs no reference rows.
    cdf = np.searchsorted(values, quantiles, side="right") / len(values)
    cdf_below = np.searchsorted(values, quantiles, side="left") / len(values)
    return FeatureStats(name=name, bin_edges=[float(e) for e in edges], counts=[int(c) for c in counts],
                        mean=float(values.mean()), std=float(values.std()), min=float(values.min()),
                        max=float(values.max()), quantiles=[float(q) for q in quantiles], cdf=[float(c) for c in cdf],
                        cdf_below=[float(c) for c in cdf_below], non_finite=non_finite)


def prediction_stats(outputs: dict[str, np.ndarray], *, label_output: str | None,
                     score_output: str | None) -> tuple[PredictionStats | None, str | None]:
    """The reference distribution of a model's answers on the reference rows: class shares from its label output,
    else the distribution of its score when there is one value per row. (stats, None) or (None, why not)."""
    if label_output is not None and label_output in outputs:
        labels = np.asarray(outputs[label_output]).reshape(-1)
        distinct, counts = np.unique(labels, return_counts=True)
        return PredictionStats(kind="classes", output=label_output, rows=len(labels),
                               classes=[class_text(value) for value in distinct],
                               counts=[int(count) for count in counts]), None
    if score_output is not None and score_output in outputs:
        scores = np.asarray(outputs[score_output])
        if scores.ndim >= 1 and scores.dtype.kind in "biuf" and scores.reshape(len(scores), -1).shape[1] == 1:
            return PredictionStats(kind="values", output=score_output, rows=len(scores),
                                   value=feature_stats(score_output, scores.reshape(-1))), None
        return None, f"output {score_output!r} has more than one value per row and there is no label output"
    return None, "the model has no label output and no score output"
