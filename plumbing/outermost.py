"""The outermost module's forward -- whatever module a script calls first -- seen at the cost of
that one module's hooks.

PyTorch's global module hooks see every module's forward, but while one is registered *every*
module call leaves PyTorch's fast path, and each hook is a Python call: on a 2-core CPU a
784-256-10 classifier's step did ~134k instructions more under a global pre- and post-hook
(4.5% of its step at batch 8; callgrind). Only the outermost forward is wanted, so the global
pre-hook takes itself out while that forward runs (the modules inside take the fast path) and
a hook on that one module, marked ``always_call`` (it runs when the forward raises, too), ends
it and puts the global pre-hook back. Both are set in PyTorch's hook dicts directly: the public
``register_forward_hook`` costs ~2.5 us a call, as much as it saves on a small model.

A forward run in another thread meanwhile is not seen (no training loop here does that).
Between forwards no hook is left on the script's modules: ``copy.deepcopy(model)`` or
``torch.save(model)`` in the script copies nothing of ours.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

TWICE = r"Using `torch.compile\(module\)` when there are global hooks"


class Outermost:
    """``enter(module, args)`` before the outermost module's forward (what it returns, if not
    None, replaces the inputs, as a forward pre-hook's would); ``leave(module, output)`` after it
    (what it returns, if not None, replaces the output)."""

    def __init__(self, enter: Callable[[Any, tuple[Any, ...]], Any],
                 leave: Callable[[Any, Any], Any] | None = None):
        self.enter, self.leave = enter, leave
        self._handle: Any = None  # the global pre-hook's handle while attached
        self._key = -1  # its id, kept as a number (torch.compile traces the hooks: it cannot read a handle)
        self._globals: Any = None  # PyTorch's global forward pre-hooks (a dict by hook id)
        self._inside: Any = None  # the module whose forward runs now (or whose hook awaits removal)

    @property
    def attached(self) -> bool:
        return self._handle is not None

    def attach(self) -> None:
        from torch.nn.modules import module as nn_module

        if self._handle is None:
            # PyTorch warns that a global hook fires twice around torch.compile(module)'s wrapper:
            # this one fires once (it is out while the wrapper's forward runs), so the warning would
            # only puzzle the script's user.
            warnings.filterwarnings("ignore", message=TWICE)
            self._globals = nn_module._global_forward_pre_hooks
            self._handle = nn_module.register_module_forward_pre_hook(self._pre)
            self._key = self._handle.id

    def detach(self) -> None:
        """Off, wherever it is: inside a forward (one ended by an interrupt, which ``always_call``
        does not cover) its module's hook comes off too."""
        self._unhook()
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _unhook(self) -> None:
        if self._inside is not None:
            self._inside._forward_hooks.pop(self._key, None)
            self._inside._forward_hooks_always_called.pop(self._key, None)
            self._inside = None

    def _pre(self, module: Any, args: tuple[Any, ...]) -> Any:
        self._unhook()  # the hook a raised forward left (see _post)
        key = self._key
        # PyTorch copied the global hooks for this call before calling this one: taking it out
        # changes only the modules called inside (the other global hooks still run here).
        self._globals.pop(key, None)
        module._forward_hooks[key] = self._post
        module._forward_hooks_always_called[key] = True
        self._inside = module
        return self.enter(module, args)

    def _post(self, module: Any, args: tuple[Any, ...], output: Any) -> Any:
        # Called from PyTorch's exception handler, the module's hook dict is being iterated: its
        # hook comes off at the next forward (or detach) instead.
        if sys.exc_info()[1] is None:
            self._unhook()
        if self._handle is not None:  # still attached: back in for the next outermost forward
            self._globals[self._key] = self._pre
        return self.leave(module, output) if self.leave is not None else None
