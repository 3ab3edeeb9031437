"""`hicatalog workflow` end to end: published-format catalog files written here, cutouts from
a local imitation of SkyServer, the command of docs/guides/real-surveys.md, and the sample bookkeeping checked at
every step; then a rerun that skips what is done and one that adds targets."""

from __future__ import annotations

import json
import os
import shlex
import socket
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from docpages import code_blocks, command_lines, page
from fakeserver import FakeCutoutServer
from surveyfiles import Universe, offset, write_nsa, write_universe

from hicatalog import storage
from hicatalog.catalog.reader import read_catalog
from hicatalog.cli import main
from hicatalog.workflow import REPORT_JSON

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_PAGE = page("docs/guides/real-surveys.md")
WORKFLOW_SECTION = "## From the public catalogs to a survey-wide H I catalog: `hicatalog workflow`"
TEST_SAMPLES = {"a100", "nibles", "xgass"}


def docs_workflow_command() -> list[str]:
    """The `hicatalog workflow` command line, as argv, that the workflow section of the
    real-surveys page and the README's "The real survey" both show (the same one)."""
    blocks = [*code_blocks(WORKFLOW_PAGE, "bash", WORKFLOW_SECTION),
              *code_blocks(page("README.md"), "bash", "## The real survey")]
    commands = [shlex.split(line)[1:] for block in blocks for line in command_lines(block)
                if line.startswith("hicatalog workflow")]
    assert len(commands) == 2 and commands[0] == commands[1], commands
    return commands[0]


def small_universe(n_a40=30, n_nd=34, n_a100=12, n_nibles=10, n_xgass=12, n_nsa=40) -> Universe:
    """A few dozen galaxies per sample, each selected (plus one a.40 row whose PhotoObjID is
    empty, and NSA rows with a -9999 redshift and one beyond z = 0.06)."""
    U = Universe()
    for i in range(n_a40 + 1):
        ra, dec = U.new_site()
        # every third without an SFR (-99): a.40A but not a.40B
        k = U.add_mpa(ra, dec, mass=9.0 + 0.05 * i, sfr=-99.0 if i % 3 == 0 else 0.1)
        ra_hi, dec_hi = offset(ra, dec, 20, -15)
        U.a40.append(dict(agc=2000 + i, ra_hi=ra_hi, dec_hi=dec_hi, ra_oc=ra, dec_oc=dec,
                          logm=8.5 + 0.04 * i, oc="I", cut=None, mpa=k))
        U.a40x.append(dict(agc=2000 + i, photoobjid=U.objid(k) if i < n_a40 else None))
    for i in range(n_nd):
        U.add_mpa(*U.new_site(), z=0.01 + 0.001 * i, nd_cut=None)
    for i in range(n_a100):
        ra, dec = U.new_site()
        U.add_mpa(ra, dec, z=0.03, mass=9.2 + 0.1 * i, nd_cut='not an a.100 counterpart (5")')
        ra_hi, dec_hi = offset(ra, dec, -25, 10)
        U.a100.append(dict(agc=5000 + i, ra_hi=ra_hi, dec_hi=dec_hi, ra_oc=ra, dec_oc=dec,
                           logm=8.8 + 0.05 * i, cut=None))
    for i in range(n_xgass):
        ra, dec = U.new_site()
        U.xgass.append(dict(gass=100 + i, ra=ra, dec=dec, z=0.03, ms=10.0 + 0.1 * i,
                            mhi=9.0 + 0.05 * i, hisrc=4 if i % 3 == 0 else 1, cut=None))
    for i in range(n_nibles):
        ra, dec = U.new_site()
        U.nibles.append(dict(id=i + 1, ra=ra, dec=dec, z=0.02, ms=9.0 + 0.1 * i, mhi=9.1,
                             cut=None))
    U.nsa = [dict(nsaid=i, ra=200.0 + 0.3 * i, dec=20.0 + 0.1 * (i % 7), z=0.005 + 0.001 * i)
             for i in range(n_nsa)]
    U.nsa += [dict(nsaid=n_nsa, ra=210.0, dec=21.0, z=-9999.0),   # sentinel: no tracer
              dict(nsaid=n_nsa + 1, ra=211.0, dec=21.0, z=0.08)]  # a tracer, not a target
    return U


def expected_samples(U: Universe, n_a40: int) -> dict[str, int]:
    n_b = sum(1 for i in range(n_a40) if i % 3 != 0)
    return {"a40A": n_a40 - n_b, "a40B": n_b, "a100": len(U.a100), "nibles": len(U.nibles),
            "xgass": len(U.xgass), "nondetections": n_a40}


def _text(path: str) -> str:
    return storage.read_bytes(path).decode()


def test_workflow_from_published_files_to_catalog_resumes_and_extends(
        ray_local, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    U = small_universe()
    write_universe(U, tmp_path / "data", pad_headers=True)
    argv = docs_workflow_command()
    out = str(tmp_path / "runs" / "real")
    with FakeCutoutServer() as srv:
        tiny = ["--fetch.base-url", f"{srv.base}/dr14/SkyServerWS/ImgCutout/getjpeg",
                "--fetch.max-rps", "1000", "--fetch.image-size", "48", "--train.image-size", "32",
                "--train.arch", "shallow", "--train.width", "0.125", "--train.epochs", "1",
                "--train.batch-size", "16", "--build.batch-size", "32"]
        assert main(argv + tiny) == 0, capsys.readouterr().err
        report = json.loads(_text(storage.join(out, REPORT_JSON)))
        steps = report["steps"]
        assert all(s["status"] == "ran" for s in steps.values()), steps

        # labels: every sample, upper limits kept
        want = expected_samples(U, 30)
        assert steps["labels"]["rows_per_sample"] == want
        assert steps["labels"]["upper_limits"] == 4
        labels = storage.read_parquet(storage.join(out, "labels", "labels.parquet")).to_pandas()

        # no test galaxy in any training set, no upper limit as a negative: the cards'
        # counts are exactly the a.40A rows (and as many non-detections) that were written
        n_a40 = want["a40A"] + want["a40B"]
        reg, pr = steps["train-regression"], steps["train-pr"]
        assert reg["sample_counts"] == {"a40A": {"rows": want["a40A"]},
                                        "a40B": {"rows": want["a40B"]}}
        assert pr["sample_counts"] == {"a40A": {"detection": want["a40A"]},
                                       "a40B": {"detection": want["a40B"]},
                                       "nondetections": {"nondetection": n_a40}}
        for card in (reg, pr):
            assert not TEST_SAMPLES & set(card["sample_counts"])
        assert pr["negatives"] == ["nondetections"]
        cards = [json.loads(_text(storage.join(out, "models", t, "model_card.json")))
                 for t in ("regression", "pr")]
        assert all(c["upper_limits_as_negatives"] is False for c in cards)

        # every row accounted for: labels -> fetch statuses -> catalog rows
        n_targets = 40  # NSA rows with 0 < z < 0.06 (not the -9999 one, not z = 0.08)
        acc = report["accounting"]
        assert acc["labelled"] == {"input_rows": len(labels), "fetch_status_rows": len(labels),
                                   "cutouts_stored": len(labels), "not_stored": 0,
                                   "catalog_rows": len(labels)}
        assert acc["targets"] == {"input_rows": n_targets, "fetch_status_rows": n_targets,
                                  "cutouts_stored": n_targets, "not_stored": 0,
                                  "catalog_rows": n_targets}
        assert steps["fetch-labelled"]["status_counts"] == {"ok": len(labels)}
        n_requests = sum(srv.stats()["counts"].values())
        assert n_requests == len(labels) + n_targets

        # the evaluation: one row per test sample, the upper limits as limits
        table2 = _text(storage.join(out, "evaluation", "table2.md"))
        for name in ("a.100", "NIBLES", "xGASS detections", "xGASS upper limits",
                     "a.40A [trained on: regression, pr]"):
            assert name in table2, name
        samples = steps["evaluate"]["samples"]
        assert samples["a.100"]["n"] == want["a100"]
        assert samples["NIBLES"]["n"] == want["nibles"]
        assert samples["xGASS upper limits"]["n"] == 4

        # a rerun: nothing new, every step skipped, nothing requested
        assert main(argv + tiny) == 0
        steps = json.loads(_text(storage.join(out, REPORT_JSON)))["steps"]
        assert {k: s["status"] for k, s in steps.items()} == {
            "labels": "skipped", "fetch-labelled": "nothing new", "fetch-targets": "nothing new",
            "train-regression": "skipped", "train-pr": "skipped", "catalog-labelled": "skipped",
            "evaluate": "skipped", "catalog-targets": "skipped"}
        assert sum(srv.stats()["counts"].values()) == n_requests

        # new targets (a newer NSA): only those are fetched and predicted
        U.nsa += [dict(nsaid=100 + i, ra=220.0 + 0.3 * i, dec=22.0, z=0.02) for i in range(5)]
        write_nsa(U, tmp_path / "data")
        assert main(argv + tiny) == 0
        report = json.loads(_text(storage.join(out, REPORT_JSON)))
        steps = report["steps"]
        assert steps["labels"]["status"] == "ran"
        assert steps["fetch-targets"]["status_counts"] == {"already_present": n_targets, "ok": 5}
        assert sum(srv.stats()["counts"].values()) == n_requests + 5
        for s in ("train-regression", "train-pr", "catalog-labelled"):
            assert steps[s]["status"] == "skipped", s
        cat = steps["catalog-targets"]
        assert cat["status"] == "ran" and cat["version"] == 2
        assert cat["rows_this_version"] == 5 and cat["rows_total"] == n_targets + 5
        assert report["accounting"]["targets"]["catalog_rows"] == n_targets + 5
        # version 2 holds the whole catalog; the rows of its new build are the 5 new targets
        v2 = read_catalog(storage.join(out, "catalogs", "targets"))
        new = v2.filter(pc.equal(v2["build_id"], json.loads(
            _text(storage.join(out, "catalogs", "targets", "_manifest.json")))["build_id"]))
        assert sorted(new.column("object_id").to_pylist()) == sorted(
            f"NSA{100 + i}" for i in range(5))
        assert v2.num_rows == n_targets + 5
    assert np.isfinite(read_catalog(storage.join(out, "catalogs", "targets")).column("m_pred")).all()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_failing_step_is_one_line_naming_it(where, tmp_path, monkeypatch, capsys, request):
    """The report of a failed run is written too: in the run directory, or on the bucket."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "data").mkdir()
    U = small_universe(n_a40=3, n_nd=3, n_a100=1, n_nibles=1, n_xgass=1, n_nsa=3)
    write_universe(U, tmp_path / "data")
    (tmp_path / "data" / "a40.datafile3.csv").write_text("AGCNr\n1\n")
    argv = docs_workflow_command()
    out = str(tmp_path / "runs" / "real")
    if where == "s3":
        out = storage.join(request.getfixturevalue("s3_bucket"), "real")
        argv = [*argv, "--out", out]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hicatalog workflow: error: step 'labels' failed:")
    assert "PhotoObjID" in err[0]
    report = json.loads(_text(storage.join(out, REPORT_JSON)))
    assert report["ok"] is False and report["steps"]["labels"]["status"] == "failed"


def test_workflow_on_s3_records_its_steps_there_and_resumes_from_the_failed_one(
        s3_bucket, ray_local, tmp_path, monkeypatch, capsys):
    """The documented command with ``--out`` on the S3 server (tests/conftest.py) and a cutout
    service that refuses every connection: the labels, the target list, the step record, the
    fetch status and the report are written to the bucket, the run stops at the fetch with one
    line; a rerun skips the labels step (its record, read from the bucket, matches) and stops
    at the same place. Nothing of the run is written to the local disk."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    U = small_universe(n_a40=3, n_nd=3, n_a100=1, n_nibles=1, n_xgass=1, n_nsa=3)
    write_universe(U, tmp_path / "data")
    with socket.socket() as sock:  # a port nothing listens on: every request is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = storage.join(s3_bucket, "real")
    argv = docs_workflow_command()
    argv += ["--out", out, "--fetch.base-url", f"http://127.0.0.1:{port}/getjpeg",
             "--fetch.retries", "0", "--fetch.timeout-s", "2"]
    for attempt, labels_status in ((1, "ran"), (2, "skipped")):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()  # Ray Data logs its progress too
        assert [line for line in err if line.startswith("hicatalog")] == err[-1:], (attempt, err)
        assert err[-1].startswith("hicatalog workflow: error: step 'fetch-labelled' failed:")
        report = json.loads(_text(storage.join(out, REPORT_JSON)))
        assert report["ok"] is False and report["out"] == out
        assert {k: s["status"] for k, s in report["steps"].items()} == {
            "labels": labels_status, "fetch-labelled": "failed"}, attempt
        assert report["steps"]["labels"]["outputs"]["labels"] == f"{out}/labels/labels.parquet"
    labels = report["steps"]["labels"]
    assert labels["rows_per_sample"] == expected_samples(U, 3)
    n_labels = sum(labels["rows_per_sample"].values())
    assert storage.read_parquet(f"{out}/labels/labels.parquet").num_rows == n_labels
    assert storage.read_parquet(f"{out}/labels/targets.parquet").num_rows == 3
    assert storage.is_file(f"{out}/_workflow/labels.json")
    status = storage.read_parquet(f"{out}/cutouts/labelled/_fetch_status.parquet")
    assert status.num_rows == n_labels and set(status.column("status").to_pylist()) != {"ok"}
    assert "**Failed**: step 'fetch-labelled' failed" in _text(storage.join(out, "workflow_report.md"))
    assert sorted(os.listdir(tmp_path)) == ["configs", "data"]


#: Options of a step's command the workflow sets itself, with why.
SET_BY_THE_WORKFLOW = {
    "train": {"storage_path"},  # each model's Ray Train storage: MODEL_DIR/ray, so runs resume
    # the catalog step extends the catalog it wrote before; the workflow has no calibration
    # set of its own yet (its catalogs get Gaussian intervals, flagged interval_gaussian)
    "build-catalog": {"since_manifest", "calibration"},
}
#: Options of one network that do not apply to the other (a PR network has no Gaussian head, a
#: regression no negatives).
NOT_THIS_NETWORK = {"train-regression": {"negatives", "upper_limits_as_negatives"},
                    "train-pr": {"head", "likelihood"}}
STEP_COMMANDS = {"labels": "labels", "fetch-labelled": "fetch", "fetch-targets": "fetch",
                 "train-regression": "train", "train-pr": "train",
                 "catalog-labelled": "build-catalog", "catalog-targets": "build-catalog"}


def test_every_option_of_a_steps_command_is_reachable_from_the_workflow():
    """Each step passes its stage every option of the stage's own command (from the workflow's
    top level or one of its tables), so a new option of train, fetch, build-catalog or labels
    reaches the workflow with no edit there; a value set in a table arrives at its steps."""
    from hicatalog.cli import COMMANDS
    from hicatalog.config import WorkflowConfig
    from hicatalog.workflow import step_arguments

    configs = {c.name: c.config for c in COMMANDS}
    files = {k: k for k in ("a40", "a40_sdss", "mpa_info", "mpa_mass", "nsa")}
    cfg = WorkflowConfig(out="o", **files, train={"epochs": 7, "precision": "fp32"},
                         regression={"head": "gaussian", "ensemble": 3}, pr={"negatives": "xgass"},
                         fetch={"max_rps": 2.5}, build={"batch_size": 8})
    args = step_arguments(cfg)
    assert set(args) == set(STEP_COMMANDS)
    for step, command in STEP_COMMANDS.items():
        expected = (set(configs[command].model_fields) - SET_BY_THE_WORKFLOW.get(command, set())
                    - NOT_THIS_NETWORK.get(step, set()))
        assert set(args[step]) == expected, step
    for task in ("regression", "pr"):
        assert args[f"train-{task}"]["epochs"] == 7 and args[f"train-{task}"]["precision"] == "fp32"
        assert args[f"train-{task}"]["task"] == task
    assert args["train-regression"]["head"] == "gaussian" and args["train-regression"]["ensemble"] == 3
    assert args["train-pr"]["negatives"] == ["xgass"] and args["train-pr"]["ensemble"] == 1
    assert args["fetch-targets"]["max_rps"] == 2.5 and args["fetch-labelled"]["max_rps"] == 2.5
    assert args["catalog-targets"]["batch_size"] == 8 and args["catalog-targets"]["tracers"]
    assert args["labels"]["a40"] == "a40" and args["labels"]["out"] != "o"
