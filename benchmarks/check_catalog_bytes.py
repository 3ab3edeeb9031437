"""The published catalog's bytes on a fixed seed: a digest of every file a reader sees.

Builds a small catalog from seeded inputs with whichever ``hicatalog`` is imported (so the
same script, run against two checkouts, shows whether a change kept the catalog
byte-identical), then extends it with ``since_manifest`` and publishes a third version with
:func:`hicatalog.catalog.publish.publish_tables`. The inputs cover every path of the writer:
rows without a position (``invalid_coordinates.parquet``), a duplicated ``object_id``,
an empty image, several HEALPix partitions and row groups.

    .venv/bin/python benchmarks/check_catalog_bytes.py --out /tmp/bytes-new
    # the same against another checkout (run outside the worktree, so that checkout's
    # hicatalog is the one imported):
    cd /tmp && PYTHONPATH=/path/to/other/checkout python /path/to/check_catalog_bytes.py \
        --out /tmp/bytes-old
    .venv/bin/python benchmarks/check_catalog_bytes.py --compare /tmp/bytes-old /tmp/bytes-new

Writes ``OUT/check_catalog_bytes.json``: ``{relative path: sha256}`` of each version's main
catalog's data files (``dataset/**/*.parquet``, ``_metadata``, ``_common_metadata``,
``partition_info.csv``, ``invalid_coordinates.parquet``; found through ``open_catalog``, so
the main catalog compares wherever a checkout puts it in the version directory) and of the
staged parts. HATS ``properties`` hold a creation date, the manifest a time: they are not
compared; nor is the margin cache (a checkout that writes none has nothing to compare).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys

import numpy as np

N_ROWS = 1500
DATA_FILES = ("_metadata", "_common_metadata", "partition_info.csv")


def cutouts(out: str, n: int, seed: int, prefix: str, size: int = 32) -> str:
    """``n`` seeded cutout rows in 3 shards: a 40x30 deg field, 2 rows without a position,
    one duplicated id, one empty image."""
    import pyarrow as pa
    from PIL import Image

    from hicatalog.cutouts.shards import write_shard

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(16):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            buf, format="JPEG", quality=90)
        pool.append(buf.getvalue())
    ra, dec = rng.uniform(150, 190, n), rng.uniform(0, 30, n)
    ra[0], dec[1] = np.nan, 95.0
    ids = [f"{prefix}{i:06d}" for i in range(n)]
    ids[n - 1] = ids[5]
    images = [pool[i % len(pool)] for i in range(n)]
    images[7] = b""
    z = rng.uniform(0.01, 0.05, n)
    per = -(-n // 3)
    for s, lo in enumerate(range(0, n, per)):
        sl = slice(lo, lo + per)
        write_shard(pa.table({"object_id": ids[sl], "ra": ra[sl], "dec": dec[sl],
                              "z": pa.array(z[sl], pa.float64()), "survey": ["sdss"] * len(ids[sl]),
                              "image": images[sl]}), out, "part", s)
    return out


def models(out: str, size: int = 32) -> tuple[str, str]:
    import torch

    from hicatalog.models import ModelCard, build_model, save_model

    dirs = []
    for task, n_out in (("regression", 1), ("pr", 2)):
        torch.manual_seed(0)
        card = ModelCard(model_id=f"bytes-{task}", task=task, arch="xresnet18", width=0.25,
                         n_outputs=n_out, image_size=size, cutout_size=size, survey="sdss",
                         normalization={"mean": [0.5] * 3, "std": [0.25] * 3})
        d = os.path.join(out, task)
        save_model(d, build_model(card), card)
        dirs.append(d)
    return dirs[0], dirs[1]


def digests(catalog: str) -> dict[str, str]:
    """``{relative path: sha256}`` of the main HATS catalog of every version listed in
    ``catalog``'s manifest (keyed ``version=V/<path in the main catalog>``, so that the
    version directory itself, before versions became HATS collections, and
    ``version=V/hi_catalog/`` compare) and of the staged parts (``_staging/...``). The margin
    cache and ``collection.properties`` beside the main catalog are not compared."""
    from hicatalog.catalog.manifest import Manifest
    from hicatalog.catalog.reader import open_catalog

    trees = [(os.path.join(catalog, "_staging"), "_staging")]
    for v in Manifest.read(catalog).versions:
        trees.append((open_catalog(catalog, v.version).path, f"version={v.version}"))
    out = {}
    for top, key in trees:
        for root, _, files in os.walk(top):
            for f in files:
                rel = os.path.relpath(os.path.join(root, f), top)
                if f.endswith(".parquet") or f in DATA_FILES:
                    with open(os.path.join(root, f), "rb") as fh:
                        out[f"{key}/{rel}"] = hashlib.sha256(fh.read()).hexdigest()
    return dict(sorted(out.items()))


def build(out: str) -> dict[str, str]:
    import pyarrow as pa
    import ray

    from hicatalog.catalog.build import build_catalog
    from hicatalog.catalog.publish import publish_tables
    from hicatalog.catalog.reader import read_catalog
    from hicatalog.config import BuildCatalogConfig

    reg, pr = models(os.path.join(out, "models"))
    cat = os.path.join(out, "catalog")
    opts = {"partition_rows": 1000, "row_group_rows": 100}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        build_catalog(BuildCatalogConfig(
            cutouts=cutouts(os.path.join(out, "cutouts1"), N_ROWS, 1, "a"), regression=reg,
            pr=pr, out=cat, batch_size=64, **opts))
        build_catalog(BuildCatalogConfig(
            cutouts=cutouts(os.path.join(out, "cutouts2"), N_ROWS // 3, 2, "b"), regression=reg,
            pr=pr, out=cat, batch_size=64, since_manifest=os.path.join(cat, "_manifest.json"),
            **opts))
        # a third version through publish_tables: the rows of version 2, re-staged
        t = read_catalog(cat).drop_columns(["_healpix_29"])
        t = t.set_column(t.schema.get_field_index("build_id"), "build_id",
                         pa.array(["tables"] * t.num_rows, pa.string()))
        publish_tables(os.path.join(out, "tables"), [t.slice(0, 700), t.slice(700)],
                       build_id="tables", **opts)
    finally:
        ray.shutdown()
    return {**{f"catalog/{k}": v for k, v in digests(cat).items()},
            **{f"tables/{k}": v for k, v in digests(os.path.join(out, "tables")).items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="work directory (created; the digests go there)")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                    help="compare two earlier runs' OUT directories")
    args = ap.parse_args()
    if args.compare:
        old, new = (json.load(open(os.path.join(d, "check_catalog_bytes.json")))
                    for d in args.compare)
        differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        print(f"{len(old)} files before, {len(new)} after, {len(differ)} differ")
        for k in differ:
            print(f"  {k}: {old.get(k, 'absent')[:12]} -> {new.get(k, 'absent')[:12]}")
        return 1 if differ else 0
    import hicatalog

    print(f"hicatalog from {os.path.dirname(hicatalog.__file__)}", file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    result = build(os.path.abspath(args.out))
    with open(os.path.join(args.out, "check_catalog_bytes.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"{len(result)} files digested into {args.out}/check_catalog_bytes.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
