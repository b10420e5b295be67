"""Training one model from preprocessed uint8 splits: tf.data input, hyperparameters, cross-validation."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.core.data.dataset import SplitArrays
from components.core.evaluation.metrics import choose_threshold, classification_metrics
from components.core.modeling.train_config import (
    TrainConfig,  # defined there: the command line checks configs without TensorFlow
)

log = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bfloat16 instructions (AVX512_BF16 or AMX), where oneDNN runs bf16 fast."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def configure_devices(precision: str = "auto") -> tuple[object, str]:
    """Use every visible GPU (MirroredStrategy for several, mixed float16 on GPU); else the CPU.

    ``precision``: "auto" (GPU: mixed_float16; CPU: float32), "bfloat16" (GPU as auto; CPU:
    mixed_bfloat16 where the CPU has native bf16 instructions, about 1.8x faster training here,
    float32 elsewhere) or "float32" (everywhere).
    """
    import keras
    import tensorflow as tf

    if precision not in ("auto", "bfloat16", "float32"):
        raise ValueError(f"precision must be auto, bfloat16 or float32, got {precision!r}")
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        bf16 = precision == "bfloat16" and cpu_has_native_bf16()
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if bf16 else "float32")
        return tf.distribute.get_strategy(), "cpu (bfloat16)" if bf16 else "cpu"
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    keras.mixed_precision.set_global_policy("float32" if precision == "float32" else "mixed_float16")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(), f"{len(gpus)} gpus (mirrored)"
    return tf.distribute.get_strategy(), "1 gpu"


def make_dataset(
    split: SplitArrays,
    batch_size: int,
    indices: np.ndarray | None = None,
    shuffle: bool = False,
    seed: int = 0,
    with_labels: bool = True,
):
    """A tf.data pipeline over uint8 shards: shuffle indices, batch, gather rows, prefetch.

    Pixels stay uint8 until the model's first layer casts them, so a batch costs
    1 byte per channel in host memory instead of a float64 copy's 8.
    """
    import tensorflow as tf

    idx = np.arange(len(split)) if indices is None else np.asarray(indices)
    size = split.image_size
    labels = split.labels.astype(np.float32)

    def gather(batch_idx: np.ndarray):
        order = np.sort(batch_idx)  # sequential reads from the memory map
        return split.gather(order), labels[order]

    ds = tf.data.Dataset.from_tensor_slices(idx.astype(np.int64))
    if shuffle:
        ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def load(batch_idx):
        x, y = tf.numpy_function(gather, [batch_idx], [tf.uint8, tf.float32])
        x.set_shape([None, size, size, 3])
        y.set_shape([None])
        return (x, y) if with_labels else x

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def class_weight_for(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels.astype(int), minlength=2).astype(float)
    counts[counts == 0] = 1
    return {i: float(labels.size / (2 * counts[i])) for i in range(2)}


def compile_model(
    model, cfg: TrainConfig, steps_per_epoch: int, learning_rate: float | None = None, epochs: int | None = None
):
    import keras

    # Cosine decay over the planned steps: the learning rate given is the one the optimizer starts at.
    schedule = keras.optimizers.schedules.CosineDecay(
        cfg.learning_rate if learning_rate is None else learning_rate,
        decay_steps=max(1, (cfg.epochs if epochs is None else epochs) * steps_per_epoch),
        alpha=0.05,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
    )
    return model


def fit_one(
    cfg: TrainConfig,
    train: SplitArrays,
    val: SplitArrays | None,
    train_idx: np.ndarray | None = None,
    val_idx: np.ndarray | None = None,
    val_split: SplitArrays | None = None,
    on_epoch=None,
):
    """Train one model; early stopping on validation AUC restores the best weights."""
    import keras

    from components.core.modeling import progress
    from components.core.modeling.models import ModelSpec, build_model

    strategy, _ = configure_devices(cfg.precision)
    if cfg.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    idx = np.arange(len(train)) if train_idx is None else train_idx
    steps = math.ceil(len(idx) / cfg.batch_size)
    spec = ModelSpec(
        family=cfg.family,
        image_size=cfg.image_size,
        weights=cfg.weights,
        dropout=cfg.dropout,
        augment=cfg.augment,
        augmentation=cfg.augmentation,
        width=cfg.width,
        extra=cfg.extra,
    )
    with strategy.scope():
        model = build_model(spec, seed=cfg.seed)
    train_ds = make_dataset(train, cfg.batch_size, idx, shuffle=True, seed=cfg.seed)
    eval_split = val_split or val
    val_ds = make_dataset(eval_split, cfg.batch_size, val_idx) if eval_split is not None else None
    callbacks = [progress.callback(cfg.epochs)]  # a line per epoch (components/core/modeling/progress.py)
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=on_epoch))
    fit = dict(
        x=train_ds,
        validation_data=val_ds,
        shuffle=False,  # the tf.data pipeline shuffles
        class_weight=class_weight_for(train.labels[idx]) if cfg.class_weights else None,
        verbose=0,
    )
    history: dict[str, list[float]] = {}
    backbone = None
    if cfg.head_epochs > 0 or cfg.fine_tune_from:
        from components.core.modeling.models import backbone_of, freeze_below

        backbone = backbone_of(model)
        if backbone is None:
            raise ValueError(
                f"head_epochs and fine_tune_from need a pretrained backbone; family {cfg.family!r} has none"
            )
    if cfg.head_epochs > 0:
        backbone.trainable = False
        with strategy.scope():
            compile_model(model, cfg, steps, cfg.learning_rate, cfg.head_epochs)
        _extend(history, model.fit(epochs=cfg.head_epochs, callbacks=callbacks, **fit))
        backbone.trainable = True
    if cfg.fine_tune_from:
        freeze_below(backbone, cfg.fine_tune_from)
    with strategy.scope():
        if cfg.head_epochs > 0:
            compile_model(model, cfg, steps, cfg.fine_tune_learning_rate, cfg.epochs - cfg.head_epochs)
        else:
            compile_model(model, cfg, steps)
    if val_ds is not None and cfg.early_stopping_patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_auc",
                mode="max",
                patience=cfg.early_stopping_patience,
                restore_best_weights=True,
                # Early epochs at the peak learning rate are noisy: do not stop on them.
                start_from_epoch=max(cfg.head_epochs, cfg.epochs // 3),
            )
        )
    if cfg.epochs > cfg.head_epochs:
        _extend(history, model.fit(initial_epoch=cfg.head_epochs, epochs=cfg.epochs, callbacks=callbacks, **fit))
    return model, history


def _extend(history: dict[str, list[float]], fitted) -> None:
    for k, vals in fitted.history.items():
        history.setdefault(k, []).extend(float(v) for v in vals)


def predict_proba(model, split: SplitArrays, batch_size: int = 64, indices: np.ndarray | None = None) -> np.ndarray:
    ds = make_dataset(split, batch_size, indices, with_labels=False)
    return model.predict(ds, verbose=0).reshape(-1).astype(np.float64)


@dataclass
class TrainResult:
    model: object
    config: TrainConfig
    history: dict
    threshold: float
    val: dict
    test: dict
    val_scores: np.ndarray
    test_scores: np.ndarray
    fold_scores: list[dict]
    temperature: float  # 1.0: not calibrated
    seconds: float
    params: int
    policy: object = None  # decision.DecisionPolicy: stored with the model, applied by every consumer
    referral: dict = field(default_factory=dict)  # {"val", "test": referral_metrics, "risk_coverage": [...]}
    test_referred: np.ndarray | None = None  # per test image: the policy referred it (evaluation/subgroups.py)


def calibrate(model, cfg: TrainConfig, val: SplitArrays) -> float:
    """Fit the temperature on validation (over the views the served model averages) and fold
    it into ``model``'s head; returns it."""
    from components.core.modeling.calibration import apply_temperature, fit_temperature
    from components.core.modeling.models import view_outputs

    views = view_outputs(model) if cfg.tta else model
    probs = views.predict(make_dataset(val, cfg.batch_size, with_labels=False), verbose=0)
    temperature = fit_temperature(np.asarray(probs, dtype=np.float64), val.labels)
    apply_temperature(model, temperature)
    log.info("temperature %.3f fitted on %d validation images", temperature, len(val))
    return temperature


def cross_validate(cfg: TrainConfig, train: SplitArrays) -> list[dict]:
    """k-fold cross-validation of the model on the train split; returns every fold's scores."""
    import keras
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=cfg.folds, shuffle=True, random_state=cfg.seed)
    scores = []
    for k, (tr, ho) in enumerate(folds.split(np.zeros(len(train)), train.labels)):
        model, _ = fit_one(cfg, train, None, train_idx=tr, val_idx=ho, val_split=train)
        p = predict_proba(model, train, cfg.batch_size, ho)
        m = classification_metrics(train.labels[ho], p)
        scores.append({"fold": k, "accuracy": m["accuracy"], "auc": m["auc"]})
        log.info("fold %d: accuracy %.3f auc %.3f", k, m["accuracy"], m["auc"])
        del model
        keras.backend.clear_session()  # after scoring, never before: the fold model is used first
    return scores


def train_model(
    cfg: TrainConfig, train: SplitArrays, val: SplitArrays, test: SplitArrays, on_epoch=None
) -> TrainResult:
    """Train ``cfg.family`` on train, pick early stopping and the threshold on val, report val and test."""
    for name, split in (("val", val), ("test", test)):
        if split.image_size != train.image_size:
            raise ValueError(f"{name} split is {split.image_size}px but train is {train.image_size}px")
    started = time.perf_counter()
    fold_scores = cross_validate(cfg, train) if cfg.family == "crossval" else []
    # The final model (crossval included) trains on the whole train split, so there is a real artifact.
    model, history = fit_one(cfg, train, val, on_epoch=on_epoch)
    temperature = calibrate(model, cfg, val) if cfg.calibrate else 1.0
    if cfg.tta:
        from components.core.modeling.models import with_tta

        model = with_tta(model)
    p_val = predict_proba(model, val, cfg.batch_size)
    p_test = predict_proba(model, test, cfg.batch_size)
    threshold = choose_threshold(val.labels, p_val, cfg.min_sensitivity)
    policy, referral, test_referred = fit_decision_policy(cfg, threshold, train, val, test, p_val, p_test)
    return TrainResult(
        model=model,
        config=cfg,
        history=history,
        threshold=threshold,
        val=classification_metrics(val.labels, p_val, threshold),
        test=classification_metrics(test.labels, p_test, threshold),
        val_scores=p_val,
        test_scores=p_test,
        fold_scores=fold_scores,
        temperature=temperature,
        seconds=time.perf_counter() - started,
        params=int(model.count_params()),
        policy=policy,
        referral=referral,
        test_referred=test_referred,
    )


def fit_decision_policy(
    cfg: TrainConfig,
    threshold: float,
    train: SplitArrays,
    val: SplitArrays,
    test: SplitArrays,
    p_val: np.ndarray,
    p_test: np.ndarray,
):
    """The decision policy from held-out data (conformal sets and the scope limit on validation,
    the feature distribution on train), how it does on validation and test, and which test images
    it referred (a bool per image, for the evidence per subgroup)."""
    from components.core.decision import DecisionPolicy
    from components.core.decision.features import split_features

    started = time.perf_counter()
    f_train, f_val, f_test = (split_features(s) for s in (train, val, test))
    policy = DecisionPolicy.fit(
        threshold, val.labels, p_val, f_train, f_val, cfg.refer_coverage, cfg.ood_false_flag_rate
    )
    referral, test_referred = evaluate_policy(policy, val, test, p_val, p_test, f_val, f_test)
    log.info(
        "decision policy fitted in %.1f s: test refer rate %.3f, decided accuracy %.3f",
        time.perf_counter() - started,
        referral["test"]["refer_rate"],
        referral["test"]["decided_accuracy"],
    )
    return policy, referral, test_referred


def evaluate_policy(policy, val: SplitArrays, test: SplitArrays, p_val, p_test, f_val, f_test):
    """How ``policy`` decides validation and test (given p and ImageNet features): the referral
    figures, and which test images it referred; stores the monitoring reference in ``policy``."""
    from components.core.decision import REFER
    from components.core.decision.evaluation import decide_split, referral_metrics, risk_coverage
    from components.core.scoring.drift import Reference

    decisions = {
        name: decide_split(policy, split, p, f)
        for name, split, p, f in (("val", val, p_val, f_val), ("test", test, p_test, f_test))
    }
    referral = {name: referral_metrics(split.labels, decisions[name]) for name, split in (("val", val), ("test", test))}
    # Stored with the model: what batch scoring's drift checks compare a day's images with.
    policy.monitoring = Reference.from_validation(policy, val, p_val, f_val, decisions["val"]).arrays()
    referral["risk_coverage"] = {
        name: risk_coverage(val.labels, p_val, split.labels, p, policy.threshold)
        for name, split, p in (("val", val, p_val), ("test", test, p_test))
    }
    return referral, np.array([d.decision == REFER for d in decisions["test"]], dtype=bool)
