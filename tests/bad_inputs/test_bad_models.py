"""Models and layers: missing weights offline, unsafe or unsuitable model files, odd input sizes, wrong layers.
Each through the commands that take ``--model`` (image, video, frames, compare, evaluate)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from bad_support import (
    CHELSEA,
    gray_keras,
    lambda_keras,
    make_video,
    nothing_written,
    one_line_error,
    pattern,
    run_cli,
    segmenter_keras,
    session_dir,
    tiny_keras,
    write_png,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=0.4)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shots") / "shots"
    folder.mkdir()
    for i in range(2):
        write_png(folder / f"{i}.png", pattern(seed=i))
    return folder


def _run(command: str, model, tmp_path: Path, clip: Path, shots: Path, *extra):
    """Run ``command`` with ``--model model``; return (outcome, final output names that must not appear)."""
    out = tmp_path / "out"
    if command == "image":
        return run_cli("image", CHELSEA, "-o", out, "--model", model, *extra), ["chelsea_output.jpg"]
    if command == "compare":
        return (run_cli("compare", CHELSEA, "-o", out, "--model", model, "--methods", "gradcam", "--steps", "2",
                        *extra), ["chelsea_compare.jpg"])
    if command == "video":
        return run_cli("video", clip, "-o", out / "heat.mp4", "--model", model, "-q", *extra), ["heat.mp4"]
    if command == "frames":
        return run_cli("frames", shots, "-o", out, "--model", model, "-q", *extra), ["labels.csv", "0_output.jpg"]
    raise AssertionError(command)


COMMANDS = ["image", "video", "frames", "compare"]


@pytest.mark.parametrize("command", COMMANDS)
def test_zoo_model_without_weights_offline(tmp_path, monkeypatch, clip, shots, command):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    out, outputs = _run(command, "mobilenet", tmp_path, clip, shots)
    one_line_error(out, 1, "mobilenet_1_0_224_tf.h5", "--weights")
    nothing_written(tmp_path / "out", *outputs)


@pytest.mark.parametrize("content", [b"", b"not weights at all", b"\x89HDF\r\n\x1a\n" + b"\0" * 100])
def test_bad_weights_file(tmp_path, clip, shots, content):
    weights = tmp_path / "w.bin"
    weights.write_bytes(content)
    for model in ("efficientnet_lite0", "resnet50"):
        out, outputs = _run("image", model, tmp_path, clip, shots, "--weights", weights)
        one_line_error(out, 1, "w.bin")
        nothing_written(tmp_path / "out", *outputs)


def test_missing_weights_file(tmp_path, clip, shots):
    out, outputs = _run("image", "efficientnet_lite0", tmp_path, clip, shots, "--weights", tmp_path / "gone.pth")
    one_line_error(out, 1, "gone.pth")


@pytest.mark.parametrize("command", COMMANDS)
def test_lambda_model_refused_without_unsafe(tmp_path, clip, shots, command):
    out, outputs = _run(command, lambda_keras(), tmp_path, clip, shots)
    one_line_error(out, 1, "Lambda", "--unsafe")
    nothing_written(tmp_path / "out", *outputs)


def test_lambda_model_runs_with_unsafe_in_video(tmp_path, clip, shots):
    out, _ = _run("video", lambda_keras(), tmp_path, clip, shots, "--unsafe")
    assert out.code == 0, out.stderr
    assert (tmp_path / "out" / "heat.mp4").stat().st_size > 0


@pytest.mark.parametrize("command", ["image", "video"])
@pytest.mark.parametrize("model,needle", [(segmenter_keras, "not a classifier"), (gray_keras, "RGB")])
def test_model_that_is_not_an_rgb_classifier(tmp_path, clip, shots, command, model, needle):
    out, outputs = _run(command, model(), tmp_path, clip, shots)
    one_line_error(out, 1, needle)
    nothing_written(tmp_path / "out", *outputs)


@pytest.mark.parametrize("command", COMMANDS)
def test_model_with_another_input_size(tmp_path, clip, shots, command):
    """A 48x40 (non-square) model: every input is fitted to it; the outputs keep the inputs' own sizes."""
    out, outputs = _run(command, tiny_keras((48, 40)), tmp_path, clip, shots)
    assert out.code == 0, out.stderr
    assert (tmp_path / "out" / outputs[0]).is_file()


@pytest.mark.parametrize("command", COMMANDS)
def test_wrong_layer_lists_valid_ones(tmp_path, clip, shots, command):
    out, outputs = _run(command, tiny_keras(), tmp_path, clip, shots, "--layer", "no_such_layer")
    line = one_line_error(out, 1, "no_such_layer", "conv2")  # the valid 4-D layers are named
    assert "predictions" not in line.split("valid")[-1]  # a vector layer is not offered
    nothing_written(tmp_path / "out", *outputs)


@pytest.mark.parametrize("layer", ["predictions", "gap"])
def test_layer_that_is_not_a_feature_map(tmp_path, clip, shots, layer):
    out, outputs = _run("image", tiny_keras(), tmp_path, clip, shots, "--layer", layer)
    one_line_error(out, 1, layer)
    nothing_written(tmp_path / "out", *outputs)


def _garbage(path: Path) -> None:
    path.write_bytes(b"definitely not a zip archive")


def _cut(path: Path) -> None:
    data = tiny_keras().read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty_zip(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "no model here")


def _folder(path: Path) -> None:
    path.mkdir()


@pytest.mark.parametrize("make", [_garbage, _cut, _empty_zip, _folder], ids=["garbage", "cut", "empty_zip", "dir"])
def test_unloadable_model_file(tmp_path, clip, shots, make):
    model = tmp_path / "m.keras"
    make(model)
    out, outputs = _run("image", model, tmp_path, clip, shots)
    one_line_error(out, 1, "m.keras")
    nothing_written(tmp_path / "out", *outputs)


def test_h5_file_is_refused_with_a_hint(tmp_path, clip, shots):
    h5 = tmp_path / "old.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n")
    out, _ = _run("image", h5, tmp_path, clip, shots)
    one_line_error(out, 1, ".keras")


def test_unknown_model_name(tmp_path, clip, shots):
    out, _ = _run("video", "alexnet", tmp_path, clip, shots)
    one_line_error(out, 1, "unknown model", "efficientnet_lite0")


@pytest.mark.parametrize("command", ["image", "video", "frames"])
def test_class_out_of_range_is_usage_error(tmp_path, clip, shots, command):
    out, outputs = _run(command, tiny_keras(), tmp_path, clip, shots, "--class", "7")
    one_line_error(out, 2, "7")
    nothing_written(tmp_path / "out", *outputs)


def test_model_with_two_inputs(tmp_path, clip, shots):
    import keras
    from keras import layers

    a, b = keras.Input((32, 32, 3)), keras.Input((4,))
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(a))
    model = keras.Model([a, b], layers.Dense(2, activation="softmax")(layers.Concatenate()([x, b])))
    path = session_dir() / "two_inputs.keras"
    model.save(path)
    out, _ = _run("image", path, tmp_path, clip, shots)
    one_line_error(out, 1, "single-input")


def test_model_without_fixed_size_and_metadata(tmp_path, clip, shots):
    import keras
    from keras import layers

    inp = keras.Input((None, None, 3))
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, name="conv")(inp))
    path = session_dir() / "any_size.keras"
    keras.Model(inp, layers.Dense(2, activation="softmax")(x)).save(path)
    out, _ = _run("image", path, tmp_path, clip, shots)
    one_line_error(out, 1, "input size")


def test_evaluate_folders_that_are_not_the_models_classes(tmp_path):
    data = tmp_path / "data"
    for name in ("cat", "dog"):
        (data / name).mkdir(parents=True)
        write_png(data / name / "0.png", pattern())
    out = run_cli("evaluate", tiny_keras(), data, "-o", tmp_path / "report")
    one_line_error(out, 1, "not classes of the model")
    nothing_written(tmp_path / "report", "report.html", "metrics.json")


def test_evaluate_lambda_model(tmp_path):
    data = tmp_path / "data"
    for name in ("class 0", "class 1"):
        (data / name).mkdir(parents=True)
        write_png(data / name / "0.png", pattern())
    out = run_cli("evaluate", lambda_keras(), data, "-o", tmp_path / "report")
    one_line_error(out, 1, "--unsafe")
    nothing_written(tmp_path / "report", "report.html", "metrics.json")
    shutil.rmtree(tmp_path / "report", ignore_errors=True)
