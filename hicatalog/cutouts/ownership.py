"""Which fetch run may add shards to an output directory: a commit log per run, fenced by
put-if-absent, so that no ``object_id`` is ever stored twice by two runs.

Every ``hicatalog fetch`` run gets a new id (:func:`new_run_id`). What it may write is decided
by its log, a sequence of numbered slots ``DIR/_fetch_runs/RUN/log/NNNNNNNN.json`` that are
only ever created with :func:`hicatalog.storage.create_exclusive` (a local link, or an S3
``If-None-Match: *`` PutObject) and never replaced:

- **claim** (:func:`claim_output`, by the driver, before it lists what ``DIR`` holds): the
  run creates slot 0 of its own log, then lists ``_fetch_runs/`` and **seals** every other
  run it finds, by creating the next free slot of that run's log with a ``sealed`` record,
  and **settles** it: every shard that run committed is made visible (below), its pending
  files deleted. Only then does the driver list the object_ids ``DIR`` holds.
- **commit** (:func:`commit_shard`, by a fetch task): a task whose run is sealed writes
  nothing; otherwise the shard goes whole to a pending file under ``_fetch_runs/RUN/pending/``
  (which every reader skips: names starting with ``_``), the chunk's first such file is named in ``_fetch_runs/RUN/chunks/NNNNN.json``
  (created exclusively, so a retried task uses the same bytes), and the task creates the
  first free slot of its run's log with a ``commit`` record. A slot is taken only after
  reading the one before it: a task that finds the log's last slot ``sealed`` (or loses a
  slot to a ``sealed`` record) commits nothing, and its rows come back ``superseded``. Only
  a committed shard is copied to its visible name ``DIR/part-RUN-CHUNK.parquet`` (a link on
  a disk, a CopyObject on S3), by the task or by whoever settles the run; every copy of one
  name is of the same pending bytes, so a second copy changes nothing.
- **finish** (:func:`finish_run`, by the driver after its last task): the run seals and
  settles its own log.

What is guaranteed, on a disk and on S3 (whose creates, reads and listings are strongly
consistent): **no object_id is visible in shards of two runs**. A slot past a ``sealed``
record is never created (every writer reads the slot before the one it takes, and a lost
create means the slot exists), so every commit of a sealed run precedes its seal and is made
visible before the sealer lists ``DIR``. Of two runs, at least one sees the other's claim
when it lists ``_fetch_runs/`` (each creates its claim before it lists), so it seals that run
before it lists ``DIR``: either the other run's rows are visible to it, or the other run can
no longer commit. Shards are not lost: a committed shard is visible once its task finishes
or, if the task died, once the next run claims ``DIR``. Two runs started at the same moment
may seal each other; both then store nothing (their rows come back ``superseded``, the run
fails) and the next run fetches the rows. ``existing_object_ids(DIR, check_unique=True)`` in
:mod:`hicatalog.cutouts.fetch` still logs an error if an id is ever stored twice.

``DIR/_fetch_run`` holds the id of the newest run that claimed ``DIR`` (:func:`owning_run`),
for people and for fetches of earlier hicatalog versions, which check it before writing; it
decides nothing here. Directories of earlier versions, without ``_fetch_runs/``, read as
before. Each claim lists ``_fetch_runs/`` once (one request per 1000 objects on S3) and reads
the log of each run not yet settled; a settled run (``_fetch_runs/RUN/settled``) costs
nothing more. Conditional writes exist for local paths and ``s3://`` only
(:mod:`hicatalog.storage`); another URL scheme is refused when claimed.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hicatalog import storage
from hicatalog.errors import InputError, WriteConflict
from hicatalog.storage import filesystem_and_path, utc_timestamp, write_atomic

__all__ = ["RUN_FILE", "RUNS_DIR", "Commit", "new_run_id", "shard_name", "claim_output",
           "commit_shard", "finish_run", "owning_run"]

log = logging.getLogger("hicatalog.cutouts.ownership")

#: File in the output directory that holds the id of the newest run that claimed it (UTF-8).
RUN_FILE = "_fetch_run"
#: Directory of the runs' logs, chunk names and pending shards, ``RUNS_DIR/<run_id>/...``.
RUNS_DIR = "_fetch_runs"
#: Reads of one run's log slots in flight when a run is settled.
_THREADS = 16


def new_run_id() -> str:
    """A fresh run id: UTC start time to the microsecond and 6 random hex digits, e.g.
    ``20250101T120000123456-1a2b3c`` (no dot: it is part of shard file names).

    Ids sort by start time (the per-run files of ``_fetch_history/`` list in run order).
    """
    return utc_timestamp(compact=True) + "-" + uuid.uuid4().hex[:6]


def shard_name(run_id: str, chunk: int) -> str:
    """The visible file name of chunk ``chunk``'s shard of run ``run_id``."""
    return f"part-{run_id}-{chunk:05d}.parquet"


# ---------------------------------------------------------------------------------------------
# where things are


def _run_dir(out_dir: str, run_id: str) -> str:
    return storage.join(out_dir, RUNS_DIR, run_id)


def _slot(out_dir: str, run_id: str, i: int) -> str:
    return storage.join(_run_dir(out_dir, run_id), "log", f"{i:08d}.json")


def _chunk_file(out_dir: str, run_id: str, chunk: int) -> str:
    return storage.join(_run_dir(out_dir, run_id), "chunks", f"{chunk:05d}.json")


def _record(kind: str, **fields: object) -> bytes:
    return storage.json_bytes({"kind": kind, **fields, "at": utc_timestamp()})


@dataclass
class _RunFiles:
    """What one run's directory under ``_fetch_runs/`` holds (one listing)."""

    slots: set[int] = field(default_factory=set)
    leftovers: list[str] = field(default_factory=list)  # pending shards and chunk files
    settled: bool = False

    @property
    def n_slots(self) -> int:
        """Length of the log: slots 0..n-1 all exist (a log has no gaps)."""
        n = 0
        while n in self.slots:
            n += 1
        return n


def _scan(out_dir: str, run_id: str | None = None) -> dict[str, _RunFiles]:
    """Every run under ``out_dir/_fetch_runs`` (or only ``run_id``'s) with its files."""
    base = storage.join(out_dir, RUNS_DIR) if run_id is None else _run_dir(out_dir, run_id)
    runs: dict[str, _RunFiles] = {}
    for path in storage.list_files(base, recursive=True):
        parts = storage.relative(path, base).split("/")
        if run_id is not None:
            parts = [run_id, *parts]
        if len(parts) < 2:
            continue
        files = runs.setdefault(parts[0], _RunFiles())
        if parts[1] == "log" and len(parts) == 3 and parts[2].endswith(".json"):
            try:
                files.slots.add(int(parts[2][:-5]))
            except ValueError:
                continue
        elif parts[1] in ("pending", "chunks"):
            files.leftovers.append(path)
        elif parts[1] == "settled":
            files.settled = True
    return runs


# ---------------------------------------------------------------------------------------------
# the log


def _open_length(out_dir: str, run_id: str, n: int | None = None) -> int | None:
    """The length of ``run_id``'s log if it is open (claimed, not sealed), else None. ``n``:
    its length as already listed (listed here if not given); the last slot is read."""
    if n is None:
        n = _scan(out_dir, run_id).get(run_id, _RunFiles()).n_slots
    if n == 0 or _read_slot(out_dir, run_id, n - 1)["kind"] == "sealed":
        return None
    return n


def _append(out_dir: str, run_id: str, record: bytes, n: int) -> bool:
    """Create the first free slot of ``run_id``'s log holding ``record``, unless the log is
    sealed; whether it was created. ``n``: a length the log had when it was open
    (:func:`_open_length`).

    Slot ``n`` is tried first and each lost slot is read: a ``sealed`` record ends the log,
    so nothing is ever appended after one (a writer reads the slot before the one it takes,
    and a slot it loses exists).
    """
    while True:
        try:
            storage.create_exclusive(_slot(out_dir, run_id, n), record)
            return True
        except WriteConflict:
            if _read_slot(out_dir, run_id, n)["kind"] == "sealed":
                return False
            n += 1


def _read_slot(out_dir: str, run_id: str, i: int) -> dict:
    return storage.read_json(_slot(out_dir, run_id, i))


def _seal(out_dir: str, run_id: str, by: str, n: int | None = None) -> None:
    """Seal ``run_id``'s log (``n``: its length as listed, if it was); nothing if it is
    sealed or was never claimed."""
    n = _open_length(out_dir, run_id, n)
    if n is not None:
        _append(out_dir, run_id, _record("sealed", by=by), n)


def _settle(out_dir: str, run_id: str) -> None:
    """Make every shard that the sealed run ``run_id`` committed visible, then delete its
    pending shards and chunk files and mark it settled. Its log is final (sealed), so this
    reads it once; any number of processes may settle the same run at once. Only the files
    listed here are deleted: a late task of the run may be writing more (of no use; the next
    claim settles them), and its temporary files and directories are left alone."""
    files = _scan(out_dir, run_id).get(run_id, _RunFiles())
    with ThreadPoolExecutor(_THREADS) as pool:
        records = list(pool.map(lambda i: _read_slot(out_dir, run_id, i), range(files.n_slots)))
    committed = sorted({r["chunk"] for r in records if r["kind"] == "commit"})
    visible = {storage.basename(f) for f in storage.list_files(out_dir, suffix=".parquet")}
    for chunk in committed:
        final = storage.join(out_dir, shard_name(run_id, chunk))
        if shard_name(run_id, chunk) in visible:
            continue
        try:
            pending = storage.read_json(_chunk_file(out_dir, run_id, chunk))["pending"]
        except FileNotFoundError:
            log.error("%s: run %s committed %s, but it is missing and so is its pending copy",
                      out_dir, run_id, shard_name(run_id, chunk))
            continue
        _publish(storage.join(_run_dir(out_dir, run_id), "pending", pending), final)
    _delete(files.leftovers)
    write_atomic(storage.join(_run_dir(out_dir, run_id), "settled"), b"")


def _delete(paths: list[str]) -> None:
    """Delete the files ``paths`` (on one file system) that are still there; on an object
    store in batches (one request per 1000 on S3)."""
    if paths and storage.is_url(paths[0]):
        import fsspec

        fsspec.core.url_to_fs(paths[0])[0].rm(paths)
        return
    for path in paths:
        storage.delete_file(path)


def _publish(pending: str, final: str) -> None:
    """Give the committed pending shard ``pending`` its visible name ``final``: a hard link
    on a disk (an existing ``final`` is kept), a server-side copy on an object store (of the
    same bytes as any earlier copy). A pending file already deleted is fine if ``final``
    exists (whoever deleted it made ``final`` first)."""
    fs, src = filesystem_and_path(pending)
    dst = filesystem_and_path(final)[1]
    try:
        if storage.is_url(pending):
            fs.copy_file(src, dst)
        else:
            os.link(src, dst)
    except FileExistsError:
        return
    except OSError:
        if not storage.is_file(final):
            raise


# ---------------------------------------------------------------------------------------------
# the three steps of a run


def claim_output(out_dir: str, run_id: str) -> None:
    """Claim ``out_dir`` (created if missing) for run ``run_id``: create its log, then seal and
    settle every other run that has one there. Call it before listing what ``out_dir`` holds.

    Raises
    ------
    InputError: ``out_dir`` is a URL other than ``s3://`` (no conditional writes).
    RuntimeError: ``run_id`` has claimed ``out_dir`` before (a run id is used once).
    """
    if storage.is_url(out_dir) and not out_dir.startswith("s3://"):
        raise InputError(f"fetch --out {out_dir}: a fetch needs conditional writes, which "
                         "hicatalog has for local paths and s3:// only", params=("out",))
    try:
        storage.create_exclusive(_slot(out_dir, run_id, 0), _record("claim", run=run_id))
    except WriteConflict:
        raise RuntimeError(f"fetch run {run_id} has claimed {out_dir} before: a run id "
                           "is used once") from None
    write_atomic(storage.join(out_dir, RUN_FILE), run_id.encode())
    for other, files in sorted(_scan(out_dir).items()):
        if other == run_id or (files.settled and not files.leftovers):
            continue
        if not files.settled:
            _seal(out_dir, other, run_id, files.n_slots)
        _settle(out_dir, other)


@dataclass(frozen=True)
class Commit:
    """A committed shard: ``name`` (its file name in the output directory) and ``own``:
    whether it holds the bytes this task gave (False: an earlier attempt of the same chunk
    committed its own bytes first; read the shard for what it holds)."""

    name: str
    own: bool


def commit_shard(out_dir: str, run_id: str, chunk: int,
                 data: bytes | Callable[[Any], None]) -> Commit | None:
    """Commit ``data`` (a Parquet shard's bytes, or a function that writes them to the sink
    it is given, as :func:`hicatalog.storage.write_atomic` takes) as chunk ``chunk``'s shard
    of run ``run_id`` in ``out_dir`` and make it visible; None if the run is sealed (a newer
    run claimed ``out_dir``): nothing of it becomes visible then."""
    n = _open_length(out_dir, run_id)
    if n is None:  # sealed before this task wrote anything
        return None
    pending_dir = storage.join(_run_dir(out_dir, run_id), "pending")
    mine = f"{shard_name(run_id, chunk)[:-len('.parquet')]}.{uuid.uuid4().hex}.parquet"
    storage.write_atomic(storage.join(pending_dir, mine), data)  # a new name: appears whole
    pending = mine
    try:
        storage.create_exclusive(_chunk_file(out_dir, run_id, chunk),
                                 storage.json_bytes({"pending": mine}))
    except WriteConflict:  # an earlier attempt of this chunk got there first: its bytes count
        storage.delete_file(storage.join(pending_dir, mine))
        try:
            pending = storage.read_json(_chunk_file(out_dir, run_id, chunk))["pending"]
        except FileNotFoundError:  # deleted since: the run was sealed and settled
            return None
    if not _append(out_dir, run_id, _record("commit", chunk=chunk), n):
        return None  # sealed: what it left is deleted when the run is settled
    name = shard_name(run_id, chunk)
    _publish(storage.join(pending_dir, pending), storage.join(out_dir, name))
    return Commit(name=name, own=pending == mine)


def finish_run(out_dir: str, run_id: str) -> None:
    """End run ``run_id`` after its last task: seal its own log and settle it (its pending
    files deleted)."""
    _seal(out_dir, run_id, run_id)
    _settle(out_dir, run_id)


def owning_run(out_dir: str) -> str | None:
    """The id of the newest run that claimed ``out_dir`` (``DIR/_fetch_run``), or ``None``
    if no run claimed it (or the claim cannot be read). Informational: the logs decide."""
    fs, base = filesystem_and_path(out_dir)
    try:
        with fs.open_input_stream(f"{base}/{RUN_FILE}") as fh:
            return fh.read().decode().strip()
    except (FileNotFoundError, OSError):
        return None
