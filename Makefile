# The verbs of daily work. Each is one command; see README.md.
IMAGE ?= ghcr.io/skin-cancer-kfp/skin-cancer:0.1.0
TRAIN_IMAGE ?= ghcr.io/skin-cancer-kfp/skin-cancer-gpu:0.1.0

.PHONY: install test run compile bench
install:
	python3 -m venv .venv && .venv/bin/pip install -e ".[dev]"
test:
	bash scripts/test.sh
run: install
	.venv/bin/skin-cancer run
bench: install
	.venv/bin/skin-cancer bench
compile: install
	.venv/bin/skin-cancer compile --image $(IMAGE) --train-image $(TRAIN_IMAGE) --output pipeline.yaml

# Container images (images/README.md). DOCKER=podman works too; BAKE_IMAGENET_WEIGHTS=0 skips the weights.
DOCKER ?= docker
MLFLOW_IMAGE ?= ghcr.io/skin-cancer-kfp/mlflow:0.1.0
BAKE_IMAGENET_WEIGHTS ?= 1
.PHONY: images images-push images-lock
images:
	$(DOCKER) build -f images/Dockerfile --target runtime -t $(IMAGE) .
	$(DOCKER) build -f images/Dockerfile --target train-gpu --build-arg BAKE_IMAGENET_WEIGHTS=$(BAKE_IMAGENET_WEIGHTS) -t $(TRAIN_IMAGE) .
	$(DOCKER) build -f images/Dockerfile --target mlflow -t $(MLFLOW_IMAGE) .
images-push: images
	$(DOCKER) push $(IMAGE) && $(DOCKER) push $(TRAIN_IMAGE) && $(DOCKER) push $(MLFLOW_IMAGE)
images-lock:
	.venv/bin/python images/lock.py
