"""The ``hicatalog`` command: each subcommand validates one config and calls one stage.

Flags are generated from the job's config model (:mod:`hicatalog.config`), so a flag, a key in
``--config FILE`` and a field of the model are the same thing: ``--image-size 64`` on the
command line is ``image_size = 64`` in the TOML file.

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

from hicatalog import __version__
from hicatalog.config import (
    BuildCatalogConfig,
    DemoConfig,
    EnvironmentConfig,
    EvaluateConfig,
    FetchConfig,
    JobConfig,
    LabelsConfig,
    MockConfig,
    TrainConfig,
    WorkflowConfig,
    load_config,
)
from hicatalog.errors import ConfigError, HicatalogError

log = logging.getLogger("hicatalog")


@dataclass(frozen=True)
class Command:
    name: str
    config: type[JobConfig]
    target: str  # "module:function" taking the validated config, returning an exit code or None
    help: str
    positional: tuple[str, ...] = ()  # fields given as positional arguments


COMMANDS: tuple[Command, ...] = (
    Command("mock", MockConfig, "hicatalog.mock.survey:main",
            "render the embedded mock survey (cutouts, tracers, truth)"),
    Command("train", TrainConfig, "hicatalog.training.trainer:main",
            "train the regression / PR / gas-class CNN with Ray Train"),
    Command("build-catalog", BuildCatalogConfig, "hicatalog.catalog.build:main",
            "stream cutouts through both models into the Parquet H I catalog"),
    Command("environment", EnvironmentConfig, "hicatalog.catalog.environment:main",
            "compute D5, Sigma5 and delta5 for targets against tracers"),
    Command("evaluate", EvaluateConfig, "hicatalog.evaluation.analyses:main",
            "metrics, PR-cut tables, environment splits, Grad-CAM, baselines, report",
            positional=("analysis",)),
    Command("labels", LabelsConfig, "hicatalog.surveys.labels:main",
            "read the public catalogs, run the paper's selections, write labels.parquet"),
    Command("fetch", FetchConfig, "hicatalog.cutouts.fetch:main",
            "fetch cutouts from SDSS SkyServer or the Legacy Survey viewer"),
    Command("demo", DemoConfig, "hicatalog.demo:main",
            "the whole path on the mock: mock, train, build catalog, evaluate"),
    Command("workflow", WorkflowConfig, "hicatalog.workflow:main",
            "the paper's design from the public catalogs: labels, fetch, train, evaluate, "
            "survey-wide catalog; resumable, incremental"),
)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """Strip Optional[...] from an annotation; return (inner, was_optional)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _add_model_arguments(parser: argparse.ArgumentParser, cmd: Command) -> None:
    for name, field in cmd.config.model_fields.items():
        inner, _ = _unwrap(field.annotation)
        origin = typing.get_origin(inner)
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": name}
        desc = field.description or ""
        if typing.get_origin(inner) is typing.Literal:
            desc = (desc + " " if desc else "") + "{" + ",".join(map(str, typing.get_args(inner))) + "}"
        if not field.is_required():
            desc += f" (default: {field.get_default(call_default_factory=True)})"
        else:
            desc += " (required)"
        kwargs["help"] = desc.strip()
        if name in cmd.positional:
            parser.add_argument(name, nargs="?", default=argparse.SUPPRESS, help=kwargs["help"])
            continue
        flag = "--" + name.replace("_", "-")
        if inner is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin in (list, tuple):
            n_args = typing.get_args(inner)
            kwargs["nargs"] = len(n_args) if origin is tuple and Ellipsis not in n_args else "+"
            kwargs["metavar"] = name.upper()
        else:
            kwargs["metavar"] = name.upper()
        parser.add_argument(flag, **kwargs)


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
        _add_model_arguments(p, cmd)
        p.set_defaults(_command=cmd)
    return parser


def _resolve(target: str) -> Callable[[JobConfig], int | None]:
    """The stage function named by ``"module:function"`` (imported only when its command runs)."""
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def flag(name: str) -> str:
    """The command-line flag of config field ``name``: ``partition_rows`` -> ``--partition-rows``."""
    return "--" + name.replace("_", "-")


def user_message(exc: HicatalogError, cmd: Command) -> str:
    """The message of ``exc`` with each parameter it names (``exc.params``) written as
    ``cmd``'s flag: ``partition_rows=150`` -> ``--partition-rows 150``, ``gpu=True`` ->
    ``--gpu``, ``gpu=False`` -> ``--no-gpu``, a bare ``partition_rows`` -> ``--partition-rows``
    (whole words only, never inside a path or quotes). Parameters the command has no flag for are left
    as they are."""
    text = str(exc)
    for name in exc.params:
        if name not in cmd.config.model_fields or name in cmd.positional:
            continue
        word = rf"(?<![\w./'\"-]){re.escape(name)}"
        text = re.sub(word + r"=True\b", flag(name), text)
        text = re.sub(word + r"=False\b", "--no-" + flag(name)[2:], text)
        text = re.sub(word + "=", flag(name) + " ", text)
        text = re.sub(word + r"(?![\w/'\"-]|\.\w)", flag(name), text)
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
    overrides = {
        k: v for k, v in vars(args).items() if k in cmd.config.model_fields
    }
    try:
        config = load_config(cmd.config, args.config, overrides)
    except ConfigError as exc:
        print(f"hicatalog {cmd.name}: {exc}", file=sys.stderr)
        return 2
    func = _resolve(cmd.target)
    try:
        rc = func(config)
    except HicatalogError as exc:
        # What the user can fix gets one clear line, not a traceback (-vv shows it); any other
        # exception is a bug and keeps its traceback.
        log.debug("error detail", exc_info=True)
        print(f"hicatalog {cmd.name}: error: {user_message(exc, cmd)}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
