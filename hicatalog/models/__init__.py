"""Stage: models. The xresnet family, the shallow Grad-CAM CNN, dihedral TTA, the optimizer,
and the self-describing model artifact (weights + card).

Public API::

    from hicatalog.models import xresnet34, shallow_cnn, dihedral, tta_predict
    from hicatalog.models import ModelCard, save_model, load_model, preprocess
"""

from hicatalog.models.card import (
    ARCHITECTURES,
    TASK_CLASSES,
    ModelCard,
    build_model,
    compute_normalization,
    load_card,
    load_model,
    predict_views,
    preprocess,
    save_model,
)
from hicatalog.models.dihedral import N_DIHEDRAL, dihedral, random_dihedral, tta_predict
from hicatalog.models.optim import Lookahead, build_optimizer, one_cycle, param_groups
from hicatalog.models.shallow import ShallowCNN, shallow_cnn
from hicatalog.models.xresnet import XResNet, xresnet18, xresnet34, xresnet50

__all__ = [
    "ARCHITECTURES",
    "TASK_CLASSES",
    "N_DIHEDRAL",
    "ModelCard",
    "predict_views",
    "build_model",
    "compute_normalization",
    "load_card",
    "load_model",
    "preprocess",
    "save_model",
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
