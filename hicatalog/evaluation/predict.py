"""In-process predictions of a saved model on decoded cutouts (for the small evaluation
samples: robustness trials, baseline comparisons, environment validation sets).

Survey-scale inference belongs to ``hicatalog build-catalog`` (Ray Data); this is the same
model, preprocessing and 8-view averaging applied to an in-memory batch.
"""

from __future__ import annotations

import numpy as np
import torch

from hicatalog.models import ModelCard, average_views, predict_views

__all__ = ["predict_cutouts"]


def predict_cutouts(
    model: torch.nn.Module, card: ModelCard, images: np.ndarray, batch_size: int = 64,
    tta: bool = True,
) -> np.ndarray:
    """Predict ``uint8`` ``(N, 3, S, S)`` cutouts with a loaded model, ``batch_size`` at a time.

    Returns float64 ``(N,)`` (:func:`hicatalog.models.average_views`): M_pred in dex for a
    regression card; for a classifier, the probability of ``card.positive_class`` (``p_cnn``
    for ``pr``, p(gas-rich) for ``gasclass``). With ``tta``, the mean over the 8 dihedral
    views (probabilities averaged after the softmax); without, the image as stored.
    """
    out = []
    for i in range(0, images.shape[0], batch_size):
        views = predict_views(model, card, np.ascontiguousarray(images[i : i + batch_size]), tta)
        out.append(average_views(views, card).cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)
