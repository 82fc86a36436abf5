"""`vidcam image` and `vidcam models` through the real CLI (CliRunner and one real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import pytest
from conftest import CHELSEA, DOG, ROOT
from typer.testing import CliRunner

from vidcam.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, code):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    err = result.stderr.strip().splitlines()
    assert err and all(line.startswith("vidcam: error:") for line in err)
    return result.stderr


def test_image_prints_top3_and_writes_picture(tmp_path):
    r = invoke("image", CHELSEA, "-o", tmp_path)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == str(CHELSEA)
    assert [line.split(".", 1)[1].rsplit(" ", 1)[0].strip() for line in lines[1:4]] == [
        "tiger cat", "Egyptian cat", "tabby"]
    assert abs(float(lines[1].split()[-1]) - 0.386) < 0.01
    out = tmp_path / "chelsea_output.jpg"
    pic = cv2.imread(str(out))
    assert pic.shape == (300, 902, 3)  # original | heatmap
    assert not list(tmp_path.glob(".*part*"))


def test_image_json_lines_and_batch(tmp_path):
    r = invoke("image", CHELSEA, DOG, "-o", tmp_path, "--json", "--top", "5", "--layout", "overlay")
    assert r.exit_code == 0, r.output
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["path"] for o in objs] == [str(CHELSEA), str(DOG)]
    for o in objs:
        preds = o["predictions"]
        assert len(preds) == 5 and set(preds[0]) == {"class_id", "label", "probability"}
        probs = [p["probability"] for p in preds]
        assert probs == sorted(probs, reverse=True)
    assert objs[1]["predictions"][0]["label"] in {"malamute", "German shepherd"}
    assert cv2.imread(str(tmp_path / "dog_output.jpg")).shape == (576, 768, 3)  # overlay keeps the size


def test_glob_and_skipped_file_exit_3(tmp_path):
    (tmp_path / "a.png").write_bytes(CHELSEA.read_bytes())
    (tmp_path / "b.png").write_bytes(b"garbage")
    r = invoke("image", str(tmp_path / "*.png"), "-o", tmp_path / "out")
    assert r.exit_code == 3, r.output
    assert "a.png" in r.stdout and "b.png" in r.stderr
    assert (tmp_path / "out" / "a_output.jpg").exists() and not (tmp_path / "out" / "b_output.jpg").exists()


def test_existing_output_needs_overwrite(tmp_path):
    assert invoke("image", CHELSEA, "-o", tmp_path).exit_code == 0
    r = invoke("image", CHELSEA, "-o", tmp_path)
    assert r.exit_code == 1 and "--overwrite" in r.stderr
    assert invoke("image", CHELSEA, "-o", tmp_path, "--overwrite").exit_code == 0


@pytest.mark.parametrize(
    "args,code,needle",
    [
        (["missing.jpg"], 1, "no such file"),
        ([CHELSEA, "--model", "alexnet"], 1, "unknown model"),
        ([CHELSEA, "--layer", "nope"], 1, "valid layers"),
        ([CHELSEA, "--method", "lime"], 2, "--method"),
        ([CHELSEA, "--colormap", "rainbow"], 2, "--colormap"),
        ([CHELSEA, "--model", "resnet50"], 1, "resnet50_weights_tf_dim_ordering_tf_kernels.h5"),
        ([CHELSEA, "--class", "5000"], 2, "out of range"),
    ],
)
def test_bad_input_one_line_errors(tmp_path, monkeypatch, args, code, needle):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.chdir(tmp_path)
    r = invoke("image", *args, "-o", tmp_path / "o")
    assert needle in one_line_error(r, code)


def test_not_an_image(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_text("hello")
    r = invoke("image", bad, "-o", tmp_path)
    assert "not an image" in one_line_error(r, 1)


def test_models_table_and_json():
    r = invoke("models")
    assert r.exit_code == 0
    assert "efficientnet_lite0 (default)" in r.stdout and "available" in r.stdout and "vgg16" in r.stdout
    rows = [json.loads(line) for line in invoke("models", "--json").stdout.splitlines()]
    assert {row["name"].split()[0] for row in rows} >= {"efficientnet_lite0", "mobilenet", "resnet50"}


def test_usage_error_exit_2():
    r = invoke("image")
    assert r.exit_code == 2


def test_python_dash_m_runs_quietly(tmp_path):
    """A real process: `python -m vidcam image`, stderr free of TensorFlow start-up noise."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    p = subprocess.run([sys.executable, "-m", "vidcam", "image", str(CHELSEA), "-o", str(tmp_path), "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["predictions"][0]["label"] == "tiger cat"
    assert p.stderr.strip() == ""


def test_version_and_help():
    import vidcam

    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"vidcam {vidcam.__version__}"
    r = invoke("--help")
    assert r.exit_code == 0
    for command in ("video", "image", "frames", "train", "evaluate", "compare", "models", "info", "methods"):
        assert command in r.stdout
