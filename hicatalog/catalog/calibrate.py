"""Survey-wide columns, and the calibration they come from (``hicatalog calibrate``).

The networks give, per galaxy, ``m_pred`` and a Gaussian error bar ``m_pred_err`` (the
regression) and ``p_cnn`` (the PR network). Neither is calibrated *within* groups of galaxies:
an error bar right on average can be too narrow for gas-poor galaxies and too wide for
gas-rich ones, and ``p_cnn`` is trained on a 50/50 split of detections and non-detections while
a survey's detection rate is not 50% and depends on distance. The calibration fixes both on a
labelled **calibration set used for nothing else** (the demo renders one of its own):

1. The calibration cutouts are built into a catalog by :func:`hicatalog.catalog.build.make_catalog`
   with the very models and options of the survey build, so every input of the fit (p_cnn,
   1+delta5, z, log M*) is what the survey build will have.
2. **Intervals within groups** (:func:`hicatalog.models.intervals.fit_censored_quantiles`):
   the scores ``s = (M - m_pred) / m_pred_err`` (for an upper limit, an upper bound on ``s``,
   imputed self-consistently from its groups' own distribution) are fitted at the quantiles
   :data:`QUANTILES` by quantile regression on the quintile bins of :data:`GROUP_VARIABLES`,
   so that coverage holds in every bin of every variable at once. The median (0.5) is the
   survey build's bias correction. Upper limits only inform where they lie below the
   prediction: a calibration set needs H I data deeper than the survey's detection limit
   (an xGASS-like sample; the demo's is the mock's ``survey_deep``).
3. **p_detect**: a logistic regression of the ``detected`` label on ``logit(p_cnn)``,
   ``log10 z`` and ``(log10 z)^2`` (:data:`DETECT_FEATURES`) over the calibration set, at its
   own detection rate: the probability that an ALFALFA-like survey detects the galaxy, given
   its image and its distance.

The record (``OUT/calibration.json``, :data:`CALIBRATION_FILE`) names both models; a build
with ``--calibration OUT`` and other models is refused. Applying it is
:func:`survey_columns` (the build's staging writer calls it for every shard):

- ``m_pred`` = ``mu + q_0.5 sd``, ``m_lo68``/``m_hi68`` = ``mu + q_0.16 sd`` / ``mu + q_0.84 sd``,
  ``m_lo95``/``m_hi95`` at 0.025 / 0.975 (``mu``, ``sd``: the network's prediction and error
  bar), ``m_pred_err`` = ``(m_hi68 - m_lo68) / (2 x 0.9945)``, the standard deviation of a
  Gaussian with that central 68% interval; without a calibration the interval is the
  Gaussian ``m_pred -+ {1, 1.96} m_pred_err`` and the row is flagged ``interval_gaussian``;
- ``p_detect`` (null and flagged ``no_p_detect`` without a calibration, a redshift or p_cnn);
- with a stellar mass (``mstar_column`` of the cutouts, log10 Msun): ``log_mstar``,
  ``log_mhi_pred`` = ``m_pred + log_mstar``, ``log_mhi_pred_err`` =
  ``sqrt(m_pred_err^2 + mstar_err_dex^2)`` and ``mhi_expect`` = ``10^(log_mhi_pred + ln(10)/2
  log_mhi_pred_err^2)`` (Msun): the mean of M_HI for a Gaussian error in dex, what stacks and
  H I density sums add (10^log_mhi_pred is the median, lower by that factor: x1.27 at 0.3 dex).
  Without one they are null, flagged ``no_mstar``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.optimize import minimize
from scipy.special import expit

from hicatalog import __version__, storage
from hicatalog.errors import ConfigError, InputError, ModelError
from hicatalog.metrics import Z_84, Z_95, log10_lognormal_mean

log = logging.getLogger("hicatalog.catalog.calibrate")

__all__ = [
    "CALIBRATION_FILE", "GROUP_VARIABLES", "QUANTILES", "DETECT_FEATURES", "SURVEY_COLUMNS",
    "MSTAR_ERR_DEX", "calibrate", "fit_calibration", "fit_p_detect", "load_calibration",
    "survey_columns", "show_result",
]

#: The calibration record in the calibration directory.
CALIBRATION_FILE = "calibration.json"
#: The group variables of the intervals: catalog columns (``log_mstar`` from ``mstar_column``).
GROUP_VARIABLES = ("p_cnn", "one_plus_delta5", "z", "log_mstar")
#: Quantiles of the standardized residual fitted per group: 95% and 68% bounds and the median.
QUANTILES = (0.025, 0.16, 0.5, 0.84, 0.975)
#: The features of p_detect's logistic regression (after a constant).
DETECT_FEATURES = ("logit_p_cnn", "log10_z", "log10_z_squared")
#: Default error of a catalogued stellar mass (dex): MPA-JHU / NSA masses, ~0.1 dex.
MSTAR_ERR_DEX = 0.1
#: The columns :func:`survey_columns` returns, in the catalog's order.
SURVEY_COLUMNS = ("m_pred", "m_pred_err", "m_lo68", "m_hi68", "m_lo95", "m_hi95", "p_detect",
                  "log_mstar", "log_mhi_pred", "log_mhi_pred_err", "mhi_expect", "flags")
#: Below this share of upper limits under the network's prediction, the calibration warns that
#: its limits are too shallow to show the errors below them.
INFORMATIVE_LIMITS = 0.1
#: Fewest calibration rows with an H I value or limit, and of each detection class.
MIN_ROWS, MIN_CLASS_ROWS = 200, 20
_P_CLIP = 1e-6


def _detect_design(p_cnn: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``(N, 4)`` float64: a constant and :data:`DETECT_FEATURES` (NaN where p_cnn or z is
    missing or z <= 0)."""
    p = np.clip(np.asarray(p_cnn, dtype=np.float64), _P_CLIP, 1 - _P_CLIP)
    with np.errstate(invalid="ignore", divide="ignore"):
        lz = np.where(np.asarray(z, dtype=np.float64) > 0, np.log10(z), np.nan)
    return np.stack([np.ones_like(p), np.log(p / (1 - p)), lz, lz**2], axis=1)


def fit_p_detect(p_cnn: np.ndarray, z: np.ndarray, detected: np.ndarray) -> dict[str, Any]:
    """The logistic regression of ``detected`` (bool ``(N,)``) on :data:`DETECT_FEATURES` of
    ``p_cnn`` and ``z`` (``(N,)``), by maximum likelihood (BFGS, a 1e-6 ridge); rows with a
    missing input are left out. Returns ``{"features", "coef" (4 floats, the constant first),
    "n", "n_detected", "detection_rate", "log_loss"}`` (nats per row). InputError for fewer
    than :data:`MIN_CLASS_ROWS` of either class."""
    x = _detect_design(p_cnn, z)
    y = np.asarray(detected, dtype=np.float64)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n_pos = int(y.sum())
    if min(n_pos, len(y) - n_pos) < MIN_CLASS_ROWS:
        raise InputError(f"p_detect needs at least {MIN_CLASS_ROWS} detected and undetected "
                         f"calibration rows with p_cnn and z; got {n_pos} and {len(y) - n_pos}")
    mean, scale = x[:, 1:].mean(axis=0), x[:, 1:].std(axis=0) + 1e-12
    xs = np.column_stack([x[:, 0], (x[:, 1:] - mean) / scale])

    def loss(b: np.ndarray) -> tuple[float, np.ndarray]:
        t = xs @ b
        nll = np.mean(np.logaddexp(0.0, t) - y * t) + 1e-6 * b @ b
        return float(nll), xs.T @ (expit(t) - y) / len(y) + 2e-6 * b

    res = minimize(loss, np.zeros(4), jac=True, method="BFGS")
    b = res.x.copy()
    coef = np.concatenate([[b[0] - np.sum(b[1:] * mean / scale)], b[1:] / scale])
    return {"features": ["const", *DETECT_FEATURES], "coef": coef.tolist(), "n": int(len(y)),
            "n_detected": n_pos, "detection_rate": float(y.mean()), "log_loss": float(res.fun)}


def _p_detect(record: dict[str, Any] | None, p_cnn: np.ndarray, z: np.ndarray) -> np.ndarray:
    if not record:
        return np.full(len(p_cnn), np.nan)
    return expit(_detect_design(p_cnn, z) @ np.asarray(record["coef"], dtype=np.float64))


def fit_calibration(table: pa.Table, *, n_bins: int = 5, seed: int = 0) -> dict[str, Any]:
    """Fit the intervals and p_detect on ``table``: catalog rows (``status``, ``m_pred``,
    ``m_pred_err``, the :data:`GROUP_VARIABLES` present) joined with their labels ``m_true``
    (dex: the value, or the limit where ``upper_limit``), ``upper_limit`` (bool, optional)
    and ``detected`` (bool, optional: without it there is no p_detect).

    Returns ``{"intervals": the group-quantile record, "p_detect": the logistic record or
    None, "n_rows", "n_limits", "limits_below_prediction"}`` (the share of the limits that lie
    below the network's prediction, the informative ones: a warning below
    :data:`INFORMATIVE_LIMITS`). The intervals are :func:`~hicatalog.models.intervals.fit_censored_quantiles`'
    (limits imputed self-consistently). InputError (one line) for fewer than :data:`MIN_ROWS`
    rows with a prediction, an error bar and an H I value or limit.
    """
    from hicatalog.models.intervals import fit_censored_quantiles

    def col(name: str, fill: Any = np.nan) -> np.ndarray:
        if name not in table.column_names:
            return np.full(table.num_rows, fill)
        return table[name].fill_null(fill).to_numpy(zero_copy_only=False)

    ok = col("status", "") == "ok"
    mu, sd, y = (col(c).astype(np.float64) for c in ("m_pred", "m_pred_err", "m_true"))
    limit = col("upper_limit", False).astype(bool)
    use = ok & np.isfinite(mu) & np.isfinite(sd) & (sd > 0) & np.isfinite(y)
    if use.sum() < MIN_ROWS:
        raise InputError(
            f"calibration: {int(use.sum())} rows with a prediction, an error bar and an H I "
            f"value or limit ({int((use & limit).sum())} limits), fewer than {MIN_ROWS}; the "
            "regression needs a gaussian head or an ensemble, the labels m_true")
    features = {v: col(v).astype(np.float64)[use] for v in GROUP_VARIABLES
                if v in table.column_names}
    score = (y[use] - mu[use]) / sd[use]
    lim = limit[use]
    below = float(np.mean(score[lim] < 0)) if lim.any() else None
    if below is not None and below < INFORMATIVE_LIMITS:
        log.warning("only %.0f%% of the calibration set's %d upper limits lie below the network's "
                    "prediction: they say little about galaxies below them, whose intervals then "
                    "rest on the network's own tail; calibrate on H I data deeper than the "
                    "survey's limit (an xGASS-like sample)", 100 * below, int(lim.sum()))
    intervals = fit_censored_quantiles(score, features, upper_bound=lim, n_bins=n_bins,
                                       quantiles=QUANTILES, seed=seed)
    p_detect = None
    if "detected" in table.column_names:
        det = table["detected"].is_valid().to_numpy(zero_copy_only=False) & ok
        p_detect = fit_p_detect(col("p_cnn")[det], col("z")[det], col("detected", False)[det])
    return {"intervals": intervals, "p_detect": p_detect, "n_rows": int(use.sum()),
            "n_limits": int(lim.sum()), "limits_below_prediction": below}


def _flags(has: np.ndarray, lacks: list[tuple[np.ndarray, str]]) -> np.ndarray:
    """Per row (object ``(N,)``): the comma list of the names whose condition holds, in order,
    or None (also for rows without a prediction, ``~has``)."""
    text = np.full(len(has), "", dtype=object)
    for cond, name in lacks:
        text = np.where(cond, np.where(text == "", name, text + "," + name), text)
    return np.where(has & (text != ""), text, None)


def survey_columns(pred: dict[str, np.ndarray], calibration: dict[str, Any] | None, *,
                   mstar_err_dex: float = MSTAR_ERR_DEX) -> dict[str, np.ndarray]:
    """The survey-wide columns (:data:`SURVEY_COLUMNS`, see the module doc) of ``N`` rows.

    ``pred``: float ``(N,)`` arrays ``m_pred``, ``m_pred_err`` (dex; the network's), ``p_cnn``,
    ``z``, ``one_plus_delta5`` and ``log_mstar`` (log10 Msun; NaN or absent: no stellar
    mass); NaN where a row has no value. ``calibration``: the record of :func:`calibrate`
    (None: Gaussian intervals, no p_detect). Returns float64 arrays (NaN = null) and
    ``flags`` (object: a comma list of ``interval_gaussian``, ``no_p_detect``, ``no_mstar``,
    or None), all null for rows without a prediction.
    """
    n = len(pred["m_pred"])
    mu, sd = (np.asarray(pred[c], dtype=np.float64) for c in ("m_pred", "m_pred_err"))
    nan = np.full(n, np.nan)
    mstar = np.asarray(pred.get("log_mstar", nan), dtype=np.float64)
    has = np.isfinite(mu)
    if calibration is not None:
        from hicatalog.models.intervals import apply_group_quantiles

        feats = {v: np.asarray(pred.get(v, nan), dtype=np.float64)
                 for v in calibration["intervals"]["variables"]}
        q = apply_group_quantiles(calibration["intervals"], feats)  # (N, 5) standardized
        m, lo68, hi68, lo95, hi95 = (mu + q[:, k] * sd for k in (2, 1, 3, 0, 4))
        p_det = _p_detect(calibration.get("p_detect"), pred["p_cnn"], pred["z"])
    else:
        m, lo68, hi68, lo95, hi95 = mu, mu - Z_84 * sd, mu + Z_84 * sd, mu - Z_95 * sd, mu + Z_95 * sd
        p_det = nan
    err = (hi68 - lo68) / (2 * Z_84)
    lacks = [(np.full(n, calibration is None), "interval_gaussian"),
             (~np.isfinite(p_det), "no_p_detect"), (~np.isfinite(mstar), "no_mstar")]
    log_mhi = m + mstar
    log_mhi_err = np.sqrt(err**2 + mstar_err_dex**2)
    out = {"m_pred": m, "m_pred_err": err, "m_lo68": lo68, "m_hi68": hi68, "m_lo95": lo95,
           "m_hi95": hi95, "p_detect": p_det, "log_mstar": mstar, "log_mhi_pred": log_mhi,
           "log_mhi_pred_err": np.where(np.isfinite(log_mhi), log_mhi_err, np.nan),
           "mhi_expect": 10 ** log10_lognormal_mean(log_mhi, log_mhi_err)}
    out = {k: np.where(has, v, np.nan) for k, v in out.items()}
    out["flags"] = _flags(has, lacks)
    return out


def load_calibration(path: str, reg_model_id: str, pr_model_id: str) -> dict[str, Any]:
    """The record in ``path`` (a calibration directory or its ``calibration.json``), checked
    against the build's models. InputError when it cannot be read; ModelError when it was
    fitted for other models (its intervals and p_detect describe those models' errors)."""
    file = path if path.endswith(".json") else storage.join(path, CALIBRATION_FILE)
    try:
        record = json.loads(storage.read_bytes(file))
    except FileNotFoundError as e:
        raise InputError(f"calibration: no {CALIBRATION_FILE} at {file} (make one with "
                         "hicatalog calibrate)", params=("calibration",)) from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"calibration: {file} is not JSON: {e}", params=("calibration",)) from e
    want = {"regression": reg_model_id, "pr": pr_model_id}
    have = record.get("models", {})
    if {k: have.get(k) for k in want} != want:
        raise ModelError(f"calibration {file} was fitted for models {have}, this build uses "
                         f"{want}: calibrate again with these models", params=("calibration",))
    return record


def calibrate(cutouts: str, regression: str, pr: str, out: str, *,
              tracers: str | None = None, mstar_column: str | None = None,
              n_bins: int = 5, gpu: bool = False, precision: str = "auto",
              decode: str = "auto", tta: bool = True, batch_size: int = 64,
              actors: int | None = None, threads: int | None = None) -> dict[str, Any]:
    """Fit the calibration of the models ``regression`` and ``pr`` on the labelled cutout
    shards ``cutouts`` (a calibration set used for nothing else: ``m_true``, ``upper_limit``,
    ``detected``) and write it to ``out``/``calibration.json``; returns the record.

    The cutouts are built into ``out``/``catalog`` with :func:`~hicatalog.catalog.build.make_catalog`
    (``tracers``, ``mstar_column`` and the inference options as the survey build will use
    them), joined with their labels, and fitted with :func:`fit_calibration` (``n_bins``
    bins per group variable).

    Raises
    ------
    SchemaError / InputError / ModelError: as the build; labels without ``m_true``; too few
        rows to fit.
    """
    from hicatalog.catalog.build import make_catalog
    from hicatalog.catalog.reader import read_catalog
    from hicatalog.cutouts.shards import list_shards

    if n_bins < 2:
        raise ConfigError(f"n_bins must be >= 2, got {n_bins}", params=("n_bins",))
    shards = list_shards(cutouts)
    names = set(storage.read_parquet_schema(shards[0]).names)
    if "m_true" not in names:
        raise InputError(f"calibration cutouts {cutouts} have no m_true labels (columns: "
                         f"{sorted(names)})", params=("cutouts",))
    catalog_dir = storage.join(out, "catalog")
    manifest = make_catalog(cutouts, regression, pr, catalog_dir, tracers=tracers,
                            mstar_column=mstar_column, gpu=gpu, precision=precision,
                            decode=decode, tta=tta, batch_size=batch_size, actors=actors,
                            threads=threads)
    labels = storage.read_parquet(shards, ["object_id", *(c for c in ("m_true", "upper_limit",
                                                                        "detected") if c in names)])
    cat = read_catalog(catalog_dir)
    idx = pc.index_in(cat["object_id"], value_set=labels["object_id"])
    joined = cat
    for c in labels.column_names[1:]:
        joined = joined.append_column(c, labels[c].take(idx))
    record = fit_calibration(joined, n_bins=n_bins)
    record.update(models={k: manifest.models[k].model_id for k in ("regression", "pr")},
                  data=manifest.input.fingerprint,  # the build's fingerprint of the shards
                  cutouts=cutouts, mstar_column=mstar_column, code_version=__version__)
    storage.write_json_atomic(storage.join(out, CALIBRATION_FILE), record)
    log.info("calibration of %s written to %s: %d rows (%d limits)", record["models"], out,
             record["n_rows"], record["n_limits"])
    return record


def show_result(record: dict[str, Any], params: dict[str, Any]) -> None:
    """Print what ``hicatalog calibrate`` fitted (one line) and where it is."""
    det = record.get("p_detect") or {}
    print(f"calibration of {record['models']['regression']} + {record['models']['pr']}: "
          f"{record['n_rows']} rows ({record['n_limits']} upper limits), intervals in "
          f"{len(record['intervals']['variables'])} group variables"
          + (f", p_detect on {det['n']} rows (detection rate {det['detection_rate']:.3f})"
             if det else ", no p_detect (no detected labels)")
          + f" -> {storage.join(params['out'], CALIBRATION_FILE)}")
