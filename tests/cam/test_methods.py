"""The CAM methods behind the registry: each against an independent numpy formula, batches, nesting, zeros.

The oracles never use the engine: the feature map A and the gradients G of each image's pre-softmax logit come
from a two-output Keras model (flat models) or a layer-by-layer pass (the nested model) under a
``tf.GradientTape`` here, and the maps from pytorch-grad-cam's formulas written out in numpy (float64).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import classifier_for

from vidcam.cam import methods as cam_methods
from vidcam.cam.engine import CamEngine
from vidcam.cam.methods import METHODS, REGISTRY, CamMethod, register
from vidcam.errors import UsageError

NEW = ("xgradcam", "hirescam", "gradcam-elementwise", "layercam", "eigencam", "eigengradcam")
LATER = ("scorecam-fast", "ablationcam", "cam")
NOT_ON_TINY_NESTED = {"cam"}  # its head has a hidden Dense layer: CAM refuses it (tested below)


def _activations_and_grads(model, frames: np.ndarray, class_ids, nested: bool) -> tuple[np.ndarray, np.ndarray]:
    """(A, G) at conv2 for the given classes, float64, by a route independent of the engine's hooks."""
    import keras
    import tensorflow as tf

    x = tf.constant(frames / 255.0, tf.float32)
    dense = model.layers[-1]
    with tf.GradientTape() as tape:
        if nested:
            a = model.layers[1](x)
            tape.watch(a)
            h = a
            for layer in model.layers[2:-1]:
                h = layer(h, training=False)
        else:
            a, h = keras.Model(model.inputs, [model.get_layer("conv2").output, dense.input])(x, training=False)
        logits = tf.matmul(h, dense.kernel) + dense.bias  # pre-softmax, whatever the final activation
        score = tf.reduce_sum(tf.gather(logits, np.asarray(class_ids), batch_dims=1))
    g = tape.gradient(score, a)
    return a.numpy().astype(np.float64), g.numpy().astype(np.float64)


def get_2d_projection(activation_batch: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's ``utils/svd_on_activations.get_2d_projection``, channels last; (N, h, w) raw."""
    activation_batch = np.where(np.isnan(activation_batch), 0, activation_batch)
    projections = []
    for activations in activation_batch:
        reshaped = activations.reshape(-1, activations.shape[-1])  # (h*w, c)
        reshaped = reshaped - reshaped.mean(axis=0)
        _, _, vt = np.linalg.svd(reshaped, full_matrices=True)
        projections.append((reshaped @ vt[0, :]).reshape(activations.shape[:2]))
    return np.array(projections)


def _signed_projection(m: np.ndarray) -> np.ndarray:
    """The projection with the engine's sign convention: positively correlated with the channel sum."""
    p = get_2d_projection(m)
    total = m.sum(axis=-1)
    for i in range(len(p)):
        if (p[i] * (total[i] - total[i].mean())).sum() < 0:
            p[i] = -p[i]
    return p


def _reference(method: str, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The raw map (before ReLU and normalisation) from pytorch-grad-cam's formulas."""
    if method == "xgradcam":
        w = (g * a / (a.sum(axis=(1, 2), keepdims=True) + 1e-7)).sum(axis=(1, 2))
        return np.einsum("bhwc,bc->bhw", a, w)
    if method == "hirescam":
        return (g * a).sum(axis=-1)
    if method == "gradcam-elementwise":
        return np.maximum(g * a, 0).sum(axis=-1)
    if method == "layercam":
        return (np.maximum(g, 0) * a).sum(axis=-1)
    if method == "eigencam":
        return _signed_projection(a)
    if method == "eigengradcam":
        return _signed_projection(g * a)
    raise AssertionError(method)


def _normalise(cam: np.ndarray) -> np.ndarray:
    cam = np.maximum(cam, 0)
    return cam / (cam.reshape(len(cam), -1).max(axis=1)[:, None, None] + 1e-7)


@pytest.mark.parametrize("method", NEW)
@pytest.mark.parametrize("name", ["tiny_flat", "tiny_flatten", "tiny_nested"])
def test_method_matches_numpy_formula(request, name, method, random_frames):
    model = request.getfixturevalue(name)
    engine = CamEngine(classifier_for(model), layer="conv2", method=method)
    frames = random_frames(3)
    for class_index in (None, 1):
        r = engine.run(frames, class_index=class_index)
        if class_index is None:
            np.testing.assert_array_equal(r.class_ids, r.probabilities.argmax(axis=1))
        else:
            np.testing.assert_array_equal(r.class_ids, [1, 1, 1])
        a, g = _activations_and_grads(model, frames, r.class_ids, nested=name == "tiny_nested")
        want = _normalise(_reference(method, a, g))
        assert r.cams.shape == want.shape == (3, 16, 16)
        np.testing.assert_allclose(r.cams, want, atol=2e-4)
        assert (r.cams.reshape(3, -1).max(axis=1) > 0.99).all()  # the random models give non-trivial maps


def test_hirescam_differs_from_gradcam_when_gradients_vary(tiny_flatten, random_frames):
    """With a Flatten head the gradients vary over the map, so the element-wise methods are not Grad-CAM."""
    clf = classifier_for(tiny_flatten)
    frames = random_frames(2)
    grad = CamEngine(clf, method="gradcam").run(frames).cams
    for method in ("hirescam", "gradcam-elementwise", "layercam"):
        assert not np.allclose(CamEngine(clf, method=method).run(frames).cams, grad, atol=1e-2)


def test_eigencam_projection_is_pytorch_grad_cams_up_to_sign(tiny_flatten, random_frames):
    """The engine's map is get_2d_projection's, with its arbitrary SVD sign fixed (never the negated map)."""
    frames = random_frames(3)
    r = CamEngine(classifier_for(tiny_flatten), method="eigencam").run(frames)
    a, _ = _activations_and_grads(tiny_flatten, frames, r.class_ids, nested=False)
    raw = get_2d_projection(a)
    for ours, theirs in zip(r.cams, raw):
        assert any(np.allclose(ours, _normalise(s * theirs[None])[0], atol=2e-4) for s in (1, -1))
    # Class-agnostic: another class gives the same map.
    np.testing.assert_allclose(r.cams, CamEngine(classifier_for(tiny_flatten), method="eigencam").run(
        frames, class_index=2).cams, atol=1e-6)


@pytest.mark.parametrize("name", ["tiny_flat", "tiny_flatten"])
def test_layercam_agrees_with_tf_keras_vis(request, name, random_frames):
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    model = request.getfixturevalue(name)
    frames = random_frames(4)
    ours = CamEngine(classifier_for(model), layer="conv2", method="layercam").run(frames)
    oracle = Layercam(model, model_modifier=ReplaceToLinear(), clone=True)
    theirs = oracle(CategoricalScore(list(ours.class_ids)), frames.astype(np.float32) / 255.0,
                    penultimate_layer="conv2", seek_penultimate_conv_layer=False, expand_cam=False,
                    normalize_cam=False)
    np.testing.assert_allclose(ours.cams, _normalise(np.asarray(theirs, np.float64)), atol=1e-4)


@pytest.mark.parametrize("method", NEW + ("gradcam++",))
def test_batch_gives_same_maps_as_singles(tiny_flatten, method, random_frames):
    engine = CamEngine(classifier_for(tiny_flatten), method=method)
    frames = random_frames(3)
    both = engine.run(frames)
    for i in range(3):
        alone = engine.run(frames[i : i + 1])
        np.testing.assert_allclose(both.cams[i], alone.cams[0], atol=1e-5)
        assert both.class_ids[i] == alone.class_ids[0]
    assert not np.allclose(both.cams[0], both.cams[1], atol=1e-3)  # per-image maps, not a batch average


@pytest.mark.parametrize("method", [m for m in METHODS if m not in NOT_ON_TINY_NESTED])
def test_nested_model_gives_maps(tiny_nested, method, random_frames):
    engine = CamEngine(classifier_for(tiny_nested, ["cat", "dog"]), method=method)
    assert engine.layer_name == "base/conv2" and engine.method == method
    r = engine.run(random_frames(2), class_index=0)
    assert r.cams.shape == (2, 16, 16) and np.isfinite(r.cams).all()
    assert r.cams.min() >= 0 and r.cams.max() <= 1 + 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_all_zero_feature_maps_stay_zero(tiny_flat, method):
    """A dead layer, and a zero input through zero-bias convolutions: zero maps, no NaN."""
    import keras

    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer="zeros", name="dead")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    r = CamEngine(classifier_for(keras.Model(inp, out)), method=method).run(np.full((2, 16, 16, 3), 200, np.uint8))
    assert np.isfinite(r.cams).all() and (r.cams == 0).all()
    r = CamEngine(classifier_for(tiny_flat), method=method).run(np.zeros((2, 32, 32, 3), np.uint8))
    assert np.isfinite(r.cams).all() and (r.cams == 0).all()
    assert np.isfinite(r.probabilities).all()


@pytest.mark.parametrize("method", ["eigencam", "hirescam"])
def test_empty_batch(tiny_flat, method):
    r = CamEngine(classifier_for(tiny_flat), method=method).run(np.zeros((0, 32, 32, 3), np.uint8))
    assert r.cams.shape == (0, 16, 16) and r.probabilities.shape == (0, 3)


# -- the registry --------------------------------------------------------------------------------------------


def test_registry_names_and_order():
    assert METHODS[0] == "gradcam"
    assert set(METHODS) == {"gradcam", "gradcam++", "scorecam", *NEW, *LATER}
    assert len(METHODS) >= 11
    assert len(METHODS) == len(set(METHODS))
    from vidcam.cam import engine

    assert engine.METHODS is METHODS
    for name in METHODS:
        cls = REGISTRY[name]
        assert issubclass(cls, CamMethod) and cls.name == name
        assert cls.__doc__ and any(s in cls.__doc__ for s in ("arxiv", "ieee", "thecvf"))  # formula and paper


@pytest.fixture
def registered():
    """Register test-only methods, then remove them so no other test sees them."""
    before = dict(REGISTRY)
    yield
    REGISTRY.clear()
    REGISTRY.update(before)


def test_a_registered_method_is_usable_by_name(registered, tiny_flatten, random_frames):
    @register("test-absgrad")
    class AbsGradCAM(CamMethod):
        """Grad-CAM with |G| averaged: w_c = mean_ij |G_ijc| (test only)."""

        def weights(self, feature_map, grads):
            import tensorflow as tf

            return tf.reduce_mean(tf.abs(grads), axis=(1, 2))

    frames = random_frames(2)
    engine = CamEngine(classifier_for(tiny_flatten), method="test-absgrad")
    assert engine.method == "test-absgrad"
    r = engine.run(frames)
    a, g = _activations_and_grads(tiny_flatten, frames, r.class_ids, nested=False)
    np.testing.assert_allclose(r.cams, _normalise(np.einsum("bhwc,bc->bhw", a, np.abs(g).mean(axis=(1, 2)))),
                               atol=1e-4)
    with pytest.raises(UsageError, match="test-absgrad"):
        CamEngine(classifier_for(tiny_flatten), method="lime")


def test_a_registered_post_step_method_gets_the_forward_pass(registered, tiny_flatten, random_frames):
    seen = {}

    @register("test-post")
    class MeanChannel(CamMethod):
        """No gradients: the channel mean, rescaled after the step by the target score of the input (test only)."""

        uses_gradients = False

        def cam(self, feature_map, grads):
            import tensorflow as tf

            assert grads is None
            return tf.reduce_mean(feature_map, axis=-1)

        def post_step(self, cam, feature_map, inputs, class_ids, forward):
            scores = forward(inputs).numpy()
            seen["scores"] = scores[np.arange(len(class_ids)), class_ids]
            seen["options"] = self.options
            return cam - 1e9  # the engine's ReLU then zeroes everything

    frames = random_frames(2)
    r = CamEngine(classifier_for(tiny_flatten), method="test-post", method_options={"extra": 3}).run(frames)
    assert (r.cams == 0).all()
    logits = tiny_flatten.predict(frames / 255.0, verbose=0)
    np.testing.assert_allclose(seen["scores"], logits[np.arange(2), r.class_ids], atol=1e-4)
    assert seen["options"]["extra"] == 3 and "scorecam_channels" in seen["options"]


def test_duplicate_name_is_refused(registered):
    with pytest.raises(UsageError, match="already registered"):
        register("gradcam")(type("Other", (CamMethod,), {}))


def test_method_without_weights_or_cam_says_so(registered, tiny_flat):
    register("test-empty")(type("Empty", (CamMethod,), {}))
    with pytest.raises(NotImplementedError, match="weights"):
        CamEngine(classifier_for(tiny_flat), method="test-empty").run(np.zeros((1, 32, 32, 3), np.uint8))


def test_unknown_method_lists_the_registry(tiny_flat):
    with pytest.raises(UsageError) as e:
        CamEngine(classifier_for(tiny_flat), method="lime")
    assert all(name in str(e.value) for name in cam_methods.method_names())


# -- Ablation-CAM, CAM, Score-CAM (top 8) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_transfer():
    """The book's transfer model with a CAM-able head: a base model as one layer, GAP, Dropout, Dense(softmax)."""
    import keras
    from conftest import _tiny_base
    from keras import layers

    keras.utils.set_random_seed(5)
    inp = keras.Input((32, 32, 3))
    x = layers.GlobalAveragePooling2D()(_tiny_base()(inp))
    out = layers.Dense(3, activation="softmax", name="predictions")(layers.Dropout(0.5)(x))
    return keras.Model(inp, out, name="tiny_transfer")


@pytest.fixture(scope="module")
def tiny_skip():
    """A skip path around the target layer (``b``): the model cannot be cut there, so Ablation-CAM patches."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(9)
    inp = keras.Input((32, 32, 3))
    a = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="a")(inp)
    b = layers.Conv2D(6, 3, padding="same", activation="relu", name="b")(a)
    x = layers.GlobalAveragePooling2D()(layers.Add()([a, b]))
    return keras.Model(inp, layers.Dense(3, name="logits")(x), name="tiny_skip")


def _dense(x, layer):
    return x @ layer.kernel.numpy().astype(np.float64) + layer.bias.numpy().astype(np.float64)


def _head(name: str, model, frames: np.ndarray):
    """(A at the target layer, ``head(i, maps) -> logits`` of image i from maps put in A's place), in numpy
    (float64): what follows the layer, written out by hand."""
    import keras

    if name == "tiny_skip":
        two = keras.Model(model.inputs, [model.get_layer("a").output, model.get_layer("b").output])
        skip, a = (t.numpy().astype(np.float64) for t in two(frames / 255.0, training=False))
        return a, lambda i, m: _dense((skip[i][None] + m).mean(axis=(1, 2)), model.layers[-1])
    a, _ = _activations_and_grads(model, frames, np.zeros(len(frames), int), nested=name != "tiny_flatten")
    if name == "tiny_flatten":
        return a, lambda i, m: _dense(m.reshape(len(m), -1), model.layers[-1])
    if name == "tiny_nested":
        hidden, last = model.layers[-3], model.layers[-1]
        return a, lambda i, m: _dense(np.maximum(_dense(m.mean(axis=(1, 2)), hidden), 0), last)
    return a, lambda i, m: _dense(m.mean(axis=(1, 2)), model.layers[-1])  # tiny_transfer: GAP, Dropout, Dense


def _ablation_reference(a: np.ndarray, head, class_ids) -> np.ndarray:
    """pytorch-grad-cam's AblationCAM, one channel at a time in a plain loop, the drop divided by |y| (pytorch-grad-cam
    divides by y): w_k = (y - y_k) / |y|."""
    out = []
    for i, (ai, k) in enumerate(zip(a, class_ids)):
        y = head(i, ai[None])[0, k]
        w = np.empty(ai.shape[-1])
        for c in range(ai.shape[-1]):
            ablated = ai.copy()
            ablated[..., c] = 0
            w[c] = (y - head(i, ablated[None])[0, k]) / abs(y)
        out.append(np.einsum("hwc,c->hw", ai, w))
    return _normalise(np.array(out))


@pytest.mark.parametrize("name", ["tiny_flatten", "tiny_nested", "tiny_transfer", "tiny_skip"])
def test_ablationcam_matches_a_channel_by_channel_loop(request, name, random_frames):
    model = request.getfixturevalue(name)
    layer = "b" if name == "tiny_skip" else "conv2"
    engine = CamEngine(classifier_for(model), layer=layer, method="ablationcam",
                       method_options={"ablation_batch": 5})  # several chunks of channels
    frames = random_frames(3)
    a, head = _head(name, model, frames)
    for class_index in (None, 1):
        r = engine.run(frames, class_index=class_index)
        np.testing.assert_allclose(r.cams, _ablation_reference(a, head, r.class_ids), atol=2e-4)
        # Where the score is positive (the drop divided by y, as pytorch-grad-cam) every map has heat; a negative
        # score's map may have none on a random model (no channel's loss lowers the score there).
        positive = np.array([head(i, a[i][None])[0, k] > 0 for i, k in enumerate(r.class_ids)])
        assert (r.cams.reshape(3, -1).max(axis=1) > 0.99)[positive].all()
    # Only the head runs for the ablated copies where the model can be cut at the layer (nested too).
    cut = engine._tail(0).fn is not None
    assert cut == (name != "tiny_skip")


def test_cam_is_the_dense_column_closed_form(tiny_flat, tiny_transfer, random_frames):
    frames = random_frames(3)
    for model, nested in ((tiny_flat, False), (tiny_transfer, True)):
        engine = CamEngine(classifier_for(model), method="cam")
        kernel = model.layers[-1].kernel.numpy().astype(np.float64)
        for class_index in (None, 2):
            r = engine.run(frames, class_index=class_index)
            a, _ = _activations_and_grads(model, frames, r.class_ids, nested=nested)
            want = _normalise(np.einsum("bhwc,cb->bhw", a, kernel[:, r.class_ids]))
            np.testing.assert_allclose(r.cams, want, atol=2e-4)
        # On a GAP -> Dense head Grad-CAM's weights are the column over h*w: the same map.
        np.testing.assert_allclose(r.cams, CamEngine(classifier_for(model)).run(frames, 2).cams, atol=5e-4)


def test_cam_on_a_one_unit_sigmoid_head(random_frames):
    import keras

    keras.utils.set_random_seed(2)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(5, 3, activation="relu", name="conv")(inp)
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x)))
    frames = random_frames(2)
    a = keras.Model(model.inputs, model.get_layer("conv").output)(frames / 255.0).numpy()
    w = model.layers[-1].kernel.numpy()[:, 0]
    engine = CamEngine(classifier_for(model, ["cat", "dog"]), method="cam")
    np.testing.assert_allclose(engine.run(frames, 1).cams, _normalise(a @ w), atol=2e-4)
    np.testing.assert_allclose(engine.run(frames, 0).cams, _normalise(-(a @ w)), atol=2e-4)


@pytest.mark.parametrize("name,layer,after", [
    ("tiny_flatten", None, "Flatten -> Dense"),
    ("tiny_nested", None, "GlobalAveragePooling2D -> Dense -> Dropout -> Dense"),
    ("tiny_transfer", "conv1", "MaxPooling2D -> Conv2D -> GlobalAveragePooling2D -> Dropout -> Dense"),
    ("tiny_skip", "b", "a graph that does not run straight on"),
])
def test_cam_refuses_other_heads_with_a_clear_message(request, name, layer, after):
    with pytest.raises(UsageError) as e:
        CamEngine(classifier_for(request.getfixturevalue(name)), layer=layer, method="cam")
    message = str(e.value)
    assert message.startswith("method 'cam' needs global average pooling then one Dense layer") and after in message
    assert "gradcam" in message and "--layer" in message


def test_scorecam_fast_is_scorecam_on_the_top_8_channels(tiny_flatten, random_frames):
    clf, frames = classifier_for(tiny_flatten), random_frames(3)
    fast = CamEngine(clf, method="scorecam-fast", scorecam_channels=32).run(frames)
    np.testing.assert_allclose(fast.cams, CamEngine(clf, method="scorecam", scorecam_channels=8).run(frames).cams,
                               atol=1e-6)
    assert not np.allclose(fast.cams, CamEngine(clf, method="scorecam").run(frames).cams, atol=1e-3)
    assert REGISTRY["scorecam-fast"]().forward_passes() == (9, "1 + 8")


# -- several layers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["gradcam", "layercam", "scorecam-fast"])
@pytest.mark.parametrize("name", ["tiny_flatten", "tiny_nested"])
def test_multi_layer_map_is_the_max_of_the_upsampled_normalised_layer_maps(request, name, method, random_frames):
    import cv2

    clf, frames = classifier_for(request.getfixturevalue(name)), random_frames(3)
    engine = CamEngine(clf, layer="conv2,conv1", method=method)
    prefix = "base/" if name == "tiny_nested" else ""
    assert engine.layer_name == f"{prefix}conv2,{prefix}conv1"
    r = engine.run(frames)
    assert r.cams.shape == (3, 32, 32)  # conv1's resolution, the finest
    fine = CamEngine(clf, layer="conv1", method=method).run(frames, r.class_ids).cams
    coarse = CamEngine(clf, layer="conv2", method=method).run(frames, r.class_ids).cams
    up = np.stack([cv2.resize(c, (32, 32), interpolation=cv2.INTER_LINEAR) for c in coarse])
    want = np.maximum(_normalise(fine), _normalise(up))
    np.testing.assert_allclose(r.cams, want, atol=1e-4)
    for alone in (fine, up):  # both layers count
        assert (np.abs(r.cams - _normalise(alone)) > 1e-3).any()
    one = CamEngine(clf, layer="conv2,conv2", method=method)  # a repeated layer counts once
    assert one.layer_name == f"{prefix}conv2" and one.run(frames[:1]).cams.shape == (1, 16, 16)


def test_multi_layer_names_are_checked(tiny_flat):
    from vidcam.errors import LayerError

    with pytest.raises(LayerError, match="empty name"):
        CamEngine(classifier_for(tiny_flat), layer="conv1,")
    with pytest.raises(LayerError, match="no layer named 'conv9'"):
        CamEngine(classifier_for(tiny_flat), layer="conv1,conv9")


# -- every method through a saved nested model, the engine and the CLI ------------------------------------------


@pytest.fixture(scope="module")
def transfer_keras(tiny_transfer, tmp_path_factory):
    """tiny_transfer saved as a ``.keras`` file with vidcam's metadata, as `vidcam train` writes one."""
    from clips import save_tiny_keras

    return save_tiny_keras(tiny_transfer, tmp_path_factory.mktemp("model") / "transfer.keras", ["cat", "dog", "bird"])


@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_a_saved_nested_model_and_through_vidcam_image(transfer_keras, method, random_frames,
                                                                       tmp_path):
    import cv2
    from typer.testing import CliRunner

    from vidcam.cam.spec import ModelSpec
    from vidcam.cli import app

    engine = ModelSpec(str(transfer_keras), method=method).build()
    assert engine.layer_name.endswith("base/conv2")
    frames = random_frames(3)
    both = engine.run(frames, class_index=1)
    assert both.cams.shape == (3, 16, 16) and np.isfinite(both.cams).all() and both.cams.max() > 0.99
    np.testing.assert_allclose(engine.run(frames[1:2], 1).cams[0], both.cams[1], atol=1e-5)  # batch-invariant
    picture = tmp_path / "in.png"
    cv2.imwrite(str(picture), frames[0])
    r = CliRunner().invoke(app, ["image", str(picture), "-m", str(transfer_keras), "--method", method,
                                 "-o", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "in_output.jpg").is_file()


@pytest.fixture(scope="module")
def job_inputs(tmp_path_factory):
    """A 6-frame clip and a folder of 2 frames, made by ffmpeg, for every method's run through the jobs."""
    from clips import make_clip, run

    d = tmp_path_factory.mktemp("jobs")
    clip = make_clip(d / "clip.mp4", rate="25", size="64x48", seconds=0.24, audio=None)
    frames = d / "frames"
    frames.mkdir()
    run("-i", clip, "-frames:v", "2", frames / "f%d.png")
    return clip, frames


@pytest.mark.parametrize("method", METHODS)
def test_every_method_through_the_video_frames_and_compare_jobs(transfer_keras, job_inputs, method, tmp_path):
    """The jobs take any registered method: the video, frame-folder and compare jobs on the nested .keras model."""
    from clips import decoded_frames

    from vidcam.cam.spec import ModelSpec
    from vidcam.jobs.compare import CompareOptions, compare_methods
    from vidcam.jobs.frames import label_frames
    from vidcam.jobs.video import process_video

    clip, frames = job_inputs
    spec = ModelSpec(str(transfer_keras), method=method)
    engine = spec.build()  # built once for the three jobs, as a user of the library would
    s = process_video(clip, tmp_path / "v.mp4", model=engine)
    assert s.frames == decoded_frames(tmp_path / "v.mp4") == 6
    f = label_frames(frames, tmp_path / "res", model=engine)
    assert f.processed == 2 and not f.failed and len(list((tmp_path / "res").glob("result_*.jpg"))) == 2
    (r,) = compare_methods([frames / "f1.png"], tmp_path / "cmp", model=spec, options=CompareOptions(
        methods=[method], steps=2))
    assert r.error is None and list(r.metrics) == [method] and (tmp_path / "cmp" / "f1_compare.jpg").is_file()


# -- the measured table (scripts/sanity_report.py) ------------------------------------------------------------


def test_the_measured_table_covers_every_method_and_vidcam_methods_prints_it():
    import json
    import subprocess
    import sys

    from conftest import ROOT

    table = cam_methods.measured_table()
    assert table is not None and table["model"] == "efficientnet_lite0" and table["pass_below"] == 0.5
    assert set(table["methods"]) == set(METHODS)
    grad = table["methods"]["gradcam"]
    assert grad["cost"] == 1.0 and grad["randomisation"]["pass"] and grad["class_sensitivity"]["pass"]
    for row in table["methods"].values():
        assert set(row["photos"]) == {"chelsea.png", "dog.jpg"} and row["ms_per_frame"] > 0
        for check in (row["randomisation"], row["class_sensitivity"]):
            assert check["pass"] == (max(v for k, v in check.items() if k != "pass") < 0.5)
    # `vidcam methods` prints it without importing TensorFlow.
    code = ("import sys; from vidcam.cli import main; sys.argv = ['vidcam', 'methods', '--json']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('TF', 'tensorflow' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = p.stdout.splitlines()
    assert lines[-1] == "TF False", p.stderr
    rows = {o["name"]: o for o in map(json.loads, lines[:-1])}
    assert rows["ablationcam"]["measured"] == table["methods"]["ablationcam"]
