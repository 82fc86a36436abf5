"""Faithfulness metrics: exact curves on a model whose answer we know, the engine's forward pass, the image job,
`vidcam compare` (library and CLI) and `vidcam image --metrics`."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from conftest import CHELSEA, DOG, classifier_for
from typer.testing import CliRunner

from vidcam import FramesOptions, VideoOptions
from vidcam.cam.engine import CamEngine
from vidcam.cam.metrics import (
    CamMetrics,
    auc,
    average_ranks,
    baseline_image,
    evaluate,
    evaluate_batch,
    importance_order,
    rank_correlations,
    summarize,
)
from vidcam.errors import UsageError
from vidcam.jobs.compare import DEFAULT_METHODS, CompareOptions
from vidcam.jobs.image import ImageOptions


def sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))


@pytest.fixture(scope="module")
def left_engine():
    """A model whose answer is known: logit of class 1 = 8 * (mean gray level of the left half) - 4, class 0 = 0.

    On a white frame p1 = sigmoid(4); darkening the left half (and only the left half) lowers it.
    """
    import keras
    from keras import layers

    inp = keras.Input((16, 16, 3))
    gray = layers.Conv2D(1, 1, use_bias=False, name="gray")(inp)
    out = layers.Dense(2, name="logits")(layers.Flatten()(gray))
    model = keras.Model(inp, out, name="left_half")
    model.get_layer("gray").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32)])
    left = np.broadcast_to(np.arange(16)[None, :] < 8, (16, 16)).ravel()  # Flatten is row-major (h, w)
    w = np.zeros((256, 2), np.float32)
    w[left, 1] = 8.0 / left.sum()
    model.get_layer("logits").set_weights([w, np.array([0.0, -4.0], np.float32)])
    return CamEngine(classifier_for(model, ["other", "bright left"]), layer="gray")


@pytest.fixture(scope="module")
def flat_engine(tiny_flat):
    return CamEngine(classifier_for(tiny_flat))


WHITE = np.full((1, 16, 16, 3), 255, np.uint8)
LEFT = np.broadcast_to(np.arange(16)[None, :] < 8, (16, 16)).astype(np.float32)[None]  # 1 on the left half


def test_known_model_is_what_the_metrics_assume(left_engine):
    p = left_engine.predict(WHITE)[0]
    np.testing.assert_allclose(p[1], sigmoid(4), atol=1e-6)
    half = WHITE.copy()
    half[:, :, :8] = 0
    np.testing.assert_allclose(left_engine.predict(half)[0, 1], sigmoid(-4), atol=1e-6)


def test_deletion_and_insertion_curves_are_exact(left_engine):
    # Map at the input's own resolution (no upsampling): the left half is removed first, 64 pixels a step.
    m = evaluate_batch(left_engine, WHITE, LEFT, [1], steps=4, deletion_baseline="black",
                       insertion_baseline="black")[0]
    hi, mid, lo = sigmoid(4), 0.5, sigmoid(-4)
    np.testing.assert_allclose(m.deletion_curve, [hi, mid, lo, lo, lo], atol=1e-5)
    np.testing.assert_allclose(m.insertion_curve, [lo, mid, hi, hi, hi], atol=1e-5)
    assert m.deletion_auc == pytest.approx((hi + 2 * mid + 4 * lo + lo) / 8, abs=1e-5)
    assert m.insertion_auc == pytest.approx((lo + 2 * mid + 4 * hi + hi) / 8, abs=1e-5)
    # The wrong map (right half first) keeps the class for half the curve.
    wrong = evaluate_batch(left_engine, WHITE, 1 - LEFT, [1], steps=4, deletion_baseline="black",
                           insertion_baseline="black")[0]
    np.testing.assert_allclose(wrong.deletion_curve, [hi, hi, hi, mid, lo], atol=1e-5)
    assert wrong.deletion_auc > m.deletion_auc + 0.3 and wrong.insertion_auc < m.insertion_auc - 0.3


def test_average_drop_and_increase_are_exact(left_engine):
    hi, lo = sigmoid(4), sigmoid(-4)
    keep_left, keep_right, half = evaluate_batch(
        left_engine, np.repeat(WHITE, 3, axis=0), np.concatenate([LEFT, 1 - LEFT, np.full_like(LEFT, 0.5)]), 1)
    assert keep_left.average_drop == pytest.approx(0.0, abs=1e-3) and not keep_left.increase
    assert keep_right.masked_probability == pytest.approx(lo, abs=1e-6)
    assert keep_right.average_drop == pytest.approx(100 * (hi - lo) / hi, abs=1e-3)
    assert half.average_drop == pytest.approx(100 * (hi - 0.5) / hi, abs=1e-3)  # 0.5 * white: left mean 0.5
    # For class 0 darkening the left half raises the probability: an increase in confidence, no drop.
    other = evaluate_batch(left_engine, WHITE, 1 - LEFT, 0)[0]
    assert other.increase and other.average_drop == 0.0
    assert other.masked_probability == pytest.approx(1 - lo, abs=1e-6)


def test_predict_matches_the_engines_probabilities(flat_engine, tiny_nested, random_frames):
    frames = random_frames(5)
    probs = flat_engine.predict(frames)
    np.testing.assert_allclose(probs, flat_engine.run(frames).probabilities, atol=1e-6)
    np.testing.assert_allclose(flat_engine.predict(frames.astype(np.float32), batch_size=2), probs, atol=1e-6)
    nested = CamEngine(classifier_for(tiny_nested, ["cat", "dog"]))  # softmax inside: not applied twice
    np.testing.assert_allclose(nested.predict(frames), nested.run(frames).probabilities, atol=1e-6)
    assert flat_engine.predict(frames[:0]).shape == (0, 3)
    with pytest.raises(UsageError, match="shape"):
        flat_engine.predict(frames[:, :16])


def test_curves_start_and_end_at_the_frames_probability(flat_engine, random_frames):
    frames = random_frames(3)
    res, ms = evaluate(flat_engine, frames, steps=8)
    for i, m in enumerate(ms):
        y = res.probabilities[i, res.class_ids[i]]
        assert m.class_id == res.class_ids[i]
        assert m.deletion_curve.shape == m.insertion_curve.shape == (9,)
        assert m.probability == pytest.approx(y, abs=1e-5)
        assert m.insertion_curve[-1] == pytest.approx(y, abs=1e-5)
        assert 0 <= m.deletion_auc <= 1 and 0 <= m.insertion_auc <= 1
        assert m.average_drop == pytest.approx(100 * max(0, y - m.masked_probability) / y, rel=1e-4)


def test_grouping_into_batches_does_not_change_results(flat_engine, random_frames):
    frames = random_frames(4)
    res = flat_engine.run(frames)
    one = evaluate_batch(flat_engine, frames, res.cams, res.class_ids, steps=4, batch_size=1)
    all_ = evaluate_batch(flat_engine, frames, res.cams, res.class_ids, steps=4, batch_size=1000)
    for a, b in zip(one, all_):
        np.testing.assert_allclose(a.deletion_curve, b.deletion_curve, atol=1e-6)
        np.testing.assert_allclose(a.insertion_curve, b.insertion_curve, atol=1e-6)
        assert a.masked_probability == pytest.approx(b.masked_probability, abs=1e-6)


def test_an_engine_of_any_method_or_a_classifier_measures_the_same(tiny_flat, flat_engine, random_frames):
    frames = random_frames(2)
    res = flat_engine.run(frames)
    a = evaluate_batch(flat_engine, frames, res.cams, res.class_ids, steps=4)
    b = evaluate_batch(classifier_for(tiny_flat), frames, res.cams, res.class_ids, steps=4)
    assert [m.deletion_auc for m in a] == pytest.approx([m.deletion_auc for m in b], abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"cams": np.zeros((3, 4, 4))}, "maps"),
        ({"cams": np.zeros((2, 4))}, "maps"),
        ({"class_ids": [0, 1, 2]}, "class ids"),
        ({"class_ids": [0, 7]}, "out of range"),
        ({"steps": 0}, "steps"),
        ({"deletion_baseline": "noise"}, "baseline"),
        ({"frames": np.zeros((2, 16, 16, 3), np.uint8)}, "input size"),
    ],
)
def test_bad_arguments_are_usage_errors(flat_engine, kwargs, needle):
    args = {"frames": np.zeros((2, 32, 32, 3), np.uint8), "cams": np.zeros((2, 4, 4)), "class_ids": [0, 1]}
    args.update(kwargs)
    with pytest.raises(UsageError, match=needle):
        evaluate_batch(flat_engine, args.pop("frames"), args.pop("cams"), args.pop("class_ids"), **args)


def test_importance_order_hottest_first_and_ties_scattered():
    cam = np.zeros((8, 8), np.float32)
    cam[5, 6], cam[1, 2] = 1.0, 0.5
    order = importance_order(cam)
    assert list(order[:2]) == [5 * 8 + 6, 1 * 8 + 2]
    assert sorted(order) == list(range(64))
    rest = order[2:]
    assert not (np.diff(rest) > 0).all()  # not raster order
    np.testing.assert_array_equal(importance_order(cam), order)  # deterministic


def test_baselines():
    frame = np.full((10, 12, 3), 200, np.uint8)
    frame[:, :6] = 0
    assert baseline_image(frame, "black").max() == 0
    assert np.all(baseline_image(frame, "gray") == 127.5)
    blur = baseline_image(frame, "blur")
    assert blur.shape == frame.shape and 0 < blur[5, 5, 0] < 200 and 0 < blur[5, 6, 0] < 200
    uniform = np.full((10, 12, 3), 90, np.uint8)
    np.testing.assert_allclose(baseline_image(uniform, "blur"), 90, atol=1e-3)
    with pytest.raises(UsageError, match="baseline"):
        baseline_image(frame, "mean")


def test_auc_trapezoid():
    assert auc([1, 1]) == 1.0
    assert auc([1, 0]) == 0.5
    assert auc([0, 1, 0]) == 0.5
    with pytest.raises(UsageError):
        auc([1])


def _metric(class_id, d, i, drop, inc=False) -> CamMetrics:
    return CamMetrics(class_id, 0.5, 0.4, drop, inc, d, i, np.zeros(2), np.zeros(2))


def test_summarize_means_and_worst_frames():
    ms = [_metric(1, 0.1, 0.9, 10), _metric(1, 0.5, 0.2, 50, True), _metric(2, 0.3, 0.6, 0), _metric(1, 0.4, 0.4, 20)]
    s = summarize(ms, indices=[10, 20, 30, 40], worst=2)
    assert s["frames"] == 4
    assert s["average_drop"] == pytest.approx(20.0)
    assert s["increase_in_confidence"] == pytest.approx(25.0)
    assert s["deletion_auc"] == pytest.approx(0.325) and s["insertion_auc"] == pytest.approx(0.525)
    assert [w["frame"] for w in s["worst"]] == [20, 40]  # lowest insertion - deletion first
    json.dumps(s)
    empty = summarize([])
    assert empty["frames"] == 0 and empty["deletion_auc"] is None and empty["worst"] == []
    with pytest.raises(UsageError):
        summarize(ms, indices=[1])


def test_as_dict_is_json_and_curves_optional(left_engine):
    m = evaluate_batch(left_engine, WHITE, LEFT, 1, steps=2)[0]
    d = m.as_dict()
    assert set(d) == {"class_id", "probability", "masked_probability", "average_drop", "increase",
                      "deletion_auc", "insertion_auc"}
    assert len(m.as_dict(curves=True)["deletion_curve"]) == 3
    json.dumps(m.as_dict(curves=True))
    assert "deletion AUC" in m.describe()


# -- the image job and compare ----------------------------------------------------------------------------


@pytest.fixture
def pictures(tmp_path, rng):
    paths = []
    for k in range(2):
        p = tmp_path / f"pic{k}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
        paths.append(p)
    return paths


def test_explain_images_with_metrics(tiny_flat, pictures, tmp_path):
    from vidcam.jobs.image import explain_images

    clf = classifier_for(tiny_flat)
    with_m = explain_images(pictures, None, model=clf, options=ImageOptions(metrics=True))
    assert all(isinstance(r.metrics, CamMetrics) for r in with_m)
    assert with_m[0].metrics.class_id == with_m[0].predictions[0].class_id
    assert json.loads(json.dumps(with_m[0].as_dict()))["metrics"]["deletion_auc"] == pytest.approx(
        with_m[0].metrics.deletion_auc, abs=1e-5)
    without = explain_images(pictures, None, model=clf)
    assert without[0].metrics is None and "metrics" not in without[0].as_dict()


def test_compare_methods_writes_panels_and_skips_bad_files(tiny_flat, pictures, tmp_path):
    from vidcam.jobs.compare import compare_methods

    out = tmp_path / "out"
    seen = []
    results = compare_methods([pictures[0], tmp_path / "missing.png", pictures[1]], out,
                              model=classifier_for(tiny_flat), on_result=seen.append, options=CompareOptions(steps=4,
                                                   panel_height=60))
    assert [r.path for r in seen] == [str(tmp_path / "missing.png"), str(pictures[0]), str(pictures[1])]
    bad, good = results[0], results[1]
    assert bad.error and "no such file" in bad.error and not bad.metrics
    assert list(good.metrics) == list(DEFAULT_METHODS) and good.error is None
    pic = cv2.imread(good.output)
    strip = max(28, 60 // 6)
    assert pic.shape == (60 + strip, 4 * 72 + 3 * 4, 3)  # original | 3 methods, 48x40 scaled to 72x60
    d = json.loads(json.dumps(good.as_dict()))
    assert set(d["methods"]) == set(DEFAULT_METHODS) and d["class_id"] == good.class_id
    # The same class is explained by every method.
    assert {m.class_id for m in good.metrics.values()} == {good.class_id}
    again = compare_methods([pictures[0]], out, model=classifier_for(tiny_flat),
                            options=CompareOptions(methods=["gradcam"], steps=2))
    assert "already exists" in again[0].error
    with pytest.raises(UsageError, match="unknown method"):
        compare_methods([pictures[0]], None, model=classifier_for(tiny_flat), options=CompareOptions(methods=["lime"]))


# -- CLI (the real default model) ---------------------------------------------------------------------------

runner = CliRunner()


def test_cli_image_metrics_text_and_json(tmp_path):
    from vidcam.cli import app

    r = runner.invoke(app, ["image", str(CHELSEA), "--no-output", "--metrics"])
    assert r.exit_code == 0, r.output
    line = [x for x in r.stdout.splitlines() if "metrics" in x][0]
    assert line.startswith("  metrics (tiger cat): avg drop") and "insertion AUC" in line
    r = runner.invoke(app, ["image", str(CHELSEA), "--no-output", "--metrics", "--json", "--class", "285"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)["metrics"]
    assert m["class_id"] == 285 and 0 <= m["deletion_auc"] < m["insertion_auc"] <= 1


def test_cli_compare_table_picture_and_skip(tmp_path):
    from vidcam.cli import app

    r = runner.invoke(app, ["compare", str(DOG), str(tmp_path / "nope.jpg"), "-o", str(tmp_path), "--steps", "8"])
    assert r.exit_code == 3, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == f"{DOG}: malamute 0.445 (class 249)"
    assert lines[1].split() == ["method", "avg", "drop", "increase", "deletion", "AUC", "insertion", "AUC"]
    assert [x.split()[0] for x in lines[2:5]] == ["Grad-CAM", "Grad-CAM++", "Score-CAM"]
    for row in lines[2:5]:
        cells = row.split()
        assert cells[1].endswith("%") and cells[2] in ("yes", "no") and 0 <= float(cells[3]) <= 1
    assert lines[5] == f"  -> {tmp_path / 'dog_compare.jpg'}"
    assert "nope.jpg" in r.stderr and "Traceback" not in r.output
    assert cv2.imread(str(tmp_path / "dog_compare.jpg")).shape[1] > 4 * 240
    r = runner.invoke(app, ["compare", str(DOG), "--no-output", "--json", "--methods", "gradcam", "--steps", "2"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert list(d["methods"]) == ["gradcam"] and d["output"] is None
    r = runner.invoke(app, ["compare", str(DOG), "--methods", "gradcam,lime"])
    assert r.exit_code == 2 and "--methods" in r.stderr


# -- video and frame folders ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from clips import make_clip

    return make_clip(tmp_path_factory.mktemp("clip") / "c.mp4", seconds=0.4, audio=None)  # 10 frames


def test_video_metrics_every_n_frames_in_labels_and_summary(flat_engine, clip, tmp_path):
    from vidcam.jobs.video import process_video

    s = process_video(clip, tmp_path / "o.mp4", model=flat_engine, labels_out=tmp_path / "l.jsonl",
                      options=VideoOptions(metrics=True, metrics_every=3))
    rows = [json.loads(line) for line in (tmp_path / "l.jsonl").read_text().splitlines()]
    frames, last = rows[:-1], rows[-1]
    assert len(frames) == s.frames == 10
    assert [r["frame"] for r in frames if "metrics" in r] == [0, 3, 6, 9]
    assert last == {"metrics_summary": s.metrics}
    assert s.metrics["frames"] == 4 and {w["frame"] for w in s.metrics["worst"]} <= {0, 3, 6, 9}
    assert s.metrics["deletion_auc"] == pytest.approx(np.mean([r["metrics"]["deletion_auc"] for r in frames
                                                               if "metrics" in r]), abs=1e-5)
    assert s.as_dict()["metrics"] == s.metrics
    s = process_video(clip, tmp_path / "o2.mp4", model=flat_engine, labels_out=tmp_path / "l.csv",
                      options=VideoOptions(metrics=True, metrics_every=5, top_k=2))
    rows = list(csv.reader((tmp_path / "l.csv").read_text().splitlines()))
    assert rows[0][-3:] == ["average_drop", "deletion_auc", "insertion_auc"]
    assert len(rows[1]) == len(rows[0]) and 0 <= float(rows[1][-1]) <= 1  # frame 0 measured
    assert len(rows[2]) == len(rows[0]) - 3  # frame 1 not
    plain = process_video(clip, tmp_path / "o3.mp4", model=flat_engine, labels_out=tmp_path / "p.jsonl")
    assert plain.metrics is None and "metrics" not in plain.as_dict()
    assert all("metrics" not in json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines())
    with pytest.raises(UsageError, match="metrics_every"):
        process_video(clip, tmp_path / "o4.mp4", model=flat_engine, options=VideoOptions(metrics=True, metrics_every=0))


def test_frames_metrics_per_frame_and_summary(flat_engine, tmp_path, rng):
    from vidcam.jobs.frames import label_frames

    src = tmp_path / "frames"
    src.mkdir()
    for k in (1, 2, 10):
        cv2.imwrite(str(src / f"f{k}.png"), rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    s = label_frames(src, tmp_path / "out", model=flat_engine, options=FramesOptions(json_lines=True, metrics=True))
    lines = [json.loads(x) for x in (tmp_path / "out" / "labels.jsonl").read_text().splitlines()]
    assert [x["file"] for x in lines[:-1]] == ["f1.png", "f2.png", "f10.png"]
    assert all(0 <= x["metrics"]["insertion_auc"] <= 1 for x in lines[:-1])
    assert lines[-1] == {"metrics_summary": s.metrics} and s.metrics["frames"] == 3
    worst = s.metrics["worst"][0]
    assert worst["file"] == ["f1.png", "f2.png", "f10.png"][worst["frame"] - 1]  # numbered like result_0001
    s = label_frames(src, tmp_path / "out", model=flat_engine,
                     options=FramesOptions(metrics=True))  # reused frames keep their metrics
    assert s.reused == 3 and s.metrics["frames"] == 3
    rows = (tmp_path / "out" / "labels.csv").read_text().splitlines()
    assert rows[0].endswith("average_drop,deletion_auc,insertion_auc") and len(rows) == 4


def test_cli_video_and_frames_metrics(tiny_flat, clip, tmp_path):
    from clips import save_tiny_keras

    from vidcam.cli import app

    model = save_tiny_keras(tiny_flat, tmp_path / "tiny.keras", ["cat", "dog", "bird"])
    r = runner.invoke(app, ["video", str(clip), "-o", str(tmp_path / "o.mp4"), "-m", str(model), "--metrics",
                            "--metrics-every", "4"])
    assert r.exit_code == 0, r.output
    line = [x for x in r.stdout.splitlines() if x.startswith("  metrics:")][0]
    assert line.startswith("  metrics: 3 frames: avg drop") and "worst frames" in line
    r = runner.invoke(app, ["video", str(clip), "-o", str(tmp_path / "o.mp4"), "-m", str(model), "--metrics",
                            "--json", "-y"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["metrics"]["frames"] == 10


def test_rank_correlations_match_a_pair_by_pair_spearman_with_ties():
    """The batched ranks (one set of array operations for a batch of maps) give each map the ranks a direct
    definition gives: ties share their average rank, a constant map correlates 0 with anything."""
    def ranks(x):  # by definition: 1 + the cells below, + half the other cells equal to it
        x = np.asarray(x, np.float64).ravel()
        return np.array([1 + (x < v).sum() + ((x == v).sum() - 1) / 2 for v in x])

    rng = np.random.default_rng(7)
    a = rng.integers(0, 4, (12, 5, 5)).astype(np.float32)  # many ties
    b = np.concatenate([rng.random((6, 5, 5)), rng.integers(0, 3, (6, 5, 5))]).astype(np.float32)
    a[3] = 0.5  # constant
    assert np.array_equal(average_ranks(a.reshape(12, -1)), np.stack([ranks(x) for x in a]))
    expected = []
    for x, y in zip(a, b):
        rx, ry = ranks(x), ranks(y)
        expected.append(0.0 if rx.std() == 0 or ry.std() == 0 else np.corrcoef(rx, ry)[0, 1])
    got = rank_correlations(a, b)
    assert got[3] == 0.0 and np.allclose(got, expected, atol=1e-12)
    ramp = np.arange(25, dtype=np.float32).reshape(1, 5, 5)
    assert rank_correlations(ramp, ramp[:, ::-1, ::-1])[0] == pytest.approx(-1.0)
