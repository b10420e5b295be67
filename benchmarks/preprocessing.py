"""Preprocessing measurements (each runs in its own process): (a) the project, (b) the reference
approach re-implemented, (c) the decode-only ceiling, and the GET-only diagnostic."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.memory import Mark
from benchmarks.report import ok, ratio
from components.core.settings import CLASSES


def m_project_preprocess(data_uri: str, image_size: int, out_dir: str, keep: bool = False) -> dict:
    """(a) This project's preprocessing, exactly as the pipeline's preprocess stage calls it."""
    import boto3  # noqa: F401  imports are not timed, for either approach
    import sklearn.model_selection  # noqa: F401
    import tqdm  # noqa: F401

    from components.core.data import dataset

    outs = {s: str(Path(out_dir, s)) for s in dataset.OUTPUT_SPLITS}
    mark = Mark()
    report = dataset.preprocess(data_uri, outs, image_size=image_size)
    result = mark.done(
        report.total_images,
        skipped=len(report.skipped),
        class_counts={c: sum(s["class_counts"][c] for s in report.splits.values()) for c in CLASSES},
        output_mb=round(sum(f.stat().st_size for f in Path(out_dir).rglob("*") if f.is_file()) / 2**20, 1),
    )
    if not keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    return result


def reference_preprocess(bucket: str, prefix: str, image_size: int, out_key: str) -> dict:
    """The reference approach, re-implemented faithfully (see the package docstring).

    Sequential GETs; PIL decode and resize on one core; each image ``np.array(img) / 255``
    (float64) appended to a list, the list made one array per split; float64 one-hot labels
    from the folder names; the whole data set pickled and uploaded with one PUT.
    """
    import io
    import pickle

    import boto3
    import numpy as np
    from PIL import Image

    from components.core.data.dataset import RAW_SPLITS

    s3 = boto3.client("s3")
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    data = {}
    for split in RAW_SPLITS:
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
    return {
        "images": sum(len(x) for x, _ in data.values()),
        "pickle_bytes": len(blob),
        "dtype": str(data[RAW_SPLITS[0]][0].dtype),
        "class_counts": {c: int(sum(y[:, i].sum() for _, y in data.values())) for i, c in enumerate(CLASSES)},
    }


def m_reference_preprocess(bucket: str, prefix: str, image_size: int, out_key: str) -> dict:
    """(b) The reference approach, timed; the uploaded pickle is checked and removed afterwards."""
    import boto3
    import numpy  # noqa: F401  imports are not timed, for either approach
    import PIL.Image  # noqa: F401

    import components.core.data.dataset  # noqa: F401  (its split names; not timed either)

    mark = Mark()
    got = reference_preprocess(bucket, prefix, image_size, out_key)
    result = mark.done(got.pop("images"), **got)
    s3 = boto3.client("s3")
    result["uploaded_bytes"] = s3.head_object(Bucket=bucket, Key=out_key)["ContentLength"]
    s3.delete_object(Bucket=bucket, Key=out_key)
    return result


def reference_memory_need(images: int, image_size: int) -> int:
    """Bytes the reference needs: the float64 list + array and the pickle here (~2.5x), the
    S3 server's copies of the PUT (~2x)."""
    return images * image_size * image_size * 3 * 8 * 5


def m_decode(paths: list[str], image_size: int, threads: int = 1) -> dict:
    """(c) Decode-only over bytes already in memory: the project's decode_image (decode + resize)."""
    from components.core.data.images import decode_image

    blobs = [Path(p).read_bytes() for p in paths]
    mark = Mark()
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
    from concurrent.futures import ThreadPoolExecutor

    from components.core.data import dataset, storage

    workers = inspect.signature(dataset.preprocess).parameters["workers"].default
    mark = Mark()
    infos = storage.list_objects(data_uri)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        total = sum(len(data) for data in pool.map(storage.read_bytes, [i.uri for i in infos]))
    return mark.done(len(infos), bytes=total, threads=workers)


def summarize(r: dict, fetch: dict | None, cores: int) -> None:
    """Add one image size's ratios to its results ``r``: a/b, a/c, memory a/b, the ceilings."""
    c1 = r["ceiling_1core"].get("images_per_s") if ok(r["ceiling_1core"]) else None
    r["ceiling_images_per_s"] = round(c1 * cores, 1) if c1 else None
    r["ceiling_note"] = f"1-core decode-only rate x {cores} cores"
    a = r["project"].get("images_per_s") if ok(r["project"]) else None
    b = r["reference"].get("images_per_s") if ok(r.get("reference")) else None
    r["a_over_b"] = ratio(a, b, 2)
    r.update(_endpoint_ceiling(r, fetch, cores, a))
    r["a_over_c"] = ratio(a, r["ceiling_images_per_s"])
    r["memory_a_over_b"] = ratio(
        r["project"].get("peak_rss_mb"),
        (r.get("reference") or {}).get("peak_rss_mb") if ok(r.get("reference")) else None,
    )


def _endpoint_ceiling(r: dict, fetch: dict | None, cores: int, a: float | None) -> dict:
    """Diagnostic: the ceiling once fetching is paid for too. CPU per image of the decode loop,
    plus the client's and the S3 server's CPU per image in the GET-only run, spread over the cores."""
    c1, f = r.get("ceiling_1core") or {}, fetch or {}
    if not (ok(c1) and ok(f)) or not c1.get("images") or not f.get("images"):
        return {}
    decode_ms = 1000 * (c1.get("cpu_seconds") or c1["seconds"]) / c1["images"]
    client_ms = 1000 * f["cpu_seconds"] / f["images"]
    server_ms = 1000 * f.get("server_cpu_seconds", 0.0) / f["images"]
    per_image = decode_ms + client_ms + server_ms
    ceiling = round(1000 * cores / per_image, 1)
    return {
        "with_endpoint": {
            "decode_ms_per_image": round(decode_ms, 3),
            "get_client_cpu_ms_per_image": round(client_ms, 3),
            "get_server_cpu_ms_per_image": round(server_ms, 3),
            "ceiling_images_per_s": ceiling,
            "a_over_ceiling": ratio(a, ceiling),
        }
    }
