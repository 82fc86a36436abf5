"""Importing TensorFlow without the Keras it loads for nobody.

``import tensorflow`` ends by importing all of Keras (``keras.src.optimizers``, so that Keras' optimizers are in
TensorFlow's SavedModel registry): 1.6 of the 6.2 s the import takes on 2 cores. A run whose engine comes from
the compiled-step cache (:mod:`vidcam.cam.stepcache`) never touches Keras, so the CLI imports TensorFlow inside
:func:`keras_deferred`: Keras is then imported the first time vidcam needs it (building a model, training), which
registers those optimizers just the same. TensorFlow's own ``tf.keras`` stays a lazy loader that still works.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Iterator

__all__ = ["keras_deferred"]

_KERAS = ("keras", "tf_keras")  # TF_USE_LEGACY_KERAS=1 makes TensorFlow load tf_keras instead


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
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
