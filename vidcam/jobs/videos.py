"""The many-videos job: one heatmap video per input, written once for every executor.

The job plans the outputs (``<stem>_heatmap.mp4`` in a folder, labels beside them), hands each video to an
executor as a work item (:mod:`vidcam.jobs.executors`: this process, or Ray actors), and reports each video's
:class:`VideoOutcome` as soon as it is known. A video that fails (unreadable, corrupt, output exists, a worker
died) does not stop the others: the executor retries it as it retries any item, then it is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidcam.cam.engine import CamEngine
from vidcam.cam.spec import ModelLike, ModelSpec, portable_spec
from vidcam.errors import EXIT_FAILURE, EXIT_OK, EXIT_SKIPPED, OutputError, UsageError
from vidcam.jobs.executors import Executor, ItemResult, LocalExecutor
from vidcam.jobs.video import VideoOptions, default_output, process_video, video_engine
from vidcam.media.outputs import ensure_dir
from vidcam.models.zoo import DEFAULT_MODEL

__all__ = ["VideoOutcome", "BatchReport", "VideosWork", "video_outputs", "process_videos", "process_video_pairs"]


@dataclass
class VideoOutcome:
    """One video's outcome in a many-video run.

    Attributes:
        input: the source video.
        output: the heatmap video (written, or planned when the video failed).
        summary: what :func:`~vidcam.jobs.video.process_video` returned, or None when the video failed.
        error: the last failure's one-line message, or None.
        attempts: how many times it was tried.
        worker: ``host:pid`` of the process that did the last attempt.
    """

    input: str
    output: str
    summary: Any = None
    error: str | None = None
    attempts: int = 0
    worker: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict:
        d: dict = {"input": self.input, "output": self.output, "attempts": self.attempts, "worker": self.worker}
        if self.error is not None:
            d["error"] = self.error
        elif self.summary is not None:
            d.update({k: v for k, v in self.summary.as_dict().items() if k not in d})
        return d


@dataclass
class BatchReport:
    """The outcome of a many-item run.

    Attributes:
        items: one outcome per input, in input order.
        seconds: wall-clock time of the whole run (Ray start-up included).
        engine: the executor's name, ``local`` or ``ray``.
        workers: how many workers ran it.
    """

    items: list = field(default_factory=list)
    seconds: float = 0.0
    engine: str = "local"
    workers: int = 1

    @property
    def failures(self) -> list:
        return [r for r in self.items if r.error is not None]

    @property
    def exit_code(self) -> int:
        """0 all done, 3 some skipped, 1 all failed (the CLI's exit codes)."""
        if not self.failures:
            return EXIT_OK
        return EXIT_FAILURE if len(self.failures) == len(self.items) else EXIT_SKIPPED


def video_outputs(inputs: Iterable[str | Path], output_dir: str | Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs: each video's ``<stem>_heatmap.mp4`` in ``output_dir``.

    Raises:
        UsageError: two inputs would write the same output (same file name in different folders).
    """
    out_dir = Path(output_dir)
    pairs: list[tuple[Path, Path]] = []
    seen: dict[Path, Path] = {}
    for src in inputs:
        src = Path(src)
        dest = out_dir / default_output(src).name
        if dest in seen:
            raise UsageError(f"{seen[dest]} and {src} would both write {dest}; rename one, or run them separately")
        seen[dest] = src
        pairs.append((src, dest))
    return pairs


@dataclass(frozen=True)
class VideosWork:
    """What a worker needs to make heatmap videos (picklable); an item is ``(input, output, labels or None)``."""

    model: ModelSpec | None
    options: VideoOptions
    ffmpeg: str | None = None

    def worker(self, engine: CamEngine) -> _VideosWorker:
        return _VideosWorker(engine, self)


class _VideosWorker:
    def __init__(self, engine: CamEngine, work: VideosWork) -> None:
        self.engine, self.work = engine, work

    def load(self, item: tuple) -> tuple:
        return item

    def process(self, item: tuple, progress=None):
        src, dest, labels = item
        return process_video(src, dest, model=self.engine, options=self.work.options, labels_out=labels,
                             ffmpeg=self.work.ffmpeg, progress=progress)


def process_video_pairs(
    pairs: Iterable[tuple],
    *,
    model: ModelLike = DEFAULT_MODEL,
    options: VideoOptions | None = None,
    executor: Executor | None = None,
    labels_format: str | None = None,
    ffmpeg: str | None = None,
    on_result: Callable[[VideoOutcome], None] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> BatchReport:
    """Make the heatmap video of each ``(input, output)`` pair (or ``(input, output, labels file)`` triple).

    Args:
        pairs: what to do; a missing labels file defaults to ``labels_format`` beside the output.
        model: zoo name, ``.keras`` path or :class:`~vidcam.cam.spec.ModelSpec` (the local executor also takes a
            loaded classifier or engine).
        options: :class:`~vidcam.jobs.video.VideoOptions` for every video.
        executor: :class:`~vidcam.jobs.executors.LocalExecutor` (default: one after another) or
            :class:`vidcam.cluster.RayExecutor`.
        labels_format: ``csv`` or ``jsonl``: ``<stem>_heatmap_labels.<ext>`` beside each video.
        ffmpeg: ffmpeg binary.
        on_result: called with each video's outcome as soon as it is known (completion order on Ray).
        progress: per-frame progress of the current video (local executor only).

    Returns:
        A :class:`BatchReport`; its ``exit_code`` is 3 when some videos were skipped.
    """
    options = options or VideoOptions()
    executor = executor or LocalExecutor()
    if labels_format not in (None, "csv", "jsonl"):
        raise UsageError(f"labels format must be csv or jsonl, got {labels_format!r}")
    items = []
    for p in pairs:
        src, dest = Path(p[0]), Path(p[1])
        labels = Path(p[2]) if len(p) > 2 and p[2] else (
            dest.with_name(f"{dest.stem}_labels.{labels_format}") if labels_format else None)
        items.append((src, dest, labels))
    if not items:
        raise UsageError("no input videos given")
    t0 = time.perf_counter()
    local = executor.name == "local"
    # Items travel as absolute paths: a remote worker's working folder is not this process's.
    work_items = [(str(s.absolute()), str(d.absolute()), str(lb.absolute()) if lb else None) for s, d, lb in items]
    outcomes = [VideoOutcome(str(s), str(d)) for s, d, _ in items]

    def done(r: ItemResult) -> None:
        out = outcomes[r.index]
        out.attempts, out.worker, out.summary = r.attempts, r.worker, r.value
        src, dest = work_items[r.index][0], work_items[r.index][1]
        out.error = None if r.error is None else r.error.replace(src, out.input).replace(dest, out.output)
        if out.error is not None:
            out.summary = None
        if on_result:
            on_result(out)

    work = VideosWork(None if local else portable_spec(model), options, ffmpeg)
    engine = video_engine(model) if local else None  # a remote driver never loads TensorFlow
    workers = executor.run(work, work_items, done, engine=engine, progress=progress)
    return BatchReport(outcomes, time.perf_counter() - t0, executor.name, workers)


def process_videos(
    inputs: Iterable[str | Path],
    output_dir: str | Path,
    *,
    model: ModelLike = DEFAULT_MODEL,
    options: VideoOptions | None = None,
    executor: Executor | None = None,
    labels_format: str | None = None,
    ffmpeg: str | None = None,
    on_result: Callable[[VideoOutcome], None] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> BatchReport:
    """:func:`process_video_pairs` for input files or globs, each written as ``output_dir/<stem>_heatmap.mp4``.

    Raises:
        UsageError: bad options, two inputs with the same output name.
        OutputError: the output folder is a file or cannot be created.
    """
    from vidcam.jobs.image import expand_paths

    out_dir = Path(output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output folder {out_dir} is a file; give a folder for many videos")
    pairs = video_outputs(expand_paths(inputs), out_dir)
    ensure_dir(out_dir)
    return process_video_pairs(pairs, model=model, options=options, executor=executor, labels_format=labels_format,
                               ffmpeg=ffmpeg, on_result=on_result, progress=progress)
