"""The video job: a streaming pipeline from a video file to its Grad-CAM heatmap video.

::

    ffmpeg decode --rgb24 pipe--> reader thread --queue--> engine thread --queue--> main thread --pipe--> ffmpeg encode
    (upright frames)              (fit to model)            (batched CAMs,           (render, write,      (H.264 + the
                                                             smoothing)               labels, progress)    source audio)

Every stage runs at once, so the slowest one sets the pace; the queues are bounded, so memory stays flat
whatever the video's length. No frame touches the disk as an image.

What the output keeps:

- every frame, in order (output frame count == input frame count), at the source's exact rate as a
  fraction (``30000/1001`` stays ``30000/1001``). A variable-frame-rate source is normalised: all frames are
  kept and played at the constant rate frames / duration, so the total duration matches (within a frame);
- the displayed orientation and size (ffmpeg applies rotation metadata while decoding); odd widths or
  heights are padded to even ones with one black column/row at the right/bottom (H.264 in yuv420p needs
  even sizes);
- the audio, copied when the output container takes its codec, else re-encoded to AAC; ``start`` and
  ``duration`` cut the audio like the video; a silent source gives a silent output.

The output is written under a temporary name and renamed when complete; an error, Ctrl-C or a crash leaves
nothing under the final name and kills both ffmpeg children.
"""

from __future__ import annotations

import contextlib
import csv
import json
import queue
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from vidcam.cam.engine import CamEngine, get_engine
from vidcam.cam.metrics import CamMetrics, evaluate_batch, summarize
from vidcam.errors import FFmpegError, InputError, UsageError
from vidcam.media.ffmpeg_cmd import decode_args, encode_args, ffmpeg_exe
from vidcam.media.outputs import atomic_output, check_output
from vidcam.media.probe import VideoInfo, probe
from vidcam.media.process import FFmpegProcess, read_exact, write_frame
from vidcam.media.render import Renderer, check_render_options, format_label, shrink_to_model
from vidcam.models.zoo import DEFAULT_MODEL, Classifier

__all__ = [
    "process_video", "VideoSummary", "VIDEO_SUFFIXES", "PRESETS", "audio_codec_for", "parse_time",
    "smooth_maps", "default_output", "DEFAULT_PRESET",
]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# Measured on the 2-core CPU at 720p (vidcam video, whole process tree): superfast costs about the CPU of
# ultrafast (~60 vs ~59 ms per frame) for files ~45% smaller; veryfast ~90 ms per frame (the encoder then
# costs more than the Grad-CAM engine) for files ~20% smaller than superfast.
DEFAULT_PRESET = "superfast"
LABEL_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}
_METRIC_COLUMNS = ("average_drop", "deletion_auc", "insertion_auc")

# Audio codecs each container takes as they are (anything else is re-encoded to AAC). Matroska takes all.
_COPYABLE = {
    ".mp4": {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"},
    ".m4v": {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
}

# Full-size frames held in the queues at once, at most (plus one batch in each stage): bounds memory for 4K.
_QUEUE_BYTES = 256 * 2**20

ProgressCallback = Callable[[int, int | None], None]


@dataclass
class VideoSummary:
    """What :func:`process_video` did.

    Attributes:
        input: the source video.
        output: the heatmap video written.
        frames: frames written (== frames decoded).
        fps: the output's frame rate (exact fraction).
        width: output width (side-by-side doubles it; odd sizes are padded to even by the encoder).
        height: output height.
        audio: ``copy``, ``aac`` or ``none``.
        labels_out: the per-frame labels file, if any.
        seconds: wall-clock time of the run (model loading excluded).
        top_labels: how many frames each explained label won, most frequent first.
        source: the source's :class:`VideoInfo`.
        metrics: with ``metrics=True``, the faithfulness summary of the measured frames
            (:func:`vidcam.cam.metrics.summarize`: means and the worst frames), else None.
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

    @property
    def frames_per_second(self) -> float:
        """Processing speed (frames per wall-clock second)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "input": self.input, "output": self.output, "frames": self.frames,
            "fps": f"{self.fps.numerator}/{self.fps.denominator}", "width": self.width, "height": self.height,
            "audio": self.audio, "labels_out": self.labels_out, "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames_per_second, 2),
            "top_labels": [{"label": k, "frames": v} for k, v in self.top_labels],
            **({"metrics": self.metrics} if self.metrics is not None else {}),
        }


def audio_codec_for(codecs: tuple[str, ...], suffix: str) -> str:
    """``none`` for a silent source, ``copy`` when the container takes every audio codec as is, else ``aac``."""
    if not codecs:
        return "none"
    ok = _COPYABLE.get(suffix.lower())
    return "copy" if ok is None or all(c in ok for c in codecs) else "aac"



def smooth_maps(cams: np.ndarray, factor: float, state: np.ndarray | None = None):
    """Temporal smoothing of consecutive CAMs: an exponential moving average in frame order.

    ``out[t] = factor * out[t - 1] + (1 - factor) * cams[t]``, starting from ``state`` (the previous
    batch's last smoothed map) or, for the very first frame, from the frame itself (no fade-in from black).

    Args:
        cams: (N, h, w) maps in [0, 1] of consecutive frames.
        factor: 0 (off) to < 1; 0.5 averages over about 3 frames (1 / (1 - factor) - ish).
        state: the last smoothed map so far, or None at the start.

    Returns:
        (smoothed maps, new state).
    """
    if factor <= 0 or len(cams) == 0:
        return cams, state
    out = np.empty_like(cams)
    for i in range(len(cams)):
        state = cams[i] if state is None else factor * state + (1.0 - factor) * cams[i]
        out[i] = state
    return out, state


class _Failure:
    """Carries a worker thread's exception to the main thread through a queue."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put, waiting while the queue is full, unless the run is being stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _END



def parse_time(value: str | float | None) -> float | None:
    """Seconds from ``90``, ``1.5``, ``1:30`` or ``00:01:30.5`` (None stays None).

    Raises:
        UsageError: not a time.
    """
    if value is None or isinstance(value, (int, float)):
        return None if value is None else float(value)
    parts = str(value).strip().split(":")
    try:
        if len(parts) > 3 or not all(parts):
            raise ValueError
        secs = 0.0
        for part in parts:
            secs = secs * 60 + float(part)
    except ValueError:
        raise UsageError(f"time {value!r} is not seconds or [HH:]MM:SS[.ms]: use e.g. 90, 1:30 or 0:01:30.5") from None
    return secs


def _check_options(layout, alpha, colormap, fit, smooth, crf, preset, batch_size, start, duration, top_k) -> None:
    check_render_options(layout, colormap, fit, alpha)
    if not 0.0 <= smooth < 1.0:
        raise UsageError(f"smooth must be within [0, 1) (0: off, 0.6: calm, 0.9: very slow), got {smooth}")
    if not 0 <= crf <= 51:
        raise UsageError(f"crf must be within 0..51 (lower is better quality; 18-23 is typical), got {crf}")
    if preset not in PRESETS:
        raise UsageError(f"unknown x264 preset {preset!r}: use one of {', '.join(PRESETS)}")
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    if top_k < 1:
        raise UsageError(f"top-k must be at least 1, got {top_k}")
    if start is not None and start < 0:
        raise UsageError(f"start must be 0 or more seconds, got {start}")
    if duration is not None and duration <= 0:
        raise UsageError(f"duration must be more than 0 seconds, got {duration}")


class _LabelsWriter:
    """Per-frame top-k labels as CSV (``frame,time,label,probability,class_id,label_2,...``) or JSON Lines."""

    def __init__(self, fh, kind: str, top_k: int, metrics: bool = False) -> None:
        self.fh, self.kind, self.top_k, self.metrics = fh, kind, top_k, metrics
        if kind == "csv":
            self.csv = csv.writer(fh)
            head = ["frame", "time", "label", "probability", "class_id"]
            for j in range(2, top_k + 1):
                head += [f"label_{j}", f"probability_{j}", f"class_id_{j}"]
            if metrics:  # after the labels; empty on frames that were not measured (--metrics-every)
                head += list(_METRIC_COLUMNS)
            self.csv.writerow(head)

    def write(self, index: int, t: float, preds: list[tuple[int, str, float]], m: CamMetrics | None = None) -> None:
        if self.kind == "csv":
            row: list = [index, f"{t:.6f}"]
            for cid, name, p in preds:
                row += [name, f"{p:.6f}", cid]
            if self.metrics:
                row += [""] * (3 * (self.top_k - len(preds)))
                row += [] if m is None else [f"{m.average_drop:.3f}", f"{m.deletion_auc:.6f}",
                                             f"{m.insertion_auc:.6f}"]
            self.csv.writerow(row)
        else:
            obj = {
                "frame": index, "time": round(t, 6),
                "predictions": [{"class_id": c, "label": n, "probability": round(p, 6)} for c, n, p in preds],
            }
            if m is not None:
                obj["metrics"] = m.as_dict()
            self.fh.write(json.dumps(obj) + "\n")

    def summary(self, summary: dict) -> None:
        """JSON Lines end with one ``{"metrics_summary": ...}`` line; a CSV has the per-frame columns only."""
        if self.kind != "csv":
            self.fh.write(json.dumps({"metrics_summary": summary}) + "\n")


def default_output(input_path: str | Path) -> Path:
    """``<stem>_heatmap.mp4`` in the current folder."""
    return Path(f"{Path(input_path).stem}_heatmap.mp4")


def process_video(
    input: str | Path,
    output: str | Path | None = None,
    *,
    model: str | Path | Classifier | CamEngine = DEFAULT_MODEL,
    layer: str | None = None,
    method: str = "gradcam",
    weights: str | Path | None = None,
    unsafe: bool = False,
    class_index: int | None = None,
    layout: str = "overlay",
    alpha: float = 0.4,
    colormap: str = "jet",
    fit: str = "squash",
    smooth: float = 0.0,
    start: float | None = None,
    duration: float | None = None,
    labels_out: str | Path | None = None,
    top_k: int = 3,
    crf: int = 20,
    preset: str = DEFAULT_PRESET,
    batch_size: int = 8,
    overwrite: bool = False,
    ffmpeg: str | None = None,
    progress: ProgressCallback | None = None,
    metrics: bool = False,
    metrics_every: int = 1,
) -> VideoSummary:
    """Make the Grad-CAM heatmap video of a video, streaming (memory does not grow with the video's length).

    Args:
        input: the source video (any format ffmpeg reads).
        output: the heatmap video (``.mp4``, ``.m4v``, ``.mov`` or ``.mkv``); default ``<stem>_heatmap.mp4``.
        model: zoo name, ``.keras`` path, :class:`Classifier` or a built :class:`CamEngine`.
        layer: Grad-CAM layer (default: the model's).
        method: ``gradcam``, ``gradcam++`` or ``scorecam``.
        weights: weights file for a zoo model.
        unsafe: allow ``.keras`` files with Lambda layers.
        class_index: explain this class in every frame instead of each frame's top-1.
        layout: ``overlay`` or ``side-by-side`` (original | overlay; doubles the width).
        alpha: heatmap opacity in [0, 1].
        colormap: one of :data:`vidcam.media.render.COLORMAPS`.
        fit: ``squash`` (default: the whole frame is resized to the model's input, so all of it is explained)
            or ``crop`` (the centre square the ImageNet protocol uses; the rest gets no heat).
        smooth: temporal smoothing of the heatmaps in [0, 1): each frame's map is
            ``smooth * previous + (1 - smooth) * current`` (an exponential moving average over frames, in
            frame order), so the heat does not flicker. 0 (default) is off; 0.5 averages over about 3 frames.
            Labels and probabilities are never smoothed.
        start: seconds to skip at the beginning (video and audio).
        duration: seconds to process from ``start`` (video and audio).
        labels_out: write per-frame top-k labels here: ``.csv`` or ``.jsonl`` (JSON Lines).
        top_k: labels per frame in ``labels_out``.
        crf: x264 quality (0-51, lower is better; 20 default).
        preset: x264 speed preset (default ``superfast``: see :data:`DEFAULT_PRESET`).
        batch_size: frames per engine call (the last batch is padded, so the compiled step never retraces).
        overwrite: replace existing outputs.
        ffmpeg: ffmpeg binary (default ``$VIDCAM_FFMPEG`` or imageio-ffmpeg's).
        progress: called as ``progress(frames_done, frames_total_estimate)`` from the calling thread.
        metrics: measure how faithful each frame's map is (the map as drawn, smoothing included; see
            :mod:`vidcam.cam.metrics`): per frame in ``labels_out``, summarised in the result's ``metrics``.
            Costs about 35 extra forward passes per measured frame.
        metrics_every: measure only every N-th frame (0, N, 2N, ...), to keep long videos affordable.

    Returns:
        A :class:`VideoSummary`.

    Raises:
        InputError: the input is not a readable video with frames.
        UsageError: options out of range or that do not fit the video.
        OutputError: an output exists (without ``overwrite``), is the input, or cannot be written.
        FFmpegError: ffmpeg failed (the message carries its last lines).

    Example:
        >>> s = process_video("video/demo.mp4", "demo_heatmap.mp4", smooth=0.5)  # doctest: +SKIP
        >>> s.frames, s.fps  # doctest: +SKIP
        (150, Fraction(25, 1))
    """
    _check_options(layout, alpha, colormap, fit, smooth, crf, preset, batch_size, start, duration, top_k)
    if metrics_every < 1:
        raise UsageError(f"metrics_every must be at least 1 (every frame), got {metrics_every}")
    output = Path(output) if output is not None else default_output(input)
    if output.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(f"output {output} must end in {', '.join(VIDEO_SUFFIXES)} (vidcam writes H.264)")
    label_kind = None
    if labels_out is not None:
        labels_out = Path(labels_out)
        label_kind = LABEL_SUFFIXES.get(labels_out.suffix.lower())
        if label_kind is None:
            raise UsageError(f"labels file {labels_out} must end in .csv or .jsonl")
    exe = ffmpeg_exe(ffmpeg)
    info = probe(input, ffmpeg=exe)
    total = info.frames_between(start, duration)
    if start and total == 0:
        raise UsageError(f"start {start:g} s is at or after the end of {input} ({info.end:.3f} s)")
    check_output(output, overwrite=overwrite, inputs=(input,))
    if labels_out is not None:
        check_output(labels_out, overwrite=overwrite, inputs=(input, output))
    engine = get_engine(model, layer=layer, method=method, weights=weights, unsafe=unsafe)
    clf = engine.classifier
    if class_index is not None and not 0 <= class_index < clf.num_classes:
        raise UsageError(f"class {class_index} is out of range: the model has {clf.num_classes} classes "
                         f"(0..{clf.num_classes - 1})")
    return _Run(
        info, output, exe, engine, class_index=class_index, layout=layout, alpha=alpha, colormap=colormap,
        fit=fit, smooth=smooth, start=start, duration=duration, labels_out=labels_out, label_kind=label_kind,
        top_k=top_k, crf=crf, preset=preset, batch_size=batch_size, progress=progress, total=total,
        metrics=metrics, metrics_every=metrics_every,
    ).run()


class _Run:
    """One pipelined run (see the module docstring for the stages)."""

    def __init__(self, info: VideoInfo, output: Path, exe: str, engine: CamEngine, **opts) -> None:
        self.info, self.output, self.exe, self.engine = info, output, exe, engine
        self.o = opts
        self.stop = threading.Event()
        h, w = engine.input_size
        self.model_size = (h, w)
        frame_bytes = info.width * info.height * 3
        self.depth = max(1, min(3, _QUEUE_BYTES // max(1, frame_bytes * opts["batch_size"])))
        self.q_in: queue.Queue = queue.Queue(maxsize=self.depth)
        self.q_out: queue.Queue = queue.Queue(maxsize=self.depth)

    # -- stage 1: decode (ffmpeg) + fit to the model ----------------------------------------------------------

    def _reader(self, decoder: FFmpegProcess) -> None:
        info, b = self.info, self.o["batch_size"]
        fh, fw = info.height, info.width
        pipe = decoder.proc.stdout
        index, partial = 0, False
        try:
            while not self.stop.is_set():
                frames = np.empty((b, fh, fw, 3), np.uint8)
                n = 0
                while n < b:
                    view = memoryview(frames[n]).cast("B")
                    got = read_exact(pipe, view)
                    if got < len(view):
                        partial = got > 0
                        break
                    n += 1
                if n:
                    fitted = [shrink_to_model(frames[i], self.model_size, self.o["fit"]) for i in range(n)]
                    small = np.stack([f[0] for f in fitted])
                    if not _put(self.q_in, (index, frames[:n], small, [f[1] for f in fitted]), self.stop):
                        return
                    index += n
                if n < b:
                    break
            if self.stop.is_set():
                return
            rc = decoder.wait()
            if rc != 0:
                raise FFmpegError(f"ffmpeg (decoding {info.path}) failed (exit code {rc}): {decoder.tail()}")
            if partial:
                raise FFmpegError(f"ffmpeg (decoding {info.path}) ended in the middle of a frame")
            if index == 0:
                raise InputError(f"no frames decoded from {info.path} in the selected range")
            _put(self.q_in, _END, self.stop)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            _put(self.q_in, _Failure(e), self.stop)

    # -- stage 2: batched engine + temporal smoothing ---------------------------------------------------------

    def _engine(self) -> None:
        b, smooth, cls = self.o["batch_size"], self.o["smooth"], self.o["class_index"]
        state = None
        try:
            while True:
                item = _get(self.q_in, self.stop)
                if item is _END or isinstance(item, _Failure):
                    _put(self.q_out, item, self.stop)
                    return
                index, frames, small, windows = item
                n = len(small)
                if n < b:  # pad to the fixed batch shape: the compiled step sees one shape only
                    small = np.concatenate([small, np.zeros((b - n, *small.shape[1:]), np.uint8)])
                res = self.engine.run(small, cls)
                cams, state = smooth_maps(res.cams[:n], smooth, state)
                ids, probs = res.top_k(self.o["top_k"])
                measured: dict[int, CamMetrics] = {}
                if self.o["metrics"]:
                    sel = [i for i in range(n) if (index + i) % self.o["metrics_every"] == 0]
                    if sel:
                        found = evaluate_batch(self.engine, small[sel], cams[sel], res.class_ids[sel])
                        measured = {index + i: m for i, m in zip(sel, found)}
                if not _put(self.q_out, (index, frames, cams, windows, res.class_ids[:n],
                                         res.probabilities[:n], ids[:n], probs[:n], measured), self.stop):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            _put(self.q_out, _Failure(e), self.stop)

    # -- stage 3 (this thread): render, encode, labels, progress -----------------------------------------------

    def run(self) -> VideoSummary:
        info, o = self.info, self.o
        clf = self.engine.classifier
        names = clf.class_names
        out_w = info.width * (2 if o["layout"] == "side-by-side" else 1)
        audio = audio_codec_for(info.audio_codecs, self.output.suffix)
        start = o["start"] or 0.0
        # The audio is cut to the video's length, so the output ends with its last frame.
        video_len = o["total"] / info.fps if o["total"] else None
        renderer = Renderer(layout=o["layout"], alpha=o["alpha"], colormap=o["colormap"])
        progress = o["progress"]
        spf = 1 / info.fps
        counts: Counter = Counter()
        measured: dict[int, CamMetrics] = {}
        written = 0
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_output(self.output))
            labels = None
            if o["labels_out"] is not None:
                ltmp = stack.enter_context(atomic_output(o["labels_out"]))
                fh = stack.enter_context(open(ltmp, "w", newline="", encoding="utf-8"))
                labels = _LabelsWriter(fh, o["label_kind"], o["top_k"], o["metrics"])
            decoder = FFmpegProcess(
                decode_args(self.exe, info.path, start=o["start"], duration=o["duration"]),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                what=f"ffmpeg (decoding {info.path})",
            )
            stack.callback(decoder.kill)  # until the full shutdown below is registered
            encoder = FFmpegProcess(
                encode_args(
                    self.exe, tmp, width=out_w, height=info.height, rate=info.fps, crf=o["crf"], preset=o["preset"],
                    audio_from=info.path if audio != "none" else None, audio_codec=audio,
                    audio_start=o["start"], audio_duration=float(video_len) if video_len else o["duration"],
                    sar=info.sar,
                ),
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                what=f"ffmpeg (encoding {self.output})",
            )
            threads = [
                threading.Thread(target=self._reader, args=(decoder,), name="vidcam-reader", daemon=True),
                threading.Thread(target=self._engine, name="vidcam-engine", daemon=True),
            ]
            stack.callback(self._shutdown, threads, decoder, encoder)
            for t in threads:
                t.start()
            if progress:
                progress(0, o["total"])
            while True:
                item = _get(self.q_out, self.stop)
                if item is _END:
                    break
                if isinstance(item, _Failure):
                    raise item.exc
                index, frames, cams, windows, class_ids, probs, ids, top_probs, batch_metrics = item
                measured.update(batch_metrics)
                for i in range(len(cams)):
                    cid = int(class_ids[i])
                    name = names[cid]
                    counts[name] += 1
                    img = renderer(frames[i], cams[i], format_label(name, float(probs[i, cid])), windows[i])
                    try:
                        write_frame(encoder.proc.stdin, img)
                    except (BrokenPipeError, ConnectionResetError):
                        encoder.check()
                        raise FFmpegError(f"ffmpeg (encoding {self.output}) stopped reading frames") from None
                    if labels is not None:
                        preds = [(int(c), names[int(c)], float(p)) for c, p in zip(ids[i], top_probs[i])]
                        labels.write(index + i, float(start + (index + i) * spf), preds,
                                     batch_metrics.get(index + i))
                written += len(cams)
                if progress:
                    progress(written, o["total"])
            encoder.proc.stdin.close()
            encoder.check()
            summary = None
            if o["metrics"]:
                frames_measured = sorted(measured)
                summary = summarize([measured[k] for k in frames_measured], indices=frames_measured)
                if labels is not None:
                    labels.summary(summary)
            seconds = time.perf_counter() - t0
        return VideoSummary(
            input=str(info.path), output=str(self.output), frames=written, fps=info.fps,
            width=out_w + out_w % 2, height=info.height + info.height % 2, audio=audio,
            labels_out=str(o["labels_out"]) if o["labels_out"] is not None else None, seconds=seconds,
            top_labels=counts.most_common(), source=info, metrics=summary,
        )

    def _shutdown(self, threads: list[threading.Thread], *children: FFmpegProcess) -> None:
        """Stop the workers (they poll ``stop`` at every queue operation) and kill the ffmpeg children (which
        also unblocks a reader waiting on the decoder's pipe). After a successful run both have exited."""
        self.stop.set()
        for child in children:
            child.kill()
        for t in threads:
            t.join(timeout=60)
