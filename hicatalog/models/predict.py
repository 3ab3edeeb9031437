"""From pixels to predictions: the one path the catalog build, the evaluation and training's
validation share.

:func:`predict_views` runs a model (one network or an
:class:`~hicatalog.models.ensemble.Ensemble`) on decoded cutouts and returns its raw outputs
per member and dihedral view, ``(N, K, V, n_out)``. The reductions are defined here once:

- :func:`positive_probability`: a classifier's probability of its positive class
  (``card.positive_class``: ``detection`` for ``pr``, so ``p_cnn``; ``gas_rich`` for
  ``gasclass``): softmax of the logits divided by the card's calibrated temperature, per
  member and view, then the mean over members and views;
- :func:`regression_moments`: M (dex), its total predictive standard deviation and the spread
  over views, from the members' means and variances (:func:`gaussian_variance` is the one
  parametrisation of a ``gaussian`` head's variance);
- :func:`catalog_error`: the catalog's error bar ``m_pred_err``, that standard deviation and
  the chance ``1 - p_cnn`` that the galaxy is unlike the regression's training sample;
- :func:`average_views`: the prediction of any card (M for regression, the probability for
  classifiers).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hicatalog.models.card import ModelCard
from hicatalog.models.dihedral import tta_predict
from hicatalog.models.ensemble import Ensemble
from hicatalog.models.preprocessing import preprocess

__all__ = [
    "MIN_VARIANCE", "predict_views", "class_probabilities", "positive_probability",
    "gaussian_variance",
    "censored_gaussian_nll", "regression_moments", "catalog_error", "average_views",
]

#: Smallest variance a ``gaussian`` head can predict (dex^2): (0.001 dex)^2, far below any
#: real error, keeps the negative log-likelihood finite.
MIN_VARIANCE = 1e-6


@torch.inference_mode()
def predict_views(
    model: nn.Module, card: ModelCard, images_uint8: np.ndarray | Tensor, tta: bool = True,
    bf16: bool = False,
) -> Tensor:
    """Raw outputs of ``model`` on decoded cutouts, per member and view.

    ``images_uint8``: ``(N, C, S, S)`` uint8 (moved to the model's device and prepared with
    :func:`~hicatalog.models.preprocessing.preprocess`). Returns float32 ``(N, K, V, n_out)``
    on the model's device: ``K = card.ensemble_size`` members (1 for a single network),
    ``V = 8`` dihedral views with ``tta`` (view ``k`` is D4 element ``k``), else ``V = 1``
    (the image as stored). Reduce with :func:`average_views`, :func:`regression_moments` or
    :func:`positive_probability`.
    ``bf16``: run the network in bf16 autocast on channels_last inputs (the training recipe;
    :func:`hicatalog.runtime.use_bf16` decides); preprocessing and the outputs stay float32.
    """
    device = next(model.parameters()).device
    x = preprocess(torch.as_tensor(images_uint8).to(device, non_blocking=True), card)
    if bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        if tta:
            out = tta_predict(model, x).float()  # (N, V, n_out) or (N, V, K, n_out)
        else:
            model.eval()
            out = model(x)[:, None].float()
    return out.transpose(1, 2) if isinstance(model, Ensemble) else out[:, None]


def _check_outputs(outputs: Tensor, what: str) -> None:
    if outputs.ndim != 4:
        raise ValueError(f"expected {what} outputs (N, K members, V views, n_out), got shape "
                         f"{tuple(outputs.shape)}")


def class_probabilities(view_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Class probabilities averaged over members and views:
    ``softmax(view_logits / temperature, -1).mean((1, 2))``.

    ``view_logits``: ``(N, K, V, n_classes)`` (as :func:`predict_views` returns). Returns
    float32 ``(N, n_classes)``, each row summing to 1; the probabilities are averaged, not
    the logits (the paper's TTA; the deep-ensemble mixture).
    """
    _check_outputs(view_logits, "classifier")
    return torch.softmax(view_logits.float() / float(temperature), dim=-1).mean(dim=(1, 2))


def positive_probability(view_logits: Tensor, card: ModelCard) -> Tensor:
    """Probability of ``card.positive_class`` (``p_cnn`` for a ``pr`` card), with the card's
    calibrated temperature (1 when it has none), averaged over members and views: float32
    ``(N,)`` in [0, 1] from ``(N, K, V, n_classes)`` logits.

    Raises ValueError for a regression card.
    """
    temperature = float(card.calibration.get("temperature", 1.0))
    return class_probabilities(view_logits, temperature)[:, card.positive_index]


def gaussian_variance(raw: Tensor) -> Tensor:
    """The variance (dex^2) a ``gaussian`` head predicts from its second output ``raw``
    (any real number): ``softplus(raw) + MIN_VARIANCE``, smooth, positive, and linear for
    large ``raw`` (an exponential would overflow and give huge gradients early in training)."""
    return F.softplus(raw.float()) + MIN_VARIANCE


def censored_gaussian_nll(mean: Tensor, var: Tensor, y: Tensor, censored: Tensor) -> Tensor:
    """The censored (Tobit) Gaussian negative log-likelihood, nats per row, averaged: a
    measured row contributes ``-log N(y; mean, var)``, a ``censored`` row (``y`` is an upper
    limit on M) ``-log Phi((y - mean) / sqrt(var))``, the probability that M lies below its
    limit. ``mean``, ``var`` (dex, dex^2), ``y`` (dex) float ``(N,)``; ``censored`` bool ``(N,)``.
    With no censored row it equals ``F.gaussian_nll_loss(mean, y, var, full=True)``."""
    var = var.float().clamp_min(MIN_VARIANCE)
    z = (y.float() - mean.float()) / var.sqrt()
    measured = 0.5 * (math.log(2 * math.pi) + var.log() + z * z)
    return torch.where(censored, -torch.special.log_ndtr(z), measured).mean()


def regression_moments(outputs: Tensor, card: ModelCard) -> dict[str, Tensor]:
    """Mean, total predictive standard deviation and view spread of a regression model.

    ``outputs``: ``(N, K, V, n_out)`` from :func:`predict_views`. Each member's prediction is
    its mean over views, ``mu_k``, and (``gaussian`` head) its variance the mean over views of
    :func:`gaussian_variance`, ``var_k`` (0 with the ``point`` head). Returns float32 ``(N,)``:

    - ``mean``: M (dex), the mean of ``mu_k`` over members;
    - ``std``: sqrt(s2 * (mean_k var_k + var_k mu_k)) (dex; population variance over the
      members), the standard deviation of the members' mixture scaled by the card's
      calibrated ``variance_scale`` s2 (1 without one); NaN where it is 0 (one ``point``
      network has no uncertainty);
    - ``view_std``: the standard deviation over views of the members' mean prediction (dex):
      how much the prediction changes when the image is flipped or rotated, not an error bar;
      NaN with one view.
    """
    _check_outputs(outputs, "regression")
    if outputs.shape[-1] != card.n_outputs or card.task != "regression":
        raise ValueError(f"expected the outputs of a regression model with {card.n_outputs} "
                         f"output(s) ({card.head} head), got shape {tuple(outputs.shape)}")
    mu_kv = outputs[..., 0].float()  # (N, K, V)
    mu_k = mu_kv.mean(dim=2)
    var_k = (gaussian_variance(outputs[..., 1]).mean(dim=2) if card.head == "gaussian"
             else torch.zeros_like(mu_k))
    var = var_k.mean(dim=1) + mu_k.var(dim=1, correction=0)
    var = var * float(card.calibration.get("variance_scale", 1.0))
    std = torch.where(var > 0, var.clamp_min(0).sqrt(), torch.full_like(var, float("nan")))
    views = mu_kv.mean(dim=1)  # (N, V)
    view_std = (views.std(dim=1, correction=0) if views.shape[1] > 1
                else torch.full_like(std, float("nan")))
    return {"mean": mu_k.mean(dim=1), "std": std, "view_std": view_std}


def catalog_error(std: np.ndarray | Tensor, p_in: np.ndarray | Tensor, card: ModelCard) -> np.ndarray | Tensor:
    """The catalog's error bar ``m_pred_err`` (dex) from the regression's calibrated ``std``
    (dex, :func:`regression_moments`) and ``p_in``, the probability that the galaxy is like
    the regression's training sample (the PR model's ``p_cnn``, paper Section 5: a.40A
    detections are in-distribution): the law of total variance over the two cases,

    ``sqrt(std^2 + (1 - p_in) * tau2)``,

    with ``tau2`` the card's ``calibration["ood_variance"]`` (dex^2, the variance of M over
    the regression's training rows): out of distribution the image tells no more about M than
    the training sample's spread, around the same ``m_pred``. ``std`` itself is calibrated on
    validation galaxies that are in distribution (a.40A detections), so the term is added, not
    fitted. Without ``ood_variance`` (cards written before it) it is ``std``. ``std`` and
    ``p_in``: ``(N,)`` numpy arrays or tensors (the result is of the same kind); NaN ``std``
    (one ``point`` network) stays NaN.
    """
    tau2 = float(card.calibration.get("ood_variance", 0.0))
    return (std**2 + (1.0 - p_in) * tau2) ** 0.5


def average_views(view_outputs: Tensor, card: ModelCard) -> Tensor:
    """The prediction of ``card``'s model from its ``(N, K, V, n_out)`` outputs: float32
    ``(N,)``, M (dex, :func:`regression_moments`'s mean) for regression,
    :func:`positive_probability` for classifiers."""
    if card.task == "regression":
        return regression_moments(view_outputs, card)["mean"]
    return positive_probability(view_outputs, card)
