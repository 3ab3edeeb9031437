"""Run every benchmark in this folder with its default sizes; each writes OUT/<name>.json.

    python benchmarks/run_all.py --out runs/bench

Benchmarks run one after another (never in parallel: they measure this machine). The exit
code is non-zero if any benchmark failed; the others still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["bench_environment", "bench_mock", "bench_fetch", "bench_training", "bench_catalog",
              "bench_storage", "bench_publish", "bench_node_loss"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench", help="directory for the JSON results")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    args = parser.parse_args()
    failed = []
    for name in args.only or BENCHMARKS:
        print(f"=== {name}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / f"{name}.py"), "--out", args.out])
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
