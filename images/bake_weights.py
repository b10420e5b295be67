"""The Keras weights cache of the images (KERAS_HOME): bake it, share it, prove it is used.

Run at image build time (images/Dockerfile), as root:

    python3 images/bake_weights.py bake components/core/modeling/models.py   # download (train-gpu only)
    python3 images/bake_weights.py share                             # permissions for the runtime user
    python3 images/bake_weights.py check [NAME=SHA256 ...]           # get_file finds the files, no download

``bake`` builds each registered family with ``weights="imagenet"``, which makes Keras fetch and
cache exactly the files training will ask for; families without pretrained weights ignore the
setting. Only keras and numpy are needed, so this runs before the project is installed and the
project's own (small) layer stays last.

Why ``share``: ``keras.utils.get_file`` (keras/src/utils/file_utils.py) uses
``$KERAS_HOME`` only when ``os.access($KERAS_HOME, os.W_OK)`` holds for the *calling* user;
otherwise it silently switches to ``/tmp/.keras``, finds nothing there and downloads (which
fails on a cluster without internet). A root-owned, read-only cache is therefore never read.
``share`` makes the cache owned by uid 10001 and group 0 with group permissions equal to the
owner's, so both the images' user 10001 and an arbitrary uid in group 0 (OpenShift) pass
that check and read the baked files.

``check`` calls the real ``get_file`` with an unreachable origin for each cached file (or the
given NAME=SHA256 pairs) and fails unless it returns the file under ``$KERAS_HOME/models``.
Run as root it re-runs itself as uid 10001 and as an OpenShift-style uid in group 0.
"""

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

RUNTIME_UID = 10001
RANDOM_UID = 1000680000  # what OpenShift's restricted SCC assigns: an arbitrary uid, gid 0
UNREACHABLE = "http://127.0.0.1:9/unreachable"


def keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME") or "/opt/keras")


def load_zoo(path: str):
    spec = importlib.util.spec_from_file_location("skin_cancer_model_zoo", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def bake(zoo, family: str) -> bool:
    """Bake one family's download; False for families whose weights come from an installed
    package instead (efficientnet-lite0/1/2: ``python3 -m components.core.modeling.pretrained`` converts them)."""
    try:
        zoo.build_model(zoo.ModelSpec(family=family, image_size=224, weights="imagenet", augment=False))
    except ModuleNotFoundError as err:
        if (err.name or "").startswith("components"):
            return False
        raise
    return True


def bake_all(zoo_path: str) -> list[Path]:
    zoo = load_zoo(zoo_path)
    for family in zoo.family_names():
        if bake(zoo, family):
            print(f"baked ImageNet weights for {family}")
        else:
            print(f"{family}: weights from an installed package (converted by components.core.modeling.pretrained)")
    files = cached_files()
    if not files:
        raise SystemExit(f"no weight files in {keras_home() / 'models'} after baking")
    return files


def cached_files() -> list[Path]:
    models = keras_home() / "models"
    return sorted(p for p in models.iterdir() if p.is_file()) if models.is_dir() else []


def share() -> None:
    """Owner 10001, group 0, group permissions = owner's: get_file's W_OK test passes for both."""
    home = keras_home()
    (home / "models").mkdir(parents=True, exist_ok=True)
    for path in [home, *sorted(home.rglob("*"))]:
        os.chown(path, RUNTIME_UID, 0, follow_symlinks=False)
        if not path.is_symlink():
            mode = path.stat().st_mode & 0o777
            owner = (mode >> 6) & 0o7
            os.chmod(path, (mode & 0o707) | (owner << 3) | 0o004 | (0o001 if path.is_dir() else 0))
        if path.is_dir():
            os.chmod(path, path.stat().st_mode | 0o2000)  # setgid: new files stay in group 0


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_as_current_user(pairs: dict[str, str]) -> None:
    import keras

    expected_dir = keras_home() / "models"
    for name, digest in pairs.items():
        got = keras.utils.get_file(name, origin=UNREACHABLE, cache_subdir="models", file_hash=digest)
        if Path(got) != expected_dir / name:
            raise SystemExit(f"uid {os.getuid()}: get_file returned {got}, not the baked {expected_dir / name}")
    print(f"uid {os.getuid()} gid {os.getgid()}: get_file found {len(pairs)} file(s) in {expected_dir}, no download")


def check(pairs: dict[str, str]) -> None:
    if not pairs:
        pairs = {p.name: sha256(p) for p in cached_files()}
    if os.getuid() != 0:
        check_as_current_user(pairs)
        return
    args = [sys.executable, os.path.abspath(__file__), "check", *(f"{k}={v}" for k, v in pairs.items())]
    # The image's USER 10001:10001 (no supplementary groups), and a random uid in group 0.
    for uid, gid in ((RUNTIME_UID, RUNTIME_UID), (RANDOM_UID, 0)):
        subprocess.run(args, check=True, env={**os.environ, "HOME": "/tmp"}, user=uid, group=gid, extra_groups=[gid])
    share()  # anything Keras wrote while checking (keras.json) gets the same permissions


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "bake"
    if command == "bake":
        files = bake_all(argv[2] if len(argv) > 2 else "components/core/modeling/models.py")
        print("\n".join(f"{p} {p.stat().st_size} bytes" for p in files))
    elif command == "share":
        share()
    elif command == "check":
        check(dict(arg.split("=", 1) for arg in argv[2:]))
    else:
        raise SystemExit(f"unknown command {command!r}; use bake, share or check")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
