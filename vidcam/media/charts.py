"""Charts for training, evaluation and videos, drawn with matplotlib.

Every function returns an RGB uint8 image; :func:`vidcam.media.outputs.write_image` writes it. Figures are drawn
on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``, never ``pyplot``): no global figure
registry that could leak figures between calls or threads, no backend chosen from the environment (a headless
server has no display). Their text uses DejaVu Sans, the font matplotlib ships, so any class name (``Kätzchen``,
``café``, Greek, Cyrillic) is drawn as written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["curves_chart", "confusion_chart", "image_grid", "timeline_chart", "CLASS_COLOURS", "fit_text"]

BLUE = "#1f77b4"  # the first two colours of matplotlib's usual categorical palette: train and validation
ORANGE = "#ff7f0e"
# One colour per class on the video timeline (matplotlib's tab10, in order); classes beyond it are grey.
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
OTHER_COLOUR = "#9a9a9a"
DPI = 100


def _text_width(text: str, points: float) -> int:
    """The width in pixels of ``text`` in DejaVu Sans at ``points`` (at :data:`DPI`), as FreeType draws it."""
    from vidcam.media.text import text_mask

    return text_mask(text, max(1, round(points * DPI / 72))).shape[1]


def fit_text(text: str, width: int, points: float = 8) -> str:
    """``text`` shortened with ``…`` in the middle so that it fits ``width`` pixels at ``points``."""
    text = str(text)
    if _text_width(text, points) <= width:
        return text
    keep = len(text)
    while keep > 2:
        keep -= 1
        head, tail = (keep + 1) // 2, keep // 2
        short = text[:head] + "…" + text[len(text) - tail :]
        if _text_width(short, points) <= width:
            return short
    return text[:2] + "…"


def _finite(values: Sequence[float]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], np.float64)


def _curve_panel(ax, train: Sequence[float], val: Sequence[float], name: str, fine_tune_epoch: int | None) -> None:
    for values, colour, label in ((train, BLUE, "train"), (val, ORANGE, "val")):
        y = _finite(values)
        ax.plot(np.arange(1, len(y) + 1), y, color=colour, lw=2, marker="o", ms=5, label=label)
    n = max(len(train), len(val), 1)
    ax.set_xlim(0.5, n + 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if fine_tune_epoch:
        ax.axvline(fine_tune_epoch - 0.5, color="#555555", ls="--", lw=1)
        ax.text(fine_tune_epoch - 0.4, 0.97, "fine-tune", transform=ax.get_xaxis_transform(), va="top",
                fontsize=9, color="#555555")
    ax.set_title(name)
    ax.set_xlabel("epoch")
    ax.grid(True, color="#e8e8e8")
    ax.legend(loc="lower right" if name == "accuracy" else "upper right", fontsize=9)


def curves_chart(history: dict[str, Sequence[float]], *, fine_tune_epoch: int | None = None,
                 title: str | None = None, size: tuple[int, int] = (1280, 420)) -> np.ndarray:
    """Training curves: loss and accuracy, train (blue) and validation (orange), side by side.

    Args:
        history: Keras-style history with ``loss``, ``val_loss``, ``accuracy``, ``val_accuracy`` lists (NaN and
            None values are gaps).
        fine_tune_epoch: the first epoch of the fine-tuning phase, marked with a dashed line.
        title: drawn above both panels (e.g. the model and its classes).
        size: (width, height) in pixels.
    """
    fig = _agg_figure(*size)
    loss, acc = fig.subplots(1, 2)
    _curve_panel(loss, history.get("loss", []), history.get("val_loss", []), "loss", fine_tune_epoch)
    _curve_panel(acc, history.get("accuracy", []), history.get("val_accuracy", []), "accuracy", fine_tune_epoch)
    acc.set_ylim(-0.02, 1.02)
    top = 0.88
    if title:
        fig.suptitle(fit_text(title, size[0] - 20, 11), fontsize=11)
        top = 0.84
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.13, top=top, wspace=0.18)
    return _figure_rgb(fig)


def confusion_chart(matrix: np.ndarray, class_names: Sequence[str], *, title: str = "confusion matrix") -> np.ndarray:
    """A confusion matrix as a picture: rows are true classes, columns predicted; each cell shows its count
    and its share of the row, shaded by that share (white 0% to dark blue 100%)."""
    from matplotlib.colors import LinearSegmentedColormap

    m = np.asarray(matrix, np.int64)
    n = max(m.shape[0], 1)
    cell = int(max(40, min(110, 660 // n)))
    names = [fit_text(c, 150, 10) for c in class_names]
    label_w = max([_text_width(c, 10) for c in names] + [30])
    rotate = any(_text_width(c, 10) > cell - 4 for c in names)
    bottom = (max(_text_width(c, 10) for c in names) * 0.75 + 16 if rotate and names else 24) + 34
    left, top, right = label_w + 50, 56, 24
    w, h = left + n * cell + right, int(top + n * cell + bottom)
    fig = _agg_figure(w, h)
    ax = fig.add_axes((left / w, bottom / h, n * cell / w, n * cell / h))
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros(m.shape, np.float64), where=rows > 0)
    cmap = LinearSegmentedColormap.from_list("vidcam_blues", ["#ffffff", "#084594"])
    ax.imshow(share, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    count_pt, share_pt = (10, 8) if cell >= 60 else (7, 0)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ink = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i - (0.12 if share_pt else 0), str(int(m[i, j])), ha="center", va="center", color=ink,
                    fontsize=count_pt)
            if share_pt:
                ax.text(j, i + 0.2, f"{share[i, j] * 100:.0f}%", ha="center", va="center", color=ink,
                        fontsize=share_pt)
    ax.set_xticks(range(m.shape[1]), names, fontsize=10, rotation=45 if rotate else 0,
                  ha="right" if rotate else "center", rotation_mode="anchor")
    ax.set_yticks(range(m.shape[0]), names, fontsize=10)
    ax.set_xticks(np.arange(-0.5, m.shape[1]), minor=True)
    ax.set_yticks(np.arange(-0.5, m.shape[0]), minor=True)
    ax.grid(which="minor", color="#c8c8c8", lw=1)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.suptitle(title, fontsize=12, y=1 - 10 / h, va="top")
    return _figure_rgb(fig)


def image_grid(
    tiles: Sequence[tuple[np.ndarray, Sequence[str]]],
    *,
    title: str,
    columns: int = 5,
    tile: int = 160,
    aspect: float = 1.0,
) -> np.ndarray:
    """Pictures in a grid, each with up to two lines of title text above it.

    Args:
        tiles: (RGB image, title lines) pairs; an empty list gives a grid that says so.
        title: drawn above the grid.
        columns: tiles per row.
        tile: height of each picture's cell in pixels (pictures are scaled to fit their cell, keeping their shape).
        aspect: each cell's width / height (2 for an original beside its heatmap).
    """
    head, pad, text_h = 40, 8, 34
    cell_w = int(round(tile * aspect))
    rows = max(1, math.ceil(len(tiles) / columns))
    w = pad + columns * (cell_w + pad)
    h = head + rows * (text_h + tile + pad) + pad
    fig = _agg_figure(w, h)
    fig.text(0.5, 1 - 26 / h, fit_text(title, w - 16, 12), ha="center", va="baseline", fontsize=12)
    if not tiles:
        fig.text(0.5, 1 - (head + tile / 2) / h, "(no images)", ha="center", va="center", fontsize=12,
                 color="#5a5a5a")
    for k, (picture, lines) in enumerate(tiles):
        r, c = divmod(k, columns)
        x0, y0 = pad + c * (cell_w + pad), head + r * (text_h + tile + pad)
        for li, line in enumerate(list(lines)[:2]):
            fig.text(x0 / w, 1 - (y0 + 14 + 15 * li) / h, fit_text(line, cell_w, 8), fontsize=8, va="baseline")
        ax = fig.add_axes((x0 / w, 1 - (y0 + text_h + tile) / h, cell_w / w, tile / h))
        ax.imshow(np.asarray(picture), interpolation="antialiased")
        ax.set_axis_off()
    return _figure_rgb(fig)


def _agg_figure(width: int, height: int, dpi: int = DPI):
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
    at its real time, coloured by its top-1), the cuts as dashed lines, the map stability below. A frame folder's
    (``unit`` ``"frame"``, no stability): the same over the frames' positions, without the stability panel.

    Args:
        timeline: the timeline data (see :mod:`vidcam.media.report`: ``t``, ``shown``, ``p``, ``stability``,
            ``classes``, ``series``, ``cuts``, ``duration``, ``title``, ``unit``).
        size: (width, height) in pixels.
    """
    fig = _agg_figure(*size)
    stability = np.array([np.nan if v is None else v for v in timeline["stability"]], np.float64)
    has_stability = bool(np.isfinite(stability).any())
    if has_stability:
        band, probs, stab = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [0.35, 3, 1.2]})
    else:
        (band, probs), stab = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [0.35, 4.2]}), None
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
    bottom = probs
    if stab is not None:
        stab.plot(t, stability, color="#444444", lw=1)
        stab.set_ylim(min(0.0, float(np.nanmin(stability))), 1.05)
        stab.set_ylabel("map stability")
        bottom = stab
    if timeline.get("unit") == "frame":  # the frame whose point is at the tick: frame 1 at position 0
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        bottom.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v + 1:g}"))
        bottom.set_xlabel("frame (in the folder's order)")
    else:
        bottom.set_xlabel("time (s)")
    bottom.set_xlim(0, duration if duration > 0 else 1.0)
    for k in timeline["cuts"]:
        for ax in (band, probs, stab):
            if ax is not None:
                ax.axvline(t[k], color="black", ls="--", lw=0.8)
    band.set_title(timeline.get("title", ""), fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.93, bottom=0.09, hspace=0.12)
    return _figure_rgb(fig)
