"""Charts for training, evaluation and videos.

Every function returns an RGB uint8 image; :func:`vidcam.media.outputs.write_image` writes it. The video timeline
is drawn with matplotlib through its Agg canvas directly (``Figure`` + ``FigureCanvasAgg``, never ``pyplot``): no
global figure registry that could leak figures between calls or threads, no backend chosen from the environment
(a headless server has no display), and its text renders any Unicode class name with the DejaVu font that
matplotlib ships. The training and evaluation charts are still drawn with OpenCV, whose Hershey fonts are ASCII
only: anything else is shown there as ``?``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["line_chart", "curves_chart", "confusion_chart", "image_grid", "ascii_text", "timeline_chart",
           "CLASS_COLOURS"]

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (200, 200, 200)
DARK = (90, 90, 90)
BLUE = (31, 119, 180)  # RGB: the first two colours of the usual categorical palette
ORANGE = (255, 127, 14)
# One colour per class on the video timeline (matplotlib's tab10, in order); classes beyond it are grey.
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
OTHER_COLOUR = "#9a9a9a"


def _font() -> int:
    import cv2

    return cv2.FONT_HERSHEY_SIMPLEX


def ascii_text(text: str) -> str:
    """``text`` with every non-ASCII character replaced by ``?``."""
    return str(text).encode("ascii", "replace").decode("ascii")


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, color=BLACK, thick: int = 1,
          anchor: str = "left") -> None:
    """Draw text with its baseline at ``org``; ``anchor`` left, centre or right aligns it horizontally."""
    import cv2

    text = ascii_text(text)
    (tw, _), _ = cv2.getTextSize(text, _font(), scale, thick)
    x, y = org
    if anchor == "centre":
        x -= tw // 2
    elif anchor == "right":
        x -= tw
    cv2.putText(img, text, (int(x), int(y)), _font(), scale, color, thick, cv2.LINE_AA)


def _fit_text(text: str, width: int, scale: float, thick: int = 1) -> str:
    """``text`` shortened with ``..`` in the middle so it fits ``width`` pixels."""
    import cv2

    text = ascii_text(text)
    if cv2.getTextSize(text, _font(), scale, thick)[0][0] <= width:
        return text
    keep = len(text)
    while keep > 4:
        keep -= 1
        head, tail = (keep + 1) // 2, keep // 2
        short = text[:head] + ".." + text[len(text) - tail:]
        if cv2.getTextSize(short, _font(), scale, thick)[0][0] <= width:
            return short
    return text[:4]


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round-numbered ticks covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], start
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


def line_chart(
    series: dict[str, Sequence[float]],
    *,
    title: str,
    colors: Sequence[tuple[int, int, int]] = (BLUE, ORANGE),
    y_range: tuple[float, float] | None = None,
    marks: dict[float, str] | None = None,
    size: tuple[int, int] = (640, 420),
    legend: str = "top",
) -> np.ndarray:
    """A line chart of per-epoch values, x = epoch 1..N.

    Args:
        series: legend name -> values (NaN and missing values are left out).
        title: drawn above the plot.
        colors: one RGB colour per series, in order.
        y_range: fixed (low, high); default: from the data.
        marks: x position -> label for dashed vertical lines (e.g. where fine-tuning starts).
        size: (width, height) in pixels.
        legend: ``top`` or ``bottom`` right corner (where the lines are not, e.g. bottom for accuracy).
    """
    import cv2

    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 62, 18, 40, 48
    pw, ph = w - left - right, h - top - bottom
    values = [float(v) for s in series.values() for v in s if v is not None and math.isfinite(float(v))]
    n = max((len(s) for s in series.values()), default=0)
    if y_range is not None:
        lo, hi = y_range
    elif values:
        lo, hi = min(0.0, min(values)), max(values)
        hi = hi + 0.05 * (hi - lo) if hi > lo else lo + 1.0
    else:
        lo, hi = 0.0, 1.0

    def px(epoch: float) -> int:
        return int(round(left + (pw * (epoch - 1) / (n - 1) if n > 1 else pw / 2)))

    def py(v: float) -> int:
        return int(round(top + ph - (v - lo) / (hi - lo) * ph))

    _text(img, title, (w // 2, 26), 0.6, BLACK, 1, "centre")
    for t in _nice_ticks(lo, hi):
        y = py(t)
        cv2.line(img, (left, y), (left + pw, y), (235, 235, 235), 1)
        _text(img, f"{t:g}", (left - 6, y + 4), 0.4, DARK, 1, "right")
    step = max(1, math.ceil(n / 12))
    for e in range(1, n + 1, step):
        x = px(e)
        cv2.line(img, (x, top + ph), (x, top + ph + 4), DARK, 1)
        _text(img, str(e), (x, top + ph + 18), 0.4, DARK, 1, "centre")
    _text(img, "epoch", (left + pw // 2, h - 8), 0.45, DARK, 1, "centre")
    cv2.rectangle(img, (left, top), (left + pw, top + ph), DARK, 1)
    for x_mark, label in (marks or {}).items():
        x = px(x_mark)
        for y in range(top, top + ph, 8):
            cv2.line(img, (x, y), (x, min(y + 4, top + ph)), DARK, 1)
        _text(img, label, (x + 4, top + 14), 0.4, DARK)
    for vals, color in zip(series.values(), colors):
        pts = [(px(i + 1), py(float(v))) for i, v in enumerate(vals)
               if v is not None and math.isfinite(float(v))]
        if len(pts) > 1:
            cv2.polylines(img, [np.array(pts, np.int32)], False, color, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 3, color, -1, cv2.LINE_AA)
    for i, ((name, _), color) in enumerate(zip(series.items(), colors)):
        y = top + 16 + 18 * i if legend == "top" else top + ph - 12 - 18 * (len(series) - 1 - i)
        cv2.line(img, (left + pw - 120, y - 4), (left + pw - 96, y - 4), color, 2, cv2.LINE_AA)
        _text(img, name, (left + pw - 90, y), 0.42, BLACK)
    return img


def curves_chart(history: dict[str, Sequence[float]], *, fine_tune_epoch: int | None = None) -> np.ndarray:
    """Training curves: loss and accuracy, train and validation, side by side.

    Args:
        history: Keras-style history with ``loss``, ``val_loss``, ``accuracy``, ``val_accuracy`` lists.
        fine_tune_epoch: the first epoch of the fine-tuning phase, marked with a dashed line.
    """
    marks = {fine_tune_epoch - 0.5: "fine-tune"} if fine_tune_epoch else None
    loss = line_chart({"train": history.get("loss", []), "val": history.get("val_loss", [])},
                      title="loss", marks=marks)
    acc = line_chart({"train": history.get("accuracy", []), "val": history.get("val_accuracy", [])},
                     title="accuracy", y_range=(0.0, 1.0), marks=marks, legend="bottom")
    return np.concatenate([loss, acc], axis=1)


def _blend(a: tuple, b: tuple, t: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def confusion_chart(matrix: np.ndarray, class_names: Sequence[str], *, title: str = "confusion matrix") -> np.ndarray:
    """A confusion matrix as a picture: rows are true classes, columns predicted; each cell shows its count
    and its share of the row, shaded by that share."""
    import cv2

    m = np.asarray(matrix, np.int64)
    n = m.shape[0]
    cell = int(max(40, min(110, 660 // max(n, 1))))
    label_w = min(160, max(60, 9 * max((len(ascii_text(c)) for c in class_names), default=4)))
    left, top = label_w + 30, 70 + 0
    w, h = left + n * cell + 20, top + n * cell + 40
    img = np.full((h, w, 3), 255, np.uint8)
    _text(img, title, (w // 2, 22), 0.6, BLACK, 1, "centre")
    _text(img, "predicted", (left + n * cell // 2, 44), 0.45, DARK, 1, "centre")
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros(m.shape, np.float64), where=rows > 0)
    scale = 0.35 if cell < 60 else 0.45
    for i in range(n):
        y0 = top + i * cell
        _text(img, _fit_text(class_names[i], label_w, 0.42), (left - 8, y0 + cell // 2 + 4), 0.42, BLACK, 1, "right")
        for j in range(n):
            x0 = left + j * cell
            if i == 0:
                _text(img, _fit_text(class_names[j], cell - 4, 0.4), (x0 + cell // 2, top - 8), 0.4, BLACK, 1,
                      "centre")
            color = _blend((255, 255, 255), (8, 69, 148), float(share[i, j]))
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), color, -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), GREY, 1)
            ink = WHITE if share[i, j] > 0.5 else BLACK
            _text(img, str(int(m[i, j])), (x0 + cell // 2, y0 + cell // 2), scale, ink, 1, "centre")
            if cell >= 60:
                _text(img, f"{share[i, j] * 100:.0f}%", (x0 + cell // 2, y0 + cell // 2 + 18), 0.38, ink, 1,
                      "centre")
    _text(img, "true", (8, top - 8), 0.45, DARK)
    return img


def _letterbox(image: np.ndarray, size: int, background: int = 235) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.full((size, size, 3), background, np.uint8)
    y, x = (size - nh) // 2, (size - nw) // 2
    out[y : y + nh, x : x + nw] = small
    return out


def image_grid(
    tiles: Sequence[tuple[np.ndarray, Sequence[str]]],
    *,
    title: str,
    columns: int = 5,
    tile: int = 160,
) -> np.ndarray:
    """Pictures in a grid, each with up to two lines of title text above it.

    Args:
        tiles: (RGB image, title lines) pairs; an empty list gives a grid that says so.
        title: drawn above the grid.
        columns: tiles per row.
        tile: edge of each (square, letterboxed) picture in pixels.
    """
    head, pad, text_h = 40, 8, 36
    rows = max(1, math.ceil(len(tiles) / columns))
    w = pad + columns * (tile + pad)
    h = head + rows * (text_h + tile + pad) + pad
    img = np.full((h, w, 3), 255, np.uint8)
    _text(img, title, (w // 2, 26), 0.6, BLACK, 1, "centre")
    if not tiles:
        _text(img, "(no images)", (w // 2, head + tile // 2), 0.6, DARK, 1, "centre")
    for k, (picture, lines) in enumerate(tiles):
        r, c = divmod(k, columns)
        x0 = pad + c * (tile + pad)
        y0 = head + r * (text_h + tile + pad)
        for li, line in enumerate(list(lines)[:2]):
            _text(img, _fit_text(line, tile, 0.4), (x0, y0 + 14 + 16 * li), 0.4, BLACK)
        img[y0 + text_h : y0 + text_h + tile, x0 : x0 + tile] = _letterbox(picture, tile)
    return img


def _agg_figure(width: int, height: int, dpi: int = 100):
    """A matplotlib figure on its own Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _figure_rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _class_colour(timeline: dict) -> dict[int, str]:
    return {c["id"]: c["colour"] for c in timeline["classes"]}


def _band(ax, timeline: dict, t: np.ndarray, ends: np.ndarray) -> None:
    """The shown top-1 as a band of coloured runs, with the label changes as ticks under it."""
    colour, shown = _class_colour(timeline), timeline["shown"]
    start = 0
    for i in range(1, len(shown) + 1):
        if i == len(shown) or shown[i] != shown[start]:
            ax.axvspan(t[start], ends[i - 1], color=colour.get(shown[start], OTHER_COLOUR), lw=0)
            start = i
    ax.set_yticks([])
    ax.set_ylabel("top-1", rotation=0, ha="right", va="center")


def timeline_chart(timeline: dict, *, size: tuple[int, int] = (1200, 560)) -> np.ndarray:
    """A video's timeline: the shown top-1 as a band, the top classes' probabilities over time (one point per frame
    at its real time, coloured by its top-1), the cuts as dashed lines, the map stability below.

    Args:
        timeline: the timeline data (see :mod:`vidcam.media.report`: ``t``, ``shown``, ``p``, ``stability``,
            ``classes``, ``series``, ``cuts``, ``duration``, ``title``).
        size: (width, height) in pixels.
    """
    fig = _agg_figure(*size)
    band, probs, stab = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [0.35, 3, 1.2]})
    t = np.asarray(timeline["t"], np.float64)
    duration = max(float(timeline["duration"]), float(t[-1]) if len(t) else 0.0)
    ends = np.append(t[1:], duration) if len(t) else t
    colour = _class_colour(timeline)
    _band(band, timeline, t, ends)
    for c in timeline["classes"]:
        values = np.array([np.nan if v is None else v for v in timeline["series"][str(c["id"])]], np.float64)
        probs.plot(t, values, color=c["colour"], lw=1.2, label=c["name"])
    probs.scatter(t, timeline["p"], s=6, zorder=3, c=[colour.get(k, OTHER_COLOUR) for k in timeline["shown"]])
    probs.set_ylim(0, 1.02)
    probs.set_ylabel("probability")
    if timeline["classes"]:
        probs.legend(loc="upper right", fontsize=8, ncol=min(3, len(timeline["classes"])), framealpha=0.8)
    stability = np.array([np.nan if v is None else v for v in timeline["stability"]], np.float64)
    stab.plot(t, stability, color="#444444", lw=1)
    stab.set_ylim(min(0.0, float(np.nanmin(stability))) if np.isfinite(stability).any() else 0.0, 1.05)
    stab.set_ylabel("map stability")
    stab.set_xlabel("time (s)")
    stab.set_xlim(0, duration if duration > 0 else 1.0)
    for k in timeline["cuts"]:
        for ax in (band, probs, stab):
            ax.axvline(t[k], color="black", ls="--", lw=0.8)
    band.set_title(timeline.get("title", ""), fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.93, bottom=0.09, hspace=0.12)
    return _figure_rgb(fig)
