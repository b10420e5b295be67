"""Download the ImageNet weights of every pretrained backbone in the model zoo into KERAS_HOME.

Run at image build time (images/Dockerfile, target train-gpu) with the zoo's source file:

    python3 images/bake_weights.py components/core/models.py

It builds each registered family with ``weights="imagenet"``, which makes Keras fetch and
cache exactly the files training will ask for; families without pretrained weights ignore
the setting. Only keras and numpy are needed, so this runs before the project is installed
and the project's own (small) layer stays last.
"""

import importlib.util
import sys


def load_zoo(path: str):
    spec = importlib.util.spec_from_file_location("skin_cancer_model_zoo", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def bake(zoo, family: str) -> None:
    zoo.build_model(zoo.ModelSpec(family=family, image_size=224, weights="imagenet", augment=False))


def main(argv: list[str]) -> int:
    zoo = load_zoo(argv[1] if len(argv) > 1 else "components/core/models.py")
    for family in zoo.family_names():
        bake(zoo, family)
        print(f"baked ImageNet weights for {family}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
