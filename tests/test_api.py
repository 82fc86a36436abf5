"""The public surface: locked __all__, importable without typer."""

from __future__ import annotations

import subprocess
import sys

import vidcam

# The public surface, locked: adding or removing a name is a deliberate change made here too.
PUBLIC = {
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
    "BatchReport",
    "COLORMAPS",
    "CamEngine",
    "CamMetrics",
    "CamResult",
    "Classifier",
    "CompareResult",
    "DEFAULT_MODEL",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_SKIPPED",
    "EXIT_USAGE",
    "EvalResult",
    "FFmpegError",
    "FramesSummary",
    "ImageResult",
    "InputError",
    "LAYOUTS",
    "LayerError",
    "METHODS",
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
    "ZOO",
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
    "DecodeAhead",
    "read_image",
    "render",
    "train_classifier",
}


def test_all_is_locked():
    assert sorted(vidcam.__all__) == sorted(set(vidcam.__all__))
    for name in vidcam.__all__:
        assert hasattr(vidcam, name), name
    assert set(vidcam.__all__) == PUBLIC


def test_library_does_not_import_typer():
    code = ("import sys, vidcam, vidcam.jobs.image, vidcam.cam.engine; "
            "assert 'typer' not in sys.modules and 'ray' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_only_cli_imports_typer():
    from pathlib import Path

    pkg = Path(vidcam.__file__).parent
    offenders = [p.name for p in pkg.rglob("*.py") if p.name != "cli.py" and "import typer" in p.read_text()]
    assert offenders == []
