"""Training throughput: Ray Train (one worker, Ray Data ingest) against a plain PyTorch loop.

Both run the same model, data, batch size and training step (:func:`hicatalog.training.loop.fit`):
the plain loop iterates over tensors decoded up front in this process; the Ray Train run is
``hicatalog.training.trainer.train`` with ``workers=1`` (Ray Data decoding and materialising,
``get_dataset_shard`` + ``iter_torch_batches`` ingest, Ray Train reporting and per-epoch
checkpoints). Throughput is the median of the per-epoch training images/s after the first
(warm-up) epoch. On a GPU it also reports the achieved fraction of the measured bf16 matmul
rate (model FLOPs per image from torch's FlopCounterMode).

Usage::

    .venv/bin/python benchmarks/bench_training.py --out runs/bench [--data DIR] [--n 4096]

Writes ``OUT/bench_training.json`` and prints the numbers.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from _results import write_result  # benchmarks/_results.py
from PIL import Image

from hicatalog.config import TrainConfig
from hicatalog.cutouts.decode import decode_batch
from hicatalog.cutouts.shards import list_shards, write_shard
from hicatalog.models import ModelCard, build_model, compute_normalization
from hicatalog.training.data import select_rows
from hicatalog.training.loop import fit, steps_per_epoch
from hicatalog.training.loop_config import LoopConfig
from hicatalog.training.presets import resolve_hyperparameters


def synthetic_shards(out_dir: str, n: int, size: int, seed: int = 0) -> str:
    """``n`` coloured-blob JPEG cutouts with ``m_true`` and ``detected`` labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images, m = [], []
    for _ in range(n):
        t = rng.random()
        r = size / 8 * (1 + rng.random())
        prof = np.exp(-((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (2 * r**2))
        img = 20 + 200 * prof[..., None] * np.array([1 - 0.8 * t, 0.5, 0.2 + 0.8 * t])
        img += rng.normal(0, 6, img.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        images.append(buf.getvalue())
        m.append(2 * t - 1)
    table = pa.table({
        "object_id": [f"b{i:07d}" for i in range(n)], "ra": np.zeros(n), "dec": np.zeros(n),
        "z": np.full(n, 0.03), "survey": ["sdss"] * n, "image": pa.array(images, pa.binary()),
        "m_true": pa.array(np.asarray(m, np.float32)), "detected": pa.array(np.ones(n, bool)),
    })
    for i in range(0, n, 1024):
        write_shard(table.slice(i, 1024), out_dir, "part", i // 1024)
    return out_dir


def _card(cfg: TrainConfig, normalization: dict[str, list[float]]) -> ModelCard:
    """The regression card the benchmark trains (the network and normalisation of ``cfg``)."""
    hp = resolve_hyperparameters(cfg)
    return ModelCard(
        model_id="bench", task="regression", arch=hp["arch"], width=float(hp["width"]),
        n_outputs=1, image_size=int(hp["image_size"]), cutout_size=None, survey="sdss",
        normalization=normalization,
    )


def plain_loop(cfg: TrainConfig, files: list[str], threads: int) -> dict:
    """The same training in-process: decode everything first, then :func:`fit`."""
    import pyarrow.parquet as pq

    hp = resolve_hyperparameters(cfg)
    sel = select_rows(files, cfg.task, seed=cfg.seed, val_fraction=cfg.val_fraction)
    table = pa.concat_tables(pq.read_table(f, columns=["object_id", "image"]) for f in files)
    lookup = {oid: i for i, oid in enumerate(sel.table["object_id"].to_pylist())}
    rows = [lookup.get(o) for o in table["object_id"].to_pylist()]
    keep = [i for i, r in enumerate(rows) if r is not None]
    dec = decode_batch([table["image"][i].as_py() for i in keep], None, int(hp["image_size"]))
    target = sel.table["target"].to_numpy()[[rows[i] for i in keep]]
    is_val = sel.table["is_val"].to_numpy(zero_copy_only=False)[[rows[i] for i in keep]]
    x = torch.from_numpy(dec.images[dec.ok])
    y = torch.from_numpy(np.asarray(target)[dec.ok])
    v = torch.from_numpy(is_val[dec.ok])
    xt, yt, xv, yv = x[~v], y[~v], x[v], y[v]
    bs = int(hp["batch_size"])
    card = _card(cfg, compute_normalization(xt[:1024].numpy()))
    lc = LoopConfig(card=card, epochs=int(hp["epochs"]), batch_size=bs, max_lr=hp["max_lr"],
                    weight_decay=hp["weight_decay"], seed=cfg.seed,
                    steps_per_epoch=steps_per_epoch(len(xt), 1, bs), gpu=cfg.gpu)

    def train_batches(epoch):
        perm = torch.randperm(len(xt), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(xt), bs):
            idx = perm[i : i + bs]
            yield xt[idx], yt[idx]

    def val_batches():
        for i in range(0, len(xv), 2 * bs):
            yield xv[i : i + 2 * bs], yv[i : i + 2 * bs]

    torch.set_num_threads(threads)
    device = "cuda" if cfg.gpu else "cpu"
    _, history = fit(lc, train_batches, val_batches, device=device)
    return {"history": history, "n_train": len(xt)}


def steady(history: list[dict]) -> float:
    rates = [h["train_images_per_s"] for h in history[1:]] or [history[0]["train_images_per_s"]]
    return float(statistics.median(rates))


def gpu_fraction(cfg: TrainConfig, images_per_s: float) -> dict:
    """Achieved fraction of the measured bf16 matmul rate (GPU only)."""
    from torch.utils.flop_counter import FlopCounterMode

    hp = resolve_hyperparameters(cfg)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    t0, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ a
    torch.cuda.synchronize()
    matmul_flops = 2 * 8192**3 * reps / (time.perf_counter() - t0)
    torch.manual_seed(0)
    card = _card(cfg, {"mean": [0.5] * 3, "std": [0.25] * 3})
    model = build_model(card).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, hp["image_size"], hp["image_size"], device="cuda")
    with FlopCounterMode(display=False) as fc, torch.autocast("cuda", dtype=torch.bfloat16):
        model(x).float().sum().backward()
    per_image = fc.get_total_flops() / 8
    return {
        "bf16_matmul_tflops": matmul_flops / 1e12,
        "model_train_gflop_per_image": per_image / 1e9,
        "achieved_fraction_of_matmul_rate": per_image * images_per_s / matmul_flops,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="directory for bench_training.json")
    ap.add_argument("--data", nargs="+", help="cutout shard dirs (default: synthetic blobs)")
    ap.add_argument("--n", type=int, default=4096, help="synthetic cutouts when --data is absent")
    ap.add_argument("--preset", default="quick", choices=["quick", "paper"])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--gpu", action="store_true")
    args = ap.parse_args()

    import ray

    from hicatalog.runtime import init_ray
    from hicatalog.training.trainer import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or [synthetic_shards(os.path.join(tmp, "blobs"), args.n, 224 if args.preset == "paper" else 128)]
        files = list_shards(data)
        cfg = TrainConfig(
            task="regression", data=data, out=os.path.join(tmp, "model"), preset=args.preset,
            workers=1, gpu=args.gpu, epochs=args.epochs, batch_size=args.batch_size,
            image_size=args.image_size,
        )
        init_ray()
        threads = max(1, int(ray.cluster_resources().get("CPU", 1)))
        t0 = time.perf_counter()
        plain = plain_loop(cfg, files, threads)
        t_plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray_res = train(**cfg.fields())
        t_ray = time.perf_counter() - t0
    hp = resolve_hyperparameters(cfg)
    result = {
        "benchmark": "bench_training",
        "device": torch.cuda.get_device_name() if args.gpu else f"cpu ({os.cpu_count()} cores)",
        "torch_threads": threads,
        "config": {k: hp[k] for k in ("arch", "width", "image_size", "batch_size", "epochs")},
        "n_train": plain["n_train"],
        "plain_images_per_s": steady(plain["history"]),
        "ray_train_images_per_s": steady(ray_res["history"]),
        "plain_epochs_images_per_s": [h["train_images_per_s"] for h in plain["history"]],
        "ray_epochs_images_per_s": [h["train_images_per_s"] for h in ray_res["history"]],
        "plain_wall_s": round(t_plain, 1),
        "ray_wall_s": round(t_ray, 1),
    }
    result["ratio_ray_over_plain"] = result["ray_train_images_per_s"] / result["plain_images_per_s"]
    if args.gpu:
        result.update(gpu_fraction(cfg, result["ray_train_images_per_s"]))
    write_result(str(out), "bench_training", result)
    for k, v in result.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
