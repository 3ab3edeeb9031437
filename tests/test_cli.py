"""The `hicatalog` command: help, config errors, exit codes, user errors against bugs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hicatalog.cli import COMMANDS, Command, main, user_message
from hicatalog.config import MockConfig
from hicatalog.errors import ConfigError, InputError

SUBCOMMANDS = [
    "mock", "train", "build-catalog", "calibrate", "export", "vacuum", "environment", "evaluate", "labels", "fetch", "demo",
    "workflow",
]


def test_help_lists_every_subcommand():
    out = subprocess.run(
        [sys.executable, "-m", "hicatalog.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in SUBCOMMANDS:
        assert name in out
    assert [c.name for c in COMMANDS] == SUBCOMMANDS


def test_bad_flag_value_exits_2_with_key_named(capsys):
    rc = main(["train", "--data", "d", "--out", "m", "--epochs", "0"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "key 'epochs' (from flag --epochs): got '0'" in err


def test_config_file_unknown_key(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('out = "x"\nbogus = 1\n')
    assert main(["mock", "--config", str(cfg)]) == 2
    assert "key 'bogus'" in capsys.readouterr().err


def test_a_user_error_is_one_line_naming_what_to_fix(tmp_path, capsys):
    """An input the user gave that is not there: exit 1 and one line, no traceback."""
    missing = str(tmp_path / "no-cutouts")
    rc = main(["build-catalog", "--cutouts", missing, "--regression", str(tmp_path / "r"),
               "--pr", str(tmp_path / "p"), "--out", str(tmp_path / "cat")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"hicatalog build-catalog: error: {missing}: no such file or directory "
        "(expected cutouts shards)"]


@pytest.mark.parametrize("width, message", [
    ("-1", "key 'margin_arcsec' (from flag --margin-arcsec): got '-1'"),
    ("3600", "error: --margin-arcsec 3600.0 is wider than the border pixels of the order-"),
])
def test_a_bad_margin_width_is_refused_before_the_build_naming_its_flag(tmp_path, capsys, width,
                                                                       message):
    """A negative width is refused by the config, one too wide for the partitions by the build
    before it reads anything (the inputs here do not exist), not after the predictions."""
    rc = main(["build-catalog", "--cutouts", str(tmp_path / "c"), "--regression", "r", "--pr", "p",
               "--out", str(tmp_path / "cat"), "--margin-arcsec", width])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "cat").exists()


def test_a_parameter_error_of_the_library_exits_2_naming_flags(tmp_path, capsys):
    rc = main(["evaluate", "robustness", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip() == ("hicatalog evaluate: error: the 'robustness' analysis needs "
                           "--data, --model")


def test_parameters_are_written_as_the_commands_flags():
    cmd = next(c for c in COMMANDS if c.name == "build-catalog")
    exc = ConfigError("decode='gpu' needs gpu=True; got gpu=False for /runs/gpu/out; "
                      "partition_rows=150 is too small: raise partition_rows.",
                      params=("decode", "gpu", "partition_rows", "batch"))
    assert user_message(exc, cmd) == (
        "--decode 'gpu' needs --gpu; got --no-gpu for /runs/gpu/out; "
        "--partition-rows 150 is too small: raise --partition-rows.")
    # a name the error does not list as a parameter stays as it is
    assert user_message(InputError("out of range: out"), cmd) == "out of range: out"


def _stage_with_a_bug(**params):
    """A stage whose code is wrong: a bare ValueError, as a bug in our code would raise."""
    raise ValueError("a bug, not the user's input")


def _stage_with_a_user_error(*, out, **params):
    raise InputError(f"{out}: holds no galaxies")


def _with_stage(monkeypatch, target):
    cmd = Command("mock", MockConfig, target, "a stand-in stage")
    monkeypatch.setattr("hicatalog.cli.COMMANDS", (cmd,))


def test_a_bug_keeps_its_traceback_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    """Only HicatalogError is the user's to fix: a bare ValueError from our code reaches
    Python, which prints its traceback and exits 1 (here: the real interpreter, running the
    command with a stand-in stage)."""
    code = ("import sys, test_cli; from _pytest.monkeypatch import MonkeyPatch; "
            "test_cli._with_stage(MonkeyPatch(), 'test_cli:_stage_with_a_bug'); "
            "from hicatalog.cli import main; sys.exit(main(['mock', '--out', 'x']))")
    tests = str(Path(__file__).parent)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": tests})
    assert res.returncode == 1
    assert "Traceback (most recent call last)" in res.stderr
    assert res.stderr.strip().endswith("ValueError: a bug, not the user's input")
    # in process: the bug propagates out of main; a user error in its place is one line
    _with_stage(monkeypatch, "test_cli:_stage_with_a_bug")
    with pytest.raises(ValueError, match="a bug"):
        main(["mock", "--out", str(tmp_path / "m")])
    _with_stage(monkeypatch, "test_cli:_stage_with_a_user_error")
    assert main(["mock", "--out", str(tmp_path / "m")]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"hicatalog mock: error: {tmp_path / 'm'}: holds no galaxies"]


def test_printed_query_hints_run_as_printed_after_make_setup(tmp_path, ray_local):
    """build-catalog and demo end by printing a query to try. `make setup` installs no DuckDB
    command-line tool, so the hint is a `python -c` line with polars (a dependency), run by
    the same interpreter; here it is run through a shell exactly as printed."""
    import pathlib

    import numpy as np
    import pyarrow as pa

    from hicatalog.catalog.build import query_command
    from hicatalog.catalog.publish import healpix_29, publish_tables

    ra, dec = np.array([151.0, 152.0, 170.0]), np.array([1.0, 2.0, 3.0])
    f32 = pa.array([0.95, 0.99, 0.5], pa.float32())
    # a published catalog, with a blank in its path too
    publish_tables(str(tmp_path / "cat dir"), [pa.table({
        "object_id": ["a", "b", "c"], "ra": ra, "dec": dec, "z": [0.01] * 3, "m_pred": f32,
        "m_pred_err": f32, "m_pred_std": f32, "p_cnn": f32, "one_plus_delta5": f32, "sigma5": f32, "d5_mpc": f32,
        "env_status": ["ok"] * 3, "status": ["ok"] * 3, "error": pa.nulls(3, pa.string()),
        "build_id": ["b"] * 3, "model_id": ["m"] * 3, "_healpix_29": healpix_29(ra, dec)})],
        build_id="b")
    cmd = query_command(str(tmp_path / "cat dir"),
                        'cat.filter(pl.col("p_cnn") > 0.9).select(pl.len())')
    assert cmd.startswith(sys.executable) and "duckdb" not in cmd
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=True).stdout
    header, _, body = out.partition("╞")  # polars prints the frame: header, rule, values
    assert "len" in header and body.split()[1:3] == ["│", "2"], out
    # and no command prints a duckdb command line any more
    src = pathlib.Path(__file__).resolve().parents[1] / "hicatalog"
    assert not [p for p in src.rglob("*.py") if "duckdb -c" in p.read_text()]


# --- the seam between the command line and the stages ------------------------------------------

#: The composition layer (and the command line itself) may use the config models; a stage never.
COMPOSERS = {"cli.py", "config.py", "workflow.py", "demo.py"}


def test_no_stage_module_imports_the_config_models():
    """The stage libraries take keyword parameters; only the command line, the workflow and the
    demo read the config models (an import inside a function counts too)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "hicatalog"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in COMPOSERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            if any(n == "hicatalog.config" or n.startswith("hicatalog.config.") for n in names):
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


#: Parameters of a library entry that are not options of its command (hooks for Python callers).
LIBRARY_ONLY = {"train": {"worker_loop"}, "vacuum": {"manifest"}}


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if not c.passes_config], ids=lambda c: c.name)
def test_every_option_is_a_parameter_of_the_library_with_its_default(cmd):
    """The command passes its config's fields to its stage's library function as keyword
    arguments: the two name the same parameters with the same defaults (the library's own), or
    an option would be refused, dropped or change meaning on the way."""
    import inspect

    from hicatalog.cli import _resolve

    params = inspect.signature(_resolve(cmd.call)).parameters
    fields = cmd.config.model_fields
    assert not [p for p in params.values() if p.kind is p.VAR_KEYWORD]
    assert set(params) - LIBRARY_ONLY.get(cmd.name, set()) == set(fields)
    for name, field in fields.items():
        default = inspect.Parameter.empty if field.is_required() else field.get_default(
            call_default_factory=True)
        assert params[name].default == default, name
    for name in LIBRARY_ONLY.get(cmd.name, ()):
        assert params[name].default is not inspect.Parameter.empty, name


def test_options_tables_are_flags_with_their_whole_path(capsys):
    """A key of an options table is a flag ``--table.key`` whose help shows the table's own
    default; a bad value or an unknown key is named by its whole path and origin, and a step's
    option given at the top level says which table has it."""
    from hicatalog.cli import build_parser

    workflow = next(c for c in COMMANDS if c.name == "workflow")
    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    helps = {a.dest: a.help for a in demo._actions}
    assert "(default: 2)" in helps["regression.ensemble"] and "(default: 1)" in helps["pr.ensemble"]
    base = ["workflow", "--out", "o", "--a40", "a", "--a40-sdss", "b", "--mpa-info", "c",
            "--mpa-mass", "d", "--nsa", "n"]
    assert main([*base, "--train.epochs", "0", "--fetch.max-rps", "x"]) == 2
    err = capsys.readouterr().err
    assert "key 'train.epochs' (from flag --train.epochs): got '0'" in err
    assert "key 'fetch.max_rps' (from flag --fetch.max-rps): got 'x'" in err
    with pytest.raises(SystemExit):
        main([*base, "--epochs", "3"])  # not a flag of the workflow: argparse refuses it
    capsys.readouterr()
    from hicatalog.config import load_config

    with pytest.raises(ConfigError) as exc:
        load_config(workflow.config, None, {"out": "o", "a40": "a", "a40_sdss": "b", "mpa_info": "c",
                                            "mpa_mass": "d", "nsa": "n", "epochs": 3,
                                            "train.epoch": 3})
    msg = str(exc.value)
    assert "key 'epochs' (from flag --epochs): unknown key (an option of a table: train.epochs)" in msg
    assert "key 'train.epoch' (from flag --train.epoch): unknown key; expected one of: preset," in msg


def test_a_steps_parameters_are_written_as_the_workflows_flags():
    from hicatalog.workflow import WorkflowError

    workflow = next(c for c in COMMANDS if c.name == "workflow")
    exc = WorkflowError("step 'fetch-targets' failed: more than max_failed_fraction=0.1 allows",
                        params=("max_failed_fraction",), tables=("fetch",))
    assert user_message(exc, workflow) == (
        "step 'fetch-targets' failed: more than --fetch.max-failed-fraction 0.1 allows")
    exc = WorkflowError("step 'train-pr' failed: gpu=True, then raise ensemble",
                        params=("gpu", "ensemble"), tables=("train", "pr"))
    assert user_message(exc, workflow) == "step 'train-pr' failed: --train.gpu, then raise --pr.ensemble"


#: The most lines a function may have, signature and docstring included.
MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_80_lines():
    """A function longer than a screen hides its steps: split it into named steps instead
    (docs/development.md)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "hicatalog"
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines})")
    assert long == []


def test_the_repository_holds_no_symlink():
    """`ray job submit --working-dir .` packages the tree and follows symlinks: a link to a
    virtualenv once made the upload exceed the job server's 100 MB limit."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    files = subprocess.run(["git", "ls-files", "-s"], cwd=root, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert [line.split("\t", 1)[1] for line in files if line.startswith("120000")] == []
