"""Is this text in that picture? A template of the text drawn by matplotlib (the same DejaVu Sans, size and
renderer the charts use), found by normalised cross-correlation: a score near 1 where it is drawn."""

from __future__ import annotations

import cv2
import numpy as np


def text_template(text: str, points: float, shift: tuple[float, float] = (0, 0), dpi: int = 100) -> np.ndarray:
    """``text`` in black on white at ``points``, moved by ``shift`` (x, y) pixels, cropped to its ink (grey
    levels). Text lands on fractions of a pixel: its anti-aliased pixels depend on where."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 1), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.text(0.02 + shift[0] / (8 * dpi), 0.5 + shift[1] / dpi, text, fontsize=points, va="center")
    fig.canvas.draw()
    grey = np.asarray(fig.canvas.buffer_rgba())[..., :3].mean(axis=2)
    ys, xs = np.nonzero(grey < 200)
    return grey[ys.min() - 1 : ys.max() + 2, xs.min() - 1 : xs.max() + 2].astype(np.float32)


def text_score(picture: np.ndarray, text: str, points: float) -> float:
    """The best match of ``text`` (dark on light, at ``points``, at any fraction of a pixel) anywhere in the RGB
    ``picture``: 1 is exact."""
    grey = np.asarray(picture, np.float32).mean(axis=2)
    best = 0.0
    for dx in (0, 0.25, 0.5, 0.75):
        for dy in (0, 0.25, 0.5, 0.75):
            template = text_template(text, points, (dx, dy))
            if grey.shape[0] >= template.shape[0] and grey.shape[1] >= template.shape[1]:
                best = max(best, float(cv2.matchTemplate(grey, template, cv2.TM_CCOEFF_NORMED).max()))
    return best
