"""The magnitude-limited survey mock (``population="survey"``): a uniform draw of the optical
sample at z < 0.06, not balanced; detections carry their measured M, non-detections an ALFALFA
upper limit. The population alone (no rendering) but for one small ``hicatalog mock`` run."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import ks_2samp

from hicatalog.cli import main as cli_main
from hicatalog.mock.effects import Effects
from hicatalog.mock.labels import add_cutout_labels, alfalfa_log_mhi_limit
from hicatalog.mock.samples import Population, generate_population, selection_r_mag
from hicatalog.schemas import read_table, validate_table

N = 600


@pytest.fixture(scope="module")
def survey() -> Population:
    return generate_population(N, seed=3, population="survey")


def _published_limit_flux(log_mstar: np.ndarray, axis_ratio: np.ndarray) -> np.ndarray:
    """log10 S21 (Jy km/s) at which the mock detects a galaxy with probability 0.95, from the
    published relations: W50 = sqrt((2 V sin i)^2 + 20^2) with log V = 2.142 + 0.278 (log M* -
    10.10) (Reyes et al. 2011), cos^2 i = (q^2 - 0.2^2) / (1 - 0.2^2) (Holmberg, q0 = 0.2);
    Haynes et al. (2011) Eq. 4, then 1.6449 (the 95% normal quantile) x the 0.05 dex width."""
    cos2 = np.clip((axis_ratio**2 - 0.04) / 0.96, 0, 1)
    w50 = np.sqrt((2 * 10 ** (2.142 + 0.278 * (log_mstar - 10.10))) ** 2 * (1 - cos2) + 400)
    lw = np.log10(w50)
    return np.where(lw < 2.5, 0.5 * lw - 1.207, lw - 2.457) + 1.6449 * 0.05


def test_survey_is_a_random_magnitude_limited_draw(survey):
    im, t = survey.imaged, survey.tracers
    assert len(im["ra"]) == N and (im["population"] == "survey").all()
    assert len(set(im["object_id"])) == N  # without replacement
    # magnitude-limited: z < 0.06 and r <= 17.77 as selected (dimmed by inclination: on here)
    assert (im["z"] < 0.06).all()
    assert (selection_r_mag(im, Effects()) <= 17.77).all()
    # not balanced: the detected share is the tracers' (z < 0.06) within 4 binomial sigma;
    # a 50/50 draw would be off by ~0.2, far outside it
    pool = t["z"] < 0.06
    p = t["detected"][pool].mean()
    tol = 4 * math.sqrt(p * (1 - p) / N)
    assert 0.15 < p < 0.45 and abs(0.5 - p) > tol
    assert abs(im["detected"].mean() - p) < tol, (im["detected"].mean(), p, tol)
    # uniform: the imaged redshifts and stellar masses are distributed as the pool's
    for col in ("z", "log_mstar"):
        assert ks_2samp(im[col], t[col][pool]).pvalue > 1e-3, col


def test_survey_labels_are_measurements_and_alfalfa_limits(survey):
    im = survey.imaged
    det = im["detected"]
    assert det.any() and (~det).any()
    # detections: their measured M, not a limit
    np.testing.assert_array_equal(im["m_label"][det], im["m_obs"][det])
    assert not im["label_is_limit"][det].any()
    # non-detections: a finite upper limit each, the published limit at the catalogued M*
    u = ~det
    assert im["label_is_limit"][u].all() and np.isfinite(im["m_label"][u]).all()
    lms = im["log_mstar_obs"][u]
    flux = im["m_label"][u] + lms - math.log10(2.356e5) - 2 * np.log10(im["d_l_mpc"][u])
    np.testing.assert_allclose(flux, _published_limit_flux(lms, im["axis_ratio"][u]),
                               atol=2e-4)
    # an upper bound for ~all: the true M is below the limit for >= 95% of them (the catalogued
    # M* in the limit is 0.1 dex off the true one, so a few galaxies at the limit fall above)
    below = im["m_true"][u] <= im["m_label"][u]
    assert below.mean() >= 0.95, below.mean()


def test_survey_limit_is_null_where_it_cannot_be_computed(survey):
    got = alfalfa_log_mhi_limit(np.array([np.nan, 10.0, 10.0, 10.0]),
                                np.array([0.5, np.nan, 0.5, 0.5]),
                                np.array([100.0, 100.0, 0.0, 100.0]))
    assert np.isnan(got[:3]).all() and np.isfinite(got[3])
    im = {k: a.copy() for k, a in survey.imaged.items()}
    u = np.flatnonzero(~im["detected"])
    im["log_mstar_obs"][u[:3]] = np.nan  # no stellar mass
    im["d_l_mpc"][u[3:5]] = np.nan       # no distance
    add_cutout_labels(im, Effects())
    assert np.isnan(im["m_label"][u[:5]]).all() and not im["label_is_limit"][u[:5]].any()
    np.testing.assert_array_equal(im["m_label"][u[5:]], survey.imaged["m_label"][u[5:]])
    assert im["label_is_limit"][u[5:]].all()


def test_survey_without_measured_labels_keeps_m_obs():
    p = generate_population(80, seed=3, population="survey",
                            effects=Effects.chosen(measured_labels=False))
    np.testing.assert_array_equal(p.imaged["m_label"], p.imaged["m_obs"])
    assert not p.imaged["label_is_limit"].any() and (~p.imaged["detected"]).any()


def test_cli_survey_mock_cutouts_truth_and_counts(tmp_path, capsys):
    out = tmp_path / "s"
    assert cli_main(["mock", "--out", str(out), "--population", "survey", "--n", "40",
                     "--image-size", "32", "--engine", "local", "--seed", "2"]) == 0
    capsys.readouterr()
    cut = read_table(str(out / "cutouts"), "cutouts")
    validate_table(cut, "cutouts")
    truth = pq.read_table(out / "truth.parquet").to_pandas()
    c = cut.to_pandas().set_index("object_id").loc[truth.object_id]
    assert (c.dataset == "survey").all() and (truth.population == "survey").all()
    assert (c.upper_limit.to_numpy() == ~truth.detected.to_numpy()).all()
    assert (truth.label_is_limit == ~truth.detected).all()
    np.testing.assert_allclose(c.m_true.to_numpy(), truth.m_label.to_numpy(), atol=1e-6)
    assert truth.p_detect.between(0, 1).all() and truth.m_true.notna().all()
    counts = json.loads((out / "_mock.json").read_text())["survey_counts"]
    assert {k: v for k, v in counts.items() if k != "detection_outliers"} == {
        "detections": int(truth.detected.sum()), "upper_limits": int((~truth.detected).sum()),
        "labels_null": 0}
    assert sum(counts["detection_outliers"].values()) == truth.detected.sum()
