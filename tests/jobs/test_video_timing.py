"""The real ``vidcam video`` CLI on the torture clips (tests/torture.py), judged by the independent checker
(Debian's ffprobe/ffmpeg, never vidcam's code).

Criteria, one test id per (criterion, clip kind):

- frames: every source frame shown exactly once, in order (read from the barcodes);
- duration: the output's duration within one source frame of the source's;
- labels: each label row's ``time`` within half a source frame (the shortest one) of the shown frame's source
  presentation time in seconds from the file start, minus ``--start``;
- av: at every beep, the sound within 45 ms of the picture it belongs to;
- colour (HDR, untagged HD): the picture (left half of a side-by-side run) within 3 levels of the SDR rendering;
- start: ``--start 1 --duration 2`` on the VFR clip keeps what ``ffmpeg -ss 1 -t 2 -i IN`` keeps, with the right
  duration, label times and sync.

Before timing-true video (issue 12), 25 of these failed: VFR sources re-timed onto a constant grid (label
times and sound off by up to 2.3 s), a picture starting after the sound moved to 0, a one-frame video cut to
0.04 s, HDR washed out, untagged HD decoded as BT.601.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torture as T
from clips import save_tiny_keras

pytestmark = pytest.mark.skipif(not T.have_tools(), reason="needs Debian's ffmpeg + ffprobe (apt-get install ffmpeg)")

AV_TOL = 0.045
COLOUR_TOL = 3.0
START, DURATION = 1.0, 2.0

def _params(criterion: str, kinds) -> list:
    return [pytest.param(k, id=k) for k in kinds]


def _vidcam() -> str:
    exe = Path(sys.executable).with_name("vidcam")
    return str(exe) if exe.exists() else "vidcam"


@pytest.fixture(scope="module")
def model(tiny_flat, tmp_path_factory):
    return save_tiny_keras(tiny_flat, tmp_path_factory.mktemp("timing-model") / "tiny.keras", ["a", "b", "c"])


@pytest.fixture(scope="module")
def runs(model, tmp_path_factory):
    """Every clip through the CLI once (overlay), the colour clips once more side by side, and the --start run."""
    root = tmp_path_factory.getbasetemp() / "torture"
    out = tmp_path_factory.mktemp("timing-out")
    clips = {k: T.clip(k, root) for k in T.KINDS}
    jobs = [(k, k, ()) for k in T.KINDS]
    jobs += [(f"{k}-sbs", k, ("--layout", "side-by-side")) for k in T.COLOUR_KINDS]
    jobs += [("start", "vfr_phone", ("--start", str(START), "--duration", str(DURATION)))]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def one(job):
        name, kind, extra = job
        video, labels = out / f"{name}.mp4", out / f"{name}.jsonl"
        done = subprocess.run([_vidcam(), "video", str(clips[kind].path), "-o", str(video), "--labels-out",
                               str(labels), "--model", str(model), "--overwrite", "-q", *extra],
                              capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)
        return name, (video, labels, done)

    with ThreadPoolExecutor(2) as pool:
        results = dict(pool.map(one, jobs))
    return clips, results


def _result(runs, name):
    clips, results = runs
    video, labels, done = results[name]
    assert done.returncode == 0 and video.exists(), f"vidcam failed ({done.returncode}): {done.stderr[-800:]}"
    return video, labels


_DECODED: dict[Path, list] = {}


def _decoded(video: Path, left_half: bool = False):
    key = Path(f"{video}#{left_half}")
    if key not in _DECODED:
        _DECODED[key] = T.decoded(video, crop_left_half=left_half)
    return _DECODED[key]


@pytest.mark.parametrize("kind", _params("frames", T.KINDS))
def test_frames_once_in_order(runs, kind):
    video, _ = _result(runs, kind)
    ok, why = T.frames_in_order_once(_decoded(video), runs[0][kind])
    assert ok, why


@pytest.mark.parametrize("kind", _params("duration", T.KINDS))
def test_duration(runs, kind):
    video, _ = _result(runs, kind)
    clip = runs[0][kind]
    err = T.duration_error(video, clip)
    assert abs(err) <= clip.frame_s + 1e-3, f"output {T.duration_of(video):.3f} s, source {clip.duration:.3f} s"


@pytest.mark.parametrize("kind", _params("labels", T.KINDS))
def test_label_times(runs, kind):
    video, labels = _result(runs, kind)
    clip = runs[0][kind]
    errs = T.label_time_errors(labels, clip, _decoded(video))
    assert len(errs) == len(_decoded(video)) and None not in errs, f"{len(errs)} rows, {errs.count(None)} unmatched"
    worst = max(abs(e) for e in errs)
    assert worst <= T.min_interval(clip) / 2 + 1e-4, f"label time off by up to {worst * 1000:.1f} ms"


@pytest.mark.parametrize("kind", _params("av", [k for k in T.KINDS if k != "gif_uneven"]))
def test_av_sync(runs, kind):
    video, _ = _result(runs, kind)
    clip = runs[0][kind]
    offs = T.av_offsets(video, clip, _decoded(video))
    assert offs and None not in offs, f"beeps missing from the output: {offs}"
    assert max(abs(o) for o in offs) <= AV_TOL, f"A/V offsets (ms): {[round(o * 1000, 1) for o in offs]}"


@pytest.mark.parametrize("kind", _params("colour", T.COLOUR_KINDS))
def test_colour(runs, kind):
    video, _ = _result(runs, f"{kind}-sbs")
    err = T.colour_errors(video, runs[0][kind], left_half=True)
    assert err <= COLOUR_TOL, f"patches off by up to {err:.1f} levels"


@pytest.mark.parametrize("criterion", _params("start", ["frames", "duration", "labels", "av"]))
def test_start_duration_on_vfr(runs, criterion):
    video, labels = _result(runs, "start")
    clip = runs[0]["vfr_phone"]
    dec = _decoded(video)
    if criterion == "frames":
        ok, why = T.frames_in_order_once(dec, clip, expected=T.ffmpeg_cut_keeps(clip.path, START, DURATION))
        assert ok, why
    elif criterion == "duration":
        err = T.duration_error(video, clip, expected=DURATION)
        assert abs(err) <= clip.frame_s + 1e-3, f"output {T.duration_of(video):.3f} s for --duration {DURATION}"
    elif criterion == "labels":
        errs = T.label_time_errors(labels, clip, dec, start=START)
        assert errs and None not in errs
        worst = max(abs(e) for e in errs)
        assert worst <= T.min_interval(clip) / 2 + 1e-4, f"label time off by up to {worst * 1000:.1f} ms"
    else:
        offs = T.av_offsets(video, clip, dec, window=(START, START + DURATION))
        assert offs and None not in offs, f"beeps missing from the output: {offs}"
        assert max(abs(o) for o in offs) <= AV_TOL, f"A/V offsets (ms): {[round(o * 1000, 1) for o in offs]}"
