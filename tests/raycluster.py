"""A real multi-node Ray cluster on this machine, for the tests and the node-loss benchmark.

Each node is started the way ``cluster.yaml`` starts one on its own machine: ``ray start
--head`` on the head, ``ray start --address=HEAD`` on every other node, both with ``--block``
so that the ``ray start`` process is the root of the node's processes. Each node runs in its
own session (``start_new_session``: its own process group, which :meth:`LocalRayCluster.kill`
SIGKILLs at once, as a machine that dies takes all its processes with it), with its own
``--temp-dir`` (sockets, object spilling, logs, the ``ray_current_cluster`` it records) and its
own model cache (``HICATALOG_MODEL_CACHE``): nodes share nothing but the cluster's GCS, the
object store's network transfers and the bucket. Every node runs this checkout's virtual
environment (its ``bin`` first on ``PATH``, so ``python`` in a job's entrypoint is the venv's,
as ``cluster.yaml``'s ``setup_commands`` arrange) and inherits the caller's environment
(``AWS_ENDPOINT_URL`` and the dummy credentials of the tests' S3 server).

Why not ``ray.cluster_utils.Cluster``: it starts every node's processes as children of the
calling process, in its process group, and it is Ray's internal test helper; separate ``ray
start`` sessions are what users run, and killing one session is what losing a machine does.

Ports: every port Ray would give a fixed default (the GCS, the dashboard, the agents' 52365
and others, the metrics, the client server) is a free one chosen here, since another Ray on
this machine may hold the defaults; Ray picks the others at random. The cluster uses token authentication (a
private token in ``RAY_AUTH_TOKEN``, never ``~/.ray/auth_token``). The GCS marks a node dead
after ``health_check_failure_threshold`` x ``health_check_period_ms``: 3 x 1 s here, 5 x 3 s by
default.

Nothing is done in the calling process's Ray: jobs are submitted with ``ray job submit`` (a
subprocess with the cluster's environment), and the job server and Ray's state API are asked
over HTTP, at the endpoints ``ray job`` and ``ray list`` use, so a local Ray of the calling
process (the tests' ``ray_local``) is untouched.
``ray stop`` is never run (it would stop every Ray on this machine). ``shutdown`` kills the
process groups it started and puts back the ``ray_current_cluster`` file of the calling
process's environment if a node wrote it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
#: Label every node carries: its name here (``head``, ``w1``, ...), to map Ray's node ids.
NODE_LABEL = "hicatalog-test-node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClusterError(RuntimeError):
    """The cluster did not do what it was asked in time (what, then the node's log tail)."""


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    temp_dir: str
    log: Path
    node_id: str | None = None
    killed: bool = False

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class LocalRayCluster:
    """Start with :meth:`start` (head), :meth:`add_node`; stop with :meth:`shutdown`."""

    env_overrides: dict[str, str] = field(default_factory=dict)
    root: str = ""
    nodes: list[Node] = field(default_factory=list)
    gcs_address: str = ""
    dashboard: str = ""
    env: dict[str, str] = field(default_factory=dict)
    _address_file: str = ""
    _address_before: str | None = None

    @property
    def head(self) -> Node:
        return next(n for n in self.nodes if n.name.startswith("head") and not n.killed)

    # ------------------------------------------------------------------ start and stop

    def start(self, num_cpus: int, object_store_mb: int = 200) -> Node:
        """Start the head node (its job server on ``self.dashboard``)."""
        # Short: Ray's Unix socket paths (temp dir + session + sockets/...) must stay < 108 bytes.
        base = os.environ.get("RAY_TMPDIR") or "/tmp"
        os.makedirs(base, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix="rc", dir=base)
        from ray._common.utils import get_ray_address_file

        self._address_file = get_ray_address_file(None)
        self._address_before = _read(self._address_file)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update({
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
            "RAY_TRAIN_V2_ENABLED": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env_overrides)
        self.env = env

        def head_flags() -> list[str]:  # new ports for each attempt
            port, dash = free_port(), free_port()
            self.gcs_address = f"127.0.0.1:{port}"
            self.dashboard = f"http://127.0.0.1:{dash}"
            return ["--head", f"--port={port}", "--include-dashboard=true",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                    f"--ray-client-server-port={free_port()}"]

        head = self._start_node("head", num_cpus, object_store_mb, head_flags)
        # The job server answers before its agent takes jobs (submit retries for that).
        deadline = time.time() + 120
        while True:
            try:
                self._http("GET", "/api/jobs/")
                return head
            except ClusterError as exc:
                if time.time() > deadline:
                    raise ClusterError(f"the head's job server did not answer in 120 s: {exc} | "
                                       f"{head.log_tail()}") from None
            time.sleep(1)

    def add_node(self, num_cpus: int, object_store_mb: int = 200) -> Node:
        """Start one more node (``w1``, ``w2``, ...) and wait until the GCS lists it alive."""
        name = f"w{sum(n.name.startswith('w') for n in self.nodes) + 1}"
        return self._start_node(name, num_cpus, object_store_mb,
                                lambda: [f"--address={self.gcs_address}"])

    def _start_node(self, name: str, num_cpus: int, object_store_mb: int, flags,
                    attempts: int = 3) -> Node:
        """Start a node, again (as ``NAME-2``, ...) when its ``ray start`` fails: on a busy
        machine Ray's own 30 s wait for the raylet to register can run out, and a cluster's
        autoscaler would retry too."""
        for attempt in range(1, attempts + 1):
            label = name if attempt == 1 else f"{name}-{attempt}"
            try:
                return self._launch(label, num_cpus, object_store_mb, flags())
            except ClusterError:
                self.kill(self.nodes[-1])
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _launch(self, name: str, num_cpus: int, object_store_mb: int,
                extra: list[str]) -> Node:
        temp_dir = os.path.join(self.root, name)
        os.makedirs(temp_dir)
        env = dict(self.env, RAY_TMPDIR=temp_dir,
                   HICATALOG_MODEL_CACHE=os.path.join(temp_dir, "models"))
        log = Path(self.root) / f"{name}.log"
        cmd = [
            RAY, "start", "--block", *extra, "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}", "--num-gpus=0",
            f"--object-store-memory={object_store_mb * 2**20}",
            f"--temp-dir={temp_dir}", f"--labels={json.dumps({NODE_LABEL: name})}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            "--disable-usage-stats",
        ]
        with open(log, "wb") as fh:
            proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        node = Node(name, proc, temp_dir, log)
        self.nodes.append(node)
        # `ray start --block` prints this once the node is registered with the GCS.
        deadline = time.time() + 120
        while "Ray runtime started" not in node.log_tail(100000):
            if proc.poll() is not None:
                raise ClusterError(f"ray start of node {name} exited {proc.returncode}: "
                                   f"{node.log_tail()}")
            if time.time() > deadline:
                raise ClusterError(f"node {name} did not start in 120 s: {node.log_tail()}")
            time.sleep(0.2)
        while node.node_id is None:
            try:
                listed = self.list_state("nodes")
            except ClusterError:  # the head's API server is still starting
                listed = []
            for n in listed:
                if n.get("labels", {}).get(NODE_LABEL) == name and n["state"] == "ALIVE":
                    node.node_id = n["node_id"]
            if node.node_id is None:
                if time.time() > deadline:
                    raise ClusterError(f"node {name} is not listed alive after 120 s: "
                                       f"{node.log_tail()}")
                time.sleep(0.5)
        return node

    def kill(self, node: Node) -> None:
        """SIGKILL the node's whole process group, and any process of the node's session that
        left the group, as when its machine is lost."""
        try:
            os.killpg(node.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.proc.wait(timeout=30)
        kill_session(node.proc.pid)
        node.killed = True

    def shutdown(self) -> list[int]:
        """Kill every node this object started (SIGKILL of each process group: a throwaway
        cluster gains nothing from Ray's graceful stop), remove the temp dirs, and restore the
        calling environment's ``ray_current_cluster``. Returns the processes of the nodes'
        sessions still running 10 s later (killed then; none when the groups held them all)."""
        leftovers: list[int] = []
        try:
            for n in self.nodes:
                if not n.killed:
                    self.kill(n)
            deadline = time.time() + 10
            while time.time() < deadline and any(_session_pids(n.proc.pid) for n in self.nodes):
                time.sleep(0.5)
            for n in self.nodes:
                leftovers += kill_session(n.proc.pid)
        finally:
            if self._address_file and _read(self._address_file) == self.gcs_address:
                if self._address_before is None:
                    os.remove(self._address_file)
                else:
                    Path(self._address_file).write_text(self._address_before)
            if self.root:
                shutil.rmtree(self.root, ignore_errors=True)
        return leftovers

    # ------------------------------------------------------------------ state

    def _http(self, method: str, path: str, params: dict | None = None) -> Any:
        """One request to the head's dashboard (the job server and Ray's state API, the
        endpoints the ``ray job`` and ``ray list`` commands call), with the cluster's token;
        the JSON answer. Polling through the commands would start a Python process per call,
        seconds of CPU each on the machine that runs the cluster."""
        import requests

        try:
            r = requests.request(method, self.dashboard + path, params=params, timeout=60,
                                 headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"})
        except requests.RequestException as exc:
            raise ClusterError(f"{method} {path}: {exc}") from None
        if r.status_code != 200:
            raise ClusterError(f"{method} {path}: HTTP {r.status_code} {r.text[:500]}")
        return r.json()

    def list_state(self, kind: str, *filters: str, limit: int = 10000) -> list[dict]:
        """Ray's state API (what ``ray list KIND --detail`` shows) on this cluster, as dicts;
        ``filters`` are ``KEY=VALUE`` (``"job_id=02000000"``)."""
        pairs = [f.split("=", 1) for f in filters]
        answer = self._http("GET", f"/api/v0/{kind}", {
            "limit": limit, "timeout": 60, "detail": "1",
            "filter_keys": [k for k, _ in pairs], "filter_predicates": ["="] * len(pairs),
            "filter_values": [v for _, v in pairs]})
        if answer.get("result") is False:
            raise ClusterError(f"state API {kind}: {answer.get('msg')}")
        return answer["data"]["result"]["result"]

    def node_name(self, node_id: str) -> str | None:
        return next((n.name for n in self.nodes if n.node_id == node_id), None)

    # ------------------------------------------------------------------ jobs

    def submit(self, *entrypoint: str) -> str:
        """``ray job submit --no-wait --working-dir REPO -- ENTRYPOINT``; returns the job id
        (the submission id, ``raysubmit_...``)."""
        for _ in range(30):
            r = subprocess.run(
                [RAY, "job", "submit", "--address", self.dashboard, "--no-wait",
                 "--working-dir", str(REPO), "--", *entrypoint],
                env=self.env, capture_output=True, text=True, timeout=300,
            )
            if r.returncode == 0 or "No available agent" not in r.stderr:
                break
            time.sleep(2)
        if r.returncode != 0:
            raise ClusterError(f"ray job submit failed: {r.stderr.strip()[-1500:]}")
        found = re.search(r"raysubmit_\w+", r.stdout + r.stderr)
        if not found:
            raise ClusterError(f"no job id in the answer of ray job submit: {r.stdout[-800:]}")
        return found.group(0)

    def job_status(self, job_id: str) -> str:
        """``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``STOPPED`` (or ``UNKNOWN``)."""
        try:
            return self._http("GET", f"/api/jobs/{job_id}")["status"]
        except ClusterError:
            return "UNKNOWN"

    def job_logs(self, job_id: str) -> str:
        return self._http("GET", f"/api/jobs/{job_id}/logs")["logs"]

    def wait_job(self, job_id: str, timeout: float) -> tuple[str, str]:
        """Wait for the job to end: ``(status, logs)``; a job still running after
        ``timeout`` s is stopped and reported as ``TIMEOUT``."""
        deadline = time.time() + timeout
        while True:
            status = self.job_status(job_id)
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status, self.job_logs(job_id)
            if time.time() > deadline:
                self._http("POST", f"/api/jobs/{job_id}/stop")
                return "TIMEOUT", self.job_logs(job_id)
            time.sleep(1)

    def job_ray_id(self, submission_id: str) -> str:
        """Ray's job id (hex, the ``job_id`` of its tasks and actors) of a submitted job."""
        job_id = self._http("GET", f"/api/jobs/{submission_id}").get("job_id")
        if not job_id:
            raise ClusterError(f"job {submission_id} has no Ray job id (its driver never started)")
        return job_id


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _session_pids(sid: int) -> list[int]:
    """The live processes of session ``sid`` (a node's ``ray start``, started in a new
    session: every process of that node, whatever process group or title it took since)."""
    r = subprocess.run(["ps", "-s", str(sid), "-o", "pid=,stat="], capture_output=True,
                       text=True, timeout=60)
    return [int(pid) for pid, stat in (line.split() for line in r.stdout.splitlines())
            if not stat.startswith("Z")]  # a zombie is dead already


def kill_session(sid: int) -> list[int]:
    """SIGKILL the processes of :func:`_session_pids`; returns those it killed."""
    killed = []
    for pid in _session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return killed


# ---------------------------------------------------------------------- node loss, shared by
# tests/test_cluster.py and benchmarks/bench_node_loss.py

#: Ray Data's name of the catalog build's inference actors (hicatalog.catalog.inference).
PREDICTOR_ACTOR = "MapWorker(MapBatches(CatalogPredictor))"


def submit_build(cluster: LocalRayCluster, cutouts: str, regression: str, pr: str, out: str,
                 *flags: str) -> str:
    """``ray job submit ... python jobs/build_catalog.py`` with two inference actors of one
    CPU each (one per node of a cluster of 2-CPU nodes: Ray Data spreads them)."""
    return cluster.submit(
        "python", "jobs/build_catalog.py", "--cutouts", cutouts, "--regression", regression,
        "--pr", pr, "--out", out, "--actors", "2", "--threads", "1", *flags)


def wait_for_actor_on(cluster: LocalRayCluster, node: Node, submission_id: str,
                      class_name: str, timeout: float, ready=lambda: True) -> str:
    """Wait until the job has an alive ``class_name`` actor on ``node`` and ``ready()`` holds;
    returns the job's Ray job id. Raises :class:`ClusterError` after ``timeout`` s or when
    the job ended first."""
    deadline = time.time() + timeout
    rid = None
    while True:
        if rid is None:
            try:
                rid = cluster.job_ray_id(submission_id)
            except ClusterError:
                pass
        if rid is not None:
            actors = cluster.list_state("actors", f"job_id={rid}")
            if any(a["class_name"] == class_name and a["state"] == "ALIVE"
                   and a["node_id"] == node.node_id for a in actors) and ready():
                return rid
        status = cluster.job_status(submission_id)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            raise ClusterError(f"job {submission_id} ended ({status}) before a {class_name} "
                               f"actor was alive on node {node.name}")
        if time.time() > deadline:
            raise ClusterError(f"no alive {class_name} actor of job {submission_id} on node "
                               f"{node.name} within {timeout:.0f} s")
        time.sleep(0.5)


def catalog_rows(url: str):
    """Every row of the current version of the catalog at ``url`` (through
    :func:`hicatalog.catalog.reader.open_catalog`), read from the bucket with polars:
    ``object_id``, ``status``, ``m_pred``, ``m_pred_std``, ``p_cnn``."""
    import polars as pl

    from hicatalog.catalog.reader import open_catalog

    return (pl.scan_parquet(open_catalog(url).files)
            .select("object_id", "status", "m_pred", "m_pred_std", "p_cnn").collect())


def shards_done(catalog: str, build: int = 1) -> int:
    """How many input shards build ``build`` of ``catalog`` has staged: its ``_done`` markers."""
    from hicatalog import storage
    from hicatalog.catalog.manifest import DONE_DIR, STAGING_DIR

    return len(storage.list_files(storage.join(catalog, STAGING_DIR, f"build={build}", DONE_DIR),
                                  suffix=".json"))


def compare_catalogs(reference, got, input_ids: list[str]) -> dict:
    """How the catalog ``got`` differs from ``reference`` (both :func:`catalog_rows`) for an
    input of ``input_ids`` (distinct): rows lost (input ids absent from ``got``), rows doubled
    (ids present more than once), ids not in the input, statuses that differ, and the largest
    absolute difference of each prediction over the ids in both."""
    import polars as pl

    counts = got.group_by("object_id").len()
    n_by_id = dict(zip(counts["object_id"].to_list(), counts["len"].to_list(), strict=True))
    wanted = set(input_ids)
    out = {
        "rows": got.height,
        "rows_lost": sum(1 for i in wanted if i not in n_by_id),
        "rows_doubled": sum(n - 1 for n in n_by_id.values() if n > 1),
        "rows_not_in_input": sum(n for i, n in n_by_id.items() if i not in wanted),
    }
    joined = reference.join(got.unique("object_id", keep="first"), on="object_id",
                            suffix="_got")
    out["status_differs"] = joined.filter(pl.col("status") != pl.col("status_got")).height
    for col in ("m_pred", "m_pred_std", "p_cnn"):
        diff = (joined[col] - joined[f"{col}_got"]).abs()
        both_null = joined[col].is_null() & joined[f"{col}_got"].is_null()
        one_null = joined[col].is_null() ^ joined[f"{col}_got"].is_null()
        out[f"max_abs_diff_{col}"] = float(diff.filter(~both_null).max() or 0.0)
        out[f"null_differs_{col}"] = int(one_null.sum())
    return out
