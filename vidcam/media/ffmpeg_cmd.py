"""ffmpeg command lines, built with ffmpeg-python: the only module that imports ``ffmpeg``.

Everything here returns argument lists (never a shell string, so no quoting bugs or injection). Media paths
are passed as ``file:/absolute/path``: a name that starts with ``-`` is never read as an option and a name
with a colon is never read as a protocol (``http:...``).

Which binary runs: the ``ffmpeg`` argument (the CLI's ``--ffmpeg``), else ``$VIDCAM_FFMPEG``, else the one
bundled with imageio-ffmpeg. ffprobe is never needed (imageio-ffmpeg ships none); see :mod:`vidcam.media.probe`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import ffmpeg

from vidcam.errors import FFmpegError, UsageError

__all__ = [
    "EncodeOptions",
    "EncodeTarget",
    "AudioPlan",
    "PTS_TAG",
    "PRESETS",
    "DEFAULT_PRESET",
    "ffmpeg_exe",
    "media_arg",
    "probe_args",
    "decode_args",
    "x264_args",
    "mux_args",
    "count_frames_args",
]

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# Measured on the 2-core CPU at 720p (vidcam video, whole process tree): superfast costs about the CPU of
# ultrafast (~60 vs ~59 ms per frame) for files ~45% smaller; veryfast ~90 ms per frame (the encoder then
# costs more than the Grad-CAM engine) for files ~20% smaller than superfast.
DEFAULT_PRESET = "superfast"


@dataclass(frozen=True)
class EncodeOptions:
    """How vidcam's H.264 outputs are encoded (every job that writes a video takes the same), checked when made.

    Attributes:
        crf: x264 quality, 0-51, lower is better (18-23 is typical).
        preset: x264 speed preset (:data:`PRESETS`; default :data:`DEFAULT_PRESET`).
        threads: x264's threads (None: its own choice, 1.5 per core; the video job picks fewer beside an engine
            that runs on the CPU, see :func:`vidcam.jobs.video.encoder_threads`).

    Raises:
        UsageError: crf out of range, an unknown preset or fewer than one thread.
    """

    crf: int = 20
    preset: str = DEFAULT_PRESET
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"encoder threads must be at least 1, got {self.threads}")
        if not 0 <= self.crf <= 51:
            raise UsageError(f"crf must be within 0..51 (lower is better quality; 18-23 is typical), got {self.crf}")
        if self.preset not in PRESETS:
            raise UsageError(f"unknown x264 preset {self.preset!r}: use one of {', '.join(PRESETS)}")


# Quiet by default; errors (and, for probing, the stream dump) still reach stderr, which vidcam drains.
_GLOBAL = ["-nostdin", "-hide_banner", "-nostats"]


def ffmpeg_exe(explicit: str | os.PathLike | None = None) -> str:
    """The ffmpeg binary to run: ``explicit``, else ``$VIDCAM_FFMPEG``, else imageio-ffmpeg's.

    Raises:
        FFmpegError: the named binary does not exist or is not executable.
    """
    name = explicit or os.environ.get("VIDCAM_FFMPEG")
    if name:
        found = shutil.which(str(name))
        if found is None:
            where = "--ffmpeg" if explicit else "VIDCAM_FFMPEG"
            raise FFmpegError(f"ffmpeg binary {name!s} (from {where}) not found or not executable; "
                              "give the path of an ffmpeg executable")
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001 - any failure here means "no bundled binary"
        raise FFmpegError(f"no ffmpeg binary found ({e}); install imageio-ffmpeg or set VIDCAM_FFMPEG") from None


def media_arg(path: str | os.PathLike) -> str:
    """``file:`` plus the absolute path: never parsed as an option or as another protocol."""
    return "file:" + os.fspath(Path(path).absolute())


def _cmd(exe: str, stream, loglevel: str = "error", *, overwrite: bool = False) -> list[str]:
    # Global options go first: ffmpeg may ignore options that trail the last output.
    return [exe, *_GLOBAL, *(["-y"] if overwrite else []), "-loglevel", loglevel, *stream.get_args()]



def probe_args(exe: str, path: str | os.PathLike) -> list[str]:
    """One pass that (a) dumps the input's streams on stderr, (b) lists every video and audio packet's timestamps on
    stdout (``framecrc``, stream copy: no decoding) and (c) decodes the first frame through ``showinfo``,
    which logs the exact frame-rate fraction and the frame size after autorotation."""
    inp = ffmpeg.input(media_arg(path))
    packets = ffmpeg.output(inp["V:0"], inp["a?"], "pipe:1", c="copy", f="framecrc")
    first = inp.output("-", map="0:V:0", vf="showinfo", f="null", **{"frames:v": 1})
    return _cmd(exe, ffmpeg.merge_outputs(packets, first), loglevel="info")


def count_frames_args(exe: str, path: str | os.PathLike) -> list[str]:
    """Decode every video frame (no copy shortcuts) and report the count on stderr (``-stats`` line)."""
    stream = ffmpeg.input(media_arg(path)).output("-", map="0:V:0", f="null", fps_mode="passthrough")
    return [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-stats", *stream.get_args()]


# Every frame the decoder sends is announced on stderr first: "vidcam-pts N PTS TIMEBASE" (exact, in the stream's
# time base: -enc_time_base demux), so a frame's time comes from the decoder itself, never from its index. The
# frame's own time, not its packet's: ffmpeg fills in a frame whose packet had none (the last frame of an MPEG-PS).
PTS_TAG = "vidcam-pts"


def decode_args(
    exe: str,
    path: str | os.PathLike,
    *,
    start: float | None = None,
    duration: float | None = None,
    filters: str | None = None,
    pix_fmt: str = "rgb24",
) -> list[str]:
    """Decode the first video stream to raw RGB24 (or ``pix_fmt``, e.g. ``yuv420p``) frames on stdout, upright
    (ffmpeg autorotates), every frame passed through unchanged in number and time (``fps_mode passthrough``: no
    duplicates, no drops), each announced on stderr with its presentation time (:data:`PTS_TAG` lines,
    ``-stats_enc_pre``).

    Args:
        start, duration: ``-ss`` / ``-t`` on the input (accurate seek: frames before ``start`` are dropped;
            times are then relative to ``start``).
        filters: a filter chain applied before the RGB conversion (deinterlacing, tone mapping, the colour
            matrix of untagged video).
        pix_fmt: the raw frames' pixel format.
    """
    in_opts: dict = {}
    if start:
        in_opts["ss"] = f"{start:.6f}"
    if duration is not None:
        in_opts["t"] = f"{duration:.6f}"
    out_opts: dict = {
        "map": "0:V:0", "f": "rawvideo", "pix_fmt": pix_fmt, "fps_mode": "passthrough", "an": None, "sn": None,
        "dn": None, "enc_time_base:v": "demux", "stats_enc_pre": "/dev/stderr",
        "stats_enc_pre_fmt": PTS_TAG + " {n} {pts} {tb}",
    }
    if filters:
        out_opts["vf"] = filters
    stream = ffmpeg.input(media_arg(path), **in_opts).output("pipe:1", **out_opts)
    return _cmd(exe, stream)


@dataclass(frozen=True)
class EncodeTarget:
    """The video an encoder writes: its size (unpadded), time base, pixel aspect and colour tags.

    Attributes:
        width, height: the frames' size (odd sizes are padded by one black column/row, see ``write_frame``).
        time_base: the output's time base (the source's, so every timestamp is kept exactly).
        sar: sample aspect ratio, or None for square pixels.
        primaries, transfer: the colour primaries and transfer of the frames.
        matrix: the Y'CbCr matrix of the I420 frames sent (limited range): BT.601 (``smpte170m``) for RGB
            frames converted by :func:`vidcam.media.process.to_i420`; the source's for frames decoded as I420.
    """

    width: int
    height: int
    time_base: Fraction = Fraction(1, 90000)
    sar: Fraction | None = None
    primaries: str = "bt709"
    transfer: str = "bt709"
    matrix: str = "smpte170m"


@dataclass(frozen=True)
class AudioPlan:
    """Which audio goes into an output, and how.

    Attributes:
        source: the file whose audio streams are all mapped (``-map 1:a?``: none is fine).
        codec: ``copy`` or ``aac``.
        start, duration: ``-ss`` / ``-t`` on that input, as for the video.
        end: with ``aac``, cut every track at this time (seconds, output timeline), to the sample.
    """

    source: str | os.PathLike
    codec: str = "copy"
    start: float | None = None
    duration: float | None = None
    end: float | None = None


def x264_args(exe: str, target: EncodeTarget, encode: EncodeOptions | None = None) -> list[str]:
    """Frames with their timestamps (Matroska on stdin, see :mod:`vidcam.media.mkv`) -> H.264 (yuv420p) as an
    Annex B stream on stdout: x264's access units in the order the frames came (no B-frames), one per frame.

    vidcam muxes that stream itself (:func:`mux_args`), so that a repeated picture can be written as a skipped
    picture instead of being encoded again (:mod:`vidcam.media.h264`).
    """
    encode = encode or EncodeOptions()
    # The frames are I420 in the target's matrix, limited range; tag exactly that (x264 writes it in the stream),
    # so players neither guess another matrix from the size nor stretch the range.
    filters = [f"setparams=range=tv:colorspace={target.matrix}:color_primaries={target.primaries}"
               f":color_trc={target.transfer}"]
    if target.sar is not None and target.sar != 1:
        filters.append(f"setsar={target.sar.numerator}/{target.sar.denominator}")
    # No B-frames: the access units come out in the order the frames went in, so each gets its frame's time, and
    # the stream can take skipped pictures between them. Measured on the 720p bench clip at superfast/crf 20, it
    # also costs ~20% less encoder CPU and gives a ~10% smaller file.
    opts: dict = {
        "map": "0:V:0", "c:v": "libx264", "preset": encode.preset, "crf": encode.crf, "bf": 0, "pix_fmt": "yuv420p",
        "vf": ",".join(filters), "fps_mode": "passthrough", "f": "h264",
    }
    if encode.threads is not None:
        opts["threads"] = encode.threads
    stream = ffmpeg.input("pipe:0", f="matroska").output("pipe:1", **opts)
    return _cmd(exe, stream)


def mux_args(
    exe: str,
    output: str | os.PathLike,
    target: EncodeTarget,
    *,
    first_pts: float = 0.0,
    audio: AudioPlan | None = None,
) -> list[str]:
    """H.264 with its timestamps (Matroska on stdin) -> ``output``, the video copied as it is, each frame at its own
    time, plus the audio of ``audio.source``.

    The Matroska stream's timestamps start at 0 at the first frame; ``-itsoffset first_pts`` puts that frame
    back at its time, so a picture that starts after the sound still does, and the audio, read from the source
    with the same ``start``, keeps its own times: sync holds at every point.
    """
    # Everything about the stream is in its header (vidcam wrote it): no probing, so the file is opened with the first
    # picture instead of after 20 or more (x264 at a slow preset holds 40 frames before its first picture).
    video = ffmpeg.input("pipe:0", f="matroska", itsoffset=f"{first_pts:.6f}", analyzeduration=0, probesize=32)
    streams = [video["V:0"]]
    out_opts: dict = {"c:v": "copy"}
    if audio is not None:
        a_opts: dict = {}
        if audio.start:
            a_opts["ss"] = f"{audio.start:.6f}"
        if audio.duration is not None:
            a_opts["t"] = f"{audio.duration:.6f}"
        streams.append(ffmpeg.input(media_arg(audio.source), **a_opts)["a?"])
        out_opts["c:a"] = audio.codec
        if audio.codec == "aac":
            out_opts["b:a"] = "192k"
            if audio.end is not None:
                out_opts["af"] = f"atrim=end={max(0.0, audio.end):.6f}"
    if Path(output).suffix.lower() in (".mp4", ".m4v", ".mov"):
        out_opts["movflags"] = "+faststart"
        out_opts["video_track_timescale"] = target.time_base.denominator
    stream = ffmpeg.output(*streams, media_arg(output), **out_opts)
    return _cmd(exe, stream, overwrite=True)
