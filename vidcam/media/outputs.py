"""Writing outputs safely: a temporary name in the destination folder, renamed into place when complete."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from vidcam.errors import OutputError

__all__ = ["atomic_output", "check_output", "ensure_dir", "write_image", "same_file", "BatchOutputs", "out_of_space",
           "folder_error", "describe_os_error"]

# Write failures that every later file of a batch would hit too: a batch stops on them instead of skipping on.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def _read_only(folder: Path) -> bool:
    """The folder is on a file system mounted read-only."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def folder_error(folder: str | Path, e: OSError | None = None) -> OutputError:
    """The one-line error for an output folder that cannot be written: read-only, permission denied, ...

    ``e`` is the error a write into it gave (None: ``os.access`` said no).
    """
    folder = Path(folder)
    if (e is not None and e.errno == errno.EROFS) or _read_only(folder):
        err = OutputError(f"cannot write to output folder {folder}: it is on a read-only file system")
        err.errno = errno.EROFS
        return err
    why = describe_os_error(e) if e is not None else "permission denied"
    err = OutputError(f"cannot write to output folder {folder}: {why}")
    err.errno = getattr(e, "errno", errno.EACCES)
    return err


def ensure_dir(path: str | Path, hint: str = "") -> Path:
    """Create an output folder (and its parents) unless it exists; a file in the way is an :class:`OutputError`.

    Args:
        path: the folder.
        hint: appended to the "is a file" message (e.g. what to give instead).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output folder {path} is a file{hint}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno == errno.EROFS:
            raise folder_error(path, e) from None
        raise OutputError(f"cannot create output folder {path}: {e.strerror or e}") from None
    return path


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when both paths name one file (or would: resolved paths are equal)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output(path: str | Path, *, overwrite: bool, inputs: tuple = ()) -> Path:
    """Validate an output path before any work: not an input, not existing (unless ``overwrite``), folder creatable."""
    path = Path(path)
    for src in inputs:
        if same_file(path, src):
            raise OutputError(f"output {path} is the input file; choose another output name")
    if path.is_dir():
        raise OutputError(f"output {path} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} already exists: pass --overwrite to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        # "File exists" alone does not say which part of the path is in the way.
        blocker = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise OutputError(f"cannot create folder {path.parent}: {blocker} is a file, not a folder") from None
        raise OutputError(f"cannot create folder {path.parent}: {e.strerror or e}") from None
    if not os.access(path.parent, os.W_OK):
        raise folder_error(path.parent)
    return path


class BatchOutputs:
    """The outputs of one batch run: none may replace one of the run's inputs, and no two inputs may share one
    (``a.png`` and ``a.jpg`` both make ``a_output.jpg``; with ``--overwrite`` the second would silently replace
    the first, and ``a.png a_output.jpg`` would replace an input)."""

    def __init__(self, inputs: Iterable[str | Path]) -> None:
        self._inputs = {os.path.realpath(p) for p in inputs}
        self._taken: dict[str, Path] = {}

    def claim(self, dest: str | Path, src: str | Path) -> None:
        """Reserve ``dest`` for ``src``; raise :class:`OutputError` when that would lose a file."""
        key = os.path.realpath(dest)
        if key in self._inputs:
            raise OutputError(f"output {dest} is one of the input files; choose another output folder")
        first = self._taken.setdefault(key, Path(src))
        if first != Path(src):
            raise OutputError(f"{src} and {first} would both be written to {dest}: rename one or run them separately")


def describe_os_error(e: OSError) -> str:
    """An OSError in a few words: ``no space left on device``, ``read-only file system``, ..."""
    if e.errno == errno.EROFS:
        return "read-only file system"
    if e.errno == errno.ENOSPC:
        return "no space left on device"
    if e.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if e.errno == errno.EFBIG:
        return "file too large (a file size limit, ulimit -f?)"
    return e.strerror or str(e)


def out_of_space(e: BaseException) -> bool:
    """True for an error from :func:`atomic_output` that every later write would hit too: a full disk, a quota,
    a file size limit, a read-only file system."""
    return getattr(e, "errno", None) in _NO_ROOM


# A file system without hard links (FAT, exFAT, some network mounts) answers link() with one of these.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


def _appeared(path: Path) -> OutputError:
    err = OutputError(f"output {path} appeared while vidcam was writing it (another run writing the same file?); "
                      "kept it: pass --overwrite to replace it")
    err.errno = errno.EEXIST
    return err


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Give ``tmp`` the name ``path``. Without ``overwrite`` a file that appeared at ``path`` meanwhile (another
    run) is never replaced: a hard link fails with EEXIST where a rename would replace silently."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _appeared(path) from None
    except OSError as e:
        if e.errno not in _NO_LINKS:
            raise
        if os.path.lexists(path):  # no hard links here: check, then rename (the best this file system allows)
            raise _appeared(path) from None
        os.replace(tmp, path)
        return
    _discard(tmp)


def _discard(tmp: Path) -> None:
    """Remove a temporary file; never raises (a read-only or vanished folder must not mask the real error)."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


@contextlib.contextmanager
def atomic_output(path: str | Path, *, overwrite: bool, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on any failure delete it.

    Args:
        path: the final name.
        overwrite: whether a file at ``path`` may be replaced. Without it, a file that appeared there while this
            one was written (another run) is kept and an :class:`OutputError` raised (``errno`` EEXIST).
        suffix: the suffix the temporary name keeps (default the path's; e.g. ``.weights.h5`` when it has more
            than one dot), so tools that pick a format from the extension (ffmpeg, OpenCV, Keras) work.
    """
    path = Path(path)
    suffix = suffix or path.suffix
    stem = path.name[: -len(suffix)] if suffix and path.name.endswith(suffix) else path.stem
    tmp = path.with_name(f".{stem}.{uuid.uuid4().hex[:8]}.part{suffix}")
    try:
        yield tmp
        _publish(tmp, path, overwrite)
    except OSError as e:
        _discard(tmp)
        err = OutputError(f"cannot write {path}: {describe_os_error(e)}")
        err.errno = e.errno  # lets a batch tell a full disk (stop) from one bad file (skip it)
        raise err from None
    except BaseException:
        _discard(tmp)
        raise


def write_image(path: str | Path, rgb: np.ndarray, *, overwrite: bool, quality: int = 92) -> Path:
    """Encode an RGB image by the path's extension and write it atomically (``overwrite``: see
    :func:`atomic_output`)."""
    import cv2

    path = Path(path)
    ext = path.suffix.lower() or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise OutputError(f"cannot encode {path}: unsupported image extension {ext!r}")
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            f.write(buf.tobytes())
    return path
