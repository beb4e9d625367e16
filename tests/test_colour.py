"""Colour: linear <-> display round trip, the rule above 1, alpha handling."""

import numpy as np

from engine import colour


def test_srgb_curve_matches_the_standard_at_known_points():
    linear = np.array([0.0, 0.0031308, 0.18, 0.5, 1.0], np.float32)
    expected = np.array([0.0, 0.04045, 0.4613561, 0.7353570, 1.0], np.float32)
    assert np.allclose(colour.srgb_encode(linear), expected, atol=2e-5)
    assert np.allclose(colour.srgb_decode(expected), linear, atol=2e-6)


def test_round_trip_is_exact_for_values_in_0_1_with_any_alpha():
    rng = np.random.default_rng(0)
    straight = rng.random((32, 48, 3), dtype=np.float32)
    alpha = rng.random((32, 48, 1), dtype=np.float32)
    alpha[:4] = 1.0
    alpha[4:8] = 0.0
    rgba = np.concatenate([straight * alpha, alpha], axis=-1)
    display, a, excess = colour.to_display(rgba)
    assert display.min() >= 0 and display.max() <= 1
    assert np.array_equal(a, alpha)
    back = colour.to_linear(display, a, excess)
    assert np.allclose(back, rgba, atol=1e-6)


def test_values_above_one_keep_their_energy_and_the_network_sees_at_most_one():
    rgba = np.array([[[4.0, 1.5, 0.25, 1.0], [-0.01, 0.5, 2.0, 0.5]]], np.float32)
    display, alpha, excess = colour.to_display(rgba)
    assert display.max() <= 1.0 and display.min() >= 0.0
    assert np.allclose(colour.to_linear(display, alpha, excess), rgba, atol=1e-6)
    # A stylized colour comes back with the same highlight excess on top.
    darker = colour.to_linear(display * 0.5, alpha, excess)
    assert darker[0, 0, 0] > 3.0  # 4.0's excess of 3.0 survives stylization


def test_premultiplied_colour_on_empty_alpha_survives():
    # Emission with alpha 0 ("additive" pixels) must not be lost or divided by zero.
    rgba = np.array([[[0.2, 0.1, 0.0, 0.0]]], np.float32)
    display, alpha, excess = colour.to_display(rgba)
    assert np.all(np.isfinite(display))
    assert np.allclose(colour.to_linear(display, alpha, excess), rgba, atol=1e-6)


def test_stylized_colour_does_not_leak_into_transparent_pixels():
    rgba = np.array([[[0.0, 0.0, 0.0, 0.0], [0.3, 0.2, 0.1, 0.5]]], np.float32)
    display, alpha, excess = colour.to_display(rgba)
    painted = np.ones_like(display) * 0.8  # what an optimizer might paint everywhere
    out = colour.to_linear(painted, alpha, excess)
    assert np.all(out[0, 0] == 0)
    assert np.allclose(out[0, 1, :3], colour.srgb_decode(np.float32(0.8)) * 0.5)
