"""`ray job submit` end to end: a real Ray head, the demo job (the default demo's every
artefact checked), a catalog read back with DuckDB."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from raycluster import kill_session

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head():
    """`ray start --head --block` in its own temp dir; terminating it takes the cluster down.

    A private --temp-dir keeps other tests' `ray.init()` from attaching to this head.
    """
    temp_dir = tempfile.mkdtemp(prefix="rayh", dir="/tmp")
    port, dash = _free_port(), _free_port()
    # The other tests' local Ray instance may still hold the default agent ports (52365 ...):
    # a head whose job agent cannot bind answers "No available agent" forever. Own ports.
    agent_ports = [
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        f"--ray-client-server-port={_free_port()}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray 2.60 heads enable token auth; the head writes ~/.ray/auth_token and the job CLI
    # sends it only when the mode is set explicitly.
    env["RAY_AUTH_MODE"] = "token"
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--temp-dir={temp_dir}", "--disable-usage-stats", *agent_ports],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 120
    while time.time() < deadline:
        r = subprocess.run([RAY, "job", "list", "--address", address], env=env,
                           capture_output=True, text=True)
        if r.returncode == 0:
            break
        time.sleep(2)
    else:
        proc.terminate()
        pytest.fail("the Ray head's job server did not come up in 120 s")
    try:
        yield address, env
    finally:
        # SIGKILL, as tests/raycluster.py does: Ray's graceful stop took ~30 s here and a
        # throwaway head (its address file is in its own temp dir) gains nothing from it
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        kill_session(proc.pid)  # the head's processes that left its process group
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_demo_job_submitted_to_ray_head(ray_head, tmp_path):
    """The demo as a job (`ray job submit ... jobs/demo.py`) with the demo's defaults but the
    sizes: every artefact exists and is readable, the catalog is read back with DuckDB."""
    import polars as pl

    from hicatalog.catalog.reader import open_catalog

    address, env = ray_head
    out = tmp_path / "demo"
    cfg = tmp_path / "demo.toml"
    cfg.write_text(f'out = "{out}"\nn_train = 400\nn_survey = 300\nepochs = 1\n')
    # The job server answers `job list` before its agent accepts jobs ("No available agent
    # to submit job, please try again later"): retry that answer for a while.
    for _ in range(30):
        sub = subprocess.run(
            [RAY, "job", "submit", "--address", address, "--no-wait", "--working-dir", str(REPO),
             "--", sys.executable, "jobs/demo.py", "--config", str(cfg)],
            env=env, capture_output=True, text=True,
        )
        if sub.returncode == 0 or "No available agent" not in sub.stderr:
            break
        time.sleep(4)
    assert sub.returncode == 0, f"ray job submit failed:\n{sub.stdout}\n{sub.stderr[-4000:]}"
    # The Jobs CLI logs to stderr: read both streams.
    job_id = re.search(r"raysubmit_\w+", sub.stdout + sub.stderr).group(0)
    status = ""
    deadline = time.time() + 480
    while time.time() < deadline:
        r = subprocess.run([RAY, "job", "status", "--address", address, job_id],
                           env=env, capture_output=True, text=True)
        status = (r.stdout + r.stderr).lower()
        if any(f"job '{job_id.lower()}' {s}" in status for s in ("succeeded", "failed", "stopped")):
            break
        time.sleep(5)
    logs = subprocess.run([RAY, "job", "logs", "--address", address, job_id],
                          env=env, capture_output=True, text=True).stdout
    assert f"job '{job_id.lower()}' succeeded" in status, f"job did not succeed: {status}\n{logs[-4000:]}"
    assert "hicatalog demo finished" in logs

    import duckdb

    for sub_path in ("mock/train/cutouts", "mock/survey/truth.parquet", "models/regression/model_card.json",
                     "models/pr/model_card.json", "catalog/_manifest.json", "report/metrics.json"):
        assert (out / sub_path).exists(), sub_path
    current = open_catalog(str(out / "catalog"))  # the demo published version 1, as HATS
    assert current.version == 1 and current.rows == 300
    n = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet({current.files!r})").fetchone()[0]
    assert n == 300
    cat = pl.read_parquet(current.files)
    assert cat["object_id"].n_unique() == 300 and cat.filter(pl.col("status") == "ok").height == 300
    # the default demo trains a regression ensemble of 2 and one PR network, both calibrated,
    # and the catalog has error bars
    cards = {t: json.loads((out / "models" / t / "model_card.json").read_text()) for t in ("regression", "pr")}
    assert [cards[t]["ensemble_size"] for t in cards] == [2, 1] and cards["regression"]["head"] == "gaussian"
    assert cards["regression"]["calibration"]["method"] == "variance_scale"
    assert cards["pr"]["calibration"]["method"] == "temperature"
    assert cat["m_pred_err"].null_count() == 0 and (cat["m_pred_err"] > 0).all()
    # every error bar carries at least the out-of-distribution term (1 - p_cnn) * tau2
    tau2 = cards["regression"]["calibration"]["ood_variance"]
    assert 0 < tau2 < 2 and (cat["m_pred_err"] ** 2 >= (1 - cat["p_cnn"]) * tau2 * (1 - 1e-5)).all()
    # the summary on disk tells what happened: every row predicted and scored, every step timed
    written = json.loads((out / "demo_summary.json").read_text())
    assert written["rows_by_status"] == {"ok": 300}
    assert written["metrics"]["counts"]["n_matched"] == 300
    assert written["metrics"]["uncertainty"]["by_group"]  # the report checked the error bars
    assert list(written["timings_s"]) == ["mock (training sample)", "mock (survey)", "train regression",
                                          "train pr", "build catalog", "evaluate"]
    assert sum(written["timings_s"].values()) <= written["total_s"] + 0.4  # each rounded to 0.1 s
    assert written["catalog"] == str(out / "catalog")


@pytest.mark.parametrize("job,flag", [("demo", "--out"), ("train", "--train-samples"),
                                      ("build_catalog", "--since-manifest"),
                                      ("workflow", "--max-z")])
def test_every_job_entrypoint_is_its_command(job, flag):
    """Each jobs/*.py is the CLI command of its name (what `ray job submit` runs): its --help
    is that command's, and the folder holds no entrypoint this test does not know."""
    assert sorted(p.stem for p in (REPO / "jobs").glob("*.py")) == [
        "build_catalog", "demo", "train", "workflow"]
    r = subprocess.run([sys.executable, f"jobs/{job}.py", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert flag in r.stdout and f"hicatalog {job.replace('_', '-')}" in r.stdout
