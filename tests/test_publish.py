"""The published catalog: HATS versions on Ray, switched atomically through the manifest.

Synthetic staged rows (no images, no models) published with small partitions, so every
version has many files; on a local disk and on the real S3-compatible server
(tests/conftest.py). No filesystem API is mocked.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import SMALL, rows

from hicatalog import storage
from hicatalog.catalog.manifest import Manifest
from hicatalog.catalog.publish import hats_path, publish_tables
from hicatalog.catalog.reader import open_catalog, read_catalog
from hicatalog.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parents[1]


def shards(table, k):
    step = -(-table.num_rows // k)
    return [table.slice(i, step) for i in range(0, table.num_rows, step)]


def ids_of(files):
    """The multiset of ``object_id`` over ``files`` (each read whole, as a user would)."""
    out = collections.Counter()
    for f in files:
        fs, p = storage.filesystem_and_path(f)
        with fs.open_input_file(p) as fh:
            out.update(pq.read_table(fh, columns=["object_id"]).column(0).to_pylist())
    return out


@pytest.fixture(params=["local", "s3"])
def catalog_dir(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "catalog")
    return f"{request.getfixturevalue('s3_bucket')}/catalog"


def test_no_row_lost_or_doubled_and_pixels_hold_their_rows(catalog_dir, ray_local):
    import hats
    from hats.io.validation import is_valid_catalog

    staged = rows(1500, 1, "a")
    m = publish_tables(catalog_dir, shards(staged, 7), build_id="a", **SMALL)
    cat = open_catalog(catalog_dir)
    assert cat.version == m.version == 1 and cat.rows == 1500
    # by count and by id: the published multiset of ids is the staged one
    assert ids_of(cat.files) == collections.Counter(staged.column("object_id").to_pylist())
    assert len(cat.files) > 5 and m.versions[0].partitions == len(cat.files) - 1
    for f in cat.files[:-1]:  # every partition: rows inside its pixel, sorted, <= 150 rows
        k = int(f.split("Norder=")[1].split("/")[0])
        p = int(f.split("Npix=")[1].split(".")[0])
        fs, path = storage.filesystem_and_path(f)
        with fs.open_input_file(path) as fh:
            t = pq.read_table(fh)
            md = pq.ParquetFile(fh).metadata
        hp = t.column("_healpix_29").to_numpy()
        assert (hp >> (2 * (29 - k)) == p).all() and (np.diff(hp) >= 0).all()
        assert t.num_rows <= 150 and md.num_row_groups == -(-t.num_rows // 40)
    invalid = read_catalog(catalog_dir).filter(pa.compute.is_null(
        read_catalog(catalog_dir).column("_healpix_29")))
    assert sorted(invalid.column("object_id").to_pylist()) == ["a000000", "a000001", "a000002"]
    # the HATS view: properties and partitions agree with the files, strict validation passes
    h = hats.read_hats(hats_path(cat.path))  # on S3: not anonymous
    assert h.catalog_info.total_rows == 1500 - 3
    assert h.catalog_info.healpix_column == "_healpix_29" and h.catalog_info.ra_column == "ra"
    assert len(h.get_healpix_pixels()) == len(cat.files) - 1
    if not catalog_dir.startswith("s3://"):
        assert is_valid_catalog(cat.path, strict=True)
    # the version is a HATS collection: the main catalog and its margin cache
    coll = hats.read_hats(hats_path(cat.version_dir))
    assert coll.main_catalog.catalog_info.total_rows == 1500 - 3
    assert coll.default_margin == "hi_catalog_10arcs" and coll.get_margin_thresholds() == {
        "hi_catalog_10arcs": 10.0}
    assert m.current().margin_rows > 0 and m.current().options.margin_arcsec == 10.0
    if not catalog_dir.startswith("s3://"):
        assert is_valid_catalog(cat.version_dir, strict=True)  # every member checked


def test_a_reader_during_a_publish_sees_one_complete_version(catalog_dir, ray_local):
    """A reader loop running while a new version is published: every read is exactly one
    version's rows (count and id set), first version 1's, then version 2's, never a mix."""
    first = rows(1200, 2, "a")
    m1 = publish_tables(catalog_dir, shards(first, 6), build_id="a", **SMALL)
    second = rows(900, 3, "b")
    expected = {1: collections.Counter(first.column("object_id").to_pylist())}
    expected[2] = expected[1] + collections.Counter(second.column("object_id").to_pylist())
    seen, errors, stop, started = [], [], threading.Event(), threading.Event()

    def reader():
        while not stop.is_set():
            try:
                cat = open_catalog(catalog_dir)
                got = ids_of(cat.files)
                seen.append(cat.version)
                if got != expected[cat.version] or sum(got.values()) != cat.rows:
                    errors.append(f"version {cat.version}: {sum(got.values())} rows")
            except Exception as exc:  # noqa: BLE001 - any failure of a read is the finding
                errors.append(repr(exc))
            started.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    assert started.wait(60)
    m2 = publish_tables(catalog_dir, shards(second, 5), build_id="b", previous=Manifest.read(
        catalog_dir), **SMALL)
    n_after = len(seen)
    while len(seen) < n_after + 2 and t.is_alive():
        time.sleep(0.01)
    stop.set()
    t.join(60)
    assert not errors, errors[:3]
    assert m1.version == 1 and m2.version == 2
    assert seen[0] == 1 and seen[-1] == 2 and sorted(seen) == seen  # never back to 1
    # version 1 is still readable by number (time travel)
    assert ids_of(open_catalog(catalog_dir, version=1).files) == expected[1]


@pytest.mark.parametrize("margin", [-1.0, 3600.0])
def test_a_bad_margin_width_is_refused_before_anything_is_published(tmp_path, margin):
    out = tmp_path / "catalog"
    with pytest.raises(ConfigError, match="margin_arcsec"):
        publish_tables(str(out), [rows(50, 1, "m")], build_id="m", margin_arcsec=margin)
    assert not list(out.glob("version=*")) and not (out / "_manifest.json").exists()


def test_a_catalog_of_the_old_layout_is_one_clear_error(tmp_path):
    """A catalog written before HATS versions (dec-zone files, versions without builds) is
    refused by the reader in one line, not read as a second layout."""
    import json

    old = tmp_path / "old"
    (old / "version=1" / "dec_zone=2").mkdir(parents=True)
    (old / "_manifest.json").write_text(json.dumps(
        {"version": 1, "versions": [{"version": 1, "path": "version=1", "rows": 3}]}))
    with pytest.raises(InputError, match="declination-zone layout .* new out directory"):
        open_catalog(str(old))


def test_a_version_describes_itself(tmp_path, ray_local, monkeypatch):
    """Each version directory carries a README.md (rows, builds, every contract column with
    its unit, the cut, queries that run as written there, the citation) and HATS properties
    that describe it; hats still reads the version."""
    import re

    import duckdb
    import hats
    import polars as pl

    out = str(tmp_path / "catalog")
    staged = rows(300, 4, "r")  # 3 rows without a valid position, 2 duplicate ids
    publish_tables(out, shards(staged, 2), build_id="r", **SMALL)
    cat = open_catalog(out)
    text = (Path(cat.version_dir) / "README.md").read_text()
    assert text.startswith("# H I catalog, version 1\n")
    assert "- Rows: 300 (3 without a valid position" in text and "Builds: r;" in text
    schema = json.loads((REPO / "schemas" / "hi_catalog.json").read_text())
    for f in schema["fields"]:
        assert f"| `{f['name']}` | " in text, f["name"]
    assert "| `m_pred` | float | dex |" in text and "status = 'ok' AND p_cnn > 0.9" in text
    assert "doi:10.3847/1538-4357/abacbb" in text and "arXiv:2001.00018" in text
    # the README's queries run as written, in the version's directory
    blocks = dict((lang, code) for lang, code in re.findall(r"```(\w+)\n(.*?)```", text, re.S))
    monkeypatch.chdir(cat.version_dir)
    scope: dict = {}
    exec(blocks["python"], scope)
    good = scope["good"]
    # the partitions hold the rows with a valid position (not the first 3); the cut keeps
    # status 'ok' (not the 2 duplicates) with p_cnn > 0.9
    expected = [i for k, (i, st, p) in enumerate(zip(
        staged.column("object_id").to_pylist(), staged.column("status").to_pylist(),
        staged.column("p_cnn").to_pylist(), strict=True)) if k >= 3 and st == "ok" and p > 0.9]
    assert len(expected) > 10 and sorted(good["object_id"].to_list()) == sorted(expected)
    sql = duckdb.sql(blocks["sql"]).pl()
    assert sorted(sql["object_id"].to_list()) == sorted(good["object_id"].to_list())
    # the HATS properties describe the version
    props = hats.read_hats(cat.path).catalog_info
    extra = props.extra_dict() if hasattr(props, "extra_dict") else props.model_extra
    assert "300 rows" in extra["obs_description"] and "p_cnn > 0.9" in extra["obs_description"]
    assert "ALFALFA" in extra["obs_ack"] and "NASA-Sloan Atlas" in extra["obs_ack"]
    assert extra["bib_reference_url"] == "https://doi.org/10.3847/1538-4357/abacbb"
    assert props.default_columns == ["object_id", "ra", "dec", "z", "m_pred", "m_pred_err",
                                     "p_cnn", "one_plus_delta5", "status", "env_status"]
    assert pl.read_parquet(cat.files[0]).height > 0
