"""Calibration fitted on the validation split after training: the card's ``calibration``.

A network's raw probabilities and variances are not calibrated: a classifier trained with
cross-entropy is usually over-confident, and a Gaussian head or an ensemble's spread can be
too narrow or too wide. With the validation rows (never trained on) this module fits one
number per model and the card records it; :mod:`hicatalog.models.predict` applies it:

- classifiers: a temperature ``T`` (Guo et al. 2017): probabilities
  ``mean_{members, views} softmax(logits / T)``, ``T`` minimising their negative
  log-likelihood on the validation labels;
- regression with an uncertainty (a ``gaussian`` head or an ensemble): a variance scale
  ``s2`` (Levi et al. 2019; Kuleshov et al. 2018 for the general recalibration):
  ``m_pred_err = sqrt(s2) * std``, ``s2 = mean(((M_true - M_pred) / std)^2)``, the maximum
  likelihood value for Gaussian errors, so that the validation z-scores have unit RMS. The
  card also records ``ood_variance``, the variance of M over the training rows: the catalog
  adds ``(1 - p_cnn)`` times it to the error bar
  (:func:`hicatalog.models.predict.catalog_error`). The validation rows are a.40A
  detections, in distribution by definition, so ``s2`` is fitted without that term. A
  censored regression (``likelihood="censored"``) fits ``s2`` on the censored likelihood of
  its validation detections and limits, and records no ``ood_variance``.

:func:`validation_outputs` predicts the validation split with the trained model (a Ray task,
on a GPU when training used one); :func:`fit_calibration` fits.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from hicatalog.errors import InputError
from hicatalog.models.card import ModelCard
from hicatalog.models.predict import (
    censored_gaussian_nll,
    positive_probability,
    predict_views,
    regression_moments,
)
from hicatalog.training.metrics import split_target

__all__ = ["fit_calibration", "fit_temperature", "fit_variance_scale", "validation_outputs"]

log = logging.getLogger("hicatalog.training.calibration")

#: Range searched for a classifier's temperature.
TEMPERATURE_RANGE = (0.05, 20.0)


def _censored_nll(y: np.ndarray, mean: np.ndarray, std: np.ndarray, censored: np.ndarray) -> float:
    """:func:`~hicatalog.models.predict.censored_gaussian_nll` of float64 arrays (nats per row)."""
    return float(censored_gaussian_nll(*(torch.as_tensor(a) for a in (mean, std**2, y, censored))))


def fit_variance_scale(m_true: np.ndarray, m_pred: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    """The variance scale ``s2`` that calibrates predictive standard deviations ``std`` (dex)
    of predictions ``m_pred`` (both ``(N,)``) against ``m_true`` (``(N,)``, or a censored
    regression's ``(N, 2)`` of values and limit flags,
    :func:`~hicatalog.training.metrics.split_target`), over the rows where all are finite and
    ``std > 0``: ``mean(z^2)`` with ``z = (m_true - m_pred) / std`` when every value is
    measured (the maximum-likelihood value), else the ``s2`` that maximises the censored
    likelihood (bounded search over [1e-4, 1e4]).

    Returns ``{"method": "variance_scale", "variance_scale", "n_val", "n_val_limits",
    "nll_before", "nll_after"}`` (mean negative log-likelihood per row, nats, censored where
    there are limits), or ``{}`` when no row has a usable ``std`` (a single ``point`` network
    has no uncertainty to calibrate).
    """
    y, censored = split_target(m_true)
    mu, sd = (np.asarray(a, dtype=np.float64).ravel() for a in (m_pred, std))
    ok = np.isfinite(y) & np.isfinite(mu) & np.isfinite(sd) & (sd > 0)
    if not ok.any():
        return {}
    y, mu, sd, censored = y[ok], mu[ok], sd[ok], censored[ok]
    if censored.any():
        res = minimize_scalar(lambda t: _censored_nll(y, mu, sd * np.exp(0.5 * t), censored),
                              bounds=(np.log(1e-4), np.log(1e4)), method="bounded",
                              options={"xatol": 1e-5})
        s2 = float(np.exp(res.x))
    else:
        s2 = float(np.mean(((y - mu) / sd) ** 2))
    if not s2 > 0:  # every prediction exact: nothing to scale
        return {}
    return {"method": "variance_scale", "variance_scale": s2, "n_val": int(ok.sum()),
            "n_val_limits": int(censored.sum()),
            "nll_before": _censored_nll(y, mu, sd, censored),
            "nll_after": _censored_nll(y, mu, sd * np.sqrt(s2), censored)}


def _nll_at(logits: torch.Tensor, label: torch.Tensor, temperature: float) -> float:
    p = torch.softmax(logits / temperature, dim=-1).mean(dim=(1, 2))  # (N, C)
    picked = p.gather(1, label[:, None])[:, 0].clamp_min(1e-12)
    return float(-picked.log().mean())


def fit_temperature(logits: np.ndarray, label_index: np.ndarray) -> dict[str, Any]:
    """The temperature ``T`` minimising the negative log-likelihood of the probabilities
    ``mean_{members, views} softmax(logits / T)`` for the true classes.

    ``logits``: ``(N, K, V, C)`` float; ``label_index``: ``(N,)`` int, the index of each row's
    true class in the outputs. Bounded search over :data:`TEMPERATURE_RANGE` in log T.
    Returns ``{"method": "temperature", "temperature", "n_val", "nll_before", "nll_after"}``
    (nats per row); ValueError when there are no rows.
    """
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    lab = torch.as_tensor(np.asarray(label_index), dtype=torch.long)
    if z.ndim != 4 or z.shape[0] == 0 or lab.shape != (z.shape[0],):
        raise ValueError(f"fit_temperature: expected logits (N>0, K, V, C) and N labels, got "
                         f"{tuple(z.shape)} and {tuple(lab.shape)}")
    lo, hi = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    res = minimize_scalar(lambda t: _nll_at(z, lab, float(np.exp(t))), bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-4})
    t = float(np.exp(res.x))
    return {"method": "temperature", "temperature": t, "n_val": int(z.shape[0]),
            "nll_before": _nll_at(z, lab, 1.0), "nll_after": _nll_at(z, lab, t)}


def fit_calibration(card: ModelCard, outputs: np.ndarray, targets: np.ndarray,
                    train_targets: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Fit ``card``'s calibration from its uncalibrated validation ``outputs`` ``(N, K, V,
    n_out)`` and ``targets`` ``(N,)`` (M in dex; 0/1 labels, 1 = ``card.positive_class``).
    ``train_targets`` (regression): M (dex) of the training rows; their variance (``ddof=0``)
    is recorded as ``ood_variance`` (dex^2) when there is a variance scale, except for a
    censored regression (trained on detections and limits: the galaxies unlike the detections
    are in its training set, so no term is added for them).

    Returns ``(calibration, prediction)``: the card's ``calibration`` (``{}`` when there is
    nothing to calibrate) and the calibrated validation prediction ``(N,)`` (M for
    regression, the positive-class probability for classifiers).
    """
    raw = dataclasses.replace(card, calibration={})
    out = torch.as_tensor(np.array(outputs))  # a writable copy (Ray returns read-only arrays)
    if card.task == "regression":
        mom = regression_moments(out, raw)
        cal = fit_variance_scale(targets, mom["mean"].numpy(), mom["std"].numpy())
        tau2 = float(np.var(np.asarray(train_targets, dtype=np.float64))) if train_targets is not None else 0.0
        if cal and tau2 > 0 and card.hyperparameters.get("likelihood") != "censored":
            cal["ood_variance"] = tau2
        return cal, mom["mean"].numpy()
    label = np.asarray(targets).astype(np.int64)
    index = np.where(label == 1, card.positive_index, 1 - card.positive_index)
    cal = fit_temperature(out.numpy(), index)
    return cal, positive_probability(out, dataclasses.replace(card, calibration=cal)).numpy()


def validation_outputs(card: ModelCard, state: dict[str, Any], val_ds: Any, *, gpu: bool,
                       num_cpus: float, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Predict the validation split with the trained model: ``(outputs (N, K, V, n_out)
    float32, targets (N,) float64)``.

    Runs as one Ray task (one GPU when ``gpu``; ``num_cpus`` CPUs, that many torch threads)
    that builds the model from ``card`` and ``state`` (its state_dict) and reads ``val_ds``
    (a Ray Dataset of ``image`` uint8 ``(C, S, S)`` and ``target``) with all 8 views, as the
    catalog build will. InputError when the split holds no row.
    """
    import ray

    @ray.remote
    def predict(card_dict: dict[str, Any], state: dict[str, Any], ds: Any) -> tuple[np.ndarray, np.ndarray]:
        from hicatalog.models.registry import build_model
        from hicatalog.runtime import set_torch_threads

        set_torch_threads()
        c = ModelCard.from_dict(card_dict, source="calibration")
        device = "cuda" if gpu else "cpu"
        model = build_model(c)
        model.load_state_dict(state)
        model.to(device).eval()
        outs, ys = [], []
        for batch in ds.iter_torch_batches(batch_size=batch_size, device="cpu"):
            outs.append(predict_views(model, c, batch["image"]).cpu().numpy())
            ys.append(batch["target"].numpy().astype(np.float64))
        return (np.concatenate(outs), np.concatenate(ys)) if outs else None

    task = predict.options(num_cpus=num_cpus, num_gpus=1 if gpu else 0)
    predicted = ray.get(task.remote(card.to_dict(), ray.put(state), val_ds))
    if predicted is None:
        raise InputError("the validation split is empty: none of its cutouts could be decoded")
    return predicted
