"""The paper's performance metrics (Wu 2020, Section 3, Section 5.3 and Table 2).

One definition, used by training's per-epoch validation and by the evaluation.

Regression (``M = log10(M_HI/M*)`` in dex):

- ``rmse``   = sqrt(mean((M_pred - M_true)^2))           (paper Eq. 1)
- ``slope``  = slope of the least-squares line M_pred = a + slope * M_true
- ``sigma``  = std(M_pred - M_true)  (population std, ddof=0)
- ``offset`` = mean(M_pred - M_true)

so that ``rmse**2 == sigma**2 + offset**2`` exactly.

Upper limits (e.g. xGASS non-detections, whose ``M`` is only an upper limit): never folded
into the RMSE; :func:`upper_limit_metrics` counts the predictions consistent with the limit
(``M_pred <= M_limit``) and, given error bars, scores them with the censored likelihood.

Classification (pattern recognition, ``p_cnn`` against ``detected``): ``accuracy`` at a
threshold and the area under the ROC curve computed from ranks (the Mann-Whitney U
statistic, ties counted one half), which needs no scikit-learn.

Uncertainties (``m_pred_err``, the predictive standard deviation of ``M_pred`` in dex), read
as a Gaussian ``N(M_pred, m_pred_err^2)`` for ``M_true``: ``z = (M_true - M_pred) / m_pred_err``,
the PIT value ``Phi(z)`` (uniform on [0, 1] when the error bars are right), the coverage of the
68.27% and 95% intervals, the CRPS and the negative log-likelihood
(:func:`uncertainty_metrics`), and whether larger error bars go with larger errors
(:func:`error_vs_uncertainty`). Rows whose ``m_pred_err`` is not finite or not positive are left
out and counted (``n_no_err``). Intervals given by their bounds (possibly asymmetric about
``M_pred``): :func:`interval_metrics`; the linear mean of ``10^M`` a Gaussian in dex implies:
:func:`log_mean_linear`.

Probability calibration (``p_cnn``, ``p_detect``): the reliability curve in equal-width or
equal-count bins, the expected calibration error and the Brier score (:func:`calibration_metrics`).

Every function takes array-likes, drops pairs where either value is NaN (and says how many
were used in ``n``), and returns plain Python floats so results serialise to JSON as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_ndtr, logsumexp, ndtr
from scipy.stats import kstest, rankdata, spearmanr

__all__ = [
    "PR_CUTS",
    "regression_metrics",
    "normalized_rmse",
    "upper_limit_metrics",
    "accuracy",
    "roc_auc",
    "roc_curve",
    "classification_metrics",
    "Z_68",
    "Z_84",
    "Z_95",
    "log10_lognormal_mean",
    "z_scores",
    "pit_values",
    "gaussian_crps",
    "uncertainty_metrics",
    "error_vs_uncertainty",
    "gaussian_intervals",
    "interval_metrics",
    "log_mean_linear",
    "reliability_curve",
    "expected_calibration_error",
    "brier_score",
    "calibration_metrics",
]

#: The PR cuts of the paper's Table 2: ``None`` means no cut, otherwise keep ``p_cnn > cut``.
PR_CUTS: tuple[float | None, ...] = (None, 0.5, 0.8, 0.9)

_NAN = float("nan")

#: Half widths, in units of sigma, of the central 68.27% and 95% Gaussian intervals.
Z_68 = 1.0
Z_95 = 1.959963984540054
#: The standard normal's 0.84 quantile: half width, in sigma, of the central 68% (0.16-0.84)
#: interval that the calibrated intervals bound.
Z_84 = 0.994457883209753


def _pairs(a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same length, got {x.size} and {y.size}"
        )
    good = np.isfinite(x) & np.isfinite(y)
    return x[good], y[good]


def regression_metrics(m_true: Any, m_pred: Any) -> dict[str, float | int]:
    """RMSE, slope, sigma and offset of ``m_pred`` against ``m_true`` (both dex, shape (N,)).

    The truth comes first in every metric here, as in scikit-learn (``y_true, y_pred``).

    Returns ``{"n", "rmse", "slope", "sigma", "offset"}``; values are NaN when fewer than one
    (rmse, sigma, offset) or two distinct ``m_true`` values (slope) are available.
    """
    pred, true = _pairs(m_pred, m_true, ("m_pred", "m_true"))
    n = int(pred.size)
    out: dict[str, float | int] = {"n": n, "rmse": _NAN, "slope": _NAN, "sigma": _NAN, "offset": _NAN}
    if n == 0:
        return out
    resid = pred - true
    out["rmse"] = float(np.sqrt(np.mean(resid**2)))
    out["sigma"] = float(np.std(resid))
    out["offset"] = float(np.mean(resid))
    t_c = true - true.mean()
    var_t = float(np.sum(t_c**2))
    if n >= 2 and var_t > 0.0:
        out["slope"] = float(np.sum(t_c * (pred - pred.mean())) / var_t)
    return out


def normalized_rmse(m_true: Any, m_pred: Any) -> float:
    """RMSE divided by the (population) std of ``m_true``: the paper's Table 4 / Figure 10
    metric. Predicting the validation mean gives 1; NaN when ``m_true`` has no spread."""
    pred, true = _pairs(m_pred, m_true, ("m_pred", "m_true"))
    if pred.size == 0:
        return _NAN
    std = float(np.std(true))
    if std == 0.0:
        return _NAN
    return float(np.sqrt(np.mean((pred - true) ** 2)) / std)


def upper_limit_metrics(m_limit: Any, m_pred: Any, m_pred_err: Any = None) -> dict[str, Any]:
    """Predictions against upper limits ``m_limit`` (both dex, shape (N,)): ``{"n",
    "n_consistent", "frac_consistent", "median_excess"}``, where a prediction is consistent
    when ``m_pred <= m_limit`` and ``median_excess`` = median(m_pred - m_limit) (negative: most
    predictions lie below their limits). NaN fraction and excess when ``n`` is 0.

    With ``m_pred_err`` (the predictive standard deviation, dex, shape (N,)) each prediction is
    read as ``N(m_pred, m_pred_err^2)`` and scored on the rows with a usable error (finite,
    > 0) as well: ``n_err`` rows; ``frac_consistent_p05`` = fraction whose predictive
    probability below the limit, ``P(M <= m_limit) = Phi((m_limit - m_pred) / m_pred_err)``, is
    at least 0.05 (the limit is not ruled out at 95%); ``mean_censored_loglik`` = mean of
    ``log P(M <= m_limit)``, the censored (Tobit) log-likelihood of a limit (0 at best).
    """
    pred, lim = _pairs(m_pred, m_limit, ("m_pred", "m_limit"))
    n = int(pred.size)
    if n == 0:
        out: dict[str, Any] = {"n": 0, "n_consistent": 0, "frac_consistent": _NAN,
                               "median_excess": _NAN}
    else:
        ok = int(np.sum(pred <= lim))
        out = {"n": n, "n_consistent": ok, "frac_consistent": ok / n,
               "median_excess": float(np.median(pred - lim))}
    if m_pred_err is None:
        return out
    lim_e, pred_e, err, _ = _triples(m_limit, m_pred, m_pred_err)
    log_p = log_ndtr((lim_e - pred_e) / err)
    out.update(n_err=int(err.size),
               frac_consistent_p05=float(np.mean(log_p >= np.log(0.05))) if err.size else _NAN,
               mean_censored_loglik=float(np.mean(log_p)) if err.size else _NAN)
    return out


def _labels_scores(y_true: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores must have the same length, got {y.size} and {s.size}")
    good = np.isfinite(y) & np.isfinite(s)
    y, s = y[good], s[good]
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"labels must be 0/1 (or bool), found {np.unique(y[bad])[:5].tolist()}")
    return y.astype(bool), s


def accuracy(y_true: Any, score: Any, threshold: float = 0.5) -> float:
    """Fraction of rows where ``score > threshold`` equals the bool label ``y_true``."""
    y, s = _labels_scores(y_true, score)
    if y.size == 0:
        return _NAN
    return float(np.mean((s > threshold) == y))


def roc_auc(y_true: Any, score: Any) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U / (n_pos * n_neg), ties = 1/2).

    NaN when only one class is present.
    """
    y, s = _labels_scores(y_true, score)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return _NAN
    ranks = rankdata(s)  # average ranks for ties
    u = float(ranks[y].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def roc_curve(y_true: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates (both shape (K,), from (0, 0) to (1, 1)) over all
    distinct score thresholds, for drawing the ROC curve."""
    y, s = _labels_scores(y_true, score)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], y.size - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def classification_metrics(y_true: Any, score: Any, threshold: float = 0.5) -> dict[str, Any]:
    """``{"n", "n_pos", "n_neg", "accuracy", "roc_auc"}`` of a probability ``score``."""
    y, s = _labels_scores(y_true, score)
    return {
        "n": int(y.size),
        "n_pos": int(y.sum()),
        "n_neg": int(y.size - y.sum()),
        "accuracy": accuracy(y, s, threshold),
        "roc_auc": roc_auc(y, s),
    }


def _triples(m_true: Any, m_pred: Any, m_pred_err: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(m_true, m_pred, m_pred_err, n_no_err)``: the rows with finite ``m_true`` and
    ``m_pred`` and a finite, positive ``m_pred_err``; ``n_no_err`` counts the rows left out for
    their error alone."""
    t = np.asarray(m_true, dtype=np.float64).ravel()
    p = np.asarray(m_pred, dtype=np.float64).ravel()
    e = np.asarray(m_pred_err, dtype=np.float64).ravel()
    if not t.shape == p.shape == e.shape:
        raise ValueError(
            f"m_true, m_pred and m_pred_err must have the same length, got {t.size}, {p.size} and {e.size}"
        )
    pair = np.isfinite(t) & np.isfinite(p)
    with np.errstate(invalid="ignore"):
        good = pair & np.isfinite(e) & (e > 0)
    return t[good], p[good], e[good], int(pair.sum() - good.sum())


def z_scores(m_true: Any, m_pred: Any, m_pred_err: Any) -> np.ndarray:
    """``(m_true - m_pred) / m_pred_err`` of the usable rows (see :func:`uncertainty_metrics`),
    shape (n,)."""
    t, p, e, _ = _triples(m_true, m_pred, m_pred_err)
    return (t - p) / e


def pit_values(m_true: Any, m_pred: Any, m_pred_err: Any) -> np.ndarray:
    """Gaussian probability integral transform ``Phi((m_true - m_pred) / m_pred_err)`` of the
    usable rows, shape (n,): uniform on [0, 1] when ``m_true ~ N(m_pred, m_pred_err^2)``."""
    return ndtr(z_scores(m_true, m_pred, m_pred_err))


def gaussian_crps(m_true: Any, m_pred: Any, m_pred_err: Any) -> np.ndarray:
    """Continuous ranked probability score (dex) of ``N(m_pred, m_pred_err^2)`` at ``m_true``
    per usable row, closed form: ``sigma * [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]``. It is
    the mean absolute error for a point prediction (sigma -> 0); lower is better."""
    t, p, e, _ = _triples(m_true, m_pred, m_pred_err)
    z = (t - p) / e
    phi = np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
    return e * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * phi - 1.0 / np.sqrt(np.pi))


def uncertainty_metrics(
    m_true: Any, m_pred: Any, m_pred_err: Any, n_pit_bins: int = 10
) -> dict[str, Any]:
    """Whether ``m_pred_err`` (dex) is the right size, reading each prediction as the Gaussian
    ``N(m_pred, m_pred_err^2)``.

    Returns ``{"n", "n_no_err", "coverage_68", "coverage_95", "z_mean", "z_std", "crps",
    "mean_nll", "median_err", "pit_hist", "pit_ks", "pit_ks_pvalue"}``: ``coverage_68`` /
    ``coverage_95`` = fraction of rows with ``|z| <= 1`` / ``|z| <= 1.96`` (0.6827 / 0.95 when
    calibrated); ``z_mean``, ``z_std`` (ddof 0) of ``z`` (0 and 1 when calibrated; ``z_std > 1``:
    error bars too small); ``crps`` = mean :func:`gaussian_crps` (dex); ``mean_nll`` = mean
    negative log-likelihood ``0.5 log(2 pi sigma^2) + z^2 / 2``; ``median_err`` = median
    ``m_pred_err``; ``pit_hist`` = counts of the PIT values in ``n_pit_bins`` equal bins of
    [0, 1] (flat when calibrated, U-shaped when the error bars are too small); ``pit_ks`` = the
    Kolmogorov-Smirnov distance of the PIT values from uniform, ``pit_ks_pvalue`` its p-value.
    ``n_no_err``: rows with finite ``m_true``, ``m_pred`` but no usable (finite, > 0) error.
    """
    t, p, e, n_no_err = _triples(m_true, m_pred, m_pred_err)
    n = int(t.size)
    out: dict[str, Any] = {
        "n": n, "n_no_err": n_no_err, "coverage_68": _NAN, "coverage_95": _NAN, "z_mean": _NAN,
        "z_std": _NAN, "crps": _NAN, "mean_nll": _NAN, "median_err": _NAN,
        "pit_hist": [0] * n_pit_bins, "pit_ks": _NAN, "pit_ks_pvalue": _NAN,
    }
    if n == 0:
        return out
    z = (t - p) / e
    pit = ndtr(z)
    ks = kstest(pit, "uniform")
    out.update(
        coverage_68=float(np.mean(np.abs(z) <= Z_68)),
        coverage_95=float(np.mean(np.abs(z) <= Z_95)),
        z_mean=float(np.mean(z)),
        z_std=float(np.std(z)),
        crps=float(np.mean(gaussian_crps(t, p, e))),
        mean_nll=float(np.mean(0.5 * np.log(2.0 * np.pi * e**2) + 0.5 * z**2)),
        median_err=float(np.median(e)),
        pit_hist=[int(c) for c in np.histogram(pit, bins=n_pit_bins, range=(0.0, 1.0))[0]],
        pit_ks=float(ks.statistic),
        pit_ks_pvalue=float(ks.pvalue),
    )
    return out


def error_vs_uncertainty(
    m_true: Any, m_pred: Any, m_pred_err: Any, n_bins: int = 5
) -> dict[str, Any]:
    """Does a larger error bar mean a larger error? ``{"n", "spearman", "bins"}``:
    ``spearman`` = Spearman rank correlation of ``m_pred_err`` with ``|m_pred - m_true|`` (NaN
    with fewer than 3 rows or no spread); ``bins`` = one dict per quantile bin of
    ``m_pred_err`` (``n_bins`` of equal count; fewer where quantiles coincide): ``{"n",
    "err_lo", "err_hi", "median_err", "rms_error"}`` with ``rms_error`` =
    sqrt(mean((m_pred - m_true)^2)) of the bin's rows, which equals the bin's typical
    ``m_pred_err`` when the error bars are right."""
    t, p, e, _ = _triples(m_true, m_pred, m_pred_err)
    n = int(t.size)
    out: dict[str, Any] = {"n": n, "spearman": _NAN, "bins": []}
    if n == 0:
        return out
    resid = p - t
    if n >= 3 and np.ptp(e) > 0 and np.ptp(np.abs(resid)) > 0:
        out["spearman"] = float(spearmanr(e, np.abs(resid)).statistic)
    edges = np.unique(np.quantile(e, np.linspace(0.0, 1.0, n_bins + 1)))
    idx = np.searchsorted(edges[1:-1], e, side="right")
    for b in range(max(edges.size - 1, 1)):
        sel = idx == b
        if sel.any():
            out["bins"].append({
                "n": int(sel.sum()), "err_lo": float(e[sel].min()), "err_hi": float(e[sel].max()),
                "median_err": float(np.median(e[sel])),
                "rms_error": float(np.sqrt(np.mean(resid[sel] ** 2))),
            })
    return out


def gaussian_intervals(m_pred: Any, m_pred_err: Any) -> tuple[np.ndarray, ...]:
    """``(lo68, hi68, lo95, hi95)``: the central 68.27% and 95% intervals of
    ``N(m_pred, m_pred_err^2)``, ``m_pred -+ Z_68 * m_pred_err`` and ``m_pred -+ Z_95 *
    m_pred_err`` (dex, float64, shape (N,)); NaN where the error is not finite or not positive."""
    p = np.asarray(m_pred, dtype=np.float64).ravel()
    e = np.asarray(m_pred_err, dtype=np.float64).ravel()
    with np.errstate(invalid="ignore"):
        e = np.where(np.isfinite(e) & (e > 0), e, np.nan)
    return p - Z_68 * e, p + Z_68 * e, p - Z_95 * e, p + Z_95 * e


def interval_metrics(
    m_true: Any, m_pred: Any, lo68: Any, hi68: Any, lo95: Any, hi95: Any
) -> dict[str, Any]:
    """Intervals given by their bounds (dex, shape (N,); may be asymmetric about ``m_pred``)
    against the truth.

    Rows need finite ``m_true`` and ``m_pred`` (``n``); the interval numbers use those of them
    with finite bounds (``n_interval``). Returns ``{"n", "n_interval", "coverage_68",
    "coverage_95", "bias", "rmse", "spearman_width_abs_error", "mean_width_68",
    "mean_width_95"}``: ``coverage_68`` / ``coverage_95`` = fraction with ``lo <= m_true <= hi``
    (0.6827 / 0.95 when calibrated); ``bias`` = mean(m_pred - m_true), ``rmse`` =
    sqrt(mean((m_pred - m_true)^2)) (over the ``n`` rows); ``spearman_width_abs_error`` =
    Spearman rank correlation of the 68% width ``hi68 - lo68`` with ``|m_pred - m_true|`` (NaN
    with fewer than 3 rows or no spread: > 0 when wider intervals go with larger errors);
    ``mean_width_68`` / ``mean_width_95`` = mean ``hi - lo``. NaN where there are no rows.
    """
    cols = [np.asarray(a, dtype=np.float64).ravel() for a in (m_true, m_pred, lo68, hi68, lo95, hi95)]
    if len({c.size for c in cols}) != 1:
        raise ValueError(f"m_true, m_pred and the interval bounds must have the same length, got "
                         f"{[c.size for c in cols]}")
    t, p, l68, h68, l95, h95 = cols
    base = np.isfinite(t) & np.isfinite(p)
    reg = regression_metrics(t[base], p[base])
    t, p, l68, h68, l95, h95 = (c[base] for c in cols)
    has = np.isfinite(l68) & np.isfinite(h68) & np.isfinite(l95) & np.isfinite(h95)
    t, p, l68, h68, l95, h95 = (c[has] for c in (t, p, l68, h68, l95, h95))
    n_int = int(t.size)
    out: dict[str, Any] = {"n": reg["n"], "n_interval": n_int, "coverage_68": _NAN,
                           "coverage_95": _NAN, "bias": reg["offset"], "rmse": reg["rmse"],
                           "spearman_width_abs_error": _NAN, "mean_width_68": _NAN,
                           "mean_width_95": _NAN}
    if n_int == 0:
        return out
    width, abs_err = h68 - l68, np.abs(p - t)
    if n_int >= 3 and np.ptp(width) > 0 and np.ptp(abs_err) > 0:
        out["spearman_width_abs_error"] = float(spearmanr(width, abs_err).statistic)
    out.update(coverage_68=float(np.mean((l68 <= t) & (t <= h68))),
               coverage_95=float(np.mean((l95 <= t) & (t <= h95))),
               mean_width_68=float(np.mean(width)), mean_width_95=float(np.mean(h95 - l95)))
    return out


def log10_lognormal_mean(m: Any, sigma: Any) -> np.ndarray:
    """``log10 E[10^M]`` for ``M ~ N(m, sigma^2)`` in dex (float64, the broadcast shape of
    ``m`` and ``sigma``): ``m + ln(10)/2 * sigma^2``, the lognormal mean."""
    return np.asarray(m, dtype=np.float64) + 0.5 * np.log(10.0) * np.asarray(sigma, dtype=np.float64) ** 2


def log_mean_linear(m: Any, sigma: Any = None) -> float:
    """``log10(mean(E[10^M]))`` over rows (dex): with ``sigma`` None, ``log10(mean(10^m))``;
    with ``sigma`` (shape (N,), dex) each row read as ``M ~ N(m, sigma^2)`` in dex, whose linear
    expectation is ``E[10^M] = 10^(m + ln(10)/2 * sigma^2)`` (the lognormal mean; at sigma = 0.3
    dex a factor 1.27 above ``10^m``). Computed with log-sum-exp; NaN without rows."""
    x = np.asarray(m, dtype=np.float64).ravel()
    if sigma is not None:
        x = log10_lognormal_mean(x, np.asarray(sigma, dtype=np.float64).ravel())
    if x.size == 0:
        return _NAN
    return float(logsumexp(x * np.log(10.0)) / np.log(10.0) - np.log10(x.size))


def _probabilities(y_true: Any, prob: Any) -> tuple[np.ndarray, np.ndarray]:
    y, p = _labels_scores(y_true, prob)
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(f"probabilities must lie in [0, 1], found [{p.min():g}, {p.max():g}]")
    return y, p


def reliability_curve(y_true: Any, prob: Any, n_bins: int = 10,
                      equal_count: bool = False) -> dict[str, Any]:
    """The reliability diagram of a probability ``prob`` (0-1) against bool labels, in
    ``n_bins`` equal-width bins of [0, 1] (1.0 in the last bin), or with ``equal_count`` in
    ``n_bins`` bins of (nearly) equal count (the rows sorted by ``prob`` and cut into
    ``n_bins`` runs; ``edges`` then are the smallest ``prob`` of each bin and the largest of the
    last): ``{"n", "edges", "count", "mean_prob", "observed"}``, per bin the number of rows,
    their mean probability and the fraction of them that are positive (NaN for an empty bin).
    Calibrated: observed == mean_prob."""
    y, p = _probabilities(y_true, prob)
    if equal_count:
        order = np.argsort(p, kind="mergesort")
        idx = np.empty(p.size, dtype=np.int64)
        idx[order] = np.arange(p.size) * n_bins // max(p.size, 1)
        starts = np.searchsorted(idx[order], np.arange(n_bins))
        sp = p[order]
        edges = ([float(sp[min(i, p.size - 1)]) for i in starts] + [float(sp[-1])]
                 if p.size else [_NAN] * (n_bins + 1))
    else:
        idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
        edges = [float(v) for v in np.linspace(0.0, 1.0, n_bins + 1)]
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(idx, weights=p, minlength=n_bins) / count
        observed = np.bincount(idx, weights=y.astype(np.float64), minlength=n_bins) / count
    return {
        "n": int(y.size),
        "edges": edges,
        "count": [int(c) for c in count],
        "mean_prob": [float(v) for v in mean_prob],
        "observed": [float(v) for v in observed],
    }


def expected_calibration_error(y_true: Any, prob: Any, n_bins: int = 10,
                               equal_count: bool = False) -> float:
    """Count-weighted mean over the :func:`reliability_curve` bins (equal-width, or with
    ``equal_count`` equal-count) of ``|observed - mean_prob|`` (0 = calibrated; NaN without
    rows)."""
    curve = reliability_curve(y_true, prob, n_bins, equal_count)
    return _ece(curve)


def _ece(curve: dict[str, Any]) -> float:
    if curve["n"] == 0:
        return _NAN
    count = np.asarray(curve["count"], dtype=np.float64)
    gap = np.abs(np.asarray(curve["observed"]) - np.asarray(curve["mean_prob"]))
    used = count > 0
    return float(np.sum(count[used] * gap[used]) / curve["n"])


def brier_score(y_true: Any, prob: Any) -> float:
    """Mean squared difference between ``prob`` and the 0/1 label (NaN without rows)."""
    y, p = _probabilities(y_true, prob)
    return float(np.mean((p - y) ** 2)) if y.size else _NAN


def calibration_metrics(y_true: Any, prob: Any, n_bins: int = 10,
                        equal_count: bool = False) -> dict[str, Any]:
    """``{"ece", "brier", "reliability"}`` of a probability against bool labels
    (:func:`expected_calibration_error`, :func:`brier_score`, :func:`reliability_curve`, in
    equal-width bins or with ``equal_count`` equal-count ones)."""
    curve = reliability_curve(y_true, prob, n_bins, equal_count)
    return {"ece": _ece(curve), "brier": brier_score(y_true, prob), "reliability": curve}
