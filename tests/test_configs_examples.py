"""The example configs in configs/ stay valid as the config models change."""

from __future__ import annotations

from pathlib import Path

import pytest

from hicatalog.cli import COMMANDS
from hicatalog.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BY_FILE = {"demo.toml": "demo", "train.toml": "train", "build_catalog.toml": "build-catalog"}


@pytest.mark.parametrize("name,command", sorted(BY_FILE.items()))
def test_example_config_validates(name, command):
    model = next(c.config for c in COMMANDS if c.name == command)
    cfg = load_config(model, CONFIGS / name)
    assert cfg.model_dump()
