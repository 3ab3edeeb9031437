"""Stage: models. The xresnet family, the shallow Grad-CAM CNN, dihedral TTA, the optimizer,
and the self-describing model artifact (weights + card).

One module per concern (as timm separates registry, builder and hub):

- :mod:`~hicatalog.models.xresnet`, :mod:`~hicatalog.models.shallow`: the networks;
- :mod:`~hicatalog.models.registry`: architectures, tasks and their classes, ``build_model``;
- :mod:`~hicatalog.models.card`: the :class:`ModelCard` and its validation;
- :mod:`~hicatalog.models.artifact`: ``save_model``, ``load_model``, ``load_card``;
- :mod:`~hicatalog.models.preprocessing`: ``preprocess`` (uint8 -> network input) and
  ``compute_normalization``, for training and inference alike;
- :mod:`~hicatalog.models.ensemble`: a deep ensemble as one module;
- :mod:`~hicatalog.models.predict`: ``predict_views``, the positive-class probability and the
  regression's mean and uncertainty;
- :mod:`~hicatalog.models.dihedral`, :mod:`~hicatalog.models.optim`: TTA and the optimizer.
- :mod:`~hicatalog.models.intervals`: intervals calibrated within groups
  (``fit_group_quantiles``, ``apply_group_quantiles``; imported from there, not here,
  so that importing the package does not load scipy).

Public API::

    from hicatalog.models import xresnet34, shallow_cnn, dihedral, tta_predict
    from hicatalog.models import ModelCard, save_model, load_model, preprocess
"""

from hicatalog.models.artifact import load_card, load_model, save_model
from hicatalog.models.card import ModelCard
from hicatalog.models.dihedral import N_DIHEDRAL, dihedral, random_dihedral, tta_predict
from hicatalog.models.ensemble import Ensemble
from hicatalog.models.optim import Lookahead, build_optimizer, one_cycle, param_groups
from hicatalog.models.predict import (
    average_views,
    class_probabilities,
    positive_probability,
    predict_views,
    regression_moments,
)
from hicatalog.models.preprocessing import compute_normalization, preprocess
from hicatalog.models.registry import ARCHITECTURES, POSITIVE_CLASS, TASK_CLASSES, build_model
from hicatalog.models.shallow import ShallowCNN, shallow_cnn
from hicatalog.models.xresnet import XResNet, xresnet18, xresnet34, xresnet50

__all__ = [
    "ARCHITECTURES",
    "TASK_CLASSES",
    "POSITIVE_CLASS",
    "N_DIHEDRAL",
    "ModelCard",
    "build_model",
    "load_card",
    "load_model",
    "save_model",
    "preprocess",
    "compute_normalization",
    "predict_views",
    "class_probabilities",
    "positive_probability",
    "average_views",
    "regression_moments",
    "Ensemble",
    "dihedral",
    "random_dihedral",
    "tta_predict",
    "Lookahead",
    "build_optimizer",
    "one_cycle",
    "param_groups",
    "ShallowCNN",
    "shallow_cnn",
    "XResNet",
    "xresnet18",
    "xresnet34",
    "xresnet50",
]
