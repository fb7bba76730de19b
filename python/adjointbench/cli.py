"""Command-line entry point ``adjointbench``.

Sub-commands live one per module in ``adjointbench.commands`` (each defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``) and are discovered, so a new command is a
new module.  Bad input anywhere becomes one line on stderr and exit status 2.

The CLI runs with the core install (NumPy only): a command module imports at its top only what
the core has; whatever an extra brings (pandas, matplotlib, scipy, tqdm, pytest, and the
modules built on them: ``report``'s tables, ``experiments``) is imported inside ``run()``,
after ``require(...)`` has said, in one line and exit status 2, which extra is missing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import commands

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class MissingExtra(UsageError):
    """A command needs a module of an optional extra that is not installed."""


#: optional modules -> the extra of pyproject.toml that installs them (the first named where
#: several do: a command that needs matplotlib for another extra says so in its require call)
EXTRA_OF = {
    "pandas": "bench", "matplotlib": "bench", "pytest": "bench", "pytest_benchmark": "bench",
    "scipy": "experiments", "tqdm": "experiments", "torch": "torch", "jax": "jax", "numba": "numba",
}


def missing_extra(command: str, module: str, extra: str | None = None) -> MissingExtra:
    extra = extra or EXTRA_OF.get(module, "all")
    return MissingExtra(f"'adjointbench {command}' needs {module}: pip install 'adjointbench[{extra}]'")


def require(command: str, extra: str, *modules: str) -> None:
    """Raise MissingExtra for the first of ``modules`` that is not installed (checked without
    importing it)."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise missing_extra(command, module, extra)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise UsageError(f"{self.prog}: {message}")


def _load_commands():
    mods = [importlib.import_module(f"{commands.__name__}.{m.name}") for m in pkgutil.iter_modules(commands.__path__)]
    return sorted((m for m in mods if hasattr(m, "NAME")), key=lambda m: getattr(m, "ORDER", 50))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="adjointbench", description="4D-Var gradients of Lorenz (1963): verified, timed, tabulated.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for mod in _load_commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        return int(args._run(args) or 0)
    except ModuleNotFoundError as e:
        # an optional module a command's require() did not name (one experiment's own needs,
        # say): the same one line; any other missing module is a bug and keeps its traceback
        top = (e.name or "").split(".")[0]
        if args is None or top not in EXTRA_OF:
            raise
        print(f"error: {missing_extra(args.command, top)}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:
        msg = " ".join(str(e).split())  # one line, whatever the message held
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
