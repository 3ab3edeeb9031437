"""The data contracts and the one validator every reader uses."""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hicatalog.schemas import (
    SchemaError,
    conform_table,
    load_schema,
    read_table,
    table_names,
    validate_table,
)


def _cutouts(n=3, **replace):
    cols = {
        "object_id": pa.array([f"g{i}" for i in range(n)]),
        "ra": pa.array([10.0 + i for i in range(n)]),
        "dec": pa.array([1.0] * n),
        "z": pa.array([0.02] * n),
        "survey": pa.array(["sdss"] * n),
        "image": pa.array([b"\xff\xd8"] * n, pa.binary()),
    }
    cols.update(replace)
    return pa.table(cols)


def test_all_contracts_load_with_design_columns():
    assert {"cutouts", "tracers", "hi_catalog", "labels", "truth", "environment"} <= set(table_names())
    hi = load_schema("hi_catalog")
    assert hi.names == [
        "object_id", "ra", "dec", "z", "m_pred", "m_pred_err", "m_lo68", "m_hi68", "m_lo95",
        "m_hi95", "m_pred_std", "p_cnn", "p_detect", "log_mstar", "log_mhi_pred",
        "log_mhi_pred_err", "mhi_expect", "one_plus_delta5", "sigma5", "d5_mpc", "env_status",
        "status", "error", "flags", "build_id", "model_id", "_healpix_29",
    ]
    # the survey-wide columns are optional: catalogs published before them stay valid
    assert "m_lo68" not in load_schema("hi_catalog", include_optional=False).names
    assert hi.field("_healpix_29").type == pa.int64() and hi.field("_healpix_29").nullable
    assert hi.field("m_pred").type == pa.float32()
    assert hi.field("ra").metadata[b"unit"] == b"deg"
    cut = load_schema("cutouts", include_optional=False)
    assert "m_true" not in cut.names and cut.field("image").type == pa.binary()


def test_missing_column_names_file_column_and_type(tmp_path):
    path = tmp_path / "shard.parquet"
    pq.write_table(_cutouts().drop_columns(["image"]), path)
    with pytest.raises(SchemaError) as exc:
        read_table(str(path), "cutouts")
    assert str(path) in str(exc.value)
    assert "missing column 'image' (expected binary)" in str(exc.value)


def test_wrong_type_is_named():
    t = _cutouts(ra=pa.array(["a", "b", "c"]))
    with pytest.raises(SchemaError, match="column 'ra' has type string, expected double"):
        validate_table(t, "cutouts", "x.parquet")


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.parquet"
    pq.write_table(load_schema("cutouts", include_optional=False).empty_table(), path)
    with pytest.raises(SchemaError, match=r"empty 'cutouts' table \(0 rows\)"):
        read_table(str(path), "cutouts")


def test_duplicates_and_nulls_are_named():
    t = _cutouts(object_id=pa.array(["a", "a", "b"]))
    with pytest.raises(SchemaError, match="'object_id' must be unique, found 1 duplicate"):
        validate_table(t, "cutouts")
    t = _cutouts(ra=pa.array([1.0, None, 2.0]))
    with pytest.raises(SchemaError, match="'ra' has 1 null values"):
        validate_table(t, "cutouts")


def test_not_parquet_and_missing_path(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(SchemaError, match="cannot be read as Parquet"):
        read_table(str(junk), "cutouts")
    with pytest.raises(SchemaError, match="no such file"):
        read_table(str(tmp_path / "none.parquet"), "cutouts")


def test_conform_accepts_large_types_and_orders_columns():
    t = _cutouts()
    t = t.set_column(0, "object_id", t.column("object_id").cast(pa.large_string()))
    t = t.append_column("extra", pa.array([1, 2, 3]))
    out = conform_table(t.select(["image", "survey", "z", "dec", "ra", "object_id"]), "cutouts")
    assert out.schema.names == ["object_id", "ra", "dec", "z", "survey", "image"]
    assert out.schema.field("object_id").type == pa.string()


def test_every_subpackage_and_the_contracts_ship_in_the_wheel():
    """pyproject lists the packages by hand (find cannot see the top-level schemas/ mapped to
    hicatalog.schemas.contracts): a subpackage missing from the list would be missing from a
    wheel, and so from every Ray worker that installs one."""
    import pathlib
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - the tomli backport, a dependency on 3.10
        import tomli as tomllib

    root = pathlib.Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(p.parent.relative_to(root).parts)
        for p in (root / "hicatalog").rglob("__init__.py")
    }
    assert on_disk | {"hicatalog.schemas.contracts"} == set(cfg["packages"])
    assert cfg["package-dir"] == {"hicatalog.schemas.contracts": "schemas"}
    assert sorted(p.stem for p in (root / "schemas").glob("*.json")) == [
        "cutouts", "environment", "hi_catalog", "labels", "tracers", "truth"]
    assert not list((root / "hicatalog").rglob("*.json")), "one copy of each contract"
