"""LSDB on published versions: a version directory is a HATS collection whose margin cache
LSDB loads by itself, so a cross-match finds every pair a brute-force match finds, the pairs
across partition edges included (publishing runs on Ray: these tests are slow)."""

import collections
from pathlib import Path

import lsdb  # a dev dependency (pyproject's dev extra); hicatalog itself never imports it
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import SMALL, rows

from hicatalog.catalog import collection
from hicatalog.catalog.publish import publish_tables
from hicatalog.catalog.reader import open_catalog

RADIUS_ARCSEC = 5.0


def _edge_points(rng, n, order=7, ra0=180.0, dec0=0.0, size=2.0):
    """``n`` positions (deg) within a few arcsec of the edges of the order-``order`` HEALPix
    pixels of a ``size``-deg field: where the partitions of a dense field meet."""
    import cdshealpix
    from astropy import units as u

    lon, lat = rng.uniform(ra0, ra0 + size, 200) * u.deg, rng.uniform(dec0, dec0 + size, 200) * u.deg
    pix = np.unique(cdshealpix.nested.lonlat_to_healpix(lon, lat, order))
    vlon, vlat = cdshealpix.nested.vertices(pix, order)  # (n_pix, 4) corners
    which, corner, t = rng.integers(0, len(pix), n), rng.integers(0, 4, n), rng.uniform(0, 1, n)
    a = np.stack([vlon.to_value(u.deg), vlat.to_value(u.deg)], -1)[which, corner]
    b = np.stack([vlon.to_value(u.deg), vlat.to_value(u.deg)], -1)[which, (corner + 1) % 4]
    ra = a[:, 0] + t * (b[:, 0] - a[:, 0]) + rng.normal(0, 3, n) / 3600
    dec = a[:, 1] + t * (b[:, 1] - a[:, 1]) + rng.normal(0, 3, n) / 3600
    return ra, dec


def _table(prefix, ra, dec, seed):
    """hi_catalog rows at (``ra``, ``dec``); the first 3 without a valid position, 2 duplicate
    ids (:func:`builders.rows`)."""
    t = rows(len(ra), seed, prefix).drop_columns(["_healpix_29"])
    ra, dec = ra.copy(), dec.copy()
    ra[:3] = np.nan
    t = t.set_column(t.schema.get_field_index("ra"), "ra", pa.array(ra))
    return t.set_column(t.schema.get_field_index("dec"), "dec", pa.array(dec))


def _offset(rng, ra, dec, lo, hi):
    """Positions ``lo``-``hi`` arcsec from (``ra``, ``dec``) in random directions."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(ra * u.deg, dec * u.deg)
    moved = c.directional_offset_by(rng.uniform(0, 360, len(ra)) * u.deg,
                                    rng.uniform(lo, hi, len(ra)) * u.arcsec)
    return moved.ra.deg, moved.dec.deg


def _brute_force(left, right):
    """Every (left id, right id) pair within RADIUS_ARCSEC over all rows with a position."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord, search_around_sky

    sides = []
    for t in (left, right):
        ok = np.isfinite(t.column("ra").to_numpy()) & (np.abs(t.column("dec").to_numpy()) <= 90)
        sides.append((SkyCoord(t.column("ra").to_numpy()[ok] * u.deg,
                               t.column("dec").to_numpy()[ok] * u.deg),
                      np.array(t.column("object_id").to_pylist())[ok]))
    i, j, _, _ = search_around_sky(sides[0][0], sides[1][0], RADIUS_ARCSEC * u.arcsec)
    return collections.Counter(zip(sides[0][1][i], sides[1][1][j], strict=True))


def _partition_of(cat_dir, ids):
    """``{object_id: (order, pixel)}``: the partition file each row of the version is in."""
    out = {}
    for f in open_catalog(cat_dir).files[:-1]:
        k = int(f.split("Norder=")[1].split("/")[0])
        p = int(f.split("Npix=")[1].split(".")[0])
        for i in pq.read_table(f, columns=["object_id"]).column(0).to_pylist():
            if i in ids:
                out[i] = (k, p)
    return out


def _pairs(left, right):
    """The (left id, right id) pairs LSDB's cross-match of two LSDB catalogs finds within
    RADIUS_ARCSEC (every neighbour, not only the nearest)."""
    df = left.crossmatch(right, radius_arcsec=RADIUS_ARCSEC, n_neighbors=10,
                         suffix_method="all_columns").compute()
    ids = [c for c in df.columns if c.startswith("object_id")]
    return collections.Counter(zip(df[ids[0]], df[ids[1]], strict=True))


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, ray_local):
    """Catalog A (3000 rows, half on order-7 pixel edges, in a 2x2 deg field) and catalog B
    (a counterpart 0.5-4.5 arcsec from each of 1500 of A's rows, plus 300 random rows), each
    published with SMALL partitions, B's smaller still (the partitions do not align)."""
    tmp = tmp_path_factory.mktemp("lsdb")
    rng = np.random.default_rng(25)
    era, edec = _edge_points(rng, 1500)
    ra = np.concatenate([era, rng.uniform(180, 182, 1500)])
    dec = np.concatenate([edec, rng.uniform(0, 2, 1500)])
    a = _table("a", ra, dec, 1)
    pick = rng.choice(len(ra), 1500, replace=False)
    bra, bdec = _offset(rng, ra[pick], dec[pick], 0.5, 4.5)
    b = _table("b", np.concatenate([bra, rng.uniform(180, 182, 300)]),
               np.concatenate([bdec, rng.uniform(0, 2, 300)]), 2)
    dirs = str(tmp / "a"), str(tmp / "b")
    with pytest.MonkeyPatch.context() as mp:  # A's index in several files (id ranges)
        mp.setattr(collection, "INDEX_FILE_ROWS", 700)
        publish_tables(dirs[0], [a.slice(0, 1600), a.slice(1600)], build_id="a", **SMALL)
    publish_tables(dirs[1], [b], build_id="b", partition_rows=100, row_group_rows=40)
    return dirs, a, b


def test_crossmatch_equals_brute_force_across_partition_edges(two_versions):
    (a_dir, b_dir), a, b = two_versions
    cat_a, cat_b = open_catalog(a_dir), open_catalog(b_dir)
    # the version directory is a collection: LSDB loads the main catalog and its margin
    lsdb_a, lsdb_b = lsdb.open_catalog(cat_a.version_dir), lsdb.open_catalog(cat_b.version_dir)
    for c in (lsdb_a, lsdb_b):
        assert c.margin is not None
        assert c.margin.hc_structure.catalog_info.margin_threshold == 10.0
    assert len(lsdb_a.get_healpix_pixels()) > 15 and len(lsdb_b.get_healpix_pixels()) > 15
    expected = _brute_force(b, a)
    assert sum(expected.values()) >= 1500
    assert _pairs(lsdb_b, lsdb_a) == expected  # through A's margin
    assert _pairs(lsdb_a, lsdb_b) == _brute_force(a, b)  # through B's margin
    # many pairs cross a partition edge of A
    crossing = _outside(list(expected), b, _partition_of(a_dir, {j for _, j in expected}))
    assert len(crossing) > 50
    # without the margin (the main catalog alone) pairs across the edges are lost
    no_margin = lsdb.open_catalog(cat_a.path)
    assert no_margin.margin is None
    with pytest.warns(RuntimeWarning, match="does not have a margin cache"):
        lost = expected - _pairs(lsdb_b, no_margin)
    assert set(lost) <= set(crossing) and len(lost) > 20


def _outside(pairs, left, where):
    """The (left id, right id) ``pairs`` whose left row lies outside the partition ``where``
    ``{right id: (order, pixel)}`` of its right row: pairs across a partition edge."""
    from hats.pixel_math.healpix_shim import radec2pix

    first = {i: n for n, i in reversed(list(enumerate(left.column("object_id").to_pylist())))}
    rows_ = np.array([first[i] for i, _ in pairs])
    ra, dec = left.column("ra").to_numpy()[rows_], left.column("dec").to_numpy()[rows_]
    k, p = np.array([where[j] for _, j in pairs]).T
    inside = np.array([radec2pix(int(o), ra[n:n + 1], dec[n:n + 1])[0] for n, o in enumerate(k)])
    return [pair for pair, q, pp in zip(pairs, inside, p, strict=True) if q != pp]


def test_a_lookup_by_id_touches_one_partition(two_versions):
    """The version's index on object_id: LSDB's id_search opens only the partition that
    holds the id, and finds its row (also an id that repeats, in both of its rows)."""
    (a_dir, _), a, _ = two_versions
    cat = lsdb.open_catalog(open_catalog(a_dir).version_dir)
    assert cat.hc_collection.default_index_field == "object_id"
    index_files = list((Path(a_dir) / "version=1" / "hi_catalog_object_id" / "dataset").glob(
        "part-*.parquet"))
    assert len(index_files) == 5  # 2997 ids with a position, ~700 a file
    n_partitions = len(cat.get_healpix_pixels())
    ids = a.column("object_id").to_pylist()
    where = _partition_of(a_dir, {ids[1000], ids[2500]})
    for i in (ids[1000], ids[2500]):
        found = cat.id_search(values={"object_id": i})
        assert [(px.order, px.pixel) for px in found.get_healpix_pixels()] == [where[i]]
        assert n_partitions > 15
        row = found.compute()
        assert row["object_id"].tolist() == [i]
        assert row["ra"].iloc[0] == a.column("ra")[ids.index(i)].as_py()
    # an id that repeats (builders.rows: row 3 and the last row): both rows, their partitions
    found = cat.id_search(values={"object_id": ids[3]})
    assert ids[-1] == ids[3] and len(found.compute()) == 2
    assert 1 <= len(found.get_healpix_pixels()) <= 2
    assert len(cat.id_search(values={"object_id": "no-such-id"}).compute()) == 0
