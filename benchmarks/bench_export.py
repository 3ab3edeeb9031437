"""``hicatalog export`` to FITS: rows per second and peak memory at two sizes (memory flat).

Publishes a synthetic catalog of ``--rows`` rows (default 10^6; the rows of
``bench_publish.synthetic_shard``: random predictions over ra 120..240, dec 0..60 deg, 2%
``corrupt_image``) with :func:`hicatalog.catalog.publish.publish_tables` on a local Ray, then
exports, each in a fresh child process (so that each peak RSS is that export's alone):

- ``fits`` and ``votable`` at each of ``--sizes`` (default 10^5 and 10^6): the first N rows
  (``limit``, ``status='any'``), every column, to a local file;
- ``fits_cone``: a 5-degree cone at (180, 30) with the recommended cut (``status='ok'``,
  ``p_cnn > 0.9``): partitions outside the cone are not read.

Per export: rows, seconds, rows/s, the child's RSS before the export (after a one-row export
that loads every module the export imports), its peak RSS during the export (``VmHWM`` reset
before it) and over its life (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), the output's
bytes and its NAXIS2 read back.

    .venv/bin/python benchmarks/bench_export.py --out benchmarks/results

Prints one line per export and writes ``OUT/bench_export.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from _results import write_result

SHARD_ROWS = 100_000


def publish(catalog: str, rows: int, cpus: int) -> float:
    """Publish ``rows`` synthetic rows as version 1 of ``catalog``; returns the seconds."""
    import ray
    from bench_publish import synthetic_shard

    from hicatalog.catalog.publish import publish_tables

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        publish_tables(catalog, (synthetic_shard(rng, lo, min(SHARD_ROWS, rows - lo))
                                 for lo in range(0, rows, SHARD_ROWS)), build_id="bench")
    finally:
        ray.shutdown()
    return time.perf_counter() - t0


def _status_kib(key: str) -> int:
    """A ``/proc/self/status`` figure (``VmRSS``, ``VmHWM``) in KiB."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))


def child(spec: dict) -> dict:
    """Run one export in this process (the child); its numbers.

    A one-row export first loads every module the export imports (hats, astropy,
    cdshealpix); then the peak RSS is reset (``/proc/self/clear_refs``), so ``peak_rss_mib``
    (``VmHWM``) is the peak during the export, and ``rss_before_mib`` what the process held
    before it. ``ru_maxrss_mib``: ``getrusage``'s peak over the child's whole life."""
    from astropy.io import fits

    from hicatalog.catalog.export import export_catalog

    export_catalog(spec["catalog"], spec["out"] + ".warm.fits", limit=1, status="any")
    os.remove(spec["out"] + ".warm.fits")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    res = export_catalog(spec["catalog"], spec["out"], **spec["params"])
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    out = {"rows": res.rows, "seconds": round(seconds, 2), "rows_per_s": round(res.rows / seconds),
           "rss_before_mib": round(base / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
           "peak_above_before_mib": round((peak - base) / 1024, 1),
           "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "bytes": os.path.getsize(spec["out"]), "files_read": res.files_read,
           "partitions": res.partitions}
    if res.format == "fits":
        out["naxis2"] = fits.getheader(spec["out"], 1)["NAXIS2"]
    else:
        from astropy.io.votable import parse

        out["rows_read_back"] = len(parse(spec["out"]).get_first_table().array)
    return out


def run_child(name: str, catalog: str, out: str, params: dict) -> dict:
    """One export in a fresh interpreter; prints and returns its numbers."""
    spec = {"catalog": catalog, "out": out, "params": params}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, check=True)
    result = {"name": name, "params": params, **json.loads(proc.stdout.strip().splitlines()[-1])}
    os.remove(out)
    print(f"{name:>10}: {result['rows']:>9,} rows in {result['seconds']:7.2f} s = "
          f"{result['rows_per_s']:>9,} rows/s; peak RSS {result['peak_rss_mib']:7.1f} MiB "
          f"({result['peak_above_before_mib']:+.1f} over the RSS before); "
          f"{result['files_read']}/{result['partitions']} partitions searched")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results", help="directory of the JSON")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the catalog")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the publish's local Ray")
    ap.add_argument("--workdir", default=None, help="where the catalog goes (default: a temp dir)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    work = args.workdir or tempfile.mkdtemp(prefix="bench-export-")
    catalog = os.path.join(work, "catalog")
    try:
        publish_s = publish(catalog, args.rows, args.cpus)
        print(f"published {args.rows:,} rows in {publish_s:.1f} s")
        runs = [run_child(fmt, catalog, os.path.join(work, f"all-{n}.{suffix}"),
                          {"limit": n, "status": "any"})
                for fmt, suffix in (("fits", "fits"), ("votable", "vot")) for n in args.sizes]
        runs.append(run_child("fits_cone", catalog, os.path.join(work, "cone.fits"),
                              {"cone": [180.0, 30.0, 5.0], "min_p_cnn": 0.9}))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    write_result(args.out, "bench_export", {
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "host": platform.node(),
        "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "command": "python benchmarks/bench_export.py " + " ".join(sys.argv[1:]),
        "catalog_rows": args.rows, "publish_s": round(publish_s, 1), "exports": runs})


if __name__ == "__main__":
    main()
