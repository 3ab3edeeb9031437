"""The two conditional writes of hicatalog.storage (put-if-absent, compare-and-swap) on a disk
and on the S3 test server: what each does alone, and two processes racing for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hicatalog import storage
from hicatalog.errors import WriteConflict

RACER = Path(__file__).resolve().with_name("storagerace.py")
#: Writes per racer: every one of them races the other racer's.
TRIALS = 50


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("s3_bucket")


def test_create_exclusive_and_replace_if_unchanged(root):
    path = storage.join(root, "dir", "claim.json")
    token = storage.create_exclusive(path, b"first")
    with pytest.raises(WriteConflict, match="exists: another writer created it first"):
        storage.create_exclusive(path, b"second")
    data, read_token = storage.read_versioned(path)
    assert data == b"first" and read_token == token
    new = storage.replace_if_unchanged(path, b"third", token)
    assert new != token and storage.read_versioned(path) == (b"third", new)
    with pytest.raises(WriteConflict, match="changed since it was read"):
        storage.replace_if_unchanged(path, b"stale", token)  # the token of "first"
    assert storage.read_bytes(path) == b"third"
    with pytest.raises(WriteConflict):  # a replace of what is not there
        storage.replace_if_unchanged(storage.join(root, "missing.json"), b"x", token)
    # nothing but the objects themselves is left (no temporary file, no lock)
    assert [storage.basename(f) for f in storage.list_files(storage.join(root, "dir"))] == [
        "claim.json"]


def _race(what: str, target: str, tmp_path: Path, jitter_s: float) -> list[dict]:
    start = tmp_path / f"start-{what}"
    procs = [subprocess.Popen([sys.executable, str(RACER), what, target, str(TRIALS),
                               str(jitter_s), str(start)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    start.touch()
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    return [json.loads(o) for o in outs]


def test_two_processes_racing_lose_no_update_and_share_no_claim(root, tmp_path):
    """Two processes, each committing TRIALS increments of one counter by compare-and-swap,
    and each trying to claim the same TRIALS names: every increment lands once (the counter
    ends at 2 x TRIALS, each value committed by exactly one), every name has exactly one
    winner, whose id is the one written."""
    counter = storage.join(root, "counter")
    storage.create_exclusive(counter, b"0")
    runs = _race("increment", counter, tmp_path, 0.002)
    values = sorted(v for r in runs for v in r["result"])
    assert values == list(range(1, 2 * TRIALS + 1))
    assert storage.read_bytes(counter) == str(2 * TRIALS).encode()

    claims = storage.join(root, "claims")
    runs = _race("claim", claims, tmp_path, 0.002)
    won = [i for r in runs for i in r["result"]]
    assert sorted(won) == list(range(TRIALS))
    for r in runs:
        for i in r["result"]:
            assert storage.read_bytes(storage.join(claims, f"claim-{i}")) == str(r["pid"]).encode()


def test_canary_moto_without_the_serialising_wrapper_lets_two_creates_win(tmp_path):
    """Why tests/s3server.py serialises conditional writes: moto checks ``If-None-Match: *``
    and stores the object in two steps without a lock, so two racing creates of a 16 MiB
    object can both succeed (about one race in five here). S3 decides each conditional write
    atomically. If this canary fails, moto has closed the race and the wrapper can go."""
    import os
    import threading

    import boto3
    import botocore
    import s3server

    proc, endpoint = s3server.start(tmp_path / "moto.log", serialise=False)
    try:
        env = s3server.client_env(endpoint)
        clients = [boto3.client("s3", endpoint_url=endpoint, region_name=env["AWS_REGION"],
                                aws_access_key_id="testing", aws_secret_access_key="testing")
                   for _ in range(2)]
        s3server.wait_ready_at(clients[0])
        clients[0].create_bucket(Bucket="canary")
        body = os.urandom(16 * 2**20)
        for trial in range(60):
            barrier, wins = threading.Barrier(2), []

            def put(client, key=f"claim-{trial}", barrier=barrier, wins=wins):
                barrier.wait()
                try:
                    client.put_object(Bucket="canary", Key=key, Body=body, IfNoneMatch="*")
                    wins.append(client)
                except botocore.exceptions.ClientError:
                    pass
            threads = [threading.Thread(target=put, args=(c,)) for c in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if len(wins) == 2:
                return  # both won: the race the wrapper closes
        pytest.fail("60 racing creates on moto without the wrapper never both won")
    finally:
        s3server.stop(proc)
