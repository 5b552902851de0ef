"""Progress bars that suit where they are written: live bars on a terminal, and on anything else
(CI, a pipe, ``nohup``, a log file) a plain line when a stage starts, one at most every
``LOG_EVERY_S`` seconds while it runs, and one when it ends -- never the ``\\r``-joined frames
that fill a log with hundreds of lines."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm.auto import tqdm

LOG_EVERY_S = 10.0


class LineWriter:
    """A stream for tqdm that turns its ``\\r``-redrawn frames into whole lines, each written
    once (a frame equal to the last line is dropped)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> int:
        for piece in text.replace("\r", "\n").split("\n"):
            line = piece.strip()
            if line and line != self.last:
                self.stream.write(line + "\n")
                self.last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def bar(*, stream: TextIO | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(**kwargs)`` on ``stream`` (stderr): live on a terminal, else in plain lines."""
    stream = stream if stream is not None else sys.stderr
    if is_terminal(stream):
        return tqdm(file=stream, **kwargs)
    kwargs.setdefault("mininterval", LOG_EVERY_S)
    kwargs.setdefault("maxinterval", max(LOG_EVERY_S, kwargs["mininterval"]))
    return tqdm(file=LineWriter(stream), ascii=True, ncols=100, dynamic_ncols=False, **kwargs)
