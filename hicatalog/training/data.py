"""Training data: which rows each task uses, the train/validation split, and the Ray Data
pipeline that decodes cutouts for Ray Train.

Samples first (the paper's design, :mod:`hicatalog.samples`): only rows whose ``dataset`` is
one of the training samples (default: ``a40A`` + ``a40B`` on real labels, ``alfalfa`` on the
mock) are regression / gas-class targets and PR detections; only rows of the ``negatives``
samples (default ``nondetections``) are PR non-detections. Rows with ``upper_limit`` true are
never targets and never negatives unless ``upper_limits_as_negatives``. Shards without a
``dataset`` column have no samples: every row is eligible (a warning says so), and naming
samples is an error.

Then per task (paper Sections 4, 5.2, 8.1):

- ``regression``: rows with a finite ``m_true`` that are detections (``detected`` True, when
  that column exists); target M in dex. With ``likelihood="censored"`` also the upper-limit
  rows of the training samples with a finite ``m_true`` (the limit, dex), marked ``censored``:
  the censored (Tobit) likelihood takes the probability that M lies below them.
- ``pr``: detections (class 1) against an equal number of non-detections (class 0), the
  larger class downsampled at random with the run's seed.
- ``gasclass``: among detections, gas-poor ``m_true < -0.5`` (class 0) against gas-rich
  ``m_true > 0.5`` (class 1).

A set that is too small or degenerate is refused with an
:class:`~hicatalog.errors.InputError` of one line (fewer than ``min_rows`` rows, a class with
fewer than ``min_class_rows``, a target with no spread, a requested sample absent from the
shards: the message lists the samples present); shards without a column the task needs, with
repeated ids or a column only some of them have raise a :class:`~hicatalog.errors.SchemaError`.

Split: a seeded random ``val_fraction``, or the rows whose ``split_by`` value lies in the
quantile range ``[lo, hi)`` of that column (``hi = 1`` includes the maximum) form the
validation set (paper Section 7: ``--split-by one_plus_delta5 --val-quantiles 0.8 1.0``).

Labels and split are decided on the driver from the (small) label columns; images are read
and decoded by Ray Data tasks (:func:`decode_rows`), which keep only the selected rows, drop
undecodable ones and count them by status.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hicatalog import storage
from hicatalog.cutouts.decode import decode_batch
from hicatalog.errors import ConfigError, InputError, SchemaError
from hicatalog.samples import (
    ALFALFA_LIMIT_SAMPLES,
    SAMPLE_COLUMN,
    UPPER_LIMIT_COLUMN,
    default_negatives,
    default_train_samples,
    describe_counts,
)
from hicatalog.tasks import POSITIVE_CLASS, TASK_CLASSES

__all__ = [
    "TASK_LABEL_COLUMNS",
    "GAS_POOR_MAX",
    "GAS_RICH_MIN",
    "NO_SAMPLE",
    "Selection",
    "select_rows",
    "decode_rows",
]

log = logging.getLogger("hicatalog.training.data")

#: Columns each task needs (``detected`` is optional for regression and gasclass).
TASK_LABEL_COLUMNS = {"regression": ("m_true",), "pr": ("detected",), "gasclass": ("m_true",)}
#: Gas-class boundaries (paper Section 8.1), in dex.
GAS_POOR_MAX = -0.5
GAS_RICH_MIN = 0.5
#: Key of ``sample_counts`` for rows of shards without a ``dataset`` column.
NO_SAMPLE = "(no dataset column)"


@dataclass
class Selection:
    """Rows chosen for a task: ``table`` has ``object_id`` (string), ``target`` (float32 M
    for regression, int64 class otherwise) and ``is_val`` (bool), one row per used galaxy.

    ``summary``: ``n_rows``, ``n_selected``, ``n_train``, ``n_val``, ``split``,
    ``train_samples`` / ``negatives`` (lists, or ``None`` for shards without samples),
    ``upper_limits_as_negatives``, ``samples_present`` (rows per sample in the shards),
    ``sample_counts`` (selected rows per sample and class: ``{"a40A": {"detection": 700}}``;
    regression counts under ``"rows"``), ``n_upper_limits_excluded``, and for classifiers
    ``n_class1``.
    """

    table: pa.Table
    task: str
    summary: dict[str, Any]

    @property
    def n_train(self) -> int:
        return int(self.table.num_rows - pc.sum(self.table["is_val"]).as_py())

    @property
    def n_val(self) -> int:
        return int(pc.sum(self.table["is_val"]).as_py() or 0)


def _shard_columns(files: list[str]) -> dict[str, set[str]]:
    return {f: set(storage.read_parquet_schema(f).names) for f in files}


def _optional_column(cols_by_file: dict[str, set[str]], name: str) -> bool:
    """Whether every shard has column ``name``; SchemaError when only some do."""
    have = [f for f, cols in cols_by_file.items() if name in cols]
    if have and len(have) < len(cols_by_file):
        lacking = sorted(set(cols_by_file) - set(have))
        raise SchemaError(
            f"{len(lacking)} of {len(cols_by_file)} shards have no {name!r} column (e.g. "
            f"{lacking[0]}); every shard needs it or none"
        )
    return bool(have)


def _resolve_samples(
    task: str,
    present: dict[str, int],
    train_samples: Sequence[str] | None,
    negatives: Sequence[str] | None,
) -> tuple[list[str], list[str]]:
    """The training and negative samples; InputError naming the samples present when one
    asked for is absent (of the default training samples, one present is enough)."""
    if train_samples is None:
        default = default_train_samples(present)
        train = [s for s in default if present.get(s)]
        if not train:
            raise InputError(
                f"none of the default training samples {list(default)} is in the shards; samples "
                f"present: {describe_counts(present)} (choose with train_samples)",
                params=("train_samples",))
        if len(train) < len(default):
            log.info("training samples %s (%s absent from the shards)", train,
                     [s for s in default if s not in train])
    else:
        train = list(train_samples)
    neg = list(negatives) if negatives is not None else list(default_negatives(present))
    asked = [("training", s) for s in (train if train_samples is not None else [])]
    if task == "pr":
        asked += [("negative", s) for s in neg]
    for role, s in asked:
        if not present.get(s):
            raise InputError(
                f"{role} sample {s!r} is not in the shards; samples present: "
                f"{describe_counts(present)}",
                params=("train_samples" if role == "training" else "negatives",))
    return train, neg


def _count_by(samples: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, int]]:
    """Rows per sample and class: ``{"a40A": {"detection": 700}}``, both levels sorted."""
    pairs = Counter(zip(samples.tolist(), labels.tolist(), strict=True))
    out: dict[str, dict[str, int]] = {}
    for (s, lab), n in sorted(pairs.items()):
        out.setdefault(s, {})[lab] = n
    return out


@dataclass(frozen=True)
class _Labels:
    """The label columns of every shard (one entry per row, all shards in order) and which
    rows the samples make eligible: ``in_train`` (training samples: regression / gasclass
    targets, PR detections), ``in_neg`` (PR negative samples), ``limit`` (upper limits),
    ``detected`` (True for every row of shards without the column)."""

    table: pa.Table
    ids: np.ndarray
    sample: np.ndarray
    present: dict[str, int]
    train: list[str] | None
    neg: list[str] | None
    in_train: np.ndarray
    in_neg: np.ndarray
    limit: np.ndarray
    detected: np.ndarray

    @property
    def n_rows(self) -> int:
        return self.table.num_rows

    @property
    def train_label(self) -> str:
        return "+".join(self.train) if self.train else "every row"

    def col(self, name: str, fill: float | bool | str) -> np.ndarray:
        return self.table[name].fill_null(fill).to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class _TaskRows:
    """A task's rows before the split: ``keep`` (bool per row), ``target`` (per row: float32 M
    or int64 class), the upper-limit rows of the eligible samples it left out and, for the
    censored regression, ``censored`` (bool per row: the target is an upper limit)."""

    keep: np.ndarray
    target: np.ndarray
    n_excluded_limits: int
    censored: np.ndarray | None = None


def _read_task_labels(files: list[str], task: str, split_by: str | None) -> tuple[pa.Table, bool, bool, bool]:
    """The columns ``task`` needs (SchemaError naming a shard without one), plus ``detected``,
    ``dataset`` and ``upper_limit`` where every shard has them: ``(labels, has_detected,
    has_samples, has_limits)``; SchemaError when object ids repeat."""
    cols_by_file = _shard_columns(files)
    needed = list(TASK_LABEL_COLUMNS[task]) + ([split_by] if split_by else [])
    for f, cols in cols_by_file.items():
        for c in needed:
            if c not in cols:
                what = "split column (split_by)" if c == split_by else f"label column for task {task!r}"
                raise SchemaError(f"{f}: has no column {c!r}, the {what}; columns: {sorted(cols)}",
                                  params=("split_by",) if c == split_by else ())
    has_detected = all("detected" in cols for cols in cols_by_file.values())
    has_samples = _optional_column(cols_by_file, SAMPLE_COLUMN)
    has_limits = _optional_column(cols_by_file, UPPER_LIMIT_COLUMN)
    extra = (["detected"] if has_detected else []) + ([SAMPLE_COLUMN] if has_samples else []) + (
        [UPPER_LIMIT_COLUMN] if has_limits else [])
    labels = storage.read_parquet(files, ["object_id", *dict.fromkeys([*needed, *extra])])
    ids = labels["object_id"].to_numpy(zero_copy_only=False)
    if len(np.unique(ids)) != len(ids):
        raise SchemaError("object_id values repeat across the given shards (expected unique ids)")
    return labels, has_detected, has_samples, has_limits


def _eligible(labels: pa.Table, has_detected: bool, has_samples: bool, has_limits: bool, *,
              task: str, train_samples: Sequence[str] | None,
              negatives: Sequence[str] | None) -> _Labels:
    """Which rows the samples make eligible (every row, with a warning, for shards without a
    ``dataset`` column, where naming samples is an InputError)."""
    n_rows = labels.num_rows

    def col(name: str, fill: float | bool | str) -> np.ndarray:
        return labels[name].fill_null(fill).to_numpy(zero_copy_only=False)

    if has_samples:
        sample = col(SAMPLE_COLUMN, "").astype(str)
        present = dict(sorted(Counter(s for s in sample.tolist() if s).items()))
        train, neg = _resolve_samples(task, present, train_samples, negatives)
        in_train, in_neg = np.isin(sample, train), np.isin(sample, neg)
    else:
        if train_samples is not None or negatives is not None:
            raise InputError(
                "the shards have no 'dataset' column, so train_samples / negatives cannot "
                "select samples; drop them to train on every row",
                params=("train_samples", "negatives"))
        log.warning("the shards have no 'dataset' column: every row is eligible (no sample selection)")
        sample = np.full(n_rows, NO_SAMPLE, dtype=object).astype(str)
        present, train, neg = {NO_SAMPLE: n_rows}, None, None
        in_train = in_neg = np.ones(n_rows, bool)
    return _Labels(
        table=labels, ids=labels["object_id"].to_numpy(zero_copy_only=False), sample=sample,
        present=present, train=train, neg=neg, in_train=in_train, in_neg=in_neg,
        limit=col(UPPER_LIMIT_COLUMN, False).astype(bool) if has_limits else np.zeros(n_rows, bool),
        detected=col("detected", False).astype(bool) if has_detected else np.ones(n_rows, bool),
    )


def _measured(lab: _Labels) -> tuple[np.ndarray, np.ndarray, int]:
    """``(M, measured, upper limits left out)``: the rows of the training samples with a
    measured M (detections with a finite ``m_true``, never upper limits)."""
    m = lab.col("m_true", np.nan).astype(np.float64)
    measured = lab.in_train & np.isfinite(m) & lab.detected & ~lab.limit
    return m, measured, int((lab.in_train & lab.limit).sum())


def _regression_rows(lab: _Labels, rng: np.random.Generator, *, min_rows: int,
                     min_class_rows: int, likelihood: str = "detections", **_: Any) -> _TaskRows:
    """Regression (paper Section 4): every measured row, target M (dex); with ``likelihood``
    ``"censored"`` also the upper limits of the training samples. InputError for fewer than
    ``min_rows`` measured rows or no spread, and (censored) fewer than ``min_class_rows``
    limits."""
    m, keep, n_excluded = _measured(lab)
    if likelihood == "censored":
        limits = lab.in_train & lab.limit & np.isfinite(m)
        if limits.sum() < min_class_rows:
            raise InputError(
                f"regression with likelihood 'censored': {int(limits.sum())} upper limits with a "
                f"finite m_true in samples {lab.train_label}, fewer than min_class_rows="
                f"{min_class_rows} (and {int(keep.sum())} detections); samples present: "
                f"{describe_counts(lab.present)}", params=("likelihood",))
        if keep.sum() < min_rows:
            raise InputError(
                f"regression with likelihood 'censored': {int(keep.sum())} detections with a "
                f"finite m_true in samples {lab.train_label}, fewer than min_rows={min_rows} "
                f"(and {int(limits.sum())} upper limits)", params=("likelihood",))
        return _TaskRows(keep | limits, m.astype(np.float32), 0, censored=limits)
    if keep.sum() < min_rows:
        raise InputError(
            f"regression: {int(keep.sum())} usable rows (detections with a finite m_true, not "
            f"upper limits) in samples {lab.train_label}, fewer than min_rows={min_rows}; samples "
            f"present: {describe_counts(lab.present)}"
        )
    if not float(np.std(m[keep])) > 0.0:
        raise InputError(
            f"regression: m_true has zero variance over the {int(keep.sum())} selected rows "
            f"(all {float(m[keep][0]):.4g} dex): there is nothing to learn"
        )
    return _TaskRows(keep, m.astype(np.float32), n_excluded)


def _gasclass_rows(lab: _Labels, rng: np.random.Generator, *, min_class_rows: int, **_: Any) -> _TaskRows:
    """Gas classes (paper Section 8.1): measured rows below :data:`GAS_POOR_MAX` (class 0) and
    above :data:`GAS_RICH_MIN` (class 1); InputError for a class under ``min_class_rows``."""
    m, measured, n_excluded = _measured(lab)
    poor, rich = measured & (m < GAS_POOR_MAX), measured & (m > GAS_RICH_MIN)
    if min(int(poor.sum()), int(rich.sum())) < min_class_rows:
        raise InputError(
            f"gasclass needs gas-poor (m_true < {GAS_POOR_MAX}) and gas-rich (m_true > "
            f"{GAS_RICH_MIN}) detections, at least min_class_rows={min_class_rows} of each; "
            f"found {int(poor.sum())} and {int(rich.sum())} in samples {lab.train_label}"
        )
    return _TaskRows(poor | rich, rich.astype(np.int64), n_excluded)


def _pr_rows(lab: _Labels, rng: np.random.Generator, *, min_class_rows: int,
             upper_limits_as_negatives: bool, **_: Any) -> _TaskRows:
    """PR (paper Section 5.2): detections of the training samples (class 1) against as many
    non-detections of the negative samples (class 0), the larger class downsampled with
    ``rng``; upper limits are negatives only with ``upper_limits_as_negatives``."""
    valid = lab.table["detected"].is_valid().to_numpy(zero_copy_only=False)
    detected, limit = lab.detected, lab.limit
    pos = np.flatnonzero(valid & detected & lab.in_train & ~limit)
    alfalfa_limit = np.isin(lab.sample, ALFALFA_LIMIT_SAMPLES)
    neg_ok = ~limit | alfalfa_limit if not upper_limits_as_negatives else np.ones(lab.n_rows, bool)
    neg_rows = np.flatnonzero(valid & ~detected & lab.in_neg & neg_ok)
    n_excluded = int((valid & ~detected & lab.in_neg & ~neg_ok).sum())
    if min(len(pos), len(neg_rows)) < min_class_rows:
        hint = (f"; {n_excluded} upper-limit rows of the negative samples are not used "
                "(upper_limits_as_negatives uses them)") if n_excluded else ""
        which = "one class" if min(len(pos), len(neg_rows)) == 0 else "too few rows of a class"
        raise InputError(
            f"pr has {which}: {len(pos)} detections in samples {lab.train_label} and "
            f"{len(neg_rows)} non-detections in samples {'+'.join(lab.neg) if lab.neg else 'every row'}"
            f"; need at least min_class_rows={min_class_rows} of each{hint}; samples present: "
            f"{describe_counts(lab.present)}", params=("upper_limits_as_negatives",) if n_excluded else ())
    n_each = min(len(pos), len(neg_rows))
    keep = np.zeros(lab.n_rows, bool)
    keep[rng.choice(pos, n_each, replace=False)] = True
    keep[rng.choice(neg_rows, n_each, replace=False)] = True
    return _TaskRows(keep, detected.astype(np.int64), n_excluded)


#: Each task's row selection (module doc); every one takes the eligible labels, the run's RNG
#: and the keyword options of :func:`select_rows`.
_TASK_ROWS: dict[str, Callable[..., _TaskRows]] = {
    "regression": _regression_rows, "gasclass": _gasclass_rows, "pr": _pr_rows,
}


def _split(lab: _Labels, idx: np.ndarray, rng: np.random.Generator, *, seed: int,
           val_fraction: float, split_by: str | None,
           val_quantiles: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The validation flags of the selected rows ``idx``: ``(idx, is_val, summary)``; with
    ``split_by``, rows without a value of that column are dropped from ``idx``."""
    if split_by is None:
        is_val = np.zeros(len(idx), bool)
        is_val[rng.permutation(len(idx))[:int(round(val_fraction * len(idx)))]] = True
        return idx, is_val, {"split": f"random {val_fraction:.2f} (seed {seed})"}
    lo, hi = val_quantiles if val_quantiles is not None else (1.0 - val_fraction, 1.0)
    split_type = lab.table[split_by].type
    if not (pa.types.is_integer(split_type) or pa.types.is_floating(split_type)):
        raise InputError(
            f"split column {split_by!r} must be numeric to take quantiles of, got {split_type}",
            params=("split_by",))
    v = lab.col(split_by, np.nan).astype(np.float64)[idx]
    finite = np.isfinite(v)
    if not finite.all():
        log.warning("%d selected rows have no %s value and are not used", int((~finite).sum()), split_by)
        idx, v = idx[finite], v[finite]
    if len(idx) == 0:
        raise InputError(f"no selected row has a value of split column {split_by!r}",
                         params=("split_by",))
    q_lo, q_hi = np.quantile(v, [lo, hi])
    is_val = (v >= q_lo) & ((v < q_hi) if hi < 1.0 else (v <= q_hi))
    return idx, is_val, {"split": f"{split_by} quantiles [{lo}, {hi}) = [{q_lo:.4g}, {q_hi:.4g}]",
                         "split_values": [float(q_lo), float(q_hi)]}


def _class_names(task: str, target: np.ndarray, censored: np.ndarray | None) -> np.ndarray:
    """Each selected row's class name for ``sample_counts`` (regression: ``rows``, and
    ``upper_limits`` for the ``censored`` ones)."""
    if task == "regression":
        return np.where(censored, "upper_limits", "rows") if censored is not None else (
            np.full(len(target), "rows", dtype=object))
    positive = POSITIVE_CLASS[task]
    negative = next(c for c in TASK_CLASSES[task] if c != positive)
    return np.where(target == 1, positive, negative)


def select_rows(
    files: list[str],
    task: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    split_by: str | None = None,
    val_quantiles: tuple[float, float] | None = None,
    train_samples: Sequence[str] | None = None,
    negatives: Sequence[str] | None = None,
    upper_limits_as_negatives: bool = False,
    min_rows: int = 2,
    min_class_rows: int = 1,
    likelihood: str = "detections",
) -> Selection:
    """Choose the rows, targets and validation flags of a training run (see module doc).

    ``train_samples`` / ``negatives``: values of the shards' ``dataset`` column (``None``: the
    paper's design, :mod:`hicatalog.samples`); ``min_rows`` / ``min_class_rows``: the smallest
    selected set (training + validation) and, for classifiers, the smallest class accepted
    (for the censored regression, the fewest upper limits); ``likelihood``: the regression's,
    ``"detections"`` (measured values only) or ``"censored"`` (values and upper limits; the
    selection's table then has a ``censored`` column).

    Steps: read the task's label columns, mark the rows the samples make eligible, the task's
    rows and targets (one function per task), the split, the summary.

    Raises
    ------
    ConfigError: an unknown task.
    SchemaError (one line): a needed label or split column is missing from a shard (naming the
        shard), a column only some shards have, repeated ids.
    InputError (one line): a requested sample is absent (naming the samples present, with
        counts); samples named for shards without a ``dataset`` column; fewer than
        ``min_rows`` rows, a class with fewer than ``min_class_rows``, a regression target with
        zero variance; an empty train or validation set.
    """
    if task not in TASK_LABEL_COLUMNS:
        raise ConfigError(f"task must be one of {', '.join(TASK_LABEL_COLUMNS)}, got {task!r}",
                          params=("task",))
    lab = _eligible(*_read_task_labels(files, task, split_by), task=task,
                    train_samples=train_samples, negatives=negatives)
    rng = np.random.default_rng(seed)
    rows = _TASK_ROWS[task](lab, rng, min_rows=min_rows, min_class_rows=min_class_rows,
                            upper_limits_as_negatives=upper_limits_as_negatives,
                            likelihood=likelihood)
    idx = np.flatnonzero(rows.keep)
    if len(idx) < min_rows:
        raise InputError(
            f"{task}: {len(idx)} rows selected (samples {lab.train_label}), fewer than "
            f"min_rows={min_rows}; samples present: {describe_counts(lab.present)}"
        )
    summary: dict[str, Any] = {
        "n_rows": int(lab.n_rows), "n_selected": int(len(idx)),
        "train_samples": lab.train, "negatives": lab.neg if task == "pr" else None,
        "upper_limits_as_negatives": bool(upper_limits_as_negatives) if task == "pr" else False,
        "samples_present": lab.present,
        "n_upper_limits_excluded": rows.n_excluded_limits,
    }
    idx, is_val, split = _split(lab, idx, rng, seed=seed, val_fraction=val_fraction,
                                split_by=split_by, val_quantiles=val_quantiles)
    summary.update(split)
    n_val = int(is_val.sum())
    if n_val == 0 or n_val == len(idx):
        raise InputError(
            f"split leaves {len(idx) - n_val} training and {n_val} validation rows; both must be "
            "> 0 (change val_fraction or val_quantiles)", params=("val_fraction", "val_quantiles"))
    target = rows.target[idx]
    summary.update(n_train=int(len(idx) - n_val), n_val=n_val,
                   sample_counts=_count_by(lab.sample[idx], _class_names(task, target, None if rows.censored is None else rows.censored[idx])))
    if task != "regression":
        summary["n_class1"] = int(target.sum())
    return Selection(_selection_table(lab, rows, idx, is_val, summary), task, summary)


def _selection_table(lab: _Labels, rows: _TaskRows, idx: np.ndarray, is_val: np.ndarray,
                     summary: dict[str, Any]) -> pa.Table:
    """The selected rows' ``object_id``, ``target``, ``is_val`` and, for the censored
    regression, ``censored`` (whose counts go into ``summary``)."""
    columns = {"object_id": pa.array(lab.ids[idx], pa.string()),
               "target": pa.array(rows.target[idx]), "is_val": pa.array(is_val)}
    if rows.censored is not None:
        censored = rows.censored[idx]
        columns["censored"] = pa.array(censored)
        summary.update(likelihood="censored", n_upper_limits=int(censored.sum()),
                       n_val_upper_limits=int((censored & is_val).sum()))
    return pa.table(columns)


def decode_rows(
    batch: pa.Table,
    selection: pa.Table,
    want_val: bool | None,
    cutout_size: int | None,
    image_size: int,
) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` function: keep the batch's rows chosen for this split
    (``want_val`` True: validation, False: training, None: both, with an ``is_val`` column),
    decode their JPEGs and drop the undecodable ones.

    ``batch``: Arrow table with ``object_id`` and ``image``. Returns ``{"image": uint8 (n, 3,
    image_size, image_size), "target": (n,)}`` (a censored regression's ``selection`` has a
    ``censored`` column: ``"target"`` is then float32 ``(n, 2)``, the value or limit and 1.0
    for a limit, see :func:`hicatalog.training.metrics.split_target`); dropped rows are counted
    by status in a log line (Ray forwards worker logs to the driver).
    """
    pos = pc.index_in(batch["object_id"], value_set=selection["object_id"])
    pos_np = pos.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = np.flatnonzero(pos_np >= 0)
    sel_idx = pos_np[rows]
    is_val = selection["is_val"].to_numpy(zero_copy_only=False)[sel_idx]
    if want_val is not None:
        rows, sel_idx, is_val = (a[is_val == want_val] for a in (rows, sel_idx, is_val))
    images = batch["image"].take(pa.array(rows, pa.int64())).to_pylist()
    decoded = decode_batch(images, expected_size=cutout_size, out_size=image_size)
    target = selection["target"].to_numpy(zero_copy_only=False)[sel_idx]
    if "censored" in selection.column_names:
        censored = selection["censored"].to_numpy(zero_copy_only=False)[sel_idx]
        target = np.stack([target, censored], axis=1).astype(np.float32)
    bad = ~decoded.ok
    if bad.any():
        counts = Counter(s for s, ok in zip(decoded.status, decoded.ok, strict=True) if not ok)
        log.warning("dropped %d undecodable cutouts of %d: %s", int(bad.sum()), len(rows), dict(counts))
    out = {"image": decoded.images[decoded.ok], "target": target[decoded.ok]}
    if want_val is None:
        out["is_val"] = is_val[decoded.ok]
    return out
