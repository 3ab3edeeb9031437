"""Benchmark of the mock renderer: cutouts per second per core and peak memory.

Usage::

    .venv/bin/python benchmarks/bench_mock.py --out runs/bench            # 2k and 10k
    .venv/bin/python benchmarks/bench_mock.py --out runs/bench --large    # also 100k

For each size N and each realism (``realistic``, the default mock with every effect of
docs/mock.md, and ``clean``) a fresh subprocess plans the mock
(:func:`hicatalog.mock.survey.plan_mock`: population, observing conditions, companions) and
renders and writes its shards in-process (one core, the local engine: exactly the work one Ray
Data task does per shard), and reports the planning time, the render+write time, cutouts per
CPU-second (per core, robust to a busy machine) and per wall-second, and the peak resident
memory (``ru_maxrss``). A per-stage profile of 300 cutouts (flux image, Lupton stretch, JPEG)
shows where the time goes. Results go to ``OUT/bench_mock.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from _results import write_result  # benchmarks/_results.py


def child(n: int, size: int, out: str, realism: str) -> dict:
    """Run one mock in this process; return timings and peak RSS."""
    import logging

    from hicatalog.mock.survey import plan_mock

    logging.basicConfig(level=logging.WARNING)
    cfg = dict(out=out, n=n, seed=0, image_size=size, engine="local", realism=realism)
    # time planning and rendering separately (the same code path as generate_mock)
    t0, c0 = time.perf_counter(), time.process_time()
    plan = plan_mock(**cfg)
    t_pop, c_pop = time.perf_counter() - t0, time.process_time() - c0
    rss_after_population = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t1, c1 = time.perf_counter(), time.process_time()
    for k in range(len(plan.bounds)):
        plan.render_shard(k, os.path.join(out, "cutouts"))
    t_render, c_render = time.perf_counter() - t1, time.process_time() - c1
    return {
        "n": n,
        "realism": realism,
        "image_size": size,
        "n_tracers": int(len(plan.pop.tracers["ra"])),
        "population_wall_s": round(t_pop, 2),
        "population_cpu_s": round(c_pop, 2),
        "render_wall_s": round(t_render, 2),
        "render_cpu_s": round(c_render, 2),
        "cutouts_per_cpu_second": round(n / max(c_render, 1e-9), 1),
        "cutouts_per_wall_second": round(n / max(t_render, 1e-9), 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_population_mib": round(rss_after_population, 1),
    }


def profile(size: int, realism: str, n: int = 300) -> dict:
    """CPU milliseconds per cutout in each stage, on ``n`` galaxies."""
    import tempfile

    import numpy as np

    from hicatalog.mock.render import encode_jpeg, render_galaxy_flux, to_rgb
    from hicatalog.mock.survey import plan_mock

    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_mock(out=tmp, n=n, seed=1, image_size=size, realism=realism)
    rows = plan.table.to_pylist()
    t = {"flux_image": 0.0, "lupton_rgb": 0.0, "jpeg": 0.0}
    for r in rows:
        rng = np.random.default_rng([1, int(r["tracer_index"])])
        c0 = time.process_time()
        f = render_galaxy_flux(r, plan.spec, size, rng, plan.effects, seed=1)
        c1 = time.process_time()
        rgb = to_rgb(f, plan.spec)
        c2 = time.process_time()
        encode_jpeg(rgb)
        c3 = time.process_time()
        t["flux_image"] += c1 - c0
        t["lupton_rgb"] += c2 - c1
        t["jpeg"] += c3 - c2
    return {k: round(v / n * 1e3, 3) for k, v in t.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for bench_mock.json")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--large", action="store_true", help="also run 100k cutouts")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--realism", nargs="+", default=["realistic", "clean"],
                    choices=["realistic", "clean"])
    ap.add_argument("--name", default="bench_mock", help="JSON file name (without .json)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.image_size, args.child_out, args.realism[0])))
        return 0
    os.makedirs(args.out, exist_ok=True)
    sizes = list(args.sizes) + ([100_000] if args.large else [])
    runs = []
    load = [os.getloadavg()[0]]
    for realism in args.realism:
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="bench_mock_") as tmp:
                env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
                res = subprocess.run(
                    [sys.executable, __file__, "--out", args.out, "--child", str(n),
                     "--child-out", tmp, "--image-size", str(args.image_size),
                     "--realism", realism],
                    capture_output=True, text=True, env=env, check=True,
                )
                runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
                print(json.dumps(runs[-1]))
            load.append(os.getloadavg()[0])
    prof = {r: profile(args.image_size, r) for r in args.realism}
    print("per-cutout CPU ms by stage:", json.dumps(prof))
    result = {
        "benchmark": "mock",
        "image_size": args.image_size,
        "cpu_count": os.cpu_count(),
        "load_average_1m": load,
        "runs": runs,
        "stage_cpu_ms_per_cutout": prof,
    }
    write_result(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
