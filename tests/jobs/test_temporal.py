"""Temporal metrics (map stability, label flips) and shot-aware smoothing, on clips with real hard cuts made by
the real ffmpeg (two different lavfi sources concatenated), through the real video job and a tiny real model."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from clips import make_clip, run
from conftest import ROOT, classifier_for

import vidcam.jobs.video as video_job
from vidcam import VideoOptions
from vidcam.jobs.temporal import TemporalStats, map_stability
from vidcam.jobs.video import process_video, smooth_maps
from vidcam.media.ffmpeg_cmd import ffmpeg_exe
from vidcam.media.probe import probe
from vidcam.media.shots import CutDetector
from vidcam.media.source import VideoSource, planar_matrix
from vidcam.media.yuv import shrink_i420_to_model

CUT_AT = 25  # the first frame of the second shot (1 s at 25 fps)


BOX = "drawbox=x=t*100:y=40:w=40:h=40:c=white:t=fill"  # a box moving across: motion within a shot


def shot(source: str, then: str = "", seconds: float = 1.0) -> str:
    """A lavfi source (``testsrc2``, ``color=c=red``) at 160x120, 25 fps, for ``seconds``, then filter ``then``."""
    sep = ":" if "=" in source else "="
    return f"{source}{sep}size=160x120:rate=25:duration={seconds}" + (f",{then}" if then else "")


def make_cut_clip(path, first: str, second: str):
    """Shot ``first``, then a hard cut to shot ``second`` (lavfi graphs, see :func:`shot`): silent H.264."""
    src = [first, second]
    run("-f", "lavfi", "-i", src[0], "-f", "lavfi", "-i", src[1], "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]",
        "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", path)
    return path


@pytest.fixture(scope="module")
def cut_clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("cuts")
    return {
        "bars": make_cut_clip(d / "bars.mp4", shot("testsrc2"), shot("smptebars")),
        # Two flat colours, each with a moving box: motion inside each shot, one hard cut between them.
        "colours": make_cut_clip(d / "colours.mp4", shot("color=c=red", BOX), shot("color=c=navy", BOX)),
        "none": make_clip(d / "none.mp4", seconds=2.0, audio=None),
    }


@pytest.fixture(scope="module")
def engine(tiny_flat):
    from vidcam.cam.engine import CamEngine

    return CamEngine(classifier_for(tiny_flat, ["cat", "dog", "bird"]))


def _decoded(path, planar: bool = False):
    source = VideoSource(probe(path), ffmpeg_exe(None), batch_size=8, planar=planar)
    try:
        return [f for b in source for f in b.pixels]
    finally:
        source.kill()  # closes its pipes


def test_cut_detector_finds_the_hard_cut_only(cut_clips, tmp_path):
    moving = tmp_path / "moving.mp4"  # flat colours with a box moving across: motion, no cut
    run("-f", "lavfi", "-i", shot("color=c=red", BOX), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
        "yuv420p", moving)
    for name, want in (("bars", [CUT_AT]), ("colours", [CUT_AT]), ("none", [])):
        detect = CutDetector()
        assert [i for i, f in enumerate(_decoded(cut_clips[name])) if detect(f)] == want, name
    detect = CutDetector()
    assert not any(detect(f) for f in _decoded(moving))
    detect = CutDetector()  # the bundled demo: pans, zooms and a 10-frame cross-fade from the cat to the dog
    assert not any(detect(f) for f in _decoded(ROOT / "video" / "demo.mp4"))


def _drawn_maps(monkeypatch):
    """Every map as drawn, in frame order (map_stability sees each one exactly once)."""
    seen: list[np.ndarray] = []

    def spy(cams, previous):
        seen.extend(np.array(c) for c in cams)
        return map_stability(cams, previous)

    monkeypatch.setattr(video_job, "map_stability", spy)
    return seen


def test_smoothing_restarts_exactly_at_the_cut(cut_clips, engine, tmp_path, monkeypatch):
    src = cut_clips["bars"]
    drawn = _drawn_maps(monkeypatch)
    s = process_video(src, tmp_path / "smooth.mp4", model=engine, options=VideoOptions(smooth=0.8, batch_size=4))
    assert s.cuts == [(CUT_AT, pytest.approx(1.0))] and len(drawn) == s.frames == 50
    # Each frame as the job reads it (I420 in the clip's own matrix) and fits it to the model, explained alone.
    matrix = planar_matrix(probe(src))
    frames = _decoded(src, planar=True)
    alone = [engine.run(shrink_i420_to_model(f, engine.input_size, matrix)[None]).cams[0] for f in frames]
    # The first frame after the cut has its own unsmoothed map, the engine's on that frame alone ...
    np.testing.assert_allclose(drawn[CUT_AT], alone[CUT_AT], atol=1e-5)
    # ... the frames before and after it are smoothed (so the test has teeth), and the next one is the average
    # of the new shot only: nothing of shot one is left in it.
    assert not np.allclose(drawn[CUT_AT - 1], alone[CUT_AT - 1], atol=1e-3)
    np.testing.assert_allclose(drawn[CUT_AT + 1], 0.8 * alone[CUT_AT] + 0.2 * alone[CUT_AT + 1], atol=1e-5)
    bled, _ = smooth_maps(np.stack(alone), 0.8)  # without the restart, shot one would bleed into shot two
    assert not np.allclose(bled[CUT_AT], alone[CUT_AT], atol=1e-3)
    np.testing.assert_allclose(np.stack(drawn), smooth_maps(np.stack(alone), 0.8, restart=np.arange(50) == CUT_AT)[0],
                               atol=1e-5)


def test_no_cut_in_a_clip_without_one(cut_clips, engine, tmp_path):
    s = process_video(cut_clips["none"], tmp_path / "o.mp4", model=engine, options=VideoOptions(smooth=0.5))
    assert s.cuts == [] and s.as_dict()["cuts"] == []


def test_temporal_metrics_in_summary_and_labels(cut_clips, engine, tmp_path):
    src = cut_clips["colours"]
    s = process_video(src, tmp_path / "o.mp4", model=engine, labels_out=tmp_path / "l.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert rows[0]["stability"] is None and all(-1 <= r["stability"] <= 1 for r in rows[1:])
    assert [r["frame"] for r in rows if r["cut"]] == [CUT_AT]
    top1 = [r["predictions"][0]["class_id"] for r in rows]
    flips = sum(a != b for a, b in zip(top1, top1[1:]))
    assert s.label_flips == flips and s.flips_per_minute == pytest.approx(flips * 60 / s.duration, abs=1e-3)
    within = [r["stability"] for r in rows[1:] if not r["cut"]]
    assert s.stability == pytest.approx(np.mean(within), abs=1e-3) and s.stability_min == pytest.approx(min(within))
    d = s.as_dict()
    assert d["cuts"] == [{"frame": CUT_AT, "time": pytest.approx(1.0)}] and d["label_flips"] == flips
    process_video(src, tmp_path / "o.mp4", model=engine, labels_out=tmp_path / "l.csv",
                  options=VideoOptions(overwrite=True))
    with open(tmp_path / "l.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert table[0]["stability"] == "" and float(table[1]["stability"]) == pytest.approx(rows[1]["stability"])
    assert [int(r["frame"]) for r in table if r["cut"] == "1"] == [CUT_AT]


def test_map_stability_and_flips_per_minute_use_real_times():
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    out, last = map_stability(np.stack([a, a, a[::-1, ::-1], np.zeros_like(a), np.zeros_like(a)]), None)
    assert math.isnan(out[0]) and out[1] == 1.0 and out[2] == pytest.approx(-1.0) and out[4] == 1.0
    assert out[3] == 0.0 and last is not None  # a constant map ranks nothing: unrelated to the one before
    stats = TemporalStats()
    # A variable-rate video: three flips in 30 s of video, whatever the number of frames.
    for k, (t, top1) in enumerate([(0.0, 1), (0.1, 2), (10.0, 2), (20.0, 1), (29.0, 3)]):
        stats.add(k, t, top1, 0.5 if k else math.nan, cut=k == 3)
    d = stats.summary(30.0)
    assert d["label_flips"] == 3 and d["flips_per_minute"] == 6.0 and d["cuts"] == [{"frame": 3, "time": 20.0}]
    assert d["stability"] == 0.5 and d["stability_min"] == 0.5
