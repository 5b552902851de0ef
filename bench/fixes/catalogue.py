"""The fixes ``--try`` knows, each chosen (or skipped, with its reason) from what the baseline
process built and ran on: its DataLoaders and optimizers (with their options and call sites),
its outermost module, its device and threads.

An entry's ``propose(seen)`` returns the fixes to measure, or one line saying why none apply.
A :class:`Fix` names the patches of :mod:`bench.capture.patches` applied in the script's process,
its group (the combination takes at most one fix per group) and the edit that makes it
permanent, at the line of the script that built the object. A user's own entry is added with
:func:`register` in a module passed as ``--fixes-from MODULE``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bench.measure.result import Built, Measurement


@dataclass(frozen=True)
class Fix:
    name: str  # as the report names it: "num_workers=2"
    # loader | pin_memory | optimizer | threads | precision | memory_format | compile | a CUDA flag's
    # own | a user's own
    group: str
    patches: tuple[str, ...]  # applied in the script's process, in order
    edit: str  # what to change, where: "train.py:37: DataLoader(..., num_workers=2)"
    command: tuple[str, ...] = ()  # a side that runs another command line (run --compare's B)
    entry: str = ""  # the catalogue entry that proposed it ("bf16": what --fixes names)


@dataclass
class Seen:
    """What the baseline process showed."""

    loaders: list[Built] = field(default_factory=list)
    optimizers: list[Built] = field(default_factory=list)
    models: list[Built] = field(default_factory=list)
    device: str = "cpu"
    threads: int | None = None
    cores: int = 1  # the cores one process (one rank) may use
    nproc: int = 1  # processes sharing the machine's cores (torchrun's ranks on this node)

    @classmethod
    def of(cls, m: Measurement, nproc: int = 1) -> Seen:
        """What ``m`` (the script, or rank 0 of ``nproc`` on this node) showed; the machine's
        cores are shared out between the ranks."""
        built = m.process.built if m.process else []
        return cls(loaders=[b for b in built if b.kind == "DataLoader"],
                   optimizers=[b for b in built if b.kind == "optimizer"],
                   models=[b for b in built if b.kind == "model"], device=m.device,
                   threads=m.process.threads if m.process else None,
                   cores=max(1, (os.cpu_count() or 1) // max(nproc, 1)), nproc=max(nproc, 1))

    def on(self) -> str:
        """How the cores are counted, for a reason: "2 cores" or "1 core a rank (2 ranks)"."""
        plural = "s" if self.cores != 1 else ""
        return f"{self.cores} core{plural}" + (f" a rank ({self.nproc} ranks)" if self.nproc > 1 else "")


Proposal = list[Fix] | str


@dataclass(frozen=True)
class Entry:
    name: str
    propose: Callable[[Seen], Proposal]
    default: bool = True  # tried unless --fixes names others


def _at(b: Built) -> str:
    return f"{b.where}: " if b.where else ""


def _workers(seen: Seen) -> Proposal:
    if not seen.loaders:
        return "no DataLoader seen"
    loader = seen.loaders[0]
    have = int(loader.options.get("num_workers") or 0)
    if have >= seen.cores:
        return f"the loader already has {have} workers on {seen.on()}"
    values = sorted({n for n in (1, max(1, seen.cores // 2), seen.cores) if n > have})
    return [Fix(f"num_workers={n}", "loader", (f"num_workers={n}",),
                f"{_at(loader)}DataLoader(..., num_workers={n})") for n in values]


def _persistent(seen: Seen) -> Proposal:
    if not seen.loaders:
        return "no DataLoader seen"
    loader = seen.loaders[0]
    if loader.options.get("persistent_workers"):
        return "the loader's workers are already persistent"
    have = int(loader.options.get("num_workers") or 0)
    n = have or min(2, seen.cores)
    patches = ("persistent_workers",) if have else (f"num_workers={n}", "persistent_workers")
    return [Fix(f"num_workers={n}+persistent_workers", "loader", patches,
                f"{_at(loader)}DataLoader(..., num_workers={n}, persistent_workers=True)")]


def _takes(type_name: str, option: str) -> bool:
    import torch

    cls = getattr(torch.optim, type_name, None)
    return isinstance(cls, type) and option in inspect.signature(cls.__init__).parameters


def _optimizer(option: str) -> Callable[[Seen], Proposal]:
    def propose(seen: Seen) -> Proposal:
        if not seen.optimizers:
            return "no optimizer seen (the script updates its parameters by hand)"
        opt = seen.optimizers[0]
        if opt.options.get(option):
            return f"`{opt.type}` is already {option}"
        if not _takes(opt.type, option):
            return f"`{opt.type}` takes no `{option}` argument"
        # the patch sets it in every optimizer the script builds: the edit names each of them
        takes = [o for o in seen.optimizers if _takes(o.type, option) and not o.options.get(option)]
        return [Fix(f"{option}=True", "optimizer", (option,),
                    "; ".join(f"{_at(o)}torch.optim.{o.type}(..., {option}=True)" for o in takes))]
    return propose


def _threads(seen: Seen) -> Proposal:
    if seen.threads is None:
        return "the baseline's thread count was not recorded"
    if seen.threads >= seen.cores:
        return f"torch already uses all {seen.on()} ({seen.threads} threads)"
    return [Fix(f"set_num_threads({seen.cores})", "threads", (f"threads={seen.cores}",),
                f"torch.set_num_threads({seen.cores}) in place of the script's own thread setting, or at "
                "its start")]


def _model(seen: Seen) -> str:
    """The outermost model, named by its class and where the script built it (two models of one
    class, as a GAN's two Sequentials, are told apart by the line)."""
    if not seen.models:
        return ""
    m = seen.models[0]
    return f"{m.type} (called at {m.where})" if m.where else m.type


def _bf16(seen: Seen) -> Proposal:
    if not seen.models:
        return "no module's forward seen"
    return [Fix("bf16 autocast", "precision", ("bf16",),
                f"around the call of {_model(seen)}: with torch.autocast({seen.device!r}, "
                "dtype=torch.bfloat16): (its output .float() before the loss)")]


def _fp16(seen: Seen) -> Proposal:
    """fp16 autocast with a gradient scaler: tensor cores on a GPU; a CPU has no fp16 matmul
    units to gain from (bf16 is tried there)."""
    if seen.device != "cuda":
        return "CUDA only: the script ran on the CPU (bf16 is tried there)"
    if not seen.models:
        return "no module's forward seen"
    if not seen.optimizers:
        return "no optimizer seen: the gradient scaler steps through one"
    opt = seen.optimizers[0]
    if opt.type == "LBFGS":
        return "`LBFGS` steps with a closure, which a gradient scaler cannot scale"
    return [Fix("fp16 autocast+GradScaler", "precision", ("fp16",),
                f"around the call of {_model(seen)}: with torch.autocast('cuda', dtype=torch.float16): ...; "
                f"{_at(opt)}scaler = torch.amp.GradScaler('cuda'), then scaler.scale(loss).backward(), "
                "scaler.unscale_(optimizer) before clipping, scaler.step(optimizer), scaler.update()")]


def _compile(seen: Seen) -> Proposal:
    if not seen.models:
        return "no module's forward seen"
    return [Fix("torch.compile", "compile", ("compile",),
                f"after building {_model(seen)}: model.compile()")]


def _channels_last(seen: Seen) -> Proposal:
    """Convolutions over images in channels-last order: cuDNN's tensor-core kernels want it on a
    GPU, and oneDNN's convolutions on a CPU often do too -- measured, not assumed."""
    if not seen.models:
        return "no module's forward seen"
    convs = [m for m in seen.models if m.options.get("conv2d")]
    if not convs:
        return "no 2-D convolution in the model"
    return [Fix("channels_last", "memory_format", ("channels_last",),
                f"after building {convs[0].type}: model = model.to(memory_format=torch.channels_last); "
                "each batch: x = x.to(memory_format=torch.channels_last)")]


def _cuda(name: str, patch: str, edit: str) -> Callable[[Seen], Proposal]:
    def propose(seen: Seen) -> Proposal:
        if seen.device != "cuda":
            return "CUDA only: the script ran on the CPU"
        return [Fix(name, name, (patch,), edit)]
    return propose


def _pinned(seen: Seen) -> Proposal:
    if seen.device != "cuda":
        return "CUDA only: the script ran on the CPU"
    if not seen.loaders:
        return "no DataLoader seen"
    if seen.loaders[0].options.get("pin_memory"):
        return "the loader already pins its batches"
    return [Fix("pin_memory=True", "pin_memory", ("pin_memory",),
                f"{_at(seen.loaders[0])}DataLoader(..., pin_memory=True) and .to(device, non_blocking=True)")]


CATALOGUE: list[Entry] = [
    Entry("num_workers", _workers),
    # Its saving is the workers' start at each epoch: a window of steps inside an epoch does not
    # see it, so it is measured only when asked for (by processes spanning an epoch's start).
    Entry("persistent_workers", _persistent, default=False),
    Entry("pin_memory", _pinned),
    Entry("foreach", _optimizer("foreach")),
    Entry("fused", _optimizer("fused")),
    Entry("threads", _threads),
    Entry("bf16", _bf16),
    Entry("fp16", _fp16),
    Entry("channels_last", _channels_last),
    Entry("tf32", _cuda("tf32", "tf32",
                        "at the script's start: torch.backends.cuda.matmul.allow_tf32 = True")),
    Entry("cudnn_benchmark", _cuda("cudnn_benchmark", "cudnn_benchmark",
                                   "at the script's start: torch.backends.cudnn.benchmark = True")),
    # One compile per process costs tens of seconds on a small CPU: asked for by name.
    Entry("compile", _compile, default=False),
]


def register(entry: Entry) -> None:
    """Add a user's own entry (its patches registered with :func:`bench.capture.patches.patch`)."""
    CATALOGUE[:] = [e for e in CATALOGUE if e.name != entry.name] + [entry]


def names() -> list[str]:
    return [e.name for e in CATALOGUE]


def propose(seen: Seen, asked: list[str] | None = None) -> tuple[list[Fix], dict[str, str]]:
    """The fixes to measure and, by entry, why the others are skipped."""
    fixes: list[Fix] = []
    skipped: dict[str, str] = {}
    for entry in CATALOGUE:
        if asked is not None and entry.name not in asked:
            continue
        if asked is None and not entry.default:
            skipped[entry.name] = f"asked for by name only (--fixes {entry.name})"
            continue
        proposal = entry.propose(seen)
        if isinstance(proposal, str):
            skipped[entry.name] = proposal
        else:
            fixes += [replace(f, entry=entry.name) for f in proposal if f.name not in {g.name for g in fixes}]
    return fixes, skipped
