"""The clean mock (every realism effect off) is the mock the project had before issue 24,
byte for byte: checked against ``tests/data/mock_clean_reference.json``, which was written by
the code of main at commit cf42d30 (before any realism effect existed) with::

    .venv/bin/python tests/test_mock_clean.py --write tests/data/mock_clean_reference.json

The reference holds, for each configuration in :data:`CASES`, three levels of digest of the
output files (cutout shards, tracers.parquet, truth.parquet; not ``_mock.json``, which records
the configuration and so names the new options):

- ``values``: SHA-256 of every non-image column's values (floats by their exact repr);
- ``jpeg``: SHA-256 of every cutout's JPEG bytes, in row order;
- ``files``: SHA-256 of each Parquet file. The file footer names the pyarrow version that wrote
  it, so this level is compared only when the installed pyarrow is the reference's.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REFERENCE = Path(__file__).parent / "data" / "mock_clean_reference.json"

#: Small mocks covering both surveys, a full-size SDSS cutout and every population.
CASES = {
    "sdss_48px": dict(n=60, seed=11, image_size=48, rows_per_shard=25),
    "sdss_224px": dict(n=6, seed=3, rows_per_shard=4),
    "legacy_64px": dict(n=8, seed=5, imaging="legacy", image_size=64, rows_per_shard=8),
}


def _column_digest(col: pa.ChunkedArray) -> str:
    h = hashlib.sha256()
    if pa.types.is_binary(col.type):
        for b in col.to_pylist():
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    else:
        h.update(json.dumps(col.to_pylist()).encode())
    return h.hexdigest()


def digest(out_dir: Path) -> dict:
    """The three digests of one mock's output directory (see the module docstring)."""
    files = sorted((out_dir / "cutouts").glob("part-*.parquet")) + [
        out_dir / "tracers.parquet", out_dir / "truth.parquet"]
    res: dict = {"files": {}, "values": {}, "jpeg": {}}
    for f in files:
        rel = str(f.relative_to(out_dir))
        res["files"][rel] = hashlib.sha256(f.read_bytes()).hexdigest()
        t = pq.read_table(f)
        res["values"][rel] = {c: _column_digest(t.column(c)) for c in t.column_names
                              if c != "image"}
        if "image" in t.column_names:
            res["jpeg"][rel] = _column_digest(t.column("image"))
    return res


def _run(case: dict, out: Path, **extra) -> Path:
    from hicatalog.mock.survey import generate_mock

    generate_mock(str(out), engine="local", **case, **extra)
    return out


def test_clean_mock_is_the_pre_realism_mock_byte_for_byte(tmp_path):
    ref = json.loads(REFERENCE.read_text())
    for name, case in CASES.items():
        got = digest(_run(case, tmp_path / name, realism="clean"))
        want = ref["cases"][name]
        assert got["values"] == want["values"], name
        assert got["jpeg"] == want["jpeg"], name
        if pa.__version__ == ref["versions"]["pyarrow"]:
            assert got["files"] == want["files"], name


def _write_reference(path: Path) -> None:
    import tempfile

    import astropy
    import numpy
    import PIL
    import scipy

    out = {"written_by": "tests/test_mock_clean.py --write, code of main at cf42d30",
           "versions": {"pyarrow": pa.__version__, "numpy": numpy.__version__,
                        "scipy": scipy.__version__, "astropy": astropy.__version__,
                        "Pillow": PIL.__version__},
           "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            out["cases"][name] = digest(_run(case, Path(tmp) / name))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--write":
        sys.exit("usage: python tests/test_mock_clean.py --write PATH")
    _write_reference(Path(sys.argv[2]))
