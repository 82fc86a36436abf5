"""The CAM methods behind a registry (torch-cam's design): one small class per method, looked up by name.

The engine (:class:`vidcam.cam.engine.CamEngine`) owns everything the methods share: the hooks that reach the
feature map ``A`` (N, h, w, c) of the target layer, the one compiled forward+backward step that gives the
gradients ``G = d score / d A`` of each image's target score (the target class's pre-softmax score, or a group's
log-probability, see :mod:`vidcam.models.groups`), the batching and the
normalisation (ReLU, then divide by the per-image max + eps, so an all-zero map stays zero). A method
supplies only what differs, always per image (never reduced over the batch axis):

- channel weights ``weights(A, G) -> (N, c)``; the map is then ``sum_c weights_c A_c`` (Grad-CAM, ...), or
- the whole raw map ``cam(A, G) -> (N, h, w)`` (element-wise and projection methods), both inside the graph, or
- ``post_step(...)``: a map computed after the step from the feature map with extra forward passes
  (Score-CAM: of the whole model on masked inputs; Ablation-CAM, ``forward_from = "layer"``: of only the layers
  after the target on ablated feature maps), or from the model's weights (CAM: the Dense column, read in
  :meth:`CamMethod.bind`, which may refuse a model).

With several target layers (``layer="a,b"``) the engine keeps one method object per layer and fuses the maps.

Adding a method is one small class with ``@register("name")``; nothing else changes::

    @register("gradcam-abs")
    class AbsGradCAM(CamMethod):
        def weights(self, feature_map, grads):
            import tensorflow as tf
            return tf.reduce_mean(tf.abs(grads), axis=(1, 2))

Formulas follow pytorch-grad-cam (jacobgil/pytorch-grad-cam); deviations are stated in each docstring.
One shared deviation: pytorch-grad-cam rescales every ReLU'd map by min-max (``(cam - min) / (max + eps)``);
the engine divides by the max only, so a map whose minimum is above zero keeps its floor.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any, ClassVar

import numpy as np

from vidcam.errors import UsageError

__all__ = [
    "CAM", "METHODS", "REGISTRY", "AblationCAM", "CamMethod", "EigenCAM", "EigenGradCAM", "GradCAM",
    "GradCAMElementWise", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "ScoreCAM", "ScoreCAMFast", "XGradCAM",
    "MEASURED_TABLE", "get_method", "measured_table", "method_names", "register",
]

_EPS = 1e-7

REGISTRY: dict[str, type[CamMethod]] = {}


def register(name: str) -> Callable[[type[CamMethod]], type[CamMethod]]:
    """Class decorator: make a :class:`CamMethod` subclass available to the engine as ``method=name``."""

    def add(cls: type[CamMethod]) -> type[CamMethod]:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise UsageError(f"a CAM method named {name!r} is already registered ({REGISTRY[name].__name__})")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return add


def method_names() -> tuple[str, ...]:
    """The registered method names, in registration order (``gradcam`` first), including ones added later."""
    return tuple(REGISTRY)


MEASURED_TABLE = "data/methods.json"
"""Where, inside ``vidcam.cam``, ``scripts/sanity_report.py`` stores its measurements of every method."""


def measured_table() -> dict[str, Any] | None:
    """What ``scripts/sanity_report.py`` measured for each method on the default model (cost per frame against
    Grad-CAM, the sanity checks' correlations and verdicts, the metrics on the bundled photos); None if the
    package has no table. Reads one JSON file: no TensorFlow."""
    try:
        text = resources.files("vidcam.cam").joinpath(MEASURED_TABLE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    return json.loads(text)


def get_method(name: str) -> type[CamMethod]:
    """The method class registered as ``name``; an unknown name raises :class:`UsageError` listing them all."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown method {name!r}: use one of {', '.join(method_names())}") from None


class CamMethod:
    """Base class of a CAM method; a subclass overrides one of :meth:`weights`, :meth:`cam` or :meth:`post_step`.

    Attributes:
        name: the registry name (set by :func:`register`).
        uses_gradients: False when the method needs no backward pass; ``grads`` is then None.

    Args:
        options: keyword options the engine passes to every method (e.g. ``scorecam_channels``); a method
            reads the ones it knows and ignores the rest.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # how panels and tables name it; default: the name
    uses_gradients: ClassVar[bool] = True
    # What post_step's ``forward`` takes: "input" (preprocessed images, the whole model runs) or "layer"
    # (feature maps of the target layer, only the layers after it run).
    forward_from: ClassVar[str] = "input"

    def __init__(self, **options: Any) -> None:
        self.options = options

    def bind(self, layers_after: list | None, layer_name: str, *, scores: Callable | None = None) -> None:
        """Called once per engine (and target layer) for a method that overrides it, before any step.

        Args:
            layers_after: the Keras layers that follow the target layer, in order (nested models unrolled),
                when the model is a plain sub-graph from that layer on; None when it cannot be cut there.
            layer_name: the target layer's qualified name, for messages.
            scores: the engine's target scores from the model's raw pre-activation output, (N, K) -> (N, C) tensors
                (the classes' scores, or the groups' log-probabilities): what a method that reads the head's weights
                must differentiate to explain the engine's target.

        Raises:
            UsageError: the method cannot explain this model at this layer (say why and what would work).
        """

    def forward_passes(self) -> tuple[int, str]:
        """(whole-model forward passes per frame, how ``vidcam methods`` words the cost), the step's one pass
        included (with its backward pass for a gradient method)."""
        return 1, "1"

    def weights(self, feature_map, grads):
        """(N, c) channel weights from (N, h, w, c) ``feature_map`` and ``grads``, inside the compiled step."""
        raise NotImplementedError(f"{type(self).__name__} defines neither weights() nor cam()")

    def cam(self, feature_map, grads):
        """(N, h, w) raw map (before ReLU and normalisation), inside the compiled step: ``sum_c w_c A_c``."""
        import tensorflow as tf

        return tf.einsum("bhwc,bc->bhw", feature_map, self.weights(feature_map, grads))

    def post_step(self, cam: np.ndarray, feature_map, inputs, class_ids: np.ndarray,
                  forward: Callable) -> np.ndarray:
        """The final raw (N, h, w) map after the step; by default the step's own map.

        Args:
            cam: the step's map from :meth:`cam`, as numpy.
            feature_map: (N, h, w, c) float32 tensor.
            inputs: (N, H, W, 3) float32 tensor, the preprocessed model input.
            class_ids: (N,) the class each map explains.
            forward: preprocessed (K, H, W, 3) float32 tensor -> (K, num_classes) pre-activation scores tensor,
                one compiled forward pass (hooked like the step). For a method with ``forward_from = "layer"``:
                ``forward(maps, image)``, (K, h, w, c) maps put in place of the target layer's output and the
                (1, H, W, 3) preprocessed image they belong to -> (K, num_classes) scores; only the layers after
                the target run when the model can be cut there (else the whole model on K copies of the image).
        """
        return cam


def _first_component(m):
    """pytorch-grad-cam's ``get_2d_projection`` per image, batched: (N, h, w, c) -> (N, h, w).

    NaN -> 0; reshape to (h*w, c); centre each channel over the positions (as pytorch-grad-cam does); project
    on the first right singular vector. The SVD's sign is arbitrary (pytorch-grad-cam keeps whatever LAPACK
    returns); here it is fixed so the singular vector sums to >= 0, i.e. the projection correlates positively
    with the summed map ``sum_c m_c`` (a centred projection has mean zero, so its mean cannot pick the sign).
    Computed in float64 for a stable vector, returned as float32.
    """
    import tensorflow as tf

    m = tf.cast(m, tf.float64)
    m = tf.where(tf.math.is_nan(m), tf.zeros_like(m), m)
    shape = tf.shape(m)
    flat = tf.reshape(m, tf.stack([shape[0], shape[1] * shape[2], shape[3]]))
    flat = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
    _, _, v = tf.linalg.svd(flat, full_matrices=False)  # v: (N, c, k), right singular vectors as columns
    v1 = v[:, :, 0]
    sign = tf.where(tf.reduce_sum(v1, axis=1, keepdims=True) < 0, tf.constant(-1.0, tf.float64),
                    tf.constant(1.0, tf.float64))
    projection = tf.einsum("bnc,bc->bn", flat, v1 * sign)
    return tf.cast(tf.reshape(projection, shape[:3]), tf.float32)


@register("gradcam")
class GradCAM(CamMethod):
    """Grad-CAM: ``w_c = mean_ij G_ijc``; ``cam = ReLU(sum_c w_c A_c)``.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
    ICCV 2017, https://arxiv.org/abs/1610.02391.
    """

    title = "Grad-CAM"

    def weights(self, feature_map, grads):
        import tensorflow as tf

        return tf.reduce_mean(grads, axis=(1, 2))  # per image: never over the batch


@register("gradcam++")
class GradCAMPlusPlus(CamMethod):
    """Grad-CAM++: ``alpha = G^2 / (2 G^2 + sum_ij(A) G^3)``; ``w_c = sum_ij alpha ReLU(G)``; ReLU(sum_c w_c A_c).

    Chattopadhyay et al., "Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks",
    WACV 2018, https://arxiv.org/abs/1710.11063. Exponential-score closed form, as pytorch-grad-cam; a zero
    denominator gives alpha = 0 (pytorch-grad-cam adds eps = 1e-6 to it instead), and alpha is not normalised
    over the map (the authors' code and tf-keras-vis divide it by its spatial sum).
    """

    title = "Grad-CAM++"

    def weights(self, feature_map, grads):
        import tensorflow as tf

        g2, g3 = grads**2, grads**3
        sum_a = tf.reduce_sum(feature_map, axis=(1, 2), keepdims=True)
        denom = 2.0 * g2 + sum_a * g3
        alpha = g2 / tf.where(tf.abs(denom) > 0, denom, tf.ones_like(denom))
        return tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2))


@register("scorecam")
class ScoreCAM(CamMethod):
    """Score-CAM: each channel weighted by the class score of the input masked by that channel's map.

    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
    CVPR-W 2020, https://arxiv.org/abs/1910.01279. For the ``scorecam_channels`` (default 32) most active
    channels k (by spatial mean): ``M_k`` = A_k upsampled to the input and min-max scaled to [0, 1];
    ``s_k`` = the target's pre-activation score of ``input * M_k``; ``w = softmax(s)``;
    ``cam = ReLU(sum_k w_k A_k)``. As pytorch-grad-cam (softmax over channels of the target's raw output for
    each masked input), except that pytorch-grad-cam masks with every channel where this keeps the k most
    active ones (one forward pass each), and its min-max eps is 1e-8 (here the range is clamped at 1e-7).
    """

    title = "Score-CAM"

    uses_gradients = False

    def __init__(self, *, scorecam_channels: int = 32, **options: Any) -> None:
        super().__init__(scorecam_channels=scorecam_channels, **options)
        self.channels = int(scorecam_channels)

    def forward_passes(self) -> tuple[int, str]:
        return 1 + self.channels, f"1 + {self.channels}"

    def cam(self, feature_map, grads):
        import tensorflow as tf

        return tf.zeros(tf.shape(feature_map)[:3], feature_map.dtype)

    def post_step(self, cam, feature_map, inputs, class_ids, forward):
        import tensorflow as tf

        feature_map = feature_map.numpy()
        h, w = int(inputs.shape[1]), int(inputs.shape[2])
        k = min(self.channels, feature_map.shape[-1])
        out = np.zeros(feature_map.shape[:3], np.float32)
        for i in range(feature_map.shape[0]):
            a = feature_map[i]
            top = np.argsort(-a.mean(axis=(0, 1)))[:k]
            maps = tf.image.resize(a[..., top][None], (h, w))[0].numpy()  # (h, w, k)
            lo, hi = maps.min(axis=(0, 1)), maps.max(axis=(0, 1))
            masks = (maps - lo) / np.maximum(hi - lo, _EPS)
            masked = inputs[i][None].numpy() * masks.transpose(2, 0, 1)[..., None]
            scores = forward(tf.constant(masked, tf.float32)).numpy()[:, class_ids[i]]
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
            out[i] = np.maximum((a[..., top] * weights).sum(axis=-1), 0)
        return out


@register("scorecam-fast")
class ScoreCAMFast(ScoreCAM):
    """Score-CAM on the 8 most active channels (``scorecam_fast_channels``): a quarter of Score-CAM's passes.

    Score-CAM (Wang et al., https://arxiv.org/abs/1910.01279) as :class:`ScoreCAM`, with fewer masks: the
    channels are ranked by their spatial mean, as there, and only the top 8 weighted; the rest get weight 0.
    """

    title = "Score-CAM (top 8)"

    def __init__(self, *, scorecam_fast_channels: int = 8, **options: Any) -> None:
        options.pop("scorecam_channels", None)  # the engine's Score-CAM setting is not this method's
        super().__init__(scorecam_channels=scorecam_fast_channels, **options)


@register("xgradcam")
class XGradCAM(CamMethod):
    """XGrad-CAM: ``w_c = sum_ij(G_ijc A_ijc) / (sum_ij A_ijc + eps)``; ``cam = ReLU(sum_c w_c A_c)``.

    Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs", BMVC 2020,
    https://arxiv.org/abs/2008.02312. eps = 1e-7 as pytorch-grad-cam (which divides before summing; same value).
    """

    title = "XGrad-CAM"

    def weights(self, feature_map, grads):
        import tensorflow as tf

        num = tf.reduce_sum(grads * feature_map, axis=(1, 2))
        return num / (tf.reduce_sum(feature_map, axis=(1, 2)) + _EPS)


@register("hirescam")
class HiResCAM(CamMethod):
    """HiResCAM: ``cam = ReLU(sum_c G_c * A_c)``, element-wise, no spatial averaging of the gradients.

    Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural
    networks", 2020, https://arxiv.org/abs/2011.08891.
    """

    title = "HiRes-CAM"

    def cam(self, feature_map, grads):
        import tensorflow as tf

        return tf.reduce_sum(grads * feature_map, axis=-1)


@register("gradcam-elementwise")
class GradCAMElementWise(CamMethod):
    """Element-wise Grad-CAM: ``cam = sum_c ReLU(G_c * A_c)`` (pytorch-grad-cam's ``GradCAMElementWise``).

    A HiResCAM variant from pytorch-grad-cam (no paper of its own); HiResCAM: Draelos & Carin,
    https://arxiv.org/abs/2011.08891.
    """

    title = "Grad-CAM (element-wise)"

    def cam(self, feature_map, grads):
        import tensorflow as tf

        return tf.reduce_sum(tf.nn.relu(grads * feature_map), axis=-1)


@register("layercam")
class LayerCAM(CamMethod):
    """LayerCAM: ``cam = ReLU(sum_c ReLU(G_c) * A_c)``.

    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization", IEEE TIP 2021,
    https://ieeexplore.ieee.org/document/9462463.
    """

    title = "LayerCAM"

    def cam(self, feature_map, grads):
        import tensorflow as tf

        return tf.reduce_sum(tf.nn.relu(grads) * feature_map, axis=-1)


@register("eigencam")
class EigenCAM(CamMethod):
    """Eigen-CAM: ``cam = ReLU(first principal component of A)``, class-agnostic (no gradients).

    Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020,
    https://arxiv.org/abs/2008.00299. pytorch-grad-cam's ``get_2d_projection`` (channels centred over the
    positions), with a fixed sign where pytorch-grad-cam keeps the SVD's arbitrary one: see
    :func:`_first_component`. The map is the same whatever class is asked for.
    """

    title = "Eigen-CAM"

    uses_gradients = False

    def cam(self, feature_map, grads):
        return _first_component(feature_map)


@register("eigengradcam")
class EigenGradCAM(CamMethod):
    """Eigen-Grad-CAM: ``cam = ReLU(first principal component of G * A)``, class-sensitive.

    pytorch-grad-cam's ``EigenGradCAM`` (Eigen-CAM, https://arxiv.org/abs/2008.00299, on the gradient-weighted
    activations), with the sign fixed as in :func:`_first_component`.
    """

    title = "EigenGrad-CAM"

    def cam(self, feature_map, grads):
        return _first_component(grads * feature_map)


@register("ablationcam")
class AblationCAM(CamMethod):
    """Ablation-CAM: ``w_k = (y - y_k) / y``, y the target's score and y_k the score with channel k zeroed.

    Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via Gradient-free
    Localization", WACV 2020, https://openaccess.thecvf.com/content_WACV_2020/html/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.html
    (no arXiv version). ``cam = ReLU(sum_k w_k A_k)``. As pytorch-grad-cam's ``AblationCAM``: every channel
    is ablated (``ratio_channels_to_ablate=1``), y is the target's score (pre-activation), except that the drop is
    divided by ``|y|`` where pytorch-grad-cam divides by y: its weights change sign when y < 0, which would
    invert the map of any target whose score is negative, as a group's log-probability always is; where
    pytorch-grad-cam would divide by y = 0, the weights here are 0. Only the
    layers after the target run for the ablated copies (``ablation_batch`` copies per call, default 256): the
    whole model runs once; when the model cannot be cut at the layer, the whole model runs per copy.
    """

    title = "Ablation-CAM"

    uses_gradients = False
    forward_from = "layer"

    def __init__(self, *, ablation_batch: int = 256, **options: Any) -> None:
        super().__init__(ablation_batch=ablation_batch, **options)
        self.batch = max(1, int(ablation_batch))

    def forward_passes(self) -> tuple[int, str]:
        return 1, "1 + head per channel"

    def cam(self, feature_map, grads):
        import tensorflow as tf

        return tf.zeros(tf.shape(feature_map)[:3], feature_map.dtype)

    def post_step(self, cam, feature_map, inputs, class_ids, forward):
        import tensorflow as tf

        n, c = int(feature_map.shape[0]), int(feature_map.shape[-1])
        out = np.zeros(feature_map.shape[:3], np.float32)
        for i in range(n):
            a, image, k = feature_map[i : i + 1], inputs[i : i + 1], int(class_ids[i])
            score = float(forward(a, image).numpy()[0, k])
            ablated = []
            for start in range(0, c, self.batch):
                keep = 1.0 - tf.one_hot(tf.range(start, min(c, start + self.batch)), c, dtype=a.dtype)
                ablated.append(forward(a * keep[:, None, None, :], image).numpy()[:, k])
            scores = np.concatenate(ablated)
            weights = (score - scores) / abs(score) if score != 0 else np.zeros(c, np.float32)
            out[i] = np.einsum("hwc,c->hw", a[0].numpy(), weights)
        return out


@register("cam")
class CAM(CamMethod):
    """CAM, the original: ``cam = sum_k W_kc A_k`` with ``W_kc`` the class's column of the Dense kernel.

    Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016,
    https://arxiv.org/abs/1512.04150. Only for a head that is global average pooling, then (Dropout and) one
    Dense layer, right after the target layer (EfficientNet-Lite, MobileNet, ResNet, the book's transfer
    model); any other head is refused. No backward pass through the model, no extra pass: on such a head
    Grad-CAM's weights are ``W_kc / (h w)``, so CAM gives Grad-CAM's map. The column is read as the gradient of the
    engine's target score with respect to the pooled features, through the Dense layer only: ``W_c`` for a class,
    ``+W/2`` and ``-W/2`` for the two classes of a one-unit sigmoid head (the engine's scores ``[-z/2, z/2]``),
    and for a group ``sum_i (d score / d z_i) W_i`` over its classes (the weights its log-probability puts on
    each logit at this image), which again is Grad-CAM's map.
    """

    title = "CAM"

    uses_gradients = False

    def bind(self, layers_after, layer_name, *, scores=None):
        import keras

        kinds = [type(x).__name__ for x in layers_after or []]
        chain = [x for x in layers_after or [] if not isinstance(x, keras.layers.Dropout)]
        ok = (len(chain) in (2, 3) and isinstance(chain[0], keras.layers.GlobalAveragePooling2D)
              and isinstance(chain[1], keras.layers.Dense)
              and (len(chain) == 2 or isinstance(chain[2], (keras.layers.Softmax, keras.layers.Activation))))
        if ok and len(chain) == 3 and chain[1].activation is not keras.activations.linear:
            ok = False
        if not ok:
            after = " -> ".join(kinds) if layers_after is not None else "a graph that does not run straight on"
            raise UsageError(f"method 'cam' needs global average pooling then one Dense layer right after the "
                             f"CAM layer; after {layer_name} the model has {after}. Use gradcam (the same map "
                             f"on such heads, and any head), or choose the layer before the pooling with --layer")
        self.dense = chain[1]
        self.scores = scores

    def cam(self, feature_map, grads):
        import tensorflow as tf

        return tf.zeros(tf.shape(feature_map)[:3], feature_map.dtype)

    def post_step(self, cam, feature_map, inputs, class_ids, forward):
        import tensorflow as tf

        # Read now: the weights may have changed since bind.
        kernel = tf.constant(np.asarray(self.dense.kernel.numpy(), np.float32))
        bias = tf.constant(np.asarray(self.dense.bias.numpy(), np.float32)) if self.dense.use_bias else 0.0
        pooled = tf.reduce_mean(tf.cast(feature_map, tf.float32), axis=(1, 2))
        with tf.GradientTape() as tape:
            tape.watch(pooled)
            raw = tf.matmul(pooled, kernel) + bias  # the Dense layer's pre-activation output
            target = tf.gather(self.scores(raw), tf.constant(np.asarray(class_ids), tf.int32), batch_dims=1)
        weights = tape.gradient(target, pooled).numpy()  # (N, c): the class's column, or a group's mix of columns
        return np.einsum("bhwc,bc->bhw", feature_map.numpy(), weights)


METHODS: tuple[str, ...] = method_names()
"""The built-in method names, ``gradcam`` first (a snapshot at import; :func:`method_names` is live)."""
