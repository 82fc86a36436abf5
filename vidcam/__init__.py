"""vidcam: see what an image classifier looks at, frame by frame.

The library is importable without the CLI (typer). Heavy dependencies (TensorFlow) load on first use.
"""

from __future__ import annotations

import os

# TensorFlow's oneDNN kernels, which TensorFlow turns on by itself only on some CPUs (not on this AMD EPYC): the
# engine's step takes 1.5x less CPU with them (20 vs 30 CPU-ms per 224x224 frame, EfficientNet-Lite0, probabilities
# and maps equal to 1e-6). Must be set before TensorFlow is imported; TF_ENABLE_ONEDNN_OPTS=0 turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from vidcam.cam.engine import METHODS, CamEngine, CamResult
from vidcam.cam.metrics import CamMetrics
from vidcam.cam.spec import ModelSpec
from vidcam.cluster import RayExecutor, label_frames_ray
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
from vidcam.jobs.compare import CompareOptions, CompareResult, compare_methods
from vidcam.jobs.evaluate import EvalOptions, EvalResult, evaluate_classifier
from vidcam.jobs.executors import LocalExecutor
from vidcam.jobs.frames import FramesOptions, FramesSummary, label_frames
from vidcam.jobs.image import ImageOptions, ImageResult, Prediction, explain_images
from vidcam.jobs.train import TrainEvent, TrainOptions, TrainResult, train_classifier
from vidcam.jobs.video import DecodeAhead, VideoOptions, VideoSummary, process_video
from vidcam.jobs.videos import BatchReport, process_videos
from vidcam.media.ffmpeg_cmd import EncodeOptions
from vidcam.media.images import fit_to_model, read_image
from vidcam.media.probe import VideoInfo, probe
from vidcam.media.render import COLORMAPS, LAYOUTS, RenderOptions, overlay, render
from vidcam.models.zoo import DEFAULT_MODEL, ZOO, Classifier, load_classifier
from vidcam.version import __version__  # noqa: F401 - re-exported

__all__ = [
    "TrainOptions",
    "ImageOptions",
    "EvalOptions",
    "CompareOptions",
    "RenderOptions",
    "EncodeOptions",
    "VideoOptions",
    "FramesOptions",
    "LocalExecutor",
    "RayExecutor",
    "ModelSpec",
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
    "DecodeAhead",
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
