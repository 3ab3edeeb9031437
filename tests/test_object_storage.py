"""Every path may be a URL: the catalog build and models on a real S3-compatible server (moto
on 127.0.0.1, tests/conftest.py), read back with polars and pyarrow. Training on S3 is
guarded by tests/test_configs_examples.py (in this process) and tests/test_cluster.py (on a
cluster, through a node loss).

No filesystem API is mocked: pyarrow, s3fs, polars and the Ray workers talk HTTP to the
server; its request log shows what each step wrote.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.dataset as pads
import pytest
import torch
from builders import bad_rows, galaxies, tiny_model, write_cutouts

from hicatalog import storage
from hicatalog.catalog.build import build_catalog
from hicatalog.catalog.reader import open_catalog
from hicatalog.config import BuildCatalogConfig
from hicatalog.models import load_model, save_model
from hicatalog.models.artifact import MODEL_CACHE_ENV, load_card
from hicatalog.models.xresnet import xresnet18


def _read_catalog_polars(url, version=None):
    """The current (or the given) version, read by polars from the bucket."""
    import polars as pl

    return pl.scan_parquet(open_catalog(url, version).files).collect()


@pytest.fixture(scope="module")
def s3_models(s3_server, tmp_path_factory):
    """Both tiny models written straight to a bucket by save_model."""
    import boto3

    bucket = "hicatalog-test-models"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return (tiny_model(f"s3://{bucket}/models/regression", "regression"),
            tiny_model(f"s3://{bucket}/models/pr", "pr"))


def test_catalog_build_on_s3_exactly_once_and_incremental(s3_server, s3_bucket, s3_models,
                                                          ray_local):
    """--cutouts, --tracers, --regression, --pr and --out all s3://: the catalog is complete;
    the staged shards are single PUTs (no temporary object, no multipart upload); the manifest
    is one PUT after every object of the version it names; readable with polars, pyarrow and
    hats from the bucket; a rerun writes no catalog file; --since-manifest on s3 predicts only
    the new galaxies and publishes version 2, leaving version 1 as it was."""
    cols = galaxies(64, seed=31)
    expect = bad_rows(cols)
    cutouts = write_cutouts(f"{s3_bucket}/cutouts", cols, 32)
    out = f"{s3_bucket}/catalog"
    cfg = BuildCatalogConfig(cutouts=cutouts, tracers=cutouts, regression=s3_models[0],
                             pr=s3_models[1], out=out, batch_size=16)
    mark = s3_server.log_offset()
    manifest = build_catalog(cfg).to_dict()
    writes = s3_server.writes(mark)
    staged = [(m, p) for m, p in writes if "/_staging/build=1/" in p]
    assert staged and {m for m, _ in staged} == {"PUT"}, staged
    assert not [p for _, p in writes if ".tmp" in p], writes
    # the switch: _manifest.json is written once, after every object of version 1
    puts = [p.split("?")[0] for m, p in writes if m == "PUT"]
    switch = [i for i, p in enumerate(puts) if p.endswith("/catalog/_manifest.json")]
    in_version = [i for i, p in enumerate(puts) if "/catalog/version=1/" in p]
    assert len(switch) == 1 and in_version and max(in_version) < switch[0], puts
    assert manifest["rows"]["total"] == 64 and manifest["version"] == 1
    assert manifest["rows"]["status"]["duplicate_id"] == 2
    # read back from the bucket: polars (hive partitions) and pyarrow datasets
    cat = _read_catalog_polars(out)
    assert sorted(cat["object_id"].to_list()) == sorted(cols["object_id"])
    status = dict(zip(cat["object_id"].to_list(), cat["status"].to_list(), strict=False))
    assert all(status[k] == v for k, v in expect.items())
    assert open_catalog(out).version == 1
    fs, _ = storage.filesystem_and_path(out)
    table = pads.dataset([storage.filesystem_and_path(f)[1] for f in open_catalog(out).files],
                         format="parquet", filesystem=fs).to_table()
    assert table.num_rows == 64 and "_healpix_29" in table.column_names
    import hats

    from hicatalog.catalog.publish import hats_path

    h = hats.read_hats(hats_path(open_catalog(out).path))
    assert h.catalog_info.total_rows == 64 - 1  # the row without a position is not a pixel's
    ok = cat.filter(cat["status"] == "ok")
    assert ok["m_pred"].is_finite().all() and ok["p_cnn"].is_between(0, 1).all()
    # the models were downloaded once into the local cache, keyed by their hashes
    cache = os.environ[MODEL_CACHE_ENV]
    for m in s3_models:
        sha = load_card(m).weights_sha256
        assert os.path.isfile(os.path.join(cache, sha, "weights.pt"))
    assert manifest["models"]["regression"]["path"] == s3_models[0]

    # exactly once: the same command again finds every shard done and writes no catalog file
    mark = s3_server.log_offset()
    again = build_catalog(cfg).to_dict()
    rewritten = [p for _, p in s3_server.writes(mark)]
    assert not [p for p in rewritten if p.endswith(".parquet") or "/_done/" in p], rewritten
    assert again["version"] == 1 and again["rows"] == manifest["rows"]
    assert len(_read_catalog_polars(out)) == 64

    # incremental: old + new cutouts, --since-manifest on the bucket
    v1 = {f: storage.read_bytes(f) for f in storage.list_files(f"{out}/version=1", recursive=True)}
    new = galaxies(20, seed=32, prefix="n")
    both = {k: list(cols[k]) + list(new[k]) for k in cols}
    more = write_cutouts(f"{s3_bucket}/cutouts2", both, 32)
    m2 = build_catalog(BuildCatalogConfig(cutouts=more, regression=s3_models[0],
                                          pr=s3_models[1], out=out, batch_size=16,
                                          since_manifest=f"{out}/_manifest.json")).to_dict()
    assert m2["version"] == 2 and [v["path"] for v in m2["versions"]] == ["version=1",
                                                                          "version=2"]
    assert m2["rows"]["total"] == 20 and m2["versions"][1]["rows"] == 84
    assert {f: storage.read_bytes(f) for f in storage.list_files(
        f"{out}/version=1", recursive=True)} == v1
    cat = _read_catalog_polars(out)
    assert sorted(cat.filter(cat["build_id"] == m2["build_id"])["object_id"].to_list()) == sorted(
        new["object_id"])
    assert sorted(cat["object_id"].to_list()) == sorted(both["object_id"])
    assert sorted(_read_catalog_polars(out, version=1)["object_id"].to_list()) == sorted(
        cols["object_id"])
    # the manifest itself, read from the bucket
    latest = json.loads(storage.read_bytes(f"{out}/_manifest.json"))
    assert latest["version"] == 2 and latest["rows"]["total"] == 20


def test_models_on_s3_are_cached_by_hash_and_verified(s3_server, s3_bucket, tmp_path,
                                                      monkeypatch):
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "cache"))
    url = tiny_model(f"{s3_bucket}/m", "regression", seed=4)
    model, card = load_model(url)
    cached = tmp_path / "cache" / card.weights_sha256
    assert sorted(os.listdir(cached)) == ["model_card.json", "weights.pt"]
    local, _ = load_model(str(cached))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 local.state_dict().values(), strict=True))
    # a second load reads only the card: the weights come from the cache
    mark = s3_server.log_offset()
    load_model(url)
    assert not [p for m, p in s3_server.requests(mark) if m == "GET" and "weights.pt" in p]

    # weights that do not match their card are refused, and nothing is cached
    other = f"{s3_bucket}/bad"
    torch.manual_seed(99)
    other_card = save_model(other, xresnet18(1, width=0.25), card)
    assert other_card.weights_sha256 != card.weights_sha256
    storage.write_atomic(f"{other}/weights.pt", storage.read_bytes(f"{other}/weights.pt") + b"x")
    with pytest.raises(ValueError, match="does not match the model card"):
        load_model(other)
    assert [n for n in os.listdir(tmp_path / "cache") if not n.startswith(".")] == [
        card.weights_sha256]
    # a card without a hash is refused on object storage
    doc = json.loads(storage.read_bytes(f"{url}/model_card.json"))
    doc["weights_sha256"] = ""
    storage.write_atomic(f"{other}/model_card.json", json.dumps(doc).encode())
    with pytest.raises(ValueError, match="has no weights_sha256"):
        load_model(other)
    # a cached copy that was damaged is fetched again
    with open(cached / "weights.pt", "ab") as fh:
        fh.write(b"damage")
    _, again = load_model(url)
    assert again.weights_sha256 == card.weights_sha256
    assert np.isfinite(sum(float(v.float().sum()) for v in model.state_dict().values()))
