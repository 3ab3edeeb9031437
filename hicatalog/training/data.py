"""Training data: which rows each task uses, the train/validation split, and the Ray Data
pipeline that decodes cutouts for Ray Train.

Row selection (paper Sections 4, 5.2, 8.1):

- ``regression``: rows with a finite ``m_true`` that are ALFALFA detections (``detected``
  True, when that column exists); target M in dex.
- ``pr``: detections (class 1) against an equal number of non-detections (class 0), the
  larger class downsampled at random with the run's seed.
- ``gasclass``: among detections, gas-poor ``m_true < -0.5`` (class 0) against gas-rich
  ``m_true > 0.5`` (class 1).

Split: a seeded random ``val_fraction``, or the rows whose ``split_by`` value lies in the
quantile range ``[lo, hi)`` of that column (``hi = 1`` includes the maximum) form the
validation set (paper Section 7: ``--split-by one_plus_delta5 --val-quantiles 0.8 1.0``).

Labels and split are decided on the driver from the (small) label columns; images are read
and decoded by Ray Data tasks (:func:`decode_rows`), which drop undecodable rows and count
them by status.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from hicatalog.cutouts.decode import decode_batch
from hicatalog.storage import filesystem_and_path

__all__ = [
    "TASK_LABEL_COLUMNS",
    "GAS_POOR_MAX",
    "GAS_RICH_MIN",
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


@dataclass
class Selection:
    """Rows chosen for a task: ``table`` has ``object_id`` (string), ``target`` (float32 M
    for regression, int64 class otherwise) and ``is_val`` (bool), one row per used galaxy."""

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
    out = {}
    for f in files:
        fs, path = filesystem_and_path(f)
        with fs.open_input_file(path) as fh:
            out[f] = set(pq.read_schema(fh).names)
    return out


def _read_labels(files: list[str], columns: list[str]) -> pa.Table:
    fs, _ = filesystem_and_path(files[0])
    paths = [filesystem_and_path(f)[1] for f in files]
    return pads.dataset(paths, format="parquet", filesystem=fs).to_table(columns=columns)


def select_rows(
    files: list[str],
    task: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    split_by: str | None = None,
    val_quantiles: tuple[float, float] | None = None,
) -> Selection:
    """Choose the rows, targets and validation flags of a training run (see module doc).

    Raises
    ------
    ValueError: a needed label or split column is missing from a shard (naming the shard), an
        empty selection, a class with no rows, or an empty train or validation set.
    """
    if task not in TASK_LABEL_COLUMNS:
        raise ValueError(f"task must be one of {sorted(TASK_LABEL_COLUMNS)}, got {task!r}")
    cols_by_file = _shard_columns(files)
    needed = list(TASK_LABEL_COLUMNS[task]) + ([split_by] if split_by else [])
    for f, cols in cols_by_file.items():
        for c in needed:
            if c not in cols:
                what = "split column (--split-by)" if c == split_by else f"label column for task {task!r}"
                raise ValueError(f"{f}: has no column {c!r}, the {what}; columns: {sorted(cols)}")
    has_detected = all("detected" in cols for cols in cols_by_file.values())
    columns = ["object_id", *dict.fromkeys([*needed, *(["detected"] if has_detected else [])])]
    labels = _read_labels(files, columns)
    n_rows = labels.num_rows
    ids = labels["object_id"].to_numpy(zero_copy_only=False)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("object_id values repeat across the given shards (expected unique ids)")

    def col(name: str, fill: float | bool) -> np.ndarray:
        return labels[name].fill_null(fill).to_numpy(zero_copy_only=False)

    detected = col("detected", False).astype(bool) if has_detected else np.ones(n_rows, bool)
    rng = np.random.default_rng(seed)
    if task == "regression":
        m = col("m_true", np.nan).astype(np.float64)
        keep = np.isfinite(m) & detected
        target = m.astype(np.float32)
    elif task == "gasclass":
        m = col("m_true", np.nan).astype(np.float64)
        poor, rich = np.isfinite(m) & (m < GAS_POOR_MAX) & detected, np.isfinite(m) & (m > GAS_RICH_MIN) & detected
        keep = poor | rich
        target = rich.astype(np.int64)
        if not poor.any() or not rich.any():
            raise ValueError(
                f"gasclass needs gas-poor (m_true < {GAS_POOR_MAX}) and gas-rich (m_true > "
                f"{GAS_RICH_MIN}) detections; found {int(poor.sum())} and {int(rich.sum())}"
            )
    else:  # pr
        valid = labels["detected"].is_valid().to_numpy(zero_copy_only=False)
        pos = np.flatnonzero(valid & detected)
        neg = np.flatnonzero(valid & ~detected)
        if len(pos) == 0 or len(neg) == 0:
            raise ValueError(
                f"pr needs detections and non-detections; found {len(pos)} and {len(neg)}"
            )
        n_each = min(len(pos), len(neg))
        pos, neg = rng.choice(pos, n_each, replace=False), rng.choice(neg, n_each, replace=False)
        keep = np.zeros(n_rows, bool)
        keep[pos] = keep[neg] = True
        target = detected.astype(np.int64)
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        raise ValueError(f"no rows usable for task {task!r} in {len(files)} shard(s)")
    is_val = np.zeros(len(idx), bool)
    summary: dict[str, Any] = {"n_rows": int(n_rows), "n_selected": int(len(idx))}
    if split_by is None:
        n_val = int(round(val_fraction * len(idx)))
        is_val[rng.permutation(len(idx))[:n_val]] = True
        summary["split"] = f"random {val_fraction:.2f} (seed {seed})"
    else:
        lo, hi = val_quantiles if val_quantiles is not None else (1.0 - val_fraction, 1.0)
        split_type = labels[split_by].type
        if not (pa.types.is_integer(split_type) or pa.types.is_floating(split_type)):
            raise ValueError(
                f"split column {split_by!r} must be numeric to take quantiles of, got {split_type}"
            )
        v = col(split_by, np.nan).astype(np.float64)[idx]
        finite = np.isfinite(v)
        if not finite.all():
            log.warning("%d selected rows have no %s value and are not used", int((~finite).sum()), split_by)
            idx, v, is_val = idx[finite], v[finite], is_val[finite]
        if len(idx) == 0:
            raise ValueError(f"no selected row has a value of split column {split_by!r}")
        q_lo, q_hi = np.quantile(v, [lo, hi])
        is_val = (v >= q_lo) & ((v < q_hi) if hi < 1.0 else (v <= q_hi))
        summary["split"] = f"{split_by} quantiles [{lo}, {hi}) = [{q_lo:.4g}, {q_hi:.4g}]"
        summary["split_values"] = [float(q_lo), float(q_hi)]
    table = pa.table(
        {
            "object_id": pa.array(ids[idx], pa.string()),
            "target": pa.array(target[idx]),
            "is_val": pa.array(is_val),
        }
    )
    n_val = int(is_val.sum())
    if n_val == 0 or n_val == len(idx):
        raise ValueError(
            f"split leaves {len(idx) - n_val} training and {n_val} validation rows; both must be > 0"
        )
    summary.update(n_train=int(len(idx) - n_val), n_val=n_val)
    if task != "regression":
        summary["n_class1"] = int(target[idx].sum())
    return Selection(table, task, summary)


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
    image_size, image_size), "target": (n,)}``; dropped rows are counted by status in a log
    line (Ray forwards worker logs to the driver).
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
    bad = ~decoded.ok
    if bad.any():
        counts = Counter(s for s, ok in zip(decoded.status, decoded.ok, strict=True) if not ok)
        log.warning("dropped %d undecodable cutouts of %d: %s", int(bad.sum()), len(rows), dict(counts))
    out = {"image": decoded.images[decoded.ok], "target": target[decoded.ok]}
    if want_val is None:
        out["is_val"] = is_val[decoded.ok]
    return out
