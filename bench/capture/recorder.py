"""Observing an unmodified training script: PyTorch's global hooks find its steps and parts.

A **step** ends at each round of the script's ``optimizer.step()`` calls (the global optimizer
step hooks: any optimizer, fused ones and Lightning's closure included): each step of its one
optimizer, or of a GAN's discriminator then generator both (:mod:`bench.capture.rounds`) -- or,
for a script that updates its parameters by hand, at each outermost ``backward()``. A step spans
from the end of the previous one to its own end, so the fetch of its batch is inside it. Its
**parts**:

- ``data``: inside a DataLoader iterator's ``__next__`` (single- and multi-process iterators
  both subclass ``_BaseDataLoaderIter``);
- ``copy``: host-to-device ``Tensor.to()``/``.cuda()`` (on CUDA only: on the CPU there is none);
- ``forward``: the outermost module's forward (:mod:`plumbing.outermost`: one global pre-hook);
- ``backward``: the outermost ``Tensor.backward``/``torch.autograd.backward``;
- ``optimizer``: ``optimizer.step()``;
- ``other``: the rest of the step (logging, ``.item()``, metrics).

Parts nest (Lightning runs forward and backward inside ``optimizer.step``'s closure): each
part's time is its own, without the parts inside it, so the parts and ``other`` add up to the
step. A step's marks are turned into its parts' times later (at the end of the warm-up, of the
measured window and of the run), never inside an observed step; on CUDA the marks are CUDA
events, read after one synchronize then -- never a synchronize inside a step. Steps are grouped
in **windows**: ``warmup`` steps left out, then the measured window, then each profiler's
windows alternated with plain ones (so its overhead has an interval); after the last window the
script is stopped with :class:`Stop`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from bench.capture.built import Builds, call_site
from bench.capture.rounds import Rounds
from bench.capture.samples import StepSamples
from bench.capture.windows import Stop, Window, caller_code, first_tensor, pairs
from bench.capture.windows import step_timing as timing_of
from bench.measure.clock import Marks, Timing
from bench.profile.tools import Profiler
from bench.ranks.collectives import wrap_collectives
from bench.ranks.ddp import DDPTiming
from bench.ranks.timeline import Timeline
from plumbing.outermost import Outermost


class Recorder:
    """Installs the hooks, cuts the script's run into steps and windows, keeps the raw times.

    ``windows``: the plan after the warm-up (measure, then the profilers' alternated windows);
    ``tools``: name -> a :class:`~bench.profile.tools.Profiler` started at its windows' first
    step, told of each step's end, stopped after its last step.
    """

    def __init__(self, *, warmup: int, windows: list[Window], step_on: str = "auto",
                 tools: dict[str, Profiler] | None = None,
                 clock: Callable[[], float] = time.perf_counter, cuda: bool | None = None):
        self.cuda = torch.cuda.is_available() if cuda is None else cuda
        self.marks = Marks(self.cuda, clock)
        self.windows = [Window("warmup", warmup), *windows] if warmup else list(windows)
        self.tools = tools or {}
        self.rule: str | None = None if step_on == "auto" else step_on
        self.steps_seen = 0
        self.samples = StepSamples()  # what each step consumed (samples, micro-batches)
        self.optimizers_seen = 0  # optimizer steps seen
        self.builds = Builds()  # what the script builds (its optimizers: none = updates by hand)
        self.rounds = Rounds(lambda: self.builds.optimizers_made)  # which optimizer.step() ends a step
        self.backwards_seen = 0
        self.forwards_seen = 0
        self.in_optimizer = False  # inside optimizer.step(): a closure's forward/backward run there
        self.dataset: Any = None  # the first DataLoader's dataset (line_profiler's default target)
        self.ddp = DDPTiming()  # DistributedDataParallel models made: their all-reduce over the window
        self.step_caller: Any = None  # the code object that calls optimizer.step() (or backward)
        self._index = 0  # the window being filled
        self._step_start: Any = None
        self._spans: list[list[Any]] = []  # [name, start, end, parent index] of the current step
        self._stack: list[int] = []
        self._backward_depth = 0
        self.outermost = Outermost(self._forward_in, self._forward_out)  # the forward part
        self._pending: list[tuple[Window, int, Any, Any, list[list[Any]]]] = []  # steps not yet read
        self._handles: list[Any] = []
        self._patched: list[tuple[Any, str, Any]] = []
        self._part_patched: list[tuple[Any, str, Any]] = []
        self.timing_parts, self.removed = True, False  # removed: nothing is attached again
        self.finished = False
        self.keep_losses = 0  # the first N losses of the measured steps (--try compares them)
        self.losses: list[torch.Tensor] = []  # detached; read as numbers once the script ends
        self.started = clock()
        self.timeline = Timeline(clock)  # the measured steps on the wall clock (CPU), for the ranks' view
        self.warmup_s: float | None = None  # from the start to the end of the warm-up
        self.observe_pairs: int | None = None  # observing's pairs kept for the time budget
        self.after_warmup: list[Callable[[], None]] = []  # as the warm-up ends (CUDA's memory history off)
        self._clock = clock
        # Profilers are started, stepped and stopped at the next step's first part, not inside
        # the optimizer's hook: starting or stopping Kineto inside the optimizer's (or the
        # DataLoader's) record_function scope corrupted the heap here, now and then (checked).
        self._deferred: list[Callable[[], None]] = []

    def _call(self, method: Callable[[], None]) -> bool:
        """Run a tool's start/step/stop now (True) or at the next step's first part."""
        tool = getattr(method, "__self__", None)
        if getattr(tool, "deferred", True):
            self._deferred.append(method)
            return False
        method()
        return True

    def _run_deferred(self) -> None:
        calls, self._deferred = self._deferred, []
        for call in calls:
            call()

    # --- parts ---------------------------------------------------------------------------
    def _open(self, name: str) -> None:
        # A profiler's deferred start or stop runs at a step's first part, outside the optimizer
        # (a closure's backward runs inside it), with the part hooks off too (observing's windows).
        if self._deferred and not self._stack and name != "optimizer" and not self.in_optimizer:
            self._run_deferred()
        if not self.timing_parts:
            return
        if self._step_start is None:
            self._step_start = self.marks.mark()
        parent = self._stack[-1] if self._stack else -1
        self._spans.append([name, self.marks.mark(), None, parent])
        self._stack.append(len(self._spans) - 1)

    def _enter(self, name: str) -> int | None:  # a part opened by the collectives: its span's index
        self._open(name)
        return len(self._spans) - 1 if self.timing_parts else None

    def _close(self, name: str) -> None:
        if not self.timing_parts:
            return
        # Close up to the matching part: one whose end a raised exception skipped is closed too.
        while self._stack:
            index = self._stack.pop()
            self._spans[index][2] = self.marks.mark()
            if self._spans[index][0] == name:
                return

    def _wrap(self, owner: Any, attr: str, name: str, after: Callable[[Any], None] | None = None) -> None:
        original = getattr(owner, attr)
        recorder = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if name == "data" and recorder.dataset is None and args:
                recorder.dataset = getattr(args[0], "_dataset", None)
            recorder._open(name)
            try:
                out = original(*args, **kwargs)
            finally:
                recorder._close(name)
            if after is not None:
                after(out)
            return out

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(owner, attr, wrapper)
        self._part_patched.append((owner, attr, original))

    # --- hooks -----------------------------------------------------------------------------
    def install(self) -> None:
        from torch.optim import optimizer as optim

        self._wrap_backward()
        self.builds.install(self._patched)
        self.ddp.install(self._patched)
        self._handles += [optim.register_optimizer_step_pre_hook(self._optimizer_pre),
                          optim.register_optimizer_step_post_hook(self._optimizer_post)]
        self.attach()
        if self.windows and self.windows[0].kind in self.tools:  # no warm-up: the first window's tool
            self._call(self.tools[self.windows[0].kind].start)
    def attach(self) -> None:
        """The hooks that time a step's parts: the DataLoader's ``__next__``, the modules' forward,
        host-to-device copies (the optimizer's and backward's own hooks stay, for a step's end)."""
        from torch.utils.data import dataloader

        self.timing_parts = True
        if self.outermost.attached or self.removed:  # removed: an unhooked window's end must not re-attach
            return
        self._wrap(dataloader._BaseDataLoaderIter, "__next__", "data", after=self.samples.batch)
        if self.cuda:
            self._wrap_copy()
        wrap_collectives(self._enter, self._close, self.timeline.op, self._part_patched)
        self.outermost.attach()

    def detach(self) -> None:
        """Only the step-end clock stays: a window so observed costs what running unobserved does,
        which the windows with every hook attached are measured against (observing's cost)."""
        self.timing_parts = False
        self.outermost.detach()
        for owner, attr, original in reversed(self._part_patched):
            setattr(owner, attr, original)
        self._part_patched = []

    def remove(self) -> None:
        self.removed = True
        self.detach()
        for handle in self._handles:
            handle.remove()
        for owner, attr, original in reversed(self._patched):
            setattr(owner, attr, original)
        self._handles, self._patched = [], []

    def _forward_in(self, module: Any, args: Any) -> None:
        self._open("forward")
        self.forwards_seen += 1
        if isinstance(module, torch.nn.modules.loss._Loss):  # the loss of the model's output: no model
            return
        self.builds.saw_model(module)
        tensor = first_tensor(args)  # no DataLoader: the outermost module's input says it
        if tensor is not None and tensor.dim():
            self.samples.input(module, tensor)

    def _forward_out(self, module: Any, output: Any) -> None:
        self._close("forward")
        self.samples.output(output)

    def _wrap_backward(self) -> None:
        recorder = self
        for owner, attr in ((torch.Tensor, "backward"), (torch.autograd, "backward")):
            original = getattr(owner, attr)

            def wrapper(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                outer = recorder._backward_depth == 0
                recorder._backward_depth += 1
                if outer:
                    recorder._keep_loss(args[0] if args else kwargs.get("tensors"))
                    recorder._open("backward")
                try:
                    return _original(*args, **kwargs)
                finally:
                    recorder._backward_depth -= 1
                    if outer:
                        recorder._close("backward")
                        recorder.backwards_seen += 1
                        # auto: a script that made no optimizer updates its parameters by hand
                        if recorder.rule is None and recorder.builds.optimizers_made == 0:
                            recorder.rule = "backward"
                        if recorder.rule == "backward":
                            recorder._end_step()

            wrapper.__wrapped__ = original  # type: ignore[attr-defined]
            setattr(owner, attr, wrapper)
            self._patched.append((owner, attr, original))

    def _keep_loss(self, loss: Any) -> None:
        """A measured step's loss, without a sync (``.item()`` waits until the script ends)."""
        measuring = self._index < len(self.windows) and self.windows[self._index].kind == "measure"
        if measuring and len(self.losses) < self.keep_losses and isinstance(loss, torch.Tensor) \
                and loss.numel() == 1:
            self.losses.append(loss.detach().clone())

    def allreduce(self) -> dict[str, float]:
        return self.ddp.times()

    def _wrap_copy(self) -> None:
        recorder = self
        for attr in ("to", "cuda"):
            original = getattr(torch.Tensor, attr)

            def wrapper(tensor: torch.Tensor, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                if tensor.device.type != "cpu":  # only host-to-device copies are a `copy`
                    return _original(tensor, *args, **kwargs)
                recorder._open("copy")
                try:
                    return _original(tensor, *args, **kwargs)
                finally:
                    recorder._close("copy")

            setattr(torch.Tensor, attr, wrapper)
            self._part_patched.append((torch.Tensor, attr, original))

    def _optimizer_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.step_caller is None:
            self.step_caller = caller_code()
        self.in_optimizer = True
        self._open("optimizer")

    def _optimizer_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.in_optimizer = False
        self._close("optimizer")
        if self._stack:  # an optimizer stepped inside another part: not a training step's end
            return
        self.optimizers_seen += 1
        self.samples.optimizer_step(optimizer)
        if self.rule is None:
            self.rule = "optimizer"
        rounds = self.rounds.saw(optimizer, call_site)
        if self.rule == "optimizer" and rounds:
            self._end_step(rounds)

    # --- steps and windows -----------------------------------------------------------------
    def _end_step(self, rounds: int = 1) -> None:
        end = self.marks.mark()
        self.steps_seen += rounds  # several: the optimizers' rounds seen before their pattern was known
        self.samples.end_step()
        spans, self._spans, self._stack = self._spans, [], []
        start, self._step_start = self._step_start, end
        if start is None or self.finished:
            return
        window = self.windows[self._index]
        self._pending.append((window, self.steps_seen, start, end, spans))
        window.filled += 1
        self.timeline.step(self.steps_seen, start, end, spans, backward_syncs=bool(self.ddp.models),
                           keep=window.kind == "measure" and not self.cuda)
        if window.kind in self.tools:
            self._call(self.tools[window.kind].step)
        if window.filled >= window.steps:
            self._next_window()

    def _resolve(self) -> None:
        """The pending steps' Timings, read only when needed (the warm-up's and the measured
        window's ends, the end of the run) and never inside an observed step: on CUDA after one
        synchronize (the marks are events)."""
        if not self._pending:
            return
        if self.cuda:
            torch.cuda.synchronize()
        for window, number, start, end, spans in self._pending:
            window.timings.append(timing_of(self.marks, number, start, end, spans))
        self._pending = []

    def _next_window(self) -> None:
        done = self.windows[self._index]
        if done.kind in ("warmup", "measure"):  # their steps read; DDP's timing over the measured window
            self._resolve()
            self.ddp.mark("start" if done.kind == "warmup" else "end")
        if done.kind == "warmup":
            self.warmup_s = self._clock() - self.started
            for call in self.after_warmup:
                call()
        if done.kind == "measure":  # observing's pairs: as many as fit its time budget
            from bench.capture.windows import fit_observing

            self.windows, self.observe_pairs = fit_observing(self.windows, done)
        # A tool started or stopped right here (a switch flipped, the part hooks taken off) is
        # outside every step: the next step's clock starts after it.
        flipped = done.kind in self.tools and self._call(self.tools[done.kind].stop)  # its last step is over
        self._index += 1
        if self._index == len(self.windows):
            self.finished = True
            raise Stop
        upcoming = self.windows[self._index]
        if upcoming.kind in self.tools:
            flipped = self._call(self.tools[upcoming.kind].start) or flipped
        if flipped:
            self._step_start = self.marks.mark()

    def close(self) -> None:
        """The script ended (or stopped): resolve what is pending (a profiler still running is
        stopped, outside every hook now); an unfinished window keeps its steps."""
        self._resolve()
        self.remove()
        current = self.windows[self._index] if self._index < len(self.windows) else None
        pending_stop = [c for c in self._deferred if getattr(c, "__name__", "") == "stop"]
        self._deferred = []
        for call in pending_stop:
            call()
        if current is not None and current.kind in self.tools and not self.finished:
            self.tools[current.kind].stop()

    def window(self, kind: str) -> list[Timing]:
        return [t for w in self.windows if w.kind == kind for t in w.timings]

    @property
    def filling(self) -> int | None:
        """The index of the window being filled (None: every window is complete)."""
        return self._index if self._index < len(self.windows) else None

    def pairs(self, tool: str) -> tuple[list[Timing], list[Timing]]:
        return pairs(self.windows, tool)
