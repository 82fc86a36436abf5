#!/usr/bin/env python3
"""`vidcam video` of this checkout against another revision, on the same clip, interleaved (A B A B ...).

    .venv/bin/python scripts/bench_compare.py --against 763eb4e          # 3 rounds on the 10 s 720p bench clip
    .venv/bin/python scripts/bench_compare.py --against HEAD~3 --this HEAD --rounds 5 --seconds 4

The other revision is checked out into a temporary git worktree and run with this venv (its own ``vidcam``
package first on the path). Runs alternate, so a machine whose load changes during the comparison hurts both
sides alike; the ratio of the medians (this / other) is what to read. Rates are the pipeline's own
(frames / seconds from the summary, start-up excluded) and the whole command's (start-up included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import make_clip  # noqa: E402


def run(tree: Path, clip: Path, out: Path) -> tuple[float, float]:
    """(pipeline frames/s, whole-command frames/s) of one `vidcam video` run from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "vidcam", "video", str(clip), "-o", str(out), "-y", "--json"],
                       cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"vidcam video from {tree} failed: {p.stderr[-1500:]}")
    s = json.loads(p.stdout.strip().splitlines()[-1])
    return float(s["frames_per_second"]), int(s["frames"]) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", required=True, help="the other git revision")
    ap.add_argument("--this", help="a revision for this side too (default: the checkout as it is)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()

    from vidcam.media.ffmpeg_cmd import ffmpeg_exe

    with tempfile.TemporaryDirectory(prefix="vidcam-bench-compare-") as d:
        work = Path(d)
        other, this = work / "other", ROOT
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(other), args.against],
                       check=True)
        if args.this:
            this = work / "this"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(this), args.this],
                           check=True)
        try:
            clip = make_clip(ffmpeg_exe(), work / "clip720.mp4", args.seconds)
            results: dict[str, list[tuple[float, float]]] = {"this": [], "other": []}
            for i in range(args.rounds):
                for name, tree in (("this", this), ("other", other)) if i % 2 == 0 else (("other", other),
                                                                                           ("this", this)):
                    results[name].append(run(tree, clip, work / f"{name}.mp4"))
                    print(f"round {i + 1}: {name:5} pipeline {results[name][-1][0]:6.1f} frames/s, "
                          f"whole command {results[name][-1][1]:6.1f} frames/s", flush=True)
        finally:
            for tree in {other, this} - {ROOT}:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in results.items()}
    print(f"\nthis checkout vs {args.against} ({args.rounds} rounds, {args.seconds:g} s 720p clip, load average "
          f"{os.getloadavg()[0]:.1f}): pipeline {med['this'][0]:.1f} vs {med['other'][0]:.1f} frames/s, ratio "
          f"{med['this'][0] / med['other'][0]:.2f}; whole command {med['this'][1]:.1f} vs {med['other'][1]:.1f}, "
          f"ratio {med['this'][1] / med['other'][1]:.2f}")


if __name__ == "__main__":
    main()
