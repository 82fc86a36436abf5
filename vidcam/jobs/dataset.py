"""Folders of labelled images: finding them, splitting them, and reading them once, checked, at the model's size.

The layouts vidcam reads (class ids follow the sorted class folder names, so ``cat`` = 0 and ``dog`` = 1):

- ``DATA_DIR/train/<class>/`` and ``DATA_DIR/val/<class>/`` (the book's Kaggle layout);
- ``DATA_DIR/<class>/``, split per class into training and validation images with a fixed seed.

Every file is decoded with the same reader and resizer as inference (:func:`vidcam.media.images.read_image`, then
:func:`vidcam.media.images.fit_to_model` with ``squash``) before training starts, so a file that cannot be read is
skipped and reported up front, never found mid-epoch, and training sees exactly the pixels inference will.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidcam.errors import InputError, UsageError, VidcamError
from vidcam.media.images import IMAGE_SUFFIXES, fit_to_model, read_image

__all__ = ["Skipped", "ImageFolders", "DecodedImages", "class_folders", "find_images", "find_eval_images",
           "load_images", "read_fitted", "IN_MEMORY_LIMIT"]

# Decoded images up to this size are kept in memory; a larger set goes to a memory-mapped file in a temporary
# folder (a 25,000-image Kaggle set at 224x224 is 3.8 GB).
IN_MEMORY_LIMIT = 2 << 30


@dataclass(frozen=True)
class Skipped:
    """A file left out, and why (one line)."""

    path: str
    reason: str


@dataclass
class ImageFolders:
    """Labelled image files found in a data folder.

    Attributes:
        class_names: sorted class folder names; a file's label is an index into this list.
        train: (path, label) pairs for training (empty for evaluation).
        val: (path, label) pairs for validation or evaluation.
        skipped: files that are not images (by their suffix).
        layout: ``train/val``, ``split`` (one folder, split with a seed) or ``classes`` (one folder, all of it).
    """

    class_names: list[str]
    train: list[tuple[Path, int]] = field(default_factory=list)
    val: list[tuple[Path, int]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    layout: str = "train/val"


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def class_folders(folder: Path) -> list[str]:
    """Sorted names of the visible sub-folders of ``folder``."""
    try:
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and _visible(p))
    except OSError as e:
        raise InputError(f"cannot list {folder}: {e.strerror or e}") from None


def _list_files(folder: Path, skipped: list[Skipped]) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted); other files go to ``skipped``; hidden ones are ignored."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue  # .DS_Store, ._AppleDouble files: not data
            p = Path(root) / name
            if p.suffix.lower() in IMAGE_SUFFIXES:
                found.append(p)
            else:
                skipped.append(Skipped(str(p), f"not an image file (suffix {p.suffix or 'none'!r})"))
    return found


def _check_dir(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise InputError(f"{what} {path} is not a folder")


def _classes_of(folder: Path, hint: str) -> list[str]:
    names = class_folders(folder)
    if not names:
        raise InputError(f"no class folders in {folder}: expected {hint}")
    if len(names) == 1:
        raise InputError(f"only one class folder in {folder} ({names[0]}): a classifier needs at least two classes, "
                         "one folder of images each")
    return names


def _collect(folder: Path, names: list[str], skipped: list[Skipped]) -> list[list[Path]]:
    per_class = []
    for name in names:
        files = _list_files(folder / name, skipped)
        if not files:
            raise InputError(f"class folder {folder / name} has no images (JPEG, PNG, BMP, WebP, TIFF, GIF): "
                             "add some or remove the folder")
        per_class.append(files)
    return per_class


def _split(per_class: list[list[Path]], names: list[str], folder: Path, val_split: float, seed: int):
    """Per class: shuffle the sorted files with ``seed`` and hold out ``val_split`` of them (at least one each)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label, files in enumerate(per_class):
        if len(files) < 2:
            raise InputError(f"class folder {folder / names[label]} has only {len(files)} image: splitting needs at "
                             "least two per class")
        order = rng.permutation(len(files))
        k = min(len(files) - 1, max(1, round(len(files) * val_split)))
        val += [(files[i], label) for i in sorted(order[:k])]
        train += [(files[i], label) for i in sorted(order[k:])]
    return train, val


def _check_split(val_split: float | None) -> None:
    if val_split is not None and not 0.0 < val_split < 1.0:
        raise UsageError(f"--val-split must be between 0 and 1 (the share of each class held out), got {val_split}")


def find_images(data_dir: str | Path, *, val_split: float | None = None, seed: int = 12345) -> ImageFolders:
    """Find training and validation images (no file is read yet).

    Args:
        data_dir: ``train/<class>/`` and ``val/<class>/`` inside, or ``<class>/`` folders with ``val_split``.
        val_split: share of each class held out for validation when there is no ``val/`` folder.
        seed: fixes which files the split holds out.

    Raises:
        InputError: a missing folder, fewer than two classes, an empty class, train/val classes that differ.
        UsageError: ``val_split`` out of range, or given although ``val/`` exists.
    """
    root = Path(data_dir)
    _check_dir(root, "data folder")
    _check_split(val_split)
    train_dir, val_dir = root / "train", root / "val"
    skipped: list[Skipped] = []
    if train_dir.is_dir() and val_dir.is_dir():
        if val_split is not None:
            raise UsageError(f"{root} already has train/ and val/ folders: drop --val-split")
        hint = f"{train_dir}/<class>/ folders, e.g. {train_dir}/cat/ and {train_dir}/dog/"
        names = _classes_of(train_dir, hint)
        val_names = class_folders(val_dir)
        if val_names != names:
            missing = sorted(set(names) - set(val_names))
            extra = sorted(set(val_names) - set(names))
            detail = "; ".join(x for x in (f"val/ lacks {', '.join(missing)}" if missing else "",
                                           f"train/ lacks {', '.join(extra)}" if extra else "") if x)
            raise InputError(f"train/ and val/ in {root} have different class folders ({detail}): give both the "
                             "same class folders")
        train = [(p, i) for i, files in enumerate(_collect(train_dir, names, skipped)) for p in files]
        val = [(p, i) for i, files in enumerate(_collect(val_dir, names, skipped)) for p in files]
        return ImageFolders(names, train, val, skipped, "train/val")
    if train_dir.is_dir() or val_dir.is_dir():
        have, lack = ("train", "val") if train_dir.is_dir() else ("val", "train")
        if val_split is None or have == "val":
            raise InputError(f"{root} has {have}/ but no {lack}/: add {root / lack}/<class>/ folders"
                             + (" or pass --val-split 0.2 to hold out part of train/" if have == "train" else ""))
        root = train_dir
    elif val_split is None:
        raise InputError(f"{root} has no train/ and val/ folders: use {root}/train/<class>/ and {root}/val/<class>/ "
                         f"(the Kaggle layout), or pass --val-split 0.2 to hold out part of each {root}/<class>/")
    names = _classes_of(root, f"one folder of images per class, e.g. {root}/cat/ and {root}/dog/")
    per_class = _collect(root, names, skipped)
    train, val = _split(per_class, names, root, val_split, seed)
    return ImageFolders(names, train, val, skipped, "split")


def _class_of(folder: str, class_names: list[str]) -> int | None:
    """The class a folder holds: the class of that name, else the one class whose name matches it ignoring case and
    a plural ``s``/``es`` on either side (the Kaggle layout's ``cats/`` and ``dogs/`` for classes ``cat`` and
    ``dog``, and ``Cat/`` for ``cats``); None when no class, or more than one, matches."""
    if folder in class_names:
        return class_names.index(folder)
    def forms(name: str) -> set[str]:
        name = name.casefold()
        return {name, name + "s", name + "es"}

    f = folder.casefold()
    hits = [i for i, c in enumerate(class_names) if c.casefold() in forms(f) or f in forms(c)]
    return hits[0] if len(hits) == 1 else None


def find_eval_images(
    data_dir: str | Path,
    class_names: list[str],
    *,
    val_split: float | None = None,
    seed: int = 12345,
) -> ImageFolders:
    """Find labelled images to evaluate a classifier on: ``DATA_DIR/val/`` when it exists, else ``DATA_DIR``'s
    class folders (all of them, or the part a training run with ``val_split`` and ``seed`` held out).

    Labels are the classifier's class ids for each folder's name, so the folders may be any subset of its classes;
    a folder's name matches its class ignoring case and a plural ``s`` (``cats/`` holds class ``cat``).

    Raises:
        InputError: no class folders, an empty one, or a folder the classifier has no class for.
    """
    root = Path(data_dir)
    _check_dir(root, "data folder")
    _check_split(val_split)
    layout = "classes"
    if (root / "val").is_dir():
        if val_split is not None:
            raise UsageError(f"{root} has a val/ folder: drop --val-split")
        root, layout = root / "val", "train/val"
    elif (root / "train").is_dir():
        if val_split is None:
            raise InputError(f"{root} has train/ but no val/: pass the --val-split and --seed used for training to "
                             "evaluate the images it held out")
        root = root / "train"
    names = class_folders(root)
    if not names:
        raise InputError(f"no class folders in {root}: expected {root}/val/<class>/ or {root}/<class>/ folders")
    ids = [_class_of(n, class_names) for n in names]
    unknown = [n for n, i in zip(names, ids) if i is None]
    if unknown:
        raise InputError(f"class folder(s) {', '.join(unknown)} in {root} are not classes of the model "
                         f"({', '.join(class_names[:10])}{', ...' if len(class_names) > 10 else ''})")
    skipped: list[Skipped] = []
    per_class = _collect(root, names, skipped)
    if val_split is not None:
        layout = "split"
        _, val = _split(per_class, names, root, val_split, seed)
    else:
        val = [(p, i) for i, files in enumerate(per_class) for p in files]
    return ImageFolders(list(class_names), [], [(p, ids[i]) for p, i in val], skipped, layout)


def read_fitted(path: Path, size: tuple[int, int], fit: str = "squash") -> np.ndarray | str:
    """``path`` read and fitted to ``size`` (uint8 RGB), or the one-line reason it cannot be read."""
    try:
        return fit_to_model(read_image(path), size, fit)[0]
    except VidcamError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - one strange file must not stop a thousand good ones
        return f"cannot read {path}: {type(e).__name__}: {e}"


class DecodedImages:
    """Images decoded to (N, H, W, 3) uint8 at the model's size, with their labels.

    Kept in memory up to :data:`IN_MEMORY_LIMIT`, else in a memory-mapped file that :meth:`close` removes.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, paths: list[Path], tmp: tempfile.TemporaryDirectory
                 | None) -> None:
        self.images, self.labels, self.paths, self._tmp = images, labels, paths, tmp

    def __len__(self) -> int:
        return len(self.paths)

    def close(self) -> None:
        if self._tmp is not None:
            self.images = np.zeros((0, *self.images.shape[1:]), np.uint8)
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> DecodedImages:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_images(
    samples: list[tuple[Path, int]],
    size: tuple[int, int],
    *,
    on_skip: Callable[[Skipped], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> DecodedImages:
    """Decode every file once, squashed to ``size``; unreadable files are skipped and reported.

    Args:
        samples: (path, label) pairs.
        size: (height, width) of the model input.
        on_skip: called for each file that cannot be read.
        on_progress: called with (done, total) every 500 files and at the end.
        workers: decoding threads (OpenCV releases the GIL); default: the CPU count.
    """
    n = len(samples)
    h, w = size
    tmp = None
    if n * h * w * 3 > IN_MEMORY_LIMIT:
        tmp = tempfile.TemporaryDirectory(prefix="vidcam-images-")
        images = np.lib.format.open_memmap(Path(tmp.name) / "images.npy", "w+", np.uint8, (n, h, w, 3))
    else:
        images = np.empty((n, h, w, 3), np.uint8)
    labels, paths = [], []
    kept = 0
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        for i, ((path, label), out) in enumerate(zip(samples, pool.map(lambda s: read_fitted(s[0], size), samples))):
            if isinstance(out, str):
                if on_skip:
                    on_skip(Skipped(str(path), out))
            else:
                images[kept] = out
                labels.append(label)
                paths.append(path)
                kept += 1
            if on_progress and ((i + 1) % 500 == 0 or i + 1 == n):
                on_progress(i + 1, n)
    return DecodedImages(images[:kept], np.asarray(labels, np.int64), paths, tmp)
