# The verbs of daily work. Each is one command; see README.md and docs/.
# The version is written once, in pyproject.toml; image tags follow it.
VERSION := $(shell python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
REPOSITORY ?= ghcr.io/skin-cancer-kfp
IMAGE ?= $(REPOSITORY)/skin-cancer:$(VERSION)
TRAIN_IMAGE ?= $(REPOSITORY)/skin-cancer-gpu:$(VERSION)

.PHONY: install lock test run compile bench
install:
	bash scripts/install.sh
lock:
	bash scripts/lock.sh
test:
	bash scripts/test.sh
run: install
	.venv/bin/skin-cancer run
bench: install
	.venv/bin/python -m benchmarks
compile: install
	.venv/bin/skin-cancer compile --image $(IMAGE) --train-image $(TRAIN_IMAGE) --output pipeline.yaml

# Container images (images/README.md). DOCKER=podman works too; BAKE_IMAGENET_WEIGHTS=0 skips the weights.
DOCKER ?= docker
MLFLOW_IMAGE ?= $(REPOSITORY)/mlflow:$(VERSION)
BAKE_IMAGENET_WEIGHTS ?= 1
.PHONY: images images-push
images:
	$(DOCKER) build -f images/Dockerfile --target runtime -t $(IMAGE) .
	$(DOCKER) build -f images/Dockerfile --target train-gpu --build-arg BAKE_IMAGENET_WEIGHTS=$(BAKE_IMAGENET_WEIGHTS) -t $(TRAIN_IMAGE) .
	$(DOCKER) build -f images/Dockerfile --target mlflow -t $(MLFLOW_IMAGE) .
images-push: images
	$(DOCKER) push $(IMAGE) && $(DOCKER) push $(TRAIN_IMAGE) && $(DOCKER) push $(MLFLOW_IMAGE)
