"""``hicatalog evaluate catalog``: Table 2, PR accuracy/AUC and Figures 2-5 for any build.

:func:`evaluate_catalog` joins a catalog directory with a truth table on ``object_id``, keeps
rows with ``status == 'ok'``, and computes per sample (``dataset`` of a labels table, or the
mock's ``population``) and per PR cut (none, p_cnn > 0.5, 0.8, 0.9) the paper's metrics. It
writes into ``out_dir``:

- ``metrics.json``: the returned dict (strict JSON, NaN as null);
- ``table2.md``: the Table 2 layout;
- ``pred_vs_true.png`` (Figures 2/4, no cut), ``pred_vs_true_p0.9.png`` (p_cnn > 0.9),
  ``pcnn_hist.png`` (Figure 5), ``residuals.png`` (Figure 3), ``roc.png``;
- ``index.html``: all of it, with the build's ``_manifest.json``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import polars as pl

from hicatalog.evaluation import figures
from hicatalog.evaluation.data import (
    join_catalog_truth,
    load_catalog,
    load_manifests,
    load_truth,
    order_datasets,
)
from hicatalog.evaluation.report import Section, json_safe, write_json, write_report
from hicatalog.evaluation.tables import (
    TABLE2_HEADERS,
    cut_key,
    html_table,
    markdown_table,
    table2_markdown,
    table2_rows,
)
from hicatalog.metrics import (
    PR_CUTS,
    classification_metrics,
    regression_metrics,
    roc_auc,
    roc_curve,
)
from hicatalog.storage import write_atomic

__all__ = ["catalog_metrics", "evaluate_catalog"]

log = logging.getLogger("hicatalog.evaluation")

ALL = "all"
#: Samples that play the PR network's detection class (mock, then the paper's a.40A).
PR_TRAINING_DETECTIONS = ("alfalfa", "a40A")


def _np(df: pl.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        return np.full(df.height, np.nan)
    return df.get_column(col).cast(pl.Float64).to_numpy()


def catalog_metrics(
    joined: pl.DataFrame, cuts: tuple[float | None, ...] = PR_CUTS
) -> dict[str, Any]:
    """Metrics of a joined catalog+truth table (columns ``m_pred``, ``p_cnn``, ``m_true``,
    ``dataset``, optional ``detected``).

    Returns ``{"datasets", "cuts", "regression", "pr"}`` where
    ``regression[dataset][cut_key] = {"n", "rmse", "slope", "sigma", "offset", "completeness"}``
    (``completeness``: fraction of the dataset's uncut rows that pass the cut), with an extra
    dataset ``"all"`` pooling every sample, and ``pr = {"all": {...}, "by_dataset": {...}}``
    from :func:`~hicatalog.metrics.classification_metrics` of ``p_cnn`` against
    ``detected`` (``None`` when the truth has no ``detected``), plus ``training_classes``
    (detection sample ``alfalfa``/``a40A`` against ``nondetections``, the paper's 93% / 0.93)
    when both samples are present.
    """
    datasets = order_datasets(set(joined.get_column("dataset").to_list()))
    groups = [(d, joined.filter(pl.col("dataset") == d)) for d in datasets]
    if len(datasets) > 1:
        groups.append((ALL, joined))
    regression: dict[str, dict[str, Any]] = {}
    for name, df in groups:
        m_pred, m_true, p = _np(df, "m_pred"), _np(df, "m_true"), _np(df, "p_cnn")
        base = np.isfinite(m_pred) & np.isfinite(m_true)
        n_base = int(base.sum())
        regression[name] = {}
        for cut in cuts:
            sel = base if cut is None else base & (np.nan_to_num(p, nan=-1.0) > cut)
            m = regression_metrics(m_true[sel], m_pred[sel])
            m["completeness"] = m["n"] / n_base if n_base else float("nan")
            regression[name][cut_key(cut)] = m
    pr: dict[str, Any] | None = None
    if "detected" in joined.columns:
        lab = joined.filter(pl.col("detected").is_not_null())
        y = lab.get_column("detected").cast(pl.Float64).to_numpy()
        pr = {"all": classification_metrics(y, _np(lab, "p_cnn")), "by_dataset": {}}
        # the PR network's own classes (paper Section 5.3: a.40A detections against
        # ALFALFA non-detections), when both samples are present
        det = [d for d in PR_TRAINING_DETECTIONS if d in datasets]
        if det and "nondetections" in datasets:
            pair = lab.filter(pl.col("dataset").is_in([det[0], "nondetections"]))
            pr["training_classes"] = {
                "samples": [det[0], "nondetections"],
                **classification_metrics(pair.get_column("detected").cast(pl.Float64).to_numpy(),
                                         _np(pair, "p_cnn")),
            }
        for d in datasets:
            sub = lab.filter(pl.col("dataset") == d)
            if sub.height:
                pr["by_dataset"][d] = classification_metrics(
                    sub.get_column("detected").cast(pl.Float64).to_numpy(), _np(sub, "p_cnn")
                )
    return {"datasets": datasets, "cuts": [cut_key(c) for c in cuts], "regression": regression, "pr": pr}


def _figures(joined: pl.DataFrame, datasets: list[str], out_dir: str) -> list[str]:
    paths = []
    panels = [(d, _np(g, "m_true"), _np(g, "m_pred")) for d in datasets
              for g in [joined.filter(pl.col("dataset") == d)]]
    paths.append(figures.plot_pred_vs_true(panels, os.path.join(out_dir, "pred_vs_true.png")))
    cut_panels = []
    for d in datasets:
        g = joined.filter((pl.col("dataset") == d) & (pl.col("p_cnn") > 0.9))
        cut_panels.append((f"{d}, p_CNN > 0.9", _np(g, "m_true"), _np(g, "m_pred")))
    paths.append(figures.plot_pred_vs_true(cut_panels, os.path.join(out_dir, "pred_vs_true_p0.9.png")))
    hists = {d: _np(joined.filter(pl.col("dataset") == d), "p_cnn") for d in datasets}
    paths.append(figures.plot_pcnn_histograms(hists, os.path.join(out_dir, "pcnn_hist.png")))
    # Residuals (Figure 3) of the first sample (the training-like one), as in the paper.
    g = joined.filter(pl.col("dataset") == datasets[0])
    one_plus_delta5 = _np(g, "one_plus_delta5")
    if not np.isfinite(one_plus_delta5).any():
        one_plus_delta5 = _np(g, "one_plus_delta5_true")
    z = _np(g, "z")
    if not np.isfinite(z).any():
        z = _np(g, "z_true")
    with np.errstate(divide="ignore", invalid="ignore"):
        log10_one_plus_delta5 = np.where(one_plus_delta5 > 0, np.log10(one_plus_delta5), np.nan)
    props = {"z": z, r"log $M_\star$": _np(g, "log_mstar"), r"log$(1+\delta_5)$": log10_one_plus_delta5}
    props = {k: v for k, v in props.items() if np.isfinite(v).any()}
    paths.append(figures.plot_residuals(
        _np(g, "m_true"), _np(g, "m_pred"), props, os.path.join(out_dir, "residuals.png"),
        title=f"{datasets[0]}: residuals",
    ))
    if "detected" in joined.columns:
        lab = joined.filter(pl.col("detected").is_not_null() & pl.col("p_cnn").is_not_null())
        y = lab.get_column("detected").cast(pl.Float64).to_numpy()
        if 0 < y.sum() < y.size:
            fpr, tpr = roc_curve(y, _np(lab, "p_cnn"))
            paths.append(figures.plot_roc(
                {"all samples": (fpr, tpr, roc_auc(y, _np(lab, "p_cnn")))},
                os.path.join(out_dir, "roc.png"),
            ))
    return paths


def evaluate_catalog(catalog_dir: str, truth_path: str, out_dir: str) -> dict[str, Any]:
    """Evaluate a catalog against a truth table; write metrics, table, figures and report.

    Parameters
    ----------
    catalog_dir: ``hi_catalog`` Parquet dataset (directory, read recursively, or a file).
    truth_path: mock ``truth.parquet``, a ``labels`` table, or labelled cutout shards.
    out_dir: report directory (created).

    Returns
    -------
    The content of ``out_dir/metrics.json`` (NaN as ``None``): ``{"inputs", "counts", "datasets", "cuts",
    "regression", "pr", "files", "manifest"}``; ``regression[dataset][cut]`` has
    ``n, rmse, slope, sigma, offset, completeness`` (dex; see
    :func:`hicatalog.metrics.regression_metrics`).

    Raises
    ------
    SchemaError / FileNotFoundError: unreadable inputs; ValueError: no catalog row matches the
    truth.
    """
    catalog = load_catalog(catalog_dir)
    truth = load_truth(truth_path)
    jt = join_catalog_truth(catalog, truth)
    if jt.table.height == 0:
        raise ValueError(
            f"no catalog row with status 'ok' in {catalog_dir} matches an object_id of {truth_path} "
            f"(catalog rows: {jt.counts['n_catalog']}, ok: {jt.counts['n_ok']}, truth rows: "
            f"{jt.counts['n_truth']})"
        )
    os.makedirs(out_dir, exist_ok=True)
    result = catalog_metrics(jt.table)
    manifests = load_manifests(catalog_dir if os.path.isdir(catalog_dir) else os.path.dirname(catalog_dir))
    fig_paths = _figures(jt.table, result["datasets"], out_dir)
    table_md = table2_markdown(result["regression"])
    pr_rows = _pr_rows(result["pr"]) if result["pr"] is not None else []
    text = "# Regression metrics per sample and PR cut (paper Table 2 layout)\n\n" + table_md
    if pr_rows:
        text += ("\n# Pattern recognition: p_CNN against detection\n\n"
                 + markdown_table(PR_HEADERS, pr_rows))
    write_atomic(os.path.join(out_dir, "table2.md"), text.encode())
    out = {
        "inputs": {"catalog": os.path.abspath(catalog_dir), "truth": os.path.abspath(truth_path)},
        "counts": jt.counts,
        **result,
        "files": sorted(os.path.basename(p) for p in [*fig_paths, "table2.md", "index.html"]),
        "manifest": manifests.get("_manifest.json") or (manifests or None),
    }
    out = json_safe(out)
    write_json(out, os.path.join(out_dir, "metrics.json"))

    sec_t2 = Section("Table 2: M_pred by sample and p_CNN cut")
    sec_t2.html_parts.append(html_table(TABLE2_HEADERS, table2_rows(result["regression"])))
    sec_t2.add_text(
        "RMSE = sqrt(mean((M_pred - M_true)^2)); slope of the least-squares fit of M_pred on "
        "M_true; sigma = std(M_pred - M_true); offset = mean(M_pred - M_true); all in dex."
    )
    sections = [sec_t2]
    if result["pr"] is not None:
        sec_pr = Section("Pattern recognition: p_CNN against detection")
        sec_pr.html_parts.append(html_table(PR_HEADERS, pr_rows))
        sec_pr.figures += [p for p in fig_paths if p.endswith(("pcnn_hist.png", "roc.png"))]
        sections.append(sec_pr)
    else:
        sections.append(Section("Pattern recognition", figures=[p for p in fig_paths if p.endswith("pcnn_hist.png")]))
    sections.append(Section("M_pred against M_true (Figures 2, 4)",
                            figures=[p for p in fig_paths if "pred_vs_true" in p]))
    sections.append(Section("Residuals (Figure 3)", figures=[p for p in fig_paths if p.endswith("residuals.png")]))
    counts = jt.counts
    sec_c = Section("Rows used")
    sec_c.html_parts.append(html_table(
        ("catalog rows", "status ok", "truth rows", "matched", "ok without truth", "truth without ok row"),
        [[str(counts[k]) for k in ("n_catalog", "n_ok", "n_truth", "n_matched",
                                   "n_ok_without_truth", "n_truth_without_ok_row")]],
    ))
    sec_c.html_parts.append(html_table(("status", "rows"), [[k, str(v)] for k, v in counts["status_counts"].items()]))
    sections.append(sec_c)
    write_report(out_dir, "hicatalog evaluation: catalog", sections, manifest=out["manifest"],
                 inputs=out["inputs"])
    log.info("evaluation written to %s (%d matched rows)", out_dir, jt.table.height)
    return out


PR_HEADERS = ("Sample", "N", "detected", "accuracy (p_CNN > 0.5)", "ROC AUC")


def _pr_cells(m: dict[str, Any]) -> list[Any]:
    return [str(m["n"]), str(m["n_pos"]), m["accuracy"], m["roc_auc"]]


def _pr_rows(pr: dict[str, Any]) -> list[list[Any]]:
    rows = [["all", *_pr_cells(pr["all"])]]
    if "training_classes" in pr:
        tc = pr["training_classes"]
        rows.append([" vs ".join(tc["samples"]), *_pr_cells(tc)])
    rows += [[d, *_pr_cells(m)] for d, m in pr["by_dataset"].items()]
    return rows

