"""`vidcam frames`: real frame folders (extracted by the real ffmpeg), a real tiny Keras model, real kills."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import decoded_frames, make_clip, run, save_tiny_keras
from conftest import classifier_for
from typer.testing import CliRunner

from vidcam import FramesOptions, RenderOptions
from vidcam.errors import InputError, UsageError
from vidcam.jobs.frames import JOURNAL_NAME, label_frames, list_frames, natural_key, parse_rate
from vidcam.media.probe import probe


@pytest.fixture(scope="module")
def engine(tiny_flat):
    from vidcam.cam.engine import CamEngine

    return CamEngine(classifier_for(tiny_flat, ["cat", "dog", "bird"]))


def extract(tmp: Path, n: int, name: str = "frames", size: str = "160x120") -> Path:
    """``n`` frames of a testsrc2 clip as frame1.jpg ... frameN.jpg (no zero padding: natural order matters)."""
    d = tmp / name
    d.mkdir()
    clip = make_clip(tmp / f"{name}.mp4", seconds=n / 25 + 0.2, audio=None, size=size)
    run("-i", clip, "-frames:v", n, "-start_number", "1", d / "frame%d.jpg")
    assert len(list(d.iterdir())) == n
    return d


def read_labels(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_natural_order_and_parse_rate(tmp_path):
    names = ["frame10.jpg", "frame2.jpg", "Frame1.png", "frame1.jpg", "frame100.jpg", "a.txt", ".hidden.jpg"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "sub.jpg").mkdir()
    got = [p.name for p in list_frames(tmp_path)]
    assert got == ["frame1.jpg", "Frame1.png", "frame2.jpg", "frame10.jpg", "frame100.jpg"]
    assert sorted(["x10", "x9", "x1"], key=natural_key) == ["x1", "x9", "x10"]
    assert parse_rate("25") == 25 and parse_rate("29.97") == Fraction(30000, 1001)
    assert parse_rate("30000/1001") == Fraction(30000, 1001)
    assert parse_rate("23.976") == Fraction(24000, 1001) and parse_rate("59.94") == Fraction(60000, 1001)
    assert parse_rate("12.5") == Fraction(25, 2) and parse_rate(30) == 30
    for bad in ("0", "-5", "abc", "1/0"):
        with pytest.raises(UsageError):
            parse_rate(bad)
    with pytest.raises(InputError, match="no images"):
        list_frames(tmp_path / "sub.jpg")
    with pytest.raises(InputError, match="not a folder"):
        list_frames(tmp_path / "a.txt")


def test_frames_with_one_corrupt_file_resume_force_and_video(engine, tmp_path):
    src = extract(tmp_path, 12)
    (src / "frame5.jpg").write_bytes(os.urandom(600))  # corrupt
    out = tmp_path / "res"
    skipped = []
    s = label_frames(src, out, model=engine, on_skip=lambda f, r: skipped.append(f),
                     options=FramesOptions(to_video=tmp_path / "v.mp4", fps="30000/1001"))
    assert (s.total, s.processed, s.reused) == (12, 11, 0)
    assert [f for f, _ in s.failed] == skipped == ["frame5.jpg"]
    assert "not an image" in s.failed[0][1]
    rows = read_labels(out / "labels.csv")
    # The same prediction columns as every vidcam CSV (class_id included), after the file and its result picture.
    assert list(rows[0]) == ["file", "result", "label", "probability", "class_id", "label_2", "probability_2",
                             "class_id_2", "label_3", "probability_3", "class_id_3"]
    assert rows[0]["result"] == "result_0001.jpg" and {r["class_id"] for r in rows} <= {"0", "1", "2"}
    assert [r["file"] for r in rows] == [f"frame{i}.jpg" for i in range(1, 13) if i != 5]  # natural order
    probs = [[float(r[k]) for k in ("probability", "probability_2", "probability_3")] for r in rows]
    assert all(p == sorted(p, reverse=True) and abs(sum(p) - 1) < 1e-3 for p in probs)  # 3 classes: sums to 1
    results = sorted(p.name for p in out.glob("result_*.jpg"))
    assert results == [f"result_{i:04d}.jpg" for i in range(1, 13) if i != 5]  # numbered by position
    assert cv2.imread(str(out / "result_0010.jpg")).shape == (120, 160, 3)
    # The assembled video: one frame per result, at the exact rate asked for.
    info = probe(tmp_path / "v.mp4")
    assert decoded_frames(tmp_path / "v.mp4") == 11 and info.fps == Fraction(30000, 1001)

    # Re-run: everything valid is reused, the corrupt file is reported again.
    s2 = label_frames(src, out, model=engine)
    assert (s2.processed, s2.reused, [f for f, _ in s2.failed]) == (0, 11, ["frame5.jpg"])
    assert read_labels(out / "labels.csv") == rows
    # A changed input, a truncated result and a repaired file are redone; the rest is not.
    cv2.imwrite(str(src / "frame5.jpg"), cv2.imread(str(src / "frame4.jpg")))
    os.utime(src / "frame3.jpg", ns=(1, 1))
    data = (out / "result_0007.jpg").read_bytes()
    (out / "result_0007.jpg").write_bytes(data[: len(data) // 2])
    s3 = label_frames(src, out, model=engine)
    assert (s3.processed, s3.reused, s3.failed) == (3, 9, [])
    assert [r["file"] for r in read_labels(out / "labels.csv")] == [f"frame{i}.jpg" for i in range(1, 13)]
    assert cv2.imread(str(out / "result_0007.jpg")) is not None
    # --force redoes everything; --json writes labels.jsonl.
    s4 = label_frames(src, out, model=engine, options=FramesOptions(force=True, json_lines=True))
    assert (s4.processed, s4.reused) == (12, 0)
    objs = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert [o["file"] for o in objs] == [f"frame{i}.jpg" for i in range(1, 13)]
    assert objs[0]["result"] == "result_0001.jpg" and len(objs[0]["predictions"]) == 3
    # Other settings make earlier results invalid.
    s5 = label_frames(src, out, model=engine, options=FramesOptions(render=RenderOptions(layout="side-by-side")))
    assert s5.processed == 12
    assert cv2.imread(str(out / "result_0001.jpg")).shape == (120, 320, 3)


def test_frames_bad_options(engine, tmp_path):
    src = extract(tmp_path, 2)
    with pytest.raises(UsageError, match="frame folder"):
        label_frames(src, src, model=engine)
    with pytest.raises(UsageError, match="must end in"):
        label_frames(src, tmp_path / "o", model=engine, options=FramesOptions(to_video=tmp_path / "v.gif"))
    s = label_frames(src, None, model=engine)
    assert s.output_dir == str(tmp_path / "frames_results") and s.processed == 2


@pytest.fixture(scope="module")
def tiny_keras(tiny_flat, tmp_path_factory):
    return save_tiny_keras(tiny_flat, tmp_path_factory.mktemp("model") / "tiny.keras", ["cat", "dog", "bird"])


def test_cli_frames_reports_skipped_file_and_exits_3(tiny_keras, tmp_path):
    from vidcam.cli import app

    src = extract(tmp_path, 4)
    (src / "frame2.jpg").write_bytes(b"\xff\xd8 broken")
    r = CliRunner().invoke(app, ["frames", str(src), "-o", str(tmp_path / "o"), "-m", str(tiny_keras), "-q",
                                 "--to-video", str(tmp_path / "o.mp4")])
    assert r.exit_code == 3, r.output
    assert "4 frames: 3 labelled, 0 already done, 1 skipped" in r.stdout
    err = r.stderr.strip().splitlines()
    assert err[0].startswith("vidcam: error: skipped frame2.jpg:")
    assert err[-1] == "vidcam: error: 1 of 4 frames skipped: frame2.jpg"
    assert decoded_frames(tmp_path / "o.mp4") == 3
    r = CliRunner().invoke(app, ["frames", str(src), "-o", str(tmp_path / "o"), "-m", str(tiny_keras), "-q",
                                 "--fps", "fast"])
    assert r.exit_code == 2 and "frame rate" in r.stderr


def test_frames_resume_after_kill_9(tiny_keras, tmp_path):
    src = extract(tmp_path, 400, size="96x64")
    out = tmp_path / "res"
    code = (f"from vidcam.jobs.frames import FramesOptions, label_frames\n"
            f"label_frames({str(src)!r}, {str(out)!r}, model={str(tiny_keras)!r},\n"
            f"             options=FramesOptions(batch_size=2))\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    journal = out / JOURNAL_NAME
    deadline = time.monotonic() + 120
    while not journal.exists() or journal.read_text().count("\n") < 30:
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    assert not (out / "labels.csv").exists(), "the run finished before the kill: use more frames"
    done_before = journal.read_text().count("\n")
    assert 30 <= done_before < 400
    with open(journal, "a") as f:
        f.write('{"file": "frame7.jpg", "res')  # a torn last line, as a kill mid-write leaves

    from vidcam.cam.engine import CamEngine
    from vidcam.models.zoo import load_classifier

    s = label_frames(src, out, model=CamEngine(load_classifier(tiny_keras)), options=FramesOptions(batch_size=16))
    assert s.failed == [] and s.reused == done_before and s.processed + s.reused == 400
    rows = read_labels(out / "labels.csv")
    assert [r["file"] for r in rows] == [f"frame{i}.jpg" for i in range(1, 401)]
    assert len(list(out.glob("result_*.jpg"))) == 400
    assert not list(out.glob(".*part*"))
    assert all(cv2.imread(str(p)) is not None for p in sorted(out.glob("result_*.jpg"))[::37])
    assert np.all([json.loads(line)["file"] for line in journal.read_text().splitlines()]
                  == np.array([r["file"] for r in rows]))


def test_a_resume_removes_what_a_killed_run_left_half_written(engine, tmp_path):
    """kill -9 can leave a run's temporary files (it cannot clean up); the next run, holding the folder's lock,
    removes vidcam's own and leaves everything else."""
    src = extract(tmp_path, 2)
    out = tmp_path / "res"
    out.mkdir()
    leftovers = [".result_0001.0123abcd.part.jpg", ".labels.89abcdef.part.csv", "..vidcam-frames.00ff00ff.part.jsonl"]
    for name in leftovers:
        (out / name).write_bytes(b"half")
    (out / ".mine.part.txt").write_text("not vidcam's")
    s = label_frames(src, out, model=engine)
    assert s.processed == 2
    assert not [name for name in leftovers if (out / name).exists()]
    assert (out / ".mine.part.txt").read_text() == "not vidcam's"
