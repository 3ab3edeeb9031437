"""The per-worker loop's configuration: one typed value, every default here, validated where it
is made.

:class:`LoopConfig` is what :func:`hicatalog.training.loop.fit` trains with. The driver builds it
(:func:`hicatalog.training.trainer.train`) before any Ray worker starts, so a wrong value is a
:class:`ValueError` naming the field on the driver, and a misspelt field a :class:`TypeError`
naming it, never a failure inside a worker. Ray Train hands the workers its
:meth:`~LoopConfig.to_dict` (a plain dict, as Ray Train records run configs) and each worker
reads it back with :meth:`~LoopConfig.from_dict`.

The optimizer constants of the paper (Lookahead ``k`` and ``alpha``) are defined here and only
here; :mod:`hicatalog.training.presets` records them in the card's hyperparameters.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

from hicatalog.models.card import ModelCard
from hicatalog.runtime import PRECISIONS

__all__ = ["LoopConfig", "LOOKAHEAD_K", "LOOKAHEAD_ALPHA"]

#: Lookahead: slow weights synchronised every ``k`` optimizer steps (paper Section 3).
LOOKAHEAD_K = 6
#: Lookahead: step of the slow weights towards the fast ones.
LOOKAHEAD_ALPHA = 0.5


def _integer(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


#: field -> (what it must be, the test). One rule per field; __post_init__ applies them all.
_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "card": ("a ModelCard", lambda v: isinstance(v, ModelCard)),
    "epochs": ("an integer >= 1", lambda v: _integer(v) and v >= 1),
    "batch_size": ("an integer >= 1", lambda v: _integer(v) and v >= 1),
    "max_lr": ("a number > 0", lambda v: _number(v) and v > 0),
    "weight_decay": ("a number >= 0", lambda v: _number(v) and v >= 0),
    "steps_per_epoch": ("an integer >= 1", lambda v: _integer(v) and v >= 1),
    "seed": ("an integer >= 0", lambda v: _integer(v) and v >= 0),
    "label_smoothing": ("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    "lookahead_k": ("an integer >= 1", lambda v: _integer(v) and v >= 1),
    "lookahead_alpha": ("a number in (0, 1]", lambda v: _number(v) and 0 < v <= 1),
    "precision": (f"one of {', '.join(PRECISIONS)}", lambda v: v in PRECISIONS),
    "gpu": ("True or False", lambda v: isinstance(v, bool)),
    "shuffle_buffer": ("an integer >= 0 (0: no local shuffle)", lambda v: _integer(v) and v >= 0),
    "run_dir": ("a path or URL, or None", lambda v: v is None or (isinstance(v, str) and v != "")),
}


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """What one network trains with (paper Section 3), the same on every worker.

    ``card``: the :class:`ModelCard` the trained weights will be saved with (task,
    architecture, outputs, input size, normalisation): the loop builds the network and
    normalises pixels from it. ``epochs``; ``batch_size`` (per worker); ``max_lr`` and
    ``weight_decay`` (one-cycle RAdam + Lookahead, decoupled weight decay);
    ``steps_per_epoch`` (optimizer steps per epoch on each worker, for the one-cycle
    schedule); ``seed`` (initial weights, data order, augmentation); ``label_smoothing``
    (classifiers' cross-entropy); ``lookahead_k`` / ``lookahead_alpha``; ``precision``
    (``auto``: bf16 autocast + channels_last on GPU, fp32 on CPU; ``bf16``; ``fp32``);
    ``gpu`` (one GPU per Ray worker); ``shuffle_buffer`` (rows in each worker's local shuffle
    buffer, 0: none); ``run_dir`` (Ray Train's run directory, where a worker looks for a
    checkpoint newer than the one Ray Train registered; None: none).

    Raises ValueError naming the field for a value out of range or of the wrong type.
    """

    card: ModelCard
    epochs: int
    batch_size: int
    max_lr: float
    weight_decay: float
    steps_per_epoch: int
    seed: int = 0
    label_smoothing: float = 0.0
    lookahead_k: int = LOOKAHEAD_K
    lookahead_alpha: float = LOOKAHEAD_ALPHA
    precision: str = "auto"
    gpu: bool = False
    shuffle_buffer: int = 0
    run_dir: str | None = None

    def __post_init__(self) -> None:
        for name, (expected, ok) in _RULES.items():
            value = getattr(self, name)
            if not ok(value):
                raise ValueError(f"loop config {name}: expected {expected}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the card as :meth:`ModelCard.to_dict`), for Ray Train's
        ``train_loop_config``."""
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "card": self.card.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopConfig:
        """Read back :meth:`to_dict`; ValueError naming an unknown or missing field."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"loop config: unknown field(s) {unknown}; fields: {names}")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in data and f.default is dataclasses.MISSING]
        if missing:
            raise ValueError(f"loop config: missing field(s) {missing}")
        card = data["card"]
        if not isinstance(card, ModelCard):
            card = ModelCard.from_dict(card, source="loop config")
        return cls(**{**data, "card": card})
