#!/usr/bin/env python3
"""Many short videos: local (one after another, one process) vs Ray (one task per video on an actor pool).

    .venv/bin/python scripts/bench_cluster.py                 # 8 clips of 4 s, 320x240, 25 fps, default model
    .venv/bin/python scripts/bench_cluster.py --videos 4 --seconds 2 --model tiny   # quick smoke run

Both engines get the same generated clips (ffmpeg ``testsrc2``) and write the same heatmap videos. Reported
per engine: wall time, files/s and frames/s. Ray's wall time includes starting the local Ray instance and
its actors (each loads the model once); "ray, after start" leaves out ``ray.init`` only, which a long-lived
cluster pays once. The machine's core count sets what Ray can win here: on one machine both engines share
the same cores; Ray's point is a cluster with more of them (or GPUs).
Needs the cluster extra: ``pip install "vidcam[cluster]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_clip(exe: str, path: Path, seconds: float, size: str, hue: int) -> Path:
    subprocess.run(
        [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}", "-vf", f"hue=h={hue}",
         "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return path


def tiny_model(path: Path) -> Path:
    """A tiny real CNN (32x32 input), for a run that measures overheads rather than the model."""
    import keras
    from keras import layers

    from vidcam.models.zoo import save_classifier_metadata

    keras.utils.set_random_seed(7)
    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(3, activation="softmax")(x)
    keras.Model(inp, out).save(path)
    save_classifier_metadata(path, {"class_names": ["a", "b", "c"], "preprocess": "unit", "fit": "squash"})
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=8, help="how many clips (default 8)")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each clip (default 4)")
    ap.add_argument("--size", default="320x240", help="clip size (default 320x240)")
    ap.add_argument("--model", default="efficientnet_lite0", help="zoo name, .keras path, or 'tiny'")
    ap.add_argument("--workers", type=int, default=None, help="Ray actors (default: one per CPU)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args()

    import imageio_ffmpeg

    from vidcam.cli import load_tensorflow
    from vidcam.cluster import RayExecutor, ray_session
    from vidcam.jobs.executors import LocalExecutor
    from vidcam.jobs.videos import process_videos

    load_tensorflow()
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidcam-bench-cluster-") as tmp:
        work = Path(tmp)
        model = str(tiny_model(work / "tiny.keras")) if args.model == "tiny" else args.model
        clips = [make_clip(exe, work / f"clip{i:02d}.mp4", args.seconds, args.size, (i * 47) % 360)
                 for i in range(args.videos)]

        t0 = time.perf_counter()
        local = process_videos(clips, work / "local", executor=LocalExecutor(), model=model)
        t_local = time.perf_counter() - t0

        t0 = time.perf_counter()
        with ray_session() as ray:
            t_init = time.perf_counter() - t0
            t1 = time.perf_counter()
            on_ray = process_videos(clips, work / "ray", executor=RayExecutor(workers=args.workers), model=model)
            t_ray_after = time.perf_counter() - t1
            cpus = int(ray.cluster_resources().get("CPU", 0))
        t_ray = time.perf_counter() - t0

        for report in (local, on_ray):
            bad = [r.input for r in report.failures]
            if bad:
                print(f"bench_cluster: failed: {bad}", file=sys.stderr)
                return 1
        frames = sum(r.summary.frames for r in local.items)
        assert frames == sum(r.summary.frames for r in on_ray.items)
        for name, secs, workers in (("local, sequential", t_local, 1), ("ray, total", t_ray, on_ray.workers),
                                    ("ray, after start", t_ray_after, on_ray.workers)):
            rows.append({"engine": name, "workers": workers, "seconds": round(secs, 2),
                         "files_per_s": round(args.videos / secs, 3), "frames_per_s": round(frames / secs, 1)})
    info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "load_average": round(os.getloadavg()[0], 1),
        "ray_cpus": cpus, "model": args.model,
        "videos": args.videos, "seconds_each": args.seconds, "size": args.size, "frames": frames,
        "ray_init_s": round(t_init, 2), "rows": rows,
    }
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{args.videos} clips of {args.seconds:g} s at {args.size}, 25 fps ({frames} frames), model {args.model}, "
          f"{info['machine']} (load average {info['load_average']} at the end); ray.init took {t_init:.1f} s")
    print(f"{'engine':<18} {'workers':>7} {'seconds':>8} {'files/s':>8} {'frames/s':>9}")
    for r in rows:
        print(f"{r['engine']:<18} {r['workers']:>7} {r['seconds']:>8.1f} {r['files_per_s']:>8.3f} "
              f"{r['frames_per_s']:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
