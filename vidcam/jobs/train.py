"""Training mode: the book's transfer-learning recipe (a frozen pretrained base, a small new head) on Keras 3.

The saved ``.keras`` file is the inference model alone: the base nested as one layer, then
GlobalAveragePooling2D -> Dense(64, relu) -> Dropout(0.5) -> Dense(n, softmax). Augmentation runs in the
tf.data pipeline, so it is never part of it. Preprocessing is the base's own (EfficientNet-Lite: (x - 127) / 128),
applied by the same function in training and at inference (the engine applies it in-graph from the metadata
stored inside the file), so ``vidcam image|video|frames --model MODEL.keras`` need no other flag.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidcam.errors import InputError, ModelError, UsageError
from vidcam.jobs.dataset import DecodedImages, Skipped, find_images, load_images
from vidcam.media.outputs import atomic_output, check_output, write_image
from vidcam.models.zoo import DEFAULT_MODEL, ZOO, Classifier, save_classifier_metadata

__all__ = ["HEADS", "TrainEvent", "TrainOptions", "TrainResult", "train_classifier", "curves_path"]

MAX_IMG_SIZE = 1024  # a 1024x1024 batch of 32 already needs several GB for the frozen base's activations

# head -> (output activation recorded for inference, loss)
HEADS = {
    "softmax": ("softmax", "categorical_crossentropy"),  # one label per image, many classes (the book's model)
    "sigmoid": ("sigmoid", "binary_crossentropy"),  # two classes, one sigmoid unit (the book's binary row)
    "multilabel": ("sigmoid", "binary_crossentropy"),  # one sigmoid per class: independent yes/no answers
}
_ROTATION = 20 / 360  # Keras expresses rotation as a fraction of a full turn: +-20 degrees
_SHIFT = 0.2
_ZOOM = 0.2
_FINE_TUNE_LR = 1e-5


@dataclass
class TrainEvent:
    """Progress of a training run, reported through ``progress``.

    Attributes:
        stage: ``data`` (images found), ``skip`` (a file left out), ``decode`` (files read so far),
            ``phase`` (a training phase starts), ``epoch`` (an epoch ended), ``saved`` (the model is written).
        message: one human-readable line.
        epoch: 1-based epoch number, counted across phases (``epoch`` events).
        metrics: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` and ``seconds`` (``epoch`` events).
    """

    stage: str
    message: str
    epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        path: the saved ``.keras`` model.
        curves: the training-curves PNG beside it.
        classifier: the trained model in memory, ready for :class:`vidcam.cam.engine.CamEngine` (same weights as
            the file).
        history: per-epoch ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` across both phases.
        best_epoch: the 1-based epoch whose weights were kept (lowest validation loss).
        val_accuracy: validation accuracy of the kept weights.
        val_loss: validation loss of the kept weights.
        train_images: training images used.
        val_images: validation images used.
        skipped: files left out, with the reason.
    """

    path: Path
    curves: Path
    classifier: Classifier
    history: dict[str, list[float]]
    best_epoch: int
    val_accuracy: float
    val_loss: float
    train_images: int
    val_images: int
    skipped: list[Skipped]

    @property
    def class_names(self) -> list[str]:
        return self.classifier.class_names


def curves_path(output: str | Path) -> Path:
    """Where the training curves of ``MODEL.keras`` go: ``MODEL_curves.png`` beside it."""
    output = Path(output)
    return output.with_name(output.stem + "_curves.png")


def _labels(labels: np.ndarray, n_classes: int, head: str) -> np.ndarray:
    if head == "sigmoid":
        return labels.astype(np.float32).reshape(-1, 1)
    return np.eye(n_classes, dtype=np.float32)[labels]


def _augmenter(seed: int, flip: bool):
    """The book's augmentation as Keras preprocessing layers; used in the training pipeline only."""
    import keras
    from keras import layers

    steps = [
        layers.RandomRotation(_ROTATION, fill_mode="nearest", seed=seed),
        layers.RandomTranslation(_SHIFT, _SHIFT, fill_mode="nearest", seed=seed + 1),
        layers.RandomZoom(_ZOOM, _ZOOM, fill_mode="nearest", seed=seed + 2),
    ]
    if flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed + 3))
    return keras.Sequential(steps, name="augmentation")


def _pipeline(images: np.ndarray, labels: np.ndarray, index: np.ndarray, batch: int, preprocess: str, *,
              shuffle_seed: int | None = None, augment=None):
    """tf.data over the decoded images ``index`` picks: (shuffle) -> batch -> gather -> (augment) -> preprocess.

    Batches are gathered from the decoded array (in memory or memory-mapped), which is the pipeline's cache.
    """
    import tensorflow as tf

    from vidcam.models.preprocess import preprocess_pixels

    n = len(index)
    ds = tf.data.Dataset.range(n)
    if shuffle_seed is not None:
        ds = ds.shuffle(n, seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch)

    def gather(idx):
        rows = index[idx]
        return np.ascontiguousarray(images[rows]), labels[rows]

    def load(idx):
        x, y = tf.numpy_function(gather, [idx], [tf.uint8, tf.float32], stateful=False)
        x.set_shape([None, *images.shape[1:]])
        y.set_shape([None, *labels.shape[1:]])
        return x, y

    def prep(x, y):
        x = tf.cast(x, tf.float32)
        if augment is not None:
            x = augment(x, training=True)
        return preprocess_pixels(x, preprocess), y

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _build(base_name: str, size: int, n_classes: int, head: str):
    import keras
    from keras import layers

    base = ZOO[base_name].builder(include_top=False, input_shape=(size, size, 3))
    base.trainable = False
    inputs = keras.Input((size, size, 3), name="image")
    # training=False keeps the base's BatchNormalization in inference mode, also when fine-tuning unfreezes it.
    x = base(inputs, training=False)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    units = 1 if head == "sigmoid" else n_classes
    outputs = layers.Dense(units, activation="softmax" if head == "softmax" else "sigmoid", name="predictions")(x)
    return keras.Model(inputs, outputs, name="vidcam_classifier"), base


def _compile(model, head: str, lr: float) -> None:
    import keras

    metric = keras.metrics.BinaryAccuracy(name="accuracy") if head == "sigmoid" else \
        keras.metrics.CategoricalAccuracy(name="accuracy")  # multilabel: the top class is the folder's class
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=HEADS[head][1], metrics=[metric])


def _unfreeze_top(base, n: int) -> int:
    """Make the top ``n`` layers of the base trainable, BatchNormalization excepted (its statistics came from far
    more data than a fine-tuning set; Keras' transfer-learning guide keeps it frozen). Returns how many layers
    with weights became trainable."""
    import keras

    base.trainable = True
    top = {id(layer) for layer in base.layers[-n:]} if n > 0 else set()
    for layer in base.layers:
        layer.trainable = id(layer) in top and not isinstance(layer, keras.layers.BatchNormalization)
    return sum(1 for layer in base.layers if layer.trainable and layer.weights)


def _reporter(emit, first_epoch: int, total: int, phase: str):
    """A Keras callback that turns epoch ends into :class:`TrainEvent` s."""
    import keras

    class Reporter(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            m = {k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs}
            m["seconds"] = time.perf_counter() - self._t
            n = epoch + 1
            msg = (f"{phase} epoch {n - first_epoch + 1}/{total}: loss {m.get('loss', math.nan):.4f} "
                   f"acc {m.get('accuracy', math.nan):.3f}  val_loss {m.get('val_loss', math.nan):.4f} "
                   f"val_acc {m.get('val_accuracy', math.nan):.3f}  ({m['seconds']:.1f} s)")
            emit(TrainEvent("epoch", msg, epoch=n, metrics=m))

    return Reporter()


def _fit(model, train_ds, val_ds, *, first: int, epochs: int, patience: int | None, emit, phase: str) -> dict:
    import keras

    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience or epochs, restore_best_weights=True,
    )
    hist = model.fit(train_ds, validation_data=val_ds, epochs=first + epochs, initial_epoch=first, verbose=0,
                     shuffle=False, callbacks=[stop, _reporter(emit, first + 1, epochs, phase)])
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


@dataclass(frozen=True)
class TrainOptions:
    """How to train (checked when made).

    Attributes:
        base: a zoo backbone, used without its top and frozen.
        epochs: epochs of the first phase (and at most as many again for fine-tuning).
        batch_size: images per step.
        img_size: square input size; default: the base's own.
        val_split: share of each class held out when there is no ``val/`` folder.
        seed: shuffling, the split, augmentation and initial weights.
        flip: add random horizontal flips to the augmentation.
        fine_tune: unfreeze the top N weight layers of the base for a second phase at learning rate 1e-5.
        head: ``softmax`` (one class per image), ``sigmoid`` (two classes, one unit) or ``multilabel``.
        patience: epochs without a lower validation loss before a phase stops early; 0 or None: never stop early.
            The weights of the best epoch are kept either way.
        overwrite: replace an existing model and curves file.

    Raises:
        UsageError: a value out of range.
    """

    base: str = DEFAULT_MODEL
    epochs: int = 10
    batch_size: int = 64
    img_size: int | None = None
    val_split: float | None = None
    seed: int = 12345
    flip: bool = False
    fine_tune: int = 0
    head: str = "softmax"
    patience: int | None = 3
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.base not in ZOO:
            raise UsageError(f"unknown base {self.base!r}: use one of {', '.join(ZOO)}")
        if self.head not in HEADS:
            raise UsageError(f"unknown head {self.head!r}: use one of {', '.join(HEADS)}")
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"--batch must be at least 1, got {self.batch_size}")
        if self.fine_tune < 0:
            raise UsageError(f"--fine-tune is a number of base layers to unfreeze (0 for none), got {self.fine_tune}")
        if self.patience is not None and self.patience < 0:
            raise UsageError(f"--patience is a number of epochs (0: never stop early), got {self.patience}")
        if self.size < 32:
            raise UsageError(f"--img-size must be at least 32 (the base shrinks images 32 times), got {self.size}")
        if self.size > MAX_IMG_SIZE:
            raise UsageError(f"--img-size must be at most {MAX_IMG_SIZE} (the bases are trained at 224 to 260; "
                             f"larger only costs memory), got {self.size}")

    @property
    def size(self) -> int:
        """The square input size the model is trained at."""
        return self.img_size if self.img_size is not None else ZOO[self.base].input_size


def train_classifier(
    data_dir: str | Path,
    output: str | Path,
    *,
    options: TrainOptions | None = None,
    progress: Callable[[TrainEvent], None] | None = None,
) -> TrainResult:
    """Train a classifier on folders of images with a frozen pretrained base and save it as ``.keras``.

    Every image is read and checked before the first epoch: unreadable files are skipped and reported, bad
    layouts (one class, an empty class, train/val classes that differ) raise before any training.
    ``keras.utils.set_random_seed(seed)`` is called, so runs are repeatable (on one machine).

    Args:
        data_dir: ``train/<class>/`` and ``val/<class>/`` inside, or ``<class>/`` folders with ``val_split``.
        output: the ``.keras`` file to write; the curves go to ``<stem>_curves.png`` beside it.
        options: :class:`TrainOptions` (base, epochs, augmentation, fine-tuning, head, ...).
        progress: called with each :class:`TrainEvent`.

    Raises:
        UsageError: an argument out of range. InputError: the data cannot train a classifier.
        OutputError: the model or curves file exists (without ``overwrite``) or cannot be written.
        WeightsError: the base's pretrained weights are missing.

    Example:
        >>> opts = TrainOptions(epochs=10)
        >>> result = train_classifier("data/cats_dogs", "cats_dogs.keras", options=opts)  # doctest: +SKIP
        >>> result.val_accuracy  # doctest: +SKIP
        0.97
    """
    import keras

    o = options or TrainOptions()
    output = Path(output)
    if output.suffix != ".keras":
        raise UsageError(f"the model file must end in .keras (Keras 3 format), got {output.name}")
    curves = curves_path(output)
    check_output(output, overwrite=o.overwrite)
    check_output(curves, overwrite=o.overwrite)

    def emit(event: TrainEvent) -> None:
        if progress:
            progress(event)

    found = find_images(data_dir, val_split=o.val_split, seed=o.seed)
    names = found.class_names
    if o.head == "sigmoid" and len(names) != 2:
        raise UsageError(f"--head sigmoid is the two-class head and {data_dir} has {len(names)} classes: use "
                         "softmax or multilabel")
    skipped = list(found.skipped)
    for s in found.skipped:
        emit(TrainEvent("skip", f"skipped {s.path}: {s.reason}"))
    emit(TrainEvent("data", f"{len(names)} classes ({', '.join(names)}): {len(found.train)} training and "
                            f"{len(found.val)} validation files ({found.layout})"))

    keras.utils.set_random_seed(o.seed)
    model, base_model = _build(o.base, o.size, len(names), o.head)  # before reading images: missing weights fail fast

    def on_skip(s: Skipped) -> None:
        skipped.append(s)
        emit(TrainEvent("skip", f"skipped {s.path}: {s.reason}"))

    def on_progress(done: int, total: int) -> None:
        emit(TrainEvent("decode", f"read {done}/{total} images"))

    with load_images(found.train + found.val, (o.size, o.size), on_skip=on_skip, on_progress=on_progress) as decoded:
        return _train(decoded, found, (model, base_model), (output, curves), emit, skipped, o)


def _train(decoded: DecodedImages, found, models: tuple, paths: tuple[Path, Path], emit, skipped: list[Skipped],
           o: TrainOptions) -> TrainResult:
    model, base_model = models
    names = found.class_names
    train_set = set(p for p, _ in found.train)
    is_train = np.array([p in train_set for p in decoded.paths], bool)
    train_idx, val_idx = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    labels = decoded.labels
    for split, idx in (("training", train_idx), ("validation", val_idx)):
        missing = [names[c] for c in range(len(names)) if not np.any(labels[idx] == c)]
        if missing:
            raise InputError(f"no readable {split} images of class {', '.join(missing)}: every class needs some")
    y = _labels(labels, len(names), o.head)
    augment = _augmenter(o.seed, o.flip)
    preprocess = ZOO[o.base].preprocess
    train_ds = _pipeline(decoded.images, y, train_idx, o.batch_size, preprocess, shuffle_seed=o.seed, augment=augment)
    val_ds = _pipeline(decoded.images, y, val_idx, o.batch_size, preprocess)

    history, fine_tune_epoch = _phases(model, base_model, train_ds, val_ds, emit, o, (len(train_idx), len(val_idx)))
    return _save(model, base_model, history, fine_tune_epoch, found, paths, emit, skipped, o,
                 (int(len(train_idx)), int(len(val_idx))))


def _phases(model, base_model, train_ds, val_ds, emit, o: TrainOptions, counts: tuple[int, int]):
    """The head phase, then (with ``fine_tune``) the fine-tuning phase; the best weights are kept."""
    emit(TrainEvent("phase", f"training the head on {o.base} (frozen) at {o.size}x{o.size}: {counts[0]} training, "
                             f"{counts[1]} validation images, up to {o.epochs} epochs"))
    _compile(model, o.head, 1e-3)
    history = _fit(model, train_ds, val_ds, first=0, epochs=o.epochs, patience=o.patience, emit=emit, phase="head")
    fine_tune_epoch = None
    if o.fine_tune:
        done = len(history["loss"])
        best_first = min(history["val_loss"])
        kept = model.get_weights()
        unfrozen = _unfreeze_top(base_model, o.fine_tune)
        emit(TrainEvent("phase", f"fine-tuning the top {o.fine_tune} layers of {o.base} ({unfrozen} with trainable "
                                 f"weights) at learning rate {_FINE_TUNE_LR:g}, up to {o.epochs} epochs"))
        _compile(model, o.head, _FINE_TUNE_LR)
        more = _fit(model, train_ds, val_ds, first=done, epochs=o.epochs, patience=o.patience, emit=emit,
                    phase="fine-tune")
        fine_tune_epoch = done + 1
        for k in history:
            history[k] += more.get(k, [])
        if min(more["val_loss"]) > best_first:
            model.set_weights(kept)  # fine-tuning never improved on the head alone: keep the head's best
    return history, fine_tune_epoch


def _save(model, base_model, history: dict, fine_tune_epoch, found, paths: tuple[Path, Path], emit,
          skipped: list[Skipped], o: TrainOptions, counts: tuple[int, int]) -> TrainResult:
    """Save the best model with vidcam's metadata and the curves; the result holds the model in memory."""
    output, curves = paths
    names, size, preprocess = found.class_names, o.size, ZOO[o.base].preprocess
    best = int(np.nanargmin(history["val_loss"]))
    val_loss, val_acc = history["val_loss"][best], history["val_accuracy"][best]

    output_kind = HEADS[o.head][0]
    layer = f"{base_model.name}/{ZOO[o.base].default_layer}"
    try:
        fmap = base_model.get_layer(ZOO[o.base].default_layer).output.shape
        default_layer = layer if fmap[1] > 1 or fmap[2] > 1 else None
    except ValueError:
        default_layer = None
    from vidcam.version import __version__

    meta = {
        "class_names": names,
        "input_size": [size, size],
        "preprocess": preprocess,
        "output": output_kind,
        "fit": "squash",
        "default_layer": default_layer,
        "base": o.base,
        "head": o.head,
        "trained_by": f"vidcam {__version__} train",
        "training": {
            "epochs_run": len(history["loss"]), "best_epoch": best + 1, "batch_size": o.batch_size, "seed": o.seed,
            "val_split": o.val_split, "layout": found.layout, "flip": o.flip, "fine_tune": o.fine_tune,
            "train_images": counts[0], "val_images": counts[1],
            "val_loss": val_loss, "val_accuracy": val_acc,
        },
    }
    with atomic_output(output, overwrite=o.overwrite) as tmp:
        try:
            model.save(tmp)
        except (ValueError, TypeError) as e:  # pragma: no cover - the model is built here from standard layers
            raise ModelError(f"cannot save the model: {e}") from None
        save_classifier_metadata(tmp, meta)
    from vidcam.media.charts import curves_chart

    title = f"{output.name}: {len(names)} classes ({', '.join(names)}), {counts[0]} training / {counts[1]} validation"
    write_image(curves, curves_chart(history, fine_tune_epoch=fine_tune_epoch, title=title), overwrite=o.overwrite)
    emit(TrainEvent("saved", f"best epoch {best + 1}: val_loss {val_loss:.4f} val_acc {val_acc:.3f} -> {output} "
                             f"(curves: {curves})"))
    classifier = Classifier(
        name=str(output), model=model, input_size=(size, size), preprocess=preprocess, class_names=list(names),
        output=output_kind, default_layer=default_layer, fit="squash", extra=meta,
    )
    return TrainResult(output, curves, classifier, history, best + 1, val_acc, val_loss, counts[0], counts[1], skipped)
