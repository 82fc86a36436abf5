"""Many videos and huge frame folders, locally or on a Ray cluster: the only module that imports ``ray``.

Ray is an optional extra (``pip install "vidcam[cluster]"``); it is imported lazily, so everything else in
vidcam works without it, and the local engine of :func:`process_videos` never touches it.

How work is spread (``engine="ray"``):

- videos: a pool of Ray actors, each building one :class:`~vidcam.cam.engine.CamEngine` once and then running
  the ordinary local :func:`vidcam.jobs.video.process_video` with it for every video it is handed (one Ray task
  per video). Actors ask for one GPU each when the cluster has GPUs, else for CPUs. A video that fails is
  retried a bounded number of times (on whichever actor is free; a dead actor is replaced), then reported;
  the others finish.
- frames: Ray Data over the listing the local job makes (same order, same resume logic), ``map_batches``
  with a callable class that holds one engine per actor and writes the same ``result_0001.jpg`` files the
  local job writes; the labels come back to the driver and are written once, in order.

Both run the same code as the local jobs on the same inputs, so the results are the same: identical labels
and, within float tolerance (thread counts may change the order of float sums), identical maps.

Paths are made absolute before they are handed to Ray: on a real cluster, inputs, outputs and a ``.keras``
model must be on a filesystem every node sees at the same path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidcam.errors import EXIT_FAILURE, EXIT_OK, EXIT_SKIPPED, OutputError, UsageError, VidcamError
from vidcam.models.zoo import DEFAULT_MODEL, ZOO
from vidcam.quiet import muted_stderr

__all__ = [
    "ENGINES",
    "ClusterError",
    "EngineSpec",
    "VideoOutcome",
    "BatchReport",
    "require_ray",
    "ray_session",
    "process_videos",
    "process_video_pairs",
    "write_labels",
    "frames_labels",
    "video_outputs",
    "label_frames_ray",
    "LABEL_KINDS",
]

ENGINES = ("local", "ray")
DEFAULT_RETRIES = 2
INSTALL_HINT = 'pip install "vidcam[cluster]"'


class ClusterError(VidcamError):
    """Ray is missing, cannot be reached, or the cluster cannot run the job."""


def require_ray():
    """Import and return ``ray``, or raise :class:`ClusterError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


# -- the engine every worker builds --------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSpec:
    """What a worker needs to build its own engine: small and picklable (a built model is neither).

    Attributes:
        model: a zoo name or a ``.keras`` path (made absolute, so every worker finds the same file).
        layer: Grad-CAM layer (None: the model's default).
        method: ``gradcam``, ``gradcam++`` or ``scorecam``.
        weights: weights file for a zoo model (absolute path), or None.
        unsafe: allow ``.keras`` files with Lambda layers.
    """

    model: str = DEFAULT_MODEL
    layer: str | None = None
    method: str = "gradcam"
    weights: str | None = None
    unsafe: bool = False

    @classmethod
    def of(
        cls,
        model: Any = DEFAULT_MODEL,
        *,
        layer: str | None = None,
        method: str = "gradcam",
        weights: str | Path | None = None,
        unsafe: bool = False,
    ) -> EngineSpec:
        """A spec for a zoo name or a ``.keras`` path; a loaded model cannot be shipped to other machines."""
        if not isinstance(model, (str, os.PathLike)):
            raise UsageError("the ray engine needs the model as a zoo name or a .keras path (each worker loads "
                             f"its own copy), not a loaded {type(model).__name__}")
        name = str(model)
        if name not in ZOO:
            if not Path(name).is_file():
                from vidcam.errors import ModelError
                from vidcam.models.zoo import load_classifier

                if Path(name).suffix == ".keras":  # the local job's message, without importing TensorFlow here
                    raise ModelError(f"model file not found: {name}")
                load_classifier(name)  # raises the local job's own message (unknown name, not a .keras file)
            name = str(Path(name).absolute())
        return cls(name, layer, method, str(Path(weights).absolute()) if weights else None, unsafe)

    def build(self):
        """Load the classifier and build the engine (once per worker)."""
        from vidcam.cam.engine import get_engine

        return get_engine(self.model, layer=self.layer, method=self.method, weights=self.weights,
                          unsafe=self.unsafe)


def _limit_threads(cpus: float | None) -> None:
    """Keep one worker's TensorFlow to its share of the machine, so N workers do not fight over the cores.

    Must run before TensorFlow starts its runtime (a fresh Ray worker process, before the engine is built).
    """
    if not cpus or cpus < 1:
        return
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # already initialised: keep TensorFlow's defaults
        tf.config.threading.set_intra_op_parallelism_threads(int(cpus))
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, int(cpus))))


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _error_text(e: BaseException) -> str:
    """A one-line message for an exception that came back from a worker."""
    cause = getattr(e, "cause", None)  # RayTaskError wraps the worker's own exception
    if isinstance(cause, BaseException):
        e = cause
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, VidcamError):
        return text or type(e).__name__
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# -- Ray sessions --------------------------------------------------------------------------------------------


def _quiet_ray_logging() -> None:
    # Ray's own INFO lines (start-up, Ray Data execution plans) would drown vidcam's one line per item.
    for name in ("ray", "ray.data", "ray._private", "ray.util"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        for handler in logger.handlers:
            handler.setLevel(logging.ERROR)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast when a ``HOST:PORT`` or ``ray://HOST:PORT`` address does not answer: Ray itself keeps retrying
    an unreachable head for minutes before it gives up. ``auto`` is left to Ray (it fails at once)."""
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        if address != "auto":
            raise UsageError(f"Ray cluster address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
        return
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {reason} (is `ray start --head` running "
                           "there, and is the address right?)") from None


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Yield ``ray`` connected to a cluster: the one already connected, ``address``, or a new local instance.

    Args:
        address: ``auto`` (the cluster this machine belongs to, from ``ray start``), ``HOST:6379`` (a head
            node's GCS) or ``ray://HOST:10001`` (Ray Client). None: start a local Ray instance with
            ``num_cpus`` CPUs (default: all of this machine's), shut down afterwards.
        num_cpus: CPUs of the local instance (ignored with ``address``).

    A Ray already initialised in this process (a library user's, or the tests') is used as it is and left
    running.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    # Ray's per-task C++ warnings (e.g. about actor restarts) go to stderr unless the backend is quieter.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    kwargs: dict = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        kwargs["address"] = address
    else:
        kwargs.update(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False)
    if address:
        _check_reachable(address)
    try:
        with muted_stderr():  # Ray's start-up chatter (C++ log lines, token and port notices)
            ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        hint = " (is `ray start --head` running there, and is the address right?)" if address else ""
        raise ClusterError(f"cannot connect to {where}: {first}{hint}") from None
    _quiet_ray_logging()
    try:
        yield ray
    finally:
        ray.shutdown()


def _gpus(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def _pool_size(ray, items: int, workers: int | None, cpus_per_worker: float | None) -> tuple[int, dict]:
    """(actors, their resource request): one per GPU when the cluster has GPUs, else one per ``cpus_per_worker``
    CPUs. Without ``cpus_per_worker``, CPU actors get 1 CPU each, or more when there are fewer items than CPUs
    (one video on a 2-core machine: one actor with both cores), but never more than one node has."""
    gpus = _gpus(ray)
    # More actors than the cluster can hold at once would wait for resources for ever: capped.
    if gpus:
        return max(1, min(workers or gpus, gpus, items)), {"num_gpus": 1, "num_cpus": cpus_per_worker or 1}
    cpus = float(ray.cluster_resources().get("CPU", 1))
    per = cpus_per_worker or 1
    size = max(1, min(workers or int(cpus // per), int(cpus // per), items))
    if cpus_per_worker is None:
        node_cpus = max((n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
        per = max(1, min(int(cpus // size), int(node_cpus)))
    return size, {"num_cpus": per}


# -- many videos ---------------------------------------------------------------------------------------------


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
        engine: ``local`` or ``ray``.
        workers: how many workers (actors) ran it.
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
    from vidcam.jobs.video import default_output

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


def _labels_for(output: Path, labels_format: str | None) -> Path | None:
    return output.with_name(f"{output.stem}_labels.{labels_format}") if labels_format else None


class _VideoWorker:
    """A Ray actor's body: builds one engine, then runs :func:`process_video` for each video it gets."""

    def __init__(self, spec: EngineSpec, cpus: float | None) -> None:
        self.error: str | None = None
        try:
            _limit_threads(cpus)
            self.engine = spec.build()
        except VidcamError as e:  # reported by ready(), so the driver stops with the model's own message
            self.error = str(e).splitlines()[0] if str(e) else type(e).__name__

    def ready(self) -> tuple[str | None, str]:
        return self.error, _worker_name()

    def process(self, input: str, output: str, options: dict):
        import ray

        from vidcam.jobs.video import process_video

        if self.error:
            raise VidcamError(self.error)
        canceled = getattr(ray.get_runtime_context(), "is_canceled", lambda: False)

        def progress(done: int, total: int | None) -> None:
            # ray.cancel() only raises a flag in a running actor task: checked once per batch, it unwinds the
            # run like Ctrl-C does locally (temporary output deleted, ffmpeg children killed).
            if canceled():
                raise KeyboardInterrupt

        return process_video(input, output, model=self.engine, progress=progress, **options), _worker_name()


def process_videos(
    inputs: Iterable[str | Path],
    output_dir: str | Path,
    *,
    engine: str = "local",
    address: str | None = None,
    model: Any = DEFAULT_MODEL,
    layer: str | None = None,
    method: str = "gradcam",
    weights: str | Path | None = None,
    unsafe: bool = False,
    labels_format: str | None = None,
    retries: int | None = None,
    workers: int | None = None,
    cpus_per_worker: float | None = None,
    on_result: Callable[[VideoOutcome], None] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    **video_options: Any,
) -> BatchReport:
    """Make the heatmap video of many videos: one after another (``local``) or one Ray task each (``ray``).

    A video that fails (unreadable, corrupt, output exists, a worker died) does not stop the others: it is
    retried up to ``retries`` times, then reported in its outcome's ``error``.

    Args:
        inputs: video files (globs expanded, in sorted order).
        output_dir: folder for the ``<stem>_heatmap.mp4`` files (created).
        engine: ``local`` (this process) or ``ray``.
        address: the Ray cluster (``auto``, ``HOST:6379``, ``ray://HOST:10001``); None starts a local instance.
        model: zoo name or ``.keras`` path (``local`` also takes a loaded Classifier or CamEngine).
        layer: Grad-CAM layer. method: ``gradcam``, ``gradcam++`` or ``scorecam``.
        weights: weights file for a zoo model. unsafe: allow ``.keras`` files with Lambda layers.
        labels_format: ``csv`` or ``jsonl`` to write ``<stem>_heatmap_labels.<ext>`` beside each video.
        retries: extra attempts for a failed video (default: 2 with ``ray``, where workers can die; 0 locally).
        workers: how many Ray actors (default: one per GPU, else one per ``cpus_per_worker`` CPUs).
        cpus_per_worker: CPUs each Ray actor reserves (its TensorFlow uses that many threads); default 1, or
            more when there are fewer videos than CPUs.
        on_result: called with each video's outcome as soon as it is known (in completion order with ``ray``).
        progress: ``local`` only: per-frame progress of the current video (see :func:`process_video`).
        **video_options: any other :func:`~vidcam.jobs.video.process_video` option (``layout``, ``smooth``,
            ``batch_size``, ``overwrite``, ...).

    Returns:
        A :class:`BatchReport`; its ``exit_code`` is 3 when some videos were skipped.

    Raises:
        UsageError: unknown engine, bad options, two inputs with the same output name.
        ClusterError: Ray missing or unreachable, or the workers cannot build the engine.
        OutputError: the output folder cannot be created.
    """
    from vidcam.jobs.image import expand_paths
    from vidcam.media.outputs import ensure_dir

    out_dir = Path(output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output folder {out_dir} is a file; give a folder for many videos")
    pairs = video_outputs(expand_paths(inputs), out_dir)
    ensure_dir(out_dir)
    return process_video_pairs(
        pairs, engine=engine, address=address, model=model, layer=layer, method=method, weights=weights,
        unsafe=unsafe, labels_format=labels_format, retries=retries, workers=workers,
        cpus_per_worker=cpus_per_worker, on_result=on_result, progress=progress, **video_options,
    )


def process_video_pairs(
    pairs: Iterable[tuple],
    *,
    engine: str = "local",
    address: str | None = None,
    model: Any = DEFAULT_MODEL,
    layer: str | None = None,
    method: str = "gradcam",
    weights: str | Path | None = None,
    unsafe: bool = False,
    labels_format: str | None = None,
    retries: int | None = None,
    workers: int | None = None,
    cpus_per_worker: float | None = None,
    on_result: Callable[[VideoOutcome], None] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    **video_options: Any,
) -> BatchReport:
    """:func:`process_videos` with each output named by the caller: ``(input, output video)`` pairs, or
    ``(input, output video, labels file)`` triples."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if labels_format not in (None, "csv", "jsonl"):
        raise UsageError(f"labels format must be csv or jsonl, got {labels_format!r}")
    for key in ("output", "labels_out", "model", "progress"):
        if key in video_options:
            raise UsageError(f"process_videos sets {key!r} itself; use output_dir / labels_format")
    # (input, output) or (input, output, labels file): the labels default to labels_format beside the output.
    pairs = [(Path(p[0]), Path(p[1]), Path(p[2]) if len(p) > 2 and p[2] else _labels_for(Path(p[1]), labels_format))
             for p in pairs]
    if not pairs:
        raise UsageError("no input videos given")
    retries = (DEFAULT_RETRIES if engine == "ray" else 0) if retries is None else retries
    if retries < 0:
        raise UsageError(f"retries must be 0 or more, got {retries}")
    t0 = time.perf_counter()
    if engine == "local":
        report = _videos_local(pairs, model, layer, method, weights, unsafe, retries, on_result, progress,
                               video_options)
    else:
        spec = EngineSpec.of(model, layer=layer, method=method, weights=weights, unsafe=unsafe)
        with ray_session(address) as ray:
            report = _videos_ray(ray, pairs, spec, retries, workers, cpus_per_worker, on_result, video_options)
    report.seconds = time.perf_counter() - t0
    return report


def _videos_local(pairs, model, layer, method, weights, unsafe, retries, on_result, progress,
                  options) -> BatchReport:
    from vidcam.cam.engine import get_engine
    from vidcam.jobs.video import process_video

    cam_engine = get_engine(model, layer=layer, method=method, weights=weights, unsafe=unsafe)
    items: list[VideoOutcome] = []
    for src, dest, labels in pairs:
        r = VideoOutcome(str(src), str(dest))
        while r.attempts <= retries:
            r.attempts += 1
            try:
                r.summary = process_video(src, dest, model=cam_engine, labels_out=labels,
                                          progress=progress, **options)
                r.error = None
                break
            except VidcamError as e:
                r.error = str(e).splitlines()[0] if str(e) else type(e).__name__
        r.worker = _worker_name()
        items.append(r)
        if on_result:
            on_result(r)
    return BatchReport(items, engine="local", workers=1)


def _videos_ray(ray, pairs, spec, retries, workers, cpus_per_worker, on_result, options) -> BatchReport:
    from ray.exceptions import RayActorError, RayTaskError

    size, request = _pool_size(ray, len(pairs), workers, cpus_per_worker)
    actor_cls = ray.remote(max_restarts=0, **request)(_VideoWorker)

    names: dict = {}

    def new_actors(n: int) -> list:
        # All start at once (each loads TensorFlow and the model); the first engine error stops the run.
        actors = [actor_cls.remote(spec, request.get("num_cpus")) for _ in range(n)]
        for a, (error, name) in zip(actors, ray.get([a.ready.remote() for a in actors])):
            names[a] = name
            if error:
                for b in actors:
                    ray.kill(b)
                raise ClusterError(f"the Ray workers cannot build the engine: {error}")
        return actors

    # Items travel as absolute paths: a worker's working folder is not the driver's.
    items = [VideoOutcome(str(src), str(dest)) for src, dest, _ in pairs]
    jobs = [(str(src.absolute()), str(dest.absolute()),
             {**options, "labels_out": str(labels.absolute()) if labels else None})
            for src, dest, labels in pairs]
    idle = new_actors(size)
    pending: deque[int] = deque(range(len(pairs)))
    inflight: dict = {}

    def finish(i: int) -> None:
        if on_result:
            on_result(items[i])

    def failed(i: int, message: str, actor) -> None:
        # Name the files as the caller did, not by the absolute paths the workers were given.
        src, dest = jobs[i][0], jobs[i][1]
        items[i].error = message.replace(src, items[i].input).replace(dest, items[i].output)
        items[i].worker = names.get(actor)
        if items[i].attempts <= retries:
            pending.append(i)  # to the back: another actor may be free for it
        else:
            finish(i)

    try:
        while pending or inflight:
            while pending and idle:
                i = pending.popleft()
                actor = idle.pop()
                items[i].attempts += 1
                inflight[actor.process.remote(*jobs[i])] = (i, actor)
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                i, actor = inflight.pop(ref)
                try:
                    items[i].summary, items[i].worker = ray.get(ref)
                    items[i].error = None
                    idle.append(actor)
                    finish(i)
                except RayActorError as e:  # the worker process died (killed, out of memory): replace it
                    with contextlib.suppress(Exception):
                        ray.kill(actor)
                    idle.extend(new_actors(1))
                    failed(i, f"worker died: {_error_text(e)}", actor)
                except RayTaskError as e:
                    idle.append(actor)
                    failed(i, _error_text(e), actor)
    finally:
        if inflight:  # interrupted: stop what still runs, give it a moment to delete its temporary output
            for ref in inflight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            with contextlib.suppress(Exception):
                ray.wait(list(inflight), num_returns=len(inflight), timeout=20)
        for a in idle + [a for _, a in inflight.values()]:
            with contextlib.suppress(Exception):
                ray.kill(a)
    return BatchReport(items, engine="ray", workers=size)


# -- huge frame folders --------------------------------------------------------------------------------------

LABEL_KINDS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


def _retry(fn: Callable, attempts: int):
    """``fn()``; a VidcamError (or OSError) is retried up to ``attempts - 1`` more times, then raised."""
    for left in range(attempts - 1, -1, -1):
        try:
            return fn()
        except (VidcamError, OSError):
            if not left:
                raise


class _FramesWorker:
    """Ray Data's callable class for ``map_batches``: one engine per actor, built once.

    Takes a batch of frames (``index``, ``path``, ``result`` columns: absolute paths), renders and writes
    each result picture exactly as the local job does, and returns one row per frame: its journal entry (JSON)
    or the error that made it skip the frame. Pictures never travel through Ray, only these small rows.
    """

    def __init__(self, spec: EngineSpec, cpus: float | None, options: dict) -> None:
        from vidcam.media.render import Renderer

        _limit_threads(cpus)
        self.engine = spec.build()
        self.o = options
        self.renderer = Renderer(layout=options["layout"], alpha=options["alpha"], colormap=options["colormap"])

    def _load(self, path: Path):
        from vidcam.media.images import fit_to_model, read_image

        st = path.stat()
        img = read_image(path)
        x, window = fit_to_model(img, self.engine.input_size, self.o["fit"])
        return img, x, window, st

    def __call__(self, batch: dict) -> dict:
        import json

        import numpy as np

        from vidcam.media.outputs import write_image
        from vidcam.media.render import format_label

        o, clf = self.o, self.engine.classifier
        attempts = o["retries"] + 1
        indices = [int(i) for i in batch["index"]]
        paths = [Path(str(p)) for p in batch["path"]]
        results = [Path(str(p)) for p in batch["result"]]
        entries, errors = [""] * len(paths), [""] * len(paths)
        good = []
        for j, p in enumerate(paths):
            try:
                good.append((j, _retry(lambda p=p: self._load(p), attempts)))
            except OSError as e:
                errors[j] = f"cannot read {p.name}: {e.strerror or e}"
            except VidcamError as e:
                errors[j] = str(e)
        if good:
            try:
                res = self.engine.run(np.stack([g[1][1] for g in good]), o["class_index"])
            except Exception as e:  # noqa: BLE001 - the batch's frames are reported; the job goes on
                for j, _ in good:
                    errors[j] = f"the engine failed on this batch: {_error_text(e)}"
                good = []
            else:
                ids, probs = res.top_k(o["top_k"])
            for i, (j, (img, _x, window, st)) in enumerate(good):
                cid = int(res.class_ids[i])
                label = format_label(clf.class_names[cid], float(res.probabilities[i, cid]))
                try:
                    picture = self.renderer(img, res.cams[i], label, window)
                    _retry(lambda j=j, picture=picture: write_image(results[j], picture), attempts)
                except VidcamError as e:
                    errors[j] = str(e)
                    continue
                entries[j] = json.dumps({
                    "file": paths[j].name, "result": results[j].name, "key": o["key"], "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                    "predictions": [{"class_id": int(c), "label": clf.class_names[int(c)],
                                     "probability": round(float(q), 6)} for c, q in zip(ids[i], probs[i])],
                })
        return {"index": indices, "entry": entries, "error": errors}


def _map_frames(ray, ds, spec: EngineSpec, request: dict, options: dict, batch_size: int, size: int, retries: int):
    """``ds.map_batches`` with :class:`_FramesWorker` on an actor pool of ``size``.

    A dead actor is replaced (Ray Data's default) and its batch retried, but only ``retries`` times: Ray Data
    would retry for ever, and a frame that kills its worker every time would then never let the job end.
    Ray Data deprecates passing ``max_task_retries`` this way (removal announced for Ray 2.64); a Ray that no
    longer takes it gets Ray Data's own default.
    """
    import warnings

    kwargs = {
        "fn_constructor_kwargs": {"spec": spec, "cpus": request.get("num_cpus"), "options": options},
        "batch_size": batch_size,
        "batch_format": "numpy",
        "compute": ray.data.ActorPoolStrategy(size=size),
        **request,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            return ds.map_batches(_FramesWorker, max_restarts=-1, max_task_retries=retries, **kwargs)
    except TypeError:
        return ds.map_batches(_FramesWorker, **kwargs)


def _write_parquet(path: Path, entries: list[dict], top_k: int) -> None:
    """Labels as one Parquet file: ``file, result, label, probability, class_id, label_2, ...`` columns."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ClusterError(f"Parquet labels need pyarrow: {INSTALL_HINT}") from None
    from vidcam.media.outputs import atomic_output

    cols: dict[str, list] = {"file": [e["file"] for e in entries], "result": [e["result"] for e in entries]}
    types: dict[str, Any] = {"file": pa.string(), "result": pa.string()}
    for j in range(1, top_k + 1):
        suffix = "" if j == 1 else f"_{j}"
        for name, typ, get in (("label", pa.string(), "label"), ("probability", pa.float64(), "probability"),
                               ("class_id", pa.int64(), "class_id")):
            cols[name + suffix] = [e["predictions"][j - 1][get] if len(e["predictions"]) >= j else None
                                   for e in entries]
            types[name + suffix] = typ
    table = pa.table({k: pa.array(v, type=types[k]) for k, v in cols.items()})
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)


def write_labels(path: str | Path, entries: list[dict], top_k: int) -> Path:
    """Write a frame folder's labels (journal entries, in order) as ``.csv``, ``.jsonl`` or ``.parquet``.

    CSV and JSON Lines are exactly what :func:`vidcam.jobs.frames.label_frames` writes; Parquet has one column per
    value (``file, result, label, probability, class_id, label_2, ...``) and needs pyarrow.

    Raises:
        UsageError: another extension.
    """
    from vidcam.jobs import frames as local

    path = Path(path)
    kind = LABEL_KINDS.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"labels file {path} must end in .csv, .jsonl or .parquet")
    if kind == "parquet":
        _write_parquet(path, entries, top_k)
    else:
        local._write_lines_atomic(path, local._labels_lines(entries, kind, top_k))
    return path


def frames_labels(output_dir: str | Path, files: list[Path] | None = None) -> list[dict]:
    """The journal entries of a frame-folder run's output folder, in the listing's order."""
    from vidcam.jobs import frames as local

    entries = local._read_journal(Path(output_dir) / local.JOURNAL_NAME)
    return list(entries.values()) if files is None else [entries[p.name] for p in files if p.name in entries]


def label_frames_ray(
    directory: str | Path,
    output_dir: str | Path | None = None,
    *,
    address: str | None = None,
    model: str | Path = DEFAULT_MODEL,
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
    labels_out: str | Path | None = None,
    force: bool = False,
    to_video: str | Path | None = None,
    fps: Any = 25,
    crf: int = 20,
    preset: str = "veryfast",
    overwrite: bool = False,
    ffmpeg: str | None = None,
    retries: int = DEFAULT_RETRIES,
    workers: int | None = None,
    cpus_per_worker: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
):
    """:func:`vidcam.jobs.frames.label_frames` on Ray Data: the same outputs, made by a pool of Ray actors.

    The listing, the result names (``result_0001.jpg``...), the resume journal and the labels file are the
    local job's, so a folder half done locally resumes on Ray and vice versa. Ray Data streams the frames not
    yet done (``from_items`` over the listing) through ``map_batches`` with :class:`_FramesWorker` (one
    engine per actor); the actors write the pictures and send back only the labels, which this process
    journals as they arrive and writes once, in order, at the end.

    Args:
        directory, output_dir, model ... preset, overwrite, ffmpeg, progress, on_skip: as for
            :func:`~vidcam.jobs.frames.label_frames` (``model`` must be a zoo name or a ``.keras`` path).
        address: the Ray cluster (``auto``, ``HOST:6379``, ``ray://HOST:10001``); None starts a local instance.
        labels_out: also write the labels here (``.csv``, ``.jsonl`` or ``.parquet``, see :func:`write_labels`),
            besides ``OUTDIR/labels.csv`` (or ``labels.jsonl``), which is written as the local job writes it.
        retries: extra attempts at reading a frame or writing its picture before it is reported.
        workers: how many actors (default: one per GPU, else one per ``cpus_per_worker`` CPUs).
        cpus_per_worker: CPUs each actor reserves (its TensorFlow uses that many threads); default 1, or more
            when there are fewer batches than CPUs.

    Returns:
        A :class:`~vidcam.jobs.frames.FramesSummary`.
    """
    import json

    from vidcam.cam.engine import get_engine
    from vidcam.jobs import frames as local
    from vidcam.jobs.video import PRESETS, VIDEO_SUFFIXES
    from vidcam.media.outputs import check_output, ensure_dir
    from vidcam.media.render import check_render_options

    t0 = time.perf_counter()
    # The same checks, in the same order, as the local job: a bad option fails before Ray starts.
    check_render_options(layout, colormap, fit, alpha)
    if batch_size < 1 or top_k < 1:
        raise UsageError("batch size and top-k must be at least 1")
    if retries < 0:
        raise UsageError(f"retries must be 0 or more, got {retries}")
    rate = local.parse_rate(fps)
    if to_video is not None:
        to_video = Path(to_video)
        if to_video.suffix.lower() not in VIDEO_SUFFIXES:
            raise UsageError(f"video {to_video} must end in {', '.join(VIDEO_SUFFIXES)} (vidcam writes H.264)")
        if preset not in PRESETS:
            raise UsageError(f"unknown x264 preset {preset!r}: use one of {', '.join(PRESETS)}")
        if not 0 <= crf <= 51:
            raise UsageError(f"crf must be within 0..51, got {crf}")
    spec = EngineSpec.of(model, layer=layer, method=method, weights=weights, unsafe=unsafe)
    files = local.list_frames(directory)
    src = Path(directory)
    out = Path(output_dir) if output_dir is not None else src.resolve().parent / f"{src.resolve().name}_results"
    if out.resolve() == src.resolve():
        raise UsageError(f"the output folder is the frame folder {src}; give another one with -o")
    if out.exists() and not out.is_dir():
        raise OutputError(f"output folder {out} is a file")
    kind = "jsonl" if json_lines else "csv"
    labels_path = out / f"labels.{kind}"
    if labels_out is not None:
        if Path(labels_out).suffix.lower() not in LABEL_KINDS:
            raise UsageError(f"labels file {labels_out} must end in .csv, .jsonl or .parquet")
        check_output(labels_out, overwrite=True)  # rebuilt by every run, like labels.csv
    ensure_dir(out)
    if to_video is not None:
        check_output(to_video, overwrite=overwrite)
        exe = local.ffmpeg_exe(ffmpeg)
    # This process builds the engine too (without running it): it checks the model, layer and class before
    # any worker starts, and it makes the settings key exactly as the local job does, so runs resume each other.
    engine = get_engine(model, layer=layer, method=method, weights=weights, unsafe=unsafe)
    clf = engine.classifier
    if class_index is not None and not 0 <= class_index < clf.num_classes:
        raise UsageError(f"class {class_index} is out of range: the model has {clf.num_classes} classes "
                         f"(0..{clf.num_classes - 1})")
    key = local._settings_key(engine, class_index=class_index, top_k=top_k, layout=layout, alpha=alpha,
                              colormap=colormap, fit=fit)
    del engine
    journal_path = out / local.JOURNAL_NAME
    results, done, todo = local.plan_frames(files, out, key, min(top_k, clf.num_classes), force=force)
    reused = len(done)
    local._write_lines_atomic(journal_path, [json.dumps(done[p.name]) + "\n" for p in files if p.name in done])
    failed: list[tuple[str, str]] = []
    total = len(files)
    if progress:
        progress(reused, total)

    if todo:
        rows = [{"index": i, "path": str(p.absolute()), "result": str(results[p.name].absolute())}
                for i, p in enumerate(todo)]
        options = {"class_index": class_index, "top_k": top_k, "layout": layout, "alpha": alpha,
                   "colormap": colormap, "fit": fit, "key": key, "retries": retries}
        errors: dict[int, str] = {}
        with ray_session(address) as ray, open(journal_path, "a", encoding="utf-8") as journal:
            import ray.data

            _quiet_ray_logging()  # again: importing ray.data sets up its own loggers
            # A batch whose worker died more than `retries` times is logged by Ray Data at ERROR with a traceback;
            # vidcam reports its frames itself (below), so only Ray Data's fatal messages may reach stderr.
            logging.getLogger("ray.data").setLevel(logging.CRITICAL)
            ctx = ray.data.DataContext.get_current()
            saved = (ctx.enable_progress_bars, ctx.max_errored_blocks)
            ctx.enable_progress_bars = False  # vidcam reports progress itself
            ctx.max_errored_blocks = -1  # a lost batch is reported; the other batches finish
            try:
                size, request = _pool_size(ray, max(1, -(-len(todo) // batch_size)), workers, cpus_per_worker)
                ds = _map_frames(ray, ray.data.from_items(rows), spec, request, options, batch_size, size, retries)
                finished = 0
                for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for i, entry, error in zip(b["index"], b["entry"], b["error"]):
                        p = todo[int(i)]
                        if entry:
                            journal.write(str(entry) + "\n")
                            done[p.name] = json.loads(str(entry))
                        else:  # named as the local job names it, not by the worker's absolute path
                            errors[int(i)] = str(error).replace(str(p.absolute()), str(p))
                    finished += len(b["index"])
                    journal.flush()
                    os.fsync(journal.fileno())
                    if progress:
                        progress(reused + finished, total)
            finally:
                ctx.enable_progress_bars, ctx.max_errored_blocks = saved
        for i, p in enumerate(todo):
            if p.name not in done and i not in errors:
                errors[i] = f"its batch was lost: the Ray worker failed {retries + 1} times"
        # Skipped frames are reported in listing order, like the local job reports them.
        for i in sorted(errors):
            failed.append((todo[i].name, errors[i]))
            if on_skip:
                on_skip(todo[i].name, errors[i])

    ordered = [done[p.name] for p in files if p.name in done]
    local._write_lines_atomic(journal_path, [json.dumps(e) + "\n" for e in ordered])
    local._write_lines_atomic(labels_path, local._labels_lines(ordered, kind, top_k))
    if labels_out is not None:
        write_labels(labels_out, ordered, top_k)
    video = None
    if to_video is not None and ordered:
        local._assemble(exe, [out / e["result"] for e in ordered], to_video, rate=rate, crf=crf, preset=preset)
        video = str(to_video)
    return local.FramesSummary(
        output_dir=str(out), total=total, processed=len(done) - reused, reused=reused, failed=failed,
        labels=str(labels_path), video=video, seconds=time.perf_counter() - t0,
    )
