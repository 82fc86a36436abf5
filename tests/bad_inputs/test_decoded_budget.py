"""A decoded-size budget (issue 17, row 11): pictures whose decoded pixels would not fit are refused with one
line before they are decoded, and the 8-bit conversion of big images works in bands (no full-size float copies)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

from bad_support import ROOT, make_video, nothing_written, one_line_error, run_proc, tiny_keras


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def rgba16_png(path: Path, width: int, height: int, *, gradient: bool = True) -> Path:
    """A real, valid PNG of ``width`` x ``height`` 16-bit RGBA (a gradient in red, or black; half-transparent),
    written row by row, so making a huge one costs no memory; all-alike rows compress to almost nothing."""
    row = bytearray(1 + width * 8)  # filter byte 0, then RGBA16 big-endian
    for x in range(width):
        red = (x * 65535) // max(1, width - 1) if gradient else 0
        row[1 + 8 * x : 1 + 8 * x + 8] = struct.pack(">HHHH", red, 0, 0, 32768)
    z = zlib.compressobj(1)
    data = b"".join(z.compress(bytes(row)) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path


def test_a_small_file_that_decodes_to_gigabytes_is_refused_before_decoding(tmp_path):
    big = rgba16_png(tmp_path / "bomb.png", 14000, 14000, gradient=False)  # 1.5 GB decoded, under 200 megapixels
    assert big.stat().st_size < 10_000_000  # a few MB on disk
    out = run_proc("image", big, "-o", tmp_path / "out", "--model", tiny_keras(), cwd=tmp_path)
    line = one_line_error(out, 1, "bomb.png", "14000x14000", "budget")
    assert "1,495 MB" in line  # 14000 * 14000 * 4 channels * 2 bytes
    nothing_written(tmp_path / "out", "bomb_output.jpg")


def test_big_16_bit_rgba_converts_in_bands(tmp_path):
    """A 4000x4000 RGBA16 PNG (128 MB decoded) is read with a peak far below the old float32 compositing (about
    1 GB more): the conversion to 8-bit RGB on white works a band of rows at a time."""
    png = rgba16_png(tmp_path / "big.png", 4000, 4000)
    code = (
        "import json, resource, sys\n"
        "from vidcam.media.images import read_image\n"
        "import numpy as np\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"img = read_image({str(png)!r})\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'growth_kb': after - before, 'shape': img.shape, 'left': img[0, 0].tolist(),"
        " 'right': img[0, -1].tolist()}))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["shape"] == [4000, 4000, 3]
    # Half-transparent on white: black becomes mid-grey, full red becomes light red.
    assert r["left"] == [127, 127, 127] and r["right"] == [255, 127, 127]
    assert r["growth_kb"] * 1024 < 450 * 2**20, f"peak grew by {r['growth_kb'] / 1024:.0f} MB"


def test_video_frames_over_the_budget_are_refused_before_decoding(tmp_path):
    src = make_video(tmp_path / "hd.mp4", size="1280x720", seconds=0.5)
    out = run_proc("video", src, "-o", tmp_path / "o.mp4", "--model", tiny_keras(), cwd=tmp_path,
                   env={"VIDCAM_MAX_DECODED_BYTES": "1000000"})  # 1 MB: a 720p RGB frame needs 2.6 MB
    one_line_error(out, 1, "hd.mp4", "1280x720", "budget", "VIDCAM_MAX_DECODED_BYTES")
    nothing_written(tmp_path, "o.mp4")
