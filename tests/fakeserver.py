"""A real HTTP cutout server on 127.0.0.1 for tests and benchmarks (never the internet).

It answers the SDSS SkyServer (``.../ImgCutout/getjpeg?ra=&dec=&width=&height=``) and Legacy
viewer (``.../cutout.jpg?ra=&dec=&size=``) query shapes with real JPEGs made by Pillow, after
an injected latency, and injects faults per position: a plan keyed by the ``ra`` query value
(as sent, e.g. ``"10.0010000"``) lists the behaviour of the 1st, 2nd, ... request for that
position (the last entry repeats):

``ok``, ``404``, ``500``, ``503``, ``429`` (with ``Retry-After: 0``), ``truncated`` (announces
the full ``Content-Length``, sends half, closes), ``truncated_jpeg`` (a complete HTTP answer
whose JPEG is cut), ``stall`` (sleeps ``stall_s`` before answering), ``wrong_size``,
``not_jpeg``, ``gray``.

``GET /_stats`` returns JSON: request times (``time.monotonic()`` of arrival, server clock) and
counts per ra. Run standalone (for benchmarks, in its own process)::

    python tests/fakeserver.py --latency 0.05 [--engine aiohttp]   # prints "PORT <n>", serves
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
from imagefixtures import noise_jpeg  # tests/ is on sys.path under pytest and as a script

#: The path of the SDSS SkyServer cutout service, as this server answers it.
SDSS_PATH = "/dr14/SkyServerWS/ImgCutout/getjpeg"


def ra_key(ra: float) -> str:
    """The ``ra`` query value the services send for ``ra`` (deg): the key of :meth:`FakeCutoutServer.plan`."""
    return f"{ra:.7f}"


def make_jpeg(size: int, mode: str = "RGB") -> bytes:
    """The one ``size`` x ``size`` JPEG (RGB or grayscale ``L``) served at that size."""
    return noise_jpeg(np.random.default_rng(0), size, mode)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def handle_error(self, request, client_address):  # a client that gave up (stall test)
        pass


class FakeCutoutServer:
    """The server; use as a context manager. ``base`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, latency_s: float = 0.0, stall_s: float = 5.0, port: int = 0):
        self.latency_s = latency_s
        self.stall_s = stall_s
        self.plans: dict[str, list[str]] = {}
        self.counts: dict[str, int] = defaultdict(int)
        self.times: list[float] = []
        self.user_agents: set[str] = set()
        self._lock = threading.Lock()
        self._jpeg_cache: dict[tuple[int, str], bytes] = {}
        self._httpd = _Server(("127.0.0.1", port), self._handler())
        self.port = self._httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeCutoutServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def plan(self, ra_text: str, *behaviours: str) -> None:
        """Behaviours of the successive requests for the position whose ``ra`` is ``ra_text``."""
        self.plans[ra_text] = list(behaviours)

    def jpeg(self, size: int, mode: str = "RGB") -> bytes:
        key = (size, mode)
        if key not in self._jpeg_cache:
            self._jpeg_cache[key] = make_jpeg(size, mode)
        return self._jpeg_cache[key]

    def stats(self) -> dict:
        with self._lock:
            return {"times": list(self.times), "counts": dict(self.counts)}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: bytes, ctype: str = "image/jpeg",
                      headers: dict | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802 - http.server's name
                arrived = time.monotonic()
                parts = urlsplit(self.path)
                if parts.path == "/_stats":
                    self._send(200, json.dumps(server.stats()).encode(), "application/json")
                    return
                q = parse_qs(parts.query)
                ra = q.get("ra", ["?"])[0]
                size = int(q.get("width", q.get("size", ["224"]))[0])
                with server._lock:
                    server.times.append(arrived)
                    n = server.counts[ra]
                    server.counts[ra] = n + 1
                    server.user_agents.add(self.headers.get("User-Agent", ""))
                plan = server.plans.get(ra, ["ok"])
                what = plan[min(n, len(plan) - 1)]
                if server.latency_s:
                    time.sleep(server.latency_s)
                if what == "ok":
                    self._send(200, server.jpeg(size))
                elif what in ("404", "500", "503"):
                    self._send(int(what), b"error page", "text/html")
                elif what == "429":
                    self._send(429, b"slow down", "text/plain", {"Retry-After": "0"})
                elif what == "stall":
                    time.sleep(server.stall_s)
                    self._send(200, server.jpeg(size))
                elif what == "truncated":
                    body = server.jpeg(size)
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                elif what == "truncated_jpeg":
                    body = server.jpeg(size)
                    self._send(200, body[: len(body) // 2])
                elif what == "wrong_size":
                    self._send(200, server.jpeg(size // 2))
                elif what == "not_jpeg":
                    self._send(200, b"<html>no image here</html>", "text/html")
                elif what == "gray":
                    self._send(200, server.jpeg(size, "L"))
                else:
                    raise ValueError(f"unknown behaviour {what!r}")

        return Handler


def _serve_aiohttp(latency_s: float, port: int) -> None:
    """Fault-free asyncio server (benchmarks): many idle connections cost no threads, so the
    server, not sharing the client's cores well on a small machine, stays out of the way."""
    import asyncio

    from aiohttp import web

    times: list[float] = []
    jpegs: dict[int, bytes] = {}

    async def cutout(request: web.Request) -> web.Response:
        times.append(time.monotonic())
        size = int(request.query.get("width", request.query.get("size", "224")))
        if size not in jpegs:
            jpegs[size] = make_jpeg(size)
        await asyncio.sleep(latency_s)
        return web.Response(body=jpegs[size], content_type="image/jpeg")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"times": times, "counts": {}})

    async def run() -> None:
        app = web.Application()
        app.router.add_get("/_stats", stats)
        app.router.add_get("/{tail:.*}", cutout)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        print(f"PORT {site._server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


def _serve_forever(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--engine", choices=("threads", "aiohttp"), default="threads",
                    help="threads: the fault-injecting server; aiohttp: fast, faults off")
    args = ap.parse_args(argv)
    try:
        if args.engine == "aiohttp":
            _serve_aiohttp(args.latency, args.port)
            return
        with FakeCutoutServer(latency_s=args.latency, port=args.port) as srv:
            print(f"PORT {srv.port}", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    _serve_forever(sys.argv[1:])
