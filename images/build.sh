#!/usr/bin/env bash
# Build the images of images/Dockerfile with buildah, on a machine that cannot pull base images.
#
#   bash images/build.sh                    # runtime, keras-cache-check, mlflow
#   bash images/build.sh train-gpu          # any targets, in order (train-gpu: see images/README.md)
#
# The base is a stand-in for python:3.11-slim-bookworm: Debian bookworm (python3 is 3.11) with
# python3, python3-venv, python3-pip and ca-certificates, made by mmdebstrap from the Debian
# mirror and imported into buildah's storage. The tarball is cached in .cache/images/, and the
# build keeps its layers (--layers), so a second run takes seconds. With a registry at hand,
# PYTHON_IMAGE=python:3.11.13-slim-bookworm uses the real base instead.
# Runs as root (mmdebstrap, and buildah with --isolation chroot, need it). The host's CA
# certificates and /etc/pip.conf are mounted into the RUN steps (a TLS-intercepting proxy to
# PyPI), never copied into an image.
set -euo pipefail
cd "$(dirname "$0")/.."

STAND_IN=localhost/stand-in/python:3.11-bookworm
PYTHON_IMAGE=${PYTHON_IMAGE:-$STAND_IN}
TF_GPU_IMAGE=${TF_GPU_IMAGE:-$PYTHON_IMAGE}
IMAGE=${IMAGE:-localhost/skin-cancer:dev}
TRAIN_IMAGE=${TRAIN_IMAGE:-localhost/skin-cancer-gpu:dev}
MLFLOW_IMAGE=${MLFLOW_IMAGE:-localhost/skin-cancer-mlflow:dev}
CHECK_IMAGE=${CHECK_IMAGE:-localhost/skin-cancer-keras-cache-check:dev}
BAKE_IMAGENET_WEIGHTS=${BAKE_IMAGENET_WEIGHTS:-0}  # 1 needs storage.googleapis.com
CACHE=${CACHE:-.cache/images}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(runtime keras-cache-check mlflow)

stand_in_base() {
  buildah inspect --type image "$STAND_IN" >/dev/null 2>&1 && return
  local tar="$CACHE/debian-bookworm-python3.tar"
  if [ ! -s "$tar" ]; then
    mkdir -p "$CACHE"
    mmdebstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$tar.part" "$DEBIAN_MIRROR"
    mv "$tar.part" "$tar"
  fi
  local ctr
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$tar" /
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$ctr"
  buildah commit --quiet --rm "$ctr" "$STAND_IN" >/dev/null
  echo "stand-in base $STAND_IN from $tar"
}

if [ "$PYTHON_IMAGE" = "$STAND_IN" ] || [ "$TF_GPU_IMAGE" = "$STAND_IN" ]; then stand_in_base; fi

mounts=()
if [ -d /etc/ssl/certs ]; then mounts+=(-v /etc/ssl/certs:/etc/ssl/certs:ro); fi
if [ -f /etc/pip.conf ]; then mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro); fi

for target in "${TARGETS[@]}"; do
  case "$target" in
    runtime) tag=$IMAGE ;;
    train-gpu) tag=$TRAIN_IMAGE ;;
    mlflow) tag=$MLFLOW_IMAGE ;;
    keras-cache-check) tag=$CHECK_IMAGE ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  start=$(date +%s)
  buildah bud --isolation chroot --layers "${mounts[@]}" \
    --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" --build-arg TF_GPU_IMAGE="$TF_GPU_IMAGE" \
    --build-arg BAKE_IMAGENET_WEIGHTS="$BAKE_IMAGENET_WEIGHTS" \
    -f images/Dockerfile --ignorefile images/Dockerfile.dockerignore --target "$target" -t "$tag" .
  echo "built $target as $tag in $(( $(date +%s) - start )) s"
done
