"""The galaxy samples and the paper's design: which samples train, which are PR negatives,
which are test samples, and how the evaluation groups and names them.

Every cutout, labels or truth table names its galaxy's sample in the ``dataset`` column
(string): the mock writes ``alfalfa``, ``nondetections``, ``xgass``; the real labels
(:mod:`hicatalog.surveys.labels`) ``a40A``, ``a40B``, ``a100``, ``nibles``, ``xgass``,
``nondetections``. ``upper_limit`` (bool) marks rows whose ``log_mhi`` and ``m_true`` are upper
limits (xGASS non-detections).

The paper's design (Wu 2020, Sections 2-5): the regression (and the gas-class network) trains
on a.40A, which is ``a40A`` + ``a40B`` in our labels (a.40B is a subset of a.40A); the PR network
on a.40A detections against an equal number of ALFALFA non-detections (``nondetections``);
a.100, NIBLES and xGASS are test samples. On the mock the ALFALFA-like detections
(``alfalfa``) play a.40A. Upper limits are never regression targets and never PR negatives
unless asked (the censored regression, ``likelihood="censored"``, trains on them).

The mock's magnitude-limited survey (``survey``: a random draw of the optical sample,
detections and non-detections at their natural rate, non-detections with an ALFALFA upper
limit) is one sample that is both: shards that hold it and not ``alfalfa`` train on
``survey`` and take the PR negatives from it. The evaluation reports it as two groups,
``survey detections`` and ``survey non-detections``, by its ``detected`` flag
(:data:`SPLIT_BY_DETECTION`).

This module is the one home of those rules: training (:mod:`hicatalog.training.data`) and
evaluation (:mod:`hicatalog.evaluation.catalog`) both call it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from hicatalog.errors import ConfigError

__all__ = [
    "SAMPLE_COLUMN",
    "UPPER_LIMIT_COLUMN",
    "MOCK_TRAIN_SAMPLES",
    "REAL_TRAIN_SAMPLES",
    "DEFAULT_NEGATIVES",
    "SURVEY_SAMPLE",
    "ALFALFA_LIMIT_SAMPLES",
    "default_negatives",
    "REPORT_ORDER",
    "SPLIT_BY_DETECTION",
    "default_train_samples",
    "report_group",
    "report_label",
    "order_groups",
    "describe_counts",
]

#: Column naming a row's sample (string).
SAMPLE_COLUMN = "dataset"
#: Column marking a row whose ``log_mhi`` / ``m_true`` is an upper limit (bool).
UPPER_LIMIT_COLUMN = "upper_limit"
#: The mock's training sample (it plays the paper's a.40A).
MOCK_TRAIN_SAMPLES: tuple[str, ...] = ("alfalfa",)
#: The mock's magnitude-limited survey sample (detections and upper limits at the survey's rate).
SURVEY_SAMPLE = "survey"
#: Samples whose upper limits are ALFALFA's own (from its completeness limit, for galaxies it
#: did not detect): their rows are PR negatives with or without ``upper_limits_as_negatives``,
#: which is about limits of other surveys (xGASS's deeper ones).
ALFALFA_LIMIT_SAMPLES: tuple[str, ...] = ("nondetections", SURVEY_SAMPLE)
#: The paper's a.40A in our labels: a40A and its subset a40B.
REAL_TRAIN_SAMPLES: tuple[str, ...] = ("a40A", "a40B")
#: Samples that only real labels use: their presence means the real vocabulary.
_REAL_ONLY = ("a40A", "a40B", "a100", "nibles")
#: The PR network's negative class (paper Section 5.2: ALFALFA non-detections).
DEFAULT_NEGATIVES: tuple[str, ...] = ("nondetections",)

#: Evaluation groups: a40A and a40B are reported together as the paper's a.40A.
_GROUPS = {"a40A": "a.40A", "a40B": "a.40A"}
#: Samples drawn regardless of detection (a magnitude-limited survey): the evaluation reports
#: their detections and non-detections as two groups (:func:`report_group`).
SPLIT_BY_DETECTION: tuple[str, ...] = (SURVEY_SAMPLE, "survey_deep")
#: Display order of the evaluation groups (mock, then the paper's Table 2 order).
REPORT_ORDER: tuple[str, ...] = ("alfalfa", "survey detections", "survey non-detections", "a.40A",
                                 "a100", "nibles", "xgass", "nondetections")
#: Names printed in tables (the paper's); groups not listed print as they are.
_LABELS = {"a100": "a.100", "nibles": "NIBLES", "xgass": "xGASS"}


def default_train_samples(present: Collection[str]) -> tuple[str, ...]:
    """The paper's training samples for shards holding the samples ``present``: ``alfalfa``
    on the mock, ``a40A`` + ``a40B`` on real labels; ``survey`` for shards of the mock's
    magnitude-limited survey alone.

    Raises ConfigError (a ValueError) when the names are of both vocabularies (e.g. ``alfalfa`` and ``a100``)
    or of neither (say which were found; pass the samples explicitly then).
    """
    mock = "alfalfa" in present
    real = any(s in present for s in _REAL_ONLY)
    if SURVEY_SAMPLE in present and not mock and not real:
        return (SURVEY_SAMPLE,)
    if mock and real:
        raise ConfigError(
            f"the shards mix mock ('alfalfa') and real ({sorted(s for s in present if s in _REAL_ONLY)}) "
            "sample names; say which samples to train on (train_samples)",
            params=("train_samples",))
    if mock:
        return MOCK_TRAIN_SAMPLES
    if real:
        return REAL_TRAIN_SAMPLES
    raise ConfigError(
        f"cannot tell the training samples from the samples present ({sorted(present)}): neither "
        f"the mock's {list(MOCK_TRAIN_SAMPLES)} nor the paper's {list(REAL_TRAIN_SAMPLES)}; "
        "say which samples to train on (train_samples)", params=("train_samples",))


def default_negatives(present: Collection[str]) -> tuple[str, ...]:
    """The PR network's negative samples for shards holding the samples ``present``:
    :data:`DEFAULT_NEGATIVES`, or ``survey`` for shards of the mock's survey without them."""
    if SURVEY_SAMPLE in present and not any(s in present for s in DEFAULT_NEGATIVES):
        return (SURVEY_SAMPLE,)
    return DEFAULT_NEGATIVES


def report_group(sample: str, detected: bool | None = None) -> str:
    """The evaluation group of a sample: ``a40A`` and ``a40B`` -> ``a.40A``; a sample of
    :data:`SPLIT_BY_DETECTION` with a known ``detected`` -> ``survey detections`` / ``survey
    non-detections``; others unchanged."""
    if sample in SPLIT_BY_DETECTION and detected is not None:
        return f"{sample} {'detections' if detected else 'non-detections'}"
    return _GROUPS.get(sample, sample)


def report_label(group: str) -> str:
    """The printed name of an evaluation group (``a100`` -> ``a.100``, ``xgass`` -> ``xGASS``)."""
    return _LABELS.get(group, group)


def order_groups(names: Collection[str]) -> list[str]:
    """Sort group names: known ones in :data:`REPORT_ORDER`, then the rest by name."""
    known = [g for g in REPORT_ORDER if g in names]
    return known + sorted(n for n in names if n not in REPORT_ORDER)


def describe_counts(counts: Mapping[str, int]) -> str:
    """``"a100: 12, xgass: 8"``: rows per sample, for error messages."""
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no rows"
