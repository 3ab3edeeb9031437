"""The reference pages (docs/reference) are made from the code: they must be what the code
makes now, and the status codes the contract documents must be the codes the code writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hicatalog.catalog.environment import ENV_STATUSES
from hicatalog.cutouts.decode import IMAGE_STATUSES
from hicatalog.reference import PAGES
from hicatalog.schemas import table_spec

DOCS = Path(__file__).resolve().parents[1] / "docs" / "reference"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_reference_page_is_what_the_code_makes(name):
    on_disk = (DOCS / name).read_text() if (DOCS / name).is_file() else None
    assert on_disk == PAGES[name](), (
        f"docs/reference/{name} is stale: run `make reference` and commit it")


def test_the_documented_codes_are_the_codes_the_code_writes():
    values = table_spec("hi_catalog").values
    # the build writes a decode status per row, or duplicate_id (hicatalog/catalog/build.py)
    assert set(values["status"]) == {*IMAGE_STATUSES, "duplicate_id"}
    assert set(values["env_status"]) == set(ENV_STATUSES)
    assert all(v.strip() for codes in values.values() for v in codes.values())
