"""The GPU check: where the project stands on one GPU, in one command (``make gpu-check``).

Sections, each timed on the same machine in one run (a section that fails is recorded with its
error and the others still run; the JSON is rewritten after every section, so a run cut short
keeps what it measured):

1. ``matmul``: the device's bf16 matrix-product rate (TFLOP/s), the ceiling for (5).
2. ``decode``: JPEG decode rate of the cutouts (mock galaxies, 224 px): Pillow on all CPU
   cores (:func:`hicatalog.cutouts.decode.decode_batch` in one process per core) vs
   torchvision's GPU decoder, batched, bare and through the build's
   :func:`hicatalog.catalog.inference.gpu_decode` (with its header checks).
3. ``train``: training images/s of the paper preset (xresnet34, 224 px) on one device: the
   bare loop (:func:`hicatalog.training.loop.fit`, batches already in memory) at batch 64 and
   256, and ``hicatalog train`` through Ray Train (batch 64, the paper's); the achieved
   fraction of (1) from the network's counted FLOPs (forward + backward).
4. ``inference``: cutouts/s of both paper-preset models with 8-view TTA
   (:func:`hicatalog.catalog.inference.predict_images`) on device-resident uint8 tensors, at
   several batch sizes, fp32 and bf16; and how far bf16 predictions are from fp32 ones.
5. ``build``: ``build-catalog`` end to end on ``--build-n`` mock cutouts (Ray Data reading,
   decoding, one inference actor per GPU, writer, manifest) with CPU and GPU decoding, against
   (4) at the same batch and precision.
6. Peak GPU memory of each section: ``torch.cuda.max_memory_allocated`` in this process,
   and the peak of ``nvidia-smi``'s used memory over the Ray sections (other processes).

Full mode is sized for about 6 minutes on one H100/H200 (the sections share ``--budget-s``;
the build shrinks ``--build-n`` to the time left, and says so). ``--smoke`` runs every section
with tiny sizes on CPU as well, which CI does (``tests/test_gpu_check.py``).

    .venv/bin/python benchmarks/gpu_check.py --out runs/gpu_check            # on a GPU machine
    .venv/bin/python benchmarks/gpu_check.py --smoke --out runs/gpu_smoke    # anywhere

Prints a table and writes ``OUT/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

# Progress bars of every Ray Data stage would bury the numbers: off unless asked for.
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import PeakSampler, write_result  # noqa: E402  (benchmarks/_results.py)

from hicatalog.catalog.inference import gpu_decode, predict_images  # noqa: E402
from hicatalog.config import BuildCatalogConfig, TrainConfig  # noqa: E402
from hicatalog.cutouts.decode import decode_batch  # noqa: E402
from hicatalog.cutouts.shards import write_shard  # noqa: E402
from hicatalog.models import ModelCard, build_model, load_model, save_model  # noqa: E402
from hicatalog.training.loop_config import LoopConfig  # noqa: E402
from hicatalog.training.presets import PRESETS  # noqa: E402

SECTIONS = ("matmul", "decode", "train", "inference", "build")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Problem sizes of one mode: the paper preset in full, a tiny network in ``--smoke``."""

    arch: str
    width: float
    image_px: int          # network input side
    cutout_px: int         # stored JPEG side
    pool: int              # distinct mock galaxies rendered (tiled to the sizes below)
    matmul_n: int
    decode_n: int
    infer_batches: tuple[int, ...]
    infer_seconds: float   # timed seconds per (precision, batch)
    bare_train_batches: tuple[int, ...]
    bare_train_steps: int
    train_rows: int
    train_epochs: int
    build_n: int
    build_batch: int


FULL = Sizes(arch="xresnet34", width=1.0, image_px=224, cutout_px=224, pool=256,
             matmul_n=8192, decode_n=16384, infer_batches=(64, 256, 512), infer_seconds=3.0,
             bare_train_batches=(64, 256), bare_train_steps=40, train_rows=8192,
             train_epochs=2, build_n=50_000, build_batch=256)
SMOKE = Sizes(arch="xresnet18", width=0.25, image_px=32, cutout_px=64, pool=16,
              matmul_n=256, decode_n=128, infer_batches=(16,), infer_seconds=0.5,
              bare_train_batches=(16,), bare_train_steps=4, train_rows=96,
              train_epochs=1, build_n=256, build_batch=16)


# ---------------------------------------------------------------------------- helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def _timed(fn, device: torch.device, seconds: float, warmup: int = 2) -> tuple[float, int]:
    """Run ``fn`` ``warmup`` times, then repeatedly for about ``seconds``; (seconds, calls)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if n >= 3 and time.perf_counter() - t0 >= seconds:
            break
    _sync(device)
    return time.perf_counter() - t0, n


def gpu_used_mb() -> float | None:
    """Used memory (MiB) of GPU 0 over all processes, from ``nvidia-smi`` (None without it)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True, text=True, timeout=10,
        )
        return float(out.stdout.strip().splitlines()[0]) if out.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


class GPUMemory(PeakSampler):
    """Peak of :func:`gpu_used_mb` over a ``with`` block (the Ray sections: other processes)."""

    def __init__(self) -> None:
        super().__init__(gpu_used_mb, interval=0.25)
        self.before = gpu_used_mb()

    def result(self) -> dict[str, float | None]:
        return {"gpu_used_peak_mb": self.peak, "gpu_used_before_mb": self.before}


def render_pool(work: str, s: Sizes) -> pa.Table:
    """``s.pool`` mock galaxies rendered as the survey mock does (cutouts contract rows)."""
    from hicatalog.mock.survey import generate_mock

    paths = generate_mock(os.path.join(work, "pool"), n=s.pool, seed=0, image_size=s.cutout_px,
                          engine="local")
    return pa.concat_tables(pq.read_table(f) for f in sorted(glob.glob(
        os.path.join(paths["cutouts"], "*.parquet"))))


def tile_shards(pool: pa.Table, n: int, out: str, rows_per_shard: int = 2048,
                seed: int = 0) -> str:
    """Write ``n`` rows cycling through ``pool`` with unique ids and jittered positions."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n) % pool.num_rows
    t = pool.take(pa.array(idx))
    t = t.set_column(t.schema.get_field_index("object_id"), "object_id",
                     pa.array([f"gpu{i:09d}" for i in range(n)]))
    for col in ("ra", "dec"):
        j = t.schema.get_field_index(col)
        v = t[col].to_numpy() + rng.uniform(-0.5, 0.5, n)
        t = t.set_column(j, col, pa.array(np.clip(v, -89.9, 89.9) if col == "dec" else v % 360.0))
    for k, lo in enumerate(range(0, n, rows_per_shard)):
        write_shard(t.slice(lo, rows_per_shard), out, "part", k)
    return out


def paper_card(task: str, s: Sizes, normalization: dict | None = None) -> ModelCard:
    return ModelCard(
        model_id=f"gpucheck-{task}", task=task, arch=s.arch, width=s.width,
        n_outputs=1 if task == "regression" else 2, image_size=s.image_px,
        cutout_size=s.cutout_px, survey="sdss",
        normalization=normalization or {"mean": [0.1, 0.1, 0.1], "std": [0.2, 0.2, 0.2]},
    )


def save_random_model(out: str, card: ModelCard) -> str:
    torch.manual_seed(0)
    save_model(out, build_model(card), card)
    return out


# ---------------------------------------------------------------------------- sections


def section_matmul(s: Sizes, device: torch.device) -> dict[str, Any]:
    n = s.matmul_n
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    _reset_peak(device)
    t, calls = _timed(lambda: a @ b, device, seconds=2.0 if device.type == "cuda" else 0.2)
    rate = 2 * n**3 * calls / t / 1e12
    return {"n": n, "dtype": "bf16", "tflops": round(rate, 4), "peak_gpu_mb": _peak_mb(device)}


def _decode_chunk(args: tuple[list[bytes], int, int]) -> int:
    images, cutout, out_size = args
    return int(decode_batch(images, cutout, out_size).ok.sum())


def section_decode(s: Sizes, device: torch.device, pool: list[bytes]) -> dict[str, Any]:
    images = [pool[i % len(pool)] for i in range(s.decode_n)]
    res: dict[str, Any] = {"n": s.decode_n, "cutout_px": s.cutout_px,
                           "mean_jpeg_bytes": round(float(np.mean([len(b) for b in pool])))}
    cores = os.cpu_count() or 1
    chunks = [(images[i:i + 256], s.cutout_px, s.cutout_px) for i in range(0, len(images), 256)]
    with cf.ProcessPoolExecutor(cores) as ex:
        list(ex.map(_decode_chunk, chunks[:cores]))  # start the workers
        t0 = time.perf_counter()
        ok = sum(ex.map(_decode_chunk, chunks))
        t = time.perf_counter() - t0
    res["pillow_all_cores"] = {"cores": cores, "per_s": round(ok / t, 1), "ok": ok}
    if device.type != "cuda":
        res["torchvision_gpu"] = "skipped: no CUDA device"
        return res
    try:
        import torchvision.io as tvio
    except ImportError as exc:
        res["torchvision_gpu"] = f"skipped: {exc}"
        return res
    res["torchvision_version"] = __import__("torchvision").__version__
    enc = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in images]
    _reset_peak(device)
    for batch in (64, 256):
        def run(batch=batch):
            for i in range(0, len(enc), batch):
                tvio.decode_jpeg(enc[i:i + batch], mode=tvio.ImageReadMode.RGB, device=device)
        t, calls = _timed(run, device, seconds=1.0, warmup=1)
        res[f"torchvision_gpu_batch{batch}"] = {"per_s": round(len(enc) * calls / t, 1)}
    for batch in (256,):
        def run_build(batch=batch):
            for i in range(0, len(images), batch):
                gpu_decode(images[i:i + batch], s.cutout_px, s.image_px, str(device))
        t, calls = _timed(run_build, device, seconds=1.0, warmup=1)
        res[f"build_gpu_decode_batch{batch}"] = {"per_s": round(len(images) * calls / t, 1)}
    # Same pixels and statuses as the CPU path? nvJPEG and libjpeg may round differently.
    good = images[:256]
    bad = [b"", b"not a jpeg", good[0][: len(good[0]) // 2], good[1]]
    cpu, gpu = decode_batch(good + bad, s.cutout_px, s.image_px), gpu_decode(
        good + bad, s.cutout_px, s.image_px, str(device))
    both = cpu.ok & gpu[1]
    diff = np.abs(cpu.images[both].astype(np.int16) - gpu[0].cpu().numpy()[both].astype(np.int16))
    res["gpu_vs_pillow"] = {
        "rows": len(good) + len(bad), "both_ok": int(both.sum()),
        "pixel_abs_diff_mean": round(float(diff.mean()), 4), "pixel_abs_diff_max": int(diff.max()),
        "statuses_cpu": cpu.status[-len(bad):], "statuses_gpu": gpu[2][-len(bad):],
        "statuses_equal": cpu.status == gpu[2],
    }
    res["peak_gpu_mb"] = _peak_mb(device)
    return res


def _flops_per_image(card: ModelCard, device: torch.device) -> float:
    """FLOPs of one forward + backward pass of one image (torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(card).to(device)
    x = torch.randn(2, 3, card.image_size, card.image_size, device=device)
    with FlopCounterMode(display=False) as fc:
        model(x).float().sum().backward()
    return fc.get_total_flops() / 2


def _loop_config(card: ModelCard, batch: int, steps: int, epochs: int) -> LoopConfig:
    """The paper preset's optimizer on ``card`` (the loop's defaults for the rest)."""
    hp = PRESETS["paper"]
    return LoopConfig(card=card, epochs=epochs, batch_size=batch, max_lr=hp["max_lr"],
                      weight_decay=hp["weight_decay"], steps_per_epoch=steps)


def section_train(s: Sizes, device: torch.device, work: str, train_dir: str,
                  matmul_tflops: float | None) -> dict[str, Any]:
    from hicatalog.training.loop import fit
    from hicatalog.training.trainer import train

    card = paper_card("regression", s)
    flops = _flops_per_image(card, device)
    res: dict[str, Any] = {"arch": s.arch, "width": s.width, "image_px": s.image_px,
                           "gflops_per_train_image": round(flops / 1e9, 3)}

    def fraction(per_s: float) -> float | None:
        return round(per_s * flops / 1e12 / matmul_tflops, 4) if matmul_tflops else None

    # The network's own ceiling: forward + backward only (no optimizer, no data movement).
    model = build_model(card).to(device).to(memory_format=torch.channels_last)
    for batch in s.bare_train_batches:
        xb = torch.randn(batch, 3, s.image_px, s.image_px, device=device).contiguous(
            memory_format=torch.channels_last)

        def step(xb=xb, model=model):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = model(xb)
            out.float().sum().backward()

        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        _reset_peak(device)
        t, calls = _timed(step, device, seconds=3.0 if device.type == "cuda" else 0.3)
        per_s = batch * calls / t
        res[f"model_fwd_bwd_bf16_batch{batch}"] = {
            "images_per_s": round(per_s, 1), "fraction_of_matmul": fraction(per_s),
            "peak_gpu_mb": _peak_mb(device)}
    del model, step
    rng = np.random.default_rng(0)
    for batch in s.bare_train_batches:
        x = torch.as_tensor(rng.integers(0, 255, (batch, 3, s.image_px, s.image_px), dtype=np.uint8))
        y = torch.as_tensor(rng.normal(-0.5, 0.5, batch).astype(np.float32))
        steps = s.bare_train_steps

        def batches(epoch, x=x, y=y, steps=steps):
            return ((x, y) for _ in range(steps))

        _reset_peak(device)
        _, hist = fit(_loop_config(card, batch, steps, 2), batches,
                      lambda x=x, y=y: iter([(x[:8], y[:8])]), device=device)
        per_s = hist[-1]["train_images_per_s"]  # epoch 2: cuDNN autotuning is in epoch 1
        res[f"bare_loop_batch{batch}"] = {"images_per_s": per_s, "fraction_of_matmul": fraction(per_s),
                                          "peak_gpu_mb": _peak_mb(device)}
    _reset_peak(device)
    cfg = TrainConfig(task="regression", data=[train_dir], out=os.path.join(work, "trained_reg"),
                      preset="paper", arch=s.arch, width=s.width, image_size=s.image_px,
                      epochs=s.train_epochs, workers=1, gpu=device.type == "cuda",
                      val_fraction=0.05, max_failures=0)
    with GPUMemory() as mem:
        t0 = time.perf_counter()
        out = train(**cfg.fields())
        wall = time.perf_counter() - t0
    hist = out["history"]
    per_s = hist[-1]["train_images_per_s"]
    res["ray_train"] = {
        "workers": 1, "batch": PRESETS["paper"]["batch_size"], "rows": s.train_rows,
        "epochs": s.train_epochs, "images_per_s_last_epoch": per_s,
        "images_per_s_by_epoch": [h["train_images_per_s"] for h in hist],
        "epoch_s": [h["epoch_s"] for h in hist], "wall_s": round(wall, 1),
        "fraction_of_matmul": fraction(per_s), **mem.result(),
        "model_dir": out["model_dir"],
    }
    return res


def section_inference(s: Sizes, device: torch.device, pool: list[bytes], reg_dir: str,
                      pr_dir: str) -> dict[str, Any]:
    reg, reg_card = load_model(reg_dir, map_location=device)
    pr, pr_card = load_model(pr_dir, map_location=device)
    decoded = decode_batch(pool, s.cutout_px, s.image_px).images
    res: dict[str, Any] = {"models": [reg_card.arch, pr_card.arch], "image_px": s.image_px,
                           "tta_views": 8, "rates": []}
    preds: dict[str, dict[str, np.ndarray]] = {}
    if device.type == "cuda":  # what cuDNN's kernel timing is worth (the build turns it on)
        torch.backends.cudnn.benchmark = False
        b = s.build_batch
        x = torch.as_tensor(decoded[np.arange(b) % len(decoded)]).to(device)
        r, p = reg.to(memory_format=torch.channels_last), pr.to(memory_format=torch.channels_last)
        t, calls = _timed(lambda: predict_images(x, r, reg_card, p, pr_card, device=device, bf16=True),
                          device, seconds=s.infer_seconds)
        res["bf16_without_cudnn_benchmark"] = {"batch": b, "cutouts_per_s": round(b * calls / t, 1)}
        torch.backends.cudnn.benchmark = True
    for precision in ("fp32", "bf16"):
        bf16 = precision == "bf16"
        fmt = torch.channels_last if bf16 else torch.contiguous_format
        reg, pr = reg.to(memory_format=fmt), pr.to(memory_format=fmt)
        for batch in s.infer_batches:
            x = torch.as_tensor(decoded[np.arange(batch) % len(decoded)]).to(device)
            _reset_peak(device)
            def run(x=x, reg=reg, pr=pr, bf16=bf16):
                predict_images(x, reg, reg_card, pr, pr_card, tta=True, device=device, bf16=bf16)

            t, calls = _timed(run, device, seconds=s.infer_seconds)
            row = {"precision": precision, "batch": batch,
                   "cutouts_per_s": round(batch * calls / t, 1), "peak_gpu_mb": _peak_mb(device)}
            res["rates"].append(row)
            print(f"  inference {precision} batch {batch}: {row['cutouts_per_s']} cutouts/s", flush=True)
        x = torch.as_tensor(decoded).to(device)
        preds[precision] = predict_images(x, reg, reg_card, pr, pr_card, tta=True, device=device, bf16=bf16)
    dm = np.abs(preds["bf16"]["m_pred"] - preds["fp32"]["m_pred"])
    dp = np.abs(preds["bf16"]["p_cnn"] - preds["fp32"]["p_cnn"])
    res["bf16_vs_fp32"] = {"n": int(len(dm)), "m_pred_abs_diff_median_dex": float(np.median(dm)),
                           "m_pred_abs_diff_max_dex": float(dm.max()),
                           "m_pred_fp32_std_dex": float(np.std(preds["fp32"]["m_pred"])),
                           "p_cnn_abs_diff_max": float(dp.max())}
    return res


def section_build(s: Sizes, device: torch.device, work: str, pool_table: pa.Table,
                  reg_dir: str, pr_dir: str, inference: dict | None,
                  seconds_left: float, decode_modes: tuple[str, ...] = ("cpu", "gpu")) -> dict[str, Any]:
    import importlib.util

    from hicatalog.catalog.build import build_catalog

    gpu = device.type == "cuda"
    modes = ["cpu", "gpu"] if gpu and importlib.util.find_spec("torchvision") else ["cpu"]
    modes = [m for m in modes if m in decode_modes]
    bf16 = gpu  # precision "auto"
    ref = None
    for row in (inference or {}).get("rates", []):
        if row["batch"] == s.build_batch and row["precision"] == ("bf16" if bf16 else "fp32"):
            ref = row["cutouts_per_s"]
    n = s.build_n
    res: dict[str, Any] = {"batch": s.build_batch, "precision": "bf16" if bf16 else "fp32",
                           "bare_forward_per_s": ref, "runs": []}
    if ref:  # leave each run time for 2x slower than the bare forward, plus start-up
        fit_n = int((seconds_left / len(modes) - 45.0) * ref / 2.0)
        if fit_n < n:
            n = max(min(n, fit_n), 2048)
            res["build_n_reduced_to_fit_budget"] = n
    cut = tile_shards(pool_table, n, os.path.join(work, f"build_cutouts_{n}"), seed=1)
    for mode in modes:
        out = os.path.join(work, f"catalog_{mode}")
        cfg = BuildCatalogConfig(cutouts=cut, regression=reg_dir, pr=pr_dir, out=out, gpu=gpu,
                                 decode=mode, batch_size=s.build_batch)
        with GPUMemory() as mem:
            t0 = time.perf_counter()
            manifest = build_catalog(cfg)
            wall = time.perf_counter() - t0
        rows = manifest.rows.total
        ok = manifest.rows.status.get("ok", 0)
        per_s = rows / wall
        run = {"decode": mode, "n": n, "rows": rows, "ok_rows": ok, "wall_s": round(wall, 1),
               "end_to_end_per_s": round(per_s, 1),
               "ratio_to_bare_forward": round(per_s / ref, 3) if ref else None,
               "inference": manifest.to_dict().get("inference"), **mem.result()}
        res["runs"].append(run)
        print(f"  build decode={mode}: {rows} rows in {wall:.1f} s = {per_s:.0f}/s", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    return res


# ---------------------------------------------------------------------------- driver


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "cpus": os.cpu_count(), "device": str(device),
    }
    try:
        import ray

        env["ray"] = ray.__version__
    except ImportError:
        env["ray"] = None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 1e9, 1),
                   multiprocessors=p.multi_processor_count, cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    return env


def print_table(result: dict[str, Any]) -> None:
    r = result["sections"]
    lines = [f"GPU check on {result['environment'].get('gpu', 'CPU')} "
             f"({'smoke' if result['smoke'] else 'full'} sizes)"]

    def get(*keys):
        d: Any = r
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    for name in SECTIONS:
        sec = r.get(name, {})
        if sec.get("status") != "ok":
            lines.append(f"  {name:<10} {sec.get('status', 'not run')}")
    lines.append(f"  bf16 matmul              {get('matmul', 'tflops')} TFLOP/s")
    lines.append(f"  decode Pillow all cores  {get('decode', 'pillow_all_cores', 'per_s')} /s")
    for k in ("torchvision_gpu_batch64", "torchvision_gpu_batch256", "build_gpu_decode_batch256"):
        if isinstance(get("decode", k), dict):
            lines.append(f"  decode {k:<17} {get('decode', k, 'per_s')} /s")
    for row in get("inference", "rates") or []:
        lines.append(f"  inference {row['precision']} b{row['batch']:<5} {row['cutouts_per_s']:>10} "
                     f"cutouts/s  peak {row['peak_gpu_mb']} MB")
    if get("inference", "bf16_without_cudnn_benchmark"):
        d = get("inference", "bf16_without_cudnn_benchmark")
        lines.append(f"  inference bf16 b{d['batch']} without cudnn.benchmark {d['cutouts_per_s']} cutouts/s")
    if get("inference", "bf16_vs_fp32"):
        d = get("inference", "bf16_vs_fp32")
        lines.append(f"  bf16-fp32 |dm| median {d['m_pred_abs_diff_median_dex']:.4f} max "
                     f"{d['m_pred_abs_diff_max_dex']:.4f} dex; |dp| max {d['p_cnn_abs_diff_max']:.4f}")
    for k, v in (get("train") or {}).items():
        if isinstance(v, dict) and ("images_per_s" in v or "images_per_s_last_epoch" in v):
            ips = v.get("images_per_s", v.get("images_per_s_last_epoch"))
            lines.append(f"  train {k:<18} {ips} images/s  fraction of matmul {v.get('fraction_of_matmul')}")
    for run in get("build", "runs") or []:
        lines.append(f"  build decode={run['decode']:<4} n={run['n']:<7} {run['end_to_end_per_s']} "
                     f"cutouts/s  ratio to bare forward {run['ratio_to_bare_forward']}  "
                     f"GPU peak {run['gpu_used_peak_mb']} MB")
    print("\n".join(lines), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/gpu_check")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; runs on CPU too (CI)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="seconds for the whole check (default 420 full, 600 smoke)")
    ap.add_argument("--build-n", type=int, default=None, help="cutouts of the end-to-end build")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma list of sections to run")
    ap.add_argument("--build-decode", default="cpu,gpu", help="decode modes of the build section")
    ap.add_argument("--work", default=None, help="scratch directory (default: a temp dir, removed)")
    args = ap.parse_args()
    s = SMOKE if args.smoke else FULL
    if args.build_n:
        s = dataclasses.replace(s, build_n=args.build_n)
    budget = args.budget_s or (600.0 if args.smoke else 420.0)
    wanted = [x for x in args.sections.split(",") if x]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t_start = time.perf_counter()
    work = args.work or tempfile.mkdtemp(prefix="gpu_check_")
    os.makedirs(work, exist_ok=True)
    result: dict[str, Any] = {"benchmark": "gpu_check", "smoke": args.smoke,
                              "sizes": dataclasses.asdict(s), "environment": environment(device),
                              "budget_s": budget, "sections": {}}
    print(json.dumps(result["environment"]), flush=True)
    failed = False
    try:
        pool_table = render_pool(work, s)
        pool = pool_table.column("image").to_pylist()
        train_dir = None
        reg_dir = save_random_model(os.path.join(work, "reg"), paper_card("regression", s))
        pr_dir = save_random_model(os.path.join(work, "pr"), paper_card("pr", s))
        for name in SECTIONS:
            if name not in wanted:
                continue
            left = budget - (time.perf_counter() - t_start)
            if left < 20:
                result["sections"][name] = {"status": f"skipped: {left:.0f} s of the budget left"}
                continue
            print(f"== {name} ({left:.0f} s of the budget left)", flush=True)
            t0 = time.perf_counter()
            try:
                if name == "matmul":
                    sec = section_matmul(s, device)
                elif name == "decode":
                    sec = section_decode(s, device, pool)
                elif name == "train":
                    train_dir = tile_shards(pool_table, s.train_rows, os.path.join(work, "train_cutouts"))
                    mm = result["sections"].get("matmul", {}).get("tflops")
                    sec = section_train(s, device, work, train_dir, mm)
                    reg_dir = sec["ray_train"]["model_dir"]  # trained weights for (4) and (5)
                elif name == "inference":
                    sec = section_inference(s, device, pool, reg_dir, pr_dir)
                else:
                    sec = section_build(s, device, work, pool_table, reg_dir, pr_dir,
                                        result["sections"].get("inference"), left,
                                        tuple(args.build_decode.split(",")))
                sec["status"] = "ok"
            except Exception as exc:  # one failed section must not lose the others
                failed = True
                traceback.print_exc()
                sec = {"status": f"failed: {type(exc).__name__}: {str(exc)[:500]}"}
            sec["section_s"] = round(time.perf_counter() - t0, 1)
            result["sections"][name] = sec
            result["total_s"] = round(time.perf_counter() - t_start, 1)
            write_result(args.out, "gpu_check", result)
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except ImportError:
            pass
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    result["total_s"] = round(time.perf_counter() - t_start, 1)
    write_result(args.out, "gpu_check", result)
    print_table(result)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
