"""The survey-wide columns of the catalog and their calibration (issue 27): intervals within
groups, p_detect, stellar-mass columns and flags. Expected values by hand or from the
synthetic problems' construction."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from hicatalog.catalog.calibrate import (
    CALIBRATION_FILE,
    fit_calibration,
    fit_p_detect,
    load_calibration,
    survey_columns,
)
from hicatalog.errors import InputError, ModelError


def _pred(**kw):
    base = {"m_pred": np.array([0.0, -1.0, np.nan]), "m_pred_err": np.array([0.3, 0.5, np.nan]),
            "p_cnn": np.array([0.9, 0.1, np.nan]), "z": np.array([0.02, np.nan, 0.03]),
            "one_plus_delta5": np.array([1.0, 3.0, np.nan])}
    base.update(kw)
    return base


def test_without_calibration_the_interval_is_gaussian_and_every_row_says_so():
    out = survey_columns(_pred(log_mstar=np.array([10.0, np.nan, 9.0])), None, mstar_err_dex=0.4)
    assert out["m_lo68"][0] == pytest.approx(-0.3 * 0.9945, rel=1e-3)
    assert out["m_hi95"][1] == pytest.approx(-1.0 + 1.96 * 0.5, rel=1e-3)
    assert out["m_pred_err"][0] == pytest.approx(0.3, rel=1e-3)
    # log M_HI = M + log M*, error sqrt(0.3^2 + 0.4^2) = 0.5; mean 10^(10 + ln10/2 * 0.25)
    assert out["log_mhi_pred"][0] == pytest.approx(10.0)
    assert out["log_mhi_pred_err"][0] == pytest.approx(0.5, rel=1e-3)
    assert math.log10(out["mhi_expect"][0]) == pytest.approx(10.0 + 0.5 * math.log(10) * 0.25, rel=1e-4)
    assert np.isnan(out["log_mhi_pred"][1]) and np.isnan(out["mhi_expect"][1])  # no M*: null
    assert np.isnan(out["p_detect"]).all()
    assert out["flags"][0] == "interval_gaussian,no_p_detect"
    assert out["flags"][1] == "interval_gaussian,no_p_detect,no_mstar"
    assert out["flags"][2] is None and all(np.isnan(out[c][2]) for c in ("m_pred", "m_lo95"))


def test_p_detect_recovers_a_known_logistic_dependence_on_p_cnn_and_distance():
    rng = np.random.default_rng(0)
    n = 20000
    p_cnn = rng.uniform(0.01, 0.99, n)
    z = rng.uniform(0.005, 0.06, n)
    logit = -1.0 + 0.8 * np.log(p_cnn / (1 - p_cnn)) - 2.0 * (np.log10(z) + 1.5)
    detected = rng.uniform(size=n) < 1 / (1 + np.exp(-logit))
    rec = fit_p_detect(p_cnn, z, detected)
    # the coefficient on logit p_cnn; the z terms are near-collinear over 0.005-0.06, so the
    # fitted probabilities are compared, not their coefficients
    assert rec["coef"][1] == pytest.approx(0.8, abs=0.06)
    x = np.stack([np.ones(n), np.log(p_cnn / (1 - p_cnn)), np.log10(z), np.log10(z) ** 2], 1)
    fitted = 1 / (1 + np.exp(-x @ np.array(rec["coef"])))
    diff = np.abs(fitted - 1 / (1 + np.exp(-logit)))
    assert diff.mean() < 0.01 and diff.max() < 0.06, (diff.mean(), diff.max())
    assert rec["detection_rate"] == pytest.approx(detected.mean())
    with pytest.raises(InputError, match="at least 20 detected and undetected"):
        fit_p_detect(p_cnn[:100], z[:100], np.zeros(100, bool))


def _calibration_table(n, seed):
    """Scores N(0, 1), but twice as wide and shifted by +0.5 sd where p_cnn < 0.4 (two
    quintile bins of p_cnn: a group the network's error bar gets wrong)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    mu = rng.normal(0, 0.5, n)
    sd = np.full(n, 0.3)
    bad = p < 0.4
    y = mu + sd * np.where(bad, 0.5 + 2.0 * rng.standard_normal(n), rng.standard_normal(n))
    return p, mu, sd, y, bad


def test_calibrated_intervals_cover_within_the_group_the_error_bar_gets_wrong(tmp_path):
    p, mu, sd, y, bad = _calibration_table(8000, 1)
    lim = np.zeros(len(p), bool)
    table = pa.table({"status": ["ok"] * len(p), "m_pred": mu, "m_pred_err": sd, "m_true": y,
                      "upper_limit": lim, "p_cnn": p, "z": np.full(len(p), 0.03),
                      "detected": p > 0.5})
    cal = fit_calibration(table, n_bins=5)
    assert cal["intervals"]["variables"] == ["p_cnn", "z"]  # the group variables it was given
    p2, mu2, sd2, y2, bad2 = _calibration_table(8000, 2)
    out = survey_columns({"m_pred": mu2, "m_pred_err": sd2, "p_cnn": p2, "z": np.full(8000, 0.03),
                          "one_plus_delta5": np.full(8000, np.nan)}, cal)
    inside68 = (y2 >= out["m_lo68"]) & (y2 <= out["m_hi68"])
    inside95 = (y2 >= out["m_lo95"]) & (y2 <= out["m_hi95"])
    for group in (bad2, ~bad2):
        se68 = math.sqrt(0.68 * 0.32 / group.sum())
        assert inside68[group].mean() == pytest.approx(0.68, abs=3 * se68 + 0.01)
        assert inside95[group].mean() == pytest.approx(0.95, abs=3 * math.sqrt(0.05 * 0.95 / group.sum()) + 0.01)
    # the median correction removes the bad group's +0.5 sd bias
    assert np.mean(out["m_pred"][bad2] - (mu2[bad2] + 0.5 * 0.3)) == pytest.approx(0.0, abs=0.03)
    # the Gaussian interval does not: it covers the bad group far too little
    gauss = survey_columns({"m_pred": mu2, "m_pred_err": sd2, "p_cnn": p2, "z": np.full(8000, 0.03),
                            "one_plus_delta5": np.full(8000, np.nan)}, None)
    assert ((y2 >= gauss["m_lo68"]) & (y2 <= gauss["m_hi68"]))[bad2].mean() < 0.45
    assert out["flags"][0] is not None and "interval_gaussian" not in out["flags"][0]


def test_a_calibration_of_other_models_is_refused(tmp_path):
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"models": {"regression": "r1", "pr": "p1"}}))
    assert load_calibration(str(tmp_path), "r1", "p1")["models"]["pr"] == "p1"
    with pytest.raises(ModelError, match="fitted for models"):
        load_calibration(str(tmp_path), "r2", "p1")
    with pytest.raises(InputError, match="no calibration.json"):
        load_calibration(str(tmp_path / "nothing"), "r1", "p1")


def test_too_few_calibration_rows_are_refused_in_one_line():
    table = pa.table({"status": ["ok"] * 50, "m_pred": np.zeros(50), "m_pred_err": np.ones(50),
                      "m_true": np.zeros(50)})
    with pytest.raises(InputError, match="50 rows .* fewer than 200") as e:
        fit_calibration(table)
    assert "\n" not in str(e.value)
