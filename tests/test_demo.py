"""`hicatalog demo` in-process on a small mock: every artefact exists and is readable."""

from __future__ import annotations

import json

import pytest

from hicatalog.config import DemoConfig


@pytest.mark.slow
def test_demo_small(ray_local, tmp_path):
    import polars as pl

    from hicatalog.demo import run_demo

    out = tmp_path / "demo"
    summary = run_demo(DemoConfig(out=str(out), n_train=400, n_survey=300, epochs=1))
    for sub in ("mock/train/cutouts", "mock/survey/truth.parquet", "models/regression/model_card.json",
                "models/pr/model_card.json", "catalog/_manifest.json", "report/metrics.json"):
        assert (out / sub).exists(), sub
    from hicatalog.catalog.reader import open_catalog

    current = open_catalog(str(out / "catalog"))  # the demo published version 1, as HATS
    assert current.version == 1 and current.rows == 300
    cat = pl.read_parquet(current.files)
    assert cat.height == 300 and cat["object_id"].n_unique() == 300
    assert cat.filter(pl.col("status") == "ok").height == 300
    # the summary on disk tells what happened: every row predicted and scored, every step timed
    written = json.loads((out / "demo_summary.json").read_text())
    assert written["rows_by_status"] == {"ok": 300}
    assert written["metrics"]["counts"]["n_matched"] == 300
    assert list(written["timings_s"]) == ["mock (training sample)", "mock (survey)", "train regression",
                                          "train pr", "build catalog", "evaluate"]
    assert sum(written["timings_s"].values()) <= written["total_s"] + 0.4  # each rounded to 0.1 s
    assert written["catalog"] == str(out / "catalog") == summary["catalog"]
