"""One self-contained HTML report per evaluation run (``OUT/index.html``).

The report is plain HTML (no scripts, no external assets): a title, sections of tables and
text, the figures as ``<img>`` tags pointing at the PNGs beside it, and the build's manifest
(``_manifest.json``) pretty-printed, so the numbers can always be traced to the build.
Also :func:`write_json`, which writes JSON with NaN as ``null`` (strict JSON).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
from dataclasses import dataclass, field
from typing import Any

from hicatalog import __version__, storage
from hicatalog.storage import write_atomic

__all__ = ["Section", "write_report", "write_json", "json_safe"]

_CSS = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th { background: #eee; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
.note { color: #555; font-size: 0.9em; }
"""


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats replaced by ``None`` and numpy scalars made plain."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (ValueError, TypeError):
            return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(obj: Any, path: str) -> str:
    """Write ``obj`` as indented strict JSON (NaN -> null) atomically; returns ``path``."""
    return write_atomic(path, (json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n").encode())


@dataclass
class Section:
    """A report section: a heading, HTML body parts (tables, paragraphs) and figure paths."""

    title: str
    html_parts: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def add_text(self, text: str) -> Section:
        self.html_parts.append(f"<p class='note'>{html.escape(text)}</p>")
        return self


def write_report(
    out_dir: str, title: str, sections: list[Section], manifest: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
) -> str:
    """Write ``out_dir/index.html`` and return its path.

    ``sections`` are rendered in order; figure paths are made relative to ``out_dir``;
    ``manifest`` (e.g. the build's ``_manifest.json`` contents) and ``inputs`` (what the run
    read) are shown verbatim at the end.
    """
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>hicatalog {__version__}, written {now}</p>",
    ]
    if inputs:
        parts.append("<h2>Inputs</h2><pre>" + html.escape(json.dumps(json_safe(inputs), indent=2)) + "</pre>")
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        parts.extend(sec.html_parts)
        for fig in sec.figures:
            rel = storage.relative(fig, out_dir)
            parts.append(f"<div><img src='{html.escape(rel)}' alt='{html.escape(rel)}'></div>")
    parts.append("<h2>Build manifest</h2>")
    if manifest:
        parts.append("<pre>" + html.escape(json.dumps(json_safe(manifest), indent=2)) + "</pre>")
    else:
        parts.append("<p class='note'>no _manifest.json was found next to the inputs</p>")
    parts.append("</body></html>\n")
    path = storage.join(out_dir, "index.html")
    return write_atomic(path, "\n".join(parts).encode())
