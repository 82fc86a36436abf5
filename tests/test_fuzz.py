"""Property-based fuzzing of the readers: random bytes and mutations of real small files (a JPEG, a PNG, a GIF,
a tiny H.264 mp4 made here with the real ffmpeg) go to :func:`vidcam.media.images.read_image`,
:func:`vidcam.media.probe.probe`
and the whole video pipeline (:func:`vidcam.jobs.video.process_video` with a tiny real model). Each example either
succeeds with a well-formed result or raises a :class:`~vidcam.errors.VidcamError`; any other exception, a
crash or a hang (pytest-timeout, plus each hypothesis example's deadline) fails the test.

Derandomized (a fixed sequence of examples) and with modest example counts, so CI runs the same cases in well
under two minutes.
"""

from __future__ import annotations

import io
import struct
import subprocess
import tempfile
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import CHELSEA, DOG
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vidcam import VideoOptions
from vidcam.errors import VidcamError

# A generous per-example bound: it catches a hang or a decompression bomb, not slowness.
FUZZ = settings(derandomize=True, deadline=timedelta(seconds=20), database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _small_seeds() -> dict[str, bytes]:
    """Real, small files of each kind the image reader takes (small, so mutations reach every part of them)."""
    import cv2
    from PIL import Image

    img = cv2.resize(cv2.imread(str(CHELSEA)), (48, 32), interpolation=cv2.INTER_AREA)
    seeds = {ext: cv2.imencode(ext, img)[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".webp", ".tif")}
    seeds[".dog.jpg"] = cv2.imencode(".jpg", cv2.resize(cv2.imread(str(DOG)), (40, 30)), [cv2.IMWRITE_JPEG_QUALITY,
                                                                                         60])[1].tobytes()
    buf = io.BytesIO()
    frames = [Image.fromarray(np.full((12, 16, 3), 60 * i, np.uint8)) for i in range(3)]
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    seeds[".gif"] = buf.getvalue()
    return seeds


SEEDS = _small_seeds()


def _fix_png_crcs(data: bytearray) -> bytearray:
    """Recompute every chunk's CRC, so a mutated PNG reaches libpng's decoder instead of vidcam's CRC check."""
    pos = 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        end = pos + 12 + length
        if end > len(data):
            break
        data[end - 4 : end] = struct.pack(">I", zlib.crc32(bytes(data[pos + 4 : end - 4])))
        pos = end
    return data


@st.composite
def mutated(draw, seeds: dict[str, bytes]):
    """A seed file with a few byte flips, insertions, deletions, a truncation or a spliced chunk; most of them
    in the back two thirds (the coded data), so that many mutants still parse and reach the decoders."""
    name = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[name])
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "flip", "set", "insert", "delete", "truncate", "splice"]))
        if not data:
            break
        lo = draw(st.sampled_from([0, len(data) // 3, len(data) // 3]))
        at = draw(st.integers(min(lo, len(data) - 1), len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[at:]
        else:  # a run of bytes copied from elsewhere in the file (a repeated header, a duplicated chunk)
            src = draw(st.integers(0, len(data) - 1))
            data[at:at] = data[src : src + draw(st.integers(1, 256))]
    if name.endswith(".png") and draw(st.booleans()):
        data = _fix_png_crcs(data)
    return name.rsplit(".", 1)[-1], bytes(data)


def _check_image(path: Path) -> None:
    from vidcam.media.images import read_image

    try:
        img = read_image(path)
    except VidcamError as e:
        assert str(e) and "\n" not in str(e)
        event(f"refused: {type(e).__name__}")
        return
    event("decoded")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.size > 0


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=100)
@given(case=mutated(SEEDS))
def test_image_reader_on_mutated_files(case):
    ext, data = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzz.{ext}"
        path.write_bytes(data)
        _check_image(path)


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=50)
@given(data=st.binary(min_size=0, max_size=2048),
       prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF", b"II*\x00"]))
def test_image_reader_on_random_bytes(data, prefix):
    """Random bytes, often behind a real format's magic number so the decoders (not just the sniffers) run."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.jpg"
        path.write_bytes(prefix + data)
        _check_image(path)


# -- video ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mp4_seed(tmp_path_factory) -> bytes:
    import imageio_ffmpeg

    path = tmp_path_factory.mktemp("seed") / "seed.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=32x24:rate=10:duration=0.5", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)], check=True, timeout=60)
    return path.read_bytes()


@pytest.fixture(scope="module")
def tiny_engine(tiny_flat):
    from conftest import classifier_for

    from vidcam.cam.engine import CamEngine

    return CamEngine(classifier_for(tiny_flat))


def _check_probe(path: Path):
    from vidcam.media.probe import probe

    try:
        info = probe(path)
    except VidcamError as e:
        assert str(e)
        event(f"refused: {type(e).__name__}")
        return None
    event("probed")
    assert info.width > 0 and info.height > 0 and info.frames > 0 and info.fps > 0
    return info


@pytest.mark.timeout(180)
@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_video_probe_on_mutated_and_random_files(mp4_seed, data):
    raw = data.draw(st.one_of(mutated({".mp4": mp4_seed}).map(lambda c: c[1]), st.binary(max_size=4096)))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.mp4"
        path.write_bytes(raw)
        _check_probe(path)


@pytest.mark.timeout(240)
@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_video_pipeline_on_mutated_files(mp4_seed, tiny_engine, data):
    """The whole pipeline (probe, decode, engine, encode): a summary whose frame count matches the written
    video, or a VidcamError; never a hang, another exception or a temporary file left behind."""
    from vidcam.jobs.video import process_video
    from vidcam.media.probe import probe

    _, raw = data.draw(mutated({".mp4": mp4_seed}))
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "fuzz.mp4", Path(d) / "out" / "heat.mp4"
        src.write_bytes(raw)
        try:
            summary = process_video(src, out, model=tiny_engine, options=VideoOptions(batch_size=4))
        except VidcamError as e:
            assert str(e)
            assert not out.exists()
            event(f"refused: {type(e).__name__}")
        else:
            event("processed")
            assert summary.frames > 0 and probe(out).frames == summary.frames
        assert not [p.name for p in out.parent.glob(".*part*")] if out.parent.exists() else True
