"""``hicatalog export``: selections of a published version read back with astropy (FITS and
VOTable) against a selection worked out here from the rows that were published."""

from __future__ import annotations

import gzip
import io
import json

import astropy.units as u
import numpy as np
import pyarrow as pa
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.votable import parse, validate
from astropy.io.votable.ucd import check_ucd
from astropy.table import Table
from builders import publish_by_hand

from hicatalog.catalog import export as export_module
from hicatalog.catalog.export import export_catalog
from hicatalog.catalog.manifest import Manifest
from hicatalog.cli import main
from hicatalog.errors import ConfigError, InputError, InputNotFoundError, OutputError
from hicatalog.sky import valid_coordinates

N = 3000
#: A 19-digit SDSS objid: more digits than a float64 holds exactly.
LONG_ID = "1237648720693755918"
pytestmark = pytest.mark.filterwarnings("ignore::astropy.units.UnitsWarning")


def source_rows(n=N, seed=3):
    """Rows over the band |dec| < 30, RA crowded near 0/360 (some written as -0.5 or 360.2:
    any finite RA wraps), with every null: a NaN and a null m_pred, null m_pred_err and
    p_cnn, rows without a valid position, statuses and env_statuses that are not 'ok', a
    non-ASCII error, a long numeric id."""
    rng = np.random.default_rng(seed)
    ra = np.concatenate([rng.uniform(0, 360, n // 2), rng.normal(0, 8, n - n // 2)])
    ra[5], ra[6] = -0.5, 360.2
    dec = rng.uniform(-30, 30, n)
    ra[:2] = np.nan
    dec[2] = 95.0
    ids = [f"g{i:06d}" for i in range(n)]
    ids[10] = LONG_ID
    m_pred = rng.normal(0, 0.5, n).astype(np.float32)
    m_pred[11] = np.nan
    f32 = pa.array(rng.normal(1, 0.2, n).astype(np.float32))
    status = np.where(np.arange(n) % 5 == 0, "corrupt_image", "ok")
    return pa.table({
        "object_id": ids, "ra": ra, "dec": dec, "z": rng.uniform(0.01, 0.05, n),
        "m_pred": pa.array(m_pred, mask=np.arange(n) == 12),
        "m_pred_err": pa.array(rng.uniform(0.1, 0.3, n).astype(np.float32),
                               mask=np.arange(n) % 7 == 0),
        "m_pred_std": f32, "p_cnn": pa.array(rng.uniform(0, 1, n).astype(np.float32),
                                             mask=np.arange(n) % 11 == 0),
        "one_plus_delta5": f32, "sigma5": f32, "d5_mpc": f32,
        "env_status": np.where(np.arange(n) % 3 == 0, "no_redshift", "ok").tolist(),
        "status": status.tolist(),
        "error": pa.array([f"d\u00e9cod\u00e9 {i}" if s != "ok" else None
                           for i, s in enumerate(status)], pa.string()),
        "build_id": ["b1"] * n, "model_id": ["reg+pr"] * n,
    })


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """A catalog of two versions: 1 with the first 2000 rows, 2 (current) with all."""
    out = tmp_path_factory.mktemp("export") / "catalog"
    rows = source_rows()
    publish_by_hand(out, rows.slice(0, 2000), build_id="b0")
    publish_by_hand(out, rows, build_id="b1", model_id="reg+pr", code_version="9.9.9",
                    created="2026-01-02T03:04:05+00:00")
    return str(out), rows


def _ids(rows, keep):
    return sorted(np.asarray(rows.column("object_id").to_pylist(), dtype=object)[keep])


def _cut(rows, status="ok", min_p_cnn=None):
    """Rows passing the status and p_cnn cuts (a null p_cnn never passes one)."""
    keep = np.asarray(rows.column("status").to_pylist()) == status if status else \
        np.ones(rows.num_rows, bool)
    if min_p_cnn is not None:
        p = rows.column("p_cnn").to_numpy(zero_copy_only=False)
        keep &= np.nan_to_num(p, nan=-1.0) > np.float32(min_p_cnn)
    return keep


def _positions(rows):
    ra, dec = (rows.column(c).to_numpy(zero_copy_only=False) for c in ("ra", "dec"))
    ok = valid_coordinates(ra, dec)
    return ra, dec, ok


def test_cone_fits_rows_units_ucds_descriptions_provenance(catalog, tmp_path):
    cat, rows = catalog
    out = tmp_path / "cone.fits"
    res = export_catalog(cat, str(out), cone=(2.0, 3.0, 12.0), min_p_cnn=0.5)
    ra, dec, ok = _positions(rows)
    sep = SkyCoord(np.where(ok, ra, 0) * u.deg, np.where(ok, dec, 0) * u.deg).separation(
        SkyCoord(2.0 * u.deg, 3.0 * u.deg)).deg
    want = _ids(rows, ok & (sep <= 12.0) & _cut(rows, "ok", 0.5))
    t = Table.read(out)
    assert sorted(t["object_id"]) == want and res.rows == len(want) > 50
    assert 0 < res.files_read < res.partitions  # partitions outside the cone were not read
    contract = json.loads(open("schemas/hi_catalog.json").read())["fields"]
    # the catalog was published without the optional survey-wide columns: the required ones
    contract = [f for f in contract if f["required"]]
    assert t.colnames == [f["name"] for f in contract] == res.columns
    h = fits.getheader(out, "HI_CATALOG")
    assert h["NAXIS2"] == len(want)
    for i, f in enumerate(contract, start=1):
        assert h[f"TTYPE{i}"] == f["name"]
        assert h[f"TUCD{i}"] == f["ucd"] and check_ucd(f["ucd"], check_controlled_vocabulary=True)
        assert h[f"TCOMM{i}"] == f["description"]  # long ones continued on CONTINUE cards
        assert h.get(f"TUNIT{i}") == {"deg": "deg", "dex": "dex", "Mpc": "Mpc",
                                      "Mpc^-2": "Mpc-2", None: None}[f.get("unit")]
    assert t["ra"].unit == u.deg and t["sigma5"].unit == u.Mpc ** -2
    m = Manifest.read(cat)
    assert h["HIERARCH HICATALOG VERSION"] == m.version == 2
    assert h["HIERARCH HICATALOG BUILD_ID"] == m.build_id == "b1"
    assert h["HIERARCH HICATALOG MODEL_ID"] == m.model_id == "reg+pr"
    assert h["HIERARCH HICATALOG CODE_VERSION"] == m.code_version == "9.9.9"
    assert h["HIERARCH HICATALOG BUILD_CREATED"] == m.created
    assert h["HIERARCH HICATALOG VERSION_CREATED"] == m.current().created
    assert h["HIERARCH HICATALOG CATALOG"] == m.catalog_dir
    assert h["HIERARCH HICATALOG SELECTION"] == (
        "cone(ra, dec, radius)=(2.0, 3.0, 12.0) deg; status='ok'; p_cnn>0.5")
    assert h["HIERARCH HICATALOG ROWS"] == len(want)


@pytest.mark.parametrize("box", [(350.0, 10.0, -5.0, 5.0), (-10.0, 10.0, -5.0, 5.0),
                                 (20.0, 40.0, 0.0, 30.0), (0.0, 360.0, 25.0, 30.0)])
def test_box_wraps_at_ra_0(catalog, tmp_path, box):
    cat, rows = catalog
    res = export_catalog(cat, str(tmp_path / "box.fits"), box=box, status="any",
                         columns=["object_id"])
    ra, dec, ok = _positions(rows)
    r = np.mod(np.where(ok, ra, 0.0), 360.0)
    lo, hi = box[0] % 360, box[1] % 360
    in_ra = np.ones_like(ok) if box[1] - box[0] >= 360 else \
        ((r >= lo) & (r <= hi) if lo <= hi else (r >= lo) | (r <= hi))
    want = _ids(rows, ok & in_ra & (dec >= box[2]) & (dec <= box[3]))
    assert sorted(Table.read(tmp_path / "box.fits")["object_id"]) == want and res.rows == len(want)
    assert len(want) > 20


def test_every_row_round_trips_fits_gz_and_votable(catalog, tmp_path):
    """No cut: every row of the current version, each value as published (nulls as NaN,
    TNULL or masked; empty strings; the 19-digit id as a string; non-ASCII escaped)."""
    cat, rows = catalog
    fits_out, vot_out = tmp_path / "all.fits.gz", tmp_path / "all.vot"
    assert export_catalog(cat, str(fits_out), status="any").rows == N
    assert export_catalog(cat, str(vot_out), status="any").rows == N
    src = rows.to_pandas().set_index("object_id")
    for path in (fits_out, vot_out):
        t = Table.read(path)
        t.convert_bytestring_to_unicode()
        assert len(t) == N and LONG_ID in set(t["object_id"])
        got = t.to_pandas().set_index("object_id").loc[src.index]
        for col in ("ra", "dec", "z", "m_pred", "m_pred_err", "p_cnn", "sigma5"):
            np.testing.assert_array_equal(got[col].to_numpy(float), src[col].to_numpy(float),
                                          err_msg=f"{path.name} {col}")
        for col in ("status", "env_status", "build_id"):
            assert got[col].tolist() == src[col].tolist()
        hp = t["_healpix_29"]
        assert np.ma.getmaskarray(hp).sum() == 3  # the rows without a valid position
        valid = np.ma.getdata(hp)[~np.ma.getmaskarray(hp)]
        assert valid.min() >= 0 and valid.max() < 12 * 4 ** 29
    h = fits.getheader(fits_out, 1)
    assert h["TNULL17"] == np.iinfo(np.int64).min and h["TFORM17"] == "K"
    for path in (fits_out, vot_out):
        # null strings: empty in FITS (astropy masks them); null-flagged and empty in the
        # VOTable (astropy ignores the null flags of strings: astropy issue 8995)
        error = np.ma.filled(Table.read(path)["error"].astype(str), "")
        assert sorted(set(error) - {""}) == sorted(f"d\\xe9cod\\xe9 {i}" for i in range(0, N, 5))
        assert (error == "").sum() == N - N // 5
    assert validate(str(vot_out), output=io.StringIO(), xmllint=False)  # no violation found
    vot = parse(str(vot_out)).get_first_table()
    field = {f.name: f for f in vot.fields}
    assert field["m_pred"].ucd == "phys.mass;arith.ratio" and field["ra"].unit == u.deg
    assert str(field["m_pred"].unit) == "dex"  # written 'dex' (quoted VOUnit), not deci-ex
    assert field["z"].description == "spectroscopic redshift"
    info = {i.name: i.value for i in vot.infos}
    m = Manifest.read(cat)
    assert info["version"] == "2" and info["build_id"] == m.build_id
    assert info["model_id"] == "reg+pr" and info["selection"] == "all rows"
    m_err = Table.read(vot_out)["m_pred_err"]
    assert np.ma.getmaskarray(m_err).sum() == N // 7 + 1


def test_columns_limit_version_and_batches(catalog, tmp_path, monkeypatch):
    """Small batches (a limit cut inside one), the columns in the order given, an older
    version with its own rows and without the current build's provenance."""
    cat, rows = catalog
    monkeypatch.setattr(export_module, "BATCH_ROWS", 7)
    res = export_catalog(cat, str(tmp_path / "v1.fits"), version=1, columns="p_cnn,object_id"
                         .split(","), min_p_cnn=0.9, limit=33)
    t = Table.read(tmp_path / "v1.fits")
    assert t.colnames == ["p_cnn", "object_id"] and len(t) == res.rows == 33
    v1 = rows.slice(0, 2000)
    assert set(t["object_id"]) <= set(_ids(v1, _cut(v1, "ok", 0.9)))
    h = fits.getheader(tmp_path / "v1.fits", 1)
    assert h["HIERARCH HICATALOG VERSION"] == 1 and h["HIERARCH HICATALOG CURRENT_VERSION"] == 2
    assert h["HIERARCH HICATALOG BUILD_IDS"] == "b0" and "HIERARCH HICATALOG BUILD_ID" not in h
    # the whole selection, streamed in batches of 7, is the selection worked out here
    export_catalog(cat, str(tmp_path / "all.fits"), min_p_cnn=0.9, env_status="ok")
    keep = _cut(rows, "ok", 0.9) & (np.asarray(rows.column("env_status").to_pylist()) == "ok")
    assert sorted(Table.read(tmp_path / "all.fits")["object_id"]) == _ids(rows, keep)


def test_an_empty_selection_writes_an_empty_table(catalog, tmp_path, capsys):
    cat, _ = catalog
    for name in ("empty.fits", "empty.vot"):
        out = tmp_path / name
        assert main(["export", "--catalog", cat, "--out", str(out), "--cone", "100", "-80",
                     "1"]) == 0
        assert "0 rows (the selection is empty: an empty table was written)" in \
            capsys.readouterr().out
        t = Table.read(out)
        assert len(t) == 0 and len(t.colnames) == 17


@pytest.mark.parametrize("args, kind, message", [
    ({"catalog": "nowhere"}, InputNotFoundError, "catalog manifest not found"),
    ({"version": 7}, InputError, "version 7 is not listed"),
    ({"columns": ["ra", "mass"]}, ConfigError, "unknown column"),
    ({"out": "x.csv"}, ConfigError, "cannot tell the format"),
    ({"out": "x.fits", "format": "votable"}, ConfigError, "names a fits file"),
    ({"cone": (1, 2, 3), "box": (0, 1, 2, 3)}, ConfigError, "not both"),
    ({"box": (0, 1, 5, 3)}, ConfigError, "dec_min <= dec_max"),
])
def test_bad_input_is_a_clear_error(catalog, tmp_path, args, kind, message):
    cat, _ = catalog
    kwargs = {"catalog": cat, "out": "x.fits", "status": "any", **args}
    kwargs["out"] = str(tmp_path / kwargs["out"])
    if kwargs["catalog"] == "nowhere":
        kwargs["catalog"] = str(tmp_path / "nowhere")
    with pytest.raises(kind, match=message):
        export_catalog(**kwargs)
    assert not (tmp_path / kwargs["out"]).exists()


def test_cli_errors_are_one_line_with_exit_codes(catalog, tmp_path, capsys):
    cat, _ = catalog
    out = tmp_path / "a.fits"
    assert main(["export", "--catalog", cat, "--out", str(out), "--limit", "5"]) == 0
    assert capsys.readouterr().out.startswith("exported 5 rows of version 2 (status='ok'; limit=5)")
    cases = [
        (["--out", str(out)], 1, f"{out} exists; choose another --out or set --overwrite"),
        (["--out", str(out), "--overwrite", "--version", "9"], 1, "version 9 is not listed"),
        (["--out", str(tmp_path / "b.fits"), "--columns", "ra,nope"], 2,
         "--columns: unknown column(s) 'nope'"),
        (["--out", str(tmp_path / "b.txt")], 2, "give --format"),
        (["--out", str(tmp_path / "b.fits"), "--cone", "1", "2", "0"], 2, "--cone (1.0, 2.0, 0.0)"),
        (["--out", str(tmp_path / "b.fits"), "--min-p-cnn", "1.5"], 2, "key 'min_p_cnn'"),
    ]
    for args, rc, message in cases:
        assert main(["export", "--catalog", cat, *args]) == rc, args
        err = capsys.readouterr().err.strip()
        assert message in err and "Traceback" not in err, err
        assert len(err.splitlines()) == (1 if rc == 1 or "key '" not in message else 2), err
    with pytest.raises(OutputError):
        export_catalog(cat, str(out))


def test_export_of_a_version_published_with_ray(tmp_path, ray_local):
    """The real publish's layout (small partitions of several orders, their row groups) reads
    as the hand-made one: a cone selects the rows worked out here, reading some partitions."""
    from builders import SMALL, rows

    from hicatalog.catalog.publish import publish_tables

    src = rows(1200, seed=5, prefix="r")
    publish_tables(str(tmp_path / "cat"), [src.slice(0, 600), src.slice(600)], build_id="r",
                   **SMALL)
    res = export_catalog(str(tmp_path / "cat"), str(tmp_path / "cone.fits"),
                         cone=(180.0, 0.0, 4.0), status="any")
    ra, dec, ok = _positions(src)
    sep = SkyCoord(np.where(ok, ra, 0) * u.deg, np.where(ok, dec, 0) * u.deg).separation(
        SkyCoord(180 * u.deg, 0 * u.deg)).deg
    want = _ids(src, ok & (sep <= 4.0))
    assert sorted(Table.read(tmp_path / "cone.fits")["object_id"]) == want and len(want) > 20
    assert 0 < res.files_read < res.partitions


def test_the_commands_and_code_of_docs_export_md_run(catalog, tmp_path, monkeypatch, capsys):
    """Every ``hicatalog export`` line and Python block of docs/export.md, in order, on the
    test's catalog in place of ``runs/demo/catalog``."""
    import re
    import shlex
    from pathlib import Path

    cat, _ = catalog
    doc = (Path(__file__).resolve().parents[1] / "docs" / "export.md").read_text()
    monkeypatch.chdir(tmp_path)
    ran = 0
    for lang, block in re.findall(r"```(bash|python)\n(.*?)```", doc, flags=re.S):
        block = block.replace("runs/demo/catalog", cat)
        if lang == "python":
            exec(compile(block, "docs/export.md", "exec"), {})
            ran += 1
            continue
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("hicatalog export"):
                assert main(shlex.split(line, comments=True)[1:]) == 0, line
                assert capsys.readouterr().out.startswith("exported "), line
                ran += 1
    assert ran == 5 and (tmp_path / "box.vot").exists() and (tmp_path / "v1.fits.gz").exists()


def test_a_config_file_and_an_output_url(catalog, tmp_path, s3_bucket, capsys):
    """The options as keys of a TOML file, the output a gzipped FITS object in a bucket: the
    same rows as the same selection written locally."""
    from hicatalog import storage

    cat, _ = catalog
    cfg = tmp_path / "export.toml"
    cfg.write_text(f'catalog = "{cat}"\nout = "{s3_bucket}/sel/box.fits.gz"\n'
                   'box = [350, 10, -20, 20]\nmin_p_cnn = 0.5\ncolumns = ["object_id", "p_cnn"]\n')
    assert main(["export", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.startswith("exported ")
    data = storage.read_bytes(f"{s3_bucket}/sel/box.fits.gz")
    assert data[:2] == b"\x1f\x8b"  # gzip
    remote = Table.read(io.BytesIO(gzip.decompress(data)), format="fits")
    export_catalog(cat, str(tmp_path / "box.fits"), box=(350, 10, -20, 20), min_p_cnn=0.5,
                   columns=["object_id", "p_cnn"])
    local = Table.read(tmp_path / "box.fits")
    assert len(remote) == len(local) > 20 and remote.colnames == ["object_id", "p_cnn"]
    assert list(remote["object_id"]) == list(local["object_id"])
