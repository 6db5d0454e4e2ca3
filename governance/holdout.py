"""Reading a holdout file (CSV with a header) into the model's feeds, the true labels and the groups.

Feature columns are matched to the model by name when the reference statistics name them (any order), else by
position in the model's input order. Everything that does not fit is refused with one line naming the first problem.
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from governance.errors import HoldoutError, NotEvaluable
from governance.signature import InputColumns, input_columns, task_of
from modelstore.metadata import ModelMetadata


@dataclass(frozen=True)
class Holdout:
    """`labels`: strings for a classifier (compared with the model's class names), float64 for a regressor."""

    features: dict[str, np.ndarray]
    labels: np.ndarray
    groups: np.ndarray | None
    sha256: str
    rows: int
    columns: list[str]


@dataclass(frozen=True)
class _Table:
    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # the file line each row ends on, for error messages

    def column(self, name: str) -> list[str]:
        index = self.header.index(name)
        return [row[index] for row in self.rows]


def read_holdout(path: Path, label: str, group: str | None, metadata: ModelMetadata) -> Holdout:
    task = task_of(metadata)
    layout = input_columns(metadata)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise HoldoutError(f"cannot read holdout {path}: {exc.strerror}") from None
    table = _parse_csv(raw, Path(path).name)
    for role, column in (("label", label), ("group", group)):
        if column is not None and column not in table.header:
            raise HoldoutError(f"holdout has no {role} column {column!r} (columns: {', '.join(table.header)})")
    if group is not None and group == label:
        raise HoldoutError(f"the group column {group!r} is also the label column")
    feature_columns = [name for name in table.header if name not in (label, group)]
    ordered = _match_features(feature_columns, layout, metadata)
    features = _feeds(table, ordered, layout)
    labels = _labels(table, label, task, metadata)
    groups = np.array([value.strip() for value in table.column(group)], dtype=str) if group is not None else None
    return Holdout(features=features, labels=labels, groups=groups, sha256=hashlib.sha256(raw).hexdigest(),
                   rows=len(table.rows), columns=list(table.header))


@dataclass(frozen=True)
class FeatureRows:
    """Rows of feature values only (no label), as the model's feeds."""

    features: dict[str, np.ndarray]
    sha256: str
    rows: int


def read_feature_rows(path: Path, metadata: ModelMetadata) -> FeatureRows:
    """A CSV with a header (feature columns matched as for a holdout, no label or group column) or a .npy matrix of
    rows whose values fill the model's inputs in order. Numeric-input models only."""
    where = f"{metadata.name} {metadata.version}"
    if metadata.tokenizer is not None or any(spec.dtype == "string" for spec in metadata.inputs):
        raise NotEvaluable(f"{where} takes text; rows from a file must be numeric feature columns")
    layout = input_columns(metadata)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise HoldoutError(f"cannot read {path}: {exc.strerror}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if Path(path).suffix.lower() == ".npy":
        matrix = _load_npy(raw, Path(path).name)
        return FeatureRows(features=_feeds_from_matrix(matrix, layout), sha256=digest, rows=len(matrix))
    table = _parse_csv(raw, Path(path).name, "data")
    features = _feeds(table, _match_features(list(table.header), layout, metadata, "data"), layout, "data")
    return FeatureRows(features=features, sha256=digest, rows=len(table.rows))


def _load_npy(raw: bytes, display: str) -> np.ndarray:
    try:
        matrix = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise HoldoutError(f"{display} is not a .npy array: {exc}") from None
    if matrix.ndim == 0 or len(matrix) == 0:
        raise HoldoutError(f"{display} has no rows")
    if matrix.dtype.kind not in "biuf":
        raise HoldoutError(f"{display} holds {matrix.dtype} values; expected numbers")
    matrix = matrix.reshape(len(matrix), -1).astype(np.float64)
    finite = np.isfinite(matrix)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        raise HoldoutError(f"{display} row {row + 1}, column {column + 1}: {matrix[row, column]} is not a finite number")
    return matrix


def _feeds_from_matrix(matrix: np.ndarray, layout: list[InputColumns]) -> dict[str, np.ndarray]:
    width = sum(item.width for item in layout)
    if matrix.shape[1] != width:
        signature = "; ".join(item.spec.describe() for item in layout)
        raise HoldoutError(f"rows have {matrix.shape[1]} values, the model takes {width} ({signature})")
    feeds, start = {}, 0
    for item in layout:
        block = matrix[:, start:start + item.width]
        start += item.width
        feeds[item.spec.name] = block.reshape((len(matrix), *item.row_shape)).astype(item.spec.dtype)
    return feeds


def check_known_labels(labels: np.ndarray, classes: list[str], where: str) -> None:
    """Refuse a true label that is none of the model's classes, naming the first (in row order)."""
    known = np.isin(labels, np.asarray(classes, dtype=str))
    if not known.all():
        first = int(np.argmin(known))
        shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
        raise HoldoutError(f"label {str(labels[first])!r} (row {first + 1}) is not a class of {where} "
                           f"(classes: {shown})")


def _parse_csv(raw: bytes, display: str, what: str = "holdout") -> _Table:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HoldoutError(f"{what} {display} is not UTF-8 text (byte {exc.start}); expected CSV") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise HoldoutError(f"{what} {display} is empty (no header row)")
        header = [cell.strip() for cell in header]
        _check_header(header, display, what)
        rows, lines = [], []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if len(row) != len(header):
                raise HoldoutError(f"{what} {display} line {reader.line_num} has {len(row)} values; the header has "
                                   f"{len(header)}")
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise HoldoutError(f"{what} {display} is not valid CSV at line {reader.line_num}: {exc}") from None
    if not rows:
        raise HoldoutError(f"{what} {display} has a header but no rows")
    return _Table(header, rows, lines)


def _check_header(header: list[str], display: str, what: str = "holdout") -> None:
    seen = set()
    for index, name in enumerate(header):
        if not name:
            raise HoldoutError(f"{what} {display}: column {index + 1} has no name")
        if name in seen:
            raise HoldoutError(f"{what} {display}: column {name!r} appears twice")
        seen.add(name)


def _reference_names(layout: list[InputColumns], metadata: ModelMetadata) -> list[str] | None:
    stats = metadata.reference_stats
    names = [feature.name for feature in stats.features]
    if not stats.available or len(layout) != 1 or stats.input not in (None, layout[0].spec.name):
        return None
    return names if len(names) == layout[0].width else None


def _match_features(columns: list[str], layout: list[InputColumns], metadata: ModelMetadata,
                    what: str = "holdout") -> list[str]:
    """The holdout's feature columns in the order the model takes them."""
    names = _reference_names(layout, metadata)
    if names is not None and set(columns) == set(names):
        return names
    generic = names is None or names == [f"f{index}" for index in range(len(names))]
    if not generic:  # the model names its features: the holdout must name the same ones
        for name in names:
            if name not in columns:
                raise HoldoutError(f"{what} columns do not match the model: no column {name!r} (a feature of "
                                   f"{metadata.name} {metadata.version}, which takes {', '.join(names)})")
        extra = next(column for column in columns if column not in names)
        raise HoldoutError(f"{what} columns do not match the model: column {extra!r} is not a feature of "
                           f"{metadata.name} {metadata.version}{', nor the label or group column' if what == 'holdout' else ''}")
    width = sum(item.width for item in layout)
    signature = "; ".join(item.spec.describe() for item in layout)
    if len(columns) > width:
        raise HoldoutError(f"{what} columns do not match the model: column {columns[width]!r} is feature column "
                           f"{width + 1}, but the model takes {width} ({signature})")
    if len(columns) < width:
        input_name, position = _position(layout, len(columns))
        raise HoldoutError(f"{what} columns do not match the model: {len(columns)} feature columns, the model takes "
                           f"{width}; none for value {position} of input {input_name!r} ({signature})")
    return columns


def _position(layout: list[InputColumns], index: int) -> tuple[str, int]:
    for item in layout:
        if index < item.width:
            return item.spec.name, index
        index -= item.width
    raise IndexError(index)


def _feeds(table: _Table, ordered: list[str], layout: list[InputColumns],
           what: str = "holdout") -> dict[str, np.ndarray]:
    feeds, start = {}, 0
    for item in layout:
        names = ordered[start:start + item.width]
        start += item.width
        columns = [_numbers(table, name, item.spec.dtype, what) for name in names]
        matrix = np.stack(columns, axis=1) if columns else np.empty((len(table.rows), 0))
        feeds[item.spec.name] = matrix.reshape((len(table.rows), *item.row_shape)).astype(item.spec.dtype)
    return feeds


def _numbers(table: _Table, name: str, dtype: str, what: str = "holdout") -> np.ndarray:
    """One column as numbers for an input of `dtype`; the first value that is not one is refused by row and column."""
    cells = table.column(name)
    kind = np.dtype(dtype).kind
    try:
        values = np.asarray([_bool(cell) for cell in cells]) if kind == "b" else np.asarray(cells).astype(np.float64)
    except ValueError:
        values = None
    bad = _first_bad(cells, values, kind)
    if bad is not None:
        row, why = bad
        raise HoldoutError(f"{what} line {table.lines[row]} (row {row + 1}), column {name!r}: "
                           f"{cells[row].strip()!r} {why}")
    return values


def _first_bad(cells: list[str], values: np.ndarray | None, kind: str) -> tuple[int, str] | None:
    if values is None:  # something did not parse: find it
        for row, cell in enumerate(cells):
            try:
                _bool(cell) if kind == "b" else float(cell)
            except ValueError:
                return row, "is not a number" if kind != "b" else "is not a boolean (true/false/1/0)"
        return None
    if kind == "b":
        return None
    finite = np.isfinite(values)
    if not finite.all():
        return int(np.argmin(finite)), "is not a finite number"
    if kind in "iu":
        whole = values == np.round(values)
        if not whole.all():
            return int(np.argmin(whole)), "is not a whole number (the input is an integer tensor)"
    return None


def _bool(cell: str) -> bool:
    value = cell.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise ValueError(cell)


def _labels(table: _Table, label: str, task: str, metadata: ModelMetadata) -> np.ndarray:
    cells = [cell.strip() for cell in table.column(label)]
    if "" in cells:
        row = cells.index("")
        raise HoldoutError(f"holdout line {table.lines[row]} (row {row + 1}): the label column {label!r} is empty")
    if task == "regression":
        return _numbers(table, label, "float64")
    labels = np.asarray(cells, dtype=str)
    if metadata.labels:
        check_known_labels(labels, list(metadata.labels), f"{metadata.name} {metadata.version}")
    return labels
