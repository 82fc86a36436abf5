"""Importing TensorFlow with Keras deferred (vidcam.tfimport): TensorFlow works, Keras is not loaded by it, and
imports afterwards as usual, optimizers and `tf.keras` included. Fresh processes: the import is what is tested."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

_CHECK = """
import sys
from vidcam.tfimport import keras_deferred

with keras_deferred():
    import tensorflow as tf
assert not [f for f in sys.meta_path if type(f).__module__ == "vidcam.tfimport"], "a finder was left behind"
assert not [m for m in sys.modules if m == "keras" or m.startswith("keras.")], "Keras was imported"
assert float(tf.reduce_sum(tf.ones((2, 3)))) == 6.0
import keras

assert keras.optimizers.get("adam").__class__.__name__ == "Adam"
assert tf.keras.layers.Dense is keras.layers.Dense
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
model.compile("adam", "mse")
history = model.fit(tf.ones((4, 3)), tf.zeros((4, 1)), epochs=2, verbose=0)
assert len(history.history["loss"]) == 2
print("ok")
"""


def test_tensorflow_imports_without_keras_and_keras_after_it():
    r = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "ok"


def test_nothing_is_deferred_once_keras_is_imported():
    code = ("import keras, sys\nfrom vidcam.tfimport import keras_deferred\nwith keras_deferred():\n"
            "    import tensorflow\nprint(tensorflow.keras.layers.Dense is keras.layers.Dense)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "True"


def test_the_cli_imports_tensorflow_without_collections_then_collects_as_usual():
    code = """
import gc
seen = []
gc.callbacks.append(lambda phase, info: seen.append(phase) if phase == "start" else None)
from vidcam.cli import load_tensorflow
seen.clear()
load_tensorflow()
print(len(seen), gc.isenabled(), gc.get_freeze_count() > 100_000)
class Node:
    pass
a, b = Node(), Node()
a.other, b.other = b, a  # a cycle only a collection frees
del a, b
print(gc.collect() >= 2)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["0", "True", "True", "True"]


_AFTER = """
import sys, threading
from vidcam.tfimport import after_runtime, wait_runtime_work

seen = {}


def work():
    tf = sys.modules["tensorflow"]
    seen["during the import"] = tf.__spec__._initializing
    seen["in a thread"] = threading.current_thread() is not threading.main_thread()
    from tensorflow.python.framework import constant_op  # a runtime module: loaded, nothing to wait for

    seen["runs"] = int(constant_op.constant([1, 2, 3]).numpy().sum())


cancel = after_runtime(lambda: seen.setdefault("cancelled work ran", True))
assert cancel() is True and cancel() is False
after_runtime(work)
import tensorflow

wait_runtime_work()
assert not [f for f in sys.meta_path if type(f).__module__ == "vidcam.tfimport"], "a finder was left behind"
later = []
after_runtime(lambda: later.append(threading.current_thread() is not threading.main_thread()))
wait_runtime_work()
print(sorted(seen.items()), later)
"""


def test_work_after_the_runtime_runs_while_tensorflow_still_imports_and_at_once_after():
    r = subprocess.run([sys.executable, "-c", _AFTER], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == (
        "[('during the import', True), ('in a thread', True), ('runs', 6)] [True]")


def test_a_finder_taken_off_skips_no_other_finder_for_an_import_already_looping_over_them():
    # An import in another thread loops over the list it read from sys.meta_path (importlib's _find_spec). If a
    # finder ahead of it were removed from that list, the loop would skip the next one (the path finder, say)
    # and that import would fail.
    from vidcam.tfimport import _hook, _unhook

    class Finder:
        def find_spec(self, name, path=None, target=None):
            return None

    finders = list(sys.meta_path)
    ours = Finder()
    _hook(ours)
    try:
        looping = iter(sys.meta_path)
        assert next(looping) is ours  # that import is asking our finder now
    finally:
        _unhook(ours)
    assert list(looping) == finders
    assert sys.meta_path == finders
