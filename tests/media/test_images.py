"""Reading images in every shape users have them, and fitting them to a model."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from conftest import CHELSEA

from vidcam.errors import InputError
from vidcam.media.images import fit_to_model, read_image


def _write(path, bgr_or_gray) -> None:
    assert cv2.imwrite(str(path), bgr_or_gray)


def test_png_is_rgb():
    img = read_image(CHELSEA)
    assert img.shape == (300, 451, 3) and img.dtype == np.uint8
    bgr = cv2.imread(str(CHELSEA))
    np.testing.assert_array_equal(img, bgr[..., ::-1])


def test_grayscale(tmp_path):
    _write(tmp_path / "g.png", np.full((10, 12), 77, np.uint8))
    img = read_image(tmp_path / "g.png")
    assert img.shape == (10, 12, 3) and (img == 77).all()


def test_rgba_composited_on_white(tmp_path):
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 2] = 255  # red
    bgra[:2, ..., 3] = 255  # top half opaque, bottom transparent
    _write(tmp_path / "a.png", bgra)
    img = read_image(tmp_path / "a.png")
    assert tuple(img[0, 0]) == (255, 0, 0)
    assert tuple(img[3, 3]) == (255, 255, 255)


def test_16bit_png(tmp_path):
    _write(tmp_path / "d.png", np.full((5, 5, 3), 65535, np.uint16))
    img = read_image(tmp_path / "d.png")
    assert img.dtype == np.uint8 and (img == 255).all()


def _jpeg_with_orientation(orientation: int) -> bytes:
    bgr = np.zeros((20, 40, 3), np.uint8)
    bgr[:, :20] = (0, 0, 255)  # left half red
    ok, buf = cv2.imencode(".jpg", bgr)
    assert ok
    data = buf.tobytes()
    # Minimal EXIF APP1: TIFF header (little endian), one IFD entry: Orientation (0x0112), SHORT, 1 value.
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    return data[:2] + segment + data[2:]


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    path = tmp_path / "phone.jpg"
    path.write_bytes(_jpeg_with_orientation(6))  # rotate 90 CW to display
    img = read_image(path)
    assert img.shape[:2] == (40, 20)  # portrait after rotation
    assert img[2, 10, 0] > 200  # the red half is now on top


def test_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(InputError, match="directory"):
        read_image(tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "text.png").write_bytes(b"hello, not an image")
    with pytest.raises(InputError, match="not an image"):
        read_image(tmp_path / "text.png")


def test_fit_squash_and_crop():
    img = np.zeros((300, 600, 3), np.uint8)
    x, window = fit_to_model(img, (224, 224), "squash")
    assert x.shape == (224, 224, 3) and window == (0, 0, 600, 300)
    x, window = fit_to_model(img, (224, 224), "crop")
    assert x.shape == (224, 224, 3)
    x0, y0, x1, y1 = window
    assert y0 == 19 and y1 == 281 and x1 - x0 == 262 and x0 == 169  # 256/224 crop, centred
    with pytest.raises(ValueError):
        fit_to_model(img, (224, 224), "stretch")
