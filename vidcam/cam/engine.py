"""The batched Grad-CAM engine: one compiled step from a batch of frames to classes, probabilities and maps.

The engine is built once per (model, layer, method). Its step is one ``tf.function`` with a fixed input
signature (uint8 frames at the model's size, any batch), so it traces once and never rebuilds the model.
Preprocessing runs inside the graph, so the caller's frame buffer is never written over.

How the feature map is reached: while the step is traced, the target layer's ``call`` is wrapped so its
output is watched by the gradient tape. This works whatever the model's structure is, including the
book's transfer model where the pretrained base is a single layer of the classifier (a nested model),
which defeats the usual ``Model(inputs, [layer.output, model.output])`` recipe.

Per image i: score_i = the target's score: the logit of its target class (pre-softmax), or, for a classifier whose
classes are groups of the model's (:mod:`vidcam.models.groups`), the log of the group's summed probability,
``logsumexp(member logits) - logsumexp(all logits)``, so the map explains "any dog", whichever breed; G_i =
d score_i / d A_i (never mixed across the batch). Every method reads the target through the engine's scores (the
step's, the forward passes', the head's), so each one explains groups. The method (looked up by name in
:mod:`vidcam.cam.methods`' registry) turns (A_i, G_i) into a raw map inside the step, e.g. Grad-CAM's
sum_c mean(G_ic) A_ic, or after it with extra forward passes (Score-CAM); the engine then applies ReLU and divides
by the map's max + eps, so an all-zero map stays zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidcam.cam.methods import METHODS, CamMethod, get_method
from vidcam.errors import LayerError, ModelError, UsageError
from vidcam.models.preprocess import preprocess_pixels
from vidcam.models.zoo import Classifier

__all__ = ["CamEngine", "CamResult", "METHODS", "feature_layers", "fuse_layer_maps", "leave_cores", "runs_on_cpu",
           "usable_cores"]

_EPS = 1e-7


@dataclass
class CamResult:
    """What the engine returns for a batch of N images.

    Attributes:
        class_ids: (N,) int, the class each map explains (top-1 or the fixed class).
        probabilities: (N, num_classes) float32, softmax (or sigmoid) probabilities.
        cams: (N, h, w) float32 in [0, 1] at the feature map's resolution.
    """

    class_ids: np.ndarray
    probabilities: np.ndarray
    cams: np.ndarray

    def top_k(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, probabilities) of the k most probable classes per image, in descending order."""
        k = min(k, self.probabilities.shape[1])
        ids = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]
        return ids, np.take_along_axis(self.probabilities, ids, axis=1)


def _walk(model, prefix: str = "") -> Iterator[tuple[str, Any]]:
    import keras

    for layer in model.layers:
        yield prefix + layer.name, layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer, prefix + layer.name + "/")


def _is_feature_map(layer) -> bool:
    import keras

    if isinstance(layer, keras.layers.InputLayer):
        return False
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return False
    if len(shape) != 4:
        return False
    h, w = shape[1], shape[2]
    return not (h == 1 and w == 1)


def feature_layers(model) -> list[tuple[str, Any]]:
    """All layers (nested models included, as ``outer/inner``) whose output is a spatial 4-D feature map."""
    import keras

    return [(n, layer) for n, layer in _walk(model) if not isinstance(layer, keras.Model) and _is_feature_map(layer)]


def _resolve_layer(model, name: str | None):
    candidates = feature_layers(model)
    if not candidates:
        raise LayerError("the model has no 4-D feature map layer to compute Grad-CAM on")
    if name is None:
        return candidates[-1]
    for qualified, layer in candidates:
        if name == qualified or name == layer.name:
            return qualified, layer
    if any(name == q or name == layer.name for q, layer in _walk(model)):
        raise LayerError(f"layer {name!r} does not output a 4-D feature map; valid layers: "
                         + ", ".join(q for q, _ in candidates))
    raise LayerError(f"no layer named {name!r}; valid layers: " + ", ".join(q for q, _ in candidates))


def _resolve_layers(model, spec: str | None) -> list[tuple[str, Any]]:
    """``None`` (the last feature map), one name, or ``a,b,c``: each resolved, duplicates dropped, order kept."""
    if spec is None:
        return [_resolve_layer(model, None)]
    names = [part.strip() for part in str(spec).split(",")]
    if not all(names):
        raise LayerError(f"--layer {spec!r} has an empty name; give one layer or a comma-separated list (a,b,c)")
    out: list[tuple[str, Any]] = []
    for name in names:
        qualified, layer = _resolve_layer(model, name)
        if all(layer is not seen for _, seen in out):
            out.append((qualified, layer))
    return out


def _final_layer(model):
    import keras

    layer = model.layers[-1]
    while isinstance(layer, keras.Model) and layer.layers:
        layer = layer.layers[-1]
    return layer


def _path_to(model, target) -> list[Any]:
    """The layers from ``model``'s own layer down to ``target`` (``[base, conv2]`` for ``base/conv2``)."""
    import keras

    for layer in model.layers:
        if layer is target:
            return [layer]
        if isinstance(layer, keras.Model):
            inner = _path_to(layer, target)
            if inner:
                return [layer, *inner]
    return []


@dataclass
class _Tail:
    """What follows a layer: ``fn`` maps its output to the model's raw output running only the later layers
    (None when the model cannot be cut there), ``layers`` those layers in order (None when unknown)."""

    fn: Any = None
    layers: list | None = None


def _cut_one(model, layer) -> _Tail:
    """The tail of ``model`` after its own ``layer``: a sub-model from the layer's output tensor in this graph."""
    import keras

    if len(model.outputs) != 1:
        return _Tail()
    # A layer has one node per call; a nested model called in the outer graph adds nodes to its inner layers,
    # so the node of this graph is the one from whose output a sub-model can be built.
    for node in getattr(layer, "_inbound_nodes", []):
        tensors = list(getattr(node, "output_tensors", []))
        if len(tensors) != 1:
            continue
        if tensors[0] is model.outputs[0]:
            return _Tail(lambda a: a, [])
        try:
            sub = keras.Model(tensors[0], model.outputs[0])
        except (ValueError, TypeError, KeyError):  # another graph's node, or a skip path around the layer
            continue
        return _Tail(lambda a, sub=sub: sub(a, training=False),
                     [x for x in sub.layers if not isinstance(x, keras.layers.InputLayer)])
    return _Tail()


def _cut(model, path: list) -> _Tail:
    """The model after ``path[-1]``, composed through nested models; ``_Tail()`` if it cannot be cut there."""
    outer = _cut_one(model, path[0])
    if len(path) == 1 or outer.fn is None:
        return outer
    inner = _cut(path[0], path[1:])
    if inner.fn is None:
        return _Tail()
    return _Tail(lambda a: outer.fn(inner.fn(a)), [*inner.layers, *outer.layers])


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or ``taskset`` limits it)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def runs_on_cpu() -> bool:
    """True when TensorFlow sees no GPU: the engine's kernels share the CPU's cores with everything else."""
    from tensorflow.python.eager import context  # tf.config.list_physical_devices, from the runtime's modules

    return not context.context().list_physical_devices("GPU")


def leave_cores(n: int = 1) -> int | None:
    """Run TensorFlow's CPU kernels on all cores but ``n``, for jobs whose other stages run alongside the engine
    the whole time (a video: ffmpeg decoding and encoding, OpenCV drawing). A parallel kernel waits for its slowest
    share, and a share that loses its core to ffmpeg keeps the other threads waiting: on 2 cores the engine took
    25-27 CPU-ms per frame inside the video pipeline with 2 threads, 21 with 1 (19 alone).

    Only before TensorFlow's runtime starts, without a GPU, and when nobody chose a thread count already;
    returns the count set, or None when it left TensorFlow as it was. Uses the runtime's modules only
    (``tf.config.threading`` is this), so it may run while ``import tensorflow`` loads the rest.
    """
    from tensorflow.python.eager import context

    ctx = context.context()
    cores = usable_cores()
    if cores <= n or ctx.intra_op_parallelism_threads:
        return None
    if not runs_on_cpu():
        return None
    try:
        ctx.intra_op_parallelism_threads = cores - n
    except RuntimeError:  # the runtime has started: its thread pools are fixed
        return None
    return cores - n


def fuse_layer_maps(maps: list[np.ndarray]) -> np.ndarray:
    """Several layers' (N, h_l, w_l) maps fused LayerCAM's way (torch-cam's ``LayerCAM.fuse_cams``).

    Each map is upsampled (bilinear, half-pixel centres) to the finest map's size (the largest h*w),
    normalised by its own max + eps, then the element-wise max is taken: a cell is hot if any layer says so.
    torch-cam also tanh-scales shallow maps first; this does not. One map is returned as it is.
    """
    import tensorflow as tf

    if len(maps) == 1:
        return maps[0]
    size = max((m.shape[1:3] for m in maps), key=lambda s: s[0] * s[1])
    fused = np.zeros((maps[0].shape[0], *size), np.float32)
    for m in maps:
        if tuple(m.shape[1:3]) != tuple(size):
            m = tf.image.resize(np.asarray(m, np.float32)[..., None], size, method="bilinear")[..., 0].numpy()
        peak = m.reshape(len(m), -1).max(axis=1) if len(m) else np.zeros(0, np.float32)
        fused = np.maximum(fused, m / (peak[:, None, None] + _EPS))
    return fused


class _Hooks:
    """Context manager that (a) makes the model emit pre-activation scores and (b) captures the feature maps
    of the target layers (watched by ``tape`` when given), or replaces one with ``replace = (index, tensor)``."""

    def __init__(self, targets, final, output: str, tape=None, replace=None) -> None:
        self.targets, self.final, self.output, self.tape, self.replace = list(targets), final, output, tape, replace
        self.feature_maps: list[Any] = [None] * len(self.targets)

    def _watcher(self, original, index: int):
        def watched(*args, **kwargs):
            out = original(*args, **kwargs)
            if self.replace is not None and self.replace[0] == index:
                out = self.replace[1]
            if self.tape is not None:
                self.tape.watch(out)
            self.feature_maps[index] = out
            return out

        return watched

    def __enter__(self):
        import keras

        for index, target in enumerate(self.targets):
            target.call = self._watcher(target.call, index)
        self._act = None
        if self.output in ("softmax", "sigmoid"):
            if isinstance(self.final, (keras.layers.Softmax, keras.layers.Activation)):
                self._final_call = True
                self.final.call = lambda inputs, *a, **k: inputs
            elif getattr(self.final, "activation", None) is not None:
                self._act = self.final.activation
                self.final.activation = keras.activations.linear
        return self

    @property
    def feature_map(self):
        """The first target's feature map."""
        return self.feature_maps[0]

    def __exit__(self, *exc) -> None:
        # Instance attributes shadow the class methods; deleting them restores the originals.
        for target in self.targets:
            del target.call
        if getattr(self, "_final_call", False):
            del self.final.call
        if self._act is not None:
            self.final.activation = self._act


class CamEngine:
    """Grad-CAM (or any registered method, see :mod:`vidcam.cam.methods`) for a classifier, built once.

    Args:
        classifier: what to explain.
        layer: the feature-map layer (plain or ``outer/inner`` name), or several as ``a,b,c`` (their maps
            fused by :func:`fuse_layer_maps`, at the finest layer's resolution); default: the classifier's
            default layer, else the last 4-D feature map.
        method: a registered method name (``vidcam methods``): ``gradcam`` (default), ``gradcam++``,
            ``scorecam``, ``ablationcam``, ``cam``, ... or one added with :func:`vidcam.cam.methods.register`.
        scorecam_channels: Score-CAM uses the N most active channels (a forward pass each).
        method_options: further keyword options for the method's class.

    Example:
        >>> engine = CamEngine(load_classifier("efficientnet_lite0"))  # doctest: +SKIP
        >>> result = engine.run(frames_uint8)  # (N, 224, 224, 3) RGB  # doctest: +SKIP
        >>> result.cams.shape  # doctest: +SKIP
        (N, 7, 7)
    """

    def __init__(
        self,
        classifier: Classifier,
        layer: str | None = None,
        method: str = "gradcam",
        *,
        scorecam_channels: int = 32,
        method_options: dict[str, Any] | None = None,
    ) -> None:
        import tensorflow as tf

        method_cls = get_method(method)  # UsageError listing the registry's names
        self.classifier = classifier
        self.method = method
        resolved = _resolve_layers(classifier.model, layer if layer is not None else classifier.default_layer)
        self.layer_name = ",".join(q for q, _ in resolved)
        self._layers = [target for _, target in resolved]
        self._layer = self._layers[0]
        # One method object per layer: a method may bind to what follows its layer (CAM reads the Dense head).
        options = {"scorecam_channels": scorecam_channels, **(method_options or {})}
        self._methods: list[CamMethod] = [method_cls(**options) for _ in self._layers]
        self._method = self._methods[0]
        self._tails: dict[int, _Tail] = {}
        self._layer_forwards: dict[int, Any] = {}
        if type(self._method).bind is not CamMethod.bind:
            for i, (qualified, _) in enumerate(resolved):
                self._methods[i].bind(self._tail(i).layers, qualified, scores=self.target_scores)
        self._final = _final_layer(classifier.model)
        h, w = classifier.input_size
        self.input_size = (h, w)
        spec = [tf.TensorSpec([None, h, w, 3], tf.uint8), tf.TensorSpec([None], tf.int32)]
        self._step = tf.function(self._step_impl, input_signature=spec, reduce_retracing=True)
        # Forward-only scores on preprocessed inputs, for methods' post-steps (Score-CAM); traced on first use.
        fspec = [tf.TensorSpec([None, h, w, 3], tf.float32)]
        self._forward = tf.function(self._forward_impl, input_signature=fspec)
        # Forward-only probabilities on pixel-valued frames (perturbation metrics); traced on first use.
        pspec = [tf.TensorSpec([None, h, w, 3], tf.float32)]
        self._predict = tf.function(self._predict_impl, input_signature=pspec)

    # -- compiled pieces -----------------------------------------------------------------------------------

    def _tail(self, index: int) -> _Tail:
        if index not in self._tails:
            self._tails[index] = _cut(self.classifier.model, _path_to(self.classifier.model, self._layers[index]))
        return self._tails[index]

    def _hooks(self, tape=None, replace=None) -> _Hooks:
        return _Hooks(self._layers, self._final, self.classifier.output, tape, replace)

    def _layer_forward(self, index: int):
        """(K, h, w, c) maps of layer ``index`` and the (1, H, W, 3) preprocessed image they came from ->
        (K, num_classes) scores: only the layers after it when the model can be cut there, else the whole
        model on K copies of the image with the layer's output replaced by the maps. Traced on first use."""
        import tensorflow as tf

        if index in self._layer_forwards:
            return self._layer_forwards[index]
        tail = self._tail(index)

        def cut(maps, image):
            with self._hooks():  # no target runs in the tail; the hooks only bypass the final activation
                raw = tail.fn(maps)
            return self._scores(tf.cast(raw, tf.float32))[0]

        def patched(maps, image):
            copies = tf.repeat(image, tf.shape(maps)[0], axis=0)
            with self._hooks(replace=(index, tf.cast(maps, self._layers[index].compute_dtype))):
                raw = self.classifier.model(copies, training=False)
            return self._scores(tf.cast(raw, tf.float32))[0]

        fn = tf.function(cut if tail.fn is not None else patched, reduce_retracing=True)
        self._layer_forwards[index] = fn
        return fn

    def target_scores(self, raw):
        """(N, C) target scores from the model's raw pre-activation output (N, K): what the gradients and a
        method's forward passes explain, class by class (C = the classifier's classes, groups included)."""
        return self._scores(raw)[0]

    def _scores(self, raw):
        """(N, C) target scores and probabilities from the raw (pre-activation) model output: the classes', or
        with groups each group's log-probability (the log of its summed probability) and probability."""
        scores, probs = self._class_scores(raw)
        groups = self.classifier.groups
        if groups is None:
            return scores, probs
        import tensorflow as tf

        log_p = tf.nn.log_softmax(scores)  # the log-partition subtracted once: scores - logsumexp(scores)
        grouped = tf.stack([tf.reduce_logsumexp(tf.gather(log_p, list(ids), axis=1), axis=1)
                            for ids in groups.members], axis=1)
        # The probability is the members' sum as such (not exp of the log-sum), so it adds up exactly as they do.
        summed = tf.stack([tf.reduce_sum(tf.gather(probs, list(ids), axis=1), axis=1) for ids in groups.members],
                          axis=1)
        return grouped, summed

    def _class_scores(self, logits):
        """(N, K) pre-activation scores and probabilities of the model's own classes from its raw output."""
        import tensorflow as tf

        out = self.classifier.output
        if out == "sigmoid":
            if logits.shape[-1] == 1:
                # Two-class sigmoid: scores [-z/2, z/2] give softmax == [1 - sigmoid(z), sigmoid(z)].
                z = logits[:, 0]
                scores = tf.stack([-z / 2, z / 2], axis=1)
                return scores, tf.nn.softmax(scores)
            return logits, tf.sigmoid(logits)
        if out == "probabilities":
            return tf.math.log(logits + _EPS), logits
        return logits, tf.nn.softmax(logits)

    def _forward_impl(self, x):
        with self._hooks():
            raw = self.classifier.model(x, training=False)
        return self._scores(raw)[0]

    def _predict_impl(self, pixels):
        import tensorflow as tf

        x = preprocess_pixels(pixels, self.classifier.preprocess)
        # The hooks give the same pre-activation scores as the step, so probabilities match it exactly.
        with self._hooks():
            raw = self.classifier.model(x, training=False)
        return self._scores(tf.cast(raw, tf.float32))[1]

    def _step_impl(self, frames, targets):
        import tensorflow as tf

        x = preprocess_pixels(frames, self.classifier.preprocess)
        with tf.GradientTape() as tape:
            with self._hooks(tape) as hooks:
                raw = self.classifier.model(x, training=False)
            scores, probs = self._scores(tf.cast(raw, tf.float32))
            top1 = tf.argmax(probs, axis=1, output_type=tf.int32)
            cls = tf.where(targets >= 0, targets, top1)
            target_score = tf.gather(scores, cls, batch_dims=1)
            total = tf.reduce_sum(target_score)
        feature_maps = [tf.cast(f, tf.float32) for f in hooks.feature_maps]
        grads: list[Any] = [None] * len(feature_maps)
        if self._method.uses_gradients:  # one backward pass, shared by every gradient method and every layer
            grads = tape.gradient(total, hooks.feature_maps)
            if any(g is None for g in grads):  # pragma: no cover - structure guarantees a path
                raise ModelError(f"the class score does not depend on layer {self.layer_name}")
            grads = [tf.cast(g, tf.float32) for g in grads]
        cams = [tf.nn.relu(tf.cast(m.cam(f, g), tf.float32)) for m, f, g in zip(self._methods, feature_maps, grads)]
        return cls, probs, cams, feature_maps, x

    # -- public API ----------------------------------------------------------------------------------------

    def run(self, frames: np.ndarray, class_index: int | np.ndarray | None = None) -> CamResult:
        """Explain a batch of RGB uint8 frames already at the model's input size.

        Args:
            frames: (N, H, W, 3) uint8, H x W == ``input_size``.
            class_index: None for each image's top-1, an int for one fixed class, or one id per image.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[1:3] != self.input_size or frames.shape[3] != 3:
            raise UsageError(f"expected frames of shape (N, {self.input_size[0]}, {self.input_size[1]}, 3), "
                             f"got {frames.shape}")
        if frames.dtype != np.uint8:
            raise UsageError(f"expected uint8 frames, got {frames.dtype}")
        n = frames.shape[0]
        if class_index is None:
            targets = np.full(n, -1, np.int32)
        else:
            given = np.asarray(class_index, np.int32)
            bad = given[(given < 0) | (given >= self.classifier.num_classes)]
            if bad.size:
                raise UsageError(f"class index out of range: the model has {self.classifier.num_classes} classes "
                                 f"(0..{self.classifier.num_classes - 1}), got {int(bad.flat[0])}")
            targets = np.broadcast_to(given, (n,)).copy()
        if n == 0:  # oneDNN's convolutions reject an empty batch: explain one blank frame, keep none of it
            r = self.run(np.zeros((1, *frames.shape[1:]), np.uint8))
            return CamResult(r.class_ids[:0], r.probabilities[:0], r.cams[:0])
        cls, probs, cams, feature_maps, x = self._step(frames, targets)
        cls = cls.numpy()
        maps = []
        for i, (method, cam, feature_map) in enumerate(zip(self._methods, cams, feature_maps)):
            forward = self._layer_forward(i) if method.forward_from == "layer" else self._forward
            cam = np.asarray(method.post_step(cam.numpy(), feature_map, x, cls, forward), np.float32)
            cam = np.maximum(cam, 0)  # the step's map is ReLU'd already; a post-step's map passes the same ReLU
            peak = cam.reshape(n, -1).max(axis=1) if n else np.zeros(0, np.float32)
            maps.append(cam / (peak[:, None, None] + _EPS))
        cam = fuse_layer_maps(maps)
        return CamResult(cls.astype(np.int64), probs.numpy().astype(np.float32), cam.astype(np.float32))

    def predict(self, frames: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Class probabilities only (no maps): one compiled forward pass, preprocessing in the graph.

        Args:
            frames: (N, H, W, 3) RGB at the model's input size, uint8 or float pixel values in [0, 255]
                (float lets perturbation metrics feed blends without rounding).
            batch_size: frames per forward call, to bound memory.

        Returns:
            (N, num_classes) float32 probabilities, the same the engine's ``run`` reports.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[1:3] != self.input_size or frames.shape[3] != 3:
            raise UsageError(f"expected frames of shape (N, {self.input_size[0]}, {self.input_size[1]}, 3), "
                             f"got {frames.shape}")
        step = max(1, int(batch_size))
        out = [
            self._predict(np.asarray(frames[i : i + step], np.float32)).numpy()
            for i in range(0, frames.shape[0], step)
        ]
        if not out:
            return np.zeros((0, self.classifier.num_classes), np.float32)
        return np.concatenate(out).astype(np.float32)


