"""The typed catalog manifest, against _manifest.json files written here by hand (no Ray)."""

from __future__ import annotations

import json

import pytest

from hicatalog.catalog.manifest import (
    BuildRecord,
    Manifest,
    RowCounts,
    VersionEntry,
    next_manifest,
)
from hicatalog.errors import HicatalogError, InputError, InputNotFoundError


def version(v, builds, rows, **extra):
    return {"version": v, "path": f"version={v}", "builds": builds, "build_ids": [f"b{v}"],
            "rows": rows, "invalid_coordinate_rows": 1, "partitions": 2, "files": 3,
            "bytes": 1000 * v, "options": {"partition_rows": 500000, "row_group_rows": 10000,
                                           "histogram_order": 8},
            "created": "2025-01-01T00:00:00+00:00", "publish_s": 1.5, **extra}


#: A manifest as a build writes it: two versions, the second continuing the first.
DOC = {
    "build_id": "build-abc", "fingerprint": "f" * 16, "staging": "_staging/build=2",
    "since_manifest": "cat/_manifest.json", "model_id": "reg+pr",
    "models": {"regression": {"model_id": "reg", "weights_sha256": "1" * 64, "path": "/m/r"},
               "pr": {"model_id": "pr", "weights_sha256": "2" * 64, "path": "/m/p"}},
    "config": {"cutouts": "c", "batch_size": 64},
    "inference": {"precision": "fp32", "decode": "cpu"},
    "input": {"cutouts": "c", "shards": 3, "rows": 90, "fingerprint": "i" * 16,
              "survey": "sdss"},
    "tracers": {"path": "c", "fingerprint": "cutouts"},
    "rows": {"total": 25, "status": {"ok": 25}, "env_status": {"ok": 20, "no_redshift": 5}},
    "code_version": "0.1.0", "created": "2025-01-02T00:00:00+00:00", "wall_time_s": 12.5,
    "catalog": "hi_catalog", "version": 2, "layout": "version=V/ is a HATS catalog",
    "versions": [version(1, ["_staging/build=1"], 40),
                 version(2, ["_staging/build=1", "/elsewhere/_staging/build=7"], 65)],
}


def write(path, doc):
    path.mkdir(parents=True, exist_ok=True)
    (path / "_manifest.json").write_text(json.dumps(doc))
    return path


def test_read_current_versions_and_builds(tmp_path):
    cat = write(tmp_path / "cat", DOC)
    for where in (cat, cat / "_manifest.json"):
        m = Manifest.read(str(where))
        assert m.path == str(cat / "_manifest.json") and m.catalog_dir == str(cat)
        assert m.version == 2 and [v.version for v in m.versions] == [1, 2]
        assert m.current().rows == 65 and m.entry(1).rows == 40
        assert m.current().options.partition_rows == 500000
        # recorded paths resolve against the catalog directory; absolute ones stay
        assert m.builds() == [str(cat / "_staging" / "build=1"), "/elsewhere/_staging/build=7"]
        assert m.builds(1) == [str(cat / "_staging" / "build=1")]
        assert m.resolve(m.current().path) == str(cat / "version=2")
        assert m.models["pr"].weights_sha256 == "2" * 64 and m.input.rows == 90
        assert m.rows.status == {"ok": 25} and m.build.build_id == "build-abc"
    assert Manifest.find(str(cat)).version == 2
    assert Manifest.find(str(tmp_path / "nothing")) is None


def test_write_keeps_every_key_including_unknown_ones(tmp_path):
    """A manifest written by a newer hicatalog (a field this one does not know, at the top
    and in a version) survives a read and a write unchanged."""
    doc = json.loads(json.dumps(DOC))
    doc["added_later"] = {"x": 1}
    doc["versions"][0]["checksum"] = "abc"
    m = Manifest.read(str(write(tmp_path / "a", doc)))
    written = m.write(str(tmp_path / "b"), replacing=None)
    assert json.loads((tmp_path / "b" / "_manifest.json").read_text()) == doc
    assert written.path == str(tmp_path / "b" / "_manifest.json")
    # a publish_tables manifest records only the build's id, fingerprint and row total
    small = {k: DOC[k] for k in ("catalog", "version", "versions", "layout")}
    small.update(build_id="t", fingerprint="0" * 16, rows={"total": 65})
    Manifest.read(str(write(tmp_path / "c", small))).write(str(tmp_path / "d"), replacing=None)
    assert json.loads((tmp_path / "d" / "_manifest.json").read_text()) == small


def test_next_manifest_adds_the_current_version_and_drops_the_oldest(tmp_path):
    m = Manifest.read(str(write(tmp_path / "cat", DOC)))
    entry = VersionEntry(version=3, path="version=3", builds=("_staging/build=3",), rows=70)
    build = BuildRecord(build_id="build-new", fingerprint="n" * 16, rows=RowCounts(total=5))
    nxt, dropped = next_manifest(m.versions_recorded_in(str(tmp_path / "cat")), entry, build,
                                 keep_versions=2)
    assert [v.version for v in dropped] == [1]
    nxt.write(str(tmp_path / "cat"), replacing=Manifest.read_versioned(tmp_path / "cat")[1])
    on_disk = json.loads((tmp_path / "cat" / "_manifest.json").read_text())
    assert on_disk["version"] == 3 and [v["version"] for v in on_disk["versions"]] == [2, 3]
    # version 1 is removed, not forgotten: its files wait for a vacuum after the grace period
    assert [(r["version"], r["path"]) for r in on_disk["removed"]] == [(1, "version=1")]
    assert on_disk["build_id"] == "build-new" and on_disk["rows"] == {"total": 5}
    assert "models" not in on_disk  # the new build recorded none: the old build's are gone
    assert on_disk["versions"][1] == {"version": 3, "path": "version=3",
                                      "builds": ["_staging/build=3"], "rows": 70}
    assert on_disk["versions"][0] == DOC["versions"][1]  # unchanged, paths still relative


def test_versions_recorded_in_another_directory_become_full_paths(tmp_path):
    m = Manifest.read(str(write(tmp_path / "old", DOC)))
    v1, v2 = m.versions_recorded_in(str(tmp_path / "new"))
    assert v1.path == str(tmp_path / "old" / "version=1")
    assert v2.builds == (str(tmp_path / "old" / "_staging" / "build=1"),
                         "/elsewhere/_staging/build=7")
    # recorded in its own directory: unchanged
    assert m.versions_recorded_in(str(tmp_path / "old")) == list(m.versions)


def test_bad_manifests_are_input_errors_naming_the_path(tmp_path):
    with pytest.raises(InputNotFoundError, match="catalog manifest not found") as err:
        Manifest.read(str(tmp_path / "none"))
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, HicatalogError)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "_manifest.json").write_text("{not json")
    with pytest.raises(InputError, match=r"bad/_manifest.json: catalog manifest is not valid"):
        Manifest.read(str(tmp_path / "bad"))
    with pytest.raises(InputError, match="no 'versions' list"):
        Manifest.read(str(write(tmp_path / "x", {"build_id": "b"})))
    with pytest.raises(InputError, match="not a valid catalog manifest: versions.0.rows: Field required$"):
        Manifest.read(str(write(tmp_path / "y", {**DOC, "versions": [
            {k: v for k, v in version(1, [], 4).items() if k != "rows"}]})))
    m = Manifest.read(str(write(tmp_path / "z", DOC)))
    with pytest.raises(InputError, match=r"version 5 is not listed \(versions: 1, 2\)"):
        m.entry(5)
