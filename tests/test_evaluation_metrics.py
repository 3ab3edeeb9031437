"""Each evaluation metric against an independent numpy/scipy/scikit-learn computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats
from sklearn import metrics as sklearn_metrics

from hicatalog.metrics import (
    accuracy,
    brier_score,
    calibration_metrics,
    classification_metrics,
    error_vs_uncertainty,
    expected_calibration_error,
    gaussian_crps,
    normalized_rmse,
    pit_values,
    regression_metrics,
    reliability_curve,
    roc_auc,
    roc_curve,
    uncertainty_metrics,
    z_scores,
)


@pytest.fixture
def pairs():
    rng = np.random.default_rng(1)
    m_true = rng.normal(-0.2, 0.6, 500)
    m_pred = 0.8 * m_true + 0.05 + rng.normal(0, 0.25, 500)
    return m_pred, m_true


def test_regression_metrics_match_scipy(pairs):
    m_pred, m_true = pairs
    m = regression_metrics(m_true, m_pred)
    d = m_pred - m_true
    assert m["n"] == 500
    assert m["rmse"] == pytest.approx(math.sqrt(np.sum(d**2) / d.size), rel=1e-12)
    assert m["slope"] == pytest.approx(stats.linregress(m_true, m_pred).slope, rel=1e-10)
    assert m["sigma"] == pytest.approx(np.std(d), rel=1e-12)
    assert m["offset"] == pytest.approx(np.mean(d), rel=1e-12)
    assert m["rmse"] ** 2 == pytest.approx(m["sigma"] ** 2 + m["offset"] ** 2, rel=1e-10)


def test_regression_metrics_hand_values():
    m = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    # residuals 0, 0, 1: rmse sqrt(1/3), offset 1/3, slope cov/var = 1.5
    assert m["rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert m["offset"] == pytest.approx(1 / 3)
    assert m["slope"] == pytest.approx(1.5)
    assert m["sigma"] == pytest.approx(np.std([0.0, 0.0, 1.0]))


def test_regression_metrics_drop_nan_and_degenerate():
    m = regression_metrics([0.5, 1.0, np.nan], [1.0, np.nan, 3.0])
    assert m["n"] == 1 and m["rmse"] == pytest.approx(0.5) and math.isnan(m["slope"])
    empty = regression_metrics([], [])
    assert empty["n"] == 0 and math.isnan(empty["rmse"])
    with pytest.raises(ValueError, match="same length"):
        regression_metrics([1.0, 2.0], [1.0])


def test_normalized_rmse(pairs):
    m_pred, m_true = pairs
    expect = np.sqrt(np.mean((m_pred - m_true) ** 2)) / np.std(m_true)
    assert normalized_rmse(m_true, m_pred) == pytest.approx(expect)
    # predicting the validation mean gives exactly 1
    assert normalized_rmse(m_true, np.full_like(m_true, m_true.mean())) == pytest.approx(1.0)


def test_roc_auc_matches_mann_whitney_and_sklearn():
    rng = np.random.default_rng(2)
    y = rng.random(400) < 0.4
    s = np.where(y, rng.beta(4, 2, 400), rng.beta(2, 4, 400))
    s[:50] = np.round(s[:50], 1)  # ties
    u = stats.mannwhitneyu(s[y], s[~y]).statistic
    assert roc_auc(y, s) == pytest.approx(u / (y.sum() * (~y).sum()), rel=1e-12)
    assert roc_auc(y, s) == pytest.approx(sklearn_metrics.roc_auc_score(y, s), rel=1e-12)
    fpr, tpr = roc_curve(y, s)
    fpr_s, tpr_s, _ = sklearn_metrics.roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(fpr, fpr_s) and np.allclose(tpr, tpr_s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(y, s), rel=1e-12)


def test_accuracy_and_classification_summary():
    y = np.array([1, 1, 0, 0, 1], dtype=bool)
    p = np.array([0.9, 0.4, 0.2, 0.6, 0.95])
    assert accuracy(y, p) == pytest.approx(3 / 5)
    assert accuracy(y, p, threshold=0.3) == pytest.approx(4 / 5)
    assert roc_auc(y, p) == pytest.approx(5 / 6)  # 5 of the 6 (pos, neg) pairs are ordered
    c = classification_metrics(y, p)
    assert (c["n"], c["n_pos"], c["n_neg"]) == (5, 3, 2)
    assert math.isnan(roc_auc([True, True], [0.1, 0.2]))
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([0, 2], [0.1, 0.2])


# --- uncertainties (m_pred_err) and probability calibration (p_cnn) ---------------------------


def _gaussian_rows(n=5000, seed=3):
    """m_true drawn from N(m_pred, err^2) with a known err per row (0.05-0.6 dex)."""
    rng = np.random.default_rng(seed)
    m_pred = rng.normal(0.0, 0.5, n)
    err = rng.uniform(0.05, 0.6, n)
    m_true = m_pred + err * rng.standard_normal(n)
    return m_true, m_pred, err


def test_uncertainty_metrics_calibrated_errors():
    m_true, m_pred, err = _gaussian_rows()
    m = uncertainty_metrics(m_true, m_pred, err)
    assert (m["n"], m["n_no_err"]) == (5000, 0)
    assert m["coverage_68"] == pytest.approx(0.6827, abs=0.03)
    assert m["coverage_95"] == pytest.approx(0.95, abs=0.015)
    assert m["z_std"] == pytest.approx(1.0, abs=0.05) and abs(m["z_mean"]) < 0.05
    z = (m_true - m_pred) / err
    assert m["coverage_68"] == np.mean(np.abs(z) <= 1.0)
    assert m["coverage_95"] == np.mean(np.abs(z) <= stats.norm.ppf(0.975))
    assert m["z_std"] == pytest.approx(np.std(z), rel=1e-12)
    assert m["median_err"] == pytest.approx(np.median(err), rel=1e-12)
    assert sum(m["pit_hist"]) == 5000 and len(m["pit_hist"]) == 10
    assert min(m["pit_hist"]) > 400 and max(m["pit_hist"]) < 600  # flat: 500 +- 4 sigma
    assert m["pit_ks"] < 0.03 and m["pit_ks_pvalue"] > 0.001
    # the mean NLL of N(m_pred, err) at m_true, from scipy's density
    assert m["mean_nll"] == pytest.approx(-np.mean(stats.norm.logpdf(m_true, m_pred, err)), rel=1e-10)
    assert pit_values(m_true, m_pred, err) == pytest.approx(stats.norm.cdf(m_true, m_pred, err))


def test_uncertainty_metrics_error_bars_too_small():
    m_true, m_pred, err = _gaussian_rows()
    m = uncertainty_metrics(m_true, m_pred, err / 2)
    # z is twice as wide: P(|N(0,1)| <= 0.5) = 0.383, P(|N(0,1)| <= 0.98) = 0.673
    assert m["coverage_68"] == pytest.approx(2 * stats.norm.cdf(0.5) - 1, abs=0.03)
    assert m["coverage_68"] < 0.45
    assert m["coverage_95"] == pytest.approx(2 * stats.norm.cdf(1.959964 / 2) - 1, abs=0.03)
    assert m["z_std"] == pytest.approx(2.0, abs=0.1)
    h = m["pit_hist"]
    assert h[0] > 2 * h[5] and h[-1] > 2 * h[4]  # U-shaped PIT histogram
    assert m["pit_ks"] > 0.15 and m["pit_ks_pvalue"] < 1e-6
    assert m["crps"] > uncertainty_metrics(m_true, m_pred, err)["crps"]


def _crps_by_integration(y, mu, sigma):
    """CRPS = integral of (F(x) - 1[x >= y])^2 dx for F = N(mu, sigma), numerically."""
    lo, hi = mu - 12 * sigma, mu + 12 * sigma
    left = integrate.quad(lambda x: stats.norm.cdf(x, mu, sigma) ** 2, lo, y, limit=200)[0]
    right = integrate.quad(lambda x: stats.norm.sf(x, mu, sigma) ** 2, y, hi, limit=200)[0]
    return left + right


def test_gaussian_crps_against_integration_and_hand_value():
    y = np.array([0.0, 0.3, -1.2, 2.0])
    mu = np.array([0.0, 0.1, -0.5, 0.0])
    sigma = np.array([1.0, 0.25, 0.4, 0.1])
    got = gaussian_crps(y, mu, sigma)
    # z = 0, sigma = 1: 2 phi(0) - 1/sqrt(pi) = sqrt(2/pi) - 1/sqrt(pi)
    assert got[0] == pytest.approx(0.2336949772, rel=1e-9)
    for i in range(4):
        assert got[i] == pytest.approx(_crps_by_integration(y[i], mu[i], sigma[i]), rel=1e-6)
    # far out in the tail, CRPS -> |error| - sigma/sqrt(pi)
    assert got[3] == pytest.approx(2.0 - 0.1 / np.sqrt(np.pi), rel=1e-6)
    assert uncertainty_metrics(y, mu, sigma)["crps"] == pytest.approx(np.mean(got), rel=1e-12)


def test_uncertainty_metrics_drop_rows_without_error():
    m = uncertainty_metrics([0.0, 1.0, 2.0, 3.0, np.nan, 0.5], [0.0, 1.0, 2.0, 3.0, 1.0, 0.5],
                            [np.nan, 0.0, -1.0, 0.5, 0.2, 0.5])
    # rows 0-2 have no usable error (counted), row 4 no m_true (dropped), rows 3 and 5 used
    assert (m["n"], m["n_no_err"]) == (2, 3)
    assert m["coverage_68"] == 1.0 and m["z_std"] == 0.0 and m["median_err"] == 0.5
    empty = uncertainty_metrics([1.0], [1.0], [np.nan])
    assert (empty["n"], empty["n_no_err"]) == (0, 1) and math.isnan(empty["coverage_68"])
    assert empty["pit_hist"] == [0] * 10
    with pytest.raises(ValueError, match="same length"):
        uncertainty_metrics([1.0, 2.0], [1.0, 2.0], [0.1])
    assert z_scores([1.0, 2.0], [0.0, 0.0], [0.5, np.nan]).tolist() == [2.0]


def test_error_vs_uncertainty_ranks_and_bins():
    m_true, m_pred, err = _gaussian_rows(n=6000, seed=4)
    r = error_vs_uncertainty(m_true, m_pred, err, n_bins=5)
    a = np.abs(m_pred - m_true)
    expect = np.corrcoef(stats.rankdata(err), stats.rankdata(a))[0, 1]
    assert r["n"] == 6000 and r["spearman"] == pytest.approx(expect, rel=1e-10)
    assert r["spearman"] > 0.3
    assert [b["n"] for b in r["bins"]] == [1200] * 5
    for b in r["bins"]:  # calibrated: the rms error of a bin is its error bar
        sel = (err >= b["err_lo"]) & (err <= b["err_hi"])
        assert b["rms_error"] == pytest.approx(np.sqrt(np.mean(a[sel] ** 2)), rel=1e-12)
        assert b["rms_error"] / np.sqrt(np.mean(err[sel] ** 2)) == pytest.approx(1.0, abs=0.1)
    # error bars that say nothing about the error: no rank correlation
    shuffled = np.random.default_rng(5).permutation(err)
    assert abs(error_vs_uncertainty(m_true, m_pred, shuffled)["spearman"]) < 0.05
    # all error bars equal: one bin, no correlation defined
    same = error_vs_uncertainty(m_true, m_pred, np.full(6000, 0.3))
    assert len(same["bins"]) == 1 and math.isnan(same["spearman"])


def test_reliability_ece_brier_hand_values():
    y = np.array([1, 0, 1, 1], dtype=bool)
    p = np.array([0.05, 0.15, 0.95, 0.92])
    c = reliability_curve(y, p)
    assert c["count"] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2] and c["n"] == 4
    assert c["mean_prob"][9] == pytest.approx(0.935) and c["observed"][:2] == [1.0, 0.0]
    assert math.isnan(c["observed"][4])
    # bins: |1 - 0.05|, |0 - 0.15|, 2 x |1 - 0.935|, weighted by counts over 4 rows
    assert expected_calibration_error(y, p) == pytest.approx((0.95 + 0.15 + 2 * 0.065) / 4)
    assert brier_score(y, p) == pytest.approx(sklearn_metrics.brier_score_loss(y, p))
    cm = calibration_metrics(y, p)
    assert cm["ece"] == pytest.approx(0.3075) and cm["reliability"]["count"] == c["count"]
    assert reliability_curve([1, 0], [1.0, 0.0])["count"][9] == 1  # 1.0 is in the last bin
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_curve([1, 0], [1.2, 0.1])


def test_ece_calibrated_and_distorted_probabilities():
    rng = np.random.default_rng(6)
    p = rng.uniform(0, 1, 40000)
    y = rng.uniform(0, 1, 40000) < p  # P(y | p) = p: calibrated
    assert expected_calibration_error(y, p) < 0.02
    # reported p^2 while the truth is p: every bin under-predicts by E[p - p^2] over its rows,
    # so the ECE is integral_0^1 (p - p^2) dp = 1/6
    assert expected_calibration_error(y, p**2) == pytest.approx(1 / 6, abs=0.012)
    assert brier_score(y, p) == pytest.approx(1 / 6, abs=0.01)  # E[p(1-p)] for uniform p
