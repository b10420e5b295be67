"""``skin-cancer bench``: this project against the reference approach and the machine's limits.

One command measures, in one run, and writes ``bench.json`` plus ``bench.md`` to ``--out``:

1. Preprocessing from an S3 endpoint on 127.0.0.1 (a moto server in its own process, so its
   memory and CPU are not the measured process's), images/s and peak memory of

   a. this project's :func:`components.core.dataset.preprocess`;
   b. the reference approach, re-implemented here: one ``get_object`` at a time, PIL decode
      on one core, ``np.array(img) / 255`` (float64) per image into a list, ``np.array`` of
      the list, float64 one-hot labels, ``pickle.dumps`` and one ``put_object`` of the pickle;
   c. the machine's ceiling: the project's own :func:`decode_image` (decode + resize) in a
      bare loop over the same bytes already in memory, on one core, times the cores the
      project's run may use.

   Diagnostics beside them: the same decode with one thread per core, GET-only throughput
   from the endpoint, and the project's preprocessing from the local folder (no S3).
2. Training input: the same model (the ``basic`` family at the pipeline's image size) and
   batch size, fed by :func:`components.core.training.make_dataset` (uint8 shards) or by
   float64 ``/255`` arrays with float64 one-hot labels through ``model.fit`` as the reference
   did; plus a tiny model that makes the input the bottleneck.
3. End to end: ``skin-cancer run`` with default local settings, wall time and per stage.
4. Scaling: this project's preprocessing at 1x, 2x and 4x the data (copies under new keys).

Every measured method runs in its own fresh Python process; peak memory is that process's
VmHWM (not ``ru_maxrss``, which on Linux carries the parent's peak across fork and exec). Timings on a shared machine are distorted: the report records the load average
before each measurement, and compares methods only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = "skin-cancer-bench/v1"
DEFAULT_OUT = "runs/bench"
COMPARE_SIZE = 224  # the reference's image size: (a), (b), (c) and scaling are compared here
PROJECT_SIZE = 128  # the pipeline's default image size
BUCKET = "skin-cancer-bench"
PREFIX = "data"
CLASSES = ("benign", "malignant")
SPLITS = ("train", "test")
FULL_DATA_IMAGES = 2961
GPU_NOT_MEASURED = "not measured: no accelerator in this session"
TINY_STEPS_FACTOR = 10  # the tiny model's steps are ~100x shorter: more of them for a measurable time

TARGETS = {
    "preprocess_vs_reference": 10.0,  # a / b, images/s, at least
    "preprocess_vs_ceiling": 0.70,  # a / c, at least
    "preprocess_memory_vs_reference": 0.25,  # peak a / peak b, at most
    "preprocess_memory_growth_4x": 1.25,  # peak at 4x / peak at 1x, at most (linear would be ~4)
    "training_input_vs_reference": 1.5,  # images/s, at least
    "end_to_end_seconds": 900.0,  # at most, on all 2,961 images
}


# --------------------------------------------------------------------------- machine


def effective_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    mem = _meminfo()
    return {
        "cores": os.cpu_count(),
        "cores_usable": effective_cores(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(mem.get("MemTotal", 0) / 2**30, 1),
        "memory_available_gib_at_start": round(mem.get("MemAvailable", 0) / 2**30, 1),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("tensorflow", "keras", "numpy", "pillow", "boto3", "moto", "kfp")},
    }


def machine_line(m: dict) -> str:
    return (f"{m['cores_usable']} cores ({m['cpu_model']}), {m['memory_gib']} GiB memory, "
            f"Python {m['python']}, TensorFlow {m['versions'].get('tensorflow')}")


# --------------------------------------------------------------------------- data


def find_default_data() -> Path:
    """``../shared/data/skin-cancer`` from the working directory, else beside the repository."""
    candidates = [Path.cwd().parent / "shared" / "data" / "skin-cancer",
                  Path(__file__).resolve().parents[2] / "shared" / "data" / "skin-cancer"]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


def list_images(root: Path, limit_per_folder: int | None = None) -> list[tuple[str, Path]]:
    """``(relpath, path)`` of every image in ``{train,test}/{benign,malignant}``, sorted, optionally capped."""
    from components.core.images import has_image_extension

    items = []
    for split in SPLITS:
        for cls in CLASSES:
            folder = root / split / cls
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: missing; expected the layout {{train,test}}/{{benign,malignant}}/*.jpg")
            files = sorted(p for p in folder.iterdir() if p.is_file() and has_image_extension(p.name))
            if limit_per_folder:
                files = files[:limit_per_folder]
            items += [(f"{split}/{cls}/{p.name}", p) for p in files]
    return items


# --------------------------------------------------------------------------- the S3 server

_SERVER_CODE = """
import logging, sys, time
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request log lines: less server CPU
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """A moto S3 server on 127.0.0.1 in its own process (its memory and CPU are not the measured ones)."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> "S3Server":
        self.port = _free_port()
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.logdir / "s3-server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER_CODE, str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the S3 server exited: see {self.logdir / 's3-server.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the S3 server did not start within 60 s")
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}",
            "AWS_ACCESS_KEY_ID": "bench-key-id",
            "AWS_SECRET_ACCESS_KEY": "bench-secret-key",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self, pool: int = 16):
        import boto3
        from botocore.config import Config

        e = self.env
        return boto3.session.Session().client(
            "s3", endpoint_url=e["AWS_ENDPOINT_URL"], region_name=e["AWS_DEFAULT_REGION"],
            aws_access_key_id=e["AWS_ACCESS_KEY_ID"], aws_secret_access_key=e["AWS_SECRET_ACCESS_KEY"],
            config=Config(max_pool_connections=pool, retries={"total_max_attempts": 8, "mode": "standard"}))

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError, AttributeError):
            return float("nan")

    def memory_mb(self) -> dict[str, float | None]:
        st = _proc_status(self.proc.pid) if self.proc else {}
        return {"rss_mb": round(st["VmRSS"], 1) if "VmRSS" in st else None,
                "peak_rss_mb": round(st["VmHWM"], 1) if "VmHWM" in st else None}

    def upload(self, items: list[tuple[str, Path]], prefix: str = PREFIX, rename=None, workers: int = 16) -> int:
        """Upload ``items`` concurrently under ``prefix``; ``rename(relpath)`` gives new keys (copies)."""
        client = self.client(pool=workers)

        def put(item: tuple[str, Path]) -> int:
            rel, path = item
            body = path.read_bytes()
            client.put_object(Bucket=BUCKET, Key=f"{prefix}/{rename(rel) if rename else rel}", Body=body)
            return len(body)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return sum(pool.map(put, items))


def copy_key(relpath: str, copy: int) -> str:
    """``train/benign/1.jpg`` -> ``train/benign/copy1-1.jpg``: the same image under a new key."""
    folder, _, name = relpath.rpartition("/")
    return f"{folder}/copy{copy}-{name}"


# --------------------------------------------------------------------------- measured methods (child side)


def _rss_now_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _proc_status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB (empty when it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS", "VmHWM")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory since its exec (VmHWM).

    Not ``ru_maxrss``: on Linux that survives fork and exec, so a child started by a big
    parent would report the parent's peak instead of its own.
    """
    return round(_proc_status().get("VmHWM", float("nan")), 1)


def _tree_memory_mb(root: int) -> tuple[float, float]:
    """(sum of VmRSS over ``root`` and its descendants, the largest VmHWM among them)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, largest, todo = 0.0, 0.0, [root]
    while todo:
        pid = todo.pop()
        st = _proc_status(pid)
        total += st.get("VmRSS", 0.0)
        largest = max(largest, st.get("VmHWM", 0.0))
        todo += children.get(pid, [])
    return total, largest


def _cpu_self() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Mark:
    """Start of the measured part: after imports and setup, before the work."""

    def __init__(self):
        self.rss_mb = _rss_now_mb()
        self.cpu = _cpu_self()
        self.t = time.perf_counter()

    def done(self, images: int, **extra) -> dict:
        seconds = time.perf_counter() - self.t
        return {"images": int(images), "seconds": round(seconds, 3),
                "images_per_s": round(images / seconds, 2) if seconds > 0 else None,
                "cpu_seconds": round(_cpu_self() - self.cpu, 2), "rss_before_work_mb": round(self.rss_mb, 1),
                **extra}


def m_project_preprocess(data_uri: str, image_size: int, out_dir: str, keep: bool = False) -> dict:
    """(a) This project's preprocessing, exactly as the pipeline's preprocess stage calls it."""
    import boto3  # noqa: F401  imports are not timed, for either approach
    import sklearn.model_selection  # noqa: F401
    import tqdm  # noqa: F401

    from components.core import dataset

    outs = {s: str(Path(out_dir, s)) for s in dataset.OUTPUT_SPLITS}
    mark = _Mark()
    report = dataset.preprocess(data_uri, outs, image_size=image_size)
    result = mark.done(report.total_images, skipped=len(report.skipped),
                       class_counts={c: sum(s["class_counts"][c] for s in report.splits.values()) for c in CLASSES},
                       output_mb=round(sum(f.stat().st_size for f in Path(out_dir).rglob("*") if f.is_file()) / 2**20, 1))
    if not keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    return result


def reference_preprocess(bucket: str, prefix: str, image_size: int, out_key: str) -> dict:
    """The reference approach, re-implemented faithfully (see the module docstring).

    Sequential GETs; PIL decode and resize on one core; each image ``np.array(img) / 255``
    (float64) appended to a list, the list made one array per split; float64 one-hot labels
    from the folder names; the whole data set pickled and uploaded with one PUT.
    """
    import io
    import pickle

    import boto3
    import numpy as np
    from PIL import Image

    s3 = boto3.client("s3")
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    data = {}
    for split in SPLITS:
        images, labels = [], []
        for key in keys:
            parts = key[len(prefix) + 1 :].split("/")
            if len(parts) != 3 or parts[0] != split or parts[1] not in CLASSES:
                continue
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            img = Image.open(io.BytesIO(body)).convert("RGB").resize((image_size, image_size))
            images.append(np.array(img) / 255)
            labels.append(CLASSES.index(parts[1]))
        x = np.array(images)
        y = np.eye(len(CLASSES))[labels]  # one-hot, float64
        data[split] = (x, y)
    blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    s3.put_object(Bucket=bucket, Key=out_key, Body=blob)
    return {"images": sum(len(x) for x, _ in data.values()), "pickle_bytes": len(blob),
            "dtype": str(data[SPLITS[0]][0].dtype),
            "class_counts": {c: int(sum(y[:, i].sum() for _, y in data.values())) for i, c in enumerate(CLASSES)}}


def m_reference_preprocess(bucket: str, prefix: str, image_size: int, out_key: str) -> dict:
    """(b) The reference approach, timed; the uploaded pickle is checked and removed afterwards."""
    import boto3
    import numpy  # noqa: F401  imports are not timed, for either approach
    import PIL.Image  # noqa: F401

    mark = _Mark()
    got = reference_preprocess(bucket, prefix, image_size, out_key)
    result = mark.done(got.pop("images"), **got)
    s3 = boto3.client("s3")
    result["uploaded_bytes"] = s3.head_object(Bucket=bucket, Key=out_key)["ContentLength"]
    s3.delete_object(Bucket=bucket, Key=out_key)
    return result


def m_decode(paths: list[str], image_size: int, threads: int = 1) -> dict:
    """(c) Decode-only over bytes already in memory: the project's decode_image (decode + resize)."""
    from components.core.images import decode_image

    blobs = [Path(p).read_bytes() for p in paths]
    mark = _Mark()
    if threads <= 1:
        for b in blobs:
            decode_image(b, image_size)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(lambda b: decode_image(b, image_size), blobs):
                pass
    return mark.done(len(blobs), threads=threads)


def m_fetch_only(data_uri: str) -> dict:
    """Diagnostic: list + concurrent GETs through the project's storage layer, no decode,
    with as many threads as the project's preprocessing uses."""
    import inspect

    from components.core import dataset, storage

    workers = inspect.signature(dataset.preprocess).parameters["workers"].default
    mark = _Mark()
    infos = storage.list_objects(data_uri)
    total = 0
    for _, data in storage.read_many([i.uri for i in infos], workers=workers):
        if isinstance(data, Exception):
            raise data
        total += len(data)
    return mark.done(len(infos), bytes=total, threads=workers)


def _bench_model(spec, backbone, float_input: bool, seed: int):
    """The project's model graph (see components.core.models.build_model) with a chosen input and head.

    ``float_input``: the reference's input, floats in [0, 1] scaled back to 0-255 by the first
    layer, and its head: a 2-unit softmax for one-hot labels.
    """
    import keras
    from keras import layers

    from components.core.models import augmentation

    keras.utils.set_random_seed(seed)
    if float_input:
        inputs = keras.Input(shape=(None, None, 3), name="image")  # float32; Keras casts the float64 arrays
        x = layers.Rescaling(255.0, name="to_0_255")(inputs)
    else:
        inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
        x = layers.Rescaling(1.0, name="to_float")(inputs)
    x = layers.Resizing(spec.image_size, spec.image_size, antialias=True, name="resize")(x)
    if spec.augment:
        x = augmentation(seed)(x)
    x = layers.Dropout(spec.dropout, seed=seed)(backbone(x, spec))
    if float_input:
        outputs = layers.Dense(2, activation="softmax", dtype="float32", name="p")(x)
    else:
        outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="p_malignant")(x)
    return keras.Model(inputs, outputs, name="bench")


def m_train_input(kind: str, split_dir: str, batch_size: int, steps_per_epoch: int, epochs: int,
                  model: str = "basic", seed: int = 42) -> dict:
    """Training images/s for one input path; the first epoch (tracing, warm-up) is not timed.

    ``kind``: "project" (make_dataset over uint8 shards, the project's model) or "reference"
    (float64 /255 arrays and float64 one-hot labels into model.fit, the same graph with a
    float input and a 2-unit softmax head). ``model``: "basic" or "tiny" (global pooling +
    dense: the input path is the bottleneck).
    """
    import keras
    import numpy as np
    import tensorflow as tf
    from keras import layers

    from components.core.dataset import SplitArrays
    from components.core.models import MODEL_FAMILIES, ModelSpec, build_model
    from components.core.training import make_dataset

    gpus = tf.config.list_physical_devices("GPU")
    keras.mixed_precision.set_global_policy("float32")  # the same arithmetic for both input paths
    split = SplitArrays(split_dir)
    if model == "tiny":
        spec = ModelSpec(family="basic", image_size=split.image_size, augment=False)
        backbone = lambda x, s: layers.GlobalAveragePooling2D()(x)  # noqa: E731
    else:
        spec = ModelSpec(family=model, image_size=split.image_size)  # the project's defaults
        backbone = MODEL_FAMILIES[model]
    optimizer = keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=1e-4)
    # Whole batches only, so images/s counts exactly steps x batch size for both inputs.
    held = max(batch_size, len(split) // batch_size * batch_size)
    idx = np.arange(min(held, len(split)))
    if kind == "project":
        net = build_model(spec, seed=seed) if model != "tiny" else _bench_model(spec, backbone, False, seed)
        net.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(), metrics=["accuracy"])
        # .repeat(): epochs here are a fixed number of steps, not passes over the data.
        fit_args = {"x": make_dataset(split, batch_size, idx, shuffle=True, seed=seed).repeat()}
    elif kind == "reference":
        net = _bench_model(spec, backbone, True, seed)
        net.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
        x = np.empty((len(idx), split.image_size, split.image_size, 3), dtype=np.float64)
        x[:] = split.gather(idx)
        x /= 255  # the reference's float64 arrays, as unpickled
        y = np.eye(2)[split.labels[idx].astype(int)]  # float64 one-hot
        fit_args = {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}
    else:
        raise ValueError(f"unknown kind {kind!r}")

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: list[float] = []
            self.steps: list[int] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            self.steps.append(0)

        def on_train_batch_end(self, batch, logs=None):
            self.steps[-1] += 1

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self.t0)

    timer = Timer()
    mark = _Mark()
    net.fit(**fit_args, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=[timer], verbose=0)
    total = mark.done(0)
    timed_s = sum(timer.epochs[1:])
    timed_steps = sum(timer.steps[1:])
    images = timed_steps * batch_size
    return {
        "images": images, "seconds": round(timed_s, 3),
        "images_per_s": round(images / timed_s, 2) if timed_s > 0 else None,
        "warmup_seconds": round(timer.epochs[0], 3) if timer.epochs else None,
        "epoch_seconds": [round(t, 3) for t in timer.epochs], "steps_per_epoch": timer.steps,
        "fit_seconds": total["seconds"], "cpu_seconds": total["cpu_seconds"],
        "rss_before_work_mb": total["rss_before_work_mb"], "params": int(net.count_params()),
        "train_images_held": len(idx), "device": f"{len(gpus)} gpu" if gpus else "cpu",
    }


_TASK_RE = re.compile(
    r"^(\d{1,2}):(\d{2}):(\d{2})\.(\d+) - \w+ - "
    r"(?:Executing task '([^']+)'|Task '([^']+)' finished with status (\w+))"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_kfp_log(text: str) -> list[dict]:
    """Per-task wall times from kfp.local's log lines (``HH:MM:SS.fff - INFO - Executing task 'x'``)."""
    stages: list[dict] = []
    open_tasks: dict[str, list[dict]] = {}
    counts: dict[str, int] = {}
    last, offset = -1.0, 0.0
    for raw in text.splitlines():
        m = _TASK_RE.match(_ANSI.sub("", raw).strip())
        if not m:
            continue
        h, mi, s, frac = m.group(1, 2, 3, 4)
        t = int(h) * 3600 + int(mi) * 60 + int(s) + float(f"0.{frac}") + offset
        if t < last:  # past midnight
            offset += 86400
            t += 86400
        last = t
        if m.group(5):
            name = m.group(5)
            counts[name] = counts.get(name, 0) + 1
            stage = {"task": name if counts[name] == 1 else f"{name} #{counts[name]}", "start": t}
            stages.append(stage)
            open_tasks.setdefault(name, []).append(stage)
        else:
            pending = open_tasks.get(m.group(6)) or []
            if pending:
                stage = pending.pop(0)
                stage["seconds"] = round(t - stage.pop("start"), 3)
                stage["status"] = m.group(7)
    for stage in stages:
        stage.pop("start", None)
    return stages


def m_end_to_end(data_uri: str, workdir: str, run_timeout: float, extra_args: list[str] | None = None) -> dict:
    """``skin-cancer run`` with default local settings; wall time, per stage, peak memory of the tree."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    summary_path = work / "summary.json"
    log_path = work / "run.log"
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "--data", data_uri, "--workdir", str(work),
           "--summary-json", str(summary_path), *(extra_args or [])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the local default store
    started = time.perf_counter()
    tree_peak, largest = 0.0, 0.0
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            if time.perf_counter() - started > run_timeout:
                proc.kill()
                proc.wait()
                break
            total, big = _tree_memory_mb(proc.pid)  # sampled: every 0.5 s
            tree_peak, largest = max(tree_peak, total), max(largest, big)
            time.sleep(0.5)
        rc = proc.returncode if time.perf_counter() - started <= run_timeout else "timeout"
    wall = time.perf_counter() - started
    text = log_path.read_text(errors="replace")
    result = {"images": 0, "seconds": round(wall, 3), "returncode": rc, "command": cmd[1:],
              "stages": parse_kfp_log(text),
              "peak_rss_mb_largest_process": round(largest, 1), "peak_rss_mb_all_processes": round(tree_peak, 1),
              "log": str(log_path)}
    if rc != 0:
        result["log_tail"] = text[-3000:]
        raise RuntimeError(f"skin-cancer run exited {rc}: {text[-1500:]}")
    summary = json.loads(summary_path.read_text())
    result["pipeline_wall_seconds"] = round(summary.get("wall_seconds", 0.0), 3)
    result["models"] = [{"name": m["name"], "seconds": round(m["seconds"], 1),
                         "val_accuracy": m["val"]["accuracy"], "test_accuracy": m["test"]["accuracy"]}
                        for m in summary.get("models", [])]
    result["winner"] = summary.get("winner")
    for out in sorted(work.glob("pipeline-root/*/preprocess/executor_output.json")):
        report = json.loads(json.loads(out.read_text())["parameterValues"]["report"])
        result["images"] = report["total_images"]
        result["preprocess_report"] = {"seconds": round(report["seconds"], 3),
                                       "images_per_second": report["images_per_second"],
                                       "image_size": report["image_size"], "splits": report["splits"]}
    return result


METHODS = {
    "project_preprocess": m_project_preprocess,
    "reference_preprocess": m_reference_preprocess,
    "decode": m_decode,
    "fetch_only": m_fetch_only,
    "train_input": m_train_input,
    "end_to_end": m_end_to_end,
}


def _child_main(argv: list[str]) -> int:
    """``python -m pipelines.bench _child METHOD IN.json OUT.json``: run one method, record its peak memory."""
    method, in_path, out_path = argv
    kwargs = json.loads(Path(in_path).read_text())
    result = METHODS[method](**kwargs)
    result["peak_rss_mb"] = peak_rss_mb()
    Path(out_path).write_text(json.dumps(result, default=float))
    return 0


# --------------------------------------------------------------------------- orchestration (parent side)


class Runner:
    """Runs each measured method in a fresh Python process and collects its result."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, server: S3Server | None = None,
                 timeout: float = 7200, log=print, machine: str = ""):
        self.workdir = workdir
        self.machine = machine
        self.env = env or {}
        self.server = server
        self.timeout = timeout
        self.log = log
        self.failures: list[str] = []
        self._n = 0

    def run(self, label: str, method: str, timeout: float | None = None, **kwargs) -> dict:
        self._n += 1
        stem = self.workdir / f"{self._n:02d}-{method}"
        in_path, out_path = stem.with_suffix(".in.json"), stem.with_suffix(".out.json")
        in_path.write_text(json.dumps(kwargs))
        # No AWS_* from the caller (AWS_ENDPOINT_URL_S3, a profile...): only the benchmark's own endpoint.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **self.env})
        repo_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH", "")) if p)
        load = [round(v, 2) for v in os.getloadavg()]
        server_cpu = self.server.cpu_seconds() if self.server else None
        self.log(f"  {label} ...")
        started = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "pipelines.bench", "_child", method, str(in_path), str(out_path)],
                                  env=env, capture_output=True, text=True, timeout=timeout or self.timeout)
            ok = proc.returncode == 0 and out_path.is_file()
            error = None if ok else (proc.stderr or proc.stdout)[-2500:]
        except subprocess.TimeoutExpired:
            ok, error = False, f"timed out after {timeout or self.timeout:.0f} s"
        process_s = time.perf_counter() - started
        result = json.loads(out_path.read_text()) if ok else {}
        result.update({"label": label, "method": method, "ok": ok, "process_seconds": round(process_s, 2),
                       "machine": self.machine, "load_average_before": load})
        if self.server is not None:
            result["server_cpu_seconds"] = round(self.server.cpu_seconds() - server_cpu, 2)
        if not ok:
            result["error"] = error
            self.failures.append(f"{label}: {((error or '').strip().splitlines() or ['failed'])[-1]}")
            self.log(f"    FAILED: {(error or '').strip()[-600:]}")
        else:
            ips = result.get("images_per_s")
            peak = result.get("peak_rss_mb_largest_process", result.get("peak_rss_mb"))
            self.log(f"    {result.get('images')} images in {result.get('seconds')} s"
                     + (f" = {ips} images/s" if ips else "") + f", peak {peak} MB")
        return result


def _ratio(a, b, digits: int = 3):
    try:
        if a is None or b in (None, 0):
            return None
        return round(float(a) / float(b), digits)
    except (TypeError, ValueError):
        return None


def _target(tid: str, description: str, measured, target: float, at_least: bool, unit: str = "", note: str = "") -> dict:
    met = None if measured is None else (measured >= target if at_least else measured <= target)
    return {"id": tid, "description": description, "measured": measured, "target": target,
            "comparison": ">=" if at_least else "<=", "unit": unit, "met": met, "note": note}


def _ok(m: dict | None) -> bool:
    return bool(m) and m.get("ok", False)


def run_bench(
    data: str | Path | None = None,
    out: str | Path = DEFAULT_OUT,
    quick: bool = False,
    skip_e2e: bool = False,
    limit_per_folder: int | None = None,
    compare_size: int = COMPARE_SIZE,
    project_size: int = PROJECT_SIZE,
    batch_size: int = 32,
    train_steps: int | None = None,
    train_epochs: int | None = None,
    scale_factors: tuple[int, ...] = (1, 2, 4),
    e2e_timeout: float = 5400,
    e2e_args: list[str] | None = None,
    readme: str | Path | None = None,
    log=print,
) -> dict:
    """Run every benchmark once; write ``bench.json`` and ``bench.md`` to ``out``; return the report."""
    import importlib.util

    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise RuntimeError("the benchmark's S3 endpoint needs moto[server]: pip install -e '.[dev]'")
    data_dir = Path(data) if data else find_default_data()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no data; pass --data DIR with {{train,test}}/{{benign,malignant}}/*.jpg")
    if quick and limit_per_folder is None:
        limit_per_folder = 30
    train_steps = train_steps or (2 if quick else 10)
    train_epochs = train_epochs or (2 if quick else 4)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=out_dir))
    items = list_images(data_dir, limit_per_folder)
    n = len(items)
    all_items = list_images(data_dir)
    full = n == len(all_items) and n == FULL_DATA_IMAGES
    cores = effective_cores()
    machine = machine_info()
    short = f"{machine['cores_usable']} cores, {machine['memory_gib']} GiB"
    log(f"skin-cancer bench: {n} images from {data_dir} ({'full data set' if full else 'SUBSET'}), "
        f"machine: {machine_line(machine)}")
    report: dict = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["skin-cancer", *sys.argv[1:]]) if sys.argv[1:2] == ["bench"] else None,
        "mode": "quick" if quick else "full",
        "machine": machine,
        "data": {"path": str(data_dir), "images": n, "bytes": sum(p.stat().st_size for _, p in items),
                 "full_data_set": full, "limit_per_folder": limit_per_folder,
                 "note": "" if full else f"SUBSET of {len(all_items)} images: figures are for checking the benchmark, not the targets"},
        "settings": {"compare_image_size": compare_size, "project_image_size": project_size,
                     "batch_size": batch_size, "train_steps_per_epoch": train_steps, "train_epochs": train_epochs,
                     "cores_for_ceiling": cores},
    }
    data_uri = f"s3://{BUCKET}/{PREFIX}"
    paths = [str(p) for _, p in items]
    pre: dict[str, dict] = {}
    training: dict = {}
    failures: list[str] = []
    try:
        # ---- 1. preprocessing (+ the 128 px arrays the training benchmark reads)
        with S3Server(work) as server:
            t0 = time.perf_counter()
            uploaded = server.upload(items)
            report["s3_endpoint"] = {"server": f"moto {_version('moto')} (ThreadedMotoServer, own process)",
                                     "endpoint": "http://127.0.0.1", "upload_seconds": round(time.perf_counter() - t0, 2),
                                     "uploaded_bytes": uploaded}
            runner = Runner(work, server.env, server, log=log, machine=short)
            sizes = [compare_size] + ([project_size] if project_size != compare_size else [])
            log("1. preprocessing")
            for size in sizes:
                r = pre.setdefault(str(size), {})
                r["project"] = runner.run(f"(a) project preprocessing, {size} px", "project_preprocess",
                                          data_uri=data_uri, image_size=size, out_dir=str(work / f"pre-{size}"),
                                          keep=size == project_size)
                r["ceiling_1core"] = runner.run(f"(c) decode-only, 1 core, {size} px", "decode",
                                                paths=paths, image_size=size, threads=1)
                r["decode_all_cores"] = runner.run(f"decode-only, {cores} threads, {size} px", "decode",
                                                   paths=paths, image_size=size, threads=cores)
            pre["fetch_only"] = runner.run("GET-only from the S3 endpoint (project storage and thread count)",
                                           "fetch_only", data_uri=data_uri)
            pre["project_local"] = runner.run(f"project preprocessing from the local folder, {compare_size} px",
                                              "project_preprocess", data_uri=str(data_dir) if not limit_per_folder
                                              else _local_subset(items, work / "subset"),
                                              image_size=compare_size, out_dir=str(work / "pre-local"))
            # The reference last: its multi-GB pickle leaves the S3 server bloated.
            for size in sizes:
                # float64 list + array and the pickle here (~2.5x), the S3 server's copies of the PUT (~2x)
                need = n * size * size * 3 * 8 * 5
                avail = _meminfo().get("MemAvailable", 0)
                if need > 0.9 * avail:
                    pre[str(size)]["reference"] = {"ok": False, "skipped": True, "label": f"(b) reference, {size} px",
                                                   "error": f"not run: needs about {need / 2**30:.1f} GiB, "
                                                            f"{avail / 2**30:.1f} GiB available"}
                    failures.append(pre[str(size)]["reference"]["error"])
                    log(f"  (b) reference, {size} px: {pre[str(size)]['reference']['error']}")
                    continue
                pre[str(size)]["reference"] = runner.run(
                    f"(b) reference approach, {size} px", "reference_preprocess",
                    bucket=BUCKET, prefix=PREFIX, image_size=size, out_key=f"reference/data-{size}.pkl")
            report["s3_endpoint"]["server_memory_after_section_1"] = server.memory_mb()
            failures += runner.failures
        for size in map(str, sizes):
            r = pre[size]
            c1 = r["ceiling_1core"].get("images_per_s") if _ok(r["ceiling_1core"]) else None
            r["ceiling_images_per_s"] = round(c1 * cores, 1) if c1 else None
            r["ceiling_note"] = f"1-core decode-only rate x {cores} cores"
            a = r["project"].get("images_per_s") if _ok(r["project"]) else None
            b = r["reference"].get("images_per_s") if _ok(r.get("reference")) else None
            r["a_over_b"] = _ratio(a, b, 2)
            r.update(_endpoint_ceiling(r, pre.get("fetch_only"), cores, a))
            r["a_over_c"] = _ratio(a, r["ceiling_images_per_s"])
            r["memory_a_over_b"] = _ratio(r["project"].get("peak_rss_mb"), (r.get("reference") or {}).get("peak_rss_mb")
                                          if _ok(r.get("reference")) else None)
        report["preprocessing"] = pre

        # ---- 2. training input
        log("2. training input")
        split_dir = work / f"pre-{project_size}" / "train"
        runner = Runner(work, log=log, machine=short)
        if split_dir.is_dir():
            for model in ("basic", "tiny"):
                t = training.setdefault(model, {})
                steps = train_steps * (TINY_STEPS_FACTOR if model == "tiny" else 1)
                for kind in ("project", "reference"):
                    t[kind] = runner.run(f"{model} model fed by the {kind} input, {project_size} px", "train_input",
                                         kind=kind, split_dir=str(split_dir), batch_size=batch_size,
                                         steps_per_epoch=steps, epochs=train_epochs, model=model)
                t["ratio"] = _ratio(t["project"].get("images_per_s") if _ok(t["project"]) else None,
                                    t["reference"].get("images_per_s") if _ok(t["reference"]) else None, 2)
        else:
            training["error"] = f"no {project_size} px arrays: the project preprocessing failed"
        failures += runner.failures
        training["config"] = {
            "image_size": project_size, "batch_size": batch_size, "steps_per_epoch": train_steps,
            "epochs": train_epochs, "timed": f"epochs 2..{train_epochs} ({(train_epochs - 1) * train_steps} steps, tiny model "
                                             f"x{TINY_STEPS_FACTOR}); epoch 1 is warm-up; the reference's arrays end an "
                                             "epoch early when one pass has fewer batches",
            "models": "basic: the project's basic CNN with its default augmentation; tiny: global pooling + dense (input-bound)",
            "project_input": "make_dataset over uint8 memory-mapped shards (shuffle, batch, gather, prefetch), "
                             "uint8 into the model, 1 sigmoid unit, binary cross-entropy",
            "reference_input": "float64 /255 array and float64 one-hot labels in memory, model.fit(x, y, shuffle=True); "
                               "the same graph with a float input scaled x255 and a 2-unit softmax head, "
                               "categorical cross-entropy",
            "optimizer": "AdamW 1e-3 for both",
        }
        report["training_input"] = training

        # ---- 3. end to end, 4. scaling (a fresh S3 server)
        with S3Server(work) as server:
            server.upload(items)
            runner = Runner(work, server.env, server, log=log, machine=short)
            if quick or skip_e2e:
                why = "--quick" if quick else "--skip-e2e"
                report["end_to_end"] = {"ok": False, "skipped": True, "note": f"not measured: skipped by {why}"}
                log(f"3. end to end: skipped ({why})")
            else:
                log("3. end to end (skin-cancer run, default local settings)")
                report["end_to_end"] = runner.run("skin-cancer run (main job)", "end_to_end",
                                                  timeout=e2e_timeout + 120, data_uri=data_uri,
                                                  workdir=str(work / "e2e"), run_timeout=e2e_timeout,
                                                  extra_args=e2e_args or [])
            log(f"4. scaling ({', '.join(f'{f}x' for f in scale_factors)}, {compare_size} px)")
            points = []
            have = 1
            for factor in sorted(scale_factors):
                for copy in range(have, factor):
                    server.upload(items, rename=lambda rel, c=copy: copy_key(rel, c))
                have = max(have, factor)
                m = runner.run(f"project preprocessing at {factor}x ({n * factor} images)", "project_preprocess",
                               data_uri=data_uri, image_size=compare_size, out_dir=str(work / f"scale-{factor}"))
                points.append({"factor": factor, **{k: m.get(k) for k in (
                    "ok", "images", "seconds", "images_per_s", "peak_rss_mb", "rss_before_work_mb", "cpu_seconds",
                    "server_cpu_seconds", "load_average_before", "error")}})
            report["scaling"] = {"image_size": compare_size, "points": points,
                                 "server_memory_end": server.memory_mb()}
            failures += runner.failures
    finally:
        shutil.rmtree(work / "e2e" / "pipeline-root", ignore_errors=True)
        for d in work.glob("pre-*"):
            shutil.rmtree(d, ignore_errors=True)

    report["gpu"] = _gpu_note(training)
    report["targets"] = evaluate_targets(report)
    report["failures"] = failures
    report["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    e2e_log = work / "e2e" / "run.log"
    if e2e_log.is_file():
        shutil.copy2(e2e_log, out_dir / "e2e-run.log")
        report["end_to_end"]["log"] = str(out_dir / "e2e-run.log")
    write_report(report, out_dir, readme)
    shutil.rmtree(work, ignore_errors=True)
    return report


def _endpoint_ceiling(r: dict, fetch: dict | None, cores: int, a: float | None) -> dict:
    """Diagnostic: the ceiling once fetching is paid for too. CPU per image of the decode loop,
    plus the client's and the S3 server's CPU per image in the GET-only run, spread over the cores."""
    c1, f = r.get("ceiling_1core") or {}, fetch or {}
    if not (_ok(c1) and _ok(f)) or not c1.get("images") or not f.get("images"):
        return {}
    decode_ms = 1000 * (c1.get("cpu_seconds") or c1["seconds"]) / c1["images"]
    client_ms = 1000 * f["cpu_seconds"] / f["images"]
    server_ms = 1000 * f.get("server_cpu_seconds", 0.0) / f["images"]
    per_image = decode_ms + client_ms + server_ms
    ceiling = round(1000 * cores / per_image, 1)
    return {"with_endpoint": {"decode_ms_per_image": round(decode_ms, 3), "get_client_cpu_ms_per_image": round(client_ms, 3),
                              "get_server_cpu_ms_per_image": round(server_ms, 3),
                              "ceiling_images_per_s": ceiling, "a_over_ceiling": _ratio(a, ceiling)}}


def _local_subset(items: list[tuple[str, Path]], root: Path) -> str:
    """Hard links (or copies) of a subset in the raw layout, for the local-folder diagnostic."""
    for rel, path in items:
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)
    return str(root)


def _gpu_note(training: dict) -> dict:
    devices = {m.get("device") for t in training.values() if isinstance(t, dict)
               for m in t.values() if isinstance(m, dict) and m.get("device")}
    if any(d and d != "cpu" for d in devices):
        return {"measured": True, "note": f"training benchmark ran on {', '.join(sorted(d for d in devices if d))}"}
    return {"measured": False, "note": GPU_NOT_MEASURED}


def evaluate_targets(report: dict) -> list[dict]:
    pre = report.get("preprocessing", {})
    size = str(report["settings"]["compare_image_size"])
    p = pre.get(size, {})
    subset = "" if report["data"]["full_data_set"] else "subset: not the target condition"
    out = [
        _target("preprocess_vs_reference", f"preprocessing throughput, project / reference ({size} px)",
                p.get("a_over_b"), TARGETS["preprocess_vs_reference"], True, "x", subset),
        _target("preprocess_vs_ceiling", f"preprocessing throughput, project / decode ceiling ({size} px)",
                p.get("a_over_c"), TARGETS["preprocess_vs_ceiling"], True, "", subset),
        _target("preprocess_memory_vs_reference", f"preprocessing peak memory, project / reference ({size} px)",
                p.get("memory_a_over_b"), TARGETS["preprocess_memory_vs_reference"], False, "", subset),
    ]
    points = [q for q in report.get("scaling", {}).get("points", []) if q.get("ok")]
    growth = None
    if points and points[0]["factor"] == 1 and len(points) > 1:
        growth = _ratio(points[-1]["peak_rss_mb"], points[0]["peak_rss_mb"])
    last = points[-1]["factor"] if points else 4
    out.append(_target("preprocess_memory_growth_4x", f"preprocessing peak memory at {last}x / at 1x the data",
                       growth, TARGETS["preprocess_memory_growth_4x"], False, "",
                       "flat: at most 1.25 (linear growth would be about 4)" + (f"; {subset}" if subset else "")))
    t = report.get("training_input", {}).get("basic", {})
    out.append(_target("training_input_vs_reference", "training images/s, project input / reference feeding (basic model)",
                       t.get("ratio"), TARGETS["training_input_vs_reference"], True, "x", subset))
    e2e = report.get("end_to_end", {})
    measured = e2e.get("seconds") if _ok(e2e) else None
    failed = ((e2e.get("error") or "").strip().splitlines() or ["not run"])[-1][:160]
    note = e2e.get("note", "") if e2e.get("skipped") else ("" if _ok(e2e) else f"the run failed: {failed}")
    if measured is not None and e2e.get("images") != FULL_DATA_IMAGES:
        note = f"run on {e2e.get('images')} images, not all {FULL_DATA_IMAGES}: not the target condition"
    out.append(_target("end_to_end_seconds", f"main job wall time on all {FULL_DATA_IMAGES:,} images",
                       measured, TARGETS["end_to_end_seconds"], False, "s", note))
    return out


# --------------------------------------------------------------------------- the report


def _fmt(v, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _row(label: str, m: dict | None, extra: str = "") -> str:
    m = m or {}
    if not m.get("ok"):
        why = (m.get("error") or m.get("note") or "not measured").strip().splitlines()[-1][:120]
        return f"| {label} | - | - | - | - | - | {why} |"
    return (f"| {label} | {_fmt(m.get('images'))} | {_fmt(m.get('seconds'), 2)} | {_fmt(m.get('images_per_s'))} | "
            f"{_fmt(m.get('peak_rss_mb'), 0)} | {_fmt(m.get('cpu_seconds'), 1)} | {extra} |")


def markdown(report: dict) -> str:
    m = report["machine"]
    d = report["data"]
    s = report["settings"]
    lines = [
        f"Machine: {machine_line(m)}; load average at start {m['load_average_at_start']}, "
        f"at end {m.get('load_average_at_end', '-')}. Run {report['created']}, mode {report['mode']}.",
        f"Data: {d['images']:,} images ({d['bytes'] / 2**20:.0f} MB)"
        + (" - the full data set." if d["full_data_set"] else f" - **{d['note']}**."),
        "",
        "| Target | Measured | Target | Met |",
        "| --- | --- | --- | --- |",
    ]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        measured = _fmt(t["measured"], 2) + (t["unit"] if t["measured"] is not None and t["unit"] == "x" else "")
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(f"| {t['description']}{note} | {measured} | {t['comparison']} {_fmt(t['target'], 2)}{t['unit']} | {met} |")
    lines.append(f"| GPU training benchmark | {report['gpu']['note']} | once per accelerator session | - |")
    lines += ["", "| Measurement | Images | Seconds | Images/s | Peak MB | CPU s | Notes |",
              "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    pre = report.get("preprocessing", {})
    for size in dict.fromkeys((str(s["compare_image_size"]), str(s["project_image_size"]))):
        p = pre.get(size)
        if not p:
            continue
        srv = lambda k: f"S3 server CPU {_fmt(p[k].get('server_cpu_seconds'), 1)} s" if p.get(k, {}).get("ok") else ""  # noqa: E731
        we = p.get("with_endpoint") or {}
        we_note = (f"; ceiling with the S3 GETs paid (diagnostic) {_fmt(we.get('ceiling_images_per_s'))} images/s, "
                   f"a / it {_fmt(we.get('a_over_ceiling'), 2)}") if we else ""
        lines.append(_row(f"(a) project preprocessing, S3, {size} px", p.get("project"),
                          f"a/b {_fmt(p.get('a_over_b'), 2)}x, a/c {_fmt(p.get('a_over_c'), 2)}; {srv('project')}{we_note}"))
        lines.append(_row(f"(b) reference approach, S3, {size} px", p.get("reference"),
                          f"pickle {_fmt((p.get('reference') or {}).get('pickle_bytes', 0) / 2**20, 0)} MB; {srv('reference')}"
                          if _ok(p.get("reference")) else ""))
        lines.append(_row(f"(c) decode-only, 1 core, {size} px", p.get("ceiling_1core"),
                          f"ceiling x{s['cores_for_ceiling']} cores = {_fmt(p.get('ceiling_images_per_s'))} images/s"))
        lines.append(_row(f"decode-only, {s['cores_for_ceiling']} threads, {size} px", p.get("decode_all_cores"), "diagnostic"))
    if pre.get("fetch_only"):
        lines.append(_row(f"GET-only, S3, {pre['fetch_only'].get('threads', '-')} threads (no decode)", pre["fetch_only"],
                          f"diagnostic; S3 server CPU {_fmt(pre['fetch_only'].get('server_cpu_seconds'), 1)} s"))
    if pre.get("project_local"):
        lines.append(_row(f"project preprocessing, local folder, {s['compare_image_size']} px", pre["project_local"], "diagnostic: no S3"))
    t = report.get("training_input", {})
    for model in ("basic", "tiny"):
        if model in t:
            for kind in ("project", "reference"):
                lines.append(_row(f"training, {model} model, {kind} input, {s['project_image_size']} px", t[model].get(kind),
                                  f"{model} ratio {_fmt(t[model].get('ratio'), 2)}x; {t[model].get(kind, {}).get('device', '')}"
                                  if kind == "project" else t[model].get(kind, {}).get("device", "")))
    e = report.get("end_to_end", {})
    if e.get("ok"):
        stages = ", ".join(f"{st['task']} {st.get('seconds', 0):.0f} s" for st in e.get("stages", []))
        lines.append(f"| end to end: skin-cancer run | {_fmt(e.get('images'))} | {_fmt(e.get('seconds'), 0)} | - | "
                     f"{_fmt(e.get('peak_rss_mb_largest_process'), 0)} (largest process; all processes "
                     f"{_fmt(e.get('peak_rss_mb_all_processes'), 0)}) | - | {stages} |")
        for mm in e.get("models", []):
            lines.append(f"| end to end: train {mm['name']} | - | {_fmt(mm['seconds'], 0)} | - | - | - | "
                         f"val acc {mm['val_accuracy']:.3f}, test acc {mm['test_accuracy']:.3f} |")
        if e.get("preprocess_report"):
            pr = e["preprocess_report"]
            lines.append(f"| end to end: preprocess (inside the task) | {_fmt(e.get('images'))} | {_fmt(pr['seconds'], 1)} | "
                         f"{_fmt(pr['images_per_second'])} | - | - | {pr['image_size']} px |")
    else:
        lines.append(_row("end to end: skin-cancer run", e))
    sc = report.get("scaling", {})
    for q in sc.get("points", []):
        lines.append(_row(f"scaling: project preprocessing {q['factor']}x, {sc['image_size']} px", q,
                          f"S3 server CPU {_fmt(q.get('server_cpu_seconds'), 1)} s" if q.get("ok") else ""))
    lines += ["", "Peak MB: the measured process's peak resident memory (VmHWM), interpreter and imports included; "
              "the S3 server runs in its own process and is not counted. CPU s: that process's user+system CPU during "
              "the measured part. Ceiling (c): the project's decode_image over bytes in memory on one core, times the cores. "
              "Ceiling with the S3 GETs paid (diagnostic): cores / (decode CPU + GET client CPU + S3 server CPU, per image, "
              "from the decode-only and GET-only runs). Training images/s exclude the first (warm-up) epoch."]
    return "\n".join(lines) + "\n"


README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def update_readme(path: str | Path, table: str, heading: str) -> bool:
    """Replace the text between the bench markers in ``path``; False when the markers are missing."""
    p = Path(path)
    text = p.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, _, rest = text.partition(README_START)
    _, _, tail = rest.partition(README_END)
    p.write_text(f"{head}{README_START}\n{heading}\n\n{table}{README_END}{tail}")
    return True


def write_report(report: dict, out_dir: Path, readme: str | Path | None = None) -> None:
    (out_dir / "bench.json").write_text(json.dumps(report, indent=1, default=float))
    table = markdown(report)
    (out_dir / "bench.md").write_text(f"# skin-cancer bench\n\n{table}")
    if readme:
        label = ("full data set" if report["data"]["full_data_set"]
                 else f"SUBSET of {report['data']['images']} images, shared machine: to be replaced by the full run")
        if not update_readme(readme, table, f"Current figures ({label}), from `skin-cancer bench`'s `bench.md`:"):
            print(f"warning: {readme} has no {README_START} ... {README_END} markers; not updated", file=sys.stderr)


# --------------------------------------------------------------------------- command line


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        report = run_bench(
            data=args.data, out=args.out, quick=args.quick, skip_e2e=args.skip_e2e, limit_per_folder=args.limit,
            train_steps=args.train_steps, train_epochs=args.train_epochs, e2e_timeout=args.e2e_timeout,
            readme=args.readme,
        )
    except RuntimeError as err:  # no S3 server, no moto: say so in one line
        print(f"skin-cancer bench: error: {err}", file=sys.stderr)
        return 2
    print()
    print(markdown(report))
    print(f"wrote {Path(args.out) / 'bench.json'} and {Path(args.out) / 'bench.md'}")
    if report["failures"]:
        print("measurements that failed or did not run:\n  " + "\n  ".join(report["failures"]), file=sys.stderr)
        return 1
    return 0


def add_bench_parser(sub) -> argparse.ArgumentParser:
    b = sub.add_parser("bench", help="benchmarks: this project vs the reference approach and the machine's limits")
    b.add_argument("--data", help="raw images {train,test}/{benign,malignant}/*.jpg (default ../shared/data/skin-cancer)")
    b.add_argument("--out", default=DEFAULT_OUT, help="where bench.json and bench.md go")
    b.add_argument("--quick", action="store_true", help="30 images per folder, short training, no end-to-end run")
    b.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end `skin-cancer run`")
    b.add_argument("--limit", type=int, help="at most this many images per class folder (a subset)")
    b.add_argument("--train-steps", type=int, help="training steps per epoch (default 10; --quick 2)")
    b.add_argument("--train-epochs", type=int, help="training epochs, the first untimed (default 4; --quick 2)")
    b.add_argument("--e2e-timeout", type=float, default=5400, help="seconds before the end-to-end run is stopped")
    b.add_argument("--readme", help="also rewrite the table between the bench markers in this README")
    b.set_defaults(func=cmd_bench)
    return b


if __name__ == "__main__":
    if sys.argv[1:2] == ["_child"]:
        sys.exit(_child_main(sys.argv[2:]))
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args()
    sys.exit(ns.func(ns))
