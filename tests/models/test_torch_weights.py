"""The numpy-only legacy torch reader: real weight files, and refusal of anything but tensors."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest

from vidcam.errors import WeightsError
from vidcam.models.efficientnet_lite import source_weights_path
from vidcam.models.torch_weights import _LEGACY_MAGIC, read_legacy_state_dict


@pytest.fixture(scope="module")
def lite0_sd():
    return read_legacy_state_dict(source_weights_path("efficientnet_lite0"))


def test_reads_real_lite0_file(lite0_sd):
    assert len(lite0_sd) == 296
    assert lite0_sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert lite0_sd["_fc.weight"].shape == (1000, 1280)
    assert lite0_sd["_bn0.running_var"].dtype == np.float32
    assert (lite0_sd["_bn0.running_var"] >= 0).all() and lite0_sd["_bn0.running_var"].max() > 1  # real statistics
    assert list(lite0_sd)[0] == "_conv_stem.weight"  # file order kept


@pytest.mark.parametrize("name,blocks,head_in", [("efficientnet_lite1", 21, 320), ("efficientnet_lite2", 21, 352)])
def test_reads_lite1_and_lite2(name, blocks, head_in):
    sd = read_legacy_state_dict(source_weights_path(name))
    assert sum(k.endswith("_depthwise_conv.weight") for k in sd) == blocks
    assert sd["_conv_head.weight"].shape == (1280, head_in, 1, 1)


def _legacy_file(path, payload: bytes, keys=(), storages=b"") -> None:
    with open(path, "wb") as f:
        for obj in (_LEGACY_MAGIC, 1001, {"protocol_version": 1001}):
            pickle.dump(obj, f, protocol=2)
        f.write(payload)
        pickle.dump(list(keys), f, protocol=2)
        f.write(storages)


def test_refuses_arbitrary_callables(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(os.system, protocol=2)  # a GLOBAL opcode for posix.system
    payload = evil[:-1] + pickle.dumps(f"touch {marker}", protocol=2)[2:-1] + b"\x85R."  # system("touch ...")
    path = tmp_path / "evil.pth"
    _legacy_file(path, payload)
    with pytest.raises(WeightsError, match="refusing to load"):
        read_legacy_state_dict(path)
    assert not marker.exists()


def test_refuses_evil_class_in_header(tmp_path):
    path = tmp_path / "evil2.pth"
    path.write_bytes(pickle.dumps(os.system, protocol=2))
    with pytest.raises(WeightsError):
        read_legacy_state_dict(path)


def test_truncated_file(tmp_path):
    src = source_weights_path("efficientnet_lite0").read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(src[: len(src) // 2])
    with pytest.raises(WeightsError, match="truncated"):
        read_legacy_state_dict(path)


@pytest.mark.parametrize("content", [b"", b"not a torch file at all", b"PK\x03\x04zipzip"])
def test_not_a_torch_file(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError):
        read_legacy_state_dict(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="cannot read"):
        read_legacy_state_dict(tmp_path / "nope.pth")


def test_storage_count_overflow_is_rejected(tmp_path):
    # A storage header claiming more elements than the file holds must not be trusted.
    payload_src = source_weights_path("efficientnet_lite0").read_bytes()
    path = tmp_path / "big.pth"
    # Find the first storage header: it follows the key list pickle; rewrite its count to a huge value.
    with open(source_weights_path("efficientnet_lite0"), "rb") as f:
        for _ in range(3):
            pickle.load(f)
        from vidcam.models.torch_weights import _RestrictedUnpickler

        _RestrictedUnpickler(f, {}).load()
        pickle.load(f)
        pos = f.tell()
    data = bytearray(payload_src)
    data[pos : pos + 8] = struct.pack("<q", 1 << 40)
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="truncated"):
        read_legacy_state_dict(path)
