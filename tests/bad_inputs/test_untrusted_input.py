"""Untrusted input stays harmless: the torch weight reader takes tensors only, model files load in Keras' safe
mode, ffmpeg runs from argument lists (never a shell), and a file name is never read as an option."""

from __future__ import annotations

import ast
import collections
import contextlib
import io
import os
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from bad_support import CHELSEA, ROOT, lambda_keras, nothing_written, one_line_error, run_cli, session_dir

from vidcam.errors import ModelError, WeightsError
from vidcam.models.torch_weights import _LEGACY_MAGIC, read_legacy_state_dict

pytestmark = pytest.mark.timeout(120)


# -- a writer for legacy torch files, with stand-in torch globals so the pickles are byte-for-byte what torch
#    writes (GLOBAL torch._utils._rebuild_tensor_v2, GLOBAL torch.FloatStorage, persistent storage ids) --------


@contextlib.contextmanager
def _fake_torch():
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):  # pragma: no cover - only pickled, never called
        raise AssertionError

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, _rebuild_tensor_v2
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield torch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Storage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


class _Tensor:
    def __init__(self, storage, offset, size, stride) -> None:
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, (*self.args, False, collections.OrderedDict())


def write_legacy(path: Path, state, storages=()) -> Path:
    with _fake_torch() as torch:

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _Storage):
                    return ("storage", torch.FloatStorage, obj.key, "cpu", obj.data.size)
                return None

        with open(path, "wb") as f:
            for obj in (_LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
                pickle.dump(obj, f, protocol=2)
            Pickler(f, protocol=2).dump(state)
            pickle.dump([s.key for s in storages], f, protocol=2)
            for s in storages:
                f.write(struct.pack("<q", s.data.size) + s.data.astype("<f4").tobytes())
    return path


STORAGE = _Storage("0", np.arange(12, dtype=np.float32))


def test_writer_makes_files_the_reader_accepts(tmp_path):
    """The crafted files below differ from a valid one only in what each test changes."""
    path = write_legacy(tmp_path / "ok.pth", collections.OrderedDict(w=_Tensor(STORAGE, 2, (2, 3), (3, 1))),
                        [STORAGE])
    sd = read_legacy_state_dict(path)
    np.testing.assert_array_equal(sd["w"], [[2, 3, 4], [5, 6, 7]])


class _Evil:
    """A classic pickle payload: unpickling calls os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_reduce_payload_as_an_entry_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = write_legacy(tmp_path / "evil.pth", collections.OrderedDict(w=_Evil(marker)))
    with pytest.raises(WeightsError, match="refusing to load .*system"):
        read_legacy_state_dict(path)
    assert not marker.exists()


def test_payload_nested_inside_a_tensor_is_refused(tmp_path):
    """The global hides in a tensor's arguments (its shape), not at the top level."""
    marker = tmp_path / "pwned"
    state = collections.OrderedDict(w=_Tensor(STORAGE, 0, (_Evil(marker),), (1,)))
    path = write_legacy(tmp_path / "nested.pth", state, [STORAGE])
    with pytest.raises(WeightsError, match="refusing to load"):
        read_legacy_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("builtins", "getattr"), ("numpy", "load"),
                                         ("torch", "load"), ("torch._utils", "_rebuild_parameter"),
                                         ("collections", "namedtuple")])
def test_any_other_global_is_refused(tmp_path, module, name):
    payload = f"c{module}\n{name}\n".encode() + b"."  # protocol-0 GLOBAL opcode, then STOP
    path = tmp_path / "g.pth"
    with open(path, "wb") as f:
        for obj in (_LEGACY_MAGIC, 1001, {}):
            pickle.dump(obj, f, protocol=2)
        f.write(payload)
    with pytest.raises(WeightsError, match=f"refusing to load {module}.{name}"):
        read_legacy_state_dict(path)


@pytest.mark.parametrize(
    "offset,size,stride,needle",
    [
        (0, (1000,), (-1000,), "negative"),  # a negative stride once read memory before the storage (segfault)
        (0, (-5,), (1,), "negative"),
        (0, (2, 3), (1,), "inconsistent"),
        (0, ("a", "b"), (1, 1), "not integers"),
        (0, None, None, "not integers"),
        (10**30, (1,), (1,), "outside its storage"),
        (0, (1 << 40, 1 << 40), (1, 1), "outside its storage"),  # a memory bomb: never allocated
        (6, (4, 2), (2, 1), "outside its storage"),
    ],
)
def test_malformed_tensor_geometry_is_refused(tmp_path, offset, size, stride, needle):
    path = write_legacy(tmp_path / "t.pth", collections.OrderedDict(w=_Tensor(STORAGE, offset, size, stride)),
                        [STORAGE])
    with pytest.raises(WeightsError, match=needle):
        read_legacy_state_dict(path)


def test_empty_and_scalar_tensors_are_fine(tmp_path):
    state = collections.OrderedDict(e=_Tensor(STORAGE, 0, (0, 5), (5, 1)), s=_Tensor(STORAGE, 3, (), ()))
    sd = read_legacy_state_dict(write_legacy(tmp_path / "t.pth", state, [STORAGE]))
    assert sd["e"].shape == (0, 5) and float(sd["s"]) == 3.0


def test_storage_pid_must_be_a_storage(tmp_path):
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("module", "os") if obj == "x" else None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"w": "x"})
    path = tmp_path / "pid.pth"
    with open(path, "wb") as f:
        for obj in (_LEGACY_MAGIC, 1001, {}):
            pickle.dump(obj, f, protocol=2)
        f.write(buf.getvalue())
    with pytest.raises(WeightsError, match="persistent id"):
        read_legacy_state_dict(path)


def test_cli_weights_file_with_payload_is_one_line_error(tmp_path):
    marker = tmp_path / "pwned"
    path = write_legacy(tmp_path / "evil.pth", collections.OrderedDict(w=_Evil(marker)))
    out = run_cli("image", CHELSEA, "--weights", path, "-o", tmp_path / "o")
    one_line_error(out, 1, "refusing to load")
    assert not marker.exists()
    nothing_written(tmp_path / "o", "chelsea_output.jpg")


# -- Keras files: safe mode ---------------------------------------------------------------------------------


def _marker_lambda_model(marker: Path) -> Path:
    """A .keras whose Lambda layer creates ``marker`` when its code runs (as it does while the model loads)."""
    import keras
    from keras import layers

    code = f"lambda t: (open({str(marker)!r}, 'w').close(), t)[1] / 255.0"
    fn = eval(code)  # the function must be a real lambda for Keras to serialise its bytecode
    inp = keras.Input((32, 32, 3))
    x = layers.Lambda(fn, name="scale")(inp)
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(2, activation="softmax")(x))
    path = session_dir() / f"marker_{marker.parent.name}.keras"
    model.save(path)
    marker.unlink(missing_ok=True)  # building the model ran the lambda once
    return path


def test_lambda_code_does_not_run_in_safe_mode(tmp_path):
    from vidcam.models.zoo import load_classifier

    marker = tmp_path / "ran"
    path = _marker_lambda_model(marker)
    with pytest.raises(ModelError, match="--unsafe"):
        load_classifier(path)
    assert not marker.exists()
    load_classifier(path, unsafe=True)  # the user vouches for the file: now its code runs
    assert marker.exists()


def test_cli_refuses_lambda_then_unsafe_allows(tmp_path):
    out = run_cli("image", CHELSEA, "--model", lambda_keras(), "-o", tmp_path)
    one_line_error(out, 1, "Lambda", "--unsafe")
    nothing_written(tmp_path, "chelsea_output.jpg")
    out = run_cli("image", CHELSEA, "--model", lambda_keras(), "--unsafe", "-o", tmp_path)
    assert out.code == 0, out.stderr
    assert (tmp_path / "chelsea_output.jpg").is_file()


def test_models_load_with_safe_mode_in_source():
    """Every Keras load call in vidcam passes safe_mode (the default stays safe)."""
    calls = []
    for path in (ROOT / "vidcam").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "load_model":
                calls.append((path.name, {k.arg for k in node.keywords}))
    assert calls, "no load_model call found"
    for name, kwargs in calls:
        assert "safe_mode" in kwargs, f"{name} loads a model without safe_mode"


# -- processes: argument lists only --------------------------------------------------------------------------


def _vidcam_sources():
    return sorted((ROOT / "vidcam").rglob("*.py"))


def test_no_shell_anywhere_in_vidcam():
    for path in _vidcam_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    shell_off = isinstance(kw.value, ast.Constant) and not kw.value.value
                    assert kw.arg != "shell" or shell_off, f"{path.name}:{node.lineno} passes shell=..."
                func = node.func
                name = f"{getattr(func.value, 'id', '')}.{func.attr}" if isinstance(func, ast.Attribute) else ""
                assert name not in {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}, \
                    f"{path.name}:{node.lineno} calls {name}"


def test_subprocess_calls_take_lists():
    """subprocess.run/Popen/check_* are given a list (or a name bound to one), never a string."""
    for path in _vidcam_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if getattr(node.func.value, "id", "") != "subprocess" or node.func.attr not in {
                    "run", "Popen", "call", "check_call", "check_output"}:
                continue
            first = node.args[0] if node.args else None
            assert not isinstance(first, (ast.Constant, ast.JoinedStr, ast.BinOp)), \
                f"{path.name}:{node.lineno}: a command string"


def test_ffmpeg_media_paths_cannot_be_options_or_protocols(tmp_path):
    from vidcam.media.ffmpeg_cmd import AudioPlan, EncodeTarget, decode_args, media_arg, mux_args, probe_args

    for name in ["-y.mp4", "-i", "http:evil.mp4", "a b.mp4", "concat:x|y.mp4"]:
        arg = media_arg(tmp_path / name)
        assert arg.startswith("file:/") and arg.endswith(name)
    nasty = tmp_path / "-f lavfi -i x.mp4"
    for args in (probe_args("ffmpeg", nasty), decode_args("ffmpeg", nasty),
                 mux_args("ffmpeg", tmp_path / "-y.mp4", EncodeTarget(8, 8), audio=AudioPlan(nasty))):
        assert isinstance(args, list) and all(isinstance(a, str) for a in args)
        # The path is one argument, behind file:, and never stands alone where ffmpeg looks for options.
        assert not any(a.startswith("-") and "x.mp4" in a for a in args), args
        assert not any(a.startswith("-") and a.endswith(".mp4") for a in args), args
