"""Container images for the components: the one place they are chosen, at compile time.

``SKIN_CANCER_IMAGE`` (CPU runtime) and ``SKIN_CANCER_TRAIN_IMAGE`` (GPU training) are read
when the component modules are imported; ``skin-cancer compile --image/--train-image``
sets them before importing. Locally, kfp.local's SubprocessRunner ignores images.
"""

import os

DEFAULT_IMAGE = "ghcr.io/skin-cancer-kfp/skin-cancer:0.1.0"
DEFAULT_TRAIN_IMAGE = "ghcr.io/skin-cancer-kfp/skin-cancer-gpu:0.1.0"

RUNTIME_IMAGE = os.environ.get("SKIN_CANCER_IMAGE", DEFAULT_IMAGE)
TRAIN_IMAGE = os.environ.get("SKIN_CANCER_TRAIN_IMAGE", DEFAULT_TRAIN_IMAGE)
