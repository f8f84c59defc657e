"""The ``camlens`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Exit codes: 0 success; 1 some inputs could not be read (the others are done), or an output
could not be written (a read-only folder, a full disk); 2 bad usage (unknown model, class, layer
or method, missing weights, nothing to explain, an --out that is a file or holds another run).

A new command is a module here with ``add_parser(commands)`` (its options, ending in
``set_defaults(run=run)``) and ``run(args) -> int``, listed in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import bias, discrimination, evaluate, explain, layers, models, neurons, robustness, serve, trust
from .common import EXAMPLES, EXIT_INPUT_FAILED, EXIT_USAGE, UsageError, check_counts

__all__ = ["main", "parser", "COMMANDS"]

COMMANDS = (explain, evaluate, robustness, bias, trust, discrimination, neurons, serve, models, layers)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="camlens", description="Class activation maps for CNNs: explain what a network looks at.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    main.add_argument("--version", action="version", version=f"camlens {__version__}")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return main


def main(argv: list[str] | None = None) -> int:
    arguments = parser()
    args = arguments.parse_args(argv)
    try:
        check_counts(args)
        return args.run(args)
    except UsageError as error:
        print(f"camlens: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # a folder that cannot be written, a full disk: what was written stays
        where = f" {error.filename}" if error.filename else ""
        print(f"camlens: error: cannot write{where}: {error.strerror or error}", file=sys.stderr)
        return EXIT_INPUT_FAILED
