"""Rendering: colour maps, fixed-alpha blending, windows, labels and layouts on numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest

from vidcam.media.render import COLORMAPS, colorize, draw_label, format_label, overlay, render, upsample_cam


@pytest.fixture
def frame(rng):
    return rng.integers(0, 256, size=(90, 160, 3), dtype=np.uint8)


@pytest.mark.parametrize("cmap", COLORMAPS)
def test_colormaps_map_low_and_high_differently(cmap):
    out = colorize(np.array([[0, 255]], np.uint8), cmap)
    assert out.shape == (1, 2, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[0, 0], out[0, 1])


def test_jet_is_rgb_ordered():
    lo, hi = colorize(np.array([[0, 255]], np.uint8), "jet")[0]
    assert lo[2] > lo[0]  # cold end is blue
    assert hi[0] > hi[2]  # hot end is red


def test_unknown_colormap():
    with pytest.raises(ValueError, match="colormap"):
        colorize(np.zeros((2, 2), np.uint8), "rainbow-unicorn")


def test_alpha_zero_is_the_frame_and_one_is_the_heat(frame):
    cam = np.linspace(0, 1, 49, dtype=np.float32).reshape(7, 7)
    np.testing.assert_array_equal(overlay(frame, cam, alpha=0.0), frame)
    heat = colorize(upsample_cam(cam, 160, 90), "jet")
    np.testing.assert_array_equal(overlay(frame, cam, alpha=1.0), heat)


def test_blend_is_fixed_alpha_not_rescaled(frame):
    """A dark frame stays dark: no per-image min-max rescaling of the composite (video would flicker)."""
    dark = (frame // 8).astype(np.uint8)
    cam = np.zeros((7, 7), np.float32)
    out = overlay(dark, cam, alpha=0.5)
    cold = colorize(np.zeros((1, 1), np.uint8), "jet")[0, 0].astype(float)
    expected = 0.5 * dark.astype(float) + 0.5 * cold
    assert np.abs(out.astype(float) - expected).max() <= 1.0


def test_upsample_covers_the_frame_and_window():
    cam = np.ones((7, 7), np.float32)
    full = upsample_cam(cam, 160, 90)
    assert full.shape == (90, 160) and (full == 255).all()
    win = upsample_cam(cam, 160, 90, window=(40, 10, 120, 80))
    assert (win[10:80, 40:120] == 255).all()
    assert win[:10].max() == 0 and win[:, :40].max() == 0


def test_input_frame_untouched(frame):
    before = frame.copy()
    render(frame, np.ones((3, 3), np.float32), "cat 50.0%")
    np.testing.assert_array_equal(frame, before)


def test_side_by_side_layout(frame):
    out = render(frame, np.ones((3, 3), np.float32), None, layout="side-by-side")
    assert out.shape == (90, 320, 3)
    np.testing.assert_array_equal(out[:, :160], frame)


def test_label_banner_draws_text(frame):
    out = draw_label(frame, "tiger cat 38.6%")
    assert out.shape == frame.shape
    assert not np.array_equal(out[:20, :100], frame[:20, :100])
    np.testing.assert_array_equal(out[60:, :], frame[60:, :])  # only the banner area changes


def test_format_label_keeps_any_name():
    assert format_label("tiger cat", 0.3864) == "tiger cat 38.6%"
    assert format_label("chat \u00e9", 1.0) == "chat \u00e9 100.0%"


@pytest.mark.parametrize("name, ascii_", [("Kätzchen", "K?tzchen"), ("café", "caf?"), ("Σκύλος", "??????"),
                                          ("Кошка", "?????")])
def test_banner_draws_unicode_names_with_a_real_font(name, ascii_):
    """The banner draws the name's own glyphs (not OpenCV's ``?``): the text's pixels are bright where the
    font's glyphs are, and differ from the ``?`` rendering."""
    import cv2

    from vidcam.media.render import label_size
    from vidcam.media.text import text_mask

    frame = np.full((480, 640, 3), 100, np.uint8)
    out, asc = draw_label(frame, f"{name} 38.6%"), draw_label(frame, f"{ascii_} 38.6%")
    assert not np.array_equal(out, asc)
    banner = out[:60, :400].mean(axis=2).astype(np.float32)
    assert banner.max() == 255 and (banner == 30).sum() > 1000  # white text on the bar darkened to 30%
    assert np.array_equal(out[60:], frame[60:])

    def found(text: str) -> float:  # the text's FreeType mask, found in the banner: 1 where exactly it is drawn
        mask = text_mask(text, label_size(640, 480)).astype(np.float32)
        return float(cv2.matchTemplate(banner, mask, cv2.TM_CCOEFF_NORMED).max())

    assert (np.asarray(text_mask(name, label_size(640, 480))) > 128).sum() > 30  # the glyph area is not empty
    assert found(name) > 0.99 and found(ascii_) < 0.9


def test_banner_text_is_rendered_once_per_label():
    from vidcam.media.text import text_mask

    assert text_mask("Kätzchen 50.0%", 20) is text_mask("Kätzchen 50.0%", 20)
    assert not text_mask("Kätzchen 50.0%", 20).flags.writeable
    frame = np.zeros((8, 12, 3), np.uint8)  # a banner larger than the frame is clipped to it
    assert draw_label(frame, "Kätzchen 50.0%").shape == (8, 12, 3)


def test_bad_layout_and_alpha(frame):
    with pytest.raises(ValueError, match="layout"):
        render(frame, np.ones((3, 3), np.float32), layout="mosaic")
    with pytest.raises(ValueError, match="alpha"):
        overlay(frame, np.ones((3, 3), np.float32), alpha=1.5)


def test_the_font_is_matplotlibs_dejavu_found_without_importing_matplotlib():
    import subprocess
    import sys
    from pathlib import Path

    import matplotlib

    from vidcam.media.text import font_path

    assert Path(font_path()) == Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    code = ("import sys; from vidcam.media.render import draw_label; import numpy as np; "
            "draw_label(np.zeros((90, 160, 3), np.uint8), 'café 1.0%'); print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"  # a video run draws its banners without loading matplotlib


@pytest.mark.parametrize("shape, size", [((7, 7), (320, 180)), ((14, 10), (1280, 720)), ((1, 1), (5, 3)),
                                         ((6, 9), (4, 4))])
def test_small_maps_resize_by_matrix_products_as_opencv_does(shape, size):
    import cv2

    from vidcam.media.render import _cubic_weights

    cam = np.random.default_rng(1).random(shape, dtype=np.float32)
    got = _cubic_weights(shape[0], size[1]) @ cam @ _cubic_weights(shape[1], size[0]).T
    np.testing.assert_allclose(got, cv2.resize(cam, size, interpolation=cv2.INTER_CUBIC), atol=1e-5)


def test_a_label_drawn_as_name_and_number_reads_as_the_whole_line():
    """The banner draws the name and the number as two cached pieces (the number changes every frame): the
    result is the whole line's text, its number where one line puts it (within a pixel), in one even-width bar."""
    import cv2

    from vidcam.media.render import draw_label_i420, label_size
    from vidcam.media.text import text_mask

    frame = np.full((480, 640, 3), 100, np.uint8)
    banner = draw_label(frame, "tiger cat 38.6%")[:60, :400].mean(axis=2).astype(np.float32)

    def found(text: str) -> tuple[float, int]:  # how exactly the text's mask is in the banner, and where
        mask = text_mask(text, label_size(640, 480)).astype(np.float32)
        _, best, _, at = cv2.minMaxLoc(cv2.matchTemplate(banner, mask, cv2.TM_CCOEFF_NORMED))
        return best, at[0]

    (name, x_name), (number, x_number) = found("tiger cat"), found("38.6%")
    advance = text_mask("tiger cat ", label_size(640, 480), advance=True).shape[1]  # the pen after the space
    assert name > 0.99 and number > 0.99 and abs(x_number - (x_name + advance)) <= 1
    assert (banner[:15, x_name + advance - 2] == 30).all() and (banner[:15] == 100).any()  # one bar, then the frame
    yuv = np.full((720, 640), 128, np.uint8)
    yuv[:480] = 100
    draw_label_i420(yuv, "tiger cat 38.6%")
    y, u = yuv[:480], yuv[480:600].reshape(240, 320)
    dark = y[:40] < 60
    assert dark.any() and (y[:40] > 200).any() and (u == 128).all()  # grey stays grey in chroma: no colour fringe


def test_banner_pieces_are_cached_within_a_bound_of_bytes_and_redrawn_the_same():
    """Every number from 0.0% to 100.0% at 2160p would be 900 MB of cached pieces: the caches keep the most
    recent ones within their bytes, and a piece built again after it was dropped draws the same pixels."""
    from vidcam.media.render import _banner, _banner_i420, draw_label_i420, label_size

    _banner.clear()
    _banner_i420.clear()
    frame = np.zeros((2160, 3840, 3), np.uint8)
    yuv = np.zeros((3240, 3840), np.uint8)
    first = draw_label(frame, "tabby cat 0.0%")[:160, :800].copy()
    for i in range(1001):
        draw_label(frame, f"tabby cat {i / 10:.1f}%", inplace=True)
        draw_label_i420(yuv, f"tabby cat {i / 10:.1f}%")
    for cache in (_banner, _banner_i420):
        assert 10 < len(cache) < 1002 and cache.bytes <= cache.max_bytes  # dropped some, kept many
    assert ("tabby cat ", label_size(3840, 2160), True, False) in _banner._items  # the name (every frame) stayed
    assert np.array_equal(draw_label(frame * 0, "tabby cat 0.0%")[:160, :800], first)
