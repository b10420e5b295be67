"""Grad-CAM on every kind of model: the last feature map, the region that drives the prediction,
and test-time augmentation as the mean over the four flips."""

import numpy as np
import pytest


# 64 px in: the basic CNN's second block works at 64 / 2 = 32 px; MobileNetV3Small's last map is 64 / 32 = 2 px.
@pytest.mark.parametrize("family,layer,side", [("basic", "block2_relu2", 32), ("mobilenetv3", "MobileNetV3Small/", 2)])
def test_gradcam_finds_the_last_feature_map(family, layer, side):
    from components.core.inference.gradcam import GradCam
    from components.core.modeling.models import ModelSpec, build_model

    model = build_model(ModelSpec(family=family, image_size=64, augment=True, width=4, extra={"blocks": 2}))
    cam = GradCam(model)
    assert cam.target.name.startswith(layer)
    pixels = np.random.default_rng(0).integers(0, 256, (70, 50, 3), dtype=np.uint8)
    heat, p = cam.heatmap(pixels)
    assert heat.shape == (side, side) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() == 1.0  # ReLU, then scaled so the peak is 1
    assert p == pytest.approx(float(np.asarray(model(pixels[None], training=False)).ravel()[0]), abs=1e-5)


def _top_left_model():
    """8x8 RGB in; feature map channel 0 = brightness (mean of R, G, B in 0-1), channel 1 =
    darkness (1 - brightness); p = sigmoid(4 * mean brightness of the top-left 4x4 quadrant - 2).
    Nothing outside that quadrant, and nothing of the darkness channel, reaches the output."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(8, 8, 3), dtype="uint8")
    x = layers.Rescaling(1.0 / 255, name="to_unit")(inputs)
    features = layers.Conv2D(2, 1, name="features")
    x = features(x)
    x = layers.Flatten()(x)
    head = layers.Dense(1, activation="sigmoid", name="p")
    outputs = head(x)
    model = keras.Model(inputs, outputs)
    features.set_weights([np.array([[[[1 / 3, -1 / 3]] * 3]], dtype=np.float32), np.array([0.0, 1.0], np.float32)])
    weights = np.zeros((8 * 8 * 2, 1), np.float32)  # Flatten order: (row, column, channel)
    for row in range(4):
        for col in range(4):
            weights[(row * 8 + col) * 2 + 0] = 4 / 16
    head.set_weights([weights, np.array([-2.0], np.float32)])
    return model


def test_gradcam_points_at_the_region_that_drives_the_prediction():
    from components.core.inference.gradcam import GradCam

    # Grey quadrants: top-left 230 (what the model looks at), top-right 46, bottom-left 92, bottom-right 23.
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[:4, :4], pixels[:4, 4:], pixels[4:, :4], pixels[4:, 4:] = 230, 46, 92, 23
    cam = GradCam(_top_left_model())
    assert cam.target.name == "features"
    heat, p = cam.heatmap(pixels)
    assert p == pytest.approx(1 / (1 + np.exp(-(4 * 230 / 255 - 2))), abs=1e-6)
    row, col = np.unravel_index(np.argmax(heat), heat.shape)
    assert row < 4 and col < 4, f"the heatmap peaks at {(row, col)}, outside the top-left quadrant"
    # Only the brightness channel has a gradient, so the map is brightness over its peak:
    # 230/230 = 1, 46/230 = 0.2, 92/230 = 0.4, 23/230 = 0.1 (darkness, brightest bottom-right, weighs 0).
    expected = np.empty((8, 8), np.float32)
    expected[:4, :4], expected[:4, 4:], expected[4:, :4], expected[4:, 4:] = 1.0, 0.2, 0.4, 0.1
    np.testing.assert_allclose(heat, expected, atol=1e-5)


def test_tta_is_the_mean_over_the_four_flips():
    """with_tta on a model that sees only the top-left pixel: p = sigmoid(R + G + B of it, in 0-1)."""
    import keras
    from keras import layers

    from components.core.modeling.models import with_tta, without_tta

    inputs = keras.Input(shape=(None, None, 3), dtype="uint8")
    x = layers.Rescaling(1.0 / 255)(inputs)
    conv = layers.Conv2D(1, 2, use_bias=False, activation="sigmoid")  # 2x2 image in -> one value out
    x = conv(x)
    outputs = layers.Flatten()(x)
    model = keras.Model(inputs, outputs, name="top_left")
    kernel = np.zeros((2, 2, 3, 1), np.float32)
    kernel[0, 0] = 1.0  # the top-left pixel's three channels
    conv.set_weights([kernel])
    tta = with_tta(model)
    assert without_tta(tta) is model and without_tta(model) is model

    # Top-left white (3), top-right red (1), bottom-left cyan (2), bottom-right black (0); the
    # second image is the first flipped left-right.
    first = np.array([[[255, 255, 255], [255, 0, 0]], [[0, 255, 255], [0, 0, 0]]], np.uint8)
    batch = np.stack([first, first[:, ::-1]])

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    plain = np.asarray(model(batch)).ravel()
    np.testing.assert_allclose(plain, [sigmoid(3), sigmoid(1)], atol=1e-6)  # orientation matters
    # The four views put each corner at the top-left once: the mean over all four corners.
    views = [batch, batch[:, ::-1], batch[:, :, ::-1], batch[:, ::-1, ::-1]]
    by_hand = np.mean([[sigmoid(v[i, 0, 0].astype(int).sum() / 255) for i in range(2)] for v in views], axis=0)
    np.testing.assert_allclose(by_hand, [(sigmoid(3) + sigmoid(1) + sigmoid(2) + sigmoid(0)) / 4] * 2, atol=1e-12)
    np.testing.assert_allclose(np.asarray(tta(batch)).ravel(), by_hand, atol=1e-6)
