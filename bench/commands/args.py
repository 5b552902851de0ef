"""What several commands' parsers share: the deprecated-flag action and the decision rule's
options (``compare`` and ``regress``)."""

from __future__ import annotations

import argparse
import sys

from plumbing.argtypes import positive_float


class Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, except where there is none to show (None, a flag's
    False) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or "default:" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class Deprecated(argparse.Action):
    """An old flag name, kept working for one release: it says its new name once and stores
    into the new one's dest."""

    def __init__(self, option_strings, dest, new: str, **kwargs):  # type: ignore[no-untyped-def]
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        print(f"warning: {option_string} is deprecated and goes in the next release; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_rule_arguments(p: argparse.ArgumentParser) -> None:
    """The decision rule's knobs, shared by compare and regress."""
    p.add_argument("--threshold", type=float, default=0.05,
                   help="slowdown (fraction) a regression must exceed")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level of the U test")
    p.add_argument("--max-spread", type=float, default=0.25,
                   help="IQR/median above this on either side: the ratio's 95%% interval must "
                        "clear 1 + threshold, else the verdict is noisy")
    p.add_argument("--instructions-threshold", type=positive_float, default=0.01,
                   help="instruction counts (bench instructions) above 1 + this times the baseline's "
                        "are 'slower', a regression (unchanged code: steps within 0.01%%, small "
                        "fetches within ~0.4%%)")
    p.add_argument("--count-threshold", type=positive_float, dest="instructions_threshold",
                   action=Deprecated, new="--instructions-threshold")
    p.add_argument("--timing-only", action="store_true",
                   help="judge by the timings alone: the instruction counts neither fail a benchmark "
                        "nor resolve a noisy one (without Valgrind this is what happens anyway)")
