"""Reliability round 2 (issue 17): outputs outside the results folder, concurrent runs, model-aware resume,
locked folders, verified caches, read-only and full disks, hostile names and numbers. Real processes, real
files; every test is deterministic (no waiting for something to happen "soon")."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from bad_support import (
    ROOT,
    ffmpeg,
    leftovers,
    make_video,
    one_line_error,
    pattern,
    run_cli,
    run_proc,
    tiny_keras,
    write_png,
)

pytestmark = pytest.mark.timeout(240)


def _shots(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_png(folder / f"f{i}.png", pattern(seed=i))
    return folder


# -- row 3: --labels-out is an output like any other ---------------------------------------------------------


def test_frames_labels_out_existing_is_refused(tmp_path):
    shots = _shots(tmp_path / "shots")
    precious = tmp_path / "existing.csv"
    precious.write_text("my own spreadsheet\n")
    args = ("frames", shots, "-o", tmp_path / "out", "--model", tiny_keras(), "-q", "--labels-out", precious)
    one_line_error(run_cli(*args), 1, "existing.csv", "--overwrite")
    assert precious.read_text() == "my own spreadsheet\n"
    assert not (tmp_path / "out").exists()  # refused before anything was done
    done = run_cli(*args, "--overwrite")
    assert done.code == 0, done.stderr
    assert precious.read_text().startswith("file,result,label")


def test_frames_labels_out_of_an_earlier_run_is_rewritten_on_resume(tmp_path):
    """The same command again is a resume: the labels file it wrote itself (unchanged since) is rewritten; once
    somebody changes it, it is theirs and needs --overwrite again."""
    shots = _shots(tmp_path / "shots")
    labels = tmp_path / "labels.jsonl"
    args = ("frames", shots, "-o", tmp_path / "out", "--model", tiny_keras(), "-q", "--labels-out", labels)
    first = run_cli(*args)
    assert first.code == 0, first.stderr
    write_png(shots / "f9.png", pattern(seed=9))
    again = run_cli(*args)
    assert again.code == 0, again.stderr
    assert len(labels.read_text().splitlines()) == 3 and "f9.png" in labels.read_text()
    labels.write_text("edited by hand\n")
    one_line_error(run_cli(*args), 1, "labels.jsonl", "--overwrite")
    assert labels.read_text() == "edited by hand\n"
    assert leftovers(tmp_path) == []


# -- row 4: the final rename never replaces a file that appeared meanwhile -----------------------------------


def test_atomic_output_keeps_a_file_that_appeared_while_writing(tmp_path):
    """Two writers of one name, nested so that the inner one publishes while the outer one is still writing:
    the outer one (not overwriting) fails with EEXIST and keeps the inner one's file; nothing is left over."""
    import errno

    from vidcam.errors import OutputError
    from vidcam.media.outputs import atomic_output

    dest = tmp_path / "result.txt"
    with pytest.raises(OutputError, match="appeared while vidcam was writing it") as caught:
        with atomic_output(dest, overwrite=False) as outer:
            outer.write_text("the first run's")
            with atomic_output(dest, overwrite=False) as inner:
                inner.write_text("the second run's")
            assert dest.read_text() == "the second run's"
    assert caught.value.errno == errno.EEXIST
    assert dest.read_text() == "the second run's"
    assert leftovers(tmp_path) == []
    with atomic_output(dest, overwrite=True) as again:  # asked to overwrite: replaced
        again.write_text("replaced")
    assert dest.read_text() == "replaced" and leftovers(tmp_path) == []


def test_two_video_runs_to_one_output_the_second_to_finish_refuses(tmp_path):
    """Two real `vidcam video` runs without -y writing the same -o. Deterministic: run A's ffmpeg is a wrapper
    that, when A starts encoding (after A checked that the output is free), runs B to the end first."""
    src = make_video(tmp_path / "src.mp4", size="64x48", seconds=0.5)
    dest = tmp_path / "heat.mp4"
    common = ["-o", str(dest), "--model", str(tiny_keras()), "-q"]
    b_cmd = " ".join(f"'{a}'" for a in [sys.executable, "-m", "vidcam", "video", str(src), *common,
                                         "--ffmpeg", ffmpeg()])
    wrapper = tmp_path / "ffmpeg-a"
    wrapper.write_text(f"""#!/bin/sh
case "$*" in
  *.part.mp4*) if [ ! -e '{tmp_path}/b.rc' ]; then
      {b_cmd} </dev/null >'{tmp_path}/b.out' 2>'{tmp_path}/b.err'; echo $? >'{tmp_path}/b.rc'
    fi ;;
esac
exec '{ffmpeg()}' "$@"
""")
    wrapper.chmod(0o755)
    a = run_proc("video", src, *common, "--ffmpeg", wrapper, env={"PYTHONPATH": str(ROOT)})
    assert (tmp_path / "b.rc").read_text().strip() == "0", (tmp_path / "b.err").read_text()
    b_output = dest.read_bytes()
    one_line_error(a, 1, "heat.mp4", "appeared while vidcam was writing it", "--overwrite")
    assert dest.read_bytes() == b_output and len(b_output) > 1000  # B's video, untouched
    assert leftovers(tmp_path) == []


def test_video_output_created_before_the_rename_is_kept(tmp_path):
    """The plainest case at the CLI: the output appears (someone else's file) while the run encodes."""
    src = make_video(tmp_path / "src.mp4", size="64x48", seconds=0.5)
    dest = tmp_path / "heat.mp4"
    wrapper = tmp_path / "ffmpeg-w"
    wrapper.write_text(f"""#!/bin/sh
case "$*" in *.part.mp4*) printf precious > '{dest}' ;; esac
exec '{ffmpeg()}' "$@"
""")
    wrapper.chmod(0o755)
    args = ("video", src, "-o", dest, "--model", tiny_keras(), "-q", "--ffmpeg", wrapper)
    one_line_error(run_cli(*args), 1, "appeared while vidcam was writing it")
    assert dest.read_bytes() == b"precious" and leftovers(tmp_path) == []
    dest.unlink()
    out = run_cli(*args, "--overwrite")  # asked to overwrite: the file that appeared is replaced
    assert out.code == 0, out.stderr
    assert dest.stat().st_size > 1000 and leftovers(tmp_path) == []

