"""Which networks and tasks exist, and the one function that builds a network for a card.

timm keeps its registry apart from the model files and from hub loading; so does this package:
the architectures live in :mod:`~hicatalog.models.xresnet` and
:mod:`~hicatalog.models.shallow`, the artifact I/O in :mod:`~hicatalog.models.artifact`.
Training and inference both build their network with :func:`build_model`, so a model is
constructed by the same code whether it is about to be trained or loaded from disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from hicatalog.models.shallow import shallow_cnn
from hicatalog.models.xresnet import xresnet18, xresnet34, xresnet50

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

#: Output classes of each task, in the order of the network's outputs (``None``: regression,
#: one output, M in dex).
TASK_CLASSES: dict[str, list[str] | None] = {
    "regression": None,
    "pr": ["nondetection", "detection"],
    "gasclass": ["gas_poor", "gas_rich"],
}

#: The class whose probability a classifier reports (``p_cnn`` for ``pr``; p(gas-rich) for
#: ``gasclass``) and that label 1 means in training. One entry per classifier task.
POSITIVE_CLASS: dict[str, str] = {
    "pr": "detection",
    "gasclass": "gas_rich",
}


#: Regression heads and their outputs per image: ``point`` (M in dex, the paper's network,
#: trained on the RMSE) and ``gaussian`` (mean and variance parameter, trained on the Gaussian
#: negative log-likelihood; :func:`hicatalog.models.predict.gaussian_variance`).
REGRESSION_HEADS: dict[str, int] = {"point": 1, "gaussian": 2}


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
