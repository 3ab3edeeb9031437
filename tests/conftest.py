"""Shared fixtures: one real local Ray instance per test session, a real S3-compatible server
(moto) on 127.0.0.1, temp dirs."""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import s3server  # tests/s3server.py (tests/ is on sys.path under pytest)

os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


@dataclass
class S3Server:
    """moto's standalone S3 server: its endpoint, the environment the clients read, its
    request log (one werkzeug line per request: ``"PUT /bucket/key HTTP/1.1" 200``)."""

    endpoint: str
    env: dict[str, str]
    log: Path

    def log_offset(self) -> int:
        return self.log.stat().st_size

    def requests(self, since: int = 0) -> list[tuple[str, str]]:
        """``(method, path)`` of every request logged after byte ``since`` of the log."""
        with open(self.log, "rb") as fh:
            fh.seek(since)
            text = fh.read().decode(errors="replace")
        return re.findall(r'"([A-Z]+) (\S+) HTTP/[\d.]+"', text)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (tests/s3server.py: moto on a free port of 127.0.0.1),
    stopped after the session.

    Its client environment (dummy credentials, ``AWS_ENDPOINT_URL``) is set in this process's
    environment before Ray starts (``ray_local`` depends on this fixture), so every Ray worker
    inherits it, and every subprocess a test starts too. No filesystem API is mocked: the
    clients talk HTTP. ``HICATALOG_MODEL_CACHE`` (the cache of models downloaded from object
    storage) points into the session's temporary directory, for the same reason.
    """
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    try:
        proc, endpoint = s3server.start(log)
    except s3server.S3ServerError as exc:
        pytest.fail(str(exc))
    env = {
        **s3server.client_env(endpoint),
        # models read from the bucket are cached here, by the driver and every Ray worker
        "HICATALOG_MODEL_CACHE": str(tmp_path_factory.mktemp("model_cache")),
    }
    saved = {k: os.environ.get(k) for k in (*env, *s3server.CLEARED_ENV)}
    for k in s3server.CLEARED_ENV:
        os.environ.pop(k, None)
    os.environ.update(env)
    try:
        s3server.wait_ready()
        yield S3Server(endpoint, env, log)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        s3server.stop(proc)


@pytest.fixture
def s3_bucket(s3_server):
    """A new, empty bucket on the moto server for one test: its ``s3://NAME`` URL."""
    return s3server.create_bucket(f"hicatalog-test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def empty_cwd(tmp_path_factory, monkeypatch):
    """An empty working directory (not ``tmp_path``, which the test may use), checked to be
    still empty after the test: a run whose paths are all URLs writes nothing there
    (``Path("s3://b/x")`` would write ``s3:/b/x``)."""
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    yield cwd
    assert sorted(os.listdir(cwd)) == [], "a run on the bucket wrote to the local disk"


def _workers_endpoint(ray) -> str | None:
    return ray.get(ray.remote(num_cpus=0)(lambda: os.environ.get("AWS_ENDPOINT_URL")).remote(),
                   timeout=120)


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """A real local Ray instance (2 CPUs, no dashboard), shut down after the session.

    Started after ``s3_server`` set the S3 environment, so its workers reach the test bucket;
    a Ray that an earlier test started without it is restarted."""
    import ray

    if ray.is_initialized() and _workers_endpoint(ray) != s3_server.endpoint:
        ray.shutdown()
    if not ray.is_initialized():
        # address="local": never attach to a cluster that another test (or the user) started.
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
        )
    yield ray
    ray.shutdown()
