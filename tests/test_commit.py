"""The commit protocol of a catalog directory (hicatalog.catalog.commit): claims, the
compare-and-swap of the manifest, rebase, vacuum with a grace period.

Small publishes run their tasks in this process (no Ray), on a local disk; the racing
processes on disk and on the S3 test server are tests/test_commit_race.py.
"""

from __future__ import annotations

import collections
import json
import os
import time

import pytest
from builders import SMALL, rows

from hicatalog import storage
from hicatalog.catalog import commit
from hicatalog.catalog.manifest import Manifest
from hicatalog.catalog.publish import publish_tables, publish_version
from hicatalog.catalog.reader import open_catalog, read_catalog
from hicatalog.cli import main as cli_main
from hicatalog.errors import InputError, OutputError, WriteConflict


def ids(table):
    return collections.Counter(table.column("object_id").to_pylist())


def predicted(table):
    """The object_ids of the rows that are not ``duplicate_id`` repeats."""
    return [i for i, s in zip(table.column("object_id").to_pylist(),
                              table.column("status").to_pylist(), strict=True)
            if s != "duplicate_id"]


def test_a_build_claims_its_number_once_and_its_twin_resumes_it(tmp_path):
    out = str(tmp_path / "cat")
    a = commit.claim_build(out, {"fingerprint": "a" * 16, "build_id": "A"}, continues=True)
    b = commit.claim_build(out, {"fingerprint": "b" * 16, "build_id": "B"}, continues=True)
    again = commit.claim_build(out, {"fingerprint": "a" * 16, "build_id": "A"}, continues=True)
    assert (a.build, a.resumed, b.build, b.resumed) == (1, False, 2, False)
    assert again == commit.Staging(build=1, dir=a.dir, resumed=True)
    # a build that does not continue the catalog may not add to it
    with pytest.raises(OutputError, match="another build.*since_manifest="):
        commit.claim_build(out, {"fingerprint": "c" * 16, "build_id": "C"}, continues=False)
    # the number a slower twin picked is taken: it moves on to the next
    (tmp_path / "cat" / "_staging" / "build=3").mkdir()
    storage.create_exclusive(str(tmp_path / "cat" / "_staging" / "build=3" / "_build.json"),
                             b'{"fingerprint": "d", "build_id": "D"}')
    e = commit.claim_build(out, {"fingerprint": "e" * 16, "build_id": "E"}, continues=True)
    assert e.build == 4


def test_a_publish_from_an_old_base_rebases_and_every_row_lands_once(tmp_path):
    """Builds X and Y both start from version 1; X commits version 2 first. Y's publish (its
    base pinned to version 1) rebases: version 3 holds version 1's rows, X's and Y's, and the
    galaxies both predicted once (X's rows: it committed first)."""
    out = str(tmp_path / "cat")
    base = publish_tables(out, [rows(60, 1, "a")], build_id="a", **SMALL)
    x = rows(40, 2, "x")
    y = rows(50, 3, "x")  # x000000..x000049: the first 40 are X's galaxies too
    mx = publish_tables(out, [x], build_id="X", previous=base, **SMALL)
    my = publish_tables(out, [y], build_id="Y", previous=base, **SMALL)
    assert (mx.version, my.version) == (2, 3)
    assert [v.version for v in my.versions] == [1, 2, 3]
    got = read_catalog(out)
    expected = (ids(rows(60, 1, "a")) + ids(x)
                + collections.Counter(i for i in y.column("object_id").to_pylist()
                                      if i not in set(x.column("object_id").to_pylist())))
    assert ids(got) == expected
    assert len(predicted(got)) == len(set(predicted(got)))  # no galaxy predicted twice
    by_id = dict(zip(got.column("object_id").to_pylist(), got.column("build_id").to_pylist(),
                     strict=True))
    assert by_id["x000010"] == "x" and by_id["x000045"] == "x"  # X's row kept; Y's new one
    assert my.current().rows == got.num_rows == open_catalog(out).rows
    assert len(my.builds()) == 3 and my.builds()[1] == mx.builds()[1]


def test_without_a_way_to_rebase_a_late_publish_fails_in_one_line(tmp_path):
    out = str(tmp_path / "cat")
    base = publish_tables(out, [rows(30, 1, "a")], build_id="a", **SMALL)
    publish_tables(out, [rows(30, 2, "b")], build_id="b", previous=base, **SMALL)
    late = publish_tables(str(tmp_path / "elsewhere"), [rows(30, 3, "c")], build_id="c")
    with pytest.raises(WriteConflict, match=r"version 2 \(b\) was committed while c published "
                                            r"from version 1; nothing was committed"):
        publish_version(out, base.builds() + late.builds(), previous=base, build=late.build)
    assert Manifest.read(out).version == 2
    assert sorted(p.name for p in (tmp_path / "cat").glob("version=*")) == [
        "version=1", "version=2"]  # the loser's claimed directory is gone


def test_removed_versions_are_kept_for_the_grace_period_then_vacuumed(tmp_path):
    out = str(tmp_path / "cat")
    m = publish_tables(out, [rows(300, 4, "a")], build_id="a", **SMALL)
    m = publish_tables(out, [rows(200, 5, "b")], build_id="b", previous=m, **SMALL)
    held = open_catalog(out, version=1).files  # a reader resolved version 1, reads later
    m = publish_tables(out, [rows(100, 6, "c")], build_id="c", previous=m, keep_versions=2,
                       **SMALL)
    assert [v.version for v in m.versions] == [2, 3] and m.version == 3
    assert [r.version for r in m.removed] == [1]
    with pytest.raises(InputError, match=r"version 1 is not listed \(versions: 2, 3\)"):
        open_catalog(out, version=1)
    # the reader that resolved version 1 before it was removed can still read it
    assert sum(storage.read_parquet(f).num_rows for f in held) == 300
    assert commit.vacuum(out, grace_hours=24) == commit.VacuumReport(removed=[], unlisted=[])
    assert (tmp_path / "cat" / "version=1" / "hi_catalog").is_dir()
    # a day later (the removal time moved back) the vacuum deletes it and forgets it
    doc = json.loads((tmp_path / "cat" / "_manifest.json").read_text())
    doc["removed"][0]["removed"] = "2000-01-01T00:00:00+00:00"
    (tmp_path / "cat" / "_manifest.json").write_text(json.dumps(doc))
    assert commit.vacuum(out, grace_hours=24) == commit.VacuumReport(removed=[1], unlisted=[])
    assert sorted(p.name for p in (tmp_path / "cat").glob("version=*")) == [
        "version=2", "version=3"]
    assert Manifest.read(out).removed == ()
    assert open_catalog(out, version=2).rows == 500 and open_catalog(out).rows == 600
    assert len(list((tmp_path / "cat" / "_staging").glob("build=*"))) == 3  # staging stays


def test_a_dead_publish_is_vacuumed_only_once_its_claim_expired(tmp_path, capsys):
    out = str(tmp_path / "cat")
    publish_tables(out, [rows(300, 7, "a")], build_id="a", **SMALL)
    cat = tmp_path / "cat"
    # three publishes that never committed: one claimed yesterday (claim expired), one in
    # flight (claimed now), one from before claims (no claim; its files two days old)
    for v, expires in ((2, time.time() - 60), (3, time.time() + 3600)):
        (cat / f"version={v}" / "hi_catalog").mkdir(parents=True)
        (cat / f"version={v}" / commit.CLAIM_FILE).write_text(
            json.dumps({"version": v, "expires_unix": expires}))
    old = cat / "version=4" / "hi_catalog" / "dataset" / "Npix=4.parquet"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"partial")
    os.utime(old, (time.time() - 2 * 86400 - commit.CLAIM_HOURS * 3600,) * 2)
    assert open_catalog(out).version == 1 and open_catalog(out).rows == 300
    # the next publish takes a number above every claimed directory
    m = publish_tables(out, [rows(50, 9, "b")], build_id="b", previous=Manifest.read(out),
                       **SMALL)
    assert m.version == 5 and read_catalog(out).num_rows == 350
    assert cli_main(["vacuum", out, "--grace-hours", "0"]) == 0
    assert "uncommitted publishes [2, 4]" in capsys.readouterr().out
    assert sorted(p.name for p in cat.glob("version=*")) == [
        "version=1", "version=3", "version=5"]


def test_a_publish_that_outlived_its_claim_commits_nothing(tmp_path, monkeypatch):
    out = str(tmp_path / "cat")
    base = publish_tables(out, [rows(30, 1, "a")], build_id="a", **SMALL)
    monkeypatch.setattr(commit, "CLAIM_HOURS", -1.0)  # every claim is past half its life
    with pytest.raises(WriteConflict, match="outlasted half of its claim's life"):
        publish_tables(out, [rows(30, 2, "b")], build_id="b", previous=base, **SMALL)
    assert Manifest.read(out).version == 1


def test_vacuum_refuses_a_negative_grace_period_and_a_directory_without_a_catalog(
        tmp_path, capsys):
    from hicatalog.errors import ConfigError

    with pytest.raises(ConfigError, match="grace_hours must be >= 0"):
        commit.vacuum(str(tmp_path), grace_hours=-1)
    assert cli_main(["vacuum", str(tmp_path / "typo")]) == 1
    assert "catalog manifest not found" in capsys.readouterr().err
