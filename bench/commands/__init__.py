"""The commands, one module each, holding its parser (``add_parser``) and its function (``main``).

``COMMANDS`` is the dispatch table the CLI builds its parser from, in the order ``--help``
lists them. A command module imports nothing heavy at its top (torch is imported by ``main``),
so ``--help`` answers at once.
"""

from __future__ import annotations

import importlib
from types import ModuleType

COMMANDS = ("profile", "run", "report", "compare", "regress", "instructions", "history")


def module(name: str) -> ModuleType:
    return importlib.import_module(f"bench.commands.{name}")
