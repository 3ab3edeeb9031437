"""A real S3-compatible server for the tests and benchmarks: moto's standalone server
(``python -m moto.server``, the ``moto[server]`` dev dependency) on a free port of 127.0.0.1.

The clients find it the way they find any S3 endpoint, through the environment
(:func:`client_env`: dummy credentials, a region and ``AWS_ENDPOINT_URL``, read by pyarrow's
S3FileSystem, s3fs / botocore, polars and Ray alike). No filesystem API is mocked: the clients
talk HTTP to this process.

Used by ``tests/conftest.py`` (the ``s3_server`` fixture) and ``benchmarks/bench_storage.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

# Variables that would send the clients elsewhere (a profile, a session, a second endpoint).
CLEARED_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3")


class S3ServerError(RuntimeError):
    """The server did not start or did not answer."""


class SerialisedConditionalWrites:
    """moto checks a write's condition (``If-None-Match: *``, ``If-Match: ETAG``) and stores
    the object in two steps without a lock, so two racing conditional writes can both win
    (with 16 MiB bodies about one race in five: the canary test of
    tests/test_storage_conditional.py; with small bodies none was seen). S3 decides each
    conditional write atomically; this WSGI wrapper makes moto do the same by running
    conditional writes one at a time. Other requests are not held."""

    def __init__(self, app):
        import threading

        self._app, self._lock = app, threading.Lock()

    def __call__(self, environ, start_response):
        conditional = environ.get("HTTP_IF_NONE_MATCH") or environ.get("HTTP_IF_MATCH")
        if environ.get("REQUEST_METHOD") in ("PUT", "POST") and conditional:
            with self._lock:
                return list(self._app(environ, start_response))
        return self._app(environ, start_response)


def serve(host: str, port: int, serialise: bool = True) -> None:
    """Run moto's server (as ``python -m moto.server``), its conditional writes serialised
    unless ``serialise`` is false."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, SerialisedConditionalWrites(app) if serialise else app,
               threaded=True, request_handler=MotoRequestHandler)


def start(log: Path, timeout: float = 60.0, serialise: bool = True) -> tuple[subprocess.Popen, str]:
    """Start the server (:func:`serve`) in its own process group, its request log in ``log``
    (one werkzeug line per request); return the process and its endpoint
    ``http://127.0.0.1:PORT`` once the server has printed its port. ``serialise``: run
    conditional writes one at a time, as S3 does (:class:`SerialisedConditionalWrites`)."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "127.0.0.1", "0",
             "serialise" if serialise else "unsafe"],
            stdout=subprocess.DEVNULL, stderr=fh, start_new_session=True,
        )
    deadline = time.time() + timeout
    while True:
        found = re.search(r"Running on http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if found:
            return proc, f"http://127.0.0.1:{found.group(1)}"
        if proc.poll() is not None or time.time() > deadline:
            stop(proc)
            raise S3ServerError(f"moto server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def client_env(endpoint: str) -> dict[str, str]:
    """The environment that points every S3 client at ``endpoint`` with dummy credentials."""
    return {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true",
    }


def wait_ready(timeout: float = 30.0) -> None:
    """Wait until the server (reached through the current environment) answers a request."""
    import boto3

    wait_ready_at(boto3.client("s3"), timeout)


def wait_ready_at(client, timeout: float = 30.0) -> None:
    """Wait until the server ``client`` (a boto3 S3 client) talks to answers a request."""
    deadline = time.time() + timeout
    while True:  # the port is open once the log line is written; wait for an answer anyway
        try:
            client.list_buckets()
            return
        except Exception as exc:
            if time.time() > deadline:
                raise S3ServerError(f"moto server did not answer within {timeout:.0f} s: {exc}") from exc
            time.sleep(0.1)


def start_for_this_process(log: Path) -> tuple[subprocess.Popen, str]:
    """:func:`start` a server for a script (a benchmark): point this process's environment at
    it (:func:`client_env`, :data:`CLEARED_ENV` removed; what Ray workers started afterwards
    inherit) and wait until it answers. Returns the process and its endpoint."""
    proc, endpoint = start(log)
    os.environ.update(client_env(endpoint))
    for k in CLEARED_ENV:
        os.environ.pop(k, None)
    try:
        wait_ready()
    except S3ServerError:
        stop(proc)
        raise
    return proc, endpoint


def create_bucket(name: str) -> str:
    """Create bucket ``name`` (through the current environment); return ``s3://name``."""
    import boto3

    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"


def stop(proc: subprocess.Popen) -> None:
    """Terminate the server (kill it after 10 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


if __name__ == "__main__":  # python tests/s3server.py HOST PORT serialise|unsafe
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "serialise")
