"""Shared helpers for the bad-input suite: run the CLI, check the one-line error contract, make real media.

Not a conftest (a second ``conftest`` module would shadow ``tests/conftest.py`` for ``from conftest import``):
test modules import what they need from here. Everything is real: ffmpeg from imageio-ffmpeg, tiny Keras
models saved as ``.keras`` files, the CLI either in-process (Typer's CliRunner: fast, shares the loaded
TensorFlow) or as a real ``python -m vidcam`` process (real argv, real exit status, real stderr).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CHELSEA = ROOT / "video" / "chelsea.png"
DOG = ROOT / "video" / "dog.jpg"

# Every bad input must be answered quickly; these bound each CLI call (the per-test pytest-timeout markers
# bound the whole test).
CLI_TIMEOUT = 120
PROC_TIMEOUT = 180


@dataclass
class Outcome:
    """What one CLI run gave back."""

    code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


def run_cli(*args, env: dict | None = None) -> Outcome:
    """``vidcam ARGS`` in this process (CliRunner): exit code, stdout and stderr, and any escaped exception."""
    from typer.testing import CliRunner

    from vidcam.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return Outcome(result.exit_code, result.stdout, result.stderr, exc)


def run_proc(*args, timeout: float = PROC_TIMEOUT, cwd: str | Path | None = None, env: dict | None = None,
             **popen) -> Outcome:
    """``python -m vidcam ARGS`` as a real process, killed after ``timeout`` seconds (the test then fails)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    p = subprocess.run([sys.executable, "-m", "vidcam", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, **popen)
    return Outcome(p.returncode, p.stdout, p.stderr)


def one_line_error(out: Outcome, code: int, *needles: str) -> str:
    """Assert the contract for a failed run: exit ``code``, exactly one stderr line, ``vidcam: error: ...``,
    no traceback anywhere, and each needle in that line. Returns the line."""
    assert out.exception is None, f"escaped exception: {out.exception!r}"
    assert out.code == code, f"exit {out.code}, expected {code}; stderr: {out.stderr!r}; stdout: {out.stdout[-500:]!r}"
    assert "Traceback" not in out.stderr + out.stdout
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert lines[0].startswith("vidcam: error: "), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def skipped_run(out: Outcome, *needles: str) -> list[str]:
    """Assert a batch that skipped some inputs: exit 3, every stderr line a ``vidcam: error:`` line naming
    what was skipped, no traceback. Returns the stderr lines."""
    assert out.exception is None, f"escaped exception: {out.exception!r}"
    assert out.code == 3, f"exit {out.code}, expected 3; stderr: {out.stderr!r}"
    assert "Traceback" not in out.stderr + out.stdout
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert lines and all(ln.startswith(("vidcam: error: ", "vidcam: warning: ")) for ln in lines), lines
    for needle in needles:
        assert needle in out.stderr, f"{needle!r} not in {out.stderr!r}"
    return lines


def leftovers(folder: str | Path) -> list[str]:
    """Temporary files (``.NAME.XXXXXXXX.part.EXT``) vidcam may have left anywhere under ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*part*"))


def nothing_written(folder: str | Path, *names: str) -> None:
    """Assert that none of ``names`` exists in ``folder`` and that no temporary file is left there."""
    folder = Path(folder)
    for name in names:
        assert not (folder / name).exists(), f"{folder / name} was written"
    assert leftovers(folder) == []


# -- real media ------------------------------------------------------------------------------------------------


@functools.cache
def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(*args: str, timeout: float = 60) -> None:
    """Run the real ffmpeg (argument list, no shell); fail loudly with its stderr."""
    p = subprocess.run([ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr


def make_video(path: str | Path, *, size: str = "64x48", rate: int = 10, seconds: float = 1.0,
               pix_fmt: str = "yuv420p", codec: str = "libx264", audio: bool = False, extra: tuple = ()) -> Path:
    """A real test-pattern video (``testsrc2``), optionally with a sine-tone audio track."""
    path = Path(path)
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac", "-shortest"]
    args += ["-c:v", codec, "-pix_fmt", pix_fmt]
    if codec == "libx264":
        args += ["-preset", "ultrafast"]
    run_ffmpeg(*args, *extra, str(path))
    return path


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    import cv2

    path = Path(path)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]) if rgb.ndim == 3 else rgb)
    return path


def pattern(h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    """A deterministic colourful RGB picture."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(img, 4, 0), 4, 1)[:h, :w]


# -- tiny real models, saved once per session -----------------------------------------------------------------

_SESSION_DIR: Path | None = None


def session_dir() -> Path:
    """One temporary folder for this test session's model files (removed at exit)."""
    global _SESSION_DIR
    if _SESSION_DIR is None:
        _SESSION_DIR = Path(tempfile.mkdtemp(prefix="vidcam-bad-"))
        atexit.register(shutil.rmtree, _SESSION_DIR, True)
    return _SESSION_DIR


def _tiny_model(size: tuple[int, int] = (32, 32), classes: int = 3, name: str = "tiny", seed: int = 7):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((*size, 3))
    x = layers.Rescaling(1 / 255.0, name="scale")(inp)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name=name)


@functools.cache
def tiny_keras(size: tuple[int, int] = (32, 32), classes: int = 3) -> Path:
    """A tiny 3-class softmax CNN (it rescales its own input) saved as ``.keras``, with vidcam metadata."""
    from vidcam.models.zoo import save_classifier_metadata

    path = session_dir() / f"tiny_{size[0]}x{size[1]}_{classes}.keras"
    _tiny_model(size, classes).save(path)
    save_classifier_metadata(path, {"class_names": [f"thing{i}" for i in range(classes)], "preprocess": "none",
                                    "fit": "squash"})
    return path


@functools.cache
def lambda_keras() -> Path:
    """A classifier with a Lambda layer: loading it runs Python code, so safe mode must refuse it."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(3)
    inp = keras.Input((32, 32, 3))
    x = layers.Lambda(lambda t: t / 255.0, name="scale")(inp)
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(2, activation="softmax")(x)
    path = session_dir() / "lambda.keras"
    keras.Model(inp, out).save(path)
    return path


@functools.cache
def segmenter_keras() -> Path:
    """Not a classifier: it outputs a per-pixel map (batch, h, w, 1)."""
    import keras
    from keras import layers

    inp = keras.Input((32, 32, 3))
    out = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inp)
    path = session_dir() / "segmenter.keras"
    keras.Model(inp, out).save(path)
    return path


@functools.cache
def gray_keras() -> Path:
    """A classifier of one-channel images: vidcam explains RGB classifiers."""
    import keras
    from keras import layers

    inp = keras.Input((32, 32, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(2, activation="softmax")(x)
    path = session_dir() / "gray.keras"
    keras.Model(inp, out).save(path)
    return path
