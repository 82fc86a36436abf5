"""What a file holds, as a hash: the resume key of a frames run and the compiled-step cache's key both depend on
the contents of model and weights files, never on their names."""

from __future__ import annotations

import functools
import hashlib
import os

__all__ = ["content_sha256"]


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_sha256(path: str | os.PathLike) -> str:
    """A file's sha256, computed once per process for each (path, size, modification time) seen.

    Raises:
        OSError: the file cannot be read.
    """
    st = os.stat(path)
    return _sha256(os.path.realpath(path), st.st_size, st.st_mtime_ns)
