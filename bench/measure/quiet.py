"""Keep torch.profiler's C++ chatter out of the terminal, and nothing else.

This torch build prints ``USDT: ... profiler_start`` / ``profiler_stop`` (and, with no GPU,
``gpuGetDeviceCount failed``; with memory profiling, a notice about blocks allocated before it
started) straight to file descriptor 2 whenever a profiler starts or
stops -- dozens of lines per run, from C++, so Python's warning filters cannot reach them.
:func:`without_profiler_chatter` points fd 2 at a temporary file around a profiled region (a
whole observed script, under ``vaebench run``) and forwards every line that is not such chatter
to the real stderr as it comes, a fifth of a second late at most.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Each message runs from its marker to the end of its line. A progress bar redraws with "\r" and
# no newline, so a message can start in the middle of a line: it is cut out there, the bar kept.
CHATTER = re.compile(
    rb"USDT:[^\n]*\n?"
    rb"|[A-Z]+:\d{4}-\d\d-\d\d [^\n]*gpuGetDeviceCount failed[^\n]*\n?"
    rb"|\[W[^\n]*Memory block of unknown size was allocated before the profiling[^\n]*\n?")


def strip_chatter(data: bytes) -> bytes:
    return CHATTER.sub(b"", data)


class _Relay(threading.Thread):
    """Forwards what lands in the file, chatter removed, to the real stderr as it comes: a
    script's warnings and progress bars show while it runs, and a crash loses at most the last
    ``poll_s`` of them (the file is read through its own handle: the writers' offset is theirs)."""

    def __init__(self, path: str, out: int, poll_s: float):
        super().__init__(daemon=True)
        self.source, self.out, self.poll_s = open(path, "rb"), out, poll_s  # noqa: SIM115
        self.held = b""  # the tail after the last line or bar end: a message may be half written
        self.done = threading.Event()

    def forward(self, final: bool = False) -> None:
        data = self.held + self.source.read()
        cut = len(data) if final else max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        ready, self.held = data[:cut], data[cut:]
        kept = strip_chatter(ready)
        if kept:
            os.write(self.out, kept)

    def run(self) -> None:
        while not self.done.wait(self.poll_s):
            self.forward()

    def finish(self) -> None:
        self.done.set()
        self.join()
        self.forward(final=True)
        self.source.close()


@contextmanager
def without_profiler_chatter(poll_s: float = 0.2) -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.NamedTemporaryFile(prefix="vaebench-stderr-") as tmp:
        os.dup2(tmp.fileno(), 2)
        relay = _Relay(tmp.name, saved, poll_s)
        relay.start()
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            relay.finish()
            os.close(saved)
