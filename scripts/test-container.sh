#!/usr/bin/env bash
# The container tier: build the runtime image with buildah (images/build.sh; cached layers make a
# rebuild after a code change take seconds), then run the compiled pipeline's tasks in it and
# compare them with kfp.local (tests/container/test_container_tasks.py). Needs root, buildah and mmdebstrap.
# Usage: bash scripts/test-container.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
# A fresh machine: the project's venv (scripts/test.sh makes it) and Debian's buildah and mmdebstrap.
bash scripts/install.sh
if ! command -v buildah >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah mmdebstrap uidmap >/dev/null
  else
    echo "the container tier needs root with buildah and mmdebstrap (Debian packages)" >&2; exit 1
  fi
fi
export IMAGE=${IMAGE:-localhost/skin-cancer:container-test}
bash images/build.sh runtime
SKIN_CANCER_TEST_IMAGE=$IMAGE exec .venv/bin/python -m pytest -m container -s \
  tests/container/test_container_tasks.py "$@"
