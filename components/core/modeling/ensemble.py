"""The fan-out's models as one: the mean of the members' calibrated p(malignant), in one Keras model.

A member is a trained model as registered (its temperature folded into its head, its flip views
averaged in its graph), so the mean is of calibrated probabilities. The ensemble is a plain Keras
functional model (uint8 images in, p(malignant) out) with the members as nested models, so
``predict``, ``serve``, ``score``, the smoke test and the decision policy use it exactly as they
use one network; Grad-CAM averages the members' heat maps (inference/gradcam.py).
"""

from __future__ import annotations

import keras

AVERAGE = "ensemble_average"  # the layer that marks a model as an ensemble


def average_model(members: list, name: str = "ensemble") -> keras.Model:
    """One model answering the mean of ``members``' outputs (each (n, 1) p(malignant))."""
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
    inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
    # Each member nested under its own name: two members of one family share a layer name otherwise.
    for i, member in enumerate(members):
        member.name = f"member_{i}_{member.name}"
    outputs = keras.layers.Average(name=AVERAGE, dtype="float32")([m(inputs) for m in members])
    return keras.Model(inputs, outputs, name=name)


def members_of(model) -> list | None:
    """The member models of an :func:`average_model` (in order), or None for a single network."""
    names = {layer.name for layer in model.layers}
    if AVERAGE not in names:
        return None
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]
