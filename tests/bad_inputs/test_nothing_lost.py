"""Nothing lost: existing outputs are kept unless --overwrite; outputs appear under their final name only when
complete; a full disk (a real small tmpfs when this runs as root, else skipped) and a file-size limit
(RLIMIT_FSIZE, which works anywhere) give one clear line, stop the batch, and leave no temporary files.

`vidcam frames` resuming after ``kill -9`` of a real run is tested in tests/test_frames.py
(test_frames_resume_after_kill_9); here a frames run stopped by a full disk resumes once there is room.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bad_support import (
    CHELSEA,
    DOG,
    ROOT,
    leftovers,
    make_video,
    one_line_error,
    run_cli,
    run_proc,
    tiny_keras,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", size="160x120", seconds=1.0)


def _command(kind: str, out: Path, clip: Path, *extra) -> tuple[tuple, Path]:
    if kind == "image":
        return ("image", CHELSEA, "-o", out, "--model", tiny_keras(), *extra), out / "chelsea_output.jpg"
    if kind == "compare":
        return (("compare", CHELSEA, "-o", out, "--model", tiny_keras(), "--methods", "gradcam", "--steps", "2",
                 *extra), out / "chelsea_compare.jpg")
    if kind == "video":
        return ("video", clip, "-o", out / "heat.mp4", "--model", tiny_keras(), "-q", *extra), out / "heat.mp4"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["image", "compare", "video"])
def test_existing_output_kept_without_overwrite(tmp_path, clip, kind):
    args, dest = _command(kind, tmp_path / "out", clip)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"yesterday's result")
    one_line_error(run_cli(*args), 1, "--overwrite")
    assert dest.read_bytes() == b"yesterday's result"
    assert leftovers(dest.parent) == []
    out = run_cli(*args, "--overwrite")
    assert out.code == 0, out.stderr
    assert dest.read_bytes() != b"yesterday's result" and dest.stat().st_size > 1000
    assert leftovers(dest.parent) == []


def test_video_appears_under_its_name_only_when_complete(tmp_path):
    """Watch a real run: while it works, only a hidden temporary file exists; the final name appears at the end."""
    src = make_video(tmp_path / "src.mp4", size="320x240", rate=25, seconds=3)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "vidcam", "video", str(src), "-o", str(out / "heat.mp4"), "--model",
                          str(tiny_keras()), "-q", "--batch", "2"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    seen: set[str] = set()
    final_sizes: set[int] = set()  # the size of heat.mp4 each time it was seen
    deadline = time.monotonic() + 180
    try:
        while p.poll() is None and time.monotonic() < deadline:
            for q in out.iterdir():
                seen.add(q.name)
                if q.name == "heat.mp4":
                    final_sizes.add(q.stat().st_size)
            time.sleep(0.02)
    finally:
        if p.poll() is None:
            p.kill()
        _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert all(n.startswith(".heat.") and ".part" in n for n in seen - {"heat.mp4"}), seen
    size = (out / "heat.mp4").stat().st_size
    assert size > 0 and final_sizes <= {size}, "heat.mp4 was visible before it was complete"
    assert leftovers(out) == []


# -- a full disk: a real 256 kB tmpfs ---------------------------------------------------------------------------


FILLER = 1024 * 1024 - 40 * 1024


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MB tmpfs with about 40 kB free, or a skip when mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the RLIMIT_FSIZE tests cover the failure path")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the RLIMIT_FSIZE tests cover it")
    try:
        (mnt / "filler").write_bytes(b"\0" * FILLER)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_image_batch(full_disk):
    out = run_cli("image", CHELSEA, DOG, "-o", full_disk / "out", "--model", tiny_keras())
    one_line_error(out, 1, "no space left on device")
    assert leftovers(full_disk) == []
    assert not list((full_disk / "out").glob("*_output.jpg"))
    assert (full_disk / "filler").stat().st_size == FILLER


def test_full_disk_video(full_disk, tmp_path):
    src = make_video(tmp_path / "src.mp4", size="320x240", seconds=2)  # its heatmap video needs about 120 kB
    out = run_cli("video", src, "-o", full_disk / "heat.mp4", "--model", tiny_keras(), "-q")
    one_line_error(out, 1, "no space left on device")
    assert not (full_disk / "heat.mp4").exists() and leftovers(full_disk) == []


def test_full_disk_frames_stops_then_resumes(full_disk, tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(6):
        shutil.copy(DOG, shots / f"f{i}.jpg")  # about 120 kB per result picture
    args = ("frames", shots, "-o", full_disk / "res", "--model", tiny_keras(), "-q")
    first = run_cli(*args)
    one_line_error(first, 1, "no space left on device", "run again to resume")
    assert leftovers(full_disk) == []
    (full_disk / "filler").unlink()  # room again
    again = run_cli(*args)
    assert again.code == 0, again.stderr
    assert again.stdout.startswith("6 frames: ")
    assert len((full_disk / "res" / "labels.csv").read_text().splitlines()) == 7  # header + 6 frames
    assert leftovers(full_disk) == []


# -- a file-size limit: RLIMIT_FSIZE in the child process (writes past it fail with EFBIG) ------------------------


# Above what loading the tiny model writes (Keras unpacks its 28 kB of weights to a temporary file), below the
# outputs (75 kB and more).
LIMIT = 50_000


def _run_limited(limit: int, *args, cwd: Path) -> subprocess.CompletedProcess:
    """``vidcam ARGS`` in a process whose files may not grow past ``limit`` bytes (SIGXFSZ ignored, so the write
    fails with EFBIG instead of killing the process). Set in the child itself: no preexec_fn in a threaded parent."""
    boot = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
            "sys.argv = ['vidcam', *sys.argv[1:]]; runpy.run_module('vidcam', run_name='__main__')")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", boot, *map(str, args)], capture_output=True, text=True, timeout=180,
                          cwd=cwd, env=env, stdin=subprocess.DEVNULL)


def _one_line(p: subprocess.CompletedProcess, *needles: str) -> None:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("vidcam: error: "), p.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_file_size_limit_image(tmp_path):
    p = _run_limited(LIMIT, "image", CHELSEA, DOG, "-o", tmp_path / "out", "--model", tiny_keras(), cwd=tmp_path)
    _one_line(p, "file too large")
    assert not list((tmp_path / "out").glob("*_output.jpg")) and leftovers(tmp_path) == []


def test_file_size_limit_video(tmp_path):
    src = make_video(tmp_path / "src.mp4", size="320x240", seconds=2)
    p = _run_limited(LIMIT, "video", src, "-o", tmp_path / "out" / "heat.mp4", "--model", tiny_keras(), "-q",
                     cwd=tmp_path)
    _one_line(p, "heat.mp4")
    assert not (tmp_path / "out" / "heat.mp4").exists() and leftovers(tmp_path) == []


def test_file_size_limit_frames(tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(3):
        shutil.copy(DOG, shots / f"{i}.jpg")
    p = _run_limited(LIMIT, "frames", shots, "-o", tmp_path / "res", "--model", tiny_keras(), "-q", cwd=tmp_path)
    _one_line(p, "file too large", "resume")
    assert leftovers(tmp_path) == []


def test_limit_does_not_touch_small_outputs(tmp_path):
    """The same limit with outputs that fit: the run succeeds (the failures above are the limit's, not the boot's)."""
    p = _run_limited(5_000_000, "image", CHELSEA, "-o", tmp_path / "out", "--model", tiny_keras(), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out" / "chelsea_output.jpg").is_file()


def test_real_process_exit_code_for_existing_output(tmp_path):
    (tmp_path / "chelsea_output.jpg").write_bytes(b"keep")
    out = run_proc("image", CHELSEA, "-o", tmp_path, "--model", tiny_keras())
    one_line_error(out, 1, "already exists", "--overwrite")
    assert (tmp_path / "chelsea_output.jpg").read_bytes() == b"keep"


def test_file_size_limit_compare(tmp_path):
    """compare stops on a full disk (or a file-size limit) like image and frames; it once went on to every image."""
    p = _run_limited(LIMIT, "compare", CHELSEA, DOG, "-o", tmp_path / "out", "--model", tiny_keras(), "--steps", "2",
                     cwd=tmp_path)
    _one_line(p, "file too large")
    assert not list((tmp_path / "out").glob("*_compare.jpg")) and leftovers(tmp_path) == []
