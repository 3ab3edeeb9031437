"""The published catalogs as they really come (issue #16): 64-bit ids, sentinels, extreme but
real values, cross-match radii. Every input is written here in its published format (CSV with
the published headers, padded or not, empty fields; FITS binary tables written by astropy);
every expected value is written by hand."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pyarrow as pa
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table

from hicatalog.ids import IdError, int_ids, text_ids
from hicatalog.schemas import table_spec
from hicatalog.surveys import readers, selections
from hicatalog.surveys.crossmatch import has_neighbour, nearest_match
from hicatalog.surveys.quality import QUALITY_BITS, TYPICAL_RANGES, null_missing

# Two DR7-style objIDs above 2**53: float64 turns them into other ids.
ID1 = 587722981741363294  # run 752, rerun 40, camcol 1, field 263, obj 94
ID2 = 588848972367725318  # float64: 5.888489723677253e+17 = 588848972367725312
KEY1 = 11262229437939806  # ID1 without the skyVersion bit (2**59)
KEY2 = 12388220064301830


# ---------------------------------------------------------------------------------------------
# ids: exact, in every reader


def test_photoobjid_is_exact_with_a_padded_header_and_empty_fields(tmp_path):
    """The a.40 cross-match as a new user had it: padded header names, some ids empty. The
    column used to be inferred as integers-with-nulls and handed on as float64."""
    f = tmp_path / "a40.datafile3.csv"
    f.write_text(" AGCNr , PhotoObjID , SpecObjID ,rmodelmag\n"
                 f"5470,{ID1},,17.2\n"
                 "5471,,,\n"
                 f"5472,{ID2},75094092974915584,16.1\n")
    t = readers.read_a40_sdss(str(f))
    assert t.column("agc").to_pylist() == [5470, 5471, 5472]
    assert t.column("photo_objid").type == pa.int64()
    assert t.column("photo_objid").to_pylist() == [ID1, 0, ID2]
    assert t.column("photo_key").to_pylist() == [KEY1, -1, KEY2]


def test_photoobjid_in_fits_as_int64_or_text_is_exact_and_as_float_is_refused(tmp_path):
    for name, col in (("int.fits", np.array([ID1, ID2], dtype=np.int64)),
                      ("text.fits", np.array([f" {ID1}", str(ID2)]))):
        Table({"AGCNr": np.array([1, 2], np.int32), "PhotoObjID": col}).write(tmp_path / name)
        t = readers.read_a40_sdss(str(tmp_path / name))
        assert t.column("photo_objid").to_pylist() == [ID1, ID2], name
        assert t.column("photo_key").to_pylist() == [KEY1, KEY2], name
    Table({"AGCNr": np.array([1, 2], np.int32),
           "PhotoObjID": np.array([ID1, ID2], dtype=np.float64)}).write(tmp_path / "float.fits")
    with pytest.raises(readers.CatalogFormatError, match=r"float.fits.*PhotoObjID.*floating"):
        readers.read_a40_sdss(str(tmp_path / "float.fits"))


def test_an_id_that_already_went_through_float64_is_an_error_not_a_wrong_match(tmp_path):
    f = tmp_path / "a40.datafile3.csv"
    f.write_text("AGCNr,PhotoObjID\n5470,5.888489723677253e+17\n5471,\n")
    with pytest.raises(readers.CatalogFormatError,
                       match=r"datafile3.csv: column 'PhotoObjID'.*'5.888489723677253e\+17'.*"
                             r"floating-point notation"):
        readers.read_a40_sdss(str(f))
    g = tmp_path / "nsa.fits"
    Table({"NSAID": np.array([1.5, 2.0]), "RA": [1.0, 2.0], "DEC": [1.0, 2.0],
           "Z": np.array([0.01, 0.02], np.float32)}).write(g)
    with pytest.raises(readers.CatalogFormatError, match=r"nsa.fits: column 'NSAID'.*1.5"):
        readers.read_nsa(str(g))


def test_text_and_64_bit_ids_of_every_reader_are_kept_exactly(tmp_path):
    # MPA-JHU: SPECOBJID as int64 (above 2**53) in one file, as text in another
    for name, spec in (("info_int.fits", np.array([ID1, ID2], np.int64)),
                       ("info_text.fits", np.array([str(ID1), f"{ID2} "]))):
        Table({"RA": [150.0, 151.0], "DEC": [2.0, 3.0], "Z": np.array([0.02, 0.03], np.float32),
               "PHOTOID": np.array([[752, 40, 1, 263, 94], [1000, 301, 2, 11, 2]], np.int32),
               "SPECOBJID": spec}).write(tmp_path / name)
    Table({"MEDIAN": np.array([10.0, 9.5], np.float32)}).write(tmp_path / "mass.fits")
    for name in ("info_int.fits", "info_text.fits"):
        mpa = readers.read_mpajhu(str(tmp_path / name), str(tmp_path / "mass.fits"))
        assert mpa.column("specobjid").to_pylist() == [str(ID1), str(ID2)], name
        assert mpa.column("photo_key").to_pylist()[0] == KEY1
    # xGASS as CSV with padded headers; GASS ids as written; NIBLES text ids with leading zeros
    (tmp_path / "xgass.csv").write_text(
        " GASS , RA , DEC , zSDSS , lgMstar , lgMHI , HIsrc \n"
        "109,150.1,2.1,0.03,10.3,9.3,1\n"
        "3505,150.2,2.2,0.04,10.9,8.9,4\n")
    xg = readers.read_xgass(str(tmp_path / "xgass.csv"))
    assert xg.column("xgass_id").to_pylist() == ["109", "3505"]
    assert xg.column("upper_limit").to_pylist() == [False, True]
    (tmp_path / "nibles.csv").write_text(
        "nibles_id , ra , dec , z , logMstar , logMHI\n"
        "0007,150.0,2.0,0.01,9.1,8.9\n"
        "N1864,151.0,3.0,0.02,8.4,8.8\n")
    assert readers.read_nibles(str(tmp_path / "nibles.csv")).column("nibles_id").to_pylist() \
        == ["0007", "N1864"]
    # NSA ids as int64 FITS
    Table({"NSAID": np.array([ID1, 7], np.int64), "RA": [150.0, 151.0], "DEC": [2.0, 3.0],
           "Z": np.array([0.02, 0.03], np.float32)}).write(tmp_path / "nsa.fits")
    assert readers.read_nsa(str(tmp_path / "nsa.fits")).column("object_id").to_pylist() == [
        f"NSA{ID1}", "NSA7"]


def test_the_id_rule_itself():
    ids, present = int_ids(np.array([f" {ID1} ", "", None, "+12", "0042"], dtype=object), "w",
                           allow_missing=True)
    assert ids.tolist() == [ID1, 0, 0, 12, 42] and present.tolist() == [
        True, False, False, True, True]
    assert int_ids(np.array([3.0, 2.0**52]), "w")[0].tolist() == [3, 2**52]  # exact floats
    assert text_ids(pa.array([ID2, 5], pa.int64()), "w").tolist() == [str(ID2), "5"]
    assert text_ids(np.array(["0001", " AGC5470 "], dtype=object), "w").tolist() == [
        "0001", "AGC5470"]
    for bad, msg in (([float(ID2)], "floating point"), (["12.0"], "floating-point notation"),
                     (["AGC1"], "not an integer id"), ([None], "no id"),
                     (np.array([2**64 - 1], np.uint64), "64-bit")):
        with pytest.raises(IdError, match=msg):
            int_ids(np.asarray(bad, dtype=object) if isinstance(bad, list) else bad, "w")


# ---------------------------------------------------------------------------------------------
# sentinels: null where they are sentinels, in every reader


def test_nsa_sentinel_redshifts_are_null_so_those_rows_are_no_tracers(tmp_path):
    Table({
        "NSAID": np.arange(1, 8, dtype=np.int32),
        "RA": [150.0, 150.1, 150.2, 150.3, 150.4, 150.5, 150.6],
        "DEC": [2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6],
        "Z": np.array([0.02, -9999.0, -999.0, -99.0, 99.99, np.nan, 0.03], np.float32),
    }).write(tmp_path / "nsa_v1_0_1.fits")
    t = readers.read_nsa(str(tmp_path / "nsa_v1_0_1.fits"))
    assert t.column("object_id").to_pylist() == ["NSA1", "NSA7"]
    assert t.column("z").to_pylist() == pytest.approx([0.02, 0.03], abs=1e-7)


def test_sentinels_are_null_only_where_they_are_sentinels(tmp_path):
    header = ("AGCNr,Name,RAdeg_HI,DECdeg_HI,RAdeg_OC,DECdeg_OC,Vhelio,W50,sigW,W20,HIflux,"
              "sigflux,SNR,RMS,Dist,sigDist,logMH,siglogMH,HIcode\n")
    rows = [  # logMH: -99, empty, 9.50, 99.99, -9999, nan; a Vhelio of -99 km/s is real
        "1,x,150.0,2.0,150.0,2.0,-99,150,5,160,1.5,0.1,12,2.1,10.6,2.3,-99,0.05,1\n",
        "2,x,99.99,2.0,99.99,2.0,9000,150,5,160,1.5,0.1,12,2.1,128.6,2.3,,0.05,1\n",
        "3,x,150.0,2.0,,,9000,-999,5,160,1.5,0.1,12,2.1,128.6,2.3,9.50,0.05,2\n",
        "4,x,150.0,2.0,0,0,-9999,150,5,160,1.5,0.1,12,2.1,128.6,2.3,99.99,0.05,1\n",
        "5,x,150.0,2.0,150.0,2.0,9000,150,5,160,1.5,0.1,12,2.1,-9999,2.3,-9999,0.05,1\n",
        "6,x,150.0,2.0,150.0,2.0,9000,150,5,160,1.5,0.1,12,2.1,128.6,2.3,nan,0.05,1\n",
    ]
    (tmp_path / "a100.csv").write_text(header + "".join(rows))
    t = readers.read_a100(str(tmp_path / "a100.csv")).to_pydict()
    nan = float("nan")
    np.testing.assert_array_equal(t["log_mhi"], [nan, nan, 9.5, nan, nan, nan])
    np.testing.assert_array_equal(t["vhelio"], [-99.0, 9000.0, 9000.0, nan, 9000.0, 9000.0])
    np.testing.assert_array_equal(t["w50"], [150.0, 150.0, nan, 150.0, 150.0, 150.0])
    np.testing.assert_array_equal(t["dist_mpc"], [10.6, 128.6, 128.6, 128.6, nan, 128.6])
    np.testing.assert_array_equal(t["ra_hi"][:2], [150.0, 99.99])  # an RA of 99.99 is real
    np.testing.assert_array_equal(t["ra_oc"], [150.0, 99.99, nan, nan, 150.0, 150.0])

    # MPA-JHU: -1 / -99 / -9999 masses are sentinels; a log SFR of -1 is 0.1 Msun/yr
    Table({"RA": [150.0, 151.0, 152.0, 153.0], "DEC": [2.0, 3.0, 4.0, 5.0],
           "Z": np.array([0.02, -9999.0, 0.03, 0.04], np.float32),
           "PHOTOID": np.arange(20, dtype=np.int32).reshape(4, 5)}).write(tmp_path / "info.fits")
    for name, v in (("mass", [-1.0, -99.0, -9999.0, 10.2]), ("sfr", [-99.0, -9999.0, 0.3, -1.0]),
                    ("oh", [-99.0, 8.9, -9999.0, 99.99])):
        Table({"MEDIAN": np.array(v, np.float32)}).write(tmp_path / f"{name}.fits")
    m = readers.read_mpajhu(*(str(tmp_path / f) for f in
                              ("info.fits", "mass.fits", "sfr.fits", "oh.fits"))).to_pydict()
    np.testing.assert_allclose(m["log_mstar"], [nan, nan, nan, 10.2], rtol=1e-6)
    np.testing.assert_allclose(m["log_sfr"], [nan, nan, 0.3, -1.0], rtol=1e-6)
    np.testing.assert_allclose(m["oh"], [nan, 8.9, nan, nan], rtol=1e-6)
    np.testing.assert_allclose(m["z"], [0.02, nan, 0.03, 0.04], rtol=1e-6)

    # NIBLES (CSV) and xGASS (FITS) by the same rule
    (tmp_path / "nibles.csv").write_text("nibles_id,ra,dec,z,logMstar,logMHI\n"
                                         "1,150.0,2.0,-9999,9.1,99.99\n2,151,3,0.02,-99,8.8\n")
    n = readers.read_nibles(str(tmp_path / "nibles.csv")).to_pydict()
    np.testing.assert_array_equal(n["z"], [nan, 0.02])
    np.testing.assert_array_equal(n["log_mhi"], [nan, 8.8])
    np.testing.assert_array_equal(n["log_mstar"], [9.1, nan])
    Table({"GASS": np.array([1, 2], np.int32), "RA": [150.0, 151.0], "DEC": [2.0, 3.0],
           "zSDSS": np.array([0.03, 0.04], np.float32),
           "lgMstar": np.array([-999.0, 10.5], np.float32),
           "lgMHI": np.array([9.0, np.inf], np.float32),
           "HIsrc": np.array([1, 1], np.int16)}).write(tmp_path / "xgass.fits")
    x = readers.read_xgass(str(tmp_path / "xgass.fits")).to_pydict()
    np.testing.assert_array_equal(x["log_mstar"], [nan, 10.5])
    np.testing.assert_array_equal(x["log_mhi"], [9.0, nan])


def test_null_missing_covers_every_measured_column_and_float32_sentinels():
    got = null_missing(np.array([-99.99, 99.99, -9999.0, -1.0, 3.76, np.inf], np.float32),
                       "log_mstar")
    np.testing.assert_allclose(got, [-99.99, np.nan, np.nan, np.nan, 3.76, np.nan], rtol=1e-6)
    with pytest.raises(KeyError, match="no sentinel rule"):
        null_missing(np.array([1.0]), "snr")


# ---------------------------------------------------------------------------------------------
# extreme but real values: kept and flagged


def test_a_real_extreme_hi_mass_is_kept_by_the_reader(tmp_path):
    """AGC 5470 has log M_HI = 3.76: a genuine nearby dwarf, not a sentinel."""
    (tmp_path / "a40.csv").write_text(
        "AGCNr,Name,HIra,HIdec,OCra,OCdec,Vhelio,W50,errW50,HIflux,errflux,SNR,RMS,Dist,"
        "logMsun,HIcode,OCcode\n"
        "5470,UGC5470,152.117,12.306,152.117,12.306,-20,30,2,1.2,0.1,20,2.0,0.25,3.76,1,I\n"
        "5471,x,152.2,12.4,152.2,12.4,9000,150,5,1.5,0.1,12,2.1,128.6,12.40,1,I\n")
    t = readers.read_a40(str(tmp_path / "a40.csv"))
    assert t.column("log_mhi").to_pylist() == [3.76, 12.40]


def test_quality_flags_extreme_values_by_hand():
    # (log_mhi, log_mstar): m_true = log_mhi - log_mstar
    labels = selections._labels(
        ["dwarf", "typical", "massive", "gas_giant", "nondetection"],
        [1.0] * 5, [1.0] * 5, [0.01] * 5,
        [7.2, 10.0, 12.4, 10.0, 10.0],        # log_mstar
        [3.76, 9.5, 9.0, 11.3, np.nan],       # log_mhi
        True, False, "a100")
    # dwarf: log_mhi < 6 (1) and m_true = -3.44 < -3 (4); massive: log_mstar > 12 (2) and
    # m_true = -3.4 (4); gas giant: log_mhi > 11 (1); no M_HI: nothing to flag
    assert labels.column("quality").to_pylist() == [5, 0, 6, 1, 0]
    assert labels.column("log_mhi").to_pylist()[0] == pytest.approx(3.76, abs=1e-6)
    assert labels.column("quality").type == pa.int32()


def test_the_quality_flag_is_in_the_labels_and_cutouts_contracts():
    for name, required in (("labels", True), ("cutouts", False)):
        spec = table_spec(name)
        field = spec.field("quality")
        assert field.type == pa.int32() and field.nullable != required
        assert ("quality" in spec.required) == required
        desc = field.metadata[b"description"].decode()
        for col, bit in QUALITY_BITS.items():
            assert f"{bit} = {col}" in desc, (name, col)
        lo, hi = TYPICAL_RANGES["log_mhi"]
        assert f"log_mhi {lo:g}-{hi:g}" in desc
    from hicatalog.cutouts.targets import label_columns

    assert "quality" in label_columns()  # so fetch carries it into the shards


# ---------------------------------------------------------------------------------------------
# cross-match radii


def _offsets(ra, dec, arcsec):
    c = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(
        np.deg2rad(np.arange(len(arcsec)) * 47.0) * u.rad, np.asarray(arcsec) * u.arcsec)
    return c.ra.deg, c.dec.deg


def test_same_galaxy_radius_removes_near_duplicates_and_keeps_distinct_galaxies():
    assert selections.SAME_GALAXY_RADIUS_ARCSEC == 5.0
    sep = np.array([2.0, 3.0, 4.0, 4.9, 5.2, 6.0, 10.0])
    ra, dec = _offsets(150.0, 10.0, sep)
    near = has_neighbour(ra, dec, np.array([150.0]), np.array([10.0]),
                         selections.SAME_GALAXY_RADIUS_ARCSEC)
    assert near.tolist() == [True, True, True, True, False, False, False]
    idx, d = nearest_match(ra, dec, np.array([150.0, 170.0]), np.array([10.0, 10.0]),
                           selections.SAME_GALAXY_RADIUS_ARCSEC)
    assert idx.tolist() == [0, 0, 0, 0, -1, -1, -1]
    np.testing.assert_allclose(d[:4], sep[:4], atol=1e-6)


def test_nibles_near_duplicates_of_alfalfa_and_xgass_are_removed():
    """NIBLES positions are tabulated to ~1": the same galaxy sits 2-4" from its ALFALFA or
    xGASS position; a NIBLES galaxy 6" or 12" away is another galaxy."""
    a100 = selections._labels(["AGC1", "AGC2"], [150.0, 160.0], [10.0, 12.0], [0.02, 0.02],
                              [10.0, 10.0], [9.5, 9.5], True, False, "a100")
    xgass = selections._labels(["GASS1"], [170.0], [14.0], [0.03], [10.5], [9.0], True,
                               False, "xgass")
    ra1, dec1 = _offsets(150.0, 10.0, [2.0, 6.0])
    ra2, dec2 = _offsets(160.0, 12.0, [3.5, 12.0])
    ra3, dec3 = _offsets(170.0, 14.0, [4.0])
    nib = pa.table({
        "nibles_id": ["1", "2", "3", "4", "5"],
        "ra": np.concatenate([ra1, ra2, ra3]), "dec": np.concatenate([dec1, dec2, dec3]),
        "z": [0.02] * 5, "log_mstar": [9.0] * 5, "log_mhi": [9.0] * 5,
    })
    slog = selections.SelectionLog()
    kept = selections.select_nibles(nib, [a100], xgass, slog)
    assert kept.column("object_id").to_pylist() == ["NIBLES2", "NIBLES4"]
    assert slog.count("nibles", 'ALFALFA and xGASS overlaps (5") removed') == 2
