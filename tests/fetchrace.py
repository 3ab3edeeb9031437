"""A racing fetch run for tests/test_fetch_claims.py, run as its own process:

    python tests/fetchrace.py old|new ROOT TRIALS JITTER_S WINDOW_S SYNC_DIR

For each trial t (the output directory ROOT/t) the two racers meet at a barrier (files in
SYNC_DIR), then:

- ``old`` is an old run whose driver is gone and whose tasks live on: it has claimed ROOT/t
  (before the barrier) and commits the shards of CHUNKS chunks, IDS_PER_CHUNK object_ids each
  (``c<chunk>-<j>``), one after another, without finishing the run;
- ``new`` is a newer run: it waits until the old run starts committing chunk t % CHUNKS,
  pauses for a random time in [0, WINDOW_S] (so its claim lands anywhere in the old
  run's commits) and claims ROOT/t, lists the object_ids stored there, commits one
  shard of every id of the universe not stored, and finishes.

Every storage call of the protocol is delayed by a random pause in [0, JITTER_S], widening each
window between a check and a write. Prints JSON: per trial, the chunks the old run committed
and those it was refused (``old``), or whether the new run's commit landed (``new``).
"""

from __future__ import annotations

import functools
import json
import os
import random
import sys
import time

import pyarrow as pa

from hicatalog import storage
from hicatalog.cutouts import ownership
from hicatalog.cutouts.fetch import existing_object_ids
from hicatalog.cutouts.shards import shard_writer

CHUNKS = 4
IDS_PER_CHUNK = 2
OLD, NEW = "20000101T000000000000-000old", "20000101T000000000001-000new"
UNIVERSE = [f"c{c}-{j}" for c in range(CHUNKS) for j in range(IDS_PER_CHUNK)]


def shard(ids: list[str]) -> bytes:
    """A cutout shard's bytes holding ``ids``."""
    n = len(ids)
    buf = pa.BufferOutputStream()
    shard_writer(pa.table({
        "object_id": ids, "ra": [10.0] * n, "dec": [5.0] * n, "z": [0.01] * n,
        "survey": ["sdss"] * n, "image": [b"\xff\xd8 not decoded here"] * n,
    }), "race")(buf)
    return buf.getvalue().to_pybytes()


#: The functions of hicatalog.storage through which the fetch protocol reads and writes.
STORAGE_CALLS = ("create_exclusive", "read_json", "list_files", "is_file", "read_bytes",
                 "write_atomic", "delete_dir", "delete_file")


def jittered(jitter_s: float) -> None:
    """Delay every storage call the protocol makes (they all go through hicatalog.storage)."""
    for name in STORAGE_CALLS:
        fn = getattr(storage, name)

        @functools.wraps(fn)
        def slow(*a, _fn=fn, **k):
            time.sleep(random.uniform(0, jitter_s))
            return _fn(*a, **k)

        setattr(storage, name, slow)


def barrier(sync: str, role: str, t: int) -> None:
    open(os.path.join(sync, f"{role}-{t}"), "w").close()
    wait_for(os.path.join(sync, f"{'new' if role == 'old' else 'old'}-{t}"))


def wait_for(path: str, timeout_s: float = 60.0) -> None:
    """Wait until ``path`` exists; exit 1 after ``timeout_s`` (the other racer died)."""
    deadline = time.time() + timeout_s
    while not os.path.exists(path):
        if time.time() > deadline:
            sys.exit(f"waited {timeout_s:.0f} s for {path}: the other racer is gone")
        time.sleep(0.0005)


def old(out: str, sync: str, t: int) -> dict:
    won, refused = [], []
    for c in range(CHUNKS):
        open(os.path.join(sync, f"old-{t}-{c}"), "w").close()  # the new run aims at this
        ids = UNIVERSE[c * IDS_PER_CHUNK:(c + 1) * IDS_PER_CHUNK]
        got = ownership.commit_shard(out, OLD, c, shard(ids))
        (won if got is not None else refused).append(c)
    return {"won": won, "refused": refused}


def new(out: str, window_s: float, sync: str, t: int) -> dict:
    wait_for(os.path.join(sync, f"old-{t}-{t % CHUNKS}"))
    time.sleep(random.uniform(0, window_s))
    ownership.claim_output(out, NEW)
    present = existing_object_ids(out)
    missing = [i for i in UNIVERSE if i not in present]
    got = ownership.commit_shard(out, NEW, 0, shard(missing)) if missing else None
    ownership.finish_run(out, NEW)
    return {"present": sorted(present), "committed": got is not None}


if __name__ == "__main__":
    role, root, trials, jitter_s, window_s, sync = sys.argv[1:7]
    jittered(float(jitter_s))
    results = []
    for t in range(int(trials)):
        out = storage.join(root, str(t))
        if role == "old":
            ownership.claim_output(out, OLD)  # the old run's driver claimed, then died
        barrier(sync, role, t)
        results.append(old(out, sync, t) if role == "old" else new(out, float(window_s), sync, t))
    print(json.dumps(results))
