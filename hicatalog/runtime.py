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

log = logging.getLogger(__name__)

__all__ = [
    "init_ray", "assigned_cpus", "torch_threads", "set_torch_threads", "cpus_per_worker",
    "PRECISIONS", "use_bf16",
]

#: ``--precision`` values of training and the catalog build.
PRECISIONS = ("auto", "bf16", "fp32")


def init_ray(address: str | None = None) -> None:
    """Initialise Ray once per process (no-op when already initialised).

    Parameters
    ----------
    address: explicit cluster address (``"auto"``, ``"ray://host:10001"``, ``"local"``);
        ``None`` follows Ray's own resolution (``RAY_ADDRESS``, then a running local cluster,
        then a new local instance).
    """
    import ray

    if ray.is_initialized():
        return
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
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
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
