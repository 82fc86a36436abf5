"""Sanity checks for the heatmaps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps") and oracles.

- The engine agrees with tf-keras-vis (an independent implementation) on flat models, Grad-CAM exactly and
  Grad-CAM++ up to a documented convention; and with itself across batch sizes.
- Model randomisation: re-initialising the top of the real default model changes Grad-CAM's maps (and those of
  XGrad-CAM, HiRes-CAM and CAM, the other methods that pass on this model).
- Class sensitivity: on dog.jpg (a dog, a bicycle, a truck) the dog map and the bicycle/truck maps differ.
- The metrics behave: a real map beats random maps and its own inverse.

Findings pinned here (and stated in the README): Grad-CAM++ on EfficientNet-Lite0 (a global-average-pooling
head) barely depends on the class or on the classifier's weights, because it keeps only positive gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CHELSEA, DOG, classifier_for

from vidcam.cam.engine import CamEngine
from vidcam.cam.metrics import evaluate_batch
from vidcam.cam.metrics import rank_correlation as spearman
from vidcam.errors import UsageError
from vidcam.media.images import fit_to_model, read_image


def test_spearman_helper():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([0, 0, 1, 2], [5, 5, 6, 9]) == pytest.approx(1.0)
    assert spearman([0, 0, 0], [1, 2, 3]) == 0.0
    assert spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)
    with pytest.raises(UsageError):
        spearman([1, 2], [1, 2, 3])


@pytest.fixture(scope="module")
def photos(lite0):
    """chelsea.png and dog.jpg as the default model sees them (centre crop), (2, 224, 224, 3) uint8."""
    return np.stack([fit_to_model(read_image(p), lite0.input_size, "crop")[0] for p in (CHELSEA, DOG)])


def _max_normalise(cams: np.ndarray) -> np.ndarray:
    cams = np.maximum(np.asarray(cams, np.float32), 0)
    return cams / (cams.reshape(len(cams), -1).max(axis=1)[:, None, None] + 1e-7)


def _case(request, name, random_frames, photos):
    """(classifier, layer, uint8 frames, preprocessed float input) for an oracle comparison."""
    if name == "lite0":
        clf = request.getfixturevalue("lite0")
        return clf, "top_activation", photos, (photos.astype(np.float32) - 127.0) / 128.0
    clf = classifier_for(request.getfixturevalue(name))
    frames = random_frames(4)
    return clf, "conv2", frames, frames.astype(np.float32) / 255.0


@pytest.mark.parametrize("name", ["tiny_flat", "tiny_flatten", "lite0"])
def test_gradcam_agrees_with_tf_keras_vis(request, name, random_frames, photos):
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    clf, layer, frames, x = _case(request, name, random_frames, photos)
    ours = CamEngine(clf, layer=layer).run(frames)
    # clone=True: tf-keras-vis works on a copy, the shared fixtures stay untouched. seek_penultimate_conv_layer
    # would otherwise walk from a ReLU layer (lite0's top_activation) back to the convolution before it.
    oracle = Gradcam(clf.model, model_modifier=ReplaceToLinear(), clone=True)
    theirs = oracle(CategoricalScore(list(ours.class_ids)), x, penultimate_layer=layer,
                    seek_penultimate_conv_layer=False, expand_cam=False, normalize_cam=False)
    theirs = _max_normalise(theirs)
    assert theirs.shape == ours.cams.shape
    np.testing.assert_allclose(ours.cams, theirs, atol=1e-4)
    for a, b in zip(ours.cams, theirs):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


def _gradcampp_reference(model, layer: str, x: np.ndarray, class_ids, *, normalise_alpha: bool) -> np.ndarray:
    """Grad-CAM++ from the paper's formula, with gradients from the textbook two-output model (not the engine).

    alpha = g^2 / (2 g^2 + sum(A) g^3); w = sum_ij alpha relu(g); cam = relu(sum_k w_k A_k).
    ``normalise_alpha`` divides alpha by its spatial sum per channel first, as the paper's authors' code and
    tf-keras-vis do; the engine (like pytorch-grad-cam) does not.
    """
    import keras
    import tensorflow as tf

    two = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])
    with tf.GradientTape() as tape:
        feature_map, logits = two(tf.constant(x), training=False)
        score = tf.reduce_sum(tf.gather(logits, np.asarray(class_ids), batch_dims=1))
    g = tape.gradient(score, feature_map).numpy().astype(np.float64)
    a = feature_map.numpy().astype(np.float64)
    denom = 2 * g**2 + a.sum(axis=(1, 2), keepdims=True) * g**3
    alpha = g**2 / np.where(denom != 0, denom, 1)
    if normalise_alpha:
        total = alpha.sum(axis=(1, 2), keepdims=True)
        alpha = alpha / np.where(total != 0, total, 1)
    w = (alpha * np.maximum(g, 0)).sum(axis=(1, 2))
    return _max_normalise(np.einsum("bhwc,bc->bhw", a, w))


@pytest.mark.parametrize("name", ["tiny_flatten", "lite0"])
def test_gradcampp_follows_the_paper_and_tf_keras_vis_up_to_alpha_normalisation(request, name, random_frames,
                                                                                photos):
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    clf, layer, frames, x = _case(request, name, random_frames, photos)
    ours = CamEngine(clf, layer=layer, method="gradcam++").run(frames)
    reference = _gradcampp_reference(clf.model, layer, x, ours.class_ids, normalise_alpha=False)
    np.testing.assert_allclose(ours.cams, reference, atol=1e-4)
    # The reference's other convention is what the oracle computes: this checks the reference itself.
    oracle = GradcamPlusPlus(clf.model, model_modifier=ReplaceToLinear(), clone=True)
    theirs = _max_normalise(oracle(CategoricalScore(list(ours.class_ids)), x, penultimate_layer=layer,
                                   seek_penultimate_conv_layer=False, expand_cam=False, normalize_cam=False))
    normalised = _gradcampp_reference(clf.model, layer, x, ours.class_ids, normalise_alpha=True)
    np.testing.assert_allclose(theirs, normalised, atol=1e-3)
    if name == "lite0":
        # With a global-average-pooling head alpha is constant over the map, so the conventions differ by one
        # factor per channel and rank the cells alike; with a Flatten head (tiny_flatten) they really differ.
        for a, b in zip(ours.cams, theirs):
            assert spearman(a, b) > 0.9


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
@pytest.mark.parametrize("name", ["tiny_flat", "tiny_nested"])
def test_same_maps_whatever_the_batch_size(request, name, method, random_frames):
    engine = CamEngine(classifier_for(request.getfixturevalue(name)), method=method)
    frames = random_frames(8)
    whole = engine.run(frames)
    for size in (1, 4):
        parts = [engine.run(frames[i : i + size]) for i in range(0, 8, size)]
        np.testing.assert_allclose(np.concatenate([p.cams for p in parts]), whole.cams, atol=1e-5)
        np.testing.assert_array_equal(np.concatenate([p.class_ids for p in parts]), whole.class_ids)


def test_same_maps_whatever_the_batch_size_lite0(lite0_engine, photos, lite0):
    squashed = np.stack([fit_to_model(read_image(p), lite0.input_size, "squash")[0] for p in (CHELSEA, DOG)])
    frames = np.concatenate([photos, photos[:, :, ::-1], squashed, squashed[:, ::-1]])  # 8 different frames
    whole = lite0_engine.run(frames)
    for size in (1, 4):
        parts = [lite0_engine.run(frames[i : i + size]) for i in range(0, 8, size)]
        np.testing.assert_allclose(np.concatenate([p.cams for p in parts]), whole.cams, atol=1e-4)
        np.testing.assert_allclose(np.concatenate([p.probabilities for p in parts]), whole.probabilities, atol=1e-5)


# -- Adebayo et al.: model randomisation and class sensitivity on the real default model --------------------

TOP = ["predictions", "top_conv"]  # cascading from the output down
# The methods that pass both checks on lite0 (README, "Which method?"; vidcam/cam/data/methods.json).
PASSING = ("gradcam", "xgradcam", "hirescam", "cam")


@pytest.fixture(scope="module")
def fresh_lite0():
    """A second, independent lite0 (the session's ``lite0`` is never touched) and its trained top weights."""
    from vidcam.models.zoo import load_classifier

    clf = load_classifier("efficientnet_lite0")
    trained = {name: [v.numpy() for v in clf.model.get_layer(name).weights] for name in TOP}
    return clf, trained


def _randomise(clf, trained, layers: list[str], seed: int) -> None:
    """Restore the trained top, then re-initialise ``layers`` as Keras would (Glorot uniform, BN identity)."""
    rng = np.random.default_rng(seed)
    for name, values in trained.items():
        for var, value in zip(clf.model.get_layer(name).weights, values):
            var.assign(value)
    for name in layers:
        layer = clf.model.get_layer(name)
        shape = tuple(layer.kernel.shape)
        fan_in = int(np.prod(shape[:-1]))
        fan_out = shape[-1] * int(np.prod(shape[:-2]))
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        layer.kernel.assign(rng.uniform(-limit, limit, shape).astype(np.float32))
        if layer.bias is not None:
            layer.bias.assign(np.zeros(layer.bias.shape, np.float32))


@pytest.fixture(scope="module")
def randomised_correlations(fresh_lite0, lite0_engine, photos):
    """Spearman(trained map, randomised map) per (method, depth), over 4 seeds x 2 photos, same target class."""
    clf, trained = fresh_lite0
    engines = {m: CamEngine(clf, method=m) for m in (*PASSING, "gradcam++")}
    trained_maps = {m: CamEngine(lite0_engine.classifier, method=m).run(photos) for m in engines}
    out = {}
    for depth in (1, 2):
        for seed in range(4):
            _randomise(clf, trained, TOP[:depth], seed)
            for m, engine in engines.items():
                t = trained_maps[m]
                r = engine.run(photos, t.class_ids)
                out.setdefault((m, depth), []).extend(spearman(a, b) for a, b in zip(t.cams, r.cams))
    _randomise(clf, trained, [], 0)
    return out


@pytest.mark.parametrize("method", PASSING)
@pytest.mark.parametrize("depth", [1, 2], ids=["dense", "dense+top_conv"])
def test_randomising_the_top_changes_gradcam(randomised_correlations, depth, method):
    rho = randomised_correlations[(method, depth)]
    assert len(rho) == 8
    assert np.mean(rho) < 0.5, rho


def test_gradcampp_barely_notices_a_random_classifier(randomised_correlations):
    # A finding, not a goal: with a global-average-pooling head the gradient of a class is its Dense column
    # (spread evenly), and Grad-CAM++ keeps only its positive part, so the map is mostly "where the features
    # fire", whatever the weights. If this ever fails, Grad-CAM++ became more faithful: update the README.
    assert np.mean(randomised_correlations[("gradcam++", 1)]) > 0.7


@pytest.fixture(scope="module")
def dog_maps(lite0, photos):
    """Maps of dog.jpg for the malamute (249), mountain bike (671) and pickup (717), per method."""
    classes = np.array([249, 671, 717])
    frames = np.repeat(photos[1:], 3, axis=0)
    return {m: CamEngine(lite0, method=m).run(frames, classes).cams for m in (*PASSING, "gradcam++")}


@pytest.mark.parametrize("method", PASSING)
@pytest.mark.parametrize("other", [1, 2], ids=["mountain bike", "pickup"])
def test_gradcam_is_class_sensitive_on_dog(dog_maps, other, method):
    cams = dog_maps[method]
    assert spearman(cams[0], cams[other]) < 0.5


def test_gradcam_dog_map_is_on_the_dog_side(dog_maps):
    # The dog sits in the left half of the crop, the bicycle runs right of it.
    dog, bike = dog_maps["gradcam"][0], dog_maps["gradcam"][1]
    assert dog[:, :3].sum() > dog[:, 4:].sum()
    assert bike[:, 4:].sum() > bike[:, :3].sum()


def test_gradcampp_is_nearly_class_blind_on_dog(dog_maps):
    # The same finding as above, seen through classes: documented in the README.
    cams = dog_maps["gradcam++"]
    assert min(spearman(cams[0], cams[1]), spearman(cams[0], cams[2])) > 0.8


# -- the metrics behave on real photos -------------------------------------------------------------------------


@pytest.mark.parametrize("photo, fit", [(CHELSEA, "crop"), (CHELSEA, "squash"), (DOG, "crop")],
                         ids=["chelsea-crop", "chelsea-squash", "dog-crop"])
def test_a_real_map_beats_random_maps_and_its_inverse(lite0_engine, lite0, photo, fit):
    frame = fit_to_model(read_image(photo), lite0.input_size, fit)[0][None]
    res = lite0_engine.run(frame)
    cam = res.cams
    ids = res.class_ids
    real = evaluate_batch(lite0_engine, frame, cam, ids)[0]
    # Random maps at the CAM's own 7x7 resolution: blobs as smooth as a real map, placed anywhere.
    rng = np.random.default_rng(0)
    randoms = np.concatenate([rng.random((1, 7, 7), np.float32) for _ in range(8)])
    rand = evaluate_batch(lite0_engine, np.repeat(frame, 8, axis=0), randoms, np.repeat(ids, 8), batch_size=128)
    assert real.deletion_auc < np.mean([m.deletion_auc for m in rand])
    assert real.insertion_auc > np.mean([m.insertion_auc for m in rand])
    inverse = evaluate_batch(lite0_engine, frame, 1 - cam, ids)[0]
    assert real.deletion_auc < inverse.deletion_auc and real.insertion_auc > inverse.insertion_auc
    # Keeping everything changes nothing: no drop.
    ones = evaluate_batch(lite0_engine, frame, np.ones_like(cam), ids, steps=1)[0]
    assert ones.average_drop == pytest.approx(0.0, abs=1e-3) and not ones.increase
