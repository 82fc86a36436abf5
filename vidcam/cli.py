"""vidcam's command line: the only module that imports typer.

Every command is a thin layer over a library function: it turns its options into the library's option objects
(:class:`~vidcam.cam.spec.ModelSpec`, :class:`~vidcam.media.render.RenderOptions`, ...), runs the job and
prints the result. Every option is declared once, as an ``Annotated`` alias below, and shared by the commands
that take it; choices are enums built from the library's registries, so ``--help`` lists them and a bad value
is a usage error before anything heavy loads.

Errors vidcam anticipates (:class:`VidcamError`) print one line on stderr and exit with their code; anything
unexpected also prints one line (set ``VIDCAM_DEBUG=1`` for the traceback). Exit codes: 0 success, 1 failure,
2 usage error, 3 finished with some inputs skipped. What a user supplied (file names, class names, the
messages that quote them) is printed with control characters escaped (:func:`_safe`); ``--json`` output is
exact JSON.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
import json
import os
import re
import sys
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, get_args

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

# The option objects and registries are light (no TensorFlow, no Ray): their defaults and choices are the CLI's.
from vidcam.cam.methods import REGISTRY, CamMethod, method_names  # noqa: E402
from vidcam.cam.spec import ModelSpec  # noqa: E402
from vidcam.cluster import ENGINES  # noqa: E402
from vidcam.errors import (  # noqa: E402
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_SKIPPED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    VidcamError,
    VidcamWarning,
)
from vidcam.jobs.compare import DEFAULT_METHODS, CompareOptions, method_title  # noqa: E402
from vidcam.jobs.evaluate import EvalOptions  # noqa: E402
from vidcam.jobs.frames import FramesOptions  # noqa: E402
from vidcam.jobs.image import ImageOptions  # noqa: E402
from vidcam.jobs.train import HEADS, TrainOptions  # noqa: E402
from vidcam.jobs.video import VideoOptions  # noqa: E402
from vidcam.media.ffmpeg_cmd import PRESETS, EncodeOptions  # noqa: E402
from vidcam.media.render import COLORMAPS, FITS, LAYOUTS, RenderOptions  # noqa: E402
from vidcam.media.source import planar_matrix  # noqa: E402
from vidcam.models.zoo import DEFAULT_MODEL  # noqa: E402

# -- printing what users supplied ------------------------------------------------------------------------------

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Bidirectional overrides and isolates reorder what a terminal shows ("Trojan Source"): shown as escapes too.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(ch: str) -> str:
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:  # a byte of a file name that is not UTF-8 (Python's surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
        return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"
    return ch


def _safe(text: object) -> str:
    """``text`` for a terminal: control characters (escape sequences, newlines, bidi overrides, undecodable
    bytes of a file name) shown as ``\\x1b``-style escapes; everything printable, any script, kept as it is."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(_escape(ch) for ch in s)


def _say(text: object = "") -> None:
    """One line of human-readable output on stdout (escaped: it may quote names users chose)."""
    typer.echo(_safe(text))


def _err(msg: object) -> None:
    typer.echo(f"vidcam: error: {_safe(msg)}", err=True)


def _warn(msg: object) -> None:
    typer.echo(f"vidcam: warning: {_safe(msg)}", err=True)


def _usage_error(msg: str) -> typer.Exit:
    """Print a usage error (options that do not fit together) and return the exit to raise."""
    _err(msg)
    return typer.Exit(EXIT_USAGE)


# -- usage errors as one line ----------------------------------------------------------------------------------


def _choices_of(param) -> tuple[str, ...] | None:
    """The choices of an option whose type is one of the enums below (or a click Choice), else None."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    for t in (annotation, *get_args(annotation)):
        if isinstance(t, type) and issubclass(t, Enum):
            return tuple(str(m.value) for m in t)
    choices = getattr(getattr(param, "type", None), "choices", None)
    return tuple(str(c) for c in choices) if choices else None


def _choice_message(e: Exception) -> str | None:
    """``--engine must be one of local, ray; got 'spark'`` for a bad choice, else None."""
    param = getattr(e, "param", None)
    if param is None or not getattr(param, "opts", None):
        return None
    choices = _choices_of(param)
    found = re.search(r"""(?:Value error, |: )(?P<v>'.*'|".*") is not one of""", e.format_message(), re.S)
    if not choices or not found:
        return None
    try:  # the value as typer quoted it (repr)
        value = str(ast.literal_eval(found.group("v")))
    except (ValueError, SyntaxError):
        value = found.group("v")[1:-1]
    name = max(param.opts, key=len)
    return f"{name} must be one of {', '.join(choices)}; got {value!r}"


def _usage_message(e: Exception) -> str:
    msg = _choice_message(e) if isinstance(e, _click_errors.BadParameter) else None
    if msg is None:
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


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"vidcam {version('vidcam')}")
        except PackageNotFoundError:  # running from a checkout that is not installed
            from vidcam.version import __version__

            typer.echo(f"vidcam {__version__}")
        raise typer.Exit()


def _one_line(e: BaseException) -> str:
    """A VidcamError's message is one line by design, so any newline in it comes from a name (escaped later);
    other exceptions (from other libraries) may carry a whole report: their first line only."""
    text = str(e).strip()
    if isinstance(e, VidcamError):
        return text or type(e).__name__
    return text.splitlines()[0] if text else ""


def _run_showing_warnings(fn: Callable, args, kwargs):
    """Run a command with the library's warnings (:class:`VidcamWarning`, always shown, even where warnings are
    errors) as one ``vidcam: warning:`` line each; other libraries' warnings are shown as Python shows them."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, VidcamWarning):
            _warn(message)
        else:
            original(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", VidcamWarning)
        warnings.showwarning = show
        return fn(*args, **kwargs)


def _stopped(e: KeyboardInterrupt) -> None:
    """Ctrl-C or SIGTERM: one line, exit 130 or 143."""
    terminated = isinstance(e, _Terminated)
    _err("terminated" if terminated else "interrupted")
    raise typer.Exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None


def _interrupt_behind(e: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM an exception stands for, if any: a signal handled while C code was calling back into
    Python (numpy converting an array, say) comes out as ``SystemError: ... returned a result with an exception
    set``, caused by the interrupt."""
    seen = 0
    while e is not None and seen < 16:
        if isinstance(e, KeyboardInterrupt):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def handle_errors(fn: Callable) -> Callable:
    """Turn library exceptions into one line on stderr and the documented exit code; library warnings into one
    ``vidcam: warning:`` line each."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with _sigterm_interrupts():
                return _run_showing_warnings(fn, args, kwargs)
        except typer.Exit:
            raise
        except VidcamError as e:
            _err(_one_line(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:
            _stopped(e)
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
        except Exception as e:  # noqa: BLE001 - the last line of defence against tracebacks
            interrupt = _interrupt_behind(e)
            if interrupt is not None:
                _stopped(interrupt)
            from vidcam.memory import describe, is_out_of_memory

            if is_out_of_memory(e):  # MemoryError, TensorFlow's ResourceExhaustedError, an unmappable library...
                _err(describe(e))
                raise typer.Exit(EXIT_FAILURE) from None
            if os.environ.get("VIDCAM_DEBUG"):
                raise
            _err(f"unexpected {type(e).__name__}: {_one_line(e)} (set VIDCAM_DEBUG=1 for details)")
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper


def load_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up logging (which ignores TF_CPP_MIN_LOG_LEVEL) kept off stderr."""
    if "tensorflow" in sys.modules:
        return
    from vidcam.memory import check_headroom, economize
    from vidcam.quiet import muted_stderr
    from vidcam.tfimport import keras_deferred, wait_runtime_work

    check_headroom()  # under `ulimit -v`: refuse now rather than abort inside TensorFlow's C++ start-up
    economize()
    # No garbage collection while TensorFlow's modules load (each full collection walks every object made so
    # far, and importing makes hundreds of thousands that live until exit), then those objects are frozen out of
    # later collections: `import tensorflow` 6.3-7.0 s instead of 6.7-8.1 s here.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with muted_stderr(), keras_deferred():  # Keras loads when a model is built, not with TensorFlow
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # device discovery logs too
            wait_runtime_work()  # what started while TensorFlow imported (a step warmed): its runtime logs too
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so that every clean-up runs for it too."""


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Inside the block SIGTERM (a `kill`, a CI timeout) unwinds like Ctrl-C: temporary outputs removed, ffmpeg
    children killed, then exit 143. The previous handler comes back after (the CLI may run inside a test)."""
    import signal

    def handler(signum, frame):
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- choices, from the library's registries --------------------------------------------------------------------


def _choice_enum(name: str, values: Iterable[str]) -> type[Enum]:
    return Enum(name, {v: v for v in values}, type=str)


Method = _choice_enum("Method", method_names())
Layout = _choice_enum("Layout", LAYOUTS)
Colormap = _choice_enum("Colormap", COLORMAPS)
Fit = _choice_enum("Fit", FITS)
Preset = _choice_enum("Preset", PRESETS)
Engine = _choice_enum("Engine", ENGINES)
LabelsFormat = _choice_enum("LabelsFormat", ("csv", "jsonl"))  # per-video labels (process_video_pairs)
Head = _choice_enum("Head", HEADS)

# The library's defaults, read from its option objects (never repeated here).
_SPEC, _RENDER, _ENCODE = ModelSpec(), RenderOptions(), EncodeOptions()
_VIDEO, _FRAMES, _IMAGE, _COMPARE = VideoOptions(), FramesOptions(), ImageOptions(), CompareOptions()
_TRAIN, _EVAL = TrainOptions(), EvalOptions()
DEFAULT_METHOD = Method(_SPEC.method)


def _class_id(value: int | None) -> int | None:
    """--class: a class id (0 up to the model's classes; a 20-digit number is a typo, not an overflow)."""
    if value is not None and not 0 <= value < 2**31:
        raise typer.BadParameter(f"a class id is 0 or more and below the model's number of classes, got {value}")
    return value


def _opacity(value: float) -> float:
    """--alpha: a number within [0, 1] (nan and inf are not)."""
    if not 0.0 <= value <= 1.0:  # False for nan too
        raise typer.BadParameter(f"must be a number within [0, 1], got {value}")
    return value


def _listed(values: Iterable[str]) -> str:
    return ", ".join(values)


def _value(choice: Enum | None) -> str | None:
    return None if choice is None else str(choice.value)


# -- every option, declared once -------------------------------------------------------------------------------

MODEL_HELP = "Zoo name (see `vidcam models`) or path of a .keras classifier."
# The backslash keeps Rich (typer's help renderer) from reading [cluster] as markup.
ENGINE_HELP = (f"Where the work runs: {_listed(ENGINES)}. local: this process; ray: a Ray cluster "
               "(needs pip install 'vidcam\\[cluster]').")
ADDRESS_HELP = "Ray cluster: auto, HOST:6379 or ray://HOST:10001 (default: start a local Ray instance)."
FIT_HELP = (f"How frames meet the model's square input: {_listed(FITS)}. squash: the whole frame; crop: the "
            "centre square (ImageNet protocol). Images default to the model's own.")

VersionOpt = Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
ModelArg = Annotated[str, typer.Argument(help=MODEL_HELP)]
WeightsOpt = Annotated[Path | None, typer.Option("--weights", help="Weights file for a zoo model.")]
LayerOpt = Annotated[str | None, typer.Option(
    "--layer", help="CAM layer (default: the model's last feature map); several as a,b,c: their maps fused at the "
    "finest one's resolution (each normalised, element-wise max).")]
MethodOpt = Annotated[Method, typer.Option(
    "--method", metavar="METHOD", help=f"CAM method: {_listed(method_names())} (see `vidcam methods`).")]
MethodsOpt = Annotated[str, typer.Option(
    "--methods", metavar="M1,M2,...",
    help=f"Comma-separated methods, in panel order, from: {_listed(method_names())}.")]
ClassOpt = Annotated[int | None, typer.Option(
    "--class", callback=_class_id, help="Explain this class id (in every image or frame) instead of each one's top-1.")]
TopOpt = Annotated[int, typer.Option("--top", "-k", min=1, help="How many classes to print or write per input.")]
LayoutOpt = Annotated[Layout, typer.Option(
    "--layout", metavar="LAYOUT", help=f"{_listed(LAYOUTS)} (side-by-side: original | heatmap, twice as wide).")]
AlphaOpt = Annotated[float, typer.Option("--alpha", callback=_opacity, help="Heatmap opacity, 0 to 1.")]
ColormapOpt = Annotated[Colormap, typer.Option(
    "--colormap", metavar="COLORMAP", help=f"Heatmap colours: {_listed(COLORMAPS)}.")]
FitOpt = Annotated[Fit | None, typer.Option("--fit", metavar="FIT", help=FIT_HELP)]
BatchOpt = Annotated[int, typer.Option("--batch", min=1, help="Images or frames per engine call.")]
NoOutputOpt = Annotated[bool, typer.Option("--no-output", help="Print the results only; write no pictures.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", "-y", help="Replace existing output files.")]
UnsafeOpt = Annotated[bool, typer.Option(
    "--unsafe", help="Allow .keras files with Lambda layers (runs their code).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON Lines: one JSON object per result.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; print only the output paths.")]
MetricsOpt = Annotated[bool, typer.Option("--metrics", help="Also measure each heatmap's faithfulness (slower).")]
MetricsEveryOpt = Annotated[int, typer.Option(
    "--metrics-every", min=1, help="With --metrics: every N-th frame only.")]
StepsOpt = Annotated[int, typer.Option("--steps", min=1, max=256, help="Deletion/insertion curve steps.")]
SmoothOpt = Annotated[float, typer.Option(
    "--smooth", min=0.0, max=0.99, help="Temporal smoothing of the heatmaps, 0 (off) to 0.99.")]
StartOpt = Annotated[str | None, typer.Option(
    "--start", help="Skip to this time: seconds or [HH:]MM:SS[.ms].")]
DurationOpt = Annotated[str | None, typer.Option(
    "--duration", "-t", help="Process this long: seconds or MM:SS.")]
LabelsOutOpt = Annotated[Path | None, typer.Option(
    "--labels-out", help="Per-frame top-k labels: FILE.csv or FILE.jsonl (frame folders: also FILE.parquet).")]
LabelsFormatOpt = Annotated[LabelsFormat | None, typer.Option(
    "--labels", metavar="FORMAT",
    help="csv or jsonl: per-frame labels beside each output video, <stem>_heatmap_labels.csv.")]
ReportOpt = Annotated[Path | None, typer.Option(
    "--report", metavar="PAGE.html", help="Also write a report page (the video above its timeline, thumbnails at "
    "the label changes; self-contained) and its timeline as PAGE.png.")]
FramesReportOpt = Annotated[Path | None, typer.Option(
    "--report", metavar="PAGE.html", help="Also write a report page (each frame's labels over the folder's frames, "
    "thumbnails at the label changes, the result pictures by relative links; self-contained) and PAGE.png.")]
CrfOpt = Annotated[int, typer.Option("--crf", min=0, max=51, help="x264 quality: lower is better (18-23 typical).")]
PresetOpt = Annotated[Preset, typer.Option(
    "--preset", metavar="PRESET", help=f"x264 preset: {_listed(PRESETS)}.")]
FfmpegOpt = Annotated[str | None, typer.Option(
    "--ffmpeg", help="ffmpeg binary (default: $VIDCAM_FFMPEG or bundled).")]
EngineOpt = Annotated[Engine, typer.Option("--engine", metavar="ENGINE", help=ENGINE_HELP)]
AddressOpt = Annotated[str | None, typer.Option("--address", help=ADDRESS_HELP)]
RetriesOpt = Annotated[int | None, typer.Option(
    "--retries", min=0, help="Extra attempts for a failed video (default: 2 with ray, 0 locally).")]
ImagesArg = Annotated[list[str], typer.Argument(help="Image files or globs (JPEG, PNG, BMP, WebP, TIFF, GIF).")]
PicturesDirOpt = Annotated[Path, typer.Option(
    "-o", "--output-dir", help="Folder for the pictures (<stem>_output.jpg, <stem>_compare.jpg).")]
VideosArg = Annotated[list[str], typer.Argument(
    metavar="INPUT", help="Video files or globs (anything ffmpeg reads); many: -o is a folder.")]
VideoOutputOpt = Annotated[str | None, typer.Option(
    "-o", "--output", help="Heatmap video (.mp4, .m4v, .mov, .mkv); default ./<stem>_heatmap.mp4. "
    "With many inputs, or a name ending in /: the folder for <stem>_heatmap.mp4 files (default: .).")]
FramesArg = Annotated[Path, typer.Argument(metavar="DIR", help="Folder of frames (JPEG, PNG, ...), natural order.")]
FramesOutOpt = Annotated[Path | None, typer.Option(
    "-o", "--output-dir", help="Results folder; default <DIR>_results beside DIR.")]
LabelsJsonOpt = Annotated[bool, typer.Option("--json", help="Write labels.jsonl instead of labels.csv.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo every frame, even those done by an earlier run.")]
ToVideoOpt = Annotated[Path | None, typer.Option("--to-video", help="Also assemble the results into this video.")]
FpsOpt = Annotated[str, typer.Option("--fps", help="Frame rate of --to-video: 25, 29.97 or 30000/1001.")]
DataDirArg = Annotated[Path, typer.Argument(
    help="train/<class>/ and val/<class>/ inside (or <class>/ folders; evaluate: val/<class>/).")]
ModelOutOpt = Annotated[Path, typer.Option(
    "-o", "--output", help="The .keras model to write (curves: <stem>_curves.png).")]
BaseOpt = Annotated[str, typer.Option("--base", help="Zoo backbone, used without its top and frozen.")]
EpochsOpt = Annotated[int, typer.Option("--epochs", help="Epochs (per phase).")]
ImgSizeOpt = Annotated[int | None, typer.Option("--img-size", help="Square input size (default: the base's).")]
ValSplitOpt = Annotated[float | None, typer.Option(
    "--val-split", help="The share of each class folder held out for validation.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for shuffling, the split, augmentation and weights.")]
FlipOpt = Annotated[bool, typer.Option("--flip", help="Also augment with random horizontal flips.")]
FineTuneOpt = Annotated[int, typer.Option("--fine-tune", help="Then unfreeze the top N base layers at lr 1e-5.")]
HeadOpt = Annotated[Head, typer.Option(
    "--head", metavar="HEAD", help=f"{_listed(HEADS)} (sigmoid: two classes; multilabel: independent yes/no).")]
PatienceOpt = Annotated[int, typer.Option(
    "--patience", help="Stop after N epochs with no better val loss (0: never).")]
ReportDirOpt = Annotated[Path, typer.Option(
    "-o", "--output-dir", help="Folder for report.html, metrics.json, PNGs.")]
ThresholdOpt = Annotated[float, typer.Option("--threshold", help="Withhold answers below this top probability.")]
FilesArg = Annotated[list[str], typer.Argument(metavar="FILE", help="Video files or globs.")]
GROUP_HELP = ("Group the classes (repeatable): a WordNet synset name or id (dog, domestic_cat, n02084071; see "
              "`vidcam groups`), class ids (281-285, 0+1), LABEL=MEMBERS (cat=domestic_cat, pets=dog+domestic_cat). "
              "The classes become the groups and other; a group's probability is its members' sum.")
GroupOpt = Annotated[list[str] | None, typer.Option("--group", metavar="GROUP", help=GROUP_HELP)]
GroupsOpt = Annotated[str | None, typer.Option(
    "--groups", metavar="G1,G2,...", help="Several groups at once, comma-separated (as --group each).")]
SearchArg = Annotated[str | None, typer.Argument(help="Part of a synset name, or an id (n02084071).")]
MembersOpt = Annotated[bool, typer.Option("--members", help="Also list each synset's classes (id and name).")]


@app.callback()
def _main(version: VersionOpt = False) -> None:
    """See what an image classifier looks at: Grad-CAM heatmaps for videos, images and frame folders."""


# -- shared pieces -----------------------------------------------------------------------------------------------


def _groups(group: list[str] | None, groups: str | None) -> tuple[str, ...]:
    """--group (repeatable) and --groups a,b,c: the group specs, in the order given."""
    return (*(group or ()), *([groups] if groups is not None else ()))


def _spec(model: str, layer: str | None, method: Enum, weights: Path | None, unsafe: bool,
          groups: tuple[str, ...] = ()) -> ModelSpec:
    return ModelSpec(model, layer, _value(method), weights, unsafe, groups)


def _render(layout: Enum, alpha: float, colormap: Enum, fit: Enum) -> RenderOptions:
    return RenderOptions(_value(layout), alpha, _value(colormap), _value(fit))


def _check_address(engine: Enum, address: str | None) -> None:
    if address is not None and engine.value != "ray":
        raise _usage_error("--address is the Ray cluster to use: it needs --engine ray")


def _finish_batch(failed: int, total: int, noun: str) -> None:
    """The batch exit codes: 1 when every input failed, 3 (with a summary line) when some were skipped."""
    if not failed:
        return
    if failed == total:
        raise typer.Exit(EXIT_FAILURE)
    _err(f"{failed} of {total} {noun} skipped")
    raise typer.Exit(EXIT_SKIPPED)


def _table(head: list[str], rows: list[list[str]]) -> None:
    """Aligned columns (cells escaped first, so the widths are what the terminal shows)."""
    cells = [[_safe(c) for c in row] for row in [head, *rows]]
    widths = [max(len(c) for c in col) for col in zip(*cells)]
    for row in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _describe_metrics(summary: dict | None) -> None:
    if summary is not None:
        from vidcam.cam.metrics import describe_summary

        _say(f"  metrics: {describe_summary(summary)}")


class _Stderr:
    """stderr as a bar writes it, remembering whether its last line is unfinished (a bar drawn, no newline yet)."""

    def __init__(self) -> None:
        self.open_line = False

    def write(self, s: str) -> int:
        if s:
            self.open_line = not s.endswith("\n")
        return sys.stderr.write(s)

    def __getattr__(self, name):  # flush, fileno (the terminal's width), encoding, ...
        return getattr(sys.stderr, name)


class _Bar:
    """A tqdm progress bar on stderr (frames/s and ETA) driven by a library progress callback."""

    def __init__(self, desc: str, quiet: bool) -> None:
        self.desc, self.quiet, self.bar = _safe(desc), quiet, None
        self._out = _Stderr()

    def __call__(self, done: int, total: int | None) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=self.desc, unit="frame", file=self._out,
                            dynamic_ncols=True, smoothing=0.1)
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def error(self, msg: str) -> None:
        """An error line that does not tear the bar."""
        if self.bar is not None:
            self.bar.write(f"vidcam: error: {_safe(msg)}", file=sys.stderr)
        else:
            _err(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self._out.open_line:  # a bar drawn by a constructor that a signal interrupted (no bar to close)
            self._out.write("\n")


# -- models, methods, info: no TensorFlow ----------------------------------------------------------------------


@app.command("models")
@handle_errors
def models_cmd(json_out: JsonOpt = False) -> None:
    """List the model zoo: input size, size, parameters, ImageNet top-1/top-5, and whether weights are here."""
    from vidcam.models.zoo import zoo_table

    rows = zoo_table()
    if json_out:
        for r in rows:
            typer.echo(json.dumps(r))
        return
    head = ["model", "input", "size", "parameters", "top-1", "top-5", "weights"]
    _table(head, [
        [str(r["name"]), str(r["input"]), f"{r['size_mb']:g} MB", f"{r['parameters']:,}",
         f"{r['top1']:.3f}" if r["top1"] else "-", f"{r['top5']:.3f}" if r["top5"] else "-", str(r["weights"])]
        for r in rows
    ])
    for r in rows:
        if "groups" in r:  # a ready-made grouping: say which classes each group holds
            _say()
            _say(f"{r['name']}: {r['base']} with its classes grouped: {r['groups']}")


def _forward_passes(cls: type[CamMethod]) -> tuple[int, str]:
    """Forward passes per frame: one (with its backward pass for gradient methods), plus the extra passes of a
    method that computes its map after the step (Score-CAM: one per channel it keeps; Ablation-CAM: the head)."""
    return cls().forward_passes()


def _measured_cells(row: dict | None, photo: str) -> list[str]:
    """cost, the two sanity verdicts (with the worst correlation) and deletion/insertion AUC on ``photo``."""
    if row is None:
        return ["-"] * 5
    rnd, cls, m = row["randomisation"], row["class_sensitivity"], row["photos"][photo]
    worst = [max(v for k, v in check.items() if k != "pass") for check in (rnd, cls)]
    return [f"{row['cost']:.2f}x", *(f"{'pass' if c['pass'] else 'fail'} {w:.2f}" for c, w in zip((rnd, cls), worst)),
            f"{m['deletion_auc']:.3f}", f"{m['insertion_auc']:.3f}"]


@app.command("methods")
@handle_errors
def methods_cmd(json_out: JsonOpt = False) -> None:
    """List the CAM methods: name (for --method), title, whether it needs gradients, forward passes per frame,
    and what scripts/sanity_report.py measured on the default model (cost, sanity checks, deletion/insertion)."""
    import textwrap

    from vidcam.cam.methods import measured_table

    table = measured_table() or {"methods": {}, "photos": {}}
    measured = table["methods"]
    photo = "dog.jpg" if "dog.jpg" in table["photos"] else next(iter(table["photos"]), "")
    rows = []
    for name in method_names():
        cls = REGISTRY[name]
        passes, text = _forward_passes(cls)
        if json_out:
            typer.echo(json.dumps({"name": name, "title": method_title(name), "uses_gradients": cls.uses_gradients,
                                   "forward_passes": passes, "default": name == DEFAULT_METHOD.value,
                                   "measured": measured.get(name)}))
        rows.append([name + (" (default)" if name == DEFAULT_METHOD.value else ""), method_title(name),
                     "yes" if cls.uses_gradients else "no", text, *_measured_cells(measured.get(name), photo)])
    if json_out:
        return
    _table(["method", "title", "gradients", "forward passes", "cost", "randomisation", "class", "deletion",
            "insertion"], rows)
    if measured:
        info = table["photos"][photo]
        note = (f"Measured by scripts/sanity_report.py on {table['model']} ({table['machine']}): cost per frame "
                f"against Grad-CAM (batch {table['batch']}, warm); Spearman of the map against the map after "
                f"re-initialising the top layers (randomisation) and against other classes' maps (class), the "
                f"worse of two, pass below {table['pass_below']}; deletion (low is good) and insertion (high) AUC "
                f"on {photo} ({info['class']}, {info['probability']:.3f}). See README, \"Which method?\".")
        typer.echo("\n" + textwrap.fill(note, 116))


@app.command("groups")
@handle_errors
def groups_cmd(search: SearchArg = None, members: MembersOpt = False, json_out: JsonOpt = False) -> None:
    """List the WordNet synsets that group ImageNet classes (for --group), most classes first.

    SEARCH: part of a name (dog lists dog, hunting_dog, hotdog, ...) or an id; each row: the id, how many
    classes it holds, its names and its definition."""
    from vidcam.models.groups import describe_members, find_synsets
    from vidcam.models.zoo import imagenet_class_names

    found = find_synsets(search)
    names = imagenet_class_names()[0]
    if json_out:
        for s in found:
            typer.echo(json.dumps({"id": s.id, "names": list(s.lemmas), "classes": len(s.classes), "gloss": s.gloss,
                                   **({"members": list(s.classes)} if members else {})}))
        return
    if not found:
        raise VidcamError(f"no WordNet synset with ImageNet classes matches {search!r}: try a shorter part of a name")
    _table(["synset", "classes", "names", "definition"],
           [[s.id, str(len(s.classes)), ", ".join(s.lemmas[:4]), s.gloss] for s in found])
    if members:
        for s in found:
            _say()
            _say(f"{s.id} {s.name}: {describe_members(s.classes, names, limit=len(s.classes))}")


_MATRIX_NAMES = {"bt709": "BT.709", "smpte170m": "BT.601", "bt470bg": "BT.601", "bt2020nc": "BT.2020",
                 "bt2020c": "BT.2020 (constant luminance)", "smpte240m": "SMPTE 240M", "fcc": "FCC"}


def _info_lines(info) -> list[str]:
    """What ``vidcam info`` prints for one video (a :class:`~vidcam.media.probe.VideoInfo`)."""
    demuxers = info.container.split(",")
    suffix = Path(info.path).suffix.lower().lstrip(".")
    extras = [f"rotation {info.rotation}"] if info.rotation else []
    if info.sar != 1:
        extras.append(f"SAR {info.sar.numerator}:{info.sar.denominator}")
    if info.interlaced:
        extras.append("interlaced, deinterlaced")
    size = f"{info.width}x{info.height}" + (f" ({', '.join(extras)})" if extras else "")
    rate = (f"variable rate (avg {float(info.fps):.2f} fps)" if info.vfr
            else f"{info.fps.numerator}/{info.fps.denominator} fps (constant)")
    lines = [f"{info.path}: {suffix if suffix in demuxers else demuxers[0]} {info.video_codec} {size}, {rate}, "
             f"{info.frames} frames, {info.duration:.3f} s from {info.start:.3f} s"]
    c = info.colour
    tags = [f"{k} {v}" for k, v in (("matrix", c.matrix), ("range", c.range), ("primaries", c.primaries),
                                    ("transfer", c.transfer)) if v]
    matrix = c.decode_matrix(info.width, info.height)
    dynamic = f"HDR {c.hdr}, tone-mapped to SDR BT.709" if c.hdr else "SDR"
    planar = planar_matrix(info)
    path = (f"the video job keeps it Y'CbCr 4:2:0 ({planar}) from decoder to encoder" if planar else
            "the video job draws it in RGB (output BT.601)")
    lines.append(f"  colour: {c.pix_fmt or 'pixel format unknown'}, {', '.join(tags) or 'untagged'} -> decoded as "
                 f"{_MATRIX_NAMES.get(matrix, matrix)} ({matrix}), {dynamic}; {path}")
    for a in info.audio:
        desc = " ".join(x for x in (a.codec, f"{a.sample_rate} Hz" if a.sample_rate else "", a.channels or "") if x)
        span = f", {a.start:.3f} to {a.end:.3f} s" if a.start is not None and a.end is not None else ""
        lines.append(f"  audio: {desc}{span}")
    if not info.audio:
        lines.append("  audio: none")
    if info.damaged:
        lines.append(f"  damaged: {info.damaged} (vidcam keeps the frames that decode)")
    return lines


def _expand_each(patterns: list[str]) -> Iterable[Path | VidcamError]:
    """Each pattern's files (globs expanded), or the error that pattern gave (a glob that matches nothing)."""
    from vidcam.jobs.image import expand_paths

    for pattern in patterns:
        try:
            yield from expand_paths([pattern])
        except VidcamError as e:
            yield e


@app.command("info")
@handle_errors
def info_cmd(files: FilesArg, json_out: JsonOpt = False, ffmpeg: FfmpegOpt = None) -> None:
    """Show what vidcam sees in each video: rate, frames, timing, colours, audio.

    One block per file: container, codec, displayed size (rotation, pixel aspect, interlacing), the rate
    (constant or variable), frames, duration and when the picture starts, the colour tags and how vidcam
    decodes them (HDR is tone-mapped), each audio track's span, and damage ffmpeg reports. Reads no model."""
    from vidcam.media.probe import probe

    failed = total = 0
    for path in _expand_each(files):
        total += 1
        try:
            if isinstance(path, VidcamError):
                raise path
            info = probe(path, ffmpeg=ffmpeg)
        except VidcamError as e:
            failed += 1
            _err(_one_line(e))
            continue
        if json_out:
            typer.echo(json.dumps(info.as_dict()))
        else:
            for line in _info_lines(info):
                _say(line)
    _finish_batch(failed, total, "files")


# -- images ------------------------------------------------------------------------------------------------------


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
                _say(f"  -> {r.output}")
        if r.error:
            _err(f"{r.path}: {r.error}")

    def finish(self, total: int) -> None:
        _finish_batch(self.failed, total, "images")


def _image_describer(engine) -> Callable:
    def describe(r) -> None:
        _say(r.path)
        labels = [_safe(p.label) for p in r.predictions]
        width = max(map(len, labels))
        for i, (label, p) in enumerate(zip(labels, r.predictions), 1):
            typer.echo(f"  {i}. {label.ljust(width)}  {p.probability:.3f}")
        if r.metrics is not None:
            _say(f"  metrics ({engine.classifier.class_names[r.metrics.class_id]}): {r.metrics.describe()}")

    return describe


@app.command("image")
@handle_errors
def image_cmd(
    paths: ImagesArg,
    output_dir: PicturesDirOpt = Path("."),
    model: ModelOpt = DEFAULT_MODEL,
    weights: WeightsOpt = None,
    layer: LayerOpt = None,
    method: MethodOpt = DEFAULT_METHOD,
    class_index: ClassOpt = None,
    top_k: TopOpt = _IMAGE.top_k,
    layout: LayoutOpt = Layout(_IMAGE.layout),
    alpha: AlphaOpt = _IMAGE.alpha,
    colormap: ColormapOpt = Colormap(_IMAGE.colormap),
    fit: FitOpt = None,
    batch: BatchOpt = _IMAGE.batch_size,
    no_output: NoOutputOpt = False,
    overwrite: OverwriteOpt = False,
    unsafe: UnsafeOpt = False,
    json_out: JsonOpt = False,
    metrics: MetricsOpt = False,
    group: GroupOpt = None,
    groups: GroupsOpt = None,
) -> None:
    """Label images (top-k) and write original | heatmap pictures."""
    from vidcam.jobs.image import explain_images

    options = ImageOptions(top_k=top_k, class_index=class_index, layout=_value(layout), alpha=alpha,
                           colormap=_value(colormap), fit=_value(fit), batch_size=batch, overwrite=overwrite,
                           metrics=metrics)
    spec = _spec(model, layer, method, weights, unsafe, _groups(group, groups))
    load_tensorflow()
    engine = spec.build()
    report = _ImageReporter(json_out, _image_describer(engine), lambda r: bool(r.predictions))
    results = explain_images(paths, None if no_output else output_dir, model=engine, options=options,
                             on_result=report)
    report.finish(len(results))


def _parse_methods(value: str) -> list[str]:
    """``--methods gradcam,scorecam``: registered names, in the order given; else a usage error worded like
    a bad choice of any other option."""
    chosen = [m.strip() for m in str(value).split(",") if m.strip()]
    known = method_names()
    for m in [m for m in chosen if m not in known][:1] or ([] if chosen else [value]):
        raise _usage_error(f"--methods must be one of {_listed(known)}; got {m!r}; see `vidcam compare --help`")
    return chosen


def _compare_row(method: str, x) -> list[str]:
    return [method_title(method), f"{x.average_drop:.1f}%", "yes" if x.increase else "no", f"{x.deletion_auc:.3f}",
            f"{x.insertion_auc:.3f}"]


def _describe_comparison(r) -> None:
    _say(f"{r.path}: {r.label} {r.probability:.3f} (class {r.class_id})")
    head = ["method", "avg drop", "increase", "deletion AUC", "insertion AUC"]
    rows = [[_safe(c) for c in _compare_row(m, x)] for m, x in r.metrics.items()]
    widths = [max(len(c) for c in col) for col in zip(head, *rows)]
    for k, row in enumerate([head, *rows]):
        cells = [c.ljust(w) if j in (0, 2) or k == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        typer.echo("  " + "  ".join(cells).rstrip())


@app.command("compare")
@handle_errors
def compare_cmd(
    paths: ImagesArg,
    output_dir: PicturesDirOpt = Path("."),
    model: ModelOpt = DEFAULT_MODEL,
    weights: WeightsOpt = None,
    layer: LayerOpt = None,
    methods: MethodsOpt = ",".join(DEFAULT_METHODS),
    class_index: ClassOpt = None,
    steps: StepsOpt = _COMPARE.steps,
    alpha: AlphaOpt = _COMPARE.alpha,
    colormap: ColormapOpt = Colormap(_COMPARE.colormap),
    fit: FitOpt = None,
    batch: BatchOpt = _COMPARE.batch_size,
    no_output: NoOutputOpt = False,
    overwrite: OverwriteOpt = False,
    unsafe: UnsafeOpt = False,
    json_out: JsonOpt = False,
    group: GroupOpt = None,
    groups: GroupsOpt = None,
) -> None:
    """Compare CAM methods side by side, with each map's faithfulness metrics.

    Default: Grad-CAM, Grad-CAM++ and Score-CAM; any registered method (`vidcam methods`) with --methods."""
    from vidcam.jobs.compare import compare_methods

    options = CompareOptions(methods=_parse_methods(methods), class_index=class_index, fit=_value(fit), steps=steps,
                             batch_size=batch, alpha=alpha, colormap=_value(colormap), overwrite=overwrite)
    spec = ModelSpec(model, layer, weights=weights, unsafe=unsafe, groups=_groups(group, groups))  # methods: options'
    load_tensorflow()
    report = _ImageReporter(json_out, _describe_comparison, lambda r: bool(r.metrics))
    results = compare_methods(paths, None if no_output else output_dir, model=spec, options=options,
                              on_result=report)
    report.finish(len(results))


# -- training and evaluation -------------------------------------------------------------------------------------


@app.command("train")
@handle_errors
def train_cmd(
    data_dir: DataDirArg,
    output: ModelOutOpt,
    base: BaseOpt = _TRAIN.base,
    epochs: EpochsOpt = _TRAIN.epochs,
    batch: BatchOpt = _TRAIN.batch_size,
    img_size: ImgSizeOpt = None,
    val_split: ValSplitOpt = None,
    seed: SeedOpt = _TRAIN.seed,
    flip: FlipOpt = False,
    fine_tune: FineTuneOpt = _TRAIN.fine_tune,
    head: HeadOpt = Head(_TRAIN.head),
    patience: PatienceOpt = _TRAIN.patience,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a classifier on folders of images (transfer learning on a frozen pretrained base)."""
    from vidcam.jobs.train import train_classifier

    options = TrainOptions(base=base, epochs=epochs, batch_size=batch, img_size=img_size, val_split=val_split,
                           seed=seed, flip=flip, fine_tune=fine_tune, head=_value(head), patience=patience,
                           overwrite=overwrite)
    load_tensorflow()

    def show(event) -> None:
        if event.stage == "skip":
            _err(event.message)
        else:
            _say(event.message)

    result = train_classifier(data_dir, output, options=options, progress=show)
    if result.skipped:
        _err(f"{len(result.skipped)} files skipped")
        raise typer.Exit(EXIT_SKIPPED)


def _show_evaluation(r) -> None:
    _say(f"{r.images} images, accuracy {r.accuracy:.3f}")
    names = {name: _safe(name) for name in r.per_class}
    width = max(map(len, names.values()))
    for name, c in r.per_class.items():
        prec = "-" if c["precision"] is None else f"{c['precision']:.3f}"
        typer.echo(f"  {names[name].ljust(width)}  precision {prec}  recall {c['recall']:.3f}  ({c['support']} images)")
    acc = "-" if r.covered_accuracy is None else f"{r.covered_accuracy:.3f}"
    _say(f"threshold {r.threshold:g}: answers {r.coverage * 100:.1f}% of images, accuracy {acc} on those")
    _say(f"report: {r.report_dir / 'report.html'}")


@app.command("evaluate")
@handle_errors
def evaluate_cmd(
    model: ModelArg,
    data_dir: DataDirArg,
    report_dir: ReportDirOpt,
    threshold: ThresholdOpt = _EVAL.threshold,
    val_split: ValSplitOpt = None,
    seed: SeedOpt = _EVAL.seed,
    batch: BatchOpt = _EVAL.batch_size,
    overwrite: OverwriteOpt = False,
    unsafe: UnsafeOpt = False,
    json_out: JsonOpt = False,
    group: GroupOpt = None,
    groups: GroupsOpt = None,
) -> None:
    """Accuracy, per-class precision/recall, confusion matrix and the book's confidence grids, as an HTML report.

    With --val-split and --seed: the share a training run held out."""
    from vidcam.jobs.evaluate import evaluate_classifier

    options = EvalOptions(threshold=threshold, val_split=val_split, seed=seed, batch_size=batch, overwrite=overwrite)
    load_tensorflow()
    r = evaluate_classifier(ModelSpec(model, unsafe=unsafe, groups=_groups(group, groups)), data_dir, report_dir,
                            options=options,
                            on_skip=lambda s: _err(f"skipped {s.path}: {s.reason}"))
    if json_out:
        typer.echo(json.dumps(r.metrics))
    else:
        _show_evaluation(r)
    if r.skipped:
        _err(f"{len(r.skipped)} files skipped")
        raise typer.Exit(EXIT_SKIPPED)


# -- videos ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _VideoJob:
    """What every video of a run gets, and how its results are shown."""

    spec: ModelSpec
    options: VideoOptions
    ffmpeg: str | None = None
    quiet: bool = False
    json_out: bool = False


def _video_inputs(inputs: list[str], output: Path | None, as_folder: bool = False) -> tuple[list[Path], bool]:
    """The input videos (globs expanded) and whether this is a many-video run (-o is then a folder)."""
    from vidcam.jobs.image import expand_paths
    from vidcam.jobs.video import VIDEO_SUFFIXES

    files = expand_paths(inputs)
    globbed = any(any(ch in s for ch in "*?[") and not Path(s).exists() for s in inputs)
    many = len(files) > 1 or globbed or as_folder or (output is not None and output.is_dir())
    if many and output is not None and not output.exists() and output.suffix.lower() in VIDEO_SUFFIXES:
        raise _usage_error(f"with many inputs -o is a folder for their heatmap videos, not a video file ({output})")
    return files, many


def _warn_damaged(summary) -> None:
    """One warning line when a video was truncated or corrupt: vidcam kept the frames that decode."""
    src = getattr(summary, "source", None)
    if src is not None and getattr(src, "damaged", None):
        _warn(f"{summary.input} is truncated or damaged (ffmpeg: {src.damaged}); "
              f"kept the {summary.frames} frames that decode")


def _rate(s) -> str:
    """``150 frames at 25/1 fps``, or ``25 frames, variable rate (avg 12.29 fps)``."""
    if getattr(s, "vfr", False):
        return f"{s.frames} frames, variable rate (avg {float(s.fps):.2f} fps)"
    return f"{s.frames} frames at {s.fps.numerator}/{s.fps.denominator} fps"


def _temporal_line(s) -> str:
    """``over time: map stability 0.91 (min 0.62), 2 label flips (20.0 a minute), 1 cut: frame 25 (1.000 s)``."""
    parts = []
    if s.stability is not None:
        parts.append(f"map stability {s.stability:.2f} (min {s.stability_min:.2f})")
    parts.append(f"{s.label_flips} label flip{'s' if s.label_flips != 1 else ''} ({s.flips_per_minute:.1f} a minute)")
    cuts = ", ".join(f"frame {i} ({t:.3f} s)" for i, t in s.cuts[:5]) + (" ..." if len(s.cuts) > 5 else "")
    parts.append(f"{len(s.cuts)} cut{'s' if len(s.cuts) != 1 else ''}" + (f": {cuts}" if cuts else ""))
    return "  over time: " + ", ".join(parts)


def _show_video(s) -> None:
    audio = {"copy": "audio copied", "aac": "audio re-encoded to AAC", "none": "no audio"}[s.audio]
    _say(f"{s.input} -> {s.output}")
    _say(f"  {_rate(s)}, {s.width}x{s.height}, {audio}; {s.seconds:.1f} s ({s.frames_per_second:.1f} frames/s)")
    if s.top_labels:
        _say("  most explained: " + ", ".join(f"{name} ({n})" for name, n in s.top_labels[:3]))
    _say(_temporal_line(s))
    _describe_metrics(s.metrics)
    if s.labels_out:
        _say(f"  labels -> {s.labels_out}")
    if s.report:
        _say(f"  report -> {s.report} (timeline: {Path(s.report).with_suffix('.png')})")


def _one_video(job: _VideoJob, src: Path, output: Path | None, labels_out: Path | None,
               report: Path | None = None) -> None:
    """One video in this process: a progress bar, then the summary (or its JSON, or just the output path)."""
    from vidcam.jobs.video import DecodeAhead, process_video
    from vidcam.media.probe import prefetch
    from vidcam.memory import address_space_limit

    with contextlib.ExitStack() as stack:
        early = None
        if "tensorflow" in sys.modules or address_space_limit() is not None:
            # Under `ulimit -v` nothing is started before TensorFlow's headroom check (load_tensorflow).
            prefetch(src, ffmpeg=job.ffmpeg)  # ffmpeg reads the file while TensorFlow imports
        else:  # ffmpeg probes the file and decodes its first frames while TensorFlow imports
            early = stack.enter_context(DecodeAhead(src, job.options, ffmpeg=job.ffmpeg, model=job.spec))
        load_tensorflow()
        bar = _Bar(src.name, job.quiet or job.json_out)
        try:
            s = process_video(src, output, model=job.spec, options=job.options, labels_out=labels_out,
                              ffmpeg=job.ffmpeg, progress=bar, report=report, early=early)
        finally:
            bar.close()
    _warn_damaged(s)
    if job.json_out:
        typer.echo(json.dumps(s.as_dict()))
    elif job.quiet:
        _say(s.output)
    else:
        _show_video(s)


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


def _video_outcome_printer(job: _VideoJob, bars: _VideoBars, remote: bool) -> Callable:
    """Prints each video's outcome of a many-video run as soon as it is known."""

    def show(r) -> None:
        bars.next()
        if not r.error and getattr(r, "summary", None) is not None:
            _warn_damaged(r.summary)
        if job.json_out:
            typer.echo(json.dumps(r.as_dict()))
        if r.error:
            tries = f" after {r.attempts} attempts" if r.attempts > 1 else ""
            _err(f"skipped {r.input}{tries}: {r.error}")
        elif job.quiet and not job.json_out:
            _say(r.output)
        elif not job.json_out:
            s = r.summary
            where = f" on {r.worker}" if remote and r.worker else ""
            _say(f"{r.input} -> {r.output}  ({s.frames} frames, {s.seconds:.1f} s{where})")
            _describe_metrics(s.metrics)

    return show


def _report_videos(job: _VideoJob, report, many: bool) -> None:
    """The run's summary line (many videos, or a failure) and its exit code."""
    done = [r for r in report.items if r.ok]
    frames = sum(r.summary.frames for r in done)
    if not job.quiet and not job.json_out and (many or report.failures):
        secs = max(report.seconds, 1e-9)
        how = (f"ray, {report.workers} worker{'s' if report.workers > 1 else ''}" if report.engine == "ray"
               else report.engine)
        n = len(report.items)
        _say(f"{n} video{'s' if n != 1 else ''}: {len(done)} done, {len(report.failures)} skipped ({how}); "
             f"{frames} frames in {report.seconds:.1f} s: {frames / secs:.1f} frames/s, "
             f"{len(done) / secs:.2f} videos/s")
    if report.failures:
        _err(f"{len(report.failures)} of {len(report.items)} videos skipped: "
             + ", ".join(r.input for r in report.failures[:5]) + (" ..." if len(report.failures) > 5 else ""))
        raise typer.Exit(report.exit_code)


def _many_videos(job: _VideoJob, files: list[Path], output: Path | None, many: bool, executor,
                 labels: tuple[str | None, Path | None]) -> None:
    """Many videos (or one on Ray, or with retries): a line per video as it finishes, then a summary line;
    exit 3 when some were skipped. ``labels``: the per-video format, or one video's labels file."""
    from vidcam.jobs.video import default_output
    from vidcam.jobs.videos import process_video_pairs, process_videos

    labels_format, labels_out = labels
    remote = executor.name != "local"
    if not remote:  # with Ray, the workers load TensorFlow, not this process
        load_tensorflow()
    bars = _VideoBars(files, job.quiet or job.json_out or remote)
    common = dict(model=job.spec, options=job.options, executor=executor, labels_format=labels_format,
                  ffmpeg=job.ffmpeg, on_result=_video_outcome_printer(job, bars, remote), progress=bars)
    try:
        if many:
            report = process_videos(files, output if output is not None else Path("."), **common)
        else:
            report = process_video_pairs([(files[0], output or default_output(files[0]), labels_out)], **common)
    finally:
        bars.close()
    _report_videos(job, report, many)


@app.command("video")
@handle_errors
def video_cmd(
    inputs: VideosArg,
    output_arg: VideoOutputOpt = None,
    model: ModelOpt = DEFAULT_MODEL,
    weights: WeightsOpt = None,
    layer: LayerOpt = None,
    method: MethodOpt = DEFAULT_METHOD,
    class_index: ClassOpt = None,
    layout: LayoutOpt = Layout(_RENDER.layout),
    alpha: AlphaOpt = _RENDER.alpha,
    colormap: ColormapOpt = Colormap(_RENDER.colormap),
    fit: FitOpt = Fit(_RENDER.fit),
    smooth: SmoothOpt = _VIDEO.smooth,
    start: StartOpt = None,
    duration: DurationOpt = None,
    labels_out: LabelsOutOpt = None,
    top_k: TopOpt = _VIDEO.top_k,
    crf: CrfOpt = _ENCODE.crf,
    preset: PresetOpt = Preset(_ENCODE.preset),
    batch: BatchOpt = _VIDEO.batch_size,
    ffmpeg: FfmpegOpt = None,
    overwrite: OverwriteOpt = False,
    unsafe: UnsafeOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    labels_format: LabelsFormatOpt = None,
    engine: EngineOpt = Engine("local"),
    address: AddressOpt = None,
    retries: RetriesOpt = None,
    metrics: MetricsOpt = False,
    metrics_every: MetricsEveryOpt = _VIDEO.metrics_every,
    report: ReportOpt = None,
    group: GroupOpt = None,
    groups: GroupsOpt = None,
) -> None:
    """Make a Grad-CAM heatmap video: every frame at its own time, same orientation and audio.

    Many videos: locally one after another, or on Ray with --engine ray."""
    from vidcam.cluster import executor_for

    _check_address(engine, address)
    if labels_format is not None and labels_out is not None:
        raise _usage_error("give either --labels-out FILE (one video) or --labels csv|jsonl (a file beside each "
                           "output)")
    options = VideoOptions(
        render=_render(layout, alpha, colormap, fit), encode=EncodeOptions(crf, _value(preset)),
        class_index=class_index, smooth=smooth, start=start, duration=duration, top_k=top_k, batch_size=batch,
        metrics=metrics, metrics_every=metrics_every, overwrite=overwrite,
    )
    job = _VideoJob(_spec(model, layer, method, weights, unsafe, _groups(group, groups)), options, ffmpeg, quiet,
                    json_out)
    output = Path(output_arg) if output_arg is not None else None
    # A trailing slash says "a folder" even for one input (Path() would drop it).
    files, many = _video_inputs(inputs, output, as_folder=bool(output_arg) and output_arg.endswith(("/", os.sep)))
    if many or engine.value != "local" or labels_format is not None or retries:
        if report is not None:
            raise _usage_error("--report is for one video run here (not with many inputs, --engine ray, --labels or "
                               "--retries)")
        if labels_out is not None and many:
            raise _usage_error("--labels-out names one file; with many inputs use --labels csv|jsonl (one file per "
                               "video)")
        executor = executor_for(engine.value, address=address, retries=retries)
        _many_videos(job, files, output, many, executor, (_value(labels_format), labels_out))
        return
    _one_video(job, files[0], output, labels_out, report)


# -- frame folders -----------------------------------------------------------------------------------------------


def _show_frames(s, labels_out: Path | None) -> None:
    _say(f"{s.total} frames: {s.processed} labelled, {s.reused} already done, {len(s.failed)} skipped "
         f"-> {s.output_dir}")
    _say(f"  labels -> {s.labels}")
    if labels_out is not None:
        _say(f"  labels -> {labels_out}")
    if s.video:
        _say(f"  video -> {s.video}")
    if s.report:
        _say(f"  report -> {s.report} (timeline: {Path(s.report).with_suffix('.png')})")
    _describe_metrics(s.metrics)
    if s.failed:
        _err(f"{len(s.failed)} of {s.total} frames skipped: {', '.join(name for name, _ in s.failed[:5])}"
             + (" ..." if len(s.failed) > 5 else ""))
        raise typer.Exit(EXIT_FAILURE if len(s.failed) == s.total else EXIT_SKIPPED)


@app.command("frames")
@handle_errors
def frames_cmd(
    directory: FramesArg,
    output_dir: FramesOutOpt = None,
    model: ModelOpt = DEFAULT_MODEL,
    weights: WeightsOpt = None,
    layer: LayerOpt = None,
    method: MethodOpt = DEFAULT_METHOD,
    class_index: ClassOpt = None,
    top_k: TopOpt = _FRAMES.top_k,
    layout: LayoutOpt = Layout(_RENDER.layout),
    alpha: AlphaOpt = _RENDER.alpha,
    colormap: ColormapOpt = Colormap(_RENDER.colormap),
    fit: FitOpt = Fit(_RENDER.fit),
    batch: BatchOpt = _FRAMES.batch_size,
    json_lines: LabelsJsonOpt = False,
    force: ForceOpt = False,
    to_video: ToVideoOpt = None,
    fps: FpsOpt = str(_FRAMES.fps),
    crf: CrfOpt = _ENCODE.crf,
    preset: PresetOpt = Preset(_ENCODE.preset),
    ffmpeg: FfmpegOpt = None,
    overwrite: OverwriteOpt = False,
    unsafe: UnsafeOpt = False,
    quiet: QuietOpt = False,
    labels_out: LabelsOutOpt = None,
    engine: EngineOpt = Engine("local"),
    address: AddressOpt = None,
    metrics: MetricsOpt = False,
    report: FramesReportOpt = None,
    group: GroupOpt = None,
    groups: GroupsOpt = None,
) -> None:
    """Label every frame of a folder: result pictures, labels.csv, optionally a video. Resumable.

    Locally, or on Ray with --engine ray."""
    from vidcam.cluster import executor_for
    from vidcam.jobs.frames import label_frames

    _check_address(engine, address)
    spec = _spec(model, layer, method, weights, unsafe, _groups(group, groups))
    options = FramesOptions(
        render=_render(layout, alpha, colormap, fit), encode=EncodeOptions(crf, _value(preset)),
        class_index=class_index, top_k=top_k, batch_size=batch, json_lines=json_lines, force=force, metrics=metrics,
        labels_out=labels_out, to_video=to_video, fps=fps, report=report, overwrite=overwrite,
    )
    executor = executor_for(engine.value, address=address)
    load_tensorflow()
    bar = _Bar(directory.name or str(directory), quiet)
    try:
        s = label_frames(directory, output_dir, model=spec, options=options,
                         executor=executor, ffmpeg=ffmpeg, progress=bar,
                         on_skip=lambda name, reason: bar.error(f"skipped {name}: {reason}"))
    finally:
        bar.close()
    _show_frames(s, labels_out)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="vidcam")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
