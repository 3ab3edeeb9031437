"""One request rate limit per host, shared by every fetch task of a job.

A small Ray actor (:func:`start_rate_limiter`) hands out send slots ``1/rate`` seconds apart,
a virtual-clock token bucket with burst 1; every task asks it before each request (retries
included) with :func:`wait_for_slot`, so the limit holds for the whole job however many tasks
run. The actor needs no CPU (``num_cpus=0``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

__all__ = ["SLOT_TOLERANCE_S", "start_rate_limiter", "wait_for_slot"]

#: A send slot missed by more than this many seconds is booked again (see
#: :func:`wait_for_slot`).
SLOT_TOLERANCE_S = 0.05


def _rate_limiter_class():
    import ray

    @ray.remote(num_cpus=0)
    class HostRateLimiter:
        """Send slots spaced ``1/rate`` seconds apart for one host (a token bucket, burst 1).

        ``reserve()`` returns the wall-clock time (``time.time()``, s) of the caller's slot;
        the caller sleeps until then, so a slow reply from this actor does not shift the slot.
        Slots are granted in order, each ``1/rate`` s after the one before or now, whichever is
        later: a slot is never in the past, so idle time is not saved up for a later burst,
        and the long-run rate never exceeds ``rate``.
        """

        def __init__(self, rate: float):
            self.interval = 1.0 / rate
            self.next_slot = time.time()
            self.granted = 0

        def reserve(self) -> float:
            slot = max(time.time(), self.next_slot)
            self.next_slot = slot + self.interval
            self.granted += 1
            return slot

        def stats(self) -> dict[str, float]:
            """``granted``: slots handed out so far; ``interval_s``: ``1/rate`` (s)."""
            return {"granted": self.granted, "interval_s": self.interval}

    return HostRateLimiter


def start_rate_limiter(rate_rps: float) -> Any:
    """Start a rate-limiter actor for ``rate_rps`` requests per second (> 0); return its handle.

    The actor lives until the caller ends it with ``ray.kill(handle)``. Needs Ray initialised.
    """
    return _rate_limiter_class().remote(rate_rps)


async def wait_for_slot(limiter: Any, interval_s: float, max_rebook: int = 8) -> None:
    """Sleep until a send slot of ``limiter`` (a :func:`start_rate_limiter` handle).

    ``interval_s`` is the limiter's ``1/rate`` (s). A coroutine that wakes up late (its
    process was descheduled) would send together with the ones whose slots come after it; so
    a slot missed by more than ``tolerance = max(SLOT_TOLERANCE_S, interval_s / 2)`` seconds
    is given up and a new one booked, at most ``max_rebook`` times; after that the caller
    sends anyway. A window of T seconds then sees about ``rate * (T + tolerance)`` requests at
    most: +5% over one second at 10 requests per second or more.
    """
    tolerance = max(SLOT_TOLERANCE_S, 0.5 * interval_s)
    for _ in range(max_rebook + 1):
        slot = await limiter.reserve.remote()
        delay = slot - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.time() - slot <= tolerance:
            return
