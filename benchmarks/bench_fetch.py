"""Benchmark ``hicatalog fetch`` against a local cutout server with 50 ms latency per request.

Measures
1. a one-request-at-a-time loop (urllib, like the paper's own download scripts) on
   ``--n-sequential`` positions: requests per second;
2. :func:`hicatalog.cutouts.fetch.fetch_cutouts` on ``--n`` positions (default 2,000) with no
   rate limit: requests per second (wall time of the whole call, Ray Data startup included,
   ``ray.init`` and a 20-row warm-up that starts the Ray workers excluded) and the speed-up
   over (1);
3. the same with ``--max-rps`` limits: the rate the server saw (arrival times of the requests,
   ``(N - 1) / (t_last - t_first)``) against the limit (goal: within 10%).

The server runs in its own process (``tests/fakeserver.py --engine aiohttp``: asyncio, so 128
open connections cost no threads) so that it does not share a GIL with the client.
Writes ``OUT/bench_fetch.json``.

    .venv/bin/python benchmarks/bench_fetch.py --out runs/bench
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _results import write_result  # benchmarks/_results.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_server(latency: float, engine: str = "aiohttp") -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "fakeserver.py"), "--latency", str(latency),
         "--engine", engine],
        stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "PORT":
        proc.kill()
        raise RuntimeError(f"fake server did not start (said {line!r})")
    return proc, f"http://127.0.0.1:{line[1]}"


def server_times(base: str) -> list[float]:
    with urllib.request.urlopen(base + "/_stats") as r:
        return json.loads(r.read())["times"]


def write_targets(path: str, n: int, ra0: float) -> None:
    """A target list of ``n`` galaxies at dec 10 deg, ra from ``ra0`` in steps of 1e-4 deg."""
    pq.write_table(
        pa.table({
            "object_id": [f"b{ra0:.0f}-{i:06d}" for i in range(n)],
            "ra": [ra0 + 1e-4 * i for i in range(n)],
            "dec": [10.0] * n,
        }),
        path,
    )


def start_workers(n: int) -> None:
    import ray

    @ray.remote(num_cpus=0.25)
    def warm() -> int:
        import hicatalog.cutouts.fetch  # noqa: F401

        time.sleep(1.0)
        return os.getpid()

    ray.get([warm.remote() for _ in range(n)])


def sequential(base: str, n: int) -> float:
    """The paper's way: one request after the other; returns requests per second."""
    from hicatalog.cutouts.services import sdss_service

    svc = sdss_service(base + "/ImgCutout/getjpeg")
    t0 = time.perf_counter()
    for i in range(n):
        with urllib.request.urlopen(svc.url(200.0 + 1e-4 * i, 10.0), timeout=30) as r:
            r.read()
    return n / (time.perf_counter() - t0)


def run_fetch(base: str, work: str, name: str, n: int, ra0: float, **kw) -> dict:
    from hicatalog.config import FetchConfig
    from hicatalog.cutouts.fetch import fetch_cutouts

    targets = os.path.join(work, f"{name}.parquet")
    write_targets(targets, n, ra0)
    before = len(server_times(base))
    cfg = FetchConfig(targets=targets, out=os.path.join(work, name),
                      base_url=base + "/ImgCutout/getjpeg", **kw)
    t0 = time.perf_counter()
    counts = fetch_cutouts(**cfg.fields())
    wall = time.perf_counter() - t0
    times = sorted(server_times(base)[before:])
    span = times[-1] - times[0]
    return {
        "n": n, "counts": counts, "wall_s": round(wall, 3), "rps_wall": round(n / wall, 2),
        "server_requests": len(times),
        "server_rps": round((len(times) - 1) / span, 2) if span > 0 else None,
        "config": {k: v for k, v in kw.items()},
        "_times": times,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for bench_fetch.json")
    ap.add_argument("--n", type=int, default=2000, help="cutouts for the concurrent fetch")
    ap.add_argument("--n-sequential", type=int, default=200, help="requests for the baseline")
    ap.add_argument("--latency", type=float, default=0.05, help="server latency per request (s)")
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--rates", type=float, nargs="*", default=[20.0, 100.0],
                    help="--max-rps values to check (each runs ~10 s)")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs given to the local Ray")
    ap.add_argument("--server", choices=("aiohttp", "threads"), default="aiohttp",
                    help="local server engine (tests/fakeserver.py)")
    args = ap.parse_args(argv)

    import ray

    os.makedirs(args.out, exist_ok=True)
    proc, base = start_server(args.latency, args.server)
    result: dict = {"latency_s": args.latency, "server": args.server, "cpu_count": os.cpu_count(),
                    "load_avg_1min_at_start": os.getloadavg()[0]}
    try:
        with tempfile.TemporaryDirectory(prefix="bench_fetch_") as work:
            rps_seq = sequential(base, args.n_sequential)
            result["sequential"] = {"n": args.n_sequential, "rps": round(rps_seq, 2)}
            print(f"sequential loop: {rps_seq:.1f} req/s ({args.n_sequential} requests)")

            ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            # warm-up (not timed): start one Ray worker per task (a worker process takes
            # seconds to start on a small machine) and import the fetch code there once
            start_workers(args.tasks)
            run_fetch(base, work, "warmup", 20, 300.0, tasks=args.tasks, rows_per_shard=10)
            par = run_fetch(base, work, "unlimited", args.n, 0.0,
                            concurrency=args.concurrency, tasks=args.tasks,
                            rows_per_shard=-(-args.n // args.tasks))
            par.pop("_times")
            par["speedup_vs_sequential"] = round(par["rps_wall"] / rps_seq, 2)
            result["concurrent"] = par
            print(f"fetch_cutouts: {par['rps_wall']:.1f} req/s over {args.n} cutouts "
                  f"({par['wall_s']:.1f} s, server saw {par['server_rps']} req/s): "
                  f"{par['speedup_vs_sequential']:.1f}x the sequential loop")

            result["rate_limited"] = []
            for k, rate in enumerate(args.rates):
                n = max(20, int(rate * 10))
                r = run_fetch(base, work, f"rate{k}", n, 100.0 + k, max_rps=rate,
                              concurrency=args.concurrency, tasks=args.tasks,
                              rows_per_shard=-(-n // args.tasks))
                r["max_rps"] = rate
                r["rate_error"] = round(abs(r["server_rps"] - rate) / rate, 4)
                r["within_10pct"] = r["rate_error"] <= 0.10
                # the limit as an upper bound: the fastest any 1-second stretch went
                t = np.sort(np.asarray(r.pop("_times")))
                k = max(1, int(round(rate)))
                r["max_rps_any_1s"] = round(float(np.max(k / (t[k:] - t[:-k]))), 2)
                result["rate_limited"].append(r)
                print(f"--max-rps {rate:g}: server saw {r['server_rps']} req/s over "
                      f"{r['server_requests']} requests (error {100 * r['rate_error']:.1f}%), "
                      f"fastest 1 s: {r['max_rps_any_1s']} req/s")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if ray.is_initialized():
            ray.shutdown()
    result["load_avg_1min_at_end"] = os.getloadavg()[0]
    write_result(args.out, "bench_fetch", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
