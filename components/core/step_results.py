"""What the pipeline's steps hand each other, as types: built once by the step that produces
it, parsed once by each consumer.

Between KFP tasks they still travel as JSON strings (the compiled pipeline's interface is
unchanged: the train task returns a ``str``, the selection collects a ``List[str]``); only the
two ends, :meth:`to_json` and :meth:`from_json`, know the format. A new field is one line here
with a default (so older JSON still parses), e.g. ``decision``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from components.core.modeling.train_config import TrainConfig


def _json(data: dict) -> str:
    # numpy scalars (metrics, scores) become floats; NaN stays NaN, as json.dumps writes it.
    return json.dumps(data, default=float)


def _known(cls, data: dict, what: str) -> dict:
    """``data`` restricted to ``cls``'s fields; a key it does not know is an error, not dropped."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{what}: unknown field(s) {unknown}; known: {sorted(names)}")
    return data


class _JsonResult:
    """The two ends of a step result's trip across KFP."""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return _json(self.to_dict())

    @classmethod
    def from_json(cls, data: str | dict):
        """From the step's JSON (or its parsed dict, as kfp.local may hand a collected output)."""
        values = dict(json.loads(data) if isinstance(data, str) else data)
        return cls.from_dict(_known(cls, values, cls.__name__))

    @classmethod
    def from_dict(cls, values: dict):
        return cls(**values)


@dataclass
class TrainSummary(_JsonResult):
    """One trained model, as the train step returns it: where it is (MLflow run, model URI, the
    KFP Model artifact), how it decides (threshold, temperature), how good it is on validation
    (chosen on) and test (reported), what it cost, and where its data came from."""

    name: str
    family: str
    run_id: str
    model_uri: str
    threshold: float
    val: dict  # metrics.classification_metrics on the validation split
    test: dict  # the same on the test split: reported, never used to choose
    params: int
    seconds: float
    config: TrainConfig
    temperature: float = 1.0  # 1.0: not calibrated
    folds: list[dict] = field(default_factory=list)  # cross-validation, the crossval family only
    device: str = ""
    # Where the Model artifact (model.keras + model.json) lives: s3:// on a cluster. Serving runs it.
    artifact_uri: str = ""
    lineage: dict = field(default_factory=dict)  # lineage.describe: the datasets it read
    figures: list[str] = field(default_factory=list)  # artifact paths in its MLflow run
    decision: dict | None = None  # a decision policy stored with the model, when there is one
    referral: dict | None = None  # how that policy referred on val and test (decision/evaluation.py)
    # The evidence per subgroup on test (evaluation/subgroups.py): {"uri", "sha256", "gate", "table"}
    # of the logged subgroups.json, or {"error"} when it could not be computed.
    subgroups: dict | None = None
    # An ensemble's members (steps/ensemble.py): [{"name", "family", "run_id", "model_uri"}]; empty for one network.
    members: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["config"] = self.config.to_dict()
        for optional in ("decision", "referral", "subgroups"):
            if out[optional] is None:
                del out[optional]
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "TrainSummary":
        config = TrainConfig.from_dict(values.get("config") or {})
        return cls(**{**values, "config": config, "lineage": values.get("lineage") or {}})

    def brief(self) -> dict:
        """The line the train task prints in its log."""
        return {
            "name": self.name,
            "val": self.val,
            "test": self.test,
            "threshold": self.threshold,
            "seconds": self.seconds,
        }


@dataclass
class ModelResult:
    """One model's row in the selection's summary."""

    name: str
    family: str
    run_id: str
    threshold: float
    val: dict
    test: dict
    params: int
    seconds: float

    @classmethod
    def of(cls, trained: TrainSummary) -> "ModelResult":
        return cls(**{f.name: getattr(trained, f.name) for f in fields(cls)})


@dataclass
class RegisteredVersion:
    """The version the selection registered, and where ``@champion`` points now."""

    name: str
    version: str
    alias: str
    model_uri: str
    champion_version: str
    champion_changed: bool


@dataclass
class SelectionSummary(_JsonResult):
    """What the selection step returns (``summary_json``) and ``skin-cancer run`` shows and writes."""

    models: list[ModelResult]
    winner: str
    registered_model: RegisteredVersion
    previous_champion: dict | None
    data_fingerprint: str
    approval: dict | None = None  # set when the version waits for a person (steps/select.py propose)

    @classmethod
    def from_dict(cls, values: dict) -> "SelectionSummary":
        models = [ModelResult(**_known(ModelResult, m, "ModelResult")) for m in values["models"]]
        return cls(**{**values, "models": models, "registered_model": RegisteredVersion(**values["registered_model"])})
