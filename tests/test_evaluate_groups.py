"""`hicatalog evaluate`'s survey-wide sections on catalogs and truths written directly as Parquet
(no training): per-quintile coverage / bias / rank correlation, p_detect calibration, the
linear means of 10^M, upper limits scored with the censored likelihood, and a magnitude-limited
``survey`` sample split into detections and non-detections. Every expected number comes from
the construction, written out with numpy/scipy here."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import norm, spearmanr

from hicatalog.evaluation.analyses import evaluate_catalog

LN10_HALF = np.log(10.0) / 2


def _write(tmp_path, name, catalog: dict, truth: dict):
    d = tmp_path / name
    d.mkdir()
    f32 = {k: (np.asarray(v).astype(np.float32) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
           for k, v in catalog.items()}
    n = len(catalog["object_id"])
    pq.write_table(pa.table({"status": ["ok"] * n, **f32}), d / "catalog.parquet")
    pq.write_table(pa.table(truth), d / "truth.parquet")
    return str(d / "catalog.parquet"), str(d / "truth.parquet"), str(d / "report")


def _stored(a):
    return np.asarray(a).astype(np.float32).astype(np.float64)


def _survey(n=5000, seed=3):
    """A survey whose 68% intervals cover exactly 40% of the lowest log M* quintile and 75% of
    the rest (68% overall), 95% intervals 80% / 97.5%; intervals in the catalog's columns (its
    m_pred_err five times too large, so a fallback to it would show); width and |error| rank
    correlated; detected ~ Bernoulli(p_true)."""
    rng = np.random.default_rng(seed)
    log_mstar = np.sort(rng.uniform(9.0, 11.0, n))  # row i is in quintile i // (n / 5)
    q = np.arange(n) * 5 // n
    m_pred = rng.normal(-0.3, 0.5, n)
    w = rng.uniform(0.2, 0.4, n)  # 68% half width; 95% half width 1.96 w
    cov68 = np.where(q == 0, 0.40, 0.75)
    cov95 = np.where(q == 0, 0.80, 0.975)
    u = np.empty(n)
    for k in range(5):  # exact fractions per quintile: ranks within the quintile, shuffled
        idx = np.flatnonzero(q == k)
        u[idx] = (rng.permutation(idx.size) + 0.5) / idx.size
    # |error| / w: inside 68% -> [0, 0.95); in 95% only -> (1.05, 1.9); outside -> (2.1, 3)
    a = np.where(u < cov68, rng.uniform(0, 0.95, n),
                 np.where(u < cov95, rng.uniform(1.05, 1.9, n), rng.uniform(2.1, 3.0, n)))
    sign = np.where(q == 0, 1.0, rng.choice([-1.0, 1.0], n))  # quintile 1 overpredicted
    m_true = m_pred - sign * a * w
    p_true = rng.uniform(0, 1, n)
    detected = rng.uniform(0, 1, n) < p_true
    opd = rng.lognormal(0, 0.5, n)
    opd[:100] = np.nan  # unknown environment: left out of that variable only
    ids = [f"s{i:05d}" for i in range(n)]
    cat = {"object_id": ids, "m_pred": m_pred, "p_cnn": rng.uniform(0, 1, n),
           "z": rng.uniform(0.01, 0.06, n), "one_plus_delta5": opd, "m_pred_err": 5 * w,
           "m_lo68": m_pred - w, "m_hi68": m_pred + w, "m_lo95": m_pred - 1.96 * w,
           "m_hi95": m_pred + 1.96 * w, "p_detect": p_true}
    truth = {"object_id": ids, "population": ["survey"] * n, "m_true": m_true.astype(np.float32),
             "log_mstar": log_mstar.astype(np.float32), "detected": detected,
             "p_detect": p_true.astype(np.float32)}
    return cat, truth, dict(q=q, m_pred=m_pred, m_true=m_true, w=w, detected=detected,
                            p_true=p_true, log_mstar=log_mstar)


def _ece_equal_count(y, p, n_bins=10):
    order = np.argsort(p, kind="mergesort")
    return sum(abs(y[c].mean() - p[c].mean()) * c.size
               for c in np.array_split(order, n_bins)) / y.size


def test_by_quintile_shows_the_coverage_that_cancels_out_overall(tmp_path):
    cat, truth, s = _survey()
    res = evaluate_catalog(*_write(tmp_path, "cols", cat, truth))
    assert json.loads((tmp_path / "cols" / "report" / "metrics.json").read_text()) == res
    bq = res["by_quintile"]
    assert bq["interval_source"] == {"columns": 5000, "gaussian": 0, "none": 0}
    assert bq["overall"]["all"]["coverage_68"] == pytest.approx(0.68, abs=1e-12)
    assert bq["overall"]["all"]["coverage_95"] == pytest.approx(0.2 * 0.8 + 0.8 * 0.975, abs=1e-12)
    ms = bq["variables"]["log_mstar"]
    assert [b["n"] for b in ms["all"]] == [1000] * 5 and ms["n_missing"] == 0
    assert [b["coverage_68"] for b in ms["all"]] == pytest.approx([0.40, 0.75, 0.75, 0.75, 0.75], abs=1e-12)
    assert [b["coverage_95"] for b in ms["all"]] == pytest.approx([0.80] + [0.975] * 4, abs=1e-12)
    pred, true, w = _stored(s["m_pred"]), _stored(s["m_true"]), _stored(s["w"])
    for k, b in enumerate(ms["all"]):
        sel = s["q"] == k
        err = pred[sel] - true[sel]
        assert b["bias"] == pytest.approx(err.mean(), abs=1e-9)
        assert b["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), abs=1e-9)
        width = (_stored(cat["m_hi68"]) - _stored(cat["m_lo68"]))[sel]
        assert b["spearman_width_abs_error"] == pytest.approx(spearmanr(width, np.abs(err)).statistic, abs=1e-9)
        assert b["mean_width_68"] == pytest.approx(np.mean(width), rel=1e-6)
    assert ms["all"][0]["bias"] > 0.1 and abs(ms["all"][3]["bias"]) < 0.05  # quintile 1 overpredicted
    assert bq["overall"]["all"]["spearman_width_abs_error"] > 0.2  # |error| scales with the width
    det = s["detected"]
    for k, b in enumerate(ms["detections"]):
        sel = (s["q"] == k) & det
        inside = np.abs(true[sel] - pred[sel]) <= w[sel]
        assert b["n"] == sel.sum() and b["coverage_68"] == pytest.approx(inside.mean(), abs=1e-12)
    env = bq["variables"]["one_plus_delta5"]
    assert env["n_missing"] == 100 and sum(b["n"] for b in env["all"]) == 4900
    # a grouping variable independent of the construction: every quintile near 0.68
    pc = bq["variables"]["p_cnn"]["all"]
    assert all(0.58 < b["coverage_68"] < 0.78 for b in pc)

    # the same catalog without interval columns: the Gaussian m_pred -+ {1, 1.96} m_pred_err
    gauss = {k: v for k, v in cat.items() if not k.startswith(("m_lo", "m_hi"))}
    gauss["m_pred_err"] = w
    g = evaluate_catalog(*_write(tmp_path, "gauss", gauss, truth))["by_quintile"]
    assert g["interval_source"] == {"columns": 0, "gaussian": 5000, "none": 0}
    assert [b["coverage_68"] for b in g["variables"]["log_mstar"]["all"]] == pytest.approx(
        [0.40, 0.75, 0.75, 0.75, 0.75], abs=1e-12)
    # and with the too-large m_pred_err alone, the fallback over-covers everywhere
    big = {k: v for k, v in gauss.items()}
    big["m_pred_err"] = 5 * w
    b5 = evaluate_catalog(*_write(tmp_path, "big", big, truth))["by_quintile"]
    assert b5["overall"]["all"]["coverage_68"] == pytest.approx(1.0)

    # the report: the figure and the table
    out = tmp_path / "cols" / "report"
    assert "quintiles.png" in res["files"] and (out / "quintiles.png").stat().st_size > 5000
    md = (out / "table2.md").read_text()
    assert "## Per quintile: coverage, bias and rank correlation" in md
    assert "| true log M* | 1 |" in md and "| 1000 | 0.400 | 0.800 |" in md
    assert "quintiles.png" in (out / "index.html").read_text()


def test_p_detect_calibration_uses_the_catalogs_column(tmp_path):
    cat, truth, s = _survey(n=4000, seed=5)
    y, p = s["detected"].astype(float), _stored(s["p_true"])
    good = evaluate_catalog(*_write(tmp_path, "good", cat, truth))["p_detect"]
    assert (good["n"], good["n_pos"]) == (4000, int(y.sum()))
    assert good["ece"] == pytest.approx(_ece_equal_count(y, p), abs=1e-9)
    assert good["ece"] < 0.035 and good["reliability"]["count"] == [400] * 10
    # miscalibrated: the catalog says p^2 while the truth's own p_detect stays the true one
    bad_cat = {**cat, "p_detect": s["p_true"] ** 2}
    bad = evaluate_catalog(*_write(tmp_path, "bad", bad_cat, truth))["p_detect"]
    assert bad["ece"] == pytest.approx(_ece_equal_count(y, _stored(s["p_true"] ** 2)), abs=1e-9)
    assert bad["ece"] > 0.12  # about mean(p - p^2) = 1/6
    assert bad["ece_true_p"] == pytest.approx(good["ece"], abs=1e-6)  # the truth's p: the floor
    # no p_detect column: null, and the report says so
    none_cat = {k: v for k, v in cat.items() if k != "p_detect"}
    paths = _write(tmp_path, "none", none_cat, truth)
    assert evaluate_catalog(*paths)["p_detect"] is None
    assert "Not evaluated: the catalog has no p_detect" in (tmp_path / "none" / "report" / "table2.md").read_text()


def test_linear_means_correct_the_lognormal_bias(tmp_path):
    rng = np.random.default_rng(11)
    n, sigma = 8000, 0.3
    log_mstar = rng.uniform(9.0, 11.0, n)
    m_pred = rng.normal(-0.5, 0.4, n)
    m_true = m_pred + sigma * rng.standard_normal(n)  # M_true ~ N(m_pred, sigma^2)
    ids = [f"l{i}" for i in range(n)]
    cat = {"object_id": ids, "m_pred": m_pred, "p_cnn": np.full(n, 0.5), "m_pred_err": np.full(n, sigma)}
    truth = {"object_id": ids, "m_true": m_true.astype(np.float32),
             "log_mstar": log_mstar.astype(np.float32), "dataset": ["survey"] * n,
             "detected": np.ones(n, bool)}
    lin = evaluate_catalog(*_write(tmp_path, "lin", cat, truth))["linear_means"]
    assert lin["width"] == 0.25 and [b["lo"] for b in lin["bins"]] == pytest.approx(np.arange(9, 11, 0.25))
    naive_bias = -LN10_HALF * sigma**2  # -0.1036 dex
    for b in lin["bins"]:
        sel = (log_mstar >= b["lo"]) & (log_mstar < b["hi"])
        assert b["n"] == sel.sum()
        assert b["log_mean_true"] == pytest.approx(np.log10(np.mean(10 ** _stored(m_true)[sel])), abs=1e-9)
        assert abs(b["diff"]) < 0.05  # the corrected mean recovers the truth's
        assert b["diff_naive"] == pytest.approx(naive_bias, abs=0.05)  # the naive one is low
        assert b["diff"] - b["diff_naive"] == pytest.approx(-naive_bias, abs=1e-5)
    assert abs(lin["all"]["diff"]) < 0.02 and lin["all"]["diff_naive"] == pytest.approx(naive_bias, abs=0.02)
    # without error bars there is no expectation to give
    no_err = {k: v for k, v in cat.items() if k != "m_pred_err"}
    assert evaluate_catalog(*_write(tmp_path, "noerr", no_err, truth))["linear_means"] is None


def test_limits_scored_with_the_censored_likelihood_and_survey_groups(tmp_path):
    # real-labels style: xGASS upper limits (m_true is the limit) beside xGASS detections
    d = np.array([0.5, 0.0, -0.2, -0.4, -1.0])  # limit - m_pred
    m_pred_lim = np.array([-1.0, -0.5, 0.0, 0.3, -0.8])
    det_pred, det_true = np.array([-0.2, 0.1, 0.4]), np.array([-0.1, 0.3, 0.2])
    # survey (mock style): true m_true for every row, the ALFALFA limit as the label
    s_pred = np.array([0.0, -0.5, -1.0, 0.2, 0.4, -0.3])
    s_true = np.array([-0.2, -0.6, -1.5, 0.1, 0.3, -0.2])
    s_det = np.array([True, True, True, False, False, False])
    s_label = np.array([-0.2, -0.6, -1.5, 0.6, 0.2, -0.8])  # limits of the three non-detections
    ids = [f"x{i}" for i in range(8)] + [f"v{i}" for i in range(6)]
    err = 0.2
    cat = {"object_id": ids, "m_pred": np.r_[m_pred_lim, det_pred, s_pred], "p_cnn": np.full(14, 0.6),
           "m_pred_err": np.full(14, err)}
    truth = {"object_id": ids, "dataset": ["xgass"] * 8 + ["survey"] * 6,
             "m_true": np.r_[m_pred_lim + d, det_true, s_true].astype(np.float32),
             "upper_limit": np.r_[np.ones(5, bool), np.zeros(9, bool)],
             "detected": np.r_[np.zeros(5, bool), np.ones(3, bool), s_det],
             "m_label": np.r_[np.full(8, np.nan), s_label].astype(np.float32),
             "label_is_limit": np.r_[np.zeros(11, bool), np.ones(3, bool)]}
    res = evaluate_catalog(*_write(tmp_path, "lim", cat, truth))
    assert res["datasets"] == ["survey detections", "survey non-detections", "xgass"]
    assert res["groups"]["survey non-detections"] == ["survey"]
    # the survey's non-detections keep their true M in the regression, and are also limits
    assert res["regression"]["survey non-detections"]["none"]["n"] == 3
    assert res["regression"]["xgass"]["none"]["n"] == 3  # xGASS limits never in the RMSE
    assert res["labels"]["xgass"] == "xGASS detections"
    assert res["labels"]["survey non-detections"] == "survey non-detections"
    assert res["limits_withheld"] == ["xgass"]

    x = res["limits"]["xgass"]["none"]
    dd = _stored(m_pred_lim + d) - _stored(m_pred_lim)
    log_p = norm.logcdf(dd / _stored(err))
    assert x["n"] == x["n_err"] == 5
    assert x["frac_consistent_p05"] == pytest.approx(3 / 5)  # P = .994, .5, .159, .023, 3e-7
    assert x["mean_censored_loglik"] == pytest.approx(log_p.mean(), rel=1e-5)
    assert x["n_consistent"] == 2  # M_pred <= limit: d >= 0
    assert x["detections_n"] == 3
    assert x["detections_mean_loglik"] == pytest.approx(
        norm.logpdf(det_true, det_pred, err).mean(), abs=1e-5)

    sv = res["limits"]["survey non-detections"]["none"]
    lim = s_label[3:]
    assert sv["n"] == 3 and sv["n_consistent"] == int(np.sum(s_pred[3:] <= lim))
    assert sv["frac_consistent_p05"] == pytest.approx(
        np.mean(norm.cdf((lim - s_pred[3:]) / err) >= 0.05))
    assert sv["detections_mean_loglik"] == pytest.approx(
        norm.logpdf(s_true[:3], s_pred[:3], err).mean(), abs=1e-5)
    assert "survey detections" not in res["limits"]
    text = (tmp_path / "lim" / "report" / "table2.md").read_text()
    assert "|  | xGASS upper limits | 5 | 2 | 0.4000 | 0.2000 | 0.6000 |" in text
