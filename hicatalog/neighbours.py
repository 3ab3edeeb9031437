"""The paper's projected-overdensity estimator (Wu 2020, Section 7.1), in one place.

The mock's true overdensity (:func:`hicatalog.mock.volume.true_overdensity`) and the catalog's
delta5 (:func:`hicatalog.catalog.environment.compute_environment`) both call
:func:`projected_overdensity`, so truth and measurement are one estimator: the N-th neighbour
within a velocity window (KD-tree, exact, O(N log N)), D_N = angle x angular diameter distance,
Sigma_N = N / (pi D_N^2) (:func:`surface_density`) and 1+delta_N = Sigma_N / its median in a
sliding redshift boxcar (:func:`median_normalised`). It lives here, below both stages (DESIGN:
a module imports only from the stages before it).

The paper's choices are the defaults: :data:`N_NEIGHBOUR`, :data:`VELOCITY_WINDOW_KMS`,
:data:`Z_WINDOW`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from hicatalog.cosmology import C_KMS

__all__ = [
    "D_N_FLOOR_MPC",
    "N_NEIGHBOUR",
    "VELOCITY_WINDOW_KMS",
    "Z_WINDOW",
    "ProjectedOverdensity",
    "chord_to_angle",
    "median_normalised",
    "nth_neighbour_angle",
    "projected_overdensity",
    "sliding_median",
    "surface_density",
    "unit_vectors",
]

#: The paper's estimator (Wu 2020, Section 7.1): the 5th nearest neighbour, counting the
#: galaxy's own counterpart as the 1st, among tracers within c|dz| <= 1000 km/s; Sigma_5
#: normalised by its median in a sliding redshift boxcar of full width 0.02.
N_NEIGHBOUR, VELOCITY_WINDOW_KMS, Z_WINDOW = 5, 1000.0, 0.02
#: Sigma_N is formed with max(D_N, D_N_FLOOR_MPC) (Mpc): a D_N of 0 (tracers at the very same
#: position) gives a large finite density, not infinity, so 1+delta stays defined and the
#: medians of its neighbours in redshift are not spoiled.
D_N_FLOOR_MPC = 1e-4


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """(N, 3) float64 unit vectors of ICRS positions given in degrees."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    cd = np.cos(dec)
    return np.column_stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)])


def chord_to_angle(chord: np.ndarray) -> np.ndarray:
    """Angle (rad) subtended by a chord of the unit sphere."""
    return 2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))


def nth_neighbour_angle(
    t_xyz: np.ndarray,
    t_z: np.ndarray,
    t_counterpart: np.ndarray,
    tr_xyz: np.ndarray,
    tr_z: np.ndarray,
    n_other: int,
    dz_max: float,
    workers: int = -1,
    match_radius_arcsec: float = 1.0,
) -> np.ndarray:
    """Angle (rad) from each target to its ``n_other``-th nearest tracer within |dz| <= dz_max,
    not counting its counterpart; NaN where there are fewer such tracers.

    ``tr_*`` must be sorted by z. ``t_counterpart``: int64 index into the tracers of the
    target's counterpart by object_id, -1 if none (then the nearest valid tracer within
    ``match_radius_arcsec`` is the counterpart). ``workers``: threads of the tree queries.

    Exact and O(N log N): targets are processed in z bins of width ``dz_max``, each against a
    ``scipy.spatial.cKDTree`` of the unit vectors of the tracers in the bin's slab
    ``[z_lo - dz_max, z_hi + dz_max]``; the k nearest are filtered by the velocity window and
    k grows (x4) until ``n_other`` survive or the slab is exhausted.
    """
    n_t = len(t_z)
    angle = np.full(n_t, np.nan)
    if n_t == 0 or len(tr_z) == 0:
        return angle
    match_chord = 2.0 * np.sin(np.radians(match_radius_arcsec / 3600.0) / 2.0)
    width = dz_max
    z0 = float(t_z.min())
    bins = np.floor((t_z - z0) / width).astype(np.int64)
    order = np.argsort(bins, kind="stable")
    bounds = np.searchsorted(bins[order], np.arange(bins[order][-1] + 2))
    for b in range(len(bounds) - 1):
        sel = order[bounds[b] : bounds[b + 1]]
        if sel.size == 0:
            continue
        zlo, zhi = float(t_z[sel].min()) - dz_max, float(t_z[sel].max()) + dz_max
        s0, s1 = np.searchsorted(tr_z, zlo, "left"), np.searchsorted(tr_z, zhi, "right")
        n_slab = s1 - s0
        if n_slab == 0:
            continue
        tree = cKDTree(tr_xyz[s0:s1])
        slab_z = tr_z[s0:s1]
        todo = sel
        k = min(n_slab, 2 * n_other + 6)
        while todo.size:
            dist, idx = tree.query(t_xyz[todo], k=k, workers=workers)
            dist, idx = dist.reshape(len(todo), -1), idx.reshape(len(todo), -1)
            found = idx < n_slab
            idx_c = np.where(found, idx, 0)
            valid = found & (np.abs(slab_z[idx_c] - t_z[todo, None]) <= dz_max)
            cp = t_counterpart[todo, None]
            by_id = cp >= 0
            valid &= ~(by_id & (idx_c + s0 == cp))
            # No id match: the nearest valid tracer within the match radius is the counterpart.
            first_valid = np.argmax(valid, axis=1)
            rows = np.arange(len(todo))
            pos_match = (
                ~by_id[:, 0] & valid[rows, first_valid]
                & (dist[rows, first_valid] <= match_chord)
            )
            valid[rows[pos_match], first_valid[pos_match]] = False
            csum = np.cumsum(valid, axis=1)
            enough = csum[:, -1] >= n_other
            col = np.argmax(csum >= n_other, axis=1)
            done_rows = rows[enough]
            angle[todo[done_rows]] = chord_to_angle(dist[done_rows, col[enough]])
            # Rows that ran out of candidates before the slab was exhausted search wider.
            if k >= n_slab:
                break
            todo = todo[~enough]
            k = min(n_slab, 4 * k)
    return angle


def sliding_median(z_sorted: np.ndarray, v_sorted: np.ndarray, half_width: float) -> np.ndarray:
    """Median of ``v`` over the window ``|z - z_i| <= half_width`` for every i (``z`` sorted).

    Two heaps with lazy deletion over monotone windows: O(N log N). Even-sized windows give
    the mean of the two middle values (as :func:`numpy.median`).
    """
    n = len(z_sorted)
    out = np.empty(n)
    lo_idx = np.searchsorted(z_sorted, z_sorted - half_width, "left")
    hi_idx = np.searchsorted(z_sorted, z_sorted + half_width, "right")
    low: list[tuple[float, int]] = []  # max-heap of (-v, -j): the lower half
    high: list[tuple[float, int]] = []  # min-heap of (v, j): the upper half
    in_low = np.zeros(n, dtype=bool)
    dead = np.zeros(n, dtype=bool)
    n_low = n_high = 0
    added = removed = 0
    vals = v_sorted.tolist()

    def prune() -> None:
        while low and dead[-low[0][1]]:
            heapq.heappop(low)
        while high and dead[high[0][1]]:
            heapq.heappop(high)

    for i in range(n):
        while added < hi_idx[i]:
            j = added
            prune()
            if low and (vals[j], j) <= (-low[0][0], -low[0][1]):
                heapq.heappush(low, (-vals[j], -j))
                in_low[j] = True
                n_low += 1
            else:
                heapq.heappush(high, (vals[j], j))
                n_high += 1
            added += 1
        while removed < lo_idx[i]:
            dead[removed] = True
            if in_low[removed]:
                n_low -= 1
            else:
                n_high -= 1
            removed += 1
        prune()
        while n_low > n_high + 1:
            v, j = heapq.heappop(low)
            heapq.heappush(high, (-v, -j))
            in_low[-j] = False
            n_low, n_high = n_low - 1, n_high + 1
            prune()
        while n_high > n_low:
            v, j = heapq.heappop(high)
            heapq.heappush(low, (-v, -j))
            in_low[j] = True
            n_low, n_high = n_low + 1, n_high - 1
            prune()
        if n_low == n_high:
            out[i] = 0.5 * (-low[0][0] + high[0][0])
        else:
            out[i] = -low[0][0]
    return out


def surface_density(d_n_mpc: np.ndarray, n_neighbor: int = N_NEIGHBOUR) -> np.ndarray:
    """Sigma_N = N / (pi max(D_N, D_N_FLOOR_MPC)^2) in Mpc^-2.

    ``d_n_mpc``: ``(M,)`` projected distances to the N-th neighbour (Mpc, NaN where undefined).
    Returns ``(M,)`` float64, NaN where ``d_n_mpc`` is NaN. (The paper prints 3/(pi D5^2); the
    constant cancels in 1+delta.)
    """
    d = np.asarray(d_n_mpc, dtype=np.float64)
    return n_neighbor / (np.pi * np.maximum(d, D_N_FLOOR_MPC) ** 2)


def median_normalised(z: np.ndarray, sigma: np.ndarray, z_window: float = Z_WINDOW) -> np.ndarray:
    """1 + delta = Sigma / median(Sigma) over a sliding redshift boxcar of full width ``z_window``.

    ``z``, ``sigma``: ``(M,)`` redshifts and surface densities (any order; ``sigma`` NaN where
    undefined, ``z`` finite wherever ``sigma`` is). The median for galaxy i runs over every
    galaxy j with a finite Sigma and ``|z_j - z_i| <= z_window / 2``, i included. Returns
    ``(M,)`` float64 in the input order, NaN where ``sigma`` is not finite.
    """
    z = np.asarray(z, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    out = np.full(len(sigma), np.nan)
    have = np.flatnonzero(np.isfinite(sigma))
    if have.size:
        order = have[np.argsort(z[have], kind="stable")]
        out[order] = sigma[order] / sliding_median(z[order], sigma[order], z_window / 2.0)
    return out


@dataclass(frozen=True)
class ProjectedOverdensity:
    """Per target, ``(M,)`` float64 arrays in the targets' order, NaN where fewer than N-1 other
    tracers lie in the velocity window: ``angle_rad`` (rad) and ``d_n_mpc`` (projected
    physical Mpc) to the N-th neighbour, ``sigma_n`` (Mpc^-2), ``one_plus_delta`` (1+delta)."""

    angle_rad: np.ndarray
    d_n_mpc: np.ndarray
    sigma_n: np.ndarray
    one_plus_delta: np.ndarray


def projected_overdensity(
    t_xyz: np.ndarray,
    t_z: np.ndarray,
    t_counterpart: np.ndarray,
    tr_xyz: np.ndarray,
    tr_z: np.ndarray,
    angular_diameter_distance: Callable[[np.ndarray], np.ndarray],
    *,
    n_neighbor: int = N_NEIGHBOUR,
    velocity_window_kms: float = VELOCITY_WINDOW_KMS,
    z_window: float = Z_WINDOW,
    workers: int = -1,
    match_radius_arcsec: float = 1.0,
) -> ProjectedOverdensity:
    """The paper's projected overdensity of ``M`` targets among tracers (Section 7.1).

    D_N is the angle to the (N-1)-th nearest tracer other than the target's counterpart within
    ``c |z_tracer - z_target| <= velocity_window_kms`` (:func:`nth_neighbour_angle`: the
    counterpart is the N-th's first) times ``angular_diameter_distance(z_target)``;
    Sigma_N from :func:`surface_density`; 1+delta from :func:`median_normalised` over the
    targets whose Sigma_N is defined.

    ``t_xyz`` ``(M, 3)`` unit vectors, ``t_z`` ``(M,)`` finite redshifts, ``t_counterpart``
    ``(M,)`` int64 (see :func:`nth_neighbour_angle`); ``tr_xyz`` ``(K, 3)`` and ``tr_z``
    ``(K,)`` sorted by z; ``angular_diameter_distance``: maps ``(m,)`` redshifts to Mpc
    (float64), e.g. from an astropy cosmology.
    """
    angle = nth_neighbour_angle(t_xyz, t_z, t_counterpart, tr_xyz, tr_z, n_neighbor - 1,
                                velocity_window_kms / C_KMS, workers, match_radius_arcsec)
    d_n = np.full(len(t_z), np.nan)
    found = np.isfinite(angle)
    if found.any():
        d_n[found] = angle[found] * angular_diameter_distance(t_z[found])
    sigma = surface_density(d_n, n_neighbor)
    return ProjectedOverdensity(angle, d_n, sigma, median_normalised(t_z, sigma, z_window))
