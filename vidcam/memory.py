"""Running under an address-space limit (``ulimit -v``): economise, refuse early, and name the failure.

TensorFlow alone maps about 1.6 GiB of address space when it is imported (its shared libraries and the thread
pools it starts), long before it allocates a tensor, and each thread glibc's malloc sees may get an arena of its
own (64 MiB of address space each, up to 8 per CPU core). Under a limit, an allocation can fail anywhere: as a
Python ``MemoryError``, a TensorFlow ``ResourceExhaustedError``, a shared library that cannot be mapped, a thread
that cannot start, or, inside a C++ core, as an abort no Python code can catch. So under a limit vidcam

* caps glibc's malloc arenas (:func:`economize`; measured on TensorFlow 2.19, 2 cores: 330 MiB less address
  space after the first tensor, more on machines with more cores; nothing changes without a limit),
* refuses before importing TensorFlow when the limit is below what importing it needs (:func:`check_headroom`),
* and reports every other out-of-memory failure as one line (:func:`is_out_of_memory`, :func:`describe`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import resource

from vidcam.errors import OutOfMemoryError

__all__ = ["address_space_limit", "economize", "check_headroom", "is_out_of_memory", "describe", "tensorflow_needs",
           "TENSORFLOW_NEEDS"]

# The smallest address-space limit vidcam can work under on 2 CPU cores, measured with TensorFlow 2.19 and
# Python 3.11, the arenas capped: each command's peak (VmPeak) lies between 1.96 GiB (image) and 2.28 GiB
# (compare); at 2.05 GiB compare and train abort inside TensorFlow's C++ (std::bad_alloc, "LLVM ERROR:
# pthread_create failed"), which no Python code can report; at 2.15 GiB compare fails with an exception.
TENSORFLOW_NEEDS = int(2.2 * 1024**3)
# Each more core: TensorFlow starts an intra-op and an inter-op thread for it, each reserving a stack.
_PER_CORE_THREADS = 2

_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
_OOM_TYPES = ("MemoryError", "ResourceExhaustedError", "OutOfMemoryError")
_OOM_TEXT = ("failed to map segment", "cannot allocate memory", "can't start new thread", "out of memory",
             "insufficient memory", "failed to allocate", "unable to allocate", "bad_alloc", "oom when allocating")


def address_space_limit() -> int | None:
    """The soft ``RLIMIT_AS`` in bytes, or None without one."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


def economize() -> None:
    """Under an address-space limit, cap glibc's malloc arenas at 2 (each thread otherwise may reserve 64 MiB)
    and OpenBLAS libraries loaded later at one thread. Call before TensorFlow starts its threads; without a
    limit it does nothing."""
    if address_space_limit() is None:
        return
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):  # not glibc: nothing to cap
        pass


def _used() -> int:
    """This process's address space now (VmSize), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tensorflow_needs() -> int:
    """The address space vidcam needs on this machine: :data:`TENSORFLOW_NEEDS` plus a stack for each thread
    TensorFlow starts per core beyond the 2 it was measured on."""
    stack, _ = resource.getrlimit(resource.RLIMIT_STACK)
    stack = 8 * 1024**2 if stack == resource.RLIM_INFINITY else stack
    return TENSORFLOW_NEEDS + max(0, (os.cpu_count() or 2) - 2) * _PER_CORE_THREADS * stack


def check_headroom(needs: int | None = None) -> None:
    """Raise :class:`~vidcam.errors.OutOfMemoryError` when the address-space limit is below ``needs`` bytes
    (default :func:`tensorflow_needs`): a run under it fails, possibly with a C++ abort inside TensorFlow that
    no Python code can report, so it is refused before TensorFlow loads."""
    needs = tensorflow_needs() if needs is None else needs
    limit = address_space_limit()
    if limit is not None and limit < needs:
        raise OutOfMemoryError(f"out of memory: the address-space limit ({_gib(limit)}, ulimit -v) is below the "
                               f"{_gib(needs)} vidcam needs with TensorFlow; raise it (ulimit -v unlimited)")


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` (from any library) says an allocation, a mapping or a thread start failed."""
    for cls in type(e).__mro__:
        if cls.__name__ in _OOM_TYPES:
            return True
    if isinstance(e, OSError) and e.errno == errno.ENOMEM:
        return True
    if isinstance(e, (ImportError, OSError, RuntimeError, SystemError)) or type(e).__name__ == "error":  # cv2.error
        text = str(e).lower()
        return any(t in text for t in _OOM_TEXT)
    return False


def describe(e: BaseException) -> str:
    """One line for an out-of-memory failure: what failed, the limit if there is one, what to try."""
    if isinstance(e, OutOfMemoryError):
        return str(e)
    text = " ".join(str(e).split())
    tensor = re.search(r"OOM when allocating tensor with shape\s*\[([^\]]*)\]", text)
    if tensor:  # TensorFlow's message runs over many lines of graph nodes and Python frames: the shape is what counts
        text = f"TensorFlow could not allocate a tensor of shape [{tensor.group(1)}]"
    what = f" ({text[:120]})" if text else ""
    limit = address_space_limit()
    where = f"; the address-space limit is {_gib(limit)} (ulimit -v)" if limit is not None else ""
    return f"out of memory{what}{where}: try a smaller --batch or a higher limit"
