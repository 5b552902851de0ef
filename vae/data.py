"""MNIST from its IDX files through torchvision, or a generated MNIST-shaped stand-in.

Real MNIST lives in ``<root>/MNIST/raw`` (torchvision's layout). Without it, and without a
network, ``dataset="auto"`` generates digit images (glyphs of Pillow's bundled font, with
random affine jitter, stroke width and intensity; deterministic by seed) and writes them *as
IDX files in the same layout* under ``<root>/synthetic/MNIST/raw``. Both are then read by the
very same ``torchvision.datasets.MNIST`` code, so the pipelines see identical structures.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from plumbing.files import atomic_path
from plumbing.progress import bar as progress_bar
from vae.choices import DATASETS
from vae.idx import IdxError, check_idx, idx_writer

log = logging.getLogger(__name__)

Dataset = Literal["auto", "mnist", "synthetic"]
SYNTHETIC_SUBDIR = "synthetic"
SYNTHETIC_SIZES = {"train": 60_000, "t10k": 10_000}
SYNTHETIC_SEED = 1234


class DataError(RuntimeError):
    """The data set cannot be used as asked; the message names the file and the fix."""


@dataclass(frozen=True)
class MnistSplit:
    """One split of MNIST (or its generated stand-in), as NumPy arrays."""

    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64
    source: str  # "mnist" or "synthetic"
    root: Path  # the folder torchvision read it from
    train: bool

    def __len__(self) -> int:
        return len(self.images)

    @property
    def description(self) -> str:
        split = "train" if self.train else "test"
        return f"{self.source} {split} ({len(self)} images from {self.root})"


def raw_files(root: Path, train: bool) -> tuple[Path, Path]:
    """Paths of the (images, labels) IDX files torchvision reads for one split."""
    prefix = "train" if train else "t10k"
    raw = root / "MNIST" / "raw"
    return raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"


def has_real_mnist(root: Path) -> bool:
    """True when ``root`` holds MNIST's raw files (unpacked or as the original ``.gz``)."""
    return all(
        p.is_file() or p.with_name(p.name + ".gz").is_file()
        for train in (True, False)
        for p in raw_files(root, train)
    )


def _ensure_dir(path: Path, what: str) -> None:
    if path.exists() and not path.is_dir():
        raise DataError(f"--data-dir {path} is a file, not a folder: pass a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise DataError(
            f"cannot write {what} into {path} ({exc.strerror or exc}): "
            "pass a writable --data-dir"
        ) from exc


# --------------------------------------------------------------------------- generation

def _glyph_templates(canvas: int = 56) -> tuple[torch.Tensor, torch.Tensor]:
    """Render each digit in a few stroke widths; returns (templates, digit of each).

    Each glyph is scaled to fit a box of 5/7 of the canvas and centred, like MNIST's
    20x20-in-28x28 digits. Pillow's bundled default font keeps the result identical on
    every machine (no system fonts involved).
    """
    box = canvas * 5 // 7
    images, digits = [], []
    for size in (48, 64):
        font = ImageFont.load_default(size=size)
        for stroke in (0, 2, 4):
            for digit in range(10):
                big = Image.new("L", (size * 2, size * 2), 0)
                ImageDraw.Draw(big).text(
                    (size // 2, size // 4), str(digit), fill=255, font=font,
                    stroke_width=stroke, stroke_fill=255,
                )
                glyph = big.crop(big.getbbox())
                scale = box / max(glyph.size)
                glyph = glyph.resize(
                    (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                    Image.Resampling.LANCZOS,
                )
                tile = Image.new("L", (canvas, canvas), 0)
                tile.paste(glyph, ((canvas - glyph.width) // 2, (canvas - glyph.height) // 2))
                images.append(np.asarray(tile, dtype=np.float32) / 255.0)
                digits.append(digit)
    templates = torch.from_numpy(np.stack(images)).unsqueeze(1)  # (T, 1, canvas, canvas)
    return templates, torch.tensor(digits)


def generate_digits(n: int, *, seed: int, chunk: int = 5000, progress: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` MNIST-shaped digit images: (n, 28, 28) uint8 and (n,) uint8 labels."""
    made = list(digit_chunks(n, seed=seed, chunk=chunk, progress=progress))
    return np.concatenate([i for i, _ in made]), np.concatenate([lab for _, lab in made])


def digit_chunks(n: int, *, seed: int, chunk: int = 5000, progress: bool = True
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`generate_digits` ``chunk`` images at a time: (m, 28, 28) uint8 images and (m,)
    uint8 labels (the same images, in the same order, for the same seed)."""
    templates, template_digit = _glyph_templates()
    g = torch.Generator().manual_seed(seed)
    bar = progress_bar(total=n, desc="generating digits", unit="img", disable=not progress, leave=False)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        pick = torch.randint(len(templates), (m,), generator=g)
        angle = (torch.rand(m, generator=g) - 0.5) * (2 * np.pi * 30 / 360)  # +-15 degrees
        scale = 0.8 + 0.35 * torch.rand(m, generator=g)  # inverse zoom: 0.8 (big) .. 1.15
        shear = (torch.rand(m, generator=g) - 0.5) * 0.5
        shift = (torch.rand(m, 2, generator=g) - 0.5) * 0.16
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = torch.stack(
            [torch.stack([cos, -sin + shear, shift[:, 0]], 1),
             torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )  # (m, 2, 3): output grid -> template coordinates
        grid = F.affine_grid(theta, [m, 1, 56, 56], align_corners=False)
        warped = F.grid_sample(templates[pick], grid, align_corners=False)  # (m, 1, 56, 56)
        small = F.avg_pool2d(warped, 2).squeeze(1)  # (m, 28, 28), anti-aliased
        intensity = 0.75 + 0.25 * torch.rand(m, 1, 1, generator=g)
        noise = 0.04 * torch.randn(m, 28, 28, generator=g)
        pixels = (small * intensity / small.amax((1, 2), keepdim=True).clamp_min(1e-6)) + noise
        pixels = torch.where(small > 0.02, pixels, torch.zeros(()))  # MNIST's background is 0
        bar.update(m)
        yield ((pixels.clamp(0, 1) * 255).round().to(torch.uint8).numpy(),  # (m, 28, 28)
               template_digit[pick].to(torch.uint8).numpy())  # (m,)
    bar.close()


def write_synthetic_mnist(root: Path, *, sizes: dict[str, int] | None = None,
                          seed: int = SYNTHETIC_SEED, progress: bool = True) -> Path:
    """Write a generated MNIST-shaped data set as IDX files under ``root/MNIST/raw``.

    ``sizes`` maps ``"train"``/``"t10k"`` to image counts (default 60,000 / 10,000).
    Returns ``root``. Files are written atomically, so an interrupted run leaves no half file.
    """
    sizes = {**SYNTHETIC_SIZES, **(sizes or {})}
    raw = root / "MNIST" / "raw"
    _ensure_dir(raw, "the generated data set")
    for offset, (prefix, n) in enumerate(sizes.items()):
        if n < 1:
            raise ValueError(f"synthetic split {prefix!r} needs at least one image, got {n}")
        # opened first, written chunk by chunk: a full disk stops it at the first chunk that does
        # not fit, not after the whole set was made
        try:
            with idx_writer(raw / f"{prefix}-images-idx3-ubyte", (n, 28, 28)) as images, \
                    idx_writer(raw / f"{prefix}-labels-idx1-ubyte", (n,)) as labels:
                for chunk_images, chunk_labels in digit_chunks(n, seed=seed + offset, progress=progress):
                    images.write(chunk_images.tobytes())
                    labels.write(chunk_labels.tobytes())
        except OSError as exc:
            raise DataError(f"cannot write the generated data set into {raw} ({exc.strerror or exc}); "
                            "free some space or pass another --data-dir") from None
    (root / "generated.json").write_text(json.dumps({"seed": seed, "sizes": sizes}) + "\n")
    return root


# --------------------------------------------------------------------------- loading

def _check_split(root: Path, train: bool, fix: str) -> None:
    images_path, labels_path = raw_files(root, train)
    try:
        n_images = check_idx(images_path, 3)[0]
        n_labels = check_idx(labels_path, 1)[0]
    except IdxError as exc:
        raise DataError(f"{exc}; {fix}") from exc
    if n_images != n_labels:
        raise DataError(
            f"{images_path} holds {n_images} images but {labels_path} holds {n_labels} labels; {fix}"
        )


def _resolve(root: Path, dataset: str, download: bool) -> tuple[str, Path]:
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    if root.exists() and not root.is_dir():
        raise DataError(f"--data-dir {root} is a file, not a folder: pass a folder path")
    if dataset == "mnist" or (dataset == "auto" and (download or has_real_mnist(root))):
        return "mnist", root
    return "synthetic", root / SYNTHETIC_SUBDIR


def _gunzip(gz: Path, path: Path) -> None:
    """Unpack ``gz`` into ``path`` whole or not at all: a damaged archive or a full disk leaves
    no half file (which would break the next run even after the .gz is replaced)."""
    import gzip
    import shutil
    import zlib

    try:
        with atomic_path(path) as tmp, gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{gz} is damaged or cut short ({exc}); download it again, or delete it "
                        "to use the generated data set") from None
    except OSError as exc:
        raise DataError(f"cannot unpack {gz} into {path.parent} ({exc.strerror or exc}); free some "
                        "space or pass another --data-dir") from None


def _prepare_mnist(root: Path, download: bool) -> None:
    from torchvision.datasets import MNIST

    for train in (True, False):
        for path in raw_files(root, train):
            gz = path.with_name(path.name + ".gz")
            if not path.is_file() and gz.is_file():
                _ensure_dir(path.parent, "unpacked MNIST files")
                _gunzip(gz, path)
    if download and not has_real_mnist(root):
        _ensure_dir(root, "the MNIST download")
        try:
            MNIST(str(root), train=True, download=True)
        except Exception as exc:  # network errors come in many types
            raise DataError(
                f"downloading MNIST into {root} failed ({exc}); without a network, "
                "drop --download to use the generated data set"
            ) from exc


def load_mnist(root: str | Path, *, train: bool, dataset: str = "auto", download: bool = False,
               limit: int | None = None, progress: bool = True) -> MnistSplit:
    """Load one split of MNIST (``dataset="mnist"``) or its generated stand-in.

    ``dataset="auto"`` takes real MNIST when its files are in ``root/MNIST/raw`` (or
    ``download`` is set), and otherwise the generated set, created once and cached under
    ``root/synthetic``. ``limit`` keeps the first ``limit`` samples. Raises
    :class:`DataError` with a one-line message naming the file and the fix.
    """
    from torchvision.datasets import MNIST

    root = Path(root)
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be a positive number of samples, got {limit}")
    source, data_root = _resolve(root, dataset, download)
    if source == "mnist":
        _prepare_mnist(root, download)
        fix = (f"put MNIST's four raw files in {root / 'MNIST' / 'raw'}, pass --download "
               "on a machine with a network, or use --dataset synthetic")
    else:
        if not all(p.is_file() for t in (True, False) for p in raw_files(data_root, t)):
            log.info("No MNIST files in %s: generating an MNIST-shaped data set in %s (once)",
                     root / "MNIST" / "raw", data_root)
            write_synthetic_mnist(data_root, progress=progress)
        fix = f"delete {data_root} and it will be generated again"
    for either in (True, False):  # torchvision insists on all four files
        _check_split(data_root, either, fix)
    try:
        ds = MNIST(str(data_root), train=train, download=False)
    except Exception as exc:  # torchvision raises RuntimeError/AssertionError on bad files
        raise DataError(f"torchvision could not read MNIST from {data_root}: {exc}; {fix}") from exc
    images = ds.data.numpy()  # (N, 28, 28) uint8
    labels = ds.targets.numpy().astype(np.int64)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    split = MnistSplit(images=images, labels=labels, source=source, root=data_root, train=train)
    log.info("Data set: %s", split.description)
    return split
