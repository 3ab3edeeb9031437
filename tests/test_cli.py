"""The `hicatalog` command: help, config errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

from hicatalog.cli import COMMANDS, main

SUBCOMMANDS = [
    "mock", "train", "build-catalog", "environment", "evaluate", "labels", "fetch", "demo",
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
