"""What the margin cache costs a publish: the same staged rows published with
``margin_arcsec=0`` (no margin) and with the default margin, alternately, ``--repeats`` times.

N synthetic ``hi_catalog`` rows (:func:`bench_publish.synthetic_shard`: ra 120..240, dec
0..60 deg) are staged once as shards of ``--rows-per-shard`` rows; each publish writes a new
catalog directory from them on one local Ray (``--cpus``). Reports each publish's wall time,
partitions, margin rows and margin files.

    .venv/bin/python benchmarks/bench_margin.py --out benchmarks/results

Prints the times and writes ``OUT/bench_margin.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time

import numpy as np
from _results import write_result
from bench_publish import synthetic_shard

from hicatalog.catalog.collection import MARGIN_ARCSEC
from hicatalog.catalog.manifest import BUILD_FILE, BuildRecord, RowCounts, write_staged_part
from hicatalog.catalog.publish import publish_version
from hicatalog.storage import utc_timestamp, write_json_atomic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rows-per-shard", type=int, default=50_000)
    ap.add_argument("--partition-rows", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    import ray

    work = tempfile.mkdtemp(prefix="bench_margin_")
    try:
        bdir = os.path.join(work, "_staging", "build=1")
        write_json_atomic(os.path.join(bdir, BUILD_FILE), {"fingerprint": "bench"})
        rng = np.random.default_rng(0)
        for s, lo in enumerate(range(0, args.rows, args.rows_per_shard)):
            write_staged_part(bdir, s, synthetic_shard(rng, lo, min(args.rows_per_shard,
                                                                    args.rows - lo)),
                              build_fingerprint="bench", shard=f"s{s}", counts={})
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        runs = []
        for r in range(args.repeats):
            for margin in (0.0, MARGIN_ARCSEC):
                out = os.path.join(work, f"catalog_{r}_{margin:g}")
                t0 = time.perf_counter()
                v = publish_version(out, [bdir], previous=None, build=BuildRecord(
                    build_id="bench", fingerprint="bench", rows=RowCounts(total=args.rows)),
                    partition_rows=args.partition_rows, margin_arcsec=margin).current()
                wall = time.perf_counter() - t0
                mdir = os.path.join(out, "version=1", f"hi_catalog_{margin:g}arcs")
                files = sum(len(f) for _, _, f in os.walk(mdir)) if margin else 0
                runs.append({"repeat": r, "margin_arcsec": margin, "publish_s": round(wall, 2),
                             "partitions": v.partitions, "margin_rows": v.margin_rows,
                             "margin_dir_files": files})
                print(f"margin {margin:g} arcsec: publish {wall:.1f} s, {v.partitions} "
                      f"partitions, {v.margin_rows} margin rows")
                shutil.rmtree(out)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_result(args.out, "bench_margin", {
        "date": utc_timestamp(), "host": platform.node(), "cpus": args.cpus,
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
        "rows": args.rows, "rows_per_shard": args.rows_per_shard,
        "partition_rows": args.partition_rows, "runs": runs,
        "command": "benchmarks/bench_margin.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
    })


if __name__ == "__main__":
    main()
