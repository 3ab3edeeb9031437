"""Builders of the tests' inputs that more than one test module uses: cutout shards of random
galaxies, tiny untrained models, catalogs. Test modules import from here (``import builders``:
``tests/`` is on ``sys.path`` under pytest), never from each other.

- :func:`galaxies`, :func:`write_cutouts`, :func:`bad_rows`: cutout rows in a clustered field,
  written as shards, with every bad-input case of the catalog build.
- :func:`tiny_model`, :func:`save_tiny_model`: untrained models saved with their cards (the
  catalog build's xresnet18; the evaluation analyses' shallow regression network).
- :func:`rows` and :data:`SMALL`: staged ``hi_catalog`` rows and small HATS partitions for the
  publish step; :func:`synthetic_catalog`: a published two-version catalog and its truth.
- :func:`publish_by_hand`: a published version laid out as the publish lays it out, written
  here without Ray, for the fast tests of what reads a version (the export).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from imagefixtures import noise_jpeg

from hicatalog import storage
from hicatalog.catalog.manifest import (
    INVALID_COORDINATES_FILE,
    BuildRecord,
    Manifest,
    RowCounts,
    VersionEntry,
    next_manifest,
    partition_file,
)
from hicatalog.catalog.publish import healpix_29, publish_tables
from hicatalog.cutouts.shards import write_shard
from hicatalog.models import ModelCard, save_model
from hicatalog.models.xresnet import xresnet18

#: Side (px) of the cutouts :func:`galaxies` makes.
SIZE = 64
#: The pixel normalisation of the tiny test models' cards.
NORM_MEAN, NORM_STD = 0.5, 0.25
#: The populations of :func:`synthetic_catalog`'s truth, in turn.
POPS = ("alfalfa", "nondetections", "xgass")


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


def save_tiny_model(model_dir) -> str:
    """An untrained shallow regression model for 32 px cutouts (weights drawn with seed 0),
    saved to ``model_dir`` (a local path or a URL); returns ``model_dir`` as a string."""
    from hicatalog.models import ModelCard, build_model, save_model

    card = ModelCard(
        model_id="tiny", task="regression", arch="shallow", width=0.25, n_outputs=1,
        image_size=32, cutout_size=32, survey="sdss",
        normalization={"mean": [0.2, 0.2, 0.2], "std": [0.2, 0.2, 0.2]},
    )
    torch.manual_seed(0)
    save_model(str(model_dir), build_model(card), card)
    return str(model_dir)


#: Small partitions and row groups: a few thousand rows make a version of many files.
SMALL = {"partition_rows": 150, "row_group_rows": 40}


def rows(n, seed, prefix, n_invalid=3, n_dup=2):
    """``n`` hi_catalog rows in a 20x20 deg field: ``n_invalid`` without a valid position
    (NaN, |dec| > 90), ``n_dup`` repeating an earlier id with ``status='duplicate_id'``."""
    rng = np.random.default_rng(seed)
    ra, dec = rng.uniform(170, 190, n), rng.uniform(-10, 10, n)
    ra[:n_invalid] = np.nan
    dec[n_invalid - 1] = 95.0
    ids = [f"{prefix}{i:06d}" for i in range(n)]
    status = ["ok"] * n
    for k in range(n_dup):
        ids[n - 1 - k], status[n - 1 - k] = ids[k + n_invalid], "duplicate_id"
    f32 = pa.array(rng.normal(0, 1, n).astype(np.float32))
    return pa.table({
        "object_id": ids, "ra": ra, "dec": dec, "z": rng.uniform(0.01, 0.05, n),
        "m_pred": f32, "m_pred_err": f32, "m_pred_std": f32, "p_cnn": pa.array(rng.uniform(0, 1, n).astype(np.float32)),
        "one_plus_delta5": f32, "sigma5": f32, "d5_mpc": f32, "env_status": ["ok"] * n,
        "status": status, "error": pa.nulls(n, pa.string()), "build_id": [prefix] * n,
        "model_id": ["m"] * n, "_healpix_29": healpix_29(ra, dec),
    })


def synthetic_catalog(tmp_path, n=300, seed=0):
    """A catalog (two hive-partitioned builds, one superseding rows of the other) and a truth."""
    rng = np.random.default_rng(seed)
    ids = [f"g{i:05d}" for i in range(n)]
    pop = np.array([POPS[i % 3] for i in range(n)])
    m_true = np.where(pop == "xgass", rng.normal(-1.2, 0.5, n), rng.normal(0.0, 0.5, n))
    detected = pop == "alfalfa"
    p_cnn = np.where(detected, rng.beta(6, 1.5, n), rng.beta(1.5, 4, n))
    p_cnn = np.where(pop == "xgass", rng.uniform(0, 1, n), p_cnn)
    # xGASS-like galaxies are overpredicted unless they look ALFALFA-like (high p_cnn)
    m_pred = m_true + rng.normal(0, 0.2, n) + np.where(pop == "xgass", 0.8 * (1 - p_cnn), 0.0)
    truth = pa.table({
        "object_id": ids, "ra": rng.uniform(0, 10, n), "dec": rng.uniform(0, 10, n),
        "z": rng.uniform(0.01, 0.05, n), "population": pop.tolist(),
        "log_mstar": rng.uniform(9, 11, n).astype(np.float32), "m_true": m_true.astype(np.float32),
        "m_mass": np.zeros(n, np.float32), "m_visible": np.zeros(n, np.float32),
        "m_env": np.zeros(n, np.float32), "m_scatter": np.zeros(n, np.float32),
        "log_mhi": np.zeros(n, np.float32), "one_plus_delta5_true": rng.lognormal(0, 0.5, n).astype(np.float32),
        "detected": detected,
    })
    truth_path = tmp_path / "truth.parquet"
    pq.write_table(truth, truth_path)

    status = np.array(["ok"] * n, dtype=object)
    status[:6] = "corrupt_image"
    def cat_table(idx, m, build):
        k = len(idx)
        return pa.table({
            "object_id": [ids[i] for i in idx], "ra": np.zeros(k), "dec": np.zeros(k),
            "z": truth.column("z").to_numpy()[idx],
            "m_pred": pa.array([None if status[i] != "ok" else float(m[i]) for i in idx], pa.float32()),
            "m_pred_err": pa.nulls(k, pa.float32()), "m_pred_std": np.zeros(k, np.float32),
            "p_cnn": pa.array([None if status[i] != "ok" else float(p_cnn[i]) for i in idx], pa.float32()),
            "one_plus_delta5": truth.column("one_plus_delta5_true").to_numpy()[idx],
            "sigma5": np.ones(k, np.float32), "d5_mpc": np.ones(k, np.float32),
            "env_status": ["ok"] * k, "status": status[idx].tolist(),
            "error": pa.array([None] * k, pa.string()), "build_id": [build] * k, "model_id": ["m"] * k,
        })

    cat_dir = tmp_path / "catalog"
    # version 1: every row, with garbage predictions for the first 30 rows; version 2, current:
    # a rebuild with the right ones. Version 1's files are made the newest on disk: evaluate
    # must read the version the manifest names, not the newest files.
    bad = m_pred.copy()
    bad[:30] += 5.0
    publish_tables(str(cat_dir), [cat_table(np.arange(n), bad, "b1")], build_id="b1")
    publish_tables(str(cat_dir), [cat_table(np.arange(n), m_pred, "b2")], build_id="b2")
    for f in (cat_dir / "version=1").rglob("*.parquet"):
        os.utime(f, (time.time() + 100, time.time() + 100))
    return cat_dir, truth_path, dict(ids=ids, pop=pop, m_true=m_true, m_pred=m_pred, p_cnn=p_cnn,
                                     detected=detected, status=status)


def publish_by_hand(out, table, *, build_id, order=2, row_group_rows=40, **build):
    """Publish the ``hi_catalog`` rows ``table`` as the next version of the catalog in
    ``out`` without Ray: the layout of :func:`hicatalog.catalog.publish.publish_version` (one
    HATS partition per HEALPix pixel of ``order`` holding rows, sorted by ``_healpix_29``;
    ``invalid_coordinates.parquet``; ``partition_info.csv``; ``_manifest.json`` through
    :func:`next_manifest`), its data files only (no ``_metadata``, no properties). ``build``:
    more fields of the build record (``model_id``, ``code_version``, ``created``). Returns the
    manifest."""
    from hats.catalog import PartitionInfo
    from hats.pixel_math import HealpixPixel

    from hicatalog.schemas import conform_table

    out = str(out)
    previous = Manifest.find(out)
    v = 1 + (previous.version if previous is not None else 0)
    vdir = os.path.join(out, f"version={v}")
    t = conform_table(table.append_column("_healpix_29", healpix_29(
        table.column("ra").to_numpy(zero_copy_only=False),
        table.column("dec").to_numpy(zero_copy_only=False))), "hi_catalog")
    hp = t.column("_healpix_29")
    valid = t.filter(hp.is_valid()).sort_by("_healpix_29")
    pix = valid.column("_healpix_29").to_numpy() >> (2 * (29 - order))
    pixels = sorted(set(pix.tolist()))
    for p in pixels:
        storage.write_parquet_atomic(valid.filter(pa.array(pix == p)),
                                     partition_file(vdir, order, p),
                                     row_group_size=row_group_rows, write_statistics=True)
    storage.write_parquet_atomic(t.filter(hp.is_null()),
                                 os.path.join(vdir, INVALID_COORDINATES_FILE))
    PartitionInfo.from_healpix([HealpixPixel(order, p) for p in pixels]).write_to_file(
        catalog_path=vdir)
    entry = VersionEntry(version=v, path=f"version={v}", builds=(), build_ids=(build_id,),
                         rows=t.num_rows, invalid_coordinate_rows=hp.null_count,
                         partitions=len(pixels), created=storage.utc_timestamp())
    manifest, _ = next_manifest(previous.versions if previous is not None else [], entry,
                                BuildRecord(build_id=build_id, fingerprint="f" * 16,
                                            rows=RowCounts(total=t.num_rows), **build))
    return manifest.write(out, replacing=Manifest.read_versioned(out)[1])
