"""The commands beyond train and build-catalog with every path on a real S3-compatible server
(moto on 127.0.0.1, tests/conftest.py): fetch (against the local SkyServer imitation of
tests/fakeserver.py), read back from the bucket.

No filesystem API is mocked: pyarrow, s3fs and the Ray workers talk HTTP to the server, and
its request log shows what each step wrote. Each test runs in an empty working directory and
checks that it stays empty: nothing of a run on a bucket lands on the local disk.
"""

from __future__ import annotations

import io
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
from fakeserver import SDSS_PATH, FakeCutoutServer, ra_key

from hicatalog import storage
from hicatalog.config import FetchConfig
from hicatalog.cutouts.fetch import _fetch_block, _TaskSettings, fetch_cutouts
from hicatalog.cutouts.http_client import ClientSettings, RetryPolicy
from hicatalog.cutouts.ownership import RUN_FILE, claim_output, new_run_id, owning_run
from hicatalog.cutouts.services import make_service


def _read_parquet(url: str) -> pa.Table:
    return pq.read_table(io.BytesIO(storage.read_bytes(url)))


def test_fetch_on_s3_shards_status_history_resume_and_ownership(s3_server, s3_bucket,
                                                                ray_local, empty_cwd, capsys):
    """fetch --targets/--out s3://: shards, _fetch_status.parquet, _fetch_history/ and
    _fetch_run are single PUTs on the bucket (a shard: a server-side copy of its committed
    pending file, deleted in one batch at the end); a second run (the CLI) fetches only the
    row that failed; a task of a run sealed by a newer one writes nothing."""
    from hicatalog.cli import main as cli

    ids = [f"gal{i:04d}" for i in range(10)]
    ra = [10.0 + 0.001 * i for i in range(10)]
    targets = storage.write_parquet_atomic(
        pa.table({"object_id": ids, "ra": ra, "dec": [5.0 + 0.001 * i for i in range(10)],
                  "z": [0.01] * 10}),
        f"{s3_bucket}/targets.parquet")
    out = f"{s3_bucket}/cutouts"
    with FakeCutoutServer() as srv:
        srv.plan(ra_key(ra[2]), "503", "ok")  # fails in run 1 (no retries), ok in run 2
        cfg = FetchConfig(targets=targets, out=out, base_url=srv.base + SDSS_PATH, timeout_s=2.0,
                          retries=0, concurrency=4, tasks=2, rows_per_shard=4)
        mark = s3_server.log_offset()
        first = fetch_cutouts(**cfg.fields())
        assert first == {"http_503": 1, "ok": 9}
        writes = s3_server.writes(mark)
        # PUTs, and one POST: the batched delete of the pending shards when the run ends
        assert sorted({m for m, _ in writes}) == ["POST", "PUT"], writes
        assert [p for m, p in writes if m == "POST"] == [f"/{s3_bucket[5:]}?delete"], writes
        assert not [p for _, p in writes if ".tmp" in p], writes
        # 3 chunks of 4, 4, 2 rows -> 3 shards (gal0002 missing from the first), the status
        # table, this run's history file and the claim: 6 objects outside _fetch_runs/, each
        # one PUT
        run1 = storage.read_bytes(f"{out}/{RUN_FILE}").decode()
        shards = [storage.basename(f) for f in storage.list_files(out, suffix=".parquet")]
        assert shards == [f"part-{run1}-0000{k}.parquet" for k in range(3)]
        assert sorted(storage.basename(p.split("?")[0]) for m, p in writes
                      if m == "PUT" and "/_fetch_runs/" not in p) == sorted(
            [*shards, "_fetch_status.parquet", f"{run1}.parquet", RUN_FILE])
        # under _fetch_runs/: the run's log (claim, 3 commits, sealed at its end), settled
        runs = storage.list_files(f"{out}/_fetch_runs", recursive=True)
        assert [storage.relative(f, f"{out}/_fetch_runs") for f in runs] == [
            *(f"{run1}/log/{i:08d}.json" for i in range(5)), f"{run1}/settled"]
        status = _read_parquet(f"{out}/_fetch_status.parquet").to_pylist()
        assert {r["object_id"]: r["status"] for r in status} == {
            **{i: "ok" for i in ids}, "gal0002": "http_503"}
        assert [r["shard"] for r in status if r["object_id"] == "gal0009"] == [shards[2]]
        stored = pa.concat_tables([_read_parquet(f"{out}/{s}") for s in shards])
        assert sorted(stored["object_id"].to_pylist()) == [i for i in ids if i != "gal0002"]
        assert set(stored["survey"].to_pylist()) == {"sdss"}
        assert stored["image"][0].as_py()[:2] == b"\xff\xd8"  # JPEG bytes as served

        # run 2 through the CLI: only the failed row is requested
        n_requests = sum(srv.counts.values())
        rc = cli(["fetch", "--targets", targets, "--out", out, "--base-url", srv.base + SDSS_PATH,
                  "--rows-per-shard", "4", "--concurrency", "4", "--timeout-s", "2"])
        assert rc == 0 and "already_present=9 ok=1" in capsys.readouterr().out
        assert sum(srv.counts.values()) == n_requests + 1
        run2 = storage.read_bytes(f"{out}/{RUN_FILE}").decode()
        assert run2 != run1 and owning_run(out) == run2
        history = storage.list_files(f"{out}/_fetch_history", suffix=".parquet")
        assert [storage.basename(h) for h in history] == [f"{run1}.parquet", f"{run2}.parquet"]
        second = _read_parquet(history[1]).to_pylist()
        assert {r["object_id"]: r["status"] for r in second} == {
            **{i: "already_present" for i in ids}, "gal0002": "ok"}
        assert {r["run_id"] for r in second} == {run2}
        latest = _read_parquet(f"{out}/_fetch_status.parquet").to_pylist()
        assert {r["object_id"]: r["status"] for r in latest} == {
            r["object_id"]: r["status"] for r in second}
        every = pa.concat_tables([_read_parquet(f) for f in storage.list_files(
            out, suffix=".parquet")])
        assert sorted(every["object_id"].to_pylist()) == ids  # complete, no duplicates

        # ownership on the bucket: a task of run 1 (outlived its driver) finds its run sealed
        # and writes nothing; its fetched rows come back "superseded"
        block = pa.table({"object_id": ["late"], "ra": [11.0], "dec": [5.0],
                          "__chunk": pa.array([7], pa.int64())})
        service = make_service("sdss", srv.base + SDSS_PATH, "dr8", None, None)

        def task(run_id):
            return _TaskSettings(service=service, out_dir=out, run_id=run_id, client=ClientSettings(
                image_size_px=service.size, in_flight=1, timeout_s=2.0,
                policy=RetryPolicy(0, 0.0, 0.0), user_agent="test", rate_interval_s=0.0))

        mark = s3_server.log_offset()
        rows = _fetch_block(block, task(run1), None).to_pylist()
        assert [(r["status"], r["shard"]) for r in rows] == [("superseded", None)]
        assert s3_server.writes(mark) == []
        # run 2 has finished: sealed too; the same block in a run that claimed the prefix
        # (and is open) is written
        assert _fetch_block(block, task(run2), None)["status"].to_pylist() == ["superseded"]
        run3 = new_run_id()
        claim_output(out, run3)
        rows = _fetch_block(block, task(run3), None).to_pylist()
        assert [(r["status"], r["shard"]) for r in rows] == [("ok", f"part-{run3}-00007.parquet")]
        assert storage.is_file(f"{out}/part-{run3}-00007.parquet")


def test_mock_and_environment_on_s3(s3_server, s3_bucket, empty_cwd, tmp_path_factory):
    """mock --out/--gallery s3:// writes its cutouts, tables, manifest and gallery as single
    PUTs, the same bytes as on a disk; environment reads targets and tracers from the bucket
    and writes its table there."""
    from hicatalog.cli import main as cli

    out = f"{s3_bucket}/mock"
    args = ["--n", "40", "--seed", "3", "--rows-per-shard", "16", "--image-size", "32",
            "--engine", "local"]
    mark = s3_server.log_offset()
    assert cli(["mock", "--out", out, *args, "--gallery", f"{out}/gallery.png"]) == 0
    writes = s3_server.writes(mark)
    assert writes and {m for m, _ in writes} == {"PUT"}, writes
    assert [storage.basename(f) for f in storage.list_files(f"{out}/cutouts")] == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]  # 16 + 16 + 8 rows
    manifest = json.loads(storage.read_bytes(f"{out}/_mock.json"))
    assert manifest["n_imaged"] == 40 and manifest["n_shards"] == 3
    assert storage.read_bytes(f"{out}/gallery.png")[:8] == b"\x89PNG\r\n\x1a\n"
    truth = _read_parquet(f"{out}/truth.parquet")
    assert truth.num_rows == 40
    local = tmp_path_factory.mktemp("mock_local")
    assert cli(["mock", "--out", str(local), *args]) == 0
    for name in ("truth.parquet", "tracers.parquet", "cutouts/part-00000.parquet",
                 "cutouts/part-00002.parquet"):
        assert storage.read_bytes(f"{out}/{name}") == (local / name).read_bytes(), name

    rc = cli(["environment", "--targets", f"{out}/cutouts", "--tracers", f"{out}/tracers.parquet",
              "--out", f"{s3_bucket}/env/environment.parquet"])
    assert rc == 0
    env = _read_parquet(f"{s3_bucket}/env/environment.parquet")
    assert sorted(env["object_id"].to_pylist()) == sorted(truth["object_id"].to_pylist())
    # the same table as from the local copy of the mock
    assert cli(["environment", "--targets", str(local / "cutouts"),
                "--tracers", str(local / "tracers.parquet"),
                "--out", str(local / "environment.parquet")]) == 0
    assert env.equals(pq.read_table(local / "environment.parquet"))
    assert env["one_plus_delta5"].null_count < env.num_rows


def test_labels_reads_the_catalogs_from_s3_and_writes_there(s3_server, s3_bucket, empty_cwd,
                                                            tmp_path_factory, capsys):
    """labels with every catalog file and --out on the bucket: labels.parquet,
    selection_steps.csv, table1.csv and tracers.parquet are single PUTs there."""
    from surveyfiles import build_universe, write_universe

    from hicatalog.cli import main as cli

    local = write_universe(build_universe(), tmp_path_factory.mktemp("catalogs"))
    argv = ["labels", "--out", f"{s3_bucket}/labels", "--seed", "1"]
    for key, value in local.__dict__.items():
        if value is None:
            continue
        if isinstance(value, tuple):  # --nibles-exclude-ids: ids, not files
            argv += ["--" + key.replace("_", "-"), *value]
            continue
        url = f"{s3_bucket}/inputs/{os.path.basename(value)}"
        with open(value, "rb") as fh:
            storage.write_atomic(url, fh.read())
        argv += ["--" + key.replace("_", "-"), url]
    mark = s3_server.log_offset()
    assert cli(argv) == 0
    assert "15 labelled galaxies" in capsys.readouterr().out
    writes = s3_server.writes(mark)
    assert sorted(p.split("?")[0].rsplit("/", 1)[-1] for m, p in writes if m == "PUT") == [
        "labels.parquet", "selection_steps.csv", "table1.csv", "tracers.parquet"]
    assert {m for m, _ in writes} == {"PUT"}
    labels = _read_parquet(f"{s3_bucket}/labels/labels.parquet")
    assert labels.num_rows == 4 + 2 + 2 + 3 + 4
    table1 = storage.read_bytes(f"{s3_bucket}/labels/table1.csv").decode().splitlines()
    assert table1[0].startswith('"sample","N"') and len(table1) == 1 + 6
    assert _read_parquet(f"{s3_bucket}/labels/tracers.parquet").num_rows == 4


def _upload_tree(local_dir, url: str) -> None:
    for dirpath, _dirs, files in os.walk(local_dir):
        for name in files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, local_dir).replace(os.sep, "/")
            with open(path, "rb") as fh:
                storage.write_atomic(f"{url}/{rel}", fh.read())


def test_evaluate_catalog_reads_the_catalog_from_s3_and_writes_the_report_there(
        s3_server, s3_bucket, empty_cwd, tmp_path_factory, ray_local):
    """evaluate catalog --catalog/--truth/--out s3://: the same metrics as from a disk (the
    current version's rows, resolved through the manifest in the bucket); table2.md, metrics.json,
    six PNGs and index.html are single PUTs, the HTML linking the figures by their names."""
    from builders import synthetic_catalog

    from hicatalog.cli import main as cli

    local = tmp_path_factory.mktemp("evaluate_local")
    cat_dir, truth_path, _ = synthetic_catalog(local, n=60)
    _upload_tree(cat_dir, f"{s3_bucket}/catalog")
    with open(truth_path, "rb") as fh:
        storage.write_atomic(f"{s3_bucket}/truth.parquet", fh.read())
    assert cli(["evaluate", "catalog", "--catalog", str(cat_dir), "--truth", str(truth_path),
                "--out", str(local / "report")]) == 0
    out = f"{s3_bucket}/report"
    mark = s3_server.log_offset()
    assert cli(["evaluate", "catalog", "--catalog", f"{s3_bucket}/catalog",
                "--truth", f"{s3_bucket}/truth.parquet", "--out", out]) == 0
    writes = s3_server.writes(mark)
    figures = ["pcnn_hist.png", "pred_vs_true.png", "pred_vs_true_p0.9.png", "quintiles.png",
               "reliability.png", "residuals.png", "roc.png"]
    assert {m for m, _ in writes} == {"PUT"}
    assert sorted(p.split("?")[0].rsplit("/", 1)[-1] for _, p in writes) == sorted(
        ["index.html", "metrics.json", "table2.md", *figures])
    res = json.loads(storage.read_bytes(f"{out}/metrics.json"))
    assert res["counts"]["n_catalog"] == 60 and res["counts"]["n_ok"] == 54
    assert res["manifest"]["build_id"] == "b2" and res["manifest"]["version"] == 2
    assert res["inputs"] == {"catalog": f"{s3_bucket}/catalog",
                             "truth": f"{s3_bucket}/truth.parquet"}
    with open(local / "report" / "metrics.json") as fh:
        on_disk = json.load(fh)
    assert {k: v for k, v in res.items() if k != "inputs"} == {
        k: v for k, v in on_disk.items() if k != "inputs"}
    for name in figures:
        assert storage.read_bytes(f"{out}/{name}")[:8] == b"\x89PNG\r\n\x1a\n", name
    html = storage.read_bytes(f"{out}/index.html").decode()
    assert "<img src='pcnn_hist.png'" in html and "s3:" not in html.split("<h2>Inputs")[0]


def test_config_file_on_s3(s3_server, s3_bucket, empty_cwd, capsys):
    """--config s3://bucket/x.toml is read from the bucket (flags still win over it); a
    missing or malformed one is the usual one-line usage error (exit 2)."""
    from hicatalog.cli import main as cli
    from hicatalog.config import EnvironmentConfig, load_config

    storage.write_atomic(f"{s3_bucket}/conf/env.toml",
                         b'targets = "s3://b/t.parquet"\ntracers = "s3://b/tr.parquet"\n'
                         b'out = "s3://b/env.parquet"\nn_neighbor = 7\n')
    cfg = load_config(EnvironmentConfig, f"{s3_bucket}/conf/env.toml", {"out": "s3://b/o.parquet"})
    assert (cfg.targets, cfg.tracers, cfg.out, cfg.n_neighbor) == (
        "s3://b/t.parquet", "s3://b/tr.parquet", "s3://b/o.parquet", 7)
    assert cli(["environment", "--config", f"{s3_bucket}/conf/missing.toml"]) == 2
    assert "missing.toml' does not exist" in capsys.readouterr().err
    storage.write_atomic(f"{s3_bucket}/conf/bad.toml", b"out = [\n")
    assert cli(["environment", "--config", f"{s3_bucket}/conf/bad.toml"]) == 2
    assert "is not valid TOML" in capsys.readouterr().err


def test_robustness_and_baselines_read_and_write_on_s3(s3_server, s3_bucket, empty_cwd,
                                                       tmp_path_factory):
    """evaluate robustness and baselines with --data, --model and --out on the bucket: the
    same results as from a copy on a disk; the JSON, Markdown, PNGs and index.html are
    single PUTs."""
    from builders import save_tiny_model
    from imagefixtures import make_blue_excess_shards

    from hicatalog.cli import main as cli

    local = tmp_path_factory.mktemp("analyses_local")
    for root in (str(local), s3_bucket):
        make_blue_excess_shards(storage.join(root, "cutouts"), n=60, seed=4)
        save_tiny_model(storage.join(root, "model"))
    analyses = {
        "robustness": (["--trials", "3", "--n-galaxies", "2"], "robustness.json"),
        "baselines": (["--seed", "3"], "baselines.json"),
    }
    for analysis, (flags, result_file) in analyses.items():
        runs = {}
        for root in (str(local), s3_bucket):
            out = storage.join(root, analysis)
            mark = s3_server.log_offset()
            assert cli(["evaluate", analysis, "--data", storage.join(root, "cutouts"),
                        "--model", storage.join(root, "model"), "--out", out, *flags]) == 0
            runs[root] = json.loads(storage.read_bytes(storage.join(out, result_file)))
        writes = s3_server.writes(mark)
        assert {m for m, _ in writes} == {"PUT"}, writes
        names = sorted(p.split("?")[0].rsplit("/", 1)[-1] for _, p in writes)
        assert names == sorted(storage.basename(f) for f in storage.list_files(out)), names
        assert names == sorted(os.listdir(local / analysis)), analysis
        on_s3, on_disk = runs[s3_bucket], runs[str(local)]
        assert on_s3["inputs"]["model"] == f"{s3_bucket}/model"
        assert {k: v for k, v in on_s3.items() if k != "inputs"} == {
            k: v for k, v in on_disk.items() if k != "inputs"}, analysis
    assert len([n for n in names if n.endswith(".png")]) == 1  # baselines.png
    robustness = storage.list_files(f"{s3_bucket}/robustness", suffix=".png")
    assert len(robustness) == 2  # one figure per galaxy
    html = storage.read_bytes(f"{s3_bucket}/robustness/index.html").decode()
    assert all(f"<img src='{storage.basename(f)}'" in html for f in robustness)
