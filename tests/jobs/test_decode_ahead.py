"""DecodeAhead: a video decoded while TensorFlow imports gives the job exactly the frames, times and errors it
would have read itself, and its decoder never outlives it. Real ffmpeg, a real tiny Keras model; outputs checked
with Debian's ffmpeg."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clips import ffmpeg, ffmpeg_processes_with, frame_times, gone, held_decoder, make_clip, save_tiny_keras
from conftest import classifier_for

from vidcam import VideoOptions
from vidcam.errors import InputError, OutputError
from vidcam.jobs.video import DecodeAhead, process_video


@pytest.fixture(scope="module")
def engine(tiny_flat):
    from vidcam.cam.engine import CamEngine

    return CamEngine(classifier_for(tiny_flat, ["cat", "dog", "bird"]))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    # Variable frame rate, the picture starting after the sound: times a decoder could get wrong.
    return make_clip(tmp_path_factory.mktemp("clip") / "vfr.mp4", rate="30", seconds=2.0,
                     vf="select='lt(n\\,20)+not(mod(n\\,3))',setpts=PTS+0.1/TB", extra=("-fps_mode", "vfr"))


def _md5s(path: Path) -> list[str]:
    out = subprocess.run([ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:v:0",
                          "-fps_mode", "passthrough", "-f", "framemd5", "-"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return [line.split(",")[-1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def _wait_decoded(early: DecodeAhead, frames: int) -> None:
    deadline = time.monotonic() + 120
    while early.decoded < frames:
        assert time.monotonic() < deadline, f"the decoder read {early.decoded} frames in 120 s"
        time.sleep(0.02)


@pytest.mark.parametrize("options", [VideoOptions(batch_size=4), VideoOptions(batch_size=4, start=0.4, duration=1.0)],
                         ids=["whole", "cut"])
def test_frames_decoded_ahead_make_the_same_video(clip, engine, tmp_path, options):
    with DecodeAhead(clip, options) as early:
        _wait_decoded(early, 8)
        ahead = process_video(clip, tmp_path / "ahead.mp4", model=engine, options=options,
                              labels_out=tmp_path / "ahead.csv", early=early)
    plain = process_video(clip, tmp_path / "plain.mp4", model=engine, options=options,
                          labels_out=tmp_path / "plain.csv")
    assert ahead.decoded_ahead >= 8 and plain.decoded_ahead == 0
    assert ahead.frames == plain.frames > 8
    assert frame_times(tmp_path / "ahead.mp4") == frame_times(tmp_path / "plain.mp4")
    assert _md5s(tmp_path / "ahead.mp4") == _md5s(tmp_path / "plain.mp4")  # the same pictures
    assert (tmp_path / "ahead.csv").read_text() == (tmp_path / "plain.csv").read_text()  # labels and times
    assert not ffmpeg_processes_with(str(clip))


def test_a_decode_ahead_opened_for_other_options_is_stopped_and_unused(clip, engine, tmp_path):
    with DecodeAhead(clip, VideoOptions(start=0.5)) as early:
        _wait_decoded(early, 1)
        s = process_video(clip, tmp_path / "o.mp4", model=engine, early=early)
        assert gone(lambda: ffmpeg_processes_with(str(clip)))  # its decoder killed when the job turned it down
    assert s.decoded_ahead == 0 and s.frames == len(frame_times(clip))  # the whole video, decoded by the job
    other = tmp_path / "other.mp4"
    other.write_bytes(clip.read_bytes())
    with DecodeAhead(other) as early:  # opened for another file
        s = process_video(clip, tmp_path / "o2.mp4", model=engine, early=early)
    assert s.decoded_ahead == 0 and s.frames == len(frame_times(clip))


def test_a_decode_ahead_leaves_every_error_to_the_job(engine, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    for bad in (tmp_path / "missing.mp4", text):
        with pytest.raises(InputError) as plain:
            process_video(bad, tmp_path / "o.mp4", model=engine)
        with DecodeAhead(bad) as early, pytest.raises(InputError) as ahead:
            process_video(bad, tmp_path / "o.mp4", model=engine, early=early)
        assert str(ahead.value) == str(plain.value)
    assert not list(tmp_path.glob("o*"))


def test_closing_a_decode_ahead_kills_its_decoder(clip, tmp_path):
    held = held_decoder(tmp_path)  # a decoder that keeps its pipe open after the last frame, until killed
    early = DecodeAhead(clip, ffmpeg=str(held))
    deadline = time.monotonic() + 120
    while not (tmp_path / "decoded").exists():
        assert time.monotonic() < deadline, "the decoder never finished"
        time.sleep(0.02)
    assert ffmpeg_processes_with(str(clip))
    early.close()
    assert gone(lambda: ffmpeg_processes_with(str(clip)))
    early.close()  # twice: nothing more to do


def test_a_job_that_fails_before_taking_it_leaves_it_to_close(clip, engine, tmp_path):
    (tmp_path / "exists.mp4").write_bytes(b"mine")
    held = held_decoder(tmp_path)
    with DecodeAhead(clip, ffmpeg=str(held)) as early:
        with pytest.raises(OutputError, match="exists"):
            process_video(clip, tmp_path / "exists.mp4", model=engine, early=early, ffmpeg=str(held))
    assert gone(lambda: ffmpeg_processes_with(str(clip)))
    assert (tmp_path / "exists.mp4").read_bytes() == b"mine"


def _ctrl_c_as_a_terminal_sends() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # see test_video._ctrl_c_as_a_terminal_sends


def test_ctrl_c_while_tensorflow_imports_stops_the_early_decoder(clip, tiny_flat, tmp_path):
    """The CLI decodes while TensorFlow imports; Ctrl-C then (held there: the import waits) leaves no decoder."""
    model = save_tiny_keras(tiny_flat, tmp_path / "tiny.keras", ["cat", "dog", "bird"])
    hold = tmp_path / "hold"
    hold.mkdir()
    # Test scaffolding, not a stand-in: `import tensorflow` in the CLI's process waits here (marked by a file),
    # so the signal lands while the early decoder runs, every time; the import itself is the real one otherwise.
    (hold / "sitecustomize.py").write_text(f"""import sys, time
class _Hold:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow":
            open({str(tmp_path / 'importing')!r}, "w").close()
            while True:
                time.sleep(0.05)
        return None
sys.meta_path.insert(0, _Hold())
""")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hold), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = tmp_path / "heat.mp4"
    p = subprocess.Popen([sys.executable, "-m", "vidcam", "video", str(clip), "-o", str(out), "-m", str(model),
                          "--ffmpeg", str(held_decoder(tmp_path))], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, preexec_fn=_ctrl_c_as_a_terminal_sends)
    try:
        deadline = time.monotonic() + 120
        while not ((tmp_path / "importing").exists() and (tmp_path / "decoded").exists()):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the CLI never decoded while importing TensorFlow"
            time.sleep(0.02)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130 and b"vidcam: error: interrupted" in err and b"Traceback" not in err, err
        assert gone(lambda: ffmpeg_processes_with(str(clip)))
        assert not out.exists() and not list(tmp_path.glob(".heat*"))
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


_WARM = """
import json, sys, threading

imports = []


def audit(event, args):  # modules imported by the warm-up's thread while TensorFlow was still importing
    tf = sys.modules.get("tensorflow")
    if (event == "import" and threading.current_thread().name == "vidcam-after-runtime" and tf is not None
            and tf.__spec__._initializing):
        imports.append(args[0])


sys.addaudithook(audit)
from vidcam.cli import load_tensorflow
from vidcam.jobs.video import DecodeAhead, process_video

clip, cached, uncached, out = sys.argv[1:5]
with DecodeAhead(clip, model=cached) as early, DecodeAhead(clip, model=uncached) as other:
    load_tensorflow()
    warmed = [early.warmed, other.warmed]
    keras = "keras" in sys.modules
    process_video(clip, out + "/warm.mp4", model=cached, labels_out=out + "/warm.csv", early=early)
process_video(clip, out + "/plain.mp4", model=cached, labels_out=out + "/plain.csv")
print(json.dumps({"warmed": warmed, "keras": keras, "imports": imports}))
"""


def test_a_cached_step_is_warmed_while_tensorflow_imports_and_changes_nothing(clip, tiny_flat, tmp_path):
    """Given the model, DecodeAhead runs its cached step once while `import tensorflow` loads the rest of TensorFlow
    (in a fresh process: the import is what is tested), importing nothing meanwhile; a step not in the cache is
    left alone (no Keras loaded to build it); the job's video and labels are those of a run without it."""
    from vidcam.cam.spec import ModelSpec

    cached = save_tiny_keras(tiny_flat, tmp_path / "cached.keras", ["cat", "dog", "bird"])
    uncached = save_tiny_keras(tiny_flat, tmp_path / "uncached.keras", ["cat", "dog", "bird", "fish"])
    ModelSpec(str(cached)).build()  # its step is now in the cache (the session's VIDCAM_CACHE)
    r = subprocess.run([sys.executable, "-c", _WARM, str(clip), str(cached), str(uncached), str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = __import__("json").loads(r.stdout.strip().splitlines()[-1])
    assert result == {"warmed": [True, False], "keras": False, "imports": []}
    assert frame_times(tmp_path / "warm.mp4") == frame_times(tmp_path / "plain.mp4")
    assert _md5s(tmp_path / "warm.mp4") == _md5s(tmp_path / "plain.mp4")
    assert (tmp_path / "warm.csv").read_text() == (tmp_path / "plain.csv").read_text()


@pytest.mark.parametrize("size", ["96x64", "97x65"], ids=["i420", "rgb"])
def test_a_decode_ahead_pays_the_first_drawing_s_costs_before_the_job(tmp_path, size):
    # In a fresh process (nothing drawn yet): once the decode-ahead thread is done, the label's font and the
    # colormap are made, so the job's first frame is drawn without making them; an odd size (RGB, not I420) too.
    clip = make_clip(tmp_path / "c.mp4", size=size, seconds=0.2)
    code = (f"from vidcam.jobs.video import DecodeAhead\nfrom vidcam.media import render, text\n"
            f"with DecodeAhead({str(clip)!r}) as early:\n    early._thread.join(60)\n"
            f"print(text._font.cache_info().currsize, render._lut.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["1", "1"], out.stderr
