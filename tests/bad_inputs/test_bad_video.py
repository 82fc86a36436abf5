"""Odd and broken videos through `vidcam video`, and broken frame folders through `vidcam frames`.

Odd-but-valid sources (10-bit, 4:4:4, gray, 16-bit gray FFV1, 4K, tall portrait) come out with every frame at
their size. Broken ones get one line and exit 1; nothing is left under the output name or as a temporary file.
A truncated file keeps the frames that decode and says so on one warning line (exit 0): see the README.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from bad_support import (
    CHELSEA,
    leftovers,
    make_video,
    nothing_written,
    one_line_error,
    pattern,
    run_cli,
    run_ffmpeg,
    tiny_keras,
    write_png,
)

pytestmark = pytest.mark.timeout(240)


def _random(path: Path) -> None:
    path.write_bytes(np.random.default_rng(9).integers(0, 256, 30_000, dtype=np.uint8).tobytes())


def _moov_cut(path: Path) -> None:
    """An mp4 written the default way (index at the end), cut in half: the index is gone."""
    src = make_video(path.with_name("whole_" + path.name), seconds=3)
    data = src.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _audio_only(path: Path) -> None:
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=1", "-c:a", "aac", str(path))


def _zero_frames(path: Path) -> None:
    """A raw-video stream with its header (64x48, 25 fps) and not one frame."""
    path.write_bytes(b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\n")


def _still(path: Path) -> None:
    shutil.copy(CHELSEA, path)


def _huge_claim(path: Path) -> None:
    """A 1 kB file whose header claims 60000 x 60000 frames (10 GB each as RGB)."""
    path.write_bytes(b"YUV4MPEG2 W60000 H60000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x80" * 1000)


def _text(path: Path) -> None:
    path.write_text("#EXTM3U\nhttp://example.com/stream.ts\n")


BROKEN = {
    "random.mp4": (_random, "not a video"),
    "moov_cut.mp4": (_moov_cut, "not a video"),
    "audio_only.m4a": (_audio_only, "audio only"),
    "zero_frames.y4m": (_zero_frames, "no video frames"),
    "still.mp4": (_still, "still image"),
    "huge_claim.y4m": (_huge_claim, "huge_claim.y4m"),
    "playlist.mkv": (_text, "not a video"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_video_is_one_line_error(tmp_path, name):
    make, needle = BROKEN[name]
    src = tmp_path / name
    make(src)
    out = run_cli("video", src, "-o", tmp_path / "out" / "heat.mp4", "--model", tiny_keras(), "-q")
    one_line_error(out, 1, needle)
    nothing_written(tmp_path / "out", "heat.mp4")


ODD_VALID = {
    # name: (make_video keyword arguments, expected (width, height), frames)
    "ten_bit.mp4": ({"pix_fmt": "yuv420p10le"}, (64, 48), 10),
    "yuv444.mp4": ({"pix_fmt": "yuv444p"}, (64, 48), 10),
    "gray.mp4": ({"pix_fmt": "gray"}, (64, 48), 10),
    "gray16.mkv": ({"pix_fmt": "gray16le", "codec": "ffv1"}, (64, 48), 10),
    "uhd_4k.mp4": ({"size": "3840x2160", "rate": 2, "seconds": 1.0}, (3840, 2160), 2),
    "tall_portrait.mp4": ({"size": "120x1920", "rate": 4, "seconds": 1.0}, (120, 1920), 4),
}


@pytest.mark.parametrize("name", list(ODD_VALID))
def test_odd_but_valid_video_keeps_every_frame(tmp_path, name):
    from vidcam.media.probe import probe

    kwargs, size, frames = ODD_VALID[name]
    src = make_video(tmp_path / name, **kwargs)
    dest = tmp_path / "out" / "heat.mp4"
    out = run_cli("video", src, "-o", dest, "--model", tiny_keras(), "--json")
    assert out.code == 0, out.stderr
    info = probe(dest)
    assert (info.width, info.height) == size
    assert info.frames == frames
    assert leftovers(tmp_path / "out") == []


def test_truncated_video_keeps_decodable_frames_and_warns(tmp_path):
    """An mp4 with its index first (+faststart), cut in half: the frames that decode are kept, one warning line
    says so, and the exit code is 0 (the README documents this)."""
    from vidcam.media.probe import probe

    whole = make_video(tmp_path / "whole.mp4", seconds=4, extra=("-movflags", "+faststart"))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    dest = tmp_path / "heat.mp4"
    out = run_cli("video", cut, "-o", dest, "--model", tiny_keras(), "-q")
    assert out.code == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidcam: warning: ") and "truncated or damaged" in lines[0]
    kept = probe(dest).frames
    assert 0 < kept < 40 and f"kept the {kept} frames" in lines[0]
    assert leftovers(tmp_path) == []


def test_intact_video_has_no_warning(tmp_path):
    src = make_video(tmp_path / "fine.mp4", audio=True)
    out = run_cli("video", src, "-o", tmp_path / "heat.mp4", "--model", tiny_keras(), "-q")
    assert out.code == 0 and out.stderr == "", out.stderr


# -- frame folders ------------------------------------------------------------------------------------------


def test_frames_empty_folder(tmp_path):
    (tmp_path / "shots").mkdir()
    (tmp_path / "shots" / "notes.txt").write_text("no pictures here")
    one_line_error(run_cli("frames", tmp_path / "shots", "-o", tmp_path / "out", "--model", tiny_keras(), "-q"),
                   1, "no images")
    nothing_written(tmp_path / "out", "labels.csv")


def test_frames_all_broken(tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(3):
        (shots / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = run_cli("frames", shots, "-o", tmp_path / "out", "--model", tiny_keras(), "-q")
    # Every input skipped is a failure (exit 1), as in `vidcam image`: one line per frame, then the summary.
    assert out.code == 1 and out.exception is None and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("vidcam: error: ") for line in lines)
    assert lines[-1].startswith("vidcam: error: 3 of 3 frames skipped")
    assert leftovers(tmp_path / "out") == []
    assert not [p for p in (tmp_path / "out").iterdir() if p.suffix in (".png", ".jpg")]


def test_frames_broken_among_good_exit_3(tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(4):
        write_png(shots / f"f{i}.png", pattern(seed=i))
    (shots / "f2.png").write_bytes((shots / "f2.png").read_bytes()[:100])  # truncated
    (shots / "f4.jpg").write_bytes(b"")  # empty
    out = run_cli("frames", shots, "-o", tmp_path / "out", "--model", tiny_keras(), "-q")
    assert out.code == 3, out.stderr
    assert "Traceback" not in out.stderr and "f2.png" in out.stderr and "f4.jpg" in out.stderr
    assert all(line.startswith("vidcam: error: ") for line in out.stderr.strip().splitlines())
    labels = (tmp_path / "out" / "labels.csv").read_text()
    assert all(f"f{i}.png" in labels for i in (0, 1, 3))
    assert leftovers(tmp_path / "out") == []


def test_frames_to_video_needs_overwrite(tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(2):
        write_png(shots / f"{i}.png", pattern(seed=i))
    (tmp_path / "film.mp4").write_bytes(b"precious")
    out = run_cli("frames", shots, "-o", tmp_path / "out", "--to-video", tmp_path / "film.mp4",
                  "--model", tiny_keras(), "-q")
    one_line_error(out, 1, "--overwrite")
    assert (tmp_path / "film.mp4").read_bytes() == b"precious"
