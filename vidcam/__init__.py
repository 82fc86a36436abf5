"""vidcam: see what an image classifier looks at, frame by frame.

The library is importable without the CLI (typer). Heavy dependencies (TensorFlow) load on first use.
"""

from __future__ import annotations

from vidcam.engine import METHODS, CamEngine, CamResult
from vidcam.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_SKIPPED,
    EXIT_USAGE,
    FFmpegError,
    InputError,
    LayerError,
    ModelError,
    OutputError,
    UsageError,
    VidcamError,
    WeightsError,
)
from vidcam.evaluate import EvalResult, evaluate_classifier
from vidcam.explain import ImageResult, Prediction, explain_images
from vidcam.images import fit_to_model, read_image
from vidcam.render import COLORMAPS, LAYOUTS, overlay, render
from vidcam.train import TrainEvent, TrainResult, train_classifier
from vidcam.zoo import DEFAULT_MODEL, ZOO, Classifier, load_classifier

__version__ = "0.1.0"

__all__ = [
    "COLORMAPS",
    "DEFAULT_MODEL",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_SKIPPED",
    "EXIT_USAGE",
    "LAYOUTS",
    "METHODS",
    "ZOO",
    "CamEngine",
    "CamResult",
    "Classifier",
    "EvalResult",
    "FFmpegError",
    "ImageResult",
    "InputError",
    "LayerError",
    "ModelError",
    "OutputError",
    "Prediction",
    "TrainEvent",
    "TrainResult",
    "UsageError",
    "VidcamError",
    "WeightsError",
    "evaluate_classifier",
    "explain_images",
    "fit_to_model",
    "load_classifier",
    "overlay",
    "read_image",
    "render",
    "train_classifier",
]
