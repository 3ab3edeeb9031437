"""Intervals calibrated within groups: group-conditional split conformal by quantile regression
on group indicators (Gibbs, Cherian & Candès 2023, "Conformal prediction with conditional
guarantees"; Jung et al. 2022, "Batch multivalid conformal prediction").

The score of a calibration row is its standardized signed residual ``s = (y - mu) / sd`` under
the model's Gaussian predictive ``(mu, sd)`` (``y``, ``mu``, ``sd`` in dex). Each *group
variable* (e.g. ``p_cnn``, ``1+delta5``, redshift, predicted log M*) is cut into bins at
quantiles of its calibration values; a row's features are

    phi(x) = [1, one-hot bin of variable 1 (first bin dropped), ..., of variable V]

(plus a "missing" bin per variable where enough calibration rows lack the value). For each
quantile level tau the coefficients ``b`` minimise the pinball loss
``sum_i w_i rho_tau(s_i - phi_i . b)`` over the calibration rows. At the optimum the
sub-gradient condition says that, for every function ``f`` in the span of ``phi`` (each bin's
indicator is one), ``sum_i w_i f(x_i) (1[s_i < phi_i . b] - tau)`` lies within the weight of
the (at most ``dim(phi)``) rows fitted exactly: **in every bin of every variable at once**
(groups that overlap) the fraction of calibration rows below the fitted quantile is tau, up to
about ``dim(phi) / n_bin``. By exchangeability of the calibration and new rows this carries
over to new rows (Gibbs et al., Theorem 2): coverage holds within each group, not only on
average over the survey. A new row's interval at level ``L`` is

    [mu + q_lo(x) * sd, mu + q_hi(x) * sd],   q = phi(x) . b at tau = (1 - L) / 2, (1 + L) / 2

so a group whose predictions are biased gets a shifted (asymmetric) interval and a group whose
``sd`` is too small a wider one. Offsets are made monotone in tau at apply time (sorted:
the rearrangement of Chernozhukov, Fernández-Val & Galichon 2010), so ``q_lo <= q_hi``.

Censored rows (``upper_bound``): for an H I upper limit ``y <= limit`` the score is only an
upper bound, ``s <= (limit - mu) / sd``. Such a row enters as ``n_imputations`` copies of
weight ``1 / n_imputations`` at stratified draws of the standard normal truncated above at its
bound (multiple imputation by the model's own predictive tail): the coverage of censored rows
rests on the Gaussian predictive being right *below the limit*.

Missing group values: a variable whose value is NaN in at least ``min_bin_rows`` calibration
rows gets its own "missing" bin; with fewer, those rows are left out of the fit (counted in
``n_dropped``) and there is no missing bin. A new row whose value is NaN uses the missing bin
where there is one; otherwise, for that variable, the most conservative of its bins: the
smallest bin effect for tau < 0.5, the largest for tau > 0.5 (the calibration-weighted mean
for tau = 0.5), so its interval contains the interval of every bin it could be in and covers
at the stated level whichever that is.

The quantile regressions are linear programs solved by HiGHS (``scipy.optimize.linprog``), in
their dual form (``dim(phi)`` equality rows, one bounded variable per calibration row; the
coefficients are the equality constraints' marginals), many times faster than the primal form
(timings: docs/science/intervals.md, ``benchmarks/bench_intervals.py``). Each censored row
adds ``n_imputations`` rows to the program.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sparse
from scipy.optimize import linprog
from scipy.stats import truncnorm

from hicatalog.errors import ConfigError, InputError, ModelError
from hicatalog.metrics import Z_84

__all__ = ["GROUP_QUANTILES", "METHOD", "MIN_BIN_ROWS", "CENSORED_ITERATIONS",
           "fit_group_quantiles", "fit_censored_quantiles", "apply_group_quantiles"]

#: The quantile levels fitted by default: the bounds of the 95% and 68% central intervals.
GROUP_QUANTILES: tuple[float, ...] = (0.025, 0.16, 0.84, 0.975)

#: The record's ``method``.
METHOD = "group_quantile_regression"

#: The fewest calibration rows a bin may hold: 40 = 1 / 0.025, so that a bin expects at least
#: one row beyond the 2.5% / 97.5% quantiles; below that a bin's 95% bounds are not estimated
#: but extrapolated from the other bins. With 5 quantile bins a variable needs >= 200 rows.
MIN_BIN_ROWS = 40

_BELOW_TOL = 1e-9  # a score within this of its fitted quantile counts as on it, not below


def _column(name: str, values: Any, n: int | None, where: str) -> np.ndarray:
    """``values`` as a float64 ``(n,)`` array; InputError naming ``name`` otherwise."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {name} must be numbers, got {np.asarray(values).dtype}: "
                         f"{exc}") from None
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = "(N,)" if n is None else f"({n},)"
        raise InputError(f"{where}: {name} must have shape {want}, got {arr.shape}")
    return arr


def _bin_edges(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior edges at the ``k / n_bins`` quantiles of the finite ``x`` (values of ``x``;
    repeated values merged, so a variable with few distinct values gets fewer bins); a variable
    with at most ``n_bins`` distinct values (a flag, a class) gets one bin per value. Bin ``j``
    is ``(edges[j-1], edges[j]]``; no bin is empty."""
    distinct = np.unique(x)
    if distinct.size <= n_bins:
        return distinct[:-1]
    levels = np.arange(1, n_bins) / n_bins
    edges = np.unique(np.quantile(x, levels, method="inverted_cdf")) if n_bins > 1 else np.empty(0)
    while edges.size and not (x > edges[-1]).any():  # the last bin (edge, inf) would be empty
        edges = edges[:-1]
    return edges


def _bin_index(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each value's bin ``0 .. len(edges)``; NaN gets ``-1``."""
    index = np.searchsorted(edges, x, side="left")
    return np.where(np.isnan(x), -1, index)


def _design(n: int, bins: Sequence[np.ndarray], n_regular: Sequence[int],
            missing: Sequence[bool]) -> sparse.csr_matrix:
    """phi: ``(n, 1 + sum_v (n_regular_v - 1 + missing_v))`` 0/1, the intercept and each
    variable's bins but its first (``bins[v]``: the bin ``0 .. n_regular_v - 1``, or -1 for
    missing). A row with -1 in a variable without a missing bin has no indicator there."""
    rows, cols = [np.arange(n)], [np.zeros(n, dtype=np.int64)]
    offset = 1
    for b, k, has_missing in zip(bins, n_regular, missing, strict=True):
        col = np.where(b == -1, k - 1 if has_missing else -1, b - 1)  # missing: after bin k-1
        use = col >= 0
        rows.append(np.flatnonzero(use))
        cols.append(offset + col[use])
        offset += k - 1 + int(has_missing)
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sparse.csr_matrix((np.ones(r.size), (r, c)), shape=(n, offset))


def _quantile_regression(phi: sparse.csr_matrix, s: np.ndarray, w: np.ndarray,
                         tau: float) -> np.ndarray:
    """Coefficients ``(P,)`` minimising ``sum_i w_i rho_tau(s_i - phi_i . b)``.

    Solved as the dual LP ``max s . d  s.t.  phi^T d = 0,  -(1 - tau) w <= d <= tau w``, whose
    equality constraints' multipliers are ``-b`` (HiGHS' sign convention for a minimisation)."""
    res = linprog(-s, A_eq=phi.T.tocsr(), b_eq=np.zeros(phi.shape[1]),
                  bounds=np.column_stack([-(1.0 - tau) * w, tau * w]), method="highs")
    if res.status != 0:
        raise RuntimeError(f"quantile regression at tau={tau}: HiGHS did not solve the linear "
                           f"program ({res.status}: {res.message})")
    return -np.asarray(res.eqlin.marginals, dtype=np.float64)


def _check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    q = tuple(float(t) for t in quantiles)
    if not q or any(not 0.0 < t < 1.0 for t in q) or bool((np.diff(q) <= 0).any()):
        raise ConfigError(f"quantiles must be increasing levels strictly between 0 and 1, got "
                          f"{list(quantiles)}", params=("quantiles",))
    return q


def fit_group_quantiles(score: np.ndarray, features: Mapping[str, np.ndarray], *,
                        upper_bound: np.ndarray | None = None, n_bins: int = 5,
                        quantiles: Sequence[float] = GROUP_QUANTILES,
                        n_imputations: int = 20, min_bin_rows: int = MIN_BIN_ROWS,
                        seed: int = 0,
                        tail: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Fit the group-conditional quantiles of ``score`` on calibration rows.

    ``score``: ``(N,)`` float, the standardized signed residual ``(y - mu) / sd`` of each
    calibration row (dimensionless); NaN rows are left out (counted in ``n_dropped``).
    ``features``: ``{name: (N,) float}``, the group variables (any units; NaN = missing), in the
    order the record keeps; ``{}`` fits one global quantile per level (plain split conformal).
    ``upper_bound``: ``(N,)`` bool or None; True where ``score`` is only an upper bound on the
    row's score (an H I upper limit: ``(limit - mu) / sd``), imputed by ``n_imputations``
    stratified draws of the standard normal truncated above there (seeded by ``seed``), or,
    with ``tail`` = ``(loc, scale)`` (``(N,)`` float each), of ``N(loc, scale^2)`` truncated
    there: the score distribution a previous fit gives each row (:func:`fit_censored_quantiles`
    iterates so).
    ``n_bins``: quantile bins per variable (fewer where values repeat). ``quantiles``: the
    increasing levels tau fitted. ``min_bin_rows``: the fewest calibration rows any bin may
    hold (:data:`MIN_BIN_ROWS`).

    Returns a JSON-serialisable record (plain lists, ints, floats, strings) for a model card's
    ``calibration``: ``method`` (:data:`METHOD`), ``quantiles``, ``variables`` (names, in order),
    ``bins`` ``{name: {"edges": interior edges (bin j is (edges[j-1], edges[j]]), "missing_bin":
    bool, "rows": calibration rows per bin (the missing bin last), "fraction_below": [per
    quantile [per bin]], the weighted in-sample fraction of scores below the fit (a
    diagnostic: each should be close to its tau)}}``, ``features`` (the names of phi's columns:
    ``"intercept"``, ``"name[j]"``, ``"name[missing]"``), ``coefficients`` ``[per quantile
    [per feature]]``, ``n_rows`` (rows fitted), ``n_censored`` (of them, upper bounds),
    ``n_dropped``, ``n_imputations``, ``seed``.

    Raises
    ------
    InputError: arrays of the wrong shape or type, an infinite score, or a variable with fewer
        than ``min_bin_rows`` calibration rows in a bin (the message names the counts).
    ConfigError: bad ``quantiles``, ``n_bins``, ``n_imputations`` or ``min_bin_rows``.
    """
    where = "fit_group_quantiles"
    taus = _check_quantiles(quantiles)
    for name, value, low in (("n_bins", n_bins, 1), ("n_imputations", n_imputations, 1),
                             ("min_bin_rows", min_bin_rows, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{where}: {name} must be an integer >= {low}, got {value!r}",
                              params=(name,))
    s, cens, x, tail_all = _fit_inputs(score, upper_bound, features, tail, where)
    n_all, names = s.shape[0], list(x)
    keep = ~np.isnan(s)
    missing = {}
    for k in names:  # a missing bin needs as many rows as any other bin
        n_missing = int((np.isnan(x[k]) & keep).sum())
        missing[k] = n_missing >= min_bin_rows
        if 0 < n_missing and not missing[k]:
            keep &= ~np.isnan(x[k])
    s, cens = s[keep], cens[keep]
    loc, scale = tail_all[0][keep], np.maximum(tail_all[1][keep], 1e-6)
    x = {k: v[keep] for k, v in x.items()}
    n = int(s.shape[0])
    edges, bins, n_regular, counts = _binned(x, missing, n, n_bins, min_bin_rows, where)

    s_fit, w_fit, order = _imputed(s, cens, loc, scale, int(n_imputations), seed)
    k_imp = int(n_imputations)
    bins_fit = [b[order] for b in bins]
    phi = _design(s_fit.shape[0], bins_fit, n_regular, [missing[k] for k in names])

    coef = [_quantile_regression(phi, s_fit, w_fit, tau) for tau in taus]

    below = [(s_fit < phi @ c - _BELOW_TOL) * w_fit for c in coef]  # weight below, per row
    record_bins = {k: {"edges": [float(e) for e in edges[k]], "missing_bin": bool(missing[k]),
                       "rows": counts[k],
                       "fraction_below": _fraction_below(b, nr, missing[k], below, w_fit)}
                   for k, b, nr in zip(names, bins_fit, n_regular, strict=True)}
    feature_names = ["intercept"]
    for k, nr in zip(names, n_regular, strict=True):
        feature_names += [f"{k}[{j}]" for j in range(1, nr)] + ([f"{k}[missing]"] if missing[k]
                                                                else [])
    return {"method": METHOD, "quantiles": list(taus), "variables": names, "bins": record_bins,
            "features": feature_names, "coefficients": [[float(v) for v in c] for c in coef],
            "n_rows": n, "n_censored": int(cens.sum()), "n_dropped": int(n_all - n),
            "n_imputations": k_imp, "seed": int(seed)}


def _fraction_below(b: np.ndarray, n_regular: int, missing: bool, below: list[np.ndarray],
                    w: np.ndarray) -> list[list[float]]:
    """Per quantile, per bin (the missing bin last): the weight below the fit over the bin's."""
    groups = [b == j for j in range(n_regular)] + ([b == -1] if missing else [])
    return [[float(wb[g].sum() / w[g].sum()) for g in groups] for wb in below]


def _imputed(s: np.ndarray, cens: np.ndarray, loc: np.ndarray, scale: np.ndarray, k_imp: int,
             seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows the quantile regression fits: ``(scores, weights, source row of each)``; each
    censored row becomes ``k_imp`` copies of weight ``1 / k_imp`` at stratified draws of
    ``N(loc, scale^2)`` truncated above at its bound (seeded by ``seed``)."""
    rng = np.random.default_rng(seed)
    obs = ~cens
    u = (np.arange(k_imp)[None, :] + rng.random((int(cens.sum()), 1))) / k_imp
    lc, sc = loc[cens][:, None], scale[cens][:, None]
    draws = lc + sc * truncnorm.ppf(u, -np.inf, (s[cens][:, None] - lc) / sc)  # (n_censored, K)
    s_fit = np.concatenate([s[obs], draws.ravel()])
    w_fit = np.concatenate([np.ones(int(obs.sum())), np.full(draws.size, 1.0 / k_imp)])
    order = np.concatenate([np.flatnonzero(obs), np.repeat(np.flatnonzero(cens), k_imp)])
    return s_fit, w_fit, order


def _fit_inputs(score: Any, upper_bound: Any, features: Mapping[str, Any],
                tail: tuple[np.ndarray, np.ndarray] | None, where: str
                ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """:func:`fit_group_quantiles`' arrays, checked: ``(score, censored, features, (loc,
    scale))``, all ``(N,)`` float64 (bool for censored). InputError for an infinite score or
    a wrong shape."""
    s = _column("score", score, None, where)
    n_all = s.shape[0]
    if np.isinf(s).any():
        raise InputError(f"{where}: {int(np.isinf(s).sum())} of {n_all} scores are infinite "
                         f"(a predictive sd of 0?); expected finite scores or NaN")
    cens = (np.zeros(n_all, dtype=bool) if upper_bound is None
            else np.asarray(upper_bound, dtype=bool))
    if cens.shape != (n_all,):
        raise InputError(f"{where}: upper_bound must have shape ({n_all},), got {cens.shape}")
    x = {str(k): _column(f"features[{k!r}]", v, n_all, where) for k, v in features.items()}
    loc, scale = ((np.zeros(n_all), np.ones(n_all)) if tail is None else
                  (_column("tail loc", tail[0], n_all, where),
                   _column("tail scale", tail[1], n_all, where)))
    return s, cens, x, (loc, scale)


def _binned(x: dict[str, np.ndarray], missing: dict[str, bool], n: int, n_bins: int,
            min_bin_rows: int, where: str
            ) -> tuple[dict[str, np.ndarray], list[np.ndarray], list[int], dict[str, list[int]]]:
    """Each variable's ``(edges, bin of every row, regular bins, rows per bin)``; InputError
    (one line, naming the counts) when a bin holds fewer than ``min_bin_rows`` rows."""
    edges, bins, n_regular, counts = {}, [], [], {}
    for k, v in x.items():
        finite = v[~np.isnan(v)]
        if finite.size == 0:
            raise InputError(f"{where}: variable {k!r} has no value in the {n} calibration rows")
        edges[k] = _bin_edges(finite, n_bins)
        b = _bin_index(v, edges[k])
        bins.append(b)
        n_regular.append(edges[k].size + 1)
        counts[k] = [int((b == j).sum()) for j in range(edges[k].size + 1)]
        counts[k] += [int((b == -1).sum())] if missing[k] else []
    if n < min_bin_rows or any(min(c) < min_bin_rows for c in counts.values()):
        per = "; ".join(f"{k}: {c}" for k, c in counts.items()) or "no group variables"
        raise InputError(
            f"{where}: too few calibration rows for the bins: {n} rows, and every bin needs >= "
            f"{min_bin_rows} (rows per bin, missing last: {per}); use fewer n_bins or more "
            f"calibration rows", params=("n_bins",))
    return edges, bins, n_regular, counts


#: Most self-consistency iterations of :func:`fit_censored_quantiles`.
CENSORED_ITERATIONS = 20


def fit_censored_quantiles(score: np.ndarray, features: Mapping[str, np.ndarray], *,
                           upper_bound: np.ndarray, quantiles: Sequence[float] = GROUP_QUANTILES,
                           n_iterations: int = CENSORED_ITERATIONS, tol: float = 0.01,
                           **options: Any) -> dict[str, Any]:
    """:func:`fit_group_quantiles` whose censored rows take the score distribution of their
    own groups, not the standard normal: the self-consistency (EM) iteration for censored data
    (Efron 1967; Turnbull 1976) in the group model. The first fit imputes from ``N(0, 1)``;
    each next one from ``N(loc, scale^2)`` truncated at the row's bound, ``loc`` the row's
    fitted median (the mean of its 0.16 and 0.84 quantiles when 0.5 is not fitted) and
    ``scale`` = (q_0.84 - q_0.16) / (2 x 0.9945), until the fitted quantiles of the
    calibration rows move by less than ``tol`` on average or after ``n_iterations`` fits (EM
    is slow where most rows of a group are censored: the quantiles keep creeping down by a
    little each fit). So a model
    biased for galaxies below their limits is corrected as far as the limits and the values
    measured in the same groups demand, where the standard normal tail would assume it is
    right. ``quantiles`` must hold 0.16 and 0.84; ``options``: those of
    :func:`fit_group_quantiles`. The record adds ``iterations`` (fits made) and
    ``converged`` (bool)."""
    taus = _check_quantiles(quantiles)
    if 0.16 not in taus or 0.84 not in taus:
        raise ConfigError(f"fit_censored_quantiles: quantiles must include 0.16 and 0.84, got "
                          f"{list(taus)}", params=("quantiles",))
    lo, hi = taus.index(0.16), taus.index(0.84)
    mid = taus.index(0.5) if 0.5 in taus else None
    tail, previous, record = None, None, {}
    for it in range(1, int(n_iterations) + 1):
        record = fit_group_quantiles(score, features, upper_bound=upper_bound,
                                     quantiles=taus, tail=tail, **options)
        q = apply_group_quantiles(record, features)
        if previous is not None and np.nanmean(np.abs(q - previous)) < tol:
            return {**record, "iterations": it, "converged": True}
        loc = q[:, mid] if mid is not None else (q[:, lo] + q[:, hi]) / 2
        tail, previous = (loc, np.maximum((q[:, hi] - q[:, lo]) / (2 * Z_84), 1e-3)), q
    return {**record, "iterations": int(n_iterations), "converged": False}


def apply_group_quantiles(record: Mapping[str, Any],
                          features: Mapping[str, np.ndarray]) -> np.ndarray:
    """The standardized offsets of new rows: ``(N, n_quantiles)`` float64, ``q[:, i]`` the
    fitted quantile ``record["quantiles"][i]`` of the score, non-decreasing along axis 1; the
    interval at level L is ``[mu + q_lo * sd, mu + q_hi * sd]`` (dex).

    ``record``: what :func:`fit_group_quantiles` returned (or its JSON round trip).
    ``features``: ``{name: (N,) float}`` holding every variable of ``record["variables"]``
    (others are ignored). NaN uses the variable's missing bin, or where it has none the most
    conservative of its bins (the module's docstring).

    Raises
    ------
    ModelError: ``record`` is not a group-quantile record.
    InputError: a variable of the record is not in ``features`` (named), or arrays of the
        wrong shape or type.
    """
    where = "apply_group_quantiles"
    if not isinstance(record, Mapping) or record.get("method") != METHOD:
        got = record.get("method") if isinstance(record, Mapping) else type(record).__name__
        raise ModelError(f"{where}: expected a {METHOD!r} record, got method {got!r}")
    names = list(record["variables"])
    absent = [k for k in names if k not in features]
    if absent:
        raise InputError(f"{where}: the calibration groups by {names}; features lack "
                         f"{absent} (given: {sorted(features)})")
    n = None
    coef = np.asarray(record["coefficients"], dtype=np.float64)  # (Q, P)
    taus = np.asarray(record["quantiles"], dtype=np.float64)
    bins, n_regular, missing, unknown = [], [], [], []
    for k in names:
        x = _column(f"features[{k!r}]", features[k], n, where)
        n = x.shape[0]
        spec = record["bins"][k]
        b = _bin_index(x, np.asarray(spec["edges"], dtype=np.float64))
        bins.append(b)
        n_regular.append(len(spec["edges"]) + 1)
        missing.append(bool(spec["missing_bin"]))
        unknown.append((b == -1) & (not spec["missing_bin"]))
    if not names:  # one global quantile per level: the rows are those of any feature given
        if not features:
            raise InputError(f"{where}: the record has no group variables; give any (N,) array "
                             f"in features to say how many rows")
        n = _column("features", next(iter(features.values())), None, where).shape[0]
    phi = _design(n, bins, n_regular, missing)
    offsets = np.asarray(phi @ coef.T)  # (N, Q): unknown values add nothing yet

    start = 1
    for k, nr, has_missing, unk in zip(names, n_regular, missing, unknown, strict=True):
        effects = np.concatenate([np.zeros((coef.shape[0], 1)), coef[:, start:start + nr - 1]],
                                 axis=1)  # (Q, bins): the first bin's effect is 0
        start += nr - 1 + int(has_missing)
        if not unk.any():
            continue
        share = np.asarray(record["bins"][k]["rows"][:nr], dtype=np.float64)
        fill = np.where(taus < 0.5, effects.min(axis=1),
                        np.where(taus > 0.5, effects.max(axis=1), effects @ share / share.sum()))
        offsets[unk] += fill
    return np.sort(offsets, axis=1)
