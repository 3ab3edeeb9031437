"""Where the jobs run: one helper that connects to Ray the same way for every stage.

``init_ray()`` attaches to the cluster named by ``RAY_ADDRESS`` (set by ``ray job submit``), or
to a running local cluster (``ray start --head``), and otherwise starts a local Ray instance
with all of this machine's CPUs (and its GPU, if any). Stages never pass resources here: Ray
Data and Ray Train ask for what they need per task/worker.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

__all__ = ["init_ray"]


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
