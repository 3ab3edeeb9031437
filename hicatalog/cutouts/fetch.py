"""``hicatalog fetch``: download cutouts politely and reliably into Parquet image shards.

The catalog (a ``labels`` table, or any Parquet/CSV with ``object_id``, ``ra``, ``dec``) is cut
into chunks of ``rows_per_shard`` rows; each chunk is one Ray Data block, and one Ray Data task
fetches it with many requests in flight (aiohttp), checks every response, and writes the good
cutouts as one shard (``DIR/part-<run>-<chunk>.parquet``, written atomically with
:func:`hicatalog.cutouts.shards.write_shard`, labels joined in). Only the small per-row status
table travels back to the driver, which writes ``DIR/_fetch_status.parquet``: exactly one row
per catalog row.

Politeness and reliability
--------------------------
- Rate limit per host (``max_rps``): one small Ray actor per host hands out send slots spaced
  ``1/max_rps`` apart (a virtual-clock token bucket with burst 1), shared by every task, so the
  limit holds for the whole job however many tasks run; each retry takes a slot too, and a
  slot missed by a descheduled task is booked again rather than spent in a burst.
- In flight: ``concurrency`` requests in total, split evenly over the ``tasks`` parallel tasks.
- Retries: timeouts, connection errors, truncated bodies, 5xx and 429 are retried up to
  ``retries`` times with exponential backoff (``backoff_s * 2**attempt``, capped at
  ``backoff_max_s``) and jitter (the delay is drawn uniformly from [d/2, d]); a ``Retry-After``
  header is honoured. Other 4xx answers are final and never retried.
- Every body is checked to be an RGB JPEG of the expected size with
  :func:`hicatalog.cutouts.decode.decode_jpeg` (decoded at 1/8 scale, which still reads the
  whole entropy-coded stream and so catches truncation).
- Resumable: object_ids already present in ``DIR``'s shards are skipped (status
  ``already_present``); failed rows of an earlier run are tried again. Each run claims ``DIR``
  (``DIR/_fetch_run``) before listing what is stored, and a task writes its shard only while
  its run still owns ``DIR``: Ray workers that outlive a killed driver cannot duplicate rows.
- On a multi-node cluster ``--out`` must be storage every node sees (``s3://``, ``gs://``, a
  shared file system): the tasks write the shards where they run.

Statuses (column ``status`` of ``_fetch_status.parquet``; ``error`` holds the detail):
``ok``, ``already_present``, ``bad_coordinates`` (NaN/inf or |dec| > 90, never requested),
``http_<code>`` (a 4xx, or a 5xx/429 still failing after the retries), ``timeout``,
``connection_error``, ``truncated_response`` (body shorter than announced), ``fetch_error``
(anything unexpected, with the exception text), ``superseded`` (fetched by a task that outlived
its killed run; a newer run owns the directory, so nothing was written), and the image statuses of
:mod:`hicatalog.cutouts.decode`: ``empty_image``, ``not_jpeg``, ``corrupt_image``,
``truncated_image``, ``wrong_size``, ``grayscale``, ``bad_mode``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hicatalog import __version__
from hicatalog.config import FetchConfig
from hicatalog.cutouts.decode import ImageDecodeError, decode_jpeg
from hicatalog.cutouts.services import CutoutService, make_service
from hicatalog.cutouts.shards import list_shards, write_shard
from hicatalog.runtime import init_ray
from hicatalog.schemas import SchemaError, table_spec
from hicatalog.storage import filesystem_and_path, write_atomic, write_parquet_atomic

__all__ = [
    "FETCH_STATUSES",
    "STATUS_FILE",
    "STATUS_SCHEMA",
    "RetryPolicy",
    "read_catalog",
    "existing_object_ids",
    "fetch_cutouts",
    "main",
]

log = logging.getLogger("hicatalog.cutouts.fetch")

#: Name of the per-row status table written beside the shards (ignored by ``list_shards``).
STATUS_FILE = "_fetch_status.parquet"
#: Id of the run that currently owns the output directory.
RUN_FILE = "_fetch_run"

FETCH_STATUSES = (
    "ok", "already_present", "bad_coordinates", "timeout", "connection_error",
    "truncated_response", "fetch_error", "superseded", "empty_image", "not_jpeg", "corrupt_image",
    "truncated_image", "wrong_size", "grayscale", "bad_mode",
)  # plus "http_<code>"

#: One row per catalog row.
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

#: Catalog columns carried into the shards when present (the cutouts contract's label columns).
LABEL_COLUMNS = ("z", "m_true", "detected", "log_mstar", "one_plus_delta5", "dataset")

_TRANSIENT_IMAGE = ("truncated_image", "empty_image")
_CHUNK_COL = "__chunk"


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and jitter.

    ``retries``: further attempts after the first; ``backoff_s``: base delay (s);
    ``backoff_max_s``: cap (s). Attempt ``k`` (0-based) that failed waits a delay drawn
    uniformly from ``[d/2, d]`` with ``d = min(backoff_max_s, backoff_s * 2**k)``, or the
    server's ``Retry-After`` if that is longer.
    """

    retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None, rng: Any = random) -> float:
        d = min(self.backoff_max_s, self.backoff_s * (2.0 ** attempt))
        wait = rng.uniform(0.5 * d, d)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.backoff_max_s))
        return wait


# ---------------------------------------------------------------------------------------------
# catalog in, shards already present


def read_catalog(path: str) -> pa.Table:
    """Read the catalog to fetch: Parquet (file or directory) or CSV, local or URL.

    Needs ``object_id`` (cast to string), ``ra`` and ``dec`` (deg, cast to float64); every other
    column is kept, and the label columns joined into the shards (``z``, ``m_true``,
    ``detected``, ``log_mstar``, ``one_plus_delta5``, ``dataset``) are cast to their ``cutouts``
    contract types.

    Raises
    ------
    ValueError: the file is missing or unreadable, a required column is missing, an
        ``object_id`` is null, or object_ids are not unique (the message lists examples).
    """
    fs, p = filesystem_and_path(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        raise ValueError(f"catalog {path!r} does not exist (expected Parquet or CSV)")
    try:
        if p.lower().endswith((".csv", ".csv.gz")):
            with fs.open_input_stream(p, compression="detect") as fh:
                table = pacsv.read_csv(
                    fh,
                    convert_options=pacsv.ConvertOptions(
                        column_types={"object_id": pa.string()}, strings_can_be_null=True
                    ),
                )
        else:
            table = pq.read_table(p, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"catalog {path!r} cannot be read as Parquet or CSV: {exc}") from None
    missing = [c for c in ("object_id", "ra", "dec") if c not in table.column_names]
    if missing:
        raise ValueError(
            f"catalog {path!r} is missing column(s) {missing}; expected object_id, ra, dec "
            f"(found {table.column_names})"
        )
    try:
        table = table.set_column(
            table.column_names.index("object_id"), "object_id",
            table.column("object_id").cast(pa.string()),
        )
        for c in ("ra", "dec"):
            table = table.set_column(
                table.column_names.index(c), c, table.column(c).cast(pa.float64())
            )
    except pa.ArrowException as exc:
        raise ValueError(f"catalog {path!r}: cannot read object_id/ra/dec: {exc}") from None
    spec = table_spec("cutouts")
    for c in LABEL_COLUMNS:
        if c in table.column_names:
            want = spec.field(c).type
            try:
                table = table.set_column(table.column_names.index(c), c,
                                         table.column(c).cast(want))
            except pa.ArrowException:
                raise ValueError(
                    f"catalog {path!r}: label column {c!r} has type {table.column(c).type}, "
                    f"expected {want} (it is copied into the cutout shards)"
                ) from None
    n_null = table.column("object_id").null_count
    if n_null:
        raise ValueError(f"catalog {path!r}: {n_null} row(s) have no object_id")
    counts = pc.value_counts(table.column("object_id"))
    dup = [v["values"].as_py() for v in counts if v["counts"].as_py() > 1]
    if dup:
        raise ValueError(
            f"catalog {path!r}: object_id must be unique, {len(dup)} value(s) repeat "
            f"(e.g. {dup[:5]})"
        )
    return table


def existing_object_ids(out_dir: str, check_unique: bool = False) -> set[str]:
    """object_ids already stored in the cutout shards under ``out_dir`` (empty if none).

    With ``check_unique``, an id stored in more than one row is logged as an error (it can only
    happen when two fetches write into the same directory at the same time).
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
        ffs, fp = filesystem_and_path(f)
        col = pq.read_table(fp, columns=["object_id"], filesystem=ffs).column("object_id")
        n_rows += len(col)
        ids.update(col.to_pylist())
    if check_unique and n_rows != len(ids):
        log.error(
            "%s: %d object_ids are stored more than once (were two fetches writing here at "
            "the same time?)", out_dir, n_rows - len(ids),
        )
    return ids


# ---------------------------------------------------------------------------------------------
# the rate limit shared by all tasks


def _rate_limiter_class():
    import ray

    @ray.remote(num_cpus=0)
    class HostRateLimiter:
        """Send slots spaced ``1/rate`` seconds apart for one host (a token bucket, burst 1).

        ``reserve()`` returns the wall-clock time (``time.time()``, s) of the caller's slot;
        the caller sleeps until then, so a slow reply from this actor does not shift the slot.
        Slots are granted in order and the long-run rate is exactly ``rate``; a slot is never
        in the past, so idle time is not saved up for a later burst.
        """

        def __init__(self, rate: float):
            self.interval = 1.0 / rate
            self.next_slot = time.time()
            self.granted = 0

        def reserve(self) -> float:
            slot = max(time.time(), self.next_slot)
            self.next_slot = slot + self.interval
            self.granted += 1
            return slot

        def stats(self) -> dict[str, float]:
            return {"granted": self.granted, "interval_s": self.interval}

    return HostRateLimiter


# ---------------------------------------------------------------------------------------------
# fetching one block (runs inside a Ray Data task)


@dataclass(frozen=True)
class _TaskSettings:
    service: CutoutService
    out_dir: str
    run_id: str
    in_flight: int
    timeout_s: float
    policy: RetryPolicy
    user_agent: str
    rate_interval_s: float = 0.0  # 1 / max_rps (0: no rate limit)


@dataclass
class _Result:
    status: str
    error: str | None = None
    http_status: int | None = None
    attempts: int = 0
    data: bytes | None = None
    elapsed_s: float = 0.0


def _check_image(data: bytes, size: int) -> tuple[str, str | None]:
    try:
        decode_jpeg(data, expected_size=size, out_size=max(1, size // 8))
    except ImageDecodeError as exc:
        return exc.status, str(exc)
    return "ok", None


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


#: A send slot missed by more than this (s) is booked again (see :func:`_wait_for_slot`).
SLOT_TOLERANCE_S = 0.05


async def _wait_for_slot(limiter, interval_s: float, max_rebook: int = 8) -> None:
    """Sleep until a send slot of the host's rate limiter.

    A coroutine that wakes up late (its process was descheduled) would send together with the
    ones whose slots come after it; so a slot missed by more than ``SLOT_TOLERANCE_S`` (or half
    an interval, if longer) is given up and a new one booked (at most ``max_rebook`` times).
    Any window of T seconds then sees at most ``max_rps * (T + SLOT_TOLERANCE_S)`` requests
    (+5% over one second).
    """
    tolerance = max(SLOT_TOLERANCE_S, 0.5 * interval_s)
    for _ in range(max_rebook + 1):
        slot = await limiter.reserve.remote()
        delay = slot - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.time() - slot <= tolerance:
            return


async def _fetch_one(session, url: str, st: _TaskSettings, limiter, sem) -> _Result:
    import aiohttp

    t0 = time.monotonic()
    res = _Result("fetch_error", "not attempted")
    for attempt in range(st.policy.retries + 1):
        retry_after = None
        async with sem:
            if limiter is not None:
                await _wait_for_slot(limiter, st.rate_interval_s)
            res.attempts, res.http_status = attempt + 1, None
            try:
                async with session.get(url) as resp:
                    res.http_status = resp.status
                    if resp.status != 200:
                        await resp.read()
                        res.status = f"http_{resp.status}"
                        res.error = f"HTTP {resp.status} {resp.reason}"
                        transient = resp.status >= 500 or resp.status == 429
                        retry_after = _retry_after(resp.headers)
                    else:
                        data = await resp.read()
                        status, err = _check_image(data, st.service.size)
                        res.status, res.error = status, err
                        res.data = data if status == "ok" else None
                        transient = status in _TRANSIENT_IMAGE
            except asyncio.TimeoutError:
                res.status, res.error = "timeout", f"no complete answer within {st.timeout_s:g} s"
                transient = True
            except aiohttp.ClientPayloadError as exc:
                res.status, res.error = "truncated_response", f"body cut short: {exc}"
                transient = True
            except (aiohttp.ClientConnectionError, OSError) as exc:
                res.status, res.error = "connection_error", f"{type(exc).__name__}: {exc}"
                transient = True
            except Exception as exc:  # noqa: BLE001 - one bad row must never kill the task
                res.status, res.error = "fetch_error", f"{type(exc).__name__}: {exc}"
                transient = False
        if res.status == "ok" or not transient or attempt == st.policy.retries:
            break
        await asyncio.sleep(st.policy.delay(attempt, retry_after))
    res.elapsed_s = time.monotonic() - t0
    return res


async def _fetch_all(urls: list[str | None], st: _TaskSettings, limiter) -> list[_Result]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=st.timeout_s)
    connector = aiohttp.TCPConnector(limit=st.in_flight, limit_per_host=st.in_flight)
    sem = asyncio.Semaphore(st.in_flight)
    headers = {"User-Agent": st.user_agent}
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, headers=headers) as s:
        jobs = [
            _fetch_one(s, u, st, limiter, sem) if u is not None else _skip_bad_coordinates()
            for u in urls
        ]
        return list(await asyncio.gather(*jobs))


async def _skip_bad_coordinates() -> _Result:
    return _Result("bad_coordinates", "ra/dec not finite or |dec| > 90 deg; not requested")


def _valid_coordinates(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    return np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)


def _fetch_block(block: pa.Table, settings: _TaskSettings, limiter) -> pa.Table:
    """Fetch one chunk, write its shard, return its status rows (``STATUS_SCHEMA``)."""
    chunk = int(block.column(_CHUNK_COL)[0].as_py())
    block = block.drop_columns([_CHUNK_COL])
    ra = block.column("ra").to_numpy(zero_copy_only=False)
    dec = block.column("dec").to_numpy(zero_copy_only=False)
    good = _valid_coordinates(ra, dec)
    urls = [settings.service.url(float(r) % 360.0, float(d)) if g else None
            for r, d, g in zip(ra, dec, good, strict=True)]
    results = asyncio.run(_fetch_all(urls, settings, limiter))

    ok = np.array([r.status == "ok" for r in results], dtype=bool)
    shard_name = None
    if ok.any() and _current_run(settings.out_dir) != settings.run_id:
        # A newer run owns DIR (this task outlived a killed driver): writing would duplicate rows.
        for r in results:
            if r.status == "ok":
                r.status, r.error, r.data = "superseded", "a newer fetch run owns the output", None
        ok[:] = False
    if ok.any():
        idx = np.flatnonzero(ok)
        rows = block.take(pa.array(idx))
        cols = {
            "object_id": rows.column("object_id"),
            "ra": rows.column("ra"),
            "dec": rows.column("dec"),
            "z": rows.column("z") if "z" in rows.column_names
            else pa.nulls(len(idx), pa.float64()),
            "survey": pa.array([settings.service.survey] * len(idx), pa.string()),
            "image": pa.array([results[i].data for i in idx], pa.binary()),
        }
        for c in LABEL_COLUMNS:
            if c != "z" and c in rows.column_names:
                cols[c] = rows.column(c)
        path = write_shard(pa.table(cols), settings.out_dir, "part",
                           f"{settings.run_id}-{chunk:05d}")
        shard_name = os.path.basename(path)

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


# ---------------------------------------------------------------------------------------------
# the job


def _status_rows(ids: list[str], status: str, error: str | None) -> pa.Table:
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


def _current_run(out_dir: str) -> str | None:
    fs, base = filesystem_and_path(out_dir)
    try:
        with fs.open_input_stream(f"{base}/{RUN_FILE}") as fh:
            return fh.read().decode().strip()
    except (FileNotFoundError, OSError):
        return None


def _claim_output(out_dir: str, run_id: str) -> None:
    """Record ``run_id`` as the owner of ``out_dir`` (tasks of older runs stop writing)."""
    write_atomic(out_dir.rstrip("/") + f"/{RUN_FILE}", run_id.encode())


def _write_status(table: pa.Table, out_dir: str) -> str:
    return write_parquet_atomic(table, out_dir.rstrip("/") + f"/{STATUS_FILE}")


def fetch_cutouts(cfg: FetchConfig) -> dict[str, int]:
    """Fetch every catalog row not yet in ``cfg.out``; write shards and the status table.

    Returns
    -------
    Counts per status over all catalog rows (``ok`` = fetched now, ``already_present`` =
    skipped, failures by status); ``sum(counts.values())`` equals the catalog's row count
    (minus rows left for later by ``cfg.limit``, counted as ``deferred``).

    Raises
    ------
    ValueError: bad catalog (see :func:`read_catalog`) or bad service settings.
    """
    service = make_service(cfg.survey, cfg.base_url, cfg.layer, cfg.image_size, cfg.pixscale)
    catalog = read_catalog(cfg.catalog)
    n_total = catalog.num_rows
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    _claim_output(cfg.out, run_id)  # before listing what is stored: see _fetch_block
    present = existing_object_ids(cfg.out)
    ids = catalog.column("object_id").to_pylist()
    is_present = np.array([i in present for i in ids], dtype=bool)
    todo = catalog.filter(pa.array(~is_present))
    deferred = None
    if cfg.limit is not None and todo.num_rows > cfg.limit:
        deferred = todo.slice(cfg.limit)
        todo = todo.slice(0, cfg.limit)
    present_ids = [i for i, p in zip(ids, is_present, strict=True) if p]
    parts = [_status_rows(present_ids, "already_present", None)]
    log.info(
        "fetch %s cutouts from %s: %d rows, %d already present, %d to fetch",
        service.survey, service.host, n_total, int(is_present.sum()), todo.num_rows,
    )

    if todo.num_rows:
        parts.append(_run_ray_fetch(todo, service, cfg, run_id))
    status = pa.concat_tables(parts)
    if status.num_rows + (deferred.num_rows if deferred is not None else 0) != n_total or (
        pc.count_distinct(status.column("object_id")).as_py() != status.num_rows
    ):
        raise RuntimeError(
            f"fetch accounting failed: {status.num_rows} status rows for {n_total} catalog rows"
        )
    _write_status(status, cfg.out)
    n_stored = len(existing_object_ids(cfg.out, check_unique=True))
    log.info("%s now holds %d cutouts", cfg.out, n_stored)
    counts = Counter(status.column("status").to_pylist())
    if deferred is not None:
        counts["deferred"] = deferred.num_rows
    return dict(sorted(counts.items()))


def _run_ray_fetch(
    todo: pa.Table, service: CutoutService, cfg: FetchConfig, run_id: str
) -> pa.Table:
    import ray

    init_ray()
    chunks = []
    for k, start in enumerate(range(0, todo.num_rows, cfg.rows_per_shard)):
        part = todo.slice(start, cfg.rows_per_shard)
        chunks.append(part.append_column(_CHUNK_COL, pa.array([k] * part.num_rows, pa.int64())))
    n_tasks = min(cfg.tasks, len(chunks))
    settings = _TaskSettings(
        service=service,
        out_dir=cfg.out,
        run_id=run_id,
        in_flight=max(1, math.ceil(cfg.concurrency / n_tasks)),
        timeout_s=cfg.timeout_s,
        policy=RetryPolicy(cfg.retries, cfg.backoff_s, cfg.backoff_max_s),
        user_agent=cfg.user_agent or f"hicatalog/{__version__} (cutout fetch)",
        rate_interval_s=1.0 / cfg.max_rps if cfg.max_rps else 0.0,
    )
    limiter = None
    if cfg.max_rps is not None:
        limiter = _rate_limiter_class().remote(cfg.max_rps)
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


def main(cfg: FetchConfig) -> int:
    """CLI entry (``hicatalog fetch``): fetch, log the counts, return 0 when the run finished.

    Rows that failed are listed in ``OUT/_fetch_status.parquet``; running the same command
    again retries them and skips what is already stored.
    """
    counts = fetch_cutouts(cfg)
    failed = {k: v for k, v in counts.items() if k not in ("ok", "already_present", "deferred")}
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    if failed:
        log.warning(
            "%d rows not fetched (%s); see %s", sum(failed.values()), failed,
            os.path.join(cfg.out, STATUS_FILE),
        )
    return 0
