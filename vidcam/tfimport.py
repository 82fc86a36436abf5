"""Importing TensorFlow without the Keras it loads for nobody, and with work started before the import ends.

``import tensorflow`` ends by importing all of Keras (``keras.src.optimizers``, so that Keras' optimizers are in
TensorFlow's SavedModel registry): 1.6 of the 6.2 s the import takes on 2 cores. A run whose engine comes from
the compiled-step cache (:mod:`vidcam.cam.stepcache`) never touches Keras, so the CLI imports TensorFlow inside
:func:`keras_deferred`: Keras is then imported the first time vidcam needs it (building a model, training), which
registers those optimizers just the same. TensorFlow's own ``tf.keras`` stays a lazy loader that still works.

:func:`after_runtime` runs work as soon as TensorFlow's eager runtime is loaded, which ``import tensorflow`` has
done a third of the way through (about 1.3 of its 3-4 s here): the rest of the import is Python API (``tf.*``)
that a step from the compiled-step cache never calls, so a thread can load and run that step on the core the
import leaves idle. Such work must not import anything itself while the import runs (a thread that imports a
module the import has not finished waits for all of it): it uses the modules of :data:`RUNTIME` only.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["keras_deferred", "after_runtime", "wait_runtime_work", "RUNTIME"]

_KERAS = ("keras", "tf_keras")  # TF_USE_LEGACY_KERAS=1 makes TensorFlow load tf_keras instead


_meta_lock = threading.Lock()  # vidcam's own hooks and unhooks, one at a time (no insert lost to a new list)


def _hook(finder: importlib.abc.MetaPathFinder) -> None:
    with _meta_lock:
        sys.meta_path.insert(0, finder)


def _unhook(finder: importlib.abc.MetaPathFinder) -> None:
    """Take ``finder`` off ``sys.meta_path`` by putting a new list there, not by removing it from the list.

    An import in another thread is looping over the list it read from ``sys.meta_path`` (importlib's
    ``_find_spec``); removing an item ahead of its position from that very list would shift the rest, so that
    loop skips the next finder (the path finder, say) and the import fails with ModuleNotFoundError. A loop over
    the old list goes on over all of it; imports that start later read the new one."""
    with _meta_lock:
        sys.meta_path = [f for f in sys.meta_path if f is not finder]


class _NotNow(importlib.abc.Loader):
    """A loader that declines: the import raises ImportError, which TensorFlow's eager load ignores."""

    def create_module(self, spec):
        raise ImportError(f"{spec.name} is imported later, when vidcam needs it")

    def exec_module(self, module) -> None:  # never reached: create_module raises
        raise ImportError(module.__name__)


class _DeferKeras(importlib.abc.MetaPathFinder):
    """Finds Keras where it is installed (TensorFlow reads the path from the spec) but will not load it."""

    def find_spec(self, name, path=None, target=None):
        if name not in _KERAS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = _NotNow()
        return spec


@contextlib.contextmanager
def keras_deferred() -> Iterator[None]:
    """Inside the block Keras cannot be imported (ImportError); after it, it imports as usual. Does nothing when
    Keras is already imported."""
    if any(name in sys.modules for name in _KERAS):
        yield
        return
    finder = _DeferKeras()
    _hook(finder)
    try:
        yield
    finally:
        _unhook(finder)


# What running a FunctionDef eagerly needs: the runtime's bindings, tensors, the context, execute (and the version,
# for the compiled-step cache's key).
RUNTIME = ("tensorflow.python.pywrap_tfe", "tensorflow.python.framework.dtypes", "tensorflow.python.framework.versions",
           "tensorflow.python.framework.ops", "tensorflow.python.framework.constant_op",
           "tensorflow.python.eager.context", "tensorflow.python.eager.execute")

_lock = threading.Lock()
_waiting: list[Callable[[], None]] = []
_running: list[threading.Thread] = []
_watch: _RuntimeWatch | None = None


def _runtime_loaded(finishing: str | None = None) -> bool:
    """Every module of RUNTIME is imported (``finishing`` has just run its code: its import is ending)."""
    for name in RUNTIME:
        module = sys.modules.get(name)
        if module is None:
            return False
        if name != finishing and getattr(getattr(module, "__spec__", None), "_initializing", False):
            return False
    return True


def _start(fn: Callable[[], None]) -> None:
    thread = threading.Thread(target=fn, name="vidcam-after-runtime", daemon=True)
    thread.start()
    _running[:] = [t for t in _running if t.is_alive()]
    _running.append(thread)


def _fire(finishing: str | None = None) -> None:
    global _watch
    with _lock:
        if not _waiting or not _runtime_loaded(finishing):
            return
        if _watch is not None:
            _unhook(_watch)
            _watch = None
        for fn in _waiting:
            _start(fn)
        _waiting.clear()


class _RuntimeWatch(importlib.abc.MetaPathFinder):
    """Finds the modules of RUNTIME as usual, and calls :func:`_fire` when each has run its code."""

    def find_spec(self, name, path=None, target=None):
        if name not in RUNTIME:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module  # each spec has a loader of its own: wrapping it touches no other module

        def exec_module(module, _run=run, _name=name):
            _run(module)
            _fire(_name)

        loader.exec_module = exec_module
        return spec


def after_runtime(fn: Callable[[], None]) -> Callable[[], bool]:
    """Run ``fn`` in a thread of its own as soon as TensorFlow's eager runtime (:data:`RUNTIME`) is imported: during
    a later ``import tensorflow`` (in any thread), or at once if it is imported already. ``fn`` handles its own
    errors and, while the import may still run, imports nothing outside RUNTIME.

    Returns ``cancel``: it keeps ``fn`` from starting if it has not (True if it had not)."""
    global _watch
    with _lock:
        if _runtime_loaded():
            _start(fn)
            return lambda: False
        _waiting.append(fn)
        if _watch is None:
            _watch = _RuntimeWatch()
            _hook(_watch)

    def cancel() -> bool:
        global _watch
        with _lock:
            if fn not in _waiting:
                return False
            _waiting.remove(fn)
            if not _waiting and _watch is not None:
                _unhook(_watch)
                _watch = None
            return True

    return cancel


def wait_runtime_work(timeout: float = 60.0) -> None:
    """Wait (``timeout`` seconds at most, in all) for the work :func:`after_runtime` started."""
    deadline = time.monotonic() + timeout
    with _lock:
        threads = list(_running)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with _lock:
        _running[:] = [t for t in _running if t.is_alive()]
