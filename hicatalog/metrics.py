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
(``M_pred <= M_limit``).

Classification (pattern recognition, ``p_cnn`` against ``detected``): ``accuracy`` at a
threshold and the area under the ROC curve computed from ranks (the Mann-Whitney U
statistic, ties counted one half), which needs no scikit-learn.

Every function takes array-likes, drops pairs where either value is NaN (and says how many
were used in ``n``), and returns plain Python floats so results serialise to JSON as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "PR_CUTS",
    "regression_metrics",
    "normalized_rmse",
    "upper_limit_metrics",
    "accuracy",
    "roc_auc",
    "roc_curve",
    "classification_metrics",
]

#: The PR cuts of the paper's Table 2: ``None`` means no cut, otherwise keep ``p_cnn > cut``.
PR_CUTS: tuple[float | None, ...] = (None, 0.5, 0.8, 0.9)

_NAN = float("nan")


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


def upper_limit_metrics(m_limit: Any, m_pred: Any) -> dict[str, float | int]:
    """Predictions against upper limits ``m_limit`` (both dex, shape (N,)): ``{"n",
    "n_consistent", "frac_consistent", "median_excess"}``, where a prediction is consistent
    when ``m_pred <= m_limit`` and ``median_excess`` = median(m_pred - m_limit) (negative: most
    predictions lie below their limits). NaN fraction and excess when ``n`` is 0."""
    pred, lim = _pairs(m_pred, m_limit, ("m_pred", "m_limit"))
    n = int(pred.size)
    if n == 0:
        return {"n": 0, "n_consistent": 0, "frac_consistent": _NAN, "median_excess": _NAN}
    ok = int(np.sum(pred <= lim))
    return {"n": n, "n_consistent": ok, "frac_consistent": ok / n,
            "median_excess": float(np.median(pred - lim))}


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
