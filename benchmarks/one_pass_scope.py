"""Can the out-of-scope detector use features from the served classifier's own forward pass?
(issue 32, item 4)

    .venv/bin/python -m benchmarks.one_pass_scope --workdir /tmp/real [--json out.json]

Today the detector (components/core/decision/scope.py) looks at a second network beside the
classifier: EfficientNet-Lite0's ImageNet weights, pooled at block10_add, block14_add and top_pool
(decision/features.py). This measures the alternative: one multi-output Keras model built from the
registered classifier's single-view inner model (no test-time augmentation, float32) that gives the
classifier's p(malignant) and the globally average-pooled outputs of candidate layers in ONE pass:
the frozen blocks (still ImageNet's weights), the fine-tuned blocks and the top. Each candidate
feature set is fitted exactly as training fits the detector (``ScopeModel.fit(train, val, 0.005)``,
cosine distance to the nearest train image, limit at validation's 99.5th percentile) and reported
against the current ImageNet features on the same images: validation and test-split flags, the
held-out non-dermoscopy set (benchmarks/out_of_scope.py, 34 package images nothing was tuned on;
the figure to meet is all 34 refused with at most 2 % of the test split flagged), the development
set (tests/support/drawn_images.py's 20 drawn images and the 10 package images named in
docs/referral.md, on which the current features were chosen; for information), and the seconds
the second network adds over the test split against what the extra outputs of the one pass add
(wall and CPU seconds, the passes interleaved; on a shared machine the CPU seconds are the steadier).

One more row, for a Lite0 classifier only: its stem and first blocks are frozen ImageNet Lite0, the
same layers and weights as the ImageNet network's, so the current features can be had by running
only the ImageNet network's later blocks on the classifier's own output at its last frozen block
("shared trunk"): the detector as stored (scope.npz) stays valid, checked here feature by feature.

The held-out set measures; it must not choose. A feature set picked because it does best on those
34 images has no unbiased held-out figure left: choose on the development set, then read the
held-out column once.

The run's preprocessed splits are read from ``WORKDIR/pipeline-root/*/preprocess/{train,val,test}_data``
and the model from the run's MLflow store (``--model-uri``, default the champion). Every split is
read once per network; the arrays stay in memory. Nothing is written but ``--json``. ``--limit N``
takes the first N images of each split (a quick check of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.core import settings

SPLITS = ("train", "val", "test")
BATCH = 64  # images per forward call (decision/features.py's BATCH)
TOP = "top_pool"
STEM = "stem_relu"


# --- the images ---------------------------------------------------------------------------------


def split_dirs(workdir: Path) -> dict[str, Path]:
    """The preprocessed train, val and test split folders the run left (the newest pipeline run's)."""
    out = {}
    for split in SPLITS:
        found = sorted(
            Path(workdir, "pipeline-root").glob(f"*/preprocess/{split}_data"), key=lambda p: p.stat().st_mtime
        )
        if not found:
            raise SystemExit(
                f"{workdir}: no pipeline-root/*/preprocess/{split}_data; is this a `skin-cancer run` workdir?"
            )
        out[split] = found[-1]
    return out


def development_set(size: int) -> dict[str, tuple[np.ndarray, tuple[int, int] | None]]:
    """name -> (pixels at model size, original size): the drawn images and the 10 package images
    the current detector's features were chosen on (docs/referral.md)."""
    import matplotlib
    import mlflow
    import networkx

    from components.core.data.images import decode_image, original_size
    from tests.support.drawn_images import drawn, package_photographs

    out: dict[str, tuple[np.ndarray, tuple[int, int] | None]] = {
        f"drawn/{k}": (v, (size, size)) for k, v in drawn(size).items()
    }
    files = {f"package/{k}": v for k, v in package_photographs().items()}
    files["matplotlib/logo2.png"] = (Path(matplotlib.get_data_path()) / "sample_data" / "logo2.png").read_bytes()
    media = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "media"
    for stem in ("demo-tracing-screenshot", "demo-tracing-screenshot-dark"):
        (found,) = sorted(media.glob(f"{stem}.*.png"))
        files[f"mlflow/{stem}.png"] = found.read_bytes()
    baseline = Path(networkx.__file__).parent / "drawing" / "tests" / "baseline"
    for name in ("test_display_complex.png", "test_display_empty_graph.png", "test_display_house_with_colors.png"):
        files[f"networkx/{name}"] = (baseline / name).read_bytes()
    out |= {k: (decode_image(v, size), original_size(v)) for k, v in files.items()}
    return out


def held_out(size: int) -> dict[str, tuple[np.ndarray, tuple[int, int] | None]]:
    """name -> (pixels, original size) of benchmarks/out_of_scope.py's set, decoded as the Predictor decodes."""
    from benchmarks.out_of_scope import held_out_set
    from components.core.data.images import decode_image, original_size

    out = {}
    for name, path in held_out_set().items():
        data = path.read_bytes()
        out[name] = (decode_image(data, size), original_size(data))
    return out


class Limited:
    """A split's first ``limit`` images (all when None), read as dataset.SplitArrays reads them."""

    def __init__(self, split, limit: int | None):
        self.split, self.image_size = split, split.image_size
        self.n = len(split) if limit is None else min(limit, len(split))
        self.labels = split.labels[: self.n]

    def __len__(self) -> int:
        return self.n

    def gather(self, indices: np.ndarray) -> np.ndarray:
        return self.split.gather(indices)

    def batches(self, size: int) -> Iterable[np.ndarray]:
        for start in range(0, self.n, size):
            yield self.split.gather(np.arange(start, min(start + size, self.n)))

    def images(self) -> np.ndarray:
        return self.split.gather(np.arange(self.n))


# --- the one-pass model -------------------------------------------------------------------------


def block_outputs(backbone) -> list[tuple[str, int, bool]]:
    """(output layer, channels, frozen) of every MBConv block in order: ``blockN_add`` where the block
    has a residual, else ``blockN_project_bn``; frozen when none of the block's layers trains."""
    names = [layer.name for layer in backbone.layers]
    out = []
    n = 0
    while any(x.startswith(f"block{n}_") for x in names):
        layers = [layer for layer in backbone.layers if layer.name.startswith(f"block{n}_")]
        name = f"block{n}_add" if f"block{n}_add" in names else f"block{n}_project_bn"
        out.append((name, int(backbone.get_layer(name).output.shape[-1]), not any(x.trainable for x in layers)))
        n += 1
    return out


def stage_ends(blocks: list[tuple[str, int, bool]]) -> list[tuple[str, bool]]:
    """(layer, frozen) of each stage's last block (the next block has other channels, or none follows)."""
    return [
        (name, frozen)
        for i, (name, ch, frozen) in enumerate(blocks)
        if i == len(blocks) - 1 or blocks[i + 1][1] != ch or blocks[i + 1][2] != frozen
    ]


def tapped(inner, taps: list[str]):
    """The classifier's single-view graph rebuilt on its own loaded layers (so p is the classifier's
    own): ``(uint8 input, p, top_pool, raw outputs of the backbone layers ``taps``)``."""
    import keras

    from components.core.modeling.models import backbone_of

    backbone = backbone_of(inner)
    if backbone is None:
        raise SystemExit(f"{inner.name}: no pretrained backbone inside the classifier")
    multi = keras.Model(
        backbone.input, [backbone.output, *(backbone.get_layer(n).output for n in taps)], name=f"{backbone.name}_taps"
    )
    x = inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
    after: list = []
    for layer in inner.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer is backbone or after:
            after.append(layer)
        else:
            x = layer(x, training=False)  # to_float, resize, augmentation (identity when not training)
    top, *raw = multi(x, training=False)
    p = top
    for layer in after[1:]:  # dropout (identity), the dense head
        p = layer(p, training=False)
    return inputs, p, top, raw


def one_pass_model(inner, layer_names: list[str]):
    """One pass giving ``[p, *(pooled(layer) for layer in layer_names)]`` (``top_pool`` is pooled already)."""
    import keras

    inside = [n for n in layer_names if n != TOP]
    inputs, p, top, raw = tapped(inner, inside)
    pooled = {n: keras.layers.GlobalAveragePooling2D(name=f"{n}_gap", dtype="float32")(r) for n, r in zip(inside, raw)}
    pooled[TOP] = top
    return keras.Model(inputs, [p, *(pooled[n] for n in layer_names)], name=f"{inner.name}_one_pass")


def shared_trunk_model(inner, cut: str):
    """``[p, the current scope features]`` in one graph: the ImageNet network's layers after ``cut``
    (decision/features.py's extractor) run on the classifier's own output at ``cut``. Valid only
    where everything up to ``cut`` is frozen ImageNet Lite0 (checked by the caller on the features)."""
    import keras

    from components.core.decision import features

    extractor = features._extractor()
    branch = keras.Model(extractor.get_layer(cut).output, extractor.output, name="imagenet_after_" + cut)
    inputs, p, _, (raw,) = tapped(inner, [cut])
    return keras.Model(inputs, [p, branch(raw)], name=f"{inner.name}_shared_trunk")


def dtype_policies(model) -> set[str]:
    """Every layer's dtype policy, nested models included."""
    out = set()
    for layer in model.layers:
        out.add(layer.dtype_policy.name)
        if hasattr(layer, "layers"):
            out |= dtype_policies(layer)
    return out


def traced(model) -> Callable[[np.ndarray], list[np.ndarray]]:
    """``model`` as one traced graph over uint8 batches (as features._forward and predictor.compiled_forward)."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, None, 3], tf.uint8)
    fn = tf.function(lambda images: model(images, training=False), input_signature=[spec], autograph=False)

    def call(images: np.ndarray) -> list[np.ndarray]:
        out = fn(np.ascontiguousarray(images, dtype=np.uint8))
        return [np.asarray(o, np.float32) for o in (out if isinstance(out, (list, tuple)) else [out])]

    return call


def run_batches(forward: Callable, batches: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Every output of ``forward`` over the batches, concatenated per output."""
    outs: list[list[np.ndarray]] = []
    for batch in batches:
        for i, o in enumerate(forward(batch)):
            if i == len(outs):
                outs.append([])
            outs[i].append(o)
    return [np.concatenate(o) for o in outs]


def in_batches(images: np.ndarray, size: int = BATCH) -> Iterable[np.ndarray]:
    for i in range(0, len(images), size):
        yield images[i : i + size]


# --- the candidates ------------------------------------------------------------------------------


@dataclass
class Candidate:
    name: str
    layers: list[str]
    per_layer_unit: bool = False  # each layer's pooled vector at unit length before the concatenation

    def features(self, pooled: dict[str, np.ndarray]) -> np.ndarray:
        from components.core.decision.scope import normalised

        parts = [normalised(pooled[n]) if self.per_layer_unit else pooled[n] for n in self.layers]
        return np.concatenate(parts, axis=1).astype(np.float32)


def candidates(blocks: list[tuple[str, int, bool]]) -> list[Candidate]:
    ends = stage_ends(blocks)
    frozen = [n for n, f in ends if f]
    tuned = [n for n, f in ends if not f]
    every_frozen = [n for n, _, f in blocks if f]
    mid = tuned[-3:-1]  # the 112- and 192-channel stage ends: the current detector's depths
    out = [
        Candidate("top (the classifier's embedding)", [TOP]),
        Candidate("last frozen block", frozen[-1:]),
        Candidate("frozen stage ends", frozen),
        Candidate("stem + every frozen block", [STEM, *every_frozen]),
        Candidate("frozen stage ends, per-layer unit", frozen, True),
        Candidate("frozen stage ends + top", [*frozen, TOP]),
        Candidate("frozen stage ends + top, per-layer unit", [*frozen, TOP], True),
        Candidate("fine-tuned mid + top (the current depths)", [*mid, TOP]),
        Candidate("fine-tuned stage ends + top", [*tuned, TOP]),
        Candidate("frozen + fine-tuned mid + top", [*frozen, *mid, TOP]),
        Candidate("frozen + fine-tuned mid + top, per-layer unit", [*frozen, *mid, TOP], True),
        Candidate("frozen + fine-tuned stage ends + top", [*frozen, *tuned, TOP]),
        Candidate("frozen + fine-tuned stage ends + top, per-layer unit", [*frozen, *tuned, TOP], True),
    ]
    return out


# --- measuring -----------------------------------------------------------------------------------


def evaluate(feats: dict[str, np.ndarray], names: dict[str, list[str]], checks: dict[str, np.ndarray], **about) -> dict:
    """Fit the detector as training does (train features, limit on val), then score every set."""
    from components.core.decision.scope import ScopeModel

    scope = ScopeModel.fit(feats["train"], feats["val"], settings.OOD_FALSE_FLAG_RATE)
    scores = {k: scope.scores(feats[k]) for k in ("val", "test", "held_out", "development")}
    row: dict = {**about, "dims": int(feats["train"].shape[1]), "limit": scope.limit}
    for split in ("val", "test"):
        flagged = scores[split] > 1
        row[f"{split}_flagged"], row[f"{split}_n"] = int(flagged.sum()), len(flagged)
    for group in ("held_out", "development"):
        s = scores[group]
        refused = s > 1
        low = int(np.argmin(s))
        row[group] = {
            "refused": int(refused.sum()),
            "refused_with_checks": int((refused | checks[group]).sum()),
            "n": len(s),
            "lowest": float(s[low]),
            "lowest_image": names[group][low],
            "kept": [names[group][i] for i in np.flatnonzero(~refused)],
            "kept_after_checks": [names[group][i] for i in np.flatnonzero(~refused & ~checks[group])],
            "scores": {n: round(float(v), 4) for n, v in zip(names[group], s)},
        }
    return row


def timings(
    test_images: np.ndarray, forwards: dict[str, Callable], repeats: int
) -> dict[str, dict[str, float | list[float]]]:
    """Wall and CPU seconds (every thread of this process) of each forward over the test split,
    ``repeats`` times interleaved (after one warm call each). On a shared machine the CPU seconds
    are the steadier figure: other processes' load stretches the wall time, much less the work."""
    for fn in forwards.values():
        fn(test_images[:2])
    wall: dict[str, list[float]] = {k: [] for k in forwards}
    cpu: dict[str, list[float]] = {k: [] for k in forwards}
    for _ in range(repeats):
        for name, fn in forwards.items():
            t, c = time.perf_counter(), time.process_time()
            run_batches(fn, in_batches(test_images))
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return {
        k: {
            "min_s": min(wall[k]),
            "median_s": float(np.median(wall[k])),
            "runs_s": wall[k],
            "cpu_min_s": min(cpu[k]),
            "cpu_median_s": float(np.median(cpu[k])),
            "cpu_runs_s": cpu[k],
        }
        for k in forwards
    }


def paired_extra(times: dict, key: str, base: str | None) -> dict[str, float]:
    """Seconds ``key`` adds over ``base`` (or its whole time), per repeat then min and median: the
    passes ran interleaved, so a repeat's difference sees the same load."""
    out = {}
    for kind in ("", "cpu_"):
        runs = np.asarray(times[key][f"{kind}runs_s"])
        if base is not None:
            runs = runs - np.asarray(times[base][f"{kind}runs_s"])
        out[f"{kind}min_s"], out[f"{kind}median_s"] = float(runs.min()), float(np.median(runs))
    return out


def pct(n: int, total: int) -> str:
    return f"{n} ({n / total:.2%})" if total else "-"


def markdown_table(rows: dict[str, dict]) -> str:
    head = (
        "| features | layers | dims | val flagged | test flagged | held-out refused (distance; + checks) "
        "| lowest held-out score "
        "| development refused (distance; + checks) | lowest development score |"
    )
    lines = [head, "|" + "---|" * 9]
    for name, r in rows.items():
        h, d = r["held_out"], r["development"]
        lines.append(
            f"| {name} | {', '.join(r['layers'])} | {r['dims']} | {pct(r['val_flagged'], r['val_n'])} "
            f"| {pct(r['test_flagged'], r['test_n'])} | {h['refused']}; {h['refused_with_checks']} of {h['n']} "
            f"| {h['lowest']:.2f} "
            f"({h['lowest_image']}) | {d['refused']}; {d['refused_with_checks']} of {d['n']} | {d['lowest']:.2f} "
            f"({d['lowest_image']}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.one_pass_scope", description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, type=Path, help="a finished `skin-cancer run` workdir")
    ap.add_argument("--model-uri", default=f"models:/{settings.REGISTERED_MODEL_NAME}@champion")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over the test split per forward")
    ap.add_argument("--limit", type=int, help="at most this many images per split (a quick check of the script)")
    ap.add_argument("--json", help="write every figure (and the held-out and development scores) here")
    args = ap.parse_args(argv)
    started = time.perf_counter()

    import keras

    from components.core.data.dataset import SplitArrays
    from components.core.decision import features as imagenet
    from components.core.decision.image_checks import image_problems
    from components.core.evaluation.metrics import classification_metrics
    from components.core.inference.predictor import Predictor, compiled_forward
    from components.core.modeling.models import backbone_of, without_tta
    from components.core.registry import tracking

    if args.model_uri.startswith("models:/") and not settings.tracking_uri():
        os.environ["MLFLOW_TRACKING_URI"] = tracking.local_tracking_uri(str(args.workdir))
    keras.mixed_precision.set_global_policy("float32")
    predictor = Predictor.load(args.model_uri)
    served = predictor.model
    inner = without_tta(served)
    mixed = sorted(dtype_policies(inner) - {"float32"})
    if mixed:
        raise SystemExit(f"{args.model_uri}: layers with dtype policy {mixed}; this measures float32 models")
    backbone = backbone_of(inner)
    blocks = block_outputs(backbone)
    cands = candidates(blocks)
    layer_names = sorted({n for c in cands for n in c.layers}, key=[STEM, *(b[0] for b in blocks), TOP].index)
    one_pass = traced(one_pass_model(inner, layer_names))
    # The frozen trunk is ImageNet Lite0's own when the classifier is Lite0: the current detector's
    # features can then come from the ImageNet network's later blocks run on the classifier's trunk.
    cut = [n for n, f in stage_ends(blocks) if f][-1]
    shared = traced(shared_trunk_model(inner, cut)) if backbone.name == "efficientnet_lite0" else None
    loaded_s = time.perf_counter() - started
    print(
        f"model {args.model_uri} (version {predictor.model_version}, {inner.name}, image size {predictor.image_size}); "
        f"frozen blocks: {', '.join(n for n, _, f in blocks if f)}; taps: {', '.join(layer_names)}",
        flush=True,
    )

    dirs = split_dirs(args.workdir)
    splits = {k: Limited(SplitArrays(str(v)), args.limit) for k, v in dirs.items()}
    if {s.image_size for s in splits.values()} != {predictor.image_size}:
        raise SystemExit(f"the splits' image size differs from the model's {predictor.image_size}")
    sets = {"held_out": held_out(predictor.image_size), "development": development_set(predictor.image_size)}
    names = {k: list(v) for k, v in sets.items()}
    pixels = {k: np.stack([p for p, _ in v.values()]) for k, v in sets.items()}
    checks = {k: np.array([bool(image_problems(p, o)) for p, o in v.values()]) for k, v in sets.items()}

    pooled_one: dict[str, dict[str, np.ndarray]] = {}
    net_feats: dict[str, np.ndarray] = {}
    p_one: dict[str, np.ndarray] = {}
    extract_s: dict[str, dict[str, float]] = {}
    for key in (*SPLITS, "held_out", "development"):
        t = time.perf_counter()
        batches = splits[key].batches(BATCH) if key in splits else in_batches(pixels[key])
        p, *outs = run_batches(one_pass, batches)
        one_s = time.perf_counter() - t
        p_one[key] = p.reshape(-1)
        pooled_one[key] = dict(zip(layer_names, outs))
        t = time.perf_counter()
        net_feats[key] = (
            imagenet.split_features(splits[key], BATCH) if key in splits else imagenet.imagenet_features(pixels[key])
        )
        extract_s[key] = {"one_pass_s": one_s, "imagenet_s": time.perf_counter() - t}
        print(
            f"extracted {key}: {len(p)} images, one pass {one_s:.1f} s, ImageNet network {extract_s[key]['imagenet_s']:.1f} s",
            flush=True,
        )

    # The one pass's p is the classifier's single-view p: checked against the inner model itself.
    sample = splits["test"].gather(np.arange(min(BATCH, len(splits["test"]))))
    single = compiled_forward(inner)
    p_check = float(np.max(np.abs(np.asarray(single(sample)).reshape(-1) - p_one["test"][: len(sample)])))
    test_auc = classification_metrics(splits["test"].labels, p_one["test"], predictor.threshold)["auc"]

    baseline = "current: ImageNet network (baseline)"
    rows = {
        baseline: evaluate(
            net_feats,
            names,
            checks,
            layers=list(imagenet.LAYERS),
            source="ImageNet network",
            per_layer_unit=False,
        )
    }
    for cand in cands:
        feats = {k: cand.features(v) for k, v in pooled_one.items()}
        rows[cand.name] = evaluate(
            feats, names, checks, layers=cand.layers, source="one pass", per_layer_unit=cand.per_layer_unit
        )

    shared_name = f"shared trunk: classifier up to {cut}, then ImageNet blocks (current features)"
    shared_diff = None
    if shared is not None:
        # The detector stays as fitted (train and val from the ImageNet network, as scope.npz holds);
        # only the queries come from the shared graph.
        queries = {k: run_batches(shared, in_batches(pixels[k]))[1] for k in ("held_out", "development")}
        queries["test"] = run_batches(shared, splits["test"].batches(BATCH))[1]
        shared_diff = max(float(np.max(np.abs(queries[k] - net_feats[k]))) for k in queries)
        rows[shared_name] = evaluate(
            {"train": net_feats["train"], "val": net_feats["val"], **queries},
            names,
            checks,
            layers=[f"classifier {cut}", *imagenet.LAYERS],
            source="classifier trunk + ImageNet branch",
            per_layer_unit=False,
        )

    test_images = splits["test"].images()
    k_single, k_one, k_net = (
        "classifier single view (p only)",
        "one pass (p + every tapped layer)",
        "ImageNet network (the current second pass)",
    )
    forwards = {
        k_single: traced(inner),
        k_one: one_pass,
        k_net: lambda b: [imagenet.imagenet_features(b)],
    }
    k_shared = f"shared trunk (p + current features from {cut} on)"
    if shared is not None:
        forwards[k_shared] = shared
    forwards["served model with TTA (4 views, p only)"] = traced(served)
    load_before = os.getloadavg()
    times = timings(test_images, forwards, args.repeats)
    load_after = os.getloadavg()
    extras = {
        "second network (current)": paired_extra(times, k_net, None),
        "one pass's taps": paired_extra(times, k_one, k_single),
    }
    if shared is not None:
        extras["shared trunk's ImageNet branch"] = paired_extra(times, k_shared, k_single)

    print()
    print(markdown_table(rows))
    print()
    print(
        f"held-out images caught by the image checks alone: {int(checks['held_out'].sum())} of {len(checks['held_out'])}; "
        f"development: {int(checks['development'].sum())} of {len(checks['development'])}"
    )
    print()
    print(
        f"test split, {len(test_images)} images, batch {BATCH}, {args.repeats} interleaved passes each: "
        f"min (median) seconds; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print("| forward | wall seconds | CPU seconds |")
    print("|---|---|---|")
    for k, v in [
        *times.items(),
        *((f"extra for the scope features: {k} (paired per pass)", v) for k, v in extras.items()),
    ]:
        print(f"| {k} | {v['min_s']:.2f} ({v['median_s']:.2f}) | {v['cpu_min_s']:.2f} ({v['cpu_median_s']:.2f}) |")
    if shared_diff is not None:
        print(
            f"shared trunk's features vs the ImageNet network's (test, held-out, development): max |diff| {shared_diff:.2e}"
        )
    print()
    print(
        f"single-view p from the one pass vs the inner model: max |diff| {p_check:.2e}; single-view test AUC {test_auc:.3f}; "
        f"baseline limit {rows[baseline]['limit']:.4f} (the stored policy's: {predictor.policy.scope.limit:.4f})"
        if getattr(predictor.policy, "scope", None) is not None
        else f"single-view p from the one pass vs the inner model: max |diff| {p_check:.2e}; test AUC {test_auc:.3f}"
    )
    total_s = time.perf_counter() - started
    print(f"total {total_s:.0f} s (model load and build {loaded_s:.0f} s)")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "model_uri": args.model_uri,
                    "model_version": predictor.model_version,
                    "model": inner.name,
                    "image_size": predictor.image_size,
                    "splits": {k: str(v) for k, v in dirs.items()},
                    "false_flag_rate": settings.OOD_FALSE_FLAG_RATE,
                    "blocks": [{"layer": n, "channels": c, "frozen": f} for n, c, f in blocks],
                    "rows": rows,
                    "image_checks": {k: [n for n, c in zip(names[k], v) if c] for k, v in checks.items()},
                    "timing_test_split": times,
                    "extra_s": extras,
                    "load_average": {"before": load_before, "after": load_after},
                    "shared_trunk_max_abs_diff": shared_diff,
                    "extraction_s": extract_s,
                    "p_max_abs_diff": p_check,
                    "single_view_test_auc": test_auc,
                    "seconds": total_s,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
