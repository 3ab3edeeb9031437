"""The magnitude-limited survey mock (``hicatalog mock --population survey``, docs/mock.md):
its detected share, labels and upper limits, and the time to generate it with rendering.

For the non-detections, how far the ALFALFA upper limit lies above the true M (median and
percentiles of ``m_label - m_true``) and the share whose true and measured M are below it.
Wall time is noisy on a shared machine: the CPU time of the run and the load average are
recorded beside it.

    .venv/bin/python benchmarks/bench_mock_survey.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq
from _results import write_result  # benchmarks/_results.py

from hicatalog.mock.survey import generate_mock


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        t0, c0 = time.perf_counter(), time.process_time()
        paths = generate_mock(d, n=args.n, seed=args.seed, population="survey", engine="local")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        load = os.getloadavg()
        truth = pq.read_table(paths["truth"]).to_pandas()
        manifest = json.loads(open(os.path.join(d, "_mock.json")).read())
    u = ~truth.detected
    above = (truth.m_label - truth.m_true)[u].to_numpy()
    result = {
        "command": f"hicatalog mock --population survey --n {args.n} --seed {args.seed} "
                   "--engine local (realistic, 224 px SDSS)",
        "n": args.n, "seed": args.seed,
        "area_deg2": manifest["area_deg2"], "n_tracers": manifest["n_tracers"],
        "detected_fraction_imaged": float(truth.detected.mean()),
        "detected_fraction_tracers": manifest["detected_fraction_tracers"],
        "mean_p_detect_imaged": float(truth.p_detect.mean()),
        "survey_counts": manifest["survey_counts"],
        "limit_minus_m_true_nondetections": {
            "median": float(np.median(above)),
            "p5_p16_p84_p95": [float(x) for x in np.percentile(above, [5, 16, 84, 95])],
        },
        "share_m_true_below_limit": float(np.mean(above >= 0)),
        "share_m_obs_below_limit": float(np.mean((truth.m_label - truth.m_obs)[u] >= 0)),
        "wall_s": round(wall, 1), "cpu_s_this_process": round(cpu, 1),
        "load_average_1_5_15": [round(x, 2) for x in load], "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    write_result(args.out, "bench_mock_survey", result)
    return result


if __name__ == "__main__":
    main()
