"""The published catalog files, written by tests in their published formats (CSV with the
published headers, padded or not, sentinels and empty fields; FITS binary tables written by
astropy): a :class:`Universe` of rows, and :func:`write_universe` to write it."""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from hicatalog.surveys import readers
from hicatalog.surveys.labels import SurveyInputs


def offset(ra, dec, east_arcsec=0.0, north_arcsec=0.0):
    """Position moved by small on-sky offsets (astropy's spherical_offsets_by)."""
    c = SkyCoord(ra * u.deg, dec * u.deg).spherical_offsets_by(
        east_arcsec * u.arcsec, north_arcsec * u.arcsec)
    return float(c.ra.deg), float(c.dec.deg)


class Universe:
    """Rows of every catalog, each tagged with the step that must remove it (or None)."""

    def __init__(self):
        self.mpa = []      # dicts: ra, dec, z, photoid, zwarn, mass, sfr, oh
        self.a40 = []      # dicts: agc, ra_hi, dec_hi, ra_oc, dec_oc, logm, oc, cut
        self.a40x = []     # dicts: agc, photoobjid (None = empty)
        self.a100 = []     # dicts: agc, ra_hi, dec_hi, ra_oc, dec_oc, logm, cut
        self.xgass = []    # dicts: gass, ra, dec, z, ms, mhi, hisrc, cut
        self.nibles = []   # dicts: id, ra, dec, z, ms, mhi, cut
        self.nd = {}       # mpa index -> cut step (None = in the candidate pool)
        self.nsa = None    # dicts: nsaid, ra, dec, z (None: five fixed rows, one without Z)
        self.site = 0

    def new_site(self, spring=True):
        """A fresh position, 40' from any other (well beyond every radius)."""
        self.site += 1
        k = self.site
        if spring:
            return 130.0 + 0.7 * (k % 40), 4.0 + 0.7 * (k // 40)
        return 350.0 + 0.7 * (k % 10), 20.0

    def add_mpa(self, ra, dec, z=0.065, mass=10.0, sfr=0.1, oh=8.9, zwarn=0, photoid=None,
                nd_cut="0 < z < 0.06"):
        k = len(self.mpa)
        photoid = photoid or [1000 + k, 301, 1 + k % 6, 10 + k, 1 + k]
        self.mpa.append(dict(ra=ra, dec=dec, z=z, mass=mass, sfr=sfr, oh=oh, zwarn=zwarn,
                             photoid=photoid))
        self.nd[k] = nd_cut
        return k

    def objid(self, k):
        return int(readers.sdss_objid(*self.mpa[k]["photoid"]))


def _header(names: str, pad: bool) -> str:
    """A CSV header line; ``pad``: names with blanks around them, as some copies have."""
    return ",".join(f" {n} " if pad else n for n in names.split(",")) + "\n"


def write_universe(U: Universe, d, pad_headers: bool = False) -> SurveyInputs:
    """Write every catalog of ``U`` in its published format under directory ``d``
    (``pad_headers``: CSV header names padded with blanks)."""
    n = len(U.mpa)
    info = Table()
    info["PLATEID"] = np.arange(n, dtype=np.int16) + 266
    info["RA"] = np.array([m["ra"] for m in U.mpa], dtype=np.float64)  # float64 keeps 0.2"
    info["DEC"] = np.array([m["dec"] for m in U.mpa], dtype=np.float64)
    info["Z"] = np.array([m["z"] for m in U.mpa], dtype=np.float32)
    info["Z_WARNING"] = np.array([m["zwarn"] for m in U.mpa], dtype=np.int32)
    info["PHOTOID"] = np.array([m["photoid"] for m in U.mpa], dtype=np.int32)
    info["SPECOBJID"] = np.array([f"{75094092974915584 + i}" for i in range(n)])
    info.write(d / "gal_info_dr7_v5_2.fit", format="fits")
    for name, key in (("totlgm_dr7_v5_2.fit", "mass"), ("gal_totsfr_dr7_v5_2.fits", "sfr"),
                      ("gal_fiboh_dr7_v5_2.fits", "oh")):
        t = Table()
        v = np.array([m[key] for m in U.mpa], dtype=np.float32)
        t["AVG"], t["MEDIAN"], t["P16"], t["P84"] = v, v, v - 0.1, v + 0.1
        t.write(d / name, format="fits")

    header = _header("AGCNr,Name,HIra,HIdec,OCra,OCdec,Vhelio,W50,errW50,HIflux,errflux,SNR,"
                     "RMS,Dist,logMsun,HIcode,OCcode", pad_headers)
    lines = [f"{r['agc']},AGC{r['agc']},{r['ra_hi']:.6f},{r['dec_hi']:.6f},{r['ra_oc']:.7f},"
             f"{r['dec_oc']:.7f},9000,150,5,1.5,0.1,12.0,2.1,128.6,{r['logm']:.2f},1,{r['oc']}\n"
             for r in U.a40]
    (d / "a40.datafile1.csv").write_text(header + "".join(lines))
    lines = [f"{r['agc']},{'' if r['photoobjid'] is None else r['photoobjid']},,"
             "17.2,1.6,0.03\n" for r in U.a40x]
    (d / "a40.datafile3.csv").write_text(
        _header("AGCNr,PhotoObjID,SpecObjID,rmodelmag,uminusr,zsdss", pad_headers)
        + "".join(lines))

    header = _header("AGCNr,Name,RAdeg_HI,DECdeg_HI,RAdeg_OC,DECdeg_OC,Vhelio,W50,sigW,W20,"
                     "HIflux,sigflux,SNR,RMS,Dist,sigDist,logMH,siglogMH,HIcode", pad_headers)
    lines = [f"{r['agc']},........,{r['ra_hi']:.6f},{r['dec_hi']:.6f},{r['ra_oc']:.7f},"
             f"{r['dec_oc']:.7f},9000,150,5,160,1.5,0.1,12.0,2.1,128.6,2.3,{r['logm']:.2f},"
             "0.05,1\n" for r in U.a100]
    (d / "a100.code12.table2.190808.csv").write_text(header + "".join(lines))

    x = Table()
    x["GASS"] = np.array([r["gass"] for r in U.xgass], dtype=np.int32)
    x["SDSS"] = np.array([f"J{i:06d}" for i in range(len(U.xgass))])
    x["RA"] = np.array([r["ra"] for r in U.xgass])
    x["DEC"] = np.array([r["dec"] for r in U.xgass])
    x["zSDSS"] = np.array([r["z"] for r in U.xgass], dtype=np.float32)
    x["lgMstar"] = np.array([r["ms"] for r in U.xgass], dtype=np.float32)
    x["lgMHI"] = np.array([r["mhi"] for r in U.xgass], dtype=np.float32)
    x["lgGF"] = x["lgMHI"] - x["lgMstar"]
    x["HIsrc"] = np.array([r["hisrc"] for r in U.xgass], dtype=np.int16)
    x["HI_FLAG"] = np.where(x["HIsrc"] == 4, 99, 1).astype(np.int16)
    x.write(d / "xGASS_representative_sample.fits", format="fits")

    lines = [f"{i},{r['id']},{r['ra']},{r['dec']},{r['z']},"
             f"{'' if np.isnan(r['ms']) else r['ms']},{r['mhi']},{r['mhi'] - r['ms']:.2f}\n"
             for i, r in enumerate(U.nibles)]
    (d / "NIBLES_data.csv").write_text(
        _header(",nibles_id,ra,dec,z,logMstar,logMHI,logfgas", pad_headers) + "".join(lines))

    write_nsa(U, d)
    return SurveyInputs(
        a40=str(d / "a40.datafile1.csv"), a40_sdss=str(d / "a40.datafile3.csv"),
        mpa_info=str(d / "gal_info_dr7_v5_2.fit"), mpa_mass=str(d / "totlgm_dr7_v5_2.fit"),
        mpa_sfr=str(d / "gal_totsfr_dr7_v5_2.fits"), mpa_oh=str(d / "gal_fiboh_dr7_v5_2.fits"),
        a100=str(d / "a100.code12.table2.190808.csv"),
        xgass=str(d / "xGASS_representative_sample.fits"), nibles=str(d / "NIBLES_data.csv"),
        nsa=str(d / "nsa_v1_0_1.fits"), nibles_exclude_ids=("5",),
    )


def write_nsa(U: Universe, d) -> None:
    """Write (or rewrite) ``d/nsa_v1_0_1.fits`` from ``U.nsa``."""
    rows = U.nsa if U.nsa is not None else [
        dict(nsaid=i, ra=150.0 + i, dec=10.0 + i, z=z)
        for i, z in enumerate((0.01, 0.02, np.nan, 0.03, 0.04))]
    nsa = Table()
    nsa["NSAID"] = np.array([r["nsaid"] for r in rows], dtype=np.int32)
    nsa["IAUNAME"] = np.array([f"J{r['nsaid']}" for r in rows])
    nsa["RA"] = np.array([r["ra"] for r in rows])
    nsa["DEC"] = np.array([r["dec"] for r in rows])
    nsa["Z"] = np.array([r["z"] for r in rows], dtype=np.float32)
    nsa.write(d / "nsa_v1_0_1.fits", format="fits", overwrite=True)


def build_universe() -> Universe:
    """A few rows per sample, each selection rule with rows built to trip it (and only it),
    tagged with the cut that removes them (tests/test_surveys.py counts them)."""
    U = Universe()
    agc = iter(range(1001, 2000))

    def a40_case(cut, oc="I", mass=10.0, sfr=0.1, oh=8.9, zwarn=0, link=True, logm=9.5):
        ra, dec = U.new_site()
        k = U.add_mpa(ra, dec, mass=mass, sfr=sfr, oh=oh, zwarn=zwarn)
        g = next(agc)
        ra_hi, dec_hi = offset(ra, dec, 20, -15)
        U.a40.append(dict(agc=g, ra_hi=ra_hi, dec_hi=dec_hi, ra_oc=ra, dec_oc=dec, logm=logm,
                          oc=oc, cut=cut, mpa=k))
        U.a40x.append(dict(agc=g, photoobjid=U.objid(k) if link else None))
        return g, k

    # --- a.40 -----------------------------------------------------------------------------
    good_b = a40_case(None)                                # a.40A and a.40B
    good_a_sfr = a40_case(None, sfr=-99.0)                 # a.40A only (no SFR)
    good_a_oh = a40_case(None, oh=-9999.0)                 # a.40A only (no metallicity)
    # a.40A only (bad spec-z); log M_HI = 3.76 like AGC 5470, a real nearby dwarf: kept, flagged
    good_a_z = a40_case(None, zwarn=4, logm=3.76)
    a40_case("OCcode = I", oc="U")
    a40_case("has a DR7 PhotoObjID", link=False)
    # two a.40 sources claiming the same DR7 object: both dropped
    g1, k1 = a40_case("duplicate DR7 matches dropped")
    g2 = next(agc)
    U.a40.append(dict(agc=g2, ra_hi=U.a40[-1]["ra_hi"], dec_hi=U.a40[-1]["dec_hi"] + 0.01,
                      ra_oc=U.mpa[k1]["ra"], dec_oc=U.mpa[k1]["dec"], logm=9.0, oc="I",
                      cut="duplicate DR7 matches dropped", mpa=k1))
    U.a40x.append(dict(agc=g2, photoobjid=U.objid(k1)))
    # one DR7 object with two MPA-JHU spectra: dropped
    g3, k3 = a40_case("duplicate DR7 matches dropped")
    U.add_mpa(*offset(U.mpa[k3]["ra"], U.mpa[k3]["dec"], 0.2, 0.0),
              photoid=list(U.mpa[k3]["photoid"]))
    # a PhotoObjID that MPA-JHU does not have
    g4, k4 = a40_case("in MPA-JHU DR7")
    U.a40x[-1]["photoobjid"] = int(readers.sdss_objid(9999, 301, 3, 77, 5))
    a40_case("valid stellar mass -> a.40A", mass=-1.0)

    # --- xGASS ----------------------------------------------------------------------------
    def xgass_case(cut, hisrc=1, mhi=9.3):
        ra, dec = U.new_site()
        U.xgass.append(dict(gass=len(U.xgass) + 100, ra=ra, dec=dec, z=0.03, ms=10.3, mhi=mhi,
                            hisrc=hisrc, cut=cut))
        return ra, dec

    xg_det = xgass_case(None)
    xgass_case(None, hisrc=4, mhi=8.9)                      # upper limit, kept and flagged
    xgass_case("valid M* and M_HI (or its upper limit)", mhi=float("nan"))

    # --- a.100 ----------------------------------------------------------------------------
    def a100_case(cut, ra_oc, dec_oc, ra_hi=None, dec_hi=None, g=None, logm=9.6):
        if ra_hi is None:
            ra_hi, dec_hi = offset(ra_oc, dec_oc, -25, 10)
        U.a100.append(dict(agc=g or next(agc), ra_hi=ra_hi, dec_hi=dec_hi, ra_oc=ra_oc,
                           dec_oc=dec_oc, logm=logm, cut=cut))

    ra, dec = U.new_site()
    k_a100_good = U.add_mpa(ra, dec, z=0.03, nd_cut='not an a.100 counterpart (5")')
    a100_case(None, *offset(ra, dec, 2.4, 1.8))             # optical position 3" off: matched
    ra, dec = U.new_site()
    k_a100_good2 = U.add_mpa(ra, dec)
    a100_case(None, ra, dec)
    # outside the Spring sky (fall sky): removed first
    ra, dec = U.new_site(spring=False)
    U.add_mpa(ra, dec)
    a100_case("in the ALFALFA Spring sky", ra, dec)
    # optical counterpart 8" from the nearest MPA-JHU galaxy (another galaxy); an MPA galaxy
    # 1.2' from its H I position is then no non-detection (inside the beam)
    ra, dec = U.new_site()
    U.add_mpa(*offset(ra, dec, 8.0, 0.0))
    a100_case('MPA-JHU galaxy within 5"', ra, dec, ra, dec)
    U.add_mpa(*offset(ra, dec, 0.0, 72.0), z=0.03,
              nd_cut="no H I source within the Arecibo beam (1.75')")
    # two H I sources 1' apart: both blended
    ra, dec = U.new_site()
    ra2, dec2 = offset(ra, dec, 0.0, 60.0)
    U.add_mpa(ra, dec)
    U.add_mpa(ra2, dec2)
    a100_case("no other H I source within 1.9'", ra, dec, ra, dec)
    a100_case("no other H I source within 1.9'", ra2, dec2, ra2, dec2)
    # an MPA-JHU neighbour 30" away (fibre collision)
    ra, dec = U.new_site()
    U.add_mpa(ra, dec)
    U.add_mpa(*offset(ra, dec, 30.0, 0.0))
    a100_case('no optical neighbour within 55"', ra, dec)
    # overlaps: an a.40A galaxy (by position: its optical position 3.5" from the a.40A
    # galaxy's MPA-JHU spectrum), another a.40A galaxy (same AGC), an xGASS one (3" apart)
    k = good_b[1]
    a100_case('a.40A and xGASS overlaps (5") removed',
              *offset(U.mpa[k]["ra"], U.mpa[k]["dec"], 0.0, 3.5))
    k = good_a_sfr[1]
    a100_case('a.40A and xGASS overlaps (5") removed', U.mpa[k]["ra"], U.mpa[k]["dec"],
              g=good_a_sfr[0])
    k = U.add_mpa(*offset(*xg_det, 3.0, 0.0))
    a100_case('a.40A and xGASS overlaps (5") removed', U.mpa[k]["ra"], U.mpa[k]["dec"])
    # no stellar mass in MPA-JHU
    ra, dec = U.new_site()
    U.add_mpa(ra, dec, mass=-99.0)
    a100_case("valid stellar mass", ra, dec)

    # --- non-detection candidates ---------------------------------------------------------
    for i in range(6):
        U.add_mpa(*U.new_site(), z=0.01 + 0.007 * i, nd_cut=None)
    U.add_mpa(*U.new_site(spring=False), z=0.02, nd_cut=None)   # fall sky: in the footprint
    U.add_mpa(*U.new_site(), z=0.08)                               # too far
    U.add_mpa(*U.new_site(), z=0.02, zwarn=4)                      # bad redshift
    U.add_mpa(60.0, 10.0, z=0.02, nd_cut="inside the ALFALFA footprint")
    ra, dec = U.new_site()
    U.add_mpa(ra, dec, z=0.02, nd_cut='no optical neighbour within 55"')
    U.add_mpa(*offset(ra, dec, 0.0, -40.0), z=0.03, nd_cut='no optical neighbour within 55"')

    # --- NIBLES ---------------------------------------------------------------------------
    def nibles_case(cut, ra, dec, ms=9.5):
        U.nibles.append(dict(id=len(U.nibles) + 1, ra=ra, dec=dec, z=0.02, ms=ms, mhi=9.1,
                             cut=cut))

    nibles_case(None, *U.new_site())
    nibles_case(None, *U.new_site(), ms=8.0)                       # exactly at the limit: kept
    nibles_case("valid M* >= 10^8 Msun", *U.new_site(), ms=7.5)
    nibles_case("valid M* >= 10^8 Msun", *U.new_site(), ms=float("nan"))
    nibles_case("visual inspection rejections removed", *U.new_site())
    # the same galaxy as an a.40A, an a.100 and an xGASS one, at 4", 2" and 3" (NIBLES
    # positions are tabulated to ~1", ALFALFA optical positions chosen by eye): removed
    k = good_a_oh[1]
    nibles_case('ALFALFA and xGASS overlaps (5") removed',
                *offset(U.mpa[k]["ra"], U.mpa[k]["dec"], 0.0, 4.0))
    nibles_case('ALFALFA and xGASS overlaps (5") removed',
                *offset(U.mpa[k_a100_good]["ra"], U.mpa[k_a100_good]["dec"], -2.0, 0.0))
    nibles_case('ALFALFA and xGASS overlaps (5") removed', *offset(*xg_det, -3.0, 0.0))
    # a distinct galaxy 7" from an a.40A galaxy (beyond the 5" radius): kept
    k = good_b[1]
    nibles_case(None, *offset(U.mpa[k]["ra"], U.mpa[k]["dec"], 5.6, -4.2))
    U.k_a100_good = (k_a100_good, k_a100_good2)
    U.a40_good = {"a40B": [good_b[0]], "a40A": [good_a_sfr[0], good_a_oh[0], good_a_z[0]]}
    U.dwarf_agc = good_a_z[0]
    return U
