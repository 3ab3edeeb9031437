"""Environment (D5, Sigma5, delta5): the tree-based computation against brute force."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.cosmology import FlatLambdaCDM

from hicatalog.catalog.environment import compute_environment
from hicatalog.cli import main as cli_main
from hicatalog.schemas import validate_table

# The reference states the paper's cosmology and c itself (Wu 2020, Section 7.1; CODATA),
# independently of hicatalog.cosmology, which the code under test uses.
C_KMS = 299792.458
PAPER_H0, PAPER_OM0 = 70.0, 0.3


def clustered_sample(n_groups=40, n_field=1500, seed=1, ra0=150.0, dec0=20.0, size=12.0):
    """Groups (5-60 members, 0.2-0.6 deg, sigma_v 200-800 km/s) plus a uniform field."""
    rng = np.random.default_rng(seed)
    ra, dec, z = [], [], []
    for _ in range(n_groups):
        m = rng.integers(5, 60)
        c_ra, c_dec = ra0 + rng.uniform(1, size - 1), dec0 + rng.uniform(1, size - 1)
        c_z = rng.uniform(0.005, 0.05)
        r = rng.uniform(0.2, 0.6)
        ra.append(c_ra + rng.normal(0, r, m) / np.cos(np.radians(c_dec)))
        dec.append(c_dec + rng.normal(0, r, m))
        z.append(c_z + rng.normal(0, rng.uniform(200, 800), m) / C_KMS)
    ra.append(ra0 + rng.uniform(0, size, n_field))
    dec.append(dec0 + rng.uniform(0, size, n_field))
    z.append(rng.uniform(0.001, 0.055, n_field))
    ra, dec, z = np.concatenate(ra), np.concatenate(dec), np.concatenate(z)
    ids = [f"g{i:06d}" for i in range(len(ra))]
    return pa.table({"object_id": ids, "ra": ra, "dec": dec, "z": z})


def brute_force(targets, tracers, n_neighbor=5, vwin=1000.0, dmin=10.0, zwin=0.02):
    """Independent O(N^2) reference: astropy separations, explicit loops, numpy median."""
    cosmo = FlatLambdaCDM(H0=PAPER_H0, Om0=PAPER_OM0)
    t = targets.to_pydict()
    r = tracers.to_pydict()
    rc = SkyCoord(np.array(r["ra"]) * u.deg, np.array(r["dec"]) * u.deg)
    rz = np.array(r["z"])
    rid = np.array(r["object_id"])
    d5 = np.full(len(t["ra"]), np.nan)
    status = []
    for i, (oid, ra, dec, z) in enumerate(
        zip(t["object_id"], t["ra"], t["dec"], t["z"], strict=True)
    ):
        # RA is an angle on a circle: any finite value is valid (SkyCoord wraps it).
        if ra is None or not np.isfinite(ra) or not np.isfinite(dec) or abs(dec) > 90:
            status.append("bad_coordinates")
            continue
        if z is None or not np.isfinite(z):
            status.append("no_redshift")
            continue
        if cosmo.comoving_distance(z).to_value(u.Mpc) < dmin:
            status.append("too_near")
            continue
        sep = SkyCoord(ra * u.deg, dec * u.deg).separation(rc).radian
        inwin = np.abs(rz - z) * C_KMS <= vwin
        same = rid == oid
        if same.any():
            inwin &= ~same
        else:
            close = inwin & (sep <= np.radians(1 / 3600))
            if close.any():
                inwin[np.flatnonzero(close)[np.argmin(sep[close])]] = False
        others = np.sort(sep[inwin])
        if len(others) < n_neighbor - 1:
            status.append("few_neighbours")
            continue
        d5[i] = others[n_neighbor - 2] * cosmo.angular_diameter_distance(z).to_value(u.Mpc)
        status.append("ok")
    sigma = n_neighbor / (np.pi * d5**2)
    tz = np.array([np.nan if v is None else v for v in t["z"]], dtype=float)
    delta = np.full_like(sigma, np.nan)
    have = np.isfinite(sigma)
    for i in np.flatnonzero(have):
        w = have & (np.abs(tz - tz[i]) <= zwin / 2)
        delta[i] = sigma[i] / np.median(sigma[w])
    return d5, sigma, delta, status


@pytest.fixture(scope="module")
def sample():
    tracers = clustered_sample()
    rng = np.random.default_rng(7)
    pick = rng.choice(tracers.num_rows, 400, replace=False)
    targets = tracers.take(pa.array(pick))
    # Targets that are not tracers: 40 fresh positions (counterpart by position: none) plus
    # 20 whose counterpart is in the tracers under another id, 0.3" away.
    extra = clustered_sample(n_groups=5, n_field=40, seed=99).slice(0, 40)
    extra = extra.set_column(0, "object_id", pa.array([f"x{i}" for i in range(40)]))
    moved = tracers.take(pa.array(pick[:20]))
    moved = pa.table({
        "object_id": [f"m{i}" for i in range(20)],
        "ra": pa.array(np.array(moved["ra"]) + 0.3 / 3600 / np.cos(np.radians(moved["dec"]))),
        "dec": moved["dec"],
        "z": moved["z"],
    })
    bad = pa.table({
        "object_id": ["nan_ra", "dec_100", "no_z", "nan_z", "near"],
        "ra": [float("nan"), 155.0, 155.0, 155.0, 155.0],
        "dec": [25.0, 100.0, 25.0, 25.0, 25.0],
        "z": pa.array([0.02, 0.02, None, float("nan"), 0.001], pa.float64()),
    })
    targets = pa.concat_tables([targets, extra, moved, bad.cast(targets.schema)])
    return targets, tracers


def test_matches_brute_force_on_clustered_sample(sample):
    targets, tracers = sample
    env = compute_environment(targets, tracers, footprint_cell_deg=1.0)
    validate_table(env, "environment")
    assert env.column("object_id").to_pylist() == targets.column("object_id").to_pylist()
    d5, sigma, delta, status = brute_force(targets, tracers)
    got_status = env.column("env_status").to_pylist()
    # footprint_edge only flags: the brute force says 'ok' for those rows.
    assert [("ok" if s == "footprint_edge" else s) for s in got_status] == status
    got = {c: env.column(c).to_numpy(zero_copy_only=False) for c in ("d5_mpc", "sigma5", "one_plus_delta5")}
    for name, ref in (("d5_mpc", d5), ("sigma5", sigma), ("one_plus_delta5", delta)):
        np.testing.assert_array_equal(np.isnan(got[name]), np.isnan(ref), err_msg=name)
        np.testing.assert_allclose(got[name][~np.isnan(ref)], ref[~np.isnan(ref)], rtol=2e-5,
                                   err_msg=name)
    counts = {s: got_status.count(s) for s in set(got_status)}
    assert counts["bad_coordinates"] == 2 and counts["no_redshift"] == 2
    assert counts["too_near"] >= 1 and counts["ok"] > 300
    # Clustered: delta5 spans well over a dex.
    ok = np.isfinite(got["one_plus_delta5"])
    assert np.log10(got["one_plus_delta5"][ok]).max() - np.log10(got["one_plus_delta5"][ok]).min() > 1.5


def test_counterpart_counted_once_whether_or_not_in_tracers(sample):
    targets, tracers = sample
    env = compute_environment(targets, tracers, footprint_cell_deg=1.0)
    ids = env.column("object_id").to_pylist()
    d5 = env.column("d5_mpc").to_numpy(zero_copy_only=False)
    # 'm<i>' sits 0.3" from target i (which is a tracer under its own id): same D5.
    moved = d5[[ids.index(f"m{i}") for i in range(20)]]
    assert np.isfinite(d5[:20]).all()
    np.testing.assert_allclose(moved, d5[:20], rtol=1e-3, atol=1e-4)
    # Removing a target from the tracers does not change its D5 (it is still counted).
    one = targets.slice(0, 1)
    rest = tracers.filter(pa.compute.not_equal(tracers["object_id"], one["object_id"][0]))
    assert rest.num_rows == tracers.num_rows - 1
    env2 = compute_environment(one, rest, footprint_cell_deg=1.0)
    assert env2["d5_mpc"][0].as_py() == pytest.approx(d5[0], rel=1e-6)


def test_footprint_edge_flags_but_keeps_values():
    rng = np.random.default_rng(3)
    n = 20000
    tracers = pa.table({
        "object_id": [f"t{i}" for i in range(n)],
        "ra": rng.uniform(100, 110, n), "dec": rng.uniform(0, 10, n),
        "z": rng.uniform(0.01, 0.03, n),
    })
    targets = pa.table({
        "object_id": ["centre", "edge", "corner"],
        "ra": [105.0, 100.02, 109.99], "dec": [5.0, 5.0, 9.99], "z": [0.02, 0.02, 0.02],
    })
    env = compute_environment(targets, tracers).to_pydict()
    assert env["env_status"] == ["ok", "footprint_edge", "footprint_edge"]
    # the flagged rows keep the values that the brute force (which knows no footprint) finds
    d5, sigma, delta, status = brute_force(targets, tracers)
    assert status == ["ok", "ok", "ok"]
    for name, ref in (("d5_mpc", d5), ("sigma5", sigma), ("one_plus_delta5", delta)):
        np.testing.assert_allclose(np.array(env[name], dtype=float), ref, rtol=2e-5, err_msg=name)


def test_few_neighbours_and_velocity_window():
    # Target 'a' (its own counterpart) plus three tracers within 0.05 deg, but only 'b'
    # (30 km/s away) inside +-1000 km/s; 'c' and 'd' are 3000 and 6000 km/s away.
    tracers = pa.table({
        "object_id": ["a", "b", "c", "d"], "ra": [10.0, 10.05, 10.0, 10.02],
        "dec": [0.0, 0.0, 0.02, 0.02], "z": [0.02, 0.0201, 0.03, 0.04],
    })
    targets = pa.table({"object_id": ["a"], "ra": [10.0], "dec": [0.0], "z": [0.02]})
    env = compute_environment(targets, tracers, n_neighbor=2, footprint_cell_deg=1.0)
    da = FlatLambdaCDM(H0=PAPER_H0, Om0=PAPER_OM0).angular_diameter_distance(0.02).to_value(u.Mpc)
    assert env["d5_mpc"][0].as_py() == pytest.approx(np.radians(0.05) * da, rel=1e-5)
    env = compute_environment(targets, tracers, n_neighbor=3).to_pydict()
    assert env["env_status"] == ["few_neighbours"] and env["one_plus_delta5"] == [None]
    # Widening the window to 4000 km/s lets 'c' (0.02 deg away) in: it becomes the nearest.
    env = compute_environment(targets, tracers, n_neighbor=2, velocity_window_kms=4000.0,
                              footprint_cell_deg=1.0)
    assert env["d5_mpc"][0].as_py() == pytest.approx(np.radians(0.02) * da, rel=1e-4)


def test_any_finite_ra_is_valid_and_wraps():
    """ra = -0.5 is 359.5 deg (the fetch's rule, hicatalog.sky): a target there gets the same,
    valid environment as at 359.5, among tracers that straddle ra = 0 (given as -5..5 deg)."""
    rng = np.random.default_rng(5)
    n = 6000
    tracers = pa.table({
        "object_id": [f"t{i}" for i in range(n)],
        "ra": rng.uniform(-5.0, 5.0, n), "dec": rng.uniform(-5.0, 5.0, n),
        "z": rng.uniform(0.015, 0.025, n),
    })
    targets = pa.table({
        "object_id": ["minus", "wrapped", "plus720"],
        "ra": [-0.5, 359.5, 719.5], "dec": [0.3, 0.3, 0.3], "z": [0.02, 0.02, 0.02],
    })
    env = compute_environment(targets, tracers, footprint_cell_deg=1.0)
    got = env.to_pydict()
    assert got["env_status"] == ["ok", "ok", "ok"]
    d5 = env.column("d5_mpc").to_numpy(zero_copy_only=False)
    assert d5[0] == d5[1] == d5[2]
    assert got["one_plus_delta5"][0] == got["one_plus_delta5"][1] == got["one_plus_delta5"][2]
    ref_d5, _, _, ref_status = brute_force(targets, tracers)
    assert ref_status == ["ok", "ok", "ok"]
    np.testing.assert_allclose(d5, ref_d5, rtol=2e-5)


def test_config_defaults_are_the_papers_estimator():
    """``hicatalog environment`` repeats the defaults as numbers (the config stays cheap to
    import); they must be the library's, which are the paper's (Section 7.1)."""
    import inspect

    from hicatalog.config import EnvironmentConfig
    from hicatalog.cosmology import PAPER_COSMOLOGY

    fields = EnvironmentConfig.model_fields
    params = inspect.signature(compute_environment).parameters
    for name, paper in (("n_neighbor", 5), ("velocity_window_kms", 1000.0),
                        ("min_distance_mpc", 10.0), ("z_window", 0.02)):
        assert fields[name].default == params[name].default == paper, name
    assert (fields["h0"].default, fields["om0"].default) == (PAPER_H0, PAPER_OM0)
    assert PAPER_COSMOLOGY.H0.value == PAPER_H0 and PAPER_COSMOLOGY.Om0 == PAPER_OM0


def test_cli_environment_writes_contract(tmp_path, sample):
    targets, tracers = sample
    pq.write_table(targets, tmp_path / "targets.parquet")
    pq.write_table(tracers, tmp_path / "tracers.parquet")
    out = tmp_path / "env.parquet"
    rc = cli_main(["environment", "--targets", str(tmp_path / "targets.parquet"),
                   "--tracers", str(tmp_path / "tracers.parquet"), "--out", str(out)])
    assert rc == 0
    env = pq.read_table(out)
    validate_table(env, "environment")
    assert env.num_rows == targets.num_rows
    # A targets file without a redshift column is one clear error line, not a traceback.
    pq.write_table(targets.drop(["z"]), tmp_path / "noz.parquet")
    rc = cli_main(["environment", "--targets", str(tmp_path / "noz.parquet"),
                   "--tracers", str(tmp_path / "tracers.parquet"), "--out", str(out)])
    assert rc == 1


def test_coincident_tracers_give_a_finite_density():
    """Four tracers at the target's very position: D5 = 0, and Sigma5 uses the 1e-4 Mpc floor
    (5 / (pi 1e-8) Mpc^-2), so the status 'ok' comes with defined values."""
    rng = np.random.default_rng(11)
    n = 3000
    ra = np.concatenate([[150.0] * 5, rng.uniform(145.0, 155.0, n)])
    dec = np.concatenate([[20.0] * 5, rng.uniform(15.0, 25.0, n)])
    z = np.concatenate([[0.02] * 5, rng.uniform(0.015, 0.025, n)])
    tracers = pa.table({"object_id": [f"t{i}" for i in range(n + 5)], "ra": ra, "dec": dec,
                        "z": z})
    # Targets: the five coincident galaxies and 200 others (whose Sigma5 sets the median).
    env = compute_environment(tracers.slice(0, 205), tracers, footprint_cell_deg=1.0).to_pydict()
    assert env["env_status"][:5] == ["ok"] * 5 and env["d5_mpc"][:5] == [0.0] * 5
    assert env["sigma5"][:5] == pytest.approx([5 / (np.pi * 1e-8)] * 5, rel=1e-6)
    assert all(v is not None and v > 1e3 for v in env["one_plus_delta5"][:5])
    assert all(v is not None for v in env["one_plus_delta5"][5:])


def test_median_normalisation_against_numpy():
    """neighbours.median_normalised: Sigma over the numpy median of the finite Sigmas within
    +-z_window/2, unsorted input, NaN kept NaN."""
    from hicatalog.neighbours import median_normalised

    rng = np.random.default_rng(2)
    z = rng.uniform(0.0, 0.1, 400)
    sigma = rng.lognormal(0.0, 1.0, 400)
    sigma[::7] = np.nan
    got = median_normalised(z, sigma, 0.02)
    ref = np.full(400, np.nan)
    have = np.isfinite(sigma)
    for i in np.flatnonzero(have):
        ref[i] = sigma[i] / np.median(sigma[have & (np.abs(z - z[i]) <= 0.01)])
    np.testing.assert_array_equal(np.isnan(got), ~have)
    np.testing.assert_allclose(got[have], ref[have], rtol=1e-12)
