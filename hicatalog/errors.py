"""The errors a user can fix, under one base class: :class:`HicatalogError`.

Everything hicatalog raises for a problem the user can fix (a parameter, an input, the
output location, the Ray cluster, a missing optional package) is a :class:`HicatalogError`;
anything else that escapes (a bare ``ValueError``, ``KeyError``, ``TypeError`` ...) is a bug
and keeps its traceback. The ``hicatalog`` command prints a ``HicatalogError`` as one line
(exit 2 for a :class:`ConfigError`, 1 otherwise) and lets every other exception through.

The hierarchy (each kind also derives from the built-in exception it replaced, as
scikit-learn's ``NotFittedError(ValueError, AttributeError)`` does, so ``except ValueError``
in older callers still catches it)::

    HicatalogError
    ├── ConfigError (ValueError)          a parameter: missing, unknown, wrong type, out of
    │                                     range, inconsistent with another or with the data
    ├── InputError (ValueError)           an input is missing, unreadable or unusable
    │   ├── InputNotFoundError (FileNotFoundError)   no file/directory/object there
    │   ├── SchemaError                   a table does not match its contract (schemas/)
    │   ├── CatalogFormatError            a public survey catalog file is malformed
    │   ├── IdError                       an object_id column cannot hold exact ids
    │   ├── ModelError                    a model directory is not the model needed
    │   └── ImageDecodeError              one cutout cannot be decoded (a per-row status)
    ├── OutputError (ValueError)          the output location holds something the
    │                                     operation must not overwrite
    ├── ClusterError (RuntimeError)       the Ray cluster cannot run the operation
    │   └── RayClusterUnreachable         ... because nothing answers at its address
    └── DependencyError (ImportError)     an optional package is not installed

Messages speak of parameters by their Python names (``partition_rows``), never of
command-line flags: an error lists the parameters it names in ``params``, and the command
line maps them to its flags when it prints the message (:func:`hicatalog.cli.user_message`).
The kinds live here, in one module; the modules that raised them before
(:mod:`hicatalog.config`, :mod:`hicatalog.schemas`, :mod:`hicatalog.runtime`, ...) re-export
theirs, so their old import paths keep working.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "HicatalogError",
    "ConfigError",
    "InputError",
    "InputNotFoundError",
    "SchemaError",
    "CatalogFormatError",
    "IdError",
    "ModelError",
    "ImageDecodeError",
    "OutputError",
    "WriteConflict",
    "ClusterError",
    "RayClusterUnreachable",
    "DependencyError",
]


class HicatalogError(Exception):
    """A problem the user can fix; the message says what was expected and where.

    ``params``: the names of the parameters the message refers to (``("partition_rows",)``);
    the command line prints each as its flag (``--partition-rows``).
    """

    def __init__(self, message: str, *, params: Iterable[str] = ()):
        super().__init__(message)
        self.params: tuple[str, ...] = tuple(params)


class ConfigError(HicatalogError, ValueError):
    """A parameter is missing, unknown, of the wrong type or out of range, or its value does
    not fit another parameter or the data it is applied to (e.g. ``partition_rows`` below
    the rows of one dense pixel). The command line exits with status 2."""


class InputError(HicatalogError, ValueError):
    """An input (a file, a directory, a table, a model) is missing, cannot be read, or does
    not hold what the operation needs (no rows, no matching ids, the wrong survey)."""


class InputNotFoundError(InputError, FileNotFoundError):
    """No file, directory or object at an input path (also a ``FileNotFoundError``)."""


class SchemaError(InputError):
    """A table does not match its contract (missing column, wrong type, empty, duplicates)."""


class CatalogFormatError(InputError):
    """A public survey catalog file is not in the format expected (missing columns,
    unparsable values, misaligned companion files)."""


class IdError(InputError):
    """An ``object_id`` column cannot hold exact ids (floating point, empty, out of range)."""


class ModelError(InputError):
    """A model directory is not the model the operation needs (its task, survey, cutout size
    or channels differ), or its card and weights do not agree."""


class ImageDecodeError(InputError):
    """One cutout cannot be decoded; ``status`` is the per-row status it becomes (e.g.
    ``'truncated_image'``), so a bad image is a row of the output, never a failed job."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class OutputError(HicatalogError, ValueError):
    """The output location holds something the operation must not overwrite (e.g. a
    catalog of another build); the message names the ways out."""


class WriteConflict(OutputError):
    """A conditional write lost: the object it would create exists, or the one it would
    replace changed since it was read (another writer got there first). The caller re-reads
    and decides (retry, rebase, give up); :mod:`hicatalog.storage` raises it."""


class ClusterError(HicatalogError, RuntimeError):
    """The Ray cluster cannot run the operation (no GPU, too few CPUs for the actors asked
    for)."""


class RayClusterUnreachable(ClusterError):
    """The cluster Ray would join does not answer (one line: the address, where it came
    from, and the way out)."""


class DependencyError(HicatalogError, ImportError):
    """An optional package the operation needs is not installed; the message says how to
    install it."""
