"""Recording what `onnxgate evaluate` measured on a version (governance.evaluate measures; this records)."""
from __future__ import annotations

from dataclasses import dataclass

from modelstore.backends import ModelRepository
from modelstore.deployments import RegistryOperation, require_version
from modelstore.registry import EvaluationRecord, RegistryData
from modelstore.transitions import Change, Outcome, transition


@dataclass(frozen=True)
class RecordEvaluation(RegistryOperation):
    """The version's latest evaluation becomes `record` (earlier ones stay in the audit log)."""

    model: str
    version: str
    record: EvaluationRecord

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        require_version(state, self.model, self.version)
        state.models[self.model][self.version].evaluation = self.record
        return Outcome("evaluate", self.model, None, True, after=self.version,
                       details=self.record.model_dump(mode="json"))


def record_evaluation(store: ModelRepository, name: str, version: str, record: EvaluationRecord,
                      change: Change = Change()) -> Outcome:
    return transition(store, RecordEvaluation(name, version, record), change)
