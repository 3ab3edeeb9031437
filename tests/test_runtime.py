"""Joining Ray: a stale or unreachable cluster address fails fast with one line, not a hang."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hicatalog.runtime import RayClusterUnreachable, _check_reachable, _cluster_to_join

HICATALOG = str(Path(sys.executable).with_name("hicatalog"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


@pytest.fixture
def ray_tmp(monkeypatch):
    """A private Ray temp dir (short: Ray's socket paths must stay under 108 bytes)."""
    d = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", d)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_which_cluster_ray_would_join(ray_tmp, monkeypatch):
    assert _cluster_to_join(None) == (None, "")  # nothing recorded: a new local Ray
    recorded = ray_tmp / "ray" / "ray_current_cluster"
    recorded.parent.mkdir()
    recorded.write_text("10.1.2.3:6379\n")
    assert _cluster_to_join(None) == ("10.1.2.3:6379", str(recorded))
    monkeypatch.setenv("RAY_ADDRESS", "10.9.9.9:6380")
    assert _cluster_to_join(None) == ("10.9.9.9:6380", "RAY_ADDRESS")
    assert _cluster_to_join("ray://h:10001") == ("ray://h:10001", "the address given")
    assert _cluster_to_join("local") == (None, "")
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert _cluster_to_join(None) == (None, "")


def test_reachable_address_passes_and_closed_port_is_named(ray_tmp):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        _check_reachable(f"127.0.0.1:{srv.getsockname()[1]}", "RAY_ADDRESS", timeout_s=2)
    port = _closed_port()
    t0 = time.monotonic()
    with pytest.raises(RayClusterUnreachable, match=f"127.0.0.1:{port} .*from RAY_ADDRESS.*unset RAY_ADDRESS"):
        _check_reachable(f"127.0.0.1:{port}", "RAY_ADDRESS", timeout_s=1)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("how", ["recorded", "env"])
def test_a_command_fails_fast_on_a_dead_cluster(ray_tmp, tmp_path, how):
    port = _closed_port()
    env = {**os.environ}
    if how == "recorded":  # what a killed `ray start` leaves behind
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    else:
        env["RAY_ADDRESS"] = f"127.0.0.1:{port}"
    t0 = time.monotonic()
    r = subprocess.run([HICATALOG, "mock", "--out", str(tmp_path / "m"), "--n", "20",
                        "--engine", "ray", "--image-size", "32"],
                       env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - t0
    assert r.returncode == 1, r.stderr[-2000:]
    assert elapsed < 30, elapsed
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"hicatalog mock: error: no Ray cluster answers at 127.0.0.1:{port}")
    assert "Traceback" not in r.stderr
    if how == "recorded":
        assert "ray_current_cluster" in last and "delete" in last
    else:
        assert "RAY_ADDRESS" in last
