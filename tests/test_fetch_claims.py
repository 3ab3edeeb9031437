"""Fetch ownership (hicatalog.cutouts.ownership) raced for real: the tasks of an old fetch run
that outlived its driver keep committing shards while a newer run claims the directory, lists
it and fetches what is missing, on a disk and on the S3 test server: a newer run placed after
each storage call of one commit in turn, and two processes racing with jitter over many
trials. Invariants: no object_id stored twice, every id stored, every shard the old run was
told it committed is stored, none it was refused is. With the old rule (check the owner, then
write the shard) both placed tests store ids twice, and so does the disk race."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fetchrace import NEW, OLD, STORAGE_CALLS, UNIVERSE, shard

from hicatalog import storage
from hicatalog.cutouts import ownership
from hicatalog.cutouts.fetch import existing_object_ids
from hicatalog.cutouts.shards import list_shards

RACER = Path(__file__).resolve().with_name("fetchrace.py")
#: (trials, jitter per storage call, window after the start of an old run's commit in which
#: the new run's claim lands), per store: the window spans about one commit.
RACE = {"local": (24, 0.004, 0.02), "s3": (6, 0.002, 0.06)}


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


def test_a_claim_after_each_step_of_a_commit_stores_each_id_once(root, monkeypatch):
    """Every interleaving of one commit with a whole newer run, in order: the old run's task
    stops after its k-th storage call (k = 0: before the first) while a newer run claims,
    lists, fetches what is missing and finishes; then the task goes on. For every k: each id
    stored once, and the task's shard stored exactly when it was told it committed."""
    _, base = root
    old_thread: list[threading.Thread] = []
    at, paused, resume = [0], threading.Event(), threading.Event()
    calls = [0]

    def stop():
        paused.set()
        resume.wait()

    def stop_after(fn):
        def wrapper(*a, **k):
            mine = old_thread and threading.current_thread() is old_thread[0]
            if mine and calls[0] == at[0] == 0:
                stop()
            out = fn(*a, **k)
            if mine:
                calls[0] += 1
                if calls[0] == at[0]:
                    stop()
            return out
        return wrapper

    for name in STORAGE_CALLS:
        monkeypatch.setattr(storage, name, stop_after(getattr(storage, name)))
    ids = UNIVERSE[:2]
    for k in range(40):
        out = storage.join(base, f"after-{k}")
        ownership.claim_output(out, OLD)
        at[0], calls[0] = k, 0
        paused.clear(), resume.clear()
        result = []
        old_thread[:] = [threading.Thread(
            target=lambda o=out, r=result: r.append(ownership.commit_shard(o, OLD, 0, shard(ids))))]
        old_thread[0].start()
        while not paused.wait(0.01) and old_thread[0].is_alive():
            pass
        if not paused.is_set():  # the commit made fewer than k calls: every step was tried
            old_thread[0].join()
            break
        ownership.claim_output(out, NEW)
        missing = [i for i in ids if i not in existing_object_ids(out)]
        if missing:
            ownership.commit_shard(out, NEW, 0, shard(missing))
        ownership.finish_run(out, NEW)
        resume.set()
        old_thread[0].join()
        rows = _stored(out)
        assert sorted(i for _, i in rows) == ids, (k, rows)
        committed = result[0] is not None
        assert (ownership.shard_name(OLD, 0) in {f for f, _ in rows}) == committed, (k, rows)
    assert k >= 5, k  # a commit makes several storage calls: each was a stopping point


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
