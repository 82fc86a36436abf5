"""Issue 17, row 10: an address-space limit (``ulimit -v``) and SIGTERM, with real processes.

Each run is a real ``python -m vidcam`` (every ffmpeg it starts is looked for afterwards in /proc), under a
real ``RLIMIT_AS`` set in the child, with real TensorFlow. Signals are sent on an event read from the child
(a result line, a training epoch, a skip line, a decoder held open), never after a sleep: the run cannot
finish before the signal lands.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bad_support import (
    CHELSEA,
    ROOT,
    Outcome,
    ffmpeg,
    leftovers,
    make_video,
    one_line_error,
    pattern,
    tiny_keras,
    write_png,
)
from clips import held_decoder

from vidcam.memory import tensorflow_needs

GIB = 1024**3


_SPAWNED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test():
    """A run a failing test left behind (say, one whose held decoder waits for it) is killed with the test."""
    yield
    while _SPAWNED:
        p = _SPAWNED.pop()
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _spawn(args: list, *, limit: int | None = None, cwd: Path | None = None) -> subprocess.Popen:
    def child() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("VIDCAM_DEBUG", None)
    p = subprocess.Popen([sys.executable, "-m", "vidcam", *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env, cwd=cwd,
                         preexec_fn=child, start_new_session=True)
    _SPAWNED.append(p)
    return p


def _running_with(text: str) -> list[str]:
    """Live processes (zombies are dead) whose command line holds ``text`` (the test's folder: every ffmpeg
    vidcam starts names a file in it; vidcam gives them sessions of their own, so a process group would not do)."""
    alive = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
            state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmd and state != "Z":
            alive.append(cmd)
    return alive


def _finish(p: subprocess.Popen, folder: Path, timeout: float = 120) -> Outcome:
    """Wait for the run (it must not hang), then until no process naming ``folder`` is left: every ffmpeg it
    started gone (a killed child disappears once the kernel has reaped it: this waits for that, not for a time)."""
    out, err = p.communicate(timeout=timeout)
    deadline = time.monotonic() + 30
    while _running_with(str(folder)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running_with(str(folder)) == []
    return Outcome(p.returncode, out, err)


def _terminated(out: Outcome, *, allowed: tuple[str, ...] = ()) -> None:
    """Exit 143, ``vidcam: error: terminated`` as the one error line (besides ``allowed`` prefixes), no traceback."""
    assert out.code == 143, f"exit {out.code}; stderr {out.stderr[-2000:]!r}"
    assert "Traceback" not in out.stderr + out.stdout
    lines = [ln for ln in out.stderr.splitlines() if ln.strip() and not ln.startswith(allowed)]
    assert lines == ["vidcam: error: terminated"], lines


# -- an address-space limit -------------------------------------------------------------------------------------

COMMANDS = {
    "video": lambda d: ["video", shutil.copy(ROOT / "video" / "demo.mp4", d.parent), "-o", d / "heat.mp4"],
    "image": lambda d: ["image", CHELSEA, "-o", d / "pics"],
    "frames": lambda d: ["frames", ROOT / "video", "-o", d / "results"],
    "compare": lambda d: ["compare", CHELSEA, "-o", d / "pics"],
    "train": lambda d: ["train", ROOT / "video", "-o", d / "model.keras"],
    "evaluate": lambda d: ["evaluate", tiny_keras(), ROOT / "video", "-o", d / "report"],
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_limit_too_small_for_tensorflow_is_one_line_before_it_loads(command, tmp_path):
    """Under 2 GiB TensorFlow cannot even load (a library fails to map, or a C++ abort): refused up front (a
    video's input is copied into the test's folder, so an ffmpeg probing it would be seen)."""
    work = tmp_path / "work"
    work.mkdir()
    out = _finish(_spawn(COMMANDS[command](work), limit=int(1.9 * GIB), cwd=tmp_path), tmp_path)
    one_line_error(out, 1, "out of memory", "address-space limit (1.9 GiB, ulimit -v)", "raise it")
    assert list(work.iterdir()) == []


@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", ["video", "frames"])
def test_a_batch_too_big_for_the_limit_is_one_line_and_leaves_nothing(command, tmp_path):
    """Enough address space for TensorFlow, not for 64 frames through a 1024x1024 model (a conv layer alone
    takes 2 GiB): one line naming the limit, exit 1, no output under its name, no temporary file, no ffmpeg."""
    model = tiny_keras((1024, 1024))
    work = tmp_path / "work"
    work.mkdir()
    if command == "video":
        src = make_video(tmp_path / "clip.mp4", size="64x48", rate=32, seconds=2)
        args = ["video", src, "-o", work / "heat.mp4", "--labels-out", work / "labels.csv"]
    else:
        frames = tmp_path / "frames"
        frames.mkdir()
        for i in range(64):
            write_png(frames / f"f{i:03d}.png", pattern(48, 64, seed=i))
        args = ["frames", frames, "-o", work / "results", "--to-video", work / "out.mp4"]
    limit = tensorflow_needs() + GIB
    out = _finish(_spawn([*args, "-m", model, "--batch", "64", "-q", "--ffmpeg", ffmpeg()], limit=limit, cwd=tmp_path),
                  tmp_path)
    one_line_error(out, 1, "out of memory", f"address-space limit is {limit / GIB:.1f} GiB (ulimit -v)",
                   "smaller --batch")
    assert not (work / "heat.mp4").exists() and not (work / "labels.csv").exists()
    assert not (work / "out.mp4").exists() and leftovers(work) == []


def test_a_pipeline_thread_that_cannot_start_stops_the_others_and_raises_its_own_error(tmp_path):
    """A real limit a few MiB above what the process uses: the first thread gets its stack, the second cannot;
    the error is the thread's own (not "cannot join thread before it is started"), the started one stops and
    the source is unblocked (on_stop)."""
    script = """
import resource, sys, threading
from vidcam.jobs.pipeline import Pipeline
used = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize:'))
stopped = []
def source():
    yield from range(10**9)
resource.setrlimit(resource.RLIMIT_AS, (used + 12 * 2**20, resource.RLIM_INFINITY))
try:
    Pipeline(source(), [lambda x: x, lambda x: x, lambda x: x], on_stop=lambda: stopped.append(1))
except BaseException as e:
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    alive = [t.name for t in threading.enumerate() if t.name.startswith('vidcam-')]
    print(type(e).__name__, str(e), 'on_stop' if stopped else 'no on_stop', 'alive:', alive)
else:
    print('started')
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "RuntimeError can't start new thread on_stop alive: []", p.stdout


# -- SIGTERM: like Ctrl-C everywhere, then exit 143 ------------------------------------------------------------


def _pictures(folder: Path, n: int) -> list[Path]:
    folder.mkdir()
    return [write_png(folder / f"p{i:03d}.png", pattern(40, 48, seed=i)) for i in range(n)]


def _read_until(stream, prefix: str, p: subprocess.Popen) -> str:
    for line in stream:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no {prefix!r} line; exit {p.wait()}, stderr {p.stderr.read()[-2000:]!r}")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", ["image", "compare"])
def test_sigterm_stops_a_picture_batch_after_its_first_result(command, tmp_path):
    pics = _pictures(tmp_path / "in", 60)
    out_dir = tmp_path / "out"
    extra = ["--methods", "gradcam,scorecam"] if command == "compare" else []
    p = _spawn([command, *pics, "-o", out_dir, "-m", tiny_keras(), "--batch", "1", "--json", *extra])
    _read_until(p.stdout, "{", p)  # the first picture's result: 59 to go
    p.send_signal(signal.SIGTERM)
    out = _finish(p, tmp_path)
    _terminated(out)
    assert len(list(out_dir.iterdir())) < len(pics) and leftovers(out_dir) == []


@pytest.mark.timeout(300)
def test_sigterm_stops_training_and_writes_no_model(tmp_path):
    data = tmp_path / "data"
    for k, name in enumerate(("cats", "dogs")):
        (data / name).mkdir(parents=True)
        for i in range(4):
            write_png(data / name / f"{i}.png", pattern(40, 48, seed=10 * k + i))
    work = tmp_path / "work"
    work.mkdir()
    p = _spawn(["train", data, "-o", work / "model.keras", "--epochs", "500", "--batch", "2", "--img-size", "32",
                "--val-split", "0.5"])
    _read_until(p.stdout, "head epoch 1/", p)
    p.send_signal(signal.SIGTERM)
    _terminated(_finish(p, tmp_path))
    assert list(work.iterdir()) == []  # no model, no curves, no temporary file


@pytest.mark.timeout(300)
def test_sigterm_stops_an_evaluation_and_writes_no_report(tmp_path):
    data = tmp_path / "data"
    for k, name in enumerate(("thing0", "thing1", "thing2")):
        (data / name).mkdir(parents=True)
        (data / name / "0-damaged.png").write_bytes(b"not a picture")  # read first: its skip line is the event
        for i in range(40):
            write_png(data / name / f"{i + 1}.png", pattern(40, 48, seed=100 * k + i))
    work = tmp_path / "work"
    work.mkdir()
    p = _spawn(["evaluate", tiny_keras(), data, "-o", work / "report", "--batch", "1"])
    _read_until(p.stderr, "vidcam: error: skipped", p)
    p.send_signal(signal.SIGTERM)
    _terminated(_finish(p, tmp_path), allowed=("vidcam: error: skipped",))
    assert list(work.iterdir()) == []


@pytest.mark.timeout(300)
def test_sigterm_stops_a_video_and_both_ffmpeg_processes(tmp_path):
    src = make_video(tmp_path / "src.mp4", size="160x120", seconds=1)
    work = tmp_path / "work"
    work.mkdir()
    p = _spawn(["video", src, "-o", work / "heat.mp4", "-m", tiny_keras(), "--labels-out", work / "labels.csv",
                "--batch", "2", "--ffmpeg", held_decoder(tmp_path)])
    deadline = time.monotonic() + 240
    # Every frame decoded (the held decoder's shell waits), the encoder running: the only ffmpeg left in the group.
    while not (tmp_path / "decoded").exists() or not any(" -i pipe:" in c for c in _running_with(str(work))):
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline, "the run never got to encoding"
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    _terminated(_finish(p, tmp_path), allowed=("src.mp4",))  # the progress bar
    assert list(work.iterdir()) == []
