"""The reference pages (docs/reference) are made from the code: they must be what the code
makes now, and the status codes the contract documents must be the codes the code writes."""

from __future__ import annotations

import re
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


def test_every_field_of_the_model_card_and_the_manifest_says_what_it_is():
    """The model-card and manifest pages are made from each field's docstring: a field added
    without one would be a row that says nothing."""
    from hicatalog.catalog import manifest as m
    from hicatalog.models.card import ModelCard
    from hicatalog.reference import attribute_docs

    records = [ModelCard, m.Manifest, m.BuildRecord, m.VersionEntry, m.VersionOptions,
               m.RowCounts, m.ModelRecord, m.InputRecord, m.TracersRecord, m.InferenceRecord]
    for record in records:
        fields = (record.model_fields if hasattr(record, "model_fields")
                  else record.__dataclass_fields__)
        docs = attribute_docs(record)
        assert [f for f in fields if not docs.get(f, "").strip()] == [], record.__name__


def test_the_pages_list_every_key_a_real_card_and_manifest_hold():
    """A card as ``save_model`` writes it and a manifest as a publish writes it: each of
    their keys (nested records too) has its row in the page."""
    from hicatalog.catalog.manifest import Manifest
    from hicatalog.models.card import ModelCard
    from hicatalog.reference import manifest_page, model_card_page

    card = ModelCard(model_id="regression-abc", task="regression", arch="xresnet18", width=0.5,
                     n_outputs=1, image_size=64, cutout_size=96, survey="sdss",
                     normalization={"mean": [0.1] * 3, "std": [0.2] * 3})
    page = model_card_page()
    assert [k for k in card.to_dict() if f"| `{k}` |" not in page] == []
    version = {"version": 1, "path": "version=1", "catalog": "hi_catalog",
               "builds": ["_staging/build=1"], "build_ids": ["build-1"], "rows": 10,
               "invalid_coordinate_rows": 0, "partitions": 1, "files": 2, "bytes": 100,
               "options": {"partition_rows": 1000, "row_group_rows": 100, "histogram_order": 8,
                           "margin_arcsec": 10.0}, "created": "t", "publish_s": 1.0,
               "margin_rows": 3}
    doc = {"build_id": "build-1", "fingerprint": "f", "rows": {"total": 10, "status": {"ok": 10},
           "env_status": {"ok": 10}}, "staging": "_staging/build=1", "since_manifest": None,
           "models": {"pr": {"model_id": "pr-1", "weights_sha256": "s", "task": "pr",
                             "arch": "xresnet18", "image_size": 64, "cutout_size": 96,
                             "survey": "sdss", "path": "m"}},
           "model_id": "r+p", "config": {}, "inference": {"precision": "fp32", "decode": "cpu"},
           "input": {"cutouts": "c", "shards": 1, "rows": 10, "fingerprint": "i",
                     "survey": "sdss"}, "tracers": {"path": "t", "fingerprint": "t"},
           "code_version": "0", "created": "t", "wall_time_s": 1.0,
           "catalog": "hi_catalog", "version": 1, "versions": [version], "layout": "l"}
    Manifest.from_dict(doc)  # a valid manifest: every key below is one the model knows

    def keys(value, prefix=""):
        if isinstance(value, dict):
            for k, v in value.items():
                if prefix in (".models", ".rows.status", ".rows.env_status", ".config"):
                    yield from keys(v, prefix + ".*")  # a map: its keys are data, not fields
                    continue
                yield k
                yield from keys(v, f"{prefix}.{k}")
        elif isinstance(value, list):
            for v in value:
                yield from keys(v, prefix)

    page = manifest_page()
    assert sorted({k for k in keys(doc) if f"| `{k}` |" not in page}) == []


def test_a_docstring_becomes_markdown():
    from hicatalog.reference import _markdown

    doc = '''Read ``path`` with :func:`~hicatalog.storage.read_parquet`; M* < 1.

    Layout::

        DIR/a.parquet   the rows
    Keys:
    - ``a``: one
      more

    Raises
    ------
    InputError / SchemaError: a bad file,
        named.
    ConfigError: bad options
    that wrap.
    '''
    assert _markdown(doc) == (
        "Read `path` with `read_parquet`; M\\* &lt; 1.\n\nLayout:\n\n```\n"
        "DIR/a.parquet   the rows\n```\n\nKeys:\n\n- `a`: one\n  more\n\n**Raises**\n\n"
        "- `InputError / SchemaError`: a bad file, named.\n"
        "- `ConfigError`: bad options that wrap.")


def test_the_api_page_shows_each_commands_function_as_it_is():
    """Each command's library function is on the API page with every parameter it has (the
    page is read from the source; here the functions are imported and asked)."""
    import inspect

    from hicatalog.cli import COMMANDS, _resolve
    from hicatalog.reference import api_page

    page = api_page()
    for cmd in COMMANDS:
        if cmd.passes_config:
            continue
        module, name = cmd.call.split(":")
        section = page.split(f"### `{name}`\n", 1)[1].split("\n### ", 1)[0]
        assert f"from {module} import {name}" in section and f"cli.md#{cmd.name}" in section
        params = inspect.signature(_resolve(cmd.call)).parameters
        code = section.split("```python\n", 1)[1].split("```", 1)[0]
        assert [p for p in params if not re.search(rf"[(\s]{p}: ", code)] == [], cmd.name
