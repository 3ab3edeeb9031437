"""From pixels to predictions: the one path the catalog build, the evaluation and training's
validation share.

:func:`predict_views` runs a model on decoded cutouts (prepared by
:func:`~hicatalog.models.preprocessing.preprocess`) and returns one row of raw outputs per
dihedral view. :func:`positive_probability` is the one rule that turns a classifier's view
logits into the probability of its positive class (``card.positive_class``: ``detection``
for ``pr``, so ``p_cnn``; ``gas_rich`` for ``gasclass``): softmax per view, then the mean over
views. :func:`average_views` is the prediction of any card: M (dex) for regression, that
probability for classifiers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from hicatalog.models.card import ModelCard
from hicatalog.models.dihedral import tta_predict
from hicatalog.models.preprocessing import preprocess

__all__ = ["predict_views", "class_probabilities", "positive_probability", "average_views"]


@torch.inference_mode()
def predict_views(
    model: nn.Module, card: ModelCard, images_uint8: np.ndarray | Tensor, tta: bool = True,
    bf16: bool = False,
) -> Tensor:
    """Raw outputs of ``model`` on decoded cutouts, one row per view.

    ``images_uint8``: ``(N, C, S, S)`` uint8 (moved to the model's device and prepared with
    :func:`~hicatalog.models.preprocessing.preprocess`). Returns float32 ``(N, V, n_out)`` on
    the model's device: ``V = 8`` dihedral views with ``tta`` (view ``k`` is D4 element
    ``k``), else ``V = 1`` (the image as stored). Reduce with :func:`average_views`.
    ``bf16``: run the network in bf16 autocast on channels_last inputs (the training recipe;
    :func:`hicatalog.runtime.use_bf16` decides); preprocessing and the outputs stay float32.
    """
    device = next(model.parameters()).device
    x = preprocess(torch.as_tensor(images_uint8).to(device, non_blocking=True), card)
    if bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        if tta:
            return tta_predict(model, x).float()
        model.eval()
        return model(x)[:, None, :].float()


def class_probabilities(view_logits: Tensor) -> Tensor:
    """Class probabilities averaged over views: ``softmax(view_logits, -1).mean(1)``.

    ``view_logits``: ``(N, V, n_classes)`` (as :func:`predict_views` returns). Returns
    float32 ``(N, n_classes)``, each row summing to 1; the probabilities are averaged, not
    the logits (the paper's TTA).
    """
    if view_logits.ndim != 3:
        raise ValueError(f"expected view logits (N, V, n_classes), got shape {tuple(view_logits.shape)}")
    return torch.softmax(view_logits.float(), dim=-1).mean(dim=1)


def positive_probability(view_logits: Tensor, card: ModelCard) -> Tensor:
    """Probability of ``card.positive_class`` (``p_cnn`` for a ``pr`` card), averaged over
    the views: float32 ``(N,)`` in [0, 1] from ``(N, V, n_classes)`` logits.

    Raises ValueError for a regression card.
    """
    return class_probabilities(view_logits)[:, card.positive_index]


def average_views(view_outputs: Tensor, card: ModelCard) -> Tensor:
    """The prediction of ``card``'s model from its ``(N, V, n_out)`` view outputs: float32
    ``(N,)``, the mean over views of M (dex) for regression, :func:`positive_probability`
    for classifiers."""
    if card.task == "regression":
        if view_outputs.ndim != 3 or view_outputs.shape[-1] != 1:
            raise ValueError(f"expected regression outputs (N, V, 1), got shape {tuple(view_outputs.shape)}")
        return view_outputs[..., 0].float().mean(dim=1)
    return positive_probability(view_outputs, card)
