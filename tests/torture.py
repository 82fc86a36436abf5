"""Torture clips (problem inputs: VFR phone video, frozen screen recordings, jitter, MediaRecorder WebM, uneven GIFs,
stream-copy cuts, offset streams, MPEG-TS cut mid-GOP, AVIs full of repeated-frame chunks, HDR, untagged HD, odd audio)
and an independent checker for what a video tool made of them.

Every frame carries a **barcode** in a strip at the bottom of the picture: 3 rows of 10 bit *pairs* (20 blocks a row,
each block 1/20 of the width and 1/15 of the height, so 8x8 px at 160x120); a pair is (white, black) for 1 and
(black, white) for 0. A bit is read by comparing the two neighbouring blocks, never against a fixed grey, so a smooth
overlay (vidcam blends a heatmap at alpha 0.4) cannot flip it; a pair with too little contrast (a blend of two frames, a
damaged frame) makes the frame unreadable (None). The 30 bits are the frame's index (13 bits) and its intended
presentation time in ms (17 bits). The geometry is proportional, so the barcode survives scaling.

The audio carries **identifiable beeps**: 30 ms tone bursts, beep k at ``500 + 250 * (k % 12)`` Hz, placed at the
presentation time of a frame (every ~0.5 s), so A/V sync is measured per beep without mixing beeps up.

Frames are made with numpy and piped as raw RGB into Debian's ``/usr/bin/ffmpeg`` on a constant grid of ``rate`` slots
a second; a frame that is held is sent again as identical bytes, and ``mpdecimate`` (thresholds 0) drops exact
repeats, so each distinct frame keeps the exact grid time it was meant to have (``-fps_mode passthrough``).

The checker uses only ``/usr/bin/ffprobe`` and ``/usr/bin/ffmpeg`` (``apt-get install ffmpeg``), never vidcam's code.
"""

from __future__ import annotations

import json
import subprocess
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from pathlib import Path

import numpy as np

FFMPEG = "/usr/bin/ffmpeg"
FFPROBE = "/usr/bin/ffprobe"

KINDS = (
    "vfr_phone", "screen_freeze", "jitter", "webm_mediarecorder", "gif_uneven", "cut_copy", "video_offset", "ts_midgop",
    "avi_repeats", "hdr10", "hlg", "untagged_hd", "multi_audio_8k", "one_frame_long_audio", "cfr25", "cfr2997",
)
COLOUR_KINDS = ("hdr10", "hlg", "untagged_hd")

# The reference SDR rendering of the HDR clips (Debian ffmpeg, zimg): linear light with 100 nits as 1.0, BT.709
# primaries, tone mapping by clipping (the picture is SDR content mastered at 100 nits, so this is its SDR master),
# BT.709 transfer and matrix, limited range. (With tonemap=hable instead, 235 white comes out at 148.)
HDR_TO_SDR = ("zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=clip:desat=0,"
              "zscale=t=bt709:m=bt709:r=tv,format=yuv420p")

SR = 48000  # audio sample rate of the generated tracks (and of the checker's decode)
BEEP_S = 0.030
BEEP_AMP = 0.5
BEEP_EVERY = 0.5
_ROWS, _COLS = 3, 20
_IDX_BITS, _MS_BITS = 13, 17
_CONTRAST = 30  # least luma difference between the two blocks of a pair


def have_tools() -> bool:
    return Path(FFMPEG).exists() and Path(FFPROBE).exists()


def beep_freq(k: int) -> float:
    return 500.0 + 250.0 * (k % 12)


# -- ground truth ------------------------------------------------------------------------------------------------


@dataclass
class Clip:
    """A generated clip and what is in it.

    Attributes:
        kind: one of :data:`KINDS`.
        path: the file.
        frames: (barcode index, pts in seconds as ffprobe reports it) of every frame a decoder shows, in order.
        beeps: beep k's source time in seconds, same timeline as ``frames`` (None: that beep is not in the file).
        start: the file's start time (ffprobe ``format=start_time``); "seconds from the file start" = pts - start.
        duration: the file's duration (ffprobe ``format=duration``).
        frame_s: one source frame, seconds (the nominal rate's period; the longest ordinary interval for VFR).
        audio: has an audio track.
        patches: colour clips: (x0, y0, x1, y1) boxes (fractions of the frame) and their reference RGB.
        note: what is approximate about this clip.
    """

    kind: str
    path: Path
    frames: list[tuple[int, float]]
    beeps: list[float | None]
    start: float
    duration: float
    frame_s: float
    audio: bool = True
    patches: list[tuple[tuple[float, float, float, float], tuple[float, float, float]]] = field(default_factory=list)
    note: str = ""

    @property
    def pts(self) -> dict[int, float]:
        return dict(self.frames)

    def shown_at(self, t: float) -> tuple[int, float]:
        """(index, pts) of the frame on screen at source time ``t``."""
        best = self.frames[0]
        for idx, p in self.frames:
            if p <= t + 1e-6:
                best = (idx, p)
        return best

    def to_json(self) -> str:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
        return json.dumps(d)


# -- pictures ----------------------------------------------------------------------------------------------------


def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Block edges: x edges (COLS+1) and y edges (ROWS+1) of the barcode strip at the bottom."""
    bh = h / 15.0
    xs = np.round(np.arange(_COLS + 1) * w / _COLS).astype(int)
    ys = np.round(h - bh * (_ROWS - np.arange(_ROWS + 1))).astype(int)
    return xs, ys


def _bits(index: int, ms: int) -> list[int]:
    v = (index % (1 << _IDX_BITS)) | ((ms % (1 << _MS_BITS)) << _IDX_BITS)
    return [(v >> b) & 1 for b in range(_ROWS * _COLS // 2)]


def draw_barcode(img: np.ndarray, index: int, ms: int, lo: int = 0, hi: int = 255) -> np.ndarray:
    h, w = img.shape[:2]
    xs, ys = _grid(w, h)
    bits = _bits(index, ms)
    for r in range(_ROWS):
        for p in range(_COLS // 2):
            bit = bits[r * (_COLS // 2) + p]
            a, b = (hi, lo) if bit else (lo, hi)
            img[ys[r]:ys[r + 1], xs[2 * p]:xs[2 * p + 1]] = a
            img[ys[r]:ys[r + 1], xs[2 * p + 1]:xs[2 * p + 2]] = b
    return img


def read_barcode(luma: np.ndarray) -> tuple[int, int] | None:
    """(index, ms) from a frame's luma (any size: the geometry is proportional), None when unreadable."""
    h, w = luma.shape[:2]
    xs, ys = _grid(w, h)
    means = np.empty((_ROWS, _COLS))
    for r in range(_ROWS):
        y0, y1 = ys[r], ys[r + 1]
        my = max(1, (y1 - y0) // 4)
        for c in range(_COLS):
            x0, x1 = xs[c], xs[c + 1]
            mx = max(1, (x1 - x0) // 4)
            means[r, c] = luma[y0 + my:y1 - my, x0 + mx:x1 - mx].mean()
    d = (means[:, 0::2] - means[:, 1::2]).ravel()
    if np.min(np.abs(d)) < _CONTRAST:
        return None
    v = sum(1 << i for i, x in enumerate(d) if x > 0)
    return v & ((1 << _IDX_BITS) - 1), v >> _IDX_BITS


def picture(index: int, ms: int, w: int, h: int) -> np.ndarray:
    """A gradient background with a moving square, barcoded."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (40 + 150 * x / max(1, w - 1)).astype(np.uint8)
    img[..., 1] = (60 + 120 * y / max(1, h - 1)).astype(np.uint8)
    img[..., 2] = 110
    s = max(4, h // 6)
    cx = int((index * 7) % max(1, w - s))
    cy = int((index * 3) % max(1, int(h * 0.7) - s))
    img[cy:cy + s, cx:cx + s] = (230, 200, 40)
    return draw_barcode(img, index, ms)


# Colour test picture: a grey ramp and saturated/skin/sky patches on mid grey (values in BT.709 R'G'B').
_PATCH_RGB = [
    (235, 235, 235), (180, 180, 180), (128, 128, 128), (64, 64, 64), (16, 16, 16),
    (200, 30, 30), (30, 180, 40), (40, 60, 200), (220, 200, 40), (200, 150, 120), (90, 150, 210), (160, 50, 160),
]


def _patch_boxes() -> list[tuple[float, float, float, float]]:
    """Two rows of six boxes in the middle of the picture (clear of the top-left label and the bottom barcode)."""
    boxes = []
    for i in range(len(_PATCH_RGB)):
        r, c = divmod(i, 6)
        x0 = 0.04 + c * 0.16
        y0 = 0.30 + r * 0.25
        boxes.append((x0, y0, x0 + 0.14, y0 + 0.21))
    return boxes


def colour_picture(index: int, ms: int, w: int, h: int, barcode: bool = True) -> np.ndarray:
    img = np.full((h, w, 3), 100, np.uint8)
    for (x0, y0, x1, y1), rgb in zip(_patch_boxes(), _PATCH_RGB):
        img[round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)] = rgb
    return draw_barcode(img, index, ms) if barcode else img


# -- encoding ----------------------------------------------------------------------------------------------------


def run(*args, timeout: float = 180, stdin=None, capture: bool = False) -> subprocess.CompletedProcess:
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    if stdin is not None:
        cmd.remove("-nostdin")
    return subprocess.run(cmd, input=stdin, capture_output=True, check=True, timeout=timeout)


def _schedule_frames(ticks: list[int], slots: int, w: int, h: int, rate: Fraction, draw=picture) -> bytes:
    """Raw RGB for ``slots`` grid slots; frame i (drawn once) fills the slots from ``ticks[i]`` to the next."""
    out = bytearray()
    cur = None
    nxt = 0
    for s in range(slots):
        while nxt < len(ticks) and ticks[nxt] <= s:
            ms = int(round(float(Fraction(ticks[nxt]) / rate) * 1000))
            cur = draw(nxt, ms, w, h).tobytes()
            nxt += 1
        out += cur
    return bytes(out)


def write_wav(path: Path, seconds: float, beeps: list[float], rate: int = SR) -> Path:
    n = int(round(seconds * rate))
    x = np.zeros(n, np.float64)
    m = int(round(BEEP_S * rate))
    t = np.arange(m) / rate
    ramp = np.minimum(1.0, np.minimum(t, BEEP_S - t) / 0.001)
    for k, b in enumerate(beeps):
        i = int(round(b * rate))
        if i < 0 or i + m > n:
            continue
        x[i:i + m] += BEEP_AMP * ramp * np.sin(2 * np.pi * beep_freq(k) * t)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((x * 32767).astype("<i2").tobytes())
    return path


def _beeps_on_frames(times: list[float], end: float, first: float = 0.25) -> list[float]:
    """A beep every BEEP_EVERY s, each at the presentation time of the first frame at or after the nominal time."""
    out, t = [], first
    while t < end - 0.1:
        later = [p for p in times if p >= t - 1e-9]
        if not later:
            break
        p = later[0]
        if p < end - 0.05 and (not out or p > out[-1] + 0.2):
            out.append(p)
        t += BEEP_EVERY
    return out


def encode(path: Path, ticks: list[int], slots: int, rate: Fraction, *, size=(160, 120), wav=None,
           vcodec=("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
           acodec=("-c:a", "aac", "-b:a", "128k"), vf: str = "", draw=picture, fmt: tuple = (),
           extra: tuple = (), stdout: bool = False) -> bytes:
    """Pipe the schedule through mpdecimate into ``path`` (or to stdout when ``stdout``: returns the bytes)."""
    w, h = size
    raw = _schedule_frames(ticks, slots, w, h, rate, draw)
    repeats = slots > len(ticks)
    # mpdecimate only when a frame is held (it takes YUV, so it would put a BT.601 conversion before ``vf``)
    chain = ",".join(x for x in ("mpdecimate=hi=0:lo=0:frac=0" if repeats else "", vf) if x) or "null"
    args: list = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(rate), "-i", "pipe:0"]
    wavs = [] if wav is None else [wav] if isinstance(wav, Path) else list(wav)
    for x in wavs:
        args += ["-i", x]
    args += ["-map", "0:v"]
    for n in range(len(wavs)):
        args += ["-map", f"{n + 1}:a"]
    args += ["-vf", chain, "-fps_mode", "passthrough", *vcodec]
    if wavs:
        args += list(acodec)
    args += [*extra, *fmt, "pipe:1" if stdout else path]
    done = run(*args, stdin=raw)
    return done.stdout


# -- ffprobe / decoding (the checker) ----------------------------------------------------------------------------


def ffprobe(path: Path, *args: str) -> dict:
    out = subprocess.run([FFPROBE, "-v", "error", "-of", "json", *args, str(path)], capture_output=True, check=True,
                         timeout=120).stdout
    return json.loads(out)


def streams(path: Path) -> list[dict]:
    return ffprobe(path, "-show_streams")["streams"]


def fmt_info(path: Path) -> dict:
    return ffprobe(path, "-show_format")["format"]


def start_time(path: Path) -> float:
    return float(fmt_info(path).get("start_time", 0.0))


def file_duration(path: Path) -> float | None:
    d = fmt_info(path).get("duration")
    return float(d) if d not in (None, "N/A") else None


def packet_span(path: Path) -> float:
    """Seconds from the earliest packet's pts to the latest packet's end, over all streams (for files whose header
    has no duration, like a MediaRecorder WebM)."""
    pk = ffprobe(path, "-show_entries", "packet=pts_time,dts_time,duration_time")["packets"]
    lo, hi = float("inf"), float("-inf")
    for p in pk:
        t = p.get("pts_time", p.get("dts_time"))
        if t in (None, "N/A"):
            continue
        t = float(t)
        dur = p.get("duration_time")
        lo, hi = min(lo, t), max(hi, t + (float(dur) if dur not in (None, "N/A") else 0.0))
    return hi - lo if hi > lo else float("nan")


def duration_of(path: Path) -> float:
    """The header's duration, else the packets' span."""
    d = file_duration(path)
    return d if d is not None else packet_span(path)


def frame_times(path: Path) -> list[float]:
    """Every decoded video frame's pts (best effort timestamp) in seconds, in output order."""
    frames = ffprobe(path, "-select_streams", "v:0", "-show_entries",
                     "frame=pts_time,best_effort_timestamp_time,pkt_dts_time")["frames"]
    out = []
    for f in frames:
        t = f.get("pts_time", f.get("best_effort_timestamp_time", f.get("pkt_dts_time")))
        out.append(float(t) if t not in (None, "N/A") else float("nan"))
    return out


def _video_size(path: Path) -> tuple[int, int]:
    v = [s for s in streams(path) if s["codec_type"] == "video"][0]
    return int(v["width"]), int(v["height"])


def decode_luma(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """(n, h, w) uint8 luma of every decoded frame (scaled to the first frame's size when the size changes)."""
    w, h = size or _video_size(path)
    raw = run("-i", path, "-map", "0:v:0", "-vf", f"scale={w}:{h}:flags=area", "-fps_mode", "passthrough",
              "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1").stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w)


def barcodes(path: Path, size: tuple[int, int] | None = None, crop_left_half: bool = False) -> list:
    """Each decoded frame's (index, ms) or None."""
    luma = decode_luma(path, size)
    if crop_left_half:
        luma = luma[:, :, : luma.shape[2] // 2]
    return [read_barcode(f) for f in luma]


def decoded(path: Path, crop_left_half: bool = False) -> list[tuple[float, tuple[int, int] | None]]:
    """(pts, barcode) of every output frame, in output order."""
    times = frame_times(path)
    codes = barcodes(path, crop_left_half=crop_left_half)
    if len(times) != len(codes):
        raise AssertionError(f"ffprobe shows {len(times)} frames, ffmpeg decodes {len(codes)}")
    return list(zip(times, codes))


def audio_pcm(path: Path, stream: int = 0) -> np.ndarray:
    """Mono float PCM at SR of audio stream ``stream``; sample n is at absolute time n / SR (padded/trimmed to 0)."""
    raw = run("-copyts", "-i", path, "-map", f"0:a:{stream}", "-af", "aresample=async=1:first_pts=0",
              "-ac", "1", "-ar", str(SR), "-f", "f32le", "pipe:1").stdout
    return np.frombuffer(raw, "<f4").astype(np.float64)


def beep_onsets(pcm: np.ndarray, rate: int = SR) -> list[tuple[float, int]]:
    """(onset seconds, beep id k % 12) of every tone burst in ``pcm``."""
    if pcm.size == 0:
        return []
    win = max(1, rate // 1000)
    env = np.abs(pcm)
    # running max over 1 ms
    pad = np.concatenate([env, np.zeros(win)])
    run_max = np.max(np.lib.stride_tricks.sliding_window_view(pad, win)[: env.size], axis=1)
    thr = 0.3 * BEEP_AMP
    above = run_max > thr
    out = []
    i, n = 0, above.size
    gap = int(0.08 * rate)
    while i < n:
        if above[i]:
            onset = i
            seg = pcm[onset + int(0.002 * rate): onset + int((BEEP_S - 0.002) * rate)]
            k = -1
            if seg.size > 32:
                spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size), 8 * seg.size))
                f = np.argmax(spec) * rate / (8 * seg.size)
                k = int(round((f - 500.0) / 250.0))
            out.append((onset / rate, k))
            i = onset + gap
        else:
            i += 1
    return out


def stream_starts(path: Path) -> dict[str, float | None]:
    """codec_type:index -> start_time."""
    out = {}
    for s in streams(path):
        st = s.get("start_time")
        out[f"{s['codec_type']}:{s['index']}"] = float(st) if st not in (None, "N/A") else None
    return out


def stream_durations(path: Path) -> dict[str, float | None]:
    out = {}
    for s in streams(path):
        d = s.get("duration")
        out[f"{s['codec_type']}:{s['index']}"] = float(d) if d not in (None, "N/A") else None
    return out


# -- criteria ----------------------------------------------------------------------------------------------------


def frames_in_order_once(out: Path | list, truth: Clip, expected: list[int] | None = None) -> tuple[bool, str]:
    """Every (expected) source frame shown exactly once, in order, nothing else. (ok, explanation)."""
    dec = decoded(out) if isinstance(out, Path) else out
    got = [c[0] if c else None for _, c in dec]
    want = expected if expected is not None else [i for i, _ in truth.frames]
    if got == want:
        return True, f"{len(got)} frames, all once in order"
    unreadable = sum(1 for g in got if g is None)
    seen = [g for g in got if g is not None]
    dups = len(seen) - len(set(seen))
    missing = sorted(set(want) - set(seen))
    backwards = sum(1 for a, b in zip(seen, seen[1:]) if b < a)
    return False, (f"{len(got)} output frames for {len(want)} source frames: {dups} repeats, {len(missing)} missing "
                   f"{missing[:8]}, {unreadable} unreadable, {backwards} backwards steps")


def _first_shown(dec) -> dict[int, float]:
    first: dict[int, float] = {}
    for t, c in dec:
        if c is not None and c[0] not in first:
            first[c[0]] = t
    return first


def av_offsets(out: Path, truth: Clip, dec=None, *, window: tuple[float, float] | None = None) -> list[float | None]:
    """Per source beep: output beep time minus the output time at which the picture is at the beep's source time
    (the display time of the frame on screen at the beep's source time plus how far into that frame the beep is).
    Positive: the sound is late. None: the beep or its frame is missing from the output. ``window``: only the beeps
    whose source time (same timeline as ``truth.frames``) is within [lo, hi - 0.05] (a ``--start``/``--duration``)."""
    dec = decoded(out) if dec is None else dec
    first = _first_shown(dec)
    onsets = beep_onsets(audio_pcm(out)) if any(s["codec_type"] == "audio" for s in streams(out)) else []
    res: list[float | None] = []
    for k, b in enumerate(truth.beeps):
        if b is None or (window is not None and not window[0] <= b <= window[1] - 0.05):
            continue
        j, pj = truth.shown_at(b)
        if j not in first:
            res.append(None)
            continue
        expect = first[j] + (b - pj)
        cands = [t for t, kk in onsets if kk == k % 12 and abs(t - expect) < 2.5]
        res.append(min(cands, key=lambda t: abs(t - expect)) - expect if cands else None)
    return res


def duration_error(out: Path, truth: Clip, expected: float | None = None) -> float:
    """Output file duration minus the source's (or ``expected``)."""
    return duration_of(out) - (truth.duration if expected is None else expected)


def read_labels(path: Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            obj = json.loads(line)
            if "frame" in obj:
                rows.append(obj)
    return rows


def label_time_errors(labels_jsonl: Path, truth: Clip, out: Path | list | None = None, start: float = 0.0
                      ) -> list[float | None]:
    """Per label row: its ``time`` minus the shown source frame's presentation time from the file start, minus
    ``start``. The source frame of output frame i comes from its barcode (``out``), else is truth frame i."""
    rows = read_labels(labels_jsonl)
    if out is not None:
        dec = decoded(out) if isinstance(out, Path) else out
        src = [c[0] if c else None for _, c in dec]
    else:
        src = [i for i, _ in truth.frames]
    pts = truth.pts
    errs: list[float | None] = []
    for r in rows:
        i = int(r["frame"])
        j = src[i] if i < len(src) else None
        errs.append(None if j is None or j not in pts else float(r["time"]) - (pts[j] - truth.start - start))
    return errs


def patch_means(rgb: np.ndarray, boxes) -> list[np.ndarray]:
    h, w = rgb.shape[:2]
    out = []
    for x0, y0, x1, y1 in boxes:
        ya, yb, xa, xb = round(y0 * h), round(y1 * h), round(x0 * w), round(x1 * w)
        my, mx = (yb - ya) // 4, (xb - xa) // 4
        out.append(rgb[ya + my:yb - my, xa + mx:xb - mx].reshape(-1, 3).astype(np.float64).mean(axis=0))
    return out


def first_frame_rgb(path: Path, *, vf: str = "", in_matrix: str | None = None, index: int = 0) -> np.ndarray:
    """Decoded RGB of frame ``index`` (BT.709 matrix unless the file says otherwise; ``in_matrix`` forces one),
    converted with accurate rounding (swscale's fast default alone is off by up to 2 levels on saturated colours)."""
    w, h = _video_size(path)
    flags = "flags=accurate_rnd+full_chroma_int"
    chain = vf or (f"scale=in_color_matrix={in_matrix}:out_range=full:{flags}" if in_matrix
                   else f"scale=out_range=full:{flags}")
    raw = run("-i", path, "-map", "0:v:0", "-vf", f"select=eq(n\\,{index}),{chain}", "-frames:v", "1",
              "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1").stdout
    return np.frombuffer(raw, np.uint8).reshape(h, w, 3)


_MATRIX = {"bt709": "bt709", "smpte170m": "bt601", "bt470bg": "bt601", "fcc": "fcc", "smpte240m": "smpte240m",
           "bt2020nc": "bt2020", "bt2020c": "bt2020"}


def display_matrix(path: Path) -> str:
    """The YUV matrix a player uses: the tagged one, else BT.709 for HD (720 lines or more) and BT.601 below."""
    v = [s for s in streams(path) if s["codec_type"] == "video"][0]
    tag = v.get("color_space", "unknown")
    if tag in _MATRIX:
        return _MATRIX[tag]
    return "bt709" if int(v["height"]) >= 720 else "bt601"


def colour_errors(out: Path, truth: Clip, *, left_half: bool = False, index: int = 0) -> float:
    """Largest per-channel difference (levels) between the output's patch means (decoded with the matrix it is
    tagged with, see :func:`display_matrix`) and the reference."""
    rgb = first_frame_rgb(out, in_matrix=display_matrix(out), index=index)
    if left_half:
        rgb = rgb[:, : rgb.shape[1] // 2]
    got = patch_means(rgb, [b for b, _ in truth.patches])
    return float(max(np.max(np.abs(g - np.asarray(ref))) for g, (_, ref) in zip(got, truth.patches)))


# -- the clips ---------------------------------------------------------------------------------------------------


def _ticks_from_intervals(intervals: list[int]) -> list[int]:
    ticks = [0]
    for d in intervals[:-1]:
        ticks.append(ticks[-1] + d)
    return ticks


def _finish(kind: str, path: Path, expected: list[tuple[int, float]], beeps: list[float | None], frame_s: float,
            audio: bool = True, patches=None, note: str = "", measure: bool = False) -> Clip:
    """The Clip, with start/duration from ffprobe; ``measure``: the frames are what the decoder shows."""
    if measure:
        dec = decoded(path)
        expected = [(c[0], t) for t, c in dec if c is not None]
    return Clip(kind=kind, path=path, frames=expected, beeps=beeps, start=start_time(path),
                duration=duration_of(path), frame_s=frame_s, audio=audio, patches=patches or [],
                note=note)


def _simple(kind: str, d: Path, intervals: list[int], rate: Fraction, *, size=(160, 120), ext="mp4",
            frame_s: float | None = None, **kw) -> Clip:
    ticks = _ticks_from_intervals(intervals)
    slots = sum(intervals)
    times = [float(Fraction(t) / rate) for t in ticks]
    end = slots / float(rate)
    beeps = _beeps_on_frames(times, end)
    wav = write_wav(d / f"{kind}.wav", end, beeps)
    path = d / f"{kind}.{ext}"
    encode(path, ticks, slots, rate, size=size, wav=wav, **kw)
    return _finish(kind, path, list(enumerate(times)), beeps, frame_s or float(max(intervals) / rate))


def make(kind: str, d: Path) -> Clip:
    """Generate clip ``kind`` under folder ``d`` and return it with its ground truth."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    return _MAKERS[kind](d)


def vfr_phone(d: Path) -> Clip:
    """60 fps for 1 s, then 30 fps for 1 s, then 15 fps for 1 s (mp4, AAC)."""
    return _simple("vfr_phone", d, [1] * 60 + [2] * 30 + [4] * 15, Fraction(60), frame_s=1 / 15)


def screen_freeze(d: Path) -> Clip:
    """30 fps, with one frame held for 2.5 s in the middle (duplicates dropped), mp4."""
    return _simple("screen_freeze", d, [1] * 30 + [75] + [1] * 30, Fraction(30), frame_s=1 / 30)


def jitter(d: Path) -> Clip:
    """Intervals jittering between 1/60 and 1/30 s (on a 1/120 grid), 3 s, mp4."""
    rng = np.random.default_rng(12)
    iv, total = [], 0
    while total < 360:
        iv.append(int(rng.choice([2, 3, 4])))
        total += iv[-1]
    return _simple("jitter", d, iv, Fraction(120), frame_s=1 / 30)


def cfr25(d: Path) -> Clip:
    return _simple("cfr25", d, [1] * 50, Fraction(25))


def cfr2997(d: Path) -> Clip:
    return _simple("cfr2997", d, [1] * 60, Fraction(30000, 1001))


def gif_uneven(d: Path) -> Clip:
    """GIF with delays of 3-20 cs (no audio)."""
    iv = [3, 5, 8, 12, 20, 4, 6, 10, 3, 3, 15, 7, 9, 5, 20, 4] * 2
    ticks = _ticks_from_intervals(iv)
    rate = Fraction(100)
    path = d / "gif_uneven.gif"
    encode(path, ticks, sum(iv), rate, vcodec=("-c:v", "gif"), vf="split[a][b];[a]palettegen[p];[b][p]paletteuse")
    return _finish("gif_uneven", path, [(i, t / 100) for i, t in enumerate(ticks)], [], 0.2, audio=False)


def cut_copy(d: Path) -> Clip:
    """A 30 fps mp4 (keyframe every 1 s) cut with ``-ss 1.5 -c copy``: an edit list hides 1.0-1.5."""
    src = _simple("cut_copy_src", d, [1] * 120, Fraction(30), extra=("-g", "30"))
    path = d / "cut_copy.mp4"
    run("-ss", "1.5", "-i", src.path, "-map", "0", "-c", "copy", path)
    cut = 1.5
    frames = [(i, round(p - cut, 6)) for i, p in src.frames if p >= cut - 1e-6]
    beeps = [None if b < cut else b - cut for b in src.beeps]
    return _finish("cut_copy", path, frames, beeps, 1 / 30, note="frames/beeps from the source shifted by -1.5 s")


def video_offset(d: Path) -> Clip:
    """The picture starts 0.5 s after the sound (video start_time 0.5 in the mp4, audio from 0)."""
    iv = [2] * 75  # 25 fps on a 1/50 grid: 0.5 s is a whole number of ticks (ffmpeg rounds to the encoder's 1/rate)
    rate = Fraction(50)
    ticks = _ticks_from_intervals(iv)
    off = 0.5
    times = [off + t / 50 for t in ticks]
    end = off + 3.0
    beeps = _beeps_on_frames(times, end, first=0.6)
    wav = write_wav(d / "video_offset.wav", end, beeps)
    path = d / "video_offset.mp4"
    encode(path, ticks, sum(iv), rate, wav=wav, vf=f"setpts=PTS+{off}/TB")
    return _finish("video_offset", path, list(enumerate(times)), beeps, 1 / 25)


def ts_midgop(d: Path) -> Clip:
    """MPEG-TS (25 fps, GOP 25) with its first ~1.4 s of bytes cut off at a TS packet boundary: it starts mid-GOP."""
    src = _simple("ts_midgop_src", d, [1] * 100, Fraction(25), ext="ts", fmt=("-f", "mpegts"),
                  extra=("-g", "25", "-keyint_min", "25", "-sc_threshold", "0"))
    shift = frame_times(src.path)[0]  # the muxer's start offset (1.4 s), same for every stream
    data = src.path.read_bytes()
    cut = (int(len(data) * 0.35) // 188) * 188
    path = d / "ts_midgop.ts"
    path.write_bytes(data[cut:])
    # the timeline is the source's (TS timestamps are absolute); the frames are what ffmpeg shows from the cut
    clip = _finish("ts_midgop", path, [], src.beeps, 1 / 25, measure=True,
                   note="frames measured by decoding the cut file (ffmpeg waits for the next keyframe)")
    first = clip.frames[0][1] if clip.frames else 0.0
    clip.beeps = [None if b is None or b + shift < first else b + shift for b in src.beeps]
    return clip


def avi_repeats(d: Path) -> Clip:
    """AVI at 15 fps (time base 1/15) where most chunks are empty repeats: 24 coded frames over 10 s (MJPEG, PCM)."""
    rng = np.random.default_rng(3)
    # 23 intervals of 1-11 slots, then the last frame in the last slot (an AVI ends with its last chunk)
    iv = [int(v) for v in rng.integers(1, 12, 23)]
    iv[-1] += 149 - sum(iv)
    iv.append(1)
    return _simple("avi_repeats", d, iv, Fraction(15), ext="avi",
                   vcodec=("-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"), acodec=("-c:a", "pcm_s16le"),
                   frame_s=1 / 15)


def _strip_yuv10(index: int, ms: int, w: int, h: int) -> bytes:
    """The barcode strip as raw yuv420p10le: luma code 940 (the format's peak: 10000 nits in PQ, 1.0 in HLG) and 64,
    neutral chroma. Peak white reads as white whatever a tool does with the transfer (tone mapped or not)."""
    y = draw_barcode(np.zeros((h, w), np.uint16), index, ms, lo=64, hi=940)[_grid(w, h)[1][0]:]
    c = np.full((y.shape[0] // 2, w // 2), 512, np.uint16)
    return y.astype("<u2").tobytes() + c.astype("<u2").tobytes() * 2


def _hdr(kind: str, d: Path, trc: str) -> Clip:
    w, h = 160, 120
    n = 25
    times = [i / 25 for i in range(n)]
    beeps = _beeps_on_frames(times, 1.0)
    wav = write_wav(d / f"{kind}.wav", 1.0, beeps)
    strip = d / f"{kind}_strip.yuv"
    strip.write_bytes(b"".join(_strip_yuv10(i, round(t * 1000), w, h) for i, t in enumerate(times)))
    sh = h - _grid(w, h)[1][0]
    pic = colour_picture(0, 0, w, h, barcode=False).tobytes() * n
    path = d / f"{kind}.mp4"
    # the picture: BT.709 R'G'B' (SDR content) -> linear with 100 nits as 1.0 -> BT.2020 primaries, PQ or HLG
    to_hdr = f"format=gbrp,zscale=tin=bt709:pin=bt709:rin=full:t={trc}:m=bt2020nc:p=bt2020:r=tv:npl=100"
    run("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", "25", "-i", "pipe:0",
        "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", f"{w}x{sh}", "-framerate", "25", "-i", strip, "-i", wav,
        "-filter_complex", f"[0:v]{to_hdr},format=yuv420p10le[bg];[bg][1:v]overlay=0:H-h:format=yuv420p10[v]",
        "-map", "[v]", "-map", "2:a", "-c:v", "libx265", "-preset", "ultrafast", "-crf", "4",
        "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le", "-color_primaries", "bt2020", "-color_trc", trc,
        "-colorspace", "bt2020nc", "-color_range", "tv", "-tag:v", "hvc1", "-c:a", "aac", "-b:a", "128k", path,
        stdin=pic)
    ref = first_frame_rgb(path, vf=HDR_TO_SDR + ",scale=in_color_matrix=bt709:out_range=full")
    boxes = _patch_boxes()
    patches = [(b, tuple(float(v) for v in m)) for b, m in zip(boxes, patch_means(ref, boxes))]
    return _finish(kind, path, list(enumerate(times)), beeps, 1 / 25, patches=patches,
                   note=f"reference = Debian ffmpeg {HDR_TO_SDR}")


def hdr10(d: Path) -> Clip:
    """10-bit HEVC, BT.2020, PQ (smpte2084); SDR content mastered at 100 nits."""
    return _hdr("hdr10", d, "smpte2084")


def hlg(d: Path) -> Clip:
    """10-bit HEVC, BT.2020, HLG (arib-std-b67)."""
    return _hdr("hlg", d, "arib-std-b67")


def untagged_hd(d: Path) -> Clip:
    """1280x720 H.264, BT.709 matrix (limited range) but no colour tags at all; saturated patches."""
    rate = Fraction(25)
    iv = [1] * 25
    ticks = _ticks_from_intervals(iv)
    times = [t / 25 for t in ticks]
    beeps = _beeps_on_frames(times, 1.0)
    wav = write_wav(d / "untagged_hd.wav", 1.0, beeps)
    path = d / "untagged_hd.mp4"
    encode(path, ticks, sum(iv), rate, size=(1280, 720), wav=wav, draw=colour_picture,
           vf="scale=in_range=full:out_color_matrix=bt709:out_range=tv,format=yuv420p")
    boxes = _patch_boxes()
    patches = [(b, tuple(float(v) for v in rgb)) for b, rgb in zip(boxes, _PATCH_RGB)]
    return _finish("untagged_hd", path, list(enumerate(times)), beeps, 1 / 25, patches=patches)


def multi_audio_8k(d: Path) -> Clip:
    """25 fps mp4 with two AAC tracks: the first 8 kHz mono, the second 48 kHz; both carry the beeps."""
    rate = Fraction(25)
    iv = [1] * 75
    ticks = _ticks_from_intervals(iv)
    times = [t / 25 for t in ticks]
    beeps = _beeps_on_frames(times, 3.0)
    w8 = write_wav(d / "multi_audio_8k_8.wav", 3.0, beeps, rate=8000)
    w48 = write_wav(d / "multi_audio_8k_48.wav", 3.0, beeps)
    path = d / "multi_audio_8k.mp4"
    encode(path, ticks, sum(iv), rate, wav=[w8, w48], acodec=("-c:a", "aac", "-b:a", "96k"))
    return _finish("multi_audio_8k", path, list(enumerate(times)), beeps, 1 / 25)


def one_frame_long_audio(d: Path) -> Clip:
    """One video frame (at 0) and 3 s of audio."""
    beeps = [0.5, 1.5, 2.5]
    wav = write_wav(d / "one_frame_long_audio.wav", 3.0, beeps)
    path = d / "one_frame_long_audio.mp4"
    encode(path, [0], 1, Fraction(25), wav=wav)
    return _finish("one_frame_long_audio", path, [(0, 0.0)], beeps, 1 / 25)


def webm_mediarecorder(d: Path) -> Clip:
    """VP8 + Opus WebM written to a pipe (no duration, no cues), 10 ms-grid jittery timestamps, and a size change
    (160x120 -> 128x96) at 1.5 s, as Chrome's MediaRecorder writes it."""
    rng = np.random.default_rng(5)
    rate = Fraction(100)
    iv, total = [], 0
    while total < 300:
        iv.append(int(rng.choice([2, 3, 4, 5])))
        total += iv[-1]
    ticks = _ticks_from_intervals(iv)
    times = [t / 100 for t in ticks]
    split = next(i for i, t in enumerate(ticks) if t >= 150)
    end = total / 100
    vp8 = ("-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-auto-alt-ref", "0")
    parts = []
    for n, (lo, hi, size) in enumerate([(0, split, (160, 120)), (split, len(ticks), (128, 96))]):
        seg_ticks = [t - ticks[lo] for t in ticks[lo:hi]]
        seg_slots = (ticks[hi] if hi < len(ticks) else total) - ticks[lo]
        p = d / f"webm_part{n}.webm"
        # frame numbering continues across the parts
        raw_draw = (lambda off: (lambda i, ms, w, h: picture(i + off, ms + int(ticks[off] * 10), w, h)))(lo)
        encode(p, seg_ticks, seg_slots, rate, size=size, vcodec=vp8, draw=raw_draw, fmt=("-f", "webm"))
        parts.append((p, seg_slots / 100))
    lst = d / "webm_parts.ffconcat"
    lst.write_text("ffconcat version 1.0\n" + "".join(f"file '{p.name}'\nduration {dur}\n" for p, dur in parts))
    beeps = _beeps_on_frames(times, end)
    wav = write_wav(d / "webm.wav", end, beeps)
    data = run("-f", "concat", "-safe", "0", "-i", lst, "-i", wav, "-map", "0:v", "-map", "1:a", "-c:v", "copy",
               "-c:a", "libopus", "-b:a", "64k", "-live", "1", "-f", "webm", "pipe:1").stdout
    path = d / "webm_mediarecorder.webm"
    path.write_bytes(data)
    # the muxer shifts the video by the Opus pre-skip (~7 ms) against the audio: the frames' times are measured
    return _finish("webm_mediarecorder", path, list(enumerate(times)), beeps, 0.05, measure=True,
                   note="two VP8 encodes joined by the concat demuxer (a keyframe at the size change); frame times "
                        "measured (the WebM muxer moves the video ~7 ms against the Opus track)")


_MAKERS = {
    "vfr_phone": vfr_phone, "screen_freeze": screen_freeze, "jitter": jitter, "webm_mediarecorder": webm_mediarecorder,
    "gif_uneven": gif_uneven, "cut_copy": cut_copy, "video_offset": video_offset, "ts_midgop": ts_midgop,
    "avi_repeats": avi_repeats, "hdr10": hdr10, "hlg": hlg, "untagged_hd": untagged_hd,
    "multi_audio_8k": multi_audio_8k, "one_frame_long_audio": one_frame_long_audio, "cfr25": cfr25,
    "cfr2997": cfr2997,
}


_MADE: dict[tuple[str, str], Clip] = {}


def clip(kind: str, root: Path) -> Clip:
    """``make(kind, root / kind)`` once per process (the support tests and the timing tests share the clips)."""
    key = (kind, str(root))
    if key not in _MADE:
        _MADE[key] = make(kind, Path(root) / kind)
    return _MADE[key]


def min_interval(truth: Clip) -> float:
    """The shortest gap between two source frames (``frame_s`` for a one-frame clip)."""
    p = [t for _, t in truth.frames]
    gaps = [b - a for a, b in zip(p, p[1:]) if b > a]
    return min(gaps) if gaps else truth.frame_s


def ffmpeg_cut_keeps(path: Path, start: float, duration: float) -> list[int]:
    """Barcode indices of the frames ``ffmpeg -ss START -t DURATION -i IN`` keeps (Debian ffmpeg, accurate seek)."""
    w, h = _video_size(path)
    raw = run("-ss", f"{start}", "-t", f"{duration}", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough",
              "-vf", f"scale={w}:{h}", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1").stdout
    codes = [read_barcode(f) for f in np.frombuffer(raw, np.uint8).reshape(-1, h, w)]
    return [c[0] for c in codes if c is not None]


@cache
def filters(exe: str) -> frozenset[str]:
    out = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True, timeout=60).stdout
    return frozenset(line.split()[1] for line in out.splitlines() if len(line.split()) > 2 and "->" in line)

