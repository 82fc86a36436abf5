"""Decoded frames with their exact presentation times: the video job's frame source.

ffmpeg decodes the first video stream to raw RGB24 on stdout (upright: rotation applied; colour converted as a
player shows it, see :func:`vidcam.media.ffmpeg_cmd.decode_args`), or, for a planar source, to I420 in the
video's own matrix (:func:`planar_matrix`, :mod:`vidcam.media.yuv`), and, for every frame it sends, one line
``vidcam-pts N PTS TB`` on stderr (``-stats_enc_pre``, flushed per line, written before the frame's bytes).
So each frame's presentation time is the decoder's own, exact in the stream's time base: nothing is recomputed
from a frame index, and variable frame rates, freezes, start offsets and edit lists survive as they are.

Times are seconds from the start of the file (ffmpeg's reference: the earliest stream's start), minus the
``start`` that was skipped, exactly as ``ffmpeg -ss START -i FILE`` gives them.
"""

from __future__ import annotations

import math
import queue
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from vidcam.errors import FFmpegError, InputError
from vidcam.media.ffmpeg_cmd import PTS_TAG, decode_args
from vidcam.media.probe import VideoInfo
from vidcam.media.process import FFmpegProcess, read_exact

__all__ = ["BufferPool", "FrameBatch", "VideoSource", "decode_filters", "output_colour", "planar_matrix"]


@dataclass
class FrameBatch:
    """Consecutive decoded frames (a record per frame: index, presentation time, pixels).

    Attributes:
        index: the first frame's index (0 = the first frame decoded).
        ticks: (n,) int64 presentation times in ``time_base`` units.
        time_base: the stream's time base, exact.
        pixels: (n, H, W, 3) uint8 RGB, upright; from a planar source (n, H * 3 // 2, W) I420 frames
            (:mod:`vidcam.media.yuv`). After :meth:`VideoSource.recycle` the source reads later frames
            into the same memory: keep a copy of any frame needed after that.
    """

    index: int
    ticks: np.ndarray
    time_base: Fraction
    pixels: np.ndarray
    buffer: np.ndarray | None = field(default=None, repr=False)  # the whole array ``pixels`` is a view of

    def __len__(self) -> int:
        return len(self.pixels)

    def seconds(self, i: int) -> float:
        """Frame ``i``'s presentation time in seconds (exact to the time base, then rounded to a float)."""
        return float(int(self.ticks[i]) * self.time_base)

    def nanoseconds(self, i: int) -> int:
        return round(int(self.ticks[i]) * self.time_base * 1_000_000_000)


class BufferPool:
    """Arrays of one shape, taken and given back (from any thread): a new array when none is free.

    The source reads every batch into an array from here; a consumer that gives batches back when done with them
    (:meth:`VideoSource.recycle`) saves the kernel zeroing a new array's pages for every batch (a fresh 8-frame
    720p batch costs about 2 CPU-ms per frame on 2 cores; a reused one nothing). Holds at most ``keep`` free
    arrays, so what it keeps is bounded by what was in flight at once.
    """

    def __init__(self, shape: tuple[int, ...], keep: int = 16) -> None:
        self.shape, self.keep = shape, keep
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.made = 0  # arrays allocated (a consumer that recycles keeps this at the number in flight)

    @property
    def nbytes(self) -> int:
        """The size of one array, in bytes."""
        return math.prod(self.shape)

    def take(self) -> np.ndarray:
        with self._lock:
            if self._free:
                return self._free.pop()
            self.made += 1
        return np.empty(self.shape, np.uint8)

    def give(self, array: np.ndarray) -> None:
        if array.shape != self.shape:
            raise ValueError(f"array of shape {array.shape} given to a pool of {self.shape}")
        with self._lock:
            if len(self._free) < self.keep and not any(a is array for a in self._free):
                self._free.append(array)


class VideoSource:
    """Iterate over a video's frames in batches of ``batch_size`` (the last one may be shorter).

    A consumer done with a batch may hand it back (:meth:`recycle`): later batches are read into its memory.

    Args:
        info: the probed video.
        exe: the ffmpeg binary.
        start, duration: the part to decode (seconds), as ``ffmpeg -ss START -t DURATION -i``.
        batch_size: frames per batch.
        planar: decode to I420 instead of RGB (only for a video :func:`planar_matrix` accepts; the frames are
            in that matrix).

    Raises (while iterating):
        FFmpegError: ffmpeg failed, or stopped in the middle of a frame.
        InputError: no frame in the selected range.
    """

    def __init__(self, info: VideoInfo, exe: str, *, start: float | None = None, duration: float | None = None,
                 batch_size: int = 8, planar: bool = False) -> None:
        self.info, self.batch_size = info, batch_size
        self.matrix = planar_matrix(info) if planar else None
        if planar and self.matrix is None:
            raise ValueError(f"{info.path} cannot be decoded as I420 as it is (see planar_matrix)")
        frame = (info.height * 3 // 2, info.width) if planar else (info.height, info.width, 3)
        self.pool = BufferPool((batch_size, *frame))
        self._times: queue.Queue = queue.Queue()
        self._last = -1
        self.decoded = 0  # frames read so far (in batches handed out)
        self._tb: Fraction | None = None
        self.decoder = FFmpegProcess(
            decode_args(exe, info.path, start=start, duration=duration, filters=decode_filters(info, planar),
                        pix_fmt="yuv420p" if planar else "rgb24"),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, what=f"ffmpeg (decoding {info.path})",
            on_line=self._on_line,
        )

    def _on_line(self, line: str) -> bool:
        if not line.startswith(PTS_TAG):
            return False
        _tag, _n, pts, tb = line.split()
        num, den = tb.split("/")
        ticks = int(pts)
        if ticks < -(2**62):  # no timestamp at all (ffmpeg fills them in; kept in order if it ever does not)
            ticks = self._last + 1
        self._last, self._tb = ticks, Fraction(int(num), int(den))
        self._times.put((ticks, self._tb))
        return True

    def _time_of(self, index: int) -> tuple[int, Fraction]:
        """The presentation time ffmpeg logged for frame ``index`` (logged before the frame's bytes were sent)."""
        while True:
            try:
                return self._times.get(timeout=0.5)
            except queue.Empty:
                if self.decoder.draining():
                    continue
            # stderr is closed: every line it had is in the queue now (it may have arrived just after the wait).
            try:
                return self._times.get_nowait()
            except queue.Empty:
                pass
            if self._tb is None:
                raise FFmpegError(f"ffmpeg (decoding {self.info.path}) gave no timestamp for frame {index}")
            # A damaged file's last frames can come without one: one typical frame period after the previous.
            step = max(1, round(self.info.duration / max(1, self.info.frames) / self._tb))
            self._last += step
            return self._last, self._tb

    def __iter__(self) -> Iterator[FrameBatch]:
        b = self.batch_size
        pipe = self.decoder.proc.stdout
        index = 0
        while True:
            frames = self.pool.take()
            ticks = np.empty(b, np.int64)
            tb = Fraction(1)
            n = 0
            partial = False
            while n < b:
                view = memoryview(frames[n]).cast("B")
                got = read_exact(pipe, view)
                if got < len(view):
                    partial = got > 0
                    break
                ticks[n], tb = self._time_of(index + n)
                n += 1
            if n:
                self.decoded = index + n
                yield FrameBatch(index, ticks[:n], tb, frames[:n], frames)
                index += n
            if n < b:
                break
        self._finish(index, partial)

    def _finish(self, frames: int, partial: bool) -> None:
        rc = self.decoder.wait()
        if rc != 0:
            raise FFmpegError(f"ffmpeg (decoding {self.info.path}) failed (exit code {rc}): {self.decoder.tail()}")
        if partial:
            raise FFmpegError(f"ffmpeg (decoding {self.info.path}) ended in the middle of a frame")
        if frames == 0:
            raise InputError(f"no frames decoded from {self.info.path} in the selected range")

    def recycle(self, batch: FrameBatch) -> None:
        """Give back a batch this source made, once nothing reads its pixels any more: later frames reuse its
        memory (see :class:`BufferPool`)."""
        if batch.buffer is not None:
            self.pool.give(batch.buffer)

    def kill(self) -> None:
        self.decoder.kill()


def planar_matrix(info: VideoInfo) -> str | None:
    """The matrix of the I420 frames a video decodes to (``bt709`` or ``smpte170m``), or None where vidcam decodes
    it to RGB instead: an odd width or height, a source that is not Y'CbCr, or a matrix other than BT.709 and
    BT.601 (BT.2020 SDR, SMPTE 240M, ...). HDR is tone-mapped to BT.709; full range is brought to limited range.
    """
    c = info.colour
    if info.width % 2 or info.height % 2 or not (c.pix_fmt or "").startswith("yuv"):
        return None
    if c.hdr:
        return "bt709"
    return {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "smpte170m"}.get(
        c.decode_matrix(info.width, info.height))


def decode_filters(info: VideoInfo, planar: bool = False) -> str | None:
    """The filters that make decoded frames look as a player shows them (None: none needed).

    - interlaced video is deinterlaced (``bwdif``, frames flagged interlaced only);
    - HDR (PQ or HLG) is tone-mapped to SDR BT.709 (``zscale`` to linear light with SDR white at 100 nits,
      BT.709 primaries, then BT.709 transfer): the model and the output see what an SDR screen shows, not a
      washed-out picture. Everything up to SDR white keeps its level; brighter highlights are clipped (a
      rolling curve such as Hable would also dim the SDR range: white 235 came out at 148);
    - untagged video is tagged as players read it (BT.709 for HD sizes, BT.601 for SD), so the RGB conversion
      uses that matrix; tagged video is converted by its own tags, full range included.

    ``planar`` (I420 out, see :func:`planar_matrix`): the tone-mapped picture is converted to BT.709 Y'CbCr, full
    range to limited range; otherwise the source's Y'CbCr passes as it is (10-bit and 4:2:2/4:4:4 reduced to
    8-bit 4:2:0 by ffmpeg's output format).
    """
    chain = []
    if info.interlaced:
        chain.append("bwdif=mode=send_frame:deint=interlaced")
    c = info.colour
    if c.hdr:
        # To linear light (SDR white 100 nits), BT.709 primaries, clipped; then BT.709's transfer, as Y'CbCr or RGB.
        chain.append("zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=clip:desat=0,"
                     + ("zscale=t=bt709:m=bt709:r=tv,format=yuv420p" if planar else "zscale=t=bt709,format=gbrp"))
    elif planar:
        if c.range == "pc" or (c.pix_fmt or "").startswith("yuvj"):
            chain.append("scale=out_range=tv,format=yuv420p")
    elif not c.matrix and c.decode_matrix(info.width, info.height) == "bt709":
        chain.append("setparams=colorspace=bt709")
    return ",".join(chain) or None


def output_colour(info: VideoInfo) -> tuple[str, str]:
    """(primaries, transfer) of the RGB frames vidcam decodes from ``info``: what its output is tagged with."""
    c = info.colour
    if c.hdr:
        return "bt709", "bt709"
    hd = info.width >= 1280 or info.height > 576
    default = "bt709" if hd else "smpte170m"
    return c.primaries or default, c.transfer or default
