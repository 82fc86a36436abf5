"""The encoder sink (vidcam.media.sink): x264 and the muxer in two ffmpeg processes, a repeated picture written as a
skipped picture, judged by Debian's ffmpeg (an independent decoder) with strict error detection."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from cdp import Browser, chromium, serve

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


def _grey(k: int, w: int = 320, h: int = 240) -> np.ndarray:
    """An I420 picture of one grey level per ``k`` (Y 40 + 12k): each picture of a sequence tells itself apart."""
    return np.concatenate([np.full((h, w), 40 + 12 * k, np.uint8),
                           np.full((h // 2, w), 128, np.uint8)]).reshape(h * 3 // 2, w)


@pytest.mark.skipif(chromium() is None, reason="no chromium: ./scripts/test installs Debian's chromium when missing")
def test_a_browser_plays_the_skipped_pictures(tmp_path):
    """Chromium (its own MP4 demuxer and decoder) shows, at every time of a freeze written as skipped pictures, the
    picture the freeze holds, and the pictures after it as they are; it reports no corrupted frame."""
    plan = list(range(10)) + [9] * 40 + list(range(10, 15))
    sink = VideoSink(ffmpeg_exe(None), tmp_path / "freeze.mp4", EncodeTarget(320, 240, time_base=Fraction(1, 25)),
                     what="ffmpeg")
    try:
        for i, k in enumerate(plan):
            if i and plan[i - 1] == k:
                sink.repeat(i * 40_000_000)
            else:
                sink.write_i420(_grey(k), i * 40_000_000)
        sink.close(len(plan) * 40_000_000)
    finally:
        sink.kill()
    assert sink.skipped == 40
    (tmp_path / "page.html").write_text('<link rel="icon" href="data:,"><video id="v" src="freeze.mp4" muted></video>'
                                        '<canvas id="c"></canvas>')
    times = [(i + 0.5) / 25 for i in range(len(plan))]
    with serve(tmp_path) as base, Browser() as page:
        page.call("Page.navigate", url=f"{base}/page.html")
        page.evaluate("new Promise(r => { const f = () => document.getElementById('c') ? r(1) : setTimeout(f, 20); "
                      "f(); })")
        # Each seek waits for its frame to be presented (requestVideoFrameCallback), not only for 'seeked': the
        # canvas could otherwise get the frame before it.
        shown = page.evaluate(f"""(async () => {{
            const v = document.getElementById('v'), c = document.getElementById('c');
            if (v.readyState < 2) await new Promise((ok, bad) => {{ v.addEventListener('loadeddata', ok);
                v.addEventListener('error', () => bad('video error ' + (v.error && v.error.code))); }});
            c.width = 320; c.height = 240;
            const g = c.getContext('2d', {{willReadFrequently: true}}), out = [];
            for (const t of {times}) {{
                const presented = new Promise(r => v.requestVideoFrameCallback(r));
                v.currentTime = t;
                await new Promise(r => v.addEventListener('seeked', r, {{once: true}}));
                await presented;
                g.drawImage(v, 0, 0);
                out.push(g.getImageData(160, 120, 1, 1).data[1]);
            }}
            await v.play(); await new Promise(r => v.addEventListener('ended', r, {{once: true}}));
            return [out, v.getVideoPlaybackQuality().corruptedVideoFrames];
        }})()""", timeout=120)
        assert page.errors() == []
    levels, corrupted = shown
    assert corrupted == 0
    want = [round((40 + 12 * k - 16) * 255 / 219) for k in plan]  # limited-range grey to RGB
    wrong = [(i, got, w) for i, (got, w) in enumerate(zip(levels, want)) if abs(got - w) > 3]
    assert not wrong, f"(frame, shown, wanted): {wrong}"
