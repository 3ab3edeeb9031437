"""The rules between training parameters that no single parameter's type can state, in one
place for the library (:func:`hicatalog.training.trainer.train` checks them before it reads
any data) and the command line's configs (:mod:`hicatalog.config` checks them when a
configuration is read). Nothing heavy is imported here.
"""

from __future__ import annotations

from collections.abc import Sequence

from hicatalog.errors import ConfigError

__all__ = ["check_split", "check_task_options"]


def check_split(split_by: str | None, val_quantiles: Sequence[float] | None) -> None:
    """``val_quantiles`` ``(lo, hi)`` needs ``split_by`` and ``0 <= lo < hi <= 1``.

    Raises
    ------
    ConfigError: naming ``val_quantiles`` (and ``split_by``).
    """
    if val_quantiles is None:
        return
    lo, hi = val_quantiles
    if not (0.0 <= lo < hi <= 1.0):
        raise ConfigError(f"val_quantiles must satisfy 0 <= lo < hi <= 1, got {list(val_quantiles)}",
                          params=("val_quantiles",))
    if split_by is None:
        raise ConfigError("val_quantiles needs split_by (the column to take quantiles of)",
                          params=("val_quantiles", "split_by"))


def check_task_options(task: str, *, head: str = "point", negatives: Sequence[str] | None = None,
                       upper_limits_as_negatives: bool = False,
                       likelihood: str = "detections") -> None:
    """The options that concern one task only: ``head`` and ``likelihood`` (a regression's;
    the censored likelihood needs the ``gaussian`` head), ``negatives`` and
    ``upper_limits_as_negatives`` (the PR network's negative class).

    Raises
    ------
    ConfigError: an option given for a task it does not concern.
    """
    if head != "point" and task != "regression":
        raise ConfigError(f"head {head!r} is for the regression task; {task!r} networks are "
                          "classifiers (their probabilities are calibrated with a temperature "
                          "instead)", params=("head",))
    if likelihood == "censored" and (task != "regression" or head != "gaussian"):
        raise ConfigError(f"likelihood 'censored' is for the regression task with the gaussian "
                          f"head (it needs the predicted variance); got task {task!r}, head "
                          f"{head!r}", params=("likelihood", "head"))
    if task != "pr" and (negatives is not None or upper_limits_as_negatives):
        raise ConfigError("negatives and upper_limits_as_negatives choose the PR network's "
                          f"negative class; task {task!r} has none",
                          params=("negatives", "upper_limits_as_negatives"))
