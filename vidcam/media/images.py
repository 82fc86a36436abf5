"""Reading still images and fitting frames to a model's input.

Images come back as RGB uint8 (H, W, 3) whatever the file holds: grayscale, RGBA/palette with transparency
(composited on white), 16-bit (scaled to 8), CMYK or EXIF-rotated JPEGs (upright).
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from vidcam.errors import InputError

__all__ = ["read_image", "fit_to_model", "fit_batch", "IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS", "check_decoded_size",
           "decoded_budget"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
MAX_IMAGE_PIXELS = 200_000_000  # a 14142 x 14142 image: beyond that a "photo" is a decompression bomb
# OpenCV checks a header's claimed size against this before it allocates (its default, 2**30 pixels, lets a
# tiny file claiming 30000 x 30000 take gigabytes). It is read once, when cv2 loads, and every vidcam module
# imports cv2 lazily, after this line.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


_ROWS = 512  # conversion works on this many rows at a time, so its temporaries stay small whatever the size


def _to_8bit(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    out = np.empty(img.shape, np.uint8)
    if img.dtype == np.uint16:
        for y in range(0, img.shape[0], _ROWS):
            np.right_shift(img[y : y + _ROWS], 8, out=out[y : y + _ROWS], casting="unsafe")
        return out
    lo, hi = float(np.min(img)), float(np.max(img))
    for y in range(0, img.shape[0], _ROWS):
        out[y : y + _ROWS] = ((img[y : y + _ROWS] - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)
    return out


def _on_white(bgra: np.ndarray) -> np.ndarray:
    """Composite 8-bit BGRA on white, in integers and a band of rows at a time (no full-size float copies)."""
    out = np.empty((*bgra.shape[:2], 3), np.uint8)
    for y in range(0, bgra.shape[0], _ROWS):
        band = bgra[y : y + _ROWS].astype(np.uint16)
        a = band[..., 3:4]
        out[y : y + _ROWS] = (band[..., :3] * a + 255 * (255 - a) + 127) // 255
    return out


def _to_rgb8(img: np.ndarray) -> np.ndarray:
    import cv2

    img = _to_8bit(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(_on_white(img), cv2.COLOR_BGR2RGB)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)


def decoded_budget() -> int:
    """Bytes one decoded image or video frame may take (``$VIDCAM_MAX_DECODED_BYTES``, default 1 GiB: an 8K
    RGB video frame is 100 MB, a 200-megapixel RGB photo 600 MB)."""
    try:
        return int(os.environ.get("VIDCAM_MAX_DECODED_BYTES", "") or 1 << 30)
    except ValueError:
        return 1 << 30


def check_decoded_size(what: str, width: int, height: int, channels: int = 3, bytes_per_sample: int = 1) -> None:
    """Refuse, before anything is decoded, a picture whose decoded pixels would exceed :func:`decoded_budget`.

    Raises:
        InputError: naming the size, the bytes it needs and the budget.
    """
    need, budget = width * height * channels * bytes_per_sample, decoded_budget()
    if need > budget:
        raise InputError(f"{what} is {width}x{height} ({channels} channels of {8 * bytes_per_sample} bits): "
                         f"{need / 2**20:,.0f} MB decoded, more than vidcam's budget of {budget / 2**20:,.0f} MB "
                         "(set VIDCAM_MAX_DECODED_BYTES to allow more)")


def _clean_png(data: bytes) -> bytes | None:
    """The PNG with only what the pixels need (critical chunks and ``tRNS``), or None when it is truncated or a
    critical chunk is damaged.

    libpng prints its errors and warnings (a bad CRC, an odd colour profile) straight to the process's stderr,
    past vidcam. Checking the chunks here and leaving out the ancillary ones it would warn about keeps stderr
    to vidcam's own one-line messages; the decoded pixels are the same.
    """
    out = [_PNG_SIGNATURE]
    pos, n = len(_PNG_SIGNATURE), len(data)
    while pos + 12 <= n:
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > n:
            return None
        intact = zlib.crc32(data[pos + 4 : end - 4]) == struct.unpack(">I", data[end - 4 : end])[0]
        if kind[:1].isupper():
            if not intact:
                return None
            out.append(data[pos:end])
        elif kind == b"tRNS" and intact:
            out.append(data[pos:end])
        if kind == b"IEND":
            return b"".join(out)
        pos = end
    return None


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3), upright.

    Raises:
        InputError: missing, a directory, unreadable, empty, not an image, or absurdly large.
    """
    import cv2

    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not an image")
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block the read forever
            raise InputError(f"{path} is not a regular file (a pipe or device?); give an image file")
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    if data.size == 0:
        raise InputError(f"{path} is empty")
    not_image = f"{path} is not an image vidcam can read (JPEG, PNG, BMP, WebP, TIFF, GIF)"
    if data[: len(_PNG_SIGNATURE)].tobytes() == _PNG_SIGNATURE:
        png = _clean_png(data.tobytes())
        if png is None or png[12:16] != b"IHDR":
            raise InputError(f"{path} is a truncated or damaged PNG")
        width, height = struct.unpack(">II", png[16:24])
        if width * height > MAX_IMAGE_PIXELS:  # refused before anything is allocated
            raise InputError(f"{path} claims {width}x{height} pixels, more than vidcam accepts ({MAX_IMAGE_PIXELS:,})")
        depth, colour = png[24], png[25]  # palette images decode to 3 channels, gray+alpha to 4
        channels = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}.get(colour, 4)
        check_decoded_size(str(path), width, height, channels, 2 if depth == 16 else 1)
        data = np.frombuffer(png, np.uint8)
    try:
        if data.size >= 2 and data[0] == 0xFF and data[1] == 0xD8:
            # JPEG: IMREAD_COLOR applies the EXIF orientation and converts CMYK/gray to colour.
            img = cv2.imdecode(data, cv2.IMREAD_COLOR)
        else:
            img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        # OpenCV raises (rather than returning None) when the header claims more pixels than it allows.
        if "IMAGE_PIXELS" in str(e) or "IMAGE_WIDTH" in str(e) or "IMAGE_HEIGHT" in str(e):
            raise InputError(f"{path} claims a size larger than vidcam accepts ({MAX_IMAGE_PIXELS:,} pixels)") from None
        raise InputError(not_image) from None
    if img is None or img.size == 0:
        raise InputError(not_image)
    if img.shape[0] * img.shape[1] > MAX_IMAGE_PIXELS:
        raise InputError(f"{path} is {img.shape[1]}x{img.shape[0]} pixels, more than vidcam accepts")
    return _to_rgb8(img)


def fit_to_model(image: np.ndarray, size: tuple[int, int], fit: str = "squash") -> tuple[np.ndarray, tuple]:
    """Bring an RGB frame to the model's (height, width).

    Args:
        image: (H, W, 3) uint8.
        size: the model's (height, width).
        fit: ``squash`` resizes the whole frame (every pixel is explained); ``crop`` resizes the short side to
            size * 256 / 224 and takes the centre (the ImageNet evaluation protocol).

    Returns:
        (model input, window): the window (x0, y0, x1, y1) is the part of ``image`` the model sees.
    """
    import cv2

    h, w = image.shape[:2]
    th, tw = size
    if fit == "squash":
        interp = cv2.INTER_AREA if (h > th or w > tw) else cv2.INTER_LINEAR
        return cv2.resize(image, (tw, th), interpolation=interp), (0, 0, w, h)
    if fit != "crop":
        raise ValueError(f"fit must be 'squash' or 'crop', got {fit!r}")
    scale = round(min(th, tw) * 256 / 224) / min(h, w)
    rw, rh = max(tw, round(w * scale)), max(th, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (rw, rh), interpolation=interp)
    y, x = (rh - th) // 2, (rw - tw) // 2
    window = (x / rw * w, y / rh * h, (x + tw) / rw * w, (y + th) / rh * h)
    return resized[y : y + th, x : x + tw], tuple(int(round(v)) for v in window)


def fit_batch(images: list[np.ndarray], size: tuple[int, int], fit: str) -> tuple[np.ndarray, list[tuple]]:
    """:func:`fit_to_model` over a list, stacked into one (N, H, W, 3) batch."""
    fitted = [fit_to_model(im, size, fit) for im in images]
    if not fitted:
        return np.zeros((0, *size, 3), np.uint8), []
    return np.stack([f[0] for f in fitted]), [f[1] for f in fitted]
