"""vidcam's command line: the only module that imports typer.

Every command is a thin layer over a library function. Errors vidcam anticipates (:class:`VidcamError`) print
one line on stderr and exit with their code; anything unexpected also prints one line (set ``VIDCAM_DEBUG=1``
for the traceback). Exit codes: 0 success, 1 failure, 2 usage error, 3 finished with some inputs skipped.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

# Quiet TensorFlow's C++ start-up chatter before anything imports it; the CLI owns the process, so it may.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

try:  # typer >= 0.2x ships its own copy of click
    from typer._click import exceptions as _click_errors  # noqa: E402
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as _click_errors  # noqa: E402

from vidcam.errors import EXIT_FAILURE, EXIT_SKIPPED, EXIT_USAGE, VidcamError  # noqa: E402


def _usage_message(e: Exception) -> str:
    text = e.format_message().strip()
    msg = text.splitlines()[0].rstrip(".") if text else "bad usage"
    if isinstance(e, _click_errors.NoSuchOption) and not str(getattr(e, "option_name", "")).startswith("--"):
        # The usual cause of "no such option" on a file: a name that starts with "-".
        msg += " (a file name that starts with '-': write ./NAME, or put -- before the file names)"
    ctx = getattr(e, "ctx", None)
    cmd = ctx.command_path if ctx is not None else "vidcam"
    return f"{msg}; see `{cmd} --help`"


class _OneLineErrorsGroup(TyperGroup):
    """Click's usage errors (unknown option, missing argument, bad value) as one ``vidcam: error:`` line and
    exit code 2, like every other vidcam error, instead of click's multi-line box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _click_errors.NoArgsIsHelpError as e:  # the help is already printed
            sys.exit(e.exit_code)
        except _click_errors.UsageError as e:
            _err(_usage_message(e))
            sys.exit(EXIT_USAGE)
        except _click_errors.ClickException as e:
            _err(e.format_message())
            sys.exit(e.exit_code)
        except typer.Abort:
            _err("aborted")
            sys.exit(EXIT_FAILURE)
        # Without standalone mode click returns an Exit's code, or the command's return value (None).
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


app = typer.Typer(
    name="vidcam",
    cls=_OneLineErrorsGroup,
    help="See what an image classifier looks at: Grad-CAM heatmaps for videos, images and frame folders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

MODEL_HELP = "Zoo name (see `vidcam models`) or path of a .keras classifier."


def _err(msg: str) -> None:
    typer.echo(f"vidcam: error: {msg}", err=True)


def handle_errors(fn: Callable) -> Callable:
    """Turn library exceptions into one line on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except VidcamError as e:
            _err(str(e).splitlines()[0] if str(e) else type(e).__name__)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader went away (`vidcam models | head -1`): nothing to report. Point stdout at /dev/null so
            # the interpreter's final flush does not fail again.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            except (OSError, ValueError, AttributeError):
                pass
            raise typer.Exit(EXIT_FAILURE) from None
        except MemoryError:
            _err("out of memory: try a smaller --batch")
            raise typer.Exit(EXIT_FAILURE) from None
        except Exception as e:  # noqa: BLE001 - the last line of defence against tracebacks
            if os.environ.get("VIDCAM_DEBUG"):
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            _err(f"unexpected {type(e).__name__}: {first} (set VIDCAM_DEBUG=1 for details)")
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper


def load_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up logging (which ignores TF_CPP_MIN_LOG_LEVEL) kept off stderr."""
    if "tensorflow" in sys.modules or os.environ.get("VIDCAM_DEBUG"):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # device discovery logs too
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_choice(value: str, choices, option: str) -> str:
    if value not in choices:
        _err(f"{option} must be one of {', '.join(choices)}; got {value!r}")
        raise typer.Exit(EXIT_USAGE)
    return value


@app.command("models")
@handle_errors
def models_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON Lines instead of a table.")) -> None:
    """List the model zoo: input size, size, parameters, ImageNet top-1/top-5, and whether weights are here."""
    from vidcam.zoo import zoo_table

    rows = zoo_table()
    if json_out:
        for r in rows:
            typer.echo(json.dumps(r))
        return
    head = ["model", "input", "size", "parameters", "top-1", "top-5", "weights"]
    table = [
        [r["name"], r["input"], f"{r['size_mb']:g} MB", f"{r['parameters']:,}",
         f"{r['top1']:.3f}" if r["top1"] else "-", f"{r['top5']:.3f}" if r["top5"] else "-", r["weights"]]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    for row in [head, *table]:
        typer.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


@app.command("image")
@handle_errors
def image_cmd(
    paths: list[str] = typer.Argument(..., help="Image files or globs (JPEG, PNG, BMP, WebP, TIFF, GIF)."),
    output_dir: Path = typer.Option(Path("."), "-o", "--output-dir", help="Folder for <stem>_output.jpg files."),
    model: str = typer.Option("efficientnet_lite0", "--model", "-m", help=MODEL_HELP),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file for a zoo model."),
    layer: str | None = typer.Option(None, "--layer", help="Grad-CAM layer (default: the model's last feature map)."),
    method: str = typer.Option("gradcam", "--method", help="gradcam, gradcam++ or scorecam."),
    class_index: int | None = typer.Option(None, "--class", help="Explain this class id instead of the top-1."),
    top_k: int = typer.Option(3, "--top", "-k", min=1, help="How many classes to print."),
    layout: str = typer.Option("side-by-side", "--layout", help="overlay or side-by-side."),
    alpha: float = typer.Option(0.4, "--alpha", min=0.0, max=1.0, help="Heatmap opacity."),
    colormap: str = typer.Option("jet", "--colormap", help="jet, turbo, inferno, viridis, magma, plasma, hot."),
    fit: str | None = typer.Option(None, "--fit", help="crop (ImageNet protocol) or squash (whole image)."),
    batch: int = typer.Option(8, "--batch", min=1, help="Images per engine call."),
    no_output: bool = typer.Option(False, "--no-output", help="Print labels only; write no pictures."),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", help="Replace existing output files."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow .keras files with Lambda layers (runs their code)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per image (JSON Lines)."),
) -> None:
    """Label images (top-k) and write original | heatmap pictures."""
    from vidcam.engine import METHODS
    from vidcam.explain import explain_images, get_engine
    from vidcam.render import COLORMAPS, LAYOUTS

    _check_choice(method, METHODS, "--method")
    _check_choice(layout, LAYOUTS, "--layout")
    _check_choice(colormap, COLORMAPS, "--colormap")
    if fit is not None:
        _check_choice(fit, ("crop", "squash"), "--fit")
    load_tensorflow()
    engine = get_engine(model, layer=layer, method=method, weights=weights, unsafe=unsafe)
    failed = 0

    def show(r) -> None:
        nonlocal failed
        if r.error:
            failed += 1
        if json_out:
            typer.echo(json.dumps(r.as_dict()))
            if r.error:
                _err(f"{r.path}: {r.error}")
            return
        if r.error and not r.predictions:
            _err(f"skipped {r.path}: {r.error}")
            return
        typer.echo(r.path)
        width = max(len(p.label) for p in r.predictions)
        for i, p in enumerate(r.predictions, 1):
            typer.echo(f"  {i}. {p.label.ljust(width)}  {p.probability:.3f}")
        if r.output:
            typer.echo(f"  -> {r.output}")
        if r.error:
            _err(f"{r.path}: {r.error}")

    results = explain_images(
        paths, None if no_output else output_dir, model=engine, top_k=top_k, class_index=class_index,
        render_options={"layout": layout, "alpha": alpha, "colormap": colormap}, fit=fit, batch_size=batch,
        overwrite=overwrite, on_result=show,
    )
    if failed:
        if failed == len(results):
            raise typer.Exit(EXIT_FAILURE)
        _err(f"{failed} of {len(results)} images skipped")
        raise typer.Exit(EXIT_SKIPPED)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="vidcam")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
