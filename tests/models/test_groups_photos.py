"""The real cats_dogs model on real photos the demo never shows: other dog breeds, other cats, other animals.

The photos are small copies in video/photos/ (sources, crops and licences in video/SOURCES.md). Each is read with
vidcam's reader and fitted as ``vidcam image --fit crop`` does; cats_dogs must name its group with most of the
probability. The thresholds sit below each photo's measured group probability (in video/SOURCES.md) with room
to spare, and well above a third (three groups).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT

from vidcam.cam.engine import CamEngine
from vidcam.media.images import fit_to_model, read_image
from vidcam.models.zoo import load_classifier

PHOTOS = ROOT / "video" / "photos"

# photo -> (group, least probability of that group)
EXPECTED = {
    "dog_golden_retriever": ("dog", 0.85),
    "dog_husky": ("dog", 0.6),  # a small crop of a wide photo: the dog beside the person
    "dog_terrier": ("dog", 0.6),
    "dog_spitz": ("dog", 0.5),  # a red spitz: some of the rest is on the foxes
    "cat_lying": ("cat", 0.85),
    "cat_tortoiseshell": ("cat", 0.7),
    "cat_maine_coon": ("cat", 0.85),
    "cat_grey": ("cat", 0.7),
    "other_tiger": ("other", 0.85),  # a big cat, not a domestic cat
    "other_horses": ("other", 0.85),
    "other_eagle": ("other", 0.85),
    "other_giraffe": ("other", 0.85),
    "other_owl": ("other", 0.85),
}


@pytest.fixture(scope="module")
def cats_dogs():
    return CamEngine(load_classifier("cats_dogs"))


def _predict(engine: CamEngine, *names: str) -> np.ndarray:
    size = engine.classifier.input_size
    x = np.stack([fit_to_model(read_image(PHOTOS / f"{n}.jpg"), size, "crop")[0] for n in names])
    return engine.predict(x)


def test_every_photo_is_grouped_right(cats_dogs):
    groups = cats_dogs.classifier.class_names
    assert groups == ["cat", "dog", "other"]
    names = list(EXPECTED)
    probs = _predict(cats_dogs, *names)
    got = {n: (groups[int(np.argmax(p))], float(p.max())) for n, p in zip(names, probs, strict=True)}
    wrong = {n: g for n, g in got.items() if g[0] != EXPECTED[n][0] or g[1] < EXPECTED[n][1]}
    assert not wrong, f"misgrouped or unsure: {wrong}"
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_the_cat_imagenet_calls_a_lynx_is_not_a_domestic_cat(cats_dogs):
    """A known limit: cats_dogs' cat is domestic_cat, and ImageNet's lynx is a wild cat; on this grey long-haired
    cat the model puts nearly half its mass on lynx, so ``cat`` and ``other`` are close. Grouping with ``cat``
    (cat.n.01, which holds the lynx) would call it a cat; asserted here so a change of either shows."""
    cat, _, other = _predict(cats_dogs, "cat_mackerel")[0]
    assert 0.3 < cat < 0.7 and 0.3 < other < 0.7
    wider = CamEngine(load_classifier("efficientnet_lite0", groups=("cat", "dog")))
    assert wider.classifier.class_names[int(np.argmax(_predict(wider, "cat_mackerel")[0]))] == "cat"
