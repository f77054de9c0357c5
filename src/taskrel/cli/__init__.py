"""The ``taskrel`` command line: a thin shell over the library.

One module per subcommand (each has ``register(subparsers)``); this package only
assembles the parser and runs the command. Validation errors print one line and exit
with code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from ..exceptions import TaskrelInputError
from . import experiments as cli_experiments
from . import extract as cli_extract
from . import rank as cli_rank
from . import relate as cli_relate
from . import reproduce as cli_reproduce
from . import scores as cli_scores

__all__ = ["main", "build_parser", "OneLineParser", "EXIT_USAGE"]

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} "
                              "--help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``taskrel`` parser with every subcommand."""
    p = OneLineParser(
        prog="taskrel",
        description="Will this pre-trained encoder transfer to my task, and why?",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    for module in (cli_rank, cli_relate, cli_experiments, cli_extract, cli_scores,
                   cli_reproduce):
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``taskrel`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.simplefilter("default")
            return int(args.func(args))
    except (TaskrelInputError, FileNotFoundError) as exc:
        if args.debug:
            raise
        print(f"taskrel: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("taskrel: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
