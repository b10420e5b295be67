"""One run of every benchmark (the parent side): the S3 servers, each measurement through the
:class:`~benchmarks.runner.Runner`, then ``bench.json`` and ``bench.md``."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks import preprocessing, training_input
from benchmarks.data import FULL_DATA_IMAGES, copy_key, find_default_data, list_images, local_subset
from benchmarks.machine import effective_cores, machine_info, machine_line, meminfo, version
from benchmarks.report import COMMAND, evaluate_targets, gpu_note, ok, ratio, write_report
from benchmarks.runner import Runner
from benchmarks.s3server import BUCKET, PREFIX, S3Server

SCHEMA = "skin-cancer-bench/v1"
DEFAULT_OUT = "runs/bench"
COMPARE_SIZE = 224  # the reference's image size: (a), (b), (c) and scaling are compared here
PROJECT_SIZE = 128  # the size the published figures were measured at (the local-cpu preset uses 96)


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
    command: str | None = None,
) -> dict:
    """Run every benchmark once; write ``bench.json`` and ``bench.md`` to ``out``; return the report.

    ``command``: the command line to record in the report (the command's own, or None).
    """
    import importlib.util

    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise RuntimeError("the benchmark's S3 endpoint needs moto[server]: bash scripts/install.sh")
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
    log(
        f"{COMMAND}: {n} images from {data_dir} ({'full data set' if full else 'SUBSET'}), "
        f"machine: {machine_line(machine)}"
    )
    report: dict = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "mode": "quick" if quick else "full",
        "machine": machine,
        "data": {
            "path": str(data_dir),
            "images": n,
            "bytes": sum(p.stat().st_size for _, p in items),
            "full_data_set": full,
            "limit_per_folder": limit_per_folder,
            "note": ""
            if full
            else f"SUBSET of {len(all_items)} images: figures are for checking the benchmark, not the targets",
        },
        "settings": {
            "compare_image_size": compare_size,
            "project_image_size": project_size,
            "batch_size": batch_size,
            "train_steps_per_epoch": train_steps,
            "train_epochs": train_epochs,
            "cores_for_ceiling": cores,
        },
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
            report["s3_endpoint"] = {
                "server": f"moto {version('moto')} (ThreadedMotoServer, own process)",
                "endpoint": "http://127.0.0.1",
                "upload_seconds": round(time.perf_counter() - t0, 2),
                "uploaded_bytes": uploaded,
            }
            runner = Runner(work, server.env, server, log=log, machine=short)
            sizes = [compare_size] + ([project_size] if project_size != compare_size else [])
            log("1. preprocessing")
            for size in sizes:
                r = pre.setdefault(str(size), {})
                r["project"] = runner.run(
                    f"(a) project preprocessing, {size} px",
                    "project_preprocess",
                    data_uri=data_uri,
                    image_size=size,
                    out_dir=str(work / f"pre-{size}"),
                    keep=size == project_size,
                )
                r["ceiling_1core"] = runner.run(
                    f"(c) decode-only, 1 core, {size} px", "decode", paths=paths, image_size=size, threads=1
                )
                r["decode_all_cores"] = runner.run(
                    f"decode-only, {cores} threads, {size} px", "decode", paths=paths, image_size=size, threads=cores
                )
            pre["fetch_only"] = runner.run(
                "GET-only from the S3 endpoint (project storage and thread count)", "fetch_only", data_uri=data_uri
            )
            pre["project_local"] = runner.run(
                f"project preprocessing from the local folder, {compare_size} px",
                "project_preprocess",
                data_uri=str(data_dir) if not limit_per_folder else local_subset(items, work / "subset"),
                image_size=compare_size,
                out_dir=str(work / "pre-local"),
            )
            # The reference last: its multi-GB pickle leaves the S3 server bloated.
            for size in sizes:
                need = preprocessing.reference_memory_need(n, size)
                avail = meminfo().get("MemAvailable", 0)
                if need > 0.9 * avail:
                    pre[str(size)]["reference"] = {
                        "ok": False,
                        "skipped": True,
                        "label": f"(b) reference, {size} px",
                        "error": f"not run: needs about {need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available",
                    }
                    failures.append(pre[str(size)]["reference"]["error"])
                    log(f"  (b) reference, {size} px: {pre[str(size)]['reference']['error']}")
                    continue
                pre[str(size)]["reference"] = runner.run(
                    f"(b) reference approach, {size} px",
                    "reference_preprocess",
                    bucket=BUCKET,
                    prefix=PREFIX,
                    image_size=size,
                    out_key=f"reference/data-{size}.pkl",
                )
            report["s3_endpoint"]["server_memory_after_section_1"] = server.memory_mb()
            failures += runner.failures
        for size in map(str, sizes):
            preprocessing.summarize(pre[size], pre.get("fetch_only"), cores)
        report["preprocessing"] = pre

        # ---- 2. training input
        log("2. training input")
        split_dir = work / f"pre-{project_size}" / "train"
        runner = Runner(work, log=log, machine=short)
        if split_dir.is_dir():
            for model in ("basic", "tiny"):
                t = training.setdefault(model, {})
                steps = train_steps * (training_input.TINY_STEPS_FACTOR if model == "tiny" else 1)
                for kind in ("project", "reference"):
                    t[kind] = runner.run(
                        f"{model} model fed by the {kind} input, {project_size} px",
                        "train_input",
                        kind=kind,
                        split_dir=str(split_dir),
                        batch_size=batch_size,
                        steps_per_epoch=steps,
                        epochs=train_epochs,
                        model=model,
                    )
                t["ratio"] = ratio(
                    t["project"].get("images_per_s") if ok(t["project"]) else None,
                    t["reference"].get("images_per_s") if ok(t["reference"]) else None,
                    2,
                )
        else:
            training["error"] = f"no {project_size} px arrays: the project preprocessing failed"
        failures += runner.failures
        training["config"] = training_input.config(project_size, batch_size, train_steps, train_epochs)
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
                report["end_to_end"] = runner.run(
                    "skin-cancer run (main job)",
                    "end_to_end",
                    timeout=e2e_timeout + 120,
                    data_uri=data_uri,
                    workdir=str(work / "e2e"),
                    run_timeout=e2e_timeout,
                    extra_args=e2e_args or [],
                )
            log(f"4. scaling ({', '.join(f'{f}x' for f in scale_factors)}, {compare_size} px)")
            points = []
            have = 1
            for factor in sorted(scale_factors):
                for copy in range(have, factor):
                    server.upload(items, rename=lambda rel, c=copy: copy_key(rel, c))
                have = max(have, factor)
                m = runner.run(
                    f"project preprocessing at {factor}x ({n * factor} images)",
                    "project_preprocess",
                    data_uri=data_uri,
                    image_size=compare_size,
                    out_dir=str(work / f"scale-{factor}"),
                )
                points.append(
                    {
                        "factor": factor,
                        **{
                            k: m.get(k)
                            for k in (
                                "ok",
                                "images",
                                "seconds",
                                "images_per_s",
                                "peak_rss_mb",
                                "rss_before_work_mb",
                                "cpu_seconds",
                                "server_cpu_seconds",
                                "load_average_before",
                                "error",
                            )
                        },
                    }
                )
            report["scaling"] = {"image_size": compare_size, "points": points, "server_memory_end": server.memory_mb()}
            failures += runner.failures
    finally:
        shutil.rmtree(work / "e2e" / "pipeline-root", ignore_errors=True)
        for d in work.glob("pre-*"):
            shutil.rmtree(d, ignore_errors=True)

    report["gpu"] = gpu_note(training)
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
