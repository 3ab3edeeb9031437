"""The mock's real difficulties (issue 24, docs/mock.md), each checked where it shows: in the
rendered pixels (flux images before the 8-bit stretch) or in the labels, against the published
numbers written out here, never against the code's own formula.

Seconds each: single galaxies rendered at small sizes, populations of a few thousand tracers.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import curve_fit

from hicatalog.cli import main
from hicatalog.config import MockConfig
from hicatalog.errors import ConfigError
from hicatalog.mock.effects import EFFECTS, Effects
from hicatalog.mock.instruments import SURVEYS
from hicatalog.mock.render import render_galaxy_flux
from hicatalog.mock.samples import generate_population
from hicatalog.mock.survey import plan_mock

# ---------------------------------------------------------------- published reference numbers
#: Masters et al. (2010): extinction from face-on to edge-on, mag (g, r).
MASTERS_EDGE_ON = {"g": 0.6, "r": 0.5}
#: Schlafly & Finkbeiner (2011), R_V = 3.1: A/E(B-V) for SDSS g, r.
SF11 = {"g": 3.303, "r": 2.285}
#: Kolmogorov seeing ~ wavelength^-0.2; SDSS effective wavelengths (nm, Fukugita et al. 1996).
KOLMOGOROV, LAMBDA = -0.2, {"g": 468.6, "r": 616.5, "i": 748.1}
#: The H I error anchors (issue 24): 0.20 dex at S/N 6.5 (ALFALFA Code 1), 0.04 at high S/N.
HI_ERR_CODE1, CODE1, HI_FLOOR = 0.20, 6.5, 0.04
#: xGASS limits (Catinella et al. 2018): M_HI/M* 2% below log M* 10, max(10^8.7, 1.5% M*) above.


def _hi_err_reference(snr: np.ndarray) -> np.ndarray:
    k = CODE1 * math.sqrt(HI_ERR_CODE1**2 - HI_FLOOR**2)
    return np.sqrt(HI_FLOOR**2 + (k / snr) ** 2)


SDSS = SURVEYS["sdss"]
G, R = 2, 1  # band index of g and r in the (i, r, g) frame

#: A bright galaxy of the clean renderer's parameters (no knots: they are random draws).
DISC = dict(tracer_index=1, r_mag=13.0, d_a_mpc=80.0, re_disc_kpc=3.0, bt=0.0, axis_ratio=1.0,
            cos_incl=1.0, pa_deg=30.0, pitch_deg=20.0, gr_disc=0.5, arm_frac=0.0,
            knot_frac=0.0, knots_mean=0.0, seeing_fwhm_arcsec=1.4, sky_noise_factor=1.0,
            ebv=0.0, tidal=False, companions=[])


def _flux(params: dict, effects: Effects, size: int = 96, spec=SDSS, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, int(params["tracer_index"])])
    return render_galaxy_flux(params, spec, size, rng, effects, seed=seed).astype(np.float64)


def _centre(tracer_index: int, size: int, seed: int = 0) -> tuple[float, float]:
    """Where the renderer puts the galaxy: its first two draws jitter the frame's centre."""
    rng = np.random.default_rng([seed, tracer_index])
    return (size - 1) / 2 + rng.uniform(-0.5, 0.5), (size - 1) / 2 + rng.uniform(-0.5, 0.5)


#: A point source: an unresolved disc (scale length 0.18 px).
POINT = {**DISC, "re_disc_kpc": 0.001, "r_mag": 14.0}


def _only(**on: bool) -> Effects:
    return replace(Effects.none(), **on)


def _colour(img: np.ndarray, a: int, b: int) -> float:
    """-2.5 log10 of the total flux ratio of bands a and b over the whole frame."""
    return -2.5 * math.log10(img[a].sum() / img[b].sum())


def _fwhm_px(band: np.ndarray, half: int = 12) -> float:
    """FWHM (px) of a circular 2-D Gaussian plus a constant fitted around the peak."""
    cy, cx = np.unravel_index(np.argmax(band), band.shape)
    cut = band[cy - half:cy + half + 1, cx - half:cx + half + 1]
    yy, xx = np.mgrid[:cut.shape[0], :cut.shape[1]]

    def gauss(xy, amp, x0, y0, sig, c):
        x, y = xy
        return amp * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sig**2)) + c

    p, _ = curve_fit(gauss, (xx.ravel(), yy.ravel()), cut.ravel(),
                     p0=(cut.max(), half, half, 2.0, 0.0))
    return 2 * math.sqrt(2 * math.log(2)) * abs(p[3])


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """A realistic mock of 600 SDSS cutouts, planned (population, observing, companions)."""
    return plan_mock(out=str(tmp_path_factory.mktemp("real")), n=600, seed=3)


@pytest.fixture(scope="module")
def tracers():
    """A realistic population: 3000 imaged galaxies, ~7,500 tracers."""
    return generate_population(3000, seed=21)


# ------------------------------------------------------------------------------- the pixels
def test_point_source_fwhm_tracks_the_recorded_seeing(plan):
    """Point sources rendered with each field's recorded seeing have that FWHM (within 10%,
    averaged over where they fall on the pixel grid), and the g band's is wider by
    Kolmogorov's (468.6 / 616.5)^-0.2."""
    seeing = plan.obs["seeing_fwhm_arcsec"]
    rows = np.argsort(seeing)[np.linspace(0, len(seeing) - 1, 4).astype(int)]
    assert seeing[rows[-1]] > 1.4 * seeing[rows[0]]  # the fields do differ
    for k in rows:
        fwhm_r, fwhm_g = [], []
        for index in range(6):  # six sub-pixel positions of the point
            img = _flux({**POINT, "tracer_index": index, "seeing_fwhm_arcsec": seeing[k]},
                        _only(seeing=True), size=97)
            fwhm_r.append(_fwhm_px(img[R]))
            fwhm_g.append(_fwhm_px(img[G]))
        want = seeing[k] / SDSS.pixel_scale
        assert abs(np.mean(fwhm_r) / want - 1) < 0.10, (seeing[k], fwhm_r, want)
        ratio = np.mean(fwhm_g) / np.mean(fwhm_r)
        assert abs(ratio - (LAMBDA["g"] / LAMBDA["r"]) ** KOLMOGOROV) < 0.03, ratio
    # the clean mock: one PSF of 1.4" whatever the recorded seeing
    img = _flux({**POINT, "seeing_fwhm_arcsec": 2.5}, Effects.none(), size=97)
    assert abs(_fwhm_px(img[R]) / (1.4 / SDSS.pixel_scale) - 1) < 0.10


def test_sky_noise_tracks_the_recorded_noise(plan):
    """The pixel noise of an empty cutout (robust std: stars left out) is the recorded
    per-pixel sky noise of its field, within 10%."""
    rec = plan.obs["sky_noise_r_nmgy"]
    lo, hi = int(np.argmin(rec)), int(np.argmax(rec))
    assert rec[hi] > 1.3 * rec[lo]
    for k in (lo, hi):
        empty = {**DISC, "r_mag": 40.0, "sky_noise_factor": plan.obs["sky_noise_factor"][k]}
        band = _flux(empty, _only(sky_noise=True), size=128)[R]
        robust_std = 1.4826 * np.median(np.abs(band - np.median(band)))
        assert abs(robust_std / rec[k] - 1) < 0.10, (robust_std, rec[k])


def test_extinction_reddens_and_dims_as_schlafly_finkbeiner():
    """E(B-V) = 0.1 dims r by 0.2285 mag and reddens g-r by 0.1018 mag (within 10%)."""
    clear = _flux(DISC, _only(extinction=True))
    dusty = _flux({**DISC, "ebv": 0.1}, _only(extinction=True))
    d_gr = _colour(dusty, G, R) - _colour(clear, G, R)
    d_r = -2.5 * math.log10(dusty[R].sum() / clear[R].sum())
    assert abs(d_gr / (0.1 * (SF11["g"] - SF11["r"])) - 1) < 0.10, d_gr
    assert abs(d_r / (0.1 * SF11["r"]) - 1) < 0.10, d_r


def test_zero_points_shift_colours_by_the_recorded_errors(plan):
    """Per-field zero points scatter by ~1% (SDSS ubercalibration, Padmanabhan et al. 2008) and
    shift the rendered g-r by the recorded zp_g - zp_r."""
    obs = plan.obs
    zp = np.concatenate([obs["zp_red_mag"], obs["zp_r_mag"], obs["zp_g_mag"]])
    fields = np.unique(np.round(obs["zp_r_mag"], 9)).size
    assert fields > 30 and 0.007 < np.std(np.unique(np.round(zp, 9))) < 0.013
    k = int(np.argmax(np.abs(obs["zp_g_mag"] - obs["zp_r_mag"])))
    cal = {c: obs[c][k] for c in ("zp_red_mag", "zp_r_mag", "zp_g_mag")}
    off = _flux(DISC, Effects.none())
    on = _flux({**DISC, **cal}, _only(calibration=True))
    d_gr = _colour(on, G, R) - _colour(off, G, R)
    assert abs(d_gr - (cal["zp_g_mag"] - cal["zp_r_mag"])) < 0.002, (d_gr, cal)


def test_observing_columns_are_the_documented_ones(plan):
    from hicatalog.mock.columns import OBSERVING_COLUMNS

    assert list(plan.obs) == [c.name for c in OBSERVING_COLUMNS]
    assert {k: str(a.dtype) for k, a in plan.obs.items()} == {c.name: c.dtype
                                                              for c in OBSERVING_COLUMNS}


@pytest.mark.parametrize("axis_ratio, share", [(0.2, 1.0), (0.5, math.log10(2) / math.log10(5))])
def test_inclined_discs_redder_by_masters(axis_ratio, share):
    """A pure disc at the same s (same colour, size, flux) seen at axis ratio q is redder in g-r
    than face-on by Masters et al.'s (0.6 - 0.5) mag times log(1/q) / log(1/0.2), and dimmer
    in r by 0.5 mag times the same, within 20%."""
    face = _flux(DISC, _only(inclination=True))
    incl = _flux({**DISC, "axis_ratio": axis_ratio, "cos_incl": 0.0}, _only(inclination=True))
    d_gr = _colour(incl, G, R) - _colour(face, G, R)
    d_r = -2.5 * math.log10(incl[R].sum() / face[R].sum())
    want_gr = (MASTERS_EDGE_ON["g"] - MASTERS_EDGE_ON["r"]) * share
    assert abs(d_gr / want_gr - 1) < 0.20, (d_gr, want_gr)
    assert abs(d_r / (MASTERS_EDGE_ON["r"] * share) - 1) < 0.20, d_r
    # without the effect, inclination changes the shape, not the colour
    clean = _flux({**DISC, "axis_ratio": axis_ratio}, Effects.none())
    assert abs(_colour(clean, G, R) - _colour(_flux(DISC, Effects.none()), G, R)) < 0.01


def test_edge_on_galaxies_of_the_mock_are_redder_at_fixed_s(plan, tmp_path):
    """In the rendered cutouts of one mock, at fixed star-formation state s: the 8-bit images of
    edge-on discs (b/a < 0.3) are redder (R/B) than face-on ones (b/a > 0.8), and not in the
    same mock without the inclination effect."""
    from hicatalog.cutouts.decode import decode_jpeg
    from hicatalog.mock.render import render_cutout

    def redness(effects):
        im = plan.pop.imaged
        sf = (im["sf_state"] > -0.5) & (im["sf_state"] < 1.5)
        out = {}
        for name, sel in (("edge", sf & (im["axis_ratio"] < 0.3)),
                          ("face", sf & (im["axis_ratio"] > 0.8))):
            vals = []
            for k in np.flatnonzero(sel)[:25]:
                row = plan.table.slice(int(k), 1).to_pylist()[0]
                a = decode_jpeg(render_cutout(row, SDSS, 96, 3, effects)).astype(float)
                c = a[40:56, 40:56]
                vals.append(np.log((c[..., 0].sum() + 1) / (c[..., 2].sum() + 1)))
            out[name] = np.median(vals)
        return out["edge"] - out["face"]

    with_incl = redness(_only(inclination=True))
    without = redness(Effects.none())
    assert with_incl > without + 0.05, (with_incl, without)


def test_companions_are_drawn_where_the_tracers_are(plan):
    """The light a companion adds is centred where astropy puts the tracer on the sky (north
    up, east left), within 1.5 px."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    im, t = plan.pop.imaged, plan.pop.tracers
    comps = plan.table.column("companions").to_pylist()
    size, scale = plan.size, SDSS.pixel_scale
    checked = 0
    for k in np.flatnonzero(plan.obs["n_companions"] > 0):
        row = plan.table.slice(int(k), 1).to_pylist()[0]
        for c in comps[k]:
            host = SkyCoord(im["ra"][k] * u.deg, im["dec"][k] * u.deg)
            other = SkyCoord(t["ra"][c["tracer_index"]] * u.deg, t["dec"][c["tracer_index"]] * u.deg)
            dlon, dlat = host.spherical_offsets_to(other)
            xc, yc = _centre(int(row["tracer_index"]), size)
            x = xc - dlon.to_value(u.arcsec) / scale
            y = yc - dlat.to_value(u.arcsec) / scale
            if not (10 < x < size - 10 and 10 < y < size - 10):
                continue
            alone = _flux({**row, "companions": [], "tidal": False}, _only(neighbours=True), size)
            smooth = {**c, "knot_frac": 0.0}  # knots are random, off-centre light
            pair = _flux({**row, "companions": [smooth], "tidal": False}, _only(neighbours=True),
                         size)
            diff = (pair - alone)[R]
            py, px = np.unravel_index(np.argmax(diff), diff.shape)
            yy, xx = np.mgrid[:size, :size]
            w = np.where(np.hypot(xx - px, yy - py) < 6, np.clip(diff, 0, None), 0)
            cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
            assert math.hypot(cx - x, cy - y) < 1.5, (cx, cy, x, y)
            checked += 1
    assert checked >= 3


def test_tidal_tails_hold_their_share_of_the_light():
    """A close pair's tails add 5% of the galaxy's r light, outside its half-light radius."""
    alone = _flux(DISC, _only(neighbours=True), size=128)
    tails = _flux({**DISC, "tidal": True}, _only(neighbours=True), size=128)
    extra = (tails - alone)[R]
    assert abs(extra.sum() / alone[R].sum() - 0.05) < 0.005
    re_px = 3.0 / (80.0 * 1e3 * math.radians(SDSS.pixel_scale / 3600))
    yy, xx = np.mgrid[:128, :128]
    inside = np.hypot(xx - 63.5, yy - 63.5) < re_px
    assert extra[inside].sum() < 0.1 * extra.sum()


def test_neighbour_flags_in_the_truth(plan):
    """The mock has companions, blends and close pairs; a blend is closer than any other
    companion in its cutout would be, and every flagged cutout's nearest companion is inside it."""
    obs = plan.obs
    assert (obs["n_companions"] > 0).mean() > 0.01
    assert obs["tidal"].any() and obs["blend"].any()
    inside = obs["n_companions"] > 0
    assert np.isfinite(obs["companion_sep_arcsec"][inside]).all()
    assert np.isnan(obs["companion_sep_arcsec"][~inside]).all()
    half_diag = plan.size * SDSS.pixel_scale / math.sqrt(2)
    assert (obs["companion_sep_arcsec"][inside] <= half_diag).all()


# ------------------------------------------------------------------------------- the labels
def test_label_noise_per_snr_bin_is_as_specified(tracers):
    """std(log M_HI measured - true) in bins of H I S/N is the error model anchored at 0.20 dex
    at S/N 6.5 and 0.04 at high S/N (within 10%); M* errors are 0.10 dex."""
    t = tracers.tracers
    clean = t["outlier_kind"] == "none"
    err = t["log_mhi_obs"] - t["log_mhi"]
    for lo, hi in ((6.5, 10), (10, 20), (20, 50), (50, 300)):
        sel = clean & (t["snr_hi"] >= lo) & (t["snr_hi"] < hi)
        assert sel.sum() > 150, (lo, sel.sum())
        want = math.sqrt(np.mean(_hi_err_reference(t["snr_hi"][sel]) ** 2))
        assert abs(np.std(err[sel]) / want - 1) < 0.10, (lo, np.std(err[sel]), want)
    assert abs(np.std(t["log_mstar_obs"] - t["log_mstar"]) / 0.10 - 1) < 0.05
    # the detection is decided on the measured flux: near the limit it is biased high
    det, margin = t["detected"], t["log_s21"] - t["log_s21_lim"]
    near = det & (np.abs(margin) < 0.1)
    assert np.mean(t["log_s21_obs"][near] - t["log_s21"][near]) > 0.01


@pytest.mark.parametrize("fraction", [0.02, 0.06])
def test_outlier_fraction_is_as_set(fraction):
    """The share of detections with an outlier label is the one set; a confused label has the
    flux of a neighbour inside the Arecibo beam (3.5') at an overlapping velocity added, a
    wrong counterpart carries a detected neighbour's H I."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    t = generate_population(1500, seed=5, outlier_fraction=fraction).tracers
    det = t["detected"]
    kind = t["outlier_kind"]
    n_det = int(det.sum())
    got = int((kind[det] != "none").sum())
    assert abs(got - fraction * n_det) < 3 * math.sqrt(n_det * fraction * (1 - fraction)) + 1
    assert (kind[~det] == "none").all()
    pos = SkyCoord(t["ra"] * u.deg, t["dec"] * u.deg)
    for i in np.flatnonzero(kind != "none"):
        j = t["outlier_partner"][i]
        assert pos[i].separation(pos[j]).arcmin < 3.5
        if kind[i] == "confused":
            assert 3e5 * abs(t["z"][i] - t["z"][j]) / (1 + t["z"][i]) < (t["w50"][i] + t["w50"][j]) / 2
        else:
            assert det[j]
    confused = kind == "confused"
    assert confused.any() and (kind == "wrong_counterpart").any()


def test_confusion_adds_the_neighbours_flux():
    """Without noise, a confused label is exactly the galaxy's H I plus the beam-weighted H I
    of its partner at the galaxy's distance (Gaussian beam of 3.5' FWHM), when it has one."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    t = generate_population(1500, seed=5, outlier_fraction=0.2,
                            effects=_only(label_outliers=True)).tracers
    conf = np.flatnonzero(t["outlier_kind"] == "confused")
    assert conf.size > 5
    for i in conf:
        j = t["outlier_partner"][i]
        pos_i = SkyCoord(t["ra"][i] * u.deg, t["dec"][i] * u.deg)
        pos_j = SkyCoord(t["ra"][j] * u.deg, t["dec"][j] * u.deg)
        gain = math.exp(-4 * math.log(2) * (pos_i.separation(pos_j).arcmin / 3.5) ** 2)
        s_j = 10 ** t["log_s21"][j]
        added = 10 ** t["log_mhi_obs"][i] - 10 ** t["log_mhi"][i]
        # at least the partner's share (other overlapping neighbours may add more)
        assert added >= 0.999 * gain * s_j * 2.356e5 * t["d_l_mpc"][i] ** 2


def test_cutout_labels_are_what_a_survey_measures(tracers):
    """Non-detections carry no M; an xGASS-like galaxy below xGASS's limit (Catinella et al.
    2018) carries the limit as an upper limit; detections their measured M."""
    im = tracers.imaged
    pop = im["population"]
    assert np.isnan(im["m_label"][pop == "nondetections"]).all()
    det = pop == "alfalfa"
    np.testing.assert_array_equal(im["m_label"][det], im["m_obs"][det])
    xg = pop == "xgass"
    lms = im["log_mstar_obs"]
    limit = np.where(lms < 10, lms + math.log10(0.02),
                     np.maximum(8.7, lms + math.log10(0.015)))
    lim_rows = im["label_is_limit"]
    assert lim_rows.any() and (lim_rows <= xg).all()
    np.testing.assert_allclose(im["m_label"][lim_rows], (limit - lms)[lim_rows])
    assert (im["log_mhi_obs"][lim_rows] < limit[lim_rows]).all()
    measured = xg & ~lim_rows
    assert (im["detected"][measured] | (im["log_mhi_obs"][measured] >= limit[measured])).all()


def test_inclination_dims_the_optical_selection():
    """With the inclination effect the r-band limit drops edge-on discs first: the tracers'
    cos(i) is no longer uniform."""
    on = generate_population(800, seed=2, effects=_only(inclination=True)).tracers
    off = generate_population(800, seed=2, effects=Effects.none()).tracers
    assert abs(np.mean(off["cos_incl"]) - 0.5) < 0.02
    assert np.mean(on["cos_incl"]) > np.mean(off["cos_incl"]) + 0.02


# ---------------------------------------------------------------- the switches, the shifted survey
def test_each_effect_switches_on_its_own():
    names = ("label_noise", "label_outliers", "measured_labels", "seeing", "sky_noise",
             "calibration", "extinction", "inclination", "neighbours")
    assert EFFECTS == names and all(n in MockConfig.model_fields for n in names)
    assert all(Effects.chosen().as_dict().values())
    assert not any(Effects.chosen("clean").as_dict().values())
    for name in names:
        off = Effects.chosen("realistic", **{name: False}).as_dict()
        assert [k for k, v in off.items() if not v] == [name]
        on = Effects.chosen("clean", **{name: True}).as_dict()
        assert [k for k, v in on.items() if v] == [name]
        assert Effects.chosen("clean", **{name: None}) == Effects.none()
    with pytest.raises(ConfigError, match="unknown effects"):
        Effects.chosen(seeng=False)
    # a shift to the imaging itself: a parameter error, named by its flags on the command line
    assert main(["mock", "--out", "x", "--shifted-imaging", "sdss"]) == 2


def test_cli_switches(tmp_path, capsys):
    import json

    import pyarrow.parquet as pq

    from hicatalog.cli import main as cli_main

    out = tmp_path / "m"
    assert cli_main(["mock", "--out", str(out), "--n", "40", "--image-size", "48", "--engine",
                     "local", "--no-seeing", "--no-label-noise", "--outlier-fraction", "0"]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "_mock.json").read_text())
    assert manifest["effects"]["seeing"] is False and manifest["effects"]["extinction"] is True
    truth = pq.read_table(out / "truth.parquet").to_pandas()
    assert (truth.seeing_fwhm_arcsec == np.float32(1.4)).all()
    assert (truth.log_mhi_err == 0).all() and (truth.outlier_kind == "none").all()
    assert (truth.ebv > 0).all()


def test_shifted_imaging_renders_the_same_galaxies_otherwise(tmp_path):
    """The legacy-like survey at SDSS geometry: the same galaxies and labels, other images,
    sharper and deeper fields, still 'sdss' cutouts of 0.396"/px; the degraded one blurrier."""
    import pyarrow.parquet as pq

    from hicatalog.cutouts.decode import decode_jpeg
    from hicatalog.mock.survey import generate_mock

    runs = {}
    for shift in ("none", "legacy", "degraded"):
        runs[shift] = generate_mock(str(tmp_path / shift), n=40, seed=4, image_size=64,
                                     engine="local", shifted_imaging=shift)
    cut = {k: pq.read_table(v["cutouts"]) for k, v in runs.items()}
    truth = {k: pq.read_table(v["truth"]).to_pandas() for k, v in runs.items()}
    base = truth["none"]
    for k in ("legacy", "degraded"):
        assert cut[k]["object_id"].to_pylist() == cut["none"]["object_id"].to_pylist()
        np.testing.assert_array_equal(truth[k].m_true, base.m_true)
        np.testing.assert_array_equal(truth[k].m_label.fillna(9), base.m_label.fillna(9))
        assert set(cut[k]["survey"].to_pylist()) == {"sdss"}
        assert decode_jpeg(cut[k]["image"][0].as_py()).shape == (64, 64, 3)
        assert cut[k]["image"][0] != cut["none"]["image"][0]
        assert set(truth[k].imaging) == {f"{k}@sdss"}
    assert set(base.imaging) == {"sdss"}
    assert truth["legacy"].seeing_fwhm_arcsec.median() < base.seeing_fwhm_arcsec.median()
    assert truth["legacy"].depth_r_mag.median() > base.depth_r_mag.median() + 1.0
    assert truth["degraded"].seeing_fwhm_arcsec.median() > 1.3 * base.seeing_fwhm_arcsec.median()
    assert truth["degraded"].depth_r_mag.median() < base.depth_r_mag.median() - 0.5
