"""The ``hicatalog`` command: each subcommand validates one config and calls one stage.

Flags are generated from the job's config model (:mod:`hicatalog.config`), so a flag, a key in
``--config FILE`` and a field of the model are the same thing: ``--image-size 64`` on the
command line is ``image_size = 64`` in the TOML file, and a key of an options table,
``epochs`` in ``[train]``, is ``--train.epochs``.

The seam between the command line and the stages is here, in :func:`run_command`: a command's
validated config is passed to its stage's library function as keyword arguments of the same
names (``make_catalog(**config.fields())``), and the result goes to the command's ``show``
function, which prints it. The stages never import the config models; only the commands that
compose others (``demo``, ``workflow``) and, for now, ``mock`` are given the config itself.

Errors: a :class:`~hicatalog.errors.HicatalogError` (a problem the user can fix) is printed as
one line, its parameters written as this command's flags (:func:`user_message`), and the
command exits 2 for a :class:`~hicatalog.errors.ConfigError`, 1 for any other kind. Every other
exception is a bug: it is not caught, so Python prints its traceback and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from hicatalog import __version__
from hicatalog.config import (
    BuildCatalogConfig,
    CalibrateConfig,
    DemoConfig,
    EnvironmentConfig,
    EvaluateConfig,
    ExportConfig,
    FetchConfig,
    JobConfig,
    LabelsConfig,
    MockConfig,
    TrainConfig,
    VacuumConfig,
    WorkflowConfig,
    flag,
    load_config,
    option_tables,
)
from hicatalog.errors import ConfigError, HicatalogError

log = logging.getLogger("hicatalog")


@dataclass(frozen=True)
class Command:
    """One subcommand.

    ``call``: ``"module:function"``, the stage's library function; it is given the config's
    fields as keyword arguments of the same names (or, with ``passes_config``, the config
    itself) and imported only when its command runs. ``show``: ``"module:function"`` given
    ``(result, params)`` (what ``call`` returned and the keyword arguments it was given), which
    prints what the command prints and may return an exit status or raise a
    :class:`~hicatalog.errors.HicatalogError`; without it the command prints nothing more and
    exits with ``call``'s result (0 when it returned None). ``positional``: fields given as
    positional arguments.
    """

    name: str
    config: type[JobConfig]
    call: str
    help: str
    positional: tuple[str, ...] = ()
    show: str | None = None
    passes_config: bool = False


COMMANDS: tuple[Command, ...] = (
    Command("mock", MockConfig, "hicatalog.mock.survey:generate_mock",
            "render the embedded mock survey (cutouts, tracers, truth)",
            show="hicatalog.mock.survey:show_result"),
    Command("train", TrainConfig, "hicatalog.training.trainer:train",
            "train the regression / PR / gas-class CNN with Ray Train",
            show="hicatalog.training.trainer:show_result"),
    Command("build-catalog", BuildCatalogConfig, "hicatalog.catalog.build:make_catalog",
            "stream cutouts through both models into the Parquet H I catalog",
            show="hicatalog.catalog.build:show_result"),
    Command("calibrate", CalibrateConfig, "hicatalog.catalog.calibrate:calibrate",
            "fit intervals calibrated within groups and p_detect on a labelled calibration set",
            show="hicatalog.catalog.calibrate:show_result"),
    Command("export", ExportConfig, "hicatalog.catalog.export:export_catalog",
            "write a selection (cone, box, p_cnn cut, columns) of a published catalog version "
            "as FITS or VOTable", show="hicatalog.catalog.export:show_result"),
    Command("vacuum", VacuumConfig, "hicatalog.catalog.commit:vacuum",
            "delete the files of removed versions after the grace period, and of publishes "
            "that never committed", positional=("catalog",),
            show="hicatalog.catalog.commit:show_vacuum"),
    Command("environment", EnvironmentConfig, "hicatalog.catalog.environment:make_environment",
            "compute D5, Sigma5 and delta5 for targets against tracers",
            show="hicatalog.catalog.environment:show_result"),
    Command("evaluate", EvaluateConfig, "hicatalog.evaluation.analyses:evaluate",
            "metrics, PR-cut tables, environment splits, Grad-CAM, baselines, report",
            positional=("analysis",), show="hicatalog.evaluation.analyses:show_result"),
    Command("labels", LabelsConfig, "hicatalog.surveys.labels:make_labels",
            "read the public catalogs, run the paper's selections, write labels.parquet",
            show="hicatalog.surveys.labels:show_result"),
    Command("fetch", FetchConfig, "hicatalog.cutouts.fetch:fetch_cutouts",
            "fetch cutouts from SDSS SkyServer or the Legacy Survey viewer",
            show="hicatalog.cutouts.fetch:show_result"),
    Command("demo", DemoConfig, "hicatalog.demo:main",
            "the whole path on the mock: mock, train, build catalog, evaluate", passes_config=True),
    Command("workflow", WorkflowConfig, "hicatalog.workflow:main",
            "the paper's design from the public catalogs: labels, fetch, train, evaluate, "
            "survey-wide catalog; resumable, incremental", passes_config=True),
)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """Strip Optional[...] from an annotation; return (inner, was_optional)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _help(field: Any, default: Any) -> str:
    inner, _ = _unwrap(field.annotation)
    desc = field.description or ""
    if typing.get_origin(inner) is typing.Literal:
        desc = (desc + " " if desc else "") + "{" + ",".join(map(str, typing.get_args(inner))) + "}"
    if field.is_required():
        desc += " (required)"
    elif not re.search(r"\bdefault\b", desc):  # a help that says its default keeps its words
        desc += f" (default: {default})"
    return desc.strip()


def _ordered_fields(model: type[BaseModel]) -> list[str]:
    """The fields of ``model``, its own (a job's inputs and outputs) before those it takes
    from the options models it derives from, for a help that starts with what the job is."""
    order = [n for cls in model.__mro__ for n in getattr(cls, "__annotations__", {})
             if n in model.model_fields]
    return list(dict.fromkeys(order))


def _add_model_arguments(parser: argparse.ArgumentParser, model: type[BaseModel],
                         positional: tuple[str, ...] = (), prefix: str = "",
                         defaults: BaseModel | None = None) -> None:
    """One flag per field of ``model`` (``--image-size``), and one per key of each options
    table (``--train.epochs``, under a heading of its own); ``dest`` is the key's whole path.
    ``defaults``: the table's default value (its own defaults may differ from the model's)."""
    tables = option_tables(model)
    for name in _ordered_fields(model):
        if name in tables:
            continue
        field = model.model_fields[name]
        key = prefix + name
        default = (getattr(defaults, name) if defaults is not None
                   else None if field.is_required() else field.get_default(call_default_factory=True))
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": _help(field, default)}
        if name in positional:
            parser.add_argument(name, nargs="?", **kwargs)
            continue
        kwargs["dest"] = key
        inner, _ = _unwrap(field.annotation)
        origin = typing.get_origin(inner)
        if inner is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin in (list, tuple):
            n_args = typing.get_args(inner)
            kwargs["nargs"] = len(n_args) if origin is tuple and Ellipsis not in n_args else "+"
            kwargs["metavar"] = name.upper()
        else:
            kwargs["metavar"] = name.upper()
        parser.add_argument(flag(key), **kwargs)
    for name, table in tables.items():
        field = model.model_fields[name]
        group = parser.add_argument_group(f"{prefix}{name} options", field.description)
        _add_model_arguments(group, table, prefix=f"{prefix}{name}.",
                             defaults=field.get_default(call_default_factory=True))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hicatalog",
        description="H I mass-fraction catalogs from optical galaxy cutouts (Wu 2020), on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"hicatalog {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        p.add_argument("--config", metavar="FILE", help="TOML file with this command's keys")
        _add_model_arguments(p, cmd.config, cmd.positional)
        p.set_defaults(_command=cmd)
    return parser


def _resolve(target: str) -> Callable[..., Any]:
    """The function named by ``"module:function"`` (imported only when its command runs)."""
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def run_command(cmd: Command, config: JobConfig) -> int:
    """Run ``cmd`` with its validated ``config``: its stage's library function with the
    config's fields as keyword arguments (or the config itself, with ``passes_config``), then
    its ``show`` function on the result. Returns the exit status."""
    if cmd.passes_config:
        return int(_resolve(cmd.call)(config) or 0)
    params = config.fields()
    result = _resolve(cmd.call)(**params)
    if cmd.show is None:
        return int(result or 0)
    return int(_resolve(cmd.show)(result, params) or 0)


def _key_of(name: str, exc: HicatalogError, cmd: Command) -> str | None:
    """The config key of parameter ``name`` of ``exc`` for ``cmd``: a field of its config, or
    of the first of the options tables the error names (``exc.tables``, e.g. a workflow step's
    ``("train", "regression")``) that has it; None when ``cmd`` has no flag for it."""
    for table in getattr(exc, "tables", ()):
        sub = option_tables(cmd.config).get(table)
        if sub is not None and name in sub.model_fields:
            return f"{table}.{name}"
    if name in cmd.config.model_fields and name not in cmd.positional:
        return name
    return None


def user_message(exc: HicatalogError, cmd: Command) -> str:
    """The message of ``exc`` with each parameter it names (``exc.params``) written as
    ``cmd``'s flag: ``partition_rows=150`` -> ``--partition-rows 150``, ``gpu=True`` ->
    ``--gpu``, ``gpu=False`` -> ``--no-gpu``, a bare ``partition_rows`` -> ``--partition-rows``
    (whole words only, never inside a path or quotes); a parameter of an options table the
    error names becomes that table's flag (``--train.epochs``). Parameters the command has no
    flag for are left as they are."""
    text = str(exc)
    for name in exc.params:
        key = _key_of(name, exc, cmd)
        if key is None:
            continue
        word = rf"(?<![\w./'\"-]){re.escape(name)}"
        text = re.sub(word + r"=True\b", flag(key), text)
        text = re.sub(word + r"=False\b", "--no-" + flag(key)[2:], text)
        text = re.sub(word + "=", flag(key) + " ", text)
        text = re.sub(word + r"(?![\w/'\"-]|\.\w)", flag(key), text)
    return text


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else (logging.INFO if verbosity < 2 else logging.DEBUG)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    setup_logging(args.verbose + 1)
    cmd: Command = args._command
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", "verbose", "_command")}
    try:
        config = load_config(cmd.config, args.config, overrides)
    except ConfigError as exc:
        print(f"hicatalog {cmd.name}: {exc}", file=sys.stderr)
        return 2
    try:
        return run_command(cmd, config)
    except HicatalogError as exc:
        # What the user can fix gets one clear line, not a traceback (-vv shows it); any other
        # exception is a bug and keeps its traceback.
        log.debug("error detail", exc_info=True)
        print(f"hicatalog {cmd.name}: error: {user_message(exc, cmd)}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
