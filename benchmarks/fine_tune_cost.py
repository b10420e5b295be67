"""What one fine-tuning step costs on this CPU, split where a frozen-feature cache would cut it (issue 32).

    .venv/bin/python -m benchmarks.fine_tune_cost [--family efficientnet-lite0 --cut block5 ...]
        [--image-size 192] [--batch 32] [--repeats 6] [--isa AVX2] [--json out.json]

For each family and ``fine_tune_from`` cut, the project's own model (models.build_model: uint8
input, resize, light augmentation, the backbone frozen below the cut, the head) is timed, in one
process and interleaved so that other load on the machine hits every figure alike:

* ``step``: one training step as ``model.fit`` runs it today (augment, the whole forward pass,
  the backward pass through the trainable blocks, AdamW);
* ``frozen_forward``: the forward pass of the frozen layers alone on the same batch: what a cache
  of the frozen blocks' outputs would take out of each step;
* ``cached_step``: a training step of the trainable layers alone on those cached outputs.

A cache pays only where views are reused: with fresh colour jitter every epoch each image's
frozen output must still be computed once per epoch, so ``cached_step + frozen_forward`` is what
a cached epoch costs then. ``--isa AVX2`` sets ``ONEDNN_MAX_CPU_ISA`` for the run (before
TensorFlow loads), so a machine with AVX-512 measures how its oneDNN kernels do without it: the
basis for estimating the slower kind's time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

DEFAULT_RUNS = (
    ("efficientnet-lite0", "block5"),
    ("efficientnet-lite0", "block11"),
    ("efficientnet-lite1", "block7"),
    ("efficientnet-lite1", "block15"),
)


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(family: str, cut: str, image_size: int, batch: int, repeats: int) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from components.core.modeling.models import ModelSpec, backbone_of, build_model, freeze_below

    spec = ModelSpec(family=family, image_size=image_size, weights="imagenet", augmentation="light")
    model = build_model(spec, seed=0)
    backbone = backbone_of(model)
    freeze_below(backbone, cut)
    first = next(layer for layer in backbone.layers if layer.name.startswith(cut))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, batch).astype(np.float32)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss="binary_crossentropy")

    frozen = keras.Model(backbone.input, first.input)
    frozen_forward = tf.function(lambda x: frozen(x, training=False))
    floats = pixels.astype(np.float32)
    cached = np.asarray(frozen_forward(floats))
    inputs = keras.Input(shape=cached.shape[1:])
    top = keras.Model(first.input, backbone.output)
    head = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dropout(0.3)(top(inputs)))
    top_model = keras.Model(inputs, head)
    top_model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss="binary_crossentropy")

    steps = {
        "step": lambda: model.train_on_batch(pixels, labels),
        "frozen_forward": lambda: frozen_forward(floats),
        "cached_step": lambda: top_model.train_on_batch(cached, labels),
    }
    for fn in steps.values():
        fn()  # warm-up: tracing and oneDNN primitive creation
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):  # interleaved: a burst of other load hits all three alike
        for name, fn in steps.items():
            times[name].append(_seconds(fn))
    median = {name: float(np.median(v)) for name, v in times.items()}
    return {
        "family": family,
        "cut": cut,
        "image_size": image_size,
        "batch": batch,
        "cached_shape": list(cached.shape[1:]),
        "cached_bytes_per_view": int(np.prod(cached.shape[1:]) * 2),  # stored as float16
        **{f"{name}_s": round(v, 4) for name, v in median.items()},
        "frozen_share_of_step": round(median["frozen_forward"] / median["step"], 3),
        "cached_step_share": round(median["cached_step"] / median["step"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fine_tune_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--family", action="append", help="with --cut, one pair per use (default: four pairs)")
    ap.add_argument("--cut", action="append", help="fine_tune_from: the first trainable block")
    ap.add_argument("--image-size", type=int, default=192)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--isa", help="ONEDNN_MAX_CPU_ISA for this run, e.g. AVX2 (must be set before TensorFlow loads)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    if args.isa:
        if "tensorflow" in sys.modules:
            raise SystemExit("--isa must be set before TensorFlow is imported")
        os.environ["ONEDNN_MAX_CPU_ISA"] = args.isa
    if (args.family is None) != (args.cut is None) or len(args.family or []) != len(args.cut or []):
        raise SystemExit("give --family and --cut the same number of times")
    runs = list(zip(args.family, args.cut)) if args.family else list(DEFAULT_RUNS)
    rows = [measure(f, c, args.image_size, args.batch, args.repeats) for f, c in runs]
    print(f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(native)')}, batch {args.batch}")
    print("| family | fine_tune_from | step s | frozen forward s (share) | cached step s (share) | cached view |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['family']} | {r['cut']} | {r['step_s']:.3f} | {r['frozen_forward_s']:.3f} "
            f"({r['frozen_share_of_step']:.2f}) | {r['cached_step_s']:.3f} ({r['cached_step_share']:.2f}) "
            f"| {'x'.join(map(str, r['cached_shape']))}, {r['cached_bytes_per_view'] / 1024:.0f} KiB |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"isa": os.environ.get("ONEDNN_MAX_CPU_ISA"), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
