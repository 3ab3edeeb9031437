"""Publishing the catalog as HATS vs the old dec-zone layout: time, memory, files, queries.

For each N in ``--sizes`` (default 10^6; the 10^7 run of docs/operations/performance.md:
``--sizes 10000000``) the benchmark stages N synthetic ``hi_catalog`` rows (no images, no
models: random predictions over ra 120..240, dec 0..60 deg, 0.1% without a valid position) as
input shards of ``--rows-per-shard`` rows, exactly as the build stages them, then, on a fresh
local Ray (``--cpus``):

- **publish**: :func:`hicatalog.catalog.publish.publish_version` (histogram, hats alignment,
  the Ray shuffle, hats metadata, manifest switch): wall time, peak RSS of the driver (this
  process) and of the largest Ray worker, and the sum over the process tree, sampled every
  0.1 s; files and sizes of the version; rows and distinct ids read back (must both be N);
- **the old layout** on the same rows: one file per (input shard x 2-degree declination zone),
  sorted by ra, row groups of 4096 (what ``build-catalog`` wrote before the HATS publish);
- **DuckDB** on both: a 1-degree cone at (180, 30) (box prefilter + exact distance), a
  10x10-degree box, and a full-table aggregate; the first run and the median of 5 warm runs.

    .venv/bin/python benchmarks/bench_publish.py --out benchmarks/results
    .venv/bin/python benchmarks/bench_publish.py --out benchmarks/results --sizes 10000000

Prints one block per N and writes ``OUT/bench_publish.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _results import PeakSampler, process_rss, tree_rss, write_result

from hicatalog.catalog.manifest import BUILD_FILE, BuildRecord, RowCounts, write_staged_part
from hicatalog.catalog.publish import healpix_29, publish_version
from hicatalog.catalog.reader import open_catalog
from hicatalog.schemas import conform_table
from hicatalog.storage import write_json_atomic

CONE = """SELECT count(*), avg(m_pred) FROM read_parquet({src})
WHERE dec BETWEEN 29 AND 31 AND ra BETWEEN 180 - 1.16 AND 180 + 1.16
  AND degrees(acos(least(1, sin(radians(dec)) * sin(radians(30))
      + cos(radians(dec)) * cos(radians(30)) * cos(radians(ra - 180))))) < 1"""
BOX = """SELECT count(*), avg(m_pred) FROM read_parquet({src})
WHERE ra BETWEEN 170 AND 180 AND dec BETWEEN 25 AND 35"""
AGGREGATE = """SELECT status, count(*), avg(m_pred), avg(p_cnn) FROM read_parquet({src})
GROUP BY status ORDER BY status"""


def synthetic_shard(rng: np.random.Generator, lo: int, n: int) -> pa.Table:
    """``n`` ``hi_catalog`` rows with ids ``g{lo..lo+n-1}``; 0.1% without a valid position."""
    ra, dec = rng.uniform(120, 240, n), rng.uniform(0, 60, n)
    bad = rng.random(n) < 0.001
    ra[bad] = np.nan
    status = np.where(rng.random(n) < 0.02, "corrupt_image", "ok")
    f32 = lambda a: pa.array(a.astype(np.float32))  # noqa: E731
    return conform_table(pa.table({
        "object_id": [f"g{i:09d}" for i in range(lo, lo + n)], "ra": ra, "dec": dec,
        "z": rng.uniform(0.002, 0.06, n), "m_pred": f32(rng.normal(-0.5, 0.5, n)),
        "m_pred_err": f32(rng.uniform(0.1, 0.4, n)), "m_pred_std": f32(rng.uniform(0, 0.2, n)), "p_cnn": f32(rng.uniform(0, 1, n)),
        "one_plus_delta5": f32(rng.lognormal(0, 0.5, n)), "sigma5": f32(rng.uniform(0, 5, n)),
        "d5_mpc": f32(rng.uniform(0.1, 10, n)), "env_status": ["ok"] * n, "status": status,
        "error": pa.nulls(n, pa.string()), "build_id": ["bench"] * n, "model_id": ["m"] * n,
        "_healpix_29": healpix_29(ra, dec),
    }), "hi_catalog")


def old_layout_part(table: pa.Table, out: str, s: int) -> None:
    """The removed dec-zone writer: the shard split by 2-degree zone, sorted by ra."""
    dec = table.column("dec").to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(dec) & (np.abs(dec) <= 90)
        zone = np.where(good, np.floor(np.clip(np.where(good, dec, 0), -90, 89.999) / 2) * 2, -999)
    for z in np.unique(zone):
        d = os.path.join(out, f"dec_zone={'__HIVE_DEFAULT_PARTITION__' if z == -999 else int(z)}")
        os.makedirs(d, exist_ok=True)
        pq.write_table(table.filter(pa.array(zone == z)).sort_by("ra"),
                       os.path.join(d, f"part-{s:05d}.parquet"), row_group_size=4096,
                       compression="zstd")


def driver_rss() -> int:
    """RSS (bytes) of this process, the publish's driver."""
    return process_rss()[os.getpid()]


def largest_worker_rss() -> int | None:
    """RSS (bytes) of the largest process this one started (a Ray worker, the raylet, ...)."""
    return max([v for p, v in process_rss().items() if p != os.getpid()], default=None)


def files_and_bytes(root: str) -> tuple[int, int, list[int]]:
    sizes = []
    for dirpath, _, names in os.walk(root):
        sizes += [os.path.getsize(os.path.join(dirpath, f)) for f in names if f.endswith(".parquet")]
    return len(sizes), sum(sizes), sizes


def timed_queries(src: str, repeats: int = 5) -> dict[str, dict[str, float]]:
    out = {}
    con = duckdb.connect()
    for name, q in (("cone_1deg", CONE), ("box_10x10deg", BOX), ("aggregate", AGGREGATE)):
        sql = q.format(src=src)
        t0 = time.perf_counter()
        first = con.sql(sql).fetchall()
        t_first = time.perf_counter() - t0
        warm = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            con.sql(sql).fetchall()
            warm.append(time.perf_counter() - t0)
        out[name] = {"first_s": round(t_first, 4), "warm_median_s": round(statistics.median(warm), 4),
                     "rows": int(first[0][1]) if name == "aggregate" else int(first[0][0])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--rows-per-shard", type=int, default=10_000)
    ap.add_argument("--partition-rows", type=int, default=None, help="default: the build's")
    ap.add_argument("--row-group-rows", type=int, default=None, help="default: the build's")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--object-store-mb", type=int, default=2048)
    ap.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    import ray

    from hicatalog.catalog import publish as pub

    options = {"partition_rows": args.partition_rows or pub.PARTITION_ROWS,
               "row_group_rows": args.row_group_rows or pub.ROW_GROUP_ROWS}
    work = tempfile.mkdtemp(prefix="bench_publish_", dir=args.work)
    results = []
    try:
        for n in args.sizes:
            rng = np.random.default_rng(0)
            out, old = os.path.join(work, f"hats_{n}"), os.path.join(work, f"old_{n}", "version=1")
            bdir = os.path.join(out, "_staging", "build=1")
            write_json_atomic(os.path.join(bdir, BUILD_FILE), {"fingerprint": "bench"})
            t0 = time.perf_counter()
            for s, lo in enumerate(range(0, n, args.rows_per_shard)):
                t = synthetic_shard(rng, lo, min(args.rows_per_shard, n - lo))
                write_staged_part(bdir, s, t, build_fingerprint="bench", shard=f"s{s}", counts={})
                old_layout_part(t, old, s)
            stage_s = time.perf_counter() - t0

            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                     object_store_memory=args.object_store_mb * 2**20)
            driver_before = driver_rss()
            with PeakSampler(driver_rss, interval=0.1) as drv, \
                    PeakSampler(largest_worker_rss, interval=0.1) as wrk, \
                    PeakSampler(tree_rss, interval=0.1) as tree:
                t0 = time.perf_counter()
                manifest = publish_version(out, [bdir], previous=None,
                                           build=BuildRecord(build_id="bench", fingerprint="bench",
                                                             rows=RowCounts(total=n)),
                                           **options)
                publish_s = time.perf_counter() - t0
            ray.shutdown()

            cat = open_catalog(out)
            n_files, n_bytes, sizes = files_and_bytes(cat.path)
            o_files, o_bytes, o_sizes = files_and_bytes(old)
            check = duckdb.sql(f"SELECT count(*), count(DISTINCT object_id) FROM "
                               f"read_parquet({cat.files!r})").fetchall()[0]
            assert check == (n, n), f"published {check}, staged {n}"
            hats_q = timed_queries(repr(cat.files))
            old_q = timed_queries(repr(os.path.join(old, "**", "*.parquet")))
            for q in hats_q:
                assert hats_q[q]["rows"] == old_q[q]["rows"], (q, hats_q[q], old_q[q])
            this = manifest.current()
            row = {
                "n": n, "rows_per_shard": args.rows_per_shard, "cpus": args.cpus, **options,
                "stage_s": round(stage_s, 1), "publish_s": round(publish_s, 2),
                "rows_read_back": check[0], "distinct_ids_read_back": check[1],
                "partitions": this.partitions,
                "driver_rss_before_mb": round(driver_before / 2**20, 1),
                "driver_peak_rss_mb": round((drv.peak or 0) / 2**20, 1),
                "largest_worker_peak_rss_mb": round((wrk.peak or 0) / 2**20, 1),
                "tree_peak_rss_mb": round((tree.peak or 0) / 2**20, 1),
                "hats": {"files": n_files, "mb": round(n_bytes / 2**20, 1),
                         "file_mb_min_median_max": [round(x / 2**20, 2) for x in
                                                    (min(sizes), statistics.median(sizes), max(sizes))],
                         "queries": hats_q},
                "old_dec_zone": {"files": o_files, "mb": round(o_bytes / 2**20, 1),
                                 "file_kb_median": round(statistics.median(o_sizes) / 2**10, 1),
                                 "queries": old_q},
                "speedup_warm": {q: round(old_q[q]["warm_median_s"] / hats_q[q]["warm_median_s"], 1)
                                 for q in hats_q},
                "load_average": os.getloadavg(),
            }
            results.append(row)
            print(f"N={n:,}: publish {publish_s:.1f} s ({this.partitions} partitions, "
                  f"{n_files} files, {row['hats']['mb']} MB); driver peak "
                  f"{row['driver_peak_rss_mb']} MB (before {row['driver_rss_before_mb']}), "
                  f"largest worker {row['largest_worker_peak_rss_mb']} MB; old layout "
                  f"{o_files} files", flush=True)
            for q in hats_q:
                print(f"  {q:>13}: HATS {hats_q[q]['warm_median_s']:.4f} s warm "
                      f"({hats_q[q]['first_s']:.4f} first), old {old_q[q]['warm_median_s']:.4f} s "
                      f"warm ({old_q[q]['first_s']:.4f} first): x{row['speedup_warm'][q]}",
                      flush=True)
            shutil.rmtree(os.path.dirname(old), ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_result(args.out, "bench_publish", {"benchmark": "publish", "results": results})


if __name__ == "__main__":
    main()
