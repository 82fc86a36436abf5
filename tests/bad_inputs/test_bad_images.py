"""Odd and broken still images through `vidcam image` (and `vidcam compare`): odd-but-valid files are explained,
broken ones get one clear line, a batch skips the bad ones (exit 3), and nothing is left half-written."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from bad_support import (
    CHELSEA,
    DOG,
    make_video,
    nothing_written,
    one_line_error,
    pattern,
    run_cli,
    run_proc,
    skipped_run,
    tiny_keras,
    write_png,
)

pytestmark = pytest.mark.timeout(180)

PIL = pytest.importorskip("PIL.Image", reason="Pillow (a scikit-image dependency) writes CMYK/palette/GIF files")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A valid-looking 100-byte PNG whose header claims width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def _flip_in_chunk(data: bytes, kind: bytes) -> bytes:
    """``data`` (a PNG) with one byte inside the first ``kind`` chunk's data inverted (its CRC then fails)."""
    at = data.index(kind) + 4 + 10
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(DOG.read_bytes())
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# -- odd but valid: explained, one picture written ----------------------------------------------------------


def _cmyk_jpeg(path: Path) -> tuple[int, int]:
    PIL.new("CMYK", (60, 40), (0, 255, 0, 0)).save(path)  # pure magenta ink
    return 40, 60


def _png16(path: Path) -> tuple[int, int]:
    img = (np.linspace(0, 65535, 50 * 30 * 3).reshape(30, 50, 3)).astype(np.uint16)
    assert cv2.imwrite(str(path), img)
    return 30, 50


def _palette_png(path: Path) -> tuple[int, int]:
    im = PIL.new("P", (45, 35))
    im.putpalette([255, 0, 0, 0, 0, 255] * 128)
    im.paste(1, (10, 10, 30, 30))
    im.save(path, transparency=0)  # index 0 (red) fully transparent
    return 35, 45


def _animated_gif(path: Path) -> tuple[int, int]:
    frames = [PIL.new("RGB", (24, 20), (40 * i, 200, 0)) for i in range(5)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    return 20, 24


def _one_pixel(path: Path) -> tuple[int, int]:
    write_png(path, np.full((1, 1, 3), 128, np.uint8))
    return 1, 1


def _gray_jpeg(path: Path) -> tuple[int, int]:
    assert cv2.imwrite(str(path), pattern(33, 21)[..., 0])
    return 33, 21


def _rgba_webp(path: Path) -> tuple[int, int]:
    rgba = np.dstack([pattern(26, 30), np.full((26, 30), 128, np.uint8)])
    assert cv2.imwrite(str(path), rgba, [cv2.IMWRITE_WEBP_QUALITY, 101])
    return 26, 30


def _tiff16_gray(path: Path) -> tuple[int, int]:
    assert cv2.imwrite(str(path), (np.arange(40 * 20).reshape(20, 40) * 80).astype(np.uint16))
    return 20, 40


ODD_VALID = {
    "cmyk.jpg": _cmyk_jpeg,
    "deep16.png": _png16,
    "palette_transparent.png": _palette_png,
    "animated.gif": _animated_gif,
    "one_pixel.png": _one_pixel,
    "gray.jpg": _gray_jpeg,
    "rgba.webp": _rgba_webp,
    "gray16.tif": _tiff16_gray,
}


@pytest.mark.parametrize("name", list(ODD_VALID))
def test_odd_but_valid_image_is_explained(tmp_path, name):
    src = tmp_path / name
    h, w = ODD_VALID[name](src)
    out = run_cli("image", src, "-o", tmp_path / "out", "--model", tiny_keras(), "--layout", "overlay", "--json")
    assert out.code == 0, out.stderr
    assert out.stderr == ""
    pic = cv2.imread(str(tmp_path / "out" / f"{src.stem}_output.jpg"))
    assert pic is not None and pic.shape == (h, w, 3)  # overlay keeps the picture's own size
    nothing_written(tmp_path / "out")  # no temporary files


def test_cmyk_and_palette_colours_are_right(tmp_path):
    """The odd formats come out as the colours people see (not inverted CMYK, not a black transparent area)."""
    from vidcam.media.images import read_image

    _cmyk_jpeg(tmp_path / "c.jpg")
    assert np.abs(read_image(tmp_path / "c.jpg")[20, 30].astype(int) - [255, 0, 255]).max() < 8
    _palette_png(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert tuple(img[2, 2]) == (255, 255, 255)  # transparent red composited on white
    assert tuple(img[20, 20]) == (0, 0, 255)  # opaque blue stays blue
    _animated_gif(tmp_path / "a.gif")
    assert tuple(read_image(tmp_path / "a.gif")[5, 5]) == (0, 200, 0)  # the first frame


def test_ten_thousand_square_image(tmp_path):
    src = write_png(tmp_path / "big.png", np.zeros((10000, 10000, 3), np.uint8))
    out = run_cli("image", src, "-o", tmp_path, "--model", tiny_keras(), "--layout", "overlay")
    assert out.code == 0, out.stderr
    assert cv2.imread(str(tmp_path / "big_output.jpg"), cv2.IMREAD_REDUCED_COLOR_8).shape == (1250, 1250, 3)


# -- broken: one line, exit 1, no picture --------------------------------------------------------------------


def _write(data: bytes):
    def make(path: Path) -> None:
        path.write_bytes(data)

    return make


BROKEN = {
    "random.jpg": (_write(np.random.default_rng(5).integers(0, 256, 4000, dtype=np.uint8).tobytes()), "not an image"),
    "text.png": (_write(b"this is not a picture\n"), "not an image"),
    "empty.jpg": (_write(b""), "empty"),
    "half.jpg": (_write(DOG.read_bytes()[: DOG.stat().st_size // 2]), "not an image"),
    "half.png": (_write(CHELSEA.read_bytes()[: CHELSEA.stat().st_size // 2]), "truncated or damaged png"),
    "bad_idat.png": (_write(_flip_in_chunk(CHELSEA.read_bytes(), b"IDAT")), "truncated or damaged png"),
    "claims_100k.png": (_write(_png_claiming(100_000, 100_000)), "than vidcam accepts"),
    "claims_20k.png": (_write(_png_claiming(20_000, 20_000)), "than vidcam accepts"),
    "claims_65k.jpg": (_write(_jpeg_claiming(65_000, 65_000)), "than vidcam accepts"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_image_is_one_line_error(tmp_path, name):
    make, needle = BROKEN[name]
    src = tmp_path / name
    make(src)
    out = run_cli("image", src, "-o", tmp_path / "out", "--model", tiny_keras())
    one_line_error(out, 1, needle, name)
    nothing_written(tmp_path / "out", f"{src.stem}_output.jpg")


def test_damaged_metadata_chunk_is_ignored(tmp_path):
    """A bad CRC in an ancillary PNG chunk (text, here) does not touch the pixels: the image is explained, and
    libpng's warning about it never reaches the user."""
    data = CHELSEA.read_bytes()
    kind = next(k for k in (b"iTXt", b"tEXt", b"zTXt", b"pHYs", b"gAMA") if k in data)
    src = tmp_path / "meta.png"
    src.write_bytes(_flip_in_chunk(data, kind))
    out = run_proc("image", src, "-o", tmp_path, "--model", tiny_keras(), "--json")
    assert out.code == 0 and out.stderr == "", out.stderr
    assert (tmp_path / "meta_output.jpg").is_file()


def test_video_named_like_an_image(tmp_path):
    src = make_video(tmp_path / "clip.mp4")
    shutil.move(src, tmp_path / "clip.jpg")
    out = run_cli("image", tmp_path / "clip.jpg", "-o", tmp_path / "out", "--model", tiny_keras())
    one_line_error(out, 1, "not an image")
    nothing_written(tmp_path / "out", "clip_output.jpg")


def test_batch_skips_broken_files_and_explains_the_rest(tmp_path):
    good = [shutil.copy(CHELSEA, tmp_path / "a.png"), shutil.copy(DOG, tmp_path / "c.jpg")]
    for name in ("b.png", "d.jpg"):
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40 if name.endswith("png") else b"\xff\xd8junk")
    out = run_cli("image", str(tmp_path / "*.*"), "-o", tmp_path / "out", "--model", tiny_keras())
    lines = skipped_run(out, "b.png", "d.jpg")
    assert lines[-1] == "vidcam: error: 2 of 4 images skipped"
    for p in good:
        assert (tmp_path / "out" / f"{Path(p).stem}_output.jpg").is_file()
    nothing_written(tmp_path / "out", "b_output.jpg", "d_output.jpg")


def test_compare_skips_broken_image(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    out = run_cli("compare", CHELSEA, tmp_path / "bad.png", "-o", tmp_path / "out", "--model", tiny_keras(),
                  "--methods", "gradcam", "--steps", "2")
    skipped_run(out, "bad.png")
    assert (tmp_path / "out" / "chelsea_compare.jpg").is_file()
    nothing_written(tmp_path / "out", "bad_compare.jpg")


def test_decoder_noise_never_reaches_stderr(tmp_path):
    """A real process: libpng/libjpeg/libtiff print their complaints straight to fd 2, past Python. vidcam
    checks PNG structure itself, so every stderr line is still vidcam's own."""
    src = CHELSEA.read_bytes()
    bad = {
        "cut.png": src[: len(src) // 3],
        "crc.png": _flip_in_chunk(src, b"IDAT"),
        "cut.jpg": DOG.read_bytes()[:20000],
        "claims.png": _png_claiming(30_000, 30_000),
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    cv2.imwrite(str(tmp_path / "t.tif"), pattern())
    (tmp_path / "cut.tif").write_bytes((tmp_path / "t.tif").read_bytes()[:300])
    names = [*bad, "cut.tif"]
    out = run_proc("image", *[tmp_path / n for n in names], CHELSEA, "-o", tmp_path / "out",
                   "--model", tiny_keras())
    lines = skipped_run(out, *names)
    assert len(lines) == len(names) + 1, lines  # one per skipped file, one summary
    nothing_written(tmp_path / "out", *[f"{Path(n).stem}_output.jpg" for n in names])
