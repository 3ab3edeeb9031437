"""The tasks a network is trained for, defined once: their names, their output classes and the
regression heads.

Every place that names a task or a head (the configs and their flags, the model card, the
training's row selection, the model registry) takes it from here. This module imports
nothing heavy, so the command line can list the choices without importing torch.
"""

from __future__ import annotations

__all__ = ["TASK_CLASSES", "TASKS", "POSITIVE_CLASS", "REGRESSION_HEADS", "HEADS", "LIKELIHOODS"]

#: Output classes of each task, in the order of the network's outputs (``None``: regression,
#: one output, M in dex).
TASK_CLASSES: dict[str, list[str] | None] = {
    "regression": None,
    "pr": ["nondetection", "detection"],
    "gasclass": ["gas_poor", "gas_rich"],
}

#: The valid task names, in a fixed order.
TASKS: tuple[str, ...] = tuple(TASK_CLASSES)

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

#: A regression's likelihood: the measured M of detections only, or censored (detections and
#: upper limits, Tobit).
LIKELIHOODS: tuple[str, ...] = ("detections", "censored")

#: The valid head names, in a fixed order.
HEADS: tuple[str, ...] = tuple(REGRESSION_HEADS)
