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


def test_printed_query_hints_run_as_printed_after_make_setup(tmp_path):
    """build-catalog and demo end by printing a query to try. `make setup` installs no DuckDB
    command-line tool, so the hint is a `python -c` line with polars (a dependency), run by
    the same interpreter; here it is run through a shell exactly as printed."""
    import pathlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from hicatalog.catalog.build import query_command

    zone = tmp_path / "cat dir" / "version=1" / "dec_zone=2"  # a blank in the path too
    zone.mkdir(parents=True)
    pq.write_table(pa.table({"object_id": ["a", "b", "c"], "ra": [151.0, 152.0, 170.0],
                             "p_cnn": pa.array([0.95, 0.99, 0.5], pa.float32())}),
                   zone / "part-00000.parquet")
    cmd = query_command(str(tmp_path / "cat dir"),
                        'cat.filter(pl.col("p_cnn") > 0.9).select(pl.len())')
    assert cmd.startswith(sys.executable) and "duckdb" not in cmd
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=True).stdout
    header, _, body = out.partition("╞")  # polars prints the frame: header, rule, values
    assert "len" in header and body.split()[1:3] == ["│", "2"], out
    # and no command prints a duckdb command line any more
    src = pathlib.Path(__file__).resolve().parents[1] / "hicatalog"
    assert not [p for p in src.rglob("*.py") if "duckdb -c" in p.read_text()]
