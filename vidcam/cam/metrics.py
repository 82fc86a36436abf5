"""How faithful is a heatmap? Perturbation metrics for class activation maps, batched through the engine.

Each metric perturbs the model's own input (the frames the engine saw, at the model's size) according to the
CAM, upsampled to that size, and asks the model again:

- **Average Drop / Increase in Confidence** (Chattopadhyay et al. 2018, Grad-CAM++): the explanation map is
  ``frame * cam`` (pixels fade to black where the map is cold). With Y the class probability on the frame
  and O on the explanation map, ``drop = max(0, Y - O) / Y`` (reported in percent) and ``increase = O > Y``.
  Lower drop is better: the map kept what the model needs.
- **Deletion / insertion AUC** (Petsiuk et al. 2018, RISE): pixels are ranked by the map's heat and, in
  ``steps`` equal steps, removed from the frame (replaced by the same pixels of a strongly blurred copy) or
  inserted into that blurred copy. The class probability after each step gives a curve over the removed (or
  inserted) fraction x in [0, 1]; its trapezoid area is the AUC. A faithful map makes the deletion curve fall
  fast (low AUC) and the insertion curve rise fast (high AUC).

Why blur and not black for deletion (RISE used black): black holes are far outside what the model was trained
on, so scattering them anywhere kills the class; on the bundled cat photo a *random* map then "beats" every CAM.
A blurred pixel removes detail without adding edges. ``black`` and ``gray`` are available as options.

All perturbed images of one frame (``2 * steps + 3``) go through the engine's compiled forward pass
(:meth:`vidcam.cam.engine.CamEngine.predict`) as one batch; the probabilities are raw (not divided by Y), as in
RISE, so they read as "how much of the class is left".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from vidcam.cam.engine import CamEngine, CamResult
from vidcam.errors import UsageError
from vidcam.models.zoo import Classifier

__all__ = [
    "BASELINES",
    "CamMetrics",
    "auc",
    "baseline_image",
    "describe_summary",
    "evaluate",
    "evaluate_batch",
    "importance_order",
    "average_ranks",
    "rank_correlation",
    "rank_correlations",
    "summarize",
    "upsample",
]

BASELINES = ("black", "gray", "blur")
DEFAULT_STEPS = 16
_EPS = 1e-12


@dataclass
class CamMetrics:
    """Faithfulness numbers for one frame's map.

    Attributes:
        class_id: the class the map explains.
        probability: Y, the class probability on the unperturbed frame.
        masked_probability: O, the class probability on the explanation map ``frame * cam``.
        average_drop: ``max(0, Y - O) / Y`` in percent (0 = the map keeps all the evidence; lower is better).
        increase: True when O > Y (the map alone convinces the model more than the frame).
        deletion_auc: area under the deletion curve, in [0, 1]; lower is better.
        insertion_auc: area under the insertion curve, in [0, 1]; higher is better.
        deletion_curve: (steps + 1,) class probability after removing 0, 1/steps, ..., all of the pixels.
        insertion_curve: (steps + 1,) class probability after inserting 0, 1/steps, ..., all of the pixels.
    """

    class_id: int
    probability: float
    masked_probability: float
    average_drop: float
    increase: bool
    deletion_auc: float
    insertion_auc: float
    deletion_curve: np.ndarray = field(repr=False)
    insertion_curve: np.ndarray = field(repr=False)

    @property
    def score(self) -> float:
        """``insertion_auc - deletion_auc``: one number per frame, higher is better (used to rank frames)."""
        return self.insertion_auc - self.deletion_auc

    def as_dict(self, curves: bool = False) -> dict:
        """JSON-ready numbers (rounded); with ``curves`` the two probability curves too."""
        d = {
            "class_id": self.class_id,
            "probability": round(self.probability, 6),
            "masked_probability": round(self.masked_probability, 6),
            "average_drop": round(self.average_drop, 3),
            "increase": self.increase,
            "deletion_auc": round(self.deletion_auc, 6),
            "insertion_auc": round(self.insertion_auc, 6),
        }
        if curves:
            d["deletion_curve"] = [round(float(v), 6) for v in self.deletion_curve]
            d["insertion_curve"] = [round(float(v), 6) for v in self.insertion_curve]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CamMetrics:
        """Back from :meth:`as_dict` (curves only when they were saved), e.g. from a labels file."""
        return cls(
            class_id=int(d["class_id"]), probability=float(d["probability"]),
            masked_probability=float(d["masked_probability"]), average_drop=float(d["average_drop"]),
            increase=bool(d["increase"]), deletion_auc=float(d["deletion_auc"]),
            insertion_auc=float(d["insertion_auc"]),
            deletion_curve=np.asarray(d.get("deletion_curve", []), np.float32),
            insertion_curve=np.asarray(d.get("insertion_curve", []), np.float32),
        )

    def describe(self) -> str:
        """One line for people: ``avg drop 12.3%, increase no, deletion AUC 0.081, insertion AUC 0.512``."""
        return (f"avg drop {self.average_drop:.1f}%, increase {'yes' if self.increase else 'no'}, "
                f"deletion AUC {self.deletion_auc:.3f}, insertion AUC {self.insertion_auc:.3f}")


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) map -> (height, width) float32 in [0, 1], bicubic like the rendered heatmap."""
    import cv2

    cam = np.asarray(cam, np.float32)
    height, width = size
    if cam.shape == (height, width):
        return np.clip(cam, 0.0, 1.0)
    return np.clip(cv2.resize(cam, (width, height), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


@lru_cache(maxsize=8)
def _tiebreak(n: int) -> np.ndarray:
    # A fixed pseudo-random secondary key: equal-heat pixels (e.g. the zero area of a ReLU'd map) leave in a
    # scattered order, not raster order (which would delete the top rows first and bias the curve).
    return np.random.default_rng(0).permutation(n)


def importance_order(cam_up: np.ndarray) -> np.ndarray:
    """Flat pixel indices from hottest to coldest; ties in a fixed scattered order (deterministic)."""
    flat = np.asarray(cam_up, np.float32).ravel()
    return np.lexsort((_tiebreak(flat.size), -flat))


def baseline_image(frame: np.ndarray, kind: str) -> np.ndarray:
    """What removed pixels become: ``black`` (0), ``gray`` (127.5) or ``blur`` (Gaussian, sigma = size / 22.4).

    The blur is strong on purpose (sigma 10 px at 224): RISE's milder 11-pixel kernel leaves a cat recognisable,
    which would make every insertion curve start high whatever the map.
    """
    import cv2

    frame = np.asarray(frame)
    if kind == "black":
        return np.zeros(frame.shape, np.float32)
    if kind == "gray":
        return np.full(frame.shape, 127.5, np.float32)
    if kind == "blur":
        sigma = min(frame.shape[:2]) / 22.4
        return cv2.GaussianBlur(frame.astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma)
    raise UsageError(f"unknown baseline {kind!r}: use one of {', '.join(BASELINES)}")


def auc(curve: np.ndarray) -> float:
    """Trapezoid area under a curve sampled at x = 0, 1/n, ..., 1."""
    curve = np.asarray(curve, np.float64)
    if curve.size < 2:
        raise UsageError("a curve needs at least two points")
    return float((curve[:-1] + curve[1:]).sum() / (2.0 * (curve.size - 1)))


def _perturbations(frame: np.ndarray, cam_up: np.ndarray, steps: int, deletion: str, insertion: str) -> np.ndarray:
    """(2 * steps + 3, H, W, 3) float32: the explanation map, the deletion series, the insertion series."""
    h, w = frame.shape[:2]
    pixels = h * w
    f = frame.astype(np.float32)
    rank = np.empty(pixels, np.int64)
    rank[importance_order(cam_up)] = np.arange(pixels)
    counts = np.round(np.arange(steps + 1) * pixels / steps).astype(np.int64)
    moved = (rank[None, :] < counts[:, None]).reshape(steps + 1, h, w, 1)  # pixels removed / inserted so far
    removed_to = baseline_image(frame, deletion)
    start_from = removed_to if insertion == deletion else baseline_image(frame, insertion)  # one blur, not two
    dele = np.where(moved, removed_to[None], f[None])
    ins = np.where(moved, f[None], start_from[None])
    explanation = f * cam_up[..., None]
    return np.concatenate([explanation[None], dele, ins]).astype(np.float32)


def _engine_for(model: CamEngine | Classifier) -> CamEngine:
    if isinstance(model, CamEngine):
        return model
    if isinstance(model, Classifier):
        return CamEngine(model)
    raise UsageError(f"expected a CamEngine or a Classifier, got {type(model).__name__}")


def evaluate_batch(
    engine: CamEngine | Classifier,
    frames: np.ndarray,
    cams: np.ndarray,
    class_ids,
    *,
    steps: int = DEFAULT_STEPS,
    deletion_baseline: str = "blur",
    insertion_baseline: str = "blur",
    batch_size: int = 64,
) -> list[CamMetrics]:
    """Faithfulness metrics for a batch of frames and their maps.

    Args:
        engine: the engine that made the maps (any method: only its forward pass is used), or a classifier
            (an engine is built for it; pass an engine to reuse its compiled forward pass).
        frames: (N, H, W, 3) uint8 RGB at the model's input size: exactly what the engine was given.
        cams: (N, h, w) maps in [0, 1] at any resolution (upsampled bicubically to H x W).
        class_ids: (N,) the class each map explains (``CamResult.class_ids``), or one int for all.
        steps: points on the deletion/insertion curves minus one (16-32 is plenty).
        deletion_baseline: what deleted pixels become: ``blur`` (default), ``black`` (RISE) or ``gray``.
        insertion_baseline: what insertion starts from: ``blur`` (RISE), ``black`` or ``gray``.
        batch_size: perturbed images per forward call (each frame needs ``2 * steps + 3``; frames are grouped).

    Returns:
        One :class:`CamMetrics` per frame, in order.

    Raises:
        UsageError: mismatched shapes, a bad class id, steps < 1 or an unknown baseline.

    Example:
        >>> res = engine.run(frames)  # doctest: +SKIP
        >>> [m.deletion_auc for m in evaluate_batch(engine, frames, res.cams, res.class_ids)]  # doctest: +SKIP
    """
    eng = _engine_for(engine)
    frames = np.asarray(frames)
    cams = np.asarray(cams, np.float32)
    if frames.ndim != 4 or frames.shape[1:3] != eng.input_size or frames.shape[3] != 3:
        raise UsageError(f"expected frames of shape (N, {eng.input_size[0]}, {eng.input_size[1]}, 3) "
                         f"at the model's input size, got {frames.shape}")
    n = frames.shape[0]
    if cams.ndim != 3 or cams.shape[0] != n:
        raise UsageError(f"expected {n} maps of shape (h, w) to go with {n} frames, got an array of {cams.shape}")
    ids = np.asarray(class_ids, np.int64)
    if ids.ndim == 0:
        ids = np.full(n, int(ids), np.int64)
    if ids.shape != (n,):
        raise UsageError(f"expected {n} class ids, got {ids.shape[0] if ids.ndim else 1}")
    if n and (ids.min() < 0 or ids.max() >= eng.classifier.num_classes):
        raise UsageError(f"class id out of range: the model has {eng.classifier.num_classes} classes")
    if int(steps) < 1:
        raise UsageError(f"steps must be at least 1, got {steps}")
    for b in (deletion_baseline, insertion_baseline):
        if b not in BASELINES:
            raise UsageError(f"unknown baseline {b!r}: use one of {', '.join(BASELINES)}")
    steps = int(steps)
    per_frame = 2 * steps + 3
    group = max(1, batch_size // per_frame)
    out: list[CamMetrics] = []
    for start in range(0, n, group):
        idx = range(start, min(n, start + group))
        stack = np.concatenate([
            _perturbations(frames[i], upsample(cams[i], eng.input_size), steps, deletion_baseline,
                           insertion_baseline)
            for i in idx
        ])
        probs = eng.predict(stack, batch_size=max(batch_size, per_frame))
        for j, i in enumerate(idx):
            p = probs[j * per_frame : (j + 1) * per_frame, ids[i]].astype(np.float64)
            o, dele, ins = float(p[0]), p[1 : steps + 2], p[steps + 2 :]
            y = float(dele[0])  # deletion step 0 is the untouched frame
            out.append(CamMetrics(
                class_id=int(ids[i]), probability=y, masked_probability=o,
                average_drop=100.0 * max(0.0, y - o) / max(y, _EPS), increase=bool(o > y),
                deletion_auc=auc(dele), insertion_auc=auc(ins),
                deletion_curve=dele.astype(np.float32), insertion_curve=ins.astype(np.float32),
            ))
    return out


def evaluate(engine: CamEngine, frames: np.ndarray, class_index=None, **options) -> tuple[CamResult, list[CamMetrics]]:
    """Run the engine on frames and measure its maps: ``(CamResult, [CamMetrics])``.

    Args:
        engine: the engine (its method decides the maps).
        frames: (N, H, W, 3) uint8 at the model's input size.
        class_index: None (each frame's top-1), one id, or one id per frame.
        **options: passed on to :func:`evaluate_batch` (``steps``, baselines, ``batch_size``).
    """
    result = engine.run(frames, class_index)
    return result, evaluate_batch(engine, frames, result.cams, result.class_ids, **options)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Each row's ranks 1..M (ties get their average rank) of an (N, M) array, all rows at once: a video's
    batch of maps costs a few array operations instead of a few per map."""
    x = np.asarray(x, np.float64)
    n, m = x.shape
    order = np.argsort(x, axis=1, kind="stable")
    s = np.take_along_axis(x, order, axis=1)
    starts = np.ones((n, m), bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]  # where a group of equal values begins (each row begins one)
    flat = starts.ravel()
    group = np.cumsum(flat) - 1  # every cell's group, numbered across the rows
    first = np.flatnonzero(flat)  # each group's first cell (flat index)
    last = np.append(first[1:], n * m) - 1  # and its last: the next group begins after it
    average = (first % m + last % m) / 2.0 + 1.0  # the mean of positions first..last, 1-based within the row
    ranks = np.empty((n, m))
    np.put_along_axis(ranks, order, average[group].reshape(n, m), axis=1)
    return ranks


def rank_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`rank_correlation` of each row of ``a`` with the same row of ``b`` ((N, ...) arrays), vectorised."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise UsageError(f"maps of different sizes: {a.shape} and {b.shape}")
    ra, rb = (average_ranks(v.reshape(len(v), -1)) for v in (a, b))
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ra * rb).sum(axis=1) / den
    return np.where(den > 0, np.clip(r, -1.0, 1.0), 0.0)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of one shape (ties get their average rank), for sanity checks.

    Returns 0.0 when either map is constant (e.g. all zero): it ranks nothing, so it agrees with nothing.
    """
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise UsageError(f"maps of different sizes: {a.size} and {b.size} cells")
    return float(rank_correlations(a[None], b[None])[0])


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 6) if values else None


def summarize(metrics: list[CamMetrics], *, indices: list[int] | None = None, worst: int = 3) -> dict:
    """Summary of many frames' metrics: means and the worst frames.

    Args:
        metrics: per-frame metrics.
        indices: the frame number of each entry (default 0, 1, ...), used to name the worst frames.
        worst: how many worst frames to list (lowest ``insertion_auc - deletion_auc`` first).

    Returns:
        ``{"frames", "average_drop" (mean, %), "increase_in_confidence" (% of frames), "deletion_auc",
        "insertion_auc" (means), "worst": [{"frame", "class_id", "average_drop", "deletion_auc",
        "insertion_auc"}, ...]}``; means are None when there are no frames.
    """
    if indices is None:
        indices = list(range(len(metrics)))
    if len(indices) != len(metrics):
        raise UsageError(f"expected {len(metrics)} frame indices, got {len(indices)}")
    order = sorted(range(len(metrics)), key=lambda k: (metrics[k].score, indices[k]))[: max(0, worst)]
    return {
        "frames": len(metrics),
        "average_drop": _mean([m.average_drop for m in metrics]),
        "increase_in_confidence": _mean([100.0 * m.increase for m in metrics]),
        "deletion_auc": _mean([m.deletion_auc for m in metrics]),
        "insertion_auc": _mean([m.insertion_auc for m in metrics]),
        "worst": [
            {"frame": int(indices[k]), "class_id": metrics[k].class_id,
             "average_drop": round(metrics[k].average_drop, 3), "deletion_auc": round(metrics[k].deletion_auc, 6),
             "insertion_auc": round(metrics[k].insertion_auc, 6)}
            for k in order
        ],
    }


def describe_summary(summary: dict) -> str:
    """One line for people from :func:`summarize`'s dict."""
    if not summary["frames"]:
        return "no frames measured"
    worst = ", ".join(str(w["frame"]) for w in summary["worst"])
    return (f"{summary['frames']} frames: avg drop {summary['average_drop']:.1f}%, increase in confidence "
            f"{summary['increase_in_confidence']:.0f}%, deletion AUC {summary['deletion_auc']:.3f}, "
            f"insertion AUC {summary['insertion_auc']:.3f}; worst frames {worst}")
