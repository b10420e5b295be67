"""A model's hyperparameters (:class:`TrainConfig`), checked where a model config enters.

A model config is a dict (a preset's, ``skin-cancer run --models``, ``--param models=``, the
pipeline's loop item): its keys override the pipeline's defaults. :func:`model_configs` builds
and checks them all, so an unknown key or a bad value fails at the command line, naming the key,
instead of on a GPU node after preprocessing. Imports nothing heavy: the command line uses it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from components.core import settings

PRECISIONS = ("auto", "bfloat16", "float32")
AUGMENTATIONS = ("full", "light")  # models.augmentation


@dataclass
class TrainConfig:
    """Every hyperparameter here reaches the model or the optimizer; nothing is only logged."""

    family: str = "basic"
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    image_size: int = settings.IMAGE_SIZE
    augment: bool = True
    augmentation: str = "full"  # "light": flips and colour only (models.augmentation)
    early_stopping_patience: int = 4
    class_weights: bool = True
    seed: int = settings.SEED
    folds: int = 3  # only for the "crossval" family
    weights: str | None = None
    dropout: float = 0.3
    width: int = 32
    weight_decay: float = 1e-4
    # Threshold: the highest whose validation malignant recall reaches this plus one standard
    # error (metrics.choose_threshold).
    min_sensitivity: float = 0.85
    precision: str = "auto"  # see training.configure_devices
    tta: bool = True  # average over flips at inference (in the saved graph)
    # Transfer learning: the first head_epochs train only the head (the pretrained backbone
    # frozen, its batch norm in inference mode) at learning_rate; the rest fine-tune every
    # layer from fine_tune_learning_rate with cosine decay. 0: one phase, all layers.
    head_epochs: int = 0
    fine_tune_learning_rate: float = 1e-4
    fine_tune_from: str = ""  # backbone layers before the first with this name prefix stay frozen
    calibrate: bool = False  # temperature scaling on validation (calibration.py), before the threshold
    # The decision policy (components/core/decision), fitted after the threshold: conformal
    # coverage per class, and the share of in-scope validation images flagged out of scope.
    refer_coverage: float = settings.REFER_COVERAGE
    ood_false_flag_rate: float = settings.OOD_FALSE_FLAG_RATE
    deterministic: bool = False  # bit-identical reruns (slower; for tests and audits)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a pipeline's model config dict; an unknown key or a value of the wrong kind
        is an error naming the key, never silently dropped or passed on."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown}; known: {sorted(names)}")
        defaults = cls()
        coerced = {key: _coerced(key, value, getattr(defaults, key)) for key, value in values.items()}
        cfg = cls(**coerced)
        if cfg.weights in ("", "none", "None"):
            cfg.weights = None
        cfg._check_ranges()
        return cfg

    def _check_ranges(self) -> None:
        problems = {
            "epochs": self.epochs < 1 and "must be at least 1",
            "batch_size": self.batch_size < 1 and "must be at least 1",
            "image_size": self.image_size < 1 and "must be at least 1",
            "learning_rate": not self.learning_rate > 0 and "must be above 0",
            "fine_tune_learning_rate": not self.fine_tune_learning_rate > 0 and "must be above 0",
            "min_sensitivity": not 0 < self.min_sensitivity < 1 and "must be between 0 and 1",
            "refer_coverage": not 0 < self.refer_coverage < 1 and "must be between 0 and 1",
            "ood_false_flag_rate": not 0 < self.ood_false_flag_rate < 0.5 and "must be between 0 and 0.5",
            "dropout": not 0 <= self.dropout < 1 and "must be in [0, 1)",
            "head_epochs": self.head_epochs < 0 and "must be at least 0",
            "precision": self.precision not in PRECISIONS and f"must be one of {list(PRECISIONS)}",
            "augmentation": self.augmentation not in AUGMENTATIONS and f"must be one of {list(AUGMENTATIONS)}",
        }
        bad = [f"hyperparameter {key} {why}, got {getattr(self, key)!r}" for key, why in problems.items() if why]
        if bad:
            raise ValueError("; ".join(bad))

    def to_dict(self) -> dict:
        return asdict(self)


def _coerced(key: str, value, default):
    """``value`` as the kind of ``default``. KFP passes dict parameters as protobuf Structs, where
    every number is a float: a whole float is an int where an int is wanted."""
    kind = type(default)
    if key == "weights":
        kind = str  # default None: a name of pretrained weights, or none
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float):
            raise ValueError(f"hyperparameter {key} must be an integer, got {value}")
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str) or (key == "weights" and value is None):
            return value
    elif kind is dict:
        if isinstance(value, dict):
            return value
    raise ValueError(f"hyperparameter {key} must be {kind.__name__}, got {value!r} ({type(value).__name__})")


def model_config(config: dict, defaults: dict | None = None) -> tuple[str, TrainConfig]:
    """(name, TrainConfig) of one model config over the pipeline's ``defaults``: the config's keys
    win; ``name`` (default: the family) names the model in MLflow and the results."""
    values = {**(defaults or {}), **config}
    name = values.pop("name", values.get("family", "basic"))
    return str(name), TrainConfig.from_dict(values)


def model_configs(configs, defaults: dict | None = None) -> list[tuple[str, TrainConfig]]:
    """Every model config checked, before anything runs; the error names the model and the key."""
    if not isinstance(configs, list) or not configs:
        raise ValueError(f"models must be a non-empty list of model configs, got {configs!r}")
    out = []
    for i, config in enumerate(configs, 1):
        if not isinstance(config, dict):
            raise ValueError(f"model config {i} must be a JSON object, got {config!r}")
        try:
            out.append(model_config(config, defaults))
        except ValueError as err:
            raise ValueError(f"model config {i} {config}: {err}") from None
    return out
