"""Label files, one set of writers for every job and executor: CSV, JSON Lines and (with pyarrow) Parquet.

Every CSV has the same prediction columns: ``label, probability, class_id`` for the top-1, then
``label_2, probability_2, class_id_2``, ...; a video's rows start with ``frame, time``, a frame folder's with
``file``. A video's rows then have ``stability`` (the map's rank correlation with the previous frame's, empty on
the first frame) and ``cut`` (1 on a frame that starts a new shot, else 0). With faithfulness metrics,
``average_drop, deletion_auc, insertion_auc`` follow (empty on frames that were not measured). JSON Lines carry
the same values as objects, plus a last ``{"metrics_summary": ...}`` line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from vidcam.errors import UsageError, VidcamError
from vidcam.media.outputs import atomic_output

__all__ = ["LABEL_KINDS", "label_kind", "prediction_columns", "write_lines_atomic", "write_frame_labels",
           "VideoLabelsWriter", "METRIC_COLUMNS"]

LABEL_KINDS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
METRIC_COLUMNS = ("average_drop", "deletion_auc", "insertion_auc")
INSTALL_HINT = 'pip install "vidcam[cluster]"'


def label_kind(path: str | Path, allowed: Sequence[str] = ("csv", "jsonl", "parquet")) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from a labels file's extension.

    Raises:
        UsageError: another extension, or a kind not in ``allowed``.
    """
    kind = LABEL_KINDS.get(Path(path).suffix.lower())
    if kind is None or kind not in allowed:
        names = [f".{k}" for k in allowed]
        names = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        raise UsageError(f"labels file {path} must end in {names}")
    return kind


def prediction_columns(top_k: int) -> list[str]:
    head = ["label", "probability", "class_id"]
    for j in range(2, top_k + 1):
        head += [f"label_{j}", f"probability_{j}", f"class_id_{j}"]
    return head


def _prediction_cells(predictions: list[dict], top_k: int) -> list:
    row: list = []
    for p in predictions:
        row += [p["label"], f"{p['probability']:.6f}", p["class_id"]]
    return row + [""] * (3 * (top_k - len(predictions)))


def _metric_cells(m: dict | None) -> list:
    if m is None:
        return []
    return [f"{m['average_drop']:.3f}", f"{m['deletion_auc']:.6f}", f"{m['insertion_auc']:.6f}"]


def write_lines_atomic(path: str | Path, lines: list[str], *, overwrite: bool) -> None:
    """Write text lines under a temporary name, renamed to ``path`` when complete (``overwrite``: whether an
    existing file may be replaced; see :func:`~vidcam.media.outputs.atomic_output`)."""
    with atomic_output(path, overwrite=overwrite) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.writelines(lines)


def _frames_csv(entries: list[dict], top_k: int) -> list[str]:
    with_metrics = any("metrics" in e for e in entries)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "result", *prediction_columns(top_k), *(METRIC_COLUMNS if with_metrics else ())])
    for e in entries:
        w.writerow([e["file"], e["result"], *_prediction_cells(e["predictions"], top_k),
                    *(_metric_cells(e.get("metrics")) if with_metrics else ())])
    return [buf.getvalue()]


def _frames_jsonl(entries: list[dict], metrics_summary: dict | None) -> list[str]:
    lines = [json.dumps({"file": e["file"], "result": e["result"], "predictions": e["predictions"],
                         **({"metrics": e["metrics"]} if "metrics" in e else {})}) + "\n" for e in entries]
    if metrics_summary is not None:
        lines.append(json.dumps({"metrics_summary": metrics_summary}) + "\n")
    return lines


def _frames_parquet(path: Path, entries: list[dict], top_k: int, overwrite: bool) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise VidcamError(f"Parquet labels need pyarrow: {INSTALL_HINT}") from None
    cols: dict[str, list] = {"file": [e["file"] for e in entries], "result": [e["result"] for e in entries]}
    types: dict[str, Any] = {"file": pa.string(), "result": pa.string()}
    for j in range(1, top_k + 1):
        suffix = "" if j == 1 else f"_{j}"
        for name, typ in (("label", pa.string()), ("probability", pa.float64()), ("class_id", pa.int64())):
            cols[name + suffix] = [e["predictions"][j - 1][name] if len(e["predictions"]) >= j else None
                                   for e in entries]
            types[name + suffix] = typ
    table = pa.table({k: pa.array(v, type=types[k]) for k, v in cols.items()})
    with atomic_output(path, overwrite=overwrite) as tmp:
        pq.write_table(table, tmp)


def write_frame_labels(path: str | Path, entries: list[dict], top_k: int, metrics_summary: dict | None = None, *,
                       overwrite: bool) -> Path:
    """A frame folder's labels (journal entries, in order) as ``.csv``, ``.jsonl`` or ``.parquet``, atomically
    (``overwrite``: whether an existing file may be replaced).

    Raises:
        UsageError: another extension.
    """
    path = Path(path)
    kind = label_kind(path)
    if kind == "parquet":
        _frames_parquet(path, entries, top_k, overwrite)
    elif kind == "jsonl":
        write_lines_atomic(path, _frames_jsonl(entries, metrics_summary), overwrite=overwrite)
    else:
        write_lines_atomic(path, _frames_csv(entries, top_k), overwrite=overwrite)
    return path


class VideoLabelsWriter:
    """A video's per-frame labels, streamed: CSV ``frame,time,label,probability,class_id,...,stability,cut`` or
    JSON Lines (``{"frame", "time", "predictions", "stability", "cut"}``, ``stability`` null on the first frame)."""

    def __init__(self, fh: IO[str], kind: str, top_k: int, metrics: bool = False) -> None:
        self.fh, self.kind, self.top_k, self.metrics = fh, kind, top_k, metrics
        if kind == "csv":
            self.csv = csv.writer(fh)
            self.csv.writerow(["frame", "time", *prediction_columns(top_k), "stability", "cut",
                               *(METRIC_COLUMNS if metrics else ())])

    def write(self, index: int, t: float, predictions: list[dict], m: dict | None = None, *,
              stability: float | None = None, cut: bool = False) -> None:
        """One frame: its index, its time in seconds, its top-k ``{class_id, label, probability}``, metrics, its
        map stability (None or NaN: none, the first frame) and whether it starts a new shot."""
        stable = None if stability is None or math.isnan(stability) else round(float(stability), 4)
        if self.kind == "csv":
            self.csv.writerow([index, f"{t:.6f}", *_prediction_cells(predictions, self.top_k),
                               "" if stable is None else f"{stable:.4f}", int(cut),
                               *(_metric_cells(m) if self.metrics else ())])
            return
        obj: dict = {"frame": index, "time": round(t, 6), "predictions": predictions, "stability": stable,
                     "cut": bool(cut)}
        if m is not None:
            obj["metrics"] = m
        self.fh.write(json.dumps(obj) + "\n")

    def summary(self, summary: dict) -> None:
        """JSON Lines end with one ``{"metrics_summary": ...}`` line; a CSV has the per-frame columns only."""
        if self.kind != "csv":
            self.fh.write(json.dumps({"metrics_summary": summary}) + "\n")
