"""Readable tables (Markdown and HTML) in the paper's layouts.

- :func:`table2_rows`: the paper's Table 2 (PR cut, data set, N,
  RMSE, slope, sigma, offset) from the ``regression`` part of ``metrics.json``.
- :func:`limits_rows`: the same layout for upper limits (N, predictions at or below the
  limit, their fraction, the median excess over the limit), never folded into the RMSE.
- :func:`uncertainty_rows`: the same layout for the error bars ``m_pred_err`` (N, coverage of
  the 68% and 95% intervals, std of z, CRPS, PIT KS distance).
- :func:`table4_rows`: the paper's Table 4 (training and validation delta5 quantile
  ranges, validation sigma, RMSE and normalized RMSE with their spread).
- :func:`markdown_table` / :func:`html_table`: the two renderers every table goes through
  (called by :mod:`hicatalog.evaluation.report`, which renders a whole report both ways).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "cut_key",
    "cut_label",
    "fmt",
    "markdown_table",
    "html_table",
    "table2_rows",
    "TABLE2_HEADERS",
    "limits_rows",
    "LIMITS_HEADERS",
    "uncertainty_rows",
    "UNCERTAINTY_HEADERS",
    "table4_rows",
    "TABLE4_HEADERS",
]

TABLE2_HEADERS = ("PR cut", "Data set", "N", "RMSE (dex)", "Slope", "σ (dex)", "Offset (dex)")
LIMITS_HEADERS = (
    "PR cut", "Data set", "N", "M_pred ≤ limit", "Fraction consistent", "Median M_pred − limit (dex)",
    "P(M ≤ limit) ≥ 0.05", "Mean log P(M ≤ limit)", "Detections: mean Gaussian log L",
)
UNCERTAINTY_HEADERS = (
    "PR cut", "Data set", "N", "Coverage 68% (0.683)", "Coverage 95% (0.95)", "z std (1)",
    "CRPS (dex)", "PIT KS",
)
TABLE4_HEADERS = (
    "Training", "Validation", "N train", "N valid", "Validation σ (dex)",
    "Validation RMSE (dex)", "Normalized RMSE",
)


def cut_key(cut: float | None) -> str:
    """The ``metrics.json`` key of a PR cut: ``'none'`` or ``'p_cnn>0.9'``."""
    return "none" if cut is None else f"p_cnn>{cut:g}"


def cut_label(key: str) -> str:
    """The printed label of a cut key, as in the paper: ``'None'`` or ``'p_CNN > 0.9'``."""
    return "None" if key == "none" else key.replace("p_cnn>", "p_CNN > ")


def fmt(value: Any, digits: int = 4) -> str:
    """Format a number for a table; ``None``/NaN print as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "–"
    return f"{v:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (cells already strings or formatted with :func:`fmt`)."""
    cells = [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines) + "\n"


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML ``<table>`` with escaped cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f"<td>{html.escape(c if isinstance(c, str) else fmt(c))}</td>" for c in r
        ) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cuts(table: dict[str, dict[str, Any]]) -> list[str]:
    cuts: list[str] = []
    for d in table:
        for k in table[d]:
            if k not in cuts:
                cuts.append(k)
    return cuts


def _rows_by_cut(
    table: dict[str, dict[str, dict[str, Any]]], labels: dict[str, str] | None, cells: Any
) -> list[list[str]]:
    """Rows grouped by cut then group, the cut's label on its first row: ``[cut, name,
    *cells(metrics)]`` from ``table[group][cut_key]``; ``labels`` name the groups (default:
    the key)."""
    labels = labels or {}
    rows = []
    for k in _cuts(table):
        for i, d in enumerate(table):
            m = table[d].get(k)
            if m is not None:
                rows.append([cut_label(k) if i == 0 else "", labels.get(d, d), *cells(m)])
    return rows


def table2_rows(
    regression: dict[str, dict[str, dict[str, Any]]], labels: dict[str, str] | None = None
) -> list[list[str]]:
    """Rows of Table 2, grouped by cut then data set, from
    ``regression[group][cut_key] = {"n", "rmse", "slope", "sigma", "offset"}``; ``labels``:
    the printed name of each group (default: the key)."""
    return _rows_by_cut(regression, labels, lambda m: [
        str(m["n"]), fmt(m["rmse"]), fmt(m["slope"]), fmt(m["sigma"]), fmt(m["offset"])])


def limits_rows(
    limits: dict[str, dict[str, dict[str, Any]]], labels: dict[str, str] | None = None
) -> list[list[str]]:
    """Rows of the upper-limit table (:data:`LIMITS_HEADERS`), grouped by cut then data set,
    from ``limits[group][cut_key] = {"n", "n_consistent", "frac_consistent",
    "median_excess"}`` and, when there (error bars), ``frac_consistent_p05``,
    ``mean_censored_loglik`` and ``detections_mean_loglik`` (else an en dash); ``labels``: the
    printed name of each group (default: the key)."""
    return _rows_by_cut(limits, labels, lambda m: [
        str(m["n"]), str(m["n_consistent"]), fmt(m["frac_consistent"]), fmt(m["median_excess"]),
        fmt(m.get("frac_consistent_p05")), fmt(m.get("mean_censored_loglik")),
        fmt(m.get("detections_mean_loglik"))])


def uncertainty_rows(
    uncertainty: dict[str, dict[str, dict[str, Any]]], labels: dict[str, str] | None = None
) -> list[list[str]]:
    """Rows of the uncertainty table (:data:`UNCERTAINTY_HEADERS`), grouped by cut then data
    set, from ``uncertainty[group][cut_key]`` =
    :func:`hicatalog.metrics.uncertainty_metrics`; ``labels`` name the groups."""
    return _rows_by_cut(uncertainty, labels, lambda m: [
        str(m["n"]), fmt(m["coverage_68"], 3), fmt(m["coverage_95"], 3), fmt(m["z_std"], 3),
        fmt(m["crps"]), fmt(m["pit_ks"], 3)])


def _range(q: Any) -> str:
    if q is None:
        return "Random"
    lo, hi = q
    return f"[{lo:g}, {hi:g})"


def _complement(q: Any) -> str:
    if q is None:
        return "Random"
    lo, hi = q
    parts = ([f"[0, {lo:g})"] if lo > 0 else []) + ([f"[{hi:g}, 1)"] if hi < 1 else [])
    return " ∪ ".join(parts) or "–"


def table4_rows(splits: list[dict[str, Any]]) -> list[list[str]]:
    """Rows of Table 4 from the environment experiment's ``splits`` list (each with
    ``val_quantiles`` (``None`` = random), ``n_train``, ``n_val``,
    ``val_sigma``, ``rmse_mean``, ``rmse_std``, ``nrmse_mean``, ``nrmse_std``)."""
    rows = []
    for s in splits:
        rows.append([
            _complement(s["val_quantiles"]),
            _range(s["val_quantiles"]),
            fmt(s.get("n_train")), fmt(s.get("n_val")), fmt(s.get("val_sigma")),
            f"{fmt(s.get('rmse_mean'))} ± {fmt(s.get('rmse_std'))}",
            f"{fmt(s.get('nrmse_mean'))} ± {fmt(s.get('nrmse_std'))}",
        ])
    return rows
