"""Racing writers of one catalog, for tests/test_commit_race.py and
benchmarks/bench_commit_race.py.

:func:`run_trials` runs ``n`` trials in fresh catalogs under ``root`` (a local directory or
an ``s3://`` URL). Each catalog starts with version 1 (60 galaxies) and a dead publish whose
claim expired (``version=9``). Three processes, started once, race in every trial:

- publishers ``a`` and ``b``: each adds a build from version 1 (``publish_tables`` with
  ``previous`` pinned at version 1; 40 and 50 galaxies, the first 40 the same), so the
  second to commit must rebase; the hook of the commit protocol
  (:data:`hicatalog.catalog.commit.on_step`) pauses ``b`` for a random time up to ``jitter_s``
  at one step, in turn: after its version claim, after its data write, between its manifest
  read and its swap; ``a`` pauses at a random step;
- ``vacuum``: vacuums the catalog (grace 0) three times at random moments.

and a reader thread in this process reads the current version over and over (resolve the
manifest, read every file, compare with the rows the manifest lists).

Run as a process (``python tests/commitrace.py ROLE ROOT N JITTER_S``) it is one racer: it
waits for ``ROOT/trial-T/go`` before each trial and writes ``ROOT/trial-T/ROLE.json``.
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
import threading
import time

from hicatalog import storage
from hicatalog.catalog import commit

POINTS = ("version-claimed", "data-written", "before-swap")
ROLES = ("a", "b", "vacuum")
OPTIONS = {"partition_rows": 150, "row_group_rows": 40, "margin_arcsec": 0}
HERE = os.path.dirname(os.path.abspath(__file__))


def trial_dir(root: str, t: int) -> str:
    return storage.join(root, f"trial-{t:03d}")


def _wait_for(path: str, timeout_s: float = 600.0) -> None:
    t0 = time.time()
    while not storage.is_file(path):
        if time.time() - t0 > timeout_s:
            raise TimeoutError(path)
        time.sleep(0.05)


def _pause_at(point: str | None, jitter_s: float):
    chosen = point or random.choice(POINTS)

    def hook(step: str) -> None:
        if step == chosen:
            time.sleep(random.uniform(0, jitter_s))
    return hook


def _race(role: str, cat: str, t: int, jitter_s: float) -> dict:
    from builders import rows

    from hicatalog.catalog.manifest import Manifest
    from hicatalog.catalog.publish import publish_tables

    if role == "vacuum":
        deleted = []
        for _ in range(3):
            time.sleep(random.uniform(0, jitter_s))
            deleted += commit.vacuum(cat, grace_hours=0).unlisted
        return {"deleted": deleted}
    base = Manifest.read(cat)
    assert base.version == 1
    commit.on_step = _pause_at(POINTS[t % 3] if role == "b" else None, jitter_s)
    table = rows(40, 100 + t, "g") if role == "a" else rows(50, 200 + t, "g")
    m = publish_tables(cat, [table], build_id=role, previous=base, **OPTIONS)
    return {"version": m.version, "builds": m.current().build_ids}


def racer(role: str, root: str, n: int, jitter_s: float) -> None:
    sys.path.insert(0, HERE)
    for t in range(n):
        cat = trial_dir(root, t)
        _wait_for(storage.join(cat, "go"))
        try:
            out = {"ok": True, **_race(role, cat, t, jitter_s)}
        except Exception as exc:  # reported to the driver, which fails the trial
            out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        storage.write_json_atomic(storage.join(cat, f"{role}.json"), out)


# ----------------------------------------------------------------------------- the driver


def _seed(cat: str) -> None:
    """Version 1 (60 galaxies) and a publish that died yesterday (``version=9``)."""
    from builders import rows

    from hicatalog.catalog.publish import publish_tables

    publish_tables(cat, [rows(60, 1, "s")], build_id="seed", **OPTIONS)
    storage.write_json_atomic(storage.join(cat, "version=9", commit.CLAIM_FILE),
                              {"version": 9, "expires_unix": time.time() - 1})
    storage.write_atomic(storage.join(cat, "version=9", "hi_catalog", "partial.parquet"), b"x")


class Reader(threading.Thread):
    """Reads the current version of ``self.cat`` over and over; counts reads and failures."""

    def __init__(self):
        super().__init__(daemon=True)
        self.cat: str | None = None
        self.reads, self.failures, self.stop = 0, [], False

    def run(self) -> None:
        from hicatalog.catalog.reader import open_catalog

        while not self.stop:
            cat = self.cat
            if cat is None:
                time.sleep(0.01)
                continue
            try:
                c = open_catalog(cat)
                n = sum(storage.read_parquet(f, ["object_id"]).num_rows for f in c.files)
                if n != c.rows:
                    self.failures.append(f"{cat} version {c.version}: {n} rows, listed {c.rows}")
                self.reads += 1
                time.sleep(0.02)  # leave the test server time for the writers
            except Exception as exc:
                self.failures.append(f"{cat}: {type(exc).__name__}: {exc}")


def check_trial(cat: str) -> list[str]:
    """What is wrong with the catalog ``cat`` after a trial (empty: nothing): every
    successful commit listed, numbers unique and increasing, every listed version complete
    (rows in its files = rows listed = rows its builds staged), the current version holds
    every galaxy once (but ``duplicate_id`` repeats)."""
    from builders import rows

    from hicatalog.catalog.manifest import Manifest, staged_parts
    from hicatalog.catalog.reader import open_catalog, read_catalog

    problems = []
    results = {r: storage.read_json(storage.join(cat, f"{r}.json")) for r in ROLES}
    problems += [f"{r}: {x['error']}" for r, x in results.items() if not x["ok"]]
    m = Manifest.read(cat)
    listed = [v.version for v in m.versions]
    if listed != sorted(set(listed)) or listed[0] != 1:
        problems.append(f"versions {listed} not unique and increasing from 1")
    for r in ("a", "b"):
        if results[r]["ok"] and results[r]["version"] not in listed:
            problems.append(f"{r} committed version {results[r]['version']}, not listed")
    for v in m.versions:
        files_rows = sum(storage.read_parquet(f, ["object_id"]).num_rows
                         for f in open_catalog(cat, version=v.version).files)
        staged = sum(n for b in m.builds(v.version) for _, n in staged_parts(b))
        if not files_rows == v.rows == staged:
            problems.append(f"version {v.version}: {files_rows} rows in files, {v.rows} "
                            f"listed, {staged} staged")
    t = int(cat.rstrip("/").rsplit("-", 1)[1])
    expected = collections.Counter(rows(60, 1, "s").column("object_id").to_pylist())
    a_ids = rows(40, 100 + t, "g").column("object_id").to_pylist()
    b_ids = rows(50, 200 + t, "g").column("object_id").to_pylist()
    expected.update(a_ids)  # 40 galaxies; their ids are b's first 40 too
    expected.update(i for i in b_ids if i not in set(a_ids))
    got = collections.Counter(read_catalog(cat, ["object_id"]).column(0).to_pylist())
    if got != expected:
        problems.append(f"current version {m.version}: rows lost {expected - got}, "
                        f"doubled {got - expected}")
    if storage.is_dir(storage.join(cat, "version=9")):
        problems.append("the expired claim version=9 was not vacuumed")
    return problems


def run_trials(root: str, n: int, jitter_s: float = 0.3) -> dict:
    """Run ``n`` racing trials under ``root``; returns ``{"trials", "failed_trials",
    "problems", "reads", "reader_failures", "n_reader_failures", "versions_a_b",
    "seconds"}``."""
    env = {**os.environ, "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for t in range(n):
        _seed(trial_dir(root, t))
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "commitrace.py"), role, root,
                               str(n), str(jitter_s)], env=env) for role in ROLES]
    reader = Reader()
    reader.start()
    problems: dict[int, list[str]] = {}
    t0 = time.time()
    try:
        for t in range(n):
            cat = trial_dir(root, t)
            reader.cat = cat
            storage.write_atomic(storage.join(cat, "go"), b"")
            for r in ROLES:
                _wait_for(storage.join(cat, f"{r}.json"))
            reader.cat = None
            found = check_trial(cat)
            if found:
                problems[t] = found
    finally:
        reader.stop = True
        for p in procs:
            p.wait(timeout=60)
    versions = [[storage.read_json(storage.join(trial_dir(root, t), f"{r}.json")).get("version")
                 for r in ("a", "b")] for t in range(n)]
    return {"trials": n, "failed_trials": len(problems), "problems": problems,
            "reads": reader.reads, "reader_failures": reader.failures[:20],
            "n_reader_failures": len(reader.failures), "versions_a_b": versions,
            "seconds": round(time.time() - t0, 1)}


if __name__ == "__main__":
    role_, root_, n_, jitter_ = sys.argv[1:5]
    racer(role_, root_, int(n_), float(jitter_))
