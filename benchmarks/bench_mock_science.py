"""The project's science numbers on the realistic mock beside the clean one (issue 24).

For each realism (``clean``: the paper-like mock of before; ``realistic``: every effect of
docs/mock.md, the default), under ``WORK/<realism>/``:

1. ``hicatalog demo`` (a subprocess; the clean one with the demo's mock switched to
   ``realism="clean"``, nothing else changed), its wall time and the load average around it;
2. from its catalog of the held-out survey mock, against the truth: RMSE of the ALFALFA-like
   detections (against the true M, and against the *measured* labels a real validation would
   use), 68/95% coverage of ``m_pred_err`` overall and per quintile of ``m_pred_err`` and of log
   M*, the same with the paper's cut p_CNN > 0.9, every galaxy with p_CNN > 0.5, the
   out-of-distribution error-bar ratio, PR accuracy, AUC and ECE, and on the realistic mock the RMSE
   split by what each effect did (seeing, inclination, companions, outliers, label noise);
3. the Appendix B robustness test on the survey cutouts with the demo's regression model, and
   the Appendix A baselines on the training mock's validation rows against the same model;
4. the Table 4 experiment on the training mock (``evaluate environment``, ``--repeats``
   trainings per split, no sliding windows): the dense-vs-sparse gap and its seed spread;
5. the shifted-imaging surveys: the survey mock rendered again with ``legacy`` (Legacy-like
   imaging at SDSS's 0.396"/px) and ``degraded`` imaging, catalogued with the demo's models
   (trained on the survey's own imaging) and evaluated against their truth.

Every step is skipped when its output exists (rerun to continue). The results go to
``OUT/bench_mock_science.json`` after every step.

    .venv/bin/python benchmarks/bench_mock_science.py --work runs/mock_science \\
        --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from _results import write_result  # benchmarks/_results.py

from hicatalog.metrics import (
    classification_metrics,
    expected_calibration_error,
    regression_metrics,
    uncertainty_metrics,
)

HICATALOG = str(Path(sys.executable).parent / "hicatalog")
#: The clean demo: `hicatalog demo` with the demo's mocks switched to the clean realism.
CLEAN_DEMO = (
    "import functools, sys, hicatalog.config as c, hicatalog.demo as d; "
    "d.MockConfig = functools.partial(c.MockConfig, realism='clean'); "
    "from hicatalog.cli import main; sys.exit(main(['demo', '--out', *sys.argv[1:]]))"
)
SHIFTS = ("legacy", "degraded")


def _demo(work: Path, realism: str, extra: list[str]) -> dict:
    """Run the demo (unless done); its summary plus wall time and load averages."""
    out = work / realism / "demo"
    summary_file = out / "demo_summary.json"
    timing_file = out / "bench_timing.json"
    if not summary_file.exists():
        load0, t0 = os.getloadavg(), time.time()
        cmd = ([HICATALOG, "demo", "--out", str(out), *extra] if realism == "realistic"
               else [sys.executable, "-c", CLEAN_DEMO, str(out), *extra])
        subprocess.run(cmd, check=True)
        timing = {"wall_s": round(time.time() - t0, 1), "load_before": load0,
                  "load_after": os.getloadavg(), "command": " ".join(cmd[:3]) + " ..."}
        timing_file.write_text(json.dumps(timing))
    summary = json.loads(summary_file.read_text())
    summary["bench_timing"] = json.loads(timing_file.read_text()) if timing_file.exists() else None
    return summary


def _joined(catalog: str, truth: str) -> pl.DataFrame:
    """The catalog's ok rows joined with every truth column."""
    from hicatalog.evaluation.data import load_catalog

    cat = load_catalog(catalog).filter(pl.col("status") == "ok").select(
        "object_id", "m_pred", "m_pred_err", "p_cnn")
    return cat.join(pl.read_parquet(truth), on="object_id", how="inner")


def _quintiles(df: pl.DataFrame, by: str, target: str) -> list[dict]:
    edges = np.quantile(df[by].to_numpy(), np.linspace(0, 1, 6))
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        s = df.filter(pl.col(by).is_between(lo, hi, closed="both" if hi == edges[-1] else "left"))
        u = uncertainty_metrics(s[target], s["m_pred"], s["m_pred_err"])
        out.append({"range": [float(lo), float(hi)], "n": s.height,
                    "rmse": regression_metrics(s[target], s["m_pred"])["rmse"],
                    "coverage_68": u["coverage_68"], "coverage_95": u["coverage_95"]})
    return out


def _catalog_numbers(catalog: str, truth: str) -> dict:
    """RMSE, coverage and PR numbers of a catalog against a mock's truth (see the docstring)."""
    j = _joined(catalog, truth)
    det = j.filter(pl.col("population") == "alfalfa")
    res: dict = {"n_detections": det.height}
    # the clean mock's labels are the true values
    targets = {"true": "m_true", "measured": "m_label" if "m_label" in j.columns else "m_true"}
    def fit(s: pl.DataFrame, col: str) -> dict:
        return {**regression_metrics(s[col], s["m_pred"]),
                **{k: v for k, v in uncertainty_metrics(s[col], s["m_pred"], s["m_pred_err"]).items()
                   if k in ("coverage_68", "coverage_95", "z_std", "median_err")}}

    for name, col in targets.items():
        d = det.filter(pl.col(col).is_not_null())
        res[f"detections_vs_{name}"] = fit(d, col)
        res[f"detections_p_cnn_gt_0.9_vs_{name}"] = fit(d.filter(pl.col("p_cnn") > 0.9), col)
    res["coverage_by_m_pred_err_quintile"] = _quintiles(det, "m_pred_err", "m_true")
    res["coverage_by_m_pred_err_quintile_vs_measured"] = _quintiles(
        det.filter(pl.col(targets["measured"]).is_not_null()), "m_pred_err", targets["measured"])
    res["coverage_by_log_mstar_quintile"] = _quintiles(det, "log_mstar", "m_true")
    xg = j.filter(pl.col("population") == "xgass")
    res["xgass_vs_true"] = {cut: {"n": s.height, "rmse": regression_metrics(s["m_true"], s["m_pred"])["rmse"],
                                  "offset": regression_metrics(s["m_true"], s["m_pred"])["offset"]}
                            for cut, s in (("none", xg), ("p_cnn>0.9", xg.filter(pl.col("p_cnn") > 0.9)))
                            if s.height >= 2}
    # issue 13's out-of-distribution check: the xGASS-like non-detections' error bars against
    # the detections' (> 1 when the error bar flags galaxies unlike the training sample)
    xg_nondet = xg.filter(~pl.col("detected"))
    res["ood_median_err_ratio"] = (float(xg_nondet["m_pred_err"].median() / det["m_pred_err"].median())
                                   if xg_nondet.height else None)
    good = j.filter(pl.col("p_cnn") > 0.5)
    res["all_p_cnn_gt_0.5"] = {
        "n": good.height, "rmse": regression_metrics(good["m_true"], good["m_pred"])["rmse"],
        **{k: v for k, v in uncertainty_metrics(good["m_true"], good["m_pred"],
                                                good["m_pred_err"]).items()
           if k in ("coverage_68", "coverage_95", "z_std")}}
    pr = j.filter(pl.col("population").is_in(["alfalfa", "nondetections"]))
    res["pr_training_classes"] = {k: v for k, v in classification_metrics(
        pr["detected"].cast(pl.Float64), pr["p_cnn"]).items() if k in ("n", "accuracy", "roc_auc")}
    res["pr_training_classes"]["ece"] = expected_calibration_error(pr["detected"].cast(pl.Float64),
                                                                   pr["p_cnn"])
    if "seeing_fwhm_arcsec" in j.columns:  # what each effect did to the detections' RMSE
        def rmse(s: pl.DataFrame) -> dict:
            return {"n": s.height, "rmse_true": regression_metrics(s["m_true"], s["m_pred"])["rmse"]}

        by: dict = {"seeing_fwhm_quintile": [
            {"range": q["range"], "n": q["n"], "rmse_true": q["rmse"]}
            for q in _quintiles(det, "seeing_fwhm_arcsec", "m_true")]}
        by["axis_ratio"] = {name: rmse(det.filter(cond)) for name, cond in (
            ("edge_on_lt_0.35", pl.col("axis_ratio") < 0.35),
            ("middle", pl.col("axis_ratio").is_between(0.35, 0.8)),
            ("face_on_gt_0.8", pl.col("axis_ratio") > 0.8))}
        by["companions"] = {"none": rmse(det.filter(pl.col("n_companions") == 0)),
                            "in_cutout": rmse(det.filter(pl.col("n_companions") > 0)),
                            "blend": rmse(det.filter(pl.col("blend"))),
                            "tidal": rmse(det.filter(pl.col("tidal")))}
        by["outlier_kind"] = {k: {"n": s.height,
                                  "rmse_true": regression_metrics(s["m_true"], s["m_pred"])["rmse"],
                                  "rmse_measured": regression_metrics(s["m_label"], s["m_pred"])["rmse"]}
                              for k in ("none", "confused", "wrong_counterpart")
                              if (s := det.filter(pl.col("outlier_kind") == k)).height}
        noise = det["m_label"].to_numpy() - det["m_true"].to_numpy()
        by["label_error_of_detections"] = {"std": float(np.nanstd(noise)),
                                           "mean": float(np.nanmean(noise))}
        res["rmse_by_effect"] = by
    return res


def _robustness(run: Path, survey: dict, regression: str) -> dict:
    from hicatalog.evaluation.analyses import evaluate

    out = run / "robustness"
    if not (out / "robustness.json").exists():
        evaluate(str(out), analysis="robustness", data=[survey["cutouts"]], model=regression)
    r = json.loads((out / "robustness.json").read_text())
    colours = r["galaxies"][0]["colours"]
    return {"scatter_dex": r["scatter_dex"],
            # per colour, over the galaxies: the range of the mean shift of the prediction
            # (mean perturbed minus the original's) and of the scatter (std), dex
            "shift_range_by_colour": {c: [f(g["colours"][c]["mean"] - g["m_pred"] for g in r["galaxies"])
                                          for f in (min, max)] for c in colours},
            "std_range_by_colour": {c: [f(g["colours"][c]["std"] for g in r["galaxies"])
                                        for f in (min, max)] for c in colours},
            "max_abs_change_dex": max(c["max_abs_change"] for g in r["galaxies"]
                                      for c in g["colours"].values()),
            "galaxies": r["galaxies"]}


def _baselines(run: Path, train_mock: dict, regression: str) -> dict:
    """Appendix A on the training mock's validation rows, with the demo's regression model as
    the CNN (trained on the same rows with the same seed): RMSE and slope of each model against
    the cutouts' label (on the realistic mock the measured label, what a real validation has)."""
    from hicatalog.evaluation.analyses import evaluate

    out = run / "baselines"
    if not (out / "baselines.json").exists():
        evaluate(str(out), analysis="baselines", data=[train_mock["cutouts"]], model=regression)
    b = json.loads((out / "baselines.json").read_text())
    return {"n_val": b["n_val"], "cnn_beats_every_baseline": b["cnn_beats_every_baseline"],
            "metrics": {k: {"rmse": v["rmse"], "slope": v["slope"]} for k, v in b["metrics"].items()}}


def _environment(run: Path, train_mock: dict, repeats: int) -> dict:
    from hicatalog.evaluation.analyses import evaluate

    out = run / "environment"
    if not (out / "environment.json").exists():
        evaluate(str(out), analysis="environment", data=[train_mock["cutouts"]],
                 tracers=train_mock["tracers"], repeats=repeats, windows=False)
    e = json.loads((out / "environment.json").read_text())
    low, high, rnd = e["table4"]
    gap = high["nrmse_mean"] - low["nrmse_mean"]
    return {"sparse_val_nrmse": [low["nrmse_mean"], low["nrmse_std"]],
            "dense_val_nrmse": [high["nrmse_mean"], high["nrmse_std"]],
            "random_val_nrmse": [rnd["nrmse_mean"], rnd["nrmse_std"]],
            "dense_minus_sparse": gap,
            "gap_spread": float(np.hypot(low["nrmse_std"], high["nrmse_std"])),
            "dense_validation_worse": e["dense_validation_worse"], "repeats": repeats}


def _shifted(run: Path, realism: str, summary: dict, shift: str, n: int, seed: int) -> dict:
    from hicatalog.catalog.build import make_catalog
    from hicatalog.evaluation.catalog import evaluate_catalog
    from hicatalog.mock.survey import generate_mock

    base = run / f"shifted_{shift}"
    mock = {"cutouts": str(base / "mock" / "cutouts"), "truth": str(base / "mock" / "truth.parquet"),
            "tracers": str(base / "mock" / "tracers.parquet")}
    if not (base / "mock" / "_mock.json").exists():
        generate_mock(str(base / "mock"), n=n, seed=seed, realism=realism, shifted_imaging=shift)
    if not (base / "report" / "metrics.json").exists():
        make_catalog(cutouts=mock["cutouts"], regression=summary["models"]["regression"],
                     pr=summary["models"]["pr"], tracers=mock["tracers"], out=str(base / "catalog"))
        evaluate_catalog(str(base / "catalog"), mock["truth"], str(base / "report"))
    return _catalog_numbers(str(base / "catalog"), mock["truth"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/mock_science")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--realism", nargs="+", default=["clean", "realistic"])
    ap.add_argument("--repeats", type=int, default=5, help="trainings per Table 4 split")
    ap.add_argument("--skip", nargs="*", default=[], choices=["environment", "robustness", "baselines", "shifted"])
    ap.add_argument("--demo-args", default="", help="extra demo flags (a smoke test: "
                    "'--n-train 300 --n-survey 300 --epochs 1')")
    args = ap.parse_args()
    work = Path(args.work)
    result: dict = {"benchmark": "mock_science", "cpu_count": os.cpu_count(), "work": str(work),
                    "demo_args": args.demo_args, "repeats": args.repeats, "runs": {}}

    def save():
        write_result(args.out, "bench_mock_science", result)

    summaries = {}
    for realism in args.realism:  # the demos first, each its own process and Ray
        s = _demo(work, realism, args.demo_args.split())
        summaries[realism] = s
        result["runs"][realism] = {
            "demo": {"total_s": s["total_s"], "timings_s": s["timings_s"],
                     "bench_timing": s["bench_timing"]},
            "survey": _catalog_numbers(s["catalog"], s["survey_mock"]["truth"]),
            "evaluation_pr": {k: s["metrics"]["pr"].get(k) for k in ("training_classes",)},
        }
        save()
    from hicatalog.runtime import init_ray

    init_ray()
    for realism in args.realism:
        s, run, r = summaries[realism], work / realism, result["runs"][realism]
        if "robustness" not in args.skip:
            r["robustness"] = _robustness(run, s["survey_mock"], s["models"]["regression"])
            save()
        if "baselines" not in args.skip:
            r["baselines"] = _baselines(run, s["training_mock"], s["models"]["regression"])
            save()
        if "shifted" not in args.skip:
            manifest = json.loads(Path(s["survey_mock"]["truth"]).with_name("_mock.json").read_text())
            for shift in SHIFTS:
                r[f"shifted_{shift}"] = _shifted(run, realism, s, shift, manifest["config"]["n"],
                                                 manifest["config"]["seed"])
                save()
    for realism in args.realism:  # the long part last
        if "environment" not in args.skip:
            s, run = summaries[realism], work / realism
            result["runs"][realism]["environment"] = _environment(run, s["training_mock"],
                                                                  args.repeats)
            save()
    result["load_average_end"] = os.getloadavg()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
