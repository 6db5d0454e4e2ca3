"""Does the ONNX model answer like the source model? Compared on the same rows, output by output.

Scores: the largest absolute difference over the rows whose labels agree must stay within
`tolerance * max(1, largest |reference value|)`. The scale factor keeps one rule for probabilities (scale 1) and for
regressors whose targets are in the hundreds, where float32 (ONNX) against float64 (scikit-learn) arithmetic alone
differs by ~1e-5. Default tolerance 1e-4: measured float32-vs-float64 differences for every family we test are below
3e-5 after scaling.

Labels: at least MIN_LABEL_AGREEMENT of the rows must get the same label. Not 1.0 because a row lying within float32
rounding of a decision threshold may legitimately flip; with fewer than 100 rows this still means every row.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from exporters.errors import ParityError
from modelstore.metadata import ParityResult

DEFAULT_TOLERANCE = 1e-4
MIN_LABEL_AGREEMENT = 0.99


def compare_outputs(reference: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray], *, reference_name: str,
                    label_output: str | None = None, tolerance: float = DEFAULT_TOLERANCE,
                    synthetic_rows: bool = False, magnitude_only: frozenset[str] = frozenset()) -> ParityResult:
    """Compare every output present in `reference` with the ONNX output of the same name (by absolute value for
    those in `magnitude_only`)."""
    missing = [name for name in reference if name not in actual]
    if missing:
        raise ParityError(f"the ONNX model has no output {missing[0]!r} to compare with {reference_name}")
    rows = len(next(iter(reference.values()))) if reference else 0
    agreeing = np.ones(rows, dtype=bool)
    label_agreement = None
    if label_output is not None and label_output in reference:
        expected = np.asarray(reference[label_output]).reshape(rows, -1)
        got = np.asarray(actual[label_output]).reshape(rows, -1)
        agreeing = np.all(expected == got, axis=1)
        label_agreement = float(agreeing.mean()) if rows else 1.0

    max_abs_diff = 0.0
    scale = 1.0
    problems: list[str] = []
    for name, expected in reference.items():
        if name == label_output:
            continue
        expected = np.asarray(expected, dtype=np.float64)
        got = np.asarray(actual[name], dtype=np.float64)
        if expected.size != got.size:
            problems.append(f"output {name!r} has shape {list(got.shape)}, the source gives {list(expected.shape)}")
            continue
        expected = expected.reshape(rows, -1)
        got = got.reshape(rows, -1)
        if name in magnitude_only:
            expected, got = np.abs(expected), np.abs(got)
        if not np.all(np.isfinite(got) == np.isfinite(expected)):
            problems.append(f"output {name!r} has non-finite values where the source has none (or the reverse)")
            continue
        finite = np.isfinite(expected)
        scale = max(scale, float(np.abs(expected[finite]).max(initial=0.0)))
        diff = np.abs(np.where(finite, expected - got, 0.0))[agreeing]
        max_abs_diff = max(max_abs_diff, float(diff.max(initial=0.0)))

    bound = tolerance * scale
    if max_abs_diff > bound:
        problems.append(f"max abs difference {max_abs_diff:.3g} exceeds {bound:.3g} "
                        f"(tolerance {tolerance:g} x scale {scale:.3g})")
    if label_agreement is not None and label_agreement < MIN_LABEL_AGREEMENT:
        problems.append(f"labels agree on {label_agreement:.2%} of rows, below {MIN_LABEL_AGREEMENT:.0%}")
    detail = "; ".join(problems) if problems else (
        f"outputs {', '.join(reference)} compared; scores within {tolerance:g} x max(1, max |reference|)")
    return ParityResult(passed=not problems, rows=rows, synthetic_rows=synthetic_rows, max_abs_diff=max_abs_diff,
                        label_agreement=label_agreement, tolerance=bound, reference=reference_name, detail=detail)


def require_parity(result: ParityResult) -> None:
    if not result.passed:
        raise ParityError(f"ONNX model disagrees with {result.reference} on {result.rows} rows: {result.detail}")
