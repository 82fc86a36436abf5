"""Text on pictures in any script: Pillow's FreeType renderer with the DejaVu Sans font that matplotlib ships.

OpenCV's Hershey fonts are ASCII only (``Kätzchen`` came out as ``K?tzchen``). DejaVu Sans covers Latin, Greek,
Cyrillic and more; characters outside it show as boxes rather than vanish. A rendered line is a coverage mask
(uint8, 0..255), cached per (text, size): the video banner draws the same few strings on frame after frame.
"""

from __future__ import annotations

import threading
from functools import cache, lru_cache

import numpy as np

__all__ = ["font_path", "text_mask", "draw_text"]

_LOCK = threading.Lock()  # one FreeType face per size is shared by the threads of a pipeline


@cache
def font_path() -> str:
    """The DejaVu Sans TrueType file inside matplotlib's data folder, found without importing matplotlib
    (0.4 s and 20 MB that a video run without charts does not need)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("matplotlib")
    path = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf" if spec and spec.origin else None
    if path is None or not path.is_file():  # a matplotlib that keeps its data elsewhere
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return str(path)


@cache
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.truetype(font_path(), size)


@lru_cache(maxsize=1024)  # about 10 kB each at a 720p banner's size
def text_mask(text: str, size: int, *, advance: bool = False) -> np.ndarray:
    """One line of ``text`` at ``size`` pixels (the font's em size) as a coverage mask: (height, width) uint8,
    255 where the glyphs are fully drawn. The height is the font's line height (ascent + descent), the same for
    every text at that size, so banners do not jump in height between labels. Read-only (it is cached).

    ``advance``: as wide as the pen moves (trailing spaces included), so that a text drawn right after it sits
    where it would in one line."""
    from PIL import Image, ImageDraw

    with _LOCK:
        font = _font(max(1, int(size)))
        ascent, descent = font.getmetrics()
        left, _, right, _ = font.getbbox(text) if text else (0, 0, 0, 0)
        if advance:
            right = max(right, round(font.getlength(text)))
        image = Image.new("L", (max(1, right - min(0, left)), ascent + descent), 0)
        ImageDraw.Draw(image).text((-min(0, left), 0), text, font=font, fill=255)
    mask = np.asarray(image, np.uint8).copy()
    mask.setflags(write=False)
    return mask


def draw_text(img: np.ndarray, mask: np.ndarray, x: int, y: int, colour=(255, 255, 255)) -> None:
    """Blend ``colour`` into ``img`` (H, W, 3 uint8, in place) through ``mask`` with its top left at (x, y),
    clipped to the picture."""
    h, w = img.shape[:2]
    mh, mw = mask.shape
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + mw), min(h, y + mh)
    if x1 <= x0 or y1 <= y0:
        return
    a = mask[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.uint16)[..., None]
    region = img[y0:y1, x0:x1]
    c = np.asarray(colour, np.uint16)
    region[:] = ((region.astype(np.uint16) * (255 - a) + c * a + 127) // 255).astype(np.uint8)
