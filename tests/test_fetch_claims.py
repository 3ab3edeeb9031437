"""Fetch ownership (hicatalog.cutouts.ownership) raced for real: the tasks of an old fetch run
that outlived its driver keep committing shards while a newer run claims the directory, lists
it and fetches what is missing; two processes, many trials, on a disk and on the S3 test
server. Invariants per trial: no object_id stored twice, every id stored, every shard the old
run was told it committed is stored, none it was refused is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fetchrace import NEW, OLD, UNIVERSE, shard

from hicatalog import storage
from hicatalog.cutouts import ownership
from hicatalog.cutouts.fetch import existing_object_ids
from hicatalog.cutouts.shards import list_shards

RACER = Path(__file__).resolve().with_name("fetchrace.py")
#: (trials, jitter per storage call, window after the start of an old run's commit in which
#: the new run's claim lands), per store: the window spans about one commit.
RACE = {"local": (32, 0.004, 0.02), "s3": (8, 0.002, 0.06)}


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return request.param, str(tmp_path / "out")
    return request.param, storage.join(request.getfixturevalue("s3_bucket"), "out")


def _stored(out: str) -> list[tuple[str, str]]:
    """(shard file name, object_id) of every row visible in ``out``'s shards."""
    rows = []
    for f in list_shards(out):
        rows += [(storage.basename(f), i) for i in
                 storage.read_parquet(f, ["object_id"]).column("object_id").to_pylist()]
    return rows


def test_old_tasks_racing_a_new_claim_store_each_id_once(root, tmp_path):
    kind, base = root
    trials, jitter_s, window_s = RACE[kind]
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = {role: subprocess.Popen(
        [sys.executable, str(RACER), role, base, str(trials), str(jitter_s), str(window_s),
         str(sync)], stdout=subprocess.PIPE, text=True) for role in ("old", "new")}
    outs = {role: p.communicate(timeout=300)[0] for role, p in procs.items()}
    assert all(p.returncode == 0 for p in procs.values()), outs
    old, new = (json.loads(outs[r]) for r in ("old", "new"))
    for t in range(trials):
        rows = _stored(storage.join(base, str(t)))
        ids = [i for _, i in rows]
        assert len(ids) == len(set(ids)), (t, sorted(rows), old[t], new[t])  # none twice
        assert sorted(ids) == sorted(UNIVERSE), (t, sorted(rows))  # none lost
        files = {f for f, _ in rows}
        for c in old[t]["won"]:
            assert ownership.shard_name(OLD, c) in files, (t, c, old[t])
        for c in old[t]["refused"]:
            assert ownership.shard_name(OLD, c) not in files, (t, c, old[t])
        assert new[t]["committed"] == bool(old[t]["refused"]), (t, old[t], new[t])
    # the claims really landed inside the old run's commits, not only before or after them
    assert any(r["won"] and r["refused"] for r in old), old


def test_claim_seals_settles_and_a_retried_chunk_keeps_its_first_bytes(tmp_path):
    """The single steps on a disk: a retried chunk commits the first attempt's bytes; a claim
    seals the old run (its next commit is refused) and makes a committed shard whose task died
    before publishing it visible; the finished run leaves nothing pending."""
    out = str(tmp_path / "out")
    ownership.claim_output(out, OLD)
    first = ownership.commit_shard(out, OLD, 0, shard(["c0-0", "c0-1"]))
    retry = ownership.commit_shard(out, OLD, 0, shard(["c0-0"]))
    assert (first.name, first.own, retry.name, retry.own) == (
        ownership.shard_name(OLD, 0), True, ownership.shard_name(OLD, 0), False)
    assert existing_object_ids(out) == {"c0-0", "c0-1"}
    # chunk 1 committed, its task killed before the shard got its visible name
    ownership.commit_shard(out, OLD, 1, shard(["c1-0"]))
    Path(out, ownership.shard_name(OLD, 1)).unlink()
    with pytest.raises(RuntimeError, match="a run id is used once"):
        ownership.claim_output(out, OLD)
    ownership.claim_output(out, NEW)
    assert existing_object_ids(out) == {"c0-0", "c0-1", "c1-0"}  # settled before listing
    assert ownership.commit_shard(out, OLD, 2, shard(["c2-0"])) is None  # sealed
    assert ownership.owning_run(out) == NEW
    ownership.commit_shard(out, NEW, 0, shard(["c2-0"]))
    ownership.finish_run(out, NEW)
    assert not storage.list_files(storage.join(out, ownership.RUNS_DIR, NEW, "pending"))
    assert ownership.commit_shard(out, NEW, 1, shard(["c3-0"])) is None  # finished: sealed
    assert sorted(existing_object_ids(out, check_unique=True)) == ["c0-0", "c0-1", "c1-0", "c2-0"]


def test_a_url_without_conditional_writes_is_refused(tmp_path):
    from hicatalog.errors import InputError

    with pytest.raises(InputError, match="conditional writes"):
        ownership.claim_output("gs://bucket/out", NEW)
