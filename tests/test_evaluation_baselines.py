"""Appendix A baselines and Appendix B injections, on hand-made images."""

from __future__ import annotations

import numpy as np
import pytest

from hicatalog.evaluation.baselines import block_reduce, fit_baselines, photometry
from hicatalog.evaluation.robustness import inject_point_sources


def test_block_reduce_matches_a_loop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 3, 23, 23), dtype=np.uint8)  # 23 = 3*7 + 2: 1 px cropped each side
    out = block_reduce(img, 7)
    assert out.shape == (2, 3, 3, 3) and out.dtype == np.float32
    for by in range(3):
        for bx in range(3):
            ref = img[:, :, 1 + 7 * by : 8 + 7 * by, 1 + 7 * bx : 8 + 7 * bx].astype(float).mean(axis=(2, 3))
            assert np.allclose(out[:, :, by, bx], ref)
    with pytest.raises(ValueError, match="smaller than one"):
        block_reduce(img[:, :, :5, :5], 7)


def _galaxy(size=64, sigma=4.0, rgb=(60.0, 80.0, 120.0), sky=10.0):
    yy, xx = np.mgrid[:size, :size]
    prof = np.exp(-((yy - (size - 1) / 2) ** 2 + (xx - (size - 1) / 2) ** 2) / (2 * sigma**2))
    img = np.stack([sky + a * prof for a in rgb])
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_photometry_colour_and_half_light_radius():
    imgs = np.stack([_galaxy(sigma=3.0), _galaxy(sigma=6.0, rgb=(100.0, 80.0, 40.0))])
    ph = photometry(imgs)
    # colour: -2.5 log10(B/G) of the (background-subtracted) light
    assert ph["g_r"][0] == pytest.approx(-2.5 * np.log10(120 / 80), abs=0.02)
    assert ph["g_r"][1] == pytest.approx(-2.5 * np.log10(40 / 80), abs=0.03)
    # half-light radius of a circular Gaussian: sigma * sqrt(2 ln 2)
    assert ph["r50_px"][0] == pytest.approx(3.0 * np.sqrt(2 * np.log(2)), abs=0.6)
    assert ph["r50_px"][1] == pytest.approx(6.0 * np.sqrt(2 * np.log(2)), abs=0.6)
    # the larger galaxy with the similar red peak has the fainter surface brightness
    assert ph["mu_i"][1] > ph["mu_i"][0] - 2.5 * np.log10(100 / 60) - 0.1
    blank = np.zeros((1, 3, 32, 32), np.uint8)
    assert np.isnan(photometry(blank)["g_r"][0])


def test_fit_baselines_zhang_form_recovers_a_colour_law():
    rng = np.random.default_rng(3)
    n = 160
    m = rng.uniform(-1.0, 1.0, n)
    # bluer (more B than G) galaxies are gas-richer: B/G = 10^(0.4 * 0.8 * m)
    imgs = np.stack([
        _galaxy(size=42, sigma=rng.uniform(3, 5), rgb=(70.0, 80.0, 80.0 * 10 ** (0.32 * mi)))
        for mi in m
    ])
    preds = fit_baselines(imgs[:120], m[:120], imgs[120:], seed=0, block=7, n_components=8, n_trees=20)
    assert set(preds) >= {"linear_blocks", "pca_linear", "pca_forest", "zhang2009"}
    for name in ("linear_blocks", "pca_linear", "pca_forest", "zhang2009"):
        assert preds[name].shape == (40,) and np.isfinite(preds[name]).all(), name
    z = preds["zhang2009"]
    assert np.sqrt(np.mean((z - m[120:]) ** 2)) < 0.1 and np.polyfit(m[120:], z, 1)[0] > 0.9


def test_inject_point_sources():
    rng = np.random.default_rng(0)
    img = np.full((3, 64, 64), 20, np.uint8)
    out, pos = inject_point_sources(img, rng, "green")
    assert out.shape == img.shape and out.dtype == np.uint8 and pos.shape == (6, 2)
    assert np.array_equal(out[0], img[0]) and np.array_equal(out[2], img[2])
    for y0, x0 in pos:
        assert out[1, int(round(y0)), int(round(x0))] >= 200
    # radius = half width at half maximum: the added light halves 5 px from an isolated source
    single, p = inject_point_sources(img, np.random.default_rng(1), "red", n_sources=1, amplitude=200)
    y0, x0 = p[0]
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - y0, xx - x0)
    ring = single[0][(r > 4.5) & (r < 5.5)].astype(float) - 20
    assert np.median(ring) == pytest.approx(100, abs=15)
    with pytest.raises(ValueError, match="colour"):
        inject_point_sources(img, rng, "purple")
