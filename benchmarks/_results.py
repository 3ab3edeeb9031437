"""How every benchmark reports: numbers on stdout, the same numbers as ``OUT/<name>.json``."""

from __future__ import annotations

import json
import os
from typing import Any


def write_result(out_dir: str, name: str, result: Any) -> str:
    """Write ``result`` as indented JSON to ``out_dir/<name>.json`` and say where."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {path}")
    return path
