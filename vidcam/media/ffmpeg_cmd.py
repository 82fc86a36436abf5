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
from fractions import Fraction
from pathlib import Path

import ffmpeg

from vidcam.errors import FFmpegError

__all__ = [
    "ffmpeg_exe",
    "media_arg",
    "probe_args",
    "decode_args",
    "encode_args",
    "count_frames_args",
]

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


def _fraction(rate: Fraction) -> str:
    return f"{rate.numerator}/{rate.denominator}"


def probe_args(exe: str, path: str | os.PathLike) -> list[str]:
    """One pass that (a) dumps the input's streams on stderr, (b) lists every video packet's timestamps on
    stdout (``framecrc``, stream copy: no decoding) and (c) decodes the first frame through ``showinfo``,
    which logs the exact frame-rate fraction and the frame size after autorotation."""
    inp = ffmpeg.input(media_arg(path))
    packets = inp.output("pipe:1", map="0:V:0", c="copy", f="framecrc")
    first = inp.output("-", map="0:V:0", vf="showinfo", f="null", **{"frames:v": 1})
    return _cmd(exe, ffmpeg.merge_outputs(packets, first), loglevel="info")


def count_frames_args(exe: str, path: str | os.PathLike) -> list[str]:
    """Decode every video frame (no copy shortcuts) and report the count on stderr (``-stats`` line)."""
    stream = ffmpeg.input(media_arg(path)).output("-", map="0:V:0", f="null", fps_mode="passthrough")
    return [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-stats", *stream.get_args()]


def decode_args(
    exe: str,
    path: str | os.PathLike,
    *,
    start: float | None = None,
    duration: float | None = None,
    threads: int | None = None,
) -> list[str]:
    """Decode the first video stream to raw RGB24 frames on stdout, upright (ffmpeg autorotates),
    every frame passed through unchanged in number (``fps_mode passthrough``: no duplicates, no drops)."""
    in_opts: dict = {}
    if start:
        in_opts["ss"] = f"{start:.6f}"
    if duration is not None:
        in_opts["t"] = f"{duration:.6f}"
    if threads:
        in_opts["threads"] = threads
    stream = ffmpeg.input(media_arg(path), **in_opts).output(
        "pipe:1", map="0:V:0", f="rawvideo", pix_fmt="rgb24", fps_mode="passthrough", an=None, sn=None, dn=None
    )
    return _cmd(exe, stream)


def encode_args(
    exe: str,
    output: str | os.PathLike,
    *,
    width: int,
    height: int,
    rate: Fraction,
    crf: int = 20,
    preset: str = "veryfast",
    audio_from: str | os.PathLike | None = None,
    audio_codec: str = "copy",
    audio_start: float | None = None,
    audio_duration: float | None = None,
    sar: Fraction | None = None,
    threads: int | None = None,
) -> list[str]:
    """Raw I420 (yuv420p) frames on stdin -> H.264 (yuv420p, ``+faststart``) at exactly ``rate`` frames/s.

    The frames come from :func:`vidcam.media.process.write_frame`, which converts RGB and pads odd sizes to even ones
    (yuv420p needs them) by one black row/column at the bottom/right; ``width``/``height`` are the unpadded size.
    With ``audio_from``, every audio stream of that file is mapped (``-map 1:a?``: none is fine), trimmed to
    ``audio_start``/``audio_duration`` like the video, and copied (``audio_codec="copy"``) or re-encoded.
    """
    size = f"{width + width % 2}x{height + height % 2}"
    video = ffmpeg.input("pipe:0", f="rawvideo", pix_fmt="yuv420p", s=size, framerate=_fraction(rate))
    # Tag what write_frame sends (BT.601, limited range), so players do not guess BT.709 for HD sizes.
    filters = ["setparams=range=tv:colorspace=smpte170m"]
    if sar is not None and sar != 1:
        filters.append(f"setsar={sar.numerator}/{sar.denominator}")
    streams = [video.video]
    out_opts: dict = {
        "c:v": "libx264", "preset": preset, "crf": crf, "pix_fmt": "yuv420p", "movflags": "+faststart",
    }
    if filters:
        out_opts["vf"] = ",".join(filters)
    if threads:
        out_opts["threads"] = threads
    if audio_from is not None:
        a_opts: dict = {}
        if audio_start:
            a_opts["ss"] = f"{audio_start:.6f}"
        if audio_duration is not None:
            a_opts["t"] = f"{audio_duration:.6f}"
        streams.append(ffmpeg.input(media_arg(audio_from), **a_opts)["a?"])
        out_opts["c:a"] = audio_codec
        if audio_codec == "aac":
            out_opts["b:a"] = "192k"
    stream = ffmpeg.output(*streams, media_arg(output), **out_opts)
    return _cmd(exe, stream, overwrite=True)

