"""Projected environment of galaxies: D5, Sigma5 and 1+delta5 (paper Section 7.1).

For every target galaxy:

* **D_N** (``d5_mpc``, Mpc): the projected *physical* distance to its N-th nearest neighbour
  (N = ``n_neighbor``, 5 in the paper) among the tracers within the velocity window
  ``c |z_tracer - z_target| <= velocity_window_kms`` (1000 km/s). The galaxy's own optical
  counterpart is counted as the first of the N (the paper: "including its own optical
  counterpart"), exactly once: a tracer with the same ``object_id`` (or, failing that, the
  nearest tracer within :data:`COUNTERPART_RADIUS_ARCSEC` and inside the velocity window) *is*
  the counterpart and is not counted again, so D_N is the distance to the (N-1)-th nearest
  *other* tracer whether or not the tracers contain the target. The projected distance is the
  angular separation times the angular diameter distance at the target's redshift.
* **Sigma_N** (``sigma5``, Mpc^-2) = N / (pi D_N^2), with D_N floored at
  :data:`hicatalog.neighbours.D_N_FLOOR_MPC` (1e-4 Mpc). (The paper prints 3/(pi D5^2); the
  constant cancels in 1+delta5.)
* **1+delta_N** (``one_plus_delta5``) = Sigma_N / median(Sigma_N of the target galaxies with
  ``|z - z_target| <= z_window / 2``), a sliding redshift boxcar of width ``z_window`` (0.02).
  The median is taken over every target whose Sigma_N is defined (``env_status`` ``ok`` or
  ``footprint_edge``).

D_N, Sigma_N and 1+delta_N are :func:`hicatalog.neighbours.projected_overdensity`, the one
estimator that the mock's true overdensity also uses; this module adds what a real catalog
needs around it: validity of the inputs, counterparts by ``object_id``, the footprint edge.

``env_status`` says why a value is missing (checked in this order):

``bad_coordinates``  ra or dec not finite, or |dec| > 90 (any finite ra is valid and means
                     ra mod 360: the rule of :func:`hicatalog.sky.valid_coordinates`, the
                     same as the cutout fetch's): everything null;
``no_redshift``      z null/NaN: everything null;
``too_near``         comoving distance < ``min_distance_mpc`` (10 Mpc, Local Group): null;
``few_neighbours``   fewer than N-1 other tracers in the velocity window: null;
``footprint_edge``   the D_N circle around the target leaves the tracers' footprint, so D_N is
                     an upper limit (Sigma_N a lower limit). **d5_mpc/sigma5/one_plus_delta5 are kept** and
                     only flagged, as the ``environment`` contract says;
``ok``               all values defined.

The footprint is an occupancy map of the tracers on an equal-area grid of
``footprint_cell_deg``-sided cells (dec bands of equal height, RA cells per band ~ cos(dec));
a cell is inside the footprint when it holds at least one tracer. The D_N circle is sampled at
:data:`FOOTPRINT_CIRCLE_POINTS` points (plus its centre); it crosses the edge when any of
them falls in an empty cell. With ``footprint_cell_deg=None`` the cell side is chosen from the
tracers: the smallest of 0.25, 0.5, 1, 2, 4, 8 degrees at which occupied cells hold at least
:data:`FOOTPRINT_MIN_MEAN_COUNT` tracers on average, so that holes in a sparse sample are not
mistaken for edges.

Neighbour search (:func:`hicatalog.neighbours.nth_neighbour_angle`): tracers are sorted by z;
targets are processed in z bins of width dz_max = velocity_window/c, each against a
``scipy.spatial.cKDTree`` of the unit vectors of the tracers in the bin's slab
``[z_lo - dz_max, z_hi + dz_max]``. The k nearest tracers in the slab are filtered by the exact
velocity window; where fewer than N-1 survive, k grows (x4) until they do or the slab is
exhausted. This is exact (any valid neighbour nearer than the (N-1)-th valid one is among the k
nearest of the slab) and O(N log N).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from astropy import units as u
from astropy.coordinates import offset_by
from astropy.cosmology import FLRW

from hicatalog import storage
from hicatalog.cosmology import PAPER_COSMOLOGY, paper_cosmology
from hicatalog.errors import ConfigError
from hicatalog.neighbours import (
    N_NEIGHBOUR,
    VELOCITY_WINDOW_KMS,
    Z_WINDOW,
    projected_overdensity,
    unit_vectors,
)
from hicatalog.schemas import SchemaError, conform_table, validate_schema
from hicatalog.sky import valid_coordinates, wrap_ra
from hicatalog.storage import write_parquet_atomic

__all__ = [
    "ENV_STATUSES",
    "COUNTERPART_RADIUS_ARCSEC",
    "compute_environment",
    "footprint_cell_size",
    "read_positions",
    "make_environment",
    "show_result",
]

log = logging.getLogger("hicatalog.catalog.environment")

ENV_STATUSES = (
    "ok", "bad_coordinates", "no_redshift", "too_near", "few_neighbours", "footprint_edge",
)
#: A tracer this close to a target (and inside the velocity window) is its own counterpart.
COUNTERPART_RADIUS_ARCSEC = 1.0
#: Points sampled on the D_N circle for the footprint-edge test.
FOOTPRINT_CIRCLE_POINTS = 16
#: Mean tracers per occupied cell required when the footprint cell side is chosen automatically.
FOOTPRINT_MIN_MEAN_COUNT = 8.0
_AUTO_CELL_SIDES_DEG = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


# ----------------------------------------------------------------------------- footprint map


class _OccupancyMap:
    """Equal-area occupancy grid on the sphere: dec bands of height ``side`` degrees, each cut
    into ``max(1, round(360 cos(dec_mid) / side))`` RA cells (a HEALPix-like map in numpy)."""

    def __init__(self, side_deg: float):
        self.side = float(side_deg)
        self.n_bands = int(np.ceil(180.0 / self.side))
        mids = -90.0 + (np.arange(self.n_bands) + 0.5) * self.side
        self.n_ra = np.maximum(1, np.round(360.0 * np.cos(np.radians(mids)) / self.side)).astype(
            np.int64
        )
        self.offset = np.concatenate([[0], np.cumsum(self.n_ra)[:-1]])
        self.counts = np.zeros(int(self.n_ra.sum()), dtype=np.int64)

    def cells(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
        band = np.clip(((dec_deg + 90.0) // self.side).astype(np.int64), 0, self.n_bands - 1)
        n_ra = self.n_ra[band]
        col = np.floor(np.mod(ra_deg, 360.0) / 360.0 * n_ra).astype(np.int64)
        return self.offset[band] + np.minimum(col, n_ra - 1)

    def fill(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> _OccupancyMap:
        np.add.at(self.counts, self.cells(ra_deg, dec_deg), 1)
        return self

    def occupied(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
        return self.counts[self.cells(ra_deg, dec_deg)] > 0

    def mean_count(self) -> float:
        occ = self.counts[self.counts > 0]
        return float(occ.mean()) if occ.size else 0.0


def footprint_cell_size(ra_deg: np.ndarray, dec_deg: np.ndarray) -> float:
    """Cell side (deg) of the automatic footprint map: the smallest of 0.25..8 deg at which
    occupied cells hold at least :data:`FOOTPRINT_MIN_MEAN_COUNT` tracers on average."""
    for side in _AUTO_CELL_SIDES_DEG:
        if _OccupancyMap(side).fill(ra_deg, dec_deg).mean_count() >= FOOTPRINT_MIN_MEAN_COUNT:
            return side
    return _AUTO_CELL_SIDES_DEG[-1]


def _crosses_edge(
    fmap: _OccupancyMap, ra: np.ndarray, dec: np.ndarray, radius_rad: np.ndarray
) -> np.ndarray:
    """True where the circle of ``radius_rad`` around (ra, dec) deg leaves the footprint."""
    out = ~fmap.occupied(ra, dec)
    lon, lat = np.radians(ra), np.radians(dec)
    for b in np.linspace(0.0, 2 * np.pi, FOOTPRINT_CIRCLE_POINTS, endpoint=False):
        lon2, lat2 = offset_by(lon, lat, b, radius_rad)
        out |= ~fmap.occupied(lon2.to_value(u.deg), lat2.to_value(u.deg))
    return out


# ----------------------------------------------------------------------------- public API


def _positions(table: pa.Table, what: str) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    """``object_id`` (string array) and float64 ``ra`` (wrapped to [0, 360) deg), ``dec``
    (deg), ``z`` arrays ``(N,)`` of ``table``; NaN where null."""
    missing = [c for c in ("object_id", "ra", "dec", "z") if c not in table.column_names]
    if missing:
        raise SchemaError(f"{what} table lacks column(s) {missing}; expected object_id, ra, dec, z")

    def col(name: str) -> np.ndarray:
        return pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False)

    ids = pc.cast(table.column("object_id"), pa.string())
    return ids, wrap_ra(col("ra")), col("dec"), col("z")


def compute_environment(
    targets: pa.Table,
    tracers: pa.Table,
    *,
    n_neighbor: int = N_NEIGHBOUR,
    velocity_window_kms: float = VELOCITY_WINDOW_KMS,
    min_distance_mpc: float = 10.0,
    z_window: float = Z_WINDOW,
    cosmology: FLRW | None = None,
    footprint_cell_deg: float | None = None,
    workers: int = -1,
) -> pa.Table:
    """D_N, Sigma_N and 1+delta_N for every target (paper Section 7.1; module docstring).

    Parameters
    ----------
    targets: table with ``object_id`` (string), ``ra``, ``dec`` (deg; any finite ra, taken mod
        360), ``z`` (nullable); one output row per input row, in input order.
    tracers: table with ``object_id``, ``ra``, ``dec``, ``z``; rows with bad coordinates
        (:func:`hicatalog.sky.valid_coordinates`) or no redshift are ignored.
    n_neighbor: N (>= 2); the target itself is the first of the N.
    velocity_window_kms: tracers count when ``c |dz|`` is at most this (km/s).
    min_distance_mpc: targets with a smaller comoving distance get ``too_near``.
    z_window: full width of the redshift boxcar of the median normalisation.
    cosmology: astropy cosmology (default :data:`hicatalog.cosmology.PAPER_COSMOLOGY`, flat
        LCDM H0=70, Om0=0.3).
    footprint_cell_deg: side of the footprint occupancy cells (deg); ``None``: automatic.
    workers: threads of the tree queries (-1: all cores).

    Returns
    -------
    The ``environment`` contract, one row per target: ``object_id`` string, ``d5_mpc``
    float32 (Mpc), ``sigma5`` float32 (Mpc^-2), ``one_plus_delta5`` float32 (1+delta5),
    ``env_status`` string (null values where the status says why).
    """
    if n_neighbor < 2:
        raise ConfigError(f"n_neighbor must be >= 2 (the target itself is the first), got "
                          f"{n_neighbor}", params=("n_neighbor",))
    cosmo = cosmology if cosmology is not None else PAPER_COSMOLOGY
    t_ids, t_ra, t_dec, t_z = _positions(targets, "targets")
    r_ids, r_ra, r_dec, r_z = _positions(tracers, "tracers")
    r_keep, r_order = _usable_tracers(r_ra, r_dec, r_z)
    status, cand = _target_status(t_ra, t_dec, t_z, cosmo, min_distance_mpc)

    # Counterpart by object_id: index into the z-sorted tracers, -1 if absent.
    sorted_ids = r_ids.take(pa.array(r_order))
    cp = pc.fill_null(pc.index_in(t_ids, value_set=sorted_ids), -1)
    cp = cp.to_numpy(zero_copy_only=False).astype(np.int64)

    ci = np.flatnonzero(cand)
    est = projected_overdensity(
        unit_vectors(t_ra[ci], t_dec[ci]), t_z[ci], cp[ci],
        unit_vectors(r_ra[r_order], r_dec[r_order]), r_z[r_order],
        lambda z: cosmo.angular_diameter_distance(z).to_value(u.Mpc),
        n_neighbor=n_neighbor, velocity_window_kms=velocity_window_kms, z_window=z_window,
        workers=workers, match_radius_arcsec=COUNTERPART_RADIUS_ARCSEC,
    )
    few = np.isnan(est.angle_rad)
    status[ci[few]] = "few_neighbours"
    ok = ci[~few]
    if ok.size:
        side = footprint_cell_deg or footprint_cell_size(r_ra[r_keep], r_dec[r_keep])
        fmap = _OccupancyMap(side).fill(r_ra[r_keep], r_dec[r_keep])
        edge = _crosses_edge(fmap, t_ra[ok], t_dec[ok], est.angle_rad[~few])
        status[ok[edge]] = "footprint_edge"
        log.info("footprint map: %.2f deg cells; %d of %d targets at the edge",
                 side, int(edge.sum()), ok.size)
    d5, sigma, delta = (np.full(len(t_z), np.nan) for _ in range(3))
    d5[ci], sigma[ci], delta[ci] = est.d_n_mpc, est.sigma_n, est.one_plus_delta
    return _environment_table(t_ids, d5, sigma, delta, status)


def _usable_tracers(ra: np.ndarray, dec: np.ndarray,
                    z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, kept in z order)``: the indices of the tracers with valid coordinates and a
    redshift (the others are ignored), as they come and sorted by z (stable)."""
    good = valid_coordinates(ra, dec) & np.isfinite(z)
    if (~good).any():
        log.info("ignoring %d tracers without valid coordinates or redshift", int((~good).sum()))
    keep = np.flatnonzero(good)
    return keep, keep[np.argsort(z[keep], kind="stable")]


def _target_status(ra: np.ndarray, dec: np.ndarray, z: np.ndarray, cosmo: FLRW,
                   min_distance_mpc: float) -> tuple[np.ndarray, np.ndarray]:
    """``(env_status, candidate)`` per target: ``bad_coordinates``, ``no_redshift`` and
    ``too_near`` (comoving distance below ``min_distance_mpc``) decided here; the others are
    ``ok`` for now and candidates for the neighbour search."""
    status = np.full(len(z), "ok", dtype=object)
    good_pos = valid_coordinates(ra, dec)
    status[~good_pos] = "bad_coordinates"
    has_z = np.isfinite(z)
    status[good_pos & ~has_z] = "no_redshift"
    cand = good_pos & has_z
    dist_c = np.full(len(z), np.nan)
    dist_c[cand] = cosmo.comoving_distance(np.maximum(z[cand], 0.0)).to_value(u.Mpc)
    near = cand & ~(dist_c >= min_distance_mpc)
    status[near] = "too_near"
    return status, cand & ~near


def _environment_table(ids: pa.Array, d5: np.ndarray, sigma: np.ndarray, delta: np.ndarray,
                       status: np.ndarray) -> pa.Table:
    """The ``environment`` contract table (float32, null where not finite)."""

    def f32(a: np.ndarray) -> pa.Array:
        a = a.astype(np.float32)
        return pa.array(a, mask=~np.isfinite(a))

    out = pa.table({"object_id": ids, "d5_mpc": f32(d5), "sigma5": f32(sigma),
                    "one_plus_delta5": f32(delta),
                    "env_status": pa.array(status.tolist(), pa.string())})
    return conform_table(out, "environment", "compute_environment output")


def read_positions(path: str, what: str) -> pa.Table:
    """Read ``object_id, ra, dec, z`` from a Parquet file or directory (e.g. cutout shards).

    Only those four columns are read; their presence and types are checked against the
    ``tracers`` contract (nulls in ``z`` are allowed here: they become ``no_redshift``).
    """
    cols = ["object_id", "ra", "dec", "z"]
    try:
        schema = storage.read_parquet_schema(path)
    except FileNotFoundError:
        raise SchemaError(f"{path}: no such file or directory (expected {what} Parquet)") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise SchemaError(f"{path}: cannot be read as Parquet ({what}): {exc}") from None
    validate_schema(pa.schema([schema.field(c) for c in cols if c in schema.names]), "tracers",
                    f"{what} {path}")
    table = storage.read_parquet(path, cols)
    if table.num_rows == 0:
        raise SchemaError(f"{path}: {what} table is empty (0 rows)")
    return table


def make_environment(targets: str, tracers: str, out: str, *, n_neighbor: int = N_NEIGHBOUR,
                     velocity_window_kms: float = VELOCITY_WINDOW_KMS,
                     min_distance_mpc: float = 10.0, z_window: float = Z_WINDOW,
                     h0: float = 70.0, om0: float = 0.3) -> pa.Table:
    """Read ``object_id, ra, dec, z`` of ``targets`` and ``tracers`` (Parquet files or
    directories, local or URLs), compute the environment of every target
    (:func:`compute_environment`, in a flat LCDM cosmology ``h0``, ``om0``) and write it to
    the Parquet file ``out``; returns the table written."""
    env = compute_environment(
        read_positions(targets, "targets"), read_positions(tracers, "tracers"),
        n_neighbor=n_neighbor, velocity_window_kms=velocity_window_kms,
        min_distance_mpc=min_distance_mpc, z_window=z_window,
        cosmology=paper_cosmology(h0, om0),
    )
    write_parquet_atomic(env, out)
    return env


def show_result(env: pa.Table, params: dict[str, Any]) -> None:
    """What ``hicatalog environment`` prints after :func:`make_environment` (``params``: its
    arguments): the rows written and their ``env_status`` counts."""
    counts = pc.value_counts(env.column("env_status")).to_pylist()
    summary = ", ".join(f"{c['values']}={c['counts']}" for c in counts)
    print(f"wrote {env.num_rows} rows to {params['out']} ({summary})")
