"""Tiny real test clips made by the real ffmpeg (lavfi ``testsrc2`` + ``sine``), and ways to inspect them
that do not go through vidcam's own probe (so the tests check vidcam against ffmpeg itself)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import numpy as np


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run(*args: str | Path) -> None:
    subprocess.run([ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
                   check=True, timeout=120)


def make_clip(
    path: Path,
    *,
    rate: str = "25",
    size: str = "160x120",
    seconds: float = 1.0,
    audio: str | None = "aac",
    vf: str | None = None,
    pix_fmt: str = "yuv420p",
    extra: tuple = (),
) -> Path:
    """A testsrc2 clip with an optional 440 Hz sine track encoded with ``audio`` (None: silent)."""
    args: list = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    if vf:
        args += ["-vf", vf]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix_fmt, *extra]
    if audio:
        args += ["-c:a", audio]
    run(*args, path)
    return path


def decoded_frames(path: Path) -> int:
    """Frames ffmpeg decodes from the first video stream (every frame, one ``framemd5`` line each)."""
    out = subprocess.run(
        [ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:V:0",
         "-fps_mode", "passthrough", "-f", "framemd5", "-"], capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    return sum(1 for line in out.splitlines() if line and not line.startswith("#"))


def frame_times(path: Path) -> list[float]:
    """Every decoded frame's presentation time in seconds from the file's start, as ffmpeg itself decodes them."""
    out = subprocess.run(
        [ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:V:0",
         "-fps_mode", "passthrough", "-f", "framemd5", "-"], capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    tb = next(line.split(":")[1].strip() for line in out.splitlines() if line.startswith("#tb 0"))
    num, den = (int(v) for v in tb.split("/"))
    return [int(line.split(",")[2]) * num / den for line in out.splitlines() if line and not line.startswith("#")]


def stream_dump(path: Path) -> str:
    """ffmpeg's own description of the file (the ``-i`` dump on stderr)."""
    return subprocess.run([ffmpeg(), "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                          timeout=60).stderr


def audio_codecs(path: Path) -> list[str]:
    return re.findall(r"Stream #\S+: Audio: (\w+)", stream_dump(path))


def frame_at(path: Path, index: int) -> np.ndarray:
    """Decoded (upright) RGB frame number ``index``."""
    dump = stream_dump(path)
    sizes = re.findall(r"Stream #\S+: Video: .*?, (\d+)x(\d+)", dump)
    w, h = (int(v) for v in sizes[0])
    if re.search(r"rotation of -?90", dump):
        w, h = h, w
    raw = subprocess.run(
        [ffmpeg(), "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:V:0", "-vf", f"select=eq(n\\,{index})",
         "-fps_mode", "passthrough", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True, timeout=60,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(h, w, 3)


def save_tiny_keras(model, path: Path, names: list[str]) -> Path:
    """Save a fixture model as a ``.keras`` file with vidcam metadata, for CLI runs in a subprocess."""
    from vidcam.models.zoo import save_classifier_metadata

    model.save(path)
    save_classifier_metadata(path, {"class_names": names, "preprocess": "unit", "fit": "squash"})
    return path


def ffmpeg_processes_with(text: str) -> list[int]:
    """The pids of running ffmpeg processes whose command line contains ``text`` (a file they read, say)."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "ffmpeg" in cmd and text in cmd:
                found.append(int(p.name))
    return found


def gone(pids_of, seconds: float = 30) -> bool:
    """Whether ``pids_of()`` becomes empty within ``seconds`` (killed processes vanish once reaped)."""
    deadline = time.monotonic() + seconds
    while pids_of() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not pids_of()


def held_decoder(folder: Path) -> Path:
    """An ffmpeg whose decoding run (raw RGB frames to vidcam) says so in ``folder/decoded`` once every frame is
    out, then keeps its pipe open until its parent dies: the run cannot finish, so a signal always lands mid-run (a
    test that waits for output to grow and hopes the run is still going fails under load). Every other ffmpeg run
    (probing, encoding) is the real one, unchanged."""
    wrapper = folder / "ffmpeg-held"
    wrapper.write_text(f"""#!/bin/sh
case "$*" in
  *rawvideo*)
    '{ffmpeg()}' "$@" || exit $?
    touch '{folder}/decoded'
    while kill -0 $PPID 2>/dev/null; do sleep 0.05; done
    exit 0 ;;
esac
exec '{ffmpeg()}' "$@"
""")
    wrapper.chmod(0o755)
    return wrapper
