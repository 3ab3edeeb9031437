"""Each evaluation metric against an independent numpy/scipy/scikit-learn computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sklearn_metrics

from hicatalog.metrics import (
    accuracy,
    classification_metrics,
    normalized_rmse,
    regression_metrics,
    roc_auc,
    roc_curve,
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
