"""``hicatalog mock``: outputs, determinism, images, learnability, Ray Data path, gallery."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hicatalog.cli import main as cli_main
from hicatalog.config import MockConfig
from hicatalog.cutouts.decode import decode_jpeg
from hicatalog.cutouts.shards import list_shards
from hicatalog.mock import render
from hicatalog.mock.survey import generate_mock
from hicatalog.schemas import read_table, validate_table

N, SIZE, ROWS = 360, 80, 100


def _cfg(out: Path, **kw) -> dict:
    """The keyword arguments of a small mock, checked as ``hicatalog mock`` checks them."""
    base = dict(out=str(out), n=N, seed=11, image_size=SIZE, rows_per_shard=ROWS)
    base.update(kw)
    return MockConfig(**base).fields()


def _digest(cutouts_dir: str) -> dict[str, str]:
    return {Path(f).name: hashlib.sha256(Path(f).read_bytes()).hexdigest()
            for f in list_shards(cutouts_dir)}


@pytest.fixture(scope="module")
def mock_dir(tmp_path_factory) -> dict[str, str]:
    return generate_mock(**_cfg(tmp_path_factory.mktemp("mock") / "run", engine="local"))


@pytest.fixture(scope="module")
def cutouts(mock_dir):
    return pq.read_table(mock_dir["cutouts"])


@pytest.fixture(scope="module")
def images(cutouts) -> np.ndarray:
    return np.stack([decode_jpeg(b, expected_size=SIZE) for b in cutouts["image"].to_pylist()])


def test_outputs_validate_against_contracts(mock_dir):
    shards = list_shards(mock_dir["cutouts"], contract="cutouts")
    assert [Path(s).name for s in shards] == ["part-00000.parquet", "part-00001.parquet",
                                              "part-00002.parquet", "part-00003.parquet"]
    assert [pq.read_metadata(s).num_rows for s in shards] == [100, 100, 100, 60]
    cut = read_table(mock_dir["cutouts"], "cutouts")
    tracers = read_table(mock_dir["tracers"], "tracers")
    truth = read_table(mock_dir["truth"], "truth")
    validate_table(cut, "cutouts")
    assert cut.num_rows == truth.num_rows == N
    assert tracers.num_rows > 2 * N
    assert set(cut["object_id"].to_pylist()) == set(truth["object_id"].to_pylist())
    assert set(cut["object_id"].to_pylist()) <= set(tracers["object_id"].to_pylist())
    assert set(cut["survey"].to_pylist()) == {"sdss"}
    assert set(cut["dataset"].to_pylist()) == {"alfalfa", "nondetections", "xgass"}
    for col in ("m_true", "log_mstar", "one_plus_delta5"):
        assert str(cut.schema.field(col).type) == "float"
    manifest = json.loads((Path(mock_dir["truth"]).parent / "_mock.json").read_text())
    assert manifest["n_imaged"] == N and manifest["engine"] == "local"


def _truth(mock_dir, cutouts):
    truth = pq.read_table(mock_dir["truth"]).to_pandas().set_index("object_id")
    return truth.loc[cutouts["object_id"].to_pylist()]


def test_truth_components_and_labels_agree(mock_dir, cutouts):
    """The truth's m_true is the sum of its parts; the cutouts carry the label as measured
    (the truth's m_label: null for the non-detections, the measured M* as log_mstar)."""
    truth = _truth(mock_dir, cutouts)
    parts = truth.m_mass + truth.m_visible + truth.m_env + truth.m_scatter
    np.testing.assert_allclose(truth.m_true, parts, atol=1e-5)
    label = cutouts["m_true"].to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(np.isnan(label), truth.m_label.isna().to_numpy())
    np.testing.assert_allclose(label, truth.m_label.to_numpy(), equal_nan=True)
    assert np.isnan(label[truth.population.to_numpy() == "nondetections"]).all()
    np.testing.assert_allclose(cutouts["log_mstar"].to_numpy(), truth.log_mstar_obs.to_numpy())
    np.testing.assert_array_equal(cutouts["upper_limit"].to_numpy(), truth.label_is_limit.to_numpy())
    np.testing.assert_array_equal(cutouts["detected"].to_numpy(), truth.detected.to_numpy())
    np.testing.assert_array_equal(cutouts["dataset"].to_pylist(), truth.population.tolist())


def test_every_jpeg_decodes_at_the_stated_size(images):
    assert images.shape == (N, SIZE, SIZE, 3)
    # not blank: the central galaxy is brighter than the frame's edge
    c = slice(SIZE // 2 - 4, SIZE // 2 + 4)
    centre = images[:, c, c].mean(axis=(1, 2, 3))
    edge = images[:, :4, :, :].mean(axis=(1, 2, 3))
    assert (centre > edge + 10).mean() > 0.95


def test_same_seed_same_bytes_other_seed_differs(tmp_path, mock_dir):
    again = generate_mock(**_cfg(tmp_path / "again", engine="local"))
    assert _digest(again["cutouts"]) == _digest(mock_dir["cutouts"])
    for key in ("tracers", "truth"):
        assert Path(again[key]).read_bytes() == Path(mock_dir[key]).read_bytes()
    other = generate_mock(**_cfg(tmp_path / "other", seed=12, n=40, engine="local"))
    assert pq.read_table(other["cutouts"])["image"][0] != pq.read_table(
        mock_dir["cutouts"])["image"][0]


def test_ray_data_path_writes_identical_shards(tmp_path, ray_local):
    local = generate_mock(**_cfg(tmp_path / "local", n=90, rows_per_shard=40, engine="local"))
    out = generate_mock(**_cfg(tmp_path / "ray", n=90, rows_per_shard=40, engine="ray", workers=2))
    digest = _digest(out["cutouts"])
    assert list(digest) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert digest == _digest(local["cutouts"])
    manifest = json.loads((tmp_path / "ray" / "_mock.json").read_text())
    assert manifest["engine"] == "ray"
    # a rerun into the same directory with fewer rows leaves no stale shard behind
    generate_mock(**_cfg(tmp_path / "ray", n=30, rows_per_shard=40, engine="ray", workers=2))
    assert [Path(f).name for f in list_shards(str(tmp_path / "ray" / "cutouts"))] == [
        "part-00000.parquet"]


def _colour_features(images: np.ndarray) -> np.ndarray:
    """Per image: log(B/R), log(G/R) of the galaxy pixels, log area, log mean brightness,
    90th percentile and spread of the blue excess (knots)."""
    feats = []
    for a in images.astype(np.float32):
        s = a.sum(axis=2)
        g = s > 0.25 * np.percentile(s, 99) + 20
        if g.sum() < 5:
            g = s >= np.sort(s.ravel())[-5]
        r, gg, b = (a[..., i][g].sum() + 1.0 for i in range(3))
        blue = (a[..., 2] - a[..., 0])[g]
        feats.append([np.log(b / r), np.log(gg / r), np.log(g.sum()),
                      np.log((r + gg + b) / g.sum()), np.percentile(blue, 90) / 255,
                      blue.std() / 255])
    return np.array(feats)


def test_image_colour_correlates_with_m(images, cutouts, mock_dir):
    m = _truth(mock_dir, cutouts).m_true.to_numpy()
    blueness = _colour_features(images)[:, 0]
    assert np.corrcoef(blueness, m)[0, 1] > 0.5
    ds = np.array(cutouts["dataset"].to_pylist())
    # the xGASS-like galaxies are gas-poorer and look redder than the ALFALFA-like ones
    assert np.median(m[ds == "xgass"]) < np.median(m[ds == "alfalfa"]) - 0.8
    assert np.median(blueness[ds == "xgass"]) < np.median(blueness[ds == "alfalfa"]) - 0.1


def test_learnability_visible_part_yes_scatter_no(images, cutouts, mock_dir):
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _colour_features(images)
    truth = _truth(mock_dir, cutouts)
    m = truth.m_true.to_numpy().astype(float)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    pred = cross_val_predict(model, x, m, cv=5)
    rmse = float(np.sqrt(np.mean((pred - m) ** 2)))
    assert rmse < 0.75 * m.std(), (rmse, m.std())  # clearly better than the mean
    # no estimator beats sigma_int: the scatter is not in the image ...
    scatter = truth.m_scatter.to_numpy().astype(float)
    pred_s = cross_val_predict(model, x, scatter, cv=5)
    r2 = 1 - np.mean((pred_s - scatter) ** 2) / scatter.var()
    assert r2 < 0.05, r2
    # ... and even the truth minus the scatter leaves exactly sigma_int
    best = (truth.m_mass + truth.m_visible + truth.m_env).to_numpy()
    assert abs(np.std(m - best) - 0.20) < 0.03
    assert rmse > np.std(m - best)


def test_render_is_deterministic_and_per_galaxy():
    params = dict(tracer_index=5, r_mag=15.5, d_a_mpc=120.0, re_disc_kpc=4.0, bt=0.2,
                  axis_ratio=0.6, cos_incl=0.58, pa_deg=30.0, pitch_deg=20.0, gr_disc=0.4,
                  arm_frac=0.2, knot_frac=0.1, knots_mean=10.0)
    a = render.render_cutout(params, "sdss", 64, seed=0)
    assert a == render.render_cutout(params, "sdss", 64, seed=0)
    assert a != render.render_cutout({**params, "tracer_index": 6}, "sdss", 64, seed=0)
    leg = render.render_cutout(params, "legacy", 96, seed=0)
    assert decode_jpeg(leg, expected_size=96).shape == (96, 96, 3)


def test_redder_galaxy_renders_redder():
    params = dict(tracer_index=1, r_mag=15.0, d_a_mpc=100.0, re_disc_kpc=3.0, bt=0.1,
                  axis_ratio=0.8, cos_incl=0.78, pa_deg=0.0, pitch_deg=20.0, gr_disc=0.35,
                  arm_frac=0.3, knot_frac=0.2, knots_mean=15.0)
    blue = decode_jpeg(render.render_cutout(params, "sdss", 64, 0)).astype(float)
    red = decode_jpeg(render.render_cutout({**params, "gr_disc": 0.8, "arm_frac": 0.0,
                                            "knot_frac": 0.0, "bt": 0.5}, "sdss", 64, 0))
    red = red.astype(float)
    c = slice(24, 40)
    blue_excess = blue[c, c, 2].mean() - blue[c, c, 0].mean()
    assert blue_excess > red[c, c, 2].mean() - red[c, c, 0].mean() + 10


def test_cli_mock_with_gallery(tmp_path, capsys):
    png = tmp_path / "gallery.png"
    rc = cli_main(["mock", "--out", str(tmp_path / "cli"), "--n", "120", "--image-size", "64",
                   "--population", "all", "--gallery", str(png), "--engine", "local"])
    assert rc == 0
    paths = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(paths["truth"]).is_file() and Path(paths["tracers"]).is_file()
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] > 600 and im.size[1] > 400


def test_cli_bad_population_is_one_clean_line(tmp_path, capsys):
    rc = cli_main(["mock", "--out", str(tmp_path / "x"), "--population", "stars"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "population" in err and "Traceback" not in err


def test_legacy_default_size_is_448():
    assert render.default_image_size("legacy") == 448
    assert render.default_image_size("sdss") == 224
    assert render.SURVEYS["legacy"].pixel_scale == 0.262
    assert render.SURVEYS["sdss"].pixel_scale == 0.396
