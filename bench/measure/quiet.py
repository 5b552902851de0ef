"""Keep torch.profiler's C++ chatter out of the terminal, and nothing else.

This torch build prints ``USDT: ... profiler_start`` / ``profiler_stop`` (and, with no GPU,
``gpuGetDeviceCount failed``; with memory profiling, a notice about blocks allocated before it
started) straight to file descriptor 2 whenever a profiler starts or
stops -- dozens of lines per run, from C++, so Python's warning filters cannot reach them.
:func:`without_profiler_chatter` points fd 2 at a temporary file around a profiled region
and then writes back every line that is not such chatter.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
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


@contextmanager
def without_profiler_chatter() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = strip_chatter(tmp.read())
            if kept:
                os.write(2, kept)
