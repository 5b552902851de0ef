"""The outermost forward seen with one global pre-hook: what the capture's `forward` part and the
fixes' autocast/compile patches stand on."""

from __future__ import annotations

import copy
import io
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn.modules import module as nn_module

from plumbing.outermost import Outermost


class Net(nn.Module):
    def __init__(self, fail: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        self.fail = fail
        self.inside_saw_global_hooks: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, 4) -> (batch, 2)
        self.inside_saw_global_hooks.append(bool(nn_module._global_forward_pre_hooks))
        if self.fail:
            raise ValueError("bad batch")
        return self.body(x)


@pytest.fixture
def seen():
    calls: list[tuple[str, str]] = []
    outer = Outermost(lambda m, a: calls.append(("in", type(m).__name__)),
                      lambda m, out: calls.append(("out", type(m).__name__)))
    outer.attach()
    yield SimpleNamespace(outer=outer, calls=calls)
    outer.detach()


def test_only_the_outermost_forward_is_seen_and_the_modules_inside_run_unhooked(seen):
    net = Net()
    for _ in range(3):
        net(torch.randn(5, 4)).sum().backward()
    assert seen.calls == [("in", "Net"), ("out", "Net")] * 3  # not its Sequential, Linear or ReLU
    assert net.inside_saw_global_hooks == [False] * 3  # the modules inside took the fast path
    assert not net._forward_hooks and not net._forward_hooks_always_called  # nothing left on it
    net.body(torch.randn(5, 4))  # called on its own, a submodule is an outermost forward too
    assert seen.calls[-2:] == [("in", "Sequential"), ("out", "Sequential")]


def test_a_forward_that_raises_is_ended_and_the_next_one_is_seen(seen):
    net = Net(fail=True)
    with pytest.raises(ValueError, match="bad batch"):
        net(torch.randn(5, 4))
    assert seen.calls == [("in", "Net"), ("out", "Net")]
    net.fail = False
    net(torch.randn(5, 4))
    assert seen.calls[2:] == [("in", "Net"), ("out", "Net")]
    assert not net._forward_hooks and seen.outer.attached


def test_the_model_deep_copies_and_saves_between_forwards(seen):
    """Scripts keep their best model with copy.deepcopy or torch.save(model) mid-training: nothing
    of the capture may travel with it."""
    net = Net()
    net(torch.randn(5, 4))
    twin = copy.deepcopy(net)
    assert not twin._forward_hooks
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert not loaded._forward_hooks


def test_detach_inside_an_interrupted_forward_leaves_no_hook(seen):

    class Interrupted(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise KeyboardInterrupt  # always_call does not cover a BaseException

    net = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        net(torch.randn(2, 4))
    seen.outer.detach()
    assert not net._forward_hooks and not nn_module._global_forward_pre_hooks
    assert not seen.outer.attached


def test_inputs_and_outputs_may_be_replaced_and_two_observers_both_see_it(seen):
    doubled = Outermost(lambda m, args: (args[0] * 2,), lambda m, out: out + 100)
    doubled.attach()
    try:
        net = nn.Identity()
        out = net(torch.ones(3))
        assert torch.equal(out, torch.full((3,), 102.0))
        assert seen.calls == [("in", "Identity"), ("out", "Identity")]
        assert not net._forward_hooks and len(nn_module._global_forward_pre_hooks) == 2
    finally:
        doubled.detach()
    assert len(nn_module._global_forward_pre_hooks) == 1


def test_a_compiled_model_keeps_its_one_graph(seen):
    """Hooks on every module broke a torch.compile'd model at each of them (0 graphs, 17 breaks
    for this one under the capture's old global hooks): observing must not change what runs."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        seen.outer.detach()
        seen.outer.attach()  # its filter set again inside this block
        net = torch.compile(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), backend="eager")
    assert not [w for w in said if "global hooks" in str(w.message)]  # "fire an extra time": not ours
    for _ in range(3):
        net(torch.randn(5, 4)).sum().backward()
    assert counters["stats"]["unique_graphs"] == 1
    assert not sum(counters["graph_break"].values())
    assert seen.calls == [("in", "OptimizedModule"), ("out", "OptimizedModule")] * 3
    torch._dynamo.reset()
