"""Time ``compute_environment`` (D5, Sigma5, delta5) for 10k .. 1M tracers.

Tracers are a clustered mock over an SDSS-like footprint (RA 120-240, Dec 0-60 deg,
0.002 < z < 0.06): half in groups of 5-200 members (0.1-1 Mpc, 200-800 km/s), half field.
Targets are a random subset (``--targets``, default 100k, capped at the tracer count).

    .venv/bin/python benchmarks/bench_environment.py --out runs/bench
    .venv/bin/python benchmarks/bench_environment.py --sizes 10000 100000 --targets 20000

Prints one line per size and writes ``OUT/bench_environment.json``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pyarrow as pa
from _results import write_result  # benchmarks/_results.py

from hicatalog.catalog.environment import compute_environment
from hicatalog.cosmology import C_KMS, PAPER_COSMOLOGY


def clustered_tracers(n: int, seed: int = 0) -> pa.Table:
    """``n`` tracers: half in groups (sizes 5-200), half uniform field, SDSS-like footprint."""
    rng = np.random.default_rng(seed)
    n_group = n // 2
    sizes = rng.integers(5, 200, size=max(1, n_group // 50))
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_group) + 1]
    sizes[-1] -= max(0, sizes.sum() - n_group)
    k = len(sizes)
    c_ra, c_dec = rng.uniform(122, 238, k), np.degrees(np.arcsin(rng.uniform(0.02, 0.85, k)))
    c_z = rng.uniform(0.004, 0.058, k)
    r_deg = np.degrees(rng.uniform(0.1, 1.0, k) / (c_z * C_KMS / PAPER_COSMOLOGY.H0.value))
    member = np.repeat(np.arange(k), sizes)
    ra = c_ra[member] + rng.normal(0, 1, member.size) * r_deg[member] / np.cos(
        np.radians(c_dec[member]))
    dec = c_dec[member] + rng.normal(0, 1, member.size) * r_deg[member]
    z = c_z[member] + rng.normal(0, 1, member.size) * rng.uniform(200, 800, k)[member] / C_KMS
    n_field = n - member.size
    ra = np.concatenate([ra, rng.uniform(120, 240, n_field)])
    dec = np.concatenate([dec, np.degrees(np.arcsin(rng.uniform(0.0, np.sin(np.radians(60)),
                                                                 n_field)))])
    z = np.concatenate([z, rng.uniform(0.002, 0.06, n_field)])
    ids = pa.array(np.char.add("t", np.arange(n).astype(str)))
    return pa.table({"object_id": ids, "ra": ra, "dec": np.clip(dec, -90, 90), "z": z})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000, 1_000_000])
    ap.add_argument("--targets", type=int, default=100_000)
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args()
    results = []
    for n in args.sizes:
        tracers = clustered_tracers(n)
        rng = np.random.default_rng(1)
        n_t = min(args.targets, n)
        targets = tracers.take(pa.array(rng.choice(n, n_t, replace=False)))
        t0 = time.perf_counter()
        env = compute_environment(targets, tracers)
        dt = time.perf_counter() - t0
        ok = env["env_status"].to_pylist().count("ok")
        row = {"n_tracers": n, "n_targets": n_t, "seconds": round(dt, 3), "n_ok": ok,
               "cpus": os.cpu_count()}
        results.append(row)
        print(f"tracers={n:>9,d} targets={n_t:>7,d}  {dt:7.2f} s  (ok={ok})", flush=True)
    write_result(args.out, "bench_environment", {"benchmark": "environment", "results": results})


if __name__ == "__main__":
    main()
