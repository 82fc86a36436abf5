"""Skip pictures spliced into x264's H.264 (vidcam.media.h264), judged by an independent decoder.

x264 (vidcam's ffmpeg, imageio-ffmpeg's binary) encodes small lavfi clips; the splicer inserts skip pictures after
chosen frames; Debian's ffmpeg decodes the result with strict error detection (and must print nothing at
``-loglevel warning``), and its ``trace_headers`` bitstream filter (FFmpeg's own syntax parser) reads every slice
header back. Every inserted picture must decode to exactly the picture before it, every x264 picture to exactly
what it decodes to without the skips, and ``frame_num`` must count every reference picture. Also: the access unit
reader under random chunking, the arithmetic coder against a decoder written here from the standard, skip pictures
at every QP, emulation prevention, Exp-Golomb bits, the refusals, ``avcC`` against ffmpeg's own, and malformed
input (only :class:`H264Error`, never another exception or a hang).
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidcam.media import h264
from vidcam.media.h264 import (
    AccessUnit,
    AccessUnitReader,
    BitReader,
    BitWriter,
    CabacContext,
    CabacEncoder,
    H264Error,
    SkipSplicer,
    escape,
    join_annexb,
    parse_pps,
    parse_slice_header,
    parse_sps,
    skip_picture,
    skip_problem,
    split_annexb,
    unescape,
)

# The independent decoder: Debian's ffmpeg (./scripts/test installs it), not the binary vidcam runs.
FFMPEG = Path("/usr/bin/ffmpeg")
needs_debian_ffmpeg = pytest.mark.skipif(shutil.which("ffprobe") is None or not FFMPEG.exists(),
                                         reason="needs Debian's ffmpeg")
STRICT = ["-xerror", "-err_detect", "+crccheck+bitstream+buffer+explode"]
BYTES_PER_SAMPLE = {"yuv420p": 1.5, "yuv422p": 2, "yuv444p": 3, "yuv420p10le": 3}


@functools.cache
def _x264(preset: str = "superfast", size: tuple[int, int] = (328, 184), frames: int = 30, pix_fmt: str = "yuv420p",
          params: str = "", gop: int = 10) -> bytes:
    """A testsrc2 clip as x264 encodes it for vidcam (one thread, no B-frames), as Annex B; an IDR every ``gop``."""
    w, h = size
    x264_params = ":".join(p for p in ("scenecut=0", params) if p)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
           f"testsrc2=size={w}x{h}:rate=25", "-frames:v", str(frames), "-pix_fmt", pix_fmt, "-c:v", "libx264",
           "-preset", preset, "-crf", "20", "-bf", "0", "-threads", "1", "-g", str(gop), "-x264-params", x264_params,
           "-f", "h264", "pipe:1"]
    return subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout


def _aus(data: bytes) -> list[AccessUnit]:
    reader = AccessUnitReader()
    return reader.feed(data) + reader.finish()


def _decode(data: bytes, frame_bytes: int) -> np.ndarray:
    """Every frame as Debian's ffmpeg decodes the Annex B stream, strictly: any error or warning fails the test."""
    proc = subprocess.run([str(FFMPEG), "-nostdin", "-hide_banner", "-loglevel", "warning", *STRICT, "-f", "h264",
                           "-i", "pipe:0", "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"],
                          input=data, capture_output=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr.decode(errors="replace")
    assert len(proc.stdout) % frame_bytes == 0
    return np.frombuffer(proc.stdout, np.uint8).reshape(-1, frame_bytes)


_TRACE = re.compile(r"^\[trace_headers @ [^\]]+\] \d+\s+(nal_unit_type|nal_ref_idc|first_mb_in_slice|frame_num)"
                    r"\s+[01]+ = (\d+)$", re.M)


def _traced_slices(data: bytes) -> list[dict[str, int]]:
    """Each slice's NAL unit type, nal_ref_idc, first_mb_in_slice and frame_num, as FFmpeg's own syntax parser
    (the ``trace_headers`` bitstream filter) reads them."""
    proc = subprocess.run([str(FFMPEG), "-nostdin", "-hide_banner", "-loglevel", "trace", "-f", "h264", "-i",
                           "pipe:0", "-c", "copy", "-bsf:v", "trace_headers", "-f", "null", "-"],
                          input=data, capture_output=True, timeout=60, check=True)
    slices: list[dict[str, int]] = []
    nal: dict[str, int] = {}
    for name, value in _TRACE.findall(proc.stderr.decode(errors="replace")):
        if name == "nal_ref_idc":
            nal = {name: int(value)}
        else:
            nal[name] = int(value)
        if name == "frame_num" and nal.get("nal_unit_type") in (1, 5):
            slices.append(nal)
    return slices


def _splice(aus: list[AccessUnit], plan: dict[int, int]) -> tuple[list[bytes], SkipSplicer]:
    """x264's access units with ``plan[i]`` skip pictures after the i-th."""
    splicer = SkipSplicer()
    out: list[bytes] = []
    for i, au in enumerate(aus):
        out += splicer.frame(au)
        for _ in range(plan.get(i, 0)):
            out += splicer.repeat()
    return out, splicer


# --- The spliced streams, decoded -----------------------------------------------------------------------------------

# After the IDR; a run longer than MaxFrameNum (16 for x264 with one reference); just before the next IDR; one
# alone; after the last frame. With an IDR every 10 frames, the rewritten frame_num of frames 5-9 wraps too.
PLAN = {0: 3, 4: 20, 9: 2, 12: 1, 29: 5}
CASES = {
    "superfast-cabac-weightp": dict(preset="superfast"),
    "ultrafast-cavlc": dict(preset="ultrafast"),
    "veryfast-422": dict(preset="veryfast", size=(176, 144), pix_fmt="yuv422p"),
    "superfast-444-scaling-lists": dict(preset="superfast", size=(200, 120), pix_fmt="yuv444p", params="cqm=jvt"),
    "superfast-10bit": dict(preset="superfast", size=(200, 120), pix_fmt="yuv420p10le"),
    "superfast-4-slices": dict(preset="superfast", size=(176, 144), params="slices=4"),
}


@needs_debian_ffmpeg
@pytest.mark.parametrize("case", CASES)
def test_spliced_stream_decodes_exactly(case):
    kw = CASES[case]
    data = _x264(**kw)
    aus = _aus(data)
    assert len(aus) == 30
    out, splicer = _splice(aus, PLAN)
    assert splicer.inserted == sum(PLAN.values()) and splicer.can_repeat and splicer.why_not is None
    w, h = kw.get("size", (328, 184))
    frame_bytes = int(w * h * BYTES_PER_SAMPLE[kw.get("pix_fmt", "yuv420p")])
    original = _decode(data, frame_bytes)
    spliced = _decode(join_annexb(out), frame_bytes)
    # (a) x264's frames plus the inserted ones; (b) each inserted one exactly the picture before it; (c) each of
    # x264's exactly as without the skips (a wrong frame_num or reference would show).
    expected = np.stack([frame for i, frame in enumerate(original) for _ in range(1 + PLAN.get(i, 0))])
    assert spliced.shape == expected.shape
    assert np.array_equal(spliced, expected)
    # frame_num, as FFmpeg's parser reads it: 0 at each IDR, then one more for each reference picture (the same in
    # all the slices of a picture).
    slices = _traced_slices(join_annexb(out))
    pictures = [s for s in slices if s["first_mb_in_slice"] == 0]
    assert len(pictures) == len(expected)
    slices_per_frame = 4 if "slices=4" in kw.get("params", "") else 1  # a skip picture is one slice
    assert len(slices) == len(aus) * slices_per_frame + splicer.inserted
    prev = None
    for s in slices:
        assert s["nal_ref_idc"] > 0
        if s["first_mb_in_slice"] == 0:
            assert s["frame_num"] == (0 if s["nal_unit_type"] == 5 else (prev + 1) % 16)
        assert s["frame_num"] == (prev if s["first_mb_in_slice"] else s["frame_num"])
        prev = s["frame_num"]
    assert [s["nal_unit_type"] for s in pictures] == [t for i, au in enumerate(aus)
                                                      for t in [5 if au.key else 1] + [1] * PLAN.get(i, 0)]


@needs_debian_ffmpeg
@pytest.mark.parametrize("pix_fmt, qps", [("yuv420p", range(0, 52)), ("yuv420p10le", range(-12, 52))])
def test_cabac_skip_pictures_at_every_qp(pix_fmt, qps):
    """The context initialisation depends on SliceQPY: one skip picture at each QP (each with its own PPS) after an
    IDR picture, all decoded to exact copies of it."""
    aus = _aus(_x264("superfast", (96, 64), frames=1, pix_fmt=pix_fmt))
    splicer = SkipSplicer()
    out = splicer.frame(aus[0])
    sps, pps = splicer.sps[0], splicer.pps[0]
    assert pps.entropy_coding_mode_flag and pps.weighted_pred_flag
    for i, qp in enumerate(qps, 1):
        w = BitWriter()
        w.ue(i)  # pic_parameter_set_id
        w.ue(sps.sps_id)
        w.flag(True)  # CABAC
        w.flag(False)  # bottom_field_pic_order_in_frame_present_flag
        w.ue(0)  # one slice group
        w.ue(0)
        w.ue(0)
        w.flag(True)  # weighted_pred_flag
        w.u(2, 0)  # weighted_bipred_idc
        w.se(qp - 26)  # pic_init_qp_minus26
        w.se(0)
        w.se(0)
        w.flag(True)  # deblocking_filter_control_present_flag
        w.flag(False)
        w.flag(False)
        w.trailing_bits()
        pps_nal = b"\x68" + escape(w.to_bytes())
        own = parse_pps(pps_nal, splicer.sps)
        assert own.pps_id == i and own.pic_init_qp == qp
        out += [pps_nal, skip_picture(sps, own, i % sps.max_frame_num)]
    frame_bytes = 96 * 64 * int(2 * BYTES_PER_SAMPLE[pix_fmt]) // 2
    frames = _decode(join_annexb(out), frame_bytes)
    assert len(frames) == 1 + len(qps)
    assert (frames == frames[0]).all()


@needs_debian_ffmpeg
@pytest.mark.parametrize("preset", ["superfast", "ultrafast"])
def test_config_is_the_avcc_ffmpeg_writes(preset, tmp_path):
    """The avcC record equals what ffmpeg's MP4 muxer writes for the same stream (High profile with its chroma
    format and bit depth trailer; Baseline without)."""
    data = _x264(preset)
    splicer = SkipSplicer()
    for au in _aus(data):
        splicer.frame(au)
    (tmp_path / "in.h264").write_bytes(data)
    subprocess.run([str(FFMPEG), "-nostdin", "-loglevel", "error", "-f", "h264", "-i", str(tmp_path / "in.h264"),
                    "-c", "copy", str(tmp_path / "out.mp4")], check=True, timeout=60)
    mp4 = (tmp_path / "out.mp4").read_bytes()
    at = mp4.find(b"avcC")
    box = mp4[at + 4 : at - 4 + int.from_bytes(mp4[at - 4 : at], "big")]
    assert splicer.config() == box
    assert box[1] == (100 if preset == "superfast" else 66)


# --- Refusals -------------------------------------------------------------------------------------------------------


def test_more_reference_frames_are_refused():
    """x264's medium preset keeps 3 reference frames: no skip pictures, and its stream passes through unchanged."""
    splicer = SkipSplicer()
    assert not splicer.can_repeat and "no picture" in splicer.why_not
    with pytest.raises(H264Error, match="no picture"):
        splicer.repeat()
    aus = _aus(_x264("medium", (96, 64), frames=4))
    for au in aus:
        assert splicer.frame(au) == list(au.nals)
        assert not splicer.can_repeat
        assert splicer.why_not.startswith("max_num_ref_frames is 3, not 1")
        with pytest.raises(H264Error, match="max_num_ref_frames is 3"):
            splicer.repeat()


def test_a_frame_num_that_does_not_follow_is_refused_after_skips():
    aus = _aus(_x264("superfast", (96, 64), frames=5))
    splicer = SkipSplicer()
    splicer.frame(aus[0])
    splicer.frame(aus[1])
    splicer.repeat()
    with pytest.raises(H264Error, match="frame_num 3 does not follow the previous reference picture's 1"):
        splicer.frame(aus[3])  # frame 2 left out
    # With no skip picture since the IDR, the stream passes as it is, but no skip picture may follow the gap.
    splicer = SkipSplicer()
    splicer.frame(aus[0])
    assert splicer.frame(aus[2]) == list(aus[2].nals)
    assert not splicer.can_repeat and "does not follow" in splicer.why_not


def _p_slice(frame_num: int, *, modification: bool = False, mmco: bool = False) -> bytes:
    """A P slice header for x264's superfast PPS (weighted prediction, CABAC), with a reference list modification
    or a memory management operation; no slice data (only the header is read)."""
    w = BitWriter()
    for v in (0, 0, 0):  # first_mb_in_slice, slice_type P, pic_parameter_set_id
        w.ue(v)
    w.u(4, frame_num)
    w.u(1, 0)  # num_ref_idx_active_override_flag
    w.flag(modification)
    if modification:
        for v in (0, 0, 3):  # modification_of_pic_nums_idc 0, abs_diff_pic_num_minus1 0, end
            w.ue(v)
    for v in (0, 0):  # pred_weight_table: denominators, then no weights
        w.ue(v)
    w.u(2, 0)
    w.flag(mmco)  # adaptive_ref_pic_marking_mode_flag
    if mmco:
        for v in (1, 0, 0):  # mark the previous picture unused, end
            w.ue(v)
    w.trailing_bits()
    return b"\x41" + escape(w.to_bytes())


@pytest.mark.parametrize("nal, words", [
    (_p_slice(1, mmco=True), "memory management control operations"),
    (_p_slice(1, modification=True), "modifies its reference picture list"),
    (b"\x22\x88\x80", "NAL unit type 2"),
])
def test_unsupported_slices_are_refused(nal, words):
    aus = _aus(_x264("superfast", (96, 64), frames=2))
    splicer = SkipSplicer()
    splicer.frame(aus[0])
    splicer.repeat()
    with pytest.raises(H264Error, match=f"cannot splice: .*{words}.*after 1 skip pictures"):
        splicer.frame([nal])
    # With no skip picture since the IDR picture, the slice passes unchanged, and no skip picture may follow it.
    splicer = SkipSplicer()
    splicer.frame(aus[0])
    assert splicer.frame([nal]) == [nal]
    assert not splicer.can_repeat and words in splicer.why_not


def test_skip_problem_names_each_unsupported_parameter():
    splicer = SkipSplicer()
    splicer.frame(_aus(_x264("superfast", (96, 64), frames=1))[0])
    sps, pps = splicer.sps[0], splicer.pps[0]
    assert skip_problem(sps, pps) is None
    for change, words in [(dict(max_num_ref_frames=2), "max_num_ref_frames is 2"),
                          (dict(frame_mbs_only_flag=False), "field pictures"),
                          (dict(pic_order_cnt_type=0), "pic_order_cnt_type is 0"),
                          (dict(separate_colour_plane_flag=True), "colour planes"),
                          (dict(profile_idc=110, constraint_flags=0x10), "intra-only profile")]:
        assert words in skip_problem(dataclasses.replace(sps, **change), pps)
    assert "2 slice groups" in skip_problem(sps, dataclasses.replace(pps, num_slice_groups=2))


# --- Parsing and rewriting -------------------------------------------------------------------------------------


def test_parameter_sets_and_slices_of_x264():
    splicer = SkipSplicer()
    aus = _aus(_x264("superfast"))
    splicer.frame(aus[0])
    sps, pps = splicer.sps[0], splicer.pps[0]
    assert (sps.profile_idc, sps.chroma_format_idc, sps.bit_depth_luma, sps.pic_order_cnt_type) == (100, 1, 8, 2)
    assert (sps.width, sps.height, sps.pic_width_in_mbs, sps.frame_height_in_mbs) == (328, 184, 21, 12)
    assert sps.max_num_ref_frames == 1 and sps.frame_mbs_only_flag and sps.max_frame_num == 16
    assert pps.entropy_coding_mode_flag and pps.weighted_pred_flag and pps.deblocking_filter_control_present_flag
    assert pps.num_slice_groups == 1 and pps.pic_init_qp == 20 and pps.transform_8x8_mode_flag
    assert parse_sps(sps.nal) == sps and parse_pps(pps.nal, splicer.sps) == pps
    cavlc = parse_pps([n for n in _aus(_x264("ultrafast"))[0].nals if n[0] & 0x1F == 8][0], splicer.sps)
    assert not cavlc.entropy_coding_mode_flag and not cavlc.weighted_pred_flag
    head = parse_slice_header([n for n in aus[0].nals if n[0] & 0x1F == 5][0], splicer.sps, splicer.pps)
    assert head.idr and head.frame_num == 0 and head.slice_type % 5 == 2
    # The skip picture's own header: a reference P slice, one active reference, no list or marking operations.
    for frame_num in (1, 15):
        skip = parse_slice_header(skip_picture(sps, pps, frame_num), splicer.sps, splicer.pps)
        assert (skip.nal_unit_type, skip.nal_ref_idc, skip.slice_type, skip.frame_num) == (1, 2, 0, frame_num)
        assert skip.num_ref_idx_l0_active == 1 and not skip.ref_pic_list_modification
        assert not skip.adaptive_ref_pic_marking


def test_rewritten_slices_differ_only_in_frame_num():
    aus = _aus(_x264("superfast"))
    out, splicer = _splice(aus[:10], {0: 5})
    assert out[: len(aus[0].nals)] == list(aus[0].nals)  # nothing changes before the first skip picture
    written = [n for n in out if n[0] & 0x1F == 1][5:]  # x264's P slices, after the 5 skip pictures
    original = [au.nals[0] for au in aus[1:10]]
    for new, old in zip(written, original, strict=True):
        a, b = parse_slice_header(new, splicer.sps, splicer.pps), parse_slice_header(old, splicer.sps, splicer.pps)
        assert a.frame_num == (b.frame_num + 5) % 16
        assert dataclasses.replace(a, frame_num=b.frame_num) == b
        ra, rb = unescape(new[1:]), unescape(old[1:])
        assert len(ra) == len(rb) and ra[2:] == rb[2:]  # frame_num lies in the first two bytes here


# --- The access unit reader ---------------------------------------------------------------------------------------

AUD, SPS, PPS, SEI = b"\x09\xf0", b"\x67\x42\xc0\x0a\x8c", b"\x68\xce\x3c\x80", b"\x06\x05\x01\x80"
IDR, IDR_2ND = b"\x65\x88\x84\x00\x00\x03\x01\x21", b"\x65\x40\x11\x7f"  # first_mb_in_slice 0, and not 0
P1, P2, P2_2ND = b"\x41\x9a\x22", b"\x41\x9b\x00\x03\x00\x44", b"\x41\x5a\x10"
FILLER, END_OF_STREAM = b"\x0c\xff\xff\x80", b"\x0b"
SYNTHETIC = [
    AccessUnit((AUD, SPS, PPS, SEI, IDR, IDR_2ND), True),
    AccessUnit((P1,), False),
    AccessUnit((SEI, P2, P2_2ND, FILLER), False),
    AccessUnit((SPS, PPS, IDR), True),
    AccessUnit((P1, END_OF_STREAM), False),
]


def _synthetic_stream() -> bytes:
    """The synthetic access units with 3- and 4-byte start codes, zeros before the first one and trailing zero
    bytes after some NAL units, and an empty NAL unit."""
    out = bytearray(b"\x00\x00")
    for i, nal in enumerate(n for au in SYNTHETIC for n in au.nals):
        out += (b"\x00\x00\x00\x01" if i % 3 == 0 else b"\x00\x00\x01") + nal + b"\x00" * (i % 4 == 1)
        if i == 7:
            out += b"\x00\x00\x01"
    return bytes(out)


def test_split_annexb_and_access_units_of_a_synthetic_stream():
    data = _synthetic_stream()
    assert split_annexb(data) == [n for au in SYNTHETIC for n in au.nals]
    assert split_annexb(join_annexb([SPS, PPS])) == [SPS, PPS]
    assert _aus(data) == SYNTHETIC
    for cut in range(len(data) + 1):  # every two-chunk split
        reader = AccessUnitReader()
        assert reader.feed(data[:cut]) + reader.feed(data[cut:]) + reader.finish() == SYNTHETIC
    reader = AccessUnitReader()
    assert [au for i in range(len(data)) for au in reader.feed(data[i : i + 1])] + reader.finish() == SYNTHETIC
    assert _aus(b"") == [] and _aus(b"\x00\x00\x00") == []
    assert SYNTHETIC[1].annexb == b"\x00\x00\x00\x01" + P1


def test_access_units_of_x264_under_random_chunking():
    data = _x264("superfast", gop=10)
    whole = _aus(data)
    assert len(whole) == 30 and [au.key for au in whole] == [i % 10 == 0 for i in range(30)]
    assert [n for au in whole for n in au.nals] == split_annexb(data)
    assert b"".join(au.annexb for au in whole) == join_annexb(split_annexb(data))
    rng = random.Random(5)
    for _ in range(20):
        reader, got, pos = AccessUnitReader(), [], 0
        while pos < len(data):
            size = rng.choice([1, 2, 3, 4, rng.randint(1, 64), rng.randint(1, 4096), rng.randint(1, 100_000)])
            got += reader.feed(data[pos : pos + size])
            pos += size
        assert got + reader.finish() == whole


def test_an_access_unit_is_complete_when_the_next_one_starts():
    data = _x264("superfast", frames=6)
    nal_starts = [m.start() + 3 for m in re.finditer(b"\x00\x00\x01", data)]
    aus = _aus(data)
    starts, k = [], 0
    for au in aus:  # where each access unit's first NAL unit begins in the stream
        starts.append(nal_starts[k])
        k += len(au.nals)
    for i in range(1, len(aus)):
        reader = AccessUnitReader()
        assert reader.feed(data[: starts[i] + 1]) == aus[: i - 1]  # a slice's header byte alone: not yet
        assert reader.feed(data[starts[i] + 1 : starts[i] + 2]) == [aus[i - 1]]


def test_access_unit_reader_on_big_chunks():
    """10 MB fed in 100 KB chunks (as the muxing thread reads x264's pipe): every NAL unit whole, in order."""
    rng = np.random.default_rng(1)
    nals = [bytes([0x65 if i % 50 == 0 else 0x41, 0x88]) + rng.integers(1, 256, 40_000, np.uint8).tobytes()
            for i in range(250)]
    data = join_annexb(nals)  # 10 MB
    reader = AccessUnitReader()
    aus = [au for i in range(0, len(data), 100_000) for au in reader.feed(data[i : i + 100_000])] + reader.finish()
    assert [au.nals[0] for au in aus] == nals


# --- Emulation prevention, bits, CABAC ----------------------------------------------------------------------------


@pytest.mark.parametrize("rbsp, nal", [
    (b"", b""),
    (b"\x00\x00", b"\x00\x00\x03"),
    (b"\x00\x00\x00\x00", b"\x00\x00\x03\x00\x00\x03"),
    (b"\x00\x00\x01\x00\x00\x02\x00\x00\x03\x00\x00\x04",
     b"\x00\x00\x03\x01\x00\x00\x03\x02\x00\x00\x03\x03\x00\x00\x04"),
    (b"\x00\x00\x00\x00\x00\x03", b"\x00\x00\x03\x00\x00\x03\x00\x03"),
    (b"\x01\x00\x00\x00\x01\x05", b"\x01\x00\x00\x03\x00\x01\x05"),
    (b"\x65\x80\x00\x00", b"\x65\x80\x00\x00\x03"),  # a cabac_zero_word at the end
    (b"\x80\x00\x00\x00\x00", b"\x80\x00\x00\x03\x00\x00\x03"),
])
def test_escape_known_cases(rbsp, nal):
    assert escape(rbsp) == nal
    assert unescape(nal) == rbsp


@pytest.mark.parametrize("rbsp", [b"\x00", b"\x65\x00", b"\x00\x00\x00", b"\x80\x00\x00\x00"])
def test_escape_refuses_an_rbsp_ending_in_a_lone_zero(rbsp):
    with pytest.raises(ValueError, match="lone zero"):
        escape(rbsp)


@settings(derandomize=True, database=None, max_examples=300)
@given(st.lists(st.sampled_from([0, 0, 0, 0, 1, 2, 3, 4, 0x65, 0xFF]), max_size=40).map(bytes),
       st.sampled_from([0x80, 0x01, 0x03, 0x40]), st.integers(0, 3))
def test_escape_round_trip(payload, stop_byte, zero_words):
    rbsp = payload + bytes([stop_byte]) + b"\x00\x00" * zero_words  # as every RBSP ends
    nal = escape(rbsp)
    assert unescape(nal) == rbsp
    for pattern in (b"\x00\x00\x00", b"\x00\x00\x01", b"\x00\x00\x02"):
        assert pattern not in nal
    assert not re.search(b"\x00\x00\x03[\x04-\xff]", nal)
    assert not nal.endswith(b"\x00")


_ops = st.lists(st.one_of(st.tuples(st.just("u"), st.integers(0, 32)).flatmap(
    lambda t: st.tuples(st.just("u"), st.just(t[1]), st.integers(0, (1 << t[1]) - 1))),
    st.tuples(st.just("ue"), st.just(0), st.integers(0, 2**32 - 2)),
    st.tuples(st.just("se"), st.just(0), st.integers(-(2**31) + 1, 2**31 - 1))), max_size=30)


@settings(derandomize=True, database=None, max_examples=300)
@given(_ops)
def test_bits_round_trip(ops):
    w = BitWriter()
    for kind, n, value in ops:
        w.u(n, value) if kind == "u" else getattr(w, kind)(value)
    w.trailing_bits()
    r = BitReader(w.to_bytes())
    for kind, n, value in ops:
        assert (r.u(n) if kind == "u" else getattr(r, kind)()) == value
    assert not r.more_rbsp_data() and r.u(1) == 1 and r.pos + (-r.pos & 7) == r.size


def test_exp_golomb_codes():
    w = BitWriter()
    for v in (0, 1, 2, 3, 7):
        w.ue(v)
    for v in (0, 1, -1, 2, -2):
        w.se(v)
    w.align(0)
    # 1 010 011 00100 0001000 | 1 010 011 00100 00101
    assert w.bits == 1 + 3 + 3 + 5 + 7 + 1 + 3 + 3 + 5 + 5 + 4
    bits = "1" "010" "011" "00100" "0001000" "1" "010" "011" "00100" "00101" "0000"
    assert w.to_bytes() == int(bits, 2).to_bytes(len(bits) // 8, "big")
    with pytest.raises(H264Error, match="too early"):
        BitReader(b"\x00").ue()


class _CabacDecoder:
    """The arithmetic decoding engine of H.264 9.3.1.2 and 9.3.3.2 (written from the standard, not from the
    encoder), sharing only the module's state tables."""

    def __init__(self, data: bytes) -> None:
        self.r = BitReader(data)
        self.range, self.offset = 510, self.r.u(9)

    def _renorm(self) -> None:
        while self.range < 256:
            self.range <<= 1
            self.offset = (self.offset << 1) | self.r.u(1)

    def decision(self, ctx: CabacContext) -> int:
        lps = h264._RANGE_TAB_LPS[ctx.state][(self.range >> 6) & 3]
        self.range -= lps
        if self.offset >= self.range:
            bin_val = 1 - ctx.mps
            self.offset -= self.range
            self.range = lps
            if ctx.state == 0:
                ctx.mps = 1 - ctx.mps
            ctx.state = h264._TRANS_IDX_LPS[ctx.state]
        else:
            bin_val = ctx.mps
            ctx.state = h264._TRANS_IDX_MPS[ctx.state]
        self._renorm()
        return bin_val

    def terminate(self) -> int:
        self.range -= 2
        if self.offset >= self.range:
            return 1  # no renormalization: decoding ends here
        self._renorm()
        return 0


@pytest.mark.parametrize("seed", range(6))
def test_cabac_encoder_against_a_decoder(seed):
    rng = random.Random(seed)
    qp = rng.randint(-12, 60)  # clipped to 0-51
    inits = [(23, 33), (23, 2), (21, 0), (-28, 127), (20, -15), (0, 41)]
    odds = [rng.choice([0.02, 0.3, 0.5, 0.9, 0.995]) for _ in inits]
    ops = []
    for _ in range(rng.randint(1, 3000)):
        if rng.random() < 0.05:
            ops.append((-1, 0))  # a terminating bin of 0 (end_of_slice_flag of a macroblock)
        else:
            c = rng.randrange(len(inits))
            ops.append((c, int(rng.random() < odds[c])))
    w = BitWriter()
    w.u(rng.randint(0, 3) * 8, 0)  # the slice header before (whole bytes)
    start = w.bits // 8
    enc, contexts = CabacEncoder(w), [CabacContext(m, n, qp) for m, n in inits]
    for c, bin_val in ops:
        enc.decision(contexts[c], bin_val) if c >= 0 else enc.terminate(0)
    enc.terminate(1)
    w.align(0)
    data = w.to_bytes()[start:]
    dec, contexts = _CabacDecoder(data), [CabacContext(m, n, qp) for m, n in inits]
    assert [dec.decision(contexts[c]) if c >= 0 else dec.terminate() for c, _ in ops] == [b for _, b in ops]
    assert dec.terminate() == 1
    # The flush's last bit is the rbsp_stop_one_bit: the decoder has read exactly up to it, zeros follow.
    assert data and data[-1] != 0
    assert dec.r.pos == len(data) * 8 - (data[-1] & -data[-1]).bit_length() + 1


def test_cabac_tables_spot_checked_against_the_standard():
    """A few entries of Tables 9-44 and 9-45 (the module's tables were compared with FFmpeg's and x264's whole)."""
    t = h264._RANGE_TAB_LPS
    assert (t[0], t[12], t[33], t[62], t[63]) == ((128, 176, 208, 240), (77, 94, 111, 128), (26, 31, 37, 43),
                                                  (6, 7, 8, 9), (2, 2, 2, 2))
    assert len(t) == len(h264._TRANS_IDX_LPS) == len(h264._TRANS_IDX_MPS) == 64
    assert h264._TRANS_IDX_LPS[:6] == (0, 0, 1, 2, 2, 4) and h264._TRANS_IDX_LPS[60:] == (37, 38, 38, 63)
    assert h264._TRANS_IDX_MPS[0] == 1 and h264._TRANS_IDX_MPS[61:] == (62, 62, 63)
    ctx = CabacContext(23, 33, 26)  # preCtxState = ((23 * 26) >> 4) + 33 = 70: pStateIdx 6, valMPS 1
    assert (ctx.state, ctx.mps) == (6, 1)
    ctx = CabacContext(23, 33, -5)  # QP clipped to 0: preCtxState 33 -> pStateIdx 30, valMPS 0
    assert (ctx.state, ctx.mps) == (30, 0)


# --- Malformed input ------------------------------------------------------------------------------------------------

@functools.cache
def _fuzz_seeds() -> tuple[bytes, ...]:
    return (_x264("superfast", (64, 48), frames=6, gop=3), _x264("ultrafast", (64, 48), frames=6, gop=3))


@settings(derandomize=True, database=None, max_examples=200, deadline=timedelta(seconds=10),
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_malformed_streams_raise_only_h264error(data):
    """Byte flips anywhere in small real streams (headers included): the reader and the splicer either work or
    raise H264Error."""
    stream = bytearray(data.draw(st.sampled_from(_fuzz_seeds())))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, min(len(stream) - 1, data.draw(st.sampled_from([60, 200, len(stream)])))))
        stream[at] = data.draw(st.integers(0, 255))
    splicer = SkipSplicer()
    try:
        for au in _aus(bytes(stream)):
            splicer.frame(au)
            if splicer.can_repeat:
                splicer.repeat()
        if splicer.sps and splicer.pps:
            splicer.config()
    except H264Error:
        pass
