"""EfficientNet-Lite0's ImageNet weights: read without PyTorch or pickle code, mapped, and proven
right on photographs that installed packages ship (components/core/modeling/pretrained/)."""

import io
import pickle
import struct
from collections import OrderedDict

import numpy as np
import pytest

from components.core.modeling.pretrained import efficientnet_lite as lite
from components.core.modeling.pretrained import torch_legacy, verify


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    """A private Keras cache, so the conversion itself is exercised."""
    import os

    home = tmp_path_factory.mktemp("keras_home")
    old = os.environ.get("KERAS_HOME")
    os.environ["KERAS_HOME"] = str(home)
    yield home
    if old is None:
        del os.environ["KERAS_HOME"]
    else:
        os.environ["KERAS_HOME"] = old


@pytest.fixture(scope="module")
def imagenet_model(keras_home):
    return lite.imagenet_lite0(include_top=True)


@pytest.fixture(scope="module")
def state():
    return torch_legacy.read_state_dict(lite.checkpoint_path())


def test_checkpoint_is_read_whole_and_mapped_onto_every_layer(state):
    assert len(state) == 296
    assert sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked")) == 4_694_024
    assert state["_conv_stem.weight"].dtype == np.float32 and state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    model = lite.build_lite0(include_top=True)
    lite.load_state_into(model, state)  # raises if a tensor is left over
    assert model.count_params() == 4_694_024  # both count the batch-norm moving statistics
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").get_weights()[0], state["_conv_stem.weight"].transpose(2, 3, 1, 0)
    )


def test_photographs_land_on_their_imagenet_classes(imagenet_model):
    for top in verify.imagenet_top5(imagenet_model):
        assert top.hits, f"{top.name}: top-5 {top.classes} holds none of {verify.EXPECTED[top.name]}"
        assert top.entropy < 0.7 * verify.UNIFORM_ENTROPY, f"{top.name}: entropy {top.entropy:.2f} nats"
    china, flower, grace = verify.imagenet_top5(imagenet_model)
    assert china.classes[0] == 698 and flower.classes[0] == 985  # palace, daisy
    assert {400, 667} <= set(grace.classes)  # academic gown and mortarboard


def test_batchnorm_inputs_match_the_stored_statistics(imagenet_model):
    agreement = np.array(list(verify.batchnorm_agreement(imagenet_model).values()))
    assert len(agreement) == 49
    assert np.median(agreement) > verify.MIN_MEDIAN_BN_AGREEMENT and (agreement > 0.6).mean() > 0.8, agreement.round(2)
    untrained = np.array(list(verify.batchnorm_agreement(lite.build_lite0(include_top=True)).values()))
    assert np.median(untrained) < 0.2


def test_top5_check_catches_swapped_kernel_height_and_width(state):
    """The batch-norm check alone misses this mistake; the photographs do not."""
    swapped = {
        k: (v.swapaxes(-1, -2).copy() if k.endswith("conv.weight") and v.shape[-1] > 1 else v) for k, v in state.items()
    }
    model = lite.build_lite0(include_top=True)
    lite.load_state_into(model, swapped)
    assert not any(top.hits for top in verify.imagenet_top5(model))


def test_weights_are_converted_once_into_the_keras_cache(keras_home, imagenet_model):
    cached = keras_home / "models" / lite.CACHE_NAME
    assert cached.is_file() and lite.imagenet_weights_file() == cached
    stamp = cached.stat().st_mtime_ns
    lite.imagenet_lite0()
    assert cached.stat().st_mtime_ns == stamp  # read, not rewritten
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".lite0-")]  # no temporary left


def test_a_checkpoint_with_another_digest_is_refused(monkeypatch):
    monkeypatch.setattr(lite, "CHECKPOINT_SHA256", "0" * 64)
    with pytest.raises(lite.WeightsError, match="efficientnet-lite0-57934424.pth: SHA-256 .* is not the pinned"):
        lite.checkpoint_path()


def _legacy_file(path, state_pickle: bytes) -> None:
    head = b"".join(pickle.dumps(x, protocol=2) for x in (torch_legacy.LEGACY_MAGIC, 1001, {"little_endian": True}))
    path.write_bytes(head + state_pickle + pickle.dumps([], protocol=2))


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/should-not-exist",))


def test_pickle_code_is_never_run(tmp_path):
    bad = tmp_path / "evil.pth"
    _legacy_file(bad, pickle.dumps(OrderedDict(x=_Boom()), protocol=2))
    with pytest.raises(torch_legacy.CheckpointError, match=r"evil.pth: refuses pickle global (posix|os)\.system"):
        torch_legacy.read_state_dict(bad)


def test_a_truncated_or_foreign_file_is_a_clear_error(tmp_path, state):
    good = lite.checkpoint_path().read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(torch_legacy.CheckpointError, match="cut.pth: .*truncated"):
        torch_legacy.read_state_dict(cut)
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(torch_legacy.CheckpointError, match="new.pth: not a legacy PyTorch state dict"):
        torch_legacy.read_state_dict(zipped)


class _FakeStorage:
    def __init__(self, key: str, values: np.ndarray):
        self.key, self.values = key, values


def _write_torch_style(path, tensors: dict) -> None:
    """Write a legacy file the way torch.save did, with stand-ins registered as torch's names."""
    import sys
    import types

    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while pickling")

    class FloatStorage:
        pass

    _rebuild_tensor_v2.__module__, FloatStorage.__module__ = "torch._utils", "torch"
    _rebuild_tensor_v2.__qualname__, FloatStorage.__qualname__ = "_rebuild_tensor_v2", "FloatStorage"
    utils._rebuild_tensor_v2, torch.FloatStorage, torch._utils = _rebuild_tensor_v2, FloatStorage, utils

    class Tensor:
        def __init__(self, storage, offset, shape, stride):
            self.args = (storage, offset, shape, stride, False, OrderedDict())

        def __reduce__(self):
            return (_rebuild_tensor_v2, self.args)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _FakeStorage):
                return ("storage", FloatStorage, obj.key, "cpu", obj.values.size)
            return None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(OrderedDict((k, Tensor(*v)) for k, v in tensors.items()))
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    storages = {v[0].key: v[0] for v in tensors.values()}
    raw = b"".join(struct.pack("<q", s.values.size) + s.values.astype("<f4").tobytes() for s in storages.values())
    head = b"".join(pickle.dumps(x, protocol=2) for x in (torch_legacy.LEGACY_MAGIC, 1001, {"little_endian": True}))
    path.write_bytes(head + buf.getvalue() + pickle.dumps(list(storages), protocol=2) + raw)


def test_offsets_strides_and_shared_storages_are_rebuilt_like_torch(tmp_path):
    storage = _FakeStorage("s0", np.arange(12, dtype=np.float32))
    path = tmp_path / "strided.pth"
    _write_torch_style(
        path,
        {
            "whole": (storage, 0, (3, 4), (4, 1)),
            "transposed": (storage, 0, (4, 3), (1, 4)),  # a .t() view of the same storage
            "tail": (storage, 6, (2, 3), (3, 1)),  # a slice starting at element 6
        },
    )
    got = torch_legacy.read_state_dict(path)
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(got["whole"], base)
    np.testing.assert_array_equal(got["transposed"], base.T)
    np.testing.assert_array_equal(got["tail"], np.arange(6, 12, dtype=np.float32).reshape(2, 3))
    got["whole"][0, 0] = -1  # each array owns its memory
    assert got["transposed"][0, 0] == 0
