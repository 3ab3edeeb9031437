"""The survey-wide goals of issue 27, measured on a finished demo (held-out survey mock).

Reads what ``hicatalog demo --out DEMO`` wrote (``demo_summary.json`` and the evaluation's
``report/metrics.json``: its ``by_quintile``, ``p_detect``, ``linear_means`` and
``regression`` sections, :func:`hicatalog.evaluation.catalog.evaluate_catalog`) and prints
each goal against its measured value, for every galaxy of the survey mock (status ok, against
the truth):

- 68% / 95% coverage in every quintile of p_cnn, 1+delta5, z and true log M* (goal: within
  +-0.03 / +-0.02 of nominal): the worst quintile of each variable;
- mean bias (m_pred - m_true) in every quintile of log M* and p_cnn (goal +-0.05 dex);
- Spearman(interval width, |error|) over all galaxies (goal >= 0.2);
- p_detect's expected calibration error against the mock's detection flag (goal <= 0.03);
- mean of 10^M in 0.25-dex bins of log M* (goal: within 0.1 dex of the truth's; bins with at
  least 50 galaxies);
- the RMSE of the ALFALFA-like detections (``--compare DIR``: a catalog of the same survey by
  a detections-only regression, for the goal "no worse by more than 0.02 dex");
- the demo's wall time per step (goal: under 10 minutes).

    .venv/bin/python benchmarks/bench_survey_wide.py --demo runs/demo --out benchmarks/results

Run it from the directory the demo ran in (``demo_summary.json`` holds the paths as given).
Writes ``OUT/bench_survey_wide.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from _results import write_result  # benchmarks/_results.py

VARIABLES = ("p_cnn", "one_plus_delta5", "z", "log_mstar")
MIN_BIN = 50


def _worst(rows: list[dict], key: str, nominal: float) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return max(values, key=lambda v: abs(v - nominal)) if values else None


def goals(metrics: dict, compare: dict | None = None) -> dict:
    """The issue's goals from a report's ``metrics.json`` (and a detections-only report's)."""
    bq = metrics["by_quintile"]
    out: dict = {"coverage": {}, "bias": {}}
    for v in VARIABLES:
        rows = (bq["variables"].get(v) or {}).get("all") or []
        out["coverage"][v] = {"worst_68": _worst(rows, "coverage_68", 0.68),
                              "worst_95": _worst(rows, "coverage_95", 0.95),
                              "all_68": [r["coverage_68"] for r in rows],
                              "all_95": [r["coverage_95"] for r in rows]}
        out["bias"][v] = {"worst": _worst(rows, "bias", 0.0), "all": [r["bias"] for r in rows]}
    out["spearman_all"] = bq["overall"]["all"]["spearman_width_abs_error"]
    out["p_detect_ece"] = (metrics.get("p_detect") or {}).get("ece")
    lm = metrics.get("linear_means") or {}
    bins = [b for b in lm.get("bins", []) if b["n"] >= MIN_BIN and b["diff"] is not None]
    out["linear_means"] = {"worst_diff": _worst(bins, "diff", 0.0),
                           "bins": [(b["lo"], b["n"], b["diff"]) for b in bins]}
    det = metrics["regression"].get("survey detections", {}).get("none", {})
    out["detections_rmse"] = det.get("rmse")
    if compare is not None:
        out["detections_rmse_detections_only"] = (
            compare["regression"].get("survey detections", {}).get("none", {}).get("rmse"))
    return out


def _line(name: str, value, goal: str, ok: bool | None) -> None:
    mark = "" if ok is None else ("ok" if ok else "MISSED")
    shown = f"{value:+.3f}" if isinstance(value, float) else str(value)
    print(f"  {name:46s} {shown:>10s}   goal {goal:22s} {mark}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="runs/demo", help="the demo's OUT directory")
    ap.add_argument("--compare", default=None,
                    help="report directory of a detections-only regression's catalog of the "
                         "same survey (its metrics.json)")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    summary = json.load(open(os.path.join(args.demo, "demo_summary.json")))
    metrics = json.load(open(os.path.join(summary["report"], "metrics.json")))
    compare = (json.load(open(os.path.join(args.compare, "metrics.json")))
               if args.compare else None)
    g = goals(metrics, compare)
    print(f"survey-wide goals on {summary['report']} ({metrics['counts']['n_matched']} galaxies)")
    for v in VARIABLES:
        c = g["coverage"][v]
        if c["worst_68"] is not None:
            _line(f"coverage 68% worst quintile of {v}", c["worst_68"], "0.68 +- 0.03",
                  abs(c["worst_68"] - 0.68) <= 0.03)
            _line(f"coverage 95% worst quintile of {v}", c["worst_95"], "0.95 +- 0.02",
                  abs(c["worst_95"] - 0.95) <= 0.02)
    for v in ("log_mstar", "p_cnn", "one_plus_delta5", "z"):
        b = g["bias"][v]["worst"]
        if b is not None:
            _line(f"bias worst quintile of {v} (dex)", b, "+-0.05" if v in ("log_mstar", "p_cnn")
                  else "(reported)", abs(b) <= 0.05 if v in ("log_mstar", "p_cnn") else None)
    _line("Spearman(width, |error|), all", g["spearman_all"], ">= 0.2",
          g["spearman_all"] is not None and g["spearman_all"] >= 0.2)
    _line("p_detect ECE", g["p_detect_ece"], "<= 0.03",
          g["p_detect_ece"] is not None and g["p_detect_ece"] <= 0.03)
    w = g["linear_means"]["worst_diff"]
    _line(f"mean 10^M, worst 0.25-dex bin of log M* (n>={MIN_BIN})", w, "+-0.1 dex",
          w is not None and abs(w) <= 0.1)
    _line("RMSE of the ALFALFA-like detections (dex)", g["detections_rmse"], "(see compare)", None)
    if compare is not None:
        ref = g["detections_rmse_detections_only"]
        _line("  the detections-only network's", ref, "<= this + 0.02",
              ref is not None and g["detections_rmse"] <= ref + 0.02)
    total = summary.get("total_s")
    _line("demo wall time (s)", total, "< 600", total is not None and total < 600)
    write_result(args.out, "bench_survey_wide", {"demo": args.demo, "goals": g,
                                                 "timings_s": summary.get("timings_s"),
                                                 "total_s": total})
    return 0


if __name__ == "__main__":
    sys.exit(main())
