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
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from vidcam.errors import FFmpegError, InputError
from vidcam.media.ffmpeg_cmd import ffmpeg_exe, probe_args
from vidcam.media.process import last_lines

__all__ = ["VideoInfo", "AudioTrack", "Colour", "prefetch", "probe"]

# A frame whose timestamp is further than this share of a frame period from the constant-rate grid makes
# the video variable-frame-rate. Container rounding (29.97 fps in a 1/1000 time base) stays well below it.
_VFR_TOLERANCE = 0.5
_IMAGE_FORMATS = ("image2", "apng")


@dataclass(frozen=True)
class AudioTrack:
    """One audio stream: codec, sample rate, channel layout, and where it starts and ends (seconds from the
    file's start; None when the container lists no packets for it)."""

    codec: str
    sample_rate: int | None = None
    channels: str | None = None
    start: float | None = None
    end: float | None = None

    def as_dict(self) -> dict:
        return {"codec": self.codec, "sample_rate": self.sample_rate, "channels": self.channels,
                "start": self.start, "end": self.end}


@dataclass(frozen=True)
class Colour:
    """The video's colour description as tagged (``None``: untagged), and what vidcam decodes it as.

    Attributes:
        matrix: YUV matrix tag (``bt709``, ``smpte170m``, ``bt2020nc``, ...).
        range: ``tv`` (limited) or ``pc`` (full).
        primaries: colour primaries tag.
        transfer: transfer characteristic tag (``smpte2084`` is HDR10/PQ, ``arib-std-b67`` is HLG).
        pix_fmt: the decoder's pixel format (``yuv420p``, ``yuv420p10le``, ...).
    """

    matrix: str | None = None
    range: str | None = None
    primaries: str | None = None
    transfer: str | None = None
    pix_fmt: str | None = None

    @property
    def hdr(self) -> str | None:
        """``PQ`` or ``HLG`` for HDR video, else None."""
        return {"smpte2084": "PQ", "arib-std-b67": "HLG"}.get(self.transfer or "")

    def decode_matrix(self, width: int, height: int) -> str:
        """The matrix a player uses: the tag, else BT.709 for HD sizes and BT.601 for SD (what players assume)."""
        if self.matrix:
            return self.matrix
        return "bt709" if width >= 1280 or height > 576 else "smpte170m"

    def as_dict(self, width: int, height: int) -> dict:
        return {"matrix": self.matrix, "range": self.range, "primaries": self.primaries, "transfer": self.transfer,
                "pix_fmt": self.pix_fmt, "hdr": self.hdr, "decoded_as": self.decode_matrix(width, height)}


@dataclass(frozen=True)
class VideoInfo:
    """What vidcam needs to know about a video file.

    Times are seconds from the file's start (the earliest stream's start, ffmpeg's reference), so a picture
    that starts after the sound has ``start > 0``.

    Attributes:
        path: the file.
        container: ffmpeg's demuxer name(s), e.g. ``mov,mp4,m4a,3gp,3g2,mj2``.
        width: displayed width: after rotation metadata is applied (a portrait phone video is portrait).
        height: displayed height.
        rotation: the rotation metadata in degrees (0 when none); frames are decoded upright anyway.
        fps: the rate as an exact fraction: the source's (``30000/1001``) for a constant-rate video, the
            average (frames / duration) for a variable one. Informational: every frame keeps its own time.
        nominal_fps: ffmpeg's idea of the source's rate (its ``r_frame_rate`` guess).
        vfr: True when frame intervals inside the video differ from one constant rate (a first or last
            interval that does not fit, as after a cut, does not count).
        frames: the number of video frames (counted from the packets, so it is exact for ordinary files).
        duration: seconds from the first frame's start to the last frame's end.
        video_codec: e.g. ``h264``.
        sar: sample (pixel) aspect ratio; 1 for square pixels.
        audio: one :class:`AudioTrack` per audio stream (empty: silent).
        container_duration: the whole file's duration (its longest stream), None when ffmpeg gives none.
        timestamps: every frame's presentation time in seconds from the file's start, sorted.
        time_base: the video stream's time base (timestamps are exact multiples of it).
        colour: the colour tags (:class:`Colour`).
        interlaced: the stream is flagged interlaced (vidcam deinterlaces it).
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
    audio: tuple[AudioTrack, ...] = ()
    container_duration: float | None = None
    timestamps: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    time_base: Fraction = Fraction(1, 1000)
    colour: Colour = field(default_factory=Colour)
    interlaced: bool = False
    damaged: str | None = None

    @property
    def audio_codecs(self) -> tuple[str, ...]:
        return tuple(a.codec for a in self.audio)

    @property
    def has_audio(self) -> bool:
        return bool(self.audio)

    @property
    def start(self) -> float:
        """When the picture starts, in seconds from the file's start."""
        return float(self.timestamps[0]) if self.timestamps.size else 0.0

    @property
    def end(self) -> float:
        """Where the video ends, in seconds from the file's start."""
        return self.start + self.duration

    @property
    def audio_end(self) -> float | None:
        """Where the last audio track ends, in seconds from the file's start (None: silent or unknown)."""
        ends = [a.end for a in self.audio if a.end is not None]
        return max(ends) if ends else None

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

    def as_dict(self) -> dict:
        """What ``vidcam info --json`` prints."""
        return {
            "path": str(self.path), "container": self.container, "video_codec": self.video_codec,
            "width": self.width, "height": self.height, "rotation": self.rotation,
            "sar": f"{self.sar.numerator}/{self.sar.denominator}",
            "fps": f"{self.fps.numerator}/{self.fps.denominator}", "vfr": self.vfr, "frames": self.frames,
            "start": round(self.start, 6), "duration": round(self.duration, 6),
            "time_base": f"{self.time_base.numerator}/{self.time_base.denominator}",
            "interlaced": self.interlaced, "colour": self.colour.as_dict(self.width, self.height),
            "audio": [a.as_dict() for a in self.audio], "container_duration": self.container_duration,
            "damaged": self.damaged,
        }


# -- probing ---------------------------------------------------------------------------------------------------

_INPUT = re.compile(r"^Input #0, (?P<fmt>.+?), from ", re.M)
_DURATION = re.compile(r"Duration: (?P<d>N/A|\d+:\d+:\d+(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #0:(?P<idx>\d+)\S*: (?P<kind>Video|Audio|Subtitle|Data|Attachment): (?P<codec>\w+)")
_ROTATION = re.compile(r"rotation of (?P<deg>-?\d+(?:\.\d+)?) degrees")
_RATE = re.compile(r"frame_rate: (?P<n>\d+)/(?P<d>\d+)")
_FRAME = re.compile(r"\bn:\s*0 .*\bs:(?P<w>\d+)x(?P<h>\d+)")
_SAR = re.compile(r"\bsar:(?P<n>\d+)/(?P<d>\d+)")
_TB = re.compile(r"^#tb (?P<s>\d+): (?P<n>\d+)/(?P<d>\d+)", re.M)
# What ffmpeg says while reading a truncated or corrupt file (the packets up to the damage are still listed).
_DAMAGE = re.compile(r"partial file|ended prematurely|packet corrupt|corrupt input packet|invalid nal unit|"
                     r"error while decoding|truncat|invalid data found when processing input", re.I)


def _split_top(text: str) -> list[str]:
    """Split ffmpeg's ``a, b(c, d), e`` stream description at the commas outside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def _parse_colour(pix: str) -> tuple[Colour, bool]:
    """(colour tags, interlaced) from the pixel-format token, e.g. ``yuv420p10le(tv, bt2020nc/bt2020/smpte2084)``."""
    m = re.match(r"(?P<fmt>\w+)(?:\((?P<desc>.*)\))?$", pix)
    if not m:
        return Colour(), False
    tags = dict(matrix=None, range=None, primaries=None, transfer=None)
    interlaced = False
    for token in _split_top(m.group("desc") or ""):
        if token in ("tv", "pc"):
            tags["range"] = token
        elif "first" in token:
            interlaced = True
        elif token and token != "progressive" and re.fullmatch(r"[\w-]+(/[\w-]+/[\w-]+)?", token):
            names = token.split("/") if "/" in token else [token] * 3
            for key, name in zip(("matrix", "primaries", "transfer"), names):
                tags[key] = None if name in ("unknown", "reserved") else name
    return Colour(pix_fmt=m.group("fmt"), **tags), interlaced


def _parse_audio(desc: str) -> AudioTrack:
    parts = _split_top(desc)
    rate = next((int(p.split()[0]) for p in parts[1:] if re.fullmatch(r"\d+ Hz", p)), None)
    layout = parts[2] if len(parts) > 2 and not parts[2].endswith("Hz") else None
    return AudioTrack(codec=parts[0].split()[0], sample_rate=rate, channels=layout)


def _parse_streams(err: str) -> tuple[str, str | None, list[AudioTrack], int, Colour, bool]:
    """(container, first real video codec, audio tracks, rotation, colour, interlaced) from ffmpeg's stream dump."""
    m = _INPUT.search(err)
    container = m.group("fmt") if m else "unknown"
    video, audio, rotation, colour, interlaced = None, [], 0, Colour(), False
    in_video = False
    dump = re.split(r"^(?:Output #|Stream mapping:)", err, maxsplit=1, flags=re.M)[0]  # the input's streams only
    for line in dump.splitlines():
        s = _STREAM.match(line)
        if s:
            in_video = False
            desc = line.split(f"{s.group('kind')}: ", 1)[1]
            desc = re.sub(r"\s*\((default|forced|attached pic|dub|original|comment|lyrics|karaoke)\)", "", desc)
            if s.group("kind") == "Video" and "(attached pic)" not in line and video is None:
                video, in_video = s.group("codec"), True
                parts = _split_top(desc)
                if len(parts) > 1:
                    colour, interlaced = _parse_colour(parts[1])
            elif s.group("kind") == "Audio":
                audio.append(_parse_audio(desc))
            continue
        r = _ROTATION.search(line)
        if r and in_video:
            rotation = int(round(float(r.group("deg")))) % 360
    return container, video, audio, rotation, colour, interlaced


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


def _parse_packets(out: str) -> dict[int, tuple[np.ndarray, np.ndarray, Fraction]]:
    """Per output stream of ``framecrc``: (presentation ticks sorted, their durations, time base)."""
    tbs = {int(m.group("s")): Fraction(int(m.group("n")), int(m.group("d"))) for m in _TB.finditer(out)}
    rows: dict[int, list[tuple[int, int]]] = {}
    latest: dict[int, int] = {}
    for line in out.splitlines():
        if not line or line[0] == "#":
            continue
        parts = line.split(",")
        if len(parts) < 5:
            continue
        try:
            idx, dts, pts, d = int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])
        except ValueError:
            continue
        if pts < -(2**62):  # AV_NOPTS_VALUE (an MPEG-PS's last packet): shown after every frame decoded so far
            pts = latest[idx] + max(d, 1) if idx in latest else dts
        latest[idx] = max(latest.get(idx, pts), pts)
        rows.setdefault(idx, []).append((pts, d))
    streams = {}
    for idx, pairs in rows.items():
        pairs.sort(key=lambda r: r[0])
        ticks = np.asarray([r[0] for r in pairs], np.int64)
        durs = np.asarray([r[1] for r in pairs], np.int64)
        streams[idx] = (ticks, durs, tbs.get(idx, Fraction(1, 1000)))
    return streams


def _span(ticks: np.ndarray, durs: np.ndarray) -> int:
    """Ticks from the first packet's start to the last one's end (a missing last duration: the typical one)."""
    positive = durs[durs > 0]
    typical = int(np.median(positive)) if positive.size else (int(np.median(np.diff(ticks))) if ticks.size > 1 else 0)
    last = int(durs[-1]) if durs[-1] > 0 else typical
    return int(ticks[-1] - ticks[0]) + last


def _is_vfr(times: np.ndarray, rate: Fraction) -> bool:
    """Intervals inside the video (not the first or last: a cut leaves those uneven) off the constant rate."""
    if rate <= 0:
        return True
    inner = np.diff(times)[1:-1]
    return bool(inner.size and np.max(np.abs(inner - 1 / float(rate))) > _VFR_TOLERANCE / float(rate))


def _audio_times(tracks: list[AudioTrack], streams: dict) -> tuple[AudioTrack, ...]:
    out = []
    for i, track in enumerate(tracks, 1):  # framecrc stream 0 is the video, then the audio streams in order
        if i in streams and streams[i][0].size:
            ticks, durs, tb = streams[i]
            start = float(ticks[0] * tb)
            end = start + float(_span(ticks, durs) * tb)
            track = AudioTrack(track.codec, track.sample_rate, track.channels, start, end)
        out.append(track)
    return tuple(out)


_prefetched: dict[tuple, Future] = {}


def _prefetch_key(path: str | os.PathLike, exe: str) -> tuple:
    st = os.stat(path)
    return os.path.realpath(path), exe, st.st_size, st.st_mtime_ns


def prefetch(path: str | os.PathLike, *, ffmpeg: str | None = None) -> None:
    """Start :func:`probe` of ``path`` in a background thread: its ffmpeg run overlaps whatever the caller does
    next (the CLI imports TensorFlow meanwhile). The next ``probe`` of the same unchanged file with the same
    ffmpeg takes its result, or raises its error; anything that stops the prefetch leaves ``probe`` to do it."""
    try:
        exe = ffmpeg_exe(ffmpeg)
        key = _prefetch_key(path, exe)
    except (OSError, FFmpegError):
        return
    future: Future = Future()

    def work() -> None:
        try:
            future.set_result(_probe(path, exe))
        except BaseException as e:  # noqa: BLE001 - handed to the caller of probe()
            future.set_exception(e)

    _prefetched[key] = future
    threading.Thread(target=work, name="vidcam-probe", daemon=True).start()


def probe(path: str | os.PathLike, *, ffmpeg: str | None = None) -> VideoInfo:
    """Describe a video file (one ffmpeg run; no ffprobe needed).

    Args:
        path: the video.
        ffmpeg: the ffmpeg binary (default: ``$VIDCAM_FFMPEG`` or imageio-ffmpeg's).

    Raises:
        InputError: missing, a directory, not a media file, a still image, audio only, or no frames.
        FFmpegError: the ffmpeg binary cannot be run.
    """
    if _prefetched:
        try:
            future = _prefetched.pop(_prefetch_key(path, ffmpeg_exe(ffmpeg)), None)
        except (OSError, FFmpegError):
            future = None
        if future is not None:
            return future.result()
    return _probe(path, ffmpeg)


def _probe(path: str | os.PathLike, ffmpeg: str | None) -> VideoInfo:
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
    container, vcodec, audio, rotation, colour, interlaced = _parse_streams(err)
    if not _INPUT.search(err):
        raise InputError(f"{path} is not a video ffmpeg can read ({last_lines(err, 1) or 'unknown format'})")
    if vcodec is None:
        what = " (audio only)" if audio else ""
        raise InputError(f"{path} has no video stream{what}; give a video file")
    if container in _IMAGE_FORMATS or container.endswith("_pipe"):
        raise InputError(f"{path} is a still image, not a video; use `vidcam image` for images")
    streams = _parse_packets(out)
    ticks, durs, tb = streams.get(0, (np.zeros(0, np.int64), np.zeros(0, np.int64), Fraction(1, 1000)))
    frame = _FRAME.search(err)
    if not ticks.size or frame is None:
        if not ticks.size:
            raise InputError(f"{path} has no video frames; give a video with at least one frame")
        raise InputError(f"the video in {path} cannot be decoded ({last_lines(err, 1)})")
    times = ticks.astype(np.float64) * float(tb)
    duration = float(_span(ticks, durs) * tb)
    m = _RATE.search(err)
    nominal = Fraction(int(m.group("n")), int(m.group("d"))) if m and int(m.group("d")) else Fraction(0)
    n = int(times.size)
    measured = Fraction(n) / Fraction(duration).limit_denominator(1_000_000) if duration > 0 else Fraction(25)
    vfr = _is_vfr(times, nominal)
    fps = measured.limit_denominator(10_000) if vfr else nominal
    sm = _SAR.search(err[frame.start():])
    sar = Fraction(int(sm.group("n")), int(sm.group("d"))) if sm and int(sm.group("d")) else Fraction(1)
    return VideoInfo(
        path=path, container=container, width=int(frame.group("w")), height=int(frame.group("h")),
        rotation=rotation, fps=fps, nominal_fps=nominal if nominal > 0 else fps, vfr=vfr, frames=n,
        duration=duration, video_codec=vcodec, sar=sar if sar > 0 else Fraction(1), audio=_audio_times(audio, streams),
        container_duration=_parse_duration(err), timestamps=times, time_base=tb, colour=colour,
        interlaced=interlaced, damaged=_damage(err),
    )
