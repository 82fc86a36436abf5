"""Analysing a trained classifier the book's way: accuracy, per-class precision and recall, a confusion matrix,
and for each class the images it is most sure of, least sure of, and confidently wrong about.

Everything goes into one report folder: ``report.html`` (opens in a browser, relative links only),
``metrics.json``, ``predictions.csv``, ``confusion_matrix.png`` and three grid PNGs per class. The folder is
built under a temporary name beside its destination and moved into place when complete.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np

from vidcam.cam.spec import ModelSpec
from vidcam.errors import InputError, OutputError, UsageError, VidcamError
from vidcam.jobs.dataset import Skipped, find_eval_images, read_fitted
from vidcam.media.images import read_image
from vidcam.media.outputs import describe_os_error, folder_error, write_image
from vidcam.models.zoo import Classifier

if TYPE_CHECKING:  # the engine (TensorFlow) is imported when an evaluation runs, not with this module
    from vidcam.cam.engine import CamEngine

__all__ = ["EvalResult", "evaluate_classifier", "GRIDS", "HEAT_GRIDS", "SWEEP"]

# grid key -> title: the book's three questions, asked of the images predicted as each class
GRIDS = {
    "most_confident": "most confident",
    "least_confident": "least confident",
    "confidently_wrong": "confidently wrong",
}
GRID_SIZE = 10
HEAT_GRIDS = ("least_confident", "confidently_wrong")  # grids whose images are shown beside their heatmap
SWEEP = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95, 0.99)
_CHUNK = 256


@dataclass
class EvalResult:
    """What :func:`evaluate_classifier` measured and wrote.

    Attributes:
        report_dir: the report folder (``report.html``, ``metrics.json``, the PNGs).
        images: images evaluated.
        accuracy: share of images whose top-1 class is their folder's class.
        class_names: the classes evaluated (the data's class folders), in the model's order.
        confusion: (len(labels), len(labels)) counts, rows true, columns predicted, over ``labels``.
        labels: class names of the confusion matrix's rows and columns (evaluated classes and any class predicted).
        per_class: name -> ``precision``, ``recall``, ``support`` (precision None when never predicted).
        threshold: the acceptance threshold.
        coverage: share of images whose top probability reaches the threshold (answered).
        covered_accuracy: accuracy on the answered images (None when none is answered).
        skipped: files left out, with the reason.
        metrics: everything in ``metrics.json``.
    """

    report_dir: Path
    images: int
    accuracy: float
    class_names: list[str]
    labels: list[str]
    confusion: np.ndarray
    per_class: dict[str, dict]
    threshold: float
    coverage: float
    covered_accuracy: float | None
    skipped: list[Skipped] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def _probability_fn(engine: CamEngine):
    """uint8 frames at the model's size -> (N, classes) probabilities: the engine's own forward pass (the same
    preprocessing and output handling as every other job), without the gradients evaluation does not need."""
    return lambda frames: engine.predict(frames, batch_size=len(frames))


def _predict(engine: CamEngine, samples: list[tuple[Path, int]], batch_size: int, on_skip, progress):
    classifier = engine.classifier
    fn = _probability_fn(engine)
    probs, kept = [], []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for start in range(0, len(samples), _CHUNK):
            chunk = samples[start : start + _CHUNK]
            frames = []
            for (path, label), out in zip(chunk, pool.map(
                    lambda s: read_fitted(s[0], classifier.input_size, classifier.fit), chunk)):
                if isinstance(out, str):
                    on_skip(Skipped(str(path), out))
                    continue
                frames.append(out)
                kept.append((path, label))
            for b in range(0, len(frames), batch_size):
                probs.append(fn(np.stack(frames[b : b + batch_size])))
            if progress:
                progress(min(start + _CHUNK, len(samples)), len(samples))
    n_classes = classifier.num_classes
    return (np.concatenate(probs) if probs else np.zeros((0, n_classes), np.float32)), kept


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "class"


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _threshold_row(conf: np.ndarray, correct: np.ndarray, t: float) -> dict:
    answered = conf >= t
    return {
        "threshold": t,
        "coverage": float(answered.mean()) if len(conf) else 0.0,
        "answered": int(answered.sum()),
        "withheld": int((~answered).sum()),
        "accuracy": _ratio(correct[answered].sum(), answered.sum()),
    }


def _read_or_grey(path: Path) -> np.ndarray | None:
    try:
        return read_image(path)
    except VidcamError:  # read once already; if it vanished since, show a grey tile rather than fail the report
        return None


def _framed(img: np.ndarray, ok: bool) -> np.ndarray:
    """A coloured frame says at a glance whether the prediction is right (green) or wrong (red)."""
    import cv2

    h, w = img.shape[:2]
    t = max(2, round(max(h, w) / 40))
    return cv2.copyMakeBorder(img, t, t, t, t, cv2.BORDER_CONSTANT, value=(40, 160, 60) if ok else (210, 40, 40))


def _shrunk(img: np.ndarray, edge: int) -> tuple[np.ndarray, float]:
    """``img`` with its long side at most ``edge`` pixels, and the scale applied."""
    import cv2

    scale = min(1.0, edge / max(img.shape[:2]))
    if scale == 1.0:
        return img, 1.0
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), scale


def _pictures(engine: CamEngine | None, paths: list[Path], c: int) -> list[np.ndarray]:
    """The grid's pictures; with ``engine``, each image beside its heatmap for class ``c`` (where the model
    looked when it predicted ``c``), the map computed from the same fitted pixels the prediction saw."""
    from vidcam.media.images import fit_to_model
    from vidcam.media.render import render

    images = [_read_or_grey(p) for p in paths]
    if engine is None:
        return [np.full((64, 64, 3), 128, np.uint8) if img is None else _shrunk(img, 320)[0] for img in images]
    clf = engine.classifier
    fitted = [fit_to_model(img, clf.input_size, clf.fit) if img is not None else None for img in images]
    good = [k for k, f in enumerate(fitted) if f is not None]
    cams = engine.run(np.stack([fitted[k][0] for k in good]), c).cams if good else []
    out = [np.full((64, 128, 3), 128, np.uint8)] * len(paths)
    for k, cam in zip(good, cams):
        small, scale = _shrunk(images[k], 240)
        window = tuple(round(v * scale) for v in fitted[k][1])
        out[k] = render(small, cam, None, layout="side-by-side", window=window)
    return out


def _grids(names_all: list[str], class_ids: list[int], paths: list[Path], truth: np.ndarray, pred: np.ndarray,
           probs: np.ndarray, out_dir: Path, engine: CamEngine) -> dict[str, dict[str, dict]]:
    """The book's three grids for each evaluated class, over the images predicted as that class; the least
    confident and the confidently wrong ones (:data:`HEAT_GRIDS`) each beside its heatmap for that class.

    Returns: class name -> grid key -> ``image`` (the PNG's file name), ``heatmaps`` (whether the tiles show
    them) and ``items`` (path, probability of the class, true class, in grid order).
    """
    from vidcam.media.charts import image_grid

    files: dict[str, dict[str, dict]] = {}
    for c in class_ids:
        name = names_all[c]
        predicted = np.flatnonzero(pred == c)
        p_c = probs[predicted, c]
        wrong = predicted[truth[predicted] != c]
        choices = {
            "most_confident": predicted[np.argsort(-p_c, kind="stable")][:GRID_SIZE],
            "least_confident": predicted[np.argsort(p_c, kind="stable")][:GRID_SIZE],
            "confidently_wrong": wrong[np.argsort(-probs[wrong, c], kind="stable")][:GRID_SIZE],
        }
        files[name] = {}
        for key, idx in choices.items():
            heat = key in HEAT_GRIDS
            pictures = _pictures(engine if heat else None, [paths[i] for i in idx], c)
            tiles = []
            for i, picture in zip(idx, pictures):
                right = bool(truth[i] == c)
                line2 = f"{name} {probs[i, c]:.3f}" + ("" if right else f" (is {names_all[truth[i]]})")
                tiles.append((_framed(picture, right), [paths[i].name, line2]))
            title = f"{name}: {GRIDS[key]} ({len(idx)} of {len(predicted)} predicted {name})"
            if heat:
                title += f", each beside its heatmap for {name}"
            file = f"class{c}_{_slug(name)}_{key}.png"
            grid = image_grid(tiles, title=title, aspect=2.0 if heat else 1.0, columns=5)
            write_image(out_dir / file, grid, overwrite=False)  # a fresh folder
            items = [{"path": str(paths[i]), "probability": float(probs[i, c]), "true": names_all[truth[i]]}
                     for i in idx]
            files[name][key] = {"image": file, "heatmaps": heat, "items": items}
    return files


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _html(m: dict) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(n)}</td><td>{c['support']}</td><td>{c['predicted']}</td><td>{_pct(c['precision'])}</td>"
        f"<td>{_pct(c['recall'])}</td></tr>" for n, c in m["per_class"].items()
    )
    labels = m["confusion_matrix"]["labels"]
    cm_head = "".join(f"<th>{e(n)}</th>" for n in labels)
    cm_rows = "".join(
        f"<tr><th>{e(n)}</th>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
        for n, row in zip(labels, m["confusion_matrix"]["matrix"])
    )
    t = m["threshold"]
    sweep = "".join(
        f"<tr><td>{r['threshold']:g}</td><td>{_pct(r['coverage'])}</td><td>{r['withheld']}</td>"
        f"<td>{_pct(r['accuracy'])}</td></tr>" for r in m["thresholds"]
    )
    grids = ""
    for name, files in m["grids"].items():
        grids += f"<h3>{e(name)}</h3>"
        for key, grid in files.items():
            grids += (f'<figure><img src="{quote(grid["image"])}" alt="{e(name)}: {GRIDS[key]}">'
                      f"<figcaption>{e(name)}: {GRIDS[key]}</figcaption></figure>")
    skipped = "".join(f"<li><code>{e(s['path'])}</code>: {e(s['reason'])}</li>" for s in m["skipped"])
    skipped_html = f"<h2>Skipped files ({len(m['skipped'])})</h2><ul>{skipped}</ul>" if m["skipped"] else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vidcam evaluation: {e(m['model'])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }}
figure {{ margin: 0 0 1.5em; }} img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>Evaluation of {e(m['model'])}</h1>
<p>{m['images']} images from <code>{e(m['data'])}</code> ({e(m['layout'])}); accuracy <b>{_pct(m['accuracy'])}</b>.</p>
<h2>Per class</h2>
<table><tr><th>class</th><th>images</th><th>predicted</th><th>precision</th><th>recall</th></tr>{rows}</table>
<h2>Confusion matrix</h2>
<p>Rows: the folder's class; columns: the model's top-1 class.</p>
<table><tr><th>true \\ predicted</th>{cm_head}</tr>{cm_rows}</table>
<figure><img src="confusion_matrix.png" alt="confusion matrix"></figure>
<h2>Withholding unsure answers</h2>
<p>At threshold {t['threshold']:g} the model answers {_pct(t['coverage'])} of the images ({t['withheld']} withheld),
with accuracy {_pct(t['accuracy'])} on those it answers.</p>
<table><tr><th>threshold</th><th>coverage</th><th>withheld</th><th>accuracy answered</th></tr>{sweep}</table>
<h2>What the model is sure of, unsure of, and wrong about</h2>
<p>For each class, among the images predicted as that class: the {GRID_SIZE} with the highest probability,
the {GRID_SIZE} with the lowest, and the {GRID_SIZE} most confident wrong ones. Each title gives the file name
and the probability of the class (and the true class when wrong); green frames are right, red ones wrong. In the
least confident and the confidently wrong grids each image is shown beside its heatmap for the predicted class:
where the model looked when it gave that answer.</p>
{grids}
{skipped_html}
</body></html>
"""


def _prepare_dir(report_dir: Path, overwrite: bool) -> Path:
    if report_dir.exists() and not report_dir.is_dir():
        raise OutputError(f"report folder {report_dir} is a file; give a folder name")
    if report_dir.is_dir() and any(report_dir.iterdir()) and not overwrite:
        raise OutputError(f"report folder {report_dir} is not empty: pass --overwrite to write into it")
    try:
        report_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder {report_dir.parent}: {e.strerror or e}") from None
    tmp = report_dir.with_name(f".{report_dir.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        tmp.mkdir()
    except OSError as e:  # a read-only folder (or file system), no permission
        raise folder_error(report_dir.parent, e) from None
    return tmp


def _publish(tmp: Path, report_dir: Path) -> None:
    """Move the finished report into place; in an existing folder only vidcam's own file names are replaced."""
    try:
        if not report_dir.exists():
            os.replace(tmp, report_dir)
            return
        for f in sorted(tmp.iterdir()):
            os.replace(f, report_dir / f.name)
        tmp.rmdir()
    except OSError as e:
        raise OutputError(f"cannot write report folder {report_dir}: {describe_os_error(e)}") from None


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate (checked when made).

    Attributes:
        threshold: acceptance threshold on the top probability for the coverage / accuracy trade-off.
        val_split: evaluate the part of ``DATA_DIR/<class>/`` a training run with this split held out.
        seed: the training run's seed (with ``val_split``).
        batch_size: images per forward pass.
        overwrite: write into a report folder that is not empty (vidcam's files there are replaced).

    Raises:
        UsageError: threshold out of (0, 1], batch size under 1.
    """

    threshold: float = 0.75
    val_split: float | None = None
    seed: int = 12345
    batch_size: int = 32
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise UsageError(f"--threshold must be in (0, 1], got {self.threshold}")
        if self.batch_size < 1:
            raise UsageError(f"--batch must be at least 1, got {self.batch_size}")


def evaluate_classifier(
    model: str | Path | ModelSpec | Classifier,
    data_dir: str | Path,
    report_dir: str | Path,
    *,
    options: EvalOptions | None = None,
    on_skip: Callable[[Skipped], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Evaluate a classifier on labelled folders and write the report.

    The images are ``DATA_DIR/val/<class>/`` when ``val/`` exists, else ``DATA_DIR/<class>/``: all of them, or with
    ``val_split`` and ``seed`` the same share ``vidcam train --val-split`` held out. Folder names must be class
    names of the model.

    Args:
        model: a ``.keras`` path (e.g. from ``vidcam train``), a zoo name, a
            :class:`~vidcam.cam.spec.ModelSpec` (``unsafe``, ``weights``), or a loaded :class:`Classifier`.
        data_dir: the labelled images.
        report_dir: folder for ``report.html``, ``metrics.json``, ``predictions.csv`` and the PNGs.
        options: :class:`EvalOptions` (threshold, held-out split, batch size, overwrite).
        on_skip: called for each file that cannot be read (it is left out).
        progress: called with (done, total) files.

    Raises:
        UsageError: threshold out of (0, 1]. InputError: no readable labelled images, folders that are not
        classes of the model. OutputError: the report folder is not empty (without ``overwrite``).

    Example:
        >>> r = evaluate_classifier("cats_dogs.keras", "data/cats_dogs", "report")  # doctest: +SKIP
        >>> r.accuracy, r.coverage  # doctest: +SKIP
        (0.97, 0.93)
    """
    o = options or EvalOptions()
    report_dir = Path(report_dir)
    data_root = Path(data_dir).resolve()
    if report_dir.resolve() == data_root or data_root in report_dir.resolve().parents:
        # Report pictures inside the data would be read as images of a class on the next run.
        raise UsageError(f"the report folder {report_dir} is inside the data folder {data_dir}: choose one outside it")
    clf = model if isinstance(model, Classifier) else (model if isinstance(model, ModelSpec) else
                                                       ModelSpec(model)).classifier()
    found = find_eval_images(data_dir, clf.class_names, val_split=o.val_split, seed=o.seed)
    skipped: list[Skipped] = []

    def skip(s: Skipped) -> None:
        skipped.append(s)
        if on_skip:
            on_skip(s)

    for s in found.skipped:
        skip(s)
    tmp = _prepare_dir(report_dir, o.overwrite)
    try:
        from vidcam.cam.engine import CamEngine

        engine = CamEngine(clf)  # its forward pass for the probabilities, its maps for the grids' heatmaps
        probs, kept = _predict(engine, found.val, o.batch_size, skip, progress)
        if not kept:
            raise InputError(f"no readable images in {data_dir}: nothing to evaluate")
        result = _report(engine, found, probs, kept, skipped, o.threshold, data_dir, tmp, report_dir)
        _publish(tmp, report_dir)
        return result
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _report(engine: CamEngine, found, probs: np.ndarray, kept: Sequence[tuple[Path, int]],
            skipped: list[Skipped], threshold: float, data_dir, tmp: Path, report_dir: Path) -> EvalResult:
    from vidcam.media.charts import confusion_chart

    clf = engine.classifier
    names = clf.class_names
    paths = [p for p, _ in kept]
    truth = np.array([label for _, label in kept], np.int64)
    pred = np.argmax(probs, axis=1)
    conf = probs[np.arange(len(pred)), pred]
    correct = pred == truth
    evaluated = sorted(set(truth.tolist()))
    labels_ids = sorted(set(evaluated) | set(pred.tolist()))
    pos = {c: i for i, c in enumerate(labels_ids)}
    cm = np.zeros((len(labels_ids), len(labels_ids)), np.int64)
    for t, p in zip(truth, pred):
        cm[pos[t], pos[p]] += 1
    per_class = {}
    for c in evaluated:
        tp = int(np.sum((pred == c) & (truth == c)))
        per_class[names[c]] = {
            "class_id": int(c),
            "support": int(np.sum(truth == c)),
            "predicted": int(np.sum(pred == c)),
            "precision": _ratio(tp, np.sum(pred == c)),
            "recall": _ratio(tp, np.sum(truth == c)),
        }
    thr = _threshold_row(conf, correct, threshold)
    label_names = [names[c] for c in labels_ids]
    write_image(tmp / "confusion_matrix.png", confusion_chart(cm, label_names), overwrite=False)  # a fresh folder
    grids = _grids(names, evaluated, paths, truth, pred, probs, tmp, engine)
    with open(tmp / "predictions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "predicted", "probability", "probability_true", "correct"])
        for i, p in enumerate(paths):
            w.writerow([str(p), names[truth[i]], names[pred[i]], f"{conf[i]:.6f}", f"{probs[i, truth[i]]:.6f}",
                        int(correct[i])])
    metrics = {
        "model": clf.name,
        "data": str(data_dir),
        "layout": found.layout,
        "images": len(paths),
        "accuracy": float(correct.mean()),
        "classes": [names[c] for c in evaluated],
        "per_class": per_class,
        "confusion_matrix": {"labels": label_names, "matrix": cm.tolist(), "image": "confusion_matrix.png"},
        "threshold": thr,
        "thresholds": [_threshold_row(conf, correct, t) for t in sorted(set(SWEEP) | {threshold})],
        "grids": grids,
        "predictions": "predictions.csv",
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
    }
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    (tmp / "report.html").write_text(_html(metrics), encoding="utf-8")
    return EvalResult(
        report_dir=report_dir, images=len(paths), accuracy=metrics["accuracy"], class_names=metrics["classes"],
        labels=label_names, confusion=cm, per_class=per_class, threshold=threshold, coverage=thr["coverage"],
        covered_accuracy=thr["accuracy"], skipped=list(skipped), metrics=metrics,
    )
