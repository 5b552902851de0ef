"""Moved to :mod:`bench.capture.patches` (the capture applies the patches); this name is kept for
one release, so that a ``--fixes-from`` module written as ``from bench.fixes.patches import
patch`` still loads."""

from bench.capture.patches import PATCHES, apply, names, patch, restore, unknown

__all__ = ["PATCHES", "apply", "names", "patch", "restore", "unknown"]
