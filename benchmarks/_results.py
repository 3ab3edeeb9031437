"""How every benchmark reports: numbers on stdout, the same numbers as ``OUT/<name>.json``;
:class:`PeakSampler`, the peak of a reading (memory) over a timed block; and the RSS of this
process tree (:func:`process_rss`, :func:`tree_rss`)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any


def write_result(out_dir: str, name: str, result: Any) -> str:
    """Write ``result`` as indented JSON to ``out_dir/<name>.json`` and say where."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {path}")
    return path


class PeakSampler:
    """The largest value ``read()`` returns while the ``with`` block runs, sampled every
    ``interval`` seconds in a thread (``peak``; ``None`` until a reading; a ``None`` reading
    is skipped)."""

    def __init__(self, read: Callable[[], float | None], interval: float = 0.25):
        self.read, self.interval, self.peak = read, interval, None
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            v = self.read()
            if v is not None:
                self.peak = v if self.peak is None else max(self.peak, v)

    def __enter__(self) -> PeakSampler:
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def process_rss() -> dict[int, int]:
    """``{pid: RSS bytes}`` of this process and its descendants (the Ray processes it
    started), from /proc (Linux)."""
    parent, rss = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            parent[int(d)] = int(fields[1])
            rss[int(d)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    keep, frontier = {os.getpid()}, [os.getpid()]
    children: dict[int, list[int]] = {}
    for pid, pp in parent.items():
        children.setdefault(pp, []).append(pid)
    while frontier:
        for c in children.get(frontier.pop(), []):
            if c not in keep:
                keep.add(c)
                frontier.append(c)
    return {p: rss.get(p, 0) for p in keep}


def tree_rss() -> int:
    """RSS sum (bytes) of this process and its descendants (:func:`process_rss`)."""
    return sum(process_rss().values())
