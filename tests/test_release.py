"""The project as something to cite: CITATION.cff and LICENSE agree with the package and with
the reference every published version carries (hicatalog.catalog.release)."""

from __future__ import annotations

from pathlib import Path

import yaml

from hicatalog import __version__
from hicatalog.catalog.release import PAPER, reference

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def test_citation_file_is_valid_and_cites_the_method_paper():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    for key in ("cff-version", "message", "title", "authors", "version", "license"):
        assert cff.get(key), key
    assert cff["version"] == __version__
    paper = cff["preferred-citation"]
    assert paper["type"] == "article" and paper["authors"][0]["family-names"] == "Wu"
    assert (paper["title"], paper["journal"], paper["volume"], paper["year"], paper["doi"]) == (
        PAPER["title"], PAPER["journal"], PAPER["volume"], PAPER["year"], PAPER["doi"])
    assert paper["identifiers"][0]["value"] == f"arXiv:{PAPER['arxiv']}"
    assert reference().startswith("Wu, J. F. 2020, Connecting optical morphology")


def test_license_file_is_the_license_pyproject_declares():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert declared == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")
    assert yaml.safe_load((REPO / "CITATION.cff").read_text())["license"] == declared
