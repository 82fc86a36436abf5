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
# OpenCV logs decoder complaints (a cut TIFF) on stderr; vidcam reports the unreadable file itself, in one line.
os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")

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


METHOD_HELP = ("CAM method: gradcam (default), gradcam++, scorecam, xgradcam, hirescam, gradcam-elementwise, "
               "layercam, eigencam or eigengradcam.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"vidcam {version('vidcam')}")
        except PackageNotFoundError:  # running from a checkout that is not installed
            from vidcam.version import __version__

            typer.echo(f"vidcam {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """See what an image classifier looks at: Grad-CAM heatmaps for videos, images and frame folders."""

MODEL_HELP = "Zoo name (see `vidcam models`) or path of a .keras classifier."


def _err(msg: str) -> None:
    typer.echo(f"vidcam: error: {msg}", err=True)


def _warn_damaged(summary) -> None:
    """One warning line when a video was truncated or corrupt: vidcam kept the frames that decode."""
    src = getattr(summary, "source", None)
    if src is not None and getattr(src, "damaged", None):
        typer.echo(f"vidcam: warning: {summary.input} is truncated or damaged (ffmpeg: {src.damaged}); "
                   f"kept the {summary.frames} frames that decode", err=True)


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
    if "tensorflow" in sys.modules:
        return
    from vidcam.quiet import muted_stderr

    with muted_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # device discovery logs too


def _check_choice(value: str, choices, option: str) -> str:
    if value not in choices:
        _err(f"{option} must be one of {', '.join(choices)}; got {value!r}")
        raise typer.Exit(EXIT_USAGE)
    return value


@app.command("models")
@handle_errors
def models_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON Lines instead of a table.")) -> None:
    """List the model zoo: input size, size, parameters, ImageNet top-1/top-5, and whether weights are here."""
    from vidcam.models.zoo import zoo_table

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


class _ImageReporter:
    """Prints each result of an image batch as it comes (text or JSON Lines), counts the skipped ones, and
    ends with the exit code: 1 when every image failed, 3 when some were skipped."""

    def __init__(self, json_out: bool, describe: Callable, has_result: Callable) -> None:
        self.json_out, self.describe, self.has_result = json_out, describe, has_result
        self.failed = 0

    def __call__(self, r) -> None:
        if r.error:
            self.failed += 1
        if self.json_out:
            typer.echo(json.dumps(r.as_dict()))
        elif r.error and not self.has_result(r):
            _err(f"skipped {r.path}: {r.error}")
            return
        else:
            self.describe(r)
            if r.output:
                typer.echo(f"  -> {r.output}")
        if r.error:
            _err(f"{r.path}: {r.error}")

    def finish(self, total: int) -> None:
        if not self.failed:
            return
        if self.failed == total:
            raise typer.Exit(EXIT_FAILURE)
        _err(f"{self.failed} of {total} images skipped")
        raise typer.Exit(EXIT_SKIPPED)


@app.command("image")
@handle_errors
def image_cmd(
    paths: list[str] = typer.Argument(..., help="Image files or globs (JPEG, PNG, BMP, WebP, TIFF, GIF)."),
    output_dir: Path = typer.Option(Path("."), "-o", "--output-dir", help="Folder for <stem>_output.jpg files."),
    model: str = typer.Option("efficientnet_lite0", "--model", "-m", help=MODEL_HELP),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file for a zoo model."),
    layer: str | None = typer.Option(None, "--layer", help="Grad-CAM layer (default: the model's last feature map)."),
    method: str = typer.Option("gradcam", "--method", help=METHOD_HELP),
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
    metrics: bool = typer.Option(False, "--metrics", help="Also measure each heatmap's faithfulness (slower)."),
) -> None:
    """Label images (top-k) and write original | heatmap pictures."""
    from vidcam.cam.engine import METHODS, get_engine
    from vidcam.jobs.image import explain_images
    from vidcam.media.render import COLORMAPS, LAYOUTS

    _check_choice(method, METHODS, "--method")
    _check_choice(layout, LAYOUTS, "--layout")
    _check_choice(colormap, COLORMAPS, "--colormap")
    if fit is not None:
        _check_choice(fit, ("crop", "squash"), "--fit")
    load_tensorflow()
    engine = get_engine(model, layer=layer, method=method, weights=weights, unsafe=unsafe)

    def describe(r) -> None:
        typer.echo(r.path)
        width = max(len(p.label) for p in r.predictions)
        for i, p in enumerate(r.predictions, 1):
            typer.echo(f"  {i}. {p.label.ljust(width)}  {p.probability:.3f}")
        if r.metrics is not None:
            typer.echo(f"  metrics ({engine.classifier.class_names[r.metrics.class_id]}): {r.metrics.describe()}")

    report = _ImageReporter(json_out, describe, lambda r: bool(r.predictions))
    results = explain_images(
        paths, None if no_output else output_dir, model=engine, top_k=top_k, class_index=class_index,
        render_options={"layout": layout, "alpha": alpha, "colormap": colormap}, fit=fit, batch_size=batch,
        overwrite=overwrite, metrics=metrics, on_result=report,
    )
    report.finish(len(results))


@app.command("compare")
@handle_errors
def compare_cmd(
    paths: list[str] = typer.Argument(..., help="Image files or globs (JPEG, PNG, BMP, WebP, TIFF, GIF)."),
    output_dir: Path = typer.Option(Path("."), "-o", "--output-dir", help="Folder for <stem>_compare.jpg files."),
    model: str = typer.Option("efficientnet_lite0", "--model", "-m", help=MODEL_HELP),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file for a zoo model."),
    layer: str | None = typer.Option(None, "--layer", help="CAM layer (default: the model's last feature map)."),
    methods: str = typer.Option("gradcam,gradcam++,scorecam", "--methods", help="Comma-separated, in panel order."),
    class_index: int | None = typer.Option(None, "--class", help="Explain this class id instead of the top-1."),
    steps: int = typer.Option(16, "--steps", min=1, max=256, help="Deletion/insertion curve steps."),
    alpha: float = typer.Option(0.4, "--alpha", min=0.0, max=1.0, help="Heatmap opacity."),
    colormap: str = typer.Option("jet", "--colormap", help="jet, turbo, inferno, viridis, magma, plasma, hot."),
    fit: str | None = typer.Option(None, "--fit", help="crop (ImageNet protocol) or squash (whole image)."),
    batch: int = typer.Option(8, "--batch", min=1, help="Images per engine call."),
    no_output: bool = typer.Option(False, "--no-output", help="Print the metrics only; write no pictures."),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", help="Replace existing output files."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow .keras files with Lambda layers (runs their code)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per image (JSON Lines)."),
) -> None:
    """Compare Grad-CAM, Grad-CAM++ and Score-CAM side by side, with each map's faithfulness metrics."""
    from vidcam.cam.engine import METHODS
    from vidcam.jobs.compare import compare_methods, method_title
    from vidcam.media.render import COLORMAPS

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    if not chosen:
        _err(f"--methods needs at least one of {', '.join(METHODS)}")
        raise typer.Exit(EXIT_USAGE)
    for m in chosen:
        _check_choice(m, METHODS, "--methods")
    _check_choice(colormap, COLORMAPS, "--colormap")
    if fit is not None:
        _check_choice(fit, ("crop", "squash"), "--fit")
    load_tensorflow()

    def describe(r) -> None:
        typer.echo(f"{r.path}: {r.label} {r.probability:.3f} (class {r.class_id})")
        head = ["method", "avg drop", "increase", "deletion AUC", "insertion AUC"]
        rows = [[method_title(m), f"{x.average_drop:.1f}%", "yes" if x.increase else "no",
                 f"{x.deletion_auc:.3f}", f"{x.insertion_auc:.3f}"] for m, x in r.metrics.items()]
        widths = [max(len(c) for c in col) for col in zip(head, *rows)]
        for k, row in enumerate([head, *rows]):
            cells = [c.ljust(w) if j in (0, 2) or k == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
            typer.echo("  " + "  ".join(cells).rstrip())

    report = _ImageReporter(json_out, describe, lambda r: bool(r.metrics))
    results = compare_methods(
        paths, None if no_output else output_dir, model=model, methods=chosen, layer=layer, weights=weights,
        unsafe=unsafe, class_index=class_index, fit=fit, steps=steps, batch_size=batch,
        render_options={"alpha": alpha, "colormap": colormap}, overwrite=overwrite, on_result=report,
    )
    report.finish(len(results))


@app.command("train")
@handle_errors
def train_cmd(
    data_dir: Path = typer.Argument(..., help="train/<class>/ and val/<class>/ inside (or <class>/ with --val-split)."),
    output: Path = typer.Option(..., "-o", "--output", help="The .keras model to write (curves: <stem>_curves.png)."),
    base: str = typer.Option("efficientnet_lite0", "--base", help="Zoo backbone, used without its top and frozen."),
    epochs: int = typer.Option(10, "--epochs", help="Epochs (per phase)."),
    batch: int = typer.Option(64, "--batch", help="Images per training step."),
    img_size: int | None = typer.Option(None, "--img-size", help="Square input size (default: the base's)."),
    val_split: float | None = typer.Option(None, "--val-split", help="Hold out this share of each class folder."),
    seed: int = typer.Option(12345, "--seed", help="Seed for shuffling, the split, augmentation and weights."),
    flip: bool = typer.Option(False, "--flip", help="Also augment with random horizontal flips."),
    fine_tune: int = typer.Option(0, "--fine-tune", help="Then unfreeze the top N base layers at lr 1e-5."),
    head: str = typer.Option("softmax", "--head", help="softmax, sigmoid (two classes) or multilabel."),
    patience: int = typer.Option(3, "--patience", help="Stop after N epochs with no better val loss (0: never)."),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", help="Replace an existing model and curves file."),
) -> None:
    """Train a classifier on folders of images (transfer learning on a frozen pretrained base)."""
    from vidcam.jobs.train import HEADS, train_classifier

    _check_choice(head, tuple(HEADS), "--head")
    load_tensorflow()

    def show(event) -> None:
        if event.stage == "skip":
            _err(event.message)
        else:
            typer.echo(event.message)

    result = train_classifier(
        data_dir, output, base=base, epochs=epochs, batch_size=batch, img_size=img_size, val_split=val_split,
        seed=seed, flip=flip, fine_tune=fine_tune, head=head, patience=patience, overwrite=overwrite, progress=show,
    )
    if result.skipped:
        _err(f"{len(result.skipped)} files skipped")
        raise typer.Exit(EXIT_SKIPPED)


@app.command("evaluate")
@handle_errors
def evaluate_cmd(
    model: str = typer.Argument(..., help=MODEL_HELP),
    data_dir: Path = typer.Argument(..., help="val/<class>/ inside, or <class>/ folders."),
    report_dir: Path = typer.Option(..., "-o", "--output-dir", help="Folder for report.html, metrics.json, PNGs."),
    threshold: float = typer.Option(0.75, "--threshold", help="Withhold answers below this top probability."),
    val_split: float | None = typer.Option(None, "--val-split", help="Evaluate the share training held out."),
    seed: int = typer.Option(12345, "--seed", help="The training run's seed (with --val-split)."),
    batch: int = typer.Option(32, "--batch", help="Images per forward pass."),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", help="Write into a report folder that is not empty."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow .keras files with Lambda layers (runs their code)."),
    json_out: bool = typer.Option(False, "--json", help="Print metrics.json instead of the summary."),
) -> None:
    """Accuracy, per-class precision/recall, confusion matrix and the book's confidence grids, as an HTML report."""
    from vidcam.jobs.evaluate import evaluate_classifier

    load_tensorflow()
    r = evaluate_classifier(
        model, data_dir, report_dir, threshold=threshold, val_split=val_split, seed=seed, batch_size=batch,
        overwrite=overwrite, unsafe=unsafe, on_skip=lambda s: _err(f"skipped {s.path}: {s.reason}"),
    )
    if json_out:
        typer.echo(json.dumps(r.metrics))
    else:
        typer.echo(f"{r.images} images, accuracy {r.accuracy:.3f}")
        width = max(len(n) for n in r.per_class)
        for name, c in r.per_class.items():
            prec = "-" if c["precision"] is None else f"{c['precision']:.3f}"
            typer.echo(f"  {name.ljust(width)}  precision {prec}  recall {c['recall']:.3f}  ({c['support']} images)")
        acc = "-" if r.covered_accuracy is None else f"{r.covered_accuracy:.3f}"
        typer.echo(f"threshold {r.threshold:g}: answers {r.coverage * 100:.1f}% of images, accuracy {acc} on those")
        typer.echo(f"report: {r.report_dir / 'report.html'}")
    if r.skipped:
        _err(f"{len(r.skipped)} files skipped")
        raise typer.Exit(EXIT_SKIPPED)


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a `kill`, a CI timeout) unwinds like Ctrl-C: temporary outputs removed, ffmpeg children killed."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


class _Bar:
    """A tqdm progress bar on stderr (frames/s and ETA) driven by a library progress callback."""

    def __init__(self, desc: str, quiet: bool) -> None:
        self.desc, self.quiet, self.bar = desc, quiet, None

    def __call__(self, done: int, total: int | None) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=self.desc, unit="frame", file=sys.stderr,
                            dynamic_ncols=True, smoothing=0.1)
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# The backslash keeps Rich (typer's help renderer) from reading [cluster] as markup.
ENGINE_HELP = "local (this process) or ray (a Ray cluster; needs pip install 'vidcam\\[cluster]')."
ADDRESS_HELP = "Ray cluster: auto, HOST:6379 or ray://HOST:10001 (default: start a local Ray instance)."


def _check_engine(engine: str, address: str | None) -> None:
    from vidcam.cluster import ENGINES

    _check_choice(engine, ENGINES, "--engine")
    if address is not None and engine != "ray":
        _err("--address is the Ray cluster to use: it needs --engine ray")
        raise typer.Exit(EXIT_USAGE)


def _video_inputs(inputs: list[str], output: Path | None, as_folder: bool = False) -> tuple[list[Path], bool]:
    """The input videos (globs expanded) and whether this is a many-video run (-o is then a folder)."""
    from vidcam.jobs.image import expand_paths
    from vidcam.jobs.video import VIDEO_SUFFIXES

    files = expand_paths(inputs)
    globbed = any(any(ch in s for ch in "*?[") and not Path(s).exists() for s in inputs)
    many = len(files) > 1 or globbed or as_folder or (output is not None and output.is_dir())
    if many and output is not None and not output.exists() and output.suffix.lower() in VIDEO_SUFFIXES:
        _err(f"with many inputs -o is a folder for their heatmap videos, not a video file ({output})")
        raise typer.Exit(EXIT_USAGE)
    return files, many


class _VideoBars:
    """One progress bar per video of a local many-video run (the videos run one after another, in order)."""

    def __init__(self, files: list[Path], quiet: bool) -> None:
        self.files, self.quiet, self.index, self.bar = files, quiet, 0, None

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            name = self.files[min(self.index, len(self.files) - 1)].name
            self.bar = _Bar(f"[{self.index + 1}/{len(self.files)}] {name}", self.quiet)
        self.bar(done, total)

    def next(self) -> None:
        self.close()
        self.index += 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _videos_many(files: list[Path], output: Path | None, many: bool, *, engine: str, address: str | None,
                 retries: int | None, labels_format: str | None, labels_out: Path | None, quiet: bool,
                 json_out: bool, **options) -> None:
    """Many videos (or one on Ray): a line per video as it finishes, a summary, exit 3 when some were skipped."""
    from vidcam.cluster import process_video_pairs, process_videos
    from vidcam.jobs.video import default_output

    bars = _VideoBars(files, quiet or json_out or engine != "local")

    def show(r) -> None:
        bars.next()
        if not r.error and getattr(r, "summary", None) is not None:
            _warn_damaged(r.summary)
        if json_out:
            typer.echo(json.dumps(r.as_dict()))
        if r.error:
            tries = f" after {r.attempts} attempts" if r.attempts > 1 else ""
            _err(f"skipped {r.input}{tries}: {r.error}")
        elif quiet and not json_out:
            typer.echo(r.output)
        elif not json_out:
            s = r.summary
            where = f" on {r.worker}" if engine == "ray" and r.worker else ""
            typer.echo(f"{r.input} -> {r.output}  ({s.frames} frames, {s.seconds:.1f} s{where})")
            if s.metrics is not None:
                from vidcam.cam.metrics import describe_summary

                typer.echo(f"  metrics: {describe_summary(s.metrics)}")

    common = dict(engine=engine, address=address, retries=retries, labels_format=labels_format, on_result=show,
                  progress=bars, **options)
    try:
        if many:
            report = process_videos(files, output if output is not None else Path("."), **common)
        else:
            src = files[0]
            report = process_video_pairs([(src, output or default_output(src), labels_out)], **common)
    finally:
        bars.close()
    done = [r for r in report.items if r.ok]
    frames = sum(r.summary.frames for r in done)
    if not quiet and not json_out and (many or report.failures):
        secs = max(report.seconds, 1e-9)
        how = f"ray, {report.workers} worker{'s' if report.workers > 1 else ''}" if engine == "ray" else "local"
        n = len(report.items)
        typer.echo(f"{n} video{'s' if n != 1 else ''}: {len(done)} done, {len(report.failures)} skipped ({how}); "
                   f"{frames} frames in {report.seconds:.1f} s: {frames / secs:.1f} frames/s, "
                   f"{len(done) / secs:.2f} videos/s")
    if report.failures:
        _err(f"{len(report.failures)} of {len(report.items)} videos skipped: "
             + ", ".join(r.input for r in report.failures[:5]) + (" ..." if len(report.failures) > 5 else ""))
        raise typer.Exit(report.exit_code)


@app.command("video")
@handle_errors
def video_cmd(
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT", help="Video files or globs (anything ffmpeg reads); many: -o is a folder."),
    output_arg: str | None = typer.Option(
        None, "-o", "--output", help="Heatmap video (.mp4, .m4v, .mov, .mkv); default ./<stem>_heatmap.mp4. "
        "With many inputs, or a name ending in /: the folder for <stem>_heatmap.mp4 files (default: .)."),
    model: str = typer.Option("efficientnet_lite0", "--model", "-m", help=MODEL_HELP),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file for a zoo model."),
    layer: str | None = typer.Option(None, "--layer", help="Grad-CAM layer (default: the model's last feature map)."),
    method: str = typer.Option("gradcam", "--method", help=METHOD_HELP),
    class_index: int | None = typer.Option(None, "--class", help="Explain this class id in every frame."),
    layout: str = typer.Option("overlay", "--layout", help="overlay or side-by-side (doubles the width)."),
    alpha: float = typer.Option(0.4, "--alpha", min=0.0, max=1.0, help="Heatmap opacity."),
    colormap: str = typer.Option("jet", "--colormap", help="jet, turbo, inferno, viridis, magma, plasma, hot."),
    fit: str = typer.Option("squash", "--fit", help="squash (whole frame, default) or crop (centre square)."),
    smooth: float = typer.Option(
        0.0, "--smooth", min=0.0, max=0.99, help="Temporal smoothing of the heatmaps, 0 (off) to 0.99."),
    start: str | None = typer.Option(None, "--start", help="Skip to this time: seconds or [HH:]MM:SS[.ms]."),
    duration: str | None = typer.Option(None, "--duration", "-t", help="Process this long: seconds or MM:SS."),
    labels_out: Path | None = typer.Option(
        None, "--labels-out", help="Per-frame top-k labels: FILE.csv or FILE.jsonl."),
    top_k: int = typer.Option(3, "--top", "-k", min=1, help="Labels per frame in --labels-out."),
    crf: int = typer.Option(20, "--crf", min=0, max=51, help="x264 quality: lower is better (18-23 typical)."),
    preset: str = typer.Option("superfast", "--preset", help="x264 preset, ultrafast ... veryslow."),
    batch: int = typer.Option(8, "--batch", min=1, help="Frames per engine call."),
    ffmpeg: str | None = typer.Option(None, "--ffmpeg", help="ffmpeg binary (default: $VIDCAM_FFMPEG or bundled)."),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", help="Replace existing output files."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow .keras files with Lambda layers (runs their code)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar; print only the output path."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    labels_format: str | None = typer.Option(
        None, "--labels", help="csv or jsonl: per-frame labels beside each output, <stem>_heatmap_labels.csv."),
    engine: str = typer.Option("local", "--engine", help=ENGINE_HELP),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    retries: int | None = typer.Option(
        None, "--retries", min=0, help="Extra attempts for a failed video (default: 2 with ray, 0 locally)."),
    metrics: bool = typer.Option(False, "--metrics", help="Measure each frame's heatmap faithfulness (slower)."),
    metrics_every: int = typer.Option(1, "--metrics-every", min=1, help="With --metrics: every N-th frame only."),
) -> None:
    """Make a Grad-CAM heatmap video: every frame, same rate, orientation and audio. Many videos: locally
    one after another, or on Ray with --engine ray."""
    from vidcam.cam.engine import METHODS
    from vidcam.jobs.video import PRESETS, parse_time, process_video
    from vidcam.media.render import COLORMAPS, LAYOUTS

    _check_choice(method, METHODS, "--method")
    _check_choice(layout, LAYOUTS, "--layout")
    _check_choice(colormap, COLORMAPS, "--colormap")
    _check_choice(fit, ("squash", "crop"), "--fit")
    _check_choice(preset, PRESETS, "--preset")
    _check_engine(engine, address)
    if labels_format is not None:
        _check_choice(labels_format, ("csv", "jsonl"), "--labels")
        if labels_out is not None:
            _err("give either --labels-out FILE (one video) or --labels csv|jsonl (a file beside each output)")
            raise typer.Exit(EXIT_USAGE)
    output = Path(output_arg) if output_arg is not None else None
    # A trailing slash says "a folder" even for one input (Path() would drop it).
    files, many = _video_inputs(inputs, output, as_folder=bool(output_arg) and output_arg.endswith(("/", os.sep)))
    if many or engine != "local" or labels_format is not None or retries:
        if labels_out is not None and many:
            _err("--labels-out names one file; with many inputs use --labels csv|jsonl (one file per video)")
            raise typer.Exit(EXIT_USAGE)
        _interrupt_on_sigterm()
        if engine == "local":  # with Ray, the workers load TensorFlow, not this process
            load_tensorflow()
        _videos_many(
            files, output, many, engine=engine, address=address, retries=retries, labels_format=labels_format,
            labels_out=labels_out, quiet=quiet, json_out=json_out, model=model, layer=layer, method=method,
            weights=weights, unsafe=unsafe, class_index=class_index, layout=layout, alpha=alpha, colormap=colormap,
            fit=fit, smooth=smooth, start=parse_time(start), duration=parse_time(duration), top_k=top_k, crf=crf,
            preset=preset, batch_size=batch, overwrite=overwrite, ffmpeg=ffmpeg, metrics=metrics,
            metrics_every=metrics_every,
        )
        return
    input_path = files[0]
    _interrupt_on_sigterm()
    load_tensorflow()
    bar = _Bar(input_path.name, quiet or json_out)
    try:
        s = process_video(
            input_path, output, model=model, layer=layer, method=method, weights=weights, unsafe=unsafe,
            class_index=class_index, layout=layout, alpha=alpha, colormap=colormap, fit=fit, smooth=smooth,
            start=parse_time(start), duration=parse_time(duration), labels_out=labels_out, top_k=top_k, crf=crf,
            preset=preset, batch_size=batch, overwrite=overwrite, ffmpeg=ffmpeg, progress=bar, metrics=metrics,
            metrics_every=metrics_every,
        )
    finally:
        bar.close()
    _warn_damaged(s)
    if json_out:
        typer.echo(json.dumps(s.as_dict()))
        return
    if quiet:
        typer.echo(s.output)
        return
    audio = {"copy": "audio copied", "aac": "audio re-encoded to AAC", "none": "no audio"}[s.audio]
    typer.echo(f"{s.input} -> {s.output}")
    typer.echo(f"  {s.frames} frames at {s.fps.numerator}/{s.fps.denominator} fps, {s.width}x{s.height}, {audio}; "
               f"{s.seconds:.1f} s ({s.frames_per_second:.1f} frames/s)")
    if s.top_labels:
        top = ", ".join(f"{name} ({n})" for name, n in s.top_labels[:3])
        typer.echo(f"  most explained: {top}")
    if s.metrics is not None:
        from vidcam.cam.metrics import describe_summary

        typer.echo(f"  metrics: {describe_summary(s.metrics)}")
    if s.labels_out:
        typer.echo(f"  labels -> {s.labels_out}")


@app.command("frames")
@handle_errors
def frames_cmd(
    directory: Path = typer.Argument(..., metavar="DIR", help="Folder of frames (JPEG, PNG, ...), natural order."),
    output_dir: Path | None = typer.Option(
        None, "-o", "--output-dir", help="Results folder; default <DIR>_results beside DIR."),
    model: str = typer.Option("efficientnet_lite0", "--model", "-m", help=MODEL_HELP),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file for a zoo model."),
    layer: str | None = typer.Option(None, "--layer", help="Grad-CAM layer (default: the model's last feature map)."),
    method: str = typer.Option("gradcam", "--method", help=METHOD_HELP),
    class_index: int | None = typer.Option(None, "--class", help="Explain this class id in every frame."),
    top_k: int = typer.Option(3, "--top", "-k", min=1, help="Labels per frame in the labels file."),
    layout: str = typer.Option("overlay", "--layout", help="overlay or side-by-side."),
    alpha: float = typer.Option(0.4, "--alpha", min=0.0, max=1.0, help="Heatmap opacity."),
    colormap: str = typer.Option("jet", "--colormap", help="jet, turbo, inferno, viridis, magma, plasma, hot."),
    fit: str = typer.Option("squash", "--fit", help="squash (whole frame, default) or crop (centre square)."),
    batch: int = typer.Option(8, "--batch", min=1, help="Frames per engine call."),
    json_lines: bool = typer.Option(False, "--json", help="Write labels.jsonl instead of labels.csv."),
    force: bool = typer.Option(False, "--force", help="Redo every frame, even those done by an earlier run."),
    to_video: Path | None = typer.Option(None, "--to-video", help="Also assemble the results into this video."),
    fps: str = typer.Option("25", "--fps", help="Frame rate of --to-video: 25, 29.97 or 30000/1001."),
    crf: int = typer.Option(20, "--crf", min=0, max=51, help="x264 quality of --to-video."),
    preset: str = typer.Option("superfast", "--preset", help="x264 preset of --to-video."),
    ffmpeg: str | None = typer.Option(None, "--ffmpeg", help="ffmpeg binary (default: $VIDCAM_FFMPEG or bundled)."),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", help="Replace an existing --to-video file."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow .keras files with Lambda layers (runs their code)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    labels_out: Path | None = typer.Option(
        None, "--labels-out", help="Also write the labels here: FILE.csv, FILE.jsonl or FILE.parquet."),
    engine: str = typer.Option("local", "--engine", help=ENGINE_HELP),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    metrics: bool = typer.Option(False, "--metrics", help="Measure each frame's heatmap faithfulness (slower)."),
) -> None:
    """Label every frame of a folder: result pictures, labels.csv, optionally a video. Resumable."""
    from vidcam.cam.engine import METHODS
    from vidcam.jobs.frames import label_frames, parse_rate
    from vidcam.jobs.video import PRESETS
    from vidcam.media.render import COLORMAPS, LAYOUTS

    _check_choice(method, METHODS, "--method")
    _check_choice(layout, LAYOUTS, "--layout")
    _check_choice(colormap, COLORMAPS, "--colormap")
    _check_choice(fit, ("squash", "crop"), "--fit")
    _check_choice(preset, PRESETS, "--preset")
    _check_engine(engine, address)
    if metrics and engine != "local":
        _err("--metrics runs with --engine local only for frame folders")
        raise typer.Exit(EXIT_USAGE)
    rate = parse_rate(fps)
    if labels_out is not None:
        from vidcam.cluster import LABEL_KINDS

        _check_choice(labels_out.suffix.lower(), tuple(LABEL_KINDS), "the --labels-out extension")
    _interrupt_on_sigterm()
    load_tensorflow()
    bar = _Bar(directory.name or str(directory), quiet)

    def skipped(name: str, reason: str) -> None:
        if bar.bar is not None:
            bar.bar.write(f"vidcam: error: skipped {name}: {reason}", file=sys.stderr)
        else:
            _err(f"skipped {name}: {reason}")

    options = dict(
        model=model, layer=layer, method=method, weights=weights, unsafe=unsafe, class_index=class_index,
        top_k=top_k, layout=layout, alpha=alpha, colormap=colormap, fit=fit, batch_size=batch,
        json_lines=json_lines, force=force, to_video=to_video, fps=rate, crf=crf, preset=preset,
        overwrite=overwrite, ffmpeg=ffmpeg, progress=bar, on_skip=skipped,
    )
    try:
        if engine == "ray":
            from vidcam.cluster import label_frames_ray

            s = label_frames_ray(directory, output_dir, address=address, labels_out=labels_out, **options)
        else:
            s = label_frames(directory, output_dir, metrics=metrics, **options)
            if labels_out is not None:
                from vidcam.cluster import frames_labels, write_labels

                write_labels(labels_out, frames_labels(s.output_dir), top_k)
    finally:
        bar.close()
    typer.echo(f"{s.total} frames: {s.processed} labelled, {s.reused} already done, {len(s.failed)} skipped "
               f"-> {s.output_dir}")
    typer.echo(f"  labels -> {s.labels}")
    if labels_out is not None:
        typer.echo(f"  labels -> {labels_out}")
    if s.video:
        typer.echo(f"  video -> {s.video}")
    if s.metrics is not None:
        from vidcam.cam.metrics import describe_summary

        typer.echo(f"  metrics: {describe_summary(s.metrics)}")
    if s.failed:
        _err(f"{len(s.failed)} of {s.total} frames skipped: {', '.join(name for name, _ in s.failed[:5])}"
             + (" ..." if len(s.failed) > 5 else ""))
        raise typer.Exit(EXIT_FAILURE if len(s.failed) == s.total else EXIT_SKIPPED)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="vidcam")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
