"""vidcam's exceptions and exit codes.

Every error a user can cause derives from :class:`VidcamError`; the CLI prints its message on one line and
exits with its ``exit_code``. Anything else escaping is a bug.
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_SKIPPED",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "VidcamError",
    "UsageError",
    "InputError",
    "ModelError",
    "WeightsError",
    "LayerError",
    "FFmpegError",
    "OutputError",
    "OutOfMemoryError",
    "VidcamWarning",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 3
EXIT_INTERRUPTED = 130  # Ctrl-C (the shell's 128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + 15), after the same clean-up as Ctrl-C


class VidcamError(Exception):
    """Base class: a problem with the user's input or environment, reported as one line."""

    exit_code = EXIT_FAILURE


class UsageError(VidcamError, ValueError):
    """Arguments that do not fit together or are out of range."""

    exit_code = EXIT_USAGE


class InputError(VidcamError):
    """An input file is missing, unreadable or not what it claims to be."""


class ModelError(VidcamError):
    """A model cannot be built or loaded, or is not a classifier vidcam can explain."""


class WeightsError(ModelError):
    """Pretrained weights are missing or malformed."""


class LayerError(ModelError, ValueError):
    """The Grad-CAM layer does not exist or is not a 4-D feature map."""


class FFmpegError(VidcamError):
    """ffmpeg failed; the message carries the last lines of its stderr."""


class OutputError(VidcamError):
    """An output cannot be written (exists, unwritable, same as the input, disk full)."""


class OutOfMemoryError(VidcamError):
    """Memory or address space ran out (``ulimit -v``, a batch too big for the machine)."""


class VidcamWarning(UserWarning):
    """Something the user should know that does not stop the run (a damaged cache rebuilt, ...).

    The library reports it with :func:`warnings.warn` and never prints; the CLI shows each as one
    ``vidcam: warning:`` line.
    """
