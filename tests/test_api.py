"""The public surface: locked __all__, importable without typer."""

from __future__ import annotations

import subprocess
import sys

import vidcam


def test_all_is_locked():
    assert sorted(vidcam.__all__) == sorted(set(vidcam.__all__))
    for name in vidcam.__all__:
        assert hasattr(vidcam, name), name
    assert {"CamEngine", "explain_images", "load_classifier", "render", "VidcamError"} <= set(vidcam.__all__)


def test_library_does_not_import_typer():
    code = "import sys, vidcam, vidcam.explain, vidcam.engine; assert 'typer' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_only_cli_imports_typer():
    from pathlib import Path

    pkg = Path(vidcam.__file__).parent
    offenders = [p.name for p in pkg.rglob("*.py") if p.name != "cli.py" and "import typer" in p.read_text()]
    assert offenders == []
