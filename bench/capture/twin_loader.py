"""A DataLoader's options switched without rebuilding the script's loader (``--try``'s
``num_workers`` and ``pin_memory``): while on, the script's batches come from a twin loader
built with the same arguments but that option, over the same dataset."""

from __future__ import annotations

import inspect
from typing import Any

from bench.capture.switches import Live, Switch, switch


class TwinLoader:
    """A DataLoader's options switched without rebuilding the script's loader: while on, the
    batches the script draws from its first DataLoader come from a twin built with the same
    arguments but ``options`` (``num_workers=2``) over the same dataset; off, from its own
    iterator, which waits where it was. The twin's iterator goes on across windows (its workers
    stay up; a new epoch of the twin when it runs out, as the script's own would start one).
    Measured in windows (:func:`window_of`): workers fill their queue while the other side runs,
    so a window's first steps are left out."""

    def __init__(self, options: dict[str, Any], live: Live):
        self.options, self.live = options, live
        self.twin: Any = None
        self.twin_it: Any = None
        self.dataset: Any = None
        self.original: Any = None

    def _build(self) -> None:
        from torch.utils.data import DataLoader

        if not self.live.loaders:
            raise RuntimeError("no DataLoader built: nothing to switch")
        loader, args, kwargs = self.live.loaders[0]
        bound = inspect.signature(DataLoader.__init__).bind(loader, *args, **kwargs)
        bound.arguments.update(self.options)
        self.live.building = True
        try:
            self.twin = DataLoader(*bound.args[1:], **bound.kwargs)
        finally:
            self.live.building = False
        self.dataset = loader.dataset

    def _draw(self) -> Any:
        if self.twin_it is None:
            self.twin_it = iter(self.twin)
        try:
            return self.original(self.twin_it)
        except StopIteration:  # the twin's epoch is over: another, as the script would start one
            self.twin_it = iter(self.twin)
            return self.original(self.twin_it)

    def on(self) -> None:
        from torch.utils.data import dataloader

        if self.twin is None:
            self._build()
        base = dataloader._BaseDataLoaderIter
        self.original = base.__next__
        twin = self

        def next_batch(it: Any) -> Any:
            if it is not twin.twin_it and getattr(it, "_dataset", None) is twin.dataset:
                return twin._draw()
            return twin.original(it)

        base.__next__ = next_batch  # type: ignore[method-assign]

    def off(self) -> None:
        from torch.utils.data import dataloader

        if self.original is not None:
            dataloader._BaseDataLoaderIter.__next__ = self.original  # type: ignore[method-assign]
            self.original = None


def _workers_window(value: str | None) -> tuple[int, int]:
    # a worker keeps prefetch_factor (2) batches ready: 2 x workers steps come free after the
    # other side's window, and the same batches are still being made in the next window of it
    return 2 * int(value or 1) + 1, 8


@switch("num_workers", window=_workers_window)
def _workers(value: str | None, live: Live) -> Switch:
    return TwinLoader({"num_workers": int(value or 1)}, live)


@switch("pin_memory", window=lambda value: (3, 8))
def _pin(value: str | None, live: Live) -> Switch:
    return TwinLoader({"pin_memory": True}, live)
