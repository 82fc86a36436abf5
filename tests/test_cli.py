"""The CLI itself: `vidcam info` and `vidcam methods`, the choice options and their usage errors, and how names
users chose are printed (escaped). Real clips made with the bundled ffmpeg, the real CLI (CliRunner, and real
processes where the process itself matters)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from clips import make_clip
from conftest import ROOT
from typer.testing import CliRunner

from vidcam.cam.methods import method_names
from vidcam.cli import _safe, app
from vidcam.media.ffmpeg_cmd import PRESETS
from vidcam.media.probe import probe
from vidcam.media.render import COLORMAPS

runner = CliRunner()
ESC_NAME = "a\x1b[2Jb.mp4"
# Frames 0-9 every 1/25 s, then every 3/25 s (variable rate); the picture starts 0.5 s after the sound.
VFR_OFFSET = "setpts='if(lt(N,10),N,10+(N-10)*3)/25/TB+0.5/TB'"


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def error_lines(result) -> list[str]:
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("vidcam: error: ") for ln in lines), lines
    return lines


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return {
        "cfr": make_clip(d / "cfr.mp4", seconds=1.0),
        "vfr": make_clip(d / "vfr.mp4", seconds=1.0, audio="aac", vf=VFR_OFFSET, extra=("-fps_mode", "vfr")),
        "silent": make_clip(d / "silent.mkv", seconds=0.4, audio=None),
        "dir": d,
    }


# -- vidcam info -------------------------------------------------------------------------------------------------


def test_info_text_block_of_a_constant_rate_clip(media):
    r = invoke("info", media["cfr"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == f"{media['cfr']}: mp4 h264 160x120, 25/1 fps (constant), 25 frames, 1.000 s from 0.000 s"
    assert lines[1] == ("  colour: yuv420p, untagged -> decoded as BT.601 (smpte170m), SDR; the video job keeps it "
                        "Y'CbCr 4:2:0 (smpte170m) from decoder to encoder")
    assert lines[2].startswith("  audio: aac 48000 Hz mono, ") and lines[2].endswith(" to 1.000 s")
    assert len(lines) == 3 and r.stderr == ""


def test_info_variable_rate_offset_and_silent(media):
    r = invoke("info", media["vfr"], media["silent"])
    assert r.exit_code == 0, r.output
    info = probe(media["vfr"])
    assert info.vfr and info.start > 0.4  # what the clip was made to be
    lines = r.stdout.splitlines()
    assert lines[0] == (f"{media['vfr']}: mp4 h264 160x120, variable rate (avg {float(info.fps):.2f} fps), "
                        f"25 frames, {info.duration:.3f} s from {info.start:.3f} s")
    assert lines[3] == f"{media['silent']}: matroska h264 160x120, 25/1 fps (constant), 10 frames, 0.400 s from 0.000 s"
    assert lines[5] == "  audio: none"


def test_info_shows_pixel_aspect_interlacing_and_colour_tags(tmp_path):
    clip = make_clip(tmp_path / "odd.mp4", seconds=0.4, audio=None, vf="setsar=4/3",
                     extra=("-flags", "+ildct+ilme", "-colorspace", "bt709", "-color_range", "pc"))
    r = invoke("info", clip)
    assert r.exit_code == 0, r.output
    head, colour, audio = r.stdout.splitlines()
    assert head.startswith(f"{clip}: mp4 h264 160x120 (SAR 4:3, interlaced, deinterlaced), 25/1 fps (constant)")
    assert colour.endswith(", matrix bt709, range pc -> decoded as BT.709 (bt709), SDR; the video job keeps it "
                           "Y'CbCr 4:2:0 (bt709) from decoder to encoder")
    assert audio == "  audio: none"


def test_info_says_which_videos_the_video_job_draws_in_rgb(tmp_path):
    clip = make_clip(tmp_path / "odd.mkv", seconds=0.2, audio=None, vf="scale=161:121,setsar=1", pix_fmt="yuv444p")
    r = invoke("info", clip)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1].endswith("; the video job draws it in RGB (output BT.601)")  # odd size: no I420


def test_info_json_is_probe_as_dict(media):
    r = invoke("info", "--json", media["cfr"], media["vfr"])
    assert r.exit_code == 0, r.output
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert objs == [probe(media["cfr"]).as_dict(), probe(media["vfr"]).as_dict()]
    assert objs[1]["vfr"] is True and objs[0]["fps"] == "25/1"
    assert {"colour", "audio", "time_base", "container_duration", "damaged"} <= set(objs[0])


def test_info_bad_file_among_good_ones_exit_3(media, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0" * 4000)
    r = invoke("info", media["cfr"], bad, tmp_path / "missing.mp4", tmp_path / "*.nothing", media["silent"])
    assert r.exit_code == 3, r.output
    assert r.stdout.startswith(f"{media['cfr']}: ") and f"\n{media['silent']}: " in r.stdout
    lines = error_lines(r)
    assert len(lines) == 4 and f"{bad} is not a video" in lines[0] and "missing.mp4" in lines[1]
    assert "no files match" in lines[2] and lines[3] == "vidcam: error: 3 of 5 files skipped"
    r = invoke("info", "--json", media["cfr"], bad)
    assert r.exit_code == 3 and [json.loads(x)["path"] for x in r.stdout.splitlines()] == [str(media["cfr"])]
    r = invoke("info", bad, tmp_path / "missing.mp4")
    assert r.exit_code == 1 and r.stdout == "" and len(error_lines(r)) == 2


def test_info_loads_no_tensorflow(media):
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom vidcam.cli import app\n"
            f"r = CliRunner().invoke(app, ['info', {str(media['cfr'])!r}])\n"
            "print(r.exit_code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.split() == ["0", "False", "False"], p.stderr


# -- vidcam methods --------------------------------------------------------------------------------------------


def test_methods_table_and_json():
    r = invoke("methods")
    assert r.exit_code == 0, r.output
    lines = r.stdout.split("\n\n")[0].splitlines()  # the table, then a note on the measured columns
    assert lines[0].split() == ["method", "title", "gradients", "forward", "passes", "cost", "randomisation",
                                "class", "deletion", "insertion"]
    assert [line.split()[0] for line in lines[1:]] == list(method_names())
    rows = {line.split()[0]: line.split("  ") for line in lines[1:]}
    cells = {name: [c.strip() for c in row if c.strip()] for name, row in rows.items()}
    assert cells["gradcam"][:4] == ["gradcam (default)", "Grad-CAM", "yes", "1"]
    assert cells["scorecam"][2:4] == ["no", "1 + 32"] and cells["eigencam"][2:4] == ["no", "1"]
    objs = [json.loads(line) for line in invoke("methods", "--json").stdout.splitlines()]
    assert [o["name"] for o in objs] == list(method_names())
    by_name = {o["name"]: o for o in objs}
    assert {k: v for k, v in by_name["gradcam++"].items() if k != "measured"} == {
        "name": "gradcam++", "title": "Grad-CAM++", "uses_gradients": True, "forward_passes": 1, "default": False}
    assert [o["name"] for o in objs if o["default"]] == ["gradcam"]
    assert by_name["scorecam"]["forward_passes"] == 33 and by_name["scorecam"]["uses_gradients"] is False


# -- choices and usage errors ------------------------------------------------------------------------------------


def test_video_help_lists_the_choices():
    r = invoke("video", "--help")
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.replace("\u2502", " ").split())  # the help box's side bars out
    for name in (*method_names(), *PRESETS, *COLORMAPS, "overlay", "side-by-side", "squash", "crop", "local", "ray"):
        assert name in text, name
    assert "[default: superfast]" in text and "[default: efficientnet_lite0]" in text
    assert "[default: gradcam]" in text


@pytest.mark.parametrize("args,option,choices", [
    (("video", "x.mp4", "--method", "lime"), "--method", ", ".join(method_names())),
    (("frames", "x", "--engine", "spark"), "--engine", "local, ray"),
    (("video", "x.mp4", "--preset", "warp"), "--preset", ", ".join(PRESETS)),
    (("image", "x.jpg", "--colormap", "rainbow"), "--colormap", ", ".join(COLORMAPS)),
    (("image", "x.jpg", "--fit", "zoom"), "--fit", "squash, crop"),
    (("video", "x.mp4", "--labels", "xml"), "--labels", "csv, jsonl"),
    (("train", "x", "-o", "m.keras", "--head", "tanh"), "--head", "softmax, sigmoid, multilabel"),
    (("compare", "x.jpg", "--methods", "gradcam,lime"), "--methods", ", ".join(method_names())),
])
def test_bad_choice_is_one_usage_line(args, option, choices):
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    (line,) = error_lines(r)
    assert line.startswith(f"vidcam: error: {option} must be one of {choices}; got '{args[-1].split(',')[-1]}'")
    assert line.endswith(f"; see `vidcam {args[0]} --help`")


def test_compare_takes_any_registered_method_in_order():
    from vidcam.cli import _parse_methods

    assert _parse_methods("eigencam, gradcam,layercam") == ["eigencam", "gradcam", "layercam"]


def test_bad_choice_in_a_real_process():
    p = subprocess.run([sys.executable, "-m", "vidcam", "frames", "x", "--engine", "spark"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == [
        "vidcam: error: --engine must be one of local, ray; got 'spark'; see `vidcam frames --help`"]


# -- what users chose, escaped ---------------------------------------------------------------------------------


def test_safe_escapes_controls_and_keeps_every_script():
    assert _safe("Fotos März 猫 ü.mp4") == "Fotos März 猫 ü.mp4"
    assert _safe(ESC_NAME) == "a\\x1b[2Jb.mp4"
    assert _safe("a\nb\tc\rd\x00e\x7f\x9b") == "a\\nb\\tc\\rd\\x00e\\x7f\\x9b"
    assert _safe("evil\u202etxt.mp4") == "evil\\u202etxt.mp4"  # a bidi override would reorder the name
    assert _safe(os.fsdecode(b"caf\xe9.mp4")) == "caf\\xe9.mp4"  # a name that is not UTF-8
    assert _safe(_safe(ESC_NAME)) == _safe(ESC_NAME)


def test_escape_sequence_in_a_file_name_is_printed_escaped(media, tmp_path):
    clip = tmp_path / ESC_NAME
    clip.write_bytes(media["cfr"].read_bytes())
    r = invoke("info", clip, tmp_path / "c\x1b]0;pwned\x07d.mp4")
    assert r.exit_code == 3
    assert r.stdout.startswith(f"{tmp_path}/a\\x1b[2Jb.mp4: mp4 h264 160x120")
    assert "\x1b" not in r.output and "\x07" not in r.output
    (line, summary) = error_lines(r)
    assert line == f"vidcam: error: no such file: {tmp_path}/c\\x1b]0;pwned\\x07d.mp4"
    r = invoke("info", "--json", clip)
    assert json.loads(r.stdout)["path"] == str(clip)  # JSON stays exact (json.dumps escapes it itself)
    assert "\x1b" not in r.stdout


def test_video_summary_says_variable_rate_and_escapes_class_names(media, tiny_flat, tmp_path):
    from clips import save_tiny_keras

    model = save_tiny_keras(tiny_flat, tmp_path / "tiny.keras", ["c\x1b[31mat", "d\x1b[31mog", "b\x1b[31mird"])
    out = tmp_path / "o.mp4"
    r = invoke("video", media["vfr"], "-o", out, "-m", model, "--labels-out", tmp_path / "l.csv")
    assert r.exit_code == 0, r.output
    info = probe(media["vfr"])
    lines = r.stdout.splitlines()
    assert lines[0] == f"{media['vfr']} -> {out}"
    assert lines[1].startswith(f"  25 frames, variable rate (avg {float(info.fps):.2f} fps), 160x120, audio ")
    most = [x for x in lines if x.startswith("  most explained: ")][0]
    assert "\\x1b[31m" in most and "\x1b" not in r.stdout
    r = invoke("video", media["cfr"], "-o", out, "-m", model, "-y", "--engine", "local", "--retries", "1")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"{media['cfr']} -> {out}  (25 frames, ")
    r = invoke("video", media["cfr"], "-o", out, "-m", model, "-y")
    assert "  25 frames at 25/1 fps, 160x120, audio copied; " in r.stdout


@pytest.mark.parametrize(("interrupt", "code", "line"), [("_Terminated", 143, "terminated"),
                                                          ("KeyboardInterrupt", 130, "interrupted")])
def test_an_interrupt_that_surfaces_as_a_system_error_still_stops_cleanly(interrupt, code, line, capsys):
    # A signal handled while C code calls back into Python (numpy's __array__, say) comes out of that C code as a
    # SystemError caused by the interrupt, which a clean-clone run met once as "unexpected SystemError".
    import typer

    from vidcam import cli

    def job():
        try:
            raise getattr(cli, interrupt, KeyboardInterrupt)()
        except KeyboardInterrupt as e:
            raise SystemError("<built-in method __array__> returned a result with an exception set") from e

    with pytest.raises(typer.Exit) as stop:
        cli.handle_errors(job)()
    assert stop.value.exit_code == code
    assert capsys.readouterr().err.strip() == f"vidcam: error: {line}"


def test_a_bar_interrupted_as_it_is_first_drawn_still_ends_its_line(monkeypatch, capsys):
    """Ctrl-C or SIGTERM can land inside tqdm's constructor, after it drew the bar and before the CLI holds it:
    the error line after it must still start a line of its own. (Test scaffolding: the interrupt is raised at
    that instant, as the signal handler would; the bar and stderr are real.)"""
    import tqdm

    from vidcam import cli

    drawn = tqdm.tqdm.refresh

    def refresh_then_interrupt(self, *a, **k):
        drawn(self, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(tqdm.tqdm, "refresh", refresh_then_interrupt)
    bar = cli._Bar("src.mp4", False)
    with pytest.raises(KeyboardInterrupt):
        bar(0, 10)
    assert bar.bar is None
    bar.close()
    err = capsys.readouterr().err
    assert "0/10" in err and err.endswith("\n")
