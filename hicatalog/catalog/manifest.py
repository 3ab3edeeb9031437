"""Catalog layout, build fingerprints, the staging area and ``_manifest.json``.

Layout of a catalog directory ``DIR``, a local path or a URL::

    DIR/_manifest.json                           the pointer: current version, every version
    DIR/version=V/                               published version V: a HATS collection
    DIR/version=V/collection.properties          the collection: main catalog, margin, index
    DIR/version=V/README.md, _version.json       what the version is (text; its manifest entry)
    DIR/version=V/hi_catalog/                    the main HATS catalog (``open_catalog().path``)
    DIR/version=V/hi_catalog/properties, hats.properties
                                                 HATS properties (rows, columns, builder, ...)
    DIR/version=V/hi_catalog/partition_info.csv  the HEALPix partitions (Norder, Npix)
    DIR/version=V/hi_catalog/dataset/_metadata   every partition's Parquet footer
    DIR/version=V/hi_catalog/dataset/_common_metadata
                                                 the schema
    DIR/version=V/hi_catalog/dataset/Norder=k/Dir=d/Npix=p.parquet
                                                 the rows in HEALPix pixel (k, p), sorted by
                                                 ``_healpix_29``
    DIR/version=V/hi_catalog/invalid_coordinates.parquet
                                                 the rows without a valid position (NaN ra or
                                                 dec, |dec| > 90): ``_healpix_29`` null
    DIR/version=V/hi_catalog_10arcs/             the margin cache (HATS margin catalog): for
                                                 each partition, the rows of the others within
                                                 the margin (:mod:`hicatalog.catalog.collection`)
    DIR/version=V/hi_catalog_object_id/          the index on ``object_id`` (HATS index catalog)
    DIR/version=V/_claim.json                    the claim of number V by its publish
    DIR/_staging/build=B/_build.json             fingerprint + build id owning build B
                                                 (created exclusively: the build's claim)
    DIR/_staging/build=B/_done/part-SSSSS.json   input shard SSSSS is completely staged
    DIR/_staging/build=B/part-SSSSS.parquet      the rows of input shard SSSSS (internal)

The staging area (``_staging``) is the build's exactly-once, resumable output: one file per
input shard, written atomically, counted only once its ``_done`` marker exists. Users never
query it. A publish (:mod:`hicatalog.catalog.publish`) turns the staged rows of a list of
builds into a new, complete, immutable ``version=V`` directory, and only then rewrites
``_manifest.json`` (one conditional write: :mod:`hicatalog.catalog.commit`), so a reader
that resolves the current version through the manifest
(:func:`hicatalog.catalog.reader.open_catalog`) sees one complete version or the previous one,
never a mix. Older versions stay listed and readable until ``keep_versions`` removes them from
the list (``removed``); their files stay until a vacuum after the grace period.
``_manifest.json`` is read, questioned and written only through :class:`Manifest` (a
validated, immutable record that keeps keys it does not know); the next manifest of a
publish is :func:`next_manifest`.
Every version holds the whole catalog: one row per input cutout row of every build it
publishes, so an ``object_id`` that repeats in the input has its one prediction plus rows
with ``status = 'duplicate_id'``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from hicatalog import storage
from hicatalog.errors import InputError, InputNotFoundError
from hicatalog.storage import read_json, write_json_atomic, write_parquet_atomic

__all__ = [
    "MANIFEST_FILE",
    "STAGING_DIR",
    "INVALID_COORDINATES_FILE",
    "MAIN_CATALOG",
    "HEALPIX_COLUMN",
    "Manifest",
    "VersionEntry",
    "VersionOptions",
    "BuildRecord",
    "ModelRecord",
    "InputRecord",
    "TracersRecord",
    "InferenceRecord",
    "RowCounts",
    "RemovedVersion",
    "next_manifest",
    "recorded_path",
    "fingerprint",
    "build_dirs",
    "version_dirs",
    "hats_path",
    "partition_file",
    "write_staged_part",
    "staged_parts",
    "staged_counts",
]

MANIFEST_FILE = "_manifest.json"
BUILD_FILE = "_build.json"
DONE_DIR = "_done"
STAGING_DIR = "_staging"
#: The rows of a version without a valid position, next to its HATS ``dataset/``.
INVALID_COORDINATES_FILE = "invalid_coordinates.parquet"
#: The main HATS catalog's directory inside a version directory (a HATS collection).
MAIN_CATALOG = "hi_catalog"
#: The HATS spatial index column: nested HEALPix pixel of order 29 (int64; null without a
#: valid position).
HEALPIX_COLUMN = "_healpix_29"
#: Rows per Parquet row group in the staged files.
STAGING_ROW_GROUP_ROWS = 65_536
#: What ``layout`` in every manifest says.
LAYOUT = (f"version=V/ is a HATS collection (collection.properties); version=V/{MAIN_CATALOG}/ "
          "its main HATS catalog: dataset/Norder=k/Dir=d/Npix=p.parquet, _metadata, "
          f"partition_info.csv, properties; {MAIN_CATALOG}/{INVALID_COORDINATES_FILE}: rows "
          "without a valid position; beside it the margin cache and the object_id index")


def fingerprint(parts: dict[str, Any]) -> str:
    """Stable 16-hex-digit digest of a JSON-able dict (sorted keys)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- the manifest


class _Record(BaseModel):
    """A part of ``_manifest.json``: validated when read, immutable, and keeping any key it
    does not know (a manifest written by a newer hicatalog keeps its fields when an older one
    rewrites it). Only the fields that were given are written back."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (the fields that were set, unknown keys included)."""
        return self.model_dump(mode="json", exclude_unset=True)


class VersionOptions(_Record):
    """How a version's files were cut (the publish's options)."""

    partition_rows: int
    """Most rows in one HEALPix partition file."""
    row_group_rows: int
    """Rows per Parquet row group."""
    histogram_order: int
    """HEALPix order of the row-count histogram the partitions were merged from."""
    margin_arcsec: float | None = None
    """Width of the margin cache (arcsec; 0: none; ``None``: a version published before
    margins)."""


class VersionEntry(_Record):
    """One published version, as listed in ``versions``.

    ``path`` and ``builds`` are recorded relative to the catalog directory when inside it
    (the catalog can be moved), else absolute or URLs; :meth:`Manifest.resolve` makes them
    full paths. ``version=V/_version.json`` holds the same entry.
    """

    version: int
    """The version's number V."""
    path: str
    """Its directory ``version=V``, a HATS collection."""
    catalog: str | None = None
    """The main HATS catalog's directory, relative to ``path`` (``hi_catalog``; ``None``:
    ``path`` itself, a version published before versions became HATS collections)."""
    builds: tuple[str, ...]
    """The staging directories whose rows it holds, oldest first."""
    build_ids: tuple[str, ...] = ()
    """The ids of the builds whose rows it holds."""
    rows: int
    """Every row of the version (its partitions plus ``invalid_coordinates.parquet``)."""
    invalid_coordinate_rows: int = 0
    """Rows without a valid position (in ``invalid_coordinates.parquet``)."""
    partitions: int = 0
    """HEALPix partition files."""
    files: int = 0
    """Data files of its main catalog."""
    bytes: int = 0
    """Bytes of its main catalog's data files."""
    options: VersionOptions | None = None
    """How its files were cut."""
    created: str | None = None
    """When it was published (UTC, ISO 8601)."""
    publish_s: float | None = None
    """Seconds its publish took."""
    margin_rows: int | None = None
    """Rows in its margin cache."""


class RemovedVersion(_Record):
    """A version no longer listed (``keep_versions`` dropped it): its ``version``, ``path``
    (recorded as :class:`VersionEntry` records it) and when it was ``removed`` (UTC, ISO
    8601). Its files stay until a vacuum finds it removed longer than the grace period
    (:func:`hicatalog.catalog.commit.vacuum`): a reader that resolved it before can finish."""

    version: int
    """The version's number V."""
    path: str
    """Its directory ``version=V`` (as :attr:`VersionEntry.path` records it)."""
    removed: str
    """When the manifest stopped listing it (UTC, ISO 8601); the grace period counts from
    here."""


class ModelRecord(_Record):
    """A model the build used: its card's identity and where it was loaded from."""

    model_id: str
    """The card's ``model_id``."""
    weights_sha256: str
    """The card's ``weights_sha256``: the weights used."""
    task: str | None = None
    """The card's ``task``."""
    arch: str | None = None
    """The card's ``arch``."""
    image_size: int | None = None
    """The card's ``image_size`` (px)."""
    cutout_size: int | None = None
    """The card's ``cutout_size`` (px)."""
    survey: str | None = None
    """The card's ``survey``."""
    path: str | None = None
    """The model directory it was loaded from."""


class InputRecord(_Record):
    """The cutout shards a build read: path, shard and row counts, fingerprint, survey."""

    cutouts: str
    """The cutout shards (directory, file or URL)."""
    shards: int
    """Shard files read."""
    rows: int
    """Rows in them."""
    fingerprint: str
    """Digest of the shards (names, sizes, row counts)."""
    survey: str | None = None
    """The imaging of the cutouts (``sdss`` or ``legacy``)."""


class TracersRecord(_Record):
    """The tracers the environment was computed against (the cutouts when none were given)."""

    path: str
    """The tracers table (or the cutouts)."""
    fingerprint: str
    """Its digest."""


class InferenceRecord(_Record):
    """How the build ran the models: ``precision`` (``bf16``/``fp32``), ``decode``
    (``cpu``/``gpu``)."""

    precision: str
    """``bf16`` or ``fp32``."""
    decode: str
    """Where the JPEGs were decoded: ``cpu`` or ``gpu``."""


class RowCounts(_Record):
    """The rows a build staged: ``total``, and per ``status`` / ``env_status`` value."""

    total: int
    """Every row staged."""
    status: dict[str, int] = {}
    """Rows per ``status`` code."""
    env_status: dict[str, int] = {}
    """Rows per ``env_status`` code."""


class BuildRecord(_Record):
    """The build that published the current version: the top-level fields of the manifest
    besides the version list. Only ``build_id``, ``fingerprint`` and ``rows`` are always
    there (:func:`hicatalog.catalog.publish.publish_tables` records nothing else)."""

    build_id: str
    """``build-`` and the start of the fingerprint."""
    fingerprint: str
    """Digest of what makes the build's rows: the input, both models' weights and ids, the
    tracers, TTA, the decode and precision, the catalog it extends, the code version."""
    rows: RowCounts
    """The rows it staged."""
    staging: str | None = None
    """Its staging directory ``_staging/build=B``."""
    since_manifest: str | None = None
    """The manifest of the catalog it extended (an incremental build)."""
    models: dict[str, ModelRecord] | None = None
    """The ``regression`` and ``pr`` models it used."""
    model_id: str | None = None
    """``REGRESSION_ID+PR_ID``."""
    config: dict[str, Any] | None = None
    """Every parameter of the build (``make_catalog``'s, i.e. ``build-catalog``'s options)."""
    inference: InferenceRecord | None = None
    """How it ran the models."""
    input: InputRecord | None = None
    """The cutouts it read."""
    tracers: TracersRecord | None = None
    """The tracers the environment was computed against."""
    code_version: str | None = None
    """The hicatalog version that built it."""
    created: str | None = None
    """When its predictions were done and its publish began (UTC, ISO 8601)."""
    wall_time_s: float | None = None
    """Seconds from the build's start to its publish (the publish itself: the version's
    ``publish_s``)."""


class Manifest(BuildRecord):
    """``DIR/_manifest.json``: which version of the catalog is current, every listed version,
    and the build that published the current one (the :class:`BuildRecord` fields).

    The one place that reads and writes the manifest and answers "which version is current"
    (:meth:`current`). A manifest is immutable: :func:`next_manifest` makes the next one,
    and :meth:`write` switches the catalog to it in one atomic write. ``path`` is where it
    was read from (``None`` for one not read from a file).
    """

    catalog: str = "hi_catalog"
    """The name of the catalog's table contract (``hi_catalog``, ``schemas/hi_catalog.json``)."""
    version: int
    """The current version's number."""
    versions: tuple[VersionEntry, ...]
    """Every listed version, oldest first (``keep_versions`` removes the oldest)."""
    removed: tuple[RemovedVersion, ...] = ()
    """The versions ``keep_versions`` removed whose files a vacuum has not deleted yet."""
    layout: str = LAYOUT
    """The directory layout, in words."""
    _path: str | None = PrivateAttr(None)

    # -- reading and writing

    @classmethod
    def read(cls, path: str | os.PathLike) -> Manifest:
        """The manifest at ``path``: a ``_manifest.json`` file or the catalog directory, a
        local path or a URL.

        Raises
        ------
        InputNotFoundError: there is no manifest there.
        InputError: it is not JSON, not a catalog manifest, or of the layout before HATS
            versions (its versions list no ``builds``); each naming the path.
        """
        p = storage.absolute(path)
        if storage.is_dir(p):
            p = storage.join(p, MANIFEST_FILE)
        try:
            # one GetObject on S3: a ranged read could mix a manifest and its replacement
            doc = json.loads(storage.read_versioned(p)[0])
        except FileNotFoundError:
            raise InputNotFoundError(f"{p}: catalog manifest not found (expected "
                                     "DIR/_manifest.json written by a catalog build)") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{p}: catalog manifest is not valid JSON: {exc}") from None
        return cls.from_dict(doc, p)

    @classmethod
    def from_dict(cls, doc: Any, path: str | None = None) -> Manifest:
        """The manifest of the JSON document ``doc``, read from ``path`` (``None``: held in
        memory only). Raises InputError as :meth:`read`."""
        where = path or "manifest"
        if not isinstance(doc, dict) or not isinstance(doc.get("versions"), list):
            raise InputError(f"{where}: not a catalog manifest (no 'versions' list)")
        if any(not isinstance(v, dict) or "builds" not in v for v in doc["versions"]):
            raise InputError(f"{where}: a catalog in the declination-zone layout of hicatalog "
                             "before HATS versions; build it again into a new out directory",
                             params=("out",))
        try:
            manifest = cls.model_validate(doc)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors())
            raise InputError(f"{where}: not a valid catalog manifest: {problems}") from None
        manifest._path = path
        return manifest

    @classmethod
    def find(cls, catalog_dir: str | os.PathLike) -> Manifest | None:
        """The manifest of the catalog in ``catalog_dir``, or ``None`` when it has none."""
        p = storage.join(storage.absolute(catalog_dir), MANIFEST_FILE)
        return cls.read(p) if storage.is_file(p) else None

    @classmethod
    def read_versioned(cls, catalog_dir: str | os.PathLike) -> tuple[Manifest | None, str | None]:
        """``(manifest, its version token)`` of the catalog in ``catalog_dir`` for
        :meth:`write` to replace only if unchanged; ``(None, None)`` when it has none."""
        p = storage.join(storage.absolute(catalog_dir), MANIFEST_FILE)
        try:
            data, token = storage.read_versioned(p)
        except FileNotFoundError:
            return None, None
        try:
            doc = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InputError(f"{p}: catalog manifest is not valid JSON: {exc}") from None
        return cls.from_dict(doc, p), token

    def write(self, catalog_dir: str | os.PathLike, *, replacing: str | None) -> Manifest:
        """Write this manifest as ``catalog_dir/_manifest.json`` in one atomic write (the
        switch to its current version), only if the manifest there is still the one of
        version token ``replacing`` (from :meth:`read_versioned`; ``None``: only if there
        is none yet); returns it, with ``path`` set.

        Raises
        ------
        WriteConflict: another writer changed (or created) the manifest first.
        """
        p = storage.join(storage.absolute(catalog_dir), MANIFEST_FILE)
        data = storage.json_bytes(self.to_dict(), sort_keys=True)
        if replacing is None:
            storage.create_exclusive(p, data)
        else:
            storage.replace_if_unchanged(p, data, replacing)
        out = self.model_copy()
        out._path = p
        return out

    @property
    def path(self) -> str | None:
        """The ``_manifest.json`` this manifest was read from or written to."""
        return self._path

    @property
    def catalog_dir(self) -> str:
        """The directory of the catalog (where :attr:`path` is)."""
        if self._path is None:
            raise ValueError("a manifest held in memory only has no catalog directory")
        return storage.parent(self._path)

    # -- questions

    def current(self) -> VersionEntry:
        """The entry of the current version."""
        return self.entry(self.version)

    def entry(self, version: int) -> VersionEntry:
        """The entry of listed ``version``.

        Raises
        ------
        InputError: ``version`` is not listed (removed by ``keep_versions``, or never
            published), naming the versions there are.
        """
        for v in self.versions:
            if v.version == version:
                return v
        listed = ", ".join(str(v.version) for v in self.versions) or "none"
        raise InputError(f"{self._path or 'manifest'}: version {version} is not listed "
                         f"(versions: {listed})")

    def resolve(self, recorded: str) -> str:
        """A path the manifest records (a version's ``path``, one of its ``builds``) as a
        full path: relative to the catalog directory unless absolute or a URL."""
        if storage.is_url(recorded) or os.path.isabs(recorded):
            return recorded
        return storage.join(self.catalog_dir, recorded)

    def builds(self, version: int | None = None) -> list[str]:
        """The staging directories (full paths) whose rows the current (or the given)
        version holds, oldest first."""
        entry = self.current() if version is None else self.entry(version)
        return [self.resolve(b) for b in entry.builds]

    @property
    def build(self) -> BuildRecord:
        """The build that published the current version."""
        fields = set(BuildRecord.model_fields)
        doc = self.to_dict()
        return BuildRecord.model_validate({k: v for k, v in doc.items() if k in fields})

    # -- the next manifest

    def versions_recorded_in(self, catalog_dir: str) -> list[VersionEntry]:
        """The versions with their paths recorded as a manifest in ``catalog_dir`` records
        them: relative to it when inside it, else full paths (an incremental build into
        another directory continues this catalog's list)."""
        return [v.model_copy(update={"path": recorded_path(self.resolve(v.path), catalog_dir),
                                     "builds": tuple(recorded_path(self.resolve(b), catalog_dir)
                                                     for b in v.builds)})
                for v in self.versions]


def next_manifest(versions: Sequence[VersionEntry], entry: VersionEntry, build: BuildRecord,
                  keep_versions: int | None = None,
                  removed: Sequence[RemovedVersion] = ()) -> tuple[Manifest, list[VersionEntry]]:
    """``(next manifest, versions it no longer lists)``: the catalog's ``versions`` (recorded
    as the next manifest's directory records them: :meth:`Manifest.versions_recorded_in`)
    plus ``entry``, made current, with ``build`` as the build that published it; only the
    ``keep_versions`` newest versions stay listed (``None``: all), the others join
    ``removed`` (the versions removed before, kept) with the time of their removal. Writes
    nothing: the switch is :meth:`Manifest.write`."""
    listed = sorted([*versions, entry], key=lambda v: v.version)
    dropped: list[VersionEntry] = []
    if keep_versions is not None and len(listed) > keep_versions:
        dropped, listed = listed[:-keep_versions], listed[-keep_versions:]
    now = storage.utc_timestamp()
    gone = [*removed, *(RemovedVersion(version=v.version, path=v.path, removed=now)
                        for v in dropped)]
    manifest = Manifest.model_validate({
        **build.to_dict(), "catalog": "hi_catalog", "version": entry.version,
        "versions": [v.to_dict() for v in listed], "layout": LAYOUT,
        **({"removed": [r.to_dict() for r in gone]} if gone else {})})
    return manifest, dropped


def recorded_path(path: str, catalog_dir: str) -> str:
    """``path`` as a manifest in ``catalog_dir`` records it: relative to the directory when
    inside it (the catalog can be moved), else unchanged."""
    here = catalog_dir.rstrip("/") + "/"
    return path[len(here):] if path.startswith(here) else path


# ----------------------------------------------------------------------------- directories


def _numbered_dirs(parent: str, key: str) -> dict[int, str]:
    out = {}
    for name in storage.list_dirs(parent):
        if name.startswith(f"{key}="):
            try:
                out[int(name.split("=", 1)[1])] = storage.join(parent, name)
            except ValueError:
                continue
    return dict(sorted(out.items()))


def build_dirs(catalog_dir: str | os.PathLike) -> dict[int, str]:
    """``{B: DIR/_staging/build=B}`` for the staging directories that exist."""
    return _numbered_dirs(storage.join(catalog_dir, STAGING_DIR), "build")


def version_dirs(catalog_dir: str | os.PathLike) -> dict[int, str]:
    """``{V: DIR/version=V}`` for the published version directories that exist (listed in
    the manifest or not: a publish that died leaves an unlisted one)."""
    return _numbered_dirs(os.fspath(catalog_dir), "version")


def hats_path(path: str) -> Any:
    """``path`` as the ``hats`` functions should get it: an S3 URL as a ``UPath`` with
    ``anon=False`` (hats turns a plain ``s3://`` string into an anonymous client, which a
    private bucket refuses), anything else unchanged."""
    if not str(path).startswith("s3://"):
        return path
    from upath import UPath

    return UPath(path, anon=False)


def partition_file(catalog_dir: str, order: int, pixel: int) -> str:
    """``catalog_dir/dataset/Norder=k/Dir=d/Npix=p.parquet``: the file of HEALPix pixel
    ``pixel`` of order ``order`` of the HATS catalog in ``catalog_dir`` (``d``: hats'
    directory number of the pixel)."""
    from hats.io import paths
    from hats.pixel_math import HealpixPixel

    return storage.join(catalog_dir, paths.DATASET_DIR, f"{paths.PARTITION_ORDER}={order}",
                        f"{paths.PARTITION_DIR}={HealpixPixel(order, pixel).dir}",
                        f"{paths.PARTITION_PIXEL}={pixel}.parquet")


def write_staged_part(build_dir: str, shard_index: int, table: pa.Table, *,
                      build_fingerprint: str, shard: str, counts: dict[str, Any]) -> None:
    """Stage the ``hi_catalog`` rows of input shard ``shard_index``: the Parquet file, then
    its ``_done`` marker (both atomic; the shard counts as staged only once the marker exists).

    ``counts`` (e.g. rows per ``status``) is recorded in the marker; an empty ``table`` writes
    only the marker.
    """
    name = f"part-{shard_index:05d}"
    files = []
    if table.num_rows:
        write_parquet_atomic(table, storage.join(build_dir, f"{name}.parquet"),
                             row_group_size=STAGING_ROW_GROUP_ROWS)
        files.append(f"{name}.parquet")
    write_json_atomic(storage.join(build_dir, DONE_DIR, f"{name}.json"), {
        "fingerprint": build_fingerprint, "shard": shard, "rows": table.num_rows,
        "files": files, **counts,
    })


def staged_counts(table: pa.Table) -> dict[str, dict[str, int]]:
    """``{"status": {value: rows}, "env_status": {value: rows}}`` of staged ``hi_catalog``
    rows: what a ``_done`` marker records beside its row count."""
    return {c: {d["values"]: d["counts"] for d in pc.value_counts(table.column(c)).to_pylist()}
            for c in ("status", "env_status")}


def staged_parts(build_dir: str) -> list[tuple[str, int]]:
    """``[(file, rows)]``: the staged Parquet files of a build, from its ``_done`` markers of
    the build's own fingerprint (``_build.json``), in shard order. Only these rows are
    published: a file without its marker is an unfinished shard.

    Raises
    ------
    InputError: ``build_dir`` has no ``_build.json``.
    """
    try:
        owner = read_json(storage.join(build_dir, BUILD_FILE))["fingerprint"]
    except FileNotFoundError:
        raise InputError(f"{build_dir}: not a staged build (no {BUILD_FILE})") from None
    out = []
    for f in storage.list_files(storage.join(build_dir, DONE_DIR), suffix=".json"):
        marker = read_json(f)
        if marker.get("fingerprint") != owner:
            continue
        out.extend((storage.join(build_dir, name), marker["rows"]) for name in marker["files"])
    return out
