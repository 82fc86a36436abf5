#!/usr/bin/env python3
"""Regenerate the README's pictures of the report: docs/report.png (the page of
`vidcam video video/demo.mp4 --report out/demo.html`, shot by headless Chromium) and docs/timeline.png (the
timeline PNG that run writes beside the page), each kept under 300 kB.

    .venv/bin/python scripts/screenshots.py          # needs Debian's chromium (apt-get install chromium)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 300_000


def small_png(src: Path, dest: Path, width: int) -> None:
    """``src`` scaled to ``width`` pixels wide and quantised to 256 colours (screenshots are mostly flat)."""
    from PIL import Image

    with Image.open(src) as img:
        img = img.convert("RGB")
        if img.width > width:
            img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
        img.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(dest, optimize=True)
    if dest.stat().st_size >= LIMIT:
        raise SystemExit(f"{dest} is {dest.stat().st_size} bytes, over {LIMIT}: use a smaller width")


def main() -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("no chromium: apt-get install chromium")
    vidcam = Path(sys.executable).with_name("vidcam")
    out, docs = ROOT / "out", ROOT / "docs"
    docs.mkdir(exist_ok=True)
    subprocess.run([str(vidcam), "video", "video/demo.mp4", "-o", "out/demo_heatmap.mp4", "--report", "out/demo.html",
                    "--overwrite", "--quiet"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "report.png"
        # --virtual-time-budget lets the page load the video's first frame and draw its timeline before the shot.
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1100,1150", "--virtual-time-budget=5000", f"--screenshot={shot}",
                        (out / "demo.html").as_uri()], check=True, capture_output=True, timeout=120)
        small_png(shot, docs / "report.png", 900)
    small_png(out / "demo.png", docs / "timeline.png", 1000)
    for p in (docs / "report.png", docs / "timeline.png"):
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size // 1000} kB")


if __name__ == "__main__":
    main()
