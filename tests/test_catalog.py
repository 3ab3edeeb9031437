"""The catalog build: real local Ray, real Parquet shards, tiny untrained models."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from imagefixtures import dihedral_views_reference, noise_jpeg

from hicatalog import storage
from hicatalog.catalog.build import build_catalog, dec_zone
from hicatalog.catalog.environment import compute_environment
from hicatalog.config import BuildCatalogConfig
from hicatalog.cutouts.decode import decode_jpeg
from hicatalog.cutouts.shards import write_shard
from hicatalog.models import ModelCard, load_model, save_model
from hicatalog.models.xresnet import xresnet18
from hicatalog.schemas import SchemaError, validate_table

SIZE = 64
REPO = Path(__file__).resolve().parents[1]
#: The pixel normalisation of the tiny test models' cards.
NORM_MEAN, NORM_STD = 0.5, 0.25


def galaxies(n, seed=0, prefix="g"):
    """``n`` cutouts rows in a clustered 8x8 deg field (5 groups + field), 0.01 < z < 0.04."""
    rng = np.random.default_rng(seed)
    grp = rng.integers(0, 6, n)
    c_ra, c_dec, c_z = rng.uniform(181, 187, 6), rng.uniform(1, 7, 6), rng.uniform(0.01, 0.04, 6)
    field = grp == 5
    ra = np.where(field, rng.uniform(180, 188, n), c_ra[grp] + rng.normal(0, 0.2, n))
    dec = np.where(field, rng.uniform(0, 8, n), c_dec[grp] + rng.normal(0, 0.2, n))
    z = np.where(field, rng.uniform(0.01, 0.04, n), c_z[grp] + rng.normal(0, 0.001, n))
    return {
        "object_id": [f"{prefix}{i:05d}" for i in range(n)],
        "ra": ra, "dec": dec, "z": z, "survey": ["sdss"] * n,
        "image": [noise_jpeg(rng, SIZE) for _ in range(n)],
    }


def write_cutouts(out_dir, cols, rows_per_shard):
    n = len(cols["object_id"])
    for i, lo in enumerate(range(0, n, rows_per_shard)):
        part = {k: v[lo: lo + rows_per_shard] for k, v in cols.items()}
        write_shard(pa.table({**part, "z": pa.array(part["z"], pa.float64())}), str(out_dir),
                    "part", i)
    return str(out_dir)


def bad_rows(cols):
    """Damage rows in place: every bad-input case of the issue. Returns {object_id: status}."""
    rng = np.random.default_rng(5)
    good = cols["image"][0]
    cases = {
        1: (b"", "empty_image"),
        2: (good[: len(good) // 3], "truncated_image"),
        3: (b"\xff\xd8" + b"\x13" * 400, "corrupt_image"),
        4: (noise_jpeg(rng, size=48), "wrong_size"),
        5: (noise_jpeg(rng, SIZE, mode="L"), "grayscale"),
    }
    expect = {}
    for i, (data, status) in cases.items():
        cols["image"][i] = data
        expect[cols["object_id"][i]] = status
    cols["ra"][6] = cols["dec"][6] = np.nan  # still predicted; env says why
    cols["z"][7] = np.nan   # no redshift
    cols["object_id"][40] = cols["object_id"][8]  # duplicate across shards
    cols["object_id"][9] = cols["object_id"][8]   # duplicate inside the first shard
    return expect


def tiny_model(model_dir, task, survey="sdss", cutout_size=SIZE, seed=0):
    torch.manual_seed(seed)
    n_out = 1 if task == "regression" else 2
    card = ModelCard(
        model_id=f"{task}-test-{seed}", task=task, arch="xresnet18", width=0.25,
        n_outputs=n_out, image_size=32, cutout_size=cutout_size, survey=survey,
        normalization={"mean": [NORM_MEAN] * 3, "std": [NORM_STD] * 3},
    )
    save_model(model_dir, xresnet18(n_out, width=0.25), card)
    return str(model_dir)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return tiny_model(d / "regression", "regression"), tiny_model(d / "pr", "pr")


def read_catalog(out):
    """Every row of the catalog in ``out`` (a local directory or a URL): the Parquet files of
    its ``version=*/dec_zone=*`` partitions, read as files (no partition columns added)."""
    files = [f for f in storage.list_files(out, recursive=True, suffix=".parquet")
             if re.fullmatch(r"version=[^/]+/dec_zone=[^/]+/[^/]+", storage.relative(f, out))]
    return pa.concat_tables([storage.read_parquet(f) for f in files])


def done_markers(out, version=1):
    """The ``_done`` markers (one per finished input shard) of catalog ``version`` in ``out``."""
    return storage.list_files(storage.join(out, f"version={version}", "_done"), suffix=".json")


@pytest.fixture(scope="module")
def built(tmp_path_factory, models, ray_local):
    base = tmp_path_factory.mktemp("build")
    cols = galaxies(90)
    expect = bad_rows(cols)
    cutouts = write_cutouts(base / "cutouts", cols, 32)
    cfg = BuildCatalogConfig(cutouts=cutouts, regression=models[0], pr=models[1],
                             out=str(base / "catalog"), batch_size=16)
    manifest = build_catalog(cfg)
    return cfg, cols, expect, manifest


def test_every_row_once_with_statuses(built):
    cfg, cols, expect, manifest = built
    cat = read_catalog(cfg.out)
    validate_table(cat, "hi_catalog", check_unique=False)
    assert cat.num_rows == len(cols["object_id"]) == manifest["rows"]["total"]
    rows = cat.to_pylist()
    by_status = {}
    for r in rows:
        by_status.setdefault(r["status"], []).append(r)
    for oid, status in expect.items():
        (r,) = [r for r in rows if r["object_id"] == oid]
        assert r["status"] == status and r["error"] and r["m_pred"] is None and r["p_cnn"] is None
    dup_id = cols["object_id"][8]
    dups = [r for r in rows if r["object_id"] == dup_id]
    assert sorted(r["status"] for r in dups) == ["duplicate_id", "duplicate_id", "ok"]
    assert all("first occurrence" in r["error"] for r in dups if r["status"] == "duplicate_id")
    ok = by_status["ok"]
    assert len(ok) == 90 - 5 - 2
    # every good row has a prediction, a probability and a spread over the 8 views
    assert all(r["m_pred"] is not None and 0 < r["p_cnn"] < 1 and r["m_pred_std"] > 0
               for r in ok)
    nan_ra = [r for r in rows if r["object_id"] == cols["object_id"][6]][0]
    assert nan_ra["status"] == "ok" and nan_ra["env_status"] == "bad_coordinates"
    no_z = [r for r in rows if r["object_id"] == cols["object_id"][7]][0]
    assert no_z["status"] == "ok" and no_z["env_status"] == "no_redshift" and no_z["z"] is None
    assert manifest["rows"]["status"]["duplicate_id"] == 2
    assert set(r["build_id"] for r in rows) == {manifest["build_id"]}


def test_predictions_are_the_tta_mean_of_both_models(built, models):
    cfg, cols, _, _ = built
    ok = {r["object_id"]: r for r in read_catalog(cfg.out).to_pylist() if r["status"] == "ok"}
    first = {}
    for i, oid in enumerate(cols["object_id"]):
        first.setdefault(oid, i)
    assert len(ok) == 83
    # every good row, predicted here by hand: (pixel/255 - mean) / std, both models on the 8
    # symmetries of the square; M_pred is the mean (std: the spread) of the regression
    # outputs, p_cnn the mean softmax probability of class 1
    imgs = np.stack([decode_jpeg(cols["image"][first[o]], SIZE, 32).transpose(2, 0, 1) for o in ok])
    x = (torch.from_numpy(imgs).float() / 255 - NORM_MEAN) / NORM_STD
    m_views = dihedral_views_reference(load_model(models[0])[0], x)[:, :, 0].numpy()
    p_views = torch.softmax(dihedral_views_reference(load_model(models[1])[0], x), -1)[:, :, 1].numpy()
    got = {k: np.array([r[k] for r in ok.values()]) for k in ("m_pred", "m_pred_std", "p_cnn")}
    np.testing.assert_allclose(got["m_pred"], m_views.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(got["m_pred_std"], m_views.std(axis=1), atol=1e-5)
    np.testing.assert_allclose(got["p_cnn"], p_views.mean(axis=1), atol=1e-5)


def test_environment_joined_from_the_cutouts_as_tracers(built):
    cfg, cols, _, _ = built
    t = pa.table({k: cols[k] for k in ("object_id", "ra", "dec", "z")})
    first = sorted({oid: i for i, oid in reversed(list(enumerate(cols["object_id"])))}.values())
    t = t.take(pa.array(first))
    env = {r["object_id"]: r for r in compute_environment(t, t).to_pylist()}
    cat = read_catalog(cfg.out).to_pylist()
    for r in cat:
        e = env[r["object_id"]]
        assert r["env_status"] == e["env_status"]
        assert r["one_plus_delta5"] == e["one_plus_delta5"] and r["d5_mpc"] == e["d5_mpc"]
    assert sum(r["env_status"] in ("ok", "footprint_edge") for r in cat) > 60


def test_layout_manifest_and_idempotent_rerun(built):
    cfg, cols, _, manifest = built
    out = Path(cfg.out)
    files = sorted(out.glob("version=1/dec_zone=*/part-*.parquet"))
    zones = {f.parent.name for f in files}
    assert "dec_zone=__HIVE_DEFAULT_PARTITION__" in zones  # the row without coordinates
    assert len(zones) >= 3  # and the 8-degree field spans several 2-degree zones
    for f in files:
        if "DEFAULT" in f.parent.name:
            continue
        z = int(f.parent.name.split("=")[1])
        t = pq.read_table(f, partitioning=None)
        dec = t.column("dec").to_numpy()
        assert ((dec >= z) & (dec < z + cfg.dec_zone_deg)).all()
        ra = t.column("ra").to_numpy()
        assert (np.diff(ra[np.isfinite(ra)]) >= 0).all()
        stats = pq.ParquetFile(f).metadata.row_group(0).column(1).statistics
        assert stats is not None and stats.has_min_max
    on_disk = json.loads((out / "_manifest.json").read_text())
    for key in ("build_id", "models", "config", "input", "rows", "wall_time_s", "code_version",
                "versions"):
        assert key in on_disk
    for task, model_dir in (("regression", cfg.regression), ("pr", cfg.pr)):
        weights = (Path(model_dir) / "weights.pt").read_bytes()
        assert on_disk["models"][task]["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert on_disk["input"]["rows"] == 90 and on_disk["input"]["shards"] == 3  # 32 rows a shard
    assert on_disk["input"]["cutouts"] == cfg.cutouts and on_disk["build_id"] == manifest["build_id"]
    # on CPU, precision "auto" is fp32 and the JPEGs are decoded by Pillow in the read tasks
    assert on_disk["inference"] == {"precision": "fp32", "decode": "cpu"}
    before = {f: f.stat().st_mtime_ns for f in files}
    again = build_catalog(cfg)
    assert again["build_id"] == manifest["build_id"] and again["rows"] == manifest["rows"]
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert read_catalog(cfg.out).num_rows == 90


def test_dec_zone_edges():
    got = dec_zone(np.array([-90.0, -0.5, 0.0, 1.99, 2.0, 89.9, 90.0, np.nan, 95.0]), 2)
    assert got.tolist() == [-90, -2, 0, 0, 2, 88, 88, -999, -999]


def test_bad_inputs_fail_before_any_work(tmp_path, models, ray_local):
    cols = galaxies(10, seed=3)
    good = write_cutouts(tmp_path / "good", cols, 10)
    out = tmp_path / "cat"

    def build(**kw):
        args = dict(cutouts=good, regression=models[0], pr=models[1], out=str(out))
        args.update(kw)
        return build_catalog(BuildCatalogConfig(**args))

    # Missing column.
    t = pa.table({k: v for k, v in cols.items() if k != "survey"})
    (tmp_path / "nosurvey").mkdir()
    pq.write_table(t, tmp_path / "nosurvey" / "part-00000.parquet")
    with pytest.raises(SchemaError, match="survey"):
        build(cutouts=str(tmp_path / "nosurvey"))
    # Unreadable model: corrupt weights.
    bad = tmp_path / "badmodel"
    tiny_model(bad, "regression")
    (bad / "weights.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights.pt"):
        build(regression=str(bad))
    with pytest.raises(ValueError, match="model card not found"):
        build(pr=str(tmp_path / "nowhere"))
    # Regression and PR swapped.
    with pytest.raises(ValueError, match="regression model"):
        build(regression=models[1])
    # Survey mismatch.
    with pytest.raises(ValueError, match="survey 'legacy'"):
        build(regression=tiny_model(tmp_path / "legacy", "regression", survey="legacy"))
    # Cutout size mismatch.
    with pytest.raises(ValueError, match="128x128"):
        build(regression=tiny_model(tmp_path / "r128", "regression", cutout_size=128),
              pr=tiny_model(tmp_path / "p128", "pr", cutout_size=128))
    # GPU decoding asked for on a CPU build.
    with pytest.raises(ValueError, match="--decode gpu needs --gpu"):
        build(decode="gpu")
    assert not out.exists()


def test_incremental_build_adds_only_new_ids(tmp_path, models, ray_local):
    old = galaxies(40, seed=11)
    new = galaxies(25, seed=12, prefix="n")
    both = {k: list(old[k]) + list(new[k]) for k in old}
    cat = tmp_path / "cat"
    m1 = build_catalog(BuildCatalogConfig(cutouts=write_cutouts(tmp_path / "a", old, 20),
                                          regression=models[0], pr=models[1], out=str(cat)))
    v1 = {f: f.read_bytes() for f in cat.glob("version=1/**/*.parquet")}
    m2 = build_catalog(BuildCatalogConfig(
        cutouts=write_cutouts(tmp_path / "b", both, 20), regression=models[0], pr=models[1],
        out=str(cat), since_manifest=str(cat / "_manifest.json")))
    assert m2["version"] == 2 and [v["version"] for v in m2["versions"]] == [1, 2]
    assert m2["rows"]["total"] == 25 and m1["rows"]["total"] == 40
    assert {f: f.read_bytes() for f in cat.glob("version=1/**/*.parquet")} == v1
    v2 = pa.concat_tables([pq.read_table(f, partitioning=None)
                           for f in cat.glob("version=2/**/*.parquet")])
    assert sorted(v2.column("object_id").to_pylist()) == sorted(new["object_id"])
    ids = read_catalog(cat).column("object_id").to_pylist()
    assert sorted(ids) == sorted(both["object_id"])
    # A different full build into the same directory is refused, not mixed in.
    with pytest.raises(ValueError, match="already holds a catalog"):
        build_catalog(BuildCatalogConfig(cutouts=str(tmp_path / "b"), regression=models[0],
                                         pr=models[1], out=str(cat), tta=False))


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "s3"])
def test_killed_build_resumes_exactly_once(where, tmp_path, models, ray_local, request):
    """SIGKILL a ``hicatalog build-catalog`` driver after its first finished shard; the
    rerun predicts the rest, and every input row is in the catalog exactly once. ``s3``: the
    cutouts and the catalog on the S3 server (tests/conftest.py)."""
    root = str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket")
    cols = galaxies(160, seed=21)
    cutouts = write_cutouts(storage.join(root, "cutouts"), cols, 20)
    out = storage.join(root, "cat")
    args = ["build-catalog", "--cutouts", cutouts, "--regression", models[0], "--pr", models[1],
            "--out", out, "--batch-size", "8", "--actors", "1"]
    # The driver joins the test's Ray cluster (as a job on a cluster would) and is killed.
    address = ray_local.get_runtime_context().gcs_address
    env = dict(os.environ, RAY_ADDRESS=address, OMP_NUM_THREADS="1")
    log = tmp_path / "driver.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "hicatalog.cli", *args], cwd=REPO,
                                env=env, start_new_session=True, stdout=fh, stderr=fh)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if done_markers(out):
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    done = len(done_markers(out))
    assert 1 <= done < 8, f"kill came too late or too early ({done} shards done)"
    manifest = build_catalog(BuildCatalogConfig(cutouts=cutouts, regression=models[0],
                                                pr=models[1], out=out, batch_size=8))
    ids = read_catalog(out).column("object_id").to_pylist()
    assert sorted(ids) == sorted(cols["object_id"])
    assert manifest["rows"]["total"] == 160 and manifest["rows"]["status"] == {"ok": 160}


# ----------------------------------------------------------------------------- README queries
# These strings are the README's examples verbatim ({catalog}, {other}: paths).

DUCKDB_BOX = """
SELECT object_id, ra, dec, m_pred, p_cnn, one_plus_delta5
FROM read_parquet('{catalog}/**/*.parquet', hive_partitioning = true)
WHERE ra BETWEEN 182 AND 184 AND dec BETWEEN 2.5 AND 3.5
  AND dec_zone BETWEEN floor(2.5 / 2) * 2 AND floor(3.5 / 2) * 2
"""
DUCKDB_PCNN = """
SELECT object_id, m_pred, m_pred_std, p_cnn
FROM read_parquet('{catalog}/**/*.parquet', hive_partitioning = true)
WHERE status = 'ok' AND p_cnn > 0.9
"""
DUCKDB_JOIN = """
SELECT c.object_id, c.m_pred, o.m_true, c.m_pred - o.m_true AS residual
FROM read_parquet('{catalog}/**/*.parquet', hive_partitioning = true) AS c
JOIN read_parquet('{other}') AS o USING (object_id)
WHERE c.status = 'ok'
"""


def polars_examples(catalog, other):
    import polars as pl

    cat = pl.scan_parquet(f"{catalog}/**/*.parquet", hive_partitioning=True)
    box = cat.filter(
        pl.col("ra").is_between(182, 184) & pl.col("dec").is_between(2.5, 3.5)
        & pl.col("dec_zone").is_between(2, 2)  # zones of dec_zone_deg (2) degrees
    ).collect()
    gas_rich = cat.filter((pl.col("status") == "ok") & (pl.col("p_cnn") > 0.9)).collect()
    joined = (
        cat.filter(pl.col("status") == "ok")
        .join(pl.scan_parquet(other), on="object_id")
        .with_columns(residual=pl.col("m_pred") - pl.col("m_true"))
        .collect()
    )
    return box, gas_rich, joined


def test_readme_queries_duckdb_and_polars(built, tmp_path):
    cfg, cols, _, _ = built
    cat = read_catalog(cfg.out)
    ra, dec = cat.column("ra").to_numpy(), cat.column("dec").to_numpy()
    with np.errstate(invalid="ignore"):
        in_box = (ra >= 182) & (ra <= 184) & (dec >= 2.5) & (dec <= 3.5)
    rng = np.random.default_rng(0)
    other = tmp_path / "truth.parquet"
    truth_ids = cols["object_id"][::3]
    pq.write_table(pa.table({"object_id": truth_ids,
                             "m_true": rng.normal(0, 0.5, len(truth_ids))}), other)
    con = duckdb.connect()
    box = con.sql(DUCKDB_BOX.format(catalog=cfg.out)).to_arrow_table()
    assert box.num_rows == int(in_box.sum()) > 0
    # The box touches one 2-degree zone: DuckDB opens only that zone's files.
    plan = con.sql("EXPLAIN ANALYZE " + DUCKDB_BOX.format(catalog=cfg.out)).fetchall()[0][1]
    n_zone = len(list(Path(cfg.out).glob("version=*/dec_zone=2/*.parquet")))
    n_all = len(list(Path(cfg.out).glob("version=*/dec_zone=*/*.parquet")))
    assert f"Total Files Read: {n_zone}" in plan and n_zone < n_all
    status = np.array(cat.column("status").to_pylist())
    p = cat.column("p_cnn").to_numpy(zero_copy_only=False)
    for cut in (0.9, float(np.nanmedian(p))):
        q = DUCKDB_PCNN.replace("0.9", repr(cut)).format(catalog=cfg.out)
        with np.errstate(invalid="ignore"):
            assert con.sql(q).to_arrow_table().num_rows == int(((status == "ok") & (p > cut)).sum())
    joined = con.sql(DUCKDB_JOIN.format(catalog=cfg.out, other=other)).to_arrow_table()
    ok_ids = set(cat.filter(pa.compute.equal(cat["status"], "ok"))["object_id"].to_pylist())
    assert joined.num_rows == len(ok_ids & set(truth_ids)) > 0
    pbox, prich, pjoin = polars_examples(cfg.out, str(other))
    assert sorted(pbox["object_id"].to_list()) == sorted(box.column("object_id").to_pylist())
    with np.errstate(invalid="ignore"):
        assert prich.height == int(((status == "ok") & (p > 0.9)).sum())
    assert pjoin.height == joined.num_rows
    assert np.allclose(np.sort(pjoin["residual"].to_numpy()),
                       np.sort(joined.column("residual").to_numpy()))


def test_predictor_no_tta_is_the_identity_view(models):
    from hicatalog.catalog.inference import CatalogPredictor
    from hicatalog.cutouts.decode import decode_batch

    rng = np.random.default_rng(4)
    dec = decode_batch([noise_jpeg(rng, SIZE) for _ in range(5)] + [b""], SIZE, 32)
    batch = {"object_id": np.array([f"o{i}" for i in range(6)], dtype=object),
             "image": dec.images, "status": np.array(dec.status, dtype=object),
             "error": np.array(dec.error, dtype=object)}
    out = CatalogPredictor(models[0], models[1], tta=False)(batch)
    assert "image" not in out and list(out["status"]) == ["ok"] * 5 + ["empty_image"]
    x = (torch.from_numpy(dec.images[:5]).float() / 255 - NORM_MEAN) / NORM_STD
    with torch.no_grad():
        ref = load_model(models[0])[0](x)[:, 0].numpy()
        p_ref = torch.softmax(load_model(models[1])[0](x), -1)[:, 1].numpy()
    np.testing.assert_allclose(out["m_pred"][:5], ref, atol=1e-5)
    np.testing.assert_allclose(out["p_cnn"][:5], p_ref, atol=1e-5)
    assert np.isnan(out["m_pred_std"]).all() and np.isnan(out["m_pred"][5])
    assert np.isnan(out["p_cnn"][5])
