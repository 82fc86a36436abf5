"""The encoder as a sink: RGB frames with their presentation times in, an H.264 video (with the source's audio)
out. Frames reach ffmpeg as Matroska (:mod:`vidcam.media.mkv`), so each keeps its time and duration."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import numpy as np

from vidcam.errors import FFmpegError
from vidcam.media import mkv
from vidcam.media.process import FFmpegProcess, to_i420, write_all

__all__ = ["VideoSink"]


class VideoSink:
    """Write frames, each with its presentation time; the encoder starts with the first frame.

    A frame is written once the next one's time is known (that gives its duration); :meth:`close` writes the
    last one with the duration that makes the video end at ``end_ns``.

    Args:
        args_for: ``args_for(first_pts_seconds) -> ffmpeg arguments`` (the encoder's command line needs the
            first frame's time to keep it: see :func:`vidcam.media.ffmpeg_cmd.encode_args`).
        what: the encoder's name in error messages.
    """

    def __init__(self, args_for: Callable[[float], list[str]], *, what: str) -> None:
        self.args_for, self.what = args_for, what
        self.encoder: FFmpegProcess | None = None
        self._first_ns = 0
        self._started = False  # the stream's header was sent (with the first frame's size)
        self._pending: tuple[int, np.ndarray] | None = None
        self._rgb: tuple[np.ndarray, np.ndarray] | None = None  # the last RGB picture written and its I420

    def open(self, first_ns: int) -> None:
        """Start the encoder now for a stream whose first frame is shown from ``first_ns``, before that frame is
        drawn: ffmpeg starts (and opens the audio's source) meanwhile instead of when the first frame is written.
        Optional; call it once, before any write, from any thread that happens-before the first write."""
        if self.encoder is None:
            self._first_ns = first_ns
            self.encoder = FFmpegProcess(self.args_for(first_ns / 1e9), stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, what=self.what)

    def _start(self, pts_ns: int, width: int, height: int) -> None:
        if self.encoder is not None and pts_ns != self._first_ns:
            raise ValueError(f"the encoder was opened for a first frame at {self._first_ns} ns, not {pts_ns}")
        self.open(pts_ns)
        self._send(mkv.header(width, height))
        self._started = True

    def _send(self, data) -> None:
        try:
            write_all(self.encoder.proc.stdin, memoryview(data).cast("B"))
        except (BrokenPipeError, ConnectionResetError):
            self.encoder.check()
            raise FFmpegError(f"{self.what} stopped reading frames") from None

    def _flush(self, next_ns: int) -> None:
        pts_ns, yuv = self._pending
        self._send(mkv.frame_cluster(pts_ns - self._first_ns, next_ns - pts_ns, yuv.nbytes))
        self._send(yuv)

    def write(self, rgb: np.ndarray, pts_ns: int) -> None:
        """Queue one RGB frame shown from ``pts_ns`` (nanoseconds, increasing) until the next frame's time.

        The same picture written again (the same array, unchanged: a held frame) is converted once."""
        if self._rgb is not None and self._rgb[0] is rgb:
            yuv = self._rgb[1]
        else:
            yuv = to_i420(rgb)
            self._rgb = (rgb, yuv)
        self.write_i420(yuv, pts_ns)

    def write_i420(self, yuv: np.ndarray, pts_ns: int) -> None:
        """Queue one I420 frame (``(H * 3 // 2, W)``, even size, in the matrix the encoder's target is tagged with;
        see :mod:`vidcam.media.yuv`) shown from ``pts_ns`` until the next frame's time. The sink keeps the array
        until then: do not change it."""
        if not self._started:
            self._start(pts_ns, yuv.shape[1], yuv.shape[0] * 2 // 3)
        if self._pending is not None:
            self._flush(max(pts_ns, self._pending[0] + 1))
        self._pending = (pts_ns, yuv)

    def close(self, end_ns: int) -> None:
        """Write the last frame (shown until ``end_ns``), end the stream and wait for the encoder.

        Raises:
            FFmpegError: the encoder failed.
        """
        if self.encoder is None:
            return
        if not self._started:  # opened, but no frame came: nothing to encode
            self.encoder.kill()
            return
        if self._pending is not None:
            self._flush(max(end_ns, self._pending[0] + 1))
            self._pending = None
        self.encoder.proc.stdin.close()
        self.encoder.check()

    def kill(self) -> None:
        if self.encoder is not None:
            self.encoder.kill()
