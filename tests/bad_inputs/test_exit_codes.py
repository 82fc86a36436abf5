"""The documented exit codes, per command: 0 success, 1 failure, 2 usage error, 3 finished with some inputs
skipped (README, "Exit codes"). In-process for the matrix; real processes for the usage errors (argv parsing,
the process's own exit status) and for the top-level cases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from bad_support import (
    CHELSEA,
    make_video,
    one_line_error,
    pattern,
    run_cli,
    run_proc,
    skipped_run,
    tiny_keras,
    write_png,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Good and bad inputs of every kind, made once."""
    root = tmp_path_factory.mktemp("media")
    make_video(root / "clip.mp4", seconds=0.4)
    (root / "bad.mp4").write_bytes(b"\0" * 5000)
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    shots = root / "shots"
    shots.mkdir()
    for i in range(2):
        write_png(shots / f"{i}.png", pattern(seed=i))
    mixed = root / "mixed"
    shutil.copytree(shots, mixed)
    (mixed / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    classes = root / "classes"
    for c in range(3):
        (classes / f"thing{c}").mkdir(parents=True)
        write_png(classes / f"thing{c}" / "0.png", pattern(seed=c))
    broken_classes = root / "broken_classes"
    shutil.copytree(classes, broken_classes)
    (broken_classes / "thing1" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    return root


def _args(command: str, case: str, media: Path, out: Path) -> tuple:
    tiny = str(tiny_keras())
    m = media
    table = {
        "image": {
            0: ("image", CHELSEA, "-o", out, "-m", tiny),
            1: ("image", m / "nope.png", "-o", out, "-m", tiny),
            2: ("image", CHELSEA, "--layout", "mosaic", "-m", tiny),
            3: ("image", CHELSEA, m / "bad.png", "-o", out, "-m", tiny),
        },
        "compare": {
            0: ("compare", CHELSEA, "-o", out, "-m", tiny, "--methods", "gradcam", "--steps", "2"),
            1: ("compare", m / "nope.png", "-o", out, "-m", tiny),
            2: ("compare", CHELSEA, "--methods", "lime", "-m", tiny),
            3: ("compare", CHELSEA, m / "bad.png", "-o", out, "-m", tiny, "--methods", "gradcam", "--steps", "2"),
        },
        "video": {
            0: ("video", m / "clip.mp4", "-o", out / "v.mp4", "-m", tiny, "-q"),
            1: ("video", m / "bad.mp4", "-o", out / "v.mp4", "-m", tiny, "-q"),
            2: ("video", m / "clip.mp4", "--layout", "mosaic", "-m", tiny),
            3: ("video", m / "clip.mp4", m / "bad.mp4", "-o", out, "-m", tiny, "-q"),
        },
        "frames": {
            0: ("frames", m / "shots", "-o", out, "-m", tiny, "-q"),
            1: ("frames", m / "nope", "-o", out, "-m", tiny, "-q"),
            2: ("frames", m / "shots", "--fps", "fast", "-m", tiny),
            3: ("frames", m / "mixed", "-o", out, "-m", tiny, "-q"),
        },
        "evaluate": {
            0: ("evaluate", tiny, m / "classes", "-o", out),
            1: ("evaluate", tiny, m / "nope", "-o", out),
            2: ("evaluate", tiny, m / "classes", "-o", out, "--threshold", "5"),
            3: ("evaluate", tiny, m / "broken_classes", "-o", out),
        },
        "train": {
            1: ("train", m / "nope", "-o", out / "m.keras"),
            2: ("train", m / "classes", "-o", out / "m.keras", "--epochs", "0"),
        },
        "models": {0: ("models",), 2: ("models", "--bogus")},
    }
    return table[command][int(case)]


# `train` exits 0 and 3 after a real training run: tests/test_train.py and test_bad_training.py run those.
# `models` reads no inputs: it cannot fail on one or skip one.
MATRIX = [(c, code) for c in ("image", "compare", "video", "frames", "evaluate") for code in (0, 1, 2, 3)]
MATRIX += [("train", 1), ("train", 2), ("models", 0), ("models", 2)]


@pytest.mark.parametrize("command,code", MATRIX)
def test_exit_code_matrix(tmp_path, media, command, code):
    out = run_cli(*_args(command, str(code), media, tmp_path / "out"))
    if code == 0:
        assert out.code == 0 and out.exception is None, out.stderr
        assert "Traceback" not in out.stderr and "error" not in out.stderr
    elif code == 3:
        skipped_run(out)
    else:
        one_line_error(out, code)


@pytest.mark.parametrize("command", ["image", "compare", "video", "frames", "evaluate", "train", "models"])
def test_usage_errors_in_a_real_process(tmp_path, media, command):
    """Option parsing happens before anything heavy: a real process answers at once, exit 2, one line."""
    extra = {"image": (CHELSEA,), "compare": (CHELSEA,), "video": (media / "clip.mp4",),
             "frames": (media / "shots",), "evaluate": (tiny_keras(), media / "classes"),
             "train": (media / "classes",), "models": ()}[command]
    out = run_proc(command, *extra, "--no-such-option", timeout=60)
    one_line_error(out, 2, "no such option: --no-such-option", f"vidcam {command} --help")


@pytest.mark.parametrize(
    "args,code",
    [((), 2), (("--help",), 0), (("explain",), 2), (("image", "--help"), 0), (("image",), 2), (("video",), 2)],
)
def test_top_level_in_a_real_process(args, code):
    out = run_proc(*args, timeout=60)
    assert out.code == code, out.stderr
    assert "Traceback" not in out.stderr
    if code == 0:
        assert "Usage" in out.stdout
    elif args:
        one_line_error(out, 2)
