"""The interface a training loop implements to be measured, and loading one by name.

A workload is any object with these members (nothing to inherit; ``check_workload`` says
which are missing)::

    device: torch.device                 # where it trains
    def fetch(self) -> Batch             # the next batch, on the device; the engine labels it "data"
    def step(self, batch, part) -> None  # one training step; wrap each part: `with part("forward"): ...`
    def state(self) -> object            # a snapshot of everything a step changes
    def restore(self, state) -> None     # back to that snapshot (and the data stream to its start)

and, optionally, ``parts`` (the part names its step uses, in order), ``batches_per_epoch``,
``batch_size``, ``describe()`` (one line about its data) and ``profiled_functions()`` (what
line_profiler should trace; default: its ``fetch`` and ``step``). :class:`ModelWorkload`
implements ``state``/``restore`` for the common case of one model and one optimizer.

A *factory* builds the workloads of one comparison: ``make(ctx: Context)`` returns one workload,
or a dict ``{variant name: workload or zero-argument builder}`` (builders run lazily; a builder
that raises :class:`Unavailable` marks its variant skipped, with the reason). The first variant
is the baseline of every ratio. Name a factory ``package.module:make`` or ``path/to/file.py:make``.
``ctx.variants`` holds the names a user asked for; the harness keeps those of the returned
variants, unless the factory sets ``make.selects_variants = True`` (it reads ``ctx.variants``
itself, e.g. to expand group names). Optional workload members the engine reads:
``min_round_steps`` (a floor on the steps of its rounds, for pipelines that prefetch),
``measure_epoch`` (time a full epoch of it too), ``reference`` (the variant it changes one thing
of) and ``notes`` (a dict saved in the result).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from plumbing.devices import as_device

Part = Callable[[str], AbstractContextManager[Any]]
REQUIRED: tuple[str, ...] = ("device", "fetch", "step", "state", "restore")


class WorkloadError(ValueError):
    """A workload cannot be loaded or is not a workload; the message says what and how to fix."""


class Unavailable(Exception):
    """Raised by a variant's builder when it cannot run here (e.g. needs CUDA); the reason is shown."""


@dataclass(frozen=True)
class Context:
    """What the harness tells a factory: where to run and the user's data options."""

    device: torch.device
    batch_size: int = 100
    seed: int = 0
    data_dir: Path = Path("data")
    dataset: str = "auto"
    limit: int | None = None
    progress: bool = False
    variants: tuple[str, ...] | None = None  # the variants asked for (None: the factory's default)


class ModelWorkload:
    """A base for workloads that train ``self.model`` with ``self.optimizer``.

    ``state()`` deep-copies both state dicts; ``restore()`` loads them back and calls
    ``self.rewind()`` (override it to restart your data stream, e.g. re-seed its shuffling).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device

    def state(self) -> dict[str, Any]:
        return {"model": copy.deepcopy(self.model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])  # copied into the parameters
        # Optimizer.load_state_dict keeps the given tensors (no copy when device and dtype match):
        # without this copy the next steps would update the snapshot's moments in place, and
        # every later round would start from a different optimizer state.
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.rewind()

    def rewind(self) -> None:
        """Restart the data stream; the default leaves it where it is."""


def missing_members(obj: object) -> list[str]:
    """The required members ``obj`` lacks (empty: it is a workload)."""
    missing = [name for name in REQUIRED if not hasattr(obj, name)]
    missing += [name for name in REQUIRED[1:] if hasattr(obj, name) and not callable(getattr(obj, name))]
    return missing


def check_workload(obj: object, where: str) -> None:
    """Raise WorkloadError unless ``obj`` is a workload; its ``device`` given as a string
    ("cpu", "cuda:0") is turned into the ``torch.device`` it names."""
    missing = missing_members(obj)
    if missing:
        raise WorkloadError(
            f"{where} returned a {type(obj).__name__}, which is not a workload: it lacks "
            f"{', '.join(missing)} (see `bench/workload.py`: device, fetch(), step(batch, part), "
            "state(), restore(state))")
    try:
        device = as_device(obj.device)  # type: ignore[attr-defined]
    except ValueError as exc:
        raise WorkloadError(f"{where}: {exc}") from None
    if device is not obj.device:  # type: ignore[attr-defined]
        try:
            obj.device = device  # type: ignore[attr-defined]
        except AttributeError:
            raise WorkloadError(f"{where}: device is a read-only {type(obj.device).__name__}; "  # type: ignore[attr-defined]
                                "make it a torch.device") from None


def profiled_functions(work: object) -> list[Callable[..., Any]]:
    """What line_profiler should trace: the workload's own list, else its fetch and step."""
    if hasattr(work, "profiled_functions"):
        return list(work.profiled_functions())
    return [getattr(type(work), "fetch"), getattr(type(work), "step")]  # noqa: B009


def _import_module(ref: str, module_part: str) -> Any:
    if module_part.endswith(".py") or "/" in module_part or module_part.startswith("."):
        path = Path(module_part)
        if not path.is_file():
            raise WorkloadError(f"--workload {ref}: file {path} not found; name a .py file or a "
                                "module, e.g. examples/cnn.py:make or my_pkg.my_module:make")
        name = f"_vaebench_workload_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        # The file's own folder is importable for it, as when it is run as a script.
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise WorkloadError(f"--workload {ref}: importing {path} failed: "
                                f"{type(exc).__name__}: {exc}") from exc
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as exc:
        raise WorkloadError(f"--workload {ref}: cannot import {module_part!r} ({exc}); is it "
                            "installed or on PYTHONPATH? A file path works too: path/to/file.py:make"
                            ) from exc
    except Exception as exc:
        raise WorkloadError(f"--workload {ref}: importing {module_part} failed: "
                            f"{type(exc).__name__}: {exc}") from exc


def load_factory(ref: str) -> Callable[[Context], Any]:
    """``module:function`` or ``file.py:function`` -> the factory function."""
    module_part, sep, attr = ref.rpartition(":")
    if not sep or not module_part or not attr:
        raise WorkloadError(f"--workload {ref!r}: write it as module:function or file.py:function "
                            "(e.g. examples/cnn.py:make)")
    module = _import_module(ref, module_part)
    factory = getattr(module, attr, None)
    if factory is None:
        raise WorkloadError(f"--workload {ref}: {module_part} has no {attr!r}; it defines "
                            f"{', '.join(n for n in dir(module) if not n.startswith('_')) or 'nothing'}")
    if not callable(factory):
        raise WorkloadError(f"--workload {ref}: {attr} is a {type(factory).__name__}, not a function")
    try:
        inspect.signature(factory).bind(None)
    except TypeError:
        raise WorkloadError(f"--workload {ref}: {attr} must take one argument, the Context "
                            "(def make(ctx): ...)") from None
    except ValueError:
        pass  # a builtin without a signature: let the call tell
    return factory


Builder = Callable[[], Any]


@dataclass
class Variants:
    """The named variants of one factory call: lazy builders, in order (the first is the baseline).

    ``ordered``: the factory says its variants are ordered, each one a step on from the one
    before (``make.ordered = True``): the report then also compares each with the previous.
    ``report``: ``module:function`` of the factory's own report section (``make.report = fn``),
    called with the Result; it returns markdown lines for summary.md.
    """

    builders: dict[str, Builder]
    ref: str
    ordered: bool = False
    report: str | None = None

    def __iter__(self) -> Iterator[str]:
        return iter(self.builders)

    def __len__(self) -> int:
        return len(self.builders)

    def build(self, name: str) -> Any:
        """Build one variant; raises Unavailable (skip it) or WorkloadError (it is broken)."""
        try:
            work = self.builders[name]()
        except Unavailable:
            raise
        except WorkloadError:
            raise
        except Exception as exc:
            raise WorkloadError(f"variant {name!r} of {self.ref}: building it failed: "
                                f"{type(exc).__name__}: {exc}") from exc
        check_workload(work, f"variant {name!r} of {self.ref}")
        return work


def variants_of(ref: str, ctx: Context) -> Variants:
    """Call the factory named ``ref`` and return its variants (only those in ``ctx.variants``)."""
    factory = load_factory(ref)
    try:
        made = factory(ctx)
    except (WorkloadError, Unavailable):
        raise
    except Exception as exc:
        raise WorkloadError(f"--workload {ref}: calling it failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(made, Mapping):
        if not made:
            raise WorkloadError(f"--workload {ref}: the factory returned no variants")
        builders: dict[str, Builder] = {}
        for name, item in made.items():
            builders[str(name)] = item if callable(item) and missing_members(item) else (lambda w=item: w)
    else:
        check_workload(made, f"--workload {ref}")
        builders = {getattr(made, "name", None) or ref.rpartition(":")[2]: lambda: made}
    if ctx.variants is not None:
        unknown = [v for v in ctx.variants if v not in builders]
        if not unknown:
            builders = {v: builders[v] for v in ctx.variants}
        elif not getattr(factory, "selects_variants", False):
            raise WorkloadError(f"--variants: unknown variant {unknown[0]!r} of {ref}: choose from "
                                f"{', '.join(builders)}")
    return Variants(builders, ref, ordered=bool(getattr(factory, "ordered", False)),
                    report=_report_ref(ref, factory))


def _report_ref(ref: str, factory: Callable[..., Any]) -> str | None:
    """Where the factory's report section can be loaded from again (also by `bench report`)."""
    hook = getattr(factory, "report", None)
    if hook is None:
        return None
    if not callable(hook):
        raise WorkloadError(f"--workload {ref}: its `report` is a {type(hook).__name__}, not a function")
    if getattr(hook, "__module__", None) == getattr(factory, "__module__", None):
        return f"{ref.rpartition(':')[0]}:{hook.__name__}"  # the factory's own file or module
    return f"{hook.__module__}:{hook.__qualname__}"


def load_function(ref: str) -> Callable[..., Any]:
    """``module:function`` or ``file.py:function`` -> the function (WorkloadError otherwise)."""
    return load_factory(ref)
