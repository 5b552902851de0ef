"""argparse types with one-line messages; no torch here, so a CLI's --help stays instant."""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind: type, what: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_int(text: str) -> int:
    value = int(_number(text, int, "an integer"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(_number(text, int, "an integer"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(_number(text, float, "a number"))
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


SEED_MAX = 2**32 - 1  # NumPy's and the DataLoader's seeds must fit in 32 bits


def seed_int(text: str) -> int:
    value = int(_number(text, int, "an integer"))
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**32 - 1 ({SEED_MAX}), got {value}")
    return value


def comma_list(text: str) -> list[str]:
    """``a, b,c`` -> ``["a", "b", "c"]`` (empty parts dropped)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def option_value(words: list[str], name: str) -> str | None:
    """The value of ``name VALUE`` or ``name=VALUE`` among command-line ``words`` (None: absent):
    for reading the options a user passes through to another tool (torchrun's)."""
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None
