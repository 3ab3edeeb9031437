"""`hicatalog demo` end to end, once: the installed command with the demo's defaults but the
sizes, ``--out`` on the S3 server (tests/conftest.py), every artefact checked.

Job submission (``ray job submit``) is guarded by tests/test_cluster.py, whose jobs run
jobs/build_catalog.py and jobs/train.py on a cluster; tests/test_jobs.py checks that each
jobs/*.py is its command. DuckDB reading a published catalog is guarded on a disk by
tests/test_catalog.py's run of the queries of docs/guides/querying.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hicatalog.models.artifact import MODEL_CACHE_ENV


def _regular_files(root: Path) -> list[str]:
    """The regular files under ``root`` (relative paths, sorted); sockets, links and empty
    directories are not files a run wrote data to."""
    found = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                found.append(os.path.relpath(path, root))
    return sorted(found)


@pytest.mark.slow
def test_demo_on_s3_writes_everything_to_the_bucket_and_nothing_else_locally(
        s3_server, s3_bucket, tmp_path):
    """`hicatalog demo --out s3://...` as a user runs it: the installed command in an empty
    working directory, with its own HOME, TMPDIR and Ray temp dir (a new local Ray, not the
    tests'), the model cache left at its default (``~/.cache/hicatalog/models``).

    The bucket gets every output: both mocks, both models with their cards (the default
    regression ensemble of 2 with the Gaussian head and variance-scale calibration, one
    temperature-calibrated PR network), the catalog (HATS version 1, one row per survey galaxy,
    every row with an error bar of at least its out-of-distribution term), the report and the
    summary (every row predicted and scored, every step timed). The local disk gets no file outside
    the caches under ``~/.cache`` (the models keyed by their hashes; matplotlib's font list),
    Ray's temp dir and the token a new local Ray writes to ``~/.ray/auth_token``. The closing
    hints run as printed: the copy command brings the report here, the query reads the
    catalog from the bucket."""
    import polars as pl

    from hicatalog import storage
    from hicatalog.catalog.reader import open_catalog, read_catalog
    from hicatalog.models.artifact import load_card

    work, home, tmp = (tmp_path / d for d in ("work", "home", "tmp"))
    for d in (work, home, tmp):
        d.mkdir()
    # Ray's socket paths must stay short: its temp dir goes directly under /tmp
    ray_tmp = tempfile.mkdtemp(prefix="hcdemo", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", MODEL_CACHE_ENV)}
    env.update(HOME=str(home), TMPDIR=str(tmp), RAY_TMPDIR=ray_tmp)
    out = f"{s3_bucket}/demo"
    n_train, n_survey = 200, 150
    try:
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("hicatalog")), "demo", "--out", out,
             "--n-train", str(n_train), "--n-survey", str(n_survey), "--n-calibration", "300",
             "--train.epochs", "1"],
            cwd=work, env=env, capture_output=True, text=True, timeout=900)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "hicatalog demo finished" in proc.stdout

    # the bucket: every output
    files = {storage.relative(f, out) for f in storage.list_files(out, recursive=True)}
    for name in ("demo_summary.json", "mock/train/truth.parquet", "mock/survey/tracers.parquet",
                 "mock/survey/truth.parquet", "models/regression/model_card.json",
                 "models/pr/model_card.json", "calibration/calibration.json",
                 "mock/survey/_mock.json", "catalog/_manifest.json", "report/index.html",
                 "catalog/version=1/README.md", "catalog/version=1/collection.properties",
                 "catalog/version=1/hi_catalog/properties",
                 "report/metrics.json", "report/table2.md"):
        assert name in files, name
    assert [f for f in files if f.startswith("mock/survey/cutouts/part-")]
    assert [f for f in files if f.startswith("mock/train/cutouts/part-")]
    assert [f for f in files if re.fullmatch(r"catalog/version=1/hi_catalog/dataset/Norder=\d+/Dir=\d+/Npix=\d+\.parquet", f)]
    truth = storage.read_parquet(f"{out}/mock/survey/truth.parquet")
    assert truth.num_rows == n_survey
    current = open_catalog(f"{out}/catalog")  # the demo published version 1, as HATS
    assert current.version == 1 and current.rows == n_survey
    cat = pl.from_arrow(read_catalog(f"{out}/catalog"))
    assert sorted(cat["object_id"].to_list()) == sorted(truth.column("object_id").to_pylist())
    assert cat["object_id"].n_unique() == n_survey
    assert cat.filter(pl.col("status") == "ok").height == n_survey
    shas, cards = [], {}
    for task in ("regression", "pr"):
        card = cards[task] = load_card(f"{out}/models/{task}")
        assert card.task == task and f"models/{task}/weights.pt" in files
        assert f"models/{task}/metrics.jsonl" in files
        assert any(f.startswith(f"models/{task}/ray/") for f in files)  # Ray Train checkpoints
        shas.append(card.weights_sha256)
    # the default demo trains a censored regression ensemble of 2 (detections and upper
    # limits) and one PR network, both calibrated, calibrates them on the calibration mock,
    # and the catalog has intervals, p_detect and H I masses from the mock's stellar masses
    reg, pr = cards["regression"], cards["pr"]
    assert (reg.ensemble_size, pr.ensemble_size) == (2, 1) and reg.head == "gaussian"
    assert reg.hyperparameters["likelihood"] == "censored"
    assert reg.metrics["selection"]["n_upper_limits"] > 0
    assert reg.calibration["method"] == "variance_scale" and "ood_variance" not in reg.calibration
    assert pr.calibration["method"] == "temperature"
    calib = json.loads(storage.read_bytes(f"{out}/calibration/calibration.json"))
    assert calib["models"] == {"regression": reg.model_id, "pr": pr.model_id}
    assert calib["n_rows"] == 300 and calib["p_detect"]["n"] == 300
    assert cat["m_pred_err"].null_count() == 0 and (cat["m_pred_err"] > 0).all()
    assert ((cat["m_lo95"] <= cat["m_lo68"]) & (cat["m_lo68"] <= cat["m_pred"])
            & (cat["m_pred"] <= cat["m_hi68"]) & (cat["m_hi68"] <= cat["m_hi95"])).all()
    assert cat["p_detect"].null_count() == 0 and cat["p_detect"].is_between(0, 1).all()
    mstar = pl.from_arrow(storage.read_parquet(f"{out}/mock/survey/cutouts", ["object_id", "log_mstar"]))
    joined = cat.join(mstar, on="object_id", suffix="_in")
    assert (joined["log_mstar"] - joined["log_mstar_in"]).abs().max() < 1e-4
    assert ((joined["log_mhi_pred"] - joined["m_pred"] - joined["log_mstar_in"]).abs() < 1e-4).all()
    assert cat["flags"].null_count() == n_survey  # nothing lacking
    metrics = json.loads(storage.read_bytes(f"{out}/report/metrics.json"))
    assert metrics["counts"]["n_matched"] == n_survey
    # the summary tells what happened: every row predicted and scored, every step timed
    summary = json.loads(storage.read_bytes(f"{out}/demo_summary.json"))
    assert summary["catalog"] == f"{out}/catalog" and summary["rows_by_status"] == {"ok": n_survey}
    assert summary["metrics"]["counts"]["n_matched"] == n_survey
    assert summary["metrics"]["uncertainty"]["by_group"]  # the report checked the error bars
    assert list(summary["timings_s"]) == ["mock (training sample)", "mock (survey)",
                                          "mock (calibration)", "train regression", "train pr",
                                          "calibrate", "build catalog", "evaluate"]
    assert sum(summary["timings_s"].values()) <= summary["total_s"] + 0.4  # each rounded to 0.1 s

    # the local disk: nothing but the caches and Ray's own files
    assert os.listdir(work) == []
    assert _regular_files(tmp) == []
    local = _regular_files(home)
    assert [f for f in local if not f.startswith(".cache/")] == [".ray/auth_token"], local
    models = home / ".cache" / "hicatalog" / "models"
    assert sorted(d.name for d in models.iterdir() if d.is_dir()) == sorted(shas)
    assert sorted(f for f in local if f.startswith(".cache/") and not f.startswith(
        (".cache/hicatalog/models/", ".cache/matplotlib/"))) == []

    # the closing hints, as printed, in another empty directory
    hints = proc.stdout.split(f"Everything is under {out}/:", 1)[1].splitlines()
    commands = [line.strip() for line in hints if line.startswith("  ") and " -c " in line]
    assert len(commands) == 2, hints
    view = tmp_path / "view"
    view.mkdir()
    copy, query = (subprocess.run(c, shell=True, cwd=view, env=env, capture_output=True,
                                  text=True, timeout=120) for c in commands)
    assert copy.returncode == 0 and query.returncode == 0, (copy.stderr, query.stderr)
    assert (view / "demo_report" / "metrics.json").read_bytes() == storage.read_bytes(
        f"{out}/report/metrics.json")
    assert "open ./demo_report/index.html" in proc.stdout
    assert "object_id" in query.stdout and "p_cnn" in query.stdout
