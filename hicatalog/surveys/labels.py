"""From the published catalog files to the ``labels`` table, its selection log and a Table 1.

:func:`build_labels` runs every reader and selection of the paper in order and writes, under
``out_dir``:

- ``labels.parquet``: the ``labels`` contract (input of ``hicatalog fetch``); extreme but real
  values are kept and flagged in its ``quality`` column (:mod:`hicatalog.surveys.quality`),
- ``selection_steps.csv``: each selection step with the rows left after it,
- ``table1.csv``: N and the 0.16/0.50/0.84 quantiles of log M_HI, log M* and M per sample,
  like the paper's Table 1,
- ``tracers.parquet``: the NSA environment tracers (when an NSA file is given).

``out_dir`` and every input may be a local path or a URL (``s3://...``); each output is
written whole through :mod:`hicatalog.storage`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from hicatalog.schemas import conform_table, validate_table
from hicatalog.storage import join, write_atomic, write_parquet_atomic
from hicatalog.surveys import readers, selections
from hicatalog.surveys.quality import QUALITY_BITS
from hicatalog.surveys.selections import SelectionLog

__all__ = [
    "SurveyInputs", "TABLE1_SAMPLES", "table1_summary", "write_labels", "build_labels",
    "make_labels", "show_result",
]

#: Rows of the Table 1-like summary: name -> datasets it gathers.
TABLE1_SAMPLES = {
    "a40A": ("a40A", "a40B"),
    "a40B": ("a40B",),
    "a100": ("a100",),
    "nibles": ("nibles",),
    "xgass": ("xgass",),
    "nondetections": ("nondetections",),
}
QUANTILES = (0.16, 0.50, 0.84)


@dataclass(frozen=True)
class SurveyInputs:
    """Paths (local or fsspec URLs) of the published files; ``None`` skips a sample.
    Without ``mpa_sfr`` or ``mpa_oh`` no galaxy can be alpha.40B (a warning says so)."""

    a40: str
    a40_sdss: str
    mpa_info: str
    mpa_mass: str
    mpa_sfr: str | None = None
    mpa_oh: str | None = None
    a100: str | None = None
    xgass: str | None = None
    nibles: str | None = None
    nsa: str | None = None
    nibles_exclude_ids: tuple[str, ...] = ()


def table1_summary(labels: pa.Table) -> pa.Table:
    """Per sample: ``N`` and the 0.16/0.50/0.84 quantiles of ``log_mhi``, ``log_mstar`` and
    ``m_true`` (NaN where the sample has none, e.g. M_HI of non-detections). xGASS quantiles
    include its upper limits, as in the paper."""
    ds = np.asarray(labels.column("dataset").to_pylist(), dtype=object)
    cols = {c: labels.column(c).to_numpy(zero_copy_only=False).astype(float)
            for c in ("log_mhi", "log_mstar", "m_true")}
    rows = []
    for name, members in TABLE1_SAMPLES.items():
        sel = np.isin(ds, members)
        row = {"sample": name, "N": int(sel.sum())}
        for c, v in cols.items():
            vals = v[sel][np.isfinite(v[sel])]
            for q in QUANTILES:
                row[f"{c}_q{int(round(q * 100)):02d}"] = (
                    float(np.quantile(vals, q)) if len(vals) else float("nan"))
        rows.append(row)
    return pa.Table.from_pylist(rows)


def write_labels(labels: pa.Table, path: str) -> str:
    """Validate ``labels`` against its contract and write it as Parquet (local or URL)."""
    validate_table(labels, "labels", path)
    write_parquet_atomic(conform_table(labels, "labels", path), path)
    return path


def build_labels(inputs: SurveyInputs, out_dir: str, seed: int = 0
                 ) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Read every catalog, run the paper's selections, write the outputs (see module doc).

    Returns
    -------
    ``(labels, steps, table1)`` as written.
    """
    slog = SelectionLog()
    mpa = readers.read_mpajhu(inputs.mpa_info, inputs.mpa_mass, inputs.mpa_sfr, inputs.mpa_oh)
    a40a = selections.select_a40(readers.read_a40(inputs.a40),
                                 readers.read_a40_sdss(inputs.a40_sdss), mpa, slog)
    parts = [a40a]
    xgass = (selections.select_xgass(readers.read_xgass(inputs.xgass), slog)
             if inputs.xgass else selections.combine_labels([], "xgass", allow_empty=True))
    if inputs.xgass:
        parts.append(xgass)
    a100_raw = readers.read_a100(inputs.a100) if inputs.a100 else None
    if a100_raw is not None:
        a100 = selections.select_a100(a100_raw, mpa, a40a, xgass, slog)
        parts.append(a100)
    if inputs.nibles:
        parts.append(selections.select_nibles(
            readers.read_nibles(inputs.nibles), [p for p in parts if p is not xgass], xgass,
            slog, list(inputs.nibles_exclude_ids)))
    if a100_raw is not None:
        parts.append(selections.select_nondetections(mpa, a100_raw, a40a.num_rows, slog, seed))
    labels = selections.combine_labels(parts)
    steps = slog.to_table()
    table1 = table1_summary(labels)
    write_labels(labels, join(out_dir, "labels.parquet"))
    for table, name in ((steps, "selection_steps.csv"), (table1, "table1.csv")):
        write_atomic(join(out_dir, name), lambda sink, t=table: pacsv.write_csv(t, sink))
    if inputs.nsa:
        write_parquet_atomic(readers.read_nsa(inputs.nsa), join(out_dir, "tracers.parquet"))
    return labels, steps, table1


def make_labels(out: str, a40: str, a40_sdss: str, mpa_info: str, mpa_mass: str, *,
                mpa_sfr: str | None = None, mpa_oh: str | None = None, a100: str | None = None,
                xgass: str | None = None, nibles: str | None = None, nsa: str | None = None,
                nibles_exclude_ids: Sequence[str] = (), seed: int = 0
                ) -> tuple[pa.Table, pa.Table, pa.Table]:
    """:func:`build_labels` into the directory ``out`` from the published files named by the
    other parameters (:class:`SurveyInputs`'s fields; ``None`` skips a sample) with the
    non-detection draw's ``seed``; returns ``(labels, steps, table1)``."""
    inputs = SurveyInputs(a40=a40, a40_sdss=a40_sdss, mpa_info=mpa_info, mpa_mass=mpa_mass,
                          mpa_sfr=mpa_sfr, mpa_oh=mpa_oh, a100=a100, xgass=xgass, nibles=nibles,
                          nsa=nsa, nibles_exclude_ids=tuple(nibles_exclude_ids))
    return build_labels(inputs, out, seed=seed)


def show_result(result: tuple[pa.Table, pa.Table, pa.Table], params: dict[str, Any]) -> None:
    """What ``hicatalog labels`` prints after :func:`make_labels` (``params``: its
    arguments): where the labels went, the rows flagged, and the Table 1-like summary."""
    labels, _, table1 = result
    print(f"{labels.num_rows} labelled galaxies -> {join(params['out'], 'labels.parquet')}")
    n_flagged = int(np.count_nonzero(labels.column("quality").to_numpy()))
    if n_flagged:
        bits = ", ".join(f"{b} {c}" for c, b in QUALITY_BITS.items())
        print(f"  {n_flagged} with an extreme value, kept and flagged in 'quality' (bits: "
              f"{bits}; hicatalog.surveys.quality.TYPICAL_RANGES)")
    for row in table1.to_pylist():
        print(f"  {row['sample']:14s} N={row['N']:7d}  M: {row['m_true_q16']:6.2f} "
              f"{row['m_true_q50']:6.2f} {row['m_true_q84']:6.2f}")
