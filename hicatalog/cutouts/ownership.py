"""Which fetch run owns an output directory: the id in ``DIR/_fetch_run``.

Each ``hicatalog fetch`` run gets a new id (:func:`new_run_id`) and writes it to
``DIR/_fetch_run`` (:func:`claim_output`) before it lists the object_ids ``DIR`` already
holds. A fetch task checks :func:`owning_run` just before it writes its shard and writes only
if the id is still its run's. So the Ray workers of a killed driver, which may live on and
finish their block, write no shard once a newer run has claimed ``DIR``: that run did not see
their rows when it listed ``DIR`` and fetches them itself. The check and the write are two steps: a claim that lands
between them is not seen, so the rule narrows the window for a duplicate to the time one
shard takes to write; ``existing_object_ids(DIR, check_unique=True)`` in
:mod:`hicatalog.cutouts.fetch` logs an error if one ever happens.
"""

from __future__ import annotations

import uuid

from hicatalog.storage import filesystem_and_path, utc_timestamp, write_atomic

__all__ = ["RUN_FILE", "new_run_id", "claim_output", "owning_run"]

#: File in the output directory that holds the id of the run that owns it (UTF-8 text).
RUN_FILE = "_fetch_run"


def new_run_id() -> str:
    """A fresh run id: UTC start time to the microsecond and 6 random hex digits, e.g.
    ``20250101T120000123456-1a2b3c`` (no dot: it is part of shard file names).

    Ids sort by start time (the per-run files of ``_fetch_history/`` list in run order).
    """
    return utc_timestamp(compact=True) + "-" + uuid.uuid4().hex[:6]


def claim_output(out_dir: str, run_id: str) -> None:
    """Record ``run_id`` as the owner of ``out_dir`` (created if missing), replacing any
    earlier owner atomically; tasks of older runs stop writing shards there."""
    write_atomic(out_dir.rstrip("/") + f"/{RUN_FILE}", run_id.encode())


def owning_run(out_dir: str) -> str | None:
    """The id of the run that owns ``out_dir``, or ``None`` if no run claimed it (or the
    claim cannot be read)."""
    fs, base = filesystem_and_path(out_dir)
    try:
        with fs.open_input_stream(f"{base}/{RUN_FILE}") as fh:
            return fh.read().decode().strip()
    except (FileNotFoundError, OSError):
        return None
