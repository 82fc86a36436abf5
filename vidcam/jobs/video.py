"""The video job: a video file to its heatmap video, streaming, every frame at its own time.

::

    VideoSource --> fit to the model --> engine (batched CAMs, --> render, then the sinks: VideoSink (encoder,
    (ffmpeg decode,  (thread)             smoothing, metrics)       muxer, the source's audio) and the labels
     exact times)                         (thread)                  file (this thread)

Each stage runs in its own thread (:class:`vidcam.jobs.pipeline.Pipeline`), so the slowest sets the pace; the
queues are bounded, so memory stays flat whatever the video's length. No frame touches the disk as an image.

What the output keeps:

- every frame, once and in order, each at its own presentation time (exact to the source's time base, which
  the output keeps): a variable-frame-rate video stays variable, a frozen screen stays frozen as long, a
  constant rate keeps its exact fraction (``30000/1001``). Nothing is re-timed onto a grid;
- when the picture starts: a picture that starts after the sound (a cut clip, an offset) still does, and the
  sound keeps its own start, so they stay in sync at every point;
- the displayed orientation and size (rotation applied); odd widths or heights are padded to even ones with
  one black column/row at the right/bottom (H.264 in yuv420p needs even sizes); the pixel aspect ratio;
- the colours a player shows: untagged HD decoded as BT.709 and SD as BT.601, full range honoured, HDR (PQ,
  HLG) tone-mapped to SDR BT.709, interlaced video deinterlaced; the output is tagged with what it is;
- the audio, every track: copied when the container takes its codec and nothing has to be cut, else
  re-encoded to AAC and cut to the sample at the picture's end; ``start``/``duration`` keep exactly what
  ``ffmpeg -ss START -t DURATION -i IN`` keeps, with the same times relative to ``start``. A one-frame video
  with sound shows its frame for as long as the sound lasts.

Labels carry each frame's ``time``: its presentation time in seconds from the file's start, minus ``start``.

The output is written under a temporary name and renamed when complete; an error, Ctrl-C or a crash leaves
nothing under the final name and kills both ffmpeg children.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from vidcam.cam.engine import CamEngine, CamResult, leave_cores, runs_on_cpu, usable_cores
from vidcam.cam.metrics import CamMetrics, evaluate_batch, summarize
from vidcam.cam.spec import ModelLike, ModelSpec, build_engine, spec_of
from vidcam.cam.stepcache import keras_version, warm
from vidcam.errors import UsageError
from vidcam.jobs.labels import VideoLabelsWriter, label_kind
from vidcam.jobs.pipeline import Pipeline
from vidcam.jobs.report import TimelineRecorder, report_paths
from vidcam.jobs.temporal import TemporalStats, map_stability
from vidcam.media.ffmpeg_cmd import AudioPlan, EncodeOptions, EncodeTarget, ffmpeg_exe
from vidcam.media.images import check_decoded_size
from vidcam.media.outputs import atomic_output, check_output
from vidcam.media.probe import VideoInfo, probe
from vidcam.media.render import RenderOptions, format_label, shrink_to_model
from vidcam.media.shots import CutDetector
from vidcam.media.sink import VideoSink
from vidcam.media.source import FrameBatch, VideoSource, output_colour, planar_matrix
from vidcam.media.yuv import frames_equal, i420_to_rgb, sample_rgb, shrink_i420_to_model
from vidcam.models.zoo import DEFAULT_MODEL
from vidcam.tfimport import after_runtime

__all__ = [
    "process_video", "VideoOptions", "VideoSummary", "VIDEO_SUFFIXES", "audio_codec_for", "parse_time",
    "smooth_maps", "default_output", "video_engine", "encoder_threads", "serial_opencv", "DecodeAhead",
]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")

# Audio codecs each container takes as they are (anything else is re-encoded to AAC). Matroska takes all.
_COPYABLE = {
    ".mp4": {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"},
    ".m4v": {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
}

# Full-size frames held in the queues at once, at most (plus one batch in each stage): bounds memory for 4K.
_QUEUE_BYTES = 256 * 2**20
# Decoded frames a DecodeAhead holds before its job takes them, at most (at least one batch).
_AHEAD_BYTES = 128 * 2**20

ProgressCallback = Callable[[int, int | None], None]
MIN_DURATION = 0.001  # seconds


def parse_time(value: str | float | None) -> float | None:
    """Seconds from ``90``, ``1.5``, ``1:30`` or ``00:01:30.5`` (None stays None).

    Raises:
        UsageError: not a time: not a number, ``nan`` or ``inf``, or a negative part after the first
            (``1:-30`` is not 30 s).
    """
    if value is None:
        return None
    parts = [value] if isinstance(value, int | float) else str(value).strip().split(":")
    try:
        if len(parts) > 3 or not all(str(p).strip() for p in parts):
            raise ValueError
        secs = 0.0
        for k, part in enumerate(parts):
            x = float(part)
            if not math.isfinite(x) or (k > 0 and (x < 0 or str(part).strip().startswith(("-", "+")))):
                raise ValueError
            secs = secs * 60 + x
    except (ValueError, TypeError):
        raise UsageError(f"time {value!r} is not seconds or [HH:]MM:SS[.ms]: use e.g. 90, 1:30 or 0:01:30.5") from None
    return secs


@dataclass(frozen=True)
class VideoOptions:
    """What the video job does (drawing and encoding included), checked when made.

    Attributes:
        render: how the heatmaps are drawn (:class:`~vidcam.media.render.RenderOptions`).
        encode: x264 settings (:class:`~vidcam.media.ffmpeg_cmd.EncodeOptions`).
        class_index: explain this class in every frame instead of each frame's top-1.
        smooth: temporal smoothing of the heatmaps in [0, 1): each frame's map is
            ``smooth * previous + (1 - smooth) * current`` (an exponential moving average in frame order), so
            the heat does not flicker; it starts again at each cut between shots, so no heat bleeds from one shot
            into the next. 0 (default) is off; 0.5 averages over about 3 frames. Labels and probabilities are
            never smoothed.
        start: seconds to skip at the beginning (video and audio; ``90``, ``"1:30"``).
        duration: seconds to process from ``start`` (video and audio).
        top_k: labels per frame in the labels file.
        batch_size: frames per engine call (the last batch is padded, so the compiled step never retraces).
            Default 4: inside the video pipeline, where the engine shares the CPU with ffmpeg's decoder and
            encoder, smaller batches cost less, though the engine alone is no faster at 4 than at 8 (2 cores,
            10 s 720p clip, interleaved runs: 4-8% less CPU than batch 8 in each of three sets, the pipeline
            2-4% faster; one picture held for 10 s: 1.58 against 2.02 s). 2 and 3 were within noise of 4.
        metrics: measure how faithful each frame's map is (the map as drawn, smoothing included; see
            :mod:`vidcam.cam.metrics`): per frame in the labels, summarised in the result's ``metrics``.
            Costs about 35 extra forward passes per measured frame.
        metrics_every: measure only every N-th frame (0, N, 2N, ...), to keep long videos affordable.
        overwrite: replace existing outputs.

    Raises:
        UsageError: a value out of range.
    """

    render: RenderOptions = field(default_factory=RenderOptions)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    class_index: int | None = None
    smooth: float = 0.0
    start: float | str | None = None
    duration: float | str | None = None
    top_k: int = 3
    batch_size: int = 4
    metrics: bool = False
    metrics_every: int = 1
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", parse_time(self.start))
        object.__setattr__(self, "duration", parse_time(self.duration))
        if not 0.0 <= self.smooth < 1.0:
            raise UsageError(f"smooth must be within [0, 1) (0: off, 0.6: calm, 0.9: very slow), got {self.smooth}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}")
        if self.top_k < 1:
            raise UsageError(f"top-k must be at least 1, got {self.top_k}")
        if self.start is not None and self.start < 0:
            raise UsageError(f"start must be 0 or more seconds, got {self.start}")
        if self.duration is not None and self.duration < MIN_DURATION:
            # ffmpeg takes -t in microseconds: 1e-7 would be -t 0.000000, the whole video.
            raise UsageError(f"duration must be at least {MIN_DURATION:g} s (a millisecond), got {self.duration:g}")
        if self.metrics_every < 1:
            raise UsageError(f"metrics_every must be at least 1 (every frame), got {self.metrics_every}")


@dataclass
class VideoSummary:
    """What :func:`process_video` did.

    Attributes:
        input: the source video.
        output: the heatmap video written.
        frames: frames written (== frames decoded).
        fps: the rate (exact fraction): the source's for a constant-rate video, the average for a variable one
            (every frame keeps its own time either way).
        vfr: the source (hence the output) has a variable frame rate.
        start: the first frame's time in the output (seconds; > 0 when the picture starts after the sound).
        duration: seconds from the first frame's start to the last frame's end.
        repeats: frames identical to the one before them (frozen screens, held frames), which reused its result
            instead of going through the engine again.
        width: output width (side-by-side doubles it; odd sizes are padded to even by the encoder).
        height: output height.
        audio: ``copy``, ``aac`` or ``none``.
        labels_out: the per-frame labels file, if any.
        seconds: wall-clock time of the run (model loading excluded).
        top_labels: how many frames each explained label won, most frequent first.
        source: the source's :class:`VideoInfo`.
        metrics: with ``metrics=True``, the faithfulness summary of the measured frames
            (:func:`vidcam.cam.metrics.summarize`: means and the worst frames), else None.
        stability: the mean map stability from frame to frame (Spearman rank correlation of consecutive maps as
            drawn, frames at a cut left out; see :mod:`vidcam.jobs.temporal`); None with fewer than two frames.
        stability_min: the least stable frame's value.
        label_flips: frames whose top-1 class differs from the previous frame's.
        flips_per_minute: ``label_flips`` per minute of video time (``duration``).
        cuts: ``(frame, time)`` of each frame that starts a new shot (:class:`vidcam.media.shots.CutDetector`);
            ``smooth`` starts again there.
        report: the HTML report written (its timeline PNG beside it), if any.
        decoded_ahead: frames the decoder had read before the job started (a :class:`DecodeAhead`: while the
            CLI imported TensorFlow), 0 without one. ``seconds`` does not include their decoding.
    """

    input: str
    output: str
    frames: int
    fps: Fraction
    width: int
    height: int
    audio: str
    labels_out: str | None
    seconds: float
    top_labels: list[tuple[str, int]] = field(default_factory=list)
    source: VideoInfo | None = field(default=None, repr=False)
    metrics: dict | None = None
    vfr: bool = False
    start: float = 0.0
    duration: float = 0.0
    repeats: int = 0
    stability: float | None = None
    stability_min: float | None = None
    label_flips: int = 0
    flips_per_minute: float = 0.0
    cuts: list[tuple[int, float]] = field(default_factory=list)
    report: str | None = None
    decoded_ahead: int = 0

    @property
    def frames_per_second(self) -> float:
        """Processing speed (frames per wall-clock second)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "input": self.input, "output": self.output, "frames": self.frames,
            "fps": f"{self.fps.numerator}/{self.fps.denominator}", "vfr": self.vfr, "start": round(self.start, 6),
            "duration": round(self.duration, 6), "repeats": self.repeats, "width": self.width, "height": self.height,
            "audio": self.audio, "labels_out": self.labels_out, "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames_per_second, 2),
            "top_labels": [{"label": k, "frames": v} for k, v in self.top_labels],
            "stability": self.stability, "stability_min": self.stability_min, "label_flips": self.label_flips,
            "flips_per_minute": self.flips_per_minute, "cuts": [{"frame": i, "time": t} for i, t in self.cuts],
            "report": self.report, "decoded_ahead": self.decoded_ahead,
            **({"metrics": self.metrics} if self.metrics is not None else {}),
        }


def audio_codec_for(codecs: tuple[str, ...], suffix: str) -> str:
    """``none`` for a silent source, ``copy`` when the container takes every audio codec as is, else ``aac``."""
    if not codecs:
        return "none"
    ok = _COPYABLE.get(suffix.lower())
    return "copy" if ok is None or all(c in ok for c in codecs) else "aac"



def smooth_maps(cams: np.ndarray, factor: float, state: np.ndarray | None = None,
                restart: np.ndarray | None = None):
    """Temporal smoothing of consecutive CAMs: an exponential moving average in frame order, shot by shot.

    ``out[t] = factor * out[t - 1] + (1 - factor) * cams[t]``, starting from ``state`` (the previous
    batch's last smoothed map) or, for the very first frame and the first frame of each new shot, from the frame
    itself (no fade-in from black, and no heat carried over a cut from the shot before).

    Args:
        cams: (N, h, w) maps in [0, 1] of consecutive frames.
        factor: 0 (off) to < 1; 0.5 averages over about 3 frames (1 / (1 - factor) - ish).
        state: the last smoothed map so far, or None at the start.
        restart: (N,) bool, True where a new shot starts (a cut): the average starts again at that frame.

    Returns:
        (smoothed maps, new state).
    """
    if factor <= 0 or len(cams) == 0:
        return cams, state
    out = np.empty_like(cams)
    for i in range(len(cams)):
        fresh = state is None or (restart is not None and restart[i])
        state = cams[i] if fresh else factor * state + (1.0 - factor) * cams[i]
        out[i] = state
    return out, state


def report_summary(s: VideoSummary) -> str:
    """The report page's line under its title: frames, length, stability, flips, cuts."""
    parts = [f"{s.frames} frames, {s.duration:.2f} s"]
    if s.stability is not None:
        parts.append(f"map stability {s.stability:.2f} (min {s.stability_min:.2f})")
    parts.append(f"{s.label_flips} label flip{'s' if s.label_flips != 1 else ''} ({s.flips_per_minute:.1f} a minute)")
    parts.append(f"{len(s.cuts)} cut{'s' if len(s.cuts) != 1 else ''}")
    return "; ".join(parts)


def default_output(input_path: str | Path) -> Path:
    """``<stem>_heatmap.mp4`` in the current folder."""
    return Path(f"{Path(input_path).stem}_heatmap.mp4")


def process_video(
    input: str | Path,
    output: str | Path | None = None,
    *,
    model: ModelLike = DEFAULT_MODEL,
    options: VideoOptions | None = None,
    labels_out: str | Path | None = None,
    ffmpeg: str | None = None,
    progress: ProgressCallback | None = None,
    report: str | Path | None = None,
    early: DecodeAhead | None = None,
) -> VideoSummary:
    """Make the heatmap video of a video, streaming (memory does not grow with the video's length).

    Args:
        input: the source video (any format ffmpeg reads).
        output: the heatmap video (``.mp4``, ``.m4v``, ``.mov`` or ``.mkv``); default ``<stem>_heatmap.mp4``.
        model: zoo name, ``.keras`` path, :class:`~vidcam.cam.spec.ModelSpec` (layer, method, weights),
            loaded classifier or built engine.
        options: :class:`VideoOptions` (drawing, encoding, smoothing, the part to process, ...).
        labels_out: write per-frame top-k labels here: ``.csv`` or ``.jsonl`` (JSON Lines), each frame with its
            ``time`` (seconds from the file's start, minus ``start``).
        ffmpeg: ffmpeg binary (default ``$VIDCAM_FFMPEG`` or imageio-ffmpeg's).
        progress: called as ``progress(frames_done, frames_total_estimate)`` from the calling thread.
        report: write a report page here (``.html``, self-contained: the video in a player above its timeline,
            thumbnails at the label changes; the video referenced by its path relative to the page) and the
            timeline as a PNG beside it (``report.html`` -> ``report.png``).
        early: a :class:`DecodeAhead` opened for ``input`` (and the same ``options`` and ``ffmpeg``): its probe
            and the frames it has decoded meanwhile are used. Opened for anything else, it is stopped and unused.
            The caller still closes it.

    Returns:
        A :class:`VideoSummary`.

    Raises:
        InputError: the input is not a readable video with frames.
        UsageError: options out of range or that do not fit the video.
        OutputError: an output exists (without ``overwrite``), is the input, or cannot be written.
        FFmpegError: ffmpeg failed (the message carries its last lines).

    Example:
        >>> s = process_video("video/demo.mp4", "demo_heatmap.mp4", options=VideoOptions(smooth=0.5))  # doctest: +SKIP
        >>> s.frames, s.fps  # doctest: +SKIP
        (150, Fraction(25, 1))
    """
    o = options or VideoOptions()
    output = Path(output) if output is not None else default_output(input)
    if output.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(f"output {output} must end in {', '.join(VIDEO_SUFFIXES)} (vidcam writes H.264)")
    kind = label_kind(labels_out, ("csv", "jsonl")) if labels_out is not None else None
    exe = ffmpeg_exe(ffmpeg)
    info = (early.probed(input, exe) if early is not None else None) or probe(input, ffmpeg=exe)
    check_decoded_size(f"the video in {input}", info.width, info.height)  # before any frame is decoded
    o = dataclasses.replace(o, batch_size=_batch_size(info, o))
    total = info.frames_between(o.start, o.duration)
    if o.start and total == 0:
        raise UsageError(f"start {o.start:g} s is at or after the end of {input} ({info.end:.3f} s)")
    check_output(output, overwrite=o.overwrite, inputs=(input,))
    if labels_out is not None:
        check_output(labels_out, overwrite=o.overwrite, inputs=(input, output))
    pages = report_paths(report) if report is not None else ()
    for page in pages:
        check_output(page, overwrite=o.overwrite, inputs=(input, output, *([labels_out] if labels_out else [])))
    # The engine DecodeAhead warmed for this model, if it did (waiting for it rather than loading it twice).
    engine = (early.engine_for(model) if early is not None else None) or video_engine(model)
    clf = engine.classifier
    if o.class_index is not None and not 0 <= o.class_index < clf.num_classes:
        raise UsageError(f"class {o.class_index} is out of range: the model has {clf.num_classes} classes "
                         f"(0..{clf.num_classes - 1})")
    run = _VideoRun(info, engine, o, exe, total)
    if pages:
        run.timeline = TimelineRecorder(clf.class_names, o.top_k)
    return run.run(output, Path(labels_out) if labels_out is not None else None, kind, progress,
                   pages[0] if pages else None, early)


def _batch_size(info: VideoInfo, o: VideoOptions) -> int:
    """Frames per engine call for this video: the options', smaller for huge frames (memory stays bounded; the
    maps are the same)."""
    frame_bytes = info.width * info.height * 3
    return max(1, _QUEUE_BYTES // frame_bytes) if frame_bytes * o.batch_size > _QUEUE_BYTES else o.batch_size


def _engine_batch(info: VideoInfo, o: VideoOptions) -> int:
    """The batch shape the engine sees for this video: its batch size, or the video's length if shorter (a video
    shorter than one batch is padded to its own length only: ``--batch 100000`` on a 50-frame clip must not
    allocate 100000 frames; a longer one keeps one shape throughout, so the compiled step never retraces)."""
    b = _batch_size(info, o)
    return min(b, info.frames_between(o.start, o.duration) or b)


def _open_source(info: VideoInfo, o: VideoOptions, exe: str) -> VideoSource:
    """The video's decoder as a job with options ``o`` reads it: the part chosen, its batch size for this video,
    I420 where the source allows it."""
    return VideoSource(info, exe, start=o.start, duration=o.duration, batch_size=_batch_size(info, o),
                       planar=planar_matrix(info) is not None)


def _fit_frame(frame: np.ndarray, size: tuple[int, int], fit: str, matrix: str | None) -> tuple[np.ndarray, tuple]:
    """One decoded frame (RGB, or I420 in ``matrix``) as the model's RGB input of ``size``, and the window of the
    frame it covers."""
    if matrix is None:
        return shrink_to_model(frame, size, fit)
    if fit == "squash":
        return shrink_i420_to_model(frame, size, matrix), (0, 0, frame.shape[1], frame.shape[0] * 2 // 3)
    return shrink_to_model(i420_to_rgb(frame, matrix), size, fit)


def _warm_drawing(info: VideoInfo, o: VideoOptions) -> None:
    """Pay the first-call costs of fitting and drawing a frame of ``info``'s size now, on a blank frame: OpenCV's
    first colour conversion and resize, the colormap, the label's font at that size (40-60 ms of one core in all).
    :class:`DecodeAhead` calls it while TensorFlow imports, so that the job's first frame reaches the encoder
    sooner: measured on the 720p bench clip, 2 cores, at 0.12-0.14 s after the pipeline starts instead of 0.27 s
    (the first fit 52 -> 17-21 ms, the first drawing 64 -> ~15 ms), and the one-frame clip's pipeline in 0.060 s
    instead of 0.113 s (medians of 4 interleaved runs)."""
    try:
        m = planar_matrix(info)
        frame = np.zeros((info.height * 3 // 2, info.width) if m else (info.height, info.width, 3), np.uint8)
        CutDetector()(frame if m is None else sample_rgb(frame, m))
        _fit_frame(frame, (224, 224), o.render.fit, m)  # the job's own fit (its model's size is not known yet)
        o.render.renderer(m)(frame, np.zeros((7, 7), np.float32), format_label("warm", 0.5), None)
    except Exception:  # noqa: BLE001 - only a head start: the job meets (and reports) any real problem itself
        pass


class DecodeAhead:
    """Probe a video and start decoding it before its job can start: the CLI opens one, then imports TensorFlow
    (3-5 s of one core), and the decoder fills up to 128 MiB of frames on the core the import leaves idle. The job
    (``process_video(..., early=...)``) then takes the probe and the decoded frames and goes on reading from the
    same decoder: the frames, their times and the errors are those the job would have read itself.

    Given the job's ``model`` (a zoo name, a ``.keras`` path or a :class:`~vidcam.cam.spec.ModelSpec`) whose
    engine step is in the compiled-step cache (:mod:`vidcam.cam.stepcache`), it also runs that step once on a blank
    batch of the job's shape as soon as TensorFlow's runtime is loaded, a third of the way through the import
    (:func:`vidcam.tfimport.after_runtime`): the job's first engine call, which otherwise instantiates the step and
    makes its kernels (0.4-0.7 s of one core before any frame can be drawn), is then as fast as the others; the job
    takes that engine instead of loading the step again (:meth:`engine_for`). Once decoding, it draws a blank frame of
    the video's size, so that OpenCV's, the colormap's and the label font's first-call costs are paid there too.

    Anything that fails here (a missing file, a file that is no video) is left for the job to find and report;
    opened for other options than the job's, it is stopped and the job decodes on its own. Close it (or use it as
    a context manager) in any case: closing stops a decoder the job did not take.

    Example:
        >>> with DecodeAhead("video/demo.mp4", model="efficientnet_lite0") as early:  # doctest: +SKIP
        ...     import tensorflow  # the decoder reads ahead meanwhile, and the step is warmed
        ...     process_video("video/demo.mp4", "demo_heatmap.mp4", early=early)
    """

    def __init__(self, input: str | Path, options: VideoOptions | None = None, *, ffmpeg: str | None = None,
                 model: ModelLike | None = None) -> None:
        self.input, self.options, self._ffmpeg = Path(input), options or VideoOptions(), ffmpeg
        self._info: VideoInfo | None = None
        self._exe: str | None = None
        self._source: VideoSource | None = None
        self._frames: Pipeline | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._probed = threading.Event()
        self._spec: ModelSpec | None = None
        self._engine: CamEngine | None = None  # the model's engine, its step run once (see engine_for)
        self._warm_done = threading.Event()
        self._cancel_warm = None
        try:
            self._spec = spec_of(model) if model is not None else None
            if self._spec is not None:
                keras_version()  # what warm would import for the cache key, read here
                self._cancel_warm = after_runtime(self._warm)
        except Exception:  # noqa: BLE001 - a model that cannot be described is the job's to report
            self._spec = None
        if self._cancel_warm is None:
            self._warm_done.set()
        self._thread = threading.Thread(target=self._open, name="vidcam-decode-ahead", daemon=True)
        self._thread.start()

    def _warm(self) -> None:
        """Runs in a thread of its own as soon as TensorFlow's runtime is loaded (see the class)."""
        try:
            self._probed.wait()
            info, o = self._info, self.options
            if info is None or self._closed:
                return
            leave_cores(1)  # what video_engine sets, before the runtime starts here
            self._engine = warm(self._spec, _engine_batch(info, o), o.class_index)
        except BaseException:  # noqa: BLE001 - the job loads and runs the step itself, and reports what fails
            pass
        finally:
            self._warm_done.set()

    @property
    def warmed(self) -> bool:
        """The model's step was loaded from the cache and run once (so far)."""
        return self._engine is not None

    def engine_for(self, model: ModelLike, timeout: float = 60.0) -> CamEngine | None:
        """The engine warmed here if it is ``model``'s (after waiting for a warm-up under way, ``timeout`` seconds
        at most), else None."""
        if self._cancel_warm is not None and self._cancel_warm():  # TensorFlow's runtime was never loaded
            self._warm_done.set()
        self._warm_done.wait(timeout)
        try:
            same = self._spec is not None and spec_of(model) == self._spec
        except Exception:  # noqa: BLE001 - the job's own build reports it
            same = False
        return self._engine if same else None

    def _open(self) -> None:
        try:
            exe = ffmpeg_exe(self._ffmpeg)
            info = probe(self.input, ffmpeg=exe)
            check_decoded_size(str(self.input), info.width, info.height)
            self._info, self._exe = info, exe
        except BaseException:  # noqa: BLE001 - the job probes again and reports it
            return
        finally:
            self._probed.set()
        with self._lock:
            if self._closed:
                return
            try:
                source = _open_source(info, self.options, exe)
            except BaseException:  # noqa: BLE001 - the job opens its own decoder and reports what fails
                return
            batches = max(1, _AHEAD_BYTES // source.pool.nbytes)
            try:
                self._frames = Pipeline(source, depth=batches, on_stop=source.kill, name="vidcam-decode-ahead")
            except BaseException:  # noqa: BLE001 - no thread to read ahead: the job decodes on its own
                source.kill()
                return
            self._source = source
        _warm_drawing(info, self.options)

    @property
    def decoded(self) -> int:
        """Frames decoded so far and not yet taken by a job."""
        source = self._source
        return source.decoded if source is not None else 0

    def probed(self, input: str | Path, exe: str) -> VideoInfo | None:
        """The probe of ``input`` made here, if this was opened for it with that ffmpeg (waits for the probe)."""
        if Path(input) != self.input:
            return None
        self._probed.wait()
        return self._info if self._exe == exe else None

    def take(self, info: VideoInfo, o: VideoOptions, exe: str) -> tuple[VideoSource, Pipeline] | None:
        """The decoder and its read-ahead, for a job on ``info`` (as :meth:`probed` gave it) with options ``o``
        and ffmpeg ``exe``; None (and the decoder stopped) if this was opened for anything else."""
        self._thread.join()
        with self._lock:
            source, frames, self._source, self._frames = self._source, self._frames, None, None
        if source is None or frames is None:
            return None
        same = (o.start, o.duration, _batch_size(info, o)) == (self.options.start, self.options.duration,
                                                                source.batch_size)
        if info is self._info and exe == self._exe and same:  # the decoder _open_source would open for the job
            return source, frames
        frames.close()
        return None

    def close(self) -> None:
        """Stop the decoder unless a job took it (and a warm-up not begun yet: one under way finishes)."""
        if self._cancel_warm is not None:
            self._cancel_warm()
        with self._lock:
            self._closed = True
            frames, self._source, self._frames = self._frames, None, None
        if frames is not None:
            frames.close()

    def __enter__(self) -> DecodeAhead:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def video_engine(model: ModelLike) -> CamEngine:
    """:func:`~vidcam.cam.spec.build_engine` for video jobs: decoding, drawing and encoding run beside the engine
    throughout, so TensorFlow leaves them a core (:func:`~vidcam.cam.engine.leave_cores`; a no-op once
    TensorFlow's runtime has started, as it has for a built engine or a loaded classifier)."""
    leave_cores(1)
    return build_engine(model)


def encoder_threads(encode: EncodeOptions) -> EncodeOptions:
    """The encoder's settings for a video job: unless threads were chosen, x264 runs on half the cores (at least
    one) while the engine runs on the CPU, and as many as it likes beside a GPU.

    x264's own choice on 2 cores is three frame threads and a lookahead thread; each frame thread waits for rows
    of the frame before it, and with the engine holding a core those waits left both cores idle at times.
    Measured on the 720p bench clip, 2 cores: the pipeline ran at 27.5-30.4 frames/s with one x264 thread,
    23.8-26.0 with x264's choice, for the same CPU time (22.3 vs 22.8 s).
    """
    if encode.threads is not None or not runs_on_cpu():
        return encode
    return dataclasses.replace(encode, threads=max(1, usable_cores() // 2))


@contextlib.contextmanager
def serial_opencv():
    """OpenCV's calls run in the calling thread inside the block (its thread count is restored after).

    The video pipeline already runs its stages in threads of their own beside the engine and ffmpeg; OpenCV
    splitting each resize, blend and colour conversion over the cores on top of that only adds hand-offs. Measured
    on the 720p bench clip, 2 cores, three interleaved pairs of runs: the pipeline 1-1.6 frames/s faster in each
    pair (25.8 vs 25.1 frames/s, medians), 0.7 s less CPU.
    """
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def planned_end(info: VideoInfo, start: float | None, duration: float | None) -> float:
    """Where the output's picture ends (seconds, output timeline): the source's last frame end, or, for a video
    of one frame, the end of its sound (the frame is held); never past ``duration``."""
    s = start or 0.0
    end = info.end - s
    if info.frames == 1 and info.audio_end is not None:
        end = max(end, info.audio_end - s)
    return min(end, duration) if duration is not None else end


def audio_plan(info: VideoInfo, o: VideoOptions, suffix: str, end: float) -> AudioPlan | None:
    """How the source's audio goes into the output: copied when nothing has to be cut, else AAC cut at ``end``.

    Audio that ends within half a frame after the picture is copied as it is (codecs pad their last packet: a
    millisecond of MP3 or Matroska rounding is no reason to re-encode); longer audio is cut to the sample.
    """
    codec = audio_codec_for(info.audio_codecs, suffix)
    if codec == "none":
        return None
    half_frame = info.duration / max(1, info.frames) / 2
    overhang = info.audio_end is not None and info.audio_end - (o.start or 0.0) > end + half_frame
    if o.start or o.duration is not None or overhang:
        codec = "aac"
    return AudioPlan(info.path, codec, start=o.start, duration=o.duration, end=end if codec == "aac" else None)


class _VideoRun:
    """One run: the stages' state (smoothing carries over batches) and the sinks."""

    def __init__(self, info: VideoInfo, engine: CamEngine, o: VideoOptions, exe: str, total: int) -> None:
        self.info, self.engine, self.o, self.exe, self.total = info, engine, o, exe, total
        # Frames stay I420 from the decoder to the encoder where the source allows it (vidcam.media.yuv).
        self.matrix = planar_matrix(info)
        self.state: np.ndarray | None = None
        self.prev_frame: np.ndarray | None = None
        self.last: tuple | None = None  # the previous frame's (map, class, probabilities, model input)
        self.window: tuple | None = None
        self.picture: np.ndarray | None = None
        self.repeats = 0
        self.counts: Counter = Counter()
        self.measured: dict[int, CamMetrics] = {}
        self.cut_detector = CutDetector()
        self.drawn: np.ndarray | None = None  # the previous frame's map as drawn (for map stability)
        self.temporal = TemporalStats()
        self.timeline: TimelineRecorder | None = None  # set for a report
        frame_bytes = info.width * info.height * 3
        self.depth = max(1, min(3, _QUEUE_BYTES // max(1, frame_bytes * o.batch_size)))
        self.batch = _engine_batch(info, o)  # every engine call's batch shape
        self.sink: VideoSink | None = None  # opened by the first batch's fit (run sets it)

    # -- stages (each in its own thread) ---------------------------------------------------------------------

    def fit(self, batch: FrameBatch):
        """Fit the frames that differ from the one before them; a repeat (a frozen screen, a held frame, a static
        shot) is marked and costs nothing more: it reuses its predecessor's result (same output, same labels).
        Frames that start a new shot are marked too (a repeat never does)."""
        if self.sink is not None and self.sink.encoder is None:
            # The first frame's time is known now, 0.2-0.3 s before it is drawn: ffmpeg starts meanwhile.
            self.sink.open(batch.nanoseconds(0))
        repeat, cuts = np.zeros(len(batch), bool), np.zeros(len(batch), bool)
        prev, m = self.prev_frame, self.matrix
        for i, frame in enumerate(batch.pixels):
            repeat[i] = prev is not None and frames_equal(frame, prev)
            cuts[i] = not repeat[i] and self.cut_detector(frame if m is None else sample_rgb(frame, m))
            prev = frame
        # A copy: the source reuses this batch's memory once it is delivered (VideoSource.recycle).
        self.prev_frame = prev.copy() if prev is not None else None
        fitted = [self._fit(f) for f, r in zip(batch.pixels, repeat) if not r]
        small = np.stack([f[0] for f in fitted]) if fitted else np.zeros((0, *self.engine.input_size, 3), np.uint8)
        return batch, small, fitted[0][1] if fitted else self.window, repeat, cuts

    def _fit(self, frame: np.ndarray) -> tuple[np.ndarray, tuple]:
        return _fit_frame(frame, self.engine.input_size, self.o.render.fit, self.matrix)

    def _run_unique(self, small: np.ndarray):
        """The engine on the new frames only, padded to the fixed batch shape (the compiled step sees one shape)."""
        u, b = len(small), self.batch
        if u == 0:
            return None
        if u < b:
            small = np.concatenate([small, np.zeros((b - u, *small.shape[1:]), np.uint8)])
        res = self.engine.run(small, self.o.class_index)
        return res.cams[:u], res.class_ids[:u], res.probabilities[:u]

    def explain(self, item):
        batch, small, window, repeat, cuts = item
        o, n = self.o, len(batch)
        self.window = window
        unique = self._run_unique(small)
        # Frame i takes the result of the latest new frame at or before it (-1: the previous batch's last one).
        source = np.cumsum(~repeat) - 1
        parts = [[x] for x in self.last] if self.last is not None else [[], [], [], []]
        if unique is not None:
            for part, new in zip(parts, (*unique, small)):
                part.extend(new)
        offset = 1 if self.last is not None else 0
        cams, class_ids, probabilities, fitted = (np.asarray(p)[source + offset] for p in parts)
        self.last = (cams[-1], class_ids[-1], probabilities[-1], fitted[-1])
        raw = CamResult(class_ids, probabilities, cams)
        cams, self.state = smooth_maps(cams, o.smooth, self.state, restart=cuts)
        stability, self.drawn = map_stability(cams, self.drawn)
        ids, probs = raw.top_k(o.top_k)
        measured: dict[int, CamMetrics] = {}
        if o.metrics:
            sel = [i for i in range(n) if (batch.index + i) % o.metrics_every == 0]
            if sel:
                found = evaluate_batch(self.engine, fitted[sel], cams[sel], class_ids[sel])
                measured = {batch.index + i: m for i, m in zip(sel, found)}
        return batch, window, cams, class_ids, probabilities, ids, probs, measured, repeat, (stability, cuts)

    # -- this thread: render, then the sinks ---------------------------------------------------------------

    def _deliver(self, item, renderer, sink: VideoSink, labels: VideoLabelsWriter | None) -> None:
        batch, window, cams, class_ids, probs, ids, top_probs, measured, repeat, (stability, cuts) = item
        names = self.engine.classifier.class_names
        self.measured.update(measured)
        for i in range(len(batch)):
            cid, k, t = int(class_ids[i]), batch.index + i, batch.seconds(i)
            self.temporal.add(k, t, int(ids[i, 0]), float(stability[i]), bool(cuts[i]))
            record = self.timeline is not None and self.timeline.add(
                k, t, (cid, float(probs[i, cid])), (ids[i], top_probs[i]), float(stability[i]), bool(cuts[i]))
            self.counts[names[cid]] += 1
            # A repeated frame with an unsmoothed map looks exactly like the one before it: drawn once, and written
            # as a skipped picture (no encoding; see vidcam.media.sink).
            if repeat[i] and self.o.smooth == 0 and self.picture is not None:
                sink.repeat(batch.nanoseconds(i))
            else:
                label = format_label(names[cid], float(probs[i, cid]))
                self.picture = renderer(batch.pixels[i], cams[i], label, window)
                if self.matrix is None:
                    sink.write(self.picture, batch.nanoseconds(i))
                else:
                    sink.write_i420(self.picture, batch.nanoseconds(i))
            if record:
                self.timeline.thumbnail(k, t, self.picture if self.matrix is None
                                        else i420_to_rgb(self.picture, self.matrix))
            if labels is not None:
                preds = [{"class_id": int(c), "label": names[int(c)], "probability": round(float(p), 6)}
                         for c, p in zip(ids[i], top_probs[i])]
                m = measured.get(k)
                labels.write(k, t, preds, m.as_dict() if m is not None else None, stability=float(stability[i]),
                             cut=bool(cuts[i]))
        self.repeats += int(repeat.sum())

    def _sink(self, tmp: Path, output: Path, end: float) -> VideoSink:
        info, o = self.info, self.o
        primaries, transfer = output_colour(info)
        width = info.width * (2 if o.render.layout == "side-by-side" else 1)
        target = EncodeTarget(width, info.height, info.time_base, info.sar, primaries, transfer,
                              self.matrix or "smpte170m")
        self.audio = audio_plan(info, o, output.suffix, end)
        encode = encoder_threads(o.encode)
        return VideoSink(self.exe, tmp, target, encode=encode, audio=self.audio, what=f"ffmpeg (encoding {output})")

    def run(self, output: Path, labels_out: Path | None, kind: str | None, progress,
            report: Path | None = None, early: DecodeAhead | None = None) -> VideoSummary:
        info, o = self.info, self.o
        end = planned_end(info, o.start, o.duration)
        renderer = o.render.renderer(self.matrix)
        first = last = None
        written = 0
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            stack.enter_context(serial_opencv())
            tmp = stack.enter_context(atomic_output(output, overwrite=o.overwrite))
            labels = None
            if labels_out is not None:
                fh = stack.enter_context(open(stack.enter_context(atomic_output(labels_out, overwrite=o.overwrite)),
                                              "w", newline="", encoding="utf-8"))
                labels = VideoLabelsWriter(fh, kind, o.top_k, o.metrics)
            taken = early.take(info, o, self.exe) if early is not None else None
            ahead = 0
            if taken is not None:  # decoding since before the engine was loaded
                source, frames = taken
                ahead = source.decoded
                stack.callback(frames.close)
            else:
                source = frames = _open_source(info, o, self.exe)
            stack.callback(source.kill)
            sink = self.sink = self._sink(tmp, output, end)
            stack.callback(sink.kill)
            pipeline = stack.enter_context(Pipeline(frames, [self.fit, self.explain], depth=self.depth,
                                                    on_stop=source.kill, name="vidcam-video"))
            if progress:
                progress(0, self.total)
            for item in pipeline:
                self._deliver(item, renderer, sink, labels)
                batch = item[0]
                source.recycle(batch)  # drawn and sent: the source may read into its memory again
                first = batch.seconds(0) if first is None else first
                last = batch.nanoseconds(len(batch) - 1)
                written += len(batch)
                if progress:
                    progress(written, self.total)
            sink.close(max(round(end * 1e9), last + 1))
            summary = None
            if o.metrics:
                frames_measured = sorted(self.measured)
                summary = summarize([self.measured[k] for k in frames_measured], indices=frames_measured)
                if labels is not None:
                    labels.summary(summary)
            seconds = time.perf_counter() - t0
        out_w = info.width * (2 if o.render.layout == "side-by-side" else 1)
        duration = max(end, last / 1e9) - (first or 0.0)
        temporal = self.temporal.summary(duration)
        done = VideoSummary(
            input=str(info.path), output=str(output), frames=written, fps=info.fps, width=out_w + out_w % 2,
            height=info.height + info.height % 2, audio=self.audio.codec if self.audio else "none",
            labels_out=str(labels_out) if labels_out is not None else None, seconds=seconds,
            top_labels=self.counts.most_common(), source=info, metrics=summary, vfr=info.vfr, start=first or 0.0,
            duration=duration, repeats=self.repeats, decoded_ahead=ahead, stability=temporal["stability"],
            stability_min=temporal["stability_min"], label_flips=temporal["label_flips"],
            flips_per_minute=temporal["flips_per_minute"], cuts=[(c["frame"], c["time"]) for c in temporal["cuts"]],
        )
        if report is not None and self.timeline is not None:
            # After the video is in place: a page never points at a video that is not there.
            self.timeline.write(report, output, (info.path.name, duration, report_summary(done)), overwrite=o.overwrite)
            done.report, done.seconds = str(report), time.perf_counter() - t0
        return done
