"""Paths and files, local or remote: one filesystem resolver and one atomic writer.

Every file a stage hands to a reader (shards, catalog parts, manifests, model artifacts, tables,
reports, figures) is written through :func:`write_atomic`, so a killed writer never leaves a
half-written file that a reader would trust: the bytes go to a hidden temporary name in the same directory
(``.NAME.<uuid>.tmp``, which every reader of ours skips) and are moved into place once
complete. (The one exception is the training's ``metrics.jsonl``, an append-only progress log
of one JSON line per epoch.) Paths may be local (``runs/x``, ``/data/x``) or any pyarrow/fsspec URL
(``s3://bucket/x``, ``gs://...``, ``file:///...``).
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = [
    "absolute", "filesystem_and_path", "write_atomic", "write_parquet_atomic", "write_figure_atomic",
]


def filesystem_and_path(path: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path of a local path or URL (``s3://...``).

    Local paths are made absolute.
    """
    path = os.fspath(path)
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), absolute(path)


def absolute(path: str | os.PathLike) -> str:
    """``path`` as every process of a job sees the same place: a URL unchanged, a local path
    made absolute against this process's working directory. Paths handed to Ray tasks and
    actors go through it: a worker's working directory is not the driver's (a cluster started
    with ``ray start``, a driver that changed directory after Ray started)."""
    path = os.fspath(path)
    return path if "://" in path else os.path.abspath(path)


def write_atomic(path: str | os.PathLike, data: bytes | Callable[[Any], None]) -> str:
    """Write ``data`` to ``path`` atomically; create the parent directory; return ``path``.

    ``data`` is the file's bytes, or a function that writes them to the binary output stream
    it is given (a ``pyarrow.NativeFile``: ``write(bytes)``, usable as ``pq.write_table``'s
    sink). On any error the temporary file is removed and the error re-raised; an existing
    file at ``path`` is then left as it was.
    """
    fs, p = filesystem_and_path(path)
    parent, name = p.rsplit("/", 1)
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        with fs.open_output_stream(tmp) as sink:
            if callable(data):
                data(sink)
            else:
                sink.write(data)
        fs.move(tmp, p)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass
        raise
    return os.fspath(path)


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike, **write_table_kwargs) -> str:
    """Write ``table`` as one Parquet file at ``path`` atomically (zstd unless told otherwise);
    ``write_table_kwargs`` go to :func:`pyarrow.parquet.write_table`. Returns ``path``."""
    write_table_kwargs.setdefault("compression", "zstd")
    return write_atomic(path, lambda sink: pq.write_table(table, sink, **write_table_kwargs))


def write_figure_atomic(fig: Any, path: str | os.PathLike, dpi: int = 110) -> str:
    """Write a matplotlib figure as a PNG at ``path`` atomically (``dpi`` dots per inch);
    returns ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return write_atomic(path, buf.getvalue())
