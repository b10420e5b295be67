#!/usr/bin/env bash
# Refresh the lock within pyproject.toml's bounds, then write what the images install from it.
#   bash scripts/lock.sh                    # or: make lock; upgrades every package to the newest allowed
#   bash scripts/lock.sh --upgrade-package mlflow     # only one package (any `uv lock` flags)
#   bash scripts/lock.sh --keep             # after editing pyproject: keep every pin it still allows
#   bash scripts/lock.sh --check            # no resolution: only re-export the image locks
# uv.lock is the one lock (runtime, the dev extra and the mlflow-server group, with hashes).
# images/requirements.lock (runtime) and images/mlflow-server.lock are exports of it, in pip's
# requirements format, for the Dockerfile; tests/test_lock.py checks they are up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/uv-env.sh
if [ "${1:-}" = "--check" ]; then
  shift
elif [ "${1:-}" = "--keep" ]; then
  shift
  "$UV" lock "$@"
elif [ $# -eq 0 ]; then
  "$UV" lock --upgrade
else
  "$UV" lock "$@"
fi
export_lock() {  # the header says where the file comes from; the body is uv's own output
  local out=$1; shift
  { echo "# Exported from uv.lock by scripts/lock.sh ($*); do not edit by hand."
    "$UV" export --frozen --no-emit-project --no-header --no-annotate --format requirements-txt "$@"
  } > "$out.part"
  mv "$out.part" "$out"
  echo "wrote $out"
}
export_lock images/requirements.lock --no-default-groups
export_lock images/mlflow-server.lock --only-group mlflow-server
