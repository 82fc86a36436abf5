"""The Grad-CAM engine: per-image maps in a batch, nested models, zero maps, layers, classes, real photos."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import CHELSEA, DOG, ROOT, classifier_for, mass_density

from vidcam.cam.engine import METHODS, CamEngine, feature_layers
from vidcam.errors import LayerError, UsageError
from vidcam.media.images import fit_to_model, read_image


@pytest.fixture(scope="module")
def flat_engine(tiny_flat):
    return CamEngine(classifier_for(tiny_flat))


@pytest.fixture(scope="module")
def nested_engine(tiny_nested):
    return CamEngine(classifier_for(tiny_nested, ["cat", "dog"]))


def test_batch_gives_same_maps_as_singles(flat_engine, random_frames):
    frames = random_frames(2)
    both = flat_engine.run(frames)
    a = flat_engine.run(frames[:1])
    b = flat_engine.run(frames[1:])
    np.testing.assert_allclose(both.cams[0], a.cams[0], atol=1e-5)
    np.testing.assert_allclose(both.cams[1], b.cams[0], atol=1e-5)
    np.testing.assert_array_equal(both.class_ids, [a.class_ids[0], b.class_ids[0]])
    # Per-image weights: two different images give two different maps (the batch-averaging bug would not).
    assert not np.allclose(both.cams[0], both.cams[1], atol=1e-3)


def test_outputs_are_probabilities_and_maps(flat_engine, random_frames):
    r = flat_engine.run(random_frames(5))
    assert r.probabilities.shape == (5, 3) and r.cams.shape == (5, 16, 16)
    np.testing.assert_allclose(r.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert r.cams.min() >= 0 and r.cams.max() <= 1
    assert np.allclose(r.cams.reshape(5, -1).max(axis=1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(r.class_ids, r.probabilities.argmax(axis=1))


def test_probabilities_match_the_model(tiny_flat, flat_engine, random_frames):
    frames = random_frames(3)
    want = tiny_flat.predict(frames.astype("float32") / 255.0, verbose=0)
    np.testing.assert_allclose(flat_engine.run(frames).probabilities, want, atol=1e-5)


def test_default_layer_is_last_feature_map(flat_engine, nested_engine):
    assert flat_engine.layer_name == "conv2"
    assert nested_engine.layer_name == "base/conv2"


def test_nested_model_gives_maps(nested_engine, tiny_nested, random_frames):
    frames = random_frames(3)
    r = nested_engine.run(frames)
    assert r.cams.shape == (3, 16, 16)
    assert np.isfinite(r.cams).all() and (r.cams.reshape(3, -1).max(axis=1) > 0.99).all()
    np.testing.assert_allclose(r.probabilities, tiny_nested.predict(frames / 255.0, verbose=0), atol=1e-5)


def test_nested_model_matches_flat_equivalent(tiny_nested, random_frames):
    """The nested model's CAM equals a hand-computed Grad-CAM on the same layers."""
    import tensorflow as tf

    frames = random_frames(2)
    engine = CamEngine(classifier_for(tiny_nested), layer="conv2")
    r = engine.run(frames)
    base = tiny_nested.layers[1]
    head = tiny_nested.layers[2:]
    x = tf.constant(frames / 255.0, tf.float32)
    with tf.GradientTape() as tape:
        a = base(x)
        tape.watch(a)
        h = a
        for layer in head[:-1]:
            h = layer(h, training=False)
        dense = head[-1]
        logits = tf.matmul(h, dense.kernel) + dense.bias
        score = tf.reduce_sum(tf.gather(logits, r.class_ids, batch_dims=1))
    g = tape.gradient(score, a).numpy()
    cam = np.maximum((a.numpy() * g.mean(axis=(1, 2))[:, None, None, :]).sum(-1), 0)
    cam /= cam.reshape(2, -1).max(axis=1)[:, None, None] + 1e-7
    np.testing.assert_allclose(r.cams, cam, atol=1e-4)


def test_all_zero_map_stays_zero():
    import keras

    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer="zeros", name="dead")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    engine = CamEngine(classifier_for(keras.Model(inp, out)))
    r = engine.run(np.full((2, 16, 16, 3), 200, np.uint8))
    assert np.isfinite(r.cams).all()
    assert (r.cams == 0).all()


def test_fixed_class_changes_the_map(flat_engine, random_frames):
    frames = random_frames(2)
    r0 = flat_engine.run(frames, class_index=0)
    r2 = flat_engine.run(frames, class_index=2)
    np.testing.assert_array_equal(r0.class_ids, [0, 0])
    np.testing.assert_array_equal(r2.class_ids, [2, 2])
    assert not np.allclose(r0.cams, r2.cams, atol=1e-3)
    with pytest.raises(UsageError, match="out of range"):
        flat_engine.run(frames, class_index=3)


def test_wrong_layer_lists_valid_names(tiny_nested):
    with pytest.raises(LayerError) as e:
        CamEngine(classifier_for(tiny_nested), layer="nope")
    assert "base/conv1" in str(e.value) and "base/conv2" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(LayerError, match="4-D feature map"):
        CamEngine(classifier_for(tiny_nested), layer="predictions")


def test_layer_by_plain_or_qualified_name(tiny_nested):
    assert CamEngine(classifier_for(tiny_nested), layer="conv1").layer_name == "base/conv1"
    assert CamEngine(classifier_for(tiny_nested), layer="base/conv1").layer_name == "base/conv1"


def test_feature_layers_excludes_inputs_and_vectors(tiny_flat):
    names = [n for n, _ in feature_layers(tiny_flat)]
    assert names == ["conv1", "pool1", "conv2"]


def test_bad_frames_rejected(flat_engine):
    with pytest.raises(UsageError, match="shape"):
        flat_engine.run(np.zeros((1, 31, 32, 3), np.uint8))
    with pytest.raises(UsageError, match="uint8"):
        flat_engine.run(np.zeros((1, 32, 32, 3), np.float32))


def test_input_frames_are_not_modified(flat_engine, random_frames):
    frames = random_frames(2)
    before = frames.copy()
    flat_engine.run(frames)
    np.testing.assert_array_equal(frames, before)


# cam refuses tiny_nested's head (a hidden Dense layer): tests/test_methods.py checks the message.
@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("gradcam", "cam")])
def test_other_methods_give_valid_maps(tiny_nested, method, random_frames):
    engine = CamEngine(classifier_for(tiny_nested), method=method)
    assert engine.method == method and engine.layer_name == "base/conv2" and engine.input_size == (32, 32)
    r = engine.run(random_frames(2))
    assert r.cams.shape == (2, 16, 16) and np.isfinite(r.cams).all()
    assert r.cams.min() >= 0 and r.cams.max() <= 1 + 1e-6
    np.testing.assert_array_equal(r.class_ids, r.probabilities.argmax(axis=1))


def test_unknown_method(tiny_flat):
    with pytest.raises(UsageError, match="unknown method 'lime'") as e:
        CamEngine(classifier_for(tiny_flat), method="lime")
    assert str(e.value).endswith(", ".join(METHODS))


def test_sigmoid_binary_model_gives_two_class_probabilities(random_frames):
    import keras

    keras.utils.set_random_seed(5)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inp, out)
    clf = classifier_for(model, ["cat", "dog"])
    frames = random_frames(3)
    r = CamEngine(clf).run(frames)
    p = model.predict(frames / 255.0, verbose=0)[:, 0]
    np.testing.assert_allclose(r.probabilities[:, 1], p, atol=1e-5)
    np.testing.assert_allclose(r.probabilities[:, 0], 1 - p, atol=1e-5)


def test_heatmap_sits_on_the_dog(lite0, lite0_engine):
    img = read_image(DOG)  # 768x576: the dog sits low left, a bicycle centre, a truck top right
    x, _ = fit_to_model(img, lite0.input_size, "squash")
    r = lite0_engine.run(x[None])
    assert lite0.class_names[r.class_ids[0]] in {"malamute", "German shepherd", "Eskimo dog", "Siberian husky"}
    inside, outside = mass_density(r.cams[0], (120, 200, 320, 550), (768, 576))
    assert inside > 1.5 * outside


def test_heatmap_sits_on_the_cat(lite0, lite0_engine):
    img = read_image(CHELSEA)  # 451x300: the cat's head fills the left two thirds
    x, _ = fit_to_model(img, lite0.input_size, "squash")
    r = lite0_engine.run(x[None])
    assert lite0.class_names[r.class_ids[0]] in {"tiger cat", "Egyptian cat", "tabby"}
    inside, outside = mass_density(r.cams[0], (40, 30, 330, 300), (451, 300))
    assert inside > outside


_LEAVE_CORES = """
import os
from vidcam.cam.engine import leave_cores
import tensorflow as tf

cores = len(os.sched_getaffinity(0))
first = leave_cores(1)
print(first, cores, tf.config.threading.get_intra_op_parallelism_threads(), leave_cores(1))
"""


def test_leave_cores_sets_tensorflow_once_before_its_runtime_starts():
    r = subprocess.run([sys.executable, "-c", _LEAVE_CORES], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    first, cores, intra, second = r.stdout.split()
    if int(cores) > 1:
        assert (first, intra) == (str(int(cores) - 1), str(int(cores) - 1))
    else:
        assert (first, intra) == ("None", "0")  # one core: nothing to leave
    assert second == "None"  # a count chosen already (by it or anyone) is kept
