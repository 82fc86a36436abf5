"""The compiled-step cache: a cached engine gives the built engine's results, is keyed by the model's content, and
a damaged entry is rebuilt, never trusted. Real TensorFlow, tiny real Keras models saved as .keras files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import CHELSEA, ROOT


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("VIDCAM_CACHE", str(folder))
    monkeypatch.delenv("VIDCAM_STEP_CACHE", raising=False)
    return folder / "steps"


def _save(model, path: Path) -> str:
    from vidcam.models.zoo import save_classifier_metadata

    model.save(path)
    save_classifier_metadata(path, {"class_names": [f"c{i}" for i in range(model.outputs[0].shape[-1])],
                                    "preprocess": "unit", "fit": "squash"})
    return str(path)


def _same(a, b, frames, class_index=None) -> None:
    ra, rb = a.run(frames, class_index), b.run(frames, class_index)
    np.testing.assert_array_equal(ra.class_ids, rb.class_ids)
    np.testing.assert_allclose(ra.probabilities, rb.probabilities, atol=1e-5)
    np.testing.assert_allclose(ra.cams, rb.cams, atol=1e-4)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
def test_a_cached_step_gives_the_built_engines_results(cache, tmp_path, tiny_nested, random_frames, method):
    from vidcam.cam.engine import CamEngine
    from vidcam.cam.spec import ModelSpec
    from vidcam.cam.stepcache import CachedEngine

    spec = ModelSpec(_save(tiny_nested, tmp_path / "m.keras"), method=method)
    built = spec.build()
    assert type(built) is CamEngine and len(list(cache.iterdir())) == 1
    cached = spec.build()
    assert isinstance(cached, CachedEngine)
    assert cached.classifier.model is None  # no Keras model built for the step
    assert (cached.layer_name, cached.classifier.class_names, cached.input_size) == (
        built.layer_name, built.classifier.class_names, built.input_size)
    frames = random_frames(5)
    _same(built, cached, frames)
    _same(built, cached, frames, class_index=1)
    # what only the Keras model can do is built on first need, with the same answers
    np.testing.assert_allclose(cached.predict(frames), built.predict(frames), atol=1e-5)
    assert cached.classifier.model is not None


def test_the_default_model_grouped_is_cached_with_its_groups(cache, lite0_engine):
    import cv2

    from vidcam.cam.spec import ModelSpec
    from vidcam.cam.stepcache import CachedEngine

    spec = ModelSpec(groups=("cat=domestic_cat", "dog"))
    built = spec.build()
    cached = spec.build()
    assert isinstance(cached, CachedEngine)
    assert cached.classifier.class_names == ["cat", "dog", "other"]
    assert cached.classifier.groups == built.classifier.groups
    cat = cv2.resize(cv2.imread(str(CHELSEA))[..., ::-1], (224, 224), interpolation=cv2.INTER_AREA)[None]
    _same(built, cached, cat)
    assert cached.run(cat).class_ids[0] == 0  # cat
    ready = ModelSpec("cats_dogs")  # the zoo's grouped model is cached too, under its own name
    ready.build()
    from_cache = ready.build()
    assert isinstance(from_cache, CachedEngine) and from_cache.classifier.class_names == ["cat", "dog", "other"]
    _same(built, from_cache, cat)


def test_a_retrained_model_at_the_same_path_is_not_served_from_the_cache(cache, tmp_path, tiny_nested, tiny_flat,
                                                                        random_frames):
    import keras

    from vidcam.cam.spec import ModelSpec
    from vidcam.cam.stepcache import CachedEngine

    path = tmp_path / "m.keras"
    spec = ModelSpec(_save(tiny_nested, path))
    spec.build()
    first = spec.build()
    assert isinstance(first, CachedEngine)
    retrained = keras.models.clone_model(tiny_nested)  # same architecture, new random weights
    retrained.set_weights([w * 0 + np.random.default_rng(5).normal(size=w.shape) * 0.3
                           for w in tiny_nested.get_weights()])
    _save(retrained, path)
    again = spec.build()
    assert not isinstance(again, CachedEngine)  # a new entry is built, the old one not reused
    frames = random_frames(4)
    assert not np.allclose(first.run(frames).probabilities, again.run(frames).probabilities, atol=1e-3)
    _same(again, spec.build(), frames)
    assert len(list(cache.iterdir())) == 2


def test_a_damaged_entry_is_rebuilt_with_one_warning(cache, tmp_path, tiny_nested, random_frames):
    from vidcam.cam.spec import ModelSpec
    from vidcam.cam.stepcache import CachedEngine
    from vidcam.errors import VidcamWarning

    spec = ModelSpec(_save(tiny_nested, tmp_path / "m.keras"))
    built = spec.build()
    (entry,) = cache.iterdir()
    blob = bytearray((entry / "step.pb").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (entry / "step.pb").write_bytes(bytes(blob))
    with pytest.warns(VidcamWarning, match="damaged"):
        rebuilt = spec.build()
    assert not isinstance(rebuilt, CachedEngine)
    _same(built, rebuilt, random_frames(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(spec.build(), CachedEngine)  # rewritten, intact


def test_post_step_methods_and_a_disabled_cache_write_nothing(cache, tmp_path, tiny_nested, monkeypatch):
    from vidcam.cam.spec import ModelSpec
    from vidcam.cam.stepcache import cache_key

    path = _save(tiny_nested, tmp_path / "m.keras")
    assert cache_key(ModelSpec(path, method="scorecam")) is None  # its map needs forward passes after the step
    ModelSpec(path, method="scorecam").build()
    assert cache_key(ModelSpec(path, unsafe=True)) is None  # safe mode must refuse a Lambda file every time
    monkeypatch.setenv("VIDCAM_STEP_CACHE", "0")
    assert cache_key(ModelSpec(path)) is None
    ModelSpec(path).build()
    assert not cache.exists()


def test_an_unwritable_cache_only_costs_the_tracing(tmp_path, monkeypatch, tiny_nested, random_frames):
    from vidcam.cam.spec import ModelSpec

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("VIDCAM_CACHE", str(blocker))
    spec = ModelSpec(_save(tiny_nested, tmp_path / "m.keras"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = spec.build()
    assert engine.run(random_frames(2)).cams.shape[0] == 2
    assert blocker.read_text() == "x"


def test_old_entries_are_pruned(cache, tmp_path, tiny_nested):
    from vidcam.cam import stepcache
    from vidcam.cam.spec import ModelSpec

    path = _save(tiny_nested, tmp_path / "m.keras")
    entries = []
    for i, method in enumerate(["gradcam", "gradcam++", "xgradcam"]):
        ModelSpec(path, method=method).build()
        (new,) = set(cache.iterdir()) - set(entries)
        os.utime(new / "vidcam-step.json", (1000 + i, 1000 + i))
        entries.append(new)
    stepcache._prune(cache, keep=2)
    assert set(cache.iterdir()) == set(entries[1:])  # the least recently used went


# `python -m vidcam ARGS...`, then whether Keras was imported, on stderr (the run's own output unchanged).
_RUN_AND_TELL_KERAS = """
import runpy, sys
sys.argv = ["vidcam", *sys.argv[1:]]
try:
    runpy.run_module("vidcam", run_name="__main__")
finally:
    print("keras imported:", "keras" in sys.modules, file=sys.stderr)
"""


def test_a_second_command_uses_the_cache_and_answers_the_same(tmp_path):
    env = {**os.environ, "VIDCAM_CACHE": str(tmp_path / "cache")}
    env.pop("VIDCAM_STEP_CACHE", None)
    answers, keras = [], []
    for i in range(2):
        r = subprocess.run([sys.executable, "-c", _RUN_AND_TELL_KERAS, "image", str(CHELSEA),
                            "-o", str(tmp_path / f"o{i}"), "--json"],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        assert r.returncode == 0, r.stderr
        answers.append(json.loads(r.stdout.strip().splitlines()[-1])["predictions"])
        keras.append(r.stderr.strip().splitlines()[-1])
        if i == 0:
            (entry,) = (tmp_path / "cache" / "steps").iterdir()
            record = entry / "vidcam-step.json"
            os.utime(record, (1000, 1000))
    assert record.stat().st_mtime > 1000  # the second run loaded it
    assert answers[0] == answers[1]
    # The first run built the Keras model; the second needed neither it nor Keras (vidcam.tfimport).
    assert keras == ["keras imported: True", "keras imported: False"]
    assert answers[0][0]["label"] in ("tiger cat", "Egyptian cat", "tabby")
