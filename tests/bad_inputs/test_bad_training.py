"""Training and evaluation data: layouts that cannot train a classifier fail before any training, with one
line; corrupt images among good ones are skipped and reported (exit 3); an existing model is never replaced
without --overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_support import leftovers, nothing_written, one_line_error, pattern, run_cli, skipped_run, tiny_keras, write_png

pytestmark = pytest.mark.timeout(300)


def _layout(root: Path, spec: dict[str, int]) -> Path:
    """``{"train/cat": 3, "val/dog": 0, ...}``: folders with that many small PNGs (0: an empty folder)."""
    for k, (sub, n) in enumerate(spec.items()):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_png(root / sub / f"{i}.png", pattern(seed=100 * k + i))
    return root


def _train(data: Path, out: Path, *extra):
    return run_cli("train", data, "-o", out / "m.keras", "--epochs", "1", "--img-size", "32", "--batch", "4", *extra)


FAST_FAILURES = {
    "empty_class": ({"train/cat": 3, "train/dog": 0, "val/cat": 1, "val/dog": 1}, (), 1, "no images"),
    "one_class": ({"train/cat": 3, "val/cat": 2}, (), 1, "only one class"),
    "class_mismatch": ({"train/cat": 2, "train/dog": 2, "val/cat": 1, "val/bird": 1}, (), 1, "different class"),
    "no_val": ({"train/cat": 2, "train/dog": 2}, (), 1, "no val/"),
    "flat_without_split": ({"cat": 2, "dog": 2}, (), 1, "--val-split"),
    "split_of_one_image": ({"cat": 1, "dog": 3}, ("--val-split", "0.5"), 1, "only 1 image"),
    "no_classes": ({"train": 0, "val": 0}, (), 1, "class folders"),
    "bad_val_split": ({"cat": 3, "dog": 3}, ("--val-split", "1.5"), 2, "--val-split"),
    "zero_epochs": ({"train/cat": 2, "train/dog": 2, "val/cat": 1, "val/dog": 1}, ("--epochs", "0"), 2, "--epochs"),
}


@pytest.mark.parametrize("case", list(FAST_FAILURES))
def test_training_data_that_cannot_train(tmp_path, case):
    spec, extra, code, needle = FAST_FAILURES[case]
    data = _layout(tmp_path / "data", spec)
    out = _train(data, tmp_path / "out", *extra)
    one_line_error(out, code, needle)
    nothing_written(tmp_path / "out", "m.keras", "m_curves.png")


def test_model_name_must_be_keras(tmp_path):
    data = _layout(tmp_path / "data", {"train/cat": 2, "train/dog": 2, "val/cat": 1, "val/dog": 1})
    out = run_cli("train", data, "-o", tmp_path / "m.h5", "--epochs", "1")
    one_line_error(out, 2, ".keras")
    assert not (tmp_path / "m.h5").exists()


def test_existing_model_is_kept_without_overwrite(tmp_path):
    data = _layout(tmp_path / "data", {"train/cat": 2, "train/dog": 2, "val/cat": 1, "val/dog": 1})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "m.keras").write_bytes(b"last week's model")
    one_line_error(_train(data, tmp_path / "out"), 1, "--overwrite")
    assert (tmp_path / "out" / "m.keras").read_bytes() == b"last week's model"
    assert leftovers(tmp_path / "out") == []


def test_all_images_of_a_class_corrupt(tmp_path):
    data = _layout(tmp_path / "data", {"train/cat": 2, "train/dog": 0, "val/cat": 1, "val/dog": 1})
    for i in range(2):
        (data / "train" / "dog" / f"{i}.jpg").write_bytes(b"\xff\xd8 not really")
    out = _train(data, tmp_path / "out")
    assert out.code == 1 and out.exception is None and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert all(line.startswith("vidcam: error: ") for line in lines)
    assert "dog" in lines[-1]
    nothing_written(tmp_path / "out", "m.keras", "m_curves.png")


def test_corrupt_images_among_good_ones_are_skipped(tmp_path):
    """A real (tiny) training run: broken files are reported up front, the rest trains, exit 3."""
    data = _layout(tmp_path / "data", {"train/cat": 4, "train/dog": 4, "val/cat": 2, "val/dog": 2})
    (data / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (data / "val" / "dog" / "empty.png").write_bytes(b"")
    (data / "train" / "dog" / "notes.txt").write_text("not an image: reported too")
    out = _train(data, tmp_path / "out")
    lines = skipped_run(out, "broken.jpg", "empty.png", "notes.txt")
    assert lines[-1] == "vidcam: error: 3 files skipped"
    assert "8 training, 4 validation images" in out.stdout
    assert (tmp_path / "out" / "m.keras").stat().st_size > 0
    assert leftovers(tmp_path / "out") == []


# -- evaluation data ----------------------------------------------------------------------------------------


def test_evaluate_empty_and_missing_class_folders(tmp_path):
    data = _layout(tmp_path / "data", {"val/thing0": 0, "val/thing1": 0})
    one_line_error(run_cli("evaluate", tiny_keras(), data, "-o", tmp_path / "report"), 1, "no images")
    nothing_written(tmp_path / "report", "report.html", "metrics.json")


def test_evaluate_skips_corrupt_images(tmp_path):
    data = _layout(tmp_path / "data", {"thing0": 2, "thing1": 2, "thing2": 1})
    (data / "thing1" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    out = run_cli("evaluate", tiny_keras(), data, "-o", tmp_path / "report")
    skipped_run(out, "bad.png")
    assert (tmp_path / "report" / "report.html").is_file()
    assert leftovers(tmp_path / "report") == []


def test_evaluate_into_a_folder_that_is_not_empty(tmp_path):
    data = _layout(tmp_path / "data", {"thing0": 1, "thing1": 1, "thing2": 1})
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "notes.md").write_text("mine")
    one_line_error(run_cli("evaluate", tiny_keras(), data, "-o", tmp_path / "report"), 1, "--overwrite")
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["notes.md"]
