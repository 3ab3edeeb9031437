"""A deep ensemble as one module: K networks of one architecture that see the same batch.

The catalog build loads an ensemble like a single model (one actor, one ``weights.pt``, one
card with ``ensemble_size`` K): :func:`~hicatalog.models.registry.build_model` builds an
:class:`Ensemble` for such a card, and :func:`~hicatalog.models.predict.predict_views` gives
the members' outputs side by side. Each member is trained on its own (its own seed, Ray Train
run and checkpoints: :mod:`hicatalog.training.trainer`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["Ensemble"]


class Ensemble(nn.Module):
    """K member networks; ``forward(x)`` is ``(N, K, n_out)``, member ``k`` at index ``k``.

    The state_dict is the members' (``members.k.<name>``); every member receives the whole
    batch ``x`` ``(N, C, H, W)`` (in eval mode a member's outputs do not depend on the
    others' or on the batch's other images).
    """

    def __init__(self, members: Iterable[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        if len(self.members) < 2:
            raise ValueError(f"an ensemble has at least 2 members, got {len(self.members)}")

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([m(x) for m in self.members], dim=1)
