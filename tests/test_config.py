"""The config validator on good and bad input: every error names key, value and expectation."""

from __future__ import annotations

import pytest

from hicatalog.config import ConfigError, MockConfig, TrainConfig, load_config


def test_defaults_and_overrides(tmp_path):
    cfg_file = tmp_path / "mock.toml"
    cfg_file.write_text('out = "x"\nn = 10\nseed = 3\n')
    cfg = load_config(MockConfig, cfg_file, {"n": 20})
    assert (cfg.out, cfg.n, cfg.seed, cfg.imaging, cfg.sigma_int) == ("x", 20, 3, "sdss", 0.20)


def test_unknown_key_names_key_and_file(tmp_path):
    cfg_file = tmp_path / "mock.toml"
    cfg_file.write_text('out = "x"\nnn = 10\n')
    with pytest.raises(ConfigError) as exc:
        load_config(MockConfig, cfg_file)
    msg = str(exc.value)
    assert "key 'nn'" in msg and "unknown key" in msg and str(cfg_file) in msg
    assert "expected one of" in msg and "n," in msg


def test_wrong_type_names_value_and_expected():
    with pytest.raises(ConfigError) as exc:
        load_config(MockConfig, None, {"out": "x", "n": "lots"})
    msg = str(exc.value)
    assert "key 'n'" in msg and "'lots'" in msg and "valid integer" in msg
    assert "from flag --n" in msg


def test_out_of_range_and_bad_choice():
    with pytest.raises(ConfigError) as exc:
        load_config(MockConfig, None, {"out": "x", "sigma_int": -1, "imaging": "hst"})
    msg = str(exc.value)
    assert "key 'sigma_int'" in msg and "-1" in msg and "greater than or equal to 0" in msg
    assert "key 'imaging'" in msg and "'hst'" in msg and "'sdss' or 'legacy'" in msg


def test_missing_required_key():
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, None, {"out": "m"})
    assert "key 'data': required but not given (flag --data)" in str(exc.value)


def test_cross_field_rule():
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, None, {"data": ["d"], "out": "m", "val_quantiles": [0.9, 0.1]})
    assert "0 <= lo < hi <= 1" in str(exc.value)
    with pytest.raises(ConfigError, match="needs split_by"):
        load_config(TrainConfig, None, {"data": ["d"], "out": "m", "val_quantiles": [0.8, 1.0]})


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("n = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(MockConfig, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(MockConfig, tmp_path / "nope.toml")
