"""The patches ``--try`` applies inside the script's process before the script starts: each a
change of PyTorch's defaults that the script cannot tell from its own code having asked for it
(a DataLoader's ``num_workers``, an optimizer's ``fused``, the thread count, autocast around the
outermost forward -- with a gradient scaler for fp16 --, its weights and inputs in
channels-last order). Each is named ``key`` or
``key=value``; :func:`apply` returns the undo list.

A patch binds the constructor's own arguments (``inspect.signature``), so a script that passes
an option positionally is changed the same way as one that names it.
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable
from typing import Any

import torch

from bench.capture.scaling import LossScaling

Undo = list[Callable[[], None]]  # each puts back one thing a patch changed
PATCHES: dict[str, Callable[[str | None, Undo], None]] = {}


def patch(name: str) -> Callable[[Callable[[str | None, Undo], None]], Callable[[str | None, Undo], None]]:
    """Register ``fn(value, undo)`` as the patch ``name`` (the plug-in point for a user's own)."""
    def register(fn: Callable[[str | None, Undo], None]) -> Callable[[str | None, Undo], None]:
        PATCHES[name] = fn
        return fn
    return register


def wrap_init(cls: Any, change: Callable[[inspect.BoundArguments], None], undo: Undo) -> None:
    """``cls.__init__`` with its bound arguments changed by ``change`` before it runs."""
    original = cls.__dict__.get("__init__", cls.__init__)
    signature = inspect.signature(original)

    @functools.wraps(original)
    def init(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)
        change(bound)
        original(*bound.args, **bound.kwargs)

    cls.__init__ = init
    undo.append(lambda: setattr(cls, "__init__", original))


def _set(bound: inspect.BoundArguments, name: str, value: Any) -> None:
    if name in bound.signature.parameters:
        bound.arguments[name] = value


def _loader_option(option: str, value: Any, undo: Undo) -> None:
    from torch.utils.data import DataLoader

    def change(bound: inspect.BoundArguments) -> None:
        workers = bound.arguments.get("num_workers", 0)
        if option in ("persistent_workers", "prefetch_factor") and not workers:
            return  # both need worker processes: the loader refuses them without
        _set(bound, option, value)

    wrap_init(DataLoader, change, undo)


@patch("num_workers")
def _workers(value: str | None, undo: Undo) -> None:
    _loader_option("num_workers", int(value or 1), undo)


@patch("persistent_workers")
def _persistent(value: str | None, undo: Undo) -> None:
    _loader_option("persistent_workers", True, undo)


@patch("batch")
def _batch(value: str | None, undo: Undo) -> None:
    """Every DataLoader made with a ``batch_size`` draws ``value`` samples a batch instead (``--fit``
    measures the step's memory at other sizes so); one given its own batch sampler is left alone."""
    from torch.utils.data import DataLoader

    def change(bound: inspect.BoundArguments) -> None:
        if bound.arguments.get("batch_sampler") is None and bound.arguments.get("batch_size", 1) is not None:
            _set(bound, "batch_size", int(value or 1))

    wrap_init(DataLoader, change, undo)


@patch("pin_memory")
def _pin(value: str | None, undo: Undo) -> None:
    _loader_option("pin_memory", True, undo)


def optimizer_classes(option: str) -> list[type]:
    """torch.optim's optimizers whose constructor takes ``option`` (foreach, fused)."""
    found = []
    for value in vars(torch.optim).values():
        if isinstance(value, type) and issubclass(value, torch.optim.Optimizer) \
                and value is not torch.optim.Optimizer \
                and option in inspect.signature(value.__init__).parameters:
            found.append(value)
    return found


def _optimizer_flag(option: str, undo: Undo) -> None:
    for cls in optimizer_classes(option):
        def change(bound: inspect.BoundArguments, _option: str = option) -> None:
            _set(bound, _option, True)
            if _option == "fused":
                _set(bound, "foreach", None)  # fused and foreach are exclusive
        wrap_init(cls, change, undo)


@patch("foreach")
def _foreach(value: str | None, undo: Undo) -> None:
    _optimizer_flag("foreach", undo)


@patch("fused")
def _fused(value: str | None, undo: Undo) -> None:
    _optimizer_flag("fused", undo)


@patch("threads")
def _threads(value: str | None, undo: Undo) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(int(value or 1))
    undo.append(lambda: torch.set_num_threads(before))


def _outermost(undo: Undo, enter: Callable[[torch.nn.Module], Any],
               leave: Callable[[Any], Any] | None = None, inputs: Callable[[Any], Any] | None = None) -> None:
    """Around the outermost module's forward (:mod:`plumbing.outermost`, the capture's own
    mechanism: the modules inside it keep PyTorch's fast path and a compiled model its graph):
    ``enter(module)`` before it, and the context it returns (if any) left after it;
    ``inputs(args)`` may replace its inputs and ``leave(output)`` its output."""
    from plumbing.outermost import Outermost

    contexts: list[Any] = []

    def pre(module: torch.nn.Module, args: Any) -> Any:
        context = enter(module)
        if context is not None:
            context.__enter__()
        contexts.append(context)
        return inputs(args) if inputs is not None else None

    def post(module: torch.nn.Module, output: Any) -> Any:
        context = contexts.pop() if contexts else None
        if context is not None:
            context.__exit__(None, None, None)
        return leave(output) if leave is not None else None

    hooks = Outermost(pre, post)
    hooks.attach()
    undo.append(hooks.detach)


def _device_type(module: torch.nn.Module) -> str:
    first = next(module.parameters(), None)
    return first.device.type if first is not None else "cpu"


def _to_float(output: Any) -> Any:
    """The model's half-precision outputs as float32: the script's loss, outside autocast, then
    sees the dtype it was written for (autocast itself runs losses in float32)."""
    from torch.utils._pytree import tree_map

    def cast(t: Any) -> Any:
        return t.float() if isinstance(t, torch.Tensor) and t.dtype in (torch.bfloat16, torch.float16) else t

    return tree_map(cast, output)


@patch("bf16")
def _bf16(value: str | None, undo: Undo) -> None:
    autocast_forward(torch.bfloat16, undo)


def autocast_forward(dtype: torch.dtype, undo: Undo) -> None:
    """Autocast to ``dtype`` around the outermost forward, its half-precision outputs as float32."""
    _outermost(undo, lambda m: torch.autocast(device_type=_device_type(m), dtype=dtype), _to_float)


@patch("fp16")
def _fp16(value: str | None, undo: Undo) -> None:
    """fp16 autocast around the outermost forward and a gradient scaler around the script's
    backward and optimizer steps (:mod:`bench.capture.scaling`): fp16 without one underflows."""
    autocast_forward(torch.float16, undo)
    LossScaling().install(undo)


@patch("compile")
def _compile(value: str | None, undo: Undo) -> None:
    compiled: set[int] = set()

    def enter(module: torch.nn.Module) -> None:
        if id(module) not in compiled:  # from its next call on, the module runs compiled
            compiled.add(id(module))
            module.compile()

    _outermost(undo, enter)


@patch("channels_last")
def _channels_last(value: str | None, undo: Undo) -> None:
    """The outermost module's weights in channels-last order once, at its first call, and every
    4-D floating-point input converted on the way in (what a script does with
    ``model.to(memory_format=torch.channels_last)`` and ``x.to(memory_format=...)``)."""
    converted: set[int] = set()

    def enter(module: torch.nn.Module) -> None:
        if id(module) not in converted:
            converted.add(id(module))
            module.to(memory_format=torch.channels_last)

    convert_inputs(undo, enter)


def convert_inputs(undo: Undo, enter: Callable[[torch.nn.Module], Any] = lambda m: None) -> None:
    """The outermost module's 4-D floating-point inputs in channels-last order on the way in."""
    from torch.utils._pytree import tree_map

    def cast(t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.dim() == 4 and t.is_floating_point():
            return t.contiguous(memory_format=torch.channels_last)
        return t

    _outermost(undo, enter, inputs=lambda args: tree_map(cast, args))


# A patch's name before it became its fix's (kept for one release: a user's plugin may use them).
RENAMED = {"workers": "num_workers", "persistent": "persistent_workers", "pin": "pin_memory"}


def canonical(patch: str) -> str:
    """``workers=2`` -> ``num_workers=2``: an old name as today's."""
    key, eq, value = patch.partition("=")
    return RENAMED.get(key, key) + eq + value


def names(fixes: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """``("num_workers=2", "persistent_workers")`` ->
    ``[("num_workers", "2"), ("persistent_workers", None)]``."""
    out = []
    for fix in fixes:
        key, _, value = canonical(fix).partition("=")
        out.append((key, value or None))
    return out


def unknown(fixes: tuple[str, ...]) -> list[str]:
    return [key for key, _ in names(fixes) if key not in PATCHES]


def apply(fixes: tuple[str, ...]) -> Undo:
    """Apply the patches so that the first named changes a constructor's arguments first (each
    wraps the ones after it: ``num_workers=2`` then ``persistent_workers`` sees the workers); the undo list
    restores what they changed."""
    undo: Undo = []
    for key, value in reversed(names(fixes)):
        PATCHES[key](value, undo)
    return undo


def restore(undo: Undo) -> None:
    for put_back in reversed(undo):
        put_back()


def seed_everything(seed: int) -> None:
    """What ``--seed`` sets before the script runs, in every process alike."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


@patch("tf32")
def _tf32(value: str | None, undo: Undo) -> None:
    before = torch.backends.cuda.matmul.allow_tf32
    undo.append(lambda: setattr(torch.backends.cuda.matmul, "allow_tf32", before))
    torch.backends.cuda.matmul.allow_tf32 = True


@patch("cudnn_benchmark")
def _cudnn_benchmark(value: str | None, undo: Undo) -> None:
    before = torch.backends.cudnn.benchmark
    undo.append(lambda: setattr(torch.backends.cudnn, "benchmark", before))
    torch.backends.cudnn.benchmark = True
