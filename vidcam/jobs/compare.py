"""Compare CAM methods on the same images: Grad-CAM, Grad-CAM++ and Score-CAM side by side, with their metrics.

Every method explains the same class (each image's top-1 by the first method's engine, or a fixed class), and
every map is measured with the same forward pass (:mod:`vidcam.cam.metrics`), so the numbers are comparable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidcam.cam.engine import CamEngine
from vidcam.cam.methods import REGISTRY, method_names
from vidcam.cam.metrics import DEFAULT_STEPS, CamMetrics, evaluate_batch
from vidcam.cam.spec import ModelLike, ModelSpec
from vidcam.errors import UsageError, VidcamError
from vidcam.jobs.image import expand_paths, load_batches
from vidcam.media.outputs import BatchOutputs, check_output, ensure_dir, out_of_space, write_image
from vidcam.media.render import RenderOptions, format_label, overlay
from vidcam.models.zoo import DEFAULT_MODEL, Classifier

__all__ = ["CompareResult", "DEFAULT_METHODS", "CompareOptions", "method_title", "compare_methods", "compare_panel"]

DEFAULT_METHODS = ("gradcam", "gradcam++", "scorecam")


def method_title(method: str) -> str:
    cls = REGISTRY.get(method)
    return (cls.title or cls.name) if cls is not None else method


@dataclass
class CompareResult:
    """One image compared across methods, or the error that made vidcam skip it.

    Attributes:
        path: the input image.
        class_id / label / probability: the explained class and its probability.
        metrics: method name -> :class:`~vidcam.cam.metrics.CamMetrics`, in the order the methods were given.
        cams: method name -> (h, w) map in [0, 1].
        output: the written ``<stem>_compare.jpg``, if any.
        error: why the image was skipped.
    """

    path: str
    class_id: int | None = None
    label: str | None = None
    probability: float | None = None
    metrics: dict[str, CamMetrics] = field(default_factory=dict)
    cams: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    output: str | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        d: dict = {"path": self.path}
        if self.error and not self.metrics:
            d["error"] = self.error
            return d
        d.update(class_id=self.class_id, label=self.label, probability=round(float(self.probability), 6),
                 methods={m: v.as_dict() for m, v in self.metrics.items()}, output=self.output)
        if self.error:
            d["error"] = self.error
        return d


def _metrics_line(m: CamMetrics) -> str:
    return f"drop {m.average_drop:.0f}% del {m.deletion_auc:.3f} ins {m.insertion_auc:.3f}"


def _title_strip(width: int, lines: Sequence[str], height: int) -> np.ndarray:
    """A dark strip with centred white lines of text (any script: :mod:`vidcam.media.text`), shrunk to fit."""
    from vidcam.media.text import draw_text, text_mask

    strip = np.full((height, width, 3), 24, np.uint8)
    line_h = height / max(1, len(lines))
    for k, text in enumerate(lines):
        size = max(6, round(line_h * 0.6))
        mask = text_mask(text, size)
        if mask.shape[1] > width - 8:
            mask = text_mask(text, max(6, int(size * (width - 8) / mask.shape[1])))
        x = max(2, (width - mask.shape[1]) // 2)
        y = int(line_h * k + (line_h - mask.shape[0]) / 2)
        draw_text(strip, mask, x, y)
    return strip


def compare_panel(
    image: np.ndarray,
    cams: dict[str, np.ndarray],
    metrics: dict[str, CamMetrics],
    label: str,
    *,
    window: tuple | None = None,
    height: int = 240,
    alpha: float = 0.4,
    colormap: str = "jet",
) -> np.ndarray:
    """original | one overlay per method, each under a title strip (method name and its metrics).

    Args:
        image: (H, W, 3) uint8 RGB, the whole picture.
        cams: method -> (h, w) map in [0, 1].
        metrics: method -> its metrics (shown under the name).
        label: the explained class, e.g. ``malamute 44.5%``, shown over the original.
        window: the part of ``image`` the model saw (see :func:`vidcam.media.images.fit_to_model`).
        height: panel height in pixels (the width follows the image's aspect ratio).
        alpha / colormap: as in :func:`vidcam.media.render.overlay`.
    """
    import cv2

    h, w = image.shape[:2]
    scale = height / h
    pw = max(1, round(w * scale))
    small = cv2.resize(image, (pw, height), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    win = None
    if window is not None and tuple(window) != (0, 0, w, h):
        x0, y0, x1, y1 = window
        win = (round(x0 * scale), round(y0 * scale), round(x1 * scale), round(y1 * scale))
    strip_h = max(28, height // 6)
    original = small.copy()
    if win is not None:  # show which part the model saw
        cv2.rectangle(original, win[:2], (win[2] - 1, win[3] - 1), (255, 255, 255), 1, cv2.LINE_AA)
    panels = [np.concatenate([_title_strip(pw, ["original", label], strip_h), original])]
    for method, cam in cams.items():
        heat = overlay(small, cam, alpha=alpha, colormap=colormap, window=win)
        title = [method_title(method)]
        if method in metrics:
            title.append(_metrics_line(metrics[method]))
        panels.append(np.concatenate([_title_strip(pw, title, strip_h), heat]))
    gap = np.full((height + strip_h, 4, 3), 255, np.uint8)
    out = [panels[0]]
    for p in panels[1:]:
        out += [gap, p]
    return np.concatenate(out, axis=1)


def _engines(model: ModelLike, methods: Sequence[str]) -> dict[str, CamEngine]:
    """One engine per method on the same classifier and layer (an engine given for one method is reused)."""
    layer = None
    if isinstance(model, CamEngine):
        clf, layer = model.classifier, model.layer_name
    elif isinstance(model, Classifier):
        clf = model
    else:
        spec = model if isinstance(model, ModelSpec) else ModelSpec(model)
        clf, layer = spec.classifier(), spec.layer
    engines = {}
    for m in methods:
        if isinstance(model, CamEngine) and model.method == m:
            engines[m] = model
        else:
            engines[m] = CamEngine(clf, layer=layer, method=m)
    return engines


@dataclass(frozen=True)
class CompareOptions:
    """What ``compare`` does (checked when made).

    Attributes:
        methods: which methods, in panel order (default: :data:`DEFAULT_METHODS`; any of ``vidcam methods``).
        class_index: explain this class instead of each image's top-1.
        fit: ``crop`` or ``squash``; default (None): the classifier's own.
        steps: deletion/insertion curve steps (:func:`vidcam.cam.metrics.evaluate_batch`).
        batch_size: images per engine call.
        panel_height: height of each panel in the picture.
        alpha, colormap: how the heat is drawn.
        overwrite: replace existing outputs.

    Raises:
        UsageError: no method, an unknown one, or a bad drawing option.
    """

    methods: Sequence[str] = DEFAULT_METHODS
    class_index: int | None = None
    fit: str | None = None
    steps: int = DEFAULT_STEPS
    batch_size: int = 8
    panel_height: int = 240
    alpha: float = 0.4
    colormap: str = "jet"
    overwrite: bool = False

    def __post_init__(self) -> None:
        methods = tuple(dict.fromkeys(self.methods))
        if not methods:
            raise UsageError("no methods to compare: give at least one of " + ", ".join(method_names()))
        for m in methods:
            if m not in REGISTRY:
                raise UsageError(f"unknown method {m!r}: use one of {', '.join(method_names())}")
        object.__setattr__(self, "methods", methods)
        RenderOptions(alpha=self.alpha, colormap=self.colormap, fit=self.fit or "squash")  # checks them


def _compare_batch(b, engines: dict[str, CamEngine], o: CompareOptions) -> list[CompareResult]:
    """Every method's map of one batch (the first method's classes for all), measured, drawn and written."""
    methods = list(o.methods)
    first = engines[methods[0]]
    clf = first.classifier
    res = first.run(b.fitted, o.class_index)
    cams = {methods[0]: res.cams}
    for m in methods[1:]:
        cams[m] = engines[m].run(b.fitted, res.class_ids).cams  # the same class for every method
    measured = {m: evaluate_batch(first, b.fitted, cams[m], res.class_ids, steps=o.steps) for m in methods}
    results = []
    for i, p in enumerate(b.paths):
        cid = int(res.class_ids[i])
        r = CompareResult(
            str(p), class_id=cid, label=clf.class_names[cid], probability=float(res.probabilities[i, cid]),
            metrics={m: measured[m][i] for m in methods}, cams={m: cams[m][i] for m in methods},
        )
        if b.extras[i] is not None:
            try:
                picture = compare_panel(b.images[i], r.cams, r.metrics, format_label(r.label, r.probability),
                                        window=b.windows[i], height=o.panel_height, alpha=o.alpha,
                                        colormap=o.colormap)
                r.output = str(write_image(b.extras[i], picture, overwrite=o.overwrite))
            except VidcamError as e:
                if out_of_space(e):  # every later image would fail the same way: stop, as image and frames do
                    raise
                r.error = str(e)
        results.append(r)
    return results


def compare_methods(
    paths: Iterable[str | Path],
    output_dir: str | Path | None = ".",
    *,
    model: ModelLike = DEFAULT_MODEL,
    options: CompareOptions | None = None,
    on_result: Callable[[CompareResult], None] | None = None,
) -> list[CompareResult]:
    """Explain each image with several CAM methods, measure each map and write ``<stem>_compare.jpg``.

    A file that cannot be read or written is reported in its result's ``error`` and skipped; the rest go on; a
    full disk stops the run (every later picture would fail the same way).

    Args:
        paths: image files (globs expanded).
        output_dir: where the pictures go; None to write nothing.
        model: zoo name, ``.keras`` path, :class:`~vidcam.cam.spec.ModelSpec` (layer, weights, unsafe; its method
            is ignored), :class:`Classifier` or a built :class:`CamEngine` (its layer is used).
        options: :class:`CompareOptions`.
        on_result: called with each result as soon as it is known.

    Example:
        >>> r = compare_methods(["video/dog.jpg"], "out")[0]  # doctest: +SKIP
        >>> {m: round(x.insertion_auc, 3) for m, x in r.metrics.items()}  # doctest: +SKIP
    """
    o = options or CompareOptions()
    files = expand_paths(paths)
    claims = BatchOutputs(files)
    engines = _engines(model, o.methods)
    clf = engines[o.methods[0]].classifier
    out_dir = ensure_dir(output_dir) if output_dir is not None else None
    results: list[CompareResult] = []

    def emit(r: CompareResult) -> None:
        results.append(r)
        if on_result:
            on_result(r)

    def destination(p: Path) -> Path | None:
        if out_dir is None:
            return None
        # Refuse an existing output before spending time on the image.
        claims.claim(out_dir / f"{p.stem}_compare.jpg", p)
        return check_output(out_dir / f"{p.stem}_compare.jpg", overwrite=o.overwrite, inputs=(p,))

    def skip(p: Path, e: VidcamError) -> None:
        emit(CompareResult(str(p), error=str(e)))

    for b in load_batches(files, clf.input_size, o.fit or clf.fit, o.batch_size, skip, destination):
        for r in _compare_batch(b, engines, o):
            emit(r)
    return results
