"""``hicatalog fetch``: download the cutouts of a target list into Parquet image shards.

The target list (:func:`hicatalog.cutouts.targets.read_targets`: Parquet or CSV with
``object_id``, ``ra``, ``dec``) loses the rows whose ``object_id`` is already stored in
``DIR``'s shards (status ``already_present``). With ``limit``, the run works on a fixed subset
of ``limit`` rows of the list (:func:`hicatalog.cutouts.targets.limit_subset`: stratified by
``dataset``, seeded by ``seed``; the same subset whatever is stored, so a rerun resumes it and
a larger limit extends it); the rows outside it that are not stored are left for a later run
(``deferred``). The rows
to fetch are cut into chunks of ``rows_per_shard`` rows; each chunk is one Ray Data block, and
one Ray Data task (:func:`_fetch_block`) requests its cutouts with many requests in flight
(:mod:`hicatalog.cutouts.http_client`) and commits the good ones as one shard
``DIR/part-<run>-<chunk>.parquet`` (:func:`hicatalog.cutouts.ownership.commit_shard`: it
appears whole, and only while no newer run has claimed ``DIR``; the target's ``z`` and label
columns joined in). Only the small per-row status table travels back
to the driver, which writes ``DIR/_fetch_status.parquet``: one row per target that this run
handled (already present, fetched, or failed); deferred rows are not in it. Each run replaces
the previous run's status table, and also writes the same rows with a ``run_id`` column to
``DIR/_fetch_history/<run_id>.parquet``, which is never rewritten: the outcome of every row in
every run stays on record. A run that tried rows and stored none, or where more than
``max_failed_fraction`` of the rows it tried failed, has failed (:attr:`FetchCounts.failure`
says why); ``hicatalog fetch`` then exits 1, so a scheduled fetch notices.

Where the rules live
--------------------
- :mod:`hicatalog.cutouts.targets`: reading the target list; which columns ride along.
- :mod:`hicatalog.sky`: which positions are usable (finite RA of any value, wrapped to
  [0, 360) deg; finite Dec within [-90, 90] deg). Other rows are ``bad_coordinates``, never
  requested.
- :mod:`hicatalog.cutouts.ratelimit`: ``max_rps`` per host, one Ray actor shared by all tasks;
  every retry takes a slot too.
- :mod:`hicatalog.cutouts.http_client`: requests, ``ceil(concurrency / n_tasks)`` in flight
  per task with ``n_tasks = min(tasks, number of chunks)`` tasks in parallel; retries with
  exponential backoff and jitter; every body checked to be an RGB JPEG of the expected size.
- :mod:`hicatalog.cutouts.ownership`: each run claims ``DIR`` (``DIR/_fetch_runs/``) before
  it lists what is stored, sealing the runs before it, and a task's shard becomes visible
  only if its commit lands before its run is sealed, so Ray workers that outlive a killed
  driver never store rows the newer run fetches again (that module says what is guaranteed).

On a multi-node cluster ``out`` must be storage every node sees (``s3://``, ``gs://``, a
shared file system): the tasks write the shards where they run.

Statuses (column ``status`` of ``_fetch_status.parquet``; ``error`` holds the detail):
``ok``, ``already_present``, ``bad_coordinates`` (see :data:`BAD_COORDINATES_ERROR`),
``http_<code>`` (an answer other than 200; 5xx and 429 only after the retries),
``timeout``, ``connection_error``, ``truncated_response`` (body shorter than announced),
``fetch_error`` (anything unexpected, with the exception text), ``superseded`` (fetched but
not stored: a newer run had claimed the directory, e.g. the task outlived its killed run, or
an earlier attempt of a retried task stored its chunk without the row),
and the image statuses of :mod:`hicatalog.cutouts.decode`: ``empty_image``, ``not_jpeg``,
``corrupt_image``, ``truncated_image``, ``wrong_size``, ``grayscale``, ``bad_mode``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from hicatalog import __version__, storage
from hicatalog.cutouts.http_client import ClientSettings, FetchResult, RetryPolicy, fetch_images
from hicatalog.cutouts.ownership import claim_output, commit_shard, finish_run, new_run_id
from hicatalog.cutouts.ratelimit import start_rate_limiter
from hicatalog.cutouts.services import CutoutService, make_service
from hicatalog.cutouts.shards import list_shards, shard_writer
from hicatalog.cutouts.targets import STRATUM_COLUMN, label_columns, limit_subset, read_targets
from hicatalog.errors import InputError
from hicatalog.runtime import init_ray
from hicatalog.schemas import SchemaError
from hicatalog.sky import valid_coordinates, wrap_ra
from hicatalog.storage import absolute, filesystem_and_path, join, write_parquet_atomic

__all__ = [
    "FETCH_STATUSES",
    "STATUS_FILE",
    "HISTORY_DIR",
    "tried_and_failed",
    "STATUS_SCHEMA",
    "BAD_COORDINATES_ERROR",
    "existing_object_ids",
    "FetchCounts",
    "fetch_cutouts",
    "run_failure",
    "show_result",
]

log = logging.getLogger("hicatalog.cutouts.fetch")

#: Name of the per-row status table written beside the shards (ignored by ``list_shards``).
STATUS_FILE = "_fetch_status.parquet"
#: Directory of the per-run status tables, ``<run_id>.parquet`` each (ignored by ``list_shards``).
HISTORY_DIR = "_fetch_history"

#: Every status a row can end with, plus ``"http_<code>"`` for HTTP answers other than 200.
FETCH_STATUSES = (
    "ok", "already_present", "bad_coordinates", "timeout", "connection_error",
    "truncated_response", "fetch_error", "superseded", "empty_image", "not_jpeg", "corrupt_image",
    "truncated_image", "wrong_size", "grayscale", "bad_mode",
)

#: The ``error`` of a ``bad_coordinates`` row: the rule of :func:`hicatalog.sky.valid_coordinates`.
BAD_COORDINATES_ERROR = (
    "not requested: a position needs a finite RA (any value; it is wrapped to [0, 360) deg) "
    "and a finite Dec within [-90, 90] deg"
)

#: The status table: one row per target this run handled (``deferred`` rows are not in it).
#: ``http_status``: last HTTP code (null if no answer); ``attempts``: requests sent (0: none);
#: ``n_bytes``: JPEG size when ``ok``; ``elapsed_s``: seconds from the start of its block's
#: requests to this row's outcome (0 for ``bad_coordinates``, null for ``already_present``);
#: ``shard``: file name of the shard holding the row when ``ok``; ``url``: the cutout URL
#: (null when not requested).
STATUS_SCHEMA = pa.schema([
    pa.field("object_id", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("http_status", pa.int32()),
    pa.field("attempts", pa.int32(), nullable=False),
    pa.field("n_bytes", pa.int64()),
    pa.field("elapsed_s", pa.float32()),
    pa.field("shard", pa.string()),
    pa.field("url", pa.string()),
])

_CHUNK_COL = "__chunk"


# ---------------------------------------------------------------------------------------------
# what the output directory already holds


def existing_object_ids(out_dir: str, check_unique: bool = False) -> set[str]:
    """object_ids stored in the cutout shards under ``out_dir`` (empty if there are none).

    With ``check_unique``, an id stored in more than one row is logged as an error (fetch runs
    never store an id twice, :mod:`hicatalog.cutouts.ownership`; shards added by other means
    can).

    Raises
    ------
    SchemaError: a shard under ``out_dir`` does not match the ``cutouts`` contract.
    """
    fs, p = filesystem_and_path(out_dir)
    if fs.get_file_info(p).type != pafs.FileType.Directory:
        return set()
    try:
        files = list_shards(out_dir, contract="cutouts")
    except SchemaError as exc:
        if "contains no Parquet shards" in str(exc):
            return set()
        raise
    ids: set[str] = set()
    n_rows = 0
    for f in files:
        col = storage.read_parquet(f, ["object_id"]).column("object_id")
        n_rows += len(col)
        ids.update(col.to_pylist())
    if check_unique and n_rows != len(ids):
        log.error(
            "%s: %d object_ids are stored more than once (were shards added here other than "
            "by hicatalog fetch?)", out_dir, n_rows - len(ids),
        )
    return ids


# ---------------------------------------------------------------------------------------------
# fetching one block (runs inside a Ray Data task)


@dataclass(frozen=True)
class _TaskSettings:
    """What a fetch task needs: the service, where to write (``out_dir``), the run that may
    write there (``run_id``) and the HTTP client's settings."""

    service: CutoutService
    out_dir: str
    run_id: str
    client: ClientSettings


def _fetch_block(block: pa.Table, settings: _TaskSettings, limiter: Any) -> pa.Table:
    """Fetch one chunk of targets, write its shard, return its status rows.

    ``block``: target rows of one chunk plus the chunk number in ``__chunk``. Returns one
    :data:`STATUS_SCHEMA` row per target row, in block order.
    """
    chunk = int(block.column(_CHUNK_COL)[0].as_py())
    block = block.drop_columns([_CHUNK_COL])
    ra = block.column("ra").to_numpy(zero_copy_only=False)
    dec = block.column("dec").to_numpy(zero_copy_only=False)
    usable = valid_coordinates(ra, dec)
    urls = [settings.service.url(float(r), float(d)) if u else None
            for r, d, u in zip(wrap_ra(ra), dec, usable, strict=True)]
    requested = [u for u in urls if u is not None]
    fetched = iter(asyncio.run(fetch_images(requested, settings.client, limiter))
                   if requested else [])
    results = [next(fetched) if u is not None
               else FetchResult("bad_coordinates", BAD_COORDINATES_ERROR) for u in urls]

    ok = np.array([r.status == "ok" for r in results], dtype=bool)
    shard_name = _commit_block_shard(block, results, ok, settings, chunk) if ok.any() else None
    return pa.Table.from_pylist(
        [
            {
                "object_id": oid,
                "status": r.status,
                "error": r.error,
                "http_status": r.http_status,
                "attempts": r.attempts,
                "n_bytes": len(r.data) if r.data is not None else None,
                "elapsed_s": r.elapsed_s,
                "shard": shard_name if r.status == "ok" else None,
                "url": u,
            }
            for oid, r, u in zip(block.column("object_id").to_pylist(), results, urls, strict=True)
        ],
        schema=STATUS_SCHEMA,
    )


def _commit_block_shard(
    block: pa.Table, results: list[FetchResult], ok: np.ndarray, settings: _TaskSettings,
    chunk: int,
) -> str | None:
    """Commit the rows of ``block`` where ``ok`` (bool, one per row) as the chunk's shard
    (:func:`hicatalog.cutouts.ownership.commit_shard`); return its file name, or None when a
    newer run owns the directory (the fetched rows become ``superseded``). ``results`` are
    brought in line with what the shard holds: when an earlier attempt of this chunk (a task
    Ray retried) committed first, its rows are the ones stored.
    """
    commit = commit_shard(settings.out_dir, settings.run_id, chunk,
                          shard_writer(_block_shard(block, results, ok, settings.service.survey),
                                       f"part-{settings.run_id}-{chunk:05d}"))
    if commit is None:  # a newer run owns DIR (this task outlived a killed driver)
        for r in results:
            if r.status == "ok":
                r.status, r.error, r.data = "superseded", "a newer fetch run owns the output", None
        return None
    if not commit.own:
        stored = set(storage.read_parquet(join(settings.out_dir, commit.name), ["object_id"])
                     .column("object_id").to_pylist())
        for oid, r in zip(block.column("object_id").to_pylist(), results, strict=True):
            if oid in stored:
                r.status, r.error = "ok", None
            elif r.status == "ok":
                r.status, r.error, r.data = "superseded", (
                    "not stored: an earlier attempt of this task stored the chunk without it"
                ), None
    return commit.name


def _block_shard(block: pa.Table, results: list[FetchResult], ok: np.ndarray,
                 survey: str) -> pa.Table:
    """The shard of the rows of ``block`` where ``ok``: ``object_id``, ``ra``, ``dec`` as in
    the target list (``ra`` not wrapped), ``z`` (null when the target list has none),
    ``survey``, ``image`` (the JPEG bytes as served) and every
    :func:`~hicatalog.cutouts.targets.label_columns` column the target list has."""
    idx = np.flatnonzero(ok)
    rows = block.take(pa.array(idx))
    cols = {
        "object_id": rows.column("object_id"),
        "ra": rows.column("ra"),
        "dec": rows.column("dec"),
        "z": rows.column("z") if "z" in rows.column_names else pa.nulls(len(idx), pa.float64()),
        "survey": pa.array([survey] * len(idx), pa.string()),
        "image": pa.array([results[i].data for i in idx], pa.binary()),
    }
    for c in label_columns():
        if c in rows.column_names:
            cols[c] = rows.column(c)
    return pa.table(cols)


# ---------------------------------------------------------------------------------------------
# the job


def _status_rows(ids: list[str], status: str, error: str | None) -> pa.Table:
    """:data:`STATUS_SCHEMA` rows for targets this run did not request (``attempts`` 0)."""
    n = len(ids)
    return pa.table(
        {
            "object_id": pa.array(ids, pa.string()),
            "status": pa.array([status] * n, pa.string()),
            "error": pa.array([error] * n, pa.string()),
            "http_status": pa.nulls(n, pa.int32()),
            "attempts": pa.array([0] * n, pa.int32()),
            "n_bytes": pa.nulls(n, pa.int64()),
            "elapsed_s": pa.nulls(n, pa.float32()),
            "shard": pa.nulls(n, pa.string()),
            "url": pa.nulls(n, pa.string()),
        },
        schema=STATUS_SCHEMA,
    )


def _write_status(table: pa.Table, out_dir: str, run_id: str) -> str:
    """Write this run's status rows as the latest table and, with a ``run_id`` column, as the
    run's own file in :data:`HISTORY_DIR`; returns the latest table's path."""
    base = out_dir.rstrip("/")
    history = table.append_column("run_id", pa.array([run_id] * table.num_rows, pa.string()))
    write_parquet_atomic(history, f"{base}/{HISTORY_DIR}/{run_id}.parquet")
    return write_parquet_atomic(table, f"{base}/{STATUS_FILE}")


def tried_and_failed(counts: dict[str, int]) -> tuple[int, int]:
    """``(tried, failed)`` rows of a run from its status counts: tried = every row the run
    handled except ``already_present`` (and ``deferred``, not handled); failed = tried minus
    ``ok``."""
    tried = sum(v for k, v in counts.items() if k not in ("already_present", "deferred"))
    return tried, tried - counts.get("ok", 0)


class FetchCounts(dict):
    """The rows of one fetch run per status (a ``dict``, keys sorted), and ``failure``: why
    the run failed (:func:`run_failure`), or None."""

    failure: str | None = None


def fetch_cutouts(
    targets: str,
    out: str,
    *,
    survey: str = "sdss",
    base_url: str | None = None,
    layer: str = "dr8",
    max_rps: float | None = None,
    concurrency: int = 32,
    timeout_s: float = 30.0,
    retries: int = 5,
    rows_per_shard: int = 2048,
    image_size: int | None = None,
    pixscale: float | None = None,
    backoff_s: float = 0.5,
    backoff_max_s: float = 30.0,
    tasks: int = 4,
    user_agent: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    max_failed_fraction: float = 0.1,
) -> FetchCounts:
    """Fetch every target of the list ``targets`` not yet in ``out``; write shards and the
    status table ``out/_fetch_status.parquet``.

    The keyword parameters are the options of ``hicatalog fetch`` (its ``--help`` says what
    each does). The service is ``survey``'s (``base_url``, ``layer``, ``image_size``,
    ``pixscale``); ``concurrency`` requests are in flight over ``tasks`` Ray Data tasks,
    at most ``max_rps`` per second, each with ``timeout_s``, ``retries`` and a backoff from
    ``backoff_s`` to ``backoff_max_s``; shards hold ``rows_per_shard`` rows; ``limit`` and
    ``seed`` choose a fixed subset.

    Returns
    -------
    :class:`FetchCounts`: rows per status, keys sorted: ``ok`` (fetched and stored now),
    ``already_present`` (skipped), ``deferred`` (not stored and outside the ``limit`` subset;
    only when there are some), and one key per failure status; they sum to the target list's
    row count. Its ``failure`` says why the run failed (more than ``max_failed_fraction`` of
    the rows tried, or every one, failed), or is None.

    Raises
    ------
    InputError / SchemaError: a bad target list (see
        :func:`hicatalog.cutouts.targets.read_targets`); ConfigError: bad service settings.
    RuntimeError: the status rows do not account for every target exactly once.
    """
    out = absolute(out)  # the Ray tasks write under out: the same place whatever their cwd
    service = make_service(survey, base_url, layer, image_size, pixscale)
    client = _client_settings(service, timeout_s, RetryPolicy(retries, backoff_s, backoff_max_s),
                              user_agent, max_rps)
    table = read_targets(targets)
    n_total = table.num_rows
    run_id = new_run_id()
    claim_output(out, run_id)  # before listing what is stored: see hicatalog.cutouts.ownership
    present = existing_object_ids(out)
    ids = table.column("object_id").to_pylist()
    is_present = np.array([i in present for i in ids], dtype=bool)
    chosen = limit_subset(table, limit, seed)
    todo = table.filter(pa.array(chosen & ~is_present))
    n_deferred = int((~chosen & ~is_present).sum())
    if limit is not None and limit < n_total:
        _log_limit_subset(table, chosen, is_present, limit, seed)
    present_ids = [i for i, p in zip(ids, is_present, strict=True) if p]
    parts = [_status_rows(present_ids, "already_present", None)]
    log.info(
        "fetch %s cutouts from %s: %d targets, %d already present, %d to fetch",
        service.survey, service.host, n_total, int(is_present.sum()), todo.num_rows,
    )
    if todo.num_rows:
        settings = _TaskSettings(service=service, out_dir=out, run_id=run_id, client=client)
        parts.append(_run_ray_fetch(todo, settings, rows_per_shard=rows_per_shard, tasks=tasks,
                                    concurrency=concurrency, max_rps=max_rps))
    finish_run(out, run_id)  # every task is done: seal this run's log, delete what is pending
    status = pa.concat_tables(parts)
    result = _counted(status, n_deferred, n_total)
    _write_status(status, out, run_id)
    log.info("%s now holds %d cutouts", out, len(existing_object_ids(out, check_unique=True)))
    result.failure = run_failure(result, out, max_failed_fraction)
    return result


def _client_settings(service: Any, timeout_s: float, policy: RetryPolicy,
                     user_agent: str | None, max_rps: float | None) -> ClientSettings:
    """The HTTP client of each fetch task (``in_flight``: set per task by _run_ray_fetch)."""
    return ClientSettings(
        image_size_px=service.size, in_flight=1, timeout_s=timeout_s, policy=policy,
        user_agent=user_agent or f"hicatalog/{__version__} (cutout fetch)",
        rate_interval_s=1.0 / max_rps if max_rps else 0.0)


def _counted(status: pa.Table, n_deferred: int, n_total: int) -> FetchCounts:
    """Rows per status of ``status`` plus ``deferred``, checked to account for each of the
    ``n_total`` targets exactly once."""
    if status.num_rows + n_deferred != n_total or (
        pc.count_distinct(status.column("object_id")).as_py() != status.num_rows
    ):
        raise RuntimeError(
            f"fetch accounting failed: {status.num_rows} status rows for {n_total} targets"
        )
    counts = Counter(status.column("status").to_pylist())
    if n_deferred:
        counts["deferred"] = n_deferred
    return FetchCounts(sorted(counts.items()))


def _log_limit_subset(targets: pa.Table, chosen: np.ndarray, is_present: np.ndarray,
                      limit: int, seed: int) -> None:
    """One line: the ``limit`` subset's rows per stratum, and how many are stored already."""
    if STRATUM_COLUMN in targets.column_names:
        per = Counter(v for v, c in zip(targets.column(STRATUM_COLUMN).to_pylist(), chosen,
                                        strict=True) if c)
        strata = ", ".join(f"{k}={v}" for k, v in sorted(per.items(), key=lambda kv: str(kv[0])))
    else:
        strata = f"no {STRATUM_COLUMN!r} column: seeded random"
    log.info("limit=%d (seed %d): the subset holds %s; %d of them already stored",
             limit, seed, strata, int((chosen & is_present).sum()))


def _run_ray_fetch(todo: pa.Table, settings: _TaskSettings, *, rows_per_shard: int, tasks: int,
                   concurrency: int, max_rps: float | None) -> pa.Table:
    """Fetch ``todo`` (target rows) with Ray Data in chunks of ``rows_per_shard`` rows, on at
    most ``tasks`` tasks that share ``concurrency`` requests in flight (each task's share
    replaces ``settings.client.in_flight``) and a limiter of ``max_rps`` per second; return
    their :data:`STATUS_SCHEMA` rows."""
    import ray

    init_ray()
    chunks = []
    for k, start in enumerate(range(0, todo.num_rows, rows_per_shard)):
        part = todo.slice(start, rows_per_shard)
        chunks.append(part.append_column(_CHUNK_COL, pa.array([k] * part.num_rows, pa.int64())))
    n_tasks = min(tasks, len(chunks))
    settings = dataclasses.replace(settings, client=dataclasses.replace(
        settings.client, in_flight=max(1, math.ceil(concurrency / n_tasks))))
    limiter = start_rate_limiter(max_rps) if max_rps is not None else None
    try:
        ds = ray.data.from_arrow(chunks).map_batches(
            _fetch_block,
            batch_size=None,
            batch_format="pyarrow",
            fn_kwargs={"settings": settings, "limiter": limiter},
            num_cpus=0.25,
            compute=ray.data.TaskPoolStrategy(size=n_tasks),
        )
        out: list[pa.Table] = []
        done = 0
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            out.append(batch)
            done += batch.num_rows
            log.info("fetched %d / %d rows", done, todo.num_rows)
    finally:
        if limiter is not None:
            ray.kill(limiter)
    return pa.concat_tables(out).cast(STATUS_SCHEMA) if out else _status_rows([], "ok", None)


def show_result(counts: FetchCounts, params: dict[str, Any]) -> None:
    """What ``hicatalog fetch`` prints after :func:`fetch_cutouts`: the counts as
    ``status=n`` pairs on one line; then an InputError (the command prints one line and exits
    1) when the run failed (:attr:`FetchCounts.failure`).

    Rows that failed are listed in ``OUT/_fetch_status.parquet``; running the same command
    again retries them and skips what is already stored.
    """
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    if counts.failure:
        raise InputError(counts.failure, params=("max_failed_fraction",))


def run_failure(counts: dict[str, int], out: str, max_failed_fraction: float) -> str | None:
    """Why a run with these status counts, into ``out``, failed, or None: it tried rows and
    stored none, or more than ``max_failed_fraction`` of the rows it tried failed. Fewer
    failures are logged as a warning."""
    tried, n_failed = tried_and_failed(counts)
    if not n_failed:
        return None
    failed = {k: v for k, v in counts.items() if k not in ("ok", "already_present", "deferred")}
    where = join(out, STATUS_FILE)
    if n_failed == tried or n_failed > max_failed_fraction * tried:
        return (f"{n_failed} of the {tried} rows tried failed ({failed}), more than "
                f"max_failed_fraction={max_failed_fraction:g} allows; see {where}")
    log.warning("%d of the %d rows tried failed (%s); see %s", n_failed, tried, failed, where)
    return None
