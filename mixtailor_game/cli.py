"""``mixtailor-game``: the command-line entry point; it only dispatches.

Sub-commands: ``train``, ``compare``, ``plot`` (:mod:`mixtailor_game.train.cli`)
and ``game`` (:mod:`mixtailor_game.game.cli`). User mistakes (bad flags,
values outside their range, missing files) end with a one-line message and
exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from . import __version__
from ._checks import os_error_message
from .game.cli import register as register_game
from .train.cli import register as register_train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixtailor-game",
        description="MixTailor: robust aggregation against informed, tailored attacks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register_train(sub)
    register_game(sub)
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the sub-command, return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"{parser.prog} {args.command}"

    def one_line(message, category, filename, lineno, file=None, line=None):
        # warnings (a resumed run's, a checkpoint's) as one line, not with a line of source
        print(f"{prefix}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            return int(args.func(args) or 0)
    except OSError as exc:  # an --out that is a file, a missing parent, ...
        print(f"{prefix}: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted (rerun the same command to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
