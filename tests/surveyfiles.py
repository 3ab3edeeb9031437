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
