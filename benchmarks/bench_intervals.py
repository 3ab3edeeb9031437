"""What fitting the group-conditional intervals costs: :func:`fit_group_quantiles` on
synthetic scores with 4 group variables of 5 bins (17 features, 21 with a missing bin each),
for ``--rows`` calibration rows, without and with 30% censored rows (each imputed
``--imputations`` times), ``--repeats`` times; and, for comparison, one quantile solved as
the primal LP (``2 N + P`` variables, ``N`` equality rows) that the module does not use.

    .venv/bin/python benchmarks/bench_intervals.py --out benchmarks/results

Prints the times and writes ``OUT/bench_intervals.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import scipy.sparse as sparse
from _results import write_result
from scipy.optimize import linprog

from hicatalog.models.intervals import GROUP_QUANTILES, fit_group_quantiles
from hicatalog.storage import utc_timestamp


def synthetic(rng: np.random.Generator, n: int, missing: bool) -> tuple[np.ndarray, dict]:
    x = {f"v{j}": rng.random(n) for j in range(4)}
    s = sum(0.2 * (np.floor(v * 5) - 2) for v in x.values()) + rng.standard_normal(n)
    if missing:
        x = {k: np.where(rng.random(n) < 0.05, np.nan, v) for k, v in x.items()}
    return s, x


def primal_seconds(s: np.ndarray, x: dict, tau: float) -> float:
    """One quantile as the primal LP: min sum tau u + (1 - tau) v, phi b + u - v = s."""
    n = s.size
    cols = [np.ones(n)] + [(np.floor(v * 5) == j).astype(float) for v in x.values()
                           for j in range(1, 5)]
    phi = sparse.csr_matrix(np.column_stack(cols))
    a_eq = sparse.hstack([phi, sparse.identity(n), -sparse.identity(n)]).tocsc()
    c = np.concatenate([np.zeros(phi.shape[1]), np.full(n, tau), np.full(n, 1 - tau)])
    bounds = [(None, None)] * phi.shape[1] + [(0, None)] * (2 * n)
    t0 = time.perf_counter()
    res = linprog(c, A_eq=a_eq, b_eq=s, bounds=bounds, method="highs")
    assert res.status == 0, res.message
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--rows", type=int, nargs="+", default=[2_000, 20_000])
    ap.add_argument("--imputations", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--primal", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    runs = []
    for n in args.rows:
        for missing in (False, True):
            for censored in (0.0, 0.3):
                s, x = synthetic(rng, n, missing)
                limit = rng.random(n) < censored
                for r in range(args.repeats):
                    t0 = time.perf_counter()
                    rec = fit_group_quantiles(s, x, upper_bound=limit,
                                              n_imputations=args.imputations)
                    dt = time.perf_counter() - t0
                    row = {"rows": n, "features": len(rec["features"]), "censored": censored,
                           "lp_rows": n + int(limit.sum()) * (args.imputations - 1),
                           "quantiles": len(GROUP_QUANTILES), "repeat": r, "fit_s": round(dt, 3)}
                    runs.append(row)
                    print(row)
        if args.primal:
            s, x = synthetic(rng, n, False)
            dt = primal_seconds(s, x, 0.16)
            runs.append({"rows": n, "features": 17, "primal_one_quantile_s": round(dt, 3)})
            print(runs[-1])
    write_result(args.out, "bench_intervals", {
        "date": utc_timestamp(), "host": platform.node(), "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(), "runs": runs,
        "command": (f"benchmarks/bench_intervals.py --rows {' '.join(map(str, args.rows))} "
                    f"--imputations {args.imputations} --repeats {args.repeats}"
                    + ("" if args.primal else " --no-primal")),
    })

if __name__ == "__main__":
    main()
