"""Groups of classes in the engine: probabilities that are the members' sums, maps of the group's log-probability,
the cats_dogs model on the bundled photos and a non-animal photo."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CHELSEA, DOG, classifier_for, mass_density

from vidcam.cam.engine import CamEngine
from vidcam.cam.methods import method_names
from vidcam.cam.spec import ModelSpec
from vidcam.errors import UsageError
from vidcam.media.images import fit_to_model, read_image
from vidcam.models.groups import group_classifier


def _coffee() -> np.ndarray:
    import skimage.data

    return skimage.data.coffee()  # a cup of coffee on a saucer: no animal


@pytest.fixture(scope="module")
def cats_dogs(lite0):
    return CamEngine(group_classifier(lite0, ["cat=domestic_cat", "dog"], name="cats_dogs"))


@pytest.fixture(scope="module")
def photos(lite0):
    images = [read_image(CHELSEA), read_image(DOG), _coffee()]
    return np.stack([fit_to_model(img, lite0.input_size, "crop")[0] for img in images])


def test_cats_dogs_labels_the_cat_the_dog_and_the_coffee(cats_dogs, photos):
    assert cats_dogs.classifier.class_names == ["cat", "dog", "other"]
    r = cats_dogs.run(photos)
    assert [cats_dogs.classifier.class_names[i] for i in r.class_ids] == ["cat", "dog", "other"]
    assert r.probabilities[0, 0] > 0.8 and r.probabilities[1, 1] > 0.8 and r.probabilities[2, 2] > 0.95


def test_grouped_probabilities_are_the_members_sums_and_add_up_to_one(cats_dogs, lite0_engine, photos):
    grouped = cats_dogs.run(photos).probabilities
    plain = lite0_engine.predict(photos)
    for g, members in enumerate(cats_dogs.classifier.groups.members):
        np.testing.assert_allclose(grouped[:, g], plain[:, list(members)].sum(axis=1), atol=1e-6)
    np.testing.assert_allclose(grouped.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(cats_dogs.predict(photos), grouped, atol=1e-6)  # the forward-only path agrees


def test_the_dog_map_sits_on_the_dog(cats_dogs, lite0):
    x, _ = fit_to_model(read_image(DOG), lite0.input_size, "squash")
    r = cats_dogs.run(x[None], class_index=1)  # "dog": any breed
    inside, outside = mass_density(r.cams[0], (120, 200, 320, 550), (768, 576))  # the dog, low left
    assert inside > 1.5 * outside


def test_ablation_cam_of_a_group_sits_on_the_dog(lite0):
    """A group's score (a log-probability) is negative: Ablation-CAM divides the drop by |score|, so the map is
    not inverted."""
    x, _ = fit_to_model(read_image(DOG), lite0.input_size, "squash")
    engine = CamEngine(group_classifier(lite0, ["dog"]), method="ablationcam")
    inside, outside = mass_density(engine.run(x[None], class_index=0).cams[0], (120, 200, 320, 550), (768, 576))
    assert inside > 1.5 * outside


def test_the_group_target_is_the_log_of_its_summed_probability(tiny_flat, random_frames):
    """On GAP -> Dense, Grad-CAM's channel weights are d score / d pooled over h*w: computed here by hand (numpy)
    for score = logsumexp(member logits) - logsumexp(all logits), they give the engine's map."""
    import keras

    clf = group_classifier(classifier_for(tiny_flat), ["a=0+2"])
    assert clf.class_names == ["a", "other"] and clf.groups.members == ((0, 2), (1,))
    frames = random_frames(4)
    a = keras.Model(tiny_flat.inputs, tiny_flat.get_layer("conv2").output)(frames / 255.0).numpy().astype(np.float64)
    dense = tiny_flat.get_layer("predictions")
    w, b = dense.kernel.numpy().astype(np.float64), dense.bias.numpy().astype(np.float64)
    z = a.mean(axis=(1, 2)) @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    for method in ("gradcam", "cam"):
        engine = CamEngine(clf, method=method)
        for g, members in enumerate(clf.groups.members):
            inside = np.isin(np.arange(3), members)
            dscore = np.where(inside, p, 0) / p[:, inside].sum(axis=1, keepdims=True) - p  # d score / d z
            cam = np.maximum(np.einsum("bhwc,bc->bhw", a, dscore @ w.T), 0)
            want = cam / (cam.reshape(4, -1).max(axis=1)[:, None, None] + 1e-7)
            r = engine.run(frames, class_index=g)
            np.testing.assert_allclose(r.cams, want, atol=1e-3, err_msg=f"{method}, group {g}")  # float32 grads
            np.testing.assert_allclose(r.probabilities[:, g], p[:, inside].sum(axis=1), atol=1e-6)


@pytest.mark.parametrize("method", method_names())
def test_every_method_explains_a_group(method, tiny_flat, random_frames):
    engine = CamEngine(group_classifier(classifier_for(tiny_flat), ["0+1"]), method=method,
                       scorecam_channels=4, method_options={"ablation_batch": 8})
    r = engine.run(random_frames(2), class_index=0)
    assert r.cams.shape == (2, 16, 16) and np.isfinite(r.cams).all() and r.cams.max() > 0.99
    assert r.probabilities.shape == (2, 2) and (r.class_ids == 0).all()


def test_grouping_refusals(tiny_flat, lite0):
    with pytest.raises(UsageError, match="needs a model with ImageNet's 1000 classes"):
        group_classifier(classifier_for(tiny_flat), ["dog"])
    grouped = group_classifier(lite0, ["dog"])
    with pytest.raises(UsageError, match="already grouped"):
        group_classifier(grouped, ["bird"])
    with pytest.raises(UsageError, match="cats_dogs is already grouped"):
        ModelSpec("cats_dogs", groups=("bird",))
    with pytest.raises(UsageError, match="ambiguous"):  # a zoo model's groups are checked when the spec is made
        ModelSpec("efficientnet_lite0", groups=("crane",))
