"""The example configs in configs/ stay valid as the config models change, and mean what they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from hicatalog.cli import COMMANDS
from hicatalog.config import load_config

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BY_FILE = {"demo.toml": "demo", "train.toml": "train", "build_catalog.toml": "build-catalog",
           "workflow.toml": "workflow"}


@pytest.mark.parametrize("name,command", sorted(BY_FILE.items()))
def test_example_config_validates(name, command):
    model = next(c.config for c in COMMANDS if c.name == command)
    cfg = load_config(model, CONFIGS / name)
    written = tomllib.loads((CONFIGS / name).read_text())
    assert len(written) >= 5
    # every key the file sets arrives with the value written there (a renamed or retyped
    # field fails here) ...
    assert {key: getattr(cfg, key) for key in written} == written
    # ... and every other key keeps its default
    for key, field in model.model_fields.items():
        if key not in written:
            assert getattr(cfg, key) == field.get_default(call_default_factory=True), key
