"""The one de-duplication rule (first occurrence wins) and the readers that apply it."""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pyarrow.parquet as pq

from hicatalog.evaluation.data import load_catalog, load_truth
from hicatalog.schemas import first_occurrences


def test_first_occurrences_across_chunks_and_nulls():
    ids = pa.chunked_array([["b", "a"], ["b", None, "c", "a", None]])
    assert first_occurrences(ids).tolist() == [0, 1, 3, 4]


def _cat(path, ids, status, m):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.table({"object_id": ids, "m_pred": pa.array(m, pa.float32()),
                             "p_cnn": pa.array([0.5] * len(ids), pa.float32()),
                             "status": status}), path)


def test_catalog_reader_never_keeps_a_duplicate_id_row(tmp_path):
    # A plain hi_catalog directory (no manifest): the galaxy's prediction is in one file, its
    # duplicate row (no prediction) in another file written later: the reader must keep the
    # prediction.
    root = tmp_path / "cat"
    _cat(str(root / "part-00001.parquet"), ["g1"], ["duplicate_id"], [None])
    time.sleep(0.01)
    _cat(str(root / "part-00000.parquet"), ["g1", "g2"], ["ok", "ok"], [0.1, 0.2])
    cat = load_catalog(str(root))
    assert sorted(cat.get_column("object_id").to_list()) == ["g1", "g2"]
    row = cat.filter(cat["object_id"] == "g1")
    assert row["status"].to_list() == ["ok"] and abs(row["m_pred"][0] - 0.1) < 1e-6


def test_catalog_reader_reads_the_current_version_through_the_manifest(tmp_path, ray_local):
    from builders import SMALL, rows

    from hicatalog.catalog.manifest import Manifest
    from hicatalog.catalog.publish import publish_tables

    out = str(tmp_path / "cat")
    publish_tables(out, [rows(40, 1, "a")], build_id="a", **SMALL)
    publish_tables(out, [rows(20, 2, "b")], build_id="b", previous=Manifest.read(out), **SMALL)
    # version 1's files made newer than version 2's: file times must not matter
    for f in (tmp_path / "cat" / "version=1").rglob("*.parquet"):
        os.utime(f, (time.time() + 100, time.time() + 100))
    cat = load_catalog(out)
    ids = set(cat.get_column("object_id").to_list())
    assert cat.height == 60 - 2 - 2 and {"a000010", "b000010"} <= ids  # duplicate_id rows left out
    assert cat["_file"].str.contains("version=2").all()


def test_truth_keeps_first_row(tmp_path):
    pq.write_table(pa.table({"object_id": ["a", "b", "a"], "m_true": [1.0, 2.0, 3.0]}),
                   tmp_path / "t.parquet")
    t = load_truth(str(tmp_path / "t.parquet"))
    assert dict(zip(t["object_id"].to_list(), t["m_true"].to_list(), strict=True)) == {
        "a": 1.0, "b": 2.0}
