"""Frames as the video itself stores them: I420 (8-bit Y'CbCr 4:2:0, limited range), in one of two matrices.

The video job decodes, draws and encodes in I420 when the source allows it (:func:`planar_matrix`): no RGB
conversion in the decoder, half the bytes through the pipes and through every stage, no conversion before the
encoder, and the output keeps the source's own matrix. Only what the model sees (a few hundred pixels a side) and
what a person looks at outside the video (report thumbnails) is converted to RGB.

An I420 frame is one ``(H * 3 // 2, W)`` uint8 array, the layout OpenCV and the encoder's raw input use: ``H``
rows of Y, then U (``H/2 x W/2``, stored as ``H/4`` rows of ``W``), then V. ``H`` and ``W`` are even.

Drawing commutes with the conversion: RGB -> Y'CbCr is affine, so blending two pictures or resizing one gives the
same result in either space (up to rounding); chroma, stored at half size, is blended at half size.
"""

from __future__ import annotations

from functools import cache

import numpy as np

__all__ = ["MATRICES", "planes", "i420_shape", "rgb_to_yuv_matrix", "yuv_to_rgb_matrix", "i420_to_rgb",
           "rgb_to_i420", "yuv_lut", "shrink_i420_to_model", "sample_rgb", "frames_equal"]

# (Kr, Kb) of each matrix, by its ffmpeg name (BT.470BG's coefficients are BT.601's).
MATRICES = {"bt709": (0.2126, 0.0722), "smpte170m": (0.299, 0.114), "bt470bg": (0.299, 0.114)}


def planes(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y (H, W), U and V (H/2, W/2) planes of an I420 frame, as views (writing to them writes the frame)."""
    h, w = frame.shape[0] * 2 // 3, frame.shape[1]
    q = h // 4
    return frame[:h], frame[h : h + q].reshape(h // 2, w // 2), frame[h + q : h + 2 * q].reshape(h // 2, w // 2)


def i420_shape(width: int, height: int) -> tuple[int, int]:
    """The array shape of a ``width x height`` I420 frame (both even)."""
    if width % 2 or height % 2:
        raise ValueError(f"I420 needs an even size, got {width}x{height}")
    return height * 3 // 2, width


@cache
def rgb_to_yuv_matrix(matrix: str) -> np.ndarray:
    """(3, 4) float: ``[Y, U, V] = M @ [R, G, B, 1]`` for 0..255 RGB, limited range (Y 16..235, U/V 16..240)."""
    kr, kb = MATRICES[matrix]
    kg = 1.0 - kr - kb
    luma = np.array([kr, kg, kb])
    y = 219.0 / 255.0 * luma
    u = 224.0 / 255.0 * (np.array([0.0, 0.0, 1.0]) - luma) / (2.0 * (1.0 - kb))
    v = 224.0 / 255.0 * (np.array([1.0, 0.0, 0.0]) - luma) / (2.0 * (1.0 - kr))
    m = np.zeros((3, 4))
    m[:, :3] = np.stack([y, u, v])
    m[:, 3] = (16.0, 128.0, 128.0)
    m.setflags(write=False)
    return m


@cache
def yuv_to_rgb_matrix(matrix: str) -> np.ndarray:
    """(3, 4) float: the inverse of :func:`rgb_to_yuv_matrix`, ``[R, G, B] = M @ [Y, U, V, 1]``."""
    fwd = np.vstack([rgb_to_yuv_matrix(matrix), [0.0, 0.0, 0.0, 1.0]])
    m = np.linalg.inv(fwd)[:3]
    m.setflags(write=False)
    return m


def _convert(pixels: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 through a (3, 4) affine matrix, rounded and clipped to uint8 (OpenCV's saturating cast)."""
    import cv2

    return cv2.transform(pixels, m)


def i420_to_rgb(frame: np.ndarray, matrix: str) -> np.ndarray:
    """An I420 frame as (H, W, 3) uint8 RGB (chroma upsampled bilinearly)."""
    import cv2

    y, u, v = planes(frame)
    h, w = y.shape
    up = [cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in (u, v)]
    return _convert(cv2.merge([y, *up]), yuv_to_rgb_matrix(matrix))


def rgb_to_i420(rgb: np.ndarray, matrix: str) -> np.ndarray:
    """An (H, W, 3) uint8 RGB picture (even size) as an I420 frame in ``matrix`` (chroma: 2x2 averages)."""
    import cv2

    h, w = rgb.shape[:2]
    out = np.empty(i420_shape(w, h), np.uint8)
    yuv = _convert(rgb, rgb_to_yuv_matrix(matrix))
    y, u, v = planes(out)
    y[:] = yuv[..., 0]
    u[:] = cv2.resize(yuv[..., 1], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    v[:] = cv2.resize(yuv[..., 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return out


@cache
def yuv_lut(colormap: str, matrix: str) -> np.ndarray:
    """A colormap's (256, 1, 3) lookup table (:func:`vidcam.media.render.colorize`) in Y'CbCr of ``matrix``."""
    from vidcam.media.render import colorize

    rgb = colorize(np.arange(256, dtype=np.uint8).reshape(256, 1), colormap)  # the table itself, (256, 1, 3)
    lut = _convert(rgb, rgb_to_yuv_matrix(matrix))
    lut.setflags(write=False)
    return lut


def shrink_i420_to_model(frame: np.ndarray, size: tuple[int, int], matrix: str) -> np.ndarray:
    """Squash an I420 frame to the model's (height, width) as RGB: each plane resized (Y as
    :func:`vidcam.media.render.shrink_to_model` resizes an RGB frame), then converted at the model's size."""
    import cv2

    from vidcam.media.render import shrink_to_model

    th, tw = size
    y, u, v = planes(frame)
    ys = shrink_to_model(y, size, "squash")[0]
    # Chroma is smooth and at half size already: a linear resize (a tenth of an area average's cost) is enough.
    us, vs = (cv2.resize(c, (tw, th), interpolation=cv2.INTER_LINEAR) for c in (u, v))
    return _convert(cv2.merge([ys, us, vs]), yuv_to_rgb_matrix(matrix))


def sample_rgb(frame: np.ndarray, matrix: str, samples: int = 4096) -> np.ndarray:
    """RGB of about ``samples`` pixels on a regular grid of an I420 frame (a small (h, w, 3) picture): what
    :func:`vidcam.media.shots.colour_histogram` counts."""
    import cv2

    y, u, v = planes(frame)
    h, w = y.shape
    step = max(1, int((h * w / samples) ** 0.5))
    rows, cols = np.arange(0, h, step) // 2, np.arange(0, w, step) // 2
    ys = y[::step, ::step]
    us, vs = (np.ascontiguousarray(c[rows][:, cols]) for c in (u, v))
    return _convert(cv2.merge([np.ascontiguousarray(ys), us, vs]), yuv_to_rgb_matrix(matrix))


def frames_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two frames hold the same pixels: a sparse set of rows first (frames that differ almost always
    differ there, so telling them apart costs a sixteenth of a full comparison), then everything."""
    if a.shape != b.shape:
        return False
    if not np.array_equal(a[::16], b[::16]):
        return False
    fa, fb = a.reshape(-1), b.reshape(-1)
    n = fa.size - fa.size % 8
    return bool(np.array_equal(fa[:n].view(np.uint64), fb[:n].view(np.uint64)) and np.array_equal(fa[n:], fb[n:]))
