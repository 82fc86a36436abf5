#!/usr/bin/env python3
"""Make video/demo.mp4: a slow pan and zoom over the real cat photo, then the real dog photo, with a sine tone.

6 s (150 frames), 640x360, 25 fps, H.264 + AAC, well under 1.5 MB. The frames are drawn here with OpenCV (a moving,
shrinking 16:9 window over each photo, so the animal grows in the frame) and piped raw into ffmpeg, which
adds a 440 Hz sine track from its ``lavfi`` source. Deterministic: re-running gives the same frames.

Usage: ``.venv/bin/python scripts/make_demo_video.py [OUTPUT]`` (default ``video/demo.mp4``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
W, H, FPS = 640, 360, 25
SECONDS_EACH = 3.2
FADE = 10  # frames of cross-fade between the two photos


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        sys.exit(f"cannot read {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _window_frames(img: np.ndarray, n: int, zoom: tuple[float, float], centre0, centre1) -> list[np.ndarray]:
    """n frames of a 16:9 window that zooms from zoom[0] to zoom[1] and pans from centre0 to centre1
    (fractions of the photo), eased so the motion starts and ends gently."""
    ih, iw = img.shape[:2]
    full_w = min(iw, ih * W / H)  # the largest 16:9 window that fits
    frames = []
    for i in range(n):
        t = i / max(1, n - 1)
        e = 0.5 - 0.5 * np.cos(np.pi * t)
        z = zoom[0] + (zoom[1] - zoom[0]) * e
        ww, wh = full_w / z, full_w / z * H / W
        cx = (centre0[0] + (centre1[0] - centre0[0]) * e) * iw
        cy = (centre0[1] + (centre1[1] - centre0[1]) * e) * ih
        x0 = float(np.clip(cx - ww / 2, 0, iw - ww))
        y0 = float(np.clip(cy - wh / 2, 0, ih - wh))
        # An affine warp samples the sub-pixel window directly: smooth motion without jitter.
        m = np.array([[ww / W, 0, x0], [0, wh / H, y0]], np.float64)
        frames.append(cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REFLECT))
    return frames


def main() -> None:
    import imageio_ffmpeg

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "video" / "demo.mp4"
    n = int(SECONDS_EACH * FPS)
    cat = _window_frames(_read_rgb(ROOT / "video" / "chelsea.png"), n, (1.0, 1.35), (0.45, 0.5), (0.55, 0.45))
    dog = _window_frames(_read_rgb(ROOT / "video" / "dog.jpg"), n, (1.0, 1.6), (0.5, 0.5), (0.3, 0.62))
    for i in range(FADE):  # the cat's last frames fade into the dog's first ones
        a = (i + 1) / (FADE + 1)
        cat[n - FADE + i] = cv2.addWeighted(cat[n - FADE + i], 1 - a, dog[i], a, 0)
    frames = cat + dog[FADE:]
    seconds = len(frames) / FPS
    args = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-framerate", str(FPS), "-i", "pipe:0",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "slow", "-crf", "26", "-pix_fmt", "yuv420p",
        "-af", "volume=0.3", "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", "-shortest",
        "file:" + str(out.absolute()),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(args, stdin=subprocess.PIPE)
    for f in frames:
        proc.stdin.write(np.ascontiguousarray(f).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        sys.exit("ffmpeg failed")
    print(f"{out}: {len(frames)} frames, {seconds:.2f} s, {out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
