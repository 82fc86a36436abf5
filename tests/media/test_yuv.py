"""Frames kept as I420 from decoder to encoder: the planar source against Debian's ffmpeg decoding the same clip,
the conversions against OpenCV's and ffmpeg's, the planar renderer against the RGB one, and which videos take
the planar path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import make_clip

from vidcam.media.ffmpeg_cmd import ffmpeg_exe
from vidcam.media.probe import probe
from vidcam.media.render import PlanarRenderer, Renderer, draw_label_i420, shrink_to_model
from vidcam.media.source import VideoSource, planar_matrix
from vidcam.media.yuv import (
    frames_equal,
    i420_to_rgb,
    planes,
    rgb_to_i420,
    sample_rgb,
    shrink_i420_to_model,
)

# The independent decoder: Debian's ffmpeg (./scripts/test installs it), not the binary vidcam runs.
FFMPEG, FFPROBE = Path("/usr/bin/ffmpeg"), Path("/usr/bin/ffprobe")
pytestmark = pytest.mark.skipif(not (FFMPEG.exists() and FFPROBE.exists()), reason="needs Debian's ffmpeg")


def _decode(path, pix_fmt: str, shape: tuple) -> np.ndarray:
    """Every frame as Debian's ffmpeg decodes it by itself."""
    raw = subprocess.run([str(FFMPEG), "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:V:0",
                          "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"],
                         capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, *shape)


def _read(path, **kw) -> list[np.ndarray]:
    source = VideoSource(probe(path), ffmpeg_exe(None), batch_size=4, **kw)
    try:
        return [f.copy() for b in source for f in b.pixels]
    finally:
        source.kill()


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("yuv") / "sd.mp4", seconds=0.4, audio=None)


@pytest.fixture
def picture():
    """A smooth 720p-like picture (video is smooth at the pixel scale; noise would only measure chroma loss)."""
    rng = np.random.default_rng(3)
    return cv2.resize(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8), (320, 180), interpolation=cv2.INTER_CUBIC)


def test_planar_source_gives_the_decoders_own_yuv_and_its_rgb(sd):
    got = np.stack(_read(sd, planar=True))
    assert got.shape == (10, 180, 160)
    assert np.array_equal(got, _decode(sd, "yuv420p", (180, 160)))  # the pixels as stored, untouched
    # Converted with the matrix the clip is read with (untagged SD: BT.601), they are what ffmpeg's RGB shows.
    rgb = _decode(sd, "rgb24", (120, 160, 3)).astype(int)
    # (testsrc2's sharp colour edges differ where the two upsample chroma differently: the median is the matrix.)
    right, wrong = (np.abs(np.stack([i420_to_rgb(f, m) for f in got]).astype(int) - rgb)
                    for m in ("smpte170m", "bt709"))
    assert np.median(right) <= 1 and np.median(wrong) >= 2 and right.mean() < wrong.mean() / 2


def test_which_videos_stay_planar(tmp_path, sd):
    assert planar_matrix(probe(sd)) == "smpte170m"  # untagged SD
    hd = make_clip(tmp_path / "hd.mp4", size="1280x720", seconds=0.08, audio=None)
    assert planar_matrix(probe(hd)) == "bt709"  # untagged HD
    tagged = make_clip(tmp_path / "tagged.mp4", seconds=0.08, audio=None, extra=("-colorspace", "bt709"))
    assert planar_matrix(probe(tagged)) == "bt709"
    odd = make_clip(tmp_path / "odd.mkv", seconds=0.08, audio=None, vf="scale=161:121,setsar=1", pix_fmt="yuv444p")
    assert (probe(odd).width, probe(odd).height) == (161, 121)
    assert planar_matrix(probe(odd)) is None  # I420 needs even sizes: decoded to RGB
    bt2020 = make_clip(tmp_path / "bt2020.mp4", seconds=0.08, audio=None, extra=("-colorspace", "bt2020nc"))
    assert planar_matrix(probe(bt2020)) is None  # a matrix vidcam does not convert itself
    with pytest.raises(ValueError, match="I420"):
        VideoSource(probe(odd), ffmpeg_exe(None), planar=True)


def test_full_range_becomes_limited_range(tmp_path):
    clip = make_clip(tmp_path / "full.mp4", seconds=0.08, audio=None, vf="scale=out_range=pc",
                     extra=("-color_range", "pc"))
    info = probe(clip)
    assert info.colour.range == "pc"
    y, _, _ = planes(_read(clip, planar=True)[0])
    full = _decode(clip, "gray", (120, 160))[0].astype(float)  # the stored full-range luma
    assert np.abs(y - (16 + full * 219 / 255)).max() <= 1.5


def test_conversions_match_opencv_and_invert(picture):
    ours = planes(rgb_to_i420(picture, "smpte170m").astype(int))
    opencv = planes(cv2.cvtColor(picture, cv2.COLOR_RGB2YUV_I420).astype(int))  # BT.601, limited range
    assert np.abs(ours[0] - opencv[0]).max() <= 1
    for a, b in zip(ours[1:], opencv[1:]):  # OpenCV takes each 2x2 block's first chroma; vidcam the average
        assert abs((a - b).mean()) < 0.5 and np.abs(a - b).mean() < 3
    for m in ("bt709", "smpte170m"):
        back = i420_to_rgb(rgb_to_i420(picture, m), m).astype(int)
        assert np.abs(back - picture).mean() < 1.0


def test_model_input_from_planes_matches_the_rgb_path(picture):
    frame = rgb_to_i420(picture, "bt709")
    ours = shrink_i420_to_model(frame, (32, 48), "bt709").astype(int)
    rgb = shrink_to_model(i420_to_rgb(frame, "bt709"), (32, 48), "squash")[0].astype(int)
    assert ours.shape == (32, 48, 3) and np.abs(ours - rgb).mean() < 1.5


@pytest.mark.parametrize("layout", ["overlay", "side-by-side"])
@pytest.mark.parametrize("window", [None, (40, 0, 280, 180)])
def test_planar_renderer_draws_what_the_rgb_renderer_draws(picture, rng, layout, window):
    cam = rng.random((7, 7)).astype(np.float32)
    frame = rgb_to_i420(picture, "bt709")
    rgb = i420_to_rgb(frame, "bt709")
    want = Renderer(layout=layout)(rgb, cam, "tabby cat 38.6%", window).astype(int)
    got = PlanarRenderer("bt709", layout=layout)(frame, cam, "tabby cat 38.6%", window)
    assert got.shape == (270, 320 * (2 if layout == "side-by-side" else 1))
    diff = np.abs(i420_to_rgb(got, "bt709").astype(int) - want)
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 8  # chroma at half size: edges (text, seam) differ
    assert np.abs(planes(got)[0][:, -320:].astype(int) - planes(frame)[0]).mean() > 5  # the heat is there


def test_planar_banner_darkens_the_bar_and_writes_white_text():
    frame = np.zeros((360 * 3 // 2, 640), np.uint8)
    y, u, v = planes(frame)
    y[:], u[:], v[:] = 200, 90, 170
    draw_label_i420(frame, "tabby cat 38.6%")
    bar = y[:20, :200]
    assert bar.max() >= 230 and bar.min() <= 16 + (200 - 16) * 0.31  # white text on a bar darkened to 30%
    assert y[100:, 300:].min() == 200 and u[60:, 200:].min() == 90  # the rest untouched
    assert abs(u[2:6, 10:40].mean() - 128) < 0.5 * abs(90 - 128)  # chroma pulled toward grey under the bar


def test_frames_equal_sees_one_pixel_anywhere(picture):
    a = rgb_to_i420(picture, "bt709")
    assert frames_equal(a, a.copy())
    for where in ((0, 0), (-1, -1), (5, 77)):  # row 5 is not among the rows checked first
        b = a.copy()
        b[where] ^= 1
        assert not frames_equal(a, b)
    assert not frames_equal(a, a[:-6])


def test_sampled_colours_are_the_frames_colours(picture):
    frame = rgb_to_i420(picture, "bt709")
    s = sample_rgb(frame, "bt709", samples=400)
    assert 300 <= s.shape[0] * s.shape[1] <= 500
    step = round(picture.shape[0] / s.shape[0])
    assert np.abs(s.astype(int) - picture[::step, ::step][: s.shape[0], : s.shape[1]]).mean() < 3


def test_sink_keeps_the_matrix_it_is_given(tmp_path, picture):
    from vidcam.media.ffmpeg_cmd import EncodeTarget
    from vidcam.media.sink import VideoSink

    out = tmp_path / "out.mp4"
    target = EncodeTarget(320, 180, matrix="bt709")
    sink = VideoSink(ffmpeg_exe(None), out, target, what="ffmpeg")
    frame = rgb_to_i420(picture, "bt709")
    for i in range(3):
        sink.write_i420(frame, i * 40_000_000)
    sink.close(120_000_000)
    tag = subprocess.run([str(FFPROBE), "-v", "error", "-show_entries",
                          "stream=color_space", "-of", "default=nw=1:nk=1", str(out)],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert tag == "bt709"
    back = _decode(out, "yuv420p", (270, 320))
    assert len(back) == 3 and np.abs(back[0].astype(int) - frame).mean() < 1.5


def _frame_times(path) -> list[str]:
    out = subprocess.run([str(FFPROBE), "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    return out.replace(",", " ").split()


def test_a_sink_opened_before_its_first_frame_writes_the_same_video(tmp_path, picture):
    """The video job opens the encoder when the first frame's time is known, before it is drawn: the output is
    the one a sink started by its first write makes (times, pixels); opened for another first time it refuses
    the frame; opened and closed with no frame, it leaves no encoder and no file."""
    from vidcam.media.ffmpeg_cmd import EncodeTarget
    from vidcam.media.sink import VideoSink

    target = EncodeTarget(320, 180, matrix="bt709")
    frame = rgb_to_i420(picture, "bt709")

    def sink_for(out):
        return VideoSink(ffmpeg_exe(None), out, target, what="ffmpeg")

    outs = []
    for early in (False, True):
        out = tmp_path / f"{early}.mp4"
        sink = sink_for(out)
        if early:
            sink.open(500_000_000)
            assert sink.encoder is not None  # running before any frame
        for i in range(3):
            sink.write_i420(frame, 500_000_000 + i * 40_000_000)
        sink.close(620_000_000)
        outs.append(out)
    assert _frame_times(outs[0]) == _frame_times(outs[1]) == ["0.500000", "0.540000", "0.580000"]
    np.testing.assert_array_equal(_decode(outs[0], "yuv420p", (270, 320)), _decode(outs[1], "yuv420p", (270, 320)))

    sink = sink_for(tmp_path / "other.mp4")
    sink.open(0)
    with pytest.raises(ValueError, match="opened for a first frame at 0 ns"):
        sink.write_i420(frame, 40_000_000)
    sink.kill()
    sink = sink_for(tmp_path / "none.mp4")
    sink.open(0)
    sink.close(40_000_000)
    assert sink.encoder.proc.poll() is not None and not (tmp_path / "none.mp4").exists()
