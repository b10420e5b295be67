#!/usr/bin/env bash
# Install the project into .venv from the lock (uv.lock), exactly: every package at the version
# and with the hash uv.lock pins, the dev/test extra included, then the project itself (editable).
# Nothing is resolved: a uv.lock that no longer satisfies pyproject.toml is an error here; run
# `make lock` (scripts/lock.sh) to refresh it.
# Usage: bash scripts/install.sh          (needs only Python 3.11 or 3.12 and pip)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/uv-env.sh
"$UV" sync --locked --extra dev --quiet
