"""The benchmark suite: this project against the reference approach and the machine's limits.

Not part of the product (not installed with it): run from the repository root with
``python -m benchmarks`` (docs/benchmarks.md). One command measures, in one run, and writes
``bench.json`` plus ``bench.md`` to ``--out``:

1. Preprocessing from an S3 endpoint on 127.0.0.1 (a moto server in its own process, so its
   memory and CPU are not the measured process's), images/s and peak memory of

   a. this project's :func:`components.core.data.dataset.preprocess`;
   b. the reference approach, re-implemented here: one ``get_object`` at a time, PIL decode
      on one core, ``np.array(img) / 255`` (float64) per image into a list, ``np.array`` of
      the list, float64 one-hot labels, ``pickle.dumps`` and one ``put_object`` of the pickle;
   c. the machine's ceiling: the project's own :func:`decode_image` (decode + resize) in a
      bare loop over the same bytes already in memory, on one core, times the cores the
      project's run may use.

   Diagnostics beside them: the same decode with one thread per core, GET-only throughput
   from the endpoint, and the project's preprocessing from the local folder (no S3).
2. Training input: the same model (the ``basic`` family at the pipeline's image size) and
   batch size, fed by :func:`components.core.modeling.training.make_dataset` (uint8 shards) or by
   float64 ``/255`` arrays with float64 one-hot labels through ``model.fit`` as the reference
   did; plus a tiny model that makes the input the bottleneck.
3. End to end: ``skin-cancer run`` with default local settings, wall time and per stage.
4. Scaling: this project's preprocessing at 1x, 2x and 4x the data (copies under new keys).

Every measured method runs in its own fresh Python process; peak memory is that process's
VmHWM (not ``ru_maxrss``, which on Linux carries the parent's peak across fork and exec).
Timings on a shared machine are distorted: the report records the load average before each
measurement, and compares methods only within one run.

Modules: ``__main__`` (the command), ``suite`` (one run of everything), ``runner`` (each
measurement in a fresh process), ``s3server`` (the moto subprocess), ``memory`` (VmHWM
sampling), ``machine``, ``data`` (the raw images), ``preprocessing``, ``training_input``,
``end_to_end`` (kfp.local log parsing), ``report`` (targets, markdown, rewriting the table in docs/benchmarks.md).
"""
