"""The model zoo: real offline weights, known outputs, and clear errors when weights are missing."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from conftest import CHELSEA

from vidcam.cam.engine import CamEngine
from vidcam.errors import ModelError, WeightsError
from vidcam.media.images import fit_to_model, read_image
from vidcam.models.zoo import GROUPED_MODELS, ZOO, imagenet_class_names, load_classifier, zoo_table

# Verified with the reference pipeline (resize short side 256, centre crop 224): ../shared/ASSETS.md.
CHELSEA_TOP3 = [("tiger cat", 0.386), ("Egyptian cat", 0.356), ("tabby", 0.169)]


def test_imagenet_index_is_byte_identical_to_keras():
    from importlib import resources

    data = resources.files("vidcam").joinpath("data/imagenet_class_index.json").read_bytes()
    assert hashlib.md5(data).hexdigest() == "c2c37ea517e94d9795004a39431a14cb"
    names, wnids = imagenet_class_names()
    assert len(names) == 1000 and names[281] == "tabby" and wnids[281] == "n02123045"


def test_lite0_reproduces_verified_chelsea_top3(lite0, lite0_engine):
    x, _ = fit_to_model(read_image(CHELSEA), lite0.input_size, "crop")
    result = lite0_engine.run(x[None])
    ids, probs = result.top_k(3)
    got = [(lite0.class_names[i], float(p)) for i, p in zip(ids[0], probs[0])]
    for (name, p), (want_name, want_p) in zip(got, CHELSEA_TOP3):
        assert name == want_name
        assert abs(p - want_p) < 0.01


def test_lite0_builder_shapes(lite0):
    assert lite0.input_size == (224, 224)
    assert lite0.model.output_shape == (None, 1000)
    assert lite0.model.get_layer("top_activation").output.shape[1:] == (7, 7, 1280)
    from vidcam.models.efficientnet_lite import build_efficientnet_lite

    assert build_efficientnet_lite("efficientnet_lite0").count_params() == ZOO["efficientnet_lite0"].parameters


@pytest.mark.parametrize("name,size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_lite1_lite2_recognise_the_cat(name, size):
    clf = load_classifier(name)
    assert clf.input_size == (size, size)
    x, _ = fit_to_model(read_image(CHELSEA), clf.input_size, "crop")
    probs = CamEngine(clf).run(x[None]).probabilities[0]
    top3 = {clf.class_names[i] for i in np.argsort(-probs)[:3]}
    assert top3 == {"tiger cat", "Egyptian cat", "tabby"}


def test_notop_backbone_outputs_feature_map():
    model = ZOO["efficientnet_lite0"].builder(include_top=False, input_shape=(96, 96, 3))
    assert model.output_shape == (None, 3, 3, 1280)


def test_converted_weights_are_cached_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDCAM_CACHE", str(tmp_path))
    from vidcam.models.efficientnet_lite import build_efficientnet_lite, load_pretrained

    m1 = build_efficientnet_lite("efficientnet_lite0")
    load_pretrained(m1, "efficientnet_lite0")
    cached = list(tmp_path.glob("efficientnet_lite0-*-top.weights.h5"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    m2 = build_efficientnet_lite("efficientnet_lite0")
    load_pretrained(m2, "efficientnet_lite0")
    assert cached[0].stat().st_mtime_ns == stamp  # reused, not rewritten
    np.testing.assert_array_equal(m1.get_layer("predictions").get_weights()[0],
                                  m2.get_layer("predictions").get_weights()[0])


def test_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDCAM_CACHE", str(tmp_path))
    from vidcam.models.efficientnet_lite import build_efficientnet_lite, load_pretrained

    load_pretrained(build_efficientnet_lite("efficientnet_lite0"), "efficientnet_lite0")
    cached = next(tmp_path.glob("*.weights.h5"))
    cached.write_bytes(b"garbage")
    m = build_efficientnet_lite("efficientnet_lite0")
    from vidcam.errors import VidcamWarning

    with pytest.warns(VidcamWarning, match="converted-weights cache .* is damaged"):  # one warning, no print
        load_pretrained(m, "efficientnet_lite0")
    assert abs(float(m.get_layer("stem_bn").get_weights()[3].max())) > 1  # real statistics again


@pytest.mark.parametrize("name", ["mobilenet", "mobilenet_v2", "resnet50", "vgg16"])
def test_keras_models_without_weights_name_the_file(name, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsError) as e:
        load_classifier(name)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "models") in msg and ".h5" in msg


def test_keras_model_with_weights_file(tmp_path, monkeypatch):
    """With a weights file in place, the keras.applications entry loads it (no download, no random fallback)."""
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    keras.utils.set_random_seed(3)
    src = keras.applications.MobileNetV2(weights=None, classifier_activation=None, alpha=1.0)
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
    # Keras' published ImageNet files are legacy HDF5 weight files: write one the same way.
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, src)
    clf = load_classifier("mobilenet_v2")
    assert clf.preprocess == "tf" and clf.default_layer == "out_relu"
    conv1 = clf.model.get_layer("Conv1").get_weights()[0]
    np.testing.assert_array_equal(conv1, src.get_layer("Conv1").get_weights()[0])
    assert [r["weights"] for r in zoo_table() if r["name"] == "mobilenet_v2"] == ["available"]


def test_unknown_model():
    with pytest.raises(ModelError, match="unknown model 'alexnet'"):
        load_classifier("alexnet")


def test_missing_keras_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_classifier(tmp_path / "nope.keras")


def test_zoo_table_lists_every_entry():
    rows = zoo_table()
    assert [r["name"].split()[0] for r in rows] == [*ZOO, *GROUPED_MODELS]
    cats_dogs = rows[-1]
    assert cats_dogs["base"] == "efficientnet_lite0"
    assert "cat = domestic_cat (5 classes: 281 tabby" in cats_dogs["groups"]
    lite0 = rows[0]
    assert lite0["weights"] == "available" and lite0["top1"] == 0.751


def test_custom_keras_file_metadata(tmp_path, tiny_nested):
    from vidcam.models.zoo import save_classifier_metadata

    path = tmp_path / "m.keras"
    tiny_nested.save(path)
    save_classifier_metadata(path, {"class_names": ["cat", "dog"], "preprocess": "unit"})
    clf = load_classifier(path)
    assert clf.class_names == ["cat", "dog"] and clf.preprocess == "unit"
    assert clf.output == "softmax" and clf.input_size == (32, 32)


def test_custom_keras_file_with_lambda_is_refused(tmp_path):
    import keras

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    path = tmp_path / "lambda.keras"
    keras.Model(inp, out).save(path)
    with pytest.raises(ModelError, match="--unsafe"):
        load_classifier(path)
    assert load_classifier(path, unsafe=True).num_classes == 2


def test_non_classifier_is_refused(tmp_path):
    import keras

    inp = keras.Input((16, 16, 3))
    out = keras.layers.Conv2D(3, 3, padding="same")(inp)
    path = tmp_path / "seg.keras"
    keras.Model(inp, out).save(path)
    with pytest.raises(ModelError, match="not a classifier"):
        load_classifier(path)


def test_folded_batchnorm_gives_the_same_logits(lite0):
    """The zoo classifier folds BatchNorm into its convolutions; the plain build with BN layers agrees."""
    from vidcam.models.efficientnet_lite import build_efficientnet_lite, load_pretrained

    assert "stem_bn" not in {layer.name for layer in lite0.model.layers}
    plain = build_efficientnet_lite("efficientnet_lite0")
    load_pretrained(plain, "efficientnet_lite0")
    x, _ = fit_to_model(read_image(CHELSEA), (224, 224), "crop")
    x = ((x.astype(np.float32) - 127) / 128)[None]
    np.testing.assert_allclose(lite0.model(x).numpy(), plain(x).numpy(), atol=2e-4)
