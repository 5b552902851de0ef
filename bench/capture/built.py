"""What a script builds, seen as it builds it: each DataLoader and optimizer with its options and
the line of the script that made it, and the outermost module its steps run. The report says
it ("`DataLoader` at train.py:32: num_workers=0, pin_memory=False"), and the fixes a later step
tries are chosen from it and point back at those lines. Observing changes nothing: the
constructors run as they would, and their objects are read afterwards."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

import torch

from bench.capture.switches import Live
from bench.measure.result import Built

KEEP = 10  # constructions kept of each kind (a script that makes loaders in a loop stays small)
LOADER_OPTIONS = ("batch_size", "num_workers", "pin_memory", "persistent_workers", "prefetch_factor",
                  "drop_last")


def library_frame(filename: str) -> bool:
    """Code of torch, vaebench or Lightning (by their packages' folders: a user's own folder named
    ``bench`` or ``torch`` is the user's)."""
    import bench
    import plumbing

    folders = [os.path.dirname(m.__file__ or "") for m in (torch, bench, plumbing)]
    folders += [os.path.dirname(getattr(sys.modules[n], "__file__", None) or "")
                for n in ("lightning", "pytorch_lightning", "lightning_fabric") if n in sys.modules]
    return filename.startswith(tuple(f + os.sep for f in folders if f))


def call_site() -> str:
    """``file.py:line`` of the first frame outside torch and vaebench: the script's own call."""
    frame: Any = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if not library_frame(name):
            return f"{os.path.basename(name)}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


def _batches(loader: Any) -> int | None:
    """Batches an epoch of the loader yields (None: an iterable dataset's has no length)."""
    try:
        return len(loader)
    except TypeError:
        return None


def _plain(value: Any) -> Any:
    """A JSON-safe option value (anything else by its type's name)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list) and all(isinstance(v, int | float) for v in value):
        return list(value)
    return type(value).__name__


class Builds:
    """Patches the DataLoader's and the optimizers' constructors to note what they made."""

    def __init__(self) -> None:
        self.found: list[Built] = []
        self.optimizers_made = 0
        self.models: list[str] = []
        self._modules: set[int] = set()
        self.live = Live()  # the optimizers and outermost modules themselves (--try's switches)

    def _note(self, kind: str, made: Any, options: dict[str, Any], where: str) -> None:
        if sum(1 for b in self.found if b.kind == kind) < KEEP:
            self.found.append(Built(kind, type(made).__name__, where,
                                    {k: _plain(v) for k, v in options.items()}))

    def install(self, patched: list[tuple[Any, str, Any]]) -> None:
        from torch.utils.data import DataLoader

        builds = self
        loader_init, optimizer_init = DataLoader.__init__, torch.optim.Optimizer.__init__

        # functools.wraps: a framework that reads the constructor's signature (Lightning re-makes
        # a DataLoader with its sampler from it) still sees the real one.
        @functools.wraps(loader_init)
        def loader(made: Any, *args: Any, **kwargs: Any) -> None:
            loader_init(made, *args, **kwargs)
            if builds.live.building:  # a twin of --try's loader switch, not the script's
                return
            builds.live.add_loader(made, args, kwargs)
            options = {k: getattr(made, k, None) for k in LOADER_OPTIONS} | {"batches": _batches(made)}
            builds._note("DataLoader", made, {"dataset": type(made.dataset).__name__, **options},
                         call_site())

        @functools.wraps(optimizer_init)
        def optimizer(made: Any, *args: Any, **kwargs: Any) -> None:
            builds.optimizers_made += 1
            optimizer_init(made, *args, **kwargs)
            builds.live.add_optimizer(made)
            builds._note("optimizer", made, dict(getattr(made, "defaults", {})), call_site())

        DataLoader.__init__ = loader  # type: ignore[method-assign]
        torch.optim.Optimizer.__init__ = optimizer  # type: ignore[method-assign]
        patched += [(DataLoader, "__init__", loader_init),
                    (torch.optim.Optimizer, "__init__", optimizer_init)]

    def saw_model(self, module: Any) -> None:
        """An outermost module's forward (a wrapper such as DDP named with what it wraps)."""
        if id(module) in self._modules:  # every step calls it: read it once
            return
        self._modules.add(id(module))
        if len(self._modules) <= KEEP:
            self.live.add_module(module)
        inner = getattr(module, "module", None)
        wraps = f"({type(inner).__name__})" if isinstance(inner, torch.nn.Module) else ""
        name = type(module).__name__ + wraps
        if len(self.models) < 3:
            # where the script calls it (a GAN's two Sequentials told apart by their lines)
            self.models.append(name)
            # what --try's channels_last entry asks: does it convolve over images at all?
            convolutions = sum(isinstance(m, torch.nn.Conv2d) for m in module.modules())
            self.found.append(Built("model", name, call_site(), {"conv2d": convolutions}))
