"""hicatalog.storage: the one atomic writer every stage uses."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hicatalog import storage
from hicatalog.storage import absolute, filesystem_and_path, write_atomic, write_parquet_atomic


def test_write_atomic_bytes_and_callable_create_parents(tmp_path):
    p = tmp_path / "a" / "b" / "x.json"
    assert write_atomic(p, b'{"k": 1}') == str(p)
    assert p.read_bytes() == b'{"k": 1}'
    write_atomic(str(p), lambda sink: sink.write(b"second"))
    assert p.read_bytes() == b"second"
    assert sorted(os.listdir(p.parent)) == ["x.json"]  # no temporary left


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "t.parquet"
    write_parquet_atomic(pa.table({"a": [1, 2]}), p)

    def broken(sink):
        sink.write(b"PAR1 half a file")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError, match="writer died"):
        write_atomic(p, broken)
    assert pq.read_table(p).column("a").to_pylist() == [1, 2]
    assert os.listdir(tmp_path) == ["t.parquet"]


def test_urls_work_like_local_paths(tmp_path):
    url = f"file://{tmp_path}/u/t.parquet"
    write_parquet_atomic(pa.table({"a": [3]}), url, compression="none")
    fs, path = filesystem_and_path(url)
    assert path == f"{tmp_path}/u/t.parquet"
    assert pq.read_table(path).column("a").to_pylist() == [3]
    assert filesystem_and_path("rel/x")[1] == os.path.abspath("rel/x")


def test_absolute_paths_for_ray_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute("runs/x") == f"{tmp_path}/runs/x"
    assert absolute(tmp_path / "y") == f"{tmp_path}/y"
    assert absolute("s3://bucket/runs/x") == "s3://bucket/runs/x"  # URLs unchanged


def test_object_store_writes_are_single_puts_of_complete_objects(s3_server, s3_bucket):
    """On S3 (a real server: moto on 127.0.0.1) write_atomic uploads the complete object in
    one PUT: no temporary object, no multipart upload, no copy, no delete; a failing writer
    uploads nothing."""
    url = f"{s3_bucket}/a/b/t.parquet"
    mark = s3_server.log_offset()
    write_parquet_atomic(pa.table({"a": [1, 2]}), url)
    write_atomic(f"{s3_bucket}/a/x.json", b"{}")
    requests = s3_server.requests(mark)
    writes = [(m, p) for m, p in requests if m in ("PUT", "POST", "DELETE")]
    assert sorted(p for _, p in writes) == sorted(
        [f"/{s3_bucket[5:]}/a/b/t.parquet", f"/{s3_bucket[5:]}/a/x.json"]), requests
    assert {m for m, _ in writes} == {"PUT"}

    def broken(sink):
        sink.write(b"PAR1 half a file")
        raise RuntimeError("writer died")

    mark = s3_server.log_offset()
    with pytest.raises(RuntimeError, match="writer died"):
        write_atomic(url, broken)
    assert not [m for m, _ in s3_server.requests(mark) if m in ("PUT", "POST", "DELETE")]
    with pytest.raises(RuntimeError, match="writer died"):
        write_atomic(f"{s3_bucket}/never.parquet", broken)
    assert not storage.is_file(f"{s3_bucket}/never.parquet")
    # read back through pyarrow and polars, from the same URL
    fs, path = filesystem_and_path(url)
    assert path == f"{s3_bucket[5:]}/a/b/t.parquet"
    assert pq.read_table(url).column("a").to_pylist() == [1, 2]
    import polars as pl

    assert pl.read_parquet(url)["a"].to_list() == [1, 2]


def test_listing_reading_and_joining_alike_on_disk_and_on_s3(tmp_path, s3_bucket):
    for base in (str(tmp_path / "d"), f"{s3_bucket}/d"):
        write_atomic(storage.join(base, "v=1", "_done", "part-1.json"), b"1")
        write_atomic(storage.join(base, "v=1", "z=2", "part-1.parquet"), b"2")
        write_atomic(storage.join(base, "v=1", "z=2", "_x.parquet"), b"3")
        write_atomic(storage.join(base, "v=2", "part-2.parquet"), b"4")
        assert storage.list_dirs(base) == ["v=1", "v=2"]
        assert storage.list_files(base, recursive=True, suffix=".parquet") == [
            storage.join(base, "v=1", "z=2", "part-1.parquet"),
            storage.join(base, "v=2", "part-2.parquet")]
        assert storage.list_files(storage.join(base, "v=1", "_done"), suffix=".json") == [
            storage.join(base, "v=1", "_done", "part-1.json")]
        assert storage.list_files(storage.join(base, "nothing")) == []
        assert storage.list_dirs(storage.join(base, "nothing")) == []
        f = storage.join(base, "v=2", "part-2.parquet")
        assert storage.is_file(f) and not storage.is_dir(f)
        assert storage.is_dir(storage.join(base, "v=1")) and not storage.is_file(base + "/v=1")
        assert storage.read_bytes(f) == b"4"
        assert storage.basename(f) == "part-2.parquet"
        assert storage.parent(f) == storage.join(base, "v=2") or storage.parent(f) == absolute(
            storage.join(base, "v=2"))
        storage.delete_file(f)
        storage.delete_file(f)  # a missing file is no error
        assert not storage.is_file(f)
    assert storage.join("s3://b/x/", "y") == "s3://b/x/y"
    assert storage.parent("s3://b/x/y.json") == "s3://b/x"
