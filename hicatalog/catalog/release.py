"""What a published version says about itself: the ``README.md`` in its directory and the
HATS ``properties`` that describe it (title, description, reference, acknowledgements,
provenance, default columns).

A version directory is what gets copied, archived or served on its own (a HATS catalog that
LSDB, hats, DuckDB and polars read), so it carries, beside its data: what the catalog is, how
many rows it holds, which models and inputs made it, every column with its unit, the cut to
apply, how to query it and how to cite it. Everything here is made from the build's record
(:class:`~hicatalog.catalog.manifest.BuildRecord`), the version's entry and the catalog
contract (``schemas/hi_catalog.json``); nothing is typed in twice.
"""

from __future__ import annotations

from typing import Any

from hicatalog import __version__
from hicatalog.catalog.collection import INDEX_NAME, margin_name
from hicatalog.catalog.manifest import BuildRecord, VersionEntry
from hicatalog.schemas import describe

__all__ = [
    "ACKNOWLEDGEMENTS",
    "KEY_COLUMNS",
    "PAPER",
    "README_NAME",
    "RECOMMENDED_CUT",
    "describing_properties",
    "reference",
    "version_readme",
]

#: The file each version directory carries about itself.
README_NAME = "README.md"

#: The method paper (also the ``preferred-citation`` of ``CITATION.cff``).
PAPER: dict[str, Any] = {
    "authors": "Wu, J. F.",
    "year": 2020,
    "title": "Connecting optical morphology, environment, and HI mass fraction for "
             "low-redshift galaxies using deep learning",
    "journal": "The Astrophysical Journal",
    "volume": 900,
    "doi": "10.3847/1538-4357/abacbb",
    "arxiv": "2001.00018",
}

#: The surveys and catalogs a catalog built from real data rests on.
ACKNOWLEDGEMENTS = (
    "Optical images: the Sloan Digital Sky Survey (SDSS; funded by the Alfred P. Sloan "
    "Foundation, the Participating Institutions, the National Science Foundation and the U.S. "
    "Department of Energy) and the DESI Legacy Imaging Surveys. H I measurements: the Arecibo "
    "Legacy Fast ALFA survey (ALFALFA; Haynes et al. 2011, 2018), xGASS (Catinella et al. "
    "2018) and NIBLES (van Driel et al. 2016). Stellar masses: the MPA-JHU catalogue "
    "(Kauffmann et al. 2003; Brinchmann et al. 2004). Positions and redshifts of the targets "
    "and tracers: the NASA-Sloan Atlas (Blanton et al. 2011)."
)

#: The columns a first look needs (HATS ``default_columns``).
KEY_COLUMNS = ("object_id", "ra", "dec", "z", "m_pred", "m_pred_err", "p_cnn",
               "one_plus_delta5", "status", "env_status")

#: The rows to use, as SQL.
RECOMMENDED_CUT = ("status = 'ok' AND p_cnn > 0.9 for a reliable M (the paper's PR cut); "
                   "env_status = 'ok' where 1+delta5 is used")


def reference() -> str:
    """The method paper as one line: authors, year, title, journal, volume, DOI, arXiv id."""
    p = PAPER
    return (f"{p['authors']} {p['year']}, {p['title']}, {p['journal']} {p['volume']}, "
            f"doi:{p['doi']}, arXiv:{p['arxiv']}")


def _models(build: BuildRecord) -> list[str]:
    """One line per model the build used: task, id, architecture, survey, input size."""
    if not build.models:
        return [f"model id {build.model_id}" if build.model_id else "(not recorded)"]
    return [f"{name}: {m.model_id} ({m.arch or '?'} on {m.survey or '?'} cutouts, "
            f"{m.image_size or '?'} px input)" for name, m in sorted(build.models.items())]


def describing_properties(build: BuildRecord, version: int, rows: int) -> dict[str, Any]:
    """The HATS properties that describe version ``version`` (``rows`` rows) built by
    ``build``: ``obs_description``, ``obs_ack``, ``bib_reference``, ``bib_reference_url``,
    ``prov_progenitor`` and ``default_columns``, as keyword arguments of
    :class:`hats.catalog.TableProperties`."""
    inputs = (f"cutouts {build.input.cutouts} ({build.input.rows} rows, fingerprint "
              f"{build.input.fingerprint})" if build.input else "staged hi_catalog tables")
    return {
        "obs_description": (
            f"Version {version} of an H I catalog, {rows} rows: for each galaxy the H I mass "
            "fraction M = log10(M_HI/M*) predicted by a CNN from its optical cutout (m_pred, "
            "dex, with its 1-sigma error m_pred_err), the probability p_cnn that it looks like "
            "an ALFALFA detection, and its environment 1+delta5 (one_plus_delta5). Use "
            f"{RECOMMENDED_CUT}. Made by hicatalog {__version__}, method of Wu (2020)."),
        "obs_ack": ACKNOWLEDGEMENTS,
        "bib_reference": reference(),
        "bib_reference_url": f"https://doi.org/{PAPER['doi']}",
        "prov_progenitor": "; ".join([inputs, *_models(build)]),
        "default_columns": list(KEY_COLUMNS),
    }


def version_readme(entry: VersionEntry, build: BuildRecord) -> str:
    """The ``README.md`` of the version ``entry`` published by ``build``: what it is, its
    rows, models and inputs, the columns (from the contract), the cut, a query and how to
    cite (Markdown)."""
    columns = "\n".join(
        f"| `{c['name']}` | {c['type']} | {c['unit'] or ''} | {c['description']} |"
        for c in describe("hi_catalog"))
    models = "\n".join(f"- {line}" for line in _models(build))
    inputs = (f"{build.input.cutouts}: {build.input.rows} cutouts in {build.input.shards} "
              f"shards (fingerprint {build.input.fingerprint})" if build.input
              else "hi_catalog tables staged by a caller (`publish_tables`)")
    status = ", ".join(f"{k} {v}" for k, v in sorted(build.rows.status.items()))
    main = entry.catalog or "."
    margin = (f"`{margin_name(entry.options.margin_arcsec)}/` its margin cache "
              f"({entry.options.margin_arcsec:g} arcsec; {entry.margin_rows or 0} rows), "
              if entry.options and entry.options.margin_arcsec and entry.margin_rows else "")
    index = f"`{INDEX_NAME}/` its index on `object_id`, " if entry.catalog and \
        entry.partitions else ""
    return f"""# H I catalog, version {entry.version}

H I mass fractions M = log10(M_HI/M*) predicted from optical galaxy images by a CNN, with the
probability `p_cnn` that a galaxy looks like an ALFALFA detection and its environment 1+delta5
(method: Wu 2020), made by hicatalog {__version__}.

- Rows: {entry.rows} ({entry.invalid_coordinate_rows} without a valid position, in
  `{main}/invalid_coordinates.parquet`); HEALPix partitions: {entry.partitions}; created
  {entry.created or build.created or 'unknown'}.
- Builds: {', '.join(entry.build_ids) or build.build_id}; rows of the last build by status:
  {status or 'not recorded'}.
- Input: {inputs}.
- Models:
{models}

This directory is a HATS collection (`collection.properties`): `{main}/` the catalog
(`dataset/Norder=k/Dir=d/Npix=p.parquet`, `properties`, `partition_info.csv`), {margin}{index}
read by hats, LSDB (`lsdb.open_catalog(".")` loads the margin and the index too), DuckDB and
polars.

## Which rows to use

{RECOMMENDED_CUT}.

## Query

```python
import polars as pl
cat = pl.scan_parquet("{main}/dataset/**/*.parquet", hive_partitioning=False)
good = cat.filter((pl.col("status") == "ok") & (pl.col("p_cnn") > 0.9)).collect()
```

```sql
SELECT object_id, ra, dec, m_pred, m_pred_err, p_cnn, one_plus_delta5
FROM read_parquet('{main}/dataset/**/*.parquet', hive_partitioning = false)
WHERE status = 'ok' AND p_cnn > 0.9;
```

## Columns

| column | type | unit | description |
|---|---|---|---|
{columns}

## Citing

Please cite the method paper: {reference()}; and hicatalog (`CITATION.cff` in its
repository).

{ACKNOWLEDGEMENTS}
"""
