"""`hicatalog evaluate catalog` on a small synthetic catalog and truth table."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import POPS
from builders import synthetic_catalog as _synthetic
from sklearn.metrics import roc_auc_score

from hicatalog.cli import main as cli_main
from hicatalog.evaluation.analyses import evaluate_catalog
from hicatalog.evaluation.tables import TABLE2_HEADERS, UNCERTAINTY_HEADERS


def _stored(a):
    """Values as the catalog and the truth hold them (float32), as float64."""
    return np.asarray(a).astype(np.float32).astype(np.float64)


def _check_regression(got, pred, true, n_base):
    """``got`` (a metrics.json entry) against the paper's formulas written out with numpy."""
    d = pred - true
    assert got["n"] == d.size
    assert got["completeness"] == pytest.approx(d.size / n_base, rel=1e-12)
    if d.size == 0:
        assert got["rmse"] is None and got["slope"] is None
        return
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean(d**2)), rel=1e-9)
    assert got["sigma"] == pytest.approx(np.std(d), rel=1e-9, abs=1e-12)
    assert got["offset"] == pytest.approx(np.mean(d), rel=1e-9, abs=1e-12)
    if d.size < 2:
        assert got["slope"] is None
    else:
        assert got["slope"] == pytest.approx(np.polyfit(true, pred, 1)[0], rel=1e-9)


def test_evaluate_catalog_table2_layout_and_values(tmp_path, ray_local):
    cat_dir, truth_path, s = _synthetic(tmp_path)
    out = tmp_path / "report"
    returned = evaluate_catalog(str(cat_dir), str(truth_path), str(out))
    res = json.loads((out / "metrics.json").read_text())
    assert returned == res  # it returns what it wrote; the values are checked below
    assert res["datasets"] == ["alfalfa", "xgass", "nondetections"]
    assert res["cuts"] == ["none", "p_cnn>0.5", "p_cnn>0.8", "p_cnn>0.9"]
    assert res["counts"]["n_catalog"] == 300 and res["counts"]["n_ok"] == 294
    assert res["counts"]["status_counts"] == {"corrupt_image": 6, "ok": 294}
    assert res["manifest"]["build_id"] == "b2" and res["manifest"]["version"] == 2

    # expected from the true predictions (the newest build's rows win over the garbage ones)
    ok = s["status"] == "ok"
    m_pred, m_true, p_cnn = _stored(s["m_pred"]), _stored(s["m_true"]), _stored(s["p_cnn"])
    n_checked = 0
    for pop in (*POPS, "all"):
        base = ok & ((s["pop"] == pop) if pop != "all" else True)
        for cut in (None, 0.5, 0.8, 0.9):
            sel = base & (True if cut is None else p_cnn > cut)
            got = res["regression"][pop]["none" if cut is None else f"p_cnn>{cut:g}"]
            _check_regression(got, m_pred[sel], m_true[sel], base.sum())
            n_checked += sel.sum() >= 2
    assert n_checked >= 14  # nearly every (sample, cut) has the rows for a slope
    # the PR cut helps the xGASS-like sample in this synthetic catalog, as designed
    x = res["regression"]["xgass"]
    assert x["p_cnn>0.9"]["rmse"] < x["none"]["rmse"]
    assert res["regression"]["all"]["none"]["n"] == 294
    pr_all = res["pr"]["all"]
    assert (pr_all["n"], pr_all["n_pos"]) == (294, int((ok & s["detected"]).sum()))
    assert pr_all["roc_auc"] == pytest.approx(roc_auc_score(s["detected"][ok], p_cnn[ok]), rel=1e-9)
    assert pr_all["accuracy"] == pytest.approx(np.mean((p_cnn[ok] > 0.5) == s["detected"][ok]))
    tc = res["pr"]["training_classes"]
    pair = ok & np.isin(s["pop"], ["alfalfa", "nondetections"])
    assert tc["samples"] == ["alfalfa", "nondetections"] and tc["n"] == pair.sum() == 196
    assert tc["roc_auc"] == pytest.approx(roc_auc_score(s["detected"][pair], p_cnn[pair]), rel=1e-9)

    # the Markdown table: header, one row per (cut, dataset incl. 'all'), cut label on the first
    lines = (out / "table2.md").read_text().strip().splitlines()
    h = lines.index("| " + " | ".join(TABLE2_HEADERS) + " |")
    assert lines[h - 2] == "## Table 2: M_pred by sample and p_CNN cut"
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[h + 2:h + 18]]
    assert lines[h + 18] == "" and lines[h + 19].startswith("RMSE = sqrt(")
    assert "## Pattern recognition: p_CNN against detection" in lines
    assert "| alfalfa vs nondetections | 196 | 98 |" in (out / "table2.md").read_text()
    assert [r[1] for r in body[:4]] == ["alfalfa", "xGASS", "nondetections", "all"]  # the paper's names
    assert [r[0] for r in body[::4]] == ["None", "p_CNN > 0.5", "p_CNN > 0.8", "p_CNN > 0.9"]
    assert body[1][2] == str(x["none"]["n"]) and body[1][3] == f"{x['none']['rmse']:.4f}"

    for name in ("pred_vs_true.png", "pred_vs_true_p0.9.png", "pcnn_hist.png", "residuals.png",
                 "roc.png", "index.html"):
        assert (out / name).stat().st_size > 1000, name
    html = (out / "index.html").read_text()
    assert "pcnn_hist.png" in html and "&quot;build_id&quot;: &quot;b2&quot;" in html


def test_evaluate_cli_catalog_and_errors(tmp_path, capsys, ray_local):
    cat_dir, truth_path, _ = _synthetic(tmp_path, n=60)
    out = tmp_path / "r"
    rc = cli_main(["evaluate", "catalog", "--catalog", str(cat_dir), "--truth", str(truth_path),
                   "--out", str(out)])
    assert rc == 0 and os.path.exists(out / "metrics.json")
    # missing --catalog: a parameter error (exit 2) in one line naming the flag
    assert cli_main(["evaluate", "--truth", str(truth_path), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        "hicatalog evaluate: error: the 'catalog' analysis needs --catalog")
    # a truth table without m_true names the missing column
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"object_id": ["a"]}), bad)
    assert cli_main(["evaluate", "--catalog", str(cat_dir), "--truth", str(bad), "--out", str(out)]) == 1
    assert "m_true" in capsys.readouterr().err


def _err_catalog(tmp_path, err_column="calibrated", n=3000, seed=7):
    """A plain Parquet catalog and a truth where M_true ~ N(M_pred, err^2) with a known err per
    row, and p_cnn a calibrated probability of ``detected``. ``err_column``: ``"calibrated"``
    (m_pred_err = err), ``"halved"`` (err / 2: error bars too small), ``"null"`` (all null) or
    ``None`` (no column, an older catalog). xGASS-like rows that are not detected are upper
    limits, with error bars four times the others (out of distribution)."""
    rng = np.random.default_rng(seed)
    ids = [f"u{i:05d}" for i in range(n)]
    pop = np.array([POPS[i % 3] for i in range(n)])
    p_cnn = rng.uniform(0, 1, n)
    detected = rng.uniform(0, 1, n) < p_cnn
    detected[pop == "alfalfa"] = True
    detected[pop == "nondetections"] = False
    upper = (pop == "xgass") & ~detected
    err = np.where(upper, rng.uniform(0.6, 1.0, n), rng.uniform(0.1, 0.4, n))
    m_pred = rng.normal(-0.3, 0.5, n)
    m_true = m_pred + err * rng.standard_normal(n)
    one_plus_delta5 = rng.lognormal(0, 0.6, n)
    tdir = tmp_path / f"truth_{err_column}"
    tdir.mkdir()
    pq.write_table(pa.table({
        "object_id": ids, "population": pop.tolist(), "m_true": m_true.astype(np.float32),
        "detected": detected, "upper_limit": upper,
        "one_plus_delta5_true": one_plus_delta5.astype(np.float32),
    }), tdir / "truth.parquet")
    cols = {"object_id": ids, "m_pred": m_pred.astype(np.float32), "p_cnn": p_cnn.astype(np.float32),
            "status": ["ok"] * n, "one_plus_delta5": one_plus_delta5.astype(np.float32),
            "m_pred_std": pa.nulls(n, pa.float32())}
    if err_column == "calibrated":
        cols["m_pred_err"] = err.astype(np.float32)
    elif err_column == "halved":
        cols["m_pred_err"] = (err / 2).astype(np.float32)
    elif err_column == "null":
        cols["m_pred_err"] = pa.nulls(n, pa.float32())
    cdir = tmp_path / f"catalog_{err_column}"
    cdir.mkdir()
    pq.write_table(pa.table(cols), cdir / "part-0.parquet")
    return cdir, tdir / "truth.parquet", dict(pop=pop, p_cnn=p_cnn, detected=detected, upper=upper,
                                              err=err, m_pred=m_pred, m_true=m_true)


def _ece_by_hand(y, p, n_bins=10):
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        sel = (p >= lo) & ((p < hi) if b < n_bins - 1 else (p <= hi))
        if sel.any():
            total += sel.sum() * abs(y[sel].mean() - p[sel].mean())
    return total / y.size


def test_evaluate_catalog_uncertainties(tmp_path):
    cat_dir, truth_path, s = _err_catalog(tmp_path)
    out = tmp_path / "report"
    res = evaluate_catalog(str(cat_dir), str(truth_path), str(out))
    assert json.loads((out / "metrics.json").read_text()) == res
    unc = res["uncertainty"]
    assert set(unc) == {"by_group", "error_vs_uncertainty", "uncertainty_vs_environment", "ood"}
    assert list(unc["by_group"]) == list(res["regression"]) == ["alfalfa", "xgass", "nondetections", "all"]
    assert list(unc["by_group"]["alfalfa"]) == res["cuts"]

    m_true, m_pred, err, p = (_stored(s[k]) for k in ("m_true", "m_pred", "err", "p_cnn"))
    for g in ("alfalfa", "xgass", "nondetections", "all"):
        rows = ~s["upper"] & ((s["pop"] == g) if g != "all" else True)
        z = (m_true[rows] - m_pred[rows]) / err[rows]
        m = unc["by_group"][g]["none"]
        assert (m["n"], m["n_no_err"]) == (rows.sum(), 0)  # upper limits never in here
        assert m["coverage_68"] == pytest.approx(np.mean(np.abs(z) <= 1), abs=1e-12)
        assert m["coverage_68"] == pytest.approx(0.6827, abs=0.05)
        assert m["coverage_95"] == pytest.approx(0.95, abs=0.03)
        assert m["z_std"] == pytest.approx(1.0, abs=0.08)
        assert m["z_std"] == pytest.approx(np.std(z), rel=1e-9)
        assert m["pit_ks"] < 0.08
    cut = unc["by_group"]["alfalfa"]["p_cnn>0.8"]
    alf = s["pop"] == "alfalfa"
    assert cut["n"] == (alf & (p > 0.8)).sum() and cut["completeness"] == pytest.approx(cut["n"] / alf.sum())
    evu = unc["error_vs_uncertainty"]["alfalfa"]
    assert evu["spearman"] > 0.2 and len(evu["bins"]) == 5
    assert all(0.8 < b["rms_error"] / b["median_err"] < 1.25 for b in evu["bins"])
    env = unc["uncertainty_vs_environment"]
    assert len(env["edges"]) == 6 and sum(b["n"] for b in env["by_group"]["alfalfa"]) == alf.sum()

    ood = unc["ood"]
    ref = np.median(err[alf])
    assert ood["reference"] == {"group": "alfalfa", "subset": "detected", "n": int(alf.sum()),
                                "median_err": pytest.approx(ref, rel=1e-6)}
    rows = {(r["group"], r["subset"]): r for r in ood["by_group"]}
    assert set(rows) == {("alfalfa", "detected"), ("xgass", "detected"), ("xgass", "upper limits"),
                         ("nondetections", "not detected")}
    lim = rows[("xgass", "upper limits")]
    assert lim["n"] == s["upper"].sum()
    assert lim["ratio"] == pytest.approx(np.median(err[s["upper"]]) / ref, rel=1e-6)
    assert lim["ratio"] > 2.5  # the out-of-distribution rows have the larger error bars

    y = s["detected"]
    assert res["pr"]["all"]["ece"] == pytest.approx(_ece_by_hand(y, p), rel=1e-9)
    assert res["pr"]["all"]["brier"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-9)
    assert res["pr"]["all"]["reliability"]["count"] == np.histogram(p, bins=10, range=(0, 1))[0].tolist()
    assert res["pr"]["training_classes"]["ece"] is not None

    for name in ("pit.png", "reliability.png", "uncertainty.png"):
        assert (out / name).stat().st_size > 1000 and name in res["files"], name
    text = (out / "table2.md").read_text()
    assert "# Uncertainties: m_pred_err" in text and "| Data set | Rows | N | Median m_pred_err" in text
    assert "| " + " | ".join(UNCERTAINTY_HEADERS) + " |" in text and "| ECE | Brier |" in text
    a = unc["by_group"]["alfalfa"]["none"]
    assert (f"| None | alfalfa | {a['n']} | {a['coverage_68']:.3f} | {a['coverage_95']:.3f} | "
            f"{a['z_std']:.3f} | {a['crps']:.4f} | {a['pit_ks']:.3f} |") in text
    html = (out / "index.html").read_text()
    assert "pit.png" in html and "uncertainty.png" in html and "reliability.png" in html

    # error bars half the right size: the same galaxies, far from calibrated
    cat_dir, truth_path, _ = _err_catalog(tmp_path, "halved")
    half = evaluate_catalog(str(cat_dir), str(truth_path), str(tmp_path / "half"))
    h = half["uncertainty"]["by_group"]["alfalfa"]["none"]
    assert h["coverage_68"] < 0.45 and h["z_std"] == pytest.approx(2.0, abs=0.15)
    assert h["crps"] > a["crps"] and h["pit_ks"] > 0.15
    assert half["regression"] == res["regression"]


@pytest.mark.parametrize("column", [None, "null"])
def test_evaluate_catalog_without_error_bars(tmp_path, column):
    cat_dir, truth_path, _ = _err_catalog(tmp_path, column, n=600)
    out = tmp_path / "report"
    res = evaluate_catalog(str(cat_dir), str(truth_path), str(out))
    assert res["uncertainty"] is None
    assert not (out / "pit.png").exists() and not (out / "uncertainty.png").exists()
    assert "pit.png" not in res["files"] and "reliability.png" in res["files"]  # p_cnn still scored
    assert res["pr"]["all"]["ece"] is not None
    why = "has no m_pred_err column" if column is None else "m_pred_err is null"
    text = (out / "table2.md").read_text()
    assert "| " + " | ".join(UNCERTAINTY_HEADERS) not in text and why in text
    assert why in (out / "index.html").read_text()
    # everything else is what a catalog with error bars gives
    cat_dir, truth_path, _ = _err_catalog(tmp_path, "calibrated", n=600)
    full = evaluate_catalog(str(cat_dir), str(truth_path), str(tmp_path / "full"))
    for key in ("regression", "pr", "counts", "datasets"):
        assert res[key] == full[key], key
    # the limits too, but for the numbers that read the error bars (null without them)
    by_err = ("n_err", "frac_consistent_p05", "mean_censored_loglik", "detections_n",
              "detections_mean_loglik")
    for g, cuts in full["limits"].items():
        for k, m in cuts.items():
            got = res["limits"][g][k]
            assert {a: b for a, b in got.items() if a not in by_err} == {
                a: b for a, b in m.items() if a not in by_err}
            assert got["n_err"] == 0 and got["frac_consistent_p05"] is None
            assert got["mean_censored_loglik"] is None and got["detections_mean_loglik"] is None
    assert full["limits"]["xgass"]["none"]["mean_censored_loglik"] < 0
