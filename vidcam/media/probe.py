"""Probing videos without ffprobe (imageio-ffmpeg ships only ffmpeg).

:func:`probe` runs ffmpeg once over the file: the stream dump on stderr gives the container, codecs and
rotation; a stream copy of the video into ``framecrc`` (no decoding, so it is fast) gives every frame's
timestamp, hence the exact frame count, the duration and whether the rate is constant; one frame decoded
through ``showinfo`` gives ffmpeg's frame-rate fraction (``30000/1001``, not 29.97) and the size after
autorotation, i.e. the size people see.

"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from vidcam.errors import FFmpegError, InputError
from vidcam.media.ffmpeg_cmd import ffmpeg_exe, probe_args
from vidcam.media.process import last_lines

__all__ = ["VideoInfo", "probe"]

# A frame whose timestamp is further than this share of a frame period from the constant-rate grid makes
# the video variable-frame-rate. Container rounding (29.97 fps in a 1/1000 time base) stays well below it.
_VFR_TOLERANCE = 0.5
_IMAGE_FORMATS = ("image2", "apng")


@dataclass(frozen=True)
class VideoInfo:
    """What vidcam needs to know about a video file.

    Attributes:
        path: the file.
        container: ffmpeg's demuxer name(s), e.g. ``mov,mp4,m4a,3gp,3g2,mj2``.
        width: displayed width: after rotation metadata is applied (a portrait phone video is portrait).
        height: displayed height.
        rotation: the rotation metadata in degrees (0 when none); frames are decoded upright anyway.
        fps: the constant rate the output gets, as an exact fraction: the source's rate (``30000/1001``) for a
            constant-rate video; frames / duration for a variable-frame-rate one.
        nominal_fps: ffmpeg's idea of the source's rate (its ``r_frame_rate`` guess).
        vfr: True when the frame timestamps do not follow one constant rate.
        frames: the number of video frames (counted from the packets, so it is exact for ordinary files).
        duration: seconds from the first frame's start to the last frame's end.
        video_codec: e.g. ``h264``.
        sar: sample (pixel) aspect ratio; 1 for square pixels.
        audio_codecs: one codec name per audio stream (empty: silent).
        container_duration: the whole file's duration (its longest stream), None when ffmpeg gives none.
        timestamps: every frame's presentation time in seconds from the file's start, sorted.
        damaged: ffmpeg's complaint when the file is truncated or corrupt (``partial file``), else None; the
            frames that decode are still counted and processed.
    """

    path: Path
    container: str
    width: int
    height: int
    rotation: int
    fps: Fraction
    nominal_fps: Fraction
    vfr: bool
    frames: int
    duration: float
    video_codec: str
    sar: Fraction = Fraction(1)
    audio_codecs: tuple[str, ...] = ()
    container_duration: float | None = None
    timestamps: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    damaged: str | None = None

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_codecs)

    @property
    def end(self) -> float:
        """Where the video ends, in seconds from the file's start."""
        return float(self.timestamps[0]) + self.duration if self.timestamps.size else self.duration

    def frames_between(self, start: float | None = None, duration: float | None = None) -> int:
        """How many frames ``--start``/``--duration`` select (what ffmpeg's accurate seek keeps)."""
        t = self.timestamps
        if not t.size:
            return self.frames
        lo = (start or 0.0) - 1e-6
        keep = t >= lo
        if duration is not None:
            keep &= t < lo + duration
        return int(keep.sum())


# -- probing ---------------------------------------------------------------------------------------------------

_INPUT = re.compile(r"^Input #0, (?P<fmt>.+?), from ", re.M)
_DURATION = re.compile(r"Duration: (?P<d>N/A|\d+:\d+:\d+(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #0:(?P<idx>\d+)\S*: (?P<kind>Video|Audio|Subtitle|Data|Attachment): (?P<codec>\w+)")
_ROTATION = re.compile(r"rotation of (?P<deg>-?\d+(?:\.\d+)?) degrees")
_RATE = re.compile(r"frame_rate: (?P<n>\d+)/(?P<d>\d+)")
_FRAME = re.compile(r"\bn:\s*0 .*\bs:(?P<w>\d+)x(?P<h>\d+)")
_SAR = re.compile(r"\bsar:(?P<n>\d+)/(?P<d>\d+)")
_TB = re.compile(r"^#tb 0: (?P<n>\d+)/(?P<d>\d+)", re.M)
# What ffmpeg says while reading a truncated or corrupt file (the packets up to the damage are still listed).
_DAMAGE = re.compile(r"partial file|ended prematurely|packet corrupt|corrupt input packet|invalid nal unit|"
                     r"error while decoding|truncat|invalid data found when processing input", re.I)


def _parse_streams(err: str) -> tuple[str, str | None, list[str], int]:
    """(container, first real video codec, audio codecs, rotation) from ffmpeg's stream dump."""
    m = _INPUT.search(err)
    container = m.group("fmt") if m else "unknown"
    video, audio, rotation = None, [], 0
    in_video = False
    for line in err.splitlines():
        s = _STREAM.match(line)
        if s:
            in_video = False
            if s.group("kind") == "Video" and "(attached pic)" not in line and video is None:
                video, in_video = s.group("codec"), True
            elif s.group("kind") == "Audio":
                audio.append(s.group("codec"))
            continue
        r = _ROTATION.search(line)
        if r and in_video:
            rotation = int(round(float(r.group("deg")))) % 360
    return container, video, audio, rotation


def _damage(err: str) -> str | None:
    """ffmpeg's first line about damage in the file (``... partial file``), without its ``[demuxer @ 0x..]``."""
    for line in err.splitlines():
        # Only ffmpeg's own log lines ("[demuxer @ 0x..] ..."): a metadata value (a title) is indented.
        if line.startswith("[") and _DAMAGE.search(line):
            return re.sub(r"^\[[^\]]*\]\s*", "", line.strip())
    return None


def _parse_duration(err: str) -> float | None:
    m = _DURATION.search(err)
    if not m or m.group("d") == "N/A":
        return None
    h, mi, sec = m.group("d").split(":")
    return int(h) * 3600 + int(mi) * 60 + float(sec)


def _parse_packets(out: str) -> tuple[np.ndarray, Fraction, float]:
    """(sorted presentation times in seconds, time base, duration in seconds) from ``framecrc`` output."""
    m = _TB.search(out)
    tb = Fraction(int(m.group("n")), int(m.group("d"))) if m else Fraction(1, 1000)
    pts, durs = [], []
    for line in out.splitlines():
        if not line or line[0] == "#":
            continue
        parts = line.split(",")
        if len(parts) < 5:
            continue
        try:
            dts, p, d = int(parts[1]), int(parts[2]), int(parts[3])
        except ValueError:
            continue
        pts.append(p if p > -(2**62) else dts)  # AV_NOPTS_VALUE: fall back to the decoding time
        durs.append(d)
    if not pts:
        return np.zeros(0), tb, 0.0
    order = np.argsort(pts, kind="stable")
    ticks = np.asarray(pts, np.int64)[order]
    d = np.asarray(durs, np.int64)[order]
    positive = d[d > 0]
    typical = int(np.median(positive)) if positive.size else (int(np.median(np.diff(ticks))) if ticks.size > 1 else 0)
    last = int(d[-1]) if d[-1] > 0 else typical
    span = int(ticks[-1] - ticks[0]) + last
    return ticks.astype(np.float64) * float(tb), tb, float(span * tb)


def _is_vfr(times: np.ndarray, rate: Fraction) -> bool:
    if times.size < 3 or rate <= 0:
        return False
    grid = np.arange(times.size) / float(rate)
    return bool(np.max(np.abs((times - times[0]) - grid)) > _VFR_TOLERANCE / float(rate))


def probe(path: str | os.PathLike, *, ffmpeg: str | None = None) -> VideoInfo:
    """Describe a video file (one ffmpeg run; no ffprobe needed).

    Args:
        path: the video.
        ffmpeg: the ffmpeg binary (default: ``$VIDCAM_FFMPEG`` or imageio-ffmpeg's).

    Raises:
        InputError: missing, a directory, not a media file, a still image, audio only, or no frames.
        FFmpegError: the ffmpeg binary cannot be run.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a video (for a folder of frames use `vidcam frames`)")
    if not path.is_file():  # ffmpeg would wait forever on a FIFO with no writer
        raise InputError(f"{path} is not a regular file (a pipe or device?); give a video file")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path}: permission denied")
    exe = ffmpeg_exe(ffmpeg)
    try:
        done = subprocess.run(probe_args(exe, path), stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError as e:
        raise FFmpegError(f"cannot run {exe}: {e.strerror or e}") from None
    err = done.stderr.decode("utf-8", "replace")
    out = done.stdout.decode("utf-8", "replace")
    container, vcodec, acodecs, rotation = _parse_streams(err)
    if not _INPUT.search(err):
        raise InputError(f"{path} is not a video ffmpeg can read ({last_lines(err, 1) or 'unknown format'})")
    if vcodec is None:
        what = " (audio only)" if acodecs else ""
        raise InputError(f"{path} has no video stream{what}; give a video file")
    if container in _IMAGE_FORMATS or container.endswith("_pipe"):
        raise InputError(f"{path} is a still image, not a video; use `vidcam image` for images")
    times, _tb, duration = _parse_packets(out)
    frame = _FRAME.search(err)
    if not times.size or frame is None:
        if not times.size:
            raise InputError(f"{path} has no video frames; give a video with at least one frame")
        raise InputError(f"the video in {path} cannot be decoded ({last_lines(err, 1)})")
    m = _RATE.search(err)
    nominal = Fraction(int(m.group("n")), int(m.group("d"))) if m and int(m.group("d")) else Fraction(0)
    n = int(times.size)
    measured = Fraction(n) / Fraction(duration).limit_denominator(1_000_000) if duration > 0 else Fraction(25)
    vfr = nominal <= 0 or _is_vfr(times, nominal)
    # A constant-rate video keeps its exact fraction; a variable one is normalised to frames / duration, so
    # the output has every frame and the same total length.
    fps = measured.limit_denominator(10_000) if vfr else nominal
    sm = _SAR.search(err[frame.start():])
    sar = Fraction(int(sm.group("n")), int(sm.group("d"))) if sm and int(sm.group("d")) else Fraction(1)
    return VideoInfo(
        path=path, container=container, width=int(frame.group("w")), height=int(frame.group("h")),
        rotation=rotation, fps=fps, nominal_fps=nominal if nominal > 0 else fps, vfr=vfr, frames=n,
        duration=duration, video_codec=vcodec, sar=sar if sar > 0 else Fraction(1), audio_codecs=tuple(acodecs),
        container_duration=_parse_duration(err), timestamps=times, damaged=_damage(err),
    )
