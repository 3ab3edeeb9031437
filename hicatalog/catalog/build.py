"""The catalog build: cutout shards -> both models -> the Parquet H I catalog (Ray Data).

One streaming Ray Data pipeline, memory bounded whatever the input size:

1. **Checks before any work**: the shards exist and carry the ``cutouts`` columns; both models
   load (weights hash checked); the regression card is a regression model and the PR card has a
   ``detection`` class; both cards' ``survey`` equals the cutouts' one survey and their
   ``cutout_size`` the side of the stored JPEGs (:func:`hicatalog.cutouts.shards.probe_cutouts`,
   the rule training applies too).
2. **Pre-pass over the ids** (only ``object_id``, ``ra``, ``dec``, ``z`` are read):
   the first occurrence of an ``object_id`` (shard order, then row order) is predicted, later
   ones get ``status='duplicate_id'``; with ``--since-manifest`` the ids the old catalog
   already holds are left out. The environment (:func:`compute_environment`) is computed once
   here for every distinct galaxy, against ``--tracers`` or, without it, the cutouts
   themselves.
3. **Pipeline**: ``from_items(shards)`` -> ``map_batches(read+decode)`` (tasks; each reads one
   shard with pyarrow in row batches, so row positions are known, and decodes with Pillow via
   :func:`hicatalog.cutouts.decode.decode_batch`; with ``--gpu`` and torchvision the JPEG bytes
   go to the actors, which decode on the GPU) -> ``map_batches(CatalogPredictor)``: ONE actor
   pool holding both models (:mod:`hicatalog.catalog.inference`).
4. **Staging writer** (driver, streaming): rows are collected per input shard; when a shard
   is complete its rows get the environment columns and the HATS index ``_healpix_29`` and are
   written atomically as ``_staging/build=B/part-SSSSS.parquet``; then the shard's ``_done``
   marker is written.
5. **Publish** (:mod:`hicatalog.catalog.publish`, Ray tasks): the staged rows of this build
   (and, with ``--since-manifest``, of the builds the old catalog's current version holds)
   become a new complete HATS version ``version=V``, and ``_manifest.json`` is switched to it.
   The layout is described in :mod:`hicatalog.catalog.manifest`.

Exactly once: staged names are deterministic per input shard, a shard counts as done only
after its marker exists, and a rerun with the same arguments (same build fingerprint: inputs,
models, tracers, options, code version) reuses the staging directory and skips done shards;
the publish reads exactly the rows the markers count, and checks it wrote as many.
"""

from __future__ import annotations

import collections
import datetime as _dt
import importlib.util
import json
import logging
import math
import os
import shlex
import sys
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hicatalog import __version__, storage
from hicatalog.catalog.environment import compute_environment, read_positions
from hicatalog.catalog.inference import CatalogPredictor
from hicatalog.catalog.manifest import (
    BUILD_FILE,
    DONE_DIR,
    MANIFEST_FILE,
    STAGING_DIR,
    build_dirs,
    fingerprint,
    read_json,
    read_manifest,
    write_json_atomic,
    write_staged_part,
)
from hicatalog.catalog.publish import current_builds, healpix_29, publish_version
from hicatalog.catalog.reader import read_catalog
from hicatalog.config import BuildCatalogConfig
from hicatalog.cutouts.decode import decode_batch
from hicatalog.cutouts.shards import fingerprint_shards, list_shards, probe_cutouts
from hicatalog.models import ModelCard, load_model
from hicatalog.runtime import cpus_per_worker, init_ray, use_bf16
from hicatalog.schemas import conform_table, first_occurrences, load_schema
from hicatalog.storage import filesystem_and_path

__all__ = ["build_catalog", "CatalogPlan", "query_command", "main"]

log = logging.getLogger("hicatalog.catalog.build")

_ID_COLUMNS = ["object_id", "ra", "dec", "z"]
_READ_COLUMNS = ["object_id", "ra", "dec", "z", "image"]
#: The CPUs one read+decode task is counted for when the stage's concurrency is sized (it
#: decodes with Pillow on one thread while its next read waits on I/O).
DECODE_TASK_CPUS = 0.5


# ----------------------------------------------------------------------------- checks


def _load_models(cfg: BuildCatalogConfig) -> tuple[ModelCard, ModelCard]:
    _, reg = load_model(cfg.regression)
    _, pr = load_model(cfg.pr)
    # a 'regression' card's outputs fit its head (ModelCard checks it)
    if reg.task != "regression":
        raise ValueError(f"--regression {cfg.regression}: model {reg.model_id!r} has task "
                         f"{reg.task!r}, expected a regression model")
    # a 'pr' card has its 'detection' class (ModelCard checks it): p_cnn is well defined
    if pr.task != "pr":
        raise ValueError(f"--pr {cfg.pr}: model {pr.model_id!r} has task {pr.task!r}, expected a "
                         "pattern-recognition model (task 'pr')")
    for name, card in (("regression", reg), ("pr", pr)):
        if card.in_channels != 3:
            raise ValueError(f"--{name} model {card.model_id!r} takes {card.in_channels} "
                             "channels, the cutouts have 3 (RGB)")
    return reg, pr


class CatalogPlan:
    """Everything decided before the pipeline starts (inputs, models, fingerprint, version)."""

    def __init__(self, cfg: BuildCatalogConfig):
        self.cfg = cfg
        self.shards = list_shards(cfg.cutouts, contract="cutouts")
        self.reg_card, self.pr_card = _load_models(cfg)
        self.cutout_size = self.reg_card.cutout_size
        self.decode_size = max(self.reg_card.image_size, self.pr_card.image_size)
        self.geometry = probe_cutouts(self.shards)
        self._scan_ids()
        self._check_cards()
        self.old_manifest = read_manifest(cfg.since_manifest) if cfg.since_manifest else None
        self.tracers_fp = (
            fingerprint_shards(list_shards(cfg.tracers, contract=None)) if cfg.tracers
            else "cutouts"
        )
        self.input_fp = fingerprint_shards(self.shards)
        has_tv = importlib.util.find_spec("torchvision") is not None
        if cfg.decode == "gpu" and not (cfg.gpu and has_tv):
            raise ValueError(
                "--decode gpu needs --gpu and torchvision (pip install -e '.[gpu]'); "
                f"got --gpu {cfg.gpu}, torchvision {'installed' if has_tv else 'not installed'}"
            )
        self.gpu_decode = cfg.decode == "gpu" or (cfg.decode == "auto" and cfg.gpu and has_tv)
        if cfg.gpu and cfg.decode == "auto" and not has_tv:
            log.warning("--gpu without torchvision: JPEGs are decoded with Pillow on the CPU")
        self.bf16 = use_bf16(cfg.precision, "cuda" if cfg.gpu else "cpu")
        self.fingerprint = fingerprint({
            "input": self.input_fp,
            "models": [self.reg_card.weights_sha256, self.pr_card.weights_sha256,
                       self.reg_card.model_id, self.pr_card.model_id],
            "tracers": self.tracers_fp,
            "tta": cfg.tta,
            "gpu_decode": self.gpu_decode,
            "bf16": self.bf16,
            "since": (self.old_manifest or {}).get("fingerprint"),
            "code_version": __version__,
        })
        self.build_id = f"build-{self.fingerprint[:12]}"
        self.model_id = f"{self.reg_card.model_id}+{self.pr_card.model_id}"

    def _scan_ids(self) -> None:
        """Read the small columns of every shard: ids and positions (one pass)."""
        tables = []
        self.rows_per_shard = []
        for f in self.shards:
            fs, p = filesystem_and_path(f)
            with fs.open_input_file(p) as fh:
                t = pq.read_table(fh, columns=_ID_COLUMNS)
            self.rows_per_shard.append(t.num_rows)
            tables.append(t)
        self.positions = pa.concat_tables(tables).combine_chunks()
        self.first_rows = first_occurrences(self.positions.column("object_id"))

    def _check_cards(self) -> None:
        for name, card in (("regression", self.reg_card), ("pr", self.pr_card)):
            if self.geometry.survey != card.survey:
                raise ValueError(
                    f"--{name} model {card.model_id!r} was trained on survey {card.survey!r} "
                    f"cutouts, but {self.cfg.cutouts} holds survey {self.geometry.survey!r}"
                )
            if card.cutout_size is not None and card.cutout_size != self.cutout_size:
                raise ValueError(
                    f"the models expect different cutout sizes: regression "
                    f"{self.reg_card.cutout_size} px, pr {self.pr_card.cutout_size} px"
                )
        side = self.geometry.side_px
        if self.cutout_size is not None and side != self.cutout_size:
            raise ValueError(
                f"the models were trained on {self.cutout_size}x{self.cutout_size} px cutouts, "
                f"but {self.cfg.cutouts} holds {side}x{side} px images"
            )
        if self.cutout_size is None:
            self.cutout_size = side

    def row_plan(self) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        """``(duplicate mask, skip mask, {row: first-occurrence message})`` over all rows."""
        ids = self.positions.column("object_id")
        n = len(ids)
        first = self.first_rows
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        # The first row of each id, looked up for every row by the id's position in `first`.
        first_of = first[pc.index_in(ids, value_set=ids.take(pa.array(first))).to_numpy(
            zero_copy_only=False)]
        starts = np.concatenate([[0], np.cumsum(self.rows_per_shard)])
        messages = {}
        for i in np.flatnonzero(dup):
            j = int(first_of[i])
            s = int(np.searchsorted(starts, j, "right") - 1)
            messages[int(i)] = (
                f"duplicate object_id {ids[i].as_py()!r}: first occurrence (predicted) is row "
                f"{j - starts[s]} of {os.path.basename(self.shards[s])}"
            )
        skip = np.zeros(n, dtype=bool)
        if self.old_manifest is not None:
            old = read_catalog(self.old_manifest["_path"], ["object_id"]).column(0)
            skip = pc.is_in(ids, value_set=pc.unique(old)).to_numpy(zero_copy_only=False)
            log.info("incremental build: %d of %d rows are already in %s", int(skip.sum()), n,
                     self.old_manifest["_path"])
        return dup, skip, messages


# ----------------------------------------------------------------------------- pipeline stages


def _read_decode_shard(batch: dict[str, np.ndarray], *, rows_per_batch: int,
                       cutout_size: int | None, decode_size: int, decode: bool):
    """Ray Data UDF (one item = one input shard): read it in row batches and decode.

    Yields batches with ``shard_index`` (int32), ``row_index`` (int64, position in the shard),
    ``object_id``, ``ra``, ``dec``, ``z`` (float64, NaN = null), ``status``, ``error`` and
    ``image`` (decoded ``uint8 (B, 3, S, S)``; or the JPEG bytes when ``decode`` is False).
    Rows marked ``skip`` are left out; rows marked duplicate are not decoded.
    """
    for k in range(len(batch["shard"])):
        path, sidx = str(batch["shard"][k]), int(batch["shard_index"][k])
        dup_rows = dict(zip(batch["dup_rows"][k], batch["dup_messages"][k], strict=True))
        skip_rows = set(np.asarray(batch["skip_rows"][k]).tolist())
        fs, p = filesystem_and_path(path)
        start = 0
        with fs.open_input_file(p) as fh:
            for rb in pq.ParquetFile(fh).iter_batches(batch_size=rows_per_batch,
                                                      columns=_READ_COLUMNS):
                n = rb.num_rows
                rows = np.arange(start, start + n, dtype=np.int64)
                start += n
                keep = np.array([r not in skip_rows for r in rows.tolist()], dtype=bool)
                if not keep.any():
                    continue
                rb = rb.filter(pa.array(keep))
                rows = rows[keep]
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
                yield {
                    "shard_index": np.full(len(rows), sidx, dtype=np.int32),
                    "row_index": rows,
                    "object_id": np.asarray(rb.column("object_id").to_pylist(), dtype=object),
                    "ra": pc.cast(rb.column("ra"), pa.float64()).to_numpy(zero_copy_only=False),
                    "dec": pc.cast(rb.column("dec"), pa.float64()).to_numpy(zero_copy_only=False),
                    "z": pc.cast(rb.column("z"), pa.float64()).to_numpy(zero_copy_only=False),
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
        self.schema = load_schema("hi_catalog")

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
        """Predicted rows of one shard -> ``hi_catalog`` rows (environment joined)."""
        rows = rows.sort_by("row_index")
        idx = pc.index_in(rows.column("object_id"), value_set=self.env_ids)
        env = self.env.take(pc.fill_null(idx, 0))
        missing = pc.is_null(idx)

        def f32(name: str) -> pa.Array:
            a = rows.column(name).to_numpy(zero_copy_only=False).astype(np.float32)
            return pa.array(a, mask=~np.isfinite(a))

        z = rows.column("z").to_numpy(zero_copy_only=False)
        ra = rows.column("ra").to_numpy(zero_copy_only=False)
        dec = rows.column("dec").to_numpy(zero_copy_only=False)
        status = rows.column("status")
        err = pc.if_else(pc.equal(status, "ok"), pa.scalar(None, pa.string()),
                         pc.cast(rows.column("error"), pa.string()))
        n = rows.num_rows
        table = pa.table({
            "object_id": pc.cast(rows.column("object_id"), pa.string()),
            "ra": rows.column("ra"),
            "dec": rows.column("dec"),
            "z": pa.array(z, mask=~np.isfinite(z)),
            "m_pred": f32("m_pred"),
            "m_pred_err": f32("m_pred_err"),
            "m_pred_std": f32("m_pred_std"),
            "p_cnn": f32("p_cnn"),
            "one_plus_delta5": pc.if_else(missing, pa.scalar(None, pa.float32()), env.column("one_plus_delta5")),
            "sigma5": pc.if_else(missing, pa.scalar(None, pa.float32()), env.column("sigma5")),
            "d5_mpc": pc.if_else(missing, pa.scalar(None, pa.float32()), env.column("d5_mpc")),
            "env_status": pc.fill_null(env.column("env_status"), "no_redshift"),
            "status": pc.cast(status, pa.string()),
            "error": err,
            "build_id": pa.array([self.plan.build_id] * n, pa.string()),
            "model_id": pa.array([self.plan.model_id] * n, pa.string()),
            "_healpix_29": healpix_29(ra, dec),
        })
        return conform_table(table, "hi_catalog", "catalog rows")

    def write(self, s: int, rows: pa.Table) -> None:
        table = self.catalog_rows(rows)
        write_staged_part(self.sdir, s, table, build_fingerprint=self.plan.fingerprint,
                          shard=self.plan.shards[s], counts={
                              "status": _value_counts(table.column("status")),
                              "env_status": _value_counts(table.column("env_status"))})


def _value_counts(col: pa.ChunkedArray) -> dict[str, int]:
    return {d["values"]: d["counts"] for d in pc.value_counts(col).to_pylist()}


# ----------------------------------------------------------------------------- driver


def _read_json_if_file(path: str) -> dict[str, Any] | None:
    try:
        return read_json(path)
    except FileNotFoundError:
        return None


def _choose_build(plan: CatalogPlan, out: str) -> tuple[int, str, bool]:
    """The staging directory this build writes: ``(B, path, resumed)``."""
    existing = build_dirs(out)
    builds = {b: _read_json_if_file(storage.join(d, BUILD_FILE)) or {}
              for b, d in existing.items()}
    for b, d in existing.items():
        if builds[b].get("fingerprint") == plan.fingerprint:
            return b, d, True
    if existing and plan.old_manifest is None:
        owners = {b: x.get("build_id") for b, x in builds.items()}
        raise ValueError(
            f"{out} already holds a catalog from another build ({owners}); use a new --out, "
            f"rerun with the same arguments to resume it, or pass --since-manifest "
            f"{storage.join(out, MANIFEST_FILE)} to add only the galaxies it lacks"
        )
    b = max([0, *existing]) + 1
    return b, storage.join(out, STAGING_DIR, f"build={b}"), False


def _environment(plan: CatalogPlan) -> pa.Table:
    """Environment of every distinct galaxy of the input (first occurrence of each id)."""
    targets = plan.positions.take(pa.array(plan.first_rows)).select(["object_id", "ra", "dec", "z"])
    if plan.cfg.tracers:
        tracers = read_positions(plan.cfg.tracers, "tracers")
    else:
        tracers = targets
    return compute_environment(targets, tracers)


def build_catalog(cfg: BuildCatalogConfig) -> dict[str, Any]:
    """Build (or resume, or extend) the H I catalog in ``cfg.out``; returns the manifest.

    Raises
    ------
    SchemaError / ValueError: bad inputs, unreadable or mismatched models, an output directory
        owned by another build; all before any prediction.
    """
    t0 = time.perf_counter()
    plan = CatalogPlan(cfg)
    out = storage.absolute(cfg.out)
    build, sdir, resumed = _choose_build(plan, out)
    dup, skip, messages = plan.row_plan()
    starts = np.concatenate([[0], np.cumsum(plan.rows_per_shard)])
    log.info("%s %s build %d (%s) from %d shards, %d rows", "resuming" if resumed else
             "building", out, build, plan.build_id, len(plan.shards), int(starts[-1]))
    env = _environment(plan)  # reads --tracers: fails before the staging directory exists
    write_json_atomic(storage.join(sdir, BUILD_FILE), {
        "fingerprint": plan.fingerprint, "build_id": plan.build_id, "build": build,
        "config": cfg.to_json_dict(),
    })

    items, expected = [], {}
    done = set(storage.list_files(storage.join(sdir, DONE_DIR), suffix=".json"))
    for s, shard in enumerate(plan.shards):
        done_file = storage.join(sdir, DONE_DIR, f"part-{s:05d}.json")
        if done_file in done and read_json(done_file).get("fingerprint") == plan.fingerprint:
            continue
        lo, hi = starts[s], starts[s + 1]
        n_keep = int((~skip[lo:hi]).sum())
        dup_rows = (np.flatnonzero(dup[lo:hi] & ~skip[lo:hi])).tolist()
        item = {
            "shard": shard, "shard_index": s,
            "dup_rows": dup_rows, "dup_messages": [messages[lo + r] for r in dup_rows],
            "skip_rows": np.flatnonzero(skip[lo:hi]).tolist(),
        }
        if n_keep == 0:
            write_json_atomic(done_file, {"fingerprint": plan.fingerprint, "shard": shard,
                                          "rows": 0, "status": {}, "env_status": {},
                                          "files": []})
            continue
        expected[s] = n_keep
        items.append(item)
    log.info("%d shards to predict, %d already done", len(items), len(plan.shards) - len(items))

    writer = _ShardWriter(plan, sdir, env)
    if items:
        _run_pipeline(plan, items, expected, writer)
    return _publish(plan, out, sdir, t0)


def _run_pipeline(plan: CatalogPlan, items: list[dict], expected: dict[int, int],
                  writer: _ShardWriter) -> None:
    import ray
    import ray.data

    init_ray()
    cfg = plan.cfg
    cpus = int(ray.cluster_resources().get("CPU", 1))
    if cfg.gpu:
        n_gpus = int(ray.cluster_resources().get("GPU", 0))
        if n_gpus == 0:
            raise ValueError("--gpu given, but the Ray cluster has no GPU")
        actors = cfg.actors or n_gpus
        actor_res: dict[str, Any] = {"num_gpus": 1}
        actor_cpus = cfg.threads or 1
        device = "cuda"
    else:
        actors = cfg.actors or 1
        actor_res = {}
        # one CPU per node is left to the read+decode tasks
        actor_cpus = cfg.threads or max(1, math.floor(cpus_per_worker(actors, keep_free=1.0)))
        device = "cpu"
    # An actor runs as many torch threads as the CPUs it reserves (set_torch_threads), so
    # --threads is a reservation; the read+decode tasks need at least half a CPU besides, or
    # the build would crawl. (GPU clusters may still be scaling up: not checked.)
    if not cfg.gpu and actors * actor_cpus + DECODE_TASK_CPUS > cpus:
        raise ValueError(
            f"{actors} inference actor(s) x {actor_cpus} CPU(s) (--actors, --threads) leave no "
            f"CPU for reading and decoding on this {cpus}-CPU Ray cluster"
        )
    actor_res["num_cpus"] = actor_cpus
    decode_tasks = max(1, min(len(items), math.floor((cpus - actors * actor_cpus) / DECODE_TASK_CPUS)))
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(
        _read_decode_shard,
        batch_size=1,
        fn_kwargs={
            "rows_per_batch": cfg.batch_size,
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
        compute=ray.data.TaskPoolStrategy(size=decode_tasks),
    )
    ds = ds.map_batches(
        CatalogPredictor,
        batch_size=cfg.batch_size,
        fn_constructor_kwargs={
            "regression_dir": storage.absolute(cfg.regression),
            "pr_dir": storage.absolute(cfg.pr),
            "tta": cfg.tta,
            "device": device,
            "gpu_decode": plan.gpu_decode,
            "cutout_size": plan.cutout_size,
            "decode_size": plan.decode_size,
            "precision": "bf16" if plan.bf16 else "fp32",
        },
        # On a GPU, two calls per actor: Ray Data assembles the next batch while the model
        # runs on this one (the model itself still runs one batch at a time).
        compute=ray.data.ActorPoolStrategy(
            size=actors, max_concurrent_calls_per_actor=2 if cfg.gpu else None),
        **actor_res,
    )
    n_done = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for s in writer.add(batch, expected):
            n_done += 1
            log.info("wrote shard %d/%d (%s, %d rows)", n_done, len(expected),
                     os.path.basename(plan.shards[s]), expected[s])
    if writer.pending:
        raise RuntimeError(
            f"the pipeline ended with incomplete shards {sorted(writer.pending)}; rerun the "
            "same command to finish them"
        )


def _publish(plan: CatalogPlan, out: str, sdir: str, t0: float) -> dict[str, Any]:
    """Publish this build's staged rows (with, for ``--since-manifest``, the builds of the old
    catalog's current version) as a new version; returns the manifest."""
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
    # without --since-manifest: the manifest in `out`, if any (a rerun: nothing to publish)
    builds = current_builds(plan.old_manifest) + [sdir]

    def model_info(card: ModelCard, path: str) -> dict[str, Any]:
        return {"model_id": card.model_id, "weights_sha256": card.weights_sha256,
                "task": card.task, "arch": card.arch, "image_size": card.image_size,
                "cutout_size": card.cutout_size, "survey": card.survey, "path": path}

    cfg = plan.cfg
    build_info = {
        "build_id": plan.build_id,
        "fingerprint": plan.fingerprint,
        "staging": storage.relative(sdir, out),
        "since_manifest": cfg.since_manifest,
        "models": {"regression": model_info(plan.reg_card, cfg.regression),
                   "pr": model_info(plan.pr_card, cfg.pr)},
        "model_id": plan.model_id,
        "config": cfg.to_json_dict(),
        "inference": {"precision": "bf16" if plan.bf16 else "fp32",
                      "decode": "gpu" if plan.gpu_decode else "cpu"},
        "input": {"cutouts": cfg.cutouts, "shards": len(plan.shards),
                  "rows": int(sum(plan.rows_per_shard)), "fingerprint": plan.input_fp,
                  "survey": plan.geometry.survey},
        "tracers": {"path": cfg.tracers or cfg.cutouts, "fingerprint": plan.tracers_fp},
        "rows": {"total": rows, "status": dict(sorted(status.items())),
                 "env_status": dict(sorted(env_status.items()))},
        "code_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        # the build until its publish; the publish's own time is its version's publish_s
        "wall_time_s": round(time.perf_counter() - t0, 3),
    }
    manifest = publish_version(out, builds, previous=plan.old_manifest, build_info=build_info,
                               partition_rows=cfg.partition_rows,
                               row_group_rows=cfg.row_group_rows,
                               keep_versions=cfg.keep_versions)
    return manifest


def main(cfg: BuildCatalogConfig) -> int:
    """CLI entry (``hicatalog build-catalog``): build into ``cfg.out``, print the version
    published, its row counts by status and a query to try; returns 0."""
    manifest = build_catalog(cfg)
    rows = manifest["rows"]
    this = next(v for v in manifest["versions"] if v["version"] == manifest["version"])
    print(f"catalog {cfg.out} version {manifest['version']} ({manifest['build_id']}): "
          f"{this['rows']} rows in {this['partitions']} HEALPix partitions "
          f"({rows['total']} staged by this build in {manifest['wall_time_s']:.1f} s, "
          f"published in {this['publish_s']:.1f} s)")
    print(f"  status: {json.dumps(rows['status'])}")
    print(f"  env_status: {json.dumps(rows['env_status'])}")
    print("  query: " + query_command(cfg.out, 'cat.filter(pl.col("p_cnn") > 0.9).select(pl.len())'))
    return 0


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
