"""Nearest-neighbour geometry on the sky shared by the mock's true overdensity and the
catalog's delta5 (paper Section 7.1): unit vectors, the N-th neighbour within a velocity
window (KD-tree, exact, O(N log N)) and a sliding-window median in redshift.

Shared here, below both stages, so that the mock's truth and the catalog's measurement use
one estimator (DESIGN: a module imports only from the stages before it).
"""

from __future__ import annotations

import heapq

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["chord_to_angle", "nth_neighbour_angle", "sliding_median", "unit_vectors"]


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
