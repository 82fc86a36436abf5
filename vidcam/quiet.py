"""Keeping native libraries' chatter off the terminal.

TensorFlow's and Ray's C++ cores print straight to file descriptor 2 (ignoring ``TF_CPP_MIN_LOG_LEVEL`` before
their logging starts), so redirecting ``sys.stderr`` would not do: the descriptor itself is pointed at
/dev/null for the duration. ``VIDCAM_DEBUG=1`` keeps everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["muted_stderr"]


@contextlib.contextmanager
def muted_stderr() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null inside the block (unless ``VIDCAM_DEBUG`` is set); failures still
    arrive as exceptions, with their messages."""
    if os.environ.get("VIDCAM_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
