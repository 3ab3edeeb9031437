"""Training presets and the resolution of a training's arguments
(:func:`hicatalog.training.trainer.train_arguments`).

``paper``: the paper's hyperparameters (Section 3): xresnet34, 224 px, batch 64, 40 epochs,
one-cycle max lr 0.01, decoupled weight decay 0.01. The environment experiments of Section 7
(10 epochs, lr 0.03, batch 32, wd 1e-4) are the paper preset with those four overrides.

``quick``: a small network at a small input size that trains on a ~4000-galaxy mock in a few
minutes on 2 CPU cores (xresnet18 at width 0.25, 64 px input, batch 64, 12 epochs, max lr
0.01, wd 0.01).

``--task gasclass`` defaults to the shallow CNN of Section 8.1 (10 epochs with ``paper``).
"""

from __future__ import annotations

from typing import Any

from hicatalog.training.loop_config import LOOKAHEAD_ALPHA, LOOKAHEAD_K

__all__ = ["PRESETS", "HYPERPARAMETER_KEYS", "resolve_hyperparameters"]

#: Keys a preset sets; a parameter of ``train`` left ``None`` takes the preset's value.
HYPERPARAMETER_KEYS = ("arch", "width", "image_size", "epochs", "batch_size", "max_lr", "weight_decay")

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "arch": "xresnet34", "width": 1.0, "image_size": 224, "epochs": 40, "batch_size": 64,
        "max_lr": 0.01, "weight_decay": 0.01,
    },
    "quick": {
        "arch": "xresnet18", "width": 0.25, "image_size": 64, "epochs": 12, "batch_size": 64,
        "max_lr": 0.01, "weight_decay": 0.01,
    },
}


def _loss_name(args: Any) -> str:
    """The loss a run trains on (the card's ``hyperparameters["loss"]``)."""
    if args.task != "regression":
        return "cross_entropy"
    if args.head != "gaussian":
        return "rmse"
    return "censored_gaussian_nll" if args.likelihood == "censored" else "gaussian_nll"


def resolve_hyperparameters(args: Any) -> dict[str, Any]:
    """The effective hyperparameters of a run: the preset overlaid with the non-None arguments
    of ``args`` (:func:`~hicatalog.training.trainer.train_arguments`: attributes named as
    :func:`~hicatalog.training.trainer.train`'s parameters), plus the fixed method constants
    (label smoothing, Lookahead k and alpha, seed).

    This dict is the run's record (the card's ``hyperparameters``) and its identity: the Ray
    run's name hashes it (:func:`hicatalog.training.trainer.run_name`), so a key or value
    changed here starts new runs instead of resuming old ones."""
    hp = dict(PRESETS[args.preset])
    if args.task == "gasclass":
        # Section 8.1: the gas-class network is the shallow Grad-CAM CNN, trained 10 epochs.
        hp["arch"] = "shallow"
        if args.preset == "paper":
            hp["epochs"] = 10
    for key in HYPERPARAMETER_KEYS:
        value = getattr(args, key)
        if value is not None:
            hp[key] = value
    hp.update(
        preset=args.preset,
        task=args.task,
        label_smoothing=args.label_smoothing if args.task != "regression" else 0.0,
        lookahead_k=LOOKAHEAD_K,
        lookahead_alpha=LOOKAHEAD_ALPHA,
        optimizer="RAdam+Lookahead",
        schedule="one-cycle (pct_start 0.25, div 25, final div 1e5, cos)",
        loss=_loss_name(args),
        likelihood=args.likelihood if args.task == "regression" else None,
        head=args.head,
        ensemble=args.ensemble,
        seed=args.seed,
        workers=args.workers,
        gpu=args.gpu,
        precision=args.precision,
        val_fraction=args.val_fraction if args.split_by is None else None,
        split_by=args.split_by,
        val_quantiles=list(args.val_quantiles) if args.val_quantiles is not None else None,
    )
    return hp
