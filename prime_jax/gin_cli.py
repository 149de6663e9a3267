"""Gin command-line plumbing shared by the CLIs (train, evaluate).

``--gin`` repeats: a value ending in ``.gin`` is a config file, anything else a
binding; ``--gin.NAME=VALUE`` is a binding too. Files are parsed first, then
bindings, so the command line wins. Config files are found as given, then in
the repository's ``configs/`` folder, then in the installed copy under
``<prefix>/share/prime_jax/configs``.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from collections.abc import Sequence

import gin

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
CONFIG_DIRS = (PACKAGE_DIR.parent / "configs", pathlib.Path(sys.prefix) / "share" / "prime_jax" / "configs")


class GinError(ValueError):
    """A gin file or binding that cannot be used; the message names it."""


def _not_a_search_miss(record: logging.LogRecord) -> bool:
    """False for gin's "Path not found" ERROR log: gin tries an ``include`` as a Python-package
    path before its search paths and logs the miss even when a search path then finds the file
    (a missing file still fails, as ``GinError``)."""
    return not (record.module == "resource_reader" and record.getMessage().startswith("Path not found"))


def split_gin_args(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--gin.NAME=VALUE`` into ``--gin NAME=VALUE`` so argparse can read it."""
    out = []
    for arg in argv:
        if arg.startswith("--gin.") and "=" in arg:
            out += ["--gin", arg[len("--gin."):]]
        else:
            out.append(arg)
    return out


def add_gin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gin", action="append", default=[], metavar="FILE_OR_BINDING",
        help="a .gin config file (found as given, in configs/, or in the installed configs) or a "
             "binding such as 'prime_jax.rl.trainer.train.seed = 1'; repeatable; files are parsed first, then "
             "bindings. '--gin.NAME=VALUE' is a binding too.")


def find_config(name: str) -> pathlib.Path:
    """Resolve a config file name (see module docstring)."""
    path = pathlib.Path(name)
    if path.is_file():
        return path
    for folder in CONFIG_DIRS:
        if (folder / name).is_file():
            return folder / name
        if (folder / path.name).is_file():
            return folder / path.name
    raise GinError(f"gin config file {name!r} not found (looked in ., "
                   f"{', '.join(str(d) for d in CONFIG_DIRS)})")


def parse(values: Sequence[str]) -> tuple[list[pathlib.Path], list[str]]:
    """Parse gin files then bindings; raise ``GinError`` naming the bad file or binding."""
    files = [find_config(v) for v in values if v.endswith(".gin")]
    bindings = [v for v in values if not v.endswith(".gin")]
    for folder in CONFIG_DIRS:
        if folder.is_dir():
            gin.add_config_file_search_path(str(folder))
    if _not_a_search_miss not in logging.getLogger().filters:
        logging.getLogger().addFilter(_not_a_search_miss)
    for path in files:
        try:
            gin.parse_config_file(str(path))
        except Exception as error:
            raise GinError(f"gin file {path}: {error}") from error
    for binding in bindings:
        try:
            gin.parse_config(binding)
        except Exception as error:
            raise GinError(f"gin binding {binding!r}: {error}") from error
    gin.finalize()
    return files, bindings


def configure(values: Sequence[str], *, workdir: str | None, workdir_binding: str,
              example: str) -> pathlib.Path:
    """Parse ``--gin`` values (see ``parse``) and return the run directory: ``workdir`` if given,
    else the value bound to ``workdir_binding``. Raise ``GinError`` saying what is missing."""
    if not values:
        raise GinError(f"give at least one --gin config file (e.g. {example})")
    parse(values)
    if workdir:
        return pathlib.Path(workdir)
    try:
        bound = gin.query_parameter(workdir_binding)
    except ValueError:
        bound = None
    if not bound:
        raise GinError(f"give --workdir DIR or bind {workdir_binding} in a gin file")
    return pathlib.Path(bound)


def write_config(path: pathlib.Path, operative: bool = False) -> None:
    """Write the full (or operative) gin config to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(gin.operative_config_str() if operative else gin.config_str())
