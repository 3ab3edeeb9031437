"""The model card: what a trained network is, stored next to its weights as ``model_card.json``.

The card names the architecture (built from this package by
:func:`~hicatalog.models.registry.build_model`), the task and its class order, the input
geometry, the survey, the pixel normalisation, the training data fingerprint, the
hyperparameters, the final metrics and the code version. Reading and writing the files is
:mod:`hicatalog.models.artifact`.

Output conventions: regression networks output ``(N, 1)`` M = log10(M_HI/M*) in dex with the
``point`` head (trained on the RMSE, the paper's network), ``(N, 2)`` with the ``gaussian``
head (the mean in dex and an unconstrained value that
:func:`hicatalog.models.predict.gaussian_variance` maps to the variance in dex^2; trained on
the Gaussian negative log-likelihood); classifiers (``pr``, ``gasclass``) output ``(N, 2)`` logits in the order of ``card.classes``
(``pr``: ``["nondetection", "detection"]``; ``gasclass``: ``["gas_poor", "gas_rich"]``). The
class a classifier reports is ``card.positive_class`` (``detection``, ``gas_rich``), at output
``card.positive_index``; :func:`hicatalog.models.predict.positive_probability` is the one place
that turns logits into its probability.

A deep ensemble is one card with ``ensemble_size`` K > 1: K networks of the card's
architecture, trained with the seeds ``member_seeds``, whose weights are one ``weights.pt``
(the state of :class:`hicatalog.models.ensemble.Ensemble`). ``calibration`` holds what was
fitted on the validation split after training (``temperature`` of a classifier,
``variance_scale`` of a regression model with an uncertainty):
:mod:`hicatalog.models.predict` applies it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from hicatalog.errors import ModelError
from hicatalog.imaging import SURVEYS
from hicatalog.models.registry import ARCHITECTURES, POSITIVE_CLASS, REGRESSION_HEADS, TASK_CLASSES

__all__ = ["ModelCard"]


@dataclass
class ModelCard:
    """Description of a trained model (stored as ``model_card.json``).

    Each field's docstring says what it holds (``docs/reference/model-card.md`` is made from
    them by :mod:`hicatalog.reference`). Fields added later have defaults, so cards written
    before them still load.

    Raises ValueError on construction when a field is out of range or the outputs do not fit
    the task (regression: 1 output, no classes; classifiers: one output per class, the task's
    positive class among them).
    """

    model_id: str
    """The model's id: ``TASK-HASH`` (an ensemble: ``TASK-HASH-xK``), the hash of the Ray
    run(s) that trained it; a catalog's manifest records it."""
    task: str
    """``regression`` (M), ``pr`` (detection probability, the paper's p_CNN) or ``gasclass``
    (gas-rich probability, the Grad-CAM network)."""
    arch: str
    """The network, a name of :data:`~hicatalog.models.registry.ARCHITECTURES` (``xresnet34``,
    ``shallow``, ...)."""
    width: float
    """Channel width multiplier of the network (1.0: the published architecture)."""
    n_outputs: int
    """Outputs of the network: 1 (regression, ``point`` head), 2 (``gaussian`` head: mean and
    variance), one per class (classifiers)."""
    image_size: int
    """Side of the network input (px); cutouts are resized to it."""
    cutout_size: int | None
    """Side of the stored JPEG cutouts (px) the model was trained from."""
    survey: str
    """The imaging the model was trained on (``sdss`` or ``legacy``): a catalog build
    refuses cutouts of another."""
    normalization: dict[str, list[float]]
    """``{"mean": [C floats], "std": [C floats]}`` per channel, on pixels scaled to 0-1
    (:func:`hicatalog.models.preprocessing.preprocess`)."""
    data_fingerprint: str = ""
    """Digest of the training cutout shards (their names, sizes and row counts)."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    """What the network was trained with: the preset overlaid with the options given
    (``arch``, ``width``, ``image_size``, ``epochs``, ``batch_size``, ``max_lr``,
    ``weight_decay``), the method's constants (label smoothing, Lookahead, ``seed``) and
    ``steps_per_epoch``."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Validation metrics of the final epoch (regression: ``rmse``, ...; classifiers:
    ``accuracy``, ``auc``, ...; an ensemble: of its calibrated prediction, with ``members``),
    ``n_train``, ``n_val``, ``dropped_rows``, ``selection`` and ``resumed_after_epochs``."""
    code_version: str = ""
    """The hicatalog version that trained the model."""
    created: str = ""
    """When the card was written (UTC, ISO 8601)."""
    weights_sha256: str = ""
    """Hex SHA-256 of ``weights.pt``, filled by :func:`hicatalog.models.artifact.save_model`
    and checked when the model is loaded."""
    in_channels: int = 3
    """Input channels (3: the cutouts' RGB)."""
    self_attention: bool = True
    """Whether the xresnet has its self-attention layer."""
    classes: list[str] | None = None
    """The classifier's output order (default ``TASK_CLASSES[task]``: ``pr``:
    ``["nondetection", "detection"]``, ``gasclass``: ``["gas_poor", "gas_rich"]``); ``None``
    for regression."""
    train_samples: list[str] | None = None
    """The samples (values of the cutouts' ``dataset`` column, :mod:`hicatalog.samples`) of
    the regression / gas-class rows and of the PR's detections; ``None`` when the shards had
    no ``dataset`` column."""
    negatives: list[str] | None = None
    """The samples of the PR's non-detections (``None`` for the other tasks)."""
    upper_limits_as_negatives: bool = False
    """Whether H I upper limits were PR non-detections."""
    sample_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """The selected rows (training + validation) per sample and class, e.g. ``{"a40A":
    {"detection": 3000}, "nondetections": {"nondetection": 3000}}`` (regression: ``{"a40A":
    {"rows": 5000}}``)."""
    head: str = "point"
    """Regression: ``point`` (M, trained on the RMSE, the paper's network) or ``gaussian`` (M
    and its variance, trained on the Gaussian negative log-likelihood;
    :data:`~hicatalog.models.registry.REGRESSION_HEADS`); classifiers: ``point``."""
    ensemble_size: int = 1
    """K: networks of a deep ensemble (1: a single network)."""
    member_seeds: list[int] | None = None
    """The K seeds of an ensemble's networks (``None`` for a single network)."""
    calibration: dict[str, Any] = field(default_factory=dict)
    """Fitted on the validation split after training (:mod:`hicatalog.training.calibration`):
    ``{}``, or ``{"method": "temperature", "temperature": T, ...}`` (classifiers) / ``{"method":
    "variance_scale", "variance_scale": s2, "ood_variance": v, ...}`` (regression; ``v``: the
    variance of M over the training rows, dex^2, :func:`hicatalog.models.predict.catalog_error`)."""

    def __post_init__(self) -> None:
        if self.task not in TASK_CLASSES:
            raise ValueError(f"model card task must be one of {sorted(TASK_CLASSES)}, got {self.task!r}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"model card arch must be one of {sorted(ARCHITECTURES)}, got {self.arch!r}")
        if self.survey not in SURVEYS:
            raise ValueError(f"model card survey must be one of {', '.join(SURVEYS)}, got "
                             f"{self.survey!r}")
        norm = self.normalization
        if (
            not isinstance(norm, dict)
            or set(norm) != {"mean", "std"}
            or any(len(norm[k]) != self.in_channels for k in ("mean", "std"))
            or any(float(s) <= 0 for s in norm["std"])
        ):
            raise ValueError(
                "model card normalization must be {'mean': [..], 'std': [..]} with "
                f"{self.in_channels} values each and std > 0, got {norm!r}"
            )
        if self.classes is None:
            self.classes = TASK_CLASSES[self.task]
        if self.task == "regression":
            if self.head not in REGRESSION_HEADS:
                raise ValueError(f"a regression model card's head must be one of "
                                 f"{sorted(REGRESSION_HEADS)}, got {self.head!r}")
            if self.n_outputs != REGRESSION_HEADS[self.head] or self.classes is not None:
                raise ValueError(
                    f"a regression model card with the {self.head!r} head has "
                    f"{REGRESSION_HEADS[self.head]} output(s) and no classes, got "
                    f"n_outputs={self.n_outputs}, classes={self.classes}"
                )
        else:
            if self.head != "point":
                raise ValueError(f"a {self.task!r} model card has the 'point' head, got {self.head!r}")
            positive = POSITIVE_CLASS[self.task]
            if len(self.classes) != self.n_outputs or positive not in self.classes:
                raise ValueError(
                    f"a {self.task!r} model card needs one class per output including "
                    f"{positive!r}, got n_outputs={self.n_outputs}, classes={self.classes}"
                )

        if not isinstance(self.ensemble_size, int) or self.ensemble_size < 1:
            raise ValueError(f"model card ensemble_size must be an integer >= 1, got {self.ensemble_size!r}")
        if self.member_seeds is not None and len(self.member_seeds) != self.ensemble_size:
            raise ValueError(f"model card member_seeds must have ensemble_size={self.ensemble_size} "
                             f"seeds, got {self.member_seeds!r}")
        method = self.calibration.get("method") if isinstance(self.calibration, dict) else None
        expected = "variance_scale" if self.task == "regression" else "temperature"
        if not isinstance(self.calibration, dict) or (self.calibration and (
                method != expected or not float(self.calibration.get(expected, 0)) > 0)):
            raise ValueError(f"model card calibration must be {{}} or {{'method': {expected!r}, "
                             f"{expected!r}: > 0, ...}} for a {self.task!r} card, got {self.calibration!r}")
        if "ood_variance" in self.calibration and not (
                self.task == "regression" and float(self.calibration["ood_variance"]) > 0):
            raise ValueError(f"model card calibration 'ood_variance' must be a variance > 0 (dex^2) "
                             f"of a regression card, got {self.calibration!r} for a {self.task!r} card")

    @property
    def positive_class(self) -> str:
        """The class a classifier reports (``pr``: ``"detection"``, ``gasclass``:
        ``"gas_rich"``); training label 1 is this class. ValueError for regression."""
        if self.task not in POSITIVE_CLASS:
            raise ValueError(f"model {self.model_id!r} (task {self.task!r}) is not a classifier")
        return POSITIVE_CLASS[self.task]

    @property
    def positive_index(self) -> int:
        """Output index of :attr:`positive_class` in the logits (its place in ``classes``)."""
        positive = self.positive_class  # raises for regression, whose classes are None
        return self.classes.index(positive)  # type: ignore[union-attr]

    def to_dict(self) -> dict[str, Any]:
        """The card as plain JSON-able data (what ``model_card.json`` holds)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> ModelCard:
        """Build and validate a card from :meth:`to_dict` data; ValueError naming ``source``."""
        if not isinstance(data, dict):
            raise ModelError(f"{source}: model card must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ModelError(f"{source}: unknown model card keys {unknown}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ModelError(f"{source}: incomplete model card: {exc}") from None
        except ValueError as exc:
            raise ModelError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> ModelCard:
        """Parse a card; a malformed document is a ValueError naming ``source``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source}: model card is not valid JSON: {exc}") from None
        return cls.from_dict(data, source)
