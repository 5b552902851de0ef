"""``python -m bench`` (or ``vaebench``): measure a training loop's variants, re-render a run,
compare benchmark files, check a change for regressions.

This module only parses, validates and dispatches; torch is imported by the command that
needs it, so ``--help`` and ``compare`` answer at once. Bad input ends with one ``error:``
line and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
from collections.abc import Sequence

from bench.commands import COMMANDS, module
from bench.errors import UsageError
from plumbing.files import OutInUse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module(name).add_parser(subparsers)
    return parser


def take_compare(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``run --compare A B`` taken out before argparse, which would read a command line that
    starts with ``-m`` as an option of its own."""
    if len(argv) < 2 or argv[0] != "run" or "--compare" not in argv:
        return argv, None
    i = argv.index("--compare")
    script = next((k for k, a in enumerate(argv) if a == "-m" or a.endswith(".py")), len(argv))
    if script < i or len(argv) < i + 3:
        return argv, None  # the script's own --compare, or incomplete: argparse says so
    return argv[:i] + argv[i + 3:], argv[i + 1:i + 3]


RENAMED = {"cost": "instructions"}  # old command -> new, kept for one release


_CRASH_OUT: list[object] = []  # the real stderr, kept open for faulthandler


def _on_crash() -> None:
    """A crash inside a native library (torch, a profiler, the user's extension) prints the
    Python stack that led to it, instead of a bare "Segmentation fault" (one run in about a
    dozen here died so, with no line to go on). Written to a copy of the real stderr: while a
    script runs, fd 2 points at the chatter filter's file, which dies with the process."""
    if not _CRASH_OUT:
        _CRASH_OUT.append(os.fdopen(os.dup(2), "w"))
    faulthandler.enable(file=_CRASH_OUT[0])  # type: ignore[arg-type]
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")  # the processes it starts: --try's, the ranks


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    rest, compare = take_compare(list(sys.argv[1:] if argv is None else argv))
    if rest and rest[0] in RENAMED:
        print(f"warning: `{rest[0]}` is deprecated and goes in the next release; use "
              f"`{RENAMED[rest[0]]}`", file=sys.stderr)
        rest = [RENAMED[rest[0]], *rest[1:]]
    args = parser.parse_args(rest)
    if compare is not None:
        args.compare = compare
    _on_crash()
    try:
        return int(module(args.command).main(args))
    except (UsageError, OutInUse) as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the earlier reports were left as they were", file=sys.stderr)
        return 130
