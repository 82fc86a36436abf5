"""vidcam: see what an image classifier looks at, frame by frame.

The library is importable without the CLI (typer). Heavy dependencies (TensorFlow) load on first use.
"""

from __future__ import annotations

from vidcam.cluster import BatchReport, label_frames_ray, process_videos
from vidcam.compare import CompareResult, compare_methods
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
from vidcam.frames import FramesSummary, label_frames
from vidcam.images import fit_to_model, read_image
from vidcam.media import VideoInfo, probe
from vidcam.metrics import CamMetrics
from vidcam.render import COLORMAPS, LAYOUTS, overlay, render
from vidcam.train import TrainEvent, TrainResult, train_classifier
from vidcam.video import VideoSummary, process_video
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
    "BatchReport",
    "CamEngine",
    "CamMetrics",
    "CamResult",
    "Classifier",
    "CompareResult",
    "EvalResult",
    "FFmpegError",
    "FramesSummary",
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
    "VideoInfo",
    "VideoSummary",
    "WeightsError",
    "compare_methods",
    "evaluate_classifier",
    "explain_images",
    "fit_to_model",
    "label_frames",
    "label_frames_ray",
    "load_classifier",
    "overlay",
    "probe",
    "process_video",
    "process_videos",
    "read_image",
    "render",
    "train_classifier",
]
