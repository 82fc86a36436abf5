"""Charts drawn with matplotlib: training curves, the confusion matrix, image grids; their text in any script.

Pictures are read back: the colours are where the data puts them, and the names are found in the pixels by a
template of the text (tests/textmatch.py), against the ``?`` that OpenCV's ASCII fonts used to draw."""

from __future__ import annotations

import numpy as np
import pytest
from textmatch import text_score

from vidcam.media.charts import confusion_chart, curves_chart, fit_text, image_grid

NAMES = ["Kätzchen", "café", "Σκύλος", "Кошка"]
ASCII = ["K?tzchen", "caf?", "??????", "?????"]  # what OpenCV drew


def _near(img: np.ndarray, rgb, tol: int = 12) -> np.ndarray:
    return np.all(np.abs(img.astype(int) - np.array(rgb)) <= tol, axis=2)


def test_curves_show_both_series_in_both_panels_even_for_one_epoch_and_nan():
    img = curves_chart({"loss": [0.5], "val_loss": [float("nan")], "accuracy": [0.5], "val_accuracy": [0.7]})
    assert img.shape == (420, 1280, 3) and img.dtype == np.uint8
    blue, orange = (31, 119, 180), (255, 127, 14)
    left, right = img[:, :640], img[:, 640:]
    assert _near(left, blue).sum() > 20 and _near(right, blue).sum() > 20 and _near(right, orange).sum() > 20
    # The NaN validation loss is a gap: no orange point in the loss panel apart from its legend's line.
    full = curves_chart({"loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.7, 0.6], "accuracy": [0.5, 0.7, 0.8],
                         "val_accuracy": [0.4, 0.6, 0.7]}, fine_tune_epoch=3)
    assert _near(full[:, :640], orange).sum() > 3 * _near(left, orange).sum()


def test_curves_title_draws_unicode_class_names():
    img = curves_chart({"loss": [0.9, 0.5]}, title="m.keras: Kätzchen, café")
    assert text_score(img, "Kätzchen", 11) > 0.95 > 0.9 > text_score(img, "K?tzchen", 11)
    assert text_score(img, "café", 11) > 0.95 > 0.9 > text_score(img, "caf?", 11)


def test_confusion_matrix_cells_are_shaded_by_their_share_of_the_row():
    m = np.array([[6, 0, 0], [0, 3, 3], [2, 0, 6]])
    img = confusion_chart(m, ["a", "b", "c"])
    white, dark = np.array([255, 255, 255]), np.array([8, 69, 148])
    cells = {}
    for share in (1.0, 0.75, 0.5, 0.25):
        ys, xs = np.nonzero(_near(img, white + (dark - white) * share, tol=4))
        assert len(ys) > 3000 * (2 if share == 0.5 else 1)  # about a 110-pixel cell each, less the text
        cells[share] = (ys.mean(), xs.mean())
    # Where they are: 100% top left, 75% bottom right, 50% on the middle row (two cells), 25% bottom left.
    (y1, x1), (y75, x75), (y5, x5), (y25, x25) = (cells[s] for s in (1.0, 0.75, 0.5, 0.25))
    assert y1 < y5 < y75 and abs(y75 - y25) < 5 and x1 < x5 < x75 and abs(x25 - x1) < 5
    assert y5 - y1 == pytest.approx(110, abs=4) and x75 - x25 == pytest.approx(220, abs=4)


def test_confusion_matrix_and_grids_draw_any_class_name():
    m = np.array([[3, 1, 0, 0], [0, 4, 0, 0], [1, 0, 2, 0], [0, 0, 0, 1]])
    img, asc = confusion_chart(m, NAMES), confusion_chart(m, ASCII)
    for name in NAMES:
        assert text_score(img, name, 10) > 0.95 > 0.9 > text_score(asc, name, 10), name
    grid = image_grid([(np.zeros((20, 20, 3), np.uint8), ["x.png", "Кошка 0.930 (is café)"])], title="Kätzchen: x")
    assert text_score(grid, "Кошка 0.930", 8) > 0.95 and text_score(grid, "Kätzchen: x", 12) > 0.95


def test_grids_place_each_picture_in_its_cell():
    red = np.zeros((50, 100, 3), np.uint8)
    red[..., 0] = 255
    one = image_grid([(red, ["a", "b"])], title="t", tile=160, aspect=2.0)
    plain = image_grid([(red, ["a", "b"])], title="t", tile=160)
    empty = image_grid([], title="nothing")
    assert empty.shape == plain.shape and one.shape[1] > 1.9 * plain.shape[1] - 50
    # The 2:1 picture fills a 320x160 cell; in a square cell it is scaled to 160x80.
    assert _near(one, (255, 0, 0), 30).sum() == pytest.approx(320 * 160, rel=0.05)
    assert _near(plain, (255, 0, 0), 30).sum() == pytest.approx(160 * 80, rel=0.05)


def test_fit_text_shortens_in_the_middle():
    assert fit_text("café", 200) == "café"
    short = fit_text("a very long class name that does not fit", 80)
    assert "…" in short and short.startswith("a ve") and short.endswith("fit")
