"""``python -m vae train``: the course VAE on MNIST through any pipeline of the ladder.

Every argument is checked before anything is written to ``--out``; bad input ends with a
one-line ``error:`` message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vae.argtypes import non_negative_int, positive_float, positive_int
from vae.data import DATASETS, DataError, load_mnist
from vae.device import DEVICES, DeviceError, resolve_device
from vae.pipelines import PIPELINES

log = logging.getLogger("vae")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--data-dir, --dataset, --download, --limit: shared by every command that reads MNIST."""
    parser.add_argument("--data-dir", type=Path, default=Path("data"),
                        help="folder with MNIST/raw/*-ubyte (torchvision layout); the generated "
                             "set is cached in DATA_DIR/synthetic (default: %(default)s)")
    parser.add_argument("--dataset", choices=DATASETS, default="auto",
                        help="auto: real MNIST when its files are present, else a generated "
                             "MNIST-shaped set (default: %(default)s)")
    parser.add_argument("--download", action="store_true",
                        help="let torchvision download MNIST (needs a network)")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="use only the first LIMIT training samples (a small debug set)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vae", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train", help="train the VAE and write image grids, logs and TensorBoard events",
        description="Train the course VAE (784-400-20, Adam, BCE-sum + KL) and write "
                    "orig_data.png, reconstructions.png, generated_samples.png, train.log "
                    "and TensorBoard events (tb/) into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--pipeline", choices=list(PIPELINES), default="optimized",
                       help="data pipeline of the ladder (optimized = resident)")
    train.add_argument("--epochs", type=positive_int, default=5)
    train.add_argument("--batch-size", type=positive_int, default=100)
    train.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    train.add_argument("--device", choices=DEVICES, default="auto",
                       help="auto picks CUDA when present")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=positive_int, default=None,
                       help="torch intra-op threads (default: torch's choice)")
    train.add_argument("--out", type=Path, default=None,
                       help="output folder (default: runs/<timestamp>)")
    train.add_argument("--overwrite", action="store_true",
                       help="allow --out to hold an earlier run, whose files are replaced")
    train.add_argument("--optimizer-impl", choices=("default", "foreach", "fused"), default="default",
                       help="Adam's implementation: torch's default (a for-loop on the CPU), "
                            "multi-tensor foreach, or one fused kernel")
    train.add_argument("--compile", action="store_true",
                       help="torch.compile forward+loss and the optimizer update (first step slow)")
    train.add_argument("--cuda-graphs", action="store_true",
                       help="capture them as CUDA graphs (torch.compile mode reduce-overhead; CUDA only)")
    train.add_argument("--num-workers", type=non_negative_int, default=0,
                       help="DataLoader worker processes (naive and tensor pipelines only)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_data_arguments(train)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment (not the one at set-up): a second run in one
    process, or a captured one, must not write into a stream that is gone."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(log_file: Path | None = None) -> None:
    """Log to stderr and, when given, to ``log_file`` -- replacing an earlier run's log file."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not any(getattr(h, "_vae", False) for h in root.handlers):
        console = _StderrHandler()
        console.setFormatter(logging.Formatter(LOG_FORMAT))
        console._vae = True  # type: ignore[attr-defined]
        root.addHandler(console)
    for old in [h for h in root.handlers if getattr(h, "_vae_file", False)]:
        root.removeHandler(old)  # a second run in one process must not write into the first's log
        old.close()
    if log_file is not None:
        handler = logging.FileHandler(log_file, mode="w")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._vae_file = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, or that holds an earlier run (unless --overwrite)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; pass a folder path")
    if out.is_dir() and (out / "train.log").exists() and not overwrite:
        raise ValueError(f"--out {out} already holds a training run; pass another --out "
                         "or --overwrite to replace it")
    parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not parent.is_dir():
        raise ValueError(f"--out {out}: {parent} is a file, not a folder")


class _Fail:
    """``parser.error`` without the usage block: the message alone, then exit code 2."""

    def __init__(self, prog: str):
        self.prog = prog

    def error(self, message: str) -> None:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def run_train(args: argparse.Namespace, parser: _Fail) -> int:
    from vae.fit import TrainConfig, fit  # torch.utils.tensorboard is slow to import

    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        parser.error(str(exc))
    if args.limit is not None and args.limit < args.batch_size:
        parser.error(f"--limit {args.limit} is smaller than one batch (--batch-size "
                     f"{args.batch_size}); use a limit of at least {args.batch_size}")
    if args.cuda_graphs and device.type != "cuda":
        parser.error("--cuda-graphs needs a CUDA device (graphs replay GPU kernels); use --compile "
                     "on the CPU")
    if args.num_workers and not PIPELINES[args.pipeline].uses_dataloader:
        parser.error(f"--num-workers applies to the DataLoader pipelines (naive, tensor), not to "
                     f"{args.pipeline!r}")
    out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    try:
        check_out_dir(out, args.overwrite)
    except ValueError as exc:
        parser.error(str(exc))
    setup_logging()
    progress = not args.no_progress
    try:
        train = load_mnist(args.data_dir, train=True, dataset=args.dataset,
                           download=args.download, limit=args.limit, progress=progress)
        test = load_mnist(args.data_dir, train=False, dataset=args.dataset, progress=progress)
    except DataError as exc:
        parser.error(str(exc))
    if args.limit is not None and args.limit > len(train):
        log.warning("--limit %d is more than the %d training samples; using all of them",
                    args.limit, len(train))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"cannot create --out {out}: {exc.strerror or exc}")
    setup_logging(out / "train.log")
    config = TrainConfig(pipeline=args.pipeline, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, threads=args.threads,
                         optimizer_impl=args.optimizer_impl, num_workers=args.num_workers,
                         compile="cudagraphs" if args.cuda_graphs else "step" if args.compile else "none")
    log.info("Run: %s -> %s", config, out)
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():
            fit(config, train, test, device, out, progress=progress)
        log.info("Done. Open the curves with: tensorboard --logdir %s", out.parent)
    finally:
        setup_logging(None)  # close train.log
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run_train(args, _Fail(f"{parser.prog} {args.command}"))
    except KeyboardInterrupt:
        print("interrupted; the files written so far are kept", file=sys.stderr)
        return 130
