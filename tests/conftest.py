"""Shared fixtures, and the rule that marks tests slow.

Fixtures start only what a test names:

- ``s3_server`` (session): a real S3-compatible server (moto on 127.0.0.1), its client
  environment set in this process (so every subprocess and every Ray worker started later
  inherits it); ``s3_bucket``: a new empty bucket on it.
- ``ray_local`` (session): a real local Ray instance (2 CPUs, no dashboard). Its workers reach
  the S3 server when the session needs both: when the collected tests include one that uses
  Ray and S3, ``ray_local`` starts the S3 server first; a Ray already running without it is
  restarted once by ``s3_server`` (a test that asks for a bucket only at run time,
  ``request.getfixturevalue("s3_bucket")``). A session of Ray tests alone starts no S3
  server, a session of S3 tests alone no Ray.
- ``empty_cwd``: an empty working directory, checked to be still empty after the test.

The slow rule (:func:`pytest_collection_modifyitems`): every test that uses a Ray fixture
(:data:`RAY_FIXTURES`) is marked ``slow``: Ray's start, its worker processes and every Ray
Train run cost seconds to minutes. Tests that start Ray themselves in a subprocess (the
installed ``hicatalog demo``, ``benchmarks/gpu_check.py``, a killed ``hicatalog fetch``) carry
``@pytest.mark.slow`` by hand. A test that is not marked slow and starts Ray in this process
fails (:func:`_fast_tests_start_no_ray`), so ``make test-fast`` (``-m "not slow"``) runs no
Ray and no training. See docs/development.md, "Tests".
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import s3server  # tests/s3server.py (tests/ is on sys.path under pytest)

os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")

#: Fixtures that start Ray: a test that uses one is slow.
RAY_FIXTURES = frozenset({"ray_local", "ray_cluster"})
#: Fixtures that start the S3 server.
S3_FIXTURES = frozenset({"s3_server", "s3_bucket"})
#: The stash key: does a collected test use both Ray and S3?
_S3_IN_RAY = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark every test that uses a Ray fixture ``slow``; note whether Ray's workers will need
    the S3 server (a test uses both)."""
    both = False
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & RAY_FIXTURES:
            item.add_marker(pytest.mark.slow)
            both = both or bool(names & S3_FIXTURES)
    config.stash[_S3_IN_RAY] = both


@pytest.fixture(autouse=True)
def _fast_tests_start_no_ray(request):
    """A test not marked slow must not start Ray in this process (Ray Data and Ray Train start
    one implicitly): it fails, named, so that it gets a Ray fixture and with it the marker."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    before = _ray_running()
    yield
    if not before and _ray_running():
        sys.modules["ray"].shutdown()
        pytest.fail("this test started Ray but is not marked slow: give it the ray_local "
                    "fixture (tests/conftest.py marks every Ray test slow)", pytrace=False)


@pytest.fixture(autouse=True)
def _no_placement_group_outlives_its_test(request):
    """Ray Train reserves its workers' CPUs in a placement group; one that a failed test
    leaves behind holds the session's CPUs, and every later Ray step waits for them forever
    (a hang instead of one failure). After each test on the session's Ray, placement groups
    still there after Ray's own cleanup (15 s) are removed, with a warning naming the test."""
    yield
    if "ray_local" not in request.fixturenames or not _ray_running():
        return
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    deadline = time.time() + 15
    while True:
        live = [pg for pg, info in ray.util.placement_group_table().items()
                if info["state"] != "REMOVED"]
        if not live or time.time() > deadline:
            break
        time.sleep(0.25)
    for pg in live:
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg))))
    if live:
        warnings.warn(f"{request.node.nodeid} left {len(live)} Ray placement group(s); removed",
                      stacklevel=1)


def _ray_running() -> bool:
    ray = sys.modules.get("ray")  # never import Ray for a test that does not
    return ray is not None and ray.is_initialized()


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

    def writes(self, since: int = 0) -> list[tuple[str, str]]:
        """The requests of :meth:`requests` that change a bucket (``PUT``, ``POST``,
        ``DELETE``)."""
        return [(m, p) for m, p in self.requests(since) if m in ("PUT", "POST", "DELETE")]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (tests/s3server.py: moto on a free port of 127.0.0.1),
    stopped after the session.

    Its client environment (dummy credentials, ``AWS_ENDPOINT_URL``) is set in this process's
    environment, so every subprocess a test starts inherits it, and every Ray worker: a Ray
    started in this process before (without it) is restarted. No filesystem API is mocked: the
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
        if _ray_running():
            _start_ray()  # its workers were started without the S3 environment
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


def _start_ray():
    """Ray in this process, its workers with this process's S3 environment: started, or
    restarted when a Ray already running has workers with another one (or none)."""
    import ray

    if ray.is_initialized() and _workers_endpoint(ray) != os.environ.get("AWS_ENDPOINT_URL"):
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
    return ray


@pytest.fixture(scope="session")
def ray_local(request):
    """A real local Ray instance (2 CPUs, no dashboard), shut down after the session.

    When a collected test uses both Ray and S3, the S3 server is started first, so that Ray's
    workers inherit its environment and Ray starts once."""
    if request.config.stash.get(_S3_IN_RAY, False):
        request.getfixturevalue("s3_server")
    ray = _start_ray()
    yield ray
    ray.shutdown()
