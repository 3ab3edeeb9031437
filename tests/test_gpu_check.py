"""``make gpu-check``'s smoke mode: every section of benchmarks/gpu_check.py runs (on CPU here,
tiny sizes) and reports numbers in its JSON; the GPU-only parts say they were skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hicatalog.runtime import use_bf16

ROOT = Path(__file__).resolve().parents[1]


def test_precision_rule():
    assert use_bf16("auto", "cuda") and use_bf16("auto", "cuda:1")
    assert not use_bf16("auto", "cpu")
    assert use_bf16("bf16", "cpu") and not use_bf16("fp32", "cuda")
    with pytest.raises(ValueError, match="auto, bf16, fp32"):
        use_bf16("fp16", "cuda")


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_section(tmp_path):
    # its own Ray temp dir (a short path: Ray's socket paths must stay under 108 bytes)
    ray_tmp = tempfile.mkdtemp(prefix="gc", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke",
             "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")],
            capture_output=True, text=True, env=env, timeout=900, cwd=ROOT,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "GPU check on" in proc.stdout  # the printed table
    res = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    sec = res["sections"]
    assert set(sec) == {"matmul", "decode", "train", "inference", "build"}
    assert all(v["status"] == "ok" for v in sec.values()), {k: v["status"] for k, v in sec.items()}
    assert sec["matmul"]["tflops"] > 0
    assert sec["decode"]["pillow_all_cores"]["ok"] == res["sizes"]["decode_n"]
    assert sec["decode"]["pillow_all_cores"]["per_s"] > 0
    rates = {(r["precision"], r["batch"]) for r in sec["inference"]["rates"]}
    assert rates == {(p, b) for p in ("fp32", "bf16") for b in res["sizes"]["infer_batches"]}
    assert all(r["cutouts_per_s"] > 0 for r in sec["inference"]["rates"])
    assert 0 <= sec["inference"]["bf16_vs_fp32"]["m_pred_abs_diff_max_dex"] < 1.0
    train = sec["train"]
    assert train["gflops_per_train_image"] > 0
    assert train["ray_train"]["images_per_s_last_epoch"] > 0
    assert len(train["ray_train"]["images_per_s_by_epoch"]) == res["sizes"]["train_epochs"]
    (run,) = sec["build"]["runs"]  # CPU: Pillow decoding only
    n = res["sizes"]["build_n"]
    assert run["decode"] == "cpu" and run["rows"] == run["ok_rows"] == n
    assert run["ratio_to_bare_forward"] > 0 and run["inference"] == {"precision": "fp32", "decode": "cpu"}
    if res["environment"]["device"] == "cpu":
        assert sec["decode"]["torchvision_gpu"] == "skipped: no CUDA device"
        assert sec["matmul"]["peak_gpu_mb"] is None
