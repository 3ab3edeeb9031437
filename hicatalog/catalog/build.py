"""The catalog build: cutout shards -> both models -> the Parquet H I catalog (Ray Data).

One streaming Ray Data pipeline, memory bounded whatever the input size:

1. **Checks before any work**: the shards exist and carry the ``cutouts`` columns; both models
   load (weights hash checked); the regression card is a regression model and the PR card has a
   ``detection`` class; both cards' ``survey`` equals the cutouts' one survey and their
   ``cutout_size`` the side of the stored JPEGs (:func:`hicatalog.cutouts.shards.probe_cutouts`,
   the rule training applies too).
2. **Pre-pass over the ids** (only ``object_id``, ``ra``, ``dec``, ``z`` are read):
   the first occurrence of an ``object_id`` (shard order, then row order) is predicted, later
   ones get ``status='duplicate_id'``; with ``since_manifest`` the ids the old catalog
   already holds are left out. The environment (:func:`compute_environment`) is computed once
   here for every distinct galaxy, against ``tracers`` or, without it, the cutouts
   themselves.
3. **Pipeline**: ``from_items(shards)`` -> ``map_batches(read+decode)`` (tasks; each reads one
   shard with pyarrow in row batches, so row positions are known, and decodes with Pillow via
   :func:`hicatalog.cutouts.decode.decode_batch`; with ``gpu`` and torchvision the JPEG bytes
   go to the actors, which decode on the GPU) -> ``map_batches(CatalogPredictor)``: ONE actor
   pool holding both models (:mod:`hicatalog.catalog.inference`).
4. **Staging writer** (driver, streaming): rows are collected per input shard; when a shard
   is complete its rows get the environment columns and the HATS index ``_healpix_29`` and are
   written atomically as ``_staging/build=B/part-SSSSS.parquet``; then the shard's ``_done``
   marker is written.
5. **Publish** (:mod:`hicatalog.catalog.publish`): the staged rows of this build (and, with
   ``since_manifest``, of the builds the old catalog's version holds) become a new complete
   HATS version ``version=V``, committed by compare-and-swap of ``_manifest.json``; a build
   that another one committed before rebases onto it; then a vacuum
   (:mod:`hicatalog.catalog.commit`). The layout is described in
   :mod:`hicatalog.catalog.manifest`.

Exactly once: staged names are deterministic per input shard, a shard counts as done only
after its marker exists, and a rerun with the same arguments (same build fingerprint: inputs,
models, tracers, options, code version) reuses the staging directory and skips done shards;
the publish reads exactly the rows the markers count, and checks it wrote as many.

The code reads as the steps above: :func:`make_catalog` (the library's entry, keyword
parameters) calls :func:`plan_build` (checks, the id pre-pass, the fingerprint: a
:class:`CatalogPlan`), chooses the staging directory (:class:`Staging`), plans the rows
(:class:`RowPlan`), computes the environment, runs the pipeline on the shards still to do
(:class:`Work`) and publishes (:func:`hicatalog.catalog.publish.publish_version`).
The command line passes its config's fields to :func:`make_catalog` and prints the result with
:func:`show_result`; :func:`build_catalog` does the same for a caller that holds a config.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import logging
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hicatalog import __version__, storage
from hicatalog.catalog.calibrate import (
    MSTAR_ERR_DEX,
    SURVEY_COLUMNS,
    load_calibration,
    survey_columns,
)
from hicatalog.catalog.collection import MARGIN_ARCSEC
from hicatalog.catalog.commit import GRACE_HOURS, Staging, claim_build, rebase_builds, vacuum
from hicatalog.catalog.environment import compute_environment, read_positions
from hicatalog.catalog.inference import PREDICTION_COLUMNS, CatalogPredictor
from hicatalog.catalog.manifest import (
    DONE_DIR,
    BuildRecord,
    InferenceRecord,
    InputRecord,
    Manifest,
    ModelRecord,
    RowCounts,
    TracersRecord,
    fingerprint,
    staged_counts,
    write_staged_part,
)
from hicatalog.catalog.publish import (
    PARTITION_ROWS,
    ROW_GROUP_ROWS,
    PublishOptions,
    healpix_29,
    publish_version,
)
from hicatalog.catalog.reader import read_catalog
from hicatalog.cutouts.decode import decode_batch
from hicatalog.cutouts.shards import CutoutGeometry, fingerprint_shards, list_shards, probe_cutouts
from hicatalog.errors import ClusterError, ConfigError, ModelError, SchemaError
from hicatalog.models import ModelCard, load_model
from hicatalog.runtime import cpus_per_worker, init_ray, use_bf16
from hicatalog.schemas import conform_table, first_occurrences, load_schema
from hicatalog.storage import read_json

__all__ = ["build_catalog", "make_catalog", "show_result", "plan_build", "CatalogPlan",
           "InferenceOptions", "query_command"]

log = logging.getLogger("hicatalog.catalog.build")

_ID_COLUMNS = ["object_id", "ra", "dec", "z"]
_READ_COLUMNS = ["object_id", "ra", "dec", "z", "image"]
#: The environment columns joined from :func:`compute_environment` (float32, null where the
#: galaxy has no environment row).
ENVIRONMENT_COLUMNS = ("one_plus_delta5", "sigma5", "d5_mpc")
#: The CPUs one read+decode task is counted for when the stage's concurrency is sized (it
#: decodes with Pillow on one thread while its next read waits on I/O).
DECODE_TASK_CPUS = 0.5


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class InferenceOptions:
    """How the models run: ``tta`` (average the 8 dihedral views), ``gpu`` (one GPU per
    inference actor), ``precision`` (``auto``/``bf16``/``fp32``), ``decode`` (``auto``/
    ``cpu``/``gpu``: where JPEGs are decoded), ``batch_size`` (rows per model call),
    ``actors`` (inference actors; ``None``: one per GPU, or one), ``threads`` (CPUs each actor
    reserves; ``None``: the CPUs left after one per node for reading and decoding)."""

    tta: bool = True
    gpu: bool = False
    precision: str = "auto"
    decode: str = "auto"
    batch_size: int = 64
    actors: int | None = None
    threads: int | None = None


@dataclass(frozen=True)
class SurveyOptions:
    """What the survey-wide columns need besides the models: ``calibration`` (a calibration
    directory, :mod:`hicatalog.catalog.calibrate`), ``mstar_column`` (the shards' log10 stellar
    mass) and ``mstar_err_dex`` (its error, dex)."""

    calibration: str | None = None
    mstar_column: str | None = None
    mstar_err_dex: float = MSTAR_ERR_DEX


@dataclass(frozen=True)
class InputIds:
    """The small columns of every input row (one pass over the shards): ``positions``
    (``object_id``, ``ra``, ``dec``, ``z``), ``rows_per_shard`` and ``first_rows`` (the row of
    each id's first occurrence)."""

    positions: pa.Table
    rows_per_shard: list[int]
    first_rows: np.ndarray

    @property
    def starts(self) -> np.ndarray:
        """``(n_shards + 1,)`` the first row of each shard, then the number of rows."""
        return np.concatenate([[0], np.cumsum(self.rows_per_shard)]).astype(np.int64)


@dataclass(frozen=True)
class RowPlan:
    """What happens to each input row: ``dup`` (bool, a repeat of an earlier ``object_id``:
    ``status='duplicate_id'`` with ``messages[row]``), ``skip`` (bool, already in the catalog
    ``since_manifest`` continues: left out)."""

    dup: np.ndarray
    skip: np.ndarray
    messages: dict[int, str]


@dataclass(frozen=True)
class CatalogPlan:
    """Everything decided before the pipeline starts: the inputs (``cutouts``, their
    ``shards``, ``geometry`` and ``ids``), the two models and their paths, the ``tracers``,
    the catalog ``base`` an incremental build continues, how inference runs (``options``,
    ``gpu_decode``, ``bf16``, ``cutout_size``, ``decode_size``) and the build's
    ``fingerprint`` and ids. Made by :func:`plan_build`."""

    cutouts: str
    shards: list[str]
    geometry: CutoutGeometry
    ids: InputIds
    regression: str
    pr: str
    reg_card: ModelCard
    pr_card: ModelCard
    tracers: str | None
    base: Manifest | None
    options: InferenceOptions
    survey: SurveyOptions
    calibration: dict[str, Any] | None
    cutout_size: int
    decode_size: int
    gpu_decode: bool
    bf16: bool
    input_fp: str
    tracers_fp: str
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", fingerprint({
            "input": self.input_fp,
            "models": [self.reg_card.weights_sha256, self.pr_card.weights_sha256,
                       self.reg_card.model_id, self.pr_card.model_id],
            "tracers": self.tracers_fp,
            "tta": self.options.tta,
            "gpu_decode": self.gpu_decode,
            "bf16": self.bf16,
            "since": self.base.fingerprint if self.base is not None else None,
            "calibration": self.calibration,
            "mstar": [self.survey.mstar_column, self.survey.mstar_err_dex],
            "code_version": __version__,
        }))

    @property
    def build_id(self) -> str:
        return f"build-{self.fingerprint[:12]}"

    @property
    def model_id(self) -> str:
        return f"{self.reg_card.model_id}+{self.pr_card.model_id}"

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def row_plan(self) -> RowPlan:
        """The duplicates (with their messages) and, for an incremental build, the rows whose
        ``object_id`` the base catalog already holds."""
        ids = self.ids.positions.column("object_id")
        n = len(ids)
        first = self.ids.first_rows
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        # The first row of each id, looked up for every row by the id's position in `first`.
        first_of = first[pc.index_in(ids, value_set=ids.take(pa.array(first))).to_numpy(
            zero_copy_only=False)]
        starts = self.ids.starts
        messages = {}
        for i in np.flatnonzero(dup):
            j = int(first_of[i])
            s = int(np.searchsorted(starts, j, "right") - 1)
            messages[int(i)] = (
                f"duplicate object_id {ids[i].as_py()!r}: first occurrence (predicted) is row "
                f"{j - starts[s]} of {os.path.basename(self.shards[s])}"
            )
        skip = np.zeros(n, dtype=bool)
        if self.base is not None:
            # the base version itself (pinned), not whatever is current by now
            old = read_catalog(self.base.catalog_dir, ["object_id"],
                               version=self.base.version).column(0)
            skip = pc.is_in(ids, value_set=pc.unique(old)).to_numpy(zero_copy_only=False)
            log.info("incremental build: %d of %d rows are already in %s", int(skip.sum()), n,
                     self.base.catalog_dir)
        return RowPlan(dup=dup, skip=skip, messages=messages)


def _load_models(regression: str, pr: str) -> tuple[ModelCard, ModelCard]:
    """The two model cards, each checked to be the model its parameter names.

    Raises
    ------
    ModelError: a model of another task, or one that does not take RGB input.
    """
    _, reg = load_model(regression)
    _, pr_card = load_model(pr)
    # a 'regression' card's outputs fit its head (ModelCard checks it)
    if reg.task != "regression":
        raise ModelError(f"regression={regression}: model {reg.model_id!r} has task "
                         f"{reg.task!r}, expected a regression model", params=("regression",))
    # a 'pr' card has its 'detection' class (ModelCard checks it): p_cnn is well defined
    if pr_card.task != "pr":
        raise ModelError(f"pr={pr}: model {pr_card.model_id!r} has task {pr_card.task!r}, "
                         "expected a pattern-recognition model (task 'pr')", params=("pr",))
    for name, card in (("regression", reg), ("pr", pr_card)):
        if card.in_channels != 3:
            raise ModelError(f"{name} model {card.model_id!r} takes {card.in_channels} "
                             "channels, the cutouts have 3 (RGB)", params=(name,))
    return reg, pr_card


def _cutout_size(reg: ModelCard, pr: ModelCard, geometry: CutoutGeometry, cutouts: str) -> int:
    """The side (px) of the cutouts both models take: the cards' ``cutout_size``, which must
    be the stored JPEGs' side (the stored side when the cards do not say).

    Raises
    ------
    ModelError: a model trained on another survey or cutout size than the cutouts hold.
    """
    for name, card in (("regression", reg), ("pr", pr)):
        if geometry.survey != card.survey:
            raise ModelError(
                f"{name} model {card.model_id!r} was trained on survey {card.survey!r} "
                f"cutouts, but {cutouts} holds survey {geometry.survey!r}", params=(name,))
    size = reg.cutout_size
    if pr.cutout_size is not None and pr.cutout_size != size:
        raise ModelError(f"the models expect different cutout sizes: regression "
                         f"{reg.cutout_size} px, pr {pr.cutout_size} px",
                         params=("regression", "pr"))
    side = geometry.side_px
    if size is not None and side != size:
        raise ModelError(f"the models were trained on {size}x{size} px cutouts, but {cutouts} "
                         f"holds {side}x{side} px images", params=("regression", "pr"))
    return side


def _scan_ids(shards: list[str], mstar_column: str | None = None) -> InputIds:
    """Read the small columns of every shard: ids and positions (one pass), and the stellar
    mass ``mstar_column`` as float64 ``log_mstar`` (SchemaError naming a shard without it)."""
    tables = []
    for f in shards:
        if not mstar_column:
            tables.append(storage.read_parquet(f, _ID_COLUMNS))
            continue
        names = storage.read_parquet_schema(f).names
        if mstar_column not in names:
            raise SchemaError(f"{f}: has no stellar mass column {mstar_column!r} "
                              f"(mstar_column); columns: {sorted(names)}",
                              params=("mstar_column",))
        t = storage.read_parquet(f, [*_ID_COLUMNS, mstar_column])
        m = t.column(mstar_column)
        if not (pa.types.is_floating(m.type) or pa.types.is_integer(m.type)):
            raise SchemaError(f"{f}: stellar mass column {mstar_column!r} must be numeric "
                              f"(log10 Msun), got {m.type}", params=("mstar_column",))
        tables.append(t.select(_ID_COLUMNS).append_column("log_mstar", pc.cast(m, pa.float64())))
    positions = pa.concat_tables(tables).combine_chunks()
    return InputIds(positions=positions, rows_per_shard=[t.num_rows for t in tables],
                    first_rows=first_occurrences(positions.column("object_id")))


def _gpu_decode(options: InferenceOptions) -> bool:
    """Whether the actors decode the JPEGs on their GPU (``decode``, ``gpu`` and whether
    torchvision is installed).

    Raises
    ------
    ConfigError: ``decode='gpu'`` without ``gpu`` or without torchvision.
    """
    has_tv = importlib.util.find_spec("torchvision") is not None
    if options.decode == "gpu" and not (options.gpu and has_tv):
        raise ConfigError(
            "decode='gpu' needs gpu=True and torchvision (pip install -e '.[gpu]'); got "
            f"gpu={options.gpu}, torchvision {'installed' if has_tv else 'not installed'}",
            params=("decode", "gpu"))
    if options.gpu and options.decode == "auto" and not has_tv:
        log.warning("gpu without torchvision: JPEGs are decoded with Pillow on the CPU")
    return options.decode == "gpu" or (options.decode == "auto" and options.gpu and has_tv)


def plan_build(cutouts: str, regression: str, pr: str, *, tracers: str | None = None,
               since_manifest: str | None = None,
               options: InferenceOptions = InferenceOptions(),
               survey: SurveyOptions = SurveyOptions()) -> CatalogPlan:
    """Check the inputs and decide the build, before any prediction: the shards and their
    ids, both models (checked against each other and the cutouts), the catalog
    ``since_manifest`` continues, how inference runs, the fingerprint.

    Raises
    ------
    SchemaError / InputError: bad or missing inputs. ModelError: a model that does not fit.
    ConfigError: options that do not fit each other or this machine.
    """
    shards = list_shards(cutouts, contract="cutouts")
    reg_card, pr_card = _load_models(regression, pr)
    geometry = probe_cutouts(shards)
    cutout_size = _cutout_size(reg_card, pr_card, geometry, cutouts)
    ids = _scan_ids(shards, survey.mstar_column)
    calibration = (load_calibration(survey.calibration, reg_card.model_id, pr_card.model_id)
                   if survey.calibration else None)
    base = Manifest.read(since_manifest) if since_manifest else None
    tracers_fp = (fingerprint_shards(list_shards(tracers, contract=None)) if tracers
                  else "cutouts")
    return CatalogPlan(
        cutouts=cutouts, shards=shards, geometry=geometry, ids=ids, regression=regression,
        pr=pr, reg_card=reg_card, pr_card=pr_card, tracers=tracers, base=base, options=options,
        survey=survey, calibration=calibration,
        cutout_size=cutout_size, decode_size=max(reg_card.image_size, pr_card.image_size),
        gpu_decode=_gpu_decode(options),
        bf16=use_bf16(options.precision, "cuda" if options.gpu else "cpu"),
        input_fp=fingerprint_shards(shards), tracers_fp=tracers_fp)


# ----------------------------------------------------------------------------- staging


def _environment(plan: CatalogPlan) -> pa.Table:
    """Environment of every distinct galaxy of the input (first occurrence of each id)."""
    first = plan.ids.positions.take(pa.array(plan.ids.first_rows))
    targets = first.select(_ID_COLUMNS)
    tracers = read_positions(plan.tracers, "tracers") if plan.tracers else targets
    env = compute_environment(targets, tracers)
    if "log_mstar" in first.column_names:  # carried to the writer with the environment
        idx = pc.index_in(env.column("object_id"), value_set=first.column("object_id"))
        env = env.append_column("log_mstar", first.column("log_mstar").take(idx))
    return env


@dataclass(frozen=True)
class Work:
    """The shards still to predict: ``items`` (one per shard: its path, index, duplicate rows
    with their messages and rows to skip) and ``expected`` (rows each will yield)."""

    items: list[dict[str, Any]]
    expected: dict[int, int]


def _pending_work(plan: CatalogPlan, rows: RowPlan, staging: Staging) -> Work:
    """The shards of ``plan`` without a ``_done`` marker of this build; a shard with no row
    left to predict gets its (empty) marker here."""
    items, expected = [], {}
    starts = plan.ids.starts
    done = set(storage.list_files(storage.join(staging.dir, DONE_DIR), suffix=".json"))
    for s, shard in enumerate(plan.shards):
        done_file = storage.join(staging.dir, DONE_DIR, f"part-{s:05d}.json")
        if done_file in done and read_json(done_file).get("fingerprint") == plan.fingerprint:
            continue
        lo, hi = starts[s], starts[s + 1]
        skip = rows.skip[lo:hi]
        n_keep = int((~skip).sum())
        if n_keep == 0:
            write_staged_part(staging.dir, s, load_schema("hi_catalog").empty_table(),
                              build_fingerprint=plan.fingerprint, shard=shard,
                              counts={"status": {}, "env_status": {}})
            continue
        dup_rows = np.flatnonzero(rows.dup[lo:hi] & ~skip).tolist()
        items.append({
            "shard": shard, "shard_index": s,
            "dup_rows": dup_rows, "dup_messages": [rows.messages[lo + r] for r in dup_rows],
            "skip_rows": np.flatnonzero(skip).tolist(),
        })
        expected[s] = n_keep
    return Work(items=items, expected=expected)


# ----------------------------------------------------------------------------- read + decode


def _read_decode_shard(batch: dict[str, np.ndarray], *, rows_per_batch: int,
                       cutout_size: int | None, decode_size: int, decode: bool):
    """Ray Data UDF (one item = one input shard): read it in row batches and decode.

    Yields batches with ``shard_index`` (int32), ``row_index`` (int64, position in the shard),
    ``object_id``, ``ra``, ``dec``, ``z`` (float64, NaN = null), ``status``, ``error`` and
    ``image`` (decoded ``uint8 (B, 3, S, S)``; or the JPEG bytes when ``decode`` is False).
    Rows marked ``skip`` are left out; rows marked duplicate are not decoded.
    """
    for k in range(len(batch["shard"])):
        sidx = int(batch["shard_index"][k])
        dup_rows = dict(zip(batch["dup_rows"][k], batch["dup_messages"][k], strict=True))
        skip_rows = set(np.asarray(batch["skip_rows"][k]).tolist())
        start = 0
        with storage.open_parquet(str(batch["shard"][k])) as pf:
            for rb in pf.iter_batches(batch_size=rows_per_batch, columns=_READ_COLUMNS):
                rows = np.arange(start, start + rb.num_rows, dtype=np.int64)
                start += rb.num_rows
                keep = np.array([r not in skip_rows for r in rows.tolist()], dtype=bool)
                if keep.any():
                    yield _decoded(rb.filter(pa.array(keep)), rows[keep], sidx, dup_rows,
                                   cutout_size, decode_size, decode)


def _decoded(rb: pa.RecordBatch, rows: np.ndarray, sidx: int, dup_rows: dict[int, str],
             cutout_size: int | None, decode_size: int, decode: bool) -> dict[str, np.ndarray]:
    """One batch of :func:`_read_decode_shard`: the rows ``rows`` of shard ``sidx``, decoded
    (or their JPEG bytes), duplicates marked and not decoded."""
    images = rb.column("image").to_pylist()
    is_dup = np.array([r in dup_rows for r in rows.tolist()], dtype=bool)
    to_decode = [None if d else im for d, im in zip(is_dup, images, strict=True)]
    if decode:
        dec = decode_batch(to_decode, cutout_size, decode_size)
        image_col: Any = dec.images
        status, error = dec.status, dec.error
    else:
        image_col = np.array(to_decode, dtype=object)
        status = ["ok" if im else "empty_image" for im in to_decode]
        error = [None if im else "image is empty (0 bytes)" for im in to_decode]
    for i in np.flatnonzero(is_dup):
        status[i], error[i] = "duplicate_id", dup_rows[int(rows[i])]

    def f64(name: str) -> np.ndarray:
        return pc.cast(rb.column(name), pa.float64()).to_numpy(zero_copy_only=False)

    return {
        "shard_index": np.full(len(rows), sidx, dtype=np.int32),
        "row_index": rows,
        "object_id": np.asarray(rb.column("object_id").to_pylist(), dtype=object),
        "ra": f64("ra"), "dec": f64("dec"), "z": f64("z"),
        "image": image_col,
        "status": np.asarray(status, dtype=object),
        "error": np.asarray(error, dtype=object),
    }


# ----------------------------------------------------------------------------- writer


class _ShardWriter:
    """Collects predicted rows per input shard and writes each shard once it is complete."""

    def __init__(self, plan: CatalogPlan, sdir: str, env: pa.Table):
        self.plan, self.sdir = plan, sdir
        self.env_ids = env.column("object_id")
        self.env = env
        self.pending: dict[int, list[pa.Table]] = collections.defaultdict(list)
        self.counts: collections.Counter[int] = collections.Counter()

    def add(self, batch: pa.Table, expected: dict[int, int]) -> list[int]:
        """Add a batch of predicted rows; returns the shards it completed (and wrote)."""
        done = []
        shard_col = batch.column("shard_index").to_numpy()
        for s in np.unique(shard_col).tolist():
            part = batch.filter(pa.array(shard_col == s))
            self.pending[s].append(part)
            self.counts[s] += part.num_rows
            if self.counts[s] == expected[s]:
                # Batches may type an all-null column as null: promote to the common type.
                self.write(s, pa.concat_tables(self.pending.pop(s), promote_options="permissive"))
                done.append(s)
            elif self.counts[s] > expected[s]:
                raise RuntimeError(f"shard {s} produced {self.counts[s]} rows, expected "
                                   f"{expected[s]}")
        return done

    def catalog_rows(self, rows: pa.Table) -> pa.Table:
        """Predicted rows of one shard -> ``hi_catalog`` rows (environment joined): the
        input's columns, the models' (:data:`~hicatalog.catalog.inference.PREDICTION_COLUMNS`,
        null where not finite; ``m_pred`` and ``m_pred_err`` as calibrated), the survey-wide
        columns (:func:`~hicatalog.catalog.calibrate.survey_columns`),
        :data:`ENVIRONMENT_COLUMNS`, the
        statuses, the build's ids and the HATS index ``_healpix_29``."""
        rows = rows.sort_by("row_index")
        idx = pc.index_in(rows.column("object_id"), value_set=self.env_ids)
        env = self.env.take(pc.fill_null(idx, 0))
        missing = pc.is_null(idx)

        def finite32(name: str) -> pa.Array:
            a = rows.column(name).to_numpy(zero_copy_only=False).astype(np.float32)
            return pa.array(a, mask=~np.isfinite(a))

        def env32(name: str) -> pa.Array:
            return pc.if_else(missing, pa.scalar(None, env.column(name).type), env.column(name))

        def f64(a: pa.Array) -> np.ndarray:
            return pc.cast(a, pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)

        z = rows.column("z").to_numpy(zero_copy_only=False)
        status = rows.column("status")
        n = rows.num_rows
        pred = {c: f64(finite32(c)) for c in PREDICTION_COLUMNS}
        pred.update(z=z, one_plus_delta5=f64(env32("one_plus_delta5")))
        if "log_mstar" in self.env.column_names:
            pred["log_mstar"] = f64(env32("log_mstar"))
        survey = survey_columns(pred, self.plan.calibration,
                                mstar_err_dex=self.plan.survey.mstar_err_dex)

        def col(name: str) -> pa.Array:  # float64 for the expected mass, float32 for the rest
            a = survey[name]
            if a.dtype == object:
                return pa.array(a, pa.string())
            a = a if name == "mhi_expect" else a.astype(np.float32)
            return pa.array(a, mask=~np.isfinite(a))

        table = pa.table({
            "object_id": pc.cast(rows.column("object_id"), pa.string()),
            "ra": rows.column("ra"),
            "dec": rows.column("dec"),
            "z": pa.array(z, mask=~np.isfinite(z)),
            **{c: finite32(c) for c in PREDICTION_COLUMNS},
            **{c: col(c) for c in SURVEY_COLUMNS},
            **{c: env32(c) for c in ENVIRONMENT_COLUMNS},
            "env_status": pc.fill_null(env.column("env_status"), "no_redshift"),
            "status": pc.cast(status, pa.string()),
            "error": pc.if_else(pc.equal(status, "ok"), pa.scalar(None, pa.string()),
                                pc.cast(rows.column("error"), pa.string())),
            "build_id": pa.array([self.plan.build_id] * n, pa.string()),
            "model_id": pa.array([self.plan.model_id] * n, pa.string()),
            "_healpix_29": healpix_29(rows.column("ra").to_numpy(zero_copy_only=False),
                                      rows.column("dec").to_numpy(zero_copy_only=False)),
        })
        return conform_table(table, "hi_catalog", "catalog rows")

    def write(self, s: int, rows: pa.Table) -> None:
        table = self.catalog_rows(rows)
        write_staged_part(self.sdir, s, table, build_fingerprint=self.plan.fingerprint,
                          shard=self.plan.shards[s], counts=staged_counts(table))


# ----------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class ActorPool:
    """The inference actors: how many, the resources each reserves, its torch device, and
    the read+decode tasks that run beside them."""

    size: int
    resources: dict[str, Any]
    device: str
    decode_tasks: int


def _actor_pool(options: InferenceOptions, n_items: int) -> ActorPool:
    """Size the actor pool and the read+decode tasks on the running Ray cluster.

    Raises
    ------
    ClusterError: ``gpu`` on a cluster without GPUs; actors that leave no CPU for reading.
    """
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    if options.gpu:
        n_gpus = int(ray.cluster_resources().get("GPU", 0))
        if n_gpus == 0:
            raise ClusterError("gpu=True given, but the Ray cluster has no GPU", params=("gpu",))
        actors, actor_cpus = options.actors or n_gpus, options.threads or 1
        resources: dict[str, Any] = {"num_gpus": 1}
    else:
        actors, resources = options.actors or 1, {}
        # one CPU per node is left to the read+decode tasks
        actor_cpus = options.threads or max(1, math.floor(cpus_per_worker(actors, keep_free=1.0)))
    # An actor runs as many torch threads as the CPUs it reserves (set_torch_threads), so
    # `threads` is a reservation; the read+decode tasks need at least half a CPU besides, or
    # the build would crawl. (GPU clusters may still be scaling up: not checked.)
    if not options.gpu and actors * actor_cpus + DECODE_TASK_CPUS > cpus:
        raise ClusterError(
            f"{actors} inference actor(s) x {actor_cpus} CPU(s) (actors, threads) leave no "
            f"CPU for reading and decoding on this {cpus}-CPU Ray cluster",
            params=("actors", "threads"))
    resources["num_cpus"] = actor_cpus
    decode_tasks = max(1, min(n_items, math.floor((cpus - actors * actor_cpus) / DECODE_TASK_CPUS)))
    return ActorPool(size=actors, resources=resources, device="cuda" if options.gpu else "cpu",
                     decode_tasks=decode_tasks)


def _dataset(plan: CatalogPlan, work: Work, pool: ActorPool) -> Any:
    """The Ray Data pipeline: shards -> read+decode tasks -> the inference actor pool."""
    import ray.data

    ds = ray.data.from_items(work.items, override_num_blocks=len(work.items))
    ds = ds.map_batches(
        _read_decode_shard,
        batch_size=1,
        fn_kwargs={
            "rows_per_batch": plan.options.batch_size,
            "cutout_size": plan.cutout_size,
            "decode_size": plan.decode_size,
            "decode": not plan.gpu_decode,
        },
        # The read+decode tasks reserve no CPU from Ray: they run on the CPUs the actors
        # leave free, and their number is capped to what those CPUs hold (DECODE_TASK_CPUS
        # each). A reservation would let a lost node stall the build forever: Ray restarts
        # the node's inference actors (Ray Data's max_restarts=-1) on any node where a whole
        # actor fits, which can be the last free CPUs of the surviving nodes, and reserving
        # tasks would then never be scheduled while the actors wait for their input
        # (tests/test_cluster.py). Different resources than the actors also keep Ray Data from
        # fusing this stage into the actor, so decoding overlaps with inference.
        num_cpus=0,
        compute=ray.data.TaskPoolStrategy(size=pool.decode_tasks),
    )
    return ds.map_batches(
        CatalogPredictor,
        batch_size=plan.options.batch_size,
        fn_constructor_kwargs={
            "regression_dir": storage.absolute(plan.regression),
            "pr_dir": storage.absolute(plan.pr),
            "tta": plan.options.tta,
            "device": pool.device,
            "gpu_decode": plan.gpu_decode,
            "cutout_size": plan.cutout_size,
            "decode_size": plan.decode_size,
            "precision": plan.precision,
        },
        # On a GPU, two calls per actor: Ray Data assembles the next batch while the model
        # runs on this one (the model itself still runs one batch at a time).
        compute=ray.data.ActorPoolStrategy(
            size=pool.size, max_concurrent_calls_per_actor=2 if plan.options.gpu else None),
        **pool.resources,
    )


def _run_pipeline(plan: CatalogPlan, work: Work, writer: _ShardWriter) -> None:
    """Predict the shards of ``work`` and stage each as it completes."""
    init_ray()
    ds = _dataset(plan, work, _actor_pool(plan.options, len(work.items)))
    n_done = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for s in writer.add(batch, work.expected):
            n_done += 1
            log.info("wrote shard %d/%d (%s, %d rows)", n_done, len(work.expected),
                     os.path.basename(plan.shards[s]), work.expected[s])
    if writer.pending:
        raise RuntimeError(
            f"the pipeline ended with incomplete shards {sorted(writer.pending)}; rerun the "
            "same command to finish them"
        )


# ----------------------------------------------------------------------------- publish


def _staged_counts(plan: CatalogPlan, sdir: str) -> RowCounts:
    """The rows this build staged (its ``_done`` markers), by ``status`` and ``env_status``."""
    status: collections.Counter[str] = collections.Counter()
    env_status: collections.Counter[str] = collections.Counter()
    rows = 0
    for f in storage.list_files(storage.join(sdir, DONE_DIR), suffix=".json"):
        d = read_json(f)
        if d.get("fingerprint") != plan.fingerprint:
            continue
        rows += d["rows"]
        status.update(d["status"])
        env_status.update(d["env_status"])
    return RowCounts(total=rows, status=dict(sorted(status.items())),
                     env_status=dict(sorted(env_status.items())))


def _model_record(card: ModelCard, path: str) -> ModelRecord:
    return ModelRecord(model_id=card.model_id, weights_sha256=card.weights_sha256,
                       task=card.task, arch=card.arch, image_size=card.image_size,
                       cutout_size=card.cutout_size, survey=card.survey, path=path)


def _build_record(plan: CatalogPlan, out: str, staging: Staging, config: dict[str, Any],
                  t0: float) -> BuildRecord:
    """What the manifest records about this build (its top-level fields)."""
    return BuildRecord(
        build_id=plan.build_id,
        fingerprint=plan.fingerprint,
        staging=storage.relative(staging.dir, out),
        since_manifest=config["since_manifest"],
        models={"regression": _model_record(plan.reg_card, plan.regression),
                "pr": _model_record(plan.pr_card, plan.pr)},
        model_id=plan.model_id,
        config=config,
        inference=InferenceRecord(precision=plan.precision,
                                  decode="gpu" if plan.gpu_decode else "cpu"),
        input=InputRecord(cutouts=plan.cutouts, shards=len(plan.shards),
                          rows=int(sum(plan.ids.rows_per_shard)), fingerprint=plan.input_fp,
                          survey=plan.geometry.survey),
        tracers=TracersRecord(path=plan.tracers or plan.cutouts, fingerprint=plan.tracers_fp),
        rows=_staged_counts(plan, staging.dir),
        code_version=__version__,
        created=storage.utc_timestamp(),
        # the build until its publish; the publish's own time is its version's publish_s
        wall_time_s=round(time.perf_counter() - t0, 3),
    )


# ----------------------------------------------------------------------------- entry points


def make_catalog(cutouts: str, regression: str, pr: str, out: str, *,
                 tracers: str | None = None, since_manifest: str | None = None,
                 tta: bool = True, gpu: bool = False, precision: str = "auto",
                 decode: str = "auto", batch_size: int = 64, actors: int | None = None,
                 threads: int | None = None, partition_rows: int = PARTITION_ROWS,
                 row_group_rows: int = ROW_GROUP_ROWS, margin_arcsec: float = MARGIN_ARCSEC,
                 keep_versions: int | None = None, grace_hours: float = GRACE_HOURS,
                 calibration: str | None = None, mstar_column: str | None = None,
                 mstar_err_dex: float = MSTAR_ERR_DEX) -> Manifest:
    """Build (or resume, or extend) the H I catalog in ``out``; returns its manifest.

    ``cutouts``: cutout shards (directory, file or URL); ``regression``, ``pr``: the two model
    directories; ``tracers``: positions the environment is computed against (default: the
    cutouts); ``since_manifest``: the ``_manifest.json`` of a catalog to extend (only the
    galaxies it lacks are predicted); the inference options are :class:`InferenceOptions`';
    ``partition_rows``, ``row_group_rows``, ``margin_arcsec`` (width of the margin cache in
    arcsec; 0: none), ``keep_versions``: the publish's
    (:func:`hicatalog.catalog.publish.publish_version`); ``grace_hours``: the vacuum's at
    the end (:func:`hicatalog.catalog.commit.vacuum`); ``calibration``: a calibration
    directory of these models (:func:`hicatalog.catalog.calibrate.calibrate`),
    ``mstar_column``: the shards' log10 stellar mass column, ``mstar_err_dex``: its error: the
    survey-wide columns (:func:`hicatalog.catalog.calibrate.survey_columns`). Every parameter
    is recorded in the manifest's ``config``. Another build that commits to ``out`` meanwhile is rebased onto
    (:mod:`hicatalog.catalog.commit`): both land, every row once.

    Raises
    ------
    SchemaError / InputError / ModelError / ConfigError / OutputError / ClusterError: bad
        inputs, unusable models, an output directory owned by another build, a cluster that
        cannot run the actors; all before any prediction.
    """
    config = dict(locals())  # the parameters, recorded as the build's `config`
    t0 = time.perf_counter()
    # a bad margin width fails now, not after the predictions, at the publish
    PublishOptions(partition_rows=partition_rows, row_group_rows=row_group_rows,
                   margin_arcsec=margin_arcsec)
    options = InferenceOptions(tta=tta, gpu=gpu, precision=precision, decode=decode,
                               batch_size=batch_size, actors=actors, threads=threads)
    plan = plan_build(cutouts, regression, pr, tracers=tracers, since_manifest=since_manifest,
                      options=options, survey=SurveyOptions(calibration, mstar_column,
                                                            mstar_err_dex))
    out = storage.absolute(out).rstrip("/")
    rows = plan.row_plan()
    env = _environment(plan)  # reads the tracers: fails before the build claims a number
    staging = claim_build(out, {"fingerprint": plan.fingerprint, "build_id": plan.build_id,
                                "config": config}, continues=plan.base is not None)
    log.info("%s %s build %d (%s) from %d shards, %d rows", "resuming" if staging.resumed else
             "building", out, staging.build, plan.build_id, len(plan.shards),
             int(plan.ids.starts[-1]))
    work = _pending_work(plan, rows, staging)
    log.info("%d shards to predict, %d already done", len(work.items),
             len(plan.shards) - len(work.items))
    if work.items:
        _run_pipeline(plan, work, _ShardWriter(plan, staging.dir, env))

    def rebase(current: Manifest, builds: list[str]) -> tuple[list[str], BuildRecord]:
        return (rebase_builds(builds, staging.dir, current),
                _build_record(plan, out, staging, config, t0))

    # without since_manifest: the manifest in `out`, if any (a rerun: nothing to publish)
    builds = (plan.base.builds() if plan.base is not None else []) + [staging.dir]
    manifest = publish_version(out, builds, previous=plan.base,
                               build=_build_record(plan, out, staging, config, t0),
                               partition_rows=partition_rows, row_group_rows=row_group_rows,
                               margin_arcsec=margin_arcsec, keep_versions=keep_versions,
                               rebase=rebase)
    vacuum(out, grace_hours, manifest=manifest)
    return manifest


def build_catalog(cfg: Any) -> Manifest:
    """:func:`make_catalog` with the fields of ``cfg`` (a configuration whose fields are its
    parameters, e.g. ``hicatalog build-catalog``'s)."""
    return make_catalog(**cfg.model_dump())


def show_result(manifest: Manifest, params: dict[str, Any]) -> None:
    """What ``hicatalog build-catalog`` prints after :func:`make_catalog` (``params``: its
    arguments): the version published, its row counts by status and a query to try."""
    out = params["out"]
    rows, this = manifest.rows, manifest.current()
    print(f"catalog {out} version {manifest.version} ({manifest.build_id}): "
          f"{this.rows} rows in {this.partitions} HEALPix partitions "
          f"({rows.total} staged by this build in {manifest.wall_time_s:.1f} s, "
          f"published in {this.publish_s:.1f} s)")
    print(f"  status: {json.dumps(rows.status)}")
    print(f"  env_status: {json.dumps(rows.env_status)}")
    print("  query: " + query_command(out, 'cat.filter(pl.col("p_cnn") > 0.9).select(pl.len())'))


def query_command(catalog_dir: str, polars_query: str) -> str:
    """A shell command line that prints the result of one polars query on the catalog's
    current version.

    It runs the interpreter that runs hicatalog (``.venv/bin/python`` after ``make setup``),
    whose polars is a dependency of the package, so the line works as printed: no DuckDB
    command-line tool is needed (``make setup`` installs none). The command resolves the
    current version when it runs (:func:`hicatalog.catalog.reader.open_catalog`), so it stays
    right after later builds. ``polars_query`` is a polars expression on ``cat``, the
    version's ``pl.scan_parquet(files)``, e.g.
    ``'cat.filter(pl.col("p_cnn") > 0.9).select(pl.len())'``; the command collects and prints
    it.
    """
    code = ("import polars as pl; from hicatalog.catalog.reader import open_catalog; "
            f"cat = pl.scan_parquet(open_catalog({json.dumps(str(catalog_dir))}).files); "
            f"print({polars_query}.collect())")
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"
