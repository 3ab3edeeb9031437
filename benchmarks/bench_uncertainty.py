"""The uncertainty goals of issue 13, measured on a finished demo (held-out survey mock).

Reads what ``hicatalog demo --out DEMO`` wrote (``demo_summary.json``, the models, the survey
mock and the evaluation's ``report/metrics.json``) and reports:

- the calibration of ``m_pred_err`` on the ALFALFA-like detections (68% / 95% coverage, std of
  the z-scores, CRPS) and the ECE of ``p_cnn``, from the evaluation;
- out of distribution: the median ``m_pred_err`` of the xGASS-like non-detections against the
  detections';
- the two parts of the error bar (``m_pred_err^2 = in-distribution^2 + (1 - p_cnn) *
  tau2``, :func:`hicatalog.models.predict.catalog_error`): coverage and z std of the whole
  error bar and of its in-distribution part alone, on the detections and, for every galaxy
  of the survey mock, in bins of ``p_cnn`` (what a user who does not know which galaxies are
  detections gets);
- the ensemble's RMSE against each member's on the same galaxies (one pass of the ensemble
  over the survey cutouts gives every member's prediction: member k's is the mean over views
  of its slice of :func:`hicatalog.models.predict_views`), and the same for the PR accuracy
  and AUC;
- the demo's wall time per step.

    .venv/bin/python benchmarks/bench_uncertainty.py --demo runs/demo

Run it from the directory the demo ran in: ``demo_summary.json`` holds the paths as the demo
was given them (``runs/demo/...`` for ``make demo``).

Prints a table of goals and writes ``OUT/bench_uncertainty.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import polars as pl
import torch
from _results import write_result  # benchmarks/_results.py

from hicatalog import storage
from hicatalog.cutouts.decode import decode_batch
from hicatalog.cutouts.shards import list_shards
from hicatalog.evaluation.data import load_truth
from hicatalog.metrics import classification_metrics, regression_metrics, uncertainty_metrics
from hicatalog.models import load_model, positive_probability, predict_views, regression_moments
from hicatalog.models.predict import class_probabilities


def member_predictions(model_dir: str, cutouts: str, ids: set[str], batch: int = 256):
    """``(object_ids, per-member prediction (N, K), ensemble prediction (N,))`` of the model
    at ``model_dir`` on the cutouts whose id is in ``ids`` (M for regression; for the PR
    network the probability of detection, uncalibrated per member, calibrated for the
    ensemble)."""
    model, card = load_model(model_dir)
    torch.set_num_threads(os.cpu_count() or 1)
    got_ids, members, ensemble = [], [], []
    for f in list_shards([cutouts]):
        t = pl.from_arrow(storage.read_parquet(f, ["object_id", "image"]))
        t = t.filter(pl.col("object_id").is_in(list(ids)))
        for lo in range(0, t.height, batch):
            part = t.slice(lo, batch)
            dec = decode_batch(part["image"].to_list(), card.cutout_size, card.image_size)
            if not dec.ok.any():
                continue
            out = predict_views(model, card, dec.images[dec.ok])  # (n, K, V, n_out)
            if card.task == "regression":
                members.append(out[..., 0].mean(dim=2).numpy())
                ensemble.append(regression_moments(out, card)["mean"].numpy())
            else:
                members.append(np.stack([class_probabilities(out[:, k:k + 1])[:, card.positive_index].numpy()
                                         for k in range(out.shape[1])], axis=1))
                ensemble.append(positive_probability(out, card).numpy())
            got_ids += [i for i, ok in zip(part["object_id"].to_list(), dec.ok, strict=True) if ok]
    return got_ids, np.concatenate(members), np.concatenate(ensemble), card


#: p_cnn bins of the error-bar table (the last one includes 1).
P_BINS = ((0.0, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 0.9), (0.9, 0.95), (0.95, 1.0))


def error_bar_parts(catalog_dir: str, truth: pl.DataFrame, tau2: float) -> dict:
    """Coverage of ``m_pred_err`` and of its in-distribution part ``sqrt(m_pred_err^2 - (1 -
    p_cnn) * tau2)``: ALFALFA-like detections (no cut, ``p_cnn > 0.9``), xGASS-like
    non-detections, and every galaxy with a true M in bins of ``p_cnn``."""
    from hicatalog.catalog.reader import read_catalog

    cat = pl.from_arrow(read_catalog(catalog_dir)).filter(pl.col("m_pred_err").is_not_null())
    j = cat.join(truth.select("object_id", "dataset", "detected", "upper_limit", "m_true"), on="object_id")
    j = j.filter(pl.col("m_true").is_not_null()).with_columns(
        err_in=(pl.col("m_pred_err") ** 2 - (1 - pl.col("p_cnn")) * tau2).clip(lower_bound=0).sqrt())
    det = (pl.col("dataset") == "alfalfa") & pl.col("detected")
    subsets = {"alfalfa detections": det, "alfalfa detections, p_cnn > 0.9": det & (pl.col("p_cnn") > 0.9),
               "xgass non-detections": (pl.col("dataset") == "xgass") & ~pl.col("detected"),
               **{f"all, p_cnn in [{lo}, {hi}{']' if hi == 1.0 else ')'}": pl.col("p_cnn").is_between(
                   lo, hi, closed="both" if hi == 1.0 else "left") for lo, hi in P_BINS},
               "all, p_cnn > 0.5": pl.col("p_cnn") > 0.5}
    out = {}
    for name, cond in subsets.items():
        s = j.filter(cond)
        out[name] = {"m_pred_err": uncertainty_metrics(s["m_true"], s["m_pred"], s["m_pred_err"]),
                     "in_distribution_part": uncertainty_metrics(s["m_true"], s["m_pred"], s["err_in"]),
                     "rmse": regression_metrics(s["m_true"], s["m_pred"])["rmse"]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="runs/demo", help="the --out of a finished hicatalog demo")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    summary = json.loads(storage.read_bytes(storage.join(args.demo, "demo_summary.json")))
    metrics = json.loads(storage.read_bytes(storage.join(summary["report"], "metrics.json")))
    survey = summary["survey_mock"]
    truth = load_truth(survey["truth"])
    result: dict = {"demo": args.demo, "timings_s": summary["timings_s"], "total_s": summary["total_s"]}

    # the ensemble against its members, on the same galaxies
    det = truth.filter((pl.col("dataset") == "alfalfa") & ~pl.col("upper_limit"))
    ids, members, ens, card = member_predictions(summary["models"]["regression"], survey["cutouts"],
                                                 set(det["object_id"].to_list()))
    m_true = det.join(pl.DataFrame({"object_id": ids}), on="object_id", how="right")["m_true"].to_numpy()
    result["regression"] = {
        "ensemble_size": card.ensemble_size, "head": card.head, "calibration": card.calibration,
        "n": len(ids),
        "member_rmse": [regression_metrics(m_true, members[:, k])["rmse"] for k in range(members.shape[1])],
        "ensemble_rmse": regression_metrics(m_true, ens)["rmse"],
    }
    lab = truth.filter(pl.col("dataset").is_in(["alfalfa", "nondetections"]) & pl.col("detected").is_not_null()
                       & ~pl.col("upper_limit"))
    ids, members, ens, card = member_predictions(summary["models"]["pr"], survey["cutouts"],
                                                 set(lab["object_id"].to_list()))
    y = lab.join(pl.DataFrame({"object_id": ids}), on="object_id", how="right")["detected"].cast(pl.Float64).to_numpy()
    result["pr"] = {
        "ensemble_size": card.ensemble_size, "calibration": card.calibration, "n": len(ids),
        "member": [{k: classification_metrics(y, members[:, j])[k] for k in ("accuracy", "roc_auc")}
                   for j in range(members.shape[1])],
        "ensemble": {k: classification_metrics(y, ens)[k] for k in ("accuracy", "roc_auc")},
    }
    tau2 = float(result["regression"]["calibration"].get("ood_variance", 0.0))
    result["error_bar_parts"] = error_bar_parts(summary["catalog"], truth, tau2)
    print(f"error bar (tau2 = {tau2:.3f} dex^2): coverage 68 / 95, z std -- whole m_pred_err | "
          "its in-distribution part")
    for name, v in result["error_bar_parts"].items():
        a, b = v["m_pred_err"], v["in_distribution_part"]
        print(f"  {name:36s} N={a['n']:5d} rms={v['rmse']:.3f}  {a['coverage_68']:.3f} / "
              f"{a['coverage_95']:.3f}, {a['z_std']:.2f} (median {a['median_err']:.3f})  |  "
              f"{b['coverage_68']:.3f} / {b['coverage_95']:.3f}, {b['z_std']:.2f} (median {b['median_err']:.3f})")
    result["evaluation"] = {k: metrics.get(k) for k in ("uncertainty", "ood", "pr")}
    for name, value in (("regression", result["regression"]), ("pr", result["pr"])):
        print(f"{name}: {json.dumps(value, default=str)}")
    write_result(args.out, "bench_uncertainty", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
