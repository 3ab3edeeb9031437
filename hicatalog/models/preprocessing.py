"""Pixels in: the one normalisation shared by training and inference.

Decoded cutouts are ``uint8`` ``(N, C, S, S)``; a network sees
``(pixel / 255 - mean) / std`` per channel, with the mean and std stored in the model card.
Training computes them once (:func:`compute_normalization`) and normalises every batch with
:func:`preprocess`, the very function the catalog build and the evaluation call, so the two
cannot drift apart.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hicatalog.models.card import ModelCard

__all__ = ["preprocess", "compute_normalization"]


def preprocess(images_uint8: np.ndarray | Tensor, card: ModelCard) -> Tensor:
    """Decoded cutouts -> normalised network input.

    ``images_uint8``: ``(N, C, S, S)`` ``uint8`` (channels first, as
    :func:`hicatalog.cutouts.decode.decode_batch` returns), ``C = card.in_channels``. Returns
    ``float32`` ``(N, C, card.image_size, card.image_size)`` = ``(pixel/255 - mean) / std``
    with ``card.normalization``'s per-channel mean and std, resized first (bilinear,
    antialiased, on the 0-1 scale) when ``S != card.image_size``. Stays on the input's device.

    Raises ValueError for another dtype, rank or channel count.
    """
    x = torch.as_tensor(images_uint8)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != card.in_channels:
        raise ValueError(
            f"preprocess expects uint8 images (N, {card.in_channels}, S, S), got "
            f"{x.dtype} {tuple(x.shape)}"
        )
    x = x.float().div_(255.0)
    if x.shape[-1] != card.image_size or x.shape[-2] != card.image_size:
        x = F.interpolate(
            x, size=(card.image_size, card.image_size), mode="bilinear", antialias=True,
            align_corners=False,
        )
    mean, std = _channel_stats(
        tuple(card.normalization["mean"]), tuple(card.normalization["std"]), x.device
    )
    return (x - mean) / std


@functools.lru_cache(maxsize=16)
def _channel_stats(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    # Made once per device: building them per batch would copy host memory to the GPU, which
    # synchronises the stream every training step.
    def col(v: tuple[float, ...]) -> Tensor:
        return torch.tensor(v, dtype=torch.float32, device=device)[:, None, None]

    return col(mean), col(std)


def compute_normalization(images_uint8: np.ndarray | Tensor) -> dict[str, list[float]]:
    """Per-channel mean and standard deviation (ddof=1, at least 1e-3) of ``uint8`` images
    ``(N, C, H, W)`` on the 0-1 scale, computed in float64.

    Returns ``{"mean": [C floats], "std": [C floats]}``, the card's ``normalization``.
    """
    x = torch.as_tensor(np.array(images_uint8, copy=True)).double().div(255.0)
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"compute_normalization needs a non-empty (N, C, H, W) batch, got {tuple(x.shape)}")
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
