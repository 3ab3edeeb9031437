"""The documentation site (mkdocs.yml over docs/) builds with every warning an error: a broken
link or anchor between pages, or a page left out of the navigation, fails here. (Not ``-q``:
mkdocs then stops counting the warnings that ``--strict`` turns into errors.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_docs_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pages = sorted(p.relative_to(REPO / "docs").with_suffix("").as_posix()
                   for p in (REPO / "docs").rglob("*.md"))
    for page in pages:  # docs/a/b.md -> site/a/b/index.html, docs/index.md -> site/index.html
        rel = page.removesuffix("index") if page.endswith("index") else page + "/"
        assert (site / rel / "index.html").is_file(), page
