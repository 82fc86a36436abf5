"""The image job: label and explain many still images in batches."""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidcam.cam.engine import CamEngine, CamResult
from vidcam.cam.metrics import CamMetrics, evaluate_batch
from vidcam.cam.spec import ModelLike, build_engine
from vidcam.errors import InputError, UsageError, VidcamError
from vidcam.media.images import fit_to_model, read_image
from vidcam.media.outputs import BatchOutputs, check_output, ensure_dir, out_of_space, write_image
from vidcam.media.render import RenderOptions, format_label, render
from vidcam.models.zoo import DEFAULT_MODEL, Classifier

__all__ = ["Prediction", "ImageResult", "ImageOptions", "explain_images", "expand_paths", "predictions_for"]


@dataclass
class Prediction:
    class_id: int
    label: str
    probability: float

    def as_dict(self) -> dict:
        return {"class_id": self.class_id, "label": self.label, "probability": round(self.probability, 6)}


@dataclass
class ImageResult:
    """One input's outcome: predictions and output path, or the error that made vidcam skip it."""

    path: str
    predictions: list[Prediction] = field(default_factory=list)
    output: str | None = None
    error: str | None = None
    cam: np.ndarray | None = None
    metrics: CamMetrics | None = None

    def as_dict(self) -> dict:
        d: dict = {"path": self.path}
        if self.error:
            d["error"] = self.error
        else:
            d["predictions"] = [p.as_dict() for p in self.predictions]
            d["output"] = self.output
        if self.metrics is not None:
            d["metrics"] = self.metrics.as_dict()
        return d


def expand_paths(patterns: Iterable[str | Path]) -> list[Path]:
    """Paths as given, with shell-style globs (``photos/*.jpg``) expanded in sorted order.

    ``[`` is common in file names (``photo [1].jpg``): a name with brackets but no ``*`` or ``?`` that matches
    nothing is kept as the name it is, so a missing one is reported (and skipped) like any missing file.

    Raises:
        InputError: a pattern with ``*`` or ``?`` matches nothing.
    """
    out: list[Path] = []
    for p in patterns:
        s = str(p)
        if any(ch in s for ch in "*?[") and not Path(s).exists():
            matches = sorted(glob.glob(s, recursive=True))
            if not matches and not any(ch in s for ch in "*?"):
                out.append(Path(s))
                continue
            if not matches:
                raise InputError(f"no files match {s!r}")
            out.extend(Path(m) for m in matches)
        else:
            out.append(Path(s))
    return out


@dataclass
class LoadedBatch:
    """Images of one batch that could be read: originals, their model-size versions stacked, and extras."""

    paths: list[Path]
    images: list[np.ndarray]
    windows: list[tuple]
    fitted: np.ndarray
    extras: list


def load_batches(
    files: list[Path],
    size: tuple[int, int],
    fit: str,
    batch_size: int,
    on_error: Callable[[Path, VidcamError], None],
    prepare: Callable[[Path], object] | None = None,
) -> Iterator[LoadedBatch]:
    """Read and fit ``files`` to the model, ``batch_size`` at a time, in order.

    ``prepare(path)`` runs first for each file (e.g. to refuse an existing output before reading the image); its
    result is kept in ``extras``. A file whose ``prepare`` or reading raises a :class:`VidcamError` goes to
    ``on_error`` and is left out; a batch with nothing readable is not yielded.
    """
    for start in range(0, len(files), batch_size):
        b = LoadedBatch([], [], [], np.zeros(0), [])
        fitted = []
        for p in files[start : start + batch_size]:
            try:
                extra = prepare(p) if prepare else None
                img = read_image(p)
            except VidcamError as e:
                on_error(p, e)
                continue
            x, win = fit_to_model(img, size, fit)
            b.paths.append(p)
            b.images.append(img)
            b.windows.append(win)
            b.extras.append(extra)
            fitted.append(x)
        if fitted:
            b.fitted = np.stack(fitted)
            yield b


def predictions_for(classifier: Classifier, result: CamResult, k: int) -> list[list[Prediction]]:
    """Top-k predictions per image of a batch result."""
    ids, probs = result.top_k(k)
    return [
        [Prediction(int(i), classifier.class_names[int(i)], float(p)) for i, p in zip(row_ids, row_probs)]
        for row_ids, row_probs in zip(ids, probs)
    ]



@dataclass(frozen=True)
class ImageOptions:
    """What ``image`` does (checked when made).

    Attributes:
        top_k: predictions per image.
        class_index: explain this class instead of each image's top-1.
        layout: ``side-by-side`` (default: original | overlay) or ``overlay``.
        alpha, colormap: how the heat is drawn.
        fit: ``crop`` or ``squash``; default (None): the classifier's own.
        batch_size: images per engine call.
        overwrite: replace existing outputs.
        metrics: also measure each map's faithfulness (:func:`vidcam.cam.metrics.evaluate_batch`, about
            ``2 * 16 + 3`` extra forward passes per image) into the result's ``metrics``.

    Raises:
        UsageError: a value out of range.
    """

    top_k: int = 3
    class_index: int | None = None
    layout: str = "side-by-side"
    alpha: float = 0.4
    colormap: str = "jet"
    fit: str | None = None
    batch_size: int = 8
    overwrite: bool = False
    metrics: bool = False

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.batch_size < 1:
            raise UsageError("top-k and the batch size must be at least 1")
        RenderOptions(self.layout, self.alpha, self.colormap, self.fit or "squash")  # checks them


def _explain_batch(b, engine: CamEngine, o: ImageOptions, out_dir: Path | None, claims: BatchOutputs):
    """One batch: predictions, maps, (metrics), and each picture written; a full disk stops the run."""
    clf = engine.classifier
    res = engine.run(b.fitted, o.class_index)
    preds = predictions_for(clf, res, o.top_k)
    measured = evaluate_batch(engine, b.fitted, res.cams, res.class_ids) if o.metrics else None
    for i, p in enumerate(b.paths):
        r = ImageResult(str(p), predictions=preds[i], cam=res.cams[i], metrics=measured[i] if measured else None)
        if out_dir is not None:
            try:
                claims.claim(out_dir / f"{p.stem}_output.jpg", p)
                dest = check_output(out_dir / f"{p.stem}_output.jpg", overwrite=o.overwrite, inputs=(p,))
                cid = int(res.class_ids[i])
                label = format_label(clf.class_names[cid], float(res.probabilities[i, cid]))
                write_image(dest, render(b.images[i], res.cams[i], label, window=b.windows[i], layout=o.layout,
                                         alpha=o.alpha, colormap=o.colormap), overwrite=o.overwrite)
                r.output = str(dest)
            except VidcamError as e:
                if out_of_space(e):  # every later image would fail the same way
                    raise
                r.error = str(e)
        yield r


def explain_images(
    paths: Iterable[str | Path],
    output_dir: str | Path | None = ".",
    *,
    model: ModelLike = DEFAULT_MODEL,
    options: ImageOptions | None = None,
    on_result: Callable[[ImageResult], None] | None = None,
) -> list[ImageResult]:
    """Classify and explain images; write ``<stem>_output.jpg`` per image into ``output_dir``.

    A file that cannot be read or written is reported in its result's ``error`` and skipped; the rest go on.

    Args:
        paths: image files (globs expanded).
        output_dir: where the pictures go; None to write nothing.
        model: zoo name, ``.keras`` path, :class:`~vidcam.cam.spec.ModelSpec`, :class:`Classifier` or a built
            :class:`CamEngine`.
        options: :class:`ImageOptions`.
        on_result: called with each result as soon as it is known.

    Example:
        >>> results = explain_images(["chelsea.png"], "out")  # doctest: +SKIP
        >>> results[0].predictions[0].label  # doctest: +SKIP
        'tiger cat'
    """
    o = options or ImageOptions()
    files = expand_paths(paths)
    claims = BatchOutputs(files)
    engine = build_engine(model)
    clf = engine.classifier
    out_dir = ensure_dir(output_dir) if output_dir is not None else None
    results: list[ImageResult] = []

    def emit(r: ImageResult) -> None:
        results.append(r)
        if on_result:
            on_result(r)

    def skip(p: Path, e: VidcamError) -> None:
        emit(ImageResult(str(p), error=str(e)))

    for b in load_batches(files, clf.input_size, o.fit or clf.fit, o.batch_size, skip):
        for r in _explain_batch(b, engine, o, out_dir, claims):
            emit(r)
    return results
