"""A cache of compiled engine steps, so a short run does not pay for building and tracing the model again.

Building the Keras classifier, loading its weights and tracing the engine's forward+backward step take about as
long as importing TensorFlow itself, on every run. The traced step (the whole forward and backward pass, the
method's map and the classifier's scores) is saved once, its weights frozen into it as constants, as TensorFlow
``FunctionDef`` protos in vidcam's cache folder; later runs register them with the TensorFlow runtime and call the
step by name, with no Python graph rebuilt (a SavedModel of the same step loads 3-5x slower, measured: it
rebuilds every op in Python). No Keras model is built until something other than the step needs it (a method's
extra forward passes, ``--metrics``), and then lazily.

What is cached is keyed by everything that makes the step: the model's content (a ``.keras`` file's sha256, the
pretrained weights file's), the layer, the method, the class groups, the versions of vidcam, TensorFlow and Keras,
and the source of the code that builds the step. Methods with a post-step (Score-CAM, Ablation-CAM: extra
forward passes after the step) are not cached. An entry is written under a temporary name and renamed whole;
its sha256 is stored in it and checked before every load: a damaged entry is rebuilt with one
:class:`~vidcam.errors.VidcamWarning`. ``VIDCAM_STEP_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import threading
import uuid
import warnings
from dataclasses import fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vidcam.cam.engine import CamEngine
from vidcam.cam.methods import CamMethod, get_method
from vidcam.errors import VidcamWarning
from vidcam.media.files import content_sha256
from vidcam.models.efficientnet_lite import cache_dir
from vidcam.models.groups import ClassGroups
from vidcam.models.zoo import GROUPED_MODELS, ZOO, Classifier
from vidcam.version import __version__

if TYPE_CHECKING:
    from vidcam.cam.spec import ModelSpec

__all__ = ["CachedEngine", "build_cached", "cache_key", "step_cache_dir", "warm", "keras_version"]

KEEP = 8  # entries kept (the most recently used); each is about the size of the model's weights
_CODE = ("cam/engine.py", "cam/methods.py", "cam/stepcache.py", "models/preprocess.py", "models/groups.py",
         "models/efficientnet_lite.py", "models/zoo.py")


def step_cache_dir() -> Path:
    """Where compiled steps are kept: ``<vidcam cache>/steps``."""
    return cache_dir() / "steps"


def _enabled() -> bool:
    return os.environ.get("VIDCAM_STEP_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


@lru_cache(maxsize=1)
def _code_hash() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for rel in _CODE:
        h.update(rel.encode())
        h.update((root / rel).read_bytes())
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def keras_version() -> str:
    """The installed Keras's version, read from its package metadata (which imports the email parser: call it once
    before a :func:`warm` that runs while TensorFlow imports, which must import nothing)."""
    return importlib.metadata.version("keras")


def _model_identity(spec: ModelSpec) -> dict[str, str] | None:
    """The contents the step depends on, or None when they cannot be known (then nothing is cached)."""
    base = GROUPED_MODELS[spec.model].base if spec.model in GROUPED_MODELS else spec.model  # cats_dogs: lite0's
    if base in ZOO:
        weights = spec.weights or ZOO[base].weights_file(True)
        if weights is None or not os.path.isfile(weights):
            return None  # the build will say what is missing
        return {"zoo": spec.model, "weights_sha256": content_sha256(weights)}
    if str(spec.model).lower().endswith(".keras") and os.path.isfile(spec.model):
        return {"keras_sha256": content_sha256(spec.model)}
    return None


def _policy_name() -> str:
    """Keras' global dtype policy, without importing Keras for it (a cached run never needs Keras): until Keras is
    imported nobody can have set one, so it is Keras' default, the ``floatx`` of its config file."""
    keras = sys.modules.get("keras")
    if keras is not None:
        return keras.mixed_precision.global_policy().name
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        return str(json.loads((home / "keras.json").read_text()).get("floatx", "float32"))
    except (OSError, ValueError, AttributeError):
        return "float32"


def cache_key(spec: ModelSpec) -> str | None:
    """The cache entry's name for ``spec``, or None when its step is not cached (a post-step method, a model whose
    content cannot be hashed, a model loaded with ``unsafe``, the cache turned off)."""
    if not _enabled() or spec.unsafe:  # a file that needs --unsafe is refused without it, cached or not
        return None
    method = get_method(spec.method)
    if method.post_step is not CamMethod.post_step:
        return None  # its map needs forward passes of the Keras model after the step
    try:
        model = _model_identity(spec)
    except OSError:
        return None
    if model is None:
        return None
    # TensorFlow's runtime modules only (tf.__version__ and tf.config.list_physical_devices are these): a key may
    # be made while `import tensorflow` still loads the rest (warm, vidcam.tfimport.after_runtime).
    from tensorflow.python.eager import context
    from tensorflow.python.framework import versions

    desc = {**model, "layer": spec.layer, "method": spec.method, "groups": list(spec.groups),
            "vidcam": __version__, "code": _code_hash(), "tensorflow": versions.__version__,
            "keras": keras_version(), "policy": _policy_name(), "python": sys.version_info[:2],
            "gpu": bool(context.context().list_physical_devices("GPU"))}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:24]


class _LoadedStep:
    """The saved step, called like the engine's own: (frames, targets) -> (cls, probs, cams, maps, inputs).

    The feature maps and the preprocessed inputs are only read by post-steps, which cached methods do not have."""

    def __init__(self, name: str, layers: int) -> None:
        self._name, self._layers = name, layers

    def __call__(self, frames, targets):
        from tensorflow.python.eager import context, execute  # the runtime's modules only (see cache_key)
        from tensorflow.python.framework import constant_op, dtypes

        inputs = [constant_op.constant(frames, dtypes.uint8), constant_op.constant(targets, dtypes.int32)]
        out = execute.execute(self._name, num_outputs=2 + self._layers, inputs=inputs, attrs=(),
                              ctx=context.context())
        return out[0], out[1], list(out[2:]), [None] * self._layers, None


class CachedEngine(CamEngine):
    """A :class:`CamEngine` whose step was loaded from the cache; its Keras model is built only when something
    other than :meth:`run` needs it (:meth:`predict`, a method's forward passes)."""

    def __init__(self, classifier: Classifier, layer_name: str, spec: ModelSpec, function: str) -> None:  # noqa: D107
        layers = layer_name.split(",")
        self.classifier, self.method, self.layer_name = classifier, spec.method, layer_name
        self.input_size = tuple(classifier.input_size)
        self._spec, self._full = spec, None
        method_cls = get_method(spec.method)
        self._methods = [method_cls() for _ in layers]
        self._method = self._methods[0]
        self._step = _LoadedStep(function, len(layers))
        self._forward = lambda x: self.full_engine()._forward(x)
        self._predict = lambda x: self.full_engine()._predict(x)

    def _layer_forward(self, index: int):
        return lambda maps, image: self.full_engine()._layer_forward(index)(maps, image)

    def full_engine(self) -> CamEngine:
        """The engine built from the Keras model (once, on first need)."""
        if self._full is None:
            self._full = CamEngine(self._spec.classifier(), layer=self._spec.layer, method=self._spec.method)
            self.classifier = self._full.classifier
        return self._full


# -- entries on disk -------------------------------------------------------------------------------------------
# An entry is a folder: step.pb (the step's FunctionDefs) and vidcam-step.json (their names, the step's last; the
# classifier's description; the sha256 of step.pb), written last: an entry without it is incomplete.

_RECORD, _LIBRARY = "vidcam-step.json", "step.pb"


def _classifier_record(clf: Classifier) -> dict[str, Any]:
    rec = {f.name: getattr(clf, f.name) for f in fields(clf) if f.name not in ("model", "groups")}
    rec["groups"] = None if clf.groups is None else {f.name: getattr(clf.groups, f.name) for f in fields(clf.groups)}
    return rec


def _classifier_from(rec: dict[str, Any]) -> Classifier:
    rec = dict(rec)
    groups = rec.pop("groups")
    if groups is not None:
        groups = ClassGroups(labels=tuple(groups["labels"]), members=tuple(tuple(m) for m in groups["members"]),
                             specs=tuple(groups["specs"]), num_classes=int(groups["num_classes"]))
    rec["input_size"] = tuple(rec["input_size"])
    return Classifier(model=None, groups=groups, **rec)


_registered: set[str] = set()
_registering = threading.Lock()


def _functions(blob: bytes) -> list[bytes]:
    """The serialised FunctionDefs of a step file (each as an 8-byte little-endian length, then its bytes)."""
    out, i = [], 0
    while i < len(blob):
        n = int.from_bytes(blob[i : i + 8], "little")
        if n <= 0 or i + 8 + n > len(blob):
            raise ValueError("truncated")
        out.append(blob[i + 8 : i + 8 + n])
        i += 8 + n
    return out


def _register(blob: bytes, names: list[str]) -> None:
    """Add the step's functions to this process's TensorFlow runtime, from their bytes as stored (parsing them
    into Python protos only to serialise them again costs a third of the load)."""
    from tensorflow.python import pywrap_tfe
    from tensorflow.python.eager import context

    ctx = context.context()
    ctx.ensure_initialized()
    with _registering:  # a step warmed in a thread (warm) and the job's own load may meet here
        for name, fdef in zip(names, _functions(blob), strict=True):
            if name not in _registered:
                pywrap_tfe.TFE_ContextAddFunctionDef(ctx._handle, fdef, len(fdef))
                _registered.add(name)


def _load(entry: Path, spec: ModelSpec, *, keep_damaged: bool = False) -> CachedEngine | None:
    """The cached engine, or None when there is no entry; a damaged entry is removed with a warning (or, with
    ``keep_damaged``, left as it is for the job's own load to report)."""
    record = entry / _RECORD
    if not record.is_file():
        return None
    try:
        meta = json.loads(record.read_text(encoding="utf-8"))
        library = (entry / _LIBRARY).read_bytes()
        if hashlib.sha256(library).hexdigest() != meta["sha256"]:
            raise ValueError("its checksum does not match")
        clf = _classifier_from(meta["classifier"])
        _register(library, meta["functions"])
        os.utime(record)  # most recently used
        return CachedEngine(clf, meta["layer_name"], spec, meta["function"])
    except Exception as e:  # noqa: BLE001 - a damaged entry is rebuilt, never trusted
        if keep_damaged:
            return None
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
    warnings.warn(f"the compiled-engine cache {entry} is damaged ({problem[:200]}): building the engine again",
                  VidcamWarning, stacklevel=3)
    shutil.rmtree(entry, ignore_errors=True)
    return None


def _renamed(lib, suffix: str):
    """The library with every function renamed ``<name>_<suffix>`` (and every call to it): names must be unique in
    a process that registers several entries."""
    names = {f.signature.name: f"{f.signature.name}_{suffix}" for f in lib.function}

    def fix(attr) -> None:
        if attr.HasField("func") and attr.func.name in names:
            attr.func.name = names[attr.func.name]
        for func in attr.list.func:
            if func.name in names:
                func.name = names[func.name]

    for fdef in lib.function:
        fdef.signature.name = names[fdef.signature.name]
        for node in fdef.node_def:
            if node.op in names:
                node.op = names[node.op]
            for value in node.attr.values():
                fix(value)
    return lib


def _library(engine: CamEngine, suffix: str) -> tuple[bytes, list[str]]:
    """The engine's step, its weights frozen in: its FunctionDefs serialised (see :func:`_functions`), the step's
    last, and their names."""
    import tensorflow as tf
    from tensorflow.core.framework.function_pb2 import FunctionDefLibrary
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    inner = engine._step

    @tf.function(input_signature=inner.input_signature)
    def step(frames, targets):
        cls, probs, cams, _, _ = inner(frames, targets)
        return [cls, probs, *cams]

    frozen = convert_variables_to_constants_v2(step.get_concrete_function())
    lib = FunctionDefLibrary()
    lib.function.extend(frozen.graph.as_graph_def().library.function)
    lib.function.append(frozen.function_def)
    top = frozen.function_def.signature.name
    lib = _renamed(lib, suffix)
    assert lib.function[-1].signature.name == f"{top}_{suffix}"
    blobs = [f.SerializeToString() for f in lib.function]
    return b"".join(len(b).to_bytes(8, "little") + b for b in blobs), [f.signature.name for f in lib.function]


def _save(engine: CamEngine, entry: Path) -> None:
    """Save the engine's step under ``entry``; any failure (a full disk, a read-only cache) only costs the
    tracing next run: nothing is left under the entry's name unless it is complete."""
    tmp = entry.with_name(f".{entry.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        library, functions = _library(engine, entry.name)
        tmp.mkdir(parents=True)
        (tmp / _LIBRARY).write_bytes(library)
        meta = {"function": functions[-1], "functions": functions, "sha256": hashlib.sha256(library).hexdigest(),
                "layer_name": engine.layer_name, "classifier": _classifier_record(engine.classifier)}
        (tmp / _RECORD).write_text(json.dumps(meta, default=list) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, entry)  # an entry another run completed meanwhile stays (it is the same step)
        except OSError:
            pass
        _prune(entry.parent)
    except Exception:  # noqa: BLE001 - OSError for a full or read-only disk, TensorFlow's own errors
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _prune(folder: Path, keep: int = KEEP) -> None:
    entries = []
    for p in folder.iterdir():
        record = p / _RECORD
        if p.is_dir() and not p.name.startswith(".") and record.is_file():
            entries.append((record.stat().st_mtime, p))
    for _, p in sorted(entries, reverse=True)[keep:]:
        shutil.rmtree(p, ignore_errors=True)


def build_cached(spec: ModelSpec) -> CamEngine:
    """``spec``'s engine: loaded from the cache when its step is there, else built (and its step saved)."""
    key = cache_key(spec)
    if key is None:
        return CamEngine(spec.classifier(), layer=spec.layer, method=spec.method)
    entry = step_cache_dir() / key
    engine = _load(entry, spec)
    if engine is not None:
        return engine
    engine = CamEngine(spec.classifier(), layer=spec.layer, method=spec.method)
    _save(engine, entry)
    return engine


def warm(spec: ModelSpec, batch: int, class_index: int | None = None) -> CachedEngine | None:
    """Load ``spec``'s step from the cache and run it once on a blank batch of ``batch`` frames, so that a job's
    first call with that shape finds the step instantiated and its kernels made (0.4-0.7 s on 2 cores); returns
    that engine, for the job to run. Only from the cache (building a step needs all of TensorFlow and Keras):
    None, having done nothing, when the step is not cached or its entry is damaged (the job's own load reports
    and rebuilds it).

    Uses TensorFlow's runtime modules only, so it may run while ``import tensorflow`` loads the rest
    (:func:`vidcam.tfimport.after_runtime`), once :func:`keras_version` has been read; the thread count the job
    sets (:func:`~vidcam.cam.engine.leave_cores`) must be set before, as the runtime starts here."""
    key = cache_key(spec)
    engine = _load(step_cache_dir() / key, spec, keep_damaged=True) if key is not None else None
    if engine is not None:
        engine.run(np.zeros((batch, *engine.input_size, 3), np.uint8), class_index)
    return engine
