"""Reliability round 2 (issue 17): outputs outside the results folder, concurrent runs, model-aware resume,
locked folders, verified caches, read-only and full disks, hostile names and numbers. Real processes, real
files; every test is deterministic (no waiting for something to happen "soon")."""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_support import (
    leftovers,
    one_line_error,
    pattern,
    run_cli,
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
