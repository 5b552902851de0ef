"""``python -m bench compare``: placeholder wiring, filled in by the regression work."""

from __future__ import annotations

import argparse


def add_compare_parser(commands: argparse._SubParsersAction) -> None:
    return None


def run_compare(args: argparse.Namespace) -> int:
    raise NotImplementedError
