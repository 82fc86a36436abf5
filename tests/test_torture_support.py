"""The torture-clip generator and the independent checker (tests/torture.py), checked against ffprobe itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torture as T

pytestmark = pytest.mark.skipif(not T.have_tools(), reason="needs Debian's ffmpeg + ffprobe (apt-get install ffmpeg)")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "torture"


def test_barcode_survives_a_heatmap_overlay():
    import cv2

    rng = np.random.default_rng(0)
    for index, ms in [(0, 0), (1, 17), (4321, 99_999), (8191, 131_071), (77, 2500)]:
        frame = T.picture(index, ms, 160, 120).astype(np.float64)
        # the worst a jet heatmap can do: cells about one block wide, alternating between its darkest and brightest
        cam = cv2.resize(rng.random((12, 16)).astype(np.float32), (160, 120), interpolation=cv2.INTER_CUBIC)
        heat = cv2.applyColorMap(np.clip(cam * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        out = 0.6 * frame + 0.4 * heat
        luma = 16 + (0.2126 * out[..., 0] + 0.7152 * out[..., 1] + 0.0722 * out[..., 2]) * 219 / 255
        assert T.read_barcode(luma) == (index, ms)
        assert T.read_barcode(cv2.resize(luma, (128, 96), interpolation=cv2.INTER_AREA)) == (index, ms)
    # a blend of two frames is unreadable, not misread
    mix = 0.5 * T.picture(5, 200, 160, 120)[..., 1] + 0.5 * T.picture(6, 233, 160, 120)[..., 1]
    assert T.read_barcode(mix) is None


def test_beep_detection_is_exact_on_pcm(tmp_path):
    beeps = [0.25, 0.7731, 1.5, 2.0101]
    wav = T.write_wav(tmp_path / "b.wav", 2.5, beeps)
    pcm = T.audio_pcm(wav)
    found = T.beep_onsets(pcm)
    assert [k for _, k in found] == [0, 1, 2, 3]
    assert np.max(np.abs(np.array([t for t, _ in found]) - beeps)) < 0.0015


@pytest.mark.parametrize("kind", T.KINDS)
def test_clip_truth_matches_ffprobe(kind, root):
    clip = T.clip(kind, root)
    dec = T.decoded(clip.path)
    assert [c[0] if c else None for _, c in dec] == [i for i, _ in clip.frames], "barcodes decode to the truth"
    assert np.allclose([t for t, _ in dec], [p for _, p in clip.frames], atol=1e-4), "ffprobe pts == truth"
    # the barcode's ms is the intended time; the file's timeline may start elsewhere (a cut, TS, an offset)
    lag = np.array([c[1] / 1000 - t for t, c in dec])
    assert np.ptp(lag) < 0.0011, "barcode ms and pts differ by one constant"
    assert clip.duration > 0
    if clip.audio:
        offs = T.av_offsets(clip.path, clip, dec)
        assert offs and all(o is not None and abs(o) < 0.005 for o in offs), offs
    T.frames_in_order_once(dec, clip)


def test_vfr_phone_rates(root):
    clip = T.clip("vfr_phone", root)
    gaps = np.round(np.diff(T.frame_times(clip.path)) * 60).astype(int)
    assert list(gaps) == [1] * 60 + [2] * 30 + [4] * 14
    assert abs(clip.duration - 3.0) < 1e-3


def test_screen_freeze_holds_one_frame(root):
    clip = T.clip("screen_freeze", root)
    gaps = np.diff(T.frame_times(clip.path))
    assert abs(gaps.max() - 2.5) < 1e-3 and int(np.sum(gaps > 0.04)) == 1


def test_webm_has_no_duration_and_changes_size(root):
    clip = T.clip("webm_mediarecorder", root)
    assert T.file_duration(clip.path) is None
    widths = [f["width"] for f in T.ffprobe(clip.path, "-select_streams", "v:0", "-show_entries",
                                             "frame=width")["frames"]]
    assert widths[0] == 160 and widths[-1] == 128
    assert abs(clip.duration - 3.0) < 0.1


def test_avi_is_mostly_empty_chunks(root):
    clip = T.clip("avi_repeats", root)
    sizes = [int(p["size"]) for p in T.ffprobe(clip.path, "-select_streams", "v:0", "-show_entries",
                                                "packet=size")["packets"]]
    assert len(clip.frames) == 24 and abs(clip.duration - 10.0) < 1e-3
    # ffmpeg's AVI demuxer drops the zero-size chunks; the index says 150 frames at 15 fps
    nb = int(T.streams(clip.path)[0].get("nb_frames", 0))
    assert len([s for s in sizes if s > 0]) == 24 and nb == 150, (len(sizes), nb)


def test_offsets_and_cuts(root):
    vo = T.clip("video_offset", root)
    starts = T.stream_starts(vo.path)
    assert abs(starts["video:0"] - 0.5) < 1e-3 and abs(starts["audio:1"]) < 1e-3
    cut = T.clip("cut_copy", root)
    assert cut.frames[0] == (45, 0.0)
    ts = T.clip("ts_midgop", root)
    assert ts.kind and ts.frames[0][0] % 25 == 0 and ts.frames[0][0] > 0, "starts at the first whole GOP"


def test_colour_clips(root):
    for kind, trc in [("hdr10", "smpte2084"), ("hlg", "arib-std-b67")]:
        clip = T.clip(kind, root)
        v = T.streams(clip.path)[0]
        assert (v["color_transfer"], v["color_primaries"], v["color_space"], v["pix_fmt"]) == (
            trc, "bt2020", "bt2020nc", "yuv420p10le")
        # the reference SDR rendering is the SDR picture the clip was mastered from
        assert max(np.max(np.abs(np.array(ref) - rgb)) for (_, ref), rgb in zip(clip.patches, T._PATCH_RGB)) < 6
    hd = T.clip("untagged_hd", root)
    v = T.streams(hd.path)[0]
    assert v.get("color_space", "unknown") == "unknown" and (v["width"], v["height"]) == (1280, 720)
    assert T.colour_errors(hd.path, hd) <= 3
    # decoded the way ffmpeg guesses (BT.601), the saturated patches are visibly off
    rgb = T.first_frame_rgb(hd.path, in_matrix="bt601")
    errs = [np.max(np.abs(g - ref)) for g, (_, ref) in zip(T.patch_means(rgb, [b for b, _ in hd.patches]), hd.patches)]
    assert max(errs) > 10


def test_multi_audio(root):
    clip = T.clip("multi_audio_8k", root)
    rates = [int(s["sample_rate"]) for s in T.streams(clip.path) if s["codec_type"] == "audio"]
    assert rates == [8000, 48000]
    for n in range(2):
        assert len(T.beep_onsets(T.audio_pcm(clip.path, n))) == len(clip.beeps)


def test_label_time_errors(tmp_path, root):
    clip = T.clip("cfr25", root)
    rows = [{"frame": i, "time": p + (0.01 if i == 3 else 0.0), "predictions": []} for i, p in clip.frames]
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + json.dumps({"metrics_summary": {}}) + "\n")
    errs = T.label_time_errors(path, clip)
    assert len(errs) == len(clip.frames) and abs(errs[3] - 0.01) < 1e-9 and sum(1 for e in errs if abs(e) > 1e-9) == 1


def test_ffmpeg_cut_reference(root):
    clip = T.clip("vfr_phone", root)
    keep = T.ffmpeg_cut_keeps(clip.path, 1, 2)
    assert keep == list(range(60, 105))
