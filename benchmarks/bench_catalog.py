"""Catalog build throughput vs the bare model forward, and peak memory vs N.

For each N in ``--sizes`` (default: ``--n`` and ``4 * --n``) the benchmark writes N mock
cutouts (``--size`` px JPEGs, a pool of 256 distinct images under unique ids, 2048 rows per
shard), starts a fresh local Ray, and runs the whole ``build_catalog`` (checks, id pre-pass,
environment, read+decode tasks, ONE actor with both models and 8-view TTA, writer, manifest).
In the same run it times the bare forward of the same two models with the same batch size
and torch threads (``--threads``: the CPUs the actor reserves, default all but one, which the
read+decode tasks get) on already-decoded uint8 tensors (:func:`predict_images`), so

    ratio = end-to-end cutouts/s  /  bare-forward cutouts/s     (goal >= 0.8 on CPU)

Peak memory is the largest sum of RSS over this process and all its descendants (the Ray
processes it started), sampled every 0.1 s during the build; it should not grow with N.

    .venv/bin/python benchmarks/bench_catalog.py --out runs/bench             # quick
    .venv/bin/python benchmarks/bench_catalog.py --out runs/bench --n 100000  # 100k and 400k

Prints one line per N and writes ``OUT/bench_catalog.json``.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time

import numpy as np
import pyarrow as pa
import torch
from _results import PeakSampler, tree_rss, write_result  # benchmarks/_results.py
from PIL import Image

from hicatalog.catalog.build import build_catalog
from hicatalog.catalog.inference import predict_images
from hicatalog.config import BuildCatalogConfig
from hicatalog.cutouts.decode import decode_batch
from hicatalog.cutouts.shards import write_shard
from hicatalog.models import ModelCard, build_model, load_model, save_model


def make_cutouts(out: str, n: int, size: int, rows_per_shard: int = 2048) -> list[bytes]:
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(256):
        arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=90)
        pool.append(buf.getvalue())
    for s, lo in enumerate(range(0, n, rows_per_shard)):
        m = min(rows_per_shard, n - lo)
        idx = np.arange(lo, lo + m)
        write_shard(pa.table({
            "object_id": [f"g{i:08d}" for i in idx],
            "ra": rng.uniform(120, 240, m), "dec": rng.uniform(0, 60, m),
            "z": rng.uniform(0.002, 0.06, m), "survey": ["sdss"] * m,
            "image": [pool[i % 256] for i in idx],
        }), out, "part", s)
    return pool


def make_models(out: str, size: int, image_size: int, width: float, ensemble: int = 1) -> tuple[str, str]:
    """Untrained xresnet18 regression and PR models; with ``ensemble`` K > 1, deep ensembles
    of K members (the regression networks with the Gaussian head), as ``train --ensemble K``
    writes them."""
    dirs = []
    for task, n_out in (("regression", 2 if ensemble > 1 else 1), ("pr", 2)):
        torch.manual_seed(0)
        card = ModelCard(model_id=f"bench-{task}", task=task, arch="xresnet18", width=width,
                         n_outputs=n_out, image_size=image_size, cutout_size=size, survey="sdss",
                         normalization={"mean": [0.5] * 3, "std": [0.25] * 3},
                         head="gaussian" if task == "regression" and ensemble > 1 else "point",
                         ensemble_size=ensemble)
        d = os.path.join(out, task)
        save_model(d, build_model(card), card)
        dirs.append(d)
    return dirs[0], dirs[1]


def bare_forward(reg_dir: str, pr_dir: str, pool: list[bytes], size: int, decode_size: int,
                 batch: int, threads: int, n_batches: int) -> float:
    """Cutouts/s of both models (8-view TTA) on already-decoded tensors."""
    torch.set_num_threads(threads)
    reg, reg_card = load_model(reg_dir)
    pr, pr_card = load_model(pr_dir)
    imgs = decode_batch([pool[i % len(pool)] for i in range(batch)], size, decode_size).images
    predict_images(imgs, reg, reg_card, pr, pr_card)  # warm-up
    t0 = time.perf_counter()
    for _ in range(n_batches):
        predict_images(imgs, reg, reg_card, pr, pr_card)
    return batch * n_batches / (time.perf_counter() - t0)


def add_build_args(ap: argparse.ArgumentParser) -> None:
    """The inputs' and the build's settings, shared with ``bench_storage.py``."""
    ap.add_argument("--size", type=int, default=64, help="cutout side (px)")
    ap.add_argument("--image-size", type=int, default=64, help="network input side (px)")
    ap.add_argument("--width", type=float, default=0.5, help="xresnet18 width multiplier")
    ap.add_argument("--batch-size", type=int, default=64)
    # The inference actor reserves --threads CPUs (and runs that many torch threads); the
    # read+decode tasks need the rest, so the default leaves them one CPU.
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--object-store-mb", type=int, default=512)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--n", type=int, default=2000, help="smaller N (the larger is 4x)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="explicit list of N")
    ap.add_argument("--ensemble", type=int, default=1,
                    help="members of each model (deep ensembles, one actor): the cost per member")
    add_build_args(ap)
    args = ap.parse_args()
    import ray

    sizes = args.sizes or [args.n, 4 * args.n]
    work = tempfile.mkdtemp(prefix="bench_catalog_")
    results = []
    try:
        reg_dir, pr_dir = make_models(os.path.join(work, "models"), args.size, args.image_size,
                                      args.width, args.ensemble)
        for n in sizes:
            cut = os.path.join(work, f"cutouts_{n}")
            pool = make_cutouts(cut, n, args.size)
            bare_before = bare_forward(reg_dir, pr_dir, pool, args.size, args.image_size,
                                       args.batch_size, args.threads, n_batches=8)
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     object_store_memory=args.object_store_mb * 2**20)
            cfg = BuildCatalogConfig(cutouts=cut, regression=reg_dir, pr=pr_dir,
                                     out=os.path.join(work, f"catalog_{n}"),
                                     batch_size=args.batch_size, actors=1, threads=args.threads)
            with PeakSampler(tree_rss, interval=0.1) as mem:
                t0 = time.perf_counter()
                manifest = build_catalog(cfg)
                wall = time.perf_counter() - t0
            ray.shutdown()
            assert manifest.rows.total == n
            # Timed again after the build: on a shared machine the load changes; use the mean.
            bare_after = bare_forward(reg_dir, pr_dir, pool, args.size, args.image_size,
                                      args.batch_size, args.threads, n_batches=8)
            bare = 0.5 * (bare_before + bare_after)
            e2e = n / wall
            row = {"n": n, "wall_s": round(wall, 2), "end_to_end_per_s": round(e2e, 1),
                   "bare_forward_per_s": round(bare, 1), "ratio": round(e2e / bare, 3),
                   "bare_forward_before_after": [round(bare_before, 1), round(bare_after, 1)],
                   "load_average": os.getloadavg(),
                   "peak_rss_mb": round((mem.peak or 0) / 2**20, 1), "batch_size": args.batch_size,
                   "threads": args.threads, "cutout_px": args.size,
                   "image_px": args.image_size, "width": args.width, "tta": True,
                   "ensemble": args.ensemble}
            results.append(row)
            print(f"N={n:>8,d}  end-to-end {e2e:8.1f}/s  bare forward {bare:8.1f}/s  "
                  f"ratio {e2e / bare:.2f}  wall {wall:7.1f} s  peak RSS {row['peak_rss_mb']:.0f} MB",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_result(args.out, "bench_catalog" if args.ensemble == 1 else f"bench_catalog_ensemble{args.ensemble}",
                 {"benchmark": "catalog", "cpus": os.cpu_count(), "results": results})


if __name__ == "__main__":
    main()
