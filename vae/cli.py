"""``python -m vae train``: the course VAE on MNIST through any pipeline of the ladder.

Every argument is checked before anything is written to ``--out``; bad input ends with a
one-line ``error:`` message and exit code 2, never a traceback. This module imports no torch
at the top: ``--help`` and argument errors answer at once.

Exit codes: 0 done, 2 bad input, 3 training stopped on a non-finite loss, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.util
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from plumbing.argtypes import non_negative_int, positive_float, positive_int, seed_int
from plumbing.devices import DEVICES
from plumbing.files import OutInUse, out_lock
from plumbing.logs import close_logging, setup_logging
from vae.choices import (
    DATALOADER_PIPELINES,
    DATASETS,
    EXTRAS,
    LOGGERS,
    PIPELINE_NAMES,
    PROFILERS,
    TRAINERS,
)

log = logging.getLogger("vae")
NON_FINITE, INTERRUPTED = 3, 130
# What a run writes into --out: --overwrite removes exactly these, nothing a user put there.
RUN_FILES = ("train.log", "tb", "orig_data.png", "reconstructions.png", "generated_samples.png",
             "checkpoints", "profiler", "wandb")
LOCK = ".vae-train.lock"


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
                    "and TensorBoard events (tb/) into --out. Exit codes: 0 done, 2 bad input, "
                    "3 stopped on a non-finite loss, 130 interrupted.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--pipeline", choices=PIPELINE_NAMES, default="optimized",
                       help="data pipeline of the ladder (optimized = resident)")
    train.add_argument("--epochs", type=positive_int, default=5)
    train.add_argument("--batch-size", type=positive_int, default=100)
    train.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    train.add_argument("--device", choices=DEVICES, default="auto",
                       help="auto picks CUDA when present")
    train.add_argument("--seed", type=seed_int, default=0, help="0 to 2**32 - 1")
    train.add_argument("--threads", type=positive_int, default=None,
                       help="torch intra-op threads (default: torch's choice)")
    train.add_argument("--out", type=Path, default=None,
                       help="output folder (default: runs/<timestamp>)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out (its files, TensorBoard events included)")
    train.add_argument("--optimizer-impl", choices=("default", "foreach", "fused"), default="default",
                       help="Adam's implementation: torch's default (a for-loop on the CPU), "
                            "multi-tensor foreach, or one fused kernel")
    train.add_argument("--compile", action="store_true",
                       help="torch.compile forward+loss and the optimizer update (first step slow)")
    train.add_argument("--cuda-graphs", action="store_true",
                       help="capture them as CUDA graphs (torch.compile mode reduce-overhead; CUDA only)")
    train.add_argument("--num-workers", type=non_negative_int, default=0,
                       help="DataLoader worker processes (naive and tensor pipelines only)")
    train.add_argument("--trainer", choices=TRAINERS, default="plain",
                       help="plain: the course's loop; lightning: lightning.Trainer with "
                            "ModelCheckpoint and EarlyStopping on val_loss (extra [lightning])")
    train.add_argument("--patience", type=positive_int, default=3,
                       help="lightning: epochs without a better val_loss before EarlyStopping stops")
    train.add_argument("--profiler", choices=PROFILERS, default="none",
                       help="lightning: its own profiler, written into OUT/profiler/ (advanced: "
                            ".prof files for snakeviz; pytorch: traces for TensorBoard)")
    train.add_argument("--logger", choices=LOGGERS, default="tensorboard",
                       help="where numbers and images go; wandb runs offline into OUT/wandb "
                            "without an API key (extra [wandb])")
    train.add_argument("--pdb", action="store_true",
                       help="on an error, open the post-mortem debugger where it happened "
                            "(like python -m pdb -c continue)")
    train.add_argument("--detect-anomaly", action="store_true",
                       help="autograd anomaly detection: name the operation whose backward made "
                            "a NaN (slow; for debugging)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_data_arguments(train)
    return parser


class OutError(ValueError):
    """--out cannot take this run; the message says why and what to do."""


WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO)


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, that holds someone else's files, or an earlier run
    (unless --overwrite)."""
    if out.exists() and not out.is_dir():
        raise OutError(f"--out {out} is a file; pass a folder path")
    if out.is_dir():
        entries = [p.name for p in out.iterdir() if p.name != LOCK]
        if entries and "train.log" not in entries:
            shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
            raise OutError(f"--out {out} holds files that are not a training run ({shown}); "
                             "pass a new or empty folder")
        if "train.log" in entries and not overwrite:
            raise OutError(f"--out {out} already holds a training run; pass another --out "
                             "or --overwrite to replace it")
    parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not parent.is_dir():
        raise OutError(f"--out {out}: {parent} is a file, not a folder")


def remove_previous_run(out: Path) -> list[str]:
    """--overwrite: the earlier run's files go (all of them: its TensorBoard events too)."""
    removed = []
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


class _Fail:
    """``parser.error`` without the usage block: the message alone, then exit code 2."""

    def __init__(self, prog: str):
        self.prog = prog

    def error(self, message: str) -> None:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _check_arguments(args: argparse.Namespace, parser: _Fail) -> None:
    """What argparse alone cannot check; no torch needed."""
    if args.limit is not None and args.limit < args.batch_size:
        parser.error(f"--limit {args.limit} is smaller than one batch (--batch-size "
                     f"{args.batch_size}); use a limit of at least {args.batch_size}")
    if args.num_workers and args.pipeline not in DATALOADER_PIPELINES:
        parser.error(f"--num-workers applies to the DataLoader pipelines (naive, tensor), not to "
                     f"{args.pipeline!r}")
    if args.trainer != "lightning":
        for flag, value, default in (("--profiler", args.profiler, "none"),
                                     ("--patience", args.patience, 3)):
            if value != default:
                parser.error(f"{flag} belongs to the Lightning trainer: add --trainer lightning")
    elif args.compile or args.cuda_graphs:
        parser.error("--compile/--cuda-graphs are for the plain trainer; Lightning compiles with "
                     "its own settings")
    wanted = ["lightning"] if args.trainer == "lightning" else []
    wanted += ["wandb"] if args.logger in ("wandb", "both") else []
    for module in wanted:
        if importlib.util.find_spec(module) is None:
            parser.error(f"{module} is not installed: pip install -e '.[{EXTRAS[module]}]' "
                         f"(or pip install {module})")


def run_train(args: argparse.Namespace, parser: _Fail) -> int:
    _check_arguments(args, parser)
    setup_logging(hold=True)  # held in memory until train.log exists
    # torch, torchvision and tensorboard load here, after the arguments were checked
    from plumbing.devices import DeviceError, resolve_device
    from vae.data import DataError, load_mnist

    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        parser.error(str(exc))
    if args.cuda_graphs and device.type != "cuda":
        parser.error("--cuda-graphs needs a CUDA device (graphs replay GPU kernels); use --compile "
                     "on the CPU")
    out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    try:
        check_out_dir(out, args.overwrite)
    except OutError as exc:
        parser.error(str(exc))
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
    try:
        with out_lock(out, LOCK):
            check_out_dir(out, args.overwrite)  # again, now that no one else can write here
            removed = remove_previous_run(out) if args.overwrite else []
            setup_logging(out / "train.log")
            if removed:
                log.info("--overwrite: removed the earlier run's %s", ", ".join(removed))
            return _train(args, device, train, test, out, progress)
    except (OutError, OutInUse) as exc:
        parser.error(str(exc))
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        log.error("stopped: cannot write into %s (%s); the files written so far are kept", out,
                  exc.strerror or exc)
        return 2
    finally:
        close_logging()


def _train(args: argparse.Namespace, device, train, test, out: Path, progress: bool) -> int:  # type: ignore[no-untyped-def]
    import torch

    from vae.fit import TrainConfig
    from vae.guard import NonFiniteLoss

    config = TrainConfig(pipeline=args.pipeline, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, threads=args.threads,
                         optimizer_impl=args.optimizer_impl, num_workers=args.num_workers,
                         compile="cudagraphs" if args.cuda_graphs else "step" if args.compile else "none")
    log.info("Run: %s trainer, %s -> %s (logger: %s)", args.trainer, config, out, args.logger)
    from tqdm.contrib.logging import logging_redirect_tqdm

    anomaly = torch.autograd.detect_anomaly(check_nan=True) if args.detect_anomaly \
        else contextlib.nullcontext()
    try:
        with logging_redirect_tqdm(), anomaly:
            if args.trainer == "lightning":
                from vae.lightning_fit import fit_lightning

                fit_lightning(config, train, test, device, out, progress=progress, logger=args.logger,
                              patience=args.patience, profiler=args.profiler)
            else:
                from vae.fit import fit

                fit(config, train, test, device, out, progress=progress, logger=args.logger)
        if args.logger in ("tensorboard", "both"):
            log.info("Done. Open the curves with: tensorboard --logdir %s", out.parent)
        else:
            log.info("Done. The curves are in the W&B run under %s", out / "wandb")
        return 0
    except KeyboardInterrupt:
        log.warning("Interrupted by the user; the files written so far in %s are kept", out)
        return INTERRUPTED
    except NonFiniteLoss as exc:
        log.error("stopped: %s. The files written so far in %s are kept.", exc, out)
        if args.pdb:
            _post_mortem(exc)
        return NON_FINITE
    except Exception as exc:
        if args.detect_anomaly and isinstance(exc, RuntimeError) and "nan values" in str(exc):
            # anomaly mode names the backward op; the forward trace was printed above it
            log.error("stopped: %s (autograd anomaly detection; the forward call that made it "
                      "is in the warning above)", str(exc).splitlines()[0])
            if args.pdb:
                _post_mortem(exc)
            return NON_FINITE
        if args.pdb:
            log.exception("error: %s; opening the debugger", exc)
            _post_mortem(exc)
            return 1
        raise


def _post_mortem(exc: BaseException) -> None:
    """Open pdb where ``exc`` was raised, as ``python -m pdb -c continue`` does."""
    import pdb
    import traceback

    traceback.print_exception(exc)
    pdb.post_mortem(exc.__traceback__)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return run_train(args, _Fail(f"{parser.prog} {args.command}"))
    except KeyboardInterrupt:
        print("interrupted; the files written so far are kept", file=sys.stderr)
        return INTERRUPTED
