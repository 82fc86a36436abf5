"""The encoder sink (vidcam.media.sink): x264 and the muxer in two ffmpeg processes, a repeated picture written as a
skipped picture, judged by Debian's ffmpeg (an independent decoder) with strict error detection."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vidcam.errors import FFmpegError
from vidcam.media.ffmpeg_cmd import EncodeOptions, EncodeTarget, ffmpeg_exe
from vidcam.media.sink import SKIPPING_PRESETS, VideoSink

FFMPEG, FFPROBE = Path("/usr/bin/ffmpeg"), Path("/usr/bin/ffprobe")
pytestmark = pytest.mark.skipif(not FFPROBE.exists(), reason="needs Debian's ffmpeg (an independent decoder)")

W, H = 96, 64


def _picture(k: int) -> np.ndarray:
    """A distinct I420 picture for each ``k``: a gradient with a block that moves and a level that changes; from
    ``k`` 1000 on, another shot (coarse noise that moves)."""
    if k >= 1000:
        noise = np.random.default_rng(5).integers(16, 236, (H // 4 + 8, W // 4 + 8), dtype=np.uint8)
        y = np.kron(noise[k % 8 : k % 8 + H // 4, k % 8 : k % 8 + W // 4], np.ones((4, 4), np.uint8))
        uv = np.full((H // 2, W), 128, np.uint8)
        return np.concatenate([y, uv]).reshape(H * 3 // 2, W)
    yy, xx = np.mgrid[0:H, 0:W]
    y = (xx * 2 + yy + 17 * k) % 220 + 16
    y[(yy // 8 + k) % 8 == 0] = 235 - 9 * (k % 20)
    u = np.full((H // 2, W // 2), 128 - k % 50, np.uint8)
    v = np.full((H // 2, W // 2), 100 + (7 * k) % 60, np.uint8)
    return np.concatenate([y.astype(np.uint8).ravel(), u.ravel(), v.ravel()]).reshape(H * 3 // 2, W)


def _decode(path: Path) -> np.ndarray:
    """Every frame as Debian's ffmpeg decodes it, with every error check on (any warning fails)."""
    r = subprocess.run([str(FFMPEG), "-v", "warning", "-xerror", "-err_detect", "crccheck+bitstream+buffer+explode",
                        "-i", str(path), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-fps_mode", "passthrough", "-"],
                       capture_output=True, check=True)
    assert r.stderr == b"", r.stderr.decode(errors="replace")
    return np.frombuffer(r.stdout, np.uint8).reshape(-1, H * 3 // 2, W)


def _packets(path: Path) -> list[dict]:
    out = subprocess.run([str(FFPROBE), "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "packet=pts_time,size,flags", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["packets"]


def _write(out: Path, plan: list[int], times: list[int], end: int, preset: str) -> VideoSink:
    """Write ``plan`` (picture numbers; the same number again is a repeat) at ``times``, as the video job does."""
    sink = VideoSink(ffmpeg_exe(None), out, EncodeTarget(W, H, matrix="bt709"),
                     encode=EncodeOptions(preset=preset, threads=1), what="ffmpeg")
    try:
        for i, (k, t) in enumerate(zip(plan, times)):
            if i and plan[i - 1] == k:
                sink.repeat(t)
            else:
                sink.write_i420(_picture(k), t)
        sink.close(end)
    finally:
        sink.kill()
    return sink


@pytest.mark.parametrize("preset", ["superfast", "ultrafast", "medium"])
def test_repeats_decode_to_the_picture_before_them_at_their_own_times(tmp_path, preset):
    """Held pictures (CABAC at superfast, CAVLC at ultrafast) are written as skipped pictures: a few bytes each,
    each decoding to exactly the picture before it, at its own time; the pictures after a freeze decode as x264
    made them (their frame numbers follow the skipped ones). ``medium`` (3 reference pictures) encodes repeats."""
    plan = [0, 1, 1, 1, 2, 3, 3, 4] + [4] * 40 + [5, 6, 7, 7, 8]
    times = [i * 40_000_000 + (i % 3) * 1_000_000 for i in range(len(plan))]  # uneven (a variable rate)
    out = tmp_path / f"{preset}.mp4"
    sink = _write(out, plan, times, times[-1] + 40_000_000, preset)
    frames = _decode(out)
    assert len(frames) == len(plan)
    packets = _packets(out)
    assert [round(float(p["pts_time"]) * 1e9) for p in packets] == times
    repeats = [i for i in range(1, len(plan)) if plan[i] == plan[i - 1]]
    for i in range(len(plan)):
        if i in repeats and preset in SKIPPING_PRESETS:
            np.testing.assert_array_equal(frames[i], frames[i - 1])
        else:  # x264's own pictures (a repeat encoded again refines the picture a little)
            assert np.abs(frames[i].astype(int) - _picture(plan[i])).mean() < 1.5, i
    if preset in SKIPPING_PRESETS:
        assert sink.skipped == len(repeats)
        assert max(int(packets[i]["size"]) for i in repeats) < 48  # no picture data: skipped macroblocks only
    else:
        assert sink.skipped == 0
    assert packets[0]["flags"].startswith("K") and not any(p["flags"].startswith("K") for p in packets[1:])


def test_a_freeze_longer_than_the_frame_numbers_and_a_new_shot_after_it(tmp_path):
    """Hundreds of skipped pictures in a row (frame_num wraps many times), then a new shot that x264 starts with an
    IDR picture (frame numbers start again) and more repeats: every frame decodes, and to the right picture."""
    plan = list(range(30)) + [29] * 300 + list(range(1000, 1030)) + [1029] * 20 + [1030]
    times = [i * 33_366_667 for i in range(len(plan))]
    out = tmp_path / "long.mp4"
    sink = _write(out, plan, times, times[-1] + 33_366_667, "superfast")
    frames = _decode(out)
    assert len(frames) == len(plan) and sink.skipped == 320
    # The distinct pictures alone, each for as long as its own frame: what x264 was given in the run above.
    distinct = [i for i in range(len(plan)) if not i or plan[i] != plan[i - 1]]
    alone = tmp_path / "alone.mp4"
    _write(alone, [plan[i] for i in distinct], [k * 33_366_667 for k in range(len(distinct))],
           len(distinct) * 33_366_667, "superfast")
    np.testing.assert_array_equal(frames[distinct], _decode(alone))
    for i in range(1, len(plan)):
        if plan[i] == plan[i - 1]:
            np.testing.assert_array_equal(frames[i], frames[i - 1])
    assert sum(p["flags"].startswith("K") for p in _packets(out)) >= 2  # the new shot's IDR picture


def test_a_muxer_that_fails_is_one_error_and_nothing_hangs(tmp_path):
    """The muxer cannot write its file: the error is the muxer's, raised by close() or a later write, not a hang."""
    out = tmp_path / "missing-folder" / "out.mp4"
    sink = VideoSink(ffmpeg_exe(None), out, EncodeTarget(W, H), what="ffmpeg (encoding out.mp4)")
    with pytest.raises(FFmpegError, match=r"ffmpeg \(encoding out.mp4\)") as e:
        try:
            for i in range(200):
                sink.write_i420(_picture(i), i * 40_000_000)
            sink.close(200 * 40_000_000)
        finally:
            sink.kill()
    assert "\n" not in str(e.value)
    assert sink.encoder.proc.poll() is not None and sink.muxer.proc.poll() is not None


def test_repeat_needs_a_picture_first(tmp_path):
    sink = VideoSink(ffmpeg_exe(None), tmp_path / "x.mp4", EncodeTarget(W, H), what="ffmpeg")
    with pytest.raises(ValueError, match="no picture to repeat"):
        sink.repeat(0)
    sink.kill()
