"""A video's report: the timeline data recorded frame by frame during the run, then written as a self-contained
HTML page (:mod:`vidcam.media.report`) and a PNG of the timeline (:func:`vidcam.media.charts.timeline_chart`).
A frame folder's report (:func:`write_frames_report`) is the same page and PNG over the folder's frames in order,
with a viewer of the result pictures instead of a video player.

Memory stays small however long the video: per frame a few numbers in compact arrays (about 40 bytes with the
default top 3), and at most :data:`MAX_THUMBS` thumbnails (about 10 kB each), taken at label changes: when there
are more changes, every other one is dropped and only every second change after that is taken, so the kept ones
stay spread over the whole video.
"""

from __future__ import annotations

import os
from array import array
from collections import Counter
from pathlib import Path

import numpy as np

from vidcam.errors import UsageError
from vidcam.media.charts import CLASS_COLOURS, timeline_chart
from vidcam.media.outputs import atomic_output, write_image
from vidcam.media.report import report_html, thumbnail_uri

__all__ = ["TimelineRecorder", "MAX_THUMBS", "report_paths", "write_frames_report"]

MAX_THUMBS = 24


def report_paths(report: str | Path) -> tuple[Path, Path]:
    """The report page and its PNG (``out/report.html`` -> ``out/report.png``).

    Raises:
        UsageError: the page's name does not end in ``.html``.
    """
    page = Path(report)
    if page.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"report {page} must end in .html (it is a web page; the timeline PNG goes beside it)")
    return page, page.with_suffix(".png")


def relative(path: str | Path, page: Path) -> str:
    """``path`` relative to the page's folder, with forward slashes (a URL path)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(page).resolve().parent)).as_posix()


class TimelineRecorder:
    """Records each frame of a run for the report, in order."""

    def __init__(self, names: list[str], top_k: int, max_thumbs: int = MAX_THUMBS) -> None:
        self.names, self.top_k, self.max_thumbs = names, top_k, max_thumbs
        self.t, self.p, self.stability = array("d"), array("f"), array("f")
        self.shown, self.top_ids, self.top_p = array("i"), array("i"), array("f")
        self.cuts: list[int] = []
        self.changes: list[int] = []
        self.thumbs: list[dict] = []
        self.stride = 1  # take every stride-th label change as a thumbnail

    def add(self, index: int, t: float, shown: tuple[int, float], top: tuple[np.ndarray, np.ndarray],
            stability: float, cut: bool) -> bool:
        """One frame: its time, its shown class and probability, its top-k (ids, probabilities), its map stability,
        whether it starts a shot. True when the caller should pass its picture to :meth:`thumbnail`."""
        change = index == 0 or shown[0] != self.shown[-1]
        self.t.append(t)
        self.shown.append(shown[0])
        self.p.append(shown[1])
        self.stability.append(stability)
        ids, probs = top
        self.top_ids.extend(int(c) for c in ids[: self.top_k])
        self.top_p.extend(float(p) for p in probs[: self.top_k])
        if cut:
            self.cuts.append(index)
        if not change:
            return False
        self.changes.append(index)
        return (len(self.changes) - 1) % self.stride == 0

    def thumbnail(self, index: int, t: float, picture: np.ndarray, href: str | None = None) -> None:
        """The rendered picture of a label change (only when :meth:`add` asked for it); ``href``: a link to the
        full picture."""
        label = self.names[self.shown[index]]
        self.thumbs.append({"frame": index, "time": round(t, 6), "label": label, "src": thumbnail_uri(picture),
                            **({"href": href} if href else {})})
        if len(self.thumbs) > self.max_thumbs:
            self.thumbs = self.thumbs[::2]
            self.stride *= 2

    def data(self, title: str, video: str | None, duration: float, summary: str) -> dict:
        """The timeline data (see :mod:`vidcam.media.report`)."""
        n, k = len(self.t), self.top_k
        shown = list(self.shown)
        top = [c for c, _ in Counter(shown).most_common(len(CLASS_COLOURS))]
        ids = np.frombuffer(self.top_ids, np.int32).reshape(n, k) if n else np.zeros((0, k), np.int32)
        probs = np.frombuffer(self.top_p, np.float32).reshape(n, k) if n else np.zeros((0, k), np.float32)
        series = {}
        for c in top:
            hit = ids == c
            series[str(c)] = [round(float(probs[i][hit[i]][0]), 4) if hit[i].any() else None for i in range(n)]
        stability = [None if np.isnan(v) else round(float(v), 4) for v in self.stability]
        return {
            "title": title, "video": video, "duration": round(duration, 6), "summary": summary,
            "t": [round(v, 6) for v in self.t], "shown": shown, "p": [round(float(v), 4) for v in self.p],
            "stability": stability, "names": {str(c): self.names[c] for c in set(shown)},
            "classes": [{"id": c, "name": self.names[c], "colour": CLASS_COLOURS[j]} for j, c in enumerate(top)],
            "series": series, "changes": self.changes, "cuts": self.cuts, "thumbs": self.thumbs,
        }

    def write(self, page: Path, video: Path | None, meta: tuple[str, float, str], *, overwrite: bool,
              frames: list[Path] | None = None) -> None:
        """Write the page and its PNG, each atomically. ``meta``: (title, duration in seconds, summary line).
        For a frame folder, ``video`` is None and ``frames`` its result pictures (``t`` the frames' positions)."""
        title, duration, summary = meta
        data = self.data(title, relative(video, page) if video is not None else None, duration, summary)
        if frames is not None:
            data.update(unit="frame", frames=[relative(f, page) for f in frames])
        write_image(page.with_suffix(".png"), timeline_chart(data), overwrite=overwrite)
        with atomic_output(page, overwrite=overwrite) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(report_html(data))


def write_frames_report(page: Path, entries: list[dict], pictures: list[Path], names: list[str], *,
                        meta: tuple[str, str], top_k: int, overwrite: bool) -> None:
    """A frame folder's report: each frame's top-1 and top-k (its journal entry's ``predictions``) over the
    frames in order (one point per frame), thumbnails of the result pictures at the label changes, each frame's
    picture by its path relative to the page. ``meta``: (title, summary line)."""
    from vidcam.media.images import read_image

    rec = TimelineRecorder(names, top_k)
    for k, (entry, picture) in enumerate(zip(entries, pictures)):
        preds = entry["predictions"]
        ids = np.array([p["class_id"] for p in preds], np.int32)
        probs = np.array([p["probability"] for p in preds], np.float32)
        if rec.add(k, float(k), (int(ids[0]), float(probs[0])), (ids, probs), float("nan"), False):
            rec.thumbnail(k, float(k), read_image(picture), href=relative(picture, page))
    rec.write(page, None, (meta[0], float(len(entries)), meta[1]), overwrite=overwrite, frames=pictures)
