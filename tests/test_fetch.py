"""``hicatalog fetch`` against a real HTTP server on 127.0.0.1 (tests/fakeserver.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fakeserver import SDSS_PATH, FakeCutoutServer, ra_key

from hicatalog import storage
from hicatalog.config import FetchConfig
from hicatalog.cutouts.decode import decode_jpeg
from hicatalog.cutouts.fetch import STATUS_FILE, existing_object_ids, fetch_cutouts
from hicatalog.cutouts.http_client import RetryPolicy
from hicatalog.cutouts.ratelimit import start_rate_limiter
from hicatalog.cutouts.services import LEGACY_VIEWER_URL, SDSS_DR14_URL, make_service
from hicatalog.cutouts.shards import list_shards
from hicatalog.cutouts.targets import limit_order, limit_subset, read_targets


def write_targets(path, n, ra0=10.0, **extra):
    cols = {
        "object_id": [f"gal{i:04d}" for i in range(n)],
        "ra": [ra0 + 0.001 * i for i in range(n)],
        "dec": [5.0 + 0.001 * i for i in range(n)],
    }
    cols.update(extra)
    pq.write_table(pa.table(cols), str(path))
    return cols


def read_shards(out):
    """Every row of the cutout shards in ``out`` (a local directory or a URL)."""
    files = list_shards(str(out))
    return pa.concat_tables([storage.read_parquet(f) for f in files])


def fast_cfg(cat, out, srv, **kw):
    # timeouts generous enough for a loaded 2-core machine; stalls last longer still
    base = dict(targets=str(cat), out=str(out), base_url=srv.base + SDSS_PATH, timeout_s=2.0,
                retries=2, backoff_s=0.02, backoff_max_s=0.1, concurrency=8, tasks=2,
                rows_per_shard=8)
    base.update(kw)
    return FetchConfig(**base).fields()


# --- services and policy ------------------------------------------------------------------


def test_service_urls_carry_the_paper_parameters():
    sdss = make_service("sdss")
    q = parse_qs(urlsplit(sdss.url(150.1234567, -1.5)).query, keep_blank_values=True)
    assert urlsplit(sdss.url(1, 2)).path.endswith("/ImgCutout/getjpeg")
    assert q["ra"] == ["150.1234567"] and q["dec"] == ["-1.5000000"]
    assert q["scale"] == ["0.396"] and q["width"] == ["224"] and q["height"] == ["224"]
    legacy = make_service("legacy", layer="dr9")
    q = parse_qs(urlsplit(legacy.url(10.0, 20.0)).query)
    assert urlsplit(legacy.url(1, 2)).path.endswith("/viewer/cutout.jpg")
    assert q["layer"] == ["dr9"] and q["pixscale"] == ["0.262"] and q["size"] == ["448"]
    assert make_service("legacy").size == 448 and make_service("sdss").pixscale == 0.396
    with pytest.raises(ValueError, match="unknown survey"):
        make_service("hst")
    with pytest.raises(ValueError, match="http"):
        make_service("sdss", base_url="ftp://example.org/x")
    # the whole endpoint is needed: a host alone, or a URL with a query, is refused
    for bad in ("http://127.0.0.1:8765", "http://127.0.0.1:8765/",
                "http://127.0.0.1:8765/ImgCutout/getjpeg?ra=1"):
        with pytest.raises(ValueError, match=r"whole endpoint.*ImgCutout/getjpeg"):
            make_service("sdss", base_url=bad)
    with pytest.raises(ValueError, match=r"whole endpoint.*viewer/cutout.jpg"):
        make_service("legacy", base_url="http://127.0.0.1:8765")


def test_base_url_help_says_what_is_expected_for_each_service():
    from hicatalog.cli import build_parser

    fetch = build_parser()._subparsers._group_actions[0].choices["fetch"]
    base_help = next(a.help for a in fetch._actions if "--base-url" in a.option_strings)
    for needed in ("path included", "query string", "sdss", "legacy",
                   SDSS_DR14_URL, LEGACY_VIEWER_URL,
                   "http://127.0.0.1:8765/dr14/SkyServerWS/ImgCutout/getjpeg",
                   "http://127.0.0.1:8765/viewer/cutout.jpg"):
        assert needed in base_help, needed
    # each example is accepted as the service's base URL
    for survey, url in (("sdss", "http://127.0.0.1:8765/dr14/SkyServerWS/ImgCutout/getjpeg"),
                        ("legacy", "http://127.0.0.1:8765/viewer/cutout.jpg")):
        assert make_service(survey, base_url=url).url(1, 2).startswith(url + "?ra=")


def test_retry_policy_backoff_grows_is_jittered_capped_and_honours_retry_after():
    pol = RetryPolicy(retries=5, backoff_s=0.5, backoff_max_s=4.0)
    rng = random.Random(1)
    for attempt, d in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        draws = [pol.delay(attempt, rng=rng) for _ in range(200)]
        assert min(draws) >= d / 2 and max(draws) <= d
        assert np.std(draws) > 0.05 * d  # jittered
    assert pol.delay(0, retry_after=3.0, rng=rng) >= 3.0
    assert pol.delay(0, retry_after=100.0, rng=rng) <= 4.0


# --- target list input ----------------------------------------------------------------------


def test_bad_target_lists_are_clear_errors(tmp_path):
    pq.write_table(pa.table({"object_id": ["a"], "ra": [1.0]}), tmp_path / "nodec.parquet")
    with pytest.raises(ValueError, match=r"nodec.parquet.*missing column.*'dec'"):
        read_targets(str(tmp_path / "nodec.parquet"))
    pq.write_table(pa.table({"object_id": ["a", "b", "a"], "ra": [1.0] * 3, "dec": [2.0] * 3}),
                   tmp_path / "dup.parquet")
    with pytest.raises(ValueError, match=r"unique.*'a'"):
        read_targets(str(tmp_path / "dup.parquet"))
    with pytest.raises(ValueError, match="does not exist"):
        read_targets(str(tmp_path / "nothere.parquet"))
    (tmp_path / "cat.csv").write_text("object_id,ra,dec,m_true\n0001,1.5,2.5,0.3\n0002,3,4,\n")
    t = read_targets(str(tmp_path / "cat.csv"))
    assert t.column("object_id").to_pylist() == ["0001", "0002"]  # ids stay strings
    assert t.column("ra").type == pa.float64() and t.column("ra").to_pylist() == [1.5, 3.0]
    # a label column is cast to its cutouts-contract type (m_true: float32), empty -> null
    assert t.column("m_true").type == pa.float32()
    assert t.column("m_true").to_pylist() == [pytest.approx(0.3), None]


def test_target_ids_follow_the_id_rule(tmp_path):
    """Padded CSV headers, 64-bit ids as integers or text, and float ids refused."""
    big = 588848972367725318  # float64 would make it ...312
    (tmp_path / "padded.csv").write_text(f" object_id , ra , dec \n{big},1.5,2.5\n 0042 ,3,4\n")
    t = read_targets(str(tmp_path / "padded.csv"))
    assert t.column("object_id").to_pylist() == [str(big), "0042"]
    assert t.column("dec").to_pylist() == [2.5, 4.0]
    pq.write_table(pa.table({"object_id": pa.array([big, 7], pa.int64()), "ra": [1.0, 2.0],
                             "dec": [1.0, 2.0]}), tmp_path / "int.parquet")
    assert read_targets(str(tmp_path / "int.parquet")).column("object_id").to_pylist() == [
        str(big), "7"]
    pq.write_table(pa.table({"object_id": pa.array([float(big), 7.0]), "ra": [1.0, 2.0],
                             "dec": [1.0, 2.0]}), tmp_path / "float.parquet")
    with pytest.raises(ValueError, match=r"float.parquet.*object_id.*floating point"):
        read_targets(str(tmp_path / "float.parquet"))


def _sample_by_sample(n_per: dict[str, int]) -> pa.Table:
    """A labels-like target list written sample by sample, as ``hicatalog labels`` does."""
    ds = [d for d, k in n_per.items() for _ in range(k)]
    n = len(ds)
    return pa.table({"object_id": [f"g{i:04d}" for i in range(n)], "ra": [1.0] * n,
                     "dec": [1.0] * n, "dataset": ds})


def test_limit_takes_every_sample_in_proportion_fixed_by_seed_and_nested():
    t = _sample_by_sample({"a40A": 60, "nondetections": 30, "xgass": 10})
    ds = np.array(t.column("dataset").to_pylist())
    ids = np.array(t.column("object_id").to_pylist())

    def counts(mask):
        return {d: int((ds[mask] == d).sum()) for d in ("a40A", "nondetections", "xgass")}

    m20 = limit_subset(t, 20, seed=0)
    assert m20.sum() == 20 and counts(m20) == {"a40A": 12, "nondetections": 6, "xgass": 2}
    assert counts(limit_subset(t, 50, seed=0)) == {"a40A": 30, "nondetections": 15, "xgass": 5}
    # not the first rows of each sample, and the same rows again for the same seed
    assert not m20[:12].all()
    np.testing.assert_array_equal(limit_subset(t, 20, seed=0), m20)
    assert set(ids[limit_subset(t, 20, seed=1)]) != set(ids[m20])
    # a larger limit extends the subset; the file order does not matter
    assert (limit_subset(t, 40, seed=0) >= m20).all()
    shuffled = t.take(pa.array(np.random.default_rng(5).permutation(t.num_rows)))
    sh_ids = np.array(shuffled.column("object_id").to_pylist())
    assert set(sh_ids[limit_subset(shuffled, 20, seed=0)]) == set(ids[m20])
    assert limit_subset(t, None).all() and limit_subset(t, 100).all()
    # every prefix of the order is proportional to within one row per sample
    order = limit_order(t, seed=3)
    for k in range(1, t.num_rows + 1):
        got = counts(np.isin(np.arange(t.num_rows), order[:k]))
        for d, n_d in (("a40A", 60), ("nondetections", 30), ("xgass", 10)):
            assert abs(got[d] - k * n_d / 100) <= 1, (k, d)
    # without a dataset column: a seeded random subset
    plain = t.drop_columns(["dataset"])
    mp = limit_subset(plain, 20, seed=0)
    assert mp.sum() == 20 and not mp[:20].all()
    np.testing.assert_array_equal(limit_subset(plain, 20, seed=0), mp)


# --- the faults -----------------------------------------------------------------------------


FAULTS = {
    # index: (server plan, expected status, expected number of requests the server saw)
    0: (["404"], "http_404", 1),
    1: (["500", "ok"], "ok", 2),
    2: (["500", "500", "ok"], "ok", 3),
    3: (["503"], "http_503", 3),
    4: (["truncated", "ok"], "ok", 2),
    5: (["truncated"], "truncated_response", 3),
    6: (["stall", "ok"], "ok", 2),
    7: (["stall"], "timeout", 3),
    8: (["wrong_size"], "wrong_size", 1),
    9: (["truncated_jpeg"], "truncated_image", 3),
    10: (["not_jpeg"], "not_jpeg", 1),
    11: (["gray"], "grayscale", 1),
    12: (["429", "ok"], "ok", 2),
}


def test_every_fault_ends_as_the_right_status_and_no_row_is_lost(ray_local, tmp_path):
    n = 30
    cols = write_targets(
        tmp_path / "cat.parquet", n,
        m_true=pa.array(np.linspace(-1, 1, n), pa.float32()),
        detected=[i % 2 == 0 for i in range(n)],
        dataset=["a40A"] * n,
    )
    # two rows with bad coordinates: never requested, accounted for
    cols["dec"][20] = float("nan")
    cols["dec"][21] = 95.0
    pq.write_table(pa.table(cols), tmp_path / "cat.parquet")
    with FakeCutoutServer(latency_s=0.005, stall_s=5.0) as srv:
        for i, (plan, _, _) in FAULTS.items():
            srv.plan(ra_key(cols["ra"][i]), *plan)
        counts = fetch_cutouts(**fast_cfg(tmp_path / "cat.parquet", tmp_path / "out", srv))
        seen = dict(srv.counts)
        agents = set(srv.user_agents)

    status = pq.read_table(tmp_path / "out" / STATUS_FILE)
    assert status.num_rows == n and len(set(status.column("object_id").to_pylist())) == n
    by_id = {r["object_id"]: r for r in status.to_pylist()}
    for i, (_, expected, n_requests) in FAULTS.items():
        row = by_id[cols["object_id"][i]]
        assert row["status"] == expected, (i, row)
        assert seen[ra_key(cols["ra"][i])] == n_requests, (i, row)
        assert row["attempts"] == n_requests
        assert (row["error"] is None) == (expected == "ok")
    for i in (20, 21):
        assert by_id[cols["object_id"][i]]["status"] == "bad_coordinates"
        assert ra_key(cols["ra"][i]) not in seen
    # 15 plain rows (13-19, 22-29) and 5 faults that recover (1, 2, 4, 6, 12) are ok
    expected_counts = {"ok": 20, "bad_coordinates": 2, "http_404": 1, "http_503": 1,
                       "truncated_response": 1, "timeout": 1, "wrong_size": 1,
                       "truncated_image": 1, "not_jpeg": 1, "grayscale": 1}
    assert counts == dict(sorted(expected_counts.items()))
    assert agents and all(a.startswith("hicatalog/") for a in agents)

    shards = read_shards(tmp_path / "out")
    ok_ids = sorted(k for k, r in by_id.items() if r["status"] == "ok")
    assert len(ok_ids) == 20
    assert sorted(shards.column("object_id").to_pylist()) == ok_ids  # no loss, no duplicate
    for f in list_shards(str(tmp_path / "out")):  # the status row names the file holding it
        for oid in pq.read_table(f, columns=["object_id"]).column("object_id").to_pylist():
            assert by_id[oid]["shard"] == os.path.basename(f)
    assert set(shards.column("survey").to_pylist()) == {"sdss"}
    for row in shards.to_pylist():
        i = cols["object_id"].index(row["object_id"])
        assert row["ra"] == cols["ra"][i] and row["dataset"] == "a40A"
        assert row["m_true"] == pytest.approx(float(cols["m_true"][i]), abs=1e-6)
        assert row["detected"] == cols["detected"][i]
        assert decode_jpeg(row["image"], expected_size=224).shape == (224, 224, 3)


def test_legacy_survey_expects_its_own_size(ray_local, tmp_path):
    cols = write_targets(tmp_path / "cat.parquet", 4)
    with FakeCutoutServer() as srv:
        srv.plan(ra_key(cols["ra"][3]), "wrong_size")
        counts = fetch_cutouts(**fast_cfg(tmp_path / "cat.parquet", tmp_path / "out", srv,
                                        survey="legacy", base_url=srv.base + "/viewer/cutout.jpg",
                                        layer="dr8"))
    assert counts == {"ok": 3, "wrong_size": 1}
    shards = read_shards(tmp_path / "out")
    assert set(shards.column("survey").to_pylist()) == {"legacy"}
    assert decode_jpeg(shards.column("image")[0].as_py(), expected_size=448).shape[0] == 448


def test_positions_follow_the_sky_rule_ra_wraps_dec_must_lie_in_range(ray_local, tmp_path):
    pq.write_table(pa.table({
        "object_id": ["neg_ra", "big_ra", "south_pole", "dec_over", "ra_inf", "dec_nan"],
        "ra": [-0.5, 725.0, 12.0, 13.0, float("inf"), 14.0],
        "dec": [1.0, 2.0, -90.0, 90.0001, 3.0, float("nan")],
    }), tmp_path / "cat.parquet")
    with FakeCutoutServer() as srv:
        counts = fetch_cutouts(**fast_cfg(tmp_path / "cat.parquet", tmp_path / "out", srv))
        seen = dict(srv.counts)
    assert counts == {"bad_coordinates": 3, "ok": 3}
    # RA is requested wrapped into [0, 360); bad positions are never requested
    assert seen == {"359.5000000": 1, "5.0000000": 1, "12.0000000": 1}
    status = {r["object_id"]: r for r in pq.read_table(tmp_path / "out" / STATUS_FILE).to_pylist()}
    for oid in ("dec_over", "ra_inf", "dec_nan"):
        row = status[oid]
        assert row["status"] == "bad_coordinates" and row["url"] is None and row["attempts"] == 0
        # the status says what the rule is
        assert "finite RA" in row["error"] and "[-90, 90]" in row["error"]
        assert "wrapped" in row["error"]
    shards = read_shards(tmp_path / "out")
    # the shards keep the position as the target list gave it
    assert dict(zip(shards.column("object_id").to_pylist(), shards.column("ra").to_pylist(),
                    strict=True)) == {"neg_ra": -0.5, "big_ra": 725.0, "south_pole": 12.0}


def test_contract_label_columns_ride_into_the_shards(ray_local, tmp_path):
    """The optional columns of the cutouts contract are carried; other columns are dropped."""
    n = 4
    write_targets(
        tmp_path / "cat.parquet", n,
        z=[0.01, None, 0.03, 0.04],
        m_true=[-0.5, 0.0, 0.25, None],
        detected=[True, False, None, True],
        log_mstar=[9.5, 10.0, 10.5, 11.0],
        one_plus_delta5=[1.0, 2.5, None, 0.5],
        dataset=["xgass", "xgass", "a100", "nibles"],
        quality=pa.array([0, 5, None, 2], pa.int32()),
        notes=["x", "y", "z", "w"],  # not in the contract
    )
    with FakeCutoutServer() as srv:
        counts = fetch_cutouts(**fast_cfg(tmp_path / "cat.parquet", tmp_path / "out", srv))
    assert counts == {"ok": n}
    shards = read_shards(tmp_path / "out")
    assert set(shards.column_names) == {
        "object_id", "ra", "dec", "z", "survey", "image", "m_true", "detected", "log_mstar",
        "one_plus_delta5", "dataset", "quality",
    }
    assert shards.schema.field("m_true").type == pa.float32()
    rows = {r["object_id"]: r for r in shards.to_pylist()}
    got = {c: [rows[f"gal{i:04d}"][c] for i in range(n)]
           for c in ("z", "m_true", "detected", "log_mstar", "one_plus_delta5", "dataset",
                     "quality")}
    assert got == {
        "z": [0.01, None, 0.03, 0.04],
        "m_true": [-0.5, 0.0, 0.25, None],
        "detected": [True, False, None, True],
        "log_mstar": [9.5, 10.0, 10.5, 11.0],
        "one_plus_delta5": [1.0, 2.5, None, 0.5],
        "dataset": ["xgass", "xgass", "a100", "nibles"],
        "quality": [0, 5, None, 2],
    }


def test_upper_limit_and_log_mhi_ride_into_the_shards(ray_local, tmp_path):
    n = 4
    write_targets(tmp_path / "cat.parquet", n, upper_limit=[True, False, False, None],
                  log_mhi=[8.75, 9.5, None, 10.25])
    with FakeCutoutServer() as srv:
        counts = fetch_cutouts(**fast_cfg(tmp_path / "cat.parquet", tmp_path / "out", srv))
    assert counts == {"ok": n}
    shards = read_shards(tmp_path / "out")
    assert "upper_limit" in shards.column_names and "log_mhi" in shards.column_names
    assert shards.schema.field("upper_limit").type == pa.bool_()
    assert shards.schema.field("log_mhi").type == pa.float32()
    rows = {r["object_id"]: r for r in shards.to_pylist()}
    assert [rows[f"gal{i:04d}"]["upper_limit"] for i in range(n)] == [True, False, False, None]
    assert [rows[f"gal{i:04d}"]["log_mhi"] for i in range(n)] == [8.75, 9.5, None, 10.25]


# --- rate limit, resume, CLI -----------------------------------------------------------------


def _start_workers(ray, n: int) -> None:
    """Have ``n`` Ray worker processes up, so that fetch tasks can really run side by side."""

    @ray.remote(num_cpus=0.25)
    def warm():
        time.sleep(0.5)
        return os.getpid()

    ray.get([warm.remote() for _ in range(n)])


def test_max_rps_holds_across_tasks(ray_local, tmp_path):
    _start_workers(ray_local, 2)
    write_targets(tmp_path / "cat.parquet", 60)
    with FakeCutoutServer(latency_s=0.01) as srv:
        counts = fetch_cutouts(**fast_cfg(tmp_path / "cat.parquet", tmp_path / "out", srv,
                                        max_rps=25.0, tasks=2, rows_per_shard=30))
        times = np.sort(srv.stats()["times"])
    assert counts == {"ok": 60}
    # never faster than the limit (+10%) over any second (25 consecutive requests) ...
    window = (times[25:] - times[:-25]) / 25.0
    assert 1.0 / window.min() <= 25.0 * 1.10, 1.0 / window.min()
    # ... and over the run: at most the limit; at least a fraction of it (a loaded 2-core
    # machine and worker start-up slow the client down, never the other way round)
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 0.3 * 25.0 <= rate <= 1.1 * 25.0, rate


def test_rate_limiter_spaces_slots_exactly_and_saves_no_idle_time(ray_local):
    limiter = start_rate_limiter(25.0)
    try:
        t0 = time.time()
        slots = np.array(ray_local.get([limiter.reserve.remote() for _ in range(50)]))
        assert t0 - 1.0 < slots[0] < t0 + 5.0
        np.testing.assert_allclose(np.diff(slots), 0.04, atol=1e-6)  # ordered, 1/rate apart
        time.sleep(0.3 + slots[-1] - time.time())  # idle past the last slot
        later = ray_local.get(limiter.reserve.remote())
        assert later >= time.time() - 0.5 and later > slots[-1] + 0.3  # no saved-up burst
    finally:
        ray_local.kill(limiter)


def test_resume_skips_what_is_stored_and_completes(ray_local, tmp_path):
    cols = write_targets(tmp_path / "cat.parquet", 25,
                         dataset=["a40A"] * 15 + ["nondetections"] * 10)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".part-killed.0123.tmp").write_bytes(b"half a shard from a killed writer")
    subset = limit_subset(read_targets(str(tmp_path / "cat.parquet")), 10, seed=0)
    chosen = {cols["object_id"][i] for i in np.flatnonzero(subset)}
    # the subset takes both samples in proportion (6 + 4), not the first 10 rows (all a40A)
    assert sum(cols["dataset"][i] == "nondetections" for i in np.flatnonzero(subset)) == 4
    failing = int(np.flatnonzero(subset)[0])
    with FakeCutoutServer() as srv:
        srv.plan(ra_key(cols["ra"][failing]), "503", "ok")  # fails in run 1 (no retries)
        first = fetch_cutouts(**fast_cfg(tmp_path / "cat.parquet", out, srv, limit=10, retries=0))
        assert first == {"deferred": 15, "http_503": 1, "ok": 9}
        assert existing_object_ids(str(out)) == chosen - {cols["object_id"][failing]}
        # the same --limit again: the same subset, so only its failed row is fetched
        again = fetch_cutouts(**fast_cfg(tmp_path / "cat.parquet", out, srv, limit=10))
        assert again == {"already_present": 9, "deferred": 15, "ok": 1}
        assert existing_object_ids(str(out)) == chosen
        second = fetch_cutouts(**fast_cfg(tmp_path / "cat.parquet", out, srv))
        assert second == {"already_present": 10, "ok": 15}
        n_requests = sum(srv.counts.values())
        third = fetch_cutouts(**fast_cfg(tmp_path / "cat.parquet", out, srv))
        assert third == {"already_present": 25}
        assert sum(srv.counts.values()) == n_requests  # nothing requested again
    ids = read_shards(out).column("object_id").to_pylist()
    assert sorted(ids) == sorted(cols["object_id"])  # complete, no duplicates


def test_cli_fetch_runs_and_reports_bad_input_in_one_line(ray_local, tmp_path, capsys):
    from hicatalog.cli import main as cli

    write_targets(tmp_path / "cat.parquet", 6)
    with FakeCutoutServer() as srv:
        rc = cli(["fetch", "--targets", str(tmp_path / "cat.parquet"), "--survey", "sdss",
                  "--out", str(tmp_path / "out"), "--base-url", srv.base + SDSS_PATH,
                  "--max-rps", "200", "--concurrency", "4"])
    assert rc == 0 and "ok=6" in capsys.readouterr().out
    pq.write_table(pa.table({"object_id": ["a"], "ra": [1.0]}), tmp_path / "bad.parquet")
    rc = cli(["fetch", "--targets", str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert rc == 1 and "missing column" in err and "Traceback" not in err
    # the input is a target list; --catalog is not a fetch flag
    with pytest.raises(SystemExit):
        cli(["fetch", "--catalog", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "o3")])
    assert "--catalog" in capsys.readouterr().err


def test_killed_fetch_resumes_and_completes(ray_local, tmp_path):
    """SIGKILL a ``hicatalog fetch`` process (and its local Ray) mid-run, then resume: every
    target ends in the shards exactly once. On a disk, where a killed write can leave a
    temporary file; resuming from the shards on S3 is guarded by
    tests/test_object_storage_commands.py."""
    n = 60
    cols = write_targets(tmp_path / "cat.parquet", n)
    out = str(tmp_path / "out")

    def stored_shards():
        return [f for f in storage.list_files(out, suffix=".parquet")
                if storage.basename(f).startswith("part-")]

    with FakeCutoutServer(latency_s=0.15) as srv:
        args = ["fetch", "--targets", str(tmp_path / "cat.parquet"), "--out", out,
                "--base-url", srv.base + SDSS_PATH, "--concurrency", "2", "--tasks", "1",
                "--rows-per-shard", "5"]
        code = ("import ray, sys; ray.init(num_cpus=1, include_dashboard=False); "
                "from hicatalog.cli import main; sys.exit(main(sys.argv[1:]))")
        log = open(tmp_path / "child.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([sys.executable, "-c", code, *args], start_new_session=True,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 180
            while time.time() < deadline and len(stored_shards()) < 2:
                assert proc.poll() is None, (
                    "fetch ended before it could be killed:\n"
                    + (tmp_path / "child.log").read_text()[-3000:])
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.close()
        # The killed run's Ray workers have their own process groups and may still finish a
        # shard; the resumed run must neither lose nor duplicate those rows.
        assert 10 <= len(existing_object_ids(out)) < n
        assert not storage.is_file(storage.join(out, STATUS_FILE))  # the killed run never finished
        counts = fetch_cutouts(**FetchConfig(targets=str(tmp_path / "cat.parquet"), out=out,
                                             base_url=srv.base + SDSS_PATH, concurrency=16).fields())
    assert counts["already_present"] >= 10 and sum(counts.values()) == n
    assert counts["ok"] + counts["already_present"] == n
    ids = read_shards(out).column("object_id").to_pylist()
    assert sorted(ids) == sorted(cols["object_id"])


def test_label_columns_of_the_wrong_type_are_a_clear_error(tmp_path):
    pq.write_table(pa.table({"object_id": ["a"], "ra": [1.0], "dec": [2.0],
                             "m_true": ["lots of gas"]}), tmp_path / "cat.parquet")
    with pytest.raises(ValueError, match=r"label column 'm_true'.*expected float"):
        read_targets(str(tmp_path / "cat.parquet"))


def test_every_run_keeps_its_own_status_history(ray_local, tmp_path):
    cols = write_targets(tmp_path / "cat.parquet", 6)
    out = tmp_path / "out"
    with FakeCutoutServer() as srv:
        srv.plan(ra_key(cols["ra"][2]), "503", "ok")  # fails in run 1 (no retries), ok in run 2
        fetch_cutouts(**fast_cfg(tmp_path / "cat.parquet", out, srv, retries=0))
        fetch_cutouts(**fast_cfg(tmp_path / "cat.parquet", out, srv, retries=0))
    runs = sorted((out / "_fetch_history").glob("*.parquet"))
    assert len(runs) == 2
    first, second = (pq.read_table(r).to_pylist() for r in runs)
    by_id = [{r["object_id"]: r["status"] for r in t} for t in (first, second)]
    assert by_id[0] == {**{i: "ok" for i in cols["object_id"]}, "gal0002": "http_503"}
    assert by_id[1] == {**{i: "already_present" for i in cols["object_id"]}, "gal0002": "ok"}
    assert len({r["run_id"] for r in first}) == 1 and first[0]["run_id"] != second[0]["run_id"]
    # the latest table is the second run's; the history is not mistaken for cutout shards
    latest = pq.read_table(out / "_fetch_status.parquet").to_pylist()
    assert {r["object_id"]: r["status"] for r in latest} == by_id[1]
    assert sorted(read_shards(out).column("object_id").to_pylist()) == cols["object_id"]


def test_fetch_exit_code_follows_the_failure_threshold(ray_local, tmp_path, capsys):
    from hicatalog.cli import main as cli

    cols = write_targets(tmp_path / "cat.parquet", 10)
    with FakeCutoutServer() as srv:
        def run(out, *extra):
            return cli(["fetch", "--targets", str(tmp_path / "cat.parquet"), "--out",
                        str(tmp_path / out), "--base-url", srv.base + SDSS_PATH,
                        "--retries", "0", "--rows-per-shard", "4", *extra])

        srv.plan(ra_key(cols["ra"][0]), "404")  # 1 of 10 fails: within the default 0.1
        assert run("a") == 0
        for ra in cols["ra"][:2]:
            srv.plan(ra_key(ra), "404")  # 2 of 10 fail: over 0.1, within 0.25
        assert run("b") == 1
        err = capsys.readouterr().err
        assert "2 of the 10 rows tried failed" in err and "Traceback" not in err
        assert run("c", "--max-failed-fraction", "0.25") == 0
        for ra in cols["ra"]:
            srv.plan(ra_key(ra), "404")  # every row fails: always an error
        assert run("d", "--max-failed-fraction", "1.0") == 1
        assert "10 of the 10 rows tried failed" in capsys.readouterr().err
        assert run("d") == 1  # nothing was stored, so the rerun tries (and fails) them again
