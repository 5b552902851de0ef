"""Files written whole or not at all, and the lock that keeps two runs out of one --out."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutInUse(ValueError):
    """Another run is writing into the same --out."""


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed onto ``path`` when the block ends
    without an error, removed in every case. A full disk or Ctrl-C half-way then leaves the
    earlier file (or none) and no partial one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
    return path


@contextmanager
def out_lock(out: Path, name: str = ".vaebench.lock") -> Iterator[None]:
    """Hold ``out/name`` for the whole block: a second run into the same folder is refused at
    once (OutInUse, naming the holder) instead of mixing its files with this one's. The lock
    file goes when the block ends."""
    import fcntl  # POSIX only; imported here so that importing this module works everywhere

    path = out / name
    handle = open(path, "a+")  # noqa: SIM115 -- held for the whole block
    owner = False
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise OutInUse(f"--out {out} is in use by another run ({holder}); wait for it to "
                           "finish or pass another --out") from None
        owner = True
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        if owner:
            path.unlink(missing_ok=True)
        handle.close()
