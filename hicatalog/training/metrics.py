"""Validation metrics reported every epoch, in the names Ray Train and metrics.jsonl use.

The definitions (RMSE, slope, sigma, offset, normalized RMSE, accuracy, ROC AUC) live in
:mod:`hicatalog.metrics`, shared with the evaluation; this module only builds the per-epoch
records from them: regression ``n_val, rmse, slope, sigma, offset, std_true,
rmse_over_std``; classifiers ``n_val, n_val_pos, accuracy, auc``.

Both functions take the truth first, then the prediction (scikit-learn's order), and call
:mod:`hicatalog.metrics` by keyword, whose argument orders differ.
"""

from __future__ import annotations

import numpy as np

from hicatalog import metrics
from hicatalog.errors import InputError

__all__ = ["epoch_regression_metrics", "epoch_classification_metrics", "split_target"]


def split_target(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A regression's targets as ``(value (N,) float64 dex, censored (N,) bool)``: ``target``
    is ``(N,)`` (every value measured) or, for the censored likelihood, ``(N, 2)``: the value
    or upper limit, and 1.0 where it is a limit."""
    t = np.asarray(target, dtype=np.float64)
    if t.ndim == 2:
        return t[:, 0], t[:, 1] > 0.5
    return t.reshape(-1), np.zeros(t.size, dtype=bool)


def epoch_regression_metrics(m_true: np.ndarray, m_pred: np.ndarray) -> dict[str, float]:
    """Per-epoch record of predictions ``m_pred`` ``(N,)`` against ``m_true`` (dex, ``(N,)``
    or a censored regression's ``(N, 2)``, :func:`split_target`): over the measured rows
    ``n_val`` (pairs with both finite), ``rmse``, ``slope``, ``sigma``, ``offset`` (dex, as
    :func:`hicatalog.metrics.regression_metrics`), ``std_true`` (population std of the
    measured ``m_true``, dex) and ``rmse_over_std``; with upper limits also ``n_val_limits``
    and ``limits_below`` (the fraction of them whose prediction lies below the limit).
    InputError when no finite pair is left."""
    m_true, censored = split_target(m_true)
    m_pred = np.asarray(m_pred, dtype=np.float64).reshape(-1)
    extra: dict[str, float] = {}
    if censored.any():
        lim, pred = m_true[censored], m_pred[censored]
        ok = np.isfinite(lim) & np.isfinite(pred)
        extra = {"n_val_limits": int(ok.sum()),
                 "limits_below": float(np.mean(pred[ok] <= lim[ok])) if ok.any() else float("nan")}
        m_true, m_pred = m_true[~censored], m_pred[~censored]
    m = metrics.regression_metrics(m_pred=m_pred, m_true=m_true)
    if m["n"] == 0:
        raise InputError("empty validation set: no validation row has a finite target and "
                         "prediction")
    std_true = float(np.std(np.asarray(m_true, dtype=np.float64)))
    return {
        "n_val": m["n"], "rmse": m["rmse"], "slope": m["slope"], "sigma": m["sigma"],
        "offset": m["offset"], "std_true": std_true,
        "rmse_over_std": metrics.normalized_rmse(m_pred=m_pred, m_true=m_true), **extra,
    }


def epoch_classification_metrics(y_true: np.ndarray, prob_pos: np.ndarray) -> dict[str, float]:
    """Per-epoch record of positive-class probabilities ``prob_pos`` ``(N,)`` against labels
    ``y_true`` ``(N,)`` in {0, 1} (1 = the card's positive class): ``n_val``, ``n_val_pos``,
    ``accuracy`` (``prob_pos > 0.5``) and ``auc`` (ROC). InputError when empty."""
    m = metrics.classification_metrics(y_true=np.asarray(y_true).astype(np.float64), score=prob_pos)
    if m["n"] == 0:
        raise InputError("empty validation set: no validation row has a label and a "
                         "probability")
    return {"n_val": m["n"], "n_val_pos": m["n_pos"], "accuracy": m["accuracy"], "auc": m["roc_auc"]}
