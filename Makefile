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
compile: install
	.venv/bin/skin-cancer compile --image $(IMAGE) --train-image $(TRAIN_IMAGE) --output pipeline.yaml
