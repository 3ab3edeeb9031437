"""hicatalog.storage: the one atomic writer every stage uses."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

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
