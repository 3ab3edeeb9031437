"""Section 7 environment experiment: split/normalisation logic (fast) and end to end (slow)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from imagefixtures import make_blue_excess_shards

from hicatalog.evaluation.environment_split import (
    environment_splits,
    prepare_environment_shards,
    summarize_repeats,
)
from hicatalog.metrics import normalized_rmse


def test_environment_splits_and_summary():
    splits = environment_splits(windows=False)
    assert splits == [(0.0, 0.2), (0.8, 1.0), None]
    full = environment_splits(windows=True)
    assert full[:2] == [(0.0, 0.2), (0.8, 1.0)] and full[-1] is None
    wins = [q for q in full if q is not None]
    assert len(wins) == 9 and len(set(wins)) == 9  # [0,0.2) ... [0.8,1.0), no duplicates
    assert all(abs((hi - lo) - 0.2) < 1e-9 for lo, hi in wins)
    assert sorted((lo + hi) / 2 for lo, hi in wins) == pytest.approx(np.arange(0.1, 0.95, 0.1))
    mean, std = summarize_repeats([0.40, 0.44, float("nan"), 0.42])
    assert mean == pytest.approx(0.42) and std == pytest.approx(np.std([0.40, 0.44, 0.42]))
    assert np.isnan(summarize_repeats([])[0])


def test_normalisation_uses_the_validation_scatter():
    # same absolute errors, validation sets of different intrinsic scatter: the wider one
    # gets the smaller normalized RMSE (the effect the paper's Table 4 corrects for)
    rng = np.random.default_rng(0)
    err = rng.normal(0, 0.25, 400)
    narrow = rng.normal(0, 0.5, 400)
    wide = rng.normal(0, 0.7, 400)
    n1 = normalized_rmse(narrow, narrow + err)
    n2 = normalized_rmse(wide, wide + err)
    assert n1 == pytest.approx(np.sqrt(np.mean(err**2)) / np.std(narrow))
    assert n2 < n1


def test_prepare_shards_from_column_truth_and_tracers(tmp_path):
    table, _ = make_blue_excess_shards(tmp_path / "a", n=40, with_one_plus_delta5=True)
    info = prepare_environment_shards(str(tmp_path / "a"), str(tmp_path / "out_a"))
    out = pq.read_table(tmp_path / "out_a")
    assert info["source"] == "the shards' one_plus_delta5 column" and info["n_with_one_plus_delta5"] == 37
    assert out.column("object_id").to_pylist() == table.column("object_id").to_pylist()
    assert out.column("image").to_pylist() == table.column("image").to_pylist()  # bytes untouched
    assert out.column("one_plus_delta5").null_count == 3

    table_b, one_plus_delta5 = make_blue_excess_shards(tmp_path / "b", n=40)
    truth = pa.table({"object_id": table_b.column("object_id"), "m_true": table_b.column("m_true"),
                      "population": ["alfalfa"] * 40, "one_plus_delta5_true": pa.array(one_plus_delta5, pa.float32())})
    pq.write_table(truth, tmp_path / "truth.parquet")
    with pytest.raises(ValueError, match="give tracers"):
        prepare_environment_shards(str(tmp_path / "b"), str(tmp_path / "out_b"))
    info = prepare_environment_shards(str(tmp_path / "b"), str(tmp_path / "out_b"),
                                      truth=str(tmp_path / "truth.parquet"))
    got = pq.read_table(tmp_path / "out_b").column("one_plus_delta5").to_numpy()
    assert np.allclose(got, one_plus_delta5.astype(np.float32)) and info["n_with_one_plus_delta5"] == 40

    # tracers: the galaxies themselves plus a dense clump around the first one
    rng = np.random.default_rng(1)
    clump = pa.table({
        "object_id": [f"t{i}" for i in range(30)],
        "ra": table_b.column("ra").to_numpy()[0] + rng.normal(0, 0.02, 30),
        "dec": table_b.column("dec").to_numpy()[0] + rng.normal(0, 0.02, 30),
        "z": table_b.column("z").to_numpy()[0] + rng.normal(0, 0.0003, 30),
    })
    tracers = pa.concat_tables([table_b.select(["object_id", "ra", "dec", "z"]), clump])
    pq.write_table(tracers, tmp_path / "tracers.parquet")
    info = prepare_environment_shards(str(tmp_path / "b"), str(tmp_path / "out_c"),
                                      tracers=str(tmp_path / "tracers.parquet"))
    assert info["source"].startswith("computed against") and info["n_rows"] == 40
    d = pq.read_table(tmp_path / "out_c").column("one_plus_delta5").to_numpy(zero_copy_only=False)
    assert pq.read_table(tmp_path / "out_c").num_rows == 40
    # only rows whose environment is 'ok' get a value; the clumped galaxy is one of them, in
    # the densest environment
    assert sum(info["env_status"].values()) == 40
    assert np.isfinite(d).sum() == info["n_with_one_plus_delta5"] == info["env_status"]["ok"] >= 5
    assert np.isfinite(d[0]) and d[0] == np.nanmax(d) and d[0] > 10 * np.nanmedian(d)


def test_environment_experiment_end_to_end(s3_bucket, ray_local, empty_cwd):
    """--data and --out on the S3 server (tests/conftest.py): the shards with delta5, every
    split's model, table4.md, environment.json and the report are written to the bucket, and
    nothing to the local disk. On a disk the same code differs only in the local branch of
    hicatalog.storage (tests/test_storage.py; the shards step is tested on a disk above)."""
    from hicatalog import storage
    from hicatalog.cli import main as cli_main
    from hicatalog.models.artifact import load_card

    data = f"{s3_bucket}/cutouts"
    make_blue_excess_shards(data, n=100, with_one_plus_delta5=True)
    out = f"{s3_bucket}/env"
    rc = cli_main([
        "evaluate", "environment", "--data", data, "--out", out,
        "--repeats", "1", "--no-windows", "--epochs", "1", "--arch", "shallow",
        "--width", "0.25", "--image-size", "32", "--batch-size", "16",
    ])
    assert rc == 0
    res = json.loads(storage.read_bytes(f"{out}/environment.json"))
    assert [s["val_quantiles"] for s in res["table4"]] == [[0.0, 0.2], [0.8, 1.0], None]
    for s in res["table4"]:
        run = s["runs"][0]
        assert run["n_val"] > 0 and run["nrmse"] == pytest.approx(run["rmse"] / run["val_sigma"])
        assert np.isfinite(s["nrmse_mean"]) and s["nrmse_std"] == 0.0
    # the quantile splits validate on about 20% of the rows with delta5 (97), the random on 20%
    assert [s["n_val"] for s in res["table4"]] == [pytest.approx(19, abs=2)] * 3
    md = storage.read_bytes(f"{out}/table4.md").decode()
    assert "[0.2, 1)" in md and "[0.8, 1)" in md and "Random" in md
    assert storage.is_file(f"{out}/index.html")
    assert res["one_plus_delta5"]["out_dir"] == f"{out}/cutouts_one_plus_delta5"
    assert len(storage.list_files(f"{out}/cutouts_one_plus_delta5", suffix=".parquet")) == 2
    for split in ("val_0-0.2", "val_0.8-1", "random"):
        assert load_card(f"{out}/runs/{split}/seed0").task == "regression", split


def test_figure10_windows_plot(tmp_path):
    from hicatalog.evaluation.figures import plot_environment_windows

    centers = [0.1 * i for i in range(1, 10)]
    path = plot_environment_windows(
        centers, [0.40 + 0.01 * i for i in range(9)], [0.01] * 9, str(tmp_path / "fig10.png"),
        random=(0.42, 0.015), log10_one_plus_delta5_at_center=[-0.5 + 0.12 * i for i in range(9)],
    )
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
