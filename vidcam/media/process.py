"""ffmpeg child processes: stderr always drained, last lines kept for messages, raw pipes read and written whole."""

from __future__ import annotations

import collections
import subprocess
import threading
from collections.abc import Callable

import numpy as np

from vidcam.errors import FFmpegError

__all__ = ["FFmpegProcess", "last_lines", "read_exact", "write_all", "to_i420"]


def last_lines(text: str, n: int = 8) -> str:
    """The last ``n`` non-empty lines of ffmpeg's stderr, joined by `` | `` for a one-line message."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


class FFmpegProcess:
    """An ffmpeg child process whose stderr is always drained (its last lines are kept for messages).

    The child gets its own process group, so a Ctrl-C in the terminal reaches only vidcam, which then kills
    it; nothing ffmpeg writes is left half-done under a final name (vidcam writes to temporary names).
    """

    def __init__(self, args: list[str], *, stdin=None, stdout=None, what: str = "ffmpeg", keep: int = 40,
                 on_line: Callable[[str], bool] | None = None) -> None:
        """``on_line(line)`` sees every stderr line first; a line it returns True for is not kept for messages."""
        self.args, self.what, self._on_line = args, what, on_line
        self._tail: collections.deque[str] = collections.deque(maxlen=keep)
        try:
            self.proc = subprocess.Popen(
                args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, process_group=0, bufsize=0
            )
        except OSError as e:
            raise FFmpegError(f"cannot run {args[0]}: {e.strerror or e}") from None
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                _enlarge_pipe(pipe.fileno())
        self._drain = threading.Thread(target=self._drain_stderr, name=f"{what}-stderr", daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if self._on_line is None or not self._on_line(line):
                self._tail.append(line)
        self.proc.stderr.close()

    def draining(self) -> bool:
        """Whether stderr may still bring lines (the child has not closed it yet)."""
        return self._drain.is_alive()

    def tail(self, n: int = 8) -> str:
        """The last ``n`` lines ffmpeg wrote to stderr, on one line."""
        self._drain.join(timeout=2)
        return last_lines("\n".join(self._tail), n)

    def kill(self) -> None:
        """Kill the child if it still runs and reap it."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        self.proc.wait()

    def wait(self) -> int:
        return self.proc.wait()

    def check(self) -> None:
        """Wait for the child; raise :class:`FFmpegError` with its last lines when it failed."""
        rc = self.proc.wait()
        if rc != 0:
            tail = self.tail()
            raise FFmpegError(f"{self.what} failed (exit code {rc}): {tail or 'no message'}")


_PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size, allowed without privileges


def _enlarge_pipe(fd: int) -> None:
    """Give a frame pipe 1 MiB instead of 64 KiB: a 720p frame then passes in 3 reads, not 43, each a context
    switch between vidcam and ffmpeg (on 2 cores: 5.4 of the reader thread's CPU-ms per frame). Best effort:
    where the size cannot change (not Linux: no fcntl or no F_SETPIPE_SZ; a lower limit) the pipe stays as it is."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def read_exact(f, view: memoryview) -> int:
    """Fill ``view`` from a raw pipe; returns the bytes read (less than asked only at end of stream)."""
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def write_all(f, data: memoryview) -> None:
    sent = 0
    while sent < len(data):
        sent += f.write(data[sent:])


def to_i420(rgb: np.ndarray) -> np.ndarray:
    """An RGB frame as I420 (yuv420p, BT.601 matrix, limited range): what vidcam's encoders are fed.

    Converting here (OpenCV, ~0.6 ms at 720p) instead of in ffmpeg's swscale saves the encoder about a quarter
    of its CPU time and halves the bytes through the pipe. Odd sizes get one black column/row at the right/bottom
    (yuv420p needs even sizes).
    """
    import cv2

    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        rgb = cv2.copyMakeBorder(rgb, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
