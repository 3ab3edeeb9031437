"""``hicatalog build-catalog``: the catalog build as a command (see :mod:`.build`)."""

from __future__ import annotations

import json
import logging

from hicatalog.catalog.build import build_catalog
from hicatalog.config import BuildCatalogConfig

__all__ = ["main"]

log = logging.getLogger("hicatalog.catalog.run")


def main(cfg: BuildCatalogConfig) -> int:
    """Build the catalog into ``cfg.out`` and print where it is and its row counts."""
    manifest = build_catalog(cfg)
    rows = manifest["rows"]
    print(f"catalog {cfg.out} version {manifest['version']} ({manifest['build_id']}): "
          f"{rows['total']} rows in {manifest['wall_time_s']:.1f} s")
    print(f"  status: {json.dumps(rows['status'])}")
    print(f"  env_status: {json.dumps(rows['env_status'])}")
    print(f"  query: duckdb -c \"SELECT count(*) FROM read_parquet('{cfg.out}/**/*.parquet', "
          "hive_partitioning=true) WHERE p_cnn > 0.9\"")
    return 0
