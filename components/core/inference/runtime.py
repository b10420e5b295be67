"""What bounds a model process's memory beyond its batch size: glibc's malloc arenas and
TensorFlow's inter-op thread pool (issue 32).

Called first thing by the processes that hold a model for long, batch after batch (a scoring
task, ``skin-cancer serve``), before TensorFlow runs its first op; measured in
docs/scoring.md#speed-and-memory and docs/serving.md#memory:

* **malloc arenas**: glibc gives each thread that allocates its own arena, up to 8 per core it
  sees (the node's cores, not the pod's request). TensorFlow's threads free one batch's
  activations into theirs and the next batch lands elsewhere, so resident memory crept up
  batch after batch (scoring 1200 images: 2.09 GB after the first batch, 2.29 GB at the
  end); with 2 arenas it stays flat (2.03 GB), at the same speed;
* **inter-op threads**: TensorFlow runs independent ops side by side, one thread per core it
  sees. The classifier's four flipped views (test-time augmentation) are independent, so on a
  big node all four views' activations are live at once: the server, with the thread pools of
  a 16-core node, peaked at 2.0 GB against its 2 GiB limit, and at 1.6 GB with two inter-op
  threads; batch scoring runs its ops one at a time (each still spread over every core by the
  intra-op pool).

Only what the environment does not set already: an operator's ``MALLOC_ARENA_MAX`` or
``TF_NUM_INTEROP_THREADS`` wins. Linux with glibc only for the arenas (elsewhere nothing changes).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

MALLOC_ARENAS = 2
# Batch scoring's batches of 64 keep every core busy inside each op: ops side by side add only
# live activations. A served request is often one image, which one op cannot spread over the
# cores: two views side by side kept the server's single-client latency (one at a time cost
# up to 30 % of its images/s on 2 cores), and two is what it ran with on the 2-core machine measured.
SCORING_INTER_OP_THREADS = 1
SERVING_INTER_OP_THREADS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def bound_model_memory(inter_op_threads: int, arenas: int = MALLOC_ARENAS) -> dict[str, int]:
    """Cap glibc's malloc arenas at ``arenas`` (what ``MALLOC_ARENA_MAX`` does, set from inside the
    process: threads started from now on share them) and TensorFlow's inter-op pool at
    ``inter_op_threads`` (``TF_NUM_INTEROP_THREADS``: read when TensorFlow creates its pools, at
    its first op). Returns what was set, by variable name."""
    done: dict[str, int] = {}
    if "MALLOC_ARENA_MAX" not in os.environ and _mallopt(_M_ARENA_MAX, arenas):
        done["MALLOC_ARENA_MAX"] = arenas
    if "TF_NUM_INTEROP_THREADS" not in os.environ:
        # a library's variable, written for it to read (components/core/settings.py)
        os.environ["TF_NUM_INTEROP_THREADS"] = str(inter_op_threads)
        done["TF_NUM_INTEROP_THREADS"] = inter_op_threads
    return done


def _mallopt(param: int, value: int) -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to cap
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(param, value) == 1
    if not ok:
        log.debug("mallopt(%d, %d) refused", param, value)
    return ok
