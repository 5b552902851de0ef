"""The IDX file format that MNIST ships in, written and checked here, read by torchvision.

Format (big-endian): two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions, one uint32 per dimension, then the data. ``train-images-idx3-ubyte`` holds
(N, 28, 28) and ``train-labels-idx1-ubyte`` holds (N,).

torchvision's reader asserts on a bad header and fails deep inside ``torch.frombuffer`` on a
short file; :func:`check_idx` looks first so the user gets a message that names the file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from plumbing.files import atomic_path

UBYTE = 0x08


class IdxError(ValueError):
    """An IDX file is missing, truncated or not what its name says."""


@contextmanager
def idx_writer(path: Path, shape: tuple[int, ...]) -> Iterator[BinaryIO]:
    """An IDX file of uint8 ``shape`` being written: its header written, the caller writes the
    data (in chunks, as it is made). Atomic: a temporary file renamed into place at the end, so
    a full disk, an error or Ctrl-C leaves no half file; a full disk is found at the first chunk
    that does not fit, not after everything was made."""
    header = struct.pack(">BBBB", 0, 0, UBYTE, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header)
        yield fh


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX, atomically (a temporary file renamed into place)."""
    if array.dtype != np.uint8:
        raise TypeError(f"IDX writer takes uint8 arrays, got {array.dtype}")
    with idx_writer(path, array.shape) as fh:
        fh.write(np.ascontiguousarray(array).tobytes())


def check_idx(path: Path, ndim: int) -> tuple[int, ...]:
    """Return the shape in ``path``'s header after checking the file is whole.

    Raises :class:`IdxError` naming the file when it is missing, has a bad header, the wrong
    number of dimensions, or fewer (or more) data bytes than the header promises.
    """
    if not path.is_file():
        raise IdxError(f"{path}: file not found")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
        if len(head) < 4:
            raise IdxError(f"{path}: truncated ({size} bytes, not even an IDX header)")
        zero1, zero2, dtype, dims = struct.unpack(">BBBB", head)
        if zero1 or zero2 or dtype != UBYTE:
            raise IdxError(f"{path}: not an unsigned-byte IDX file (bad magic {head.hex()})")
        if dims != ndim:
            raise IdxError(f"{path}: expected {ndim} dimensions, header says {dims}")
        raw = fh.read(4 * dims)
        if len(raw) < 4 * dims:
            raise IdxError(f"{path}: truncated header")
        shape = struct.unpack(f">{dims}I", raw)
    expected = 4 + 4 * dims + int(np.prod(shape))
    if size != expected:
        raise IdxError(
            f"{path}: {size} bytes, but its header {tuple(shape)} needs {expected} "
            f"({'truncated' if size < expected else 'trailing data'})"
        )
    return tuple(shape)
