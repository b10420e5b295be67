"""Temperature scaling, full-precision probabilities, and the two-phase transfer-learning schedule."""

import numpy as np
import pytest

from components.core.data.dataset import SplitArrays
from components.core.modeling import calibration, models
from components.core.modeling.training import TrainConfig, fit_one, train_model


def test_fit_temperature_recovers_a_known_overconfidence():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    overconfident = 1 / (1 + np.exp(-3.0 * true_logit))  # logits 3x too large
    assert calibration.fit_temperature(overconfident[:, None], y) == pytest.approx(3.0, rel=0.1)
    calibrated = 1 / (1 + np.exp(-true_logit))
    assert calibration.fit_temperature(calibrated[:, None], y) == pytest.approx(1.0, rel=0.1)


def test_folded_temperature_equals_scaling_the_logit():
    import keras

    model = models.build_model(models.ModelSpec(family="basic", image_size=16, augment=False, width=4), seed=1)
    x = np.random.default_rng(1).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    before = np.asarray(model(x, training=False), dtype=np.float64)
    calibration.apply_temperature(model, 2.5)
    after = np.asarray(model(x, training=False), dtype=np.float64)
    np.testing.assert_allclose(after.ravel(), calibration.scaled(before, 2.5), rtol=1e-5)
    assert isinstance(model, keras.Model)


def test_tta_probabilities_keep_float32_precision_under_mixed_bfloat16():
    """The Average after the float32 head once ran in bfloat16: every output had 8 mantissa bits."""
    import keras

    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.with_tta(
            models.build_model(models.ModelSpec(family="basic", image_size=16, augment=False, width=4), seed=2)
        )
        x = np.random.default_rng(2).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
        p = np.asarray(model.predict(x, verbose=0)).ravel()
    finally:
        keras.mixed_precision.set_global_policy(old)
    assert p.dtype == np.float32
    low_bits = p.view(np.uint32) & 0xFFFF  # what bfloat16 drops from a float32
    assert (low_bits != 0).mean() > 0.9, "outputs are quantised to bfloat16"


@pytest.fixture(scope="module")
def splits(preprocessed):
    return [SplitArrays(str(preprocessed / s)) for s in ("train", "val", "test")]


def test_head_phase_freezes_the_backbone_then_fine_tunes_it(splits, monkeypatch):
    import keras

    from components.core.modeling.pretrained.efficientnet_lite import imagenet_lite0

    imagenet_stem = imagenet_lite0().get_layer("stem_conv").get_weights()[0]
    stems = {}  # epoch -> the backbone's first kernel at its end

    class Recording(keras.callbacks.LambdaCallback):
        """fit_one's per-epoch callback, also recording the backbone's first kernel."""

        def __init__(self, on_epoch_end=None, **kwargs):
            def record(epoch, logs=None):
                stems[epoch] = models.backbone_of(self.model).get_layer("stem_conv").get_weights()[0].copy()
                if on_epoch_end is not None:
                    on_epoch_end(epoch, logs)

            super().__init__(on_epoch_end=record, **kwargs)

    monkeypatch.setattr(keras.callbacks, "LambdaCallback", Recording)
    cfg = TrainConfig(
        family="efficientnet-lite0",
        weights="imagenet",
        image_size=32,
        epochs=2,
        head_epochs=1,
        batch_size=16,
        early_stopping_patience=0,
        learning_rate=1e-3,
        fine_tune_learning_rate=1e-3,
    )
    model, history = fit_one(cfg, splits[0], splits[1], on_epoch=lambda epoch, logs: None)
    assert len(history["loss"]) == 2 and sorted(stems) == [0, 1]
    np.testing.assert_array_equal(stems[0], imagenet_stem)  # phase 1: backbone frozen
    assert not np.allclose(stems[1], imagenet_stem)  # phase 2: every layer trains
    assert models.backbone_of(model).trainable


def test_head_epochs_need_a_pretrained_backbone(splits):
    cfg = TrainConfig(
        family="basic", width=4, image_size=32, epochs=2, head_epochs=1, batch_size=16, early_stopping_patience=0
    )
    with pytest.raises(ValueError, match="head_epochs and fine_tune_from need a pretrained backbone; family .basic."):
        fit_one(cfg, splits[0], splits[1])


def test_calibrated_training_stores_the_temperature_and_probabilities_stay_in_range(splits):
    cfg = TrainConfig(
        family="basic", width=4, image_size=32, epochs=1, batch_size=16, early_stopping_patience=0, calibrate=True
    )
    result = train_model(cfg, *splits)
    assert 0.05 <= result.temperature <= 20 and result.temperature != 1.0
    assert ((result.val_scores >= 0) & (result.val_scores <= 1)).all()
    # The temperature is in the saved graph: the returned model reproduces the calibrated scores.
    again = np.asarray(result.model.predict(splits[1].gather(np.arange(len(splits[1]))), verbose=0)).ravel()
    np.testing.assert_allclose(again, result.val_scores, rtol=1e-4, atol=1e-6)
