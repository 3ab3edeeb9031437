"""The example configs in configs/ stay valid as the config models change, and mean what they say."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from hicatalog.cli import COMMANDS
from hicatalog.config import load_config

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BY_FILE = {"demo.toml": "demo", "train.toml": "train", "build_catalog.toml": "build-catalog",
           "workflow.toml": "workflow"}


@pytest.mark.parametrize("name,command", sorted(BY_FILE.items()))
def test_example_config_validates(name, command):
    model = next(c.config for c in COMMANDS if c.name == command)
    cfg = load_config(model, CONFIGS / name)
    written = tomllib.loads((CONFIGS / name).read_text())
    assert len(written) >= 5
    _check_written(cfg, model, written)


def _check_written(cfg, model, written):
    """Every key the file sets (a table's keys inside its options model) arrives with the value
    written there (a renamed or retyped field fails here), and every other key keeps its
    default (a table's own default where the command gives one)."""
    for key, value in written.items():
        if isinstance(value, dict):
            _check_written(getattr(cfg, key), type(getattr(cfg, key)), value)
        else:
            assert getattr(cfg, key) == value, key
    for key, field in model.model_fields.items():
        if key not in written:
            assert getattr(cfg, key) == field.get_default(call_default_factory=True), key

def test_cluster_examples_run_against_a_bucket(s3_server, ray_local, empty_cwd):
    """configs/train.toml then configs/build_catalog.toml, as shipped, on a bucket named like
    theirs (``my-bucket`` on the test's S3 server): the model and the catalog land at the
    URLs the files name and nothing lands on the local disk. Only what a laptop cannot do is
    overridden on the command line (the GPU, the paper preset's size).

    This is the suite's in-process Ray Train run on S3 (data, model and checkpoints in the
    bucket; tests/test_cluster.py trains on S3 on a cluster): the model, its card and
    metrics.jsonl are objects written whole (no temporary object), Ray Train's checkpoints are
    under the model's ``ray/``, and the model loads from the bucket."""
    import boto3
    import numpy as np
    import polars as pl
    from builders import tiny_model
    from imagefixtures import make_blob_shards

    from hicatalog import storage
    from hicatalog.catalog.reader import read_catalog
    from hicatalog.cli import main as cli_main
    from hicatalog.models import load_model

    train_cfg = tomllib.loads((CONFIGS / "train.toml").read_text())
    build_cfg = tomllib.loads((CONFIGS / "build_catalog.toml").read_text())
    bucket = "my-bucket"
    assert all(build_cfg[k].startswith(f"s3://{bucket}/")
               for k in ("cutouts", "tracers", "regression", "pr", "out"))
    assert train_cfg["out"] == build_cfg["regression"]  # the model trained is the model used
    boto3.client("s3").create_bucket(Bucket=bucket)

    samples = np.array(["a40A", "a40B", "nibles"] * 70)
    make_blob_shards(train_cfg["data"][0], 210, seed=11, size=48, rows_per_shard=105,
                     extra_columns={"dataset": samples})
    mark = s3_server.log_offset()
    rc = cli_main(["train", "--config", str(CONFIGS / "train.toml"), "--preset", "quick",
                   "--no-gpu", "--workers", "1", "--epochs", "1", "--image-size", "24",
                   "--batch-size", "32"])
    assert rc == 0
    _, card = load_model(train_cfg["out"])
    assert card.task == "regression" and card.train_samples == ["a40A", "a40B"]
    assert set(card.sample_counts) == {"a40A", "a40B"}  # nibles is a test sample, never trained on
    assert card.image_size == 24 and card.metrics["epoch"] == 1
    lines = storage.read_bytes(f"{train_cfg['out']}/metrics.jsonl").decode().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1]
    assert [f for f in storage.list_files(f"{train_cfg['out']}/ray", recursive=True)
            if "/checkpoint_epoch_0001/" in f]
    model_prefix = "/" + train_cfg["out"].removeprefix("s3://") + "/"
    written = [p for _, p in s3_server.writes(mark)  # ours: Ray Train's own are under ray/
               if p.startswith(model_prefix) and not p.startswith(model_prefix + "ray/")]
    assert written and not [p for p in written if ".tmp" in p], written

    tiny_model(build_cfg["pr"], "pr", cutout_size=48)
    make_blob_shards(build_cfg["cutouts"], 40, seed=12, size=48, rows_per_shard=20)
    tracers = pl.DataFrame({"object_id": [f"t{i}" for i in range(30)],
                            "ra": np.linspace(0, 359, 30), "dec": np.linspace(-10, 60, 30),
                            "z": np.linspace(0.01, 0.05, 30)})
    buf = io.BytesIO()
    tracers.write_parquet(buf)
    storage.write_atomic(build_cfg["tracers"], buf.getvalue())
    rc = cli_main(["build-catalog", "--config", str(CONFIGS / "build_catalog.toml"), "--no-gpu",
                   "--batch-size", "16"])
    assert rc == 0
    cat = pl.from_arrow(read_catalog(build_cfg["out"]))
    assert sorted(cat["object_id"].to_list()) == [f"g12-{i:06d}" for i in range(40)]
    assert cat["m_pred"].is_finite().all()
