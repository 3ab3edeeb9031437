"""Where the jobs run: connecting to Ray, and how many CPU threads a torch worker may use.

``init_ray()`` attaches to the cluster named by ``RAY_ADDRESS`` (set by ``ray job submit``), or
to a running local cluster (``ray start --head``), and otherwise starts a local Ray instance
with all of this machine's CPUs (and its GPU, if any). Stages never pass resources here: Ray
Data and Ray Train ask for what they need per task/worker.

Threads: a torch process uses every core by default, so a worker that shares its node with
other busy processes oversubscribes the CPUs (measured: 20x slower). The rule, in one place:
a Ray task or actor that runs torch calls :func:`set_torch_threads` first, which sets as many
threads as the CPUs Ray assigned to it. Stages that want more threads per worker ask Ray for
more CPUs (:func:`cpus_per_worker` shares a cluster's CPUs among N workers).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from hicatalog.errors import ConfigError, RayClusterUnreachable

log = logging.getLogger(__name__)

__all__ = [
    "init_ray", "RayClusterUnreachable", "CONNECT_TIMEOUT_S", "assigned_cpus", "torch_threads",
    "set_torch_threads", "cpus_per_worker", "PRECISIONS", "use_bf16", "TaskRunner",
    "INLINE_ROWS",
]

#: ``--precision`` values of training and the catalog build.
PRECISIONS = ("auto", "bf16", "fp32")


#: Seconds a command waits for the cluster it is told to join before giving up.
CONNECT_TIMEOUT_S = 10.0


def _cluster_to_join(address: str | None) -> tuple[str | None, str]:
    """The address ``ray.init(address)`` would join and where it came from, or ``(None, "")``
    when it starts a new local instance. Ray's order: the ``address`` given, ``RAY_ADDRESS``,
    then the address a ``ray start`` on this machine recorded in ``ray_current_cluster``
    (Ray keeps that file after the cluster is gone, e.g. when ``ray start`` was killed)."""
    if address not in (None, "auto"):
        return (None, "") if address == "local" else (address, "the address given")
    env = os.environ.get("RAY_ADDRESS", "")
    if env:
        return (None, "") if env == "local" else (env, "RAY_ADDRESS")
    try:  # Ray's own location of the file (RAY_TMPDIR, TMPDIR, /tmp)
        from ray._common.utils import get_ray_address_file

        path = get_ray_address_file(None)
    except ImportError:  # pragma: no cover - another Ray layout
        path = os.path.join(os.environ.get("RAY_TMPDIR") or "/tmp", "ray", "ray_current_cluster")
    try:
        with open(path) as fh:
            recorded = fh.read().strip()
    except OSError:
        return None, ""
    return (recorded, path) if recorded else (None, "")


def _check_reachable(address: str, source: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`RayClusterUnreachable` unless something accepts TCP connections at
    ``address`` (``host:port``, ``ray://host:port``) within ``timeout_s``."""
    import socket
    import time

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # not host:port (e.g. "auto" resolved by Ray itself): let Ray decide
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2.0):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                reason = exc.strerror or type(exc).__name__
                break
            time.sleep(0.5)
    if source == "RAY_ADDRESS":
        way_out = "unset RAY_ADDRESS (or set RAY_ADDRESS=local) to run on a new local Ray, or point it at a running cluster"
    elif source == "the address given":
        way_out = "start that cluster or give another address"
    else:
        way_out = (f"it was recorded by a `ray start` that is no longer running: start the "
                   f"cluster again, or delete {source} (or set RAY_ADDRESS=local) to run on a new local Ray")
    raise RayClusterUnreachable(
        f"no Ray cluster answers at {address} (from {source}; {reason} for {timeout_s:.0f} s): {way_out}"
    )


def init_ray(address: str | None = None) -> None:
    """Initialise Ray once per process (no-op when already initialised).

    Parameters
    ----------
    address: explicit cluster address (``"auto"``, ``"ray://host:10001"``, ``"local"``);
        ``None`` follows Ray's own resolution (``RAY_ADDRESS``, then the cluster a ``ray
        start`` on this machine recorded, then a new local instance).

    Raises
    ------
    RayClusterUnreachable: the cluster to join does not accept connections within
        :data:`CONNECT_TIMEOUT_S` (Ray itself would wait without a limit).
    """
    import ray

    if ray.is_initialized():
        return
    target, source = _cluster_to_join(address)
    if target is not None:
        _check_reachable(target, source)
    ray.init(address=address, configure_logging=False, log_to_driver=True)
    res = ray.cluster_resources()
    log.info(
        "Ray ready: %d CPUs, %d GPUs", int(res.get("CPU", 0)), int(res.get("GPU", 0))
    )


def assigned_cpus() -> float | None:
    """CPUs Ray assigned to the calling task or actor (``0.0`` for an actor created without
    ``num_cpus``), or ``None`` outside a Ray worker (a driver, or Ray not running)."""
    ray = sys.modules.get("ray")  # code that never imported Ray is not in a Ray worker
    if ray is None or not ray.is_initialized():
        return None
    ctx = ray.get_runtime_context()
    if ctx.worker.mode != ray.WORKER_MODE:
        return None
    return float(ctx.get_assigned_resources().get("CPU", 0.0))


def torch_threads(cpus: float | None) -> int:
    """Threads for a torch worker holding ``cpus`` CPUs: ``floor(cpus)``, at least 1, so a
    worker never runs more threads than the CPUs it reserved. ``None`` (not in Ray): the CPUs
    this process may run on (``os.sched_getaffinity``, else ``os.cpu_count()``)."""
    if cpus is None:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)
    return max(1, math.floor(cpus + 1e-9))


def set_torch_threads() -> int:
    """Set torch's intra-op threads (and ``OMP_NUM_THREADS``, for subprocesses) to
    :func:`torch_threads` of :func:`assigned_cpus`; returns the number set.

    Call it at the start of every Ray task or actor that runs torch (the Ray Train worker
    loop, the catalog predictor).
    """
    import torch

    n = torch_threads(assigned_cpus())
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    return n


def use_bf16(precision: str, device: object) -> bool:
    """The one precision rule of training and inference: ``True`` when torch should run in
    bf16 autocast with channels_last tensors, ``False`` for plain fp32.

    ``precision``: ``"bf16"``, ``"fp32"`` or ``"auto"`` (bf16 on a CUDA device, fp32
    elsewhere: CPUs gain little from bf16 and some lack fast bf16 kernels); ``device``: a
    ``torch.device`` or a string such as ``"cuda"``, ``"cuda:0"``, ``"cpu"``.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}",
                          params=("precision",))
    if precision == "auto":
        return str(device).split(":")[0] == "cuda"
    return precision == "bf16"


def cpus_per_worker(n_workers: int, keep_free: float = 0.0, node_cpus: list[float] | None = None) -> float:
    """CPUs each of ``n_workers`` identical workers should reserve to share the cluster.

    The largest amount ``c`` such that every worker fits on one node after ``keep_free`` CPUs
    are left on each node (for Ray Data tasks): ``sum(floor((C_i - keep_free) / c)) >=
    n_workers`` over the nodes' CPU counts ``C_i``. Whole CPUs when ``c >= 1`` (then
    :func:`torch_threads` equals it); a fraction when there are more workers than CPUs (each
    worker runs 1 thread). ``node_cpus``: the alive nodes' CPU counts (default: from
    ``ray.nodes()``; Ray must be initialised).
    """
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    if node_cpus is None:
        import ray

        node_cpus = [float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]
    free = [c - keep_free for c in node_cpus if c - keep_free > 0]
    if not free:  # nothing left after keep_free: a token share, one thread each
        return 0.1
    # the answer is one of f / k (a node's free CPUs split k ways); max(free) / n_workers
    # always fits, so the loop returns
    for c in sorted({f / k for f in free for k in range(1, n_workers + 1)}, reverse=True):
        if sum(math.floor(f / c + 1e-9) for f in free) >= n_workers:
            return float(math.floor(c + 1e-9)) if c >= 1 else c
    raise AssertionError("unreachable")


#: Most rows a step runs in the calling process when no Ray instance is running
#: (:meth:`TaskRunner.for_rows`): below this, starting Ray costs more than it saves.
INLINE_ROWS = 50_000


@dataclass(frozen=True)
class TaskRunner:
    """Runs the independent tasks of a step (the same functions either way) as Ray tasks of
    one CPU each, or, when ``inline``, one after another in this process."""

    inline: bool

    @classmethod
    def for_rows(cls, rows: int) -> TaskRunner:
        """Inline for at most :data:`INLINE_ROWS` rows when Ray is not running in this
        process; otherwise on Ray (started or joined by :func:`init_ray`)."""
        import ray

        if rows <= INLINE_ROWS and not ray.is_initialized():
            return cls(inline=True)
        init_ray()
        return cls(inline=False)

    def share(self, obj: Any) -> Any:
        """``obj`` as an argument many tasks get (in Ray's object store once)."""
        if self.inline:
            return obj
        import ray

        return ray.put(obj)

    def map(self, fn: Callable[..., Any], calls: Iterable[tuple]) -> list[Any]:
        """``[fn(*args) for args in calls]``, the calls run as parallel tasks."""
        if self.inline:
            return [fn(*args) for args in calls]
        import ray

        task = ray.remote(num_cpus=1)(fn)
        return ray.get([task.remote(*args) for args in calls])

    def as_completed(self, fn: Callable[..., Any], calls: Iterable[tuple]) -> Iterator[Any]:
        """The results of ``fn(*args)`` for ``calls`` in the order they finish (the caller
        holds one result at a time)."""
        if self.inline:
            yield from (fn(*args) for args in calls)
            return
        import ray

        task = ray.remote(num_cpus=1)(fn)
        pending = [task.remote(*args) for args in calls]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
