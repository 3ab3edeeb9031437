"""The evaluation report: one model (:class:`Report`) rendered to HTML and to Markdown.

An analysis builds a :class:`Report` (a title, :class:`Section` s of :class:`Table` s, notes
and figures, what the run read, the build's manifest) and writes it with
:func:`write_report`: ``OUT/index.html`` always, and a Markdown file beside it when asked
(``table2.md``, ``table4.md``, ``baselines.md``). Both come from the same rows, so a number
in one is the number in the other.

- HTML (:func:`render_html`): plain, self-contained (no scripts, no external assets): the
  tables, the notes, the figures as ``<img>`` tags pointing at the PNGs beside it, then what
  the run read and the build's manifest (``_manifest.json``) pretty-printed, so the numbers
  can always be traced to the build.
- Markdown (:func:`render_markdown`): the same sections, tables (GitHub-flavoured), notes and
  figures (as image links); the inputs and the manifest are left to the HTML and the JSON.

Cells are strings or numbers (numbers print with :func:`hicatalog.evaluation.tables.fmt`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hicatalog import __version__, storage
from hicatalog.evaluation.tables import html_table, markdown_table
from hicatalog.storage import json_safe, write_atomic

__all__ = ["Table", "Section", "Report", "render_html", "render_markdown", "write_report"]

_CSS = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th { background: #eee; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
.note { color: #555; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class Table:
    """A table: ``headers`` and ``rows`` of cells (strings, or numbers formatted with
    :func:`~hicatalog.evaluation.tables.fmt`)."""

    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]


@dataclass
class Section:
    """A report section: a heading, then its ``blocks`` in order (a :class:`Table`, or a
    note as a ``str``), then its ``figures`` (paths of PNGs beside the report)."""

    title: str
    blocks: list[Table | str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def add_table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Section:
        self.blocks.append(Table(headers, rows))
        return self

    def add_text(self, text: str) -> Section:
        self.blocks.append(text)
        return self


@dataclass
class Report:
    """A whole report: ``title``, ``sections`` in order, ``inputs`` (what the run read) and
    ``manifest`` (the build's ``_manifest.json`` contents, when there is one)."""

    title: str
    sections: list[Section]
    inputs: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None


def _figure_path(fig: str, out_dir: str) -> str:
    return storage.relative(fig, out_dir)


def _pre(obj: Any) -> str:
    return "<pre>" + html.escape(json.dumps(json_safe(obj), indent=2)) + "</pre>"


def render_html(report: Report, out_dir: str) -> str:
    """The report as one HTML page for ``out_dir/index.html`` (figure paths made relative
    to ``out_dir``)."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
        f"<p class='note'>hicatalog {__version__}, written {storage.utc_timestamp()}</p>",
    ]
    if report.inputs:
        parts.append("<h2>Inputs</h2>" + _pre(report.inputs))
    for sec in report.sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        for block in sec.blocks:
            parts.append(html_table(block.headers, block.rows) if isinstance(block, Table)
                         else f"<p class='note'>{html.escape(block)}</p>")
        for fig in sec.figures:
            rel = html.escape(_figure_path(fig, out_dir))
            parts.append(f"<div><img src='{rel}' alt='{rel}'></div>")
    parts.append("<h2>Build manifest</h2>")
    parts.append(_pre(report.manifest) if report.manifest else
                 "<p class='note'>no _manifest.json was found next to the inputs</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def render_markdown(report: Report, out_dir: str) -> str:
    """The report's sections as Markdown (tables, notes, figures as image links relative to
    ``out_dir``)."""
    parts = [f"# {report.title}\n"]
    for sec in report.sections:
        parts.append(f"## {sec.title}\n")
        for block in sec.blocks:
            parts.append(markdown_table(block.headers, block.rows) if isinstance(block, Table)
                         else block + "\n")
        parts.extend(f"![{_figure_path(f, out_dir)}]({_figure_path(f, out_dir)})\n"
                     for f in sec.figures)
    return "\n".join(parts)


def write_report(report: Report, out_dir: str, markdown: str | None = None) -> str:
    """Write ``out_dir/index.html`` (and ``out_dir/<markdown>`` when a file name is given),
    each atomically; returns the HTML's path."""
    if markdown is not None:
        write_atomic(storage.join(out_dir, markdown), render_markdown(report, out_dir).encode())
    return write_atomic(storage.join(out_dir, "index.html"),
                        render_html(report, out_dir).encode())
