"""`hicatalog evaluate robustness|baselines|gradcam` end to end on small synthetic shards.

The fast tests use a saved, untrained model (the pipelines, not the science, are under
test); the slow test trains the Grad-CAM classifiers through Ray Train.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from builders import save_tiny_model
from imagefixtures import dihedral_views_reference, make_blue_excess_shards
from PIL import Image

from hicatalog.cli import main as cli_main


@pytest.fixture
def tiny_model(tmp_path):
    return save_tiny_model(tmp_path / "model")


def test_pick_galaxies():
    from hicatalog.evaluation.robustness import pick_galaxies

    m = np.array([0.0, np.nan, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    # percentiles 20, 50, 80 of 0..9 are 1.8, 4.5, 7.2 -> values 2, 4 (tie 4/5: first), 7
    assert pick_galaxies(m, 3) == [3, 5, 8]
    assert pick_galaxies(m, 1) == [5]  # median 4.5: tie 4/5, the first
    assert sorted(pick_galaxies(np.array([1.0, 1.0, 1.0]), 3)) == [0, 1, 2]  # distinct rows
    assert pick_galaxies(np.full(4, np.nan), 2) == [0, 1]


def test_robustness_cli(tmp_path, tiny_model):
    from hicatalog.models import load_model

    table, _ = make_blue_excess_shards(tmp_path / "cutouts", n=30)
    out = tmp_path / "rob"
    rc = cli_main(["evaluate", "robustness", "--data", str(tmp_path / "cutouts"), "--model", tiny_model,
                   "--out", str(out), "--trials", "5", "--n-galaxies", "2"])
    assert rc == 0
    res = json.loads((out / "robustness.json").read_text())
    assert len(res["galaxies"]) == 2 and res["trials_per_colour"] == 5
    # the galaxies are the rows nearest the 20th and 80th percentiles of M_true
    m = table.column("m_true").to_numpy().astype(np.float64)
    rows = [int(np.argmin(np.abs(m - q))) for q in np.quantile(m, [0.2, 0.8])]
    assert [g["object_id"] for g in res["galaxies"]] == [f"o{i:04d}" for i in rows]
    assert [g["m_true"] for g in res["galaxies"]] == pytest.approx(m[rows].tolist(), rel=1e-6)
    # M_pred of each original: the mean over the 8 views of the square of the model's output
    model, _ = load_model(tiny_model)
    for g, i in zip(res["galaxies"], rows, strict=True):
        pixels = np.asarray(Image.open(io.BytesIO(table.column("image")[i].as_py())).convert("RGB"))
        x = (torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float()[None] / 255 - 0.2) / 0.2
        assert g["m_pred"] == pytest.approx(float(dihedral_views_reference(model, x).mean()), abs=1e-5)
        assert set(g["colours"]) == {"red", "green", "blue"}
        for c in g["colours"].values():
            # the injected sources change the prediction: a spread, bounded by the largest change
            assert 0 < c["std"] <= c["max_abs_change"]
            assert abs(c["mean"] - g["m_pred"]) <= c["max_abs_change"]
    stds = [c["std"] for gal in res["galaxies"] for c in gal["colours"].values()]
    assert res["scatter_dex"] == max(stds)
    assert len(list(out.glob("robustness_*.png"))) == 2 and (out / "index.html").exists()
    # missing --model is a clear parameter error (exit 2)
    assert cli_main(["evaluate", "robustness", "--data", str(tmp_path / "cutouts"),
                     "--out", str(out)]) == 2


def test_baselines_cli_with_a_given_model(tmp_path, tiny_model):
    make_blue_excess_shards(tmp_path / "cutouts", n=120, seed=4)
    out = tmp_path / "base"
    rc = cli_main(["evaluate", "baselines", "--data", str(tmp_path / "cutouts"), "--model", tiny_model,
                   "--out", str(out), "--seed", "3"])
    assert rc == 0
    res = json.loads((out / "baselines.json").read_text())
    # every row is a detection with M_true: the 80/20 split of 120 rows
    assert res["n_val"] == 24 and res["n_train"] == 96
    assert set(res["metrics"]) == {"linear_blocks", "pca_linear", "pca_forest", "zhang2009", "cnn"}
    for name, m in res["metrics"].items():
        assert m["n"] == 24 and np.isfinite(m["rmse"]), name
    # the blue excess carries M in these images: the colour-based estimator finds it
    assert res["metrics"]["zhang2009"]["rmse"] < 0.3
    assert res["cnn_beats_every_baseline"] is False  # an untrained CNN does not
    assert (out / "baselines.png").exists() and "Zhang" in (out / "baselines.md").read_text()


def test_gradcam_cli_trains_both_versions(s3_bucket, ray_local, empty_cwd):
    """--data and --out on the S3 server (tests/conftest.py): the single-band shards, both
    classifiers, the maps (.npy), the figures and the report are written to the bucket, and
    nothing to the local disk. On a disk the same code differs only in the local branch of
    hicatalog.storage (tests/test_storage.py, and the fast analyses above run on a disk)."""
    from hicatalog import storage
    from hicatalog.cutouts.shards import list_shards
    from hicatalog.models.artifact import load_card
    from hicatalog.training.data import select_rows

    data = f"{s3_bucket}/cutouts"
    make_blue_excess_shards(data, n=80, seed=2)
    out = f"{s3_bucket}/gc"
    rc = cli_main(["evaluate", "gradcam", "--data", data, "--out", out,
                   "--epochs", "1", "--image-size", "32", "--width", "0.25", "--batch-size", "16",
                   "--n-images", "4"])
    assert rc == 0
    res = json.loads(storage.read_bytes(f"{out}/gradcam.json"))
    sel = select_rows(list_shards(data), "gasclass", seed=0)
    val = sel.table.filter(sel.table.column("is_val"))
    val_class = dict(zip(val.column("object_id").to_pylist(), val.column("target").to_pylist(), strict=True))
    shown = res["versions"]["color"]["object_ids"]
    assert [val_class[o] for o in shown] == [0, 0, 1, 1]  # validation rows, half of each class
    for version in ("color", "mono"):
        v = res["versions"][version]
        assert v["classes"] == ["gas_poor", "gas_rich"] and len(v["object_ids"]) == 4
        cams = np.load(io.BytesIO(storage.read_bytes(f"{out}/gradcam_{version}.npy")))
        assert cams.shape == (4, 2, 32, 32) and cams.min() >= 0 and cams.max() <= 1
        assert storage.read_bytes(f"{out}/gradcam_{version}.png")[:8] == b"\x89PNG\r\n\x1a\n"
        assert load_card(f"{out}/models/{version}").task == "gasclass"
    # the single-band copies of both shards, every row kept
    mono = list_shards(f"{out}/mono_cutouts")
    assert [storage.basename(f) for f in mono] == ["mono-00000.parquet", "mono-00001.parquet"]
    assert sum(storage.read_parquet(f, columns=["object_id"]).num_rows for f in mono) == 80
    assert storage.is_file(f"{out}/index.html")
