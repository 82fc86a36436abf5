"""A stage runner: a source and stages in threads joined by bounded queues, consumed in the caller's thread.

::

    source (thread) --queue--> stage 1 (thread) --queue--> ... --queue--> for item in pipeline: (caller)

Every stage runs at once, so the slowest sets the pace; the queues are bounded, so memory stays flat whatever
the input's length. A failure in any thread is raised in the caller's thread (the original exception); when the
caller stops early (an error, Ctrl-C, ``break``), :meth:`Pipeline.close` stops every thread at its next queue
operation, after ``on_stop`` has unblocked any that wait on something else (e.g. kill a decoder whose pipe a
source reads).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

__all__ = ["Pipeline"]

_END = object()


class _Failure:
    """Carries a worker thread's exception to the caller's thread through the queues."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Pipeline:
    """Run ``source`` and each of ``stages`` (one-argument functions) in threads; iterate over the results.

    Args:
        source: an iterable of items, consumed in its own thread (a generator reading a pipe, say).
        stages: functions applied in order, each in its own thread; item order is kept.
        depth: items each queue holds at most.
        on_stop: called once when the pipeline is closed before its end (to unblock a source).
        name: thread-name prefix.

    Example:
        >>> with Pipeline(range(3), [lambda x: x * 2]) as p:
        ...     list(p)
        [0, 2, 4]
    """

    def __init__(self, source: Iterable, stages: Sequence[Callable[[Any], Any]] = (), *, depth: int = 2,
                 on_stop: Callable[[], None] | None = None, name: str = "vidcam") -> None:
        self._stop = threading.Event()
        self._on_stop = on_stop
        self._queues = [queue.Queue(maxsize=max(1, depth)) for _ in range(len(stages) + 1)]
        self._threads = [threading.Thread(target=self._produce, args=(source,), name=f"{name}-source", daemon=True)]
        for i, fn in enumerate(stages):
            self._threads.append(threading.Thread(target=self._transform, args=(fn, i), name=f"{name}-stage{i + 1}",
                                                  daemon=True))
        self._finished = False
        try:
            for t in self._threads:
                t.start()
        except BaseException:
            # A thread that cannot start (no address space left for its stack, say): stop those that did and
            # raise this error, not a later "cannot join thread before it is started" from close().
            self.close()
            raise

    # -- queue operations that give up when the pipeline stops ------------------------------------------------

    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue):
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return _END

    # -- threads ---------------------------------------------------------------------------------------------

    def _produce(self, source: Iterable) -> None:
        out = self._queues[0]
        try:
            for item in source:
                if not self._put(out, item):
                    return
            self._put(out, _END)
        except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
            self._put(out, _Failure(e))

    def _transform(self, fn: Callable, i: int) -> None:
        src, out = self._queues[i], self._queues[i + 1]
        while True:
            item = self._get(src)
            if item is _END or isinstance(item, _Failure):
                self._put(out, item)
                return
            try:
                result = fn(item)
            except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
                self._put(out, _Failure(e))
                return
            if not self._put(out, result):
                return

    # -- the caller's side -----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator:
        last = self._queues[-1]
        while True:
            item = self._get(last)
            if item is _END:
                self._finished = not self._stop.is_set()
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def close(self, timeout: float = 60, early_timeout: float = 10) -> None:
        """Stop every thread (unblocking the source with ``on_stop`` when stopping early) and join them.

        Stopping early (an error, Ctrl-C, SIGTERM), all of them get ``early_timeout`` seconds in all: a thread
        stuck in a long call is left behind (the threads are daemons) rather than holding the stop up."""
        early = not self._finished and not self._stop.is_set()
        self._stop.set()
        if early and self._on_stop is not None:
            self._on_stop()
        deadline = time.monotonic() + (early_timeout if early else timeout)
        for t in self._threads:
            if t.ident is not None:  # started
                t.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
