"""Switches: fixes turned on and off between two steps of the running script, so that ``--try``
measures each one step against step in the script's own process (:mod:`bench.capture.duet`).

A switch is made from what the script built -- its optimizers and the outermost modules its
steps call (:class:`Live`) -- once, at its first ``on()``; ``on()`` and ``off()`` are then
called between steps, outside every timed step. Switched off, the script's objects are as it
built them. Each is registered under the name of the patch (:mod:`bench.capture.patches`) that
applies the same fix at the start of a process: a fix whose every patch has a switch is measured
in place, the others (a DataLoader's workers: the loader is built once) in separate processes.

A user's own switch is registered the same way, next to its patch::

    @switch("my_fix")
    def my_fix(value, live):          # value: "N" of a patch named "my_fix=N", else None
        return Toggle(on=lambda: ..., off=lambda: ...)
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from bench.capture import patches as patching  # its PATCHES read when a switch is made (a plugin adds to it)
from bench.capture.patches import autocast_forward, convert_inputs, names, restore
from bench.capture.scaling import LossScaling


class Switch(Protocol):
    def on(self) -> None: ...

    def off(self) -> None: ...


@dataclass
class Toggle:
    """A switch from two callables: the simplest shape for a user's own."""

    on: Callable[[], None]
    off: Callable[[], None]


@dataclass
class Live:
    """The objects a script built, as they are now: weak references, so that holding them keeps
    nothing alive the script let go of."""

    _optimizers: list[weakref.ref[Any]] = field(default_factory=list)
    _modules: list[weakref.ref[Any]] = field(default_factory=list)
    _loaders: list[tuple[weakref.ref[Any], tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    building: bool = False  # a switch is making an object of its own: not the script's

    def add_loader(self, loader: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A DataLoader and the arguments it was built with (a twin is built from them)."""
        self._loaders.append((weakref.ref(loader), args, kwargs))

    @property
    def loaders(self) -> list[tuple[Any, tuple[Any, ...], dict[str, Any]]]:
        return [(r(), a, k) for r, a, k in self._loaders if r() is not None]

    def add_optimizer(self, optimizer: Any) -> None:
        self._optimizers.append(weakref.ref(optimizer))

    def add_module(self, module: Any) -> None:
        self._modules.append(weakref.ref(module))

    @property
    def optimizers(self) -> list[Any]:
        return [o for o in (r() for r in self._optimizers) if o is not None]

    @property
    def modules(self) -> list[torch.nn.Module]:
        """The outermost modules the steps called, first seen first (a loss module among them)."""
        return [m for m in (r() for r in self._modules) if m is not None]


Maker = Callable[[str | None, Live], Switch]
Window = Callable[[str | None], tuple[int, int]]
REGISTRY: dict[str, Maker] = {}
WINDOWS: dict[str, Window] = {}


def switch(name: str, window: Window | None = None) -> Callable[[Maker], Maker]:
    """Register ``make(value, live) -> Switch`` for the patch ``name`` (the plug-in point).

    ``window(value) -> (settle, steps)``: a switch whose effect lags (a loader's workers fill a
    queue of batches while the other side runs) is measured in windows of ``settle`` steps left
    out and ``steps`` timed, instead of single steps."""
    def register(make: Maker) -> Maker:
        REGISTRY[name] = make
        if window is not None:
            WINDOWS[name] = window
        return make
    return register


def window_of(patches: tuple[str, ...]) -> tuple[int, int]:
    """(steps left out, steps timed) of each window of a fix's switch: (0, 1) for most."""
    found = [WINDOWS[k](v) for k, v in names(patches) if k in WINDOWS]
    return (max(s for s, _ in found), max(n for _, n in found)) if found else (0, 1)


def switchable(patches: tuple[str, ...]) -> bool:
    """Can the fix made of these patches be switched between steps (every patch has a switch)?"""
    return bool(patches) and all(k in REGISTRY for k, _ in names(patches))


class Together:
    """Several switches as one (a fix of several patches, or the combination): on in order, off
    in reverse."""

    def __init__(self, parts: list[Switch]):
        self.parts = parts

    def on(self) -> None:
        for part in self.parts:
            part.on()

    def off(self) -> None:
        for part in reversed(self.parts):
            part.off()


def make(patches: tuple[str, ...], live: Live) -> Switch:
    made = [REGISTRY[k](v, live) for k, v in names(patches)]
    return made[0] if len(made) == 1 else Together(made)


class Nothing:
    """The A/A's switch: both sides are the script as it is."""

    def on(self) -> None:
        pass

    def off(self) -> None:
        pass


class OptimizerFlag:
    """``foreach``/``fused`` in every param group of every optimizer the script built that takes
    the flag: torch.optim reads the group's flags at each ``step()``. Where each state's ``step``
    counter lives follows ``torch.optim.Adam``'s rule (``_init_group``): on the parameter's
    device when fused or capturable, else on the CPU -- so on CUDA the counters move to the GPU
    at ``on()`` of ``fused`` and back at ``off()`` (those made while on included)."""

    def __init__(self, option: str, live: Live):
        self.option, self.live = option, live
        self.saved: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []

    def _takes(self, optimizer: Any) -> bool:
        return self.option in inspect.signature(type(optimizer).__init__).parameters

    def on(self) -> None:
        self.saved = []
        for opt in self.live.optimizers:
            if not self._takes(opt):
                continue
            for group in opt.param_groups:
                self.saved.append((opt, group, {k: group.get(k) for k in ("foreach", "fused")}))
                group[self.option] = True
                if self.option == "fused":
                    group["foreach"] = False  # exclusive
                    _place_steps(opt, group)

    def off(self) -> None:
        for opt, group, before in self.saved:
            group.update(before)
            if self.option == "fused":
                _place_steps(opt, group)
        self.saved = []


def _place_steps(opt: Any, group: dict[str, Any]) -> None:
    """Each state's ``step`` where the group's flags need it."""
    for p in group["params"]:
        state = opt.state.get(p, {})
        step = state.get("step")
        if isinstance(step, torch.Tensor):
            where = p.device if group.get("fused") or group.get("capturable") else torch.device("cpu")
            if step.device != where:
                state["step"] = step.to(where)


@switch("foreach")
def _foreach(value: str | None, live: Live) -> Switch:
    return OptimizerFlag("foreach", live)


@switch("fused")
def _fused(value: str | None, live: Live) -> Switch:
    return OptimizerFlag("fused", live)


class AroundForward:
    """A patch of the outermost forward (autocast, channels-last inputs) attached while on: the
    off side runs without any hook of it."""

    def __init__(self, attach: Callable[[list[Callable[[], None]]], None]):
        self.attach = attach
        self.undo: list[Callable[[], None]] = []

    def on(self) -> None:
        self.attach(self.undo)

    def off(self) -> None:
        restore(self.undo)
        self.undo = []


@switch("bf16")
def _bf16(value: str | None, live: Live) -> Switch:
    return AroundForward(lambda undo: patching.PATCHES["bf16"](value, undo))


class ScaledHalf:
    """fp16 autocast with its gradient scaler (:mod:`bench.capture.scaling`), attached while on.
    The scaler itself persists across the switch: its scale carries from one on-step to the
    next, as a script's own GradScaler's does from step to step (re-made at each ``on()``, its
    first scale would overflow and skip steps that a real run skips once)."""

    def __init__(self, live: Live):
        self.live, self.scaling = live, LossScaling()
        self.undo: list[Callable[[], None]] = []

    def on(self) -> None:
        for opt in self.live.optimizers:
            self.scaling.optimizers.add(opt)
        autocast_forward(torch.float16, self.undo)
        self.scaling.install(self.undo)

    def off(self) -> None:
        restore(self.undo)
        self.undo = []


@switch("fp16")
def _fp16(value: str | None, live: Live) -> Switch:
    return ScaledHalf(live)


class Compiled:
    """The compiled and the eager call of the same outermost modules: compiled at the first
    ``on()`` (the switch's warm-up pays for it), then only PyTorch's compiled call swapped in and
    out (``Module._compiled_call_impl``), never recompiled."""

    def __init__(self, live: Live):
        self.live = live
        self.calls: dict[int, Any] = {}

    def on(self) -> None:
        for m in self.live.modules:
            if id(m) not in self.calls:
                m.compile()
                self.calls[id(m)] = m._compiled_call_impl
            else:
                m._compiled_call_impl = self.calls[id(m)]

    def off(self) -> None:
        for m in self.live.modules:
            if id(m) in self.calls:
                m._compiled_call_impl = None


@switch("compile")
def _compile(value: str | None, live: Live) -> Switch:
    return Compiled(live)


class Setting:
    """A process-wide setting: ``set(value)`` at ``on()``, what ``get()`` read put back at ``off()``."""

    def __init__(self, get: Callable[[], Any], set: Callable[[Any], None], value: Any):
        self.get, self.set, self.value = get, set, value
        self.before: Any = None

    def on(self) -> None:
        self.before = self.get()
        self.set(self.value)

    def off(self) -> None:
        self.set(self.before)


# OpenMP starts or parks its threads at the first parallel region after the change, inside the
# next step: that step is left out (windows of 8 timed steps after 1)
@switch("threads", window=lambda value: (1, 8))
def _threads(value: str | None, live: Live) -> Switch:
    return Setting(torch.get_num_threads, torch.set_num_threads, int(value or 1))


@switch("tf32")
def _tf32(value: str | None, live: Live) -> Switch:
    matmul = torch.backends.cuda.matmul
    return Setting(lambda: matmul.allow_tf32, lambda v: setattr(matmul, "allow_tf32", v), True)


@switch("cudnn_benchmark")
def _cudnn_benchmark(value: str | None, live: Live) -> Switch:
    cudnn = torch.backends.cudnn
    return Setting(lambda: cudnn.benchmark, lambda v: setattr(cudnn, "benchmark", v), True)


class ChannelsLast:
    """The outermost modules' weights in channels-last order while on (converted at the switch,
    outside the timed steps; back to contiguous at ``off()``), and their 4-D inputs converted on
    the way in, as the ``channels_last`` patch does."""

    def __init__(self, live: Live):
        self.live = live
        self.inputs = AroundForward(self._attach)

    @staticmethod
    def _attach(undo: list[Callable[[], None]]) -> None:
        convert_inputs(undo)

    def on(self) -> None:
        for m in self.live.modules:
            m.to(memory_format=torch.channels_last)
        self.inputs.on()

    def off(self) -> None:
        self.inputs.off()
        for m in self.live.modules:
            m.to(memory_format=torch.contiguous_format)


@switch("channels_last")
def _channels_last(value: str | None, live: Live) -> Switch:
    return ChannelsLast(live)


# The DataLoader's options (workers, pinned memory) switch through a twin loader: registered there.
from bench.capture import twin_loader  # noqa: E402,F401
