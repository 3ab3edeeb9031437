"""Validation metrics computed every epoch (paper Section 3 and 5.3).

Regression (M in dex): ``rmse``, ``slope`` (least-squares slope of M_pred on M_true),
``sigma`` = std(M_pred - M_true) (ddof 0), ``offset`` = mean(M_pred - M_true), ``std_true``
(std of the validation M_true) and ``rmse_over_std`` (the paper's Figure 10 metric).
Classifiers: ``accuracy`` (argmax of the TTA-averaged probabilities) and ``auc`` (ROC AUC by
ranks, the Mann-Whitney statistic, ties one half). All values are plain floats for JSON.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["regression_metrics", "classification_metrics"]


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Metrics of ``pred`` against ``true`` (both ``(N,)`` dex)."""
    pred = np.asarray(pred, dtype=np.float64).ravel()
    true = np.asarray(true, dtype=np.float64).ravel()
    if pred.size == 0:
        raise ValueError("regression_metrics: empty validation set")
    resid = pred - true
    var_t = float(np.var(true))
    std_true = float(np.sqrt(var_t))
    rmse = float(np.sqrt(np.mean(resid**2)))
    slope = float(np.mean((true - true.mean()) * (pred - pred.mean())) / var_t) if var_t > 0 else float("nan")
    return {
        "n_val": int(pred.size),
        "rmse": rmse,
        "slope": slope,
        "sigma": float(np.std(resid)),
        "offset": float(np.mean(resid)),
        "std_true": std_true,
        "rmse_over_std": rmse / std_true if std_true > 0 else float("nan"),
    }


def classification_metrics(prob_pos: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """Accuracy (``prob_pos > 0.5``) and ROC AUC of class-1 probabilities ``(N,)`` against
    integer labels ``(N,)`` in {0, 1}."""
    p = np.asarray(prob_pos, dtype=np.float64).ravel()
    y = np.asarray(label).astype(np.int64).ravel()
    if p.size == 0:
        raise ValueError("classification_metrics: empty validation set")
    n_pos = int((y == 1).sum())
    n_neg = int(y.size - n_pos)
    if n_pos and n_neg:
        ranks = rankdata(p)
        auc = (float(ranks[y == 1].sum()) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    else:
        auc = float("nan")
    return {
        "n_val": int(p.size),
        "n_val_pos": n_pos,
        "accuracy": float(np.mean((p > 0.5) == (y == 1))),
        "auc": float(auc),
    }
