"""Two publishers and a vacuum racing on one catalog, as separate processes, on a local disk
and on the S3 test server (tests/commitrace.py); a reader loops over the current version
meanwhile. Each hook point of the commit protocol (after the version claim, after the data
write, between the manifest read and the swap) is hit once per store here;
benchmarks/bench_commit_race.py runs 50 trials per store.
"""

from __future__ import annotations

import pytest
from commitrace import run_trials


@pytest.mark.parametrize("store", ["local", "s3"])
def test_racing_publishes_and_a_vacuum_lose_and_double_nothing(store, tmp_path, request):
    root = (str(tmp_path / "race") if store == "local"
            else f"{request.getfixturevalue('s3_bucket')}/race")
    result = run_trials(root, n=3, jitter_s=0.3)
    assert result["problems"] == {}
    assert result["n_reader_failures"] == 0, result["reader_failures"]
    assert result["reads"] > 0
    # both publishers committed in every trial, one after the other
    assert all(sorted(v)[1] > sorted(v)[0] for v in result["versions_a_b"])
