"""The `hicatalog` command: help, config errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

from hicatalog.cli import COMMANDS, main

SUBCOMMANDS = [
    "mock", "train", "build-catalog", "environment", "evaluate", "labels", "fetch", "demo",
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
