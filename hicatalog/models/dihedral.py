"""The dihedral group D4 on images: augmentation at training, 8-view averaging at test.

Element ``k`` (0..7) of D4 acts on the last two axes of an ``NCHW`` tensor as a rotation by
``(k % 4) * 90`` degrees, preceded by a left-right flip when ``k >= 4``. These are all the
symmetries of a square, and a galaxy image has no preferred orientation (paper Section 3).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["N_DIHEDRAL", "dihedral", "random_dihedral", "tta_predict"]

#: Number of elements of D4.
N_DIHEDRAL = 8


def dihedral(x: Tensor, k: int) -> Tensor:
    """Apply D4 element ``k`` (0..7) to ``x`` of shape ``(..., H, W)`` with ``H == W``.

    ``k = 0`` is the identity; returns a new tensor of the same shape and dtype.
    """
    if not 0 <= int(k) < N_DIHEDRAL:
        raise ValueError(f"dihedral element k must be in 0..7, got {k}")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"dihedral transforms need square images, got shape {tuple(x.shape)}")
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def random_dihedral(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Apply an independent random D4 element to each sample of ``x`` ``(N, C, H, W)``.

    Returns a new tensor of the same shape. ``generator`` (a CPU generator) makes the draw
    reproducible; the elements are ``torch.randint(0, 8, (N,), generator=generator)``.
    """
    ks = torch.randint(0, N_DIHEDRAL, (x.shape[0],), generator=generator)
    out = torch.empty_like(x)
    for k in range(N_DIHEDRAL):
        idx = (ks == k).nonzero(as_tuple=True)[0]
        if idx.numel():
            idx = idx.to(x.device)
            out[idx] = dihedral(x[idx], k)
    return out


@torch.no_grad()
def tta_predict(model: nn.Module, x: Tensor) -> Tensor:
    """Predictions of ``model`` for all 8 dihedral views of ``x`` ``(N, C, H, W)``.

    The 8 views go through the model as one batch of ``8 N`` images (one forward: fewer,
    larger kernels on a GPU; in eval mode every image is independent of the others), in the
    memory format of ``x`` (channels_last stays channels_last). Runs in eval mode without
    gradients (the model's previous mode is restored) and returns ``(N, 8, n_out)`` raw
    outputs, view ``k`` at index ``k``; average over axis 1 for the TTA prediction (for
    classifiers, average the softmax probabilities).
    """
    n = x.shape[0]
    fmt = (torch.channels_last if x.ndim == 4 and not x.is_contiguous()
           and x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
    views = torch.cat([dihedral(x, k) for k in range(N_DIHEDRAL)]).contiguous(memory_format=fmt)
    was_training = model.training
    model.eval()
    try:
        out = model(views)
    finally:
        model.train(was_training)
    return out.reshape(N_DIHEDRAL, n, *out.shape[1:]).transpose(0, 1)
