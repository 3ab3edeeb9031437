"""The measured values behind the mock's effect checks (docs/mock.md), side by side with the
clean mock: what the tests of tests/test_mock_realism.py assert within a tolerance, measured
here once on a larger sample and written to JSON.

- the distributions a realistic mock draws (seeing, sky depth, E(B-V), zero points,
  inclination attenuation, companions, blends, close pairs), clean beside realistic;
- pixels: the FWHM of point sources rendered in 8 fields (10 places on the pixel grid each)
  against the recorded seeing (a 2-D Gaussian fitted to the flux image), the pixel noise
  against the recorded sky noise, the g-r and r change of a disc with E(B-V) = 0.1 and seen
  edge-on, against Schlafly & Finkbeiner (2011) and Masters et al. (2010);
- labels: the H I error per S/N bin against the specification (0.20 dex at S/N 6.5, 0.04 at
  high S/N), the M* error, the outlier share and kinds, the Eddington bias near the limit, the
  label error of the ALFALFA-like detections (what training sees).

    .venv/bin/python benchmarks/bench_mock_checks.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from dataclasses import replace

import numpy as np
from _results import write_result  # benchmarks/_results.py

from hicatalog.mock.effects import Effects
from hicatalog.mock.instruments import SURVEYS
from hicatalog.mock.render import render_galaxy_flux
from hicatalog.mock.survey import plan_mock

SDSS = SURVEYS["sdss"]
DISC = dict(tracer_index=7, r_mag=13.0, d_a_mpc=80.0, re_disc_kpc=3.0, bt=0.0, axis_ratio=1.0,
            cos_incl=1.0, pa_deg=30.0, pitch_deg=20.0, gr_disc=0.5, arm_frac=0.0,
            knot_frac=0.0, knots_mean=0.0, seeing_fwhm_arcsec=1.4, sky_noise_factor=1.0,
            zp_red_mag=0.0, zp_r_mag=0.0, zp_g_mag=0.0, ebv=0.0, tidal=False, companions=[])


def _flux(params: dict, effects: Effects, size: int = 101) -> np.ndarray:
    rng = np.random.default_rng([0, int(params["tracer_index"])])
    return render_galaxy_flux(params, SDSS, size, rng, effects, seed=0).astype(np.float64)


def _fitted_fwhm(band: np.ndarray, half: int = 12) -> float:
    """FWHM (px) of a circular 2-D Gaussian plus a constant fitted around the peak."""
    from scipy.optimize import curve_fit

    cy, cx = np.unravel_index(np.argmax(band), band.shape)
    cut = band[cy - half:cy + half + 1, cx - half:cx + half + 1]
    yy, xx = np.mgrid[:cut.shape[0], :cut.shape[1]]

    def gauss(xy, amp, x0, y0, sig, c):
        return amp * np.exp(-((xy[0] - x0) ** 2 + (xy[1] - y0) ** 2) / (2 * sig**2)) + c

    p, _ = curve_fit(gauss, (xx.ravel(), yy.ravel()), cut.ravel(),
                     p0=(cut.max(), half, half, 2.0, 0.0))
    return 2.3548 * abs(p[3])


def _pct(a: np.ndarray) -> dict:
    a = np.asarray(a, float)
    return {f"p{q}": float(np.nanpercentile(a, q)) for q in (2.5, 16, 50, 84, 97.5)}


def distributions(plan) -> dict:
    o, im = plan.obs, plan.pop.imaged
    return {
        "n": int(len(im["ra"])),
        "seeing_fwhm_arcsec": _pct(o["seeing_fwhm_arcsec"]),
        "depth_r_mag": _pct(o["depth_r_mag"]),
        "sky_noise_factor": _pct(o["sky_noise_factor"]),
        "ebv": _pct(o["ebv"]),
        "zp_g_minus_r_mag_std": float(np.std(o["zp_g_mag"] - o["zp_r_mag"])),
        "a_r_incl_mag": _pct(im["a_r_incl"]),
        "cos_incl_mean_of_imaged": float(np.mean(im["cos_incl"])),
        "share_with_companion_in_cutout": float(np.mean(o["n_companions"] > 0)),
        "share_blend": float(np.mean(o["blend"])),
        "share_close_pair_tidal": float(np.mean(o["tidal"])),
    }


def pixels(plan) -> dict:
    seeing = plan.obs["seeing_fwhm_arcsec"]
    rows = np.argsort(seeing)[np.linspace(0, len(seeing) - 1, 8).astype(int)]
    fwhm = []
    point = {**DISC, "re_disc_kpc": 0.001, "r_mag": 10.0}  # bright: stars and noise negligible
    only = Effects.none()
    for k in rows:  # each field: 10 points at random places on the pixel grid
        imgs = [_flux({**point, "tracer_index": i, "seeing_fwhm_arcsec": seeing[k]},
                      replace(only, seeing=True)) for i in range(10)]
        r = np.array([_fitted_fwhm(img[1]) for img in imgs]) * SDSS.pixel_scale
        g = np.array([_fitted_fwhm(img[2]) for img in imgs]) * SDSS.pixel_scale
        fwhm.append({"recorded_arcsec": float(seeing[k]),
                     "measured_r_arcsec_mean": float(r.mean()),
                     "measured_r_arcsec_range": [float(r.min()), float(r.max())],
                     "measured_g_over_r": float(g.mean() / r.mean())})
    noise = []
    rec = plan.obs["sky_noise_r_nmgy"]
    for k in (int(np.argmin(rec)), int(np.median(np.argsort(rec))), int(np.argmax(rec))):
        band = _flux({**DISC, "r_mag": 40.0, "sky_noise_factor": plan.obs["sky_noise_factor"][k]},
                     replace(only, sky_noise=True), size=160)[1]
        noise.append({"recorded_nmgy": float(rec[k]),
                      "measured_nmgy": float(1.4826 * np.median(np.abs(band - np.median(band))))})

    def colour(img, a=2, b=1):
        return -2.5 * math.log10(img[a].sum() / img[b].sum())

    clear, dusty = (_flux({**DISC, "ebv": e}, replace(only, extinction=True)) for e in (0.0, 0.1))
    face, edge = (_flux({**DISC, "axis_ratio": q}, replace(only, inclination=True)) for q in (1.0, 0.2))
    return {
        "point_source_fwhm": fwhm,
        "kolmogorov_g_over_r_expected": (468.6 / 616.5) ** -0.2,
        "sky_noise": noise,
        "extinction_ebv_0.1": {"d_gr_measured": colour(dusty) - colour(clear),
                               "d_gr_expected_sf11": 0.1 * (3.303 - 2.285),
                               "d_r_measured": -2.5 * math.log10(dusty[1].sum() / clear[1].sum()),
                               "d_r_expected_sf11": 0.2285},
        "edge_on_disc": {"d_gr_measured": colour(edge) - colour(face),
                         "d_gr_expected_masters": 0.1,
                         "d_r_measured": -2.5 * math.log10(edge[1].sum() / face[1].sum()),
                         "d_r_expected_masters": 0.5},
    }


def labels(plan) -> dict:
    t, im = plan.pop.tracers, plan.pop.imaged
    k = 6.5 * math.sqrt(0.20**2 - 0.04**2)
    clean = t["outlier_kind"] == "none"
    err = t["log_mhi_obs"] - t["log_mhi"]
    bins = []
    for lo, hi in ((6.5, 10), (10, 20), (20, 50), (50, 300), (300, 1e9)):
        sel = clean & (t["snr_hi"] >= lo) & (t["snr_hi"] < hi)
        spec = math.sqrt(np.mean(0.04**2 + (k / t["snr_hi"][sel]) ** 2))
        bins.append({"snr": [lo, hi], "n": int(sel.sum()), "std_measured": float(np.std(err[sel])),
                     "std_specified": spec})
    det = t["detected"]
    margin = t["log_s21"] - t["log_s21_lim"]
    near = det & (np.abs(margin) < 0.1)
    a = im["population"] == "alfalfa"
    kinds, counts = np.unique(t["outlier_kind"][det], return_counts=True)
    d = (im["m_label"] - im["m_true"])[a]
    return {
        "hi_error_by_snr": bins,
        "mstar_error_std": float(np.std(t["log_mstar_obs"] - t["log_mstar"])),
        "outliers_among_detected_tracers": {str(k_): int(c) for k_, c in zip(kinds, counts, strict=True)},
        "outlier_share_set": plan.args.outlier_fraction,
        "outlier_share_measured": float(np.mean(t["outlier_kind"][det] != "none")),
        "eddington_bias_near_limit_dex": float(np.mean(t["log_s21_obs"][near] - t["log_s21"][near])),
        "alfalfa_snr": _pct(im["snr_hi"][a]),
        "alfalfa_label_error": {"std": float(np.std(d)), "mean": float(np.mean(d)),
                                "std_without_outliers": float(np.std(d[im["outlier_kind"][a] == "none"]))},
        "xgass_upper_limits_share": float(np.mean(im["label_is_limit"][im["population"] == "xgass"])),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--n", type=int, default=6000)
    args = ap.parse_args()
    result: dict = {"benchmark": "mock_checks", "n": args.n, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        for realism in ("clean", "realistic"):
            plan = plan_mock(out=tmp, n=args.n, seed=1, realism=realism)
            result[realism] = {"distributions": distributions(plan)}
            if realism == "realistic":
                result[realism]["pixels"] = pixels(plan)
                result[realism]["labels"] = labels(plan)
            for shift in ("legacy", "degraded"):
                if realism == "realistic":
                    sp = plan_mock(out=tmp, n=args.n, seed=1, shifted_imaging=shift)
                    result[realism][f"shifted_{shift}"] = {
                        "seeing_fwhm_arcsec": _pct(sp.obs["seeing_fwhm_arcsec"]),
                        "depth_r_mag": _pct(sp.obs["depth_r_mag"])}
    write_result(args.out, "bench_mock_checks", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
