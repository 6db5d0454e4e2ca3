"""retrain.toml at the store root: per model, how to train, export, measure and challenge, and what starts a job.

Relative paths: `workdir` is relative to the directory onnxgate runs in (as every path on its command line is); the
paths inside a model's table (export files, holdout, data, new_data) are relative to `workdir`. `{output}` in them is
the job's fresh output directory. A file that cannot be parsed or validated is refused whole, naming the line and the
field (InvalidRetrainConfig), as policy.toml is: a typo must never quietly turn a trigger or a gate off.
"""
from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelstore.toml_model import parse_toml_model
from monitoring.quality import InvalidDuration, parse_duration
from retrain.errors import InvalidRetrainConfig, RetrainNotConfigured

CONFIG_FILE = "retrain.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _duration(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be a positive number of seconds")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("must be a duration such as 30m, 1h, 7d, or seconds")
    try:
        return parse_duration(value)
    except InvalidDuration as exc:
        raise ValueError(str(exc)) from None


class ExportSettings(_Strict):
    """The options of `onnxgate export`, by the same names (underscores for dashes)."""

    sample: str | None = Field(default=None, description="held-out rows for parity and statistics")
    reference_data: str | None = Field(default=None, description="training rows the reference statistics describe")
    labels: list[str] | None = Field(default=None, description="class names by class id")
    labels_file: str | None = None
    tokenizer: str | None = None
    max_length: int | None = Field(default=None, ge=1)
    scores: Literal["logits", "probabilities"] = "logits"
    tolerance: float | None = Field(default=None, gt=0)
    allow_incompatible: bool = False
    check_node: bool = True
    metrics: str | None = Field(default=None, description="JSON file of metric name -> number, written by training")
    training_samples: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_labels(self) -> ExportSettings:
        if self.labels is not None and self.labels_file is not None:
            raise ValueError("give labels or labels_file, not both")
        return self


class HoldoutSettings(_Strict):
    data: str = Field(description="holdout CSV with a header row")
    label: str = Field(description="the column holding the true label or value")


class ChallengeSettings(_Strict):
    """What `onnxgate challenge` takes, for the job's new version against the environment's champion."""

    environment: str
    metric: str | None = Field(default=None, description="default: f1 for a classifier, rmse for a regressor")
    min_improvement: float = Field(default=0.05, ge=0)
    weight: float | None = Field(default=None, gt=0, le=100, description="canary weight (default: the policy's)")
    steps: list[float] | None = None
    interval: float | None = Field(default=None, description="healthy time per canary step, e.g. 10m")
    resamples: int = Field(default=1000, ge=100, le=100_000)
    seed: int = 0

    _interval = field_validator("interval", mode="before")(lambda v: None if v is None else _duration(v))


class DriftTrigger(_Strict):
    share: float = Field(gt=0, le=1, description="fires when at least this share of the features drifted")
    min_rows: int = Field(default=500, ge=1, description="captured rows needed in the window")
    window: float = Field(default=7 * 86400.0, description="captured rows of the last WINDOW (and since the last job)")
    psi: float = Field(default=0.25, gt=0)
    ks: float = Field(default=0.1, gt=0, le=1)

    _window = field_validator("window", mode="before")(_duration)


class DegradationTrigger(_Strict):
    metric: Literal["accuracy", "rmse", "mae"] = "accuracy"
    below: float | None = Field(default=None, description="fires when the live metric is below (accuracy)")
    above: float | None = Field(default=None, description="fires when the live metric is above (rmse, mae)")
    min_labels: int = Field(default=100, ge=1, description="labelled rows needed in the window")
    window: float = Field(default=7 * 86400.0, description="captured requests and labels of the last WINDOW")

    _window = field_validator("window", mode="before")(_duration)

    @model_validator(mode="after")
    def _one_bound(self) -> DegradationTrigger:
        if (self.below is None) == (self.above is None):
            raise ValueError("give exactly one of below (accuracy) or above (rmse, mae)")
        if self.metric == "accuracy" and self.below is None:
            raise ValueError("accuracy degrades downwards: give below")
        if self.metric != "accuracy" and self.above is None:
            raise ValueError(f"{self.metric} degrades upwards: give above")
        return self


class NewDataTrigger(_Strict):
    path: str = Field(description="a file (.csv: lines after the header; .npy: rows; else lines) or a directory of them")
    rows: int = Field(ge=1, description="fires when the row count grew by at least this since the last job")


class Triggers(_Strict):
    drift: DriftTrigger | None = None
    degradation: DegradationTrigger | None = None
    schedule: str | None = Field(default=None, description="a cron expression (croniter), in UTC")
    new_data: NewDataTrigger | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"not a cron expression: {value!r}")
        return value


class ModelRetraining(_Strict):
    command: str = Field(description="the training command; placeholders {output} {data} {python} {job}")
    artifact: str = Field(description="what the command writes, relative to {output}")
    workdir: str = "."
    timeout: float = Field(default=3600.0, description="the training command's time limit")
    cooldown: float = Field(default=3600.0, description="no automatic job this long after the last one started")
    data: str | None = Field(default=None, description="the data window handed as {data} (default: new_data.path)")
    export: ExportSettings = Field(default_factory=ExportSettings)
    holdout: HoldoutSettings
    challenge: ChallengeSettings
    triggers: Triggers = Field(default_factory=Triggers)

    _durations = field_validator("timeout", "cooldown", mode="before")(_duration)

    @property
    def data_window(self) -> str | None:
        if self.data is not None:
            return self.data
        return self.triggers.new_data.path if self.triggers.new_data else None

    def workdir_path(self) -> Path:
        return Path(self.workdir).resolve()

    def path(self, value: str, output: Path | None = None) -> Path:
        """A path of the table, with {output} filled in, relative to the workdir."""
        if output is not None:
            value = value.replace("{output}", str(output))
        return self.workdir_path() / value


class RetrainConfig(_Strict):
    models: dict[str, ModelRetraining] = Field(default_factory=dict)

    def model(self, name: str) -> ModelRetraining:
        found = self.models.get(name)
        if found is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise RetrainNotConfigured(f"{CONFIG_FILE} has no [models.{name}] table (models: {known})")
        return found


def read_config(store_root: Path) -> RetrainConfig:
    path = Path(store_root) / CONFIG_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RetrainNotConfigured(f"{path}: no such file; retraining is configured there") from None
    except OSError as exc:
        raise InvalidRetrainConfig(f"{path}: cannot be read ({exc.strerror})") from None
    return parse_config(raw, str(path))


def parse_config(raw: bytes, source: str) -> RetrainConfig:
    return parse_toml_model(raw, source, RetrainConfig, InvalidRetrainConfig, _suggestion)


def _suggestion(location: tuple[str, ...]) -> str:
    """' (did you mean ...?)' for an unknown field close to a known one of the table it is in."""
    model: type[BaseModel] | None = RetrainConfig
    parts = list(location[:-1])
    while parts and model is not None:
        part = parts.pop(0)
        if part == "models" and model is RetrainConfig:
            parts = parts[1:]  # the model's name
            model = ModelRetraining
            continue
        field = model.model_fields.get(part)
        model = _model_of(field.annotation) if field else None
    if model is None:
        return ""
    close = difflib.get_close_matches(location[-1], list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_of(annotation: object) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
