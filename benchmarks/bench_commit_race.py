"""The catalog's commit protocol under contention, and what it costs on S3 without it.

1. **Racing trials** (``tests/commitrace.py``, the test's driver): in each trial two publisher
   processes add a build to one catalog from the same base version (the second to commit
   must rebase; 15 of their galaxies are the same), a vacuum process races them, and a
   reader thread loops over the current version. Checked per trial: every commit listed,
   numbers unique and increasing, every listed version complete, every galaxy once, the
   dead publish vacuumed, no reader failure. ``--trials`` per store, on a local directory and
   on the S3 test server (moto on 127.0.0.1, conditional writes serialised).
2. **Requests of an uncontended publish on S3**: from the server's request log, the requests
   a ``publish_tables`` onto an existing version makes (and the vacuum after it, as a build
   does), by kind: the manifest, the claims, the listings, everything else.

    .venv/bin/python benchmarks/bench_commit_race.py --out runs/bench            # 50 trials
    .venv/bin/python benchmarks/bench_commit_race.py --out runs/bench --trials 5

Prints the numbers and writes ``OUT/bench_commit_race.json``.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _results import write_result  # benchmarks/_results.py

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import commitrace  # noqa: E402  (tests/commitrace.py)
import s3server  # noqa: E402  (tests/s3server.py)

REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+)')


def _kind(method: str, path: str) -> str:
    if "list-type" in path or "prefix=" in path:
        return "list"
    for name in ("_manifest.json", "_claim.json", "_build.json"):
        if name in path:
            return f"{method} {name}"
    return "other"


def count_requests(bucket: str, log: Path) -> dict:
    """The requests of one uncontended publish onto version 1 and the vacuum after it."""
    from builders import rows

    from hicatalog.catalog.commit import vacuum
    from hicatalog.catalog.publish import publish_tables

    cat = f"{bucket}/requests"
    m1 = publish_tables(cat, [rows(60, 1, "s")], build_id="s", margin_arcsec=0)
    time.sleep(0.5)
    before = len(log.read_text(errors="replace").splitlines())
    m2 = publish_tables(cat, [rows(60, 2, "t")], build_id="t", previous=m1, margin_arcsec=0)
    vacuum(cat, manifest=m2)
    time.sleep(0.5)
    found = [REQUEST.search(line) for line in log.read_text(errors="replace").splitlines()[before:]]
    kinds = collections.Counter(_kind(r.group(1), r.group(2)) for r in found if r)
    return {"total": sum(kinds.values()), "by_kind": dict(sorted(kinds.items()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--trials", type=int, default=50, help="racing trials per store")
    ap.add_argument("--jitter-s", type=float, default=0.3)
    args = ap.parse_args()
    result = {"benchmark": "commit_race", "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "trials_per_store": args.trials, "jitter_s": args.jitter_s}
    with tempfile.TemporaryDirectory() as work:
        result["local"] = commitrace.run_trials(os.path.join(work, "race"), args.trials,
                                                args.jitter_s)
        print("local:", {k: v for k, v in result["local"].items() if k != "versions_a_b"})
        log = Path(work) / "moto.log"
        server, _ = s3server.start_for_this_process(log)
        try:
            bucket = s3server.create_bucket(f"bench-{uuid.uuid4().hex[:8]}")
            result["s3"] = commitrace.run_trials(f"{bucket}/race", args.trials, args.jitter_s)
            print("s3:", {k: v for k, v in result["s3"].items() if k != "versions_a_b"})
            result["s3_requests_uncontended_publish"] = count_requests(bucket, log)
            print("requests of an uncontended publish + vacuum on S3:",
                  result["s3_requests_uncontended_publish"])
        finally:
            s3server.stop(server)
    write_result(args.out, "bench_commit_race", result)
    bad = sum(result[s]["failed_trials"] + result[s]["n_reader_failures"] for s in ("local", "s3"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
