"""One logging set-up: records to the stderr of the moment and, when asked, to a run's log file."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _CurrentStderr(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment, so a second run in one process (or a captured
    one) does not write into a stream that is gone."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(log_file: Path | None = None, *, hold: bool = False) -> None:
    """Log INFO and up to stderr and, when given, to ``log_file`` (replacing an earlier run's).

    ``hold``: the log file does not exist yet (its folder is made only once the input is
    checked); records are held in memory and written into it first when it is given, so the
    log has the run from its start. An earlier run's file handler in this process is closed:
    a second run must not write into the first's log.
    """
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not any(isinstance(h, _CurrentStderr) for h in root.handlers):
        console = _CurrentStderr()
        console.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(console)
    early = [h for h in root.handlers if isinstance(h, _Held)]
    for old in _run_handlers(root):
        root.removeHandler(old)
        if old not in early or log_file is None:
            old.close()
    if log_file is None:
        if hold:
            root.addHandler(_Held(capacity=10_000, flushLevel=logging.CRITICAL + 1))
        return
    handler = _RunFile(log_file, mode="w")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    for h in early:  # what was said before the file existed goes in first
        h.setTarget(handler)
        h.flush()
        h.close()
    root.addHandler(handler)


def close_logging() -> None:
    """Close the run's log file (and any held records): the run is over."""
    root = logging.getLogger()
    for h in _run_handlers(root):
        root.removeHandler(h)
        h.close()


class _Held(logging.handlers.MemoryHandler):
    """Records said before the run's log file exists."""


class _RunFile(logging.FileHandler):
    """The run's log file."""


def _run_handlers(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if isinstance(h, _Held | _RunFile)]
