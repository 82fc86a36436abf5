"""Shared fixtures: real TensorFlow, real ffmpeg, tiny real Keras models built here, the real bundled photos."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
CHELSEA = ROOT / "video" / "chelsea.png"
DOG = ROOT / "video" / "dog.jpg"


@pytest.fixture(scope="session", autouse=True)
def _vidcam_cache(tmp_path_factory):
    """Converted weights are cached per test session unless the caller chose a cache (CI keeps it warm)."""
    if "VIDCAM_CACHE" not in os.environ:
        os.environ["VIDCAM_CACHE"] = str(tmp_path_factory.mktemp("vidcam-cache"))
    yield


@pytest.fixture(scope="session")
def lite0():
    """The real default classifier (EfficientNet-Lite0, offline ImageNet weights)."""
    from vidcam.models.zoo import load_classifier

    return load_classifier("efficientnet_lite0")


@pytest.fixture(scope="session")
def lite0_engine(lite0):
    from vidcam.cam.engine import CamEngine

    return CamEngine(lite0)


def _tiny_features(inp):
    """conv1 -> pool1 -> conv2: the feature layers every tiny test model shares."""
    from keras import layers

    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    return layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)


def _tiny_base(size: int = 32, name: str = "base"):
    import keras

    inp = keras.Input((size, size, 3))
    return keras.Model(inp, _tiny_features(inp), name=name)


@pytest.fixture(scope="session")
def tiny_flat():
    """A flat 3-class CNN with seeded random weights: conv -> pool -> conv -> GAP -> Dense(softmax)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(7)
    inp = keras.Input((32, 32, 3))
    x = _tiny_features(inp)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="tiny_flat")


@pytest.fixture(scope="session")
def tiny_flatten():
    """A flat CNN whose head is Flatten + Dense (logits), so the gradients vary over the feature map."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(3)
    inp = keras.Input((32, 32, 3))
    x = _tiny_features(inp)
    out = layers.Dense(3, name="logits")(layers.Flatten()(x))
    return keras.Model(inp, out, name="tiny_flatten")


@pytest.fixture(scope="session")
def tiny_nested():
    """The book's transfer-model shape: a base model used as one layer, then GAP, Dense, Dropout, Dense(softmax)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(11)
    base = _tiny_base()
    inp = keras.Input((32, 32, 3))
    x = base(inp)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(16, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    out = layers.Dense(2, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="tiny_nested")


def classifier_for(model, names=None, preprocess="unit"):
    from vidcam.models.zoo import Classifier, _final_activation

    n = int(model.outputs[0].shape[-1])
    return Classifier(
        name=model.name, model=model, input_size=tuple(model.inputs[0].shape[1:3]), preprocess=preprocess,
        class_names=names or [f"c{i}" for i in range(n)], output=_final_activation(model), fit="squash",
    )


def mass_density(cam: np.ndarray, box: tuple, size: tuple) -> tuple[float, float]:
    """The mean heat inside ``box`` (x0, y0, x1, y1 in pixels of an image of ``size`` (w, h)) and outside it, the
    map upsampled to the image."""
    import cv2

    w, h = size
    up = cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR)
    x0, y0, x1, y1 = box
    inside = np.zeros_like(up, bool)
    inside[y0:y1, x0:x1] = True
    return float(up[inside].mean()), float(up[~inside].mean())


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def random_frames(rng):
    def make(n: int, size: int = 32) -> np.ndarray:
        return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)

    return make
