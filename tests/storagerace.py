"""A racing writer for tests/test_storage_conditional.py, run as its own process:

    python tests/storagerace.py increment|claim TARGET N JITTER_S START_FILE

waits for START_FILE to exist (so the racers start together), then either increments the
counter in the file TARGET N times by compare-and-swap (re-reading on every conflict), or tries
to claim TARGET/claim-0 ... claim-(N-1) by create-exclusive; prints JSON: the values it
committed, or the claims it won."""

from __future__ import annotations

import json
import os
import random
import sys
import time

from hicatalog import storage
from hicatalog.errors import WriteConflict


def increment(target: str, n: int, jitter_s: float) -> list[int]:
    committed: list[int] = []
    while len(committed) < n:
        data, token = storage.read_versioned(target)
        value = int(data) + 1
        time.sleep(random.uniform(0, jitter_s))  # widen the window between read and swap
        try:
            storage.replace_if_unchanged(target, str(value).encode(), token)
        except WriteConflict:
            continue
        committed.append(value)
    return committed


def claim(target: str, n: int, jitter_s: float) -> list[int]:
    won = []
    for i in range(n):
        time.sleep(random.uniform(0, jitter_s))
        try:
            storage.create_exclusive(f"{target}/claim-{i}", str(os.getpid()).encode())
        except WriteConflict:
            continue
        won.append(i)
    return won


if __name__ == "__main__":
    what, target, n, jitter, start = sys.argv[1:6]
    while not os.path.exists(start):
        time.sleep(0.001)
    fn = increment if what == "increment" else claim
    print(json.dumps({"pid": os.getpid(), "result": fn(target, int(n), float(jitter))}))
