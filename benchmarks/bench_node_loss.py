"""Losing a node in the middle of a catalog build: rows lost, rows doubled, extra wall time.

The benchmark starts a real two-node Ray cluster on this machine (``tests/raycluster.py``:
``ray start --head`` and one ``ray start --address``, 2 CPUs each, each node in its own
process group, temp dir and model cache) and an S3-compatible server (``tests/s3server.py``,
moto on 127.0.0.1), writes N mock cutouts and two small models (``bench_catalog``'s
generators) into a bucket, and submits the same ``jobs/build_catalog.py`` job (``--actors 2
--threads 1``: one inference actor per node) in pairs, ``--repeats`` times:

- **uninterrupted** on both nodes;
- **node lost**: the worker node's process group is SIGKILLed once its inference actor is
  alive and ``--kill-at`` of the shards are written; the build goes on on the head alone
  (``--replace``: a new worker node is started right after the kill, as an autoscaler would).

A new worker node is started between builds, so every build starts on two nodes. Each
catalog is read back from the bucket and compared per ``object_id`` with the input and with
the uninterrupted build of its pair:

    rows lost     input ids missing from the catalog          (must be 0)
    rows doubled  catalog rows beyond the first of their id   (must be 0)
    extra wall    node-lost build wall time - uninterrupted build wall time (the job's
                  driver-measured ``wall_time_s`` of the manifest; and submit-to-end)

    .venv/bin/python benchmarks/bench_node_loss.py --out benchmarks/results
    .venv/bin/python benchmarks/bench_node_loss.py --out runs/bench --n 4000 --repeats 3 --replace

Prints one line per build and writes ``OUT/bench_node_loss.json`` (``--replace``:
``OUT/bench_node_loss_replace.json``). Never runs ``ray stop``:
only the process groups it started are killed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _results import write_result  # benchmarks/_results.py
from bench_catalog import make_cutouts, make_models

from hicatalog import storage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import s3server  # noqa: E402  (tests/s3server.py)
from raycluster import (  # noqa: E402  (tests/raycluster.py)
    PREDICTOR_ACTOR,
    LocalRayCluster,
    catalog_rows,
    compare_catalogs,
    shards_done,
    submit_build,
    wait_for_actor_on,
)


def run_build(cluster: LocalRayCluster, inputs: tuple[str, str, str], out: str, args,
              kill_at: float | None) -> dict:
    """Submit one build into ``out``; with ``kill_at``, SIGKILL the worker node once its
    inference actor is alive and that fraction of the shards is written. Returns the job's
    status, wall times and what the kill hit."""
    cutouts, reg, pr = inputs
    worker = next(n for n in reversed(cluster.nodes) if n.name.startswith("w") and not n.killed)
    n_shards = len(storage.list_files(cutouts, suffix=".parquet"))
    t0 = time.perf_counter()
    job = submit_build(cluster, cutouts, reg, pr, out, "--batch-size", str(args.batch_size))
    row: dict = {"killed": kill_at is not None}
    if kill_at is not None:
        wait_for_actor_on(cluster, worker, job, PREDICTOR_ACTOR, timeout=args.timeout,
                          ready=lambda: shards_done(out) >= max(1, round(kill_at * n_shards)))
        cluster.kill(worker)
        row["kill_after_s"] = round(time.perf_counter() - t0, 1)
        row["shards_done_at_kill"] = shards_done(out)
        if args.replace:
            cluster.add_node(num_cpus=2)
    status, logs = cluster.wait_job(job, args.timeout)
    row["job_s"] = round(time.perf_counter() - t0, 1)
    row["status"] = status
    if status != "SUCCEEDED":
        print(logs[-3000:], file=sys.stderr)
        return row
    row["build_wall_s"] = json.loads(storage.read_bytes(f"{out}/_manifest.json"))["wall_time_s"]
    row["shards"] = n_shards
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--n", type=int, default=2000, help="cutouts per build")
    ap.add_argument("--rows-per-shard", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=1, help="pairs of builds")
    ap.add_argument("--kill-at", type=float, default=0.3,
                    help="fraction of the shards written when the worker node is killed")
    ap.add_argument("--replace", action="store_true",
                    help="start a replacement node right after the kill (an autoscaler)")
    ap.add_argument("--size", type=int, default=64, help="cutout side (px)")
    ap.add_argument("--image-size", type=int, default=32, help="network input side (px)")
    ap.add_argument("--width", type=float, default=0.25, help="xresnet18 width multiplier")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds a build may take")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="bench_node_loss_")
    server, cluster, pairs = None, None, []
    try:
        server, _ = s3server.start_for_this_process(Path(work) / "moto.log")
        bucket = s3server.create_bucket(f"bench-{uuid.uuid4().hex[:8]}")
        reg, pr = make_models(f"{bucket}/models", args.size, args.image_size, args.width)
        cutouts = f"{bucket}/cutouts"
        make_cutouts(cutouts, args.n, args.size, rows_per_shard=args.rows_per_shard)
        ids = [f"g{i:08d}" for i in range(args.n)]  # make_cutouts' ids
        cluster = LocalRayCluster()
        cluster.start(num_cpus=2)
        for r in range(args.repeats):
            pair, reference = {}, None
            for kind, kill_at in (("uninterrupted", None), ("node_lost", args.kill_at)):
                if not [n for n in cluster.nodes if n.name.startswith("w") and not n.killed]:
                    cluster.add_node(num_cpus=2)
                out = f"{bucket}/catalog-{r}-{kind}"
                row = run_build(cluster, (cutouts, reg, pr), out, args, kill_at)
                if row["status"] == "SUCCEEDED":
                    rows = catalog_rows(out)
                    diff = compare_catalogs(rows if reference is None else reference, rows, ids)
                    if reference is None:  # the uninterrupted build: against the input only
                        reference = rows
                        diff = {k: v for k, v in diff.items() if k.startswith("rows")}
                    row.update(diff)
                pair[kind] = row
                print(f"repeat {r}  {kind:>13}  {row['status']}  build {row.get('build_wall_s')} s"
                      f"  job {row['job_s']} s  rows {row.get('rows')}  lost {row.get('rows_lost')}"
                      f"  doubled {row.get('rows_doubled')}"
                      + (f"  killed after {row['kill_after_s']} s with {row['shards_done_at_kill']}"
                         f"/{row.get('shards')} shards written" if kill_at is not None else ""),
                      flush=True)
            if all(p["status"] == "SUCCEEDED" for p in pair.values()):
                pair["extra_build_wall_s"] = round(
                    pair["node_lost"]["build_wall_s"] - pair["uninterrupted"]["build_wall_s"], 1)
                pair["extra_job_s"] = round(pair["node_lost"]["job_s"] - pair["uninterrupted"]["job_s"], 1)
            pairs.append(pair)
    finally:
        if cluster is not None:
            cluster.shutdown()
        if server is not None:
            s3server.stop(server)
        shutil.rmtree(work, ignore_errors=True)
    lost = [p["node_lost"] for p in pairs]
    ok = [p for p in pairs if "extra_build_wall_s" in p]
    summary = {
        "rows_lost": sum(p.get("rows_lost", 0) for p in lost),
        "rows_doubled": sum(p.get("rows_doubled", 0) for p in lost),
        "failed_builds": sum(p[k]["status"] != "SUCCEEDED" for p in pairs
                             for k in ("uninterrupted", "node_lost")),
        "median_extra_build_wall_s": (statistics.median(p["extra_build_wall_s"] for p in ok)
                                      if ok else None),
    }
    print(f"node lost: rows lost {summary['rows_lost']} (goal 0), rows doubled "
          f"{summary['rows_doubled']} (goal 0), extra build wall time "
          f"{summary['median_extra_build_wall_s']} s (median of {len(ok)})")
    write_result(args.out, "bench_node_loss" + ("_replace" if args.replace else ""), {
        "benchmark": "node_loss", "cpus": os.cpu_count(), "n": args.n,
        "rows_per_shard": args.rows_per_shard, "kill_at": args.kill_at,
        "replace": args.replace, "cluster": "head + 1 worker node, 2 CPUs each (ray start)",
        "actors": 2, "threads": 1, "batch_size": args.batch_size, "cutout_px": args.size,
        "image_px": args.image_size, "width": args.width, "load_average": os.getloadavg(),
        "summary": summary, "pairs": pairs,
    })


if __name__ == "__main__":
    main()
