"""Catalog readers, cross-matching and the paper's selections, on fixture files that the tests
write in the published formats (CSV with the published headers; FITS written by astropy)."""

from __future__ import annotations

import dataclasses
import logging

import astropy.units as u
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table
from surveyfiles import build_universe, write_universe

from hicatalog.cutouts.targets import read_targets
from hicatalog.schemas import read_table
from hicatalog.surveys import readers, selections
from hicatalog.surveys.crossmatch import has_neighbour, nearest_match
from hicatalog.surveys.labels import build_labels, table1_summary
from hicatalog.surveys.selections import SelectionLog

ARCSEC = 1.0 / 3600.0


# ---------------------------------------------------------------------------------------------
# fixture universe: every selection rule has rows built to trip it (and only it)


A40_CUTS = ["OCcode = I", "has a DR7 PhotoObjID", "duplicate DR7 matches dropped",
            "in MPA-JHU DR7", "valid stellar mass -> a.40A"]
A100_CUTS = ["in the ALFALFA Spring sky", 'MPA-JHU galaxy within 5"',
             "no other H I source within 1.9'", 'no optical neighbour within 55"',
             'a.40A and xGASS overlaps (5") removed', "valid stellar mass"]
ND_CUTS = ["0 < z < 0.06", "inside the ALFALFA footprint", 'not an a.100 counterpart (5")',
           "no H I source within the Arecibo beam (1.75')", 'no optical neighbour within 55"']
NIBLES_CUTS = ["valid M* >= 10^8 Msun", "visual inspection rejections removed",
               'ALFALFA and xGASS overlaps (5") removed']


@pytest.fixture(scope="module")
def universe(tmp_path_factory):
    d = tmp_path_factory.mktemp("catalogs")
    U = build_universe()
    return U, write_universe(U, d)


def expected_counts(rows, cuts, key="cut"):
    """Rows left after each cut, from the step each row was built to fail."""
    n = len(rows)
    out = []
    for c in cuts:
        n -= sum(1 for r in rows if r[key] == c)
        out.append(n)
    return out


# ---------------------------------------------------------------------------------------------
# readers


def test_readers_map_published_columns_and_sentinels(universe):
    U, inp = universe
    a40 = readers.read_a40(inp.a40)
    assert a40.num_rows == len(U.a40) and a40.column("agc").type == pa.int64()
    assert a40.column("oc_code").to_pylist()[:5] == ["I", "I", "I", "I", "U"]
    assert a40.column("ra_oc").to_pylist()[0] == pytest.approx(U.a40[0]["ra_oc"], abs=1e-7)
    x = readers.read_a40_sdss(inp.a40_sdss)
    assert x.column("photo_key").to_pylist()[5] == -1  # the empty PhotoObjID
    mpa = readers.read_mpajhu(inp.mpa_info, inp.mpa_mass, inp.mpa_sfr, inp.mpa_oh)
    assert mpa.num_rows == len(U.mpa)
    ms = mpa.column("log_mstar").to_numpy()
    assert np.isnan(ms[[i for i, m in enumerate(U.mpa) if m["mass"] < 0]]).all()
    assert np.isnan(mpa.column("log_sfr").to_numpy()[U.a40[1]["mpa"]])  # -99 -> NaN
    assert np.isnan(mpa.column("oh").to_numpy()[U.a40[2]["mpa"]])       # -9999 -> NaN
    # the PhotoObjID of a.40 and the PHOTOID parts of MPA-JHU give the same key
    assert x.column("photo_key").to_pylist()[0] == mpa.column("photo_key").to_pylist()[
        U.a40[0]["mpa"]]
    a100 = readers.read_a100(inp.a100)
    assert a100.num_rows == len(U.a100) and a100.column("log_mhi").to_pylist()[0] == 9.6
    xg = readers.read_xgass(inp.xgass)
    assert xg.column("upper_limit").to_pylist() == [False, True, False]
    nib = readers.read_nibles(inp.nibles)
    assert nib.column("nibles_id").to_pylist()[:2] == ["1", "2"]
    assert np.isnan(nib.column("log_mstar").to_numpy()[3])
    nsa = readers.read_nsa(inp.nsa)
    assert nsa.column("object_id").to_pylist() == ["NSA0", "NSA1", "NSA3", "NSA4"]


def test_objid_key_ignores_sky_version():
    parts = (752, 40, 1, 263, 94)
    assert int(readers.sdss_objid(*parts)) == 587722981741363294  # a real DR7 objID
    assert readers.photo_key_from_objid(readers.sdss_objid(*parts, sky_version=1)) == \
        readers.photo_key_from_objid(readers.sdss_objid(*parts, sky_version=2))


def test_a_file_that_is_not_what_it_claims_names_file_and_column(tmp_path, universe):
    _, inp = universe
    bad = tmp_path / "a40.datafile1.csv"
    bad.write_text("AGCNr,Name,HIra,HIdec,OCra,OCdec,Vhelio,W50,HIflux,Dist,HIcode,OCcode\n"
                   "1,x,1,2,1,2,3,4,5,6,1,I\n")
    with pytest.raises(readers.CatalogFormatError, match=r"a40.datafile1.csv.*'logMsun'"):
        readers.read_a40(str(bad))
    with pytest.raises(readers.CatalogFormatError,
                       match=r"a40.datafile1.csv is not a valid ALFALFA a.100.*'RAdeg_HI'"):
        readers.read_a100(inp.a40)  # an a.40 file handed to the a.100 reader
    t = Table({"RA": [1.0], "DEC": [2.0], "Z": [0.1]})
    t.write(tmp_path / "info.fits", format="fits")
    with pytest.raises(readers.CatalogFormatError, match=r"info.fits.*'PHOTOID'"):
        readers.read_mpajhu(str(tmp_path / "info.fits"), inp.mpa_mass)
    t = Table({"MEDIAN": np.ones(3, np.float32)})
    t.write(tmp_path / "short_mass.fits", format="fits")
    with pytest.raises(readers.CatalogFormatError, match="row-aligned"):
        readers.read_mpajhu(inp.mpa_info, str(tmp_path / "short_mass.fits"))
    with pytest.raises(readers.CatalogFormatError, match="no such file"):
        readers.read_xgass(str(tmp_path / "missing.fits"))
    (tmp_path / "x.csv").write_text("GASS,RA,DEC,zSDSS,lgMstar,lgMHI\n1,1,2,0.02,10,9\n")
    with pytest.raises(readers.CatalogFormatError, match="HIsrc"):
        readers.read_xgass(str(tmp_path / "x.csv"))


# ---------------------------------------------------------------------------------------------
# crossmatch against brute force


def brute_force_separations(ra1, dec1, ra2, dec2):
    c1 = SkyCoord(ra1 * u.deg, dec1 * u.deg)
    c2 = SkyCoord(ra2 * u.deg, dec2 * u.deg)
    return c1[:, None].separation(c2[None, :]).arcsec  # (N1, N2)


def test_crossmatch_agrees_with_all_pairs_separations():
    rng = np.random.default_rng(3)
    # a patch straddling ra = 0 and a second one at high declination
    ra1 = np.concatenate([rng.uniform(-0.3, 0.3, 150) % 360, rng.uniform(10, 11, 100)])
    dec1 = np.concatenate([rng.uniform(-0.3, 0.3, 150), rng.uniform(70, 70.3, 100)])
    ra2 = np.concatenate([rng.uniform(-0.3, 0.3, 200) % 360, rng.uniform(10, 11, 150)])
    dec2 = np.concatenate([rng.uniform(-0.3, 0.3, 200), rng.uniform(70, 70.3, 150)])
    ra1[7], dec1[9] = np.nan, np.nan
    sep = brute_force_separations(np.nan_to_num(ra1), np.nan_to_num(dec1), ra2, dec2)
    sep[[7, 9]] = np.inf
    for radius in (20.0, 45.0, 90.0):
        idx, d = nearest_match(ra1, dec1, ra2, dec2, radius)
        best = sep.argmin(axis=1)
        hit = sep.min(axis=1) <= radius
        assert hit.sum() > 5 and (~hit).sum() > 5
        np.testing.assert_array_equal(idx, np.where(hit, best, -1))
        np.testing.assert_allclose(d[hit], sep.min(axis=1)[hit], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(
            has_neighbour(ra1, dec1, ra2, dec2, radius), (sep <= radius).any(axis=1))
    # the same catalog: the galaxy itself is no neighbour
    self_sep = brute_force_separations(ra2, dec2, ra2, dec2)
    np.fill_diagonal(self_sep, np.inf)
    np.testing.assert_array_equal(
        has_neighbour(ra2, dec2, ra2, dec2, 120.0, exclude_same_index=True),
        (self_sep <= 120.0).any(axis=1))
    nan = np.array([np.nan])
    assert nearest_match(ra1[:3], dec1[:3], nan, nan, 10)[0].tolist() == [-1, -1, -1]


# ---------------------------------------------------------------------------------------------
# selections, one rule at a time


@pytest.fixture(scope="module")
def selected(universe):
    U, inp = universe
    slog = SelectionLog()
    mpa = readers.read_mpajhu(inp.mpa_info, inp.mpa_mass, inp.mpa_sfr, inp.mpa_oh)
    a40 = selections.select_a40(readers.read_a40(inp.a40), readers.read_a40_sdss(inp.a40_sdss),
                                mpa, slog)
    xg = selections.select_xgass(readers.read_xgass(inp.xgass), slog)
    a100_raw = readers.read_a100(inp.a100)
    a100 = selections.select_a100(a100_raw, mpa, a40, xg, slog)
    nib = selections.select_nibles(readers.read_nibles(inp.nibles), [a40, a100], xg, slog,
                                   exclude_ids=["5"])
    nd = selections.select_nondetections(mpa, a100_raw, a40.num_rows, slog, seed=1)
    return dict(slog=slog, mpa=mpa, a40=a40, xgass=xg, a100=a100, nibles=nib, nd=nd,
                a100_raw=a100_raw)


def test_a40_selection_steps(universe, selected):
    U, _ = universe
    slog, a40 = selected["slog"], selected["a40"]
    got = [slog.count("a40", c) for c in A40_CUTS[:-1]] + [slog.count("a40A", A40_CUTS[-1])]
    assert got == expected_counts(U.a40, A40_CUTS)
    assert slog.count("a40B", "valid SFR, metallicity, spec-z -> a.40B") == 1
    by_ds = {}
    for r in a40.to_pylist():
        by_ds.setdefault(r["dataset"], []).append(r["object_id"])
    assert by_ds == {"a40B": [f"AGC{g}" for g in U.a40_good["a40B"]],
                     "a40A": [f"AGC{g}" for g in U.a40_good["a40A"]]}
    r = a40.to_pylist()[0]
    assert r["m_true"] == pytest.approx(9.5 - 10.0, abs=1e-6) and r["detected"]
    assert not r["upper_limit"] and r["z"] == pytest.approx(0.065, abs=1e-6)


def test_a100_selection_steps(universe, selected):
    U, _ = universe
    slog, a100 = selected["slog"], selected["a100"]
    assert slog.count("a100", "read a.100") == len(U.a100)
    assert [slog.count("a100", c) for c in A100_CUTS] == expected_counts(U.a100, A100_CUTS)
    kept = [f"AGC{r['agc']}" for r in U.a100 if r["cut"] is None]
    assert a100.column("object_id").to_pylist() == kept and len(kept) == 2
    # the label position is the MPA-JHU galaxy's, not the ALFALFA optical position
    k = U.k_a100_good[0]
    assert a100.column("ra").to_pylist()[0] == pytest.approx(U.mpa[k]["ra"], abs=1e-9)


def test_xgass_upper_limits_are_kept_and_flagged(selected):
    rows = selected["xgass"].to_pylist()
    assert [(r["detected"], r["upper_limit"]) for r in rows] == [(True, False), (False, True)]
    assert rows[1]["m_true"] == pytest.approx(8.9 - 10.3, abs=1e-5)
    assert selected["slog"].count("xgass", "of which upper limits") == 1


def test_nibles_selection_steps(universe, selected):
    U, _ = universe
    slog = selected["slog"]
    assert [slog.count("nibles", c) for c in NIBLES_CUTS] == expected_counts(U.nibles,
                                                                              NIBLES_CUTS)
    # near-duplicates at 2-4" removed; the galaxy 7" from an a.40A one kept
    assert selected["nibles"].column("object_id").to_pylist() == ["NIBLES1", "NIBLES2",
                                                                  "NIBLES9"]


def test_nondetection_selection_steps_and_balance(universe, selected):
    U, _ = universe
    slog, nd, a40 = selected["slog"], selected["nd"], selected["a40"]
    rows = [{"cut": c} for c in U.nd.values()]
    assert [slog.count("nondetections", c) for c in ND_CUTS] == expected_counts(rows, ND_CUTS)
    pool = {f"SDSS{75094092974915584 + k}" for k, c in U.nd.items() if c is None}
    assert len(pool) == 7
    ids = nd.column("object_id").to_pylist()
    assert len(ids) == a40.num_rows == 4 and set(ids) <= pool  # balanced with a.40A
    assert not any(nd.column("detected").to_pylist())
    assert nd.column("m_true").null_count == nd.num_rows
    # asking for more than the pool holds gives the whole pool
    all_nd = selections.select_nondetections(selected["mpa"], selected["a100_raw"], 100,
                                             SelectionLog())
    assert set(all_nd.column("object_id").to_pylist()) == pool
    again = selections.select_nondetections(selected["mpa"], selected["a100_raw"], 4,
                                            SelectionLog(), seed=1)
    assert again.column("object_id").to_pylist() == ids  # deterministic for a seed


def test_footprint_wraps_through_ra_zero():
    inside = selections.in_footprint(np.array([359.0, 1.0, 100.0, 150.0, 150.0]),
                                     np.array([10.0, 10.0, 10.0, 10.0, -5.0]))
    assert inside.tolist() == [True, True, False, True, False]


# ---------------------------------------------------------------------------------------------
# the whole build: labels, steps, Table 1


def test_build_labels_writes_a_valid_labels_table_and_table1(universe, tmp_path):
    U, inp = universe
    labels, steps, table1 = build_labels(inp, str(tmp_path), seed=1)
    stored = read_table(str(tmp_path / "labels.parquet"), "labels")
    assert stored.num_rows == labels.num_rows == 4 + 2 + 2 + 3 + 4
    t1 = {r["sample"]: r for r in table1.to_pylist()}
    assert {k: v["N"] for k, v in t1.items()} == {
        "a40A": 4, "a40B": 1, "a100": 2, "nibles": 3, "xgass": 2, "nondetections": 4}
    assert t1["a40B"]["m_true_q50"] == pytest.approx(-0.5, abs=1e-6)
    assert np.isnan(t1["nondetections"]["log_mhi_q50"])
    assert (tmp_path / "selection_steps.csv").exists() and (tmp_path / "table1.csv").exists()
    assert pq.read_table(tmp_path / "tracers.parquet").num_rows == 4
    assert steps.num_rows > 20
    # the dwarf with log M_HI = 3.76 is kept, flagged: log_mhi < 6 (bit 1) and
    # m_true = 3.76 - 10 = -6.24 < -3 (bit 4); nothing else is flagged
    quality = dict(zip(stored.column("object_id").to_pylist(),
                       stored.column("quality").to_pylist(), strict=True))
    assert quality.pop(f"AGC{U.dwarf_agc}") == 5 and set(quality.values()) == {0}
    assert stored.filter(pc.equal(stored.column("object_id"), f"AGC{U.dwarf_agc}")) \
        .column("log_mhi").to_pylist() == [pytest.approx(3.76, abs=1e-6)]
    # the labels table is a valid fetch target list as it stands
    cat = read_targets(str(tmp_path / "labels.parquet"))
    assert cat.num_rows == labels.num_rows


def test_table1_quantiles_match_numpy():
    rng = np.random.default_rng(0)
    n = 101
    ms, mhi = rng.normal(10, 0.5, n), rng.normal(9.5, 0.4, n)
    labels = selections._labels([f"g{i}" for i in range(n)], np.zeros(n), np.zeros(n),
                                np.full(n, 0.02), ms, mhi, True, False, "a100")
    row = [r for r in table1_summary(labels).to_pylist() if r["sample"] == "a100"][0]
    for q in (16, 50, 84):
        assert row[f"m_true_q{q}"] == pytest.approx(
            np.quantile((mhi - ms).astype(np.float32), q / 100), abs=1e-5)


def test_labels_command_prints_the_summary(universe, tmp_path, capsys):
    from hicatalog.cli import main

    _, inp = universe
    argv = ["labels", "--out", str(tmp_path), "--seed", "1"]
    for key, value in inp.__dict__.items():
        if key == "nsa" or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag, *value] if isinstance(value, tuple) else [flag, value]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "15 labelled galaxies" in out and "nondetections  N=      4" in out
    assert "1 with an extreme value, kept and flagged in 'quality'" in out  # the dwarf
    assert not (tmp_path / "tracers.parquet").exists()


def test_a40b_without_sfr_or_oh_files_warns_naming_the_missing_inputs(universe, tmp_path,
                                                                       caplog):
    _, inp = universe
    for missing, names in ((("mpa_sfr", "mpa_oh"), ("mpa_sfr", "mpa_oh")),
                           (("mpa_oh",), ("mpa_oh",))):
        caplog.clear()
        partial = dataclasses.replace(inp, **{k: None for k in missing})
        with caplog.at_level(logging.WARNING, logger="hicatalog.surveys.selections"):
            labels, _, _ = build_labels(partial, str(tmp_path / "_".join(missing)), seed=1)
        assert "a40B" not in labels.column("dataset").to_pylist()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "\n" not in warnings[0]
        assert warnings[0].startswith("a.40B is empty (a.40A has 4 galaxies): missing input")
        for key in ("mpa_sfr", "mpa_oh"):
            assert (key in warnings[0]) == (key in names), (missing, warnings[0])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hicatalog.surveys.selections"):
        build_labels(inp, str(tmp_path / "all"), seed=1)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
