"""Ray as an executor: the only module that imports ``ray``.

Ray is an optional extra (``pip install "vidcam[cluster]"``); it is imported lazily, so everything else in
vidcam works without it. :class:`RayExecutor` runs any job's work items (:mod:`vidcam.jobs.executors`) on a pool
of Ray actors: each actor builds its own engine once, from the job's picklable :class:`~vidcam.cam.spec.ModelSpec`,
then runs items as they come (one Ray task each: a video, or a batch of frames). Actors ask for one GPU each
when the cluster has GPUs, else for CPUs. An item that fails is retried a bounded number of times (on whichever
actor is free; a dead actor is replaced), then reported; the others finish.

The jobs are the local jobs, so the results are the same: identical labels and, within float tolerance (thread
counts may change the order of float sums), identical maps.

Paths are made absolute before they are handed to Ray: on a real cluster, inputs, outputs and a ``.keras``
model must be on a filesystem every node sees at the same path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcam.errors import UsageError, VidcamError
from vidcam.jobs.executors import ItemResult, OnResult, Work, error_line, worker_name
from vidcam.jobs.frames import FramesOptions, FramesSummary, label_frames
from vidcam.models.zoo import DEFAULT_MODEL
from vidcam.quiet import muted_stderr

__all__ = ["ENGINES", "ClusterError", "RayExecutor", "require_ray", "ray_session", "label_frames_ray",
           "check_reachable", "DEFAULT_RETRIES", "executor_for"]

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


# -- Ray sessions --------------------------------------------------------------------------------------------


def _quiet_ray_logging() -> None:
    # Ray's own INFO lines (start-up, Ray Data execution plans) would drown vidcam's one line per item.
    for name in ("ray", "ray.data", "ray._private", "ray.util"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        for handler in logger.handlers:
            handler.setLevel(logging.ERROR)


def check_reachable(address: str, timeout: float = 10.0, *, check_only: bool = False) -> None:
    """Fail fast when a ``HOST:PORT`` or ``ray://HOST:PORT`` address does not answer: Ray itself keeps retrying
    an unreachable head for minutes before it gives up. ``auto`` is left to Ray (it fails at once).

    Raises:
        UsageError: not an address (with ``check_only``, only this is checked).
        ClusterError: nothing answers there.
    """
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        if address != "auto":
            raise UsageError(f"Ray cluster address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
        return
    if check_only:  # the form only: whether it answers is checked when the run connects
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
        check_reachable(address)
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


# -- the executor ----------------------------------------------------------------------------------------------


class _Actor:
    """A Ray actor's body: builds its engine once, then runs the job's worker on each item it gets."""

    def __init__(self, work: Work, cpus: float | None) -> None:
        self.error: str | None = None
        try:
            _limit_threads(cpus)
            self.worker = work.worker(work.model.build())
        except VidcamError as e:  # reported by ready(), so the driver stops with the model's own message
            self.error = str(e).splitlines()[0] if str(e) else type(e).__name__

    def ready(self) -> tuple[str | None, str]:
        return self.error, worker_name()

    def process(self, item: Any):
        import ray

        if self.error:
            raise VidcamError(self.error)
        canceled = getattr(ray.get_runtime_context(), "is_canceled", lambda: False)

        def progress(done: int, total: int | None) -> None:
            # ray.cancel() only raises a flag in a running actor task: checked as the item reports progress, it
            # unwinds the work like Ctrl-C does locally (temporary outputs deleted, ffmpeg children killed).
            if canceled():
                raise KeyboardInterrupt

        return self.worker.process(self.worker.load(item), progress), worker_name()


@dataclass
class RayExecutor:
    """Run a job's items on a pool of Ray actors.

    Attributes:
        address: the Ray cluster (``auto``, ``HOST:6379``, ``ray://HOST:10001``); None starts a local instance.
        workers: how many actors (default: one per GPU, else one per ``cpus_per_worker`` CPUs).
        cpus_per_worker: CPUs each actor reserves (its TensorFlow uses that many threads); default 1, or more
            when there are fewer items than CPUs.
        retries: extra attempts for an item whose worker failed or died.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float | None = None
    retries: int = DEFAULT_RETRIES
    name: str = "ray"

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise UsageError(f"retries must be 0 or more, got {self.retries}")
        if self.address is not None:
            check_reachable(self.address, check_only=True)

    def run(self, work: Work, items: Sequence, on_result: OnResult, *, engine=None, progress=None) -> int:
        if work.model is None:
            raise UsageError("the Ray executor needs the job's model as a ModelSpec (each worker builds its own)")
        with ray_session(self.address) as ray:
            size, request = _pool_size(ray, len(items), self.workers, self.cpus_per_worker)
            _Pool(ray, ray.remote(max_restarts=0, **request)(_Actor), work, request.get("num_cpus")).run(
                size, items, on_result, self.retries)
        return size


class _Pool:
    """The actor pool's bookkeeping: idle actors, items waiting, items in flight, retries."""

    def __init__(self, ray, actor_cls, work: Work, cpus) -> None:
        self.ray, self.actor_cls, self.work, self.cpus = ray, actor_cls, work, cpus
        self.names: dict = {}

    def new_actors(self, n: int) -> list:
        # All start at once (each loads TensorFlow and the model); the first engine error stops the run.
        actors = [self.actor_cls.remote(self.work, self.cpus) for _ in range(n)]
        for a, (error, name) in zip(actors, self.ray.get([a.ready.remote() for a in actors])):
            self.names[a] = name
            if error:
                for b in actors:
                    self.ray.kill(b)
                raise ClusterError(f"the Ray workers cannot build the engine: {error}")
        return actors

    def run(self, size: int, items: Sequence, on_result: OnResult, retries: int) -> None:
        from ray.exceptions import RayActorError, RayTaskError

        ray = self.ray
        results = [ItemResult(i) for i in range(len(items))]
        idle = self.new_actors(size)
        pending: deque[int] = deque(range(len(items)))
        inflight: dict = {}

        def failed(i: int, message: str, actor) -> None:
            results[i].error, results[i].worker = message, self.names.get(actor)
            if results[i].attempts <= retries:
                pending.append(i)  # to the back: another actor may be free for it
            else:
                on_result(results[i])

        try:
            while pending or inflight:
                while pending and idle:
                    i = pending.popleft()
                    actor = idle.pop()
                    results[i].attempts += 1
                    inflight[actor.process.remote(items[i])] = (i, actor)
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    i, actor = inflight.pop(ref)
                    try:
                        results[i].value, results[i].worker = ray.get(ref)
                    except RayActorError as e:  # the worker process died (killed, out of memory): replace it
                        with contextlib.suppress(Exception):
                            ray.kill(actor)
                        idle.extend(self.new_actors(1))
                        failed(i, f"worker died: {error_line(e)}", actor)
                    except RayTaskError as e:
                        idle.append(actor)
                        failed(i, error_line(e), actor)
                    else:
                        results[i].error = None
                        idle.append(actor)
                        on_result(results[i])
        finally:
            self._stop(inflight, idle)

    def _stop(self, inflight: dict, idle: list) -> None:
        ray = self.ray
        if inflight:  # interrupted: stop what still runs, give it a moment to delete its temporary output
            for ref in inflight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            with contextlib.suppress(Exception):
                ray.wait(list(inflight), num_returns=len(inflight), timeout=20)
        for a in idle + [a for _, a in inflight.values()]:
            with contextlib.suppress(Exception):
                ray.kill(a)


def executor_for(engine: str, *, address: str | None = None, retries: int | None = None, workers: int | None = None,
                 cpus_per_worker: float | None = None):
    """The executor named ``local`` or ``ray`` (``retries`` default: 0 locally, 2 on Ray, where workers can die)."""
    from vidcam.jobs.executors import LocalExecutor

    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "local":
        return LocalExecutor(retries=retries or 0)
    return RayExecutor(address, workers, cpus_per_worker, DEFAULT_RETRIES if retries is None else retries)


def label_frames_ray(
    directory: str | Path,
    output_dir: str | Path | None = None,
    *,
    model: Any = DEFAULT_MODEL,
    options: FramesOptions | None = None,
    cluster: RayExecutor | None = None,
    ffmpeg: str | None = None,
    progress=None,
    on_skip=None,
) -> FramesSummary:
    """:func:`vidcam.jobs.frames.label_frames` on Ray: the same job and outputs, batches run by Ray actors."""
    return label_frames(directory, output_dir, model=model, options=options, executor=cluster or RayExecutor(),
                        ffmpeg=ffmpeg, progress=progress, on_skip=on_skip)
