"""What a version takes and answers, as evaluation sees it: its task, and how many holdout columns feed each input."""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Literal

from governance.errors import NotEvaluable
from modelstore.metadata import ModelMetadata, TensorSpec

EvaluationTask = Literal["classification", "regression"]


@dataclass(frozen=True)
class InputColumns:
    """One model input fed from `width` consecutive holdout columns, reshaped to [rows, *row_shape]."""

    spec: TensorSpec
    row_shape: tuple[int, ...]

    @property
    def width(self) -> int:
        return prod(self.row_shape)


def task_of(metadata: ModelMetadata) -> EvaluationTask:
    where = f"{metadata.name} {metadata.version}"
    if metadata.tokenizer is not None or any(spec.dtype == "string" for spec in metadata.inputs):
        raise NotEvaluable(f"{where} takes text; evaluate measures models whose inputs are numeric feature columns "
                           "(text models are not supported yet)")
    if metadata.task == "classification" or (metadata.task == "other" and metadata.label_output and metadata.labels):
        return "classification"
    if metadata.task == "regression":
        return "regression"
    raise NotEvaluable(f"{where} is a {metadata.task} model; evaluate measures classification and regression models")


def input_columns(metadata: ModelMetadata) -> list[InputColumns]:
    """Every input, in the model's order, with the fixed per-row shape the holdout's columns fill."""
    layout = []
    for spec in metadata.inputs:
        row_shape = tuple(spec.shape[1:])
        if not all(isinstance(dim, int) and dim > 0 for dim in row_shape):
            raise NotEvaluable(f"input {spec.describe()} has a variable axis after the batch axis; evaluate needs a "
                               "fixed number of values per row")
        layout.append(InputColumns(spec, row_shape))
    return layout
