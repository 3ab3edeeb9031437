"""Which networks and tasks exist, and the one function that builds a network for a card.

timm keeps its registry apart from the model files and from hub loading; so does this package:
the architectures live in :mod:`~hicatalog.models.xresnet` and
:mod:`~hicatalog.models.shallow`, the artifact I/O in :mod:`~hicatalog.models.artifact`. The
tasks, their classes and the regression heads are defined in :mod:`hicatalog.tasks` (no
torch, so the command line lists them cheaply) and re-exported here.
Training and inference both build their network with :func:`build_model`, so a model is
constructed by the same code whether it is about to be trained or loaded from disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from hicatalog.models.shallow import shallow_cnn
from hicatalog.models.xresnet import xresnet18, xresnet34, xresnet50
from hicatalog.tasks import POSITIVE_CLASS, REGRESSION_HEADS, TASK_CLASSES

if TYPE_CHECKING:
    from hicatalog.models.card import ModelCard

__all__ = ["ARCHITECTURES", "TASK_CLASSES", "POSITIVE_CLASS", "REGRESSION_HEADS", "build_model"]

#: Architecture name -> factory ``(n_out, *, width, in_channels, sa) -> nn.Module``.
ARCHITECTURES = {
    "xresnet18": xresnet18,
    "xresnet34": xresnet34,
    "xresnet50": xresnet50,
    "shallow": lambda n_out, *, width, in_channels, sa: shallow_cnn(
        n_out, width=width, in_channels=in_channels
    ),
}


def build_model(card: ModelCard) -> nn.Module:
    """The untrained network ``card`` describes (``card.arch`` with ``card.n_outputs``
    outputs, ``card.width``, ``card.in_channels``, ``card.self_attention``); for
    ``card.ensemble_size`` K > 1, an :class:`~hicatalog.models.ensemble.Ensemble` of K of them.

    Weights are initialised from torch's global RNG: seed it first for a reproducible start.
    """
    from hicatalog.models.ensemble import Ensemble

    def one() -> nn.Module:
        return ARCHITECTURES[card.arch](
            card.n_outputs, width=card.width, in_channels=card.in_channels, sa=card.self_attention
        )

    return Ensemble([one() for _ in range(card.ensemble_size)]) if card.ensemble_size > 1 else one()
