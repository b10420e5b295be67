"""Read a legacy (pre-1.6) PyTorch ``.pth`` state dict as numpy arrays, without PyTorch and
without running pickle code.

The legacy format is five pickles back to back (magic number, protocol version, system
info, the state dict, the list of storage keys), then each storage's raw bytes: a
little-endian int64 element count followed by the elements. The state dict's pickle names
only four globals (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the
storage classes); the unpickler below resolves exactly those to harmless local stand-ins
and refuses every other global, so a tampered file cannot execute anything.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
}


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch state dict this reader accepts; the message names it."""


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    size: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, offset, shape, stride, requires_grad=False, hooks=None, *rest):
    return _TensorRef(storage, int(offset), tuple(shape), tuple(stride))


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _STORAGE_DTYPES[name]


class _RestrictedUnpickler(pickle.Unpickler):
    """Allows only the names a state dict needs; anything else is refused, not imported."""

    def __init__(self, file, path: str):
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(f"{self._path}: refuses pickle global {module}.{name} (only tensor state dicts are read)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"{self._path}: unexpected persistent id {pid!r:.80}")
        _, kind, key, _location, size = pid[:5]
        return _StorageRef(str(key), kind.dtype, int(size))


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """``{name: array}`` from a legacy PyTorch state dict file (float32 weights stay float32)."""
    path = str(path)
    data = Path(path).read_bytes()
    stream = io.BytesIO(data)

    def load():
        try:
            return _RestrictedUnpickler(stream, path).load()
        except CheckpointError:
            raise
        except Exception as err:
            raise CheckpointError(f"{path}: not a legacy PyTorch state dict ({type(err).__name__}: {err})") from None

    if load() != LEGACY_MAGIC:
        raise CheckpointError(f"{path}: no legacy PyTorch magic number (a zip-format .pth is not supported)")
    load()  # protocol version
    sys_info = load()
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian")):
        raise CheckpointError(f"{path}: not a little-endian checkpoint")
    state = load()
    keys = load()
    if not isinstance(state, OrderedDict) or not isinstance(keys, list):
        raise CheckpointError(f"{path}: the checkpoint does not hold a state dict")
    storages: dict[str, np.ndarray] = {}
    refs = {t.storage.key: t.storage for t in state.values() if isinstance(t, _TensorRef)}
    for key in keys:
        ref = refs.get(key)
        if ref is None:
            raise CheckpointError(f"{path}: storage {key} is not used by any tensor")
        header = stream.read(8)
        if len(header) != 8:
            raise CheckpointError(f"{path}: truncated before storage {key}")
        (count,) = struct.unpack("<q", header)
        raw = stream.read(count * ref.dtype.itemsize)
        if count != ref.size or len(raw) != count * ref.dtype.itemsize:
            raise CheckpointError(f"{path}: storage {key} is truncated or has the wrong size")
        storages[key] = np.frombuffer(raw, dtype=ref.dtype)
    out: dict[str, np.ndarray] = {}
    for name, t in state.items():
        if not isinstance(t, _TensorRef):
            raise CheckpointError(f"{path}: entry {name} is not a tensor")
        flat = storages[t.storage.key]
        strides = tuple(s * flat.itemsize for s in t.stride)
        view = np.lib.stride_tricks.as_strided(flat[t.offset :], shape=t.shape, strides=strides)
        out[name] = np.array(view, dtype=flat.dtype.newbyteorder("="))  # own, writable, native order
    return out
