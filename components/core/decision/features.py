"""What the out-of-scope detector (and input-drift monitoring) looks at: EfficientNet-Lite0's
ImageNet features, pooled at three depths.

Not the fine-tuned classifier's own embedding: that one is trained to separate benign from
malignant, not to recognise what a skin lesion is (on the real data it refused about two thirds
of non-dermoscopy images at a 1.5 % false-flag rate). The ImageNet network has seen palaces,
portraits, text and textures, and its mid-level features (blocks 10 and 14: colour and texture
statistics) catch flat frames and synthetic patterns its top features map close to lesions.
Measured side by side in docs/referral.md. The weights install with the project
(components/core/pretrained), so this needs no download.
"""

from __future__ import annotations

import functools

import numpy as np

LAYERS = ("block10_add", "block14_add", "top_pool")
BATCH = 64


@functools.lru_cache(maxsize=1)
def _extractor():
    import keras

    from components.core.modeling.pretrained.efficientnet_lite import imagenet_lite0

    # float32 whatever the training task set (mixed_bfloat16 on some CPUs, mixed_float16 on GPUs):
    # the features, and so every scope score, must be the same in training and in serving.
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        return _build(keras, imagenet_lite0)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _build(keras, imagenet_lite0):
    base = imagenet_lite0(include_top=True)
    outputs = []
    for name in LAYERS:
        out = base.get_layer(name).output
        if len(out.shape) == 4:
            out = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(out)
        outputs.append(out)
    return keras.Model(
        base.input, keras.layers.Concatenate(name="scope_features")(outputs), name="imagenet_scope_features"
    )


@functools.lru_cache(maxsize=1)
def _forward():
    """The extractor as one traced graph over uint8 batches of any size (eager Keras calls cost
    tens of milliseconds each in Python dispatch, as predictor.compiled_forward notes)."""
    import tensorflow as tf

    model = _extractor()
    spec = tf.TensorSpec([None, None, None, 3], tf.uint8)
    return tf.function(
        lambda images: model(tf.cast(images, tf.float32), training=False), input_signature=[spec], autograph=False
    )


def dimensions() -> int:
    return int(_extractor().output.shape[-1])


def imagenet_features(images: np.ndarray) -> np.ndarray:
    """``(n, 1584)`` float32 features of a uint8 batch ``(n, h, w, 3)`` (any h, w)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected a batch of RGB images (n, h, w, 3), got shape {images.shape}")
    forward = _forward()
    out = [
        np.asarray(forward(np.ascontiguousarray(images[i : i + BATCH], dtype=np.uint8)))
        for i in range(0, len(images), BATCH)
    ]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dimensions()), np.float32)


def split_features(split, batch: int = 256) -> np.ndarray:
    """Features of every image of a preprocessed split (dataset.SplitArrays), in order, reading
    the memory-mapped shards a batch at a time."""
    rows = [imagenet_features(pixels) for pixels in split.batches(batch)]
    return np.concatenate(rows) if rows else np.zeros((0, dimensions()), np.float32)
