"""`hicatalog evaluate robustness|baselines|gradcam` end to end on small synthetic shards.

The fast tests use a saved, untrained model (the pipelines, not the science, are under
test); the slow test trains the Grad-CAM classifiers through Ray Train.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_evaluation_environment import _shards  # same directory (pytest prepend mode)

from hicatalog.cli import main as cli_main


@pytest.fixture
def tiny_model(tmp_path):
    from hicatalog.models.card import ModelCard, build_model, save_model

    card = ModelCard(
        model_id="tiny", task="regression", arch="shallow", width=0.25, n_outputs=1,
        image_size=32, cutout_size=32, survey="sdss",
        normalization={"mean": [0.2, 0.2, 0.2], "std": [0.2, 0.2, 0.2]},
    )
    model = build_model(card)
    save_model(tmp_path / "model", model, card)
    return str(tmp_path / "model")


def test_pick_galaxies():
    from hicatalog.evaluation.robustness import pick_galaxies

    m = np.array([0.0, np.nan, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    # percentiles 20, 50, 80 of 0..9 are 1.8, 4.5, 7.2 -> values 2, 4 (tie 4/5: first), 7
    assert pick_galaxies(m, 3) == [3, 5, 8]
    assert pick_galaxies(m, 1) == [5]  # median 4.5: tie 4/5, the first
    assert sorted(pick_galaxies(np.array([1.0, 1.0, 1.0]), 3)) == [0, 1, 2]  # distinct rows
    assert pick_galaxies(np.full(4, np.nan), 2) == [0, 1]


def test_robustness_cli(tmp_path, tiny_model):
    _shards(tmp_path / "cutouts", n=30)
    out = tmp_path / "rob"
    rc = cli_main(["evaluate", "robustness", "--data", str(tmp_path / "cutouts"), "--model", tiny_model,
                   "--out", str(out), "--trials", "5", "--n-galaxies", "2"])
    assert rc == 0
    res = json.loads((out / "robustness.json").read_text())
    assert len(res["galaxies"]) == 2 and res["trials_per_colour"] == 5
    g = res["galaxies"][0]
    assert set(g["colours"]) == {"red", "green", "blue"}
    # the galaxies are picked near the 20th and 80th percentiles of M_true
    assert res["galaxies"][0]["m_true"] < res["galaxies"][1]["m_true"]
    stds = [c["std"] for gal in res["galaxies"] for c in gal["colours"].values()]
    assert res["scatter_dex"] == pytest.approx(max(stds)) and all(s >= 0 for s in stds)
    assert len(list(out.glob("robustness_*.png"))) == 2 and (out / "index.html").exists()
    # missing --model is a clear error
    assert cli_main(["evaluate", "robustness", "--data", str(tmp_path / "cutouts"),
                     "--out", str(out)]) == 1


def test_baselines_cli_with_a_given_model(tmp_path, tiny_model):
    pytest.importorskip("sklearn")
    from hicatalog.cutouts.shards import list_shards
    from hicatalog.training.data import select_rows

    _shards(tmp_path / "cutouts", n=120, seed=4)
    out = tmp_path / "base"
    rc = cli_main(["evaluate", "baselines", "--data", str(tmp_path / "cutouts"), "--model", tiny_model,
                   "--out", str(out), "--seed", "3"])
    assert rc == 0
    res = json.loads((out / "baselines.json").read_text())
    sel = select_rows(list_shards(str(tmp_path / "cutouts")), "regression", seed=3)
    assert res["n_val"] == sel.n_val and res["n_train"] == sel.n_train
    assert set(res["metrics"]) == {"linear_blocks", "pca_linear", "pca_forest", "zhang2009", "cnn"}
    for name, m in res["metrics"].items():
        assert m["n"] == sel.n_val and np.isfinite(m["rmse"]), name
    # the blue excess carries M in these images: the colour-based estimator finds it
    assert res["metrics"]["zhang2009"]["rmse"] < 0.3
    assert res["cnn_beats_every_baseline"] is False  # an untrained CNN does not
    assert (out / "baselines.png").exists() and "Zhang" in (out / "baselines.md").read_text()


@pytest.mark.slow
def test_gradcam_cli_trains_both_versions(tmp_path, ray_local):
    _shards(tmp_path / "cutouts", n=80, seed=2)
    out = tmp_path / "gc"
    rc = cli_main(["evaluate", "gradcam", "--data", str(tmp_path / "cutouts"), "--out", str(out),
                   "--epochs", "1", "--image-size", "32", "--width", "0.25", "--batch-size", "16",
                   "--n-images", "4"])
    assert rc == 0
    res = json.loads((out / "gradcam.json").read_text())
    from hicatalog.cutouts.shards import list_shards
    from hicatalog.training.data import select_rows

    sel = select_rows(list_shards(str(tmp_path / "cutouts")), "gasclass", seed=0)
    val = sel.table.filter(sel.table.column("is_val"))
    val_class = dict(zip(val.column("object_id").to_pylist(), val.column("target").to_pylist(), strict=True))
    shown = res["versions"]["color"]["object_ids"]
    assert [val_class[o] for o in shown] == [0, 0, 1, 1]  # validation rows, half of each class
    for version in ("color", "mono"):
        v = res["versions"][version]
        assert v["classes"] == ["gas_poor", "gas_rich"] and len(v["object_ids"]) == 4
        cams = np.load(out / f"gradcam_{version}.npy")
        assert cams.shape == (4, 2, 32, 32) and cams.min() >= 0 and cams.max() <= 1
        assert (out / f"gradcam_{version}.png").exists()
