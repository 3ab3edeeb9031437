"""Each jobs/*.py (what `ray job submit` runs) is the CLI command of its name.

Submitting them is guarded by tests/test_cluster.py (jobs/build_catalog.py and jobs/train.py
submitted with ``ray job submit`` to a ``ray start`` cluster); the demo end to end by
tests/test_demo.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("job,flag", [("demo", "--out"), ("train", "--train-samples"),
                                      ("build_catalog", "--since-manifest"),
                                      ("workflow", "--max-z")])
def test_every_job_entrypoint_is_its_command(job, flag):
    """Each jobs/*.py is the CLI command of its name (what `ray job submit` runs): its --help
    is that command's, and the folder holds no entrypoint this test does not know."""
    assert sorted(p.stem for p in (REPO / "jobs").glob("*.py")) == [
        "build_catalog", "demo", "train", "workflow"]
    r = subprocess.run([sys.executable, f"jobs/{job}.py", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert flag in r.stdout and f"hicatalog {job.replace('_', '-')}" in r.stdout
