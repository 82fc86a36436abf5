"""The CAM methods behind a registry (torch-cam's design): one small class per method, looked up by name.

The engine (:class:`vidcam.cam.engine.CamEngine`) owns everything the methods share: the hooks that reach the
feature map ``A`` (N, h, w, c) of the target layer, the one compiled forward+backward step that gives the
gradients ``G = d score / d A`` of each image's target-class score (pre-softmax), the batching and the
normalisation (ReLU, then divide by the per-image max + eps, so an all-zero map stays zero). A method
supplies only what differs, always per image (never reduced over the batch axis):

- channel weights ``weights(A, G) -> (N, c)``; the map is then ``sum_c weights_c A_c`` (Grad-CAM, ...), or
- the whole raw map ``cam(A, G) -> (N, h, w)`` (element-wise and projection methods), both inside the graph, or
- ``post_step(...)``: a map computed after the step from the feature map with extra forward passes
  (Score-CAM), for methods that are not gradient weights.

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

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from vidcam.errors import UsageError

__all__ = [
    "METHODS", "REGISTRY", "CamMethod", "EigenCAM", "EigenGradCAM", "GradCAM", "GradCAMElementWise",
    "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "ScoreCAM", "XGradCAM", "get_method", "method_names", "register",
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

    def __init__(self, **options: Any) -> None:
        self.options = options

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
                one compiled forward pass (hooked like the step).
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


METHODS: tuple[str, ...] = method_names()
"""The built-in method names, ``gradcam`` first (a snapshot at import; :func:`method_names` is live)."""
