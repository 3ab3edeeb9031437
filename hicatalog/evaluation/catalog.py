"""``hicatalog evaluate catalog``: Table 2, PR accuracy/AUC and Figures 2-5 for any build.

:func:`evaluate_catalog` joins a catalog directory with a truth table on ``object_id``, keeps
rows with ``status == 'ok'``, and computes per sample and per PR cut (none, p_cnn > 0.5, 0.8,
0.9) the paper's metrics. Samples are the truth's ``dataset`` (or the mock's ``population``),
grouped as the paper reports them (:mod:`hicatalog.samples`: ``a40A`` and ``a40B`` together as
``a.40A``). Rows whose ``m_true`` is an upper limit (``upper_limit``, e.g. xGASS
non-detections) are never in the RMSE: they are scored as limits, the fraction of predictions
consistent with them. Samples the models were trained on (from the model cards the build's
manifest names) are marked as training samples. It writes into ``out_dir``:

- ``metrics.json``: the returned dict (strict JSON, NaN as null);
- ``table2.md``: the Table 2 layout, the upper-limit table and the PR table;
- ``pred_vs_true.png`` (Figures 2/4, no cut), ``pred_vs_true_p0.9.png`` (p_cnn > 0.9),
  ``pcnn_hist.png`` (Figure 5), ``residuals.png`` (Figure 3), ``roc.png``,
  ``reliability.png`` (p_cnn calibration);
- when the catalog has error bars (``m_pred_err``): ``pit.png`` and ``uncertainty.png``, and
  the uncertainty table in ``table2.md`` (:func:`uncertainty_block`);
- ``quintiles.png``: coverage, bias and Spearman(interval width, |error|) per quintile of
  p_cnn, 1+delta5, z and the true log M* (:func:`quintile_block`), with the tables of
  ``p_detect`` calibration and the linear means of 10^M;
- ``index.html``: all of it, with the build's ``_manifest.json``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import polars as pl

from hicatalog import storage
from hicatalog.errors import ConfigError, InputError
from hicatalog.evaluation import figures
from hicatalog.evaluation.data import (
    join_catalog_truth,
    load_catalog,
    load_manifests,
    load_truth,
    trained_on,
)
from hicatalog.evaluation.report import Report, Section, write_report
from hicatalog.evaluation.tables import (
    LIMITS_HEADERS,
    TABLE2_HEADERS,
    UNCERTAINTY_HEADERS,
    cut_key,
    fmt,
    limits_rows,
    table2_rows,
    uncertainty_rows,
)
from hicatalog.metrics import (
    PR_CUTS,
    calibration_metrics,
    classification_metrics,
    error_vs_uncertainty,
    expected_calibration_error,
    gaussian_intervals,
    interval_metrics,
    log_mean_linear,
    regression_metrics,
    roc_auc,
    roc_curve,
    uncertainty_metrics,
    upper_limit_metrics,
)
from hicatalog.samples import (
    DEFAULT_NEGATIVES,
    default_train_samples,
    order_groups,
    report_group,
    report_label,
)
from hicatalog.storage import json_safe, write_json_atomic

__all__ = ["catalog_metrics", "evaluate_catalog", "sample_roles", "group_labels", "uncertainty_block",
           "intervals", "quintile_block", "p_detect_block", "linear_mean_block"]

log = logging.getLogger("hicatalog.evaluation")

ALL = "all"

#: The catalog column of the per-galaxy error bar (predictive standard deviation of m_pred, dex).
ERR = "m_pred_err"


def _np(df: pl.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        return np.full(df.height, np.nan)
    return df.get_column(col).cast(pl.Float64).to_numpy()


def _with_groups(joined: pl.DataFrame) -> pl.DataFrame:
    """``joined`` with ``group`` (the sample's report group; a ``survey`` sample split by
    ``detected``: :func:`hicatalog.samples.report_group`), ``upper_limit`` (bool: ``m_true`` is
    only an upper limit) and ``m_limit`` (float64, dex, null where none): the row's upper limit,
    ``m_true`` where ``upper_limit``, else the mock's ``m_label`` where ``label_is_limit`` (the
    label a survey gives is a limit while the truth knows the true ``m_true``)."""
    if "detected" in joined.columns:
        group = pl.struct("dataset", "detected").map_elements(
            lambda r: report_group(r["dataset"], r["detected"]), return_dtype=pl.String)
    else:
        group = pl.col("dataset").map_elements(report_group, return_dtype=pl.String)
    out = joined.with_columns(group.alias("group"))
    if "upper_limit" not in out.columns:
        out = out.with_columns(pl.lit(False).alias("upper_limit"))
    out = out.with_columns(pl.col("upper_limit").fill_null(False))
    limit = pl.when(pl.col("upper_limit")).then(pl.col("m_true"))
    if "label_is_limit" in out.columns and "m_label" in out.columns:
        limit = limit.when(pl.col("label_is_limit").fill_null(False)).then(pl.col("m_label"))
    return out.with_columns(limit.otherwise(None).cast(pl.Float64).alias("m_limit"))


def sample_roles(
    groups: dict[str, list[str]], trained: dict[str, Any] | None
) -> dict[str, list[str]] | None:
    """For each group, the models trained on one of its samples: ``["regression", "pr"]``,
    ``["pr"]``, or ``[]`` (a test sample). ``None`` when neither card records its samples."""
    if not trained:
        return None
    reg, pr = trained.get("regression", {}), trained.get("pr", {})
    if "train_samples" not in reg and "train_samples" not in pr:
        return None
    used = {
        "regression": set(reg.get("train_samples") or ()),
        "pr": set(pr.get("train_samples") or ()) | set(pr.get("negatives") or ()),
    }
    return {g: [t for t in ("regression", "pr") if used[t] & set(samples)] for g, samples in groups.items()}


def group_labels(result: dict[str, Any], limits: bool = False) -> dict[str, str]:
    """Printed name of every group in ``result`` (from :func:`catalog_metrics`): the paper's
    name; ``detections`` when the group's upper limits are scored apart (``limits``: the names
    of those, ``xGASS upper limits``); and the models trained on the group's samples
    (``a.40A [trained on: regression, pr]``). ``all`` says when it includes training samples."""
    roles = result.get("roles")
    labels = {}
    withheld = result.get("limits_withheld", result["limits"])
    for g in result["limits"] if limits else result["datasets"]:
        lab = report_label(g) + (" upper limits" if limits else
                                 " detections" if g in withheld and not g.endswith("detections") else "")
        if roles and roles.get(g):
            lab += f" [trained on: {', '.join(roles[g])}]"
        labels[g] = lab
    if not limits and ALL in result["regression"]:
        trained_here = bool(roles) and any(roles.get(g) for g in result["datasets"])
        labels[ALL] = "all" + (" [includes training samples]" if trained_here else "")
    return labels


def _per_cut(
    df: pl.DataFrame, cuts: tuple[float | None, ...], metric: Any, extra: tuple[str, ...] = (),
    truth: str = "m_true",
) -> dict[str, Any]:
    """``{cut_key: metric(m_true, m_pred, *extra columns) + completeness}`` over the rows of
    ``df`` with finite ``m_pred`` and ``m_true`` (or the column ``truth``) that pass each PR
    cut (``p_cnn > cut``; a null ``p_cnn`` passes none); ``completeness``: the fraction of those
    rows that pass."""
    m_pred, m_true, p = _np(df, "m_pred"), _np(df, truth), _np(df, "p_cnn")
    more = [_np(df, c) for c in extra]
    base = np.isfinite(m_pred) & np.isfinite(m_true)
    n_base = int(base.sum())
    out = {}
    for cut in cuts:
        sel = base if cut is None else base & (np.nan_to_num(p, nan=-1.0) > cut)
        m = metric(m_true[sel], m_pred[sel], *(x[sel] for x in more))
        m["completeness"] = int(sel.sum()) / n_base if n_base else float("nan")
        out[cut_key(cut)] = m
    return out


def _pr_metrics(df: pl.DataFrame) -> dict[str, Any]:
    """Classification and calibration metrics of ``p_cnn`` against ``detected`` in ``df``."""
    y, p = df.get_column("detected").cast(pl.Float64).to_numpy(), _np(df, "p_cnn")
    return {**classification_metrics(y, p), **calibration_metrics(y, p)}


def has_errors(df: pl.DataFrame) -> bool:
    """Whether ``df`` has a usable error bar (finite, > 0 ``m_pred_err``) on some row."""
    e = _np(df, ERR)
    return bool(np.any(np.isfinite(e) & (np.nan_to_num(e) > 0)))


def _catalog_or_truth(df: pl.DataFrame, column: str, truth_column: str) -> np.ndarray:
    """The catalog's ``column`` of each row, else (when it has no finite value anywhere) the
    truth's ``truth_column``; NaN where unknown."""
    v = _np(df, column)
    return v if np.isfinite(v).any() else _np(df, truth_column)


def _log10_one_plus_delta5(df: pl.DataFrame) -> np.ndarray:
    """log10(1+delta5) of each row: the catalog's ``one_plus_delta5``, else (when the catalog
    has none) the truth's ``one_plus_delta5_true``; NaN where unknown or not positive."""
    v = _catalog_or_truth(df, "one_plus_delta5", "one_plus_delta5_true")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, np.log10(v), np.nan)


def _subsets(df: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """A group's rows split as ``detected``, ``not detected`` (or ``values`` without a
    ``detected`` column) and ``upper limits``; empty ones left out."""
    values = df.filter(~pl.col("upper_limit"))
    if "detected" in df.columns:
        parts = [("detected", values.filter(pl.col("detected").fill_null(False))),
                 ("not detected", values.filter(~pl.col("detected").fill_null(True)))]
    else:
        parts = [("values", values)]
    parts.append(("upper limits", df.filter(pl.col("upper_limit"))))
    return [(name, sub) for name, sub in parts if sub.height]


def _median_err(df: pl.DataFrame) -> tuple[int, float]:
    e = _np(df, ERR)
    e = e[np.isfinite(e) & (np.nan_to_num(e) > 0)]
    return int(e.size), float(np.median(e)) if e.size else float("nan")


def uncertainty_block(
    joined: pl.DataFrame, cuts: tuple[float | None, ...] = PR_CUTS, n_env_bins: int = 5
) -> dict[str, Any]:
    """Whether the error bars ``m_pred_err`` are right, in a joined table with ``group`` and
    ``upper_limit`` (:func:`_with_groups`). Upper limits are left out of everything but ``ood``.

    Returns ``{"by_group", "error_vs_uncertainty", "uncertainty_vs_environment", "ood"}``:

    - ``by_group[group][cut_key]`` = :func:`~hicatalog.metrics.uncertainty_metrics` +
      ``completeness``, for the groups and cuts of ``regression`` (``all`` too);
    - ``error_vs_uncertainty[group]`` = :func:`~hicatalog.metrics.error_vs_uncertainty` (no cut);
    - ``uncertainty_vs_environment`` = ``{"edges", "by_group": {group: [{"lo", "hi", "x",
      "n", "median_err"}]}}``: the median ``m_pred_err`` of each group's rows in equal-count
      bins of log10(1+delta5) (``edges``, pooled over all rows; ``x`` the bin's median), or
      ``None`` without delta5;
    - ``ood`` = ``{"reference": {"group", "subset", "n", "median_err"}, "by_group": [{"group",
      "subset", "n", "median_err", "ratio"}]}``: the median ``m_pred_err`` of every group's
      ``detected`` / ``not detected`` (or ``values``) / ``upper limits`` rows, and its ratio to
      the first group's detections (the training-like sample): out-of-distribution galaxies
      should get larger error bars.
    """
    datasets = order_groups(set(joined.get_column("group").to_list()))
    values = joined.filter(~pl.col("upper_limit"))
    groups = [(d, values.filter(pl.col("group") == d)) for d in datasets]
    if len(datasets) > 1:
        groups.append((ALL, values))
    by_group = {name: _per_cut(df, cuts, uncertainty_metrics, extra=(ERR,)) for name, df in groups}
    evu = {name: error_vs_uncertainty(_np(df, "m_true"), _np(df, "m_pred"), _np(df, ERR))
           for name, df in groups}

    env = None
    x_all, e_all = _log10_one_plus_delta5(joined), _np(joined, ERR)
    usable = np.isfinite(x_all) & np.isfinite(e_all) & (np.nan_to_num(e_all) > 0)
    if usable.any():
        edges = np.unique(np.quantile(x_all[usable], np.linspace(0.0, 1.0, n_env_bins + 1)))
        env = {"edges": [float(v) for v in edges], "by_group": {}}
        group_col = joined.get_column("group").to_numpy()
        for d in datasets:
            sel = usable & (group_col == d)
            idx = np.searchsorted(edges[1:-1], x_all[sel], side="right")
            x, e = x_all[sel], e_all[sel]
            env["by_group"][d] = [
                {"lo": float(edges[b]), "hi": float(edges[min(b + 1, edges.size - 1)]),
                 "x": float(np.median(x[idx == b])), "n": int((idx == b).sum()),
                 "median_err": float(np.median(e[idx == b]))}
                for b in range(max(edges.size - 1, 1)) if (idx == b).any()
            ]

    ref_rows = _subsets(joined.filter(pl.col("group") == datasets[0]))[0]
    n_ref, ref = _median_err(ref_rows[1])
    ood: dict[str, Any] = {
        "reference": {"group": datasets[0], "subset": ref_rows[0], "n": n_ref, "median_err": ref},
        "by_group": [],
    }
    for d in datasets:
        for subset, df in _subsets(joined.filter(pl.col("group") == d)):
            n, med = _median_err(df)
            ood["by_group"].append({"group": d, "subset": subset, "n": n, "median_err": med,
                                    "ratio": med / ref if ref > 0 else float("nan")})
    return {"by_group": by_group, "error_vs_uncertainty": evu, "uncertainty_vs_environment": env,
            "ood": ood}


def catalog_metrics(
    joined: pl.DataFrame, cuts: tuple[float | None, ...] = PR_CUTS,
    trained: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of a joined catalog+truth table (columns ``m_pred``, ``p_cnn``, ``m_true``,
    ``dataset``, optional ``detected`` and ``upper_limit``).

    ``trained``: what the models were trained on (:func:`hicatalog.evaluation.data.trained_on`).

    Returns ``{"datasets", "groups", "cuts", "regression", "limits", "roles", "trained_on",
    "pr", "uncertainty"}``: ``datasets`` are the report groups in display order (``groups`` maps each to its
    samples: ``{"a.40A": ["a40A", "a40B"]}``);
    ``regression[group][cut_key] = {"n", "rmse", "slope", "sigma", "offset", "completeness"}``
    over the group's rows that are not upper limits (``completeness``: fraction of them that
    pass the cut), with an extra group ``"all"`` pooling them all;
    ``limits[group][cut_key] = {"n", "n_consistent", "frac_consistent", "median_excess",
    "completeness"}`` for the groups with upper-limit rows (:func:`~hicatalog.metrics.upper_limit_metrics`);
    ``roles`` from :func:`sample_roles`; ``pr = {"all": {...}, "by_dataset": {...},
    "training_classes": {...}}`` from :func:`~hicatalog.metrics.classification_metrics` and
    :func:`~hicatalog.metrics.calibration_metrics` (``ece``, ``brier``, ``reliability``) of
    ``p_cnn`` against ``detected`` (``None`` when the truth has no ``detected``);
    ``training_classes``: the PR network's own classes (its card's detection samples against its
    negatives, else the paper's: ``alfalfa`` or ``a40A``+``a40B`` against ``nondetections``),
    when both are present; ``uncertainty``: :func:`uncertainty_block` when some row has a
    usable ``m_pred_err``, else ``None``; ``limits_withheld``: the groups whose limit rows
    (truth ``upper_limit``) are left out of ``regression``; ``by_quintile``:
    :func:`quintile_block`; ``p_detect``: :func:`p_detect_block` (``None`` without a
    ``p_detect`` column); ``linear_means``: :func:`linear_mean_block`. A row's limit is
    ``m_limit`` (:func:`_with_groups`: the truth's ``upper_limit`` rows, or the mock's
    ``label_is_limit`` labels); ``limits`` entries add, with error bars, ``n_err``,
    ``frac_consistent_p05``, ``mean_censored_loglik`` (:func:`~hicatalog.metrics.upper_limit_metrics`)
    and the same sample's detections' ``detections_n`` and ``detections_mean_loglik``.
    """
    joined = _with_groups(joined)
    datasets = order_groups(set(joined.get_column("group").to_list()))
    members = {g: sorted(set(joined.filter(pl.col("group") == g).get_column("dataset").to_list()))
               for g in datasets}
    values = joined.filter(~pl.col("upper_limit"))
    groups = [(d, values.filter(pl.col("group") == d)) for d in datasets]
    if len(datasets) > 1:
        groups.append((ALL, values))
    regression = {name: _per_cut(df, cuts, regression_metrics) for name, df in groups}
    limits = {}
    for d in datasets:
        df = joined.filter(pl.col("m_limit").is_not_null() & (pl.col("group") == d))
        if df.height:
            limits[d] = _per_cut(df, cuts, upper_limit_metrics, extra=(ERR,), truth="m_limit")
            det = values.filter(pl.col("dataset").is_in(members[d]) & pl.col("detected").fill_null(False)) \
                if "detected" in values.columns else values.clear()
            det_ll = _per_cut(det, cuts, _gaussian_loglik, extra=(ERR,))
            for k, m in limits[d].items():
                m["detections_n"], m["detections_mean_loglik"] = det_ll[k]["n"], det_ll[k]["mean_loglik"]
    withheld = [d for d in datasets
                if joined.filter(pl.col("upper_limit") & (pl.col("group") == d)).height]
    pr: dict[str, Any] | None = None
    if "detected" in joined.columns:
        lab = joined.filter(pl.col("detected").is_not_null())
        pr = {"all": _pr_metrics(lab), "by_dataset": {}}
        pair = _training_classes(lab, (trained or {}).get("pr") or {})
        if pair is not None:
            pr["training_classes"] = pair
        for d in datasets:
            sub = lab.filter(pl.col("group") == d)
            if sub.height:
                pr["by_dataset"][d] = _pr_metrics(sub)
    return {"datasets": datasets, "groups": members, "cuts": [cut_key(c) for c in cuts],
            "regression": regression, "limits": limits, "limits_withheld": withheld,
            "roles": sample_roles(members, trained), "trained_on": trained, "pr": pr,
            "uncertainty": uncertainty_block(joined, cuts) if has_errors(joined) else None,
            "by_quintile": quintile_block(joined), "p_detect": p_detect_block(joined),
            "linear_means": linear_mean_block(joined)}


def _gaussian_loglik(m_true: np.ndarray, m_pred: np.ndarray, err: np.ndarray) -> dict[str, Any]:
    """``{"n", "mean_loglik"}``: the mean Gaussian log-likelihood (log density, per dex) of
    ``m_true`` under ``N(m_pred, err^2)`` over the rows with a usable error (the negative of
    :func:`~hicatalog.metrics.uncertainty_metrics`' ``mean_nll``)."""
    m = uncertainty_metrics(m_true, m_pred, err)
    return {"n": m["n"], "mean_loglik": -m["mean_nll"] if m["n"] else float("nan")}


#: The catalog's predictive interval columns: bounds of the central 68% and 95% intervals of M.
INTERVAL_COLUMNS = ("m_lo68", "m_hi68", "m_lo95", "m_hi95")

#: The grouping variables of :func:`quintile_block`: metrics.json name -> where it is read.
QUINTILE_VARIABLES = {
    "p_cnn": "catalog p_cnn",
    "one_plus_delta5": "catalog one_plus_delta5 (else the truth's one_plus_delta5_true)",
    "z": "catalog z (else the truth's z)",
    "log_mstar": "truth log_mstar (true log M*)",
}


def _quintile_variable(df: pl.DataFrame, name: str) -> np.ndarray:
    if name == "one_plus_delta5":
        return _catalog_or_truth(df, "one_plus_delta5", "one_plus_delta5_true")
    if name == "z":
        return _catalog_or_truth(df, "z", "z_true")
    return _np(df, name)


def intervals(df: pl.DataFrame) -> tuple[list[np.ndarray], dict[str, int]]:
    """The predictive intervals of each row of ``df``: ``([lo68, hi68, lo95, hi95], counts)``
    (float64 arrays, dex). A row's bounds are the catalog's ``m_lo68``, ``m_hi68``, ``m_lo95``,
    ``m_hi95`` where all four are finite, else the Gaussian ``m_pred -+ {1, 1.96} x
    m_pred_err`` (:func:`~hicatalog.metrics.gaussian_intervals`), else NaN. ``counts``:
    ``{"columns", "gaussian", "none"}``, the rows that took each."""
    gauss = gaussian_intervals(_np(df, "m_pred"), _np(df, ERR))
    given = [_np(df, c) for c in INTERVAL_COLUMNS]
    use = np.all([np.isfinite(g) for g in given], axis=0) if df.height else np.zeros(0, bool)
    bounds = [np.where(use, g, a) for g, a in zip(given, gauss, strict=True)]
    n_gauss = int((~use & np.isfinite(gauss[0])).sum())
    return bounds, {"columns": int(use.sum()), "gaussian": n_gauss,
                    "none": int(df.height - use.sum() - n_gauss)}


def quintile_block(joined: pl.DataFrame, n_q: int = 5) -> dict[str, Any]:
    """Coverage, bias and rank correlation of the intervals per quintile of p_cnn, 1+delta5,
    z and the true log M*, in a joined table with ``group`` and ``upper_limit``
    (:func:`_with_groups`).

    Rows: every row that is not an upper limit with finite ``m_true`` and ``m_pred`` (subset
    ``all``) and those of them with ``detected`` true (``detections``; absent when the truth
    has no ``detected``). Intervals from :func:`intervals` (the catalog's bounds, else the
    Gaussian of ``m_pred_err``). Returns ``{"n", "interval_source", "subsets", "overall",
    "variables"}``: ``interval_source`` = :func:`intervals`' counts; ``overall[subset]`` =
    :func:`~hicatalog.metrics.interval_metrics` over the subset (its
    ``spearman_width_abs_error``: the overall Spearman(width, |error|));
    ``variables[name]`` (names :data:`QUINTILE_VARIABLES`; ``None`` when no row has the
    variable) = ``{"source", "edges", "n_missing", "all": [...], "detections": [...]}``:
    ``edges`` the ``n_q + 1`` quantiles of the variable over the ``all`` rows that have it
    (rows without it are left out of this variable only, ``n_missing``), and per subset one
    dict per quintile, ``{"q", "lo", "hi"}`` + :func:`~hicatalog.metrics.interval_metrics`
    (``coverage_68``, ``coverage_95``, ``bias``, ``rmse``, ``spearman_width_abs_error``,
    ``mean_width_68``, ...). A value on an inner edge goes to the upper quintile.
    """
    values = joined.filter(~pl.col("upper_limit"))
    base = np.isfinite(_np(values, "m_true")) & np.isfinite(_np(values, "m_pred"))
    rows = values.filter(pl.Series(base))
    bounds, source = intervals(rows)
    t, p = _np(rows, "m_true"), _np(rows, "m_pred")
    subsets = {"all": np.ones(rows.height, bool)}
    if "detected" in rows.columns:
        subsets["detections"] = rows.get_column("detected").fill_null(False).to_numpy().astype(bool)

    def metrics(sel: np.ndarray) -> dict[str, Any]:
        return interval_metrics(t[sel], p[sel], *(b[sel] for b in bounds))

    variables: dict[str, Any] = {}
    for name, where in QUINTILE_VARIABLES.items():
        x = _quintile_variable(rows, name)
        has = np.isfinite(x)
        if not has.any():
            variables[name] = None
            continue
        edges = np.quantile(x[has], np.linspace(0.0, 1.0, n_q + 1))
        idx = np.where(has, np.searchsorted(edges[1:-1], np.nan_to_num(x), side="right"), -1)
        entry: dict[str, Any] = {"source": where, "edges": [float(v) for v in edges],
                                 "n_missing": int((~has).sum())}
        for sub, mask in subsets.items():
            entry[sub] = [{"q": q + 1, "lo": float(edges[q]), "hi": float(edges[q + 1]),
                           **metrics(mask & (idx == q))} for q in range(n_q)]
        variables[name] = entry
    return {"n": rows.height, "interval_source": source, "subsets": list(subsets),
            "overall": {sub: metrics(mask) for sub, mask in subsets.items()},
            "variables": variables}


def p_detect_block(joined: pl.DataFrame, n_bins: int = 10) -> dict[str, Any] | None:
    """Calibration of the catalog's ``p_detect`` against the truth's ``detected`` (every row
    with both, upper limits included); ``None`` when either column is missing or no row has
    both. Returns :func:`~hicatalog.metrics.calibration_metrics` in ``n_bins`` equal-count
    bins (``ece``: count-weighted mean |observed fraction detected - mean p_detect|,
    ``brier``, ``reliability``) + ``{"n", "n_pos", "ece_true_p"}``; ``ece_true_p``: the same
    ECE of the mock's true detection probability (the truth's ``p_detect``) on the same rows,
    the floor that the finite sample alone gives (``None`` without it)."""
    if "p_detect" not in joined.columns or "detected" not in joined.columns:
        return None
    p_all = _np(joined, "p_detect")
    lab = joined.filter(pl.Series(np.isfinite(p_all)) & pl.col("detected").is_not_null())
    if lab.height == 0:
        return None
    y, p = lab.get_column("detected").cast(pl.Float64).to_numpy(), _np(lab, "p_detect")
    out = {"n": lab.height, "n_pos": int(y.sum()),
           **calibration_metrics(y, p, n_bins, equal_count=True), "ece_true_p": None}
    p_true = _np(lab, "p_detect_true")
    if np.isfinite(p_true).all():
        out["ece_true_p"] = expected_calibration_error(y, p_true, n_bins, equal_count=True)
    return out


def linear_mean_block(joined: pl.DataFrame, width: float = 0.25) -> dict[str, Any] | None:
    """The mean of 10^M in ``width``-dex bins of the true log M* (truth ``log_mstar``), the
    prediction's against the truth's, on the rows that are not upper limits with finite
    ``m_true``, ``m_pred``, ``log_mstar`` and a usable ``m_pred_err``; ``None`` without such rows.

    The prediction's linear expectation per galaxy is taken as the lognormal mean of a Gaussian
    in dex, ``E[10^M] = 10^(m_pred + ln(10)/2 * sigma^2)`` with ``sigma = m_pred_err`` (also
    when the catalog gives asymmetric interval bounds); the naive one is ``10^m_pred``
    (:func:`~hicatalog.metrics.log_mean_linear`). Returns ``{"width", "n", "n_no_err", "all",
    "bins"}``; ``all`` and each of ``bins`` (only bins with rows, edges at multiples of
    ``width``) = ``{"lo", "hi", "n", "log_mean_true", "log_mean_pred", "diff",
    "log_mean_naive", "diff_naive"}``: ``log_mean_true`` = log10(mean(10^m_true)),
    ``log_mean_pred`` = log10(mean(E[10^M])), ``diff`` = ``log_mean_pred - log_mean_true``
    (dex; 0 when the linear means agree), ``log_mean_naive`` = log10(mean(10^m_pred)),
    ``diff_naive`` its difference (below ``diff`` by about ln(10)/2 sigma^2)."""
    values = joined.filter(~pl.col("upper_limit"))
    t, p, e, ms = (_np(values, c) for c in ("m_true", "m_pred", ERR, "log_mstar"))
    rows = np.isfinite(t) & np.isfinite(p) & np.isfinite(ms)
    ok = rows & np.isfinite(e) & (np.nan_to_num(e) > 0)
    if not ok.any():
        return None
    t, p, e, ms = t[ok], p[ok], e[ok], ms[ok]

    def entry(sel: np.ndarray, lo: float, hi: float) -> dict[str, Any]:
        true, pred = log_mean_linear(t[sel]), log_mean_linear(p[sel], e[sel])
        naive = log_mean_linear(p[sel])
        return {"lo": lo, "hi": hi, "n": int(sel.sum()), "log_mean_true": true,
                "log_mean_pred": pred, "diff": pred - true, "log_mean_naive": naive,
                "diff_naive": naive - true}

    first = int(np.floor(ms.min() / width))
    idx = np.floor(ms / width).astype(np.int64) - first
    bins = [entry(idx == b, (first + b) * width, (first + b + 1) * width)
            for b in range(int(idx.max()) + 1) if (idx == b).any()]
    return {"width": width, "n": int(ok.sum()), "n_no_err": int((rows & ~ok).sum()),
            "all": entry(np.ones(t.size, bool), float(ms.min()), float(ms.max())), "bins": bins}


def _training_classes(lab: pl.DataFrame, pr_card: dict[str, Any]) -> dict[str, Any] | None:
    """PR metrics on the PR network's own classes (paper Section 5.3: a.40A detections
    against ALFALFA non-detections, 93% / 0.93), when both are present in ``lab``."""
    present = set(lab.get_column("dataset").to_list())
    if "train_samples" in pr_card:
        det, neg = list(pr_card["train_samples"]), list(pr_card.get("negatives") or DEFAULT_NEGATIVES)
        with_limits = bool(pr_card.get("upper_limits_as_negatives"))
    else:
        try:
            det = list(default_train_samples(present))
        except ConfigError:
            return None
        neg, with_limits = list(DEFAULT_NEGATIVES), False
    det, neg = [d for d in det if d in present], [d for d in neg if d in present]
    if not det or not neg:
        return None
    rows = pl.col("dataset").is_in(det) & pl.col("detected") | pl.col("dataset").is_in(neg) & ~pl.col("detected")
    if not with_limits:
        rows = rows & ~pl.col("upper_limit")
    return {"samples": [*det, *neg], "detections": det, "negatives": neg, **_pr_metrics(lab.filter(rows))}


def _figures(joined: pl.DataFrame, result: dict[str, Any], out_dir: str) -> list[str]:
    """The figures; ``joined`` has ``group`` and ``upper_limit`` (:func:`_with_groups`).
    Upper limits are left out of the M_pred-M_true panels and the residuals."""
    paths = []
    datasets, labels = result["datasets"], group_labels(result)
    values = joined.filter(~pl.col("upper_limit"))
    panels = [(labels[d], _np(g, "m_true"), _np(g, "m_pred")) for d in datasets
              for g in [values.filter(pl.col("group") == d)]]
    paths.append(figures.plot_pred_vs_true(panels, storage.join(out_dir, "pred_vs_true.png")))
    cut_panels = []
    for d in datasets:
        g = values.filter((pl.col("group") == d) & (pl.col("p_cnn") > 0.9))
        cut_panels.append((f"{labels[d]}, p_CNN > 0.9", _np(g, "m_true"), _np(g, "m_pred")))
    paths.append(figures.plot_pred_vs_true(cut_panels, storage.join(out_dir, "pred_vs_true_p0.9.png")))
    hists = {report_label(d): _np(joined.filter(pl.col("group") == d), "p_cnn") for d in datasets}
    paths.append(figures.plot_pcnn_histograms(hists, storage.join(out_dir, "pcnn_hist.png")))
    # Residuals (Figure 3) of the first sample (the training-like one), as in the paper.
    g = values.filter(pl.col("group") == datasets[0])
    z = _catalog_or_truth(g, "z", "z_true")
    props = {"z": z, r"log $M_\star$": _np(g, "log_mstar"), r"log$(1+\delta_5)$": _log10_one_plus_delta5(g)}
    props = {k: v for k, v in props.items() if np.isfinite(v).any()}
    paths.append(figures.plot_residuals(
        _np(g, "m_true"), _np(g, "m_pred"), props, storage.join(out_dir, "residuals.png"),
        title=f"{labels[datasets[0]]}: residuals",
    ))
    if "detected" in joined.columns:
        lab = joined.filter(pl.col("detected").is_not_null() & pl.col("p_cnn").is_not_null())
        y = lab.get_column("detected").cast(pl.Float64).to_numpy()
        if 0 < y.sum() < y.size:
            fpr, tpr = roc_curve(y, _np(lab, "p_cnn"))
            paths.append(figures.plot_roc(
                {"all samples": (fpr, tpr, roc_auc(y, _np(lab, "p_cnn")))},
                storage.join(out_dir, "roc.png"),
            ))
    pr = result["pr"]
    if pr is not None and pr["all"]["n"]:
        curves = {"all samples": {**pr["all"]["reliability"], "ece": pr["all"]["ece"]}}
        if "training_classes" in pr:
            tc = pr["training_classes"]
            curves[f"{'+'.join(tc['detections'])} vs {'+'.join(tc['negatives'])}"] = {
                **tc["reliability"], "ece": tc["ece"]}
        paths.append(figures.plot_reliability(curves, storage.join(out_dir, "reliability.png")))
    quint = result["by_quintile"]["variables"]
    if any(v is not None for v in quint.values()):
        paths.append(figures.plot_quintiles(quint, QUINTILE_LABELS, storage.join(out_dir, "quintiles.png")))
    unc = result["uncertainty"]
    if unc is not None:
        names = {**labels, ALL: "all"}
        hists = {names[d]: m["none"]["pit_hist"] for d, m in unc["by_group"].items() if m["none"]["n"]}
        paths.append(figures.plot_pit_histograms(hists, storage.join(out_dir, "pit.png")))
        binned = {names[d]: m["bins"] for d, m in unc["error_vs_uncertainty"].items() if d != ALL}
        env = unc["uncertainty_vs_environment"]
        env_panels = {report_label(d): b for d, b in env["by_group"].items()} if env else None
        paths.append(figures.plot_uncertainty(binned, env_panels, storage.join(out_dir, "uncertainty.png")))
    return paths


def _trained_text(trained: dict[str, Any] | None) -> str:
    parts = []
    for task, info in (trained or {}).items():
        if "unknown" in info:
            parts.append(f"{task}: unknown ({info['unknown']})")
        else:
            neg = f" against {'+'.join(info['negatives'])}" if info.get("negatives") else ""
            parts.append(f"{task} ({info['model_id']}): trained on {'+'.join(info['train_samples'])}{neg}")
    return "; ".join(parts) or "unknown (no build manifest)"


def evaluate_catalog(catalog_dir: str, truth_path: str, out_dir: str) -> dict[str, Any]:
    """Evaluate a catalog against a truth table; write metrics, tables, figures and report.

    Parameters
    ----------
    catalog_dir: ``hi_catalog`` Parquet dataset (directory, read recursively, or a file).
    truth_path: mock ``truth.parquet``, a ``labels`` table, or labelled cutout shards.
    out_dir: report directory (created).

    Returns
    -------
    The content of ``out_dir/metrics.json`` (NaN as ``None``): ``{"inputs", "counts",
    "datasets", "groups", "labels", "cuts", "regression", "limits", "limits_withheld", "roles",
    "trained_on", "pr", "uncertainty", "by_quintile", "p_detect", "linear_means", "files",
    "manifest"}`` (see :func:`catalog_metrics`; ``uncertainty`` is ``None`` when the catalog has
    no usable ``m_pred_err``, ``p_detect`` when it has no ``p_detect``); ``regression[group][cut]`` has
    ``n, rmse, slope, sigma, offset, completeness`` (dex; see
    :func:`hicatalog.metrics.regression_metrics`); ``labels`` are the printed group names.
    The report (``index.html``) and ``table2.md`` are one :class:`Report` rendered twice.

    Raises
    ------
    SchemaError / InputNotFoundError: unreadable or missing inputs; InputError: no catalog row
    matches the truth.
    """
    catalog = load_catalog(catalog_dir)
    truth = load_truth(truth_path)
    jt = join_catalog_truth(catalog, truth)
    if jt.table.height == 0:
        raise InputError(
            f"no catalog row with status 'ok' in {catalog_dir} matches an object_id of {truth_path} "
            f"(catalog rows: {jt.counts['n_catalog']}, ok: {jt.counts['n_ok']}, truth rows: "
            f"{jt.counts['n_truth']})"
        )
    manifests = load_manifests(catalog_dir if storage.is_dir(catalog_dir)
                               else storage.parent(catalog_dir))
    manifest = manifests.get("_manifest.json")
    trained = trained_on(manifest) if isinstance(manifest, dict) else None
    joined = _with_groups(jt.table)
    result = catalog_metrics(joined, trained=trained)
    labels = group_labels(result)
    fig_paths = _figures(joined, result, out_dir)
    out = json_safe({
        "inputs": {"catalog": storage.absolute(catalog_dir), "truth": storage.absolute(truth_path)},
        "counts": jt.counts,
        **result,
        "labels": labels,
        "files": sorted(storage.basename(p) for p in [*fig_paths, "table2.md", "index.html"]),
        "manifest": manifest or (manifests or None),
    })
    write_json_atomic(storage.join(out_dir, "metrics.json"), out)
    sections = _catalog_sections(result, labels, _trained_text(trained),
                                 _uncertainty_note(catalog, result["uncertainty"]), jt.counts,
                                 fig_paths)
    write_report(Report("hicatalog evaluation: catalog", sections, inputs=out["inputs"],
                        manifest=out["manifest"]), out_dir, markdown="table2.md")
    log.info("evaluation written to %s (%d matched rows)", out_dir, jt.table.height)
    return out


def _catalog_sections(result: dict[str, Any], labels: dict[str, str], trained: str,
                      uncertainty_note: str, counts: dict[str, Any],
                      fig_paths: list[str]) -> list[Section]:
    """The catalog report: Table 2, upper limits, PR, uncertainties, figures, rows used."""

    def figs(*suffixes: str) -> list[str]:
        return [p for p in fig_paths if p.endswith(suffixes)]

    sections = [Section("Table 2: M_pred by sample and p_CNN cut").add_table(
        TABLE2_HEADERS, table2_rows(result["regression"], labels)).add_text(
        "RMSE = sqrt(mean((M_pred - M_true)^2)); slope of the least-squares fit of M_pred on "
        "M_true; sigma = std(M_pred - M_true); offset = mean(M_pred - M_true); all in dex. "
        f"Upper limits are not in these rows. Models: {trained}.")]
    lim_rows = limits_rows(result["limits"], group_labels(result, limits=True))
    if lim_rows:
        sections.append(Section("Upper limits: M_pred against the limit").add_table(
            LIMITS_HEADERS, lim_rows).add_text(
            "A prediction is consistent with an upper limit when M_pred <= M_limit; median "
            "excess = median(M_pred - M_limit), dex. With error bars, each prediction read as "
            "N(M_pred, m_pred_err^2): P(M <= limit) >= 0.05 is the fraction whose limit is not "
            "ruled out at 95%; mean log P(M <= limit) is the censored (Tobit) log-likelihood of "
            "the limits (0 at best), beside the mean Gaussian log-likelihood (log density per "
            "dex) of the same sample's detections."))
    if result["pr"] is not None:
        sections.append(Section("Pattern recognition: p_CNN against detection", figures=figs(
            "pcnn_hist.png", "roc.png", "reliability.png")).add_table(
            PR_HEADERS, _pr_rows(result["pr"])).add_text(
            "ECE = count-weighted mean |observed fraction detected - mean p_CNN| over 10 "
            "equal-width p_CNN bins (0: calibrated); Brier = mean (p_CNN - detected)^2."))
    else:
        sections.append(Section("Pattern recognition", figures=figs("pcnn_hist.png")))
    unc = result["uncertainty"]
    sec_unc = Section("Uncertainties: m_pred_err")
    if unc is not None:
        sec_unc.add_table(UNCERTAINTY_HEADERS, uncertainty_rows(unc["by_group"], labels))
        sec_unc.add_table(OOD_HEADERS, _ood_rows(unc))
        sec_unc.figures += figs("pit.png", "uncertainty.png")
    sections.append(sec_unc.add_text(uncertainty_note))
    sections += _survey_sections(result, figs("quintiles.png"))
    sections.append(Section("M_pred against M_true (Figures 2, 4)",
                            figures=[p for p in fig_paths if "pred_vs_true" in p]))
    sections.append(Section("Residuals (Figure 3)", figures=figs("residuals.png")))
    sections.append(Section("Rows used").add_table(
        ("catalog rows", "status ok", "truth rows", "matched", "ok without truth",
         "truth without ok row"),
        [[str(counts[k]) for k in ("n_catalog", "n_ok", "n_truth", "n_matched",
                                   "n_ok_without_truth", "n_truth_without_ok_row")]],
    ).add_table(("status", "rows"), [[k, str(v)] for k, v in counts["status_counts"].items()]))
    return sections


#: Printed names of the quintile variables (:data:`QUINTILE_VARIABLES`).
QUINTILE_LABELS = {"p_cnn": "p_CNN", "one_plus_delta5": "1+delta5", "z": "z",
                   "log_mstar": "true log M*"}
QUINTILE_HEADERS = ("Variable", "Quintile", "Range", "N", "Cov. 68%", "Cov. 95%", "Bias (dex)",
                    "Spearman", "Width 68% (dex)", "N det.", "Det. cov. 68%", "Det. cov. 95%",
                    "Det. bias (dex)")
P_DETECT_HEADERS = ("N", "detected", "ECE (10 equal-count bins)", "Brier", "ECE of the true p")
LINEAR_HEADERS = ("log M* bin", "N", "log mean 10^M_true", "log mean E[10^M]", "Difference (dex)",
                  "log mean 10^M_pred (naive)", "Naive difference (dex)")


def _quintile_rows(bq: dict[str, Any]) -> list[list[Any]]:
    """One row per (variable, quintile): the ``all`` numbers, then the detections'."""
    rows = []
    for name, entry in bq["variables"].items():
        if entry is None:
            rows.append([QUINTILE_LABELS[name], "–", "not in the inputs"] + [None] * 10)
            continue
        det = entry.get("detections") or [None] * len(entry["all"])
        for a, d in zip(entry["all"], det, strict=True):
            rows.append([QUINTILE_LABELS[name] if a["q"] == 1 else "", str(a["q"]),
                         f"{a['lo']:.4g} – {a['hi']:.4g}", str(a["n"]), fmt(a["coverage_68"], 3),
                         fmt(a["coverage_95"], 3), fmt(a["bias"], 3),
                         fmt(a["spearman_width_abs_error"], 3), fmt(a["mean_width_68"], 3),
                         str(d["n"]) if d else "–", fmt(d and d["coverage_68"], 3),
                         fmt(d and d["coverage_95"], 3), fmt(d and d["bias"], 3)])
    return rows


def _survey_sections(result: dict[str, Any], quintile_figs: list[str]) -> list[Section]:
    """Per quintile (coverage, bias, rank correlation), p_detect and the linear means."""
    bq = result["by_quintile"]
    src = bq["interval_source"]
    overall = "; ".join(
        f"{sub}: N = {m['n']}, coverage 68% / 95% = {fmt(m['coverage_68'], 3)} / "
        f"{fmt(m['coverage_95'], 3)}, bias = {fmt(m['bias'], 3)} dex, Spearman(width, |error|) = "
        f"{fmt(m['spearman_width_abs_error'], 3)}" for sub, m in bq["overall"].items())
    sec_q = Section("Per quintile: coverage, bias and rank correlation", figures=quintile_figs)
    sec_q.add_text(f"Overall: {overall}.").add_table(QUINTILE_HEADERS, _quintile_rows(bq)).add_text(
        "Rows: every galaxy with status ok and a true M (upper limits left out); detections: "
        "those the truth marks detected. Quintile edges over all of them. Intervals: the "
        f"catalog's m_lo68/m_hi68/m_lo95/m_hi95 ({src['columns']} rows), else M_pred -+ "
        f"{{1, 1.96}} x m_pred_err ({src['gaussian']} rows), none on {src['none']} rows. "
        "Coverage = fraction with the true M inside the interval (goal 0.683 +- 0.03 and "
        "0.95 +- 0.02); bias = mean(M_pred - M_true) (goal +-0.05 dex); Spearman = rank "
        "correlation of the 68% width with |M_pred - M_true| (> 0: wider intervals go with "
        "larger errors).")
    sections = [sec_q]
    pdet = result["p_detect"]
    sec_p = Section("p_detect: probability of an ALFALFA-like detection")
    if pdet is None:
        sec_p.add_text("Not evaluated: the catalog has no p_detect (or the truth no detected).")
    else:
        sec_p.add_table(P_DETECT_HEADERS, [[str(pdet["n"]), str(pdet["n_pos"]), fmt(pdet["ece"]),
                                            fmt(pdet["brier"]), fmt(pdet["ece_true_p"])]])
        sec_p.add_text("ECE = count-weighted mean |fraction detected - mean p_detect| over 10 "
                       "equal-count bins of p_detect (0: calibrated); the ECE of the mock's true "
                       "detection probability on the same rows is the floor the sample size gives.")
    sections.append(sec_p)
    lin = result["linear_means"]
    sec_l = Section("Linear means: mean 10^M per 0.25-dex bin of true log M*")
    if lin is None:
        sec_l.add_text("Not evaluated: no row with a true log M* and a usable m_pred_err.")
    else:
        sec_l.add_table(LINEAR_HEADERS, [
            [f"{b['lo']:.2f} – {b['hi']:.2f}" if b is not lin["all"] else "all", str(b["n"]),
             fmt(b["log_mean_true"], 3), fmt(b["log_mean_pred"], 3), fmt(b["diff"], 3),
             fmt(b["log_mean_naive"], 3), fmt(b["diff_naive"], 3)]
            for b in [*lin["bins"], lin["all"]]])
        sec_l.add_text("log10 of the mean of 10^M over the bin's galaxies: the truth's, the "
                       "prediction's linear expectation E[10^M] = 10^(M_pred + ln(10)/2 "
                       "m_pred_err^2) (a Gaussian in dex), and the naive 10^M_pred (low by "
                       "about 1.15 m_pred_err^2 dex); goal |difference| <= 0.1 dex.")
    sections.append(sec_l)
    return sections


PR_HEADERS = ("Sample", "N", "detected", "accuracy (p_CNN > 0.5)", "ROC AUC", "ECE", "Brier")


def _pr_cells(m: dict[str, Any]) -> list[Any]:
    return [str(m["n"]), str(m["n_pos"]), m["accuracy"], m["roc_auc"], m["ece"], m["brier"]]


OOD_HEADERS = ("Data set", "Rows", "N", "Median m_pred_err (dex)", "Ratio to reference",
               "Spearman ρ (m_pred_err, abs. error)")


def _ood_rows(unc: dict[str, Any]) -> list[list[Any]]:
    """The error bars by sample (``unc["ood"]``) with each group's rank correlation of error
    bar and error (values rows only)."""
    rows = []
    for r in unc["ood"]["by_group"]:
        evu = unc["error_vs_uncertainty"].get(r["group"]) if r["subset"] != "upper limits" else None
        rows.append([report_label(r["group"]), r["subset"], str(r["n"]), r["median_err"], r["ratio"],
                     evu["spearman"] if evu else None])
    return rows


def _uncertainty_note(catalog: pl.DataFrame, unc: dict[str, Any] | None) -> str:
    """One line: what the uncertainty table is, or why there is none."""
    if unc is not None:
        ref = unc["ood"]["reference"]
        return (f"Uncertainties: each M_pred read as a Gaussian N(M_pred, m_pred_err^2); z = (M_true - "
                f"M_pred) / m_pred_err; coverage = fraction with |z| <= 1 (68.27% interval) and |z| "
                f"<= 1.96 (95%); z std > 1: error bars too small; CRPS in dex (lower is better); PIT "
                f"KS = Kolmogorov-Smirnov distance of Phi(z) from uniform. Upper limits are left out "
                f"but for the median error bar, whose ratio is to {report_label(ref['group'])} "
                f"{ref['subset']}.")
    if ERR not in catalog.columns:
        return "Uncertainties: not evaluated: the catalog has no m_pred_err column (built without error bars)."
    return "Uncertainties: not evaluated: m_pred_err is null (or not positive) on every evaluated row."


def _pr_rows(pr: dict[str, Any]) -> list[list[Any]]:
    rows = [["all", *_pr_cells(pr["all"])]]
    if "training_classes" in pr:
        tc = pr["training_classes"]
        rows.append([f"{'+'.join(tc['detections'])} vs {'+'.join(tc['negatives'])}", *_pr_cells(tc)])
    rows += [[report_label(d), *_pr_cells(m)] for d, m in pr["by_dataset"].items()]
    return rows
