"""The catalog build: real local Ray, real Parquet shards, tiny untrained models."""

from __future__ import annotations

import hashlib
import json
import os
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
from builders import NORM_MEAN, NORM_STD, SIZE, bad_rows, galaxies, tiny_model, write_cutouts
from docpages import code_blocks, page
from imagefixtures import dihedral_views_reference, noise_jpeg

from hicatalog import storage
from hicatalog.catalog.build import build_catalog
from hicatalog.catalog.environment import compute_environment
from hicatalog.catalog.manifest import Manifest
from hicatalog.catalog.publish import healpix_29
from hicatalog.catalog.reader import open_catalog
from hicatalog.catalog.reader import read_catalog as _read_catalog
from hicatalog.config import BuildCatalogConfig
from hicatalog.cutouts.decode import decode_jpeg
from hicatalog.errors import ConfigError, ModelError, OutputError
from hicatalog.models import Ensemble, ModelCard, load_model, save_model
from hicatalog.models.xresnet import xresnet18
from hicatalog.schemas import SchemaError, validate_table

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return tiny_model(d / "regression", "regression"), tiny_model(d / "pr", "pr")


def read_catalog(out, version=None):
    """Every row of the current (or the given) version, through the library's one reader."""
    return _read_catalog(str(out), version=version)


def done_markers(out, build=1):
    """The ``_done`` markers (one per finished input shard) of staging build ``build`` in
    ``out`` (a local directory or a URL)."""
    return storage.list_files(storage.join(out, "_staging", f"build={build}", "_done"), suffix=".json")


@pytest.fixture(scope="module")
def built(tmp_path_factory, models, ray_local):
    base = tmp_path_factory.mktemp("build")
    cols = galaxies(90)
    expect = bad_rows(cols)
    cutouts = write_cutouts(base / "cutouts", cols, 32)
    # a margin width other than the default: the option reaches the publish
    cfg = BuildCatalogConfig(cutouts=cutouts, regression=models[0], pr=models[1],
                             out=str(base / "catalog"), batch_size=16, margin_arcsec=30.0)
    manifest = build_catalog(cfg)
    return cfg, cols, expect, manifest


def test_every_row_once_with_statuses(built):
    cfg, cols, expect, manifest = built
    cat = read_catalog(cfg.out)
    validate_table(cat, "hi_catalog", check_unique=False)
    assert cat.num_rows == len(cols["object_id"]) == manifest.rows.total
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
    # every good row has a prediction, a probability and a spread over the 8 views; a single
    # point network has no error bar
    assert all(r["m_pred"] is not None and 0 < r["p_cnn"] < 1 and r["m_pred_std"] > 0
               and r["m_pred_err"] is None for r in ok)
    nan_ra = [r for r in rows if r["object_id"] == cols["object_id"][6]][0]
    assert nan_ra["status"] == "ok" and nan_ra["env_status"] == "bad_coordinates"
    no_z = [r for r in rows if r["object_id"] == cols["object_id"][7]][0]
    assert no_z["status"] == "ok" and no_z["env_status"] == "no_redshift" and no_z["z"] is None
    assert manifest.rows.status["duplicate_id"] == 2
    assert set(r["build_id"] for r in rows) == {manifest.build_id}


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


def tiny_ensemble(model_dir, task, k=2):
    """A K-member ensemble as `train --ensemble K --pr-model` writes it, with a calibration:
    the regression members have the Gaussian head, a variance scale 2.25 and an
    out-of-distribution variance 0.36 dex^2, the PR members a temperature 1.7."""
    torch.manual_seed(1)
    n_out = 2
    calibration = ({"method": "variance_scale", "variance_scale": 2.25, "ood_variance": 0.36}
                   if task == "regression" else {"method": "temperature", "temperature": 1.7})
    card = ModelCard(
        model_id=f"{task}-ens", task=task, arch="xresnet18", width=0.25, n_outputs=n_out,
        image_size=32, cutout_size=SIZE, survey="sdss",
        normalization={"mean": [NORM_MEAN] * 3, "std": [NORM_STD] * 3},
        head="gaussian" if task == "regression" else "point", ensemble_size=k,
        member_seeds=list(range(k)), calibration=calibration,
    )
    save_model(model_dir, Ensemble([xresnet18(n_out, width=0.25) for _ in range(k)]), card)
    return str(model_dir)


def test_ensembles_give_the_mixture_mean_calibrated_error_and_temperature_p_cnn(ray_local, tmp_path):
    """An ensemble builds like a single model; m_pred, m_pred_err and p_cnn are computed here
    by hand from each member's outputs on the 8 symmetries of the square; the error bar grows
    with 1 - p_cnn as the regression card's out-of-distribution variance says."""
    reg = tiny_ensemble(tmp_path / "reg", "regression")
    pr = tiny_ensemble(tmp_path / "pr", "pr")
    cols = galaxies(48)
    bad = bad_rows(cols)
    cfg = BuildCatalogConfig(cutouts=write_cutouts(tmp_path / "cutouts", cols, 24), regression=reg,
                             pr=pr, out=str(tmp_path / "catalog"), batch_size=16)
    build_catalog(cfg)
    ok = {r["object_id"]: r for r in read_catalog(cfg.out).to_pylist() if r["status"] == "ok"}
    first = {}
    for i, oid in enumerate(cols["object_id"]):
        first.setdefault(oid, i)
    assert set(ok) == set(first) - set(bad)
    imgs = np.stack([decode_jpeg(cols["image"][first[o]], SIZE, 32).transpose(2, 0, 1) for o in ok])
    x = (torch.from_numpy(imgs).float() / 255 - NORM_MEAN) / NORM_STD
    reg_members = load_model(reg)[0].members
    out = np.stack([dihedral_views_reference(m, x).numpy() for m in reg_members], axis=1)  # (N, K, 8, 2)
    mu_k = out[..., 0].mean(axis=2)
    var_k = np.log1p(np.exp(out[..., 1])).mean(axis=2) + 1e-6
    logits = np.stack([dihedral_views_reference(m, x).numpy() for m in load_model(pr)[0].members], axis=1)
    p = np.exp(logits[..., 1] / 1.7) / np.exp(logits / 1.7).sum(axis=-1)
    p_cnn = p.mean(axis=(1, 2))
    err = np.sqrt(2.25 * (var_k.mean(axis=1) + mu_k.var(axis=1)) + (1 - p_cnn) * 0.36)
    assert (1 - p_cnn).max() > 0.1  # the term matters for these galaxies
    got = {k: np.array([r[k] for r in ok.values()]) for k in ("m_pred", "m_pred_err", "m_pred_std", "p_cnn")}
    np.testing.assert_allclose(got["m_pred"], mu_k.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(got["m_pred_err"], err, rtol=1e-4)
    np.testing.assert_allclose(got["m_pred_std"], out[..., 0].mean(axis=1).std(axis=1), atol=1e-5)
    np.testing.assert_allclose(got["p_cnn"], p_cnn, atol=1e-5)


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
    import hats

    cfg, cols, _, manifest = built
    out = Path(cfg.out)
    vdir = out / "version=1" / "hi_catalog"  # the main catalog of the version's collection
    assert (out / "version=1" / "collection.properties").is_file()
    files = sorted(vdir.glob("dataset/Norder=*/Dir=*/Npix=*.parquet"))
    assert files and not list(out.glob("version=*/dec_zone=*"))  # the old layout is gone
    n_pixel_rows = 0
    for f in files:
        k = int(f.parent.parent.name.split("=")[1])
        p = int(f.stem.split("=")[1])
        t = pq.read_table(f, partitioning=None)
        hp = t.column("_healpix_29").to_numpy()
        assert (hp >> (2 * (29 - k)) == p).all()  # every row inside its file's pixel
        assert (np.diff(hp) >= 0).all()  # sorted by the spatial index
        stats = pq.ParquetFile(f).metadata.row_group(0).column(1).statistics  # ra
        assert stats is not None and stats.has_min_max
        n_pixel_rows += t.num_rows
    # the row without coordinates keeps its row, in the documented file
    invalid = pq.read_table(vdir / "invalid_coordinates.parquet")
    assert invalid.column("object_id").to_pylist() == [cols["object_id"][6]]
    assert invalid.column("_healpix_29").null_count == 1
    assert n_pixel_rows + invalid.num_rows == 90
    # the same directory read by the hats library
    h = hats.read_hats(str(vdir))
    assert h.catalog_info.total_rows == n_pixel_rows and h.catalog_info.ra_column == "ra"
    assert sorted((px.order, px.pixel) for px in h.get_healpix_pixels()) == sorted(
        (int(f.parent.parent.name.split("=")[1]), int(f.stem.split("=")[1])) for f in files)
    on_disk = json.loads((out / "_manifest.json").read_text())
    for key in ("build_id", "models", "config", "input", "rows", "wall_time_s", "code_version",
                "versions", "version"):
        assert key in on_disk
    assert on_disk["version"] == 1 and on_disk["versions"][0]["rows"] == 90
    v1 = on_disk["versions"][0]
    assert v1["options"]["margin_arcsec"] == 30.0 == on_disk["config"]["margin_arcsec"]
    assert (out / "version=1" / "hi_catalog_30arcs").is_dir() == bool(v1["margin_rows"])
    assert on_disk["versions"][0]["builds"] == ["_staging/build=1"]
    for task, model_dir in (("regression", cfg.regression), ("pr", cfg.pr)):
        weights = (Path(model_dir) / "weights.pt").read_bytes()
        assert on_disk["models"][task]["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert on_disk["input"]["rows"] == 90 and on_disk["input"]["shards"] == 3  # 32 rows a shard
    assert on_disk["input"]["cutouts"] == cfg.cutouts and on_disk["build_id"] == manifest.build_id
    # on CPU, precision "auto" is fp32 and the JPEGs are decoded by Pillow in the read tasks
    assert on_disk["inference"] == {"precision": "fp32", "decode": "cpu"}

    def written():  # every file but _build.json, which a rerun rewrites with the same content
        return {f: f.stat().st_mtime_ns for f in out.rglob("*")
                if f.is_file() and f.name != "_build.json"}

    before = written()
    again = build_catalog(cfg)
    assert again.build_id == manifest.build_id and again.rows == manifest.rows
    assert again.version == 1  # nothing new to publish
    assert written() == before
    assert read_catalog(cfg.out).num_rows == 90


def test_every_build_catalog_option_is_a_parameter_of_the_library_with_its_default():
    """The command's config is passed to make_catalog as keyword arguments: the two must
    name the same parameters with the same defaults (the library's own), or an option would
    be dropped or change meaning on the way."""
    import inspect

    from hicatalog.catalog.build import make_catalog

    params = inspect.signature(make_catalog).parameters
    assert set(params) == set(BuildCatalogConfig.model_fields)
    for name, field in BuildCatalogConfig.model_fields.items():
        if not field.is_required():
            assert params[name].default == field.default, name


def test_healpix_29_against_the_base_pixels():
    # HEALPix base pixels (Gorski et al. 2005, nested): 0-3 north, 4-7 equator, 8-11 south;
    # pixel 4 is centred on (0, 0), pixel 0 on (45, +41.81), pixel 8 on (45, -41.81)
    ra = np.array([0.0, 45.0, 45.0, -315.0, 100.0, np.nan, 10.0])
    dec = np.array([0.0, 41.81, -41.81, 41.81, 95.0, 5.0, np.nan])
    hp = healpix_29(ra, dec)
    assert hp.null_count == 3 and hp.is_null().to_pylist() == [False] * 4 + [True] * 3
    assert (hp.to_numpy(zero_copy_only=False)[:4].astype(np.int64) >> 58).tolist() == [4, 0, 8, 0]


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
    with pytest.raises(ModelError, match="regression model") as err:
        build(regression=models[1])
    assert err.value.params == ("regression",)
    # Survey mismatch.
    with pytest.raises(ModelError, match="survey 'legacy'"):
        build(regression=tiny_model(tmp_path / "legacy", "regression", survey="legacy"))
    # Cutout size mismatch.
    with pytest.raises(ModelError, match="128x128"):
        build(regression=tiny_model(tmp_path / "r128", "regression", cutout_size=128),
              pr=tiny_model(tmp_path / "p128", "pr", cutout_size=128))
    # GPU decoding asked for on a CPU build: named by its parameters, not by flags.
    with pytest.raises(ConfigError, match="decode='gpu' needs gpu=True") as err:
        build(decode="gpu")
    assert err.value.params == ("decode", "gpu")
    assert not out.exists()


def test_two_overlapping_incremental_builds_both_land_every_row_once(tmp_path, models,
                                                                      ray_local):
    """Two ``hicatalog build-catalog --since-manifest`` drivers started together on one Ray
    cluster, both from version 1, adding 25 galaxies each (15 of them the same): both exit 0,
    both versions are listed, the one that committed second rebased onto the first, and the
    current version holds version 1's galaxies and the 35 new ones once each. Each build
    predicts only the galaxies version 1 lacks; version 1 stays as it was."""
    old = galaxies(40, seed=31)
    new = galaxies(35, seed=32, prefix="n")
    cat = tmp_path / "cat"
    build_catalog(BuildCatalogConfig(cutouts=write_cutouts(tmp_path / "old", old, 20),
                                     regression=models[0], pr=models[1], out=str(cat)))
    v1 = {f: f.read_bytes() for f in cat.glob("version=1/**/*") if f.is_file()}
    env = dict(os.environ, RAY_ADDRESS=ray_local.get_runtime_context().gcs_address,
               OMP_NUM_THREADS="1")
    procs = []
    for name, lo, hi in (("x", 0, 25), ("y", 10, 35)):
        cols = {k: list(old[k]) + list(new[k][lo:hi]) for k in old}
        args = ["build-catalog", "--cutouts", write_cutouts(tmp_path / name, cols, 20),
                "--regression", models[0], "--pr", models[1], "--out", str(cat),
                "--since-manifest", str(cat / "_manifest.json"), "--batch-size", "8",
                "--actors", "1"]
        procs.append(subprocess.Popen([sys.executable, "-m", "hicatalog.cli", *args], cwd=REPO,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outs = [p.communicate(timeout=600)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    manifest = Manifest.read(str(cat))
    first, second = sorted(v.version for v in manifest.versions)[1:]
    assert [v.version for v in manifest.versions] == [1, first, second]
    assert manifest.version == second and len(manifest.builds()) == 3
    ids = read_catalog(cat).column("object_id").to_pylist()
    assert sorted(ids) == sorted(old["object_id"] + new["object_id"])  # each once
    assert manifest.current().rows == 75 and read_catalog(cat, version=first).num_rows == 65
    # the second to commit planned against version 1 too: its staging was rebased (the
    # galaxies the first had committed taken out of its parts)
    last = Path(manifest.builds()[-1])
    markers = [json.loads(f.read_text()) for f in (last / "_done").glob("*.json")]
    assert any("-r" in name for m in markers for name in m["files"]), "no rebase happened"
    assert sum(m["rows"] for m in markers) == 10  # its 25 new galaxies less the 15 shared
    # the first to commit predicted only what version 1 lacked (its 25 new galaxies)
    staged = [json.loads(f.read_text()) for f in (Path(manifest.builds()[1]) / "_done").glob(
        "*.json")]
    assert sum(m["rows"] for m in staged) == 25
    # version 1 is untouched and still readable (time travel)
    assert {f: f.read_bytes() for f in cat.glob("version=1/**/*") if f.is_file()} == v1
    assert sorted(read_catalog(cat, version=1).column("object_id").to_pylist()) == sorted(
        old["object_id"])
    # A different full build into the same directory is refused, not mixed in.
    with pytest.raises(OutputError, match="already holds a catalog"):
        build_catalog(BuildCatalogConfig(cutouts=str(tmp_path / "x"), regression=models[0],
                                         pr=models[1], out=str(cat), tta=False))


# Local only: on S3, resuming from the _done markers is guarded by the rerun of
# tests/test_object_storage.py and exactly-once through a lost node by tests/test_cluster.py.
@pytest.mark.parametrize("where", ["local"])
def test_killed_build_resumes_exactly_once(where, tmp_path, models, ray_local, request):
    """SIGKILL a ``hicatalog build-catalog`` driver after its first finished shard; the
    rerun predicts the rest, and every input row is in the catalog exactly once. ``s3``: the
    cutouts and the catalog on the S3 server (tests/conftest.py)."""
    root = str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket")
    # 16 shards: the kill lands between the first and the last even when the loaded machine
    # lets the poller run late
    cols = galaxies(320, seed=21)
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
    assert 1 <= done < 16, f"kill came too late or too early ({done} shards done)"
    manifest = build_catalog(BuildCatalogConfig(cutouts=cutouts, regression=models[0],
                                                pr=models[1], out=out, batch_size=8))
    ids = read_catalog(out).column("object_id").to_pylist()
    assert sorted(ids) == sorted(cols["object_id"])
    assert manifest.rows.total == 320 and manifest.rows.status == {"ok": 320}


# ----------------------------------------------------------------------------- the docs' queries
# Every python and sql block of docs/guides/querying.md, and the README's python block, run as
# written in a directory laid out as the demo's (runs/demo/catalog, the survey's truth.parquet).

QUERYING = page("docs/guides/querying.md")
README = page("README.md")


def run_doc_queries(catalog, truth, workdir, monkeypatch):
    """Run the pages' blocks in ``workdir``, each in a namespace of its own; a sql block is
    formatted with the ``files`` the page's first python block computes, as its text says.
    Returns ``{page name: [namespace or arrow table per block]}``."""
    demo = Path(workdir) / "runs" / "demo"
    (demo / "mock" / "survey").mkdir(parents=True)
    (demo / "catalog").symlink_to(Path(catalog).resolve())
    pq.write_table(pq.read_table(truth), demo / "mock" / "survey" / "truth.parquet")
    monkeypatch.chdir(workdir)
    results = {}
    for path in (QUERYING, README):
        spaces = []
        for block in code_blocks(path, "python"):
            ns = {}
            exec(compile(block, str(path), "exec"), ns)
            spaces.append(ns)
        files = spaces[0]["files"]
        tables = [duckdb.sql(q.format(files=files)).to_arrow_table()
                  for q in code_blocks(path, "sql")]
        results[path.name] = spaces + tables
    return results


def test_the_docs_queries_return_what_they_say(built, tmp_path, monkeypatch):
    cfg, cols, _, _ = built
    cat = read_catalog(cfg.out)
    ra, dec = cat.column("ra").to_numpy(), cat.column("dec").to_numpy()
    # independent references: the box by comparison, the cone by the haversine distance
    with np.errstate(invalid="ignore"):
        in_box = (ra >= 182) & (ra <= 184) & (dec >= 2.5) & (dec <= 3.5)
        r, d, r0, d0 = np.radians(ra), np.radians(dec), np.radians(183.0), np.radians(3.0)
        hav = np.sin((d - d0) / 2) ** 2 + np.cos(d) * np.cos(d0) * np.sin((r - r0) / 2) ** 2
        in_cone = np.degrees(2 * np.arcsin(np.sqrt(hav))) < 1
        positioned = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
    ids = np.array(cat.column("object_id").to_pylist())
    status = np.array(cat.column("status").to_pylist())
    env_ok = np.array(cat.column("env_status").to_pylist()) == "ok"
    p = cat.column("p_cnn").to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        reliable = (status == "ok") & (p > 0.9)
    rng = np.random.default_rng(0)
    truth = tmp_path / "truth.parquet"
    truth_ids = cols["object_id"][::3]
    pq.write_table(pa.table({"object_id": truth_ids,
                             "m_true": rng.normal(0, 0.5, len(truth_ids))}), truth)
    out = run_doc_queries(cfg.out, truth, tmp_path / "work", monkeypatch)

    duck, pol, astro, hats_ns, box, rich, joined = out["querying.md"]
    cone = duck["cone"].to_arrow_table()
    assert sorted(cone.column("object_id").to_pylist()) == sorted(ids[in_cone]) and in_cone.sum() > 0
    assert sorted(box.column("object_id").to_pylist()) == sorted(ids[in_box]) and in_box.sum() > 0
    assert rich.num_rows == int(reliable.sum()) > 0
    ok_ids = set(ids[status == "ok"])
    assert joined.num_rows == len(ok_ids & set(truth_ids)) > 0
    assert sorted(pol["box"]["object_id"].to_list()) == sorted(box.column("object_id").to_pylist())
    assert pol["gas_rich"].height == rich.num_rows
    assert pol["joined"].height == joined.num_rows
    assert np.allclose(np.sort(pol["joined"]["residual"].to_numpy()),
                       np.sort(joined.column("residual").to_numpy()))
    assert len(astro["table"]) == cat.num_rows and len(astro["reliable"]) == rich.num_rows
    assert hats_ns["h"].catalog_info.total_rows == int(positioned.sum())
    [readme] = out["README.md"]
    got = readme["reliable"].to_arrow_table()
    assert sorted(got.column("object_id").to_pylist()) == sorted(ids[reliable & env_ok])
    # the glob of the version reads the same rows as its file list
    n_glob = duckdb.sql(f"SELECT count(*) FROM read_parquet('{open_catalog(cfg.out).glob}')")
    assert n_glob.fetchall() == [(90,)]


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
