"""Catalog build on object storage vs on local disk: the same inputs, the same models.

The benchmark writes N mock cutouts and two small models (``bench_catalog``'s generators)
twice: into a local directory and into a bucket of an S3-compatible server, then runs the
whole ``build_catalog`` on each, alternating local and S3 ``--repeats`` times on one fresh
local Ray per build (so a change of load on a shared machine hits both sides alike), and
reports

    ratio = median S3 cutouts/s  /  median local cutouts/s        (goal >= 0.9)

By default the S3 server is moto's standalone server on 127.0.0.1 (``tests/s3server.py``, the
one the tests use), which runs on the same cores as the build: its request handling (a Python
HTTP server) is part of the measured cost, so the ratio is a lower bound for a real object
store that runs elsewhere. ``--endpoint URL --bucket NAME`` measures against another
S3-compatible store instead (credentials from the environment).

    .venv/bin/python benchmarks/bench_storage.py --out runs/bench             # N=4000, 3 repeats
    .venv/bin/python benchmarks/bench_storage.py --out runs/bench --n 20000

Prints one line per build and writes ``OUT/bench_storage.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _results import write_result  # benchmarks/_results.py
from bench_catalog import add_build_args, make_cutouts, make_models

from hicatalog import storage
from hicatalog.catalog.build import build_catalog
from hicatalog.config import BuildCatalogConfig

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import s3server  # noqa: E402  (tests/s3server.py)


def timed_build(cutouts: str, reg: str, pr: str, out: str, args) -> float:
    """Wall seconds of one ``build_catalog`` (fresh local Ray, shut down afterwards)."""
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             object_store_memory=args.object_store_mb * 2**20)
    try:
        t0 = time.perf_counter()
        manifest = build_catalog(BuildCatalogConfig(
            cutouts=cutouts, regression=reg, pr=pr, out=out, batch_size=args.batch_size,
            actors=1, threads=args.threads))
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    if manifest.rows.total != args.n:
        raise SystemExit(f"build of {cutouts} wrote {manifest.rows.total} rows, expected {args.n}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--n", type=int, default=4000, help="cutouts per build")
    ap.add_argument("--repeats", type=int, default=3, help="builds on each side, alternating")
    add_build_args(ap)
    ap.add_argument("--endpoint", default=None,
                    help="an S3-compatible endpoint to use instead of a local moto server")
    ap.add_argument("--bucket", default=None, help="with --endpoint: an existing bucket")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="bench_storage_")
    server = None
    try:
        if args.endpoint is None:
            server, endpoint = s3server.start_for_this_process(Path(work) / "moto.log")
            bucket = s3server.create_bucket(f"bench-{uuid.uuid4().hex[:8]}")
        else:
            if not args.bucket:
                raise SystemExit("--endpoint needs --bucket (an existing bucket to write under)")
            endpoint = args.endpoint
            os.environ["AWS_ENDPOINT_URL"] = endpoint
            bucket = f"s3://{args.bucket}/bench-storage-{uuid.uuid4().hex[:8]}"
        # Ray workers started after this point inherit the endpoint and the model cache.
        os.environ["HICATALOG_MODEL_CACHE"] = os.path.join(work, "model_cache")
        roots = {"local": os.path.join(work, "local"), "s3": bucket}
        inputs = {}
        for side, root in roots.items():
            reg, pr = make_models(storage.join(root, "models"), args.size, args.image_size, args.width)
            cut = storage.join(root, "cutouts")
            make_cutouts(cut, args.n, args.size)
            inputs[side] = (cut, reg, pr)
        walls: dict[str, list[float]] = {"local": [], "s3": []}
        for r in range(args.repeats):
            for side in ("local", "s3"):
                cut, reg, pr = inputs[side]
                wall = timed_build(cut, reg, pr, storage.join(roots[side], f"catalog_{r}"), args)
                walls[side].append(wall)
                print(f"{side:>5}  repeat {r}  {args.n / wall:8.1f} cutouts/s  wall {wall:6.1f} s",
                      flush=True)
        rate = {side: args.n / statistics.median(w) for side, w in walls.items()}
        ratio = rate["s3"] / rate["local"]
        print(f"median: local {rate['local']:.1f}/s, S3 {rate['s3']:.1f}/s, ratio {ratio:.3f} "
              f"(goal >= 0.9)")
        result = {
            "benchmark": "storage", "cpus": os.cpu_count(), "n": args.n, "repeats": args.repeats,
            "endpoint": "moto server on 127.0.0.1 (same cores)" if server else endpoint,
            "wall_s": {k: [round(x, 2) for x in v] for k, v in walls.items()},
            "median_per_s": {k: round(v, 1) for k, v in rate.items()},
            "ratio_s3_over_local": round(ratio, 3), "goal": 0.9,
            "load_average": os.getloadavg(), "batch_size": args.batch_size,
            "threads": args.threads, "cutout_px": args.size, "image_px": args.image_size,
            "width": args.width,
        }
    finally:
        if server is not None:
            s3server.stop(server)
        shutil.rmtree(work, ignore_errors=True)
    write_result(args.out, "bench_storage", result)


if __name__ == "__main__":
    main()
