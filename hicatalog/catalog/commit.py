"""The commit protocol of a catalog directory: claims, compare-and-swap, rebase, vacuum.

Several writers may work on one catalog directory at once: a scheduled ``build-catalog
--since-manifest`` that starts while the previous one still runs, a vacuum, readers. Every
step that decides a name or the current version is one conditional write
(:func:`hicatalog.storage.create_exclusive`, put-if-absent, and
:func:`hicatalog.storage.replace_if_unchanged`, compare-and-swap), as Delta Lake and Iceberg
commit:

1. **Build claim** (:func:`claim_build`): a build takes its number by creating
   ``_staging/build=B/_build.json`` only if it is absent; the loser takes the next number.
   A build that finds its own fingerprint resumes it (a rerun, or a twin run of the same
   build, which writes the same staged files).
2. **Version claim** (:func:`claim_version`): a publish takes its version number by
   creating ``version=V/_claim.json`` before it writes any data, above every number listed,
   removed or claimed (numbers may have gaps: a publish that lost or died leaves one).
3. **Commit** (:func:`commit_version`): the manifest is read with its version token; if it
   still names the base (the version the build started from: the one ``since_manifest``
   named, pinned when the build planned), the new manifest replaces it only if it is still
   that one; a lost swap re-reads and tries again. If another build committed meanwhile,
   the publish must :class:`Rebase`.
4. **Rebase** (:func:`rebase_builds`): the builds committed meanwhile are carried, and the
   rows of the rebasing build whose ``object_id`` they already hold are taken out of its
   staging (each staged part replaced by its remaining rows, then its ``_done`` marker
   switched to the new file): the new version holds every committed row once. The publish
   then claims a new number and writes its version again (:mod:`hicatalog.catalog.publish`
   bounds the rebases by :data:`MAX_REBASES`).
5. **Vacuum** (:func:`vacuum`): versions that ``keep_versions`` dropped are listed under
   ``removed`` with the time of their removal; their files are deleted only once they have
   been removed longer than the grace period (default :data:`GRACE_HOURS`: how long a
   reader may hold a version it resolved). An unlisted version directory (a publish that
   lost, or died) is deleted only once its claim expired (:data:`CLAIM_HOURS` after it was
   made), and a publish gives up rather than commit in the second half of its claim's life,
   so a vacuum never deletes a version that is being committed. Clocks of the writers are
   assumed to agree to within hours.

Staging directories of builds are never vacuumed: an unfinished build resumes from them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from hicatalog import storage
from hicatalog.catalog.manifest import (
    BUILD_FILE,
    DONE_DIR,
    MANIFEST_FILE,
    STAGING_DIR,
    STAGING_ROW_GROUP_ROWS,
    BuildRecord,
    Manifest,
    VersionEntry,
    build_dirs,
    next_manifest,
    staged_counts,
    staged_parts,
    version_dirs,
)
from hicatalog.errors import ConfigError, OutputError, WriteConflict

__all__ = ["GRACE_HOURS", "CLAIM_HOURS", "MAX_REBASES", "CLAIM_FILE", "Staging", "Rebase",
           "claim_build", "claim_version", "commit_version", "rebase_builds", "vacuum",
           "VacuumReport", "show_vacuum", "reached", "on_step"]

log = logging.getLogger("hicatalog.catalog.commit")

#: Default grace period: hours a removed version's files are kept before a vacuum deletes
#: them (a reader that resolved the version may still read it).
GRACE_HOURS = 24.0
#: Hours a version claim lives: a vacuum deletes an unlisted version directory only after
#: its claim expired, and a publish commits only in the first half of its claim's life.
CLAIM_HOURS = 24.0
#: Most times one publish rebases onto builds committed meanwhile before it gives up.
MAX_REBASES = 5
#: Most compare-and-swap attempts of one commit (each lost only to another manifest write).
CAS_TRIES = 100
#: The claim of a version number, inside its directory.
CLAIM_FILE = "_claim.json"

#: Called with the name of each step of the protocol as a writer reaches it (``None``: no
#: call). Tests that race two writers set it to pause one of them at a chosen step.
on_step: Callable[[str], None] | None = None


def reached(name: str) -> None:
    """Tell :data:`on_step` (if set) that this writer reached step ``name``."""
    if on_step is not None:
        on_step(name)


def _age_s(timestamp: str, now: float) -> float:
    """Seconds from the ISO 8601 ``timestamp`` to ``now`` (POSIX seconds)."""
    return now - datetime.fromisoformat(timestamp).timestamp()


# ----------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Staging:
    """The staging directory ``dir`` of build number ``build`` in the catalog; ``resumed``:
    it holds an earlier run of the same build."""

    build: int
    dir: str
    resumed: bool


def _other_build(out: str, owners: dict[int, Any]) -> OutputError:
    return OutputError(
        f"{out} already holds a catalog from another build ({owners}); use a new out "
        "directory, rerun with the same arguments to resume it, or pass since_manifest="
        f"{storage.join(out, MANIFEST_FILE)} to add only the galaxies it lacks",
        params=("out", "since_manifest"))


def _build_owner(build_dir: str) -> dict[str, Any]:
    try:
        return storage.read_json(storage.join(build_dir, BUILD_FILE))
    except FileNotFoundError:
        return {}


def claim_build(out: str, record: dict[str, Any], *, continues: bool) -> Staging:
    """The staging directory of the build whose ``_build.json`` is ``record`` (a dict with
    its ``fingerprint``) in catalog directory ``out``: the one holding the same fingerprint
    (resumed), or the next number, claimed by creating its ``_build.json`` exclusively.
    ``continues``: the build extends the catalog (``since_manifest``), so other builds may
    be there.

    Raises
    ------
    OutputError: ``out`` holds another build's catalog and this build does not continue it.
    """
    existing = build_dirs(out)
    owners = {b: _build_owner(d) for b, d in existing.items()}
    for b, d in existing.items():
        if owners[b].get("fingerprint") == record["fingerprint"]:
            return Staging(build=b, dir=d, resumed=True)
    if existing and not continues:
        raise _other_build(out, {b: o.get("build_id") for b, o in owners.items()})
    b = max([0, *existing]) + 1
    while True:
        d = storage.join(out, STAGING_DIR, f"build={b}")
        try:
            storage.create_exclusive(storage.join(d, BUILD_FILE),
                                     storage.json_bytes({**record, "build": b}, sort_keys=True))
            reached("build-claimed")
            return Staging(build=b, dir=d, resumed=False)
        except WriteConflict:
            other = _build_owner(d)
            if other.get("fingerprint") == record["fingerprint"]:
                return Staging(build=b, dir=d, resumed=True)
            if not continues:
                raise _other_build(out, {b: other.get("build_id")}) from None
            b += 1


def claim_version(out: str, current: Manifest | None, by: str,
                  floor: int = 0) -> tuple[int, float]:
    """``(V, deadline)``: a version number of catalog ``out`` no other publish has, above
    every number ``current`` (its manifest) lists or removed, every ``version=V`` directory
    and ``floor`` (the number this publish claimed before a rebase: never used twice, so no
    cache of its files can be stale), claimed by creating ``version=V/_claim.json`` exclusively (``by``: the build
    id that claims it), and the time (POSIX seconds) after which the publish must not
    commit it: half of the claim's life (:data:`CLAIM_HOURS`) from now."""
    taken = set(version_dirs(out))
    if current is not None:
        taken |= {v.version for v in current.versions} | {r.version for r in current.removed}
    v = max([floor, *taken]) + 1
    while True:
        now = time.time()
        try:
            storage.create_exclusive(
                storage.join(out, f"version={v}", CLAIM_FILE),
                storage.json_bytes({"version": v, "by": by, "claimed": storage.utc_timestamp(),
                                    "expires_unix": now + CLAIM_HOURS * 3600.0,
                                    "host": socket.gethostname(), "pid": os.getpid()},
                                   sort_keys=True))
            reached("version-claimed")
            return v, now + CLAIM_HOURS * 1800.0
        except WriteConflict:
            v += 1


# ----------------------------------------------------------------------------- commit


class Rebase(Exception):
    """Another publish committed rows the new version lacks (or a higher version number):
    ``current`` is the manifest it committed."""

    def __init__(self, current: Manifest | None):
        super().__init__(f"version {current.version if current else '?'} was committed "
                         "meanwhile")
        self.current = current
        #: the version number the publish had claimed (set by the publish)
        self.claimed = 0


def _norm(paths: list[str]) -> set[str]:
    return {p.rstrip("/") for p in paths}


def commit_version(out: str, entry: VersionEntry, build: BuildRecord, *,
                   base_version: int | None, previous: Manifest | None,
                   keep_versions: int | None, deadline: float,
                   known: tuple[Manifest | None, str | None] | None = None) -> Manifest:
    """Make ``entry`` (a version written and claimed) the current version of catalog ``out``
    by compare-and-swap of its manifest, if that still names ``base_version`` (``None``:
    ``out`` has no manifest yet); ``build`` publishes it, ``previous`` (another directory's
    manifest, when ``out`` has none yet) gives the versions it continues,
    ``keep_versions`` how many stay listed; ``known``: ``out``'s manifest and its version
    token as read before (the first swap is tried against them; then it is re-read).
    Returns the manifest written.

    Raises
    ------
    Rebase: another publish committed a version meanwhile.
    WriteConflict: past ``deadline`` (POSIX seconds, from :func:`claim_version`), or
        :data:`CAS_TRIES` swaps lost.
    """
    for _ in range(CAS_TRIES):
        reached("before-read")
        current, token = known if known is not None else Manifest.read_versioned(out)
        known = None
        if (current.version if current is not None else None) != base_version:
            raise Rebase(current)
        versions = (current.versions if current is not None
                    else previous.versions_recorded_in(out) if previous is not None else [])
        manifest, _ = next_manifest(versions, entry, build, keep_versions,
                                    current.removed if current is not None else ())
        reached("before-swap")
        if time.time() > deadline:
            raise WriteConflict(f"{entry.path}: the publish outlasted half of its claim's life "
                                f"({CLAIM_HOURS / 2:g} h); nothing was committed: rerun it")
        try:
            return manifest.write(out, replacing=token)
        except WriteConflict:
            continue
    raise WriteConflict(f"{out}/{MANIFEST_FILE}: {CAS_TRIES} compare-and-swaps lost to other "
                        "writers; nothing was committed")


# ----------------------------------------------------------------------------- rebase


def _staged_ids(build_dir: str) -> pa.Array:
    """The ``object_id`` of every row the build staged (its ``_done`` markers)."""
    files = [f for f, n in staged_parts(build_dir) if n]
    columns = [storage.read_parquet(f, ["object_id"]).column(0).cast(pa.string()) for f in files]
    return pc.unique(pa.chunked_array(columns, type=pa.string()).combine_chunks())


def _restage_without(build_dir: str, ids: pa.Array) -> int:
    """Take the rows whose ``object_id`` is in ``ids`` out of the staged build ``build_dir``:
    each part that holds some is written again without them under a new name, then its
    ``_done`` marker is switched to it (one atomic write), then the old file is deleted.
    Returns the rows taken out."""
    owner = _build_owner(build_dir)["fingerprint"]
    removed = 0
    for marker_path in storage.list_files(storage.join(build_dir, DONE_DIR), suffix=".json"):
        marker = storage.read_json(marker_path)
        if marker.get("fingerprint") != owner or not marker["files"]:
            continue
        old = [storage.join(build_dir, name) for name in marker["files"]]
        table = storage.read_parquet(old)
        keep = pc.invert(pc.is_in(table.column("object_id"), value_set=ids))
        kept = table.filter(keep)
        if kept.num_rows == table.num_rows:
            continue
        stem = marker_path.rsplit("/", 1)[1].removesuffix(".json")
        name = f"{stem}-r{int(time.time() * 1e6):x}.parquet"
        files = []
        if kept.num_rows:
            storage.write_parquet_atomic(kept, storage.join(build_dir, name),
                                         row_group_size=STAGING_ROW_GROUP_ROWS)
            files = [name]
        storage.write_json_atomic(marker_path, {**marker, "rows": kept.num_rows,
                                                "files": files, **staged_counts(kept)})
        for f in old:
            storage.delete_file(f)
        removed += table.num_rows - kept.num_rows
    return removed


def rebase_builds(builds: list[str], own: str, current: Manifest) -> list[str]:
    """The builds of a version that continues ``current`` (the manifest committed meanwhile)
    and adds staged build ``own``: ``current``'s builds, then those of ``builds`` it lacks.
    The rows of ``own`` whose ``object_id`` one of the builds new to it holds (committed
    since its rows were planned against the other ``builds``) are taken out of its staging
    first, so no galaxy is in the version twice."""
    committed = current.builds()
    planned = _norm(builds)  # own and the builds its rows were planned against
    new = [b for b in committed if b.rstrip("/") not in planned]
    if new:
        ids = pc.unique(pa.chunked_array([_staged_ids(b) for b in new],
                                         type=pa.string()).combine_chunks())
        n = _restage_without(own, ids)
        log.info("rebase onto version %d: %d rows of %s were committed meanwhile by %d "
                 "build(s) and are left out", current.version, n, own, len(new))
    done = _norm(committed)
    return committed + [b for b in builds if b.rstrip("/") not in done]


# ----------------------------------------------------------------------------- vacuum


@dataclass(frozen=True)
class VacuumReport:
    """What a vacuum deleted: the ``removed`` versions past the grace period, and the
    ``unlisted`` version directories whose claim expired (version numbers)."""

    removed: list[int]
    unlisted: list[int]


def _claim_expires(vdir: str) -> float | None:
    """When the claim of ``vdir`` expires (POSIX seconds); for a directory without a claim (a
    publish from before claims) a claim's life after its newest file; ``None`` if it holds
    nothing."""
    try:
        return float(storage.read_json(storage.join(vdir, CLAIM_FILE))["expires_unix"])
    except (FileNotFoundError, KeyError, ValueError):
        newest = storage.newest_mtime(vdir)
        return None if newest is None else newest + CLAIM_HOURS * 3600.0


def _drop_removed(out: str, versions: set[int]) -> None:
    """Rewrite the manifest without the ``removed`` entries of ``versions`` (compare-and-swap,
    re-read when another writer got there first)."""
    for _ in range(CAS_TRIES):
        current, token = Manifest.read_versioned(out)
        keep = [r.to_dict() for r in current.removed if r.version not in versions]
        if len(keep) == len(current.removed):
            return
        doc = current.to_dict()
        if keep:
            doc["removed"] = keep
        else:
            doc.pop("removed", None)
        try:
            Manifest.from_dict(doc).write(out, replacing=token)
            return
        except WriteConflict:
            continue
    raise WriteConflict(f"{out}/{MANIFEST_FILE}: {CAS_TRIES} compare-and-swaps lost")


def vacuum(catalog: str, grace_hours: float = GRACE_HOURS, *,
           manifest: Manifest | None = None) -> VacuumReport:
    """Delete what no reader of the catalog in directory ``catalog`` can reach any more: the files of versions
    removed from the manifest more than ``grace_hours`` ago (then their ``removed``
    entries), and version directories the manifest never listed (a publish that lost its
    race or died) whose claim expired, with their publish scratch.
    Returns what it deleted. ``manifest``: the catalog's manifest if the caller just read or
    wrote it (else it is read).

    Raises
    ------
    ConfigError: ``grace_hours`` < 0. InputNotFoundError: ``catalog`` has no manifest.
    """
    if grace_hours < 0:
        raise ConfigError(f"grace_hours must be >= 0, got {grace_hours}",
                          params=("grace_hours",))
    out = storage.absolute(catalog).rstrip("/")
    grace_s, now = grace_hours * 3600.0, time.time()
    current = manifest if manifest is not None else Manifest.read(out)
    here = out + "/"
    expired = [r for r in current.removed if _age_s(r.removed, now) >= grace_s]
    for r in expired:
        p = current.resolve(r.path)
        if p.startswith(here):
            storage.delete_dir(p)
    if expired:
        _drop_removed(out, {r.version for r in expired})
    known = {v.version for v in current.versions} | {r.version for r in current.removed}
    unlisted = []
    for v, d in version_dirs(out).items():
        expires = _claim_expires(d) if v not in known else None
        if expires is not None and now >= expires:
            reached("vacuum-delete")
            storage.delete_dir(d)
            storage.delete_dir(storage.join(out, STAGING_DIR, f"publish={v}"))
            unlisted.append(v)
    if expired or unlisted:
        log.info("vacuum %s: deleted removed versions %s and unlisted directories %s", out,
                 [r.version for r in expired], unlisted)
    return VacuumReport(removed=[r.version for r in expired], unlisted=unlisted)


def show_vacuum(report: VacuumReport, params: dict[str, Any]) -> None:
    """What ``hicatalog vacuum`` prints: what it deleted."""
    print(f"vacuum {params['catalog']}: deleted the files of removed versions "
          f"{report.removed or 'none'} and of uncommitted publishes {report.unlisted or 'none'}"
          f" (grace {params['grace_hours']:g} h)")
