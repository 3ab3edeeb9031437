"""The async HTTP client of ``hicatalog fetch``: many requests in flight, retries, image checks.

:func:`fetch_images` requests a list of cutout URLs with aiohttp, at most
``ClientSettings.in_flight`` at a time, each send waiting for a slot of the host's rate
limiter (:mod:`hicatalog.cutouts.ratelimit`) when there is one. Every answer ends as one
:class:`FetchResult` with a status:

- ``ok``: HTTP 200 and the body is an RGB JPEG of the expected size (:func:`check_image`);
- ``http_<code>``: any other HTTP status; 5xx and 429 are retried, other codes are final;
- ``timeout`` (no complete answer within ``timeout_s``), ``connection_error``,
  ``truncated_response`` (body shorter than announced): retried;
- the image statuses of :mod:`hicatalog.cutouts.decode` (``empty_image``, ``not_jpeg``,
  ``corrupt_image``, ``truncated_image``, ``wrong_size``, ``grayscale``, ``bad_mode``);
  ``truncated_image`` and ``empty_image`` are retried (a cut connection can produce them),
  the others are final;
- ``fetch_error``: anything unexpected (the exception's text in ``error``), final.

Retries follow :class:`RetryPolicy`; each retry waits for a rate-limit slot again.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from hicatalog.cutouts.decode import ImageDecodeError, decode_jpeg
from hicatalog.cutouts.ratelimit import wait_for_slot

__all__ = [
    "RetryPolicy",
    "ClientSettings",
    "FetchResult",
    "check_image",
    "retry_after_s",
    "fetch_images",
]

#: Image statuses worth another request: a connection cut mid-body can cause them.
TRANSIENT_IMAGE_STATUSES = ("truncated_image", "empty_image")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and jitter.

    ``retries``: further attempts after the first; ``backoff_s``: base delay (s);
    ``backoff_max_s``: cap (s). Attempt ``k`` (0-based) that failed waits a delay drawn
    uniformly from ``[d/2, d]`` with ``d = min(backoff_max_s, backoff_s * 2**k)``, or the
    server's ``Retry-After`` (capped at ``backoff_max_s``) if that is longer.
    """

    retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None, rng: Any = random) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based); ``retry_after`` in s;
        ``rng``: anything with ``uniform(a, b)`` (the ``random`` module by default)."""
        d = min(self.backoff_max_s, self.backoff_s * (2.0 ** attempt))
        wait = rng.uniform(0.5 * d, d)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.backoff_max_s))
        return wait


@dataclass(frozen=True)
class ClientSettings:
    """How one fetch task talks to the cutout service.

    ``image_size_px``: side of the square JPEG every answer must be (px); ``in_flight``:
    requests open at a time in this task; ``timeout_s``: limit for one request, connection to
    last byte (s); ``policy``: retries; ``user_agent``: the ``User-Agent`` header;
    ``rate_interval_s``: the rate limiter's ``1/max_rps`` (s; 0 when there is no limiter).
    """

    image_size_px: int
    in_flight: int
    timeout_s: float
    policy: RetryPolicy
    user_agent: str
    rate_interval_s: float = 0.0


@dataclass
class FetchResult:
    """The outcome of one URL after all its attempts.

    ``status``: see the module docstring; ``error``: the detail (``None`` when ``ok``);
    ``http_status``: the HTTP code of the last attempt (``None`` if it got no answer);
    ``attempts``: requests sent (0: never requested); ``data``: the JPEG bytes as served, only
    when ``ok``; ``elapsed_s``: seconds from the start of :func:`fetch_images` to this URL's
    outcome, waits for a free in-flight place, rate-limit slots and retries included.
    """

    status: str
    error: str | None = None
    http_status: int | None = None
    attempts: int = 0
    data: bytes | None = None
    elapsed_s: float = 0.0


def check_image(data: bytes, size_px: int) -> tuple[str, str | None]:
    """``("ok", None)`` if ``data`` is an RGB JPEG of ``size_px`` x ``size_px``, else
    ``(image status, detail)``.

    Decodes at 1/8 scale with :func:`hicatalog.cutouts.decode.decode_jpeg`, which still reads
    the whole entropy-coded stream and so catches a cut body.
    """
    try:
        decode_jpeg(data, expected_size=size_px, out_size=max(1, size_px // 8))
    except ImageDecodeError as exc:
        return exc.status, str(exc)
    return "ok", None


def retry_after_s(headers: Any) -> float | None:
    """The ``Retry-After`` header in seconds (>= 0), or ``None`` if absent or an HTTP date."""
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def _fetch_one(session, url: str, st: ClientSettings, limiter, sem) -> FetchResult:
    import aiohttp

    t0 = time.monotonic()
    res = FetchResult("fetch_error", "not attempted")
    for attempt in range(st.policy.retries + 1):
        retry_after = None
        async with sem:
            if limiter is not None:
                await wait_for_slot(limiter, st.rate_interval_s)
            res.attempts, res.http_status = attempt + 1, None
            try:
                async with session.get(url) as resp:
                    res.http_status = resp.status
                    if resp.status != 200:
                        await resp.read()
                        res.status = f"http_{resp.status}"
                        res.error = f"HTTP {resp.status} {resp.reason}"
                        transient = resp.status >= 500 or resp.status == 429
                        retry_after = retry_after_s(resp.headers)
                    else:
                        data = await resp.read()
                        status, err = check_image(data, st.image_size_px)
                        res.status, res.error = status, err
                        res.data = data if status == "ok" else None
                        transient = status in TRANSIENT_IMAGE_STATUSES
            except asyncio.TimeoutError:
                res.status, res.error = "timeout", f"no complete answer within {st.timeout_s:g} s"
                transient = True
            except aiohttp.ClientPayloadError as exc:
                res.status, res.error = "truncated_response", f"body cut short: {exc}"
                transient = True
            except (aiohttp.ClientConnectionError, OSError) as exc:
                res.status, res.error = "connection_error", f"{type(exc).__name__}: {exc}"
                transient = True
            except Exception as exc:  # noqa: BLE001 - one bad row must never kill the task
                res.status, res.error = "fetch_error", f"{type(exc).__name__}: {exc}"
                transient = False
        if res.status == "ok" or not transient or attempt == st.policy.retries:
            break
        await asyncio.sleep(st.policy.delay(attempt, retry_after))
    res.elapsed_s = time.monotonic() - t0
    return res


async def fetch_images(urls: list[str], st: ClientSettings, limiter: Any = None) -> list[FetchResult]:
    """Request every URL (one session, at most ``st.in_flight`` open at a time); return one
    :class:`FetchResult` per URL, in the order of ``urls``. Never raises for a bad answer.

    ``limiter``: a :func:`hicatalog.cutouts.ratelimit.start_rate_limiter` handle, or ``None``
    for no rate limit.
    """
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=st.timeout_s)
    connector = aiohttp.TCPConnector(limit=st.in_flight, limit_per_host=st.in_flight)
    sem = asyncio.Semaphore(st.in_flight)
    headers = {"User-Agent": st.user_agent}
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, headers=headers) as s:
        return list(await asyncio.gather(*(_fetch_one(s, u, st, limiter, sem) for u in urls)))
