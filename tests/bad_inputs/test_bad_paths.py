"""Paths, over every command: missing, a folder where a file belongs (and the reverse), empty, a FIFO, a path
through a file, no permission, odd names (spaces, unicode, a leading '-'), outputs in missing, unwritable or
input-clobbering places. Each answer: the documented exit code, one `vidcam: error:` line, no output left."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from bad_support import (
    CHELSEA,
    DOG,
    leftovers,
    make_video,
    nothing_written,
    one_line_error,
    pattern,
    run_cli,
    run_proc,
    skipped_run,
    tiny_keras,
    write_png,
)

pytestmark = pytest.mark.timeout(180)

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


# What each command is given; ``out`` is a folder the command may write into. ``outputs`` are the final names
# a successful run would write there: a failed run must leave none of them (nor temporary files).
def _image(src, out):
    return ("image", src, "-o", out, "--model", tiny_keras()), [f"{Path(src).stem}_output.jpg"]


def _compare(src, out):
    return (("compare", src, "-o", out, "--model", tiny_keras(), "--methods", "gradcam", "--steps", "2"),
            [f"{Path(src).stem}_compare.jpg"])


def _video(src, out):
    return ("video", src, "-o", Path(out) / "heat.mp4", "--model", tiny_keras(), "-q"), ["heat.mp4"]


def _frames(src, out):
    return ("frames", src, "-o", out, "--model", tiny_keras(), "-q"), ["labels.csv"]


def _train(src, out):
    return (("train", src, "-o", Path(out) / "m.keras", "--epochs", "1", "--img-size", "32", "--batch", "4"),
            ["m.keras", "m_curves.png"])


def _evaluate(src, out):
    return ("evaluate", tiny_keras(), src, "-o", out), ["report.html", "metrics.json"]


FILE_COMMANDS = {"image": _image, "compare": _compare, "video": _video}
FOLDER_COMMANDS = {"frames": _frames, "train": _train, "evaluate": _evaluate}
ALL_COMMANDS = {**FILE_COMMANDS, **FOLDER_COMMANDS}


def _check_failed(tmp_path, out, code, outputs, *needles):
    line = one_line_error(out, code, *needles)
    nothing_written(tmp_path / "out", *outputs)
    return line


@pytest.mark.parametrize("command", list(ALL_COMMANDS))
def test_missing_input(tmp_path, command):
    args, outputs = ALL_COMMANDS[command](tmp_path / "nope.dat", tmp_path / "out")
    _check_failed(tmp_path, run_cli(*args), 1, outputs, "nope.dat")


@pytest.mark.parametrize("command", list(FILE_COMMANDS))
def test_folder_where_a_file_belongs(tmp_path, command):
    (tmp_path / "folder.jpg").mkdir()
    args, outputs = FILE_COMMANDS[command](tmp_path / "folder.jpg", tmp_path / "out")
    _check_failed(tmp_path, run_cli(*args), 1, outputs, "folder.jpg")


@pytest.mark.parametrize("command", list(FOLDER_COMMANDS))
def test_file_where_a_folder_belongs(tmp_path, command):
    args, outputs = FOLDER_COMMANDS[command](shutil.copy(CHELSEA, tmp_path / "x.png"), tmp_path / "out")
    _check_failed(tmp_path, run_cli(*args), 1, outputs, "x.png")


@pytest.mark.parametrize("command", list(FILE_COMMANDS))
def test_empty_file(tmp_path, command):
    (tmp_path / "empty.mp4").touch()
    args, outputs = FILE_COMMANDS[command](tmp_path / "empty.mp4", tmp_path / "out")
    _check_failed(tmp_path, run_cli(*args), 1, outputs, "empty.mp4")


@pytest.mark.parametrize("command", ["image", "video"])
def test_fifo_is_refused_not_waited_on(tmp_path, command):
    """A named pipe with no writer: reading it would block forever (the test's timeout would fire)."""
    os.mkfifo(tmp_path / "pipe.mp4")
    args, outputs = FILE_COMMANDS[command](tmp_path / "pipe.mp4", tmp_path / "out")
    _check_failed(tmp_path, run_cli(*args), 1, outputs, "not a regular file")


@pytest.mark.parametrize("command", ["image", "video"])
def test_path_through_a_file(tmp_path, command):
    """``photo.jpg/x.mp4``: unreadable whoever runs it (ENOTDIR), so it stands in for 'no permission' as root."""
    blocker = shutil.copy(DOG, tmp_path / "photo.jpg")
    args, outputs = FILE_COMMANDS[command](Path(blocker) / "x.mp4", tmp_path / "out")
    _check_failed(tmp_path, run_cli(*args), 1, outputs, "x.mp4")


@pytest.mark.skipif(ROOT_USER, reason="root reads files whatever their permissions; see test_path_through_a_file")
@pytest.mark.parametrize("command", ["image", "video"])
def test_no_read_permission(tmp_path, command):
    src = shutil.copy(DOG, tmp_path / "secret.jpg") if command == "image" else make_video(tmp_path / "secret.mp4")
    os.chmod(src, 0)
    args, outputs = FILE_COMMANDS[command](src, tmp_path / "out")
    _check_failed(tmp_path, run_cli(*args), 1, outputs, "secret")


def test_frames_folder_with_a_fifo_ignores_it(tmp_path):
    """Only regular files are frames: a FIFO among them is passed over, not read (that would block)."""
    src = tmp_path / "shots"
    src.mkdir()
    write_png(src / "a.png", pattern())
    os.mkfifo(src / "b.png")
    out = run_cli("frames", src, "-o", tmp_path / "out", "--model", tiny_keras(), "-q")
    assert out.code == 0, out.stderr
    assert out.stdout.startswith("1 frames: 1 labelled")
    assert (tmp_path / "out" / "labels.csv").read_text().count("a.png") == 1
    assert leftovers(tmp_path / "out") == []


# -- odd names --------------------------------------------------------------------------------------------------

ODD_NAMES = ["with spaces and 'quotes'.png", "chat é 猫 ☃.png", "semi;colon$(touch pwned)&.png"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_image_odd_names(tmp_path, name):
    src = shutil.copy(CHELSEA, tmp_path / name)
    out = run_cli("image", src, "-o", tmp_path / "out dir", "--model", tiny_keras())
    assert out.code == 0, out.stderr
    assert (tmp_path / "out dir" / f"{Path(name).stem}_output.jpg").is_file()
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=0.5)


@pytest.mark.parametrize("name", ["my holiday (1).mp4", "vidéo 日本 ☃.mkv", "$(touch pwned);x.mov"])
def test_video_odd_names(tmp_path, clip, name):
    src = shutil.copy(clip, tmp_path / name)
    out = run_cli("video", src, "-o", tmp_path / "out put" / f"heat {Path(name).stem}.mp4", "--model",
                  tiny_keras(), "-q")
    assert out.code == 0, out.stderr
    assert (tmp_path / "out put" / f"heat {Path(name).stem}.mp4").stat().st_size > 0
    assert not (tmp_path / "pwned").exists()


def test_frames_folder_with_odd_name(tmp_path):
    src = tmp_path / "Fotos März 猫"
    src.mkdir()
    for i in range(2):
        write_png(src / f"frame {i}.png", pattern(seed=i))
    out = run_cli("frames", src, "--model", tiny_keras(), "-q")  # default output: beside the input
    assert out.code == 0, out.stderr
    assert (tmp_path / "Fotos März 猫_results" / "labels.csv").is_file()


@pytest.mark.parametrize("command", ["image", "video"])
def test_leading_dash_names(tmp_path, clip, command):
    """``-x.EXT`` is an option to any parser; ``./-x.EXT`` and ``-- -x.EXT`` are the file, and a real process
    passes the name to ffmpeg as ``file:/abs/-x.EXT``, never as an option."""
    ext = ".png" if command == "image" else ".mp4"
    shutil.copy(CHELSEA if command == "image" else clip, tmp_path / f"-x{ext}")
    tail = ["--model", tiny_keras(), "-o", "out" if command == "image" else f"-y{ext}"]
    bare = run_proc(command, f"-x{ext}", *tail, cwd=tmp_path)
    one_line_error(bare, 2, "no such option", "./NAME")
    assert not (tmp_path / "out").exists() and not (tmp_path / f"-y{ext}").exists()
    dotted = run_proc(command, f"./-x{ext}", *tail, "-q" if command == "video" else "--json", cwd=tmp_path)
    assert dotted.code == 0, dotted.stderr
    tail[-1] = "out2" if command == "image" else f"-z{ext}"
    dashed = run_proc(command, *tail, "--", f"-x{ext}", cwd=tmp_path)
    assert dashed.code == 0, dashed.stderr
    made = ["out/-x_output.jpg", "out2/-x_output.jpg"] if command == "image" else [f"-y{ext}", f"-z{ext}"]
    for name in made:
        assert (tmp_path / name).stat().st_size > 0


# -- outputs ----------------------------------------------------------------------------------------------------


def test_outputs_in_missing_folders_are_created(tmp_path, clip):
    assert run_cli("image", CHELSEA, "-o", tmp_path / "a" / "b" / "c", "--model", tiny_keras()).code == 0
    assert (tmp_path / "a" / "b" / "c" / "chelsea_output.jpg").is_file()
    assert run_cli("video", clip, "-o", tmp_path / "d" / "e" / "v.mp4", "--model", tiny_keras(), "-q").code == 0
    assert (tmp_path / "d" / "e" / "v.mp4").is_file()
    shots = tmp_path / "shots"
    shots.mkdir()
    write_png(shots / "0.png", pattern())
    assert run_cli("frames", shots, "-o", tmp_path / "f" / "g", "--model", tiny_keras(), "-q").code == 0
    assert (tmp_path / "f" / "g" / "labels.csv").is_file()
    assert leftovers(tmp_path) == []


def _class_folders(root: Path, n: int = 3, per_class: int = 2) -> Path:
    for c in range(n):
        (root / f"thing{c}").mkdir(parents=True)
        for i in range(per_class):
            write_png(root / f"thing{c}" / f"{i}.png", pattern(seed=10 * c + i))
    return root


@pytest.mark.parametrize("command", list(ALL_COMMANDS))
def test_output_under_a_regular_file(tmp_path, clip, command):
    """An output folder that cannot be created (a file is in the way): the 'unwritable folder' root can't
    bypass."""
    src = {"image": CHELSEA, "compare": CHELSEA, "video": clip}.get(command)
    if command == "frames":
        src = tmp_path / "shots"
        src.mkdir()
        write_png(src / "0.png", pattern())
    elif src is None:
        src = _class_folders(tmp_path / "data")
    (tmp_path / "blocker").write_text("a file, not a folder")
    args, outputs = ALL_COMMANDS[command](src, tmp_path / "blocker" / "sub")
    one_line_error(run_cli(*args), 1, "blocker")
    assert (tmp_path / "blocker").read_text() == "a file, not a folder"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("command", ["image", "frames"])
def test_output_folder_is_a_file(tmp_path, command):
    (tmp_path / "out").write_text("keep me")
    src = CHELSEA if command == "image" else _class_folders(tmp_path / "data")
    args, _ = ALL_COMMANDS[command](src, tmp_path / "out")
    one_line_error(run_cli(*args), 1, "out")
    assert (tmp_path / "out").read_text() == "keep me"


@pytest.mark.skipif(ROOT_USER, reason="root writes into read-only folders; see test_output_under_a_regular_file")
def test_read_only_output_folder(tmp_path):
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    one_line_error(run_cli("image", CHELSEA, "-o", tmp_path / "ro", "--model", tiny_keras()), 1, "ro")


@pytest.mark.parametrize("command,suffix", [("image", "_output.jpg"), ("compare", "_compare.jpg")])
def test_output_equal_to_another_input_is_refused(tmp_path, command, suffix):
    """``a.png`` and ``a_output.jpg`` in one run, into their own folder, even with --overwrite: ``a.png``'s
    output would replace the other input. It is skipped (exit 3); the input stays as it was."""
    shutil.copy(CHELSEA, tmp_path / "a.png")
    victim = Path(shutil.copy(DOG, tmp_path / f"a{suffix}"))
    before = victim.read_bytes()
    args, _ = ALL_COMMANDS[command](tmp_path / "a.png", tmp_path)
    out = run_cli(*args[:2], victim, *args[2:], "--overwrite")
    lines = skipped_run(out, "is one of the input files")
    assert len(lines) == 2 and "a.png" in lines[0]
    assert victim.read_bytes() == before
    assert (tmp_path / f"a{suffix[:-4]}{suffix}").is_file()  # the other input was explained
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("command,suffix", [("image", "_output.jpg"), ("compare", "_compare.jpg")])
def test_two_inputs_sharing_an_output_name(tmp_path, command, suffix):
    """``x/a.png`` and ``y/a.png`` both make ``a_output.jpg``: the second is skipped, not written over the first
    (not even with --overwrite)."""
    for sub, src in (("x", CHELSEA), ("y", DOG)):
        (tmp_path / sub).mkdir()
        shutil.copy(src, tmp_path / sub / "a.png")
    args, _ = ALL_COMMANDS[command](tmp_path / "x" / "a.png", tmp_path / "out")
    out = run_cli(*args[:2], tmp_path / "y" / "a.png", *args[2:], "--overwrite")
    skipped_run(out, "would both be written to")
    ref, _ = ALL_COMMANDS[command](tmp_path / "x" / "a.png", tmp_path / "ref")
    assert run_cli(*ref).code == 0
    # x's picture, as x alone makes it: within a level or two (oneDNN's kernels round a batch of two images a
    # little differently from a batch of one), where y's picture would differ everywhere.
    got, want = (cv2.imread(str(tmp_path / d / f"a{suffix}")).astype(int) for d in ("out", "ref"))
    assert got.shape == want.shape and np.abs(got - want).max() <= 3 and (got != want).mean() < 0.01
    assert leftovers(tmp_path / "out") == []


def test_video_output_equal_to_input_is_refused(tmp_path, clip):
    src = shutil.copy(clip, tmp_path / "v.mp4")
    before = Path(src).read_bytes()
    for target in (src, f"{tmp_path}/./v.mp4"):
        one_line_error(run_cli("video", src, "-o", target, "--model", tiny_keras(), "--overwrite", "-q"), 1,
                       "is the input")
    assert Path(src).read_bytes() == before
    assert leftovers(tmp_path) == []


def test_video_output_symlinked_to_input_is_refused(tmp_path, clip):
    src = shutil.copy(clip, tmp_path / "v.mp4")
    (tmp_path / "link.mp4").symlink_to(src)
    before = Path(src).read_bytes()
    out = run_cli("video", src, "-o", tmp_path / "link.mp4", "--model", tiny_keras(), "--overwrite", "-q")
    one_line_error(out, 1, "is the input")
    assert Path(src).read_bytes() == before


def test_frames_output_equal_to_input_is_refused(tmp_path):
    src = tmp_path / "shots"
    src.mkdir()
    write_png(src / "0.png", pattern())
    one_line_error(run_cli("frames", src, "-o", src, "--model", tiny_keras(), "-q"), 2, "frame folder")
    assert sorted(p.name for p in src.iterdir()) == ["0.png"]

