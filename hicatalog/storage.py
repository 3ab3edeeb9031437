"""Paths and files, local or remote: one filesystem resolver and one atomic writer.

Paths may be local (``runs/x``, ``/data/x``) or any pyarrow/fsspec URL (``s3://bucket/x``,
``gs://...``, ``file:///...``); every stage reads, lists and writes through the functions
here, so the same code runs on a disk and on a bucket. Object stores are reached with the
client's usual configuration: for S3 the ``AWS_*`` variables (credentials, ``AWS_REGION`` /
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` for an S3-compatible server), which pyarrow,
s3fs, polars and Ray all read.

Every file a stage hands to a reader (shards, catalog parts, manifests, model artifacts, tables,
reports, figures) is written through :func:`write_atomic`, so a killed writer never leaves a
half-written file that a reader would trust. On a local file system the bytes go to a hidden
temporary name in the same directory (``.NAME.<uuid>.tmp``, which every reader of ours skips)
and are moved into place once complete. On an object store, where a "rename" is a copy and a
delete, the complete bytes are built in memory first and uploaded as one object (on S3 a
single PutObject up to 10 MB, a multipart upload above): an object appears whole or not at
all, so no temporary object is ever written.

One way per operation: Parquet is read with :func:`read_parquet` (whole tables),
:func:`read_parquet_schema` (the schema) or :func:`open_parquet` (footer, row groups, batches);
JSON with :func:`read_json` and written with :func:`write_json_atomic`; the UTC time records
carry is :func:`utc_timestamp`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = [
    "absolute", "filesystem_and_path", "is_url", "join", "basename", "parent", "relative",
    "is_file",
    "is_dir", "read_bytes", "read_parquet", "read_parquet_schema", "open_parquet", "read_json",
    "list_files", "list_dirs", "delete_file", "delete_dir", "write_atomic",
    "write_parquet_atomic", "write_figure_atomic", "write_json_atomic", "json_safe",
    "utc_timestamp", "create_exclusive", "read_versioned", "replace_if_unchanged", "json_bytes",
    "newest_mtime",
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


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
    return "://" in os.fspath(path)


def _is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base/part/...`` for a local path or a URL (URLs always join with ``/``)."""
    base = os.fspath(base)
    if not is_url(base):
        return os.path.join(base, *parts)
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def basename(path: str | os.PathLike) -> str:
    """The last component of a local path or URL (a trailing ``/`` ignored)."""
    return os.fspath(path).rstrip("/").rsplit("/", 1)[-1]


def parent(path: str | os.PathLike) -> str:
    """The directory holding ``path``: a URL's prefix, a local path's absolute parent."""
    path = os.fspath(path)
    if is_url(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(path))


def relative(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to the directory ``root``, ``/``-separated (``"."`` for ``root``
    itself): both URLs, or both local paths (relative or absolute)."""
    path, root = os.fspath(path), os.fspath(root)
    if is_url(path) or is_url(root):
        base = root.rstrip("/") + "/"
        if path.rstrip("/") == root.rstrip("/"):
            return "."
        if not path.startswith(base):
            raise ValueError(f"{path} is not under {root}")
        return path[len(base):]
    return os.path.relpath(absolute(path), absolute(root)).replace(os.sep, "/")


def _file_type(path: str | os.PathLike) -> pafs.FileType:
    fs, p = filesystem_and_path(path)
    return fs.get_file_info(p).type


def is_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an existing file (an object, on an object store)."""
    return _file_type(path) == pafs.FileType.File


def is_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory (on an object store: a prefix that holds objects)."""
    return _file_type(path) == pafs.FileType.Directory


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole content of the file at ``path``; FileNotFoundError if there is none."""
    fs, p = filesystem_and_path(path)
    with fs.open_input_stream(p) as fh:
        return fh.read()


def read_parquet(path: str | os.PathLike | Sequence[str | os.PathLike],
                 columns: list[str] | None = None) -> pa.Table:
    """The Parquet file (or directory of files, or list of files on one file system) at
    ``path`` as one table; only ``columns`` when given."""
    if isinstance(path, (str, os.PathLike)):
        fs, p = filesystem_and_path(path)
        return pq.read_table(p, columns=columns, filesystem=fs)
    located = [filesystem_and_path(f) for f in path]
    return pq.read_table([p for _, p in located], columns=columns, filesystem=located[0][0])


def read_parquet_schema(path: str | os.PathLike) -> pa.Schema:
    """The schema of the Parquet file (or directory of files) at ``path``, as
    :func:`read_parquet` would read it (footers only are read)."""
    fs, p = filesystem_and_path(path)
    return pq.ParquetDataset(p, filesystem=fs).schema


@contextlib.contextmanager
def open_parquet(path: str | os.PathLike) -> Iterator[pq.ParquetFile]:
    """The Parquet file at ``path`` opened for its footer (``.metadata``), row groups
    (``.read_row_group(i)``) or batches (``.iter_batches(...)``); closed when the ``with``
    block ends. Whole tables: :func:`read_parquet`."""
    fs, p = filesystem_and_path(path)
    with fs.open_input_file(p) as fh:
        yield pq.ParquetFile(fh)


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document at ``path`` (a local path or a URL); FileNotFoundError if there is
    none, ``json.JSONDecodeError`` if it is not JSON."""
    return json.loads(read_bytes(path))


def list_files(path: str | os.PathLike, recursive: bool = False,
               suffix: str = "") -> list[str]:
    """The files under directory ``path`` whose name ends in ``suffix``, sorted, as paths of
    the same form as ``path`` (``join(path, relative)``); [] when ``path`` does not exist.
    Hidden names (``.``: the temporaries of :func:`write_atomic`) are left out, and with
    ``suffix=".parquet"`` names starting with ``_`` too, as Parquet readers do."""
    fs, p = filesystem_and_path(path)
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=recursive, allow_not_found=True))
    base = p.rstrip("/") + "/"
    out = []
    for info in infos:
        if info.type != pafs.FileType.File or not info.base_name.endswith(suffix):
            continue
        if info.base_name.startswith(".") or (
                suffix == ".parquet" and info.base_name.startswith("_")):
            continue
        out.append(join(path, info.path[len(base):]))
    return sorted(out)


def newest_mtime(path: str | os.PathLike) -> float | None:
    """The latest modification time (POSIX seconds; on an object store its LastModified) of
    the files under directory ``path``, or ``None`` when it holds none."""
    fs, p = filesystem_and_path(path)
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=True, allow_not_found=True))
    times = [i.mtime.timestamp() for i in infos
             if i.type == pafs.FileType.File and i.mtime is not None]
    return max(times, default=None)


def list_dirs(path: str | os.PathLike) -> list[str]:
    """The names of the directories (prefixes) directly under ``path``, sorted; [] when
    ``path`` does not exist."""
    fs, p = filesystem_and_path(path)
    infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def delete_file(path: str | os.PathLike) -> None:
    """Delete the file at ``path`` if there is one."""
    fs, p = filesystem_and_path(path)
    try:
        fs.delete_file(p)
    except FileNotFoundError:
        pass


def delete_dir(path: str | os.PathLike) -> None:
    """Delete the directory ``path`` and everything under it (on an object store: every
    object under the prefix), if it exists."""
    fs, p = filesystem_and_path(path)
    try:
        fs.delete_dir(p)
    except FileNotFoundError:
        pass


def _single_request_url(url: str) -> str:
    """``url`` with pyarrow's S3 option ``allow_delayed_open``: without it pyarrow starts a
    multipart upload for every object, with it an object up to its part size (10 MB) is one
    PutObject (larger ones stay multipart uploads, which also appear only once complete)."""
    if not url.startswith("s3://") or "allow_delayed_open=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}allow_delayed_open=true"


def write_atomic(path: str | os.PathLike, data: bytes | Callable[[Any], None]) -> str:
    """Write ``data`` to ``path`` atomically; create the parent directory; return ``path``.

    ``data`` is the file's bytes, or a function that writes them to the binary output stream
    it is given (a ``pyarrow.NativeFile``: ``write(bytes)``, usable as ``pq.write_table``'s
    sink). On a local file system the bytes go to a temporary file that is renamed into place;
    on an object store they are collected in memory and uploaded as one complete object (no
    temporary object, no copy-and-delete "rename"; on S3 one PutObject up to 10 MB, a
    multipart upload above). On any error the temporary file is removed
    (nothing is uploaded) and the error re-raised; an existing file at ``path`` is then left as
    it was.
    """
    fs, p = filesystem_and_path(path)
    if not _is_local(fs):
        if callable(data):
            buf = pa.BufferOutputStream()
            data(buf)
            data = buf.getvalue()
        fs, p = filesystem_and_path(_single_request_url(os.fspath(path)))
        with fs.open_output_stream(p) as sink:
            sink.write(data)
        return os.fspath(path)
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


# ----------------------------------------------------------------------------- conditional writes
# The two primitives a commit protocol needs (put-if-absent and compare-and-swap), on a local
# disk and on S3. A version token is the object's ETag on S3 and the SHA-256 of its bytes on
# a disk; only these functions make or compare tokens.

#: Tries of a conditional write that S3 answered 409 (a conditional write to the same key in
#: flight), with a doubling pause from CONFLICT_PAUSE_S.
CONFLICT_TRIES = 5
CONFLICT_PAUSE_S = 0.05
#: A lock file on a disk older than this was left by a writer that died: it is broken.
LOCK_STALE_S = 60.0


def _token(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _s3(path: str | os.PathLike) -> tuple[Any, str]:
    """The s3fs file system (its endpoint and credentials from the environment, as every
    other client here) and the ``bucket/key`` of the URL ``path``."""
    import fsspec

    return fsspec.filesystem("s3"), os.fspath(path).split("://", 1)[1]


def _s3_status(exc: BaseException) -> int | None:
    """The HTTP status of the S3 answer behind ``exc`` (s3fs keeps botocore's error as the
    cause), or None."""
    response = getattr(exc.__cause__, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _s3_put(path: str | os.PathLike, data: bytes, **condition: str) -> str:
    """PutObject ``data`` at ``path`` with ``condition`` (``IfNoneMatch="*"`` or ``IfMatch=
    ETAG``); the new ETag. Retries a 409; a 412 is a :class:`WriteConflict`."""
    from hicatalog.errors import WriteConflict

    fs, key = _s3(path)
    for attempt in range(CONFLICT_TRIES):
        try:
            if "IfNoneMatch" in condition:
                out = fs.pipe_file(key, data, mode="create")
            else:
                out = fs.pipe_file(key, data, **condition)
            return str(out["ETag"]) if out and "ETag" in out else str(fs.info(key, refresh=True)["ETag"])
        except FileExistsError:
            raise WriteConflict(f"{path} exists: another writer created it first") from None
        except FileNotFoundError:  # If-Match on an object that is gone
            raise WriteConflict(f"{path} changed since it was read: it is gone") from None
        except OSError as exc:
            status = _s3_status(exc)
            if status == 412:
                raise WriteConflict(f"{path} changed since it was read: another writer replaced "
                                    "it first") from None
            if status == 409 and attempt + 1 < CONFLICT_TRIES:
                time.sleep(CONFLICT_PAUSE_S * 2 ** attempt)
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def create_exclusive(path: str | os.PathLike, data: bytes) -> str:
    """Create ``path`` holding ``data`` only if nothing is there (put-if-absent); return its
    version token. A disk: the bytes go to a temporary file that is hard-linked into place
    (``link`` fails if the name exists); S3: PutObject with ``If-None-Match: *``.

    Raises
    ------
    WriteConflict: ``path`` exists (another writer created it first).
    """
    from hicatalog.errors import WriteConflict

    fs, p = filesystem_and_path(path)
    if not _is_local(fs):
        return _s3_put(path, data, IfNoneMatch="*")
    parent_dir, name = p.rsplit("/", 1)
    fs.create_dir(parent_dir, recursive=True)
    tmp = f"{parent_dir}/.{name}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    try:
        os.link(tmp, p)
    except FileExistsError:
        raise WriteConflict(f"{path} exists: another writer created it first") from None
    finally:
        os.unlink(tmp)
    return _token(data)


def read_versioned(path: str | os.PathLike) -> tuple[bytes, str]:
    """The bytes of ``path`` and its version token, for :func:`replace_if_unchanged`; on S3
    one GetObject (the ETag comes with the bytes it belongs to).

    Raises
    ------
    FileNotFoundError: nothing is at ``path``.
    """
    fs, _ = filesystem_and_path(path)
    if _is_local(fs):
        data = read_bytes(path)
        return data, _token(data)
    from fsspec.asyn import sync

    s3, key = _s3(path)
    bucket, name = key.split("/", 1)

    async def get() -> tuple[bytes, str]:
        response = await s3._call_s3("get_object", Bucket=bucket, Key=name)
        async with response["Body"] as body:
            return await body.read(), str(response["ETag"])

    return sync(s3.loop, get)


@contextlib.contextmanager
def _disk_lock(p: str) -> Iterator[None]:
    """Hold ``p + ".lock"`` (made with O_EXCL; one left by a writer dead for
    :data:`LOCK_STALE_S` is broken) while the block runs."""
    lock = p + ".lock"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                if time.time() - os.stat(lock).st_mtime > LOCK_STALE_S:
                    os.unlink(lock)
                    continue
            except FileNotFoundError:
                continue
            time.sleep(0.005)
    try:
        os.write(fd, f"{os.getpid()}".encode())
        os.close(fd)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)


def replace_if_unchanged(path: str | os.PathLike, data: bytes, token: str) -> str:
    """Replace ``path`` with ``data`` only if it is still the version ``token`` (from
    :func:`read_versioned` or a write of these functions): compare-and-swap. Returns the new
    token. A disk: read, compare and rename under a lock file (``PATH.lock``); S3: PutObject
    with ``If-Match: token``.

    Raises
    ------
    WriteConflict: ``path`` changed or vanished since ``token`` was read.
    """
    from hicatalog.errors import WriteConflict

    fs, p = filesystem_and_path(path)
    if not _is_local(fs):
        return _s3_put(path, data, IfMatch=token)
    with _disk_lock(p):
        try:
            current = _token(read_bytes(path))
        except FileNotFoundError:
            current = None
        if current != token:
            raise WriteConflict(f"{path} changed since it was read: another writer replaced it "
                                "first")
        write_atomic(path, data)
    return _token(data)


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike, **write_table_kwargs) -> str:
    """Write ``table`` as one Parquet file at ``path`` atomically (zstd unless told otherwise);
    ``write_table_kwargs`` go to :func:`pyarrow.parquet.write_table`. Returns ``path``."""
    write_table_kwargs.setdefault("compression", "zstd")
    return write_atomic(path, lambda sink: pq.write_table(table, sink, **write_table_kwargs))


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats replaced by ``None``, numpy scalars and arrays made plain
    Python values and dict keys made strings (what strict JSON can hold)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (ValueError, TypeError):
            return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_bytes(obj: Any, *, sort_keys: bool = False) -> bytes:
    """``obj`` as indented strict JSON, UTF-8: NaN and inf become ``null`` and numpy values
    plain ones (:func:`json_safe`); any other value JSON cannot hold is written as its
    ``str``. ``sort_keys``: keys in sorted order (records meant to be diffed, such as
    manifests)."""
    text = json.dumps(json_safe(obj), indent=2, sort_keys=sort_keys, allow_nan=False,
                      default=str)
    return (text + "\n").encode()


def write_json_atomic(path: str | os.PathLike, obj: Any, *, sort_keys: bool = False) -> str:
    """Write ``obj`` as :func:`json_bytes` at ``path`` atomically (:func:`write_atomic`);
    returns ``path``."""
    return write_atomic(path, json_bytes(obj, sort_keys=sort_keys))


def utc_timestamp(compact: bool = False) -> str:
    """The current UTC time: ISO 8601 to the second (``2025-01-01T12:00:00+00:00``), or with
    ``compact`` to the microsecond without separators (``20250101T120000123456``: sorts in
    time order and fits in a file name)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S%f") if compact else now.isoformat(timespec="seconds")


def write_figure_atomic(fig: Any, path: str | os.PathLike, dpi: int = 110) -> str:
    """Write a matplotlib figure as a PNG at ``path`` atomically (``dpi`` dots per inch);
    returns ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return write_atomic(path, buf.getvalue())
