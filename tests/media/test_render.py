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


def test_format_label():
    assert format_label("tiger cat", 0.3864) == "tiger cat 38.6%"
    assert format_label("chat \u00e9", 1.0) == "chat ? 100.0%"


def test_bad_layout_and_alpha(frame):
    with pytest.raises(ValueError, match="layout"):
        render(frame, np.ones((3, 3), np.float32), layout="mosaic")
    with pytest.raises(ValueError, match="alpha"):
        overlay(frame, np.ones((3, 3), np.float32), alpha=1.5)
