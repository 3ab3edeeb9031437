"""The project's markdown pages as tests read them: fenced code blocks and relative links.

A command or query a page shows is run by a test that reads it from the page, so the page
cannot drift from what runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Every page of the user documentation: the README and docs/**/*.md.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```",
                    re.M | re.S)
_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def page(relative: str) -> Path:
    """The page at ``relative`` (to the repository root), which must exist."""
    path = ROOT / relative
    assert path.is_file(), f"{relative}: no such page"
    return path


def code_blocks(path: Path, lang: str | None = None, section: str | None = None) -> list[str]:
    """The fenced code blocks of the markdown file ``path``, in order, with their indentation
    removed; only those whose info string is ``lang`` when given, and only those under the
    heading ``section`` (its full line, e.g. ``"## DuckDB"``, up to the next heading of the
    same or a higher level) when given."""
    text = path.read_text()
    if section is not None:
        start = text.find("\n" + section + "\n")
        assert start >= 0, f"{path.name}: no section {section!r}"
        text = text[start + len(section) + 2:]
        level = len(section) - len(section.lstrip("#"))
        # the next heading of the same or a higher level, outside code blocks (whose lines
        # may start with a shell comment)
        masked = _FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m[0]), text)
        end = re.search(rf"^#{{1,{level}}} ", masked, re.M)
        text = text[:end.start()] if end else text
    blocks = []
    for m in _FENCE.finditer(text):
        if lang is None or m["lang"] == lang:
            indent = len(m["indent"])
            blocks.append("".join(line[indent:] for line in m["body"].splitlines(True)))
    return blocks


def command_lines(block: str) -> list[str]:
    """The lines of a shell block with continuations (``\\`` at a line's end) joined and
    comments and blank lines left out."""
    joined = block.replace("\\\n", " ")
    return [line.split("  #", 1)[0].strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def inline_code(path: Path) -> list[str]:
    """The inline code spans (single backticks, on one line) of ``path``, outside code blocks."""
    return re.findall(r"`([^`\n]+)`", _FENCE.sub("", path.read_text()))


def relative_links(path: Path) -> list[str]:
    """The targets of the markdown links of ``path`` that are relative paths (no scheme, no
    bare anchor), without their ``#anchor``; links inside code blocks are not links."""
    text = _FENCE.sub("", path.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = []
    for m in _LINK.finditer(text):
        target = m["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets
