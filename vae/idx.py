"""The IDX file format that MNIST ships in, written and checked here, read by torchvision.

Format (big-endian): two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions, one uint32 per dimension, then the data. ``train-images-idx3-ubyte`` holds
(N, 28, 28) and ``train-labels-idx1-ubyte`` holds (N,).

torchvision's reader asserts on a bad header and fails deep inside ``torch.frombuffer`` on a
short file; :func:`check_idx` looks first so the user gets a message that names the file.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from plumbing.files import atomic_path

UBYTE = 0x08


class IdxError(ValueError):
    """An IDX file is missing, truncated or not what its name says."""


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX, atomically (a temporary file renamed into place)."""
    if array.dtype != np.uint8:
        raise TypeError(f"IDX writer takes uint8 arrays, got {array.dtype}")
    header = struct.pack(">BBBB", 0, 0, UBYTE, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a full disk or Ctrl-C: no half file
        fh.write(header)
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
