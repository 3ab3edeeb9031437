"""Validation metrics reported every epoch, in the names Ray Train and metrics.jsonl use.

The definitions (RMSE, slope, sigma, offset, normalized RMSE, accuracy, ROC AUC) live in
:mod:`hicatalog.metrics`, shared with the evaluation; this module only renames them for the
per-epoch records: regression ``n_val, rmse, slope, sigma, offset, std_true,
rmse_over_std``; classifiers ``n_val, n_val_pos, accuracy, auc``.
"""

from __future__ import annotations

import numpy as np

from hicatalog import metrics

__all__ = ["regression_metrics", "classification_metrics"]


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Metrics of ``pred`` against ``true`` (both ``(N,)`` dex)."""
    m = metrics.regression_metrics(pred, true)
    if m["n"] == 0:
        raise ValueError("regression_metrics: empty validation set")
    std_true = float(np.std(np.asarray(true, dtype=np.float64)))
    return {
        "n_val": m["n"], "rmse": m["rmse"], "slope": m["slope"], "sigma": m["sigma"],
        "offset": m["offset"], "std_true": std_true,
        "rmse_over_std": metrics.normalized_rmse(pred, true),
    }


def classification_metrics(prob_pos: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """Accuracy (``prob_pos > 0.5``) and ROC AUC of class-1 probabilities ``(N,)`` against
    integer labels ``(N,)`` in {0, 1}."""
    m = metrics.classification_metrics(np.asarray(label).astype(np.float64), prob_pos)
    if m["n"] == 0:
        raise ValueError("classification_metrics: empty validation set")
    return {"n_val": m["n"], "n_val_pos": m["n_pos"], "accuracy": m["accuracy"], "auc": m["roc_auc"]}
