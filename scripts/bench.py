#!/usr/bin/env python3
"""vidcam's video benchmark: the book's way vs `vidcam video`, each stage alone, and memory.

One command, one run, one generated clip (720p, 10 s, 25 fps, with audio), the default model:

    .venv/bin/python scripts/bench.py            # full run (a few minutes on 2 cores)
    .venv/bin/python scripts/bench.py --quick    # short smoke version (CI runs it, never timed)
    .venv/bin/python scripts/bench.py --method ablationcam   # (b) and the engine stage with another CAM method

Prints a table of frames/s:
  (a) the book's way: ffmpeg -> JPEG frames -> per-image Grad-CAM with tf-keras-vis at batch 1 -> JPEG -> ffmpeg,
      in its own process with TensorFlow as installed, and again (75 frames) with oneDNN on as vidcam runs it
  (b) `vidcam video` end to end (the streaming pipeline), and the whole command with its start-up, three runs
  (c) after each run of (b), in a process of its own: each stage alone (decode + fit to the model, engine, render,
      encode), with the thread counts `vidcam video` gives the engine and the encoder, and its CPU-ms per frame
      (ffmpeg's and every thread's included), the pipeline limit L = 1 / sum(1 / stage rate) (stages one after
      another) and the CPU budget B = cores / sum(CPU per frame), the rate if every core did useful work all the
      time; the machine's speed drifts within a run, so each run of (b) is held against the stages timed right
      after it, and the pair with the median share of the budget is the one reported
  (d) a lossless clip and the same clip with its middle half frozen (repeated frames reuse their result and are
      written as skipped pictures, not encoded), three pairs, the one with the median ratio
then the start-up (a one-frame video vs a bare `import tensorflow`, interleaved, medians), b/a, the pipeline's
share of the budget for the work it did itself (the CLI decodes the first frames while TensorFlow imports, before
the pipeline's clock starts: their decoding is left out of its share; b/B counts them too), also on the long
clip, where the engine's first call and the pipeline's fill and drain weigh less, the share of
the cores the process tree keeps busy while frames flow, the host's steal time (a virtual machine's cores
lent to other work: a run with steal measures the host, not vidcam), the costliest stage, and peak RSS of
`vidcam video` on a 10 s and a 60 s clip. All numbers come from this one run: ratios between runs on a noisy
machine mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's settings as installed, before importing vidcam turns oneDNN on (vidcam/__init__.py): the book's way
# runs with them, as the book's reader would run it.
TF_ENV = {k: os.environ.get(k) for k in ("TF_ENABLE_ONEDNN_OPTS",)}
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def make_clip(exe: str, path: Path, seconds: float, size: str = "1280x720", rate: int = 25,
              freeze: tuple[float, float] | None = None) -> Path:
    """A testsrc2 clip with a sine track; ``freeze=(a, b)``: the picture held from a to b seconds. Clips made for
    the freeze comparison are lossless (``freeze=(0, 0)`` for none), so a held picture decodes to the same pixels
    each frame, as a screen recorder's repeated frames do (x264's lossy frames of a held picture all differ a
    little: it keeps refining them)."""
    video = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    graph = []
    if freeze is not None:  # lossless at ultrafast (CAVLC): it decodes at about the cost of the lossy clip
        video = ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p"]
        if freeze[1] > freeze[0]:
            first, last = round(freeze[0] * rate), round(freeze[1] * rate) - 1
            graph = ["-filter_complex", f"[0:v]split[a][b];[a][b]freezeframes=first={first}:last={last}:"
                                        f"replace={first - 1}[v]", "-map", "[v]", "-map", "1:a"]
    subprocess.run(
        [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
         *graph, *video, "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )
    return path


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its children that have been waited for."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def steal_seconds() -> float:
    """Core-seconds the hypervisor has run something else on this machine's virtual CPUs since boot (steal time,
    /proc/stat; 0 on bare metal or where not reported): wall time in which no process here could run."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def median_at(values: list[float]) -> int:
    """Where the median of ``values`` is (the upper one of an even count): which run of several to report."""
    return sorted(range(len(values)), key=values.__getitem__)[len(values) // 2]


def rate(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("inf")


def restore_tf_env(env) -> None:
    """Put TensorFlow's settings in ``env`` (a dict or ``os.environ``) back to what this process was given."""
    for k, v in TF_ENV.items():
        env.pop(k, None)
        if v is not None:
            env[k] = v


def tf_env(onednn: bool | None) -> dict[str, str]:
    """This process's environment with TensorFlow's settings as installed (None) or oneDNN forced on/off."""
    env = dict(os.environ)
    restore_tf_env(env)
    if onednn is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = "1" if onednn else "0"
    return env


def book_in_child(clip: Path, work: Path, max_frames: int | None, onednn: bool | None) -> tuple[float, int]:
    """(a) in a fresh process whose TensorFlow has the settings of :func:`tf_env` (vidcam's own are on here)."""
    work.mkdir()
    out = subprocess.run([sys.executable, __file__, "--book-child", str(clip), str(work), str(max_frames or 0)],
                         env=tf_env(onednn), check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["fps"], r["frames"]


def book_child(clip: Path, work: Path, max_frames: int) -> None:
    from vidcam.cli import load_tensorflow
    from vidcam.models.zoo import load_classifier

    restore_tf_env(os.environ)  # importing vidcam set its defaults
    load_tensorflow()
    from vidcam.media.ffmpeg_cmd import ffmpeg_exe

    fps, frames = bench_book(ffmpeg_exe(), clip, work, load_classifier(), max_frames or None)
    print(json.dumps({"fps": fps, "frames": frames}))


def bench_book(exe: str, clip: Path, work: Path, model, max_frames: int | None) -> tuple[float, int]:
    """The book's three manual steps, with tf-keras-vis Gradcam at batch 1 (its recipe)."""
    import cv2
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.scores import CategoricalScore

    frames_dir, out_dir = work / "book_frames", work / "book_out"
    frames_dir.mkdir()
    out_dir.mkdir()
    t0 = time.perf_counter()
    step1 = [exe, "-nostdin", "-loglevel", "error", "-i", str(clip), "-vf", "fps=25"]
    if max_frames:
        step1 += ["-frames:v", str(max_frames)]
    subprocess.run([*step1, str(frames_dir / "thumb%04d.jpg")], check=True)
    gradcam = Gradcam(model.model, clone=True)  # the model outputs logits already: no ReplaceToLinear needed
    size = model.input_size
    files = sorted(frames_dir.glob("thumb*.jpg"))
    for i, f in enumerate(files, 1):
        frame = cv2.imread(str(f))[..., ::-1]
        x = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA).astype("float32")
        x = (x - 127.0) / 128.0
        probs = model.model.predict(x[None], verbose=0)[0]
        cls = int(np.argmax(probs))
        cam = gradcam(CategoricalScore([cls]), x[None], penultimate_layer="top_activation")[0]
        heat = cv2.applyColorMap(np.uint8(255 * cv2.resize(cam, (frame.shape[1], frame.shape[0]))), cv2.COLORMAP_JET)
        out = cv2.addWeighted(frame[..., ::-1], 0.6, heat, 0.4, 0)
        cv2.putText(out, model.class_names[cls], (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        cv2.imwrite(str(out_dir / f"result_{i:04d}.jpg"), out)
    subprocess.run([exe, "-nostdin", "-loglevel", "error", "-y", "-framerate", "25", "-i",
                    str(out_dir / "result_%04d.jpg"), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(work / "book.mp4")], check=True)
    return rate(len(files), time.perf_counter() - t0), len(files)


def bench_stages(exe: str, clip: Path, engine, batch: int) -> tuple[dict[str, float], dict[str, float]]:
    """Each stage alone, on the same clip, as the pipeline runs it: (frames/s, CPU-ms per frame) per stage, the
    CPU of ffmpeg's processes included (decode, encode) and of every thread (TensorFlow's, OpenCV's).

    Every frame is kept for the next stage, in memory touched before the clock starts: the pipeline reuses its
    memory (it streams), so the kernel zeroing fresh pages (up to 2.5x a stage's own CPU here) is no stage's cost.
    """
    import cv2

    from vidcam.jobs.video import encoder_threads
    from vidcam.media.ffmpeg_cmd import EncodeOptions, EncodeTarget
    from vidcam.media.probe import probe
    from vidcam.media.render import RenderOptions, format_label, shrink_to_model
    from vidcam.media.sink import VideoSink
    from vidcam.media.source import VideoSource, planar_matrix
    from vidcam.media.yuv import shrink_i420_to_model

    info = probe(clip)
    w, h = info.width, info.height
    matrix = planar_matrix(info)  # as the video job: I420 from decoder to encoder where the source allows it
    fit = ((lambda f: shrink_to_model(f, engine.input_size, "squash")[0]) if matrix is None
           else (lambda f: shrink_i420_to_model(f, engine.input_size, matrix)))
    rates, cpu = {}, {}
    cv2.setNumThreads(1)  # as the video job runs OpenCV (vidcam.jobs.video.serial_opencv)

    def done(name: str, n: int, t0: float, c0: float) -> None:
        rates[name] = rate(n, time.perf_counter() - t0)
        cpu[name] = 1000 * (cpu_seconds() - c0) / n

    # decode (vidcam's reader, + fit to the model size, which the stage after it does) into batches already touched
    source = VideoSource(info, exe, batch_size=batch, planar=matrix is not None)
    fit(np.zeros(source.pool.shape[1:], np.uint8))  # imports OpenCV: not a frame's cost
    source.pool.keep = info.frames // batch + 2
    for _ in range(source.pool.keep):
        touched = np.empty(source.pool.shape, np.uint8)
        touched.fill(0)  # np.zeros would leave the pages untouched (calloc): the reader would fault them in
        source.pool.give(touched)
    t0, c0 = time.perf_counter(), cpu_seconds()
    frames, small = [], []
    for b in source:
        frames.extend(b.pixels)
        small.extend(fit(f) for f in b.pixels)
    n = len(frames)
    done("decode", n, t0, c0)
    # engine: batched Grad-CAM on pre-decoded model-size tensors (first call traces: warm up first)
    small = np.stack(small)
    engine.run(small[:batch])
    t0, c0 = time.perf_counter(), cpu_seconds()
    cams, labels = [], []
    for i in range(0, n, batch):
        r = engine.run(small[i : i + batch])
        cams.extend(r.cams)
        labels.extend(format_label(engine.classifier.class_names[c], float(r.probabilities[j, c]))
                      for j, c in enumerate(r.class_ids))
    done("engine", n, t0, c0)
    # render (each picture dropped when the next is drawn, as the pipeline does), then the pictures for the encoder
    renderer = RenderOptions().renderer(matrix)
    t0, c0 = time.perf_counter(), cpu_seconds()
    for i in range(n):
        renderer(frames[i], cams[i], labels[i])
    done("render", n, t0, c0)
    rendered = np.zeros((n, *frames[0].shape), np.uint8)
    for i in range(n):
        rendered[i] = renderer(frames[i], cams[i], labels[i])
    # encode (default preset and the video job's encoder threads), from frames in memory, each with its time (as
    # the video job sends them)
    with tempfile.TemporaryDirectory() as d:
        target = EncodeTarget(w, h, info.time_base, matrix=matrix or "smpte170m")
        encode = encoder_threads(EncodeOptions())
        sink = VideoSink(exe, Path(d) / "enc.mp4", target, encode=encode, what="ffmpeg (encoding)")
        write = sink.write if matrix is None else sink.write_i420
        period = round(1e9 / float(info.fps))
        t0, c0 = time.perf_counter(), cpu_seconds()
        for i, f in enumerate(rendered):
            write(f, i * period)
        sink.close(n * period)
        done("encode", n, t0, c0)
    return rates, cpu


def stages_child(clip: Path, out: Path, batch: int, method: str) -> None:
    """(c) in a process of its own: TensorFlow and the engine loaded as `vidcam video` loads them, each stage
    timed alone (:func:`bench_stages`), the results and the machine's TensorFlow facts written to ``out``."""
    from vidcam.cam.engine import CamEngine, leave_cores
    from vidcam.cli import load_tensorflow  # TensorFlow's start-up chatter kept off the table
    from vidcam.media.ffmpeg_cmd import ffmpeg_exe
    from vidcam.models.zoo import load_classifier

    load_tensorflow()
    leave_cores(1)  # the engine's threads as `vidcam video` sets them (vidcam.jobs.video.video_engine)
    clf = load_classifier()
    engine = CamEngine(clf, method=method)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    t0, s0 = time.perf_counter(), steal_seconds()
    stages, cpu_ms = bench_stages(ffmpeg_exe(), clip, engine, batch)
    steal = (steal_seconds() - s0) / ((time.perf_counter() - t0) * (os.cpu_count() or 1))
    out.write_text(json.dumps({
        "stages": stages, "cpu_ms": cpu_ms, "steal": steal, "load": os.getloadavg()[0], "model": clf.name,
        "tensorflow": tf.__version__, "gpus": [g.name for g in gpus],
        "onednn": "on" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1" else "as installed"}))


def run_stages(clip: Path, work: Path, batch: int, method: str) -> dict:
    """:func:`stages_child` in a child process (this one stays small for the RSS of the `vidcam video` runs)."""
    out = work / "stages.json"
    p = subprocess.run([sys.executable, __file__, "--stages-child", str(clip), str(out), str(batch), method],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"the stages alone failed: {p.stderr[-2000:]}")
    return json.loads(out.read_text())


def run_vidcam(clip: Path, out: Path, extra: list[str] | None = None) -> dict:
    """`vidcam video` in a child process: frames/s of the pipeline (``fps``) and of the whole command with Python,
    TensorFlow and model start-up (``command_fps``), its wall time, CPU time (the process and its ffmpeg
    children), peak RSS of that process, and the job's summary."""
    args = [sys.executable, "-m", "vidcam", "video", str(clip), "-o", str(out), "--overwrite", "--quiet",
            "--json", *(extra or [])]
    t0, s0 = time.perf_counter(), steal_seconds()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    stdout = proc.stdout.read()
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # the child's usage includes its waited-for children (ffmpeg)
    seconds, stolen = time.perf_counter() - t0, steal_seconds() - s0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"vidcam video failed: {stderr.decode(errors='replace')[-2000:]}")
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    frames = int(summary["frames"])
    return {"fps": rate(frames, float(summary.get("seconds") or seconds)), "frames": frames,
            "rss": usage.ru_maxrss * 1024, "command_fps": rate(frames, seconds), "wall": seconds,
            "cpu": usage.ru_utime + usage.ru_stime, "pipeline_seconds": float(summary.get("seconds") or seconds),
            "repeats": int(summary.get("repeats", 0)), "ahead": int(summary.get("decoded_ahead", 0)),
            "steal": stolen / (seconds * (os.cpu_count() or 1))}


def bench_startup(exe: str, work: Path, runs: int = 3) -> dict:
    """Start-up as a user sees it: `vidcam video` on a one-frame 720p clip against a bare `import tensorflow`,
    interleaved (so both see the same load), after one warm-up run (file cache, converted weights and compiled
    step cached); medians of ``runs`` each."""
    clip = make_clip(exe, work / "one_frame.mp4", 0.04)
    run_vidcam(clip, work / "one_frame_out.mp4")
    bare, command, cpu = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, capture_output=True)
        bare.append(time.perf_counter() - t0)
        r = run_vidcam(clip, work / "one_frame_out.mp4")
        command.append(r["wall"])
        cpu.append(r["cpu"])
    return {"import_tensorflow": statistics.median(bare), "command": statistics.median(command),
            "command_cpu": statistics.median(cpu)}


def main() -> None:
    if sys.argv[1:2] == ["--book-child"]:
        return book_child(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    if sys.argv[1:2] == ["--stages-child"]:
        return stages_child(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short clips, few book frames: a smoke run for CI")
    from vidcam.jobs.video import VideoOptions  # no TensorFlow

    ap.add_argument("--batch", type=int, default=VideoOptions().batch_size,
                    help="frames per engine call, in (b) and the engine stage (default: the video job's)")
    ap.add_argument("--size", default="1280x720", help="the clips' frame size, WxH (default 1280x720)")
    ap.add_argument("--skip-book", action="store_true", help="leave out (a), the book's way (slow on a CPU)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    from vidcam.cam.methods import method_names  # no TensorFlow

    ap.add_argument("--method", default="gradcam", choices=method_names(), metavar="METHOD",
                    help="CAM method of (b) and the engine stage (`vidcam methods`); (a) is always Grad-CAM")
    args = ap.parse_args()
    method_args = ([] if args.method == "gradcam" else ["--method", args.method]) + ["--batch", str(args.batch)]

    from vidcam.cam.engine import usable_cores  # no TensorFlow
    from vidcam.media.ffmpeg_cmd import ffmpeg_exe

    exe = ffmpeg_exe()
    short, long_ = (2, 6) if args.quick else (10, 60)
    book_frames = 8 if args.quick else None
    cores = usable_cores()  # the cores the video job counts when it shares them out
    with tempfile.TemporaryDirectory(prefix="vidcam-bench-") as d:
        work = Path(d)
        clip = make_clip(exe, work / "clip.mp4", short, args.size)
        long_clip = make_clip(exe, work / "clip_long.mp4", long_, args.size)
        still = make_clip(exe, work / "lossless.mp4", short, args.size, freeze=(0, 0))
        frozen = make_clip(exe, work / "lossless_freeze.mp4", short, args.size, freeze=(short / 4, short * 3 / 4))
        # This process never loads TensorFlow (the stages and the book's way run in children of their own): a
        # child's peak RSS counts the pages it shares with its parent when forked, so a parent holding TensorFlow
        # and decoded frames would inflate the RSS of the `vidcam video` runs.
        start = bench_startup(exe, work, runs=1 if args.quick else 3)
        # (b) three times, each followed by (c), the stages alone: this machine's speed drifts by up to 40% within
        # one bench run (its cores are shared), so each pipeline run is held against the stages timed next to it
        # and the pair with the median share of the budget is reported.
        runs, stage_runs = [], []
        for _ in range(1 if args.quick else 3):
            runs.append(run_vidcam(clip, work / "vidcam.mp4", method_args))
            stage_runs.append(run_stages(clip, work, args.batch, args.method))
        long_run = run_vidcam(long_clip, work / "vidcam_long.mp4", method_args)
        long_stages = stage_runs[-1] if args.quick else run_stages(clip, work, args.batch, args.method)
        # (d) in pairs, the clip without the freeze then with it, three times: the pair with the median ratio
        # (one pair moved by up to 0.3x with the host's load).
        pairs = [[run_vidcam(c, work / "vidcam_lossless.mp4", method_args) for c in (still, frozen)]
                 for _ in range(1 if args.quick else 3)]
        speedups = [f["fps"] / p["fps"] for p, f in pairs]
        plain, freeze = pairs[median_at(speedups)]

        first = stage_runs[0]
        gpus = first["gpus"]
        print(f"machine: {platform.machine()}, {cores} cores, "
              f"{f'{len(gpus)} GPU ({gpus[0]})' if gpus else 'no GPU'}, "
              f"python {platform.python_version()}, TensorFlow {first['tensorflow']} (oneDNN {first['onednn']}), "
              f"load average {first['load']:.1f}; clip: {args.size}, {short} s, 25 fps, AAC audio; model "
              f"{first['model']}, batch {args.batch}"
              + (f"; method {args.method} for (b) and the engine" if args.method != "gradcam" else ""), flush=True)
        nan = (float("nan"), 0)
        a_fps, a_frames = nan if args.skip_book else book_in_child(clip, work / "book", book_frames, None)
        a1_fps, a1_frames = nan if args.skip_book else book_in_child(clip, work / "book1", book_frames or 75, True)

    def own_budget(run: dict, cpu_ms: dict) -> float:
        """The budget for the work a run's pipeline did itself: the CLI decodes the first frames while TensorFlow
        imports (vidcam.jobs.video.DecodeAhead), before the pipeline's clock starts, so their decoding (and, to
        err on the strict side, their fitting, which the decode stage includes) is left out of its share."""
        return cores * 1000.0 / (sum(cpu_ms.values()) - cpu_ms["decode"] * run["ahead"] / run["frames"])

    shares = [r["fps"] / own_budget(r, st["cpu_ms"]) for r, st in zip(runs, stage_runs)]
    middle = median_at(shares)
    b, stages, cpu_ms, stages_steal = runs[middle], *(stage_runs[middle][k] for k in ("stages", "cpu_ms", "steal"))
    fraction, long_fraction = shares[middle], long_run["fps"] / own_budget(long_run, long_stages["cpu_ms"])
    limit = 1.0 / sum(1.0 / r for r in stages.values())
    budget = cores * 1000.0 / sum(cpu_ms.values())  # frames/s if every core did useful work all the time
    long_budget = cores * 1000.0 / sum(long_stages["cpu_ms"].values())
    bound = max(cpu_ms, key=cpu_ms.get)
    # The process tree's CPU while frames flow: the long run's CPU less a start-up's and less the decoding done
    # before the pipeline started, over the pipeline's time.
    busy = ((long_run["cpu"] - start["command_cpu"] - long_stages["cpu_ms"]["decode"] * long_run["ahead"] / 1000)
            / (long_run["pipeline_seconds"] * cores))
    rows = [("(a) book: JPEG frames + tf-keras-vis batch 1", a_fps, f"{a_frames} frames, TensorFlow as installed"),
            ("    the same with oneDNN on (as vidcam runs)", a1_fps, f"{a1_frames} frames"),
            ("(b) vidcam video, end to end", b["fps"],
             f"{b['frames']} frames, {b['ahead']} of them decoded while TensorFlow imported; runs: "
             + "/".join(f"{r['fps']:.1f}" for r in runs)),
            ("    the same, whole command with start-up", b["command_fps"], "Python + TensorFlow + model load"),
            (f"    the same pipeline on the {long_} s clip", long_run["fps"],
             f"{long_run['frames']} frames ({long_run['ahead']} decoded ahead): the engine's first call and the "
             "pipeline's fill and drain spread thinner"),
            *[(f"(c) stage: {k}", v, f"{cpu_ms[k]:.1f} CPU-ms per frame (timed after that run of (b); runs: "
               + "/".join(f"{st['stages'][k]:.0f}" for st in stage_runs) + ")") for k, v in stages.items()],
            ("    pipeline limit L = 1/sum(1/stage)", limit, "stages one after another"),
            ("    CPU budget B = cores/sum(CPU per frame)", budget, f"{cores} cores, "
                                                               f"{sum(cpu_ms.values()):.1f} CPU-ms per frame"),
            ("(d) lossless clip", plain["fps"], f"{plain['frames']} frames, {plain['repeats']} repeated"),
            ("    the same with its middle half frozen", freeze["fps"],
             f"{freeze['frames']} frames, {freeze['repeats']} repeated")]
    print()
    print(f"{'measurement':<48} {'frames/s':>9}  note")
    for name, value, note in rows:
        print(f"{name:<48} {value:>9.1f}  {note}")
    print()
    print(f"start-up: {start['command']:.2f} s for a one-frame video vs {start['import_tensorflow']:.2f} s for "
          f"`import tensorflow` alone: ratio {start['command'] / start['import_tensorflow']:.2f}")
    print(f"b/a = {b['fps'] / a_fps:.1f}x (whole command {b['command_fps'] / a_fps:.1f}x; against the book with "
          f"oneDNN {b['fps'] / a1_fps:.1f}x and {b['command_fps'] / a1_fps:.1f}x)")
    print(f"pipeline: {fraction:.2f} of the CPU budget for the work it did itself (each run of (b) against the "
          f"stages timed after it: {'/'.join(f'{x:.2f}' for x in shares)}; {long_fraction:.2f} on the {long_} s "
          f"clip; b/B = {b['fps'] / budget:.2f} and {long_run['fps'] / long_budget:.2f} counting the frames "
          f"decoded while TensorFlow imported as its own)   process-tree CPU while frames flow: {busy:.2f} of "
          f"{cores} cores")
    print(f"host steal (the hypervisor running other work on these CPUs): {b['steal']:.1%} of the cores' time "
          f"during (b), {long_run['steal']:.1%} on the long clip, {stages_steal:.1%} while the stages ran alone")
    print(f"costliest stage: {bound} ({cpu_ms[bound]:.1f} of {sum(cpu_ms.values()):.1f} CPU-ms per frame); "
          f"freeze: {freeze['fps'] / plain['fps']:.2f}x the frames/s of the same clip without it (pairs: "
          + "/".join(f"{x:.2f}" for x in speedups) + ")")
    print(f"peak RSS: {b['rss'] / 2**20:.0f} MiB for {short} s, {long_run['rss'] / 2**20:.0f} MiB for {long_} s "
          f"({long_run['frames']} frames): ratio {long_run['rss'] / b['rss']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "book_fps": a_fps, "book_onednn_fps": a1_fps, "vidcam_fps": b["fps"],
            "vidcam_command_fps": b["command_fps"],
            "stages": stages, "cpu_ms": cpu_ms, "limit_fps": limit, "budget_fps": budget, "bound": bound,
            "budget_fraction": fraction, "long_fps": long_run["fps"], "long_budget_fraction": long_fraction,
            "budget_fraction_all_frames": b["fps"] / budget, "budget_fractions": shares,
            "vidcam_runs_fps": [r["fps"] for r in runs], "stage_runs": [st["stages"] for st in stage_runs],
            "long_stages": long_stages["stages"], "decoded_ahead": b["ahead"],
            "long_decoded_ahead": long_run["ahead"], "busy_cores_fraction": busy, "startup": start,
            "steal": {"b": b["steal"], "long": long_run["steal"], "stages": stages_steal},
            "freeze_speedup": freeze["fps"] / plain["fps"], "freeze_speedups": speedups, "repeats": freeze["repeats"],
            "rss_short": b["rss"], "rss_long": long_run["rss"], "quick": args.quick,
            "size": args.size, "batch": args.batch, "gpus": len(gpus),
            **({"method": args.method} if args.method != "gradcam" else {}),
        }, indent=1))


if __name__ == "__main__":
    main()
