"""How a job's work items are run: the local executor here, the Ray executor in :mod:`vidcam.cluster`.

A job is written once as a :class:`Work`: a small picklable description that builds a :class:`Worker` around an
engine. A worker has two steps, ``load`` (reading inputs: the local executor runs it one item ahead in a thread,
so the engine never waits for the disk) and ``process`` (the engine, rendering, writing). An executor decides
only where items run and how often a failed one is retried; it reports each item's :class:`ItemResult` to the
job's ``on_result`` callback, which may raise to stop the whole run.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from vidcam.errors import UsageError, VidcamError
from vidcam.jobs.pipeline import Pipeline

if TYPE_CHECKING:
    from vidcam.cam.engine import CamEngine
    from vidcam.cam.spec import ModelSpec

__all__ = ["Work", "Worker", "ItemResult", "Executor", "LocalExecutor", "worker_name", "error_line"]

ProgressCallback = Callable[[int, "int | None"], None]


class Worker(Protocol):
    def load(self, item: Any) -> Any: ...

    def process(self, loaded: Any, progress: ProgressCallback | None = None) -> Any: ...


class Work(Protocol):
    """What every executor runs: ``model`` says which engine a remote worker builds for itself."""

    model: ModelSpec | None

    def worker(self, engine: CamEngine) -> Worker: ...


@dataclass
class ItemResult:
    """One work item's outcome.

    Attributes:
        index: the item's position in the job's list.
        value: what the worker's ``process`` returned (None when it failed).
        error: the last failure's one-line message, or None.
        attempts: how many times the item was tried.
        worker: ``host:pid`` of the process that did the last attempt.
    """

    index: int
    value: Any = None
    error: str | None = None
    attempts: int = 0
    worker: str | None = None


OnResult = Callable[[ItemResult], None]


class Executor(Protocol):
    name: str

    def run(self, work: Work, items: Sequence, on_result: OnResult, *, engine: CamEngine | None = None,
            progress: ProgressCallback | None = None) -> int:
        """Run every item; returns how many workers ran them."""
        ...


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def error_line(e: BaseException) -> str:
    """A one-line message for a failure (a VidcamError's own message; other exceptions named by their type)."""
    cause = getattr(e, "cause", None)  # Ray's RayTaskError wraps the worker's own exception
    if isinstance(cause, BaseException):
        e = cause
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, VidcamError):
        return text or type(e).__name__
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@dataclass
class LocalExecutor:
    """Run the items in this process, in order, with the engine the job built; ``load`` runs one item ahead.

    Attributes:
        retries: extra attempts for an item whose ``process`` raised a :class:`~vidcam.errors.VidcamError`.
    """

    retries: int = 0
    name: str = "local"

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise UsageError(f"retries must be 0 or more, got {self.retries}")

    def run(self, work: Work, items: Sequence, on_result: OnResult, *, engine: CamEngine | None = None,
            progress: ProgressCallback | None = None) -> int:
        if engine is None:
            raise UsageError("the local executor runs with the engine the job built")
        worker = work.worker(engine)
        me = worker_name()
        with Pipeline(enumerate(items), [lambda pair: (pair[0], pair[1], worker.load(pair[1]))],
                      name="vidcam-load") as loaded:
            for index, item, data in loaded:
                result = ItemResult(index, worker=me)
                while True:
                    result.attempts += 1
                    try:
                        result.value = worker.process(data, progress)
                        result.error = None
                        break
                    except VidcamError as e:
                        result.error = error_line(e)
                        if result.attempts > self.retries:
                            break
                        data = worker.load(item)
                on_result(result)
        return 1
