"""Print the faithfulness metrics and sanity checks of the README's "How faithful is a heatmap?" section.

    .venv/bin/python scripts/sanity_report.py          # a few minutes on 2 CPU cores

For each method (Grad-CAM, Grad-CAM++, Score-CAM) on the default model and the bundled photos:

- the metrics (average drop, deletion and insertion AUC), and the same for random 7x7 maps (mean of 8);
- model randomisation (Adebayo et al. 2018): Spearman rank correlation between the trained model's map and the
  map after re-initialising the classifier's Dense layer, then also top_conv (BatchNorm folded in; mean over 2 photos x
  4 seeds, same target class); near 1 means the map ignores what the model learned;
- class sensitivity: on dog.jpg, the malamute map against the mountain bike and the pickup maps.

tests/test_sanity.py asserts the Grad-CAM rows and the Grad-CAM++ findings.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidcam.cam.engine import METHODS, CamEngine  # noqa: E402
from vidcam.cam.metrics import evaluate_batch, rank_correlation  # noqa: E402
from vidcam.media.images import fit_to_model, read_image  # noqa: E402
from vidcam.models.zoo import load_classifier  # noqa: E402

PHOTOS = [ROOT / "video" / "chelsea.png", ROOT / "video" / "dog.jpg"]
TOP = ["predictions", "top_conv"]


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


def main() -> None:
    clf = load_classifier("efficientnet_lite0")
    fresh = load_classifier("efficientnet_lite0")
    trained = {name: [v.numpy() for v in fresh.model.get_layer(name).weights] for name in TOP}
    photos = np.stack([fit_to_model(read_image(p), clf.input_size, "crop")[0] for p in PHOTOS])
    gradcam = CamEngine(clf)
    base = gradcam.run(photos)
    rng = np.random.default_rng(0)
    print("metrics (default crop; drop %, deletion AUC, insertion AUC):")
    for k, path in enumerate(PHOTOS):
        cid = int(base.class_ids[k])
        print(f"  {path.name}: {clf.class_names[cid]} {base.probabilities[k, cid]:.3f}")
        for method in METHODS:
            cams = CamEngine(clf, method=method).run(photos[k : k + 1], cid).cams
            m = evaluate_batch(gradcam, photos[k : k + 1], cams, [cid])[0]
            print(f"    {method:10s} {m.average_drop:5.1f}%  {m.deletion_auc:.3f}  {m.insertion_auc:.3f}")
        rand = evaluate_batch(gradcam, np.repeat(photos[k : k + 1], 8, axis=0), rng.random((8, 7, 7)),
                              [cid] * 8, batch_size=128)
        print(f"    {'random x8':10s} {np.mean([m.average_drop for m in rand]):5.1f}%  "
              f"{np.mean([m.deletion_auc for m in rand]):.3f}  {np.mean([m.insertion_auc for m in rand]):.3f}")
    print("sanity checks (Spearman rank correlation):")
    print(f"  {'check':44s} " + "  ".join(f"{m:>9s}" for m in METHODS))
    rows: dict[str, list[float]] = {}
    for method in METHODS:
        trained_maps = CamEngine(clf, method=method).run(photos, base.class_ids).cams
        engine = CamEngine(fresh, method=method)
        for depth, what in ((1, "random Dense"), (2, "random Dense + top_conv")):
            rho = []
            for seed in range(4):
                randomise(fresh.model, trained, TOP[:depth], seed)
                maps = engine.run(photos, base.class_ids).cams
                rho += [rank_correlation(a, b) for a, b in zip(trained_maps, maps)]
            rows.setdefault(what, []).append(float(np.mean(rho)))
        randomise(fresh.model, trained, [], 0)
        dog = CamEngine(clf, method=method).run(np.repeat(photos[1:], 3, axis=0), np.array([249, 671, 717])).cams
        rows.setdefault("dog.jpg: malamute vs mountain bike map", []).append(rank_correlation(dog[0], dog[1]))
        rows.setdefault("dog.jpg: malamute vs pickup map", []).append(rank_correlation(dog[0], dog[2]))
    for what, values in rows.items():
        print(f"  {what:44s} " + "  ".join(f"{v:9.2f}" for v in values))


if __name__ == "__main__":
    main()
