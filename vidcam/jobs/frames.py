"""The frame-folder job: label and explain every image of a folder (the book's per-frame workflow), resumable.

``DIR/frame1.jpg, frame2.jpg, ..., frame10.jpg`` (natural order: 2 before 10) become
``OUTDIR/result_0001.jpg, ...`` (numbered by position in that order) and ``OUTDIR/labels.csv``
(``file,result,label,probability,class_id`` for the top-1, then ``label_2,probability_2,class_id_2,...``), or
``labels.jsonl``.

Resuming: each rendered picture is written atomically, then its labels are appended to a journal
(``OUTDIR/.vidcam-frames.jsonl``, flushed and fsynced per batch). A re-run skips every frame whose journal
entry matches the input file (size and modification time), the settings (the model's and weights file's
contents included: a model retrained under the same name redoes the frames) and an intact result picture; the
labels file is rebuilt from the journal at the end (atomically). A run killed at any point (even with
``kill -9``) therefore resumes where it stopped and ends with a consistent labels file.

One run at a time per OUTDIR: a run holds ``OUTDIR/.vidcam-frames.lock`` (an exclusive ``flock`` on a file
that holds its pid), so a second run into the same folder stops at once naming that pid. The kernel drops the
lock when its process dies (even by ``kill -9``), so a lock file left by a dead run is simply taken over.

Outputs outside OUTDIR (``labels_out``, ``to_video``) are never replaced without ``overwrite``, except the
ones an earlier run into the same OUTDIR wrote and nobody changed since (their size and modification time are
recorded in ``OUTDIR/.vidcam-frames-outputs.json``): running the same command again resumes and rewrites them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from vidcam.cam.engine import CamEngine
from vidcam.cam.metrics import CamMetrics, evaluate_batch, summarize
from vidcam.cam.spec import ModelLike, ModelSpec, build_engine, portable_spec
from vidcam.errors import InputError, OutputError, UsageError, VidcamError
from vidcam.jobs.executors import Executor, ItemResult, LocalExecutor
from vidcam.jobs.labels import label_kind, write_frame_labels, write_lines_atomic
from vidcam.jobs.report import report_paths, write_frames_report
from vidcam.media.ffmpeg_cmd import EncodeOptions, EncodeTarget, ffmpeg_exe
from vidcam.media.files import content_sha256
from vidcam.media.images import IMAGE_SUFFIXES, fit_to_model, read_image
from vidcam.media.outputs import (
    atomic_output,
    check_output,
    describe_os_error,
    ensure_dir,
    folder_error,
    out_of_space,
    write_image,
)
from vidcam.media.render import RenderOptions, format_label
from vidcam.media.sink import VideoSink
from vidcam.models.zoo import DEFAULT_MODEL

__all__ = ["label_frames", "FramesOptions", "FramesSummary", "FramesWork", "natural_key", "list_frames",
           "parse_rate", "JOURNAL_NAME", "VIDEO_SUFFIXES", "read_journal"]

JOURNAL_NAME = ".vidcam-frames.jsonl"
OUTPUTS_NAME = ".vidcam-frames-outputs.json"  # the outputs outside OUTDIR that this folder's runs wrote
LOCK_NAME = ".vidcam-frames.lock"
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")


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


@dataclass(frozen=True)
class FramesOptions:
    """What the frame-folder job does (drawing and encoding included), checked when made.

    Attributes:
        render: how the results are drawn (:class:`~vidcam.media.render.RenderOptions`).
        encode: how ``to_video`` is encoded (:class:`~vidcam.media.ffmpeg_cmd.EncodeOptions`).
        class_index: explain this class instead of each frame's top-1.
        top_k: labels per frame in the labels file.
        batch_size: images per engine call.
        json_lines: write ``labels.jsonl`` instead of ``labels.csv``.
        force: redo every frame, ignoring earlier runs.
        metrics: measure each new frame's map (:mod:`vidcam.cam.metrics`, about 35 extra forward passes a
            frame): per frame in the labels file, summarised in the result's ``metrics``.
        labels_out: also write the labels here (``.csv``, ``.jsonl`` or ``.parquet``).
        to_video: also assemble the result pictures (in order) into this video (``.mp4``/``.mkv``/...).
        fps: that video's frame rate (``25``, ``29.97``, ``30000/1001``).
        report: also write a report page here (``.html``, self-contained: each frame's top-1 and top classes
            over the folder's frames, one point per frame, thumbnails at the label changes, a viewer of the result
            pictures by their paths relative to the page) and its timeline as a PNG beside it.
        overwrite: replace an existing ``labels_out``, ``to_video`` or ``report`` file. Without it, only the files an
            earlier run into the same output folder wrote (unchanged since) are rewritten: a resume.

    Raises:
        UsageError: a value out of range.
    """

    render: RenderOptions = field(default_factory=RenderOptions)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    class_index: int | None = None
    top_k: int = 3
    batch_size: int = 8
    json_lines: bool = False
    force: bool = False
    metrics: bool = False
    labels_out: str | Path | None = None
    to_video: str | Path | None = None
    fps: str | float | Fraction = 25
    report: str | Path | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.top_k < 1:
            raise UsageError("batch size and top-k must be at least 1")
        if self.report is not None:
            report_paths(self.report)  # a page name ending in .html
        object.__setattr__(self, "fps", parse_rate(self.fps))
        if self.labels_out is not None:
            label_kind(self.labels_out)
        if self.to_video is not None and Path(self.to_video).suffix.lower() not in VIDEO_SUFFIXES:
            raise UsageError(f"video {self.to_video} must end in {', '.join(VIDEO_SUFFIXES)} (vidcam writes H.264)")


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
        report: the report page, when asked for (its timeline PNG beside it).
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
    report: str | None = None

    def as_dict(self) -> dict:
        return {
            "output_dir": self.output_dir, "total": self.total, "processed": self.processed, "reused": self.reused,
            "failed": [{"file": f, "error": e} for f, e in self.failed], "labels": self.labels, "video": self.video,
            "report": self.report, "seconds": round(self.seconds, 3),
            **({"metrics": self.metrics} if self.metrics is not None else {}),
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


def read_journal(path: Path) -> dict[str, dict]:
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


def _model_files(model: ModelLike, engine: CamEngine) -> dict[str, str]:
    """The contents (sha256) of the files a result depends on: a ``.keras`` model and a weights file.

    A model retrained under the same path, or other weights, must not reuse the old results.
    """
    spec = model if isinstance(model, ModelSpec) else None
    name = spec.model if spec else (model if isinstance(model, str | os.PathLike) else engine.classifier.name)
    files = {}
    try:
        if str(name).lower().endswith(".keras") and os.path.isfile(name):
            files["model_sha256"] = content_sha256(name)
        if spec is not None and spec.weights:
            files["weights_sha256"] = content_sha256(spec.weights)
    except OSError as e:
        raise InputError(f"cannot read {e.filename}: {e.strerror or e}") from None
    return files


def _settings_key(engine: CamEngine, options: FramesOptions, render: RenderOptions, files: dict[str, str]) -> str:
    """A hash of what makes a result: model (with ``files``, the model's and weights' contents, and its groups),
    layer, method and the drawing options."""
    clf = engine.classifier
    desc = {**files, "model": str(clf.name), "classes": clf.num_classes, "input": list(clf.input_size),
            "layer": engine.layer_name, "method": engine.method, "class_index": options.class_index,
            "top_k": options.top_k, "layout": render.layout, "alpha": render.alpha, "colormap": render.colormap,
            "fit": render.fit, **({"groups": clf.groups.as_dict()} if clf.groups is not None else {})}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- the work of one batch, the same on every executor -------------------------------------------------------


@dataclass(frozen=True)
class FramesWork:
    """What a worker needs to label batches of frames: small and picklable (Ray ships it to its workers).

    An item is a batch: a tuple of ``(file name, image path, result path)`` (absolute paths). A worker returns,
    per batch, ``(entries, errors, fatal)``: each frame's journal entry or the reason it was skipped, and the
    message of an error that must stop the whole job (a full disk), if one happened.
    """

    model: ModelSpec | None
    render: RenderOptions
    key: str
    class_index: int | None
    top_k: int
    metrics: bool

    def worker(self, engine: CamEngine) -> _FramesWorker:
        return _FramesWorker(engine, self)


class _FramesWorker:
    def __init__(self, engine: CamEngine, work: FramesWork) -> None:
        self.engine, self.work = engine, work
        self.renderer = work.render.renderer()

    def _load_one(self, path: Path):
        try:
            st = path.stat()
            img = read_image(path)
            x, window = fit_to_model(img, self.engine.input_size, self.work.render.fit)
            return img, x, window, st
        except VidcamError as e:
            return e
        except OSError as e:
            return InputError(f"cannot read {path.name}: {e.strerror or e}")

    def load(self, batch: tuple) -> list:
        return [(task, self._load_one(Path(task[1]))) for task in batch]

    def _entry(self, task, st, ids, probs) -> dict:
        names = self.engine.classifier.class_names
        return {
            "file": task[0], "result": Path(task[2]).name, "key": self.work.key, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "predictions": [{"class_id": int(c), "label": names[int(c)], "probability": round(float(q), 6)}
                            for c, q in zip(ids, probs)],
        }

    def process(self, loaded: list, progress=None) -> tuple[dict, dict, str | None]:
        entries: dict[str, dict] = {}
        errors = {task[0]: str(item) for task, item in loaded if isinstance(item, VidcamError)}
        good = [(task, item) for task, item in loaded if not isinstance(item, VidcamError)]
        if not good:
            return entries, errors, None
        w, clf = self.work, self.engine.classifier
        x = np.stack([item[1] for _, item in good])
        res = self.engine.run(x, w.class_index)
        ids, probs = res.top_k(w.top_k)
        measured = evaluate_batch(self.engine, x, res.cams, res.class_ids) if w.metrics else None
        for i, (task, (img, _x, window, st)) in enumerate(good):
            cid = int(res.class_ids[i])
            label = format_label(clf.class_names[cid], float(res.probabilities[i, cid]))
            try:
                # The results folder is the job's: a frame redone replaces its old picture.
                write_image(task[2], self.renderer(img, res.cams[i], label, window), overwrite=True)
            except VidcamError as e:
                if out_of_space(e):  # every later frame would fail too; the journal keeps those done
                    return entries, errors, f"{e} (the frames done so far are kept: run again to resume)"
                errors[task[0]] = str(e)
                continue
            entries[task[0]] = self._entry(task, st, ids[i], probs[i])
            if measured is not None:
                entries[task[0]]["metrics"] = measured[i].as_dict()
        return entries, errors, None


# -- the job ---------------------------------------------------------------------------------------------------


def plan_frames(files: list[Path], out: Path, key: str, predictions: int, *, force: bool = False):
    """What a run has to do: (result path per file name, journal entries still valid, files to do).

    A frame is done when its journal entry matches the input file (size, modification time), the settings
    ``key``, its result name and ``predictions`` labels, and its result picture is intact.
    """
    width = max(4, len(str(len(files))))
    results = {p.name: out / f"result_{i:0{width}d}.jpg" for i, p in enumerate(files, 1)}
    old = {} if force else read_journal(out / JOURNAL_NAME)
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


def _metrics_summary(files: list[Path], done: dict[str, dict]) -> dict:
    """Summary over the frames that carry metrics; frames are numbered by position like the result pictures."""
    measured = [(k, done[p.name]) for k, p in enumerate(files, 1) if "metrics" in done.get(p.name, {})]
    summary = summarize([CamMetrics.from_dict(e["metrics"]) for _, e in measured], indices=[k for k, _ in measured])
    names = {k: e["file"] for k, e in measured}
    for w in summary["worst"]:
        w["file"] = names[w["frame"]]
    return summary


def _written_before(out: Path, path: str | Path) -> bool:
    """True when an earlier run into ``out`` wrote ``path`` and nobody changed it since (same size and mtime)."""
    try:
        record = json.loads((out / OUTPUTS_NAME).read_text(encoding="utf-8"))[os.path.realpath(path)]
        st = os.stat(path)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return record == {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _record_outputs(out: Path, paths: list[str | Path]) -> None:
    """Remember the outputs outside ``out`` this run wrote, so that the next run into ``out`` may rewrite them."""
    try:
        record = json.loads((out / OUTPUTS_NAME).read_text(encoding="utf-8"))
        record = record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        record = {}
    for p in paths:
        st = os.stat(p)
        record[os.path.realpath(p)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    write_lines_atomic(out / OUTPUTS_NAME, [json.dumps(record, indent=1) + "\n"], overwrite=True)


class _FolderLock:
    """The output folder's lock: an exclusive ``flock`` on ``LOCK_NAME`` holding this process's pid, removed
    when the run ends (also on errors). ``flock`` rather than ``O_CREAT|O_EXCL`` alone: the kernel releases it
    when the holder dies, so a stale lock (a run killed with ``kill -9``) is taken over without guessing from
    pids, and two runs taking over one stale lock cannot both win."""

    def __init__(self, out: Path) -> None:
        self.path, self.fd = out / LOCK_NAME, None

    def __enter__(self) -> _FolderLock:
        import fcntl

        for _ in range(20):  # another run removing its lock between our open and flock: open the new one
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise folder_error(self.path.parent, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise OutputError(f"output folder {self.path.parent} is in use by another vidcam run (pid {holder}): "
                                  "wait for it to finish, or give another output folder") from None
            if _same_inode(fd, self.path):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return self
            os.close(fd)
        raise OutputError(f"cannot lock output folder {self.path.parent}: other runs keep taking it")

    def __exit__(self, *exc) -> None:
        try:
            os.unlink(self.path)  # while still holding the lock: the next run opens a fresh file
        except OSError:
            pass
        os.close(self.fd)


def _same_inode(fd: int, path: Path) -> bool:
    """The open lock file is still the one at ``path`` (not one its holder removed meanwhile)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _output_folder(directory: str | Path, output_dir: str | Path | None) -> Path:
    src = Path(directory)
    out = Path(output_dir) if output_dir is not None else src.resolve().parent / f"{src.resolve().name}_results"
    if out.resolve() == src.resolve():
        raise UsageError(f"the output folder is the frame folder {src}; give another one with -o")
    return out


class _Journal:
    """The resume journal: entries appended as batches finish (flushed and fsynced), compacted at the end."""

    def __init__(self, path: Path, done: dict[str, dict], files: list[Path]) -> None:
        self.path, self.done, self.files = path, done, files
        # Start the journal over with the entries still valid, then append as frames are done.
        write_lines_atomic(path, [json.dumps(done[p.name]) + "\n" for p in files if p.name in done], overwrite=True)
        try:
            self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise folder_error(path.parent, e) from None

    def add(self, entries: dict[str, dict]) -> None:
        """Append a batch's entries, flushed and fsynced. A write that fails (a full disk) loses no finished
        frame: the lines already on disk stay, a torn last line is ignored when the journal is read."""
        try:
            for name, entry in entries.items():
                self.fh.write(json.dumps(entry) + "\n")
                self.done[name] = entry  # its picture is complete: the compaction at the end may list it
            self.fh.flush()
            os.fsync(self.fh.fileno())
        except OSError as e:
            err = OutputError(f"cannot write the resume journal {self.path}: {describe_os_error(e)} (the frames "
                              "done so far are kept: run again to resume)")
            err.errno = e.errno
            raise err from None

    def close(self, *, failing: bool = False) -> list[dict]:
        """Close and compact (one line per done frame, in listing order); returns those entries.

        ``failing``: the run is stopping on an error; a journal that cannot be written now (the same full or
        read-only disk) is left as it is (everything in it is valid) instead of masking that error.
        """
        ordered = [self.done[p.name] for p in self.files if p.name in self.done]
        try:
            self.fh.close()
            write_lines_atomic(self.path, [json.dumps(e) + "\n" for e in ordered], overwrite=True)
        except (OSError, OutputError) as e:
            if not failing:
                raise e if isinstance(e, OutputError) else folder_error(self.path.parent, e) from None
        return ordered


def label_frames(
    directory: str | Path,
    output_dir: str | Path | None = None,
    *,
    model: ModelLike = DEFAULT_MODEL,
    options: FramesOptions | None = None,
    executor: Executor | None = None,
    ffmpeg: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> FramesSummary:
    """Label and explain every image of a folder; resumable (see the module docstring).

    Args:
        directory: the folder of frames (JPEG, PNG, BMP, WebP, TIFF, GIF), read in natural order.
        output_dir: where ``result_0001.jpg``... and the labels file go; default ``<directory>_results``
            beside the folder. It may not be the frame folder itself.
        model: zoo name, ``.keras`` path, :class:`~vidcam.cam.spec.ModelSpec`, loaded classifier or engine (a
            remote executor needs a name, a path or a spec: each worker builds its own engine).
        options: what to do and how to draw (:class:`FramesOptions`).
        executor: where batches run: :class:`~vidcam.jobs.executors.LocalExecutor` (default) or
            :class:`vidcam.cluster.RayExecutor`; the outputs are the same.
        ffmpeg: ffmpeg binary for ``to_video``.
        progress: called as ``progress(frames_done, frames_total)``.
        on_skip: called as ``on_skip(file, reason)`` for each image that is skipped because it failed.

    Returns:
        A :class:`FramesSummary`; ``failed`` lists the images that were skipped.

    Raises:
        InputError: the folder is missing or has no images.
        UsageError: bad options.
        OutputError: the output folder cannot be written.
    """
    t0 = time.perf_counter()
    o = options or FramesOptions()
    executor = executor or LocalExecutor()
    files = list_frames(directory)
    out = _output_folder(directory, output_dir)
    # Whether each output outside the results folder may be replaced: decided now, honoured when it is written.
    pages = report_paths(o.report) if o.report is not None else ()
    replace = {p: o.overwrite or _written_before(out, p) for p in (o.labels_out, o.to_video, *pages)
               if p is not None}
    for p, may in replace.items():
        check_output(p, overwrite=may)
    ensure_dir(out)
    with _FolderLock(out):  # before the model loads: a second run into the folder stops at once
        _remove_leftovers(out)
        exe = ffmpeg_exe(ffmpeg) if o.to_video is not None else None
        local = executor.name == "local"
        spec = None if local else portable_spec(model)
        engine = build_engine(model)
        clf = engine.classifier
        if o.class_index is not None and not 0 <= o.class_index < clf.num_classes:
            raise UsageError(f"class {o.class_index} is out of range: the model has {clf.num_classes} classes "
                             f"(0..{clf.num_classes - 1})")
        key = _settings_key(engine, o, o.render, _model_files(model, engine))
        work = FramesWork(spec, o.render, key, o.class_index, o.top_k, o.metrics)
        run = _FramesRun(Path(directory), files, out, o, key, min(o.top_k, clf.num_classes), progress, on_skip)
        run.replace, run.names = replace, clf.class_names
        try:
            executor.run(work, run.batches, run.on_result, engine=engine if local else None)
        except BaseException:
            run.journal.close(failing=True)
            raise
        return run.finish(run.journal.close(), exe, time.perf_counter() - t0)


# The temporary names atomic_output gives this folder's files: .result_0001.1a2b3c4d.part.jpg, ...
_LEFTOVER = re.compile(r"^\.(result_\d+|labels|\.vidcam-frames)\.[0-9a-f]{8}\.part\.[A-Za-z0-9]+$")


def _remove_leftovers(out: Path) -> None:
    """Delete the temporary files a run killed with ``kill -9`` left in the results folder (the folder is locked,
    so no other run is writing them); anything else in the folder is left alone."""
    for p in out.iterdir():
        if _LEFTOVER.match(p.name):
            with contextlib.suppress(OSError):
                p.unlink()


class _FramesRun:
    """The driver's side of one run: the plan, the journal, the skipped frames, the outputs at the end."""

    def __init__(self, directory: Path, files: list[Path], out: Path, o: FramesOptions, key: str, predictions: int,
                 progress, on_skip) -> None:
        self.directory, self.files, self.out, self.o = directory, files, out, o
        self.progress, self.on_skip = progress, on_skip
        self.replace: dict = {}  # output outside the folder -> whether it may replace an existing file
        self.names: list[str] = []  # the model's class names, for the report
        results, self.done, todo = plan_frames(files, out, key, predictions, force=o.force)
        self.reused = len(self.done)
        self.failed: list[tuple[str, str]] = []
        self.journal = _Journal(out / JOURNAL_NAME, self.done, files)
        if progress:
            progress(self.reused, len(files))
        # Work items name files by absolute paths: a remote worker's working folder is not this process's.
        self.batches = [tuple((p.name, str(p.absolute()), str(results[p.name].absolute()))
                              for p in todo[i: i + o.batch_size]) for i in range(0, len(todo), o.batch_size)]

    def on_result(self, r: ItemResult) -> None:
        batch = self.batches[r.index]
        entries, errors, fatal = r.value if r.value is not None else ({}, {}, None)
        if r.error is not None:  # the whole batch was lost (a worker died every time)
            errors = {name: f"its batch failed: {r.error}" for name, _, _ in batch}
        self.journal.add(entries)
        for name, _, _ in batch:
            if name in errors:
                # Named as the caller named the folder, not by the absolute paths the workers were given.
                reason = errors[name].replace(str(self.directory.absolute()), str(self.directory))
                self.failed.append((name, reason))
                if self.on_skip:
                    self.on_skip(name, reason)
        if fatal is not None:
            raise OutputError(fatal)
        if self.progress:
            self.progress(len(self.done) + len(self.failed), len(self.files))

    def finish(self, ordered: list[dict], exe: str | None, seconds: float) -> FramesSummary:
        o, out = self.o, self.out
        labels_path = out / f"labels.{'jsonl' if o.json_lines else 'csv'}"
        summary = _metrics_summary(self.files, self.done) if o.metrics else None
        write_frame_labels(labels_path, ordered, o.top_k, summary, overwrite=True)  # rebuilt by every run
        written: list[str | Path] = []
        if o.labels_out is not None:
            written.append(write_frame_labels(o.labels_out, ordered, o.top_k, summary,
                                              overwrite=self.replace[o.labels_out]))
        video = None
        if o.to_video is not None and ordered:
            _assemble(exe, [out / e["result"] for e in ordered], Path(o.to_video), rate=o.fps, encode=o.encode,
                      overwrite=self.replace[o.to_video])
            video = str(o.to_video)
            written.append(video)
        report = self._report(ordered, seconds) if o.report is not None else None
        if report is not None:
            written += [report, report.with_suffix(".png")]
        if written:
            _record_outputs(out, written)
        return FramesSummary(
            output_dir=str(out), total=len(self.files), processed=len(self.done) - self.reused, reused=self.reused,
            failed=self.failed, labels=str(labels_path), video=video, seconds=seconds, metrics=summary,
            report=str(report) if report is not None else None,
        )

    def _report(self, ordered: list[dict], seconds: float) -> Path:
        """The report page (and its PNG) over the frames done, in the folder's order."""
        page = Path(self.o.report)
        line = (f"{len(ordered)} of {len(self.files)} frames labelled ({len(self.failed)} skipped), "
                f"{len(self.done) - self.reused} in this run ({seconds:.1f} s); results in {self.out}")
        write_frames_report(page, ordered, [self.out / e["result"] for e in ordered], self.names,
                            meta=(self.directory.name or str(self.directory), line), top_k=self.o.top_k,
                            overwrite=self.replace[page] and self.replace[page.with_suffix(".png")])
        return page


def _assemble(exe: str, pictures: list[Path], output: Path, *, rate: Fraction, encode: EncodeOptions,
              overwrite: bool) -> None:
    """Encode the pictures (in order, all at the first one's size) as a video at the constant ``rate``."""
    import cv2

    first = read_image(pictures[0])
    h, w = first.shape[:2]
    period = 1_000_000_000 / rate
    with atomic_output(output, overwrite=overwrite) as tmp:
        target = EncodeTarget(w, h, time_base=1 / rate)
        sink = VideoSink(exe, tmp, target, encode=encode, what=f"ffmpeg (encoding {output})")
        try:
            for i, p in enumerate(pictures):
                img = first if i == 0 else read_image(p)
                if img.shape[:2] != (h, w):  # frames of another size are resized to the first one's
                    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
                sink.write(img, round(i * period))
            sink.close(round(len(pictures) * period))
        finally:
            sink.kill()
