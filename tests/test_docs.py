"""The user documentation (README.md, docs/**/*.md) against the code: links, the column
reference, the command lines. The queries and the workflow command the pages show are run by
tests/test_catalog.py and tests/test_workflow.py."""

from __future__ import annotations

import argparse
import re
import shlex
import sys

from docpages import PAGES, ROOT, code_blocks, command_lines, inline_code, page, relative_links

from hicatalog.cli import build_parser
from hicatalog.config import DemoConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: The scripts of jobs/ and the command each one is.
JOBS = {"train": "train", "build_catalog": "build-catalog", "demo": "demo", "workflow": "workflow"}


def test_every_relative_link_points_to_an_existing_file():
    broken = []
    for path in PAGES:
        for target in relative_links(path):
            resolved = (path.parent / target).resolve()
            if not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, broken


def _options(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    """Each subcommand's option strings."""
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: {s for a in p._actions for s in a.option_strings}
            for name, p in sub.choices.items()}


def _documented_command_lines():
    """(page, command, rest of the line) for every `hicatalog COMMAND ...` or `jobs/X.py ...`
    line of a code block of the pages, and every such inline code span."""
    for path in PAGES:
        lines = [line for block in code_blocks(path) for line in command_lines(block)]
        lines += inline_code(path)
        for line in lines:
                m = re.search(r"(?:^|[\s/])hicatalog ([a-z][a-z-]*)(?=\s|$)|jobs/(\w+)\.py", line)
                if m:
                    yield path.relative_to(ROOT), m[1] or JOBS[m[2]], line[m.end():]


def test_every_documented_command_line_uses_only_options_its_help_lists():
    options = _options(build_parser())
    wrong, seen = [], set()
    for where, command, rest in _documented_command_lines():
        seen.add(command)
        assert command in options, f"{where}: no command {command!r}"
        for word in shlex.split(rest.replace("[", " ").replace("]", " "), comments=True):
            flag = word.split("=", 1)[0]
            if flag.startswith("--") and flag not in options[command]:
                wrong.append(f"{where}: hicatalog {command} has no {flag}")
    assert not wrong, wrong
    assert {"train", "build-catalog", "workflow", "demo", "fetch", "mock"} <= seen


def test_the_scheduled_rebuild_extends_the_catalog_its_config_writes():
    """The cron build extends the catalog its config writes, and the cron vacuum vacuums it."""
    build, vacuum = code_blocks(page("docs/operations/scheduling.md"), "cron")
    [line] = command_lines(build)
    argv = shlex.split(line)
    config = tomllib.loads((ROOT / argv[argv.index("--config") + 1]).read_text())
    assert argv[argv.index("--since-manifest") + 1] == config["out"] + "/_manifest.json"
    [line] = command_lines(vacuum)
    argv = shlex.split(line)
    assert argv[argv.index("vacuum") + 1] == config["out"]


def test_the_demo_config_is_the_demo_default():
    """configs/demo.toml, which the docs describe as the demo, runs the default sizes."""
    config = tomllib.loads((ROOT / "configs" / "demo.toml").read_text())
    default = DemoConfig()
    assert (config["n_train"], config["n_survey"]) == (default.n_train, default.n_survey)
