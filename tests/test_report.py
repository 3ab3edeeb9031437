"""The evaluation report: one model, rendered to HTML and to Markdown from the same rows."""

from __future__ import annotations

import html
import re

from hicatalog.evaluation.report import Report, Section, write_report

#: A table with every kind of cell: text that HTML must escape, a float (4 decimals), a
#: missing value (an en dash), an int, and a NaN.
ROWS = [["a<b & c", 0.123456, None, 7], ["plain", float("nan"), 2.5, -3]]
#: The same cells as a reader sees them, written out by hand.
SHOWN = [["a<b & c", "0.1235", "–", "7"], ["plain", "–", "2.5000", "-3"]]


def _report(tmp_path) -> Report:
    fig = str(tmp_path / "out" / "fig.png")
    sections = [
        Section("First", figures=[fig]).add_table(("name", "x", "y", "n"), ROWS)
        .add_text("a note about <x>"),
        Section("Second").add_text("only a note"),
    ]
    return Report("the title", sections, inputs={"catalog": "c"},
                  manifest={"build_id": "b-1", "rows": {"total": 3}})


def _html_rows(text: str) -> list[list[str]]:
    body = re.findall(r"<tbody>(.*?)</tbody>", text, re.S)[0]
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", body)]


def _markdown_rows(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[1:]]


def test_html_and_markdown_show_the_same_rows_sections_and_figures(tmp_path):
    out = tmp_path / "out"
    path = write_report(_report(tmp_path), str(out), markdown="report.md")
    assert path == str(out / "index.html")
    page, md = (out / "index.html").read_text(), (out / "report.md").read_text()
    assert _html_rows(page) == SHOWN and _markdown_rows(md) == SHOWN
    # the same sections, in order, with their notes (escaped in HTML) and the figure by the
    # name it has beside the report
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["Inputs", "First", "Second", "Build manifest"]
    assert re.findall(r"^## (.*)$", md, re.M) == ["First", "Second"]
    assert md.startswith("# the title\n")
    assert "<p class='note'>a note about &lt;x&gt;</p>" in page and "\na note about <x>\n" in md
    assert "<img src='fig.png'" in page and "![fig.png](fig.png)" in md
    # what the run read and the build's manifest: in the HTML page only
    assert "&quot;build_id&quot;: &quot;b-1&quot;" in page and "b-1" not in md


def test_without_a_manifest_the_page_says_so_and_no_markdown_is_written(tmp_path):
    report = Report("t", [Section("s").add_text("n")])
    write_report(report, str(tmp_path))
    assert "no _manifest.json was found" in (tmp_path / "index.html").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]
