"""Many videos and frame folders on Ray (``--engine ray``), checked against the local run of the same inputs.

One local Ray instance (``ray.init(num_cpus=2)``) serves the whole module; vidcam uses it as it is (a Ray
already connected in the process is never shut down by vidcam) and the fixture shuts it down at the end.
Real ffmpeg clips, a tiny real Keras model saved as ``.keras``, real Ray actors.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from vidcam import FramesOptions, RayExecutor
from vidcam.cli import app
from vidcam.errors import EXIT_SKIPPED, EXIT_USAGE, ModelError, UsageError

ray = pytest.importorskip("ray", reason='Ray is not installed (the optional extra: pip install "vidcam[cluster]")')

runner = CliRunner()
NAMES = ["red", "green", "blue"]


def ffmpeg(*args) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *map(str, args)],
                   check=True, timeout=120)


def decode(path) -> np.ndarray:
    """Every frame of a video as RGB, decoded by ffmpeg itself (not by vidcam)."""
    import imageio_ffmpeg

    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path),
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 120, 160, 3)


def read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def same_labels(a: list[dict], b: list[dict]) -> None:
    """Identical rows, except that probabilities may differ in float round-off (thread counts differ)."""
    assert len(a) == len(b) and a
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if k.startswith("probability"):
                assert abs(float(ra[k]) - float(rb[k])) <= 2e-6, (k, ra, rb)
            else:
                assert ra[k] == rb[k], (k, ra, rb)


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tiny_flat, tmp_path_factory):
    """Three 1 s clips (160x120, 25 fps, different colours), a corrupt one, a frame folder with a corrupt frame,
    and the tiny model as a .keras file with vidcam metadata."""
    from vidcam.models.zoo import save_classifier_metadata

    d = tmp_path_factory.mktemp("cluster")
    model = d / "tiny.keras"
    tiny_flat.save(model)
    save_classifier_metadata(model, {"class_names": NAMES, "preprocess": "unit", "fit": "squash"})
    clips = d / "clips"
    clips.mkdir()
    for i, hue in enumerate((0, 120, 240), 1):
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=1", "-vf", f"hue=h={hue}",
               "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", clips / f"clip{i}.mp4")
    (clips / "clip4_corrupt.mp4").write_bytes((clips / "clip1.mp4").read_bytes()[:3000])
    frames = d / "frames"
    frames.mkdir()
    ffmpeg("-i", clips / "clip2.mp4", "-vf", "fps=12", frames / "frame%d.jpg")
    (frames / "frame7.jpg").write_bytes(b"not a jpeg")
    return {"dir": d, "model": model, "clips": clips, "frames": frames}


# -- many videos -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_runs(ray_local, data):
    """The same four videos (one corrupt) through the CLI, locally and on Ray, with per-video labels."""
    runs = {}
    for engine in ("local", "ray"):
        out = data["dir"] / f"videos_{engine}"
        r = runner.invoke(app, ["video", str(data["clips"] / "*.mp4"), "-o", str(out), "-m", str(data["model"]),
                                "--labels", "csv", "--engine", engine])
        runs[engine] = (r, out)
    return runs


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_many_videos_finish_and_the_corrupt_one_is_reported(video_runs, data, engine):
    r, out = video_runs[engine]
    assert r.exit_code == EXIT_SKIPPED, r.output
    assert "Traceback" not in r.output
    bad = data["clips"] / "clip4_corrupt.mp4"
    attempts = " after 3 attempts" if engine == "ray" else ""  # retried twice on Ray (the default), then reported
    assert f"vidcam: error: skipped {bad}{attempts}: {bad} is not a video ffmpeg can read" in r.stderr
    assert f"1 of 4 videos skipped: {bad}" in r.stderr
    assert f"4 videos: 3 done, 1 skipped ({engine}" in r.stdout
    for i in (1, 2, 3):
        src, dest = data["clips"] / f"clip{i}.mp4", out / f"clip{i}_heatmap.mp4"
        assert f"{src} -> {dest}  (25 frames" in r.stdout
        assert decode(dest).shape[0] == 25
        assert len(read_csv(out / f"clip{i}_heatmap_labels.csv")) == 25
    assert not (out / "clip4_corrupt_heatmap.mp4").exists()
    assert not [p for p in out.iterdir() if ".part" in p.name]  # nothing half-written left behind


def test_ray_videos_are_the_local_videos(video_runs):
    (_, local), (_, on_ray) = video_runs["local"], video_runs["ray"]
    for i in (1, 2, 3):
        same_labels(read_csv(local / f"clip{i}_heatmap_labels.csv"), read_csv(on_ray / f"clip{i}_heatmap_labels.csv"))
        a = decode(local / f"clip{i}_heatmap.mp4").astype(np.int16)
        b = decode(on_ray / f"clip{i}_heatmap.mp4").astype(np.int16)
        # Same maps and labels drawn, then H.264: at most encoder round-off between the two.
        assert np.abs(a - b).mean() < 0.5, i


def test_process_videos_library_report(ray_local, data, tmp_path):
    from vidcam.cluster import RayExecutor
    from vidcam.jobs.videos import process_videos

    seen = []
    report = process_videos([data["clips"] / "clip1.mp4", data["clips"] / "clip4_corrupt.mp4"], tmp_path,
                            executor=RayExecutor(retries=1), model=str(data["model"]), on_result=seen.append)
    assert report.engine == "ray" and report.exit_code == EXIT_SKIPPED
    ok, bad = report.items  # in input order, whatever order they finished in
    assert ok.ok and ok.summary.frames == 25 and ok.attempts == 1 and ok.worker
    assert not bad.ok and bad.attempts == 2 and "is not a video ffmpeg can read" in bad.error
    assert sorted(r.input for r in seen) == sorted(r.input for r in report.items)
    assert json.loads(json.dumps(bad.as_dict()))["attempts"] == 2


# -- frame folders -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame_runs(ray_local, data):
    runs = {}
    for engine in ("local", "ray"):
        out = data["dir"] / f"frames_{engine}"
        r = runner.invoke(app, ["frames", str(data["frames"]), "-o", str(out), "-m", str(data["model"]),
                                "--batch", "4", "--engine", engine, "--labels-out", str(out / "labels.parquet")])
        runs[engine] = (r, out)
    return runs


def test_ray_frames_are_the_local_frames(frame_runs, data):
    (rl, local), (rr, on_ray) = frame_runs["local"], frame_runs["ray"]
    for r in (rl, rr):
        assert r.exit_code == EXIT_SKIPPED, r.output
        assert "12 frames: 11 labelled, 0 already done, 1 skipped" in r.stdout
        assert "vidcam: error: skipped frame7.jpg:" in r.stderr and "Traceback" not in r.output
    rows = read_csv(on_ray / "labels.csv")
    same_labels(read_csv(local / "labels.csv"), rows)
    assert [row["file"] for row in rows] == [f"frame{i}.jpg" for i in range(1, 13) if i != 7]  # natural order
    assert {row["label"] for row in rows} <= set(NAMES)
    results = sorted(p.name for p in on_ray.glob("result_*.jpg"))
    assert results == sorted(p.name for p in local.glob("result_*.jpg"))
    assert len(results) == 11 and "result_0007.jpg" not in results  # numbered by position, as locally
    for name in results:
        a = cv2.imread(str(local / name)).astype(np.int16)
        b = cv2.imread(str(on_ray / name)).astype(np.int16)
        assert np.abs(a - b).mean() < 0.5, name


def test_parquet_labels_hold_the_csv_labels(frame_runs):
    import pyarrow.parquet as pq

    for engine in ("local", "ray"):
        _, out = frame_runs[engine]
        table = pq.read_table(out / "labels.parquet").to_pylist()
        rows = read_csv(out / "labels.csv")
        assert [t["file"] for t in table] == [r["file"] for r in rows]
        for t, r in zip(table, rows):
            assert t["label"] == r["label"] and t["label_3"] == r["label_3"]
            assert abs(t["probability"] - float(r["probability"])) < 1e-6
            assert NAMES[t["class_id"]] == t["label"]


def test_ray_resumes_a_local_run_and_skips_frames_done(frame_runs, data, tmp_path):
    """A folder labelled locally, two results then lost: Ray redoes those two (and retries the corrupt one)."""
    import shutil

    from vidcam.cluster import label_frames_ray

    _, local = frame_runs["local"]
    out = tmp_path / "out"
    shutil.copytree(local, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("result_*.jpg")}
    (out / "result_0002.jpg").unlink()
    (out / "result_0010.jpg").write_bytes(b"\xff\xd8 torn")  # a picture cut short: redone
    skipped = []
    s = label_frames_ray(data["frames"], out, model=data["model"], on_skip=lambda name, reason: skipped.append(name),
                         options=FramesOptions(batch_size=4), cluster=RayExecutor(retries=0))
    assert (s.total, s.processed, s.reused) == (12, 2, 9)
    assert [name for name, _ in s.failed] == skipped == ["frame7.jpg"]
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("result_*.jpg")}
    assert after.keys() == before.keys()
    assert {n for n in after if after[n] != before[n]} == {"result_0002.jpg", "result_0010.jpg"}
    same_labels(read_csv(local / "labels.csv"), read_csv(out / "labels.csv"))


def test_every_frames_option_behaves_the_same_on_both_executors(ray_local, data, tmp_path):
    """One job, two executors: --metrics (once local only), the labels formats and the encoder defaults agree."""
    from vidcam.cluster import RayExecutor
    from vidcam.jobs.executors import LocalExecutor
    from vidcam.jobs.frames import FramesOptions, label_frames
    from vidcam.jobs.video import VideoOptions
    from vidcam.media.ffmpeg_cmd import DEFAULT_PRESET

    # One default each: the frames job's encoder is the video job's (the Ray path once defaulted to veryfast).
    assert FramesOptions().encode == VideoOptions().encode and FramesOptions().encode.preset == DEFAULT_PRESET
    runs = {}
    for name, executor in (("local", LocalExecutor()), ("ray", RayExecutor(retries=0))):
        out = tmp_path / name
        opts = FramesOptions(metrics=True, json_lines=True, labels_out=out / "labels.parquet", batch_size=4)
        s = label_frames(data["frames"], out, model=str(data["model"]), options=opts, executor=executor)
        assert s.processed == 11 and s.metrics is not None and s.metrics["frames"] == 11
        runs[name] = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    local, on_ray = runs["local"], runs["ray"]
    assert len(local) == len(on_ray) == 12  # 11 frames and the summary line
    for a, b in zip(local[:-1], on_ray[:-1]):
        assert a["file"] == b["file"]
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        for k in ("average_drop", "deletion_auc", "insertion_auc"):
            assert abs(a["metrics"][k] - b["metrics"][k]) < 1e-3, (k, a, b)


def test_groups_travel_in_the_spec_and_ray_gives_the_local_labels(ray_local, data, tmp_path):
    """--groups on Ray: each worker builds its engine from the spec, groups included, so the labels are the local
    ones, and they are the groups (a frame folder and videos, both through the CLI)."""
    runs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        common = ["-m", str(data["model"]), "--groups", "warm=0+1", "--engine", engine, "--top", "2"]
        r = runner.invoke(app, ["frames", str(data["frames"]), "-o", str(out / "frames"), *common])
        assert r.exit_code == EXIT_SKIPPED and "11 labelled" in r.stdout, r.output  # frame7.jpg is corrupt
        r = runner.invoke(app, ["video", str(data["clips"] / "clip1.mp4"), str(data["clips"] / "clip2.mp4"),
                                "-o", str(out / "videos"), "--labels", "csv", *common])
        assert r.exit_code == 0, r.output
        runs[engine] = out
    for part in ("frames/labels.csv", "videos/clip1_heatmap_labels.csv", "videos/clip2_heatmap_labels.csv"):
        rows = read_csv(runs["ray"] / part)
        same_labels(read_csv(runs["local"] / part), rows)
        assert {(row["label"], row["label_2"]) for row in rows} <= {("warm", "other"), ("other", "warm")}
        for row in rows:
            assert abs(float(row["probability"]) + float(row["probability_2"]) - 1) < 1e-5


# -- options and errors ----------------------------------------------------------------------------------------


def test_usage_errors_before_any_work(data, tmp_path):
    from vidcam.cam.spec import ModelSpec, portable_spec
    from vidcam.jobs.videos import process_videos

    r = runner.invoke(app, ["video", str(data["clips"] / "clip1.mp4"), "--address", "auto"])
    assert r.exit_code == EXIT_USAGE and "--address" in r.stderr and "--engine ray" in r.stderr
    r = runner.invoke(app, ["frames", str(data["frames"]), "--engine", "spark"])
    assert r.exit_code == EXIT_USAGE and "--engine must be one of local, ray" in r.stderr
    r = runner.invoke(app, ["frames", str(data["frames"]), "--labels-out", str(tmp_path / "l.txt")])
    assert r.exit_code == EXIT_USAGE and ".parquet" in r.stderr
    r = runner.invoke(app, ["video", str(data["clips"] / "clip*.mp4"), "-o", str(tmp_path / "x.mp4")])
    assert r.exit_code == EXIT_USAGE and "-o is a folder" in r.stderr
    r = runner.invoke(app, ["video", str(data["clips"] / "clip1.mp4"), str(data["clips"] / "clip2.mp4"),
                            "--labels-out", str(tmp_path / "l.csv")])
    assert r.exit_code == EXIT_USAGE and "--labels csv|jsonl" in r.stderr
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "clip1.mp4").write_bytes((data["clips"] / "clip1.mp4").read_bytes())
    with pytest.raises(UsageError, match="would both write"):
        process_videos([data["clips"] / "clip1.mp4", twin / "clip1.mp4"], tmp_path / "o")
    with pytest.raises(UsageError, match="zoo name, a .keras path or a ModelSpec"):
        portable_spec(object())
    with pytest.raises(ModelError, match="model file not found"):
        portable_spec(tmp_path / "missing.keras")
    assert portable_spec(data["model"]).model == str(data["model"])
    assert ModelSpec("efficientnet_lite0").portable().model == "efficientnet_lite0"


def test_relative_model_paths_become_absolute(data, monkeypatch):
    from vidcam.cam.spec import ModelSpec

    monkeypatch.chdir(data["dir"])
    assert ModelSpec("tiny.keras").portable().model == str(data["model"])  # a worker's working folder is not ours


def test_an_engine_the_workers_cannot_build_stops_the_run(ray_local, data, tmp_path):
    from vidcam.cam.spec import ModelSpec
    from vidcam.cluster import ClusterError, RayExecutor
    from vidcam.jobs.videos import process_videos

    with pytest.raises(ClusterError, match="the Ray workers cannot build the engine: no layer named 'nope'"):
        process_videos([data["clips"] / "clip1.mp4"], tmp_path, executor=RayExecutor(),
                       model=ModelSpec(data["model"], layer="nope"))
    assert not list(tmp_path.iterdir())


def test_cluster_addresses_are_checked_before_ray_connects():
    from vidcam.cluster import ClusterError, check_reachable

    with pytest.raises(ClusterError, match="cannot reach the Ray cluster at 127.0.0.1:1: .*ray start --head"):
        check_reachable("127.0.0.1:1")  # Ray itself would retry for minutes
    with pytest.raises(ClusterError, match="ray://127.0.0.1:1"):
        check_reachable("ray://127.0.0.1:1")
    with pytest.raises(UsageError, match="not auto, HOST:PORT or ray://HOST:PORT"):
        check_reachable("nonsense")
    check_reachable("auto")  # left to Ray


def test_missing_ray_is_a_clear_error(monkeypatch):
    from vidcam.cluster import ClusterError, require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does where it is not installed
    with pytest.raises(ClusterError, match=r'pip install "vidcam\[cluster\]"'):
        require_ray()
