"""Measure every CAM method on the default model: cost, the Adebayo sanity checks and the faithfulness metrics.

    .venv/bin/python scripts/sanity_report.py                # prints the tables, writes vidcam/cam/data/methods.json
    .venv/bin/python scripts/sanity_report.py --out x.json   # writes elsewhere (or --no-write)

One run, on the default model (efficientnet_lite0, its default layer) and the bundled photos (video/chelsea.png,
video/dog.jpg, centre crop), for every registered method:

- cost: milliseconds per frame of the batched engine (batch 8, warm: traced and run once first; the fastest of
  5 timed calls, the methods taking turns), and that over Grad-CAM's (measured in the same run);
- model randomisation (Adebayo et al. 2018): Spearman rank correlation between the trained model's map and the
  map after re-initialising the classifier's Dense layer, then also top_conv (BatchNorm folded in; mean over
  2 photos x 4 seeds, same target class); near 1 means the map ignores what the model learned;
- class sensitivity: on dog.jpg, the malamute map against the mountain bike and the pickup maps;
- the verdicts: a check passes when every correlation in it is below 0.5 (the threshold tests/test_sanity.py
  asserts for Grad-CAM);
- the metrics on each photo (average drop, deletion and insertion AUC), and the same for random 7x7 maps (mean of 8).

The JSON is what `vidcam methods` prints (without importing TensorFlow). tests/test_sanity.py asserts the
Grad-CAM rows and the Grad-CAM++ findings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidcam.cam.engine import CamEngine  # noqa: E402
from vidcam.cam.methods import MEASURED_TABLE, method_names  # noqa: E402
from vidcam.cam.metrics import evaluate_batch, rank_correlation  # noqa: E402
from vidcam.media.images import fit_to_model, read_image  # noqa: E402
from vidcam.models.zoo import load_classifier  # noqa: E402

PHOTOS = [ROOT / "video" / "chelsea.png", ROOT / "video" / "dog.jpg"]
TOP = ["predictions", "top_conv"]
PASS_BELOW = 0.5
DOG_CLASSES = {"malamute": 249, "mountain bike": 671, "pickup": 717}
BATCH = 8


def randomise(model, trained: dict, layers: list[str], seed: int) -> None:
    """Restore the trained top, then re-initialise ``layers`` (Glorot uniform kernels, BatchNorm identity)."""
    rng = np.random.default_rng(seed)
    for name, values in trained.items():
        for var, value in zip(model.get_layer(name).weights, values):
            var.assign(value)
    for name in layers:
        layer = model.get_layer(name)
        shape = tuple(layer.kernel.shape)
        limit = np.sqrt(6.0 / (int(np.prod(shape[:-1])) + shape[-1] * int(np.prod(shape[:-2]))))
        layer.kernel.assign(rng.uniform(-limit, limit, shape).astype(np.float32))
        if layer.bias is not None:
            layer.bias.assign(np.zeros(layer.bias.shape, np.float32))


def costs_ms(clf, frames: np.ndarray, rounds: int = 5) -> dict[str, float]:
    """Milliseconds per frame of a warm batched ``run`` for every method: each engine is traced and run once,
    then timed once per round, the methods taking turns (so a busy spell on a shared machine hits them all),
    and the fastest round counts (what the method costs when it has the cores)."""
    engines = {m: CamEngine(clf, method=m) for m in method_names()}
    for engine in engines.values():
        engine.run(frames)
    times: dict[str, list[float]] = {m: [] for m in engines}
    for _ in range(rounds):
        for m, engine in engines.items():
            t0 = time.perf_counter()
            engine.run(frames)
            times[m].append(time.perf_counter() - t0)
    return {m: 1000 * min(t) / len(frames) for m, t in times.items()}


def metrics_row(engine: CamEngine, frame: np.ndarray, cams: np.ndarray, cid: int) -> dict:
    m = evaluate_batch(engine, frame, cams, [cid])[0]
    return {"average_drop": round(m.average_drop, 2), "increase": bool(m.increase),
            "deletion_auc": round(m.deletion_auc, 4), "insertion_auc": round(m.insertion_auc, 4)}


def sanity(method: str, clf, fresh, trained: dict, photos: np.ndarray, class_ids: np.ndarray) -> dict:
    """Model randomisation (two depths) and class sensitivity on dog.jpg for one method."""
    trained_maps = CamEngine(clf, method=method).run(photos, class_ids).cams
    engine = CamEngine(fresh, method=method)
    rho = {}
    for depth, key in ((1, "dense"), (2, "dense_top_conv")):
        values = []
        for seed in range(4):
            randomise(fresh.model, trained, TOP[:depth], seed)
            maps = engine.run(photos, class_ids).cams
            values += [rank_correlation(a, b) for a, b in zip(trained_maps, maps)]
        rho[key] = round(float(np.mean(values)), 3)
    randomise(fresh.model, trained, [], 0)
    dog = CamEngine(clf, method=method).run(np.repeat(photos[1:], 3, axis=0),
                                            np.array(list(DOG_CLASSES.values()))).cams
    cls = {"mountain_bike": round(rank_correlation(dog[0], dog[1]), 3),
           "pickup": round(rank_correlation(dog[0], dog[2]), 3)}
    return {"randomisation": {**rho, "pass": bool(max(rho.values()) < PASS_BELOW)},
            "class_sensitivity": {**cls, "pass": bool(max(cls.values()) < PASS_BELOW)}}


def measure(clf, fresh, photos: np.ndarray) -> dict:
    """Every number of the table, for every registered method, in this one run."""
    trained = {name: [v.numpy() for v in fresh.model.get_layer(name).weights] for name in TOP}
    gradcam = CamEngine(clf)
    base = gradcam.run(photos)
    batch = np.concatenate([photos, photos[:, :, ::-1]] * (BATCH // 4))  # 8 frames, 4 different
    t0 = time.perf_counter()
    costs = costs_ms(clf, batch)
    print(f"  cost: {time.perf_counter() - t0:.0f} s", flush=True)
    rows: dict[str, dict] = {}
    for method in method_names():
        t0 = time.perf_counter()
        engine = CamEngine(clf, method=method)
        row: dict = {"ms_per_frame": round(costs[method], 2)}
        row.update(sanity(method, clf, fresh, trained, photos, base.class_ids))
        row["photos"] = {}
        for k, path in enumerate(PHOTOS):
            cid = int(base.class_ids[k])
            cams = engine.run(photos[k : k + 1], cid).cams
            row["photos"][path.name] = metrics_row(gradcam, photos[k : k + 1], cams, cid)
        rows[method] = row
        print(f"  {method}: {time.perf_counter() - t0:.0f} s", flush=True)
    for row in rows.values():
        row["cost"] = round(row["ms_per_frame"] / rows["gradcam"]["ms_per_frame"], 2)
    rng = np.random.default_rng(0)
    random_rows, photo_info = {}, {}
    for k, path in enumerate(PHOTOS):
        cid = int(base.class_ids[k])
        photo_info[path.name] = {"class_id": cid, "class": clf.class_names[cid],
                                 "probability": round(float(base.probabilities[k, cid]), 4)}
        rand = evaluate_batch(gradcam, np.repeat(photos[k : k + 1], 8, axis=0), rng.random((8, 7, 7)),
                              [cid] * 8, batch_size=128)
        random_rows[path.name] = {key: round(float(np.mean([getattr(m, key) for m in rand])), 4)
                                  for key in ("average_drop", "deletion_auc", "insertion_auc")}
    return {"methods": rows, "random_maps": random_rows, "photos": photo_info, "layer": gradcam.layer_name}


def print_tables(table: dict) -> None:
    rows = table["methods"]
    print(f"\n{'method':20s} {'ms/frame':>8s} {'cost':>5s}  {'rand Dense':>10s} {'+top_conv':>9s} {'bike':>6s} "
          f"{'pickup':>6s}  randomisation  class")
    for name, r in rows.items():
        rnd, cls = r["randomisation"], r["class_sensitivity"]
        verdicts = ["pass" if rnd["pass"] else "fail", "pass" if cls["pass"] else "fail"]
        print(f"{name:20s} {r['ms_per_frame']:8.1f} {r['cost']:5.2f}  {rnd['dense']:10.2f} "
              f"{rnd['dense_top_conv']:9.2f} {cls['mountain_bike']:6.2f} {cls['pickup']:6.2f}  "
              f"{verdicts[0]:13s}  {verdicts[1]}")
    for photo, info in table["photos"].items():
        print(f"\n{photo} ({info['class']}, {info['probability']:.3f}): avg drop, deletion AUC, insertion AUC")
        for name, r in [*rows.items(), ("random 7x7 x8", {"photos": {photo: table["random_maps"][photo]}})]:
            m = r["photos"][photo]
            print(f"  {name:20s} {m['average_drop']:5.1f}%  {m['deletion_auc']:.3f}  {m['insertion_auc']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "vidcam" / "cam" / MEASURED_TABLE,
                    help="where to write the JSON table (default: the package's, which `vidcam methods` prints)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    t0 = time.perf_counter()
    clf = load_classifier("efficientnet_lite0")
    fresh = load_classifier("efficientnet_lite0")
    photos = np.stack([fit_to_model(read_image(p), clf.input_size, "crop")[0] for p in PHOTOS])
    print(f"measuring {len(method_names())} methods on {clf.name}:", flush=True)
    table = {"schema": 1, "model": clf.name, "fit": "crop", "batch": BATCH, "pass_below": PASS_BELOW,
             **measure(clf, fresh, photos)}
    seconds = time.perf_counter() - t0
    table["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    table["seconds"] = round(seconds)
    print_tables(table)
    print(f"\none run: {seconds:.0f} s on {table['machine']}")
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(table, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
