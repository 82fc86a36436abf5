"""Training mode: `vidcam train` and `vidcam evaluate` on a small generated two-class image set.

One real model is trained once per module (EfficientNet-Lite0 base at 64x64, 2 epochs) and shared: reloading,
heatmaps through its nested base (`vidcam image` and `vidcam video`), the evaluation report. Bad data is
checked to fail before any training, with one line.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from vidcam.cli import app
from vidcam.errors import InputError, OutputError, UsageError
from vidcam.jobs.train import TrainOptions

runner = CliRunner()
SIZE = 64
MISLABELLED = ("mislabelled_0.png", "mislabelled_1.png")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    err = result.stderr.strip().splitlines()
    assert err and all(line.startswith("vidcam: error:") for line in err), result.stderr
    return result.stderr


def picture(cls: str, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """An RGB picture a model can tell apart by class: ``cat`` = a warm disc on a dark background,
    ``dog`` = a cool square on a light one (positions, sizes, colours and noise vary)."""
    bg = rng.integers(0, 80, 3) if cls == "cat" else rng.integers(150, 256, 3)
    img = np.clip(bg + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    cx, cy = (int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
    r = int(rng.integers(size // 8, size // 4))
    if cls == "cat":
        color = (int(rng.integers(200, 256)), int(rng.integers(60, 160)), int(rng.integers(0, 60)))
        cv2.circle(img, (cx, cy), r, color, -1)
    else:
        color = (int(rng.integers(0, 60)), int(rng.integers(60, 160)), int(rng.integers(200, 256)))
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), color, -1)
    return img


def write_class(folder: Path, cls: str, n: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ext = ".jpg" if i % 2 else ".png"  # both decoders
        cv2.imwrite(str(folder / f"{cls}.{i:03d}{ext}"), picture(cls, rng)[..., ::-1])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The Kaggle layout: train/{cat,dog} (32 each) and val/{cat,dog} (12 each), plus the book's real-world dirt:
    two dog pictures filed under val/cat (mislabelled), a corrupt JPEG and a stray text file in train/."""
    root = tmp_path_factory.mktemp("cats_dogs")
    rng = np.random.default_rng(2024)
    for split, n in (("train", 32), ("val", 12)):
        for cls in ("cat", "dog"):
            write_class(root / split / cls, cls, n, rng)
    for name in MISLABELLED:
        cv2.imwrite(str(root / "val" / "cat" / name), picture("dog", rng)[..., ::-1])
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (root / "train" / "dog" / "notes.txt").write_text("not a picture")
    (root / "train" / "dog" / ".DS_Store").write_bytes(b"\0\0")  # hidden: ignored, not reported
    return root


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """Train once for the whole module: (TrainResult, events)."""
    from vidcam.jobs.train import train_classifier

    events = []
    out = tmp_path_factory.mktemp("model") / "cats_dogs.keras"
    result = train_classifier(data_dir, out, progress=events.append, options=TrainOptions(img_size=SIZE, epochs=2,
                              batch_size=16))
    return result, events


# -- training ------------------------------------------------------------------------------------------------


def test_training_learns_the_two_classes(trained):
    result, _ = trained
    assert result.class_names == ["cat", "dog"]
    assert result.train_images == 64 and result.val_images == 26
    # 24 of the 26 validation pictures are labelled right: chance is 0.5, a working model gets close to 24/26.
    assert result.val_accuracy >= 0.8
    assert len(result.history["loss"]) == 2 and set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert result.best_epoch == int(np.argmin(result.history["val_loss"])) + 1


def test_bad_files_are_reported_before_training_starts(trained):
    result, events = trained
    stages = [e.stage for e in events]
    skips = [e.message for e in events if e.stage == "skip"]
    assert len(skips) == 2 and any("broken.jpg" in m for m in skips) and any("notes.txt" in m for m in skips)
    assert max(i for i, s in enumerate(stages) if s == "skip") < stages.index("epoch")
    assert sorted(Path(s.path).name for s in result.skipped) == ["broken.jpg", "notes.txt"]
    assert not any(".DS_Store" in m for m in skips)
    epochs = [e for e in events if e.stage == "epoch"]
    assert [e.epoch for e in epochs] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(epochs[0].metrics)
    assert stages[-1] == "saved"


def test_saved_file_carries_its_metadata_and_curves(trained):
    result, _ = trained
    with zipfile.ZipFile(result.path) as z:
        meta = json.loads(z.read("vidcam.json"))
    assert meta["class_names"] == ["cat", "dog"]
    assert meta["input_size"] == [SIZE, SIZE] and meta["preprocess"] == "lite"
    assert meta["output"] == "softmax" and meta["fit"] == "squash" and meta["base"] == "efficientnet_lite0"
    assert meta["default_layer"] == "efficientnet_lite0/top_activation"
    curves = cv2.imread(str(result.curves))
    assert result.curves == result.path.with_name("cats_dogs_curves.png")
    assert curves.shape == (420, 1280, 3)
    # Both panels hold the train (blue) and val (orange) lines: look for their colours (BGR on disk).
    for bgr in ((180, 119, 31), (14, 127, 255)):
        for panel in (curves[:, :640], curves[:, 640:]):
            assert np.sum(np.all(np.abs(panel.astype(int) - bgr) < 30, axis=2)) > 50
    assert not list(result.path.parent.glob(".*part*"))


def test_reloaded_model_gives_the_same_probabilities_and_maps(trained, data_dir):
    import keras

    from vidcam.cam.engine import CamEngine
    from vidcam.media.images import fit_to_model, read_image
    from vidcam.models.zoo import load_classifier

    result, _ = trained
    loaded = load_classifier(result.path)
    assert loaded.class_names == ["cat", "dog"] and loaded.input_size == (SIZE, SIZE)
    assert (loaded.preprocess, loaded.output, loaded.fit) == ("lite", "softmax", "squash")
    # The book's shape: the base is one (nested) layer; augmentation is not part of the inference model.
    nested = [layer for layer in loaded.model.layers if isinstance(layer, keras.Model)]
    assert [m.name for m in nested] == ["efficientnet_lite0"]
    assert not [layer.name for layer in loaded.model.layers if layer.name.startswith("random")]
    files = sorted((data_dir / "val" / "cat").glob("cat.*"))[:3] + sorted((data_dir / "val" / "dog").iterdir())[:3]
    frames = np.stack([fit_to_model(read_image(f), (SIZE, SIZE), "squash")[0] for f in files])
    fresh, mem = CamEngine(loaded).run(frames), CamEngine(result.classifier).run(frames)
    np.testing.assert_allclose(fresh.probabilities, mem.probabilities, atol=1e-5)
    np.testing.assert_allclose(fresh.cams, mem.cams, atol=1e-4)
    assert fresh.class_ids.tolist() == [0, 0, 0, 1, 1, 1]


def test_heatmap_goes_through_the_nested_base(trained):
    from vidcam.cam.engine import CamEngine

    result, _ = trained
    engine = CamEngine(result.classifier)
    assert engine.layer_name == "efficientnet_lite0/top_activation"
    rng = np.random.default_rng(5)
    frames = np.stack([picture("cat", rng), picture("dog", rng)])
    r = engine.run(frames)
    assert r.cams.shape == (2, 2, 2)  # 64 / 32
    assert np.allclose(r.cams.max(axis=(1, 2)), 1.0, atol=1e-4) and np.all(r.cams.min(axis=(1, 2)) < 0.99)


def test_training_and_inference_preprocess_the_same_way(trained, data_dir, tmp_path):
    """The validation loss Keras measured in training equals the cross-entropy of the probabilities inference
    computes (read_image -> squash -> in-graph preprocessing) on the same files: same pixels, same model."""
    from vidcam.jobs.evaluate import evaluate_classifier

    result, _ = trained
    r = evaluate_classifier(result.path, data_dir, tmp_path / "report")
    with open(tmp_path / "report" / "predictions.csv", newline="") as f:
        p_true = np.array([float(row["probability_true"]) for row in csv.DictReader(f)])
    assert len(p_true) == result.val_images == r.images
    loss = float(np.mean(-np.log(np.clip(p_true, 1e-7, 1.0))))
    assert loss == pytest.approx(result.val_loss, rel=1e-3, abs=1e-5)
    assert r.accuracy == pytest.approx(result.val_accuracy, abs=1e-6)


# -- using the trained model from the CLI ------------------------------------------------------------------------


def test_image_cli_uses_the_trained_model_with_no_other_flag(trained, data_dir, tmp_path):
    result, _ = trained
    files = [data_dir / "val" / "cat" / "cat.000.png", data_dir / "val" / "dog" / "dog.001.jpg"]
    r = invoke("image", *files, "--model", result.path, "-o", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["predictions"][0]["label"] for o in objs] == ["cat", "dog"]
    assert all(len(o["predictions"]) == 2 for o in objs)  # --top 3 is capped at the model's two classes
    for f, o in zip(files, objs):
        out = cv2.imread(o["output"])
        original = cv2.imread(str(f))
        assert out.shape == (SIZE, 2 * SIZE, 3)  # original | heatmap
        heat = out[:, SIZE:].astype(int) - original.astype(int)
        assert np.abs(heat).mean() > 10  # the right half is coloured by the heatmap


def _clip(path: Path, frames: list[np.ndarray], fps: int = 8) -> Path:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True, timeout=120)
    return path


def test_video_cli_overlays_the_trained_model(trained, tmp_path):
    result, _ = trained
    rng = np.random.default_rng(9)
    cat = cv2.resize(picture("cat", rng), (128, 128), interpolation=cv2.INTER_NEAREST)
    dog = cv2.resize(picture("dog", rng), (128, 128), interpolation=cv2.INTER_NEAREST)
    clip = _clip(tmp_path / "clip.mp4", [cat] * 8 + [dog] * 8)
    out, labels = tmp_path / "clip_heatmap.mp4", tmp_path / "labels.csv"
    r = invoke("video", clip, "--model", result.path, "-o", out, "--labels-out", labels, "--quiet")
    assert r.exit_code == 0, r.output
    with open(labels, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16
    assert [row["label"] for row in rows] == ["cat"] * 8 + ["dog"] * 8
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (128, 128, 3)


def test_train_cli_val_split_sigmoid_head_and_fine_tuning(tmp_path):
    """The CLI end to end on one folder of class folders: --val-split, the binary sigmoid head, a fine-tuning phase."""
    from vidcam.models.zoo import load_classifier

    rng = np.random.default_rng(77)
    for cls in ("cat", "dog"):
        write_class(tmp_path / "flat" / cls, cls, 16, rng)
    out = tmp_path / "binary.keras"
    r = invoke("train", tmp_path / "flat", "-o", out, "--img-size", 32, "--epochs", 1, "--batch", 8,
               "--val-split", 0.25, "--head", "sigmoid", "--fine-tune", 8, "--flip")
    assert r.exit_code == 0, r.output
    assert "24 training and 8 validation files (split)" in r.stdout
    assert re.search(r"fine-tuning the top 8 layers of efficientnet_lite0 \(\d+ with trainable weights\)", r.stdout)
    assert "head epoch 1/1" in r.stdout and "fine-tune epoch 1/1" in r.stdout
    clf = load_classifier(out)
    assert clf.output == "sigmoid" and clf.class_names == ["cat", "dog"] and clf.model.outputs[0].shape[-1] == 1
    assert clf.extra["training"]["epochs_run"] == 2 and clf.extra["head"] == "sigmoid"
    base = clf.model.get_layer("efficientnet_lite0")
    trainable = [layer.name for layer in base.layers if layer.trainable and layer.weights]
    assert trainable and all(name in [la.name for la in base.layers[-8:]] for name in trainable)
    assert "bn" not in "".join(trainable)  # BatchNormalization stays frozen
    # One sigmoid unit reads as two classes: [1 - p, p] from the engine, the same p the model outputs.
    from vidcam.cam.engine import CamEngine
    from vidcam.models.preprocess import preprocess_pixels

    frames = np.stack([picture("cat", rng, 32), picture("dog", rng, 32)])
    p = clf.model(preprocess_pixels(frames, "lite"), training=False).numpy()[:, 0]
    res = CamEngine(clf).run(frames)
    np.testing.assert_allclose(res.probabilities, np.stack([1 - p, p], axis=1), atol=1e-5)
    # The same split is what `evaluate --val-split` looks at.
    r = invoke("evaluate", out, tmp_path / "flat", "-o", tmp_path / "report", "--val-split", 0.25)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("8 images, accuracy ")
    # Existing outputs are refused without --overwrite.
    r = invoke("train", tmp_path / "flat", "-o", out, "--img-size", 32, "--val-split", 0.25)
    assert "already exists" in one_line_error(r, 1)


# -- evaluation ------------------------------------------------------------------------------------------------


def test_evaluate_writes_the_report(trained, data_dir, tmp_path):
    result, _ = trained
    report = tmp_path / "report"
    r = invoke("evaluate", result.path, data_dir, "-o", report, "--threshold", 0.9)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].startswith("26 images, accuracy ")
    assert "threshold 0.9: answers " in r.stdout
    m = json.loads((report / "metrics.json").read_text())
    cm = np.array(m["confusion_matrix"]["matrix"])
    assert m["confusion_matrix"]["labels"] == ["cat", "dog"] and cm.sum() == 26 and cm.sum(axis=1).tolist() == [14, 12]
    assert m["accuracy"] == pytest.approx(np.trace(cm) / 26)
    assert m["per_class"]["cat"]["support"] == 14
    assert m["per_class"]["dog"]["precision"] == pytest.approx(cm[1, 1] / cm[:, 1].sum())
    assert m["per_class"]["cat"]["recall"] == pytest.approx(cm[0, 0] / 14)
    # The mislabelled pictures are dogs filed as cats: the model calls them dogs, confidently and "wrong".
    wrong = m["grids"]["dog"]["confidently_wrong"]["items"]
    assert {Path(i["path"]).name for i in wrong} >= set(MISLABELLED)
    assert all(i["true"] == "cat" for i in wrong)
    most = m["grids"]["cat"]["most_confident"]["items"]
    assert len(most) == 10
    assert [i["probability"] for i in most] == sorted((i["probability"] for i in most), reverse=True)
    least = m["grids"]["cat"]["least_confident"]["items"]
    assert [i["probability"] for i in least] == sorted(i["probability"] for i in least)
    t = m["threshold"]
    assert t["threshold"] == 0.9 and 0 <= t["coverage"] <= 1 and t["answered"] + t["withheld"] == 26
    coverage = [row["coverage"] for row in m["thresholds"]]
    assert coverage == sorted(coverage, reverse=True)
    page = (report / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert "confusion_matrix.png" in images
    grids = [i for i in images if i != "confusion_matrix.png"]
    assert len(grids) == 6 and all(not Path(i).is_absolute() for i in images)
    for name in images:
        png = cv2.imread(str(report / name))
        assert png is not None and png.shape[0] > 100
    # The least confident and the confidently wrong grids show each image beside its heatmap for the class:
    # cells twice as wide, and the heat's saturated colours (the pictures themselves are a disc or a square).
    for key in ("most_confident", "least_confident", "confidently_wrong"):
        assert m["grids"]["dog"][key]["heatmaps"] == (key != "most_confident")
    plain = cv2.imread(str(report / m["grids"]["dog"]["most_confident"]["image"]))
    heat = cv2.imread(str(report / m["grids"]["dog"]["confidently_wrong"]["image"]))
    assert heat.shape[1] > 1.8 * plain.shape[1]
    assert f'src="{m["grids"]["dog"]["confidently_wrong"]["image"]}"' in page and "beside its heatmap" in page
    assert not list(tmp_path.glob(".*part*"))
    # A second run refuses to write into the filled folder unless told to.
    r = invoke("evaluate", result.path, data_dir, "-o", report)
    assert "--overwrite" in one_line_error(r, 1)
    r = invoke("evaluate", result.path, data_dir, "-o", report, "--overwrite", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["images"] == 26


def test_unicode_class_names_in_the_curves_grids_confusion_matrix_and_banner(tmp_path):
    """A training run with class folders ``Kätzchen`` and ``café``: their names are drawn as written in the
    training curves, the evaluation's confusion matrix and grids, and the video banner of the trained model
    (each found in the pictures' pixels, where OpenCV's fonts drew ``?``)."""
    from textmatch import text_score

    from vidcam.jobs.evaluate import evaluate_classifier
    from vidcam.jobs.train import train_classifier
    from vidcam.media.render import label_size
    from vidcam.media.text import text_mask

    rng = np.random.default_rng(11)
    for cls, name in (("cat", "Kätzchen"), ("dog", "café")):
        write_class(tmp_path / "data" / name, cls, 8, rng)
    result = train_classifier(tmp_path / "data", tmp_path / "m.keras", options=TrainOptions(
        img_size=32, epochs=1, batch_size=8, val_split=0.25))
    assert result.class_names == ["Kätzchen", "café"]
    curves = cv2.imread(str(result.curves))[..., ::-1]
    assert text_score(curves, "Kätzchen, café", 11) > 0.95 > 0.9 > text_score(curves, "K?tzchen, caf?", 11)
    r = evaluate_classifier(result.path, tmp_path / "data", tmp_path / "report")
    cm = cv2.imread(str(tmp_path / "report" / "confusion_matrix.png"))[..., ::-1]
    for name, ascii_ in (("Kätzchen", "K?tzchen"), ("café", "caf?")):
        assert text_score(cm, name, 10) > 0.95 > 0.9 > text_score(cm, ascii_, 10)
    for name, files in r.metrics["grids"].items():
        for key, grid in files.items():
            png = cv2.imread(str(tmp_path / "report" / grid["image"]))[..., ::-1]
            assert text_score(png, f"{name}:", 12) > 0.95, (name, key)  # the title starts with the class
    # The video banner of that model: the name's glyphs (FreeType's own mask) are found in the decoded frame.
    clip = _clip(tmp_path / "clip.mp4", [cv2.resize(picture("cat", rng), (640, 480))] * 4)
    run = invoke("video", clip, "--model", result.path, "-o", tmp_path / "out.mp4", "--class", 0, "--quiet")
    assert run.exit_code == 0, run.output
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    banner = frame[:80, :400].mean(axis=2).astype(np.float32)

    def found(text: str) -> float:
        return float(cv2.matchTemplate(banner, text_mask(text, label_size(640, 480)).astype(np.float32),
                                       cv2.TM_CCOEFF_NORMED).max())

    assert found("Kätzchen") > 0.9 and found("Kätzchen") > found("K?tzchen") + 0.1


def test_evaluate_rejects_folders_that_are_not_model_classes(trained, tmp_path):
    result, _ = trained
    rng = np.random.default_rng(3)
    write_class(tmp_path / "data" / "cat", "cat", 2, rng)
    write_class(tmp_path / "data" / "horse", "dog", 2, rng)
    with pytest.raises(InputError, match="horse .*not classes of the model"):
        from vidcam.jobs.evaluate import evaluate_classifier

        evaluate_classifier(result.path, tmp_path / "data", tmp_path / "report")
    assert not (tmp_path / "report").exists()


# -- bad data and bad arguments: one clear line, before any training -----------------------------------------------


def _folders(root: Path, spec: dict[str, int]) -> Path:
    rng = np.random.default_rng(1)
    for rel, n in spec.items():
        d = root / rel
        d.mkdir(parents=True, exist_ok=True)
        write_class(d, "cat" if "cat" in rel else "dog", n, rng)
    return root


@pytest.mark.parametrize(
    ("spec", "extra", "code", "message"),
    [
        ({"train/cat": 2, "val/cat": 2}, [], 1, "only one class folder"),
        ({"train/cat": 2, "train/dog": 0, "val/cat": 2, "val/dog": 2}, [], 1, "has no images"),
        ({"train/cat": 2, "train/dog": 2, "val/cat": 2, "val/bird": 2}, [], 1, "different class folders"),
        ({"cat": 3, "dog": 3}, [], 1, "pass --val-split"),
        ({"train/cat": 2, "train/dog": 2}, [], 1, "no val/"),
        ({"cat": 1, "dog": 3}, ["--val-split", 0.2], 1, "splitting needs at least two"),
        ({"train/cat": 2, "train/dog": 2, "val/cat": 2, "val/dog": 2}, ["--val-split", 0.2], 2, "drop --val-split"),
        ({"cat": 3, "dog": 3}, ["--val-split", 1.5], 2, "between 0 and 1"),
        ({"cat": 3, "dog": 3, "cow": 3}, ["--val-split", 0.3, "--head", "sigmoid"], 2, "two-class head"),
        ({}, [], 1, "has no train/ and val/ folders"),
        ({}, ["--val-split", 0.2], 1, "no class folders"),
    ],
)
def test_bad_layouts_fail_before_training(tmp_path, spec, extra, code, message):
    root = _folders(tmp_path / "data", spec)
    root.mkdir(exist_ok=True)
    r = invoke("train", root, "-o", tmp_path / "m.keras", "--img-size", 32, *extra)
    assert message in one_line_error(r, code)
    assert not (tmp_path / "m.keras").exists() and not (tmp_path / "m_curves.png").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-o", "m.h5"], 2, "must end in .keras"),
        (["-o", "m.keras", "--img-size", 16], 2, "at least 32"),
        (["-o", "m.keras", "--epochs", 0], 2, "--epochs must be at least 1"),
        (["-o", "m.keras", "--fine-tune", -1], 2, "--fine-tune"),
        (["-o", "m.keras", "--head", "tanh"], 2, "--head must be one of softmax, sigmoid, multilabel"),
        (["-o", "m.keras", "--base", "alexnet"], 2, "unknown base 'alexnet'"),
    ],
)
def test_bad_train_arguments(tmp_path, args, code, message):
    root = _folders(tmp_path / "data", {"train/cat": 2, "train/dog": 2, "val/cat": 2, "val/dog": 2})
    args = [tmp_path / a if str(a).endswith((".keras", ".h5")) else a for a in args]
    assert message in one_line_error(invoke("train", root, *args), code)


def test_a_class_with_no_readable_image_fails_before_training(tmp_path):
    from vidcam.jobs.train import train_classifier

    root = _folders(tmp_path / "data", {"train/cat": 2, "val/cat": 2, "val/dog": 2})
    (root / "train" / "dog").mkdir()
    (root / "train" / "dog" / "a.jpg").write_bytes(b"garbage")
    events = []
    with pytest.raises(InputError, match="no readable training images of class dog"):
        train_classifier(root, tmp_path / "m.keras", progress=events.append, options=TrainOptions(img_size=32))
    assert "epoch" not in [e.stage for e in events] and [e.stage for e in events].count("skip") == 1


def test_missing_data_folder_and_existing_output(tmp_path):
    from vidcam.jobs.train import train_classifier

    with pytest.raises(InputError, match="does not exist"):
        train_classifier(tmp_path / "nope", tmp_path / "m.keras")
    (tmp_path / "m_curves.png").write_bytes(b"x")
    with pytest.raises(OutputError, match="already exists"):
        train_classifier(tmp_path, tmp_path / "m.keras")
    with pytest.raises(UsageError):
        train_classifier(tmp_path, tmp_path / "m.keras", options=TrainOptions(patience=-1))


def test_split_is_reproducible_and_shared_with_evaluation(tmp_path):
    from vidcam.jobs.dataset import find_eval_images, find_images

    root = _folders(tmp_path / "data", {"cat": 10, "dog": 7})
    a = find_images(root, val_split=0.3, seed=5)
    assert find_images(root, val_split=0.3, seed=5).val == a.val
    assert find_images(root, val_split=0.3, seed=6).val != a.val
    assert [sum(1 for _, y in a.val if y == c) for c in (0, 1)] == [3, 2]  # per class, rounded
    assert not set(a.val) & set(a.train) and len(a.val) + len(a.train) == 17
    assert find_eval_images(root, ["cat", "dog"], val_split=0.3, seed=5).val == a.val


def test_multilabel_head_has_one_sigmoid_per_class():
    from vidcam.jobs.train import _build

    model, base = _build("efficientnet_lite0", 32, 3, "multilabel")
    assert model.outputs[0].shape[-1] == 3 and model.layers[-1].activation.__name__ == "sigmoid"
    assert base.trainable is False


def test_evaluate_refuses_a_report_inside_the_data(trained, data_dir):
    result, _ = trained
    r = invoke("evaluate", result.path, data_dir, "-o", data_dir / "val" / "cat" / "report", "--overwrite")
    assert "inside the data folder" in one_line_error(r, 2)
    assert not (data_dir / "val" / "cat" / "report").exists()
