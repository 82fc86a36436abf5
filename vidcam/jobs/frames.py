"""The frame-folder job: label and explain every image of a folder (the book's per-frame workflow), resumable.

``DIR/frame1.jpg, frame2.jpg, ..., frame10.jpg`` (natural order: 2 before 10) become
``OUTDIR/result_0001.jpg, ...`` (numbered by position in that order) and ``OUTDIR/labels.csv``
(``file,label,probability`` for the top-1, then ``label_2,probability_2,...``), or ``labels.jsonl``.

Resuming: each rendered picture is written atomically, then its labels are appended to a journal
(``OUTDIR/.vidcam-frames.jsonl``, flushed and fsynced per batch). A re-run skips every frame whose journal
entry matches the input file (size and modification time), the settings and an intact result picture; the
labels file is rebuilt from the journal at the end (atomically). A run killed at any point (even with
``kill -9``) therefore resumes where it stopped and ends with a consistent labels file.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from vidcam.cam.engine import CamEngine, get_engine
from vidcam.cam.metrics import CamMetrics, evaluate_batch, summarize
from vidcam.errors import FFmpegError, InputError, OutputError, UsageError, VidcamError
from vidcam.jobs.video import DEFAULT_PRESET, PRESETS, VIDEO_SUFFIXES
from vidcam.media.ffmpeg_cmd import encode_args, ffmpeg_exe
from vidcam.media.images import IMAGE_SUFFIXES, fit_to_model, read_image
from vidcam.media.outputs import atomic_output, check_output, ensure_dir, out_of_space, write_image
from vidcam.media.process import FFmpegProcess, write_frame
from vidcam.media.render import Renderer, check_render_options, format_label
from vidcam.models.zoo import DEFAULT_MODEL, Classifier

__all__ = ["label_frames", "FramesSummary", "natural_key", "list_frames", "parse_rate", "JOURNAL_NAME"]

JOURNAL_NAME = ".vidcam-frames.jsonl"


def natural_key(name: str) -> list:
    """Sort key for natural order: ``frame2`` before ``frame10`` (digit runs compare as numbers)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_frames(directory: str | Path) -> list[Path]:
    """The image files of a folder (by extension, hidden files ignored), in natural order.

    Raises:
        InputError: not a folder, or no images in it.
    """
    d = Path(directory)
    if not d.exists():
        raise InputError(f"no such folder: {d}")
    if not d.is_dir():
        raise InputError(f"{d} is not a folder; for a video use `vidcam video`, for images `vidcam image`")
    files = [p for p in d.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise InputError(f"no images in {d} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return sorted(files, key=lambda p: (natural_key(p.name), p.name))  # ties (Frame1/frame1): by exact name


def parse_rate(value: str | float | Fraction) -> Fraction:
    """A frame rate: ``25``, ``29.97`` (read as 30000/1001, like 23.976 and 59.94), ``30000/1001``, ``12.5``.

    Raises:
        UsageError: not a positive number or fraction.
    """
    try:
        if isinstance(value, Fraction):
            rate = value
        elif isinstance(value, str) and "/" in value:
            n, d = value.split("/", 1)
            rate = Fraction(int(n), int(d))
        else:
            rate = Fraction(str(value))
            ntsc = round(float(rate) * 1.001)
            # 23.976, 29.97, 59.94 ... are the NTSC rates N*1000/1001 written with rounded decimals.
            if rate.denominator != 1 and abs(float(rate) - ntsc / 1.001) < 0.006:
                rate = Fraction(ntsc * 1000, 1001)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"frame rate {value!r} is not a number: use e.g. 25, 29.97 or 30000/1001") from None
    if rate <= 0 or rate > 1000:
        raise UsageError(f"frame rate must be within (0, 1000] frames per second, got {value}")
    return rate


@dataclass
class FramesSummary:
    """What :func:`label_frames` did.

    Attributes:
        output_dir: where the results are.
        total: images found.
        processed: images labelled in this run.
        reused: images already done by an earlier run (skipped).
        failed: (file name, reason) for each image that could not be read or written.
        labels: the labels file (all frames done so far, in natural order).
        video: the assembled video, when asked for.
        seconds: wall-clock time.
        metrics: with ``metrics=True``, the faithfulness summary (:func:`vidcam.cam.metrics.summarize`) of the
            frames that carry metrics (frames reused from a run without metrics have none); worst frames are
            named by position (1 = ``result_0001.jpg``) and ``file``.
    """

    output_dir: str
    total: int
    processed: int
    reused: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    labels: str | None = None
    video: str | None = None
    seconds: float = 0.0
    metrics: dict | None = None

    def as_dict(self) -> dict:
        return {
            "output_dir": self.output_dir, "total": self.total, "processed": self.processed, "reused": self.reused,
            "failed": [{"file": f, "error": e} for f, e in self.failed], "labels": self.labels, "video": self.video,
            "seconds": round(self.seconds, 3), **({"metrics": self.metrics} if self.metrics is not None else {}),
        }


def _result_ok(path: Path) -> bool:
    """A result picture is intact: non-empty and (for JPEG) ending with the end-of-image marker."""
    try:
        size = path.stat().st_size
        if size < 4:
            return False
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(-2, os.SEEK_END)
            tail = f.read(2)
        return head != b"\xff\xd8" or tail == b"\xff\xd9"
    except OSError:
        return False


def _read_journal(path: Path) -> dict[str, dict]:
    """The latest entry per input file; a torn last line (a kill mid-write) is ignored."""
    entries: dict[str, dict] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(e, dict) and "file" in e:
                    entries[e["file"]] = e
    except FileNotFoundError:
        pass
    except OSError as e:
        raise OutputError(f"cannot read {path}: {e.strerror or e}") from None
    return entries


def _write_lines_atomic(path: Path, lines: list[str]) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.writelines(lines)


def _labels_lines(entries: list[dict], kind: str, top_k: int, metrics_summary: dict | None = None) -> list[str]:
    # Faithfulness metrics (``--metrics``) ride along: a ``metrics`` object per JSON line and a last
    # ``metrics_summary`` line, or three more CSV columns (empty for frames that carry none).
    with_metrics = any("metrics" in e for e in entries)
    if kind == "jsonl":
        lines = [json.dumps({"file": e["file"], "result": e["result"], "predictions": e["predictions"],
                             **({"metrics": e["metrics"]} if "metrics" in e else {})}) + "\n"
                 for e in entries]
        if metrics_summary is not None:
            lines.append(json.dumps({"metrics_summary": metrics_summary}) + "\n")
        return lines
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    head = ["file", "label", "probability"]
    for j in range(2, top_k + 1):
        head += [f"label_{j}", f"probability_{j}"]
    if with_metrics:
        head += ["average_drop", "deletion_auc", "insertion_auc"]
    w.writerow(head)
    for e in entries:
        row = [e["file"]]
        for p in e["predictions"]:
            row += [p["label"], f"{p['probability']:.6f}"]
        if with_metrics and "metrics" in e:
            m = e["metrics"]
            row += [""] * (2 * (top_k - len(e["predictions"])))
            row += [f"{m['average_drop']:.3f}", f"{m['deletion_auc']:.6f}", f"{m['insertion_auc']:.6f}"]
        w.writerow(row)
    return [buf.getvalue()]


def _metrics_summary(files: list[Path], done: dict[str, dict]) -> dict:
    """Summary over the frames that carry metrics; frames are numbered by position like the result pictures."""
    measured = [(k, done[p.name]) for k, p in enumerate(files, 1) if "metrics" in done.get(p.name, {})]
    summary = summarize([CamMetrics.from_dict(e["metrics"]) for _, e in measured], indices=[k for k, _ in measured])
    names = {k: e["file"] for k, e in measured}
    for w in summary["worst"]:
        w["file"] = names[w["frame"]]
    return summary


def _settings_key(engine: CamEngine, **settings) -> str:
    """A hash of what makes a result: model, layer, method and the drawing options."""
    clf = engine.classifier
    desc = {"model": str(clf.name), "classes": clf.num_classes, "input": list(clf.input_size),
            "layer": engine.layer_name, "method": engine.method, **settings}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_frames(
    files: list[Path], out: Path, key: str, predictions: int, *, force: bool = False
) -> tuple[dict[str, Path], dict[str, dict], list[Path]]:
    """What a run has to do: (result path per file name, journal entries still valid, files to do).

    A frame is done when its journal entry matches the input file (size, modification time), the settings
    ``key``, its result name and ``predictions`` labels, and its result picture is intact. Shared with the
    Ray engine (:mod:`vidcam.cluster`), so either resumes the other's runs.
    """
    width = max(4, len(str(len(files))))
    results = {p.name: out / f"result_{i:0{width}d}.jpg" for i, p in enumerate(files, 1)}
    old = {} if force else _read_journal(out / JOURNAL_NAME)
    done: dict[str, dict] = {}
    todo: list[Path] = []
    for p in files:
        e = old.get(p.name)
        try:
            st = p.stat()
        except OSError:
            st = None
        if (e is not None and st is not None and e.get("key") == key and e.get("size") == st.st_size
                and e.get("mtime_ns") == st.st_mtime_ns and e.get("result") == results[p.name].name
                and len(e.get("predictions", ())) == predictions and _result_ok(results[p.name])):
            done[p.name] = e
        else:
            todo.append(p)
    return results, done, todo


def label_frames(
    directory: str | Path,
    output_dir: str | Path | None = None,
    *,
    model: str | Path | Classifier | CamEngine = DEFAULT_MODEL,
    layer: str | None = None,
    method: str = "gradcam",
    weights: str | Path | None = None,
    unsafe: bool = False,
    class_index: int | None = None,
    top_k: int = 3,
    layout: str = "overlay",
    alpha: float = 0.4,
    colormap: str = "jet",
    fit: str = "squash",
    batch_size: int = 8,
    json_lines: bool = False,
    force: bool = False,
    to_video: str | Path | None = None,
    fps: str | float | Fraction = 25,
    crf: int = 20,
    preset: str = DEFAULT_PRESET,
    overwrite: bool = False,
    ffmpeg: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
    metrics: bool = False,
) -> FramesSummary:
    """Label and explain every image of a folder; resumable (see the module docstring).

    Args:
        directory: the folder of frames (JPEG, PNG, BMP, WebP, TIFF, GIF), read in natural order.
        output_dir: where ``result_0001.jpg``... and the labels file go; default ``<directory>_results``
            beside the folder. It may not be the frame folder itself.
        model: zoo name, ``.keras`` path, :class:`Classifier` or a built :class:`CamEngine`.
        layer: Grad-CAM layer; method: ``gradcam``, ``gradcam++`` or ``scorecam``.
        weights: weights file for a zoo model; unsafe: allow ``.keras`` files with Lambda layers.
        class_index: explain this class instead of each frame's top-1.
        top_k: labels per frame in the labels file.
        layout: ``overlay`` or ``side-by-side``; alpha: heat opacity; colormap: see ``vidcam.media.render.COLORMAPS``.
        fit: ``squash`` (default, the whole frame) or ``crop`` (the ImageNet centre crop).
        batch_size: images per engine call.
        json_lines: write ``labels.jsonl`` instead of ``labels.csv``.
        force: redo every frame, ignoring earlier runs.
        to_video: also assemble the result pictures (in order) into this video (``.mp4``/``.mkv``/...).
        fps: the video's frame rate (``25``, ``29.97``, ``30000/1001``).
        crf: x264 quality for the video; preset: x264 preset.
        overwrite: replace an existing ``to_video`` file.
        ffmpeg: ffmpeg binary for ``to_video``.
        progress: called as ``progress(frames_done, frames_total)``.
        on_skip: called as ``on_skip(file, reason)`` for each image that is skipped because it failed.
        metrics: measure each new frame's map (:mod:`vidcam.cam.metrics`, about 35 extra forward passes a frame):
            per frame in the labels file, summarised in the result's ``metrics``.

    Returns:
        A :class:`FramesSummary`; ``failed`` lists the images that were skipped.

    Raises:
        InputError: the folder is missing or has no images.
        UsageError: bad options.
        OutputError: the output folder cannot be written.
    """
    t0 = time.perf_counter()
    check_render_options(layout, colormap, fit, alpha)
    if batch_size < 1 or top_k < 1:
        raise UsageError("batch size and top-k must be at least 1")
    rate = parse_rate(fps)
    if to_video is not None:
        to_video = Path(to_video)
        if to_video.suffix.lower() not in VIDEO_SUFFIXES:
            raise UsageError(f"video {to_video} must end in {', '.join(VIDEO_SUFFIXES)} (vidcam writes H.264)")
        if preset not in PRESETS:
            raise UsageError(f"unknown x264 preset {preset!r}: use one of {', '.join(PRESETS)}")
        if not 0 <= crf <= 51:
            raise UsageError(f"crf must be within 0..51, got {crf}")
    files = list_frames(directory)
    src = Path(directory)
    out = Path(output_dir) if output_dir is not None else src.resolve().parent / f"{src.resolve().name}_results"
    if out.resolve() == src.resolve():
        raise UsageError(f"the output folder is the frame folder {src}; give another one with -o")
    ensure_dir(out)
    if to_video is not None:
        check_output(to_video, overwrite=overwrite)
        exe = ffmpeg_exe(ffmpeg)
    engine = get_engine(model, layer=layer, method=method, weights=weights, unsafe=unsafe)
    clf = engine.classifier
    if class_index is not None and not 0 <= class_index < clf.num_classes:
        raise UsageError(f"class {class_index} is out of range: the model has {clf.num_classes} classes "
                         f"(0..{clf.num_classes - 1})")
    key = _settings_key(engine, class_index=class_index, top_k=top_k, layout=layout, alpha=alpha,
                        colormap=colormap, fit=fit)
    journal_path = out / JOURNAL_NAME
    results, done, todo = plan_frames(files, out, key, min(top_k, clf.num_classes), force=force)
    reused = len(done)
    # Start the journal over with the entries still valid, then append as frames are done.
    _write_lines_atomic(journal_path, [json.dumps(done[p.name]) + "\n" for p in files if p.name in done])
    failed: list[tuple[str, str]] = []
    total = len(files)
    if progress:
        progress(reused, total)

    def skip(p: Path, reason: str) -> None:
        failed.append((p.name, reason))
        if on_skip:
            on_skip(p.name, reason)

    renderer = Renderer(layout=layout, alpha=alpha, colormap=colormap)
    with open(journal_path, "a", encoding="utf-8") as journal:
        for batch in _prefetch(todo, batch_size, clf.input_size, fit):
            good = []
            for p, item in batch:
                if isinstance(item, VidcamError):
                    skip(p, str(item))
                else:
                    good.append((p, item))
            if good:
                x = np.stack([g[1][1] for g in good])
                res = engine.run(x, class_index)
                ids, probs = res.top_k(top_k)
                measured = evaluate_batch(engine, x, res.cams, res.class_ids) if metrics else None
                for i, (p, (img, _x, window, st)) in enumerate(good):
                    cid = int(res.class_ids[i])
                    label = format_label(clf.class_names[cid], float(res.probabilities[i, cid]))
                    try:
                        write_image(results[p.name], renderer(img, res.cams[i], label, window))
                    except VidcamError as e:
                        if out_of_space(e):  # every later frame would fail too; the journal keeps those done
                            raise OutputError(f"{e} (the frames done so far are kept: run again to resume)") from None
                        skip(p, str(e))
                        continue
                    entry = {
                        "file": p.name, "result": results[p.name].name, "key": key, "size": st.st_size,
                        "mtime_ns": st.st_mtime_ns,
                        "predictions": [{"class_id": int(c), "label": clf.class_names[int(c)],
                                         "probability": round(float(q), 6)} for c, q in zip(ids[i], probs[i])],
                    }
                    if measured is not None:
                        entry["metrics"] = measured[i].as_dict()
                    journal.write(json.dumps(entry) + "\n")
                    done[p.name] = entry
                journal.flush()
                os.fsync(journal.fileno())
            if progress:
                progress(len(done) + len(failed), total)
    ordered = [done[p.name] for p in files if p.name in done]
    # Compact the journal (one line per done frame), then the labels file, both atomically.
    _write_lines_atomic(journal_path, [json.dumps(e) + "\n" for e in ordered])
    kind = "jsonl" if json_lines else "csv"
    labels_path = out / f"labels.{kind}"
    summary = _metrics_summary(files, done) if metrics else None
    _write_lines_atomic(labels_path, _labels_lines(ordered, kind, top_k, summary))
    video = None
    if to_video is not None and ordered:
        _assemble(exe, [out / e["result"] for e in ordered], to_video, rate=rate, crf=crf, preset=preset)
        video = str(to_video)
    return FramesSummary(
        output_dir=str(out), total=total, processed=len(done) - reused, reused=reused, failed=failed,
        labels=str(labels_path), video=video, seconds=time.perf_counter() - t0, metrics=summary,
    )


def _prefetch(files: list[Path], batch_size: int, size: tuple[int, int], fit: str):
    """Batches of (path, (image, model input, window, stat) or the error), read by a thread one batch ahead."""
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    end = object()

    def load(p: Path):
        try:
            st = p.stat()
            img = read_image(p)
            x, window = fit_to_model(img, size, fit)
            return img, x, window, st
        except VidcamError as e:
            return e
        except OSError as e:
            return InputError(f"cannot read {p}: {e.strerror or e}")

    def work() -> None:
        try:
            for i in range(0, len(files), batch_size):
                batch = [(p, load(p)) for p in files[i : i + batch_size]]
                while not stop.is_set():
                    try:
                        q.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        finally:
            with contextlib.suppress(Exception):
                while not stop.is_set():
                    try:
                        q.put(end, timeout=0.1)
                        break
                    except queue.Full:
                        continue

    t = threading.Thread(target=work, name="vidcam-frames-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            yield item
    finally:
        stop.set()
        t.join(timeout=30)


def _assemble(exe: str, pictures: list[Path], output: Path, *, rate: Fraction, crf: int, preset: str) -> None:
    """Pipe the pictures (in order, all at the first one's size) into the H.264 encoder at ``rate``."""
    import cv2

    first = read_image(pictures[0])
    h, w = first.shape[:2]
    with atomic_output(output) as tmp:
        enc = FFmpegProcess(encode_args(exe, tmp, width=w, height=h, rate=rate, crf=crf, preset=preset),
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, what=f"ffmpeg (encoding {output})")
        try:
            for p in pictures:
                img = first if p == pictures[0] else read_image(p)
                if img.shape[:2] != (h, w):  # frames of another size are resized to the first one's
                    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
                try:
                    write_frame(enc.proc.stdin, img)
                except (BrokenPipeError, ConnectionResetError):
                    enc.check()
                    raise FFmpegError(f"ffmpeg (encoding {output}) stopped reading frames") from None
            enc.proc.stdin.close()
            enc.check()
        finally:
            enc.kill()
