"""The encoder as a sink: frames with their presentation times in, an H.264 video (with the source's audio) out.

Two ffmpeg processes, with vidcam between them::

    frames (I420, Matroska) --> ffmpeg: x264 --> H.264 (Annex B) --> vidcam --> H.264 (Matroska) --> ffmpeg: mux
                                                                    (skipped                         (+ audio) --> file
                                                                     pictures)

Frames reach x264 as Matroska (:mod:`vidcam.media.mkv`), each with its duration. x264's access units come back in
the same order (no B-frames), and vidcam hands them to the muxer with each frame's own time. A repeated picture
(:meth:`VideoSink.repeat`: a frozen screen, a held frame) never reaches x264: vidcam writes a skipped picture in its
place (:mod:`vidcam.media.h264`; every macroblock copied from the picture before, a few bytes), so it costs neither
x264's time (4 CPU-ms a repeated 720p frame, measured) nor its trip through two pipes, and decodes to exactly the
picture before it.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidcam.errors import FFmpegError
from vidcam.media import h264, mkv
from vidcam.media.ffmpeg_cmd import AudioPlan, EncodeOptions, EncodeTarget, mux_args, x264_args
from vidcam.media.process import FFmpegProcess, to_i420, write_all

__all__ = ["VideoSink", "SKIPPING_PRESETS"]

# x264's presets that predict from one reference picture (ref=1): a skipped picture between two of x264's pictures
# then stands exactly where x264's picture before it stood (the slower presets' ref_idx > 0 would point at it).
SKIPPING_PRESETS = frozenset({"ultrafast", "superfast", "veryfast"})

_READ = 1 << 20  # what the muxing thread reads of x264's output at a time (the pipe holds as much)


@dataclass
class _Shown:
    """One picture sent to x264 and the times it is shown: from ``pts`` (its own frame), again from each of
    ``held`` (skipped pictures), until ``end``."""

    pts: int
    held: list[int] = field(default_factory=list)
    end: int = 0

    def times(self) -> list[tuple[int, int]]:
        """(time, duration) of its own frame, then of each skipped picture."""
        starts = [self.pts, *self.held]
        return [(t, max(1, nxt - t)) for t, nxt in zip(starts, [*starts[1:], self.end])]


class VideoSink:
    """Write frames, each with its presentation time; the encoder starts with the first frame (or :meth:`open`).

    A frame is sent once the next one's time is known (that gives its duration); :meth:`close` sends the last one
    with the duration that makes the video end at ``end_ns``.

    Args:
        exe: the ffmpeg binary.
        output: the file to write (every byte of it is ffmpeg's: write to a temporary name).
        target: the video's size, time base and tags.
        encode: x264's settings.
        audio: which audio to add, if any.
        what: the encoder's name in error messages.
    """

    def __init__(self, exe: str, output: str | Path, target: EncodeTarget, *, encode: EncodeOptions | None = None,
                 audio: AudioPlan | None = None, what: str) -> None:
        self.exe, self.output, self.target, self.audio, self.what = exe, output, target, audio, what
        self.encode = encode or EncodeOptions()
        self.skips = self.encode.preset in SKIPPING_PRESETS
        self.encoder: FFmpegProcess | None = None  # x264
        self.muxer: FFmpegProcess | None = None
        self._first_ns = 0
        self._started = False  # the stream's header was sent (with the first frame's size)
        self._pending: tuple[int, np.ndarray] | None = None  # a picture waiting for its duration
        self._shown: _Shown | None = None  # the last picture sent (or pending) and its repeats so far
        self._last: np.ndarray | None = None  # the last picture written (I420)
        self._encoder_ns = 0  # x264's own timeline: the pictures it encodes, end to end
        self._times: queue.Queue[_Shown | None] = queue.Queue()
        self._mux_thread: threading.Thread | None = None
        self._error: BaseException | None = None  # what stopped the muxing thread
        self._splicer = h264.SkipSplicer()  # the muxing thread's
        self._sent = self._muxed = 0  # pictures sent to x264, and its pictures muxed
        self._size = (0, 0)

    def open(self, first_ns: int) -> None:
        """Start the encoder now for a stream whose first frame is shown from ``first_ns``, before that frame is
        drawn: ffmpeg starts (and opens the audio's source) meanwhile instead of when the first frame is written.
        Optional; call it once, before any write, from any thread that happens-before the first write."""
        if self.encoder is not None:
            return
        self._first_ns = first_ns
        self.muxer = FFmpegProcess(mux_args(self.exe, self.output, self.target, first_pts=first_ns / 1e9,
                                            audio=self.audio),
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, what=self.what)
        try:
            self.encoder = FFmpegProcess(x264_args(self.exe, self.target, self.encode), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, what=self.what)
        except BaseException:
            self.muxer.kill()
            raise
        self._mux_thread = threading.Thread(target=self._mux, name="vidcam-mux", daemon=True)
        self._mux_thread.start()

    def _start(self, pts_ns: int, width: int, height: int) -> None:
        if self.encoder is not None and pts_ns != self._first_ns:
            raise ValueError(f"the encoder was opened for a first frame at {self._first_ns} ns, not {pts_ns}")
        self.open(pts_ns)
        self._send(mkv.header(width, height))
        self._size = (width, height)
        self._started = True

    def _send(self, data) -> None:
        try:
            write_all(self.encoder.proc.stdin, memoryview(data).cast("B"))
        except (BrokenPipeError, ConnectionResetError):
            self._raise_muxing_error()
            self.encoder.check()
            raise FFmpegError(f"{self.what} stopped reading frames") from None

    @property
    def skipped(self) -> int:
        """Pictures written as skipped pictures so far."""
        return self._splicer.inserted

    def _raise_muxing_error(self) -> None:
        # The muxing thread keeps what stopped it before it kills the encoder: a pipe broken by that is explained.
        if self._error is not None:
            raise self._error

    def _advance(self, next_ns: int) -> None:
        """A frame starts at ``next_ns``: the picture waiting for its duration is sent to x264."""
        if self._pending is not None:
            pts_ns, yuv = self._pending
            self._pending = None
            duration = max(1, next_ns - pts_ns)
            self._send(mkv.frame_cluster(self._encoder_ns, duration, yuv.nbytes))
            self._send(yuv)
            self._encoder_ns += duration
            self._sent += 1

    def write(self, rgb: np.ndarray, pts_ns: int) -> None:
        """Queue one RGB frame shown from ``pts_ns`` (nanoseconds, increasing) until the next frame's time (the same
        picture again: :meth:`repeat`)."""
        self.write_i420(to_i420(rgb), pts_ns)

    def write_i420(self, yuv: np.ndarray, pts_ns: int) -> None:
        """Queue one I420 frame (``(H * 3 // 2, W)``, even size, in the matrix the encoder's target is tagged with;
        see :mod:`vidcam.media.yuv`) shown from ``pts_ns`` until the next frame's time. The sink keeps the array
        until then: do not change it."""
        if not self._started:
            self._start(pts_ns, yuv.shape[1], yuv.shape[0] * 2 // 3)
        self._end_shown(pts_ns)
        self._advance(pts_ns)
        self._pending, self._shown, self._last = (pts_ns, yuv), _Shown(pts_ns), yuv

    def _end_shown(self, end_ns: int) -> None:
        """The last picture is shown until ``end_ns``: its times go to the muxing thread."""
        if self._shown is not None:
            self._shown.end = end_ns
            self._times.put(self._shown)
            self._shown = None

    def repeat(self, pts_ns: int) -> None:
        """The last picture written, shown again from ``pts_ns``: a skipped picture where the preset allows it
        (:data:`SKIPPING_PRESETS`), else the picture encoded again."""
        if self._last is None:
            raise ValueError("no picture to repeat: write one first")
        if not self.skips:
            self.write_i420(self._last, pts_ns)
            return
        self._advance(pts_ns)
        self._shown.held.append(pts_ns)

    def _mux(self) -> None:
        """The muxing thread: x264's access units, each with its frame's time, and the skipped pictures after it,
        to the muxer."""
        try:
            reader, splicer = h264.AccessUnitReader(), self._splicer
            out = self.encoder.proc.stdout
            header = None
            while True:
                chunk = out.read(_READ)
                for au in reader.feed(chunk) if chunk else reader.finish():
                    shown = self._times.get()
                    if shown is None:  # killed
                        return
                    nals = splicer.frame(au)
                    if header is None:
                        header = splicer.config()
                        self._to_muxer(mkv.avc_header(*self._size, header, self.target.sar))
                    times = shown.times()
                    # SPS and PPS are in the track's configuration (as when ffmpeg muxes x264 itself)
                    self._packet(times[0], [n for n in nals if n[0] & 0x1F not in (7, 8)], au.key)
                    self._muxed += 1
                    if len(times) > 1 and not splicer.can_repeat:
                        raise FFmpegError(f"{self.what}: x264's stream cannot take skipped pictures "
                                          f"({splicer.why_not}); use another --preset")
                    for t in times[1:]:
                        self._packet(t, splicer.repeat(), False)
                if not chunk:
                    break
            if self._muxed != self._sent and self.encoder.wait() == 0:
                raise FFmpegError(f"{self.what}: x264 returned {self._muxed} pictures for {self._sent}")
            self.muxer.proc.stdin.close()
        except BaseException as e:  # noqa: BLE001 - the writing thread raises it
            if isinstance(e, (BrokenPipeError, ConnectionResetError)):
                try:
                    self.muxer.check()
                    e = FFmpegError(f"{self.what} stopped reading the video")
                except FFmpegError as failed:
                    e = failed
            elif isinstance(e, h264.H264Error):
                e = FFmpegError(f"{self.what}: unexpected H.264 from x264: {e}")
            self._error = e
            # The encoder's pipes are the writing thread's: only the signal from here (its next write then breaks).
            if self.encoder.proc.poll() is None:
                self.encoder.proc.kill()
            self.muxer.kill()
        finally:
            self.encoder.proc.stdout.close()

    def _packet(self, time: tuple[int, int], nals: list[bytes], key: bool) -> None:
        pts_ns, duration = time
        data = b"".join(len(n).to_bytes(4, "big") + n for n in nals)
        self._to_muxer(mkv.frame_cluster(pts_ns - self._first_ns, duration, len(data), key=key) + data)

    def _to_muxer(self, data: bytes) -> None:
        write_all(self.muxer.proc.stdin, memoryview(data))

    def close(self, end_ns: int) -> None:
        """Write the last frame (shown until ``end_ns``), end the stream and wait for the encoder.

        Raises:
            FFmpegError: the encoder failed.
        """
        if self.encoder is None:
            return
        if not self._started:  # opened, but no frame came: nothing to encode
            self.kill()
            return
        self._advance(end_ns)
        self._end_shown(end_ns)
        try:
            self.encoder.proc.stdin.close()
        except BrokenPipeError:
            pass
        self._mux_thread.join()
        self._raise_muxing_error()
        self.encoder.check()
        self.muxer.check()

    def kill(self) -> None:
        for p in (self.encoder, self.muxer):
            if p is not None:
                p.kill()
        if self._mux_thread is not None:
            self._times.put(None)
            self._mux_thread.join(timeout=5)
