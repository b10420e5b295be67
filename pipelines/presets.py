"""Named parameter sets for the pipeline: what to train where.

``local-cpu`` is what ``skin-cancer run`` uses by default (and the pipeline's own defaults):
sized for a 2-core machine with no pretrained weights. ``imagenet-gpu`` is for a cluster
whose training image has the ImageNet weights baked in (``images/``, build arg
``BAKE_IMAGENET_WEIGHTS=1``): ``skin-cancer compile --preset imagenet-gpu`` or
``skin-cancer submit --preset imagenet-gpu``.
"""

from components.core import settings

LOCAL_CPU: dict = {
    "image_size": settings.IMAGE_SIZE,
    "epochs": 30,
    "batch_size": 32,
    "learning_rate": 0.002,
    # precision "bfloat16": mixed bfloat16 on CPUs with native bf16 instructions (about 1.8x
    # faster training on this project's machines), float32 elsewhere; GPUs use mixed float16.
    "models": [
        # The whole cosine schedule: its low-learning-rate tail is where the basic CNN gains most.
        {"family": "basic", "precision": "bfloat16", "early_stopping_patience": 0},
        # A narrower CNN as a cheap second contender. Not here, to keep the run within 20 minutes
        # on 2 cores: crossval (3-4 trainings, never the best on validation) and the
        # keras.applications families (from scratch they did not learn within a CPU budget);
        # see README "Model quality".
        {"family": "basic", "name": "basic-narrow", "width": 24, "epochs": 16, "precision": "bfloat16",
         "early_stopping_patience": 0},
    ],
}

IMAGENET_GPU: dict = {
    "image_size": 224,
    "epochs": 30,
    "batch_size": 64,
    "learning_rate": 0.0003,
    "models": [
        {"family": "efficientnet", "weights": "imagenet"},
        {"family": "resnet50", "weights": "imagenet"},
        {"family": "basic", "learning_rate": 0.003},
        {"family": "crossval", "folds": 3, "learning_rate": 0.003},
    ],
}

PRESETS: dict[str, dict] = {"local-cpu": LOCAL_CPU, "imagenet-gpu": IMAGENET_GPU}
