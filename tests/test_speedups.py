"""The second axis: step variants train the same model as eager, variant names parse, DataLoader
workers yield the same batches, the training CLI validates the new options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.workload import Context, WorkloadError
from bench.workloads.ladder import GROUPS, expand, parse, reference_of
from tests.helpers import assert_same_training
from vae.model import VAE
from vae.pipelines import make_pipeline
from vae.speedups import graph_breaks, make_optimizer, step_functions
from vae.train import train_step


def _train(impl: str = "default", compile: str = "none", k: int = 5) -> tuple[torch.Tensor, list[float]]:
    torch.manual_seed(1)
    data = torch.rand(k, 100, 784)  # (k, batch, 784)
    torch.manual_seed(0)
    model = VAE()
    optimizer = make_optimizer(model.parameters(), 1e-3, impl)
    loss_fn, update_fn = step_functions(model, optimizer, compile)
    torch.manual_seed(42)  # the same noise draws in the reparameterization
    losses = [train_step(model, data[i], optimizer, loss_fn=loss_fn, update_fn=update_fn).item()
              for i in range(k)]
    return torch.cat([p.detach().flatten() for p in model.parameters()]), losses


@pytest.fixture(scope="module")
def eager() -> tuple[torch.Tensor, list[float]]:
    return _train()


@pytest.mark.parametrize("impl", ["foreach", "fused"])
def test_optimizer_implementations_train_the_same_model(eager, impl):
    assert_same_training(_train(impl), eager)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["model", "step"])
def test_the_compiled_step_trains_the_same_model(eager, mode):
    import torch._inductor.config as inductor

    # Inductor draws random numbers its own way; with fallback_random it uses eager's generator,
    # so the reparameterization noise is the same and the comparison is about the arithmetic.
    with inductor.patch(fallback_random=True):
        params, losses = _train(compile=mode)
    assert_same_training((params, losses), eager)
    assert not torch.equal(params, eager[0])  # it really ran compiled code, not eager


def test_graph_breaks_of_the_whole_step_are_reported():
    model = VAE()
    optimizer = make_optimizer(model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    found = graph_breaks(model, optimizer, torch.rand(100, 784))
    assert found["graph_breaks"] >= 1 and any("backward" in r for r in found["reasons"])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # put back


def test_bad_choices_are_refused():
    with pytest.raises(ValueError, match="unknown optimizer implementation 'lion'"):
        make_optimizer(VAE().parameters(), impl="lion")
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        step_functions(VAE(), make_optimizer(VAE().parameters()), "cudagraphs")


def test_variant_names_and_groups():
    assert parse("naive-w2").num_workers == 2 and parse("tensor-pin").pin_memory
    assert parse("resident+fused").impl == "fused" and parse("resident+compile-step").compile == "step"
    assert reference_of("resident+fused") == "resident" and reference_of("naive-w2") == "naive"
    assert reference_of("tensor") is None
    default = expand(("default",))
    assert default[0] == "naive" and default[-2:] == ["resident+foreach", "resident+fused"]
    assert "naive-w1" in default and "resident+compile" not in default
    assert expand(("ladder", "naive")) == list(GROUPS["ladder"]())
    for bad, phrase in (("fast", "unknown variant 'fast'"), ("batched-w2", "DataLoader options"),
                        ("resident+turbo", "unknown step variant 'turbo'")):
        with pytest.raises(WorkloadError, match=phrase):
            parse(bad)


def test_workers_yield_the_same_batches(train_split):
    plain = torch.cat(list(make_pipeline("naive", train_split, seed=5)))
    workers = torch.cat(list(make_pipeline("naive", train_split, seed=5, num_workers=2)))
    assert torch.equal(plain, workers)


def test_dataloader_options_only_where_they_mean_something(train_split):
    with pytest.raises(ValueError, match="apply to the DataLoader pipelines"):
        make_pipeline("resident", train_split, num_workers=2)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="pin_memory needs a CUDA device"):
            make_pipeline("naive", train_split, pin_memory=True)


def test_the_ladder_skips_gpu_only_variants_with_their_reason(data_root: Path):
    from bench.workload import Unavailable, variants_of

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    ctx = Context(device=torch.device("cpu"), data_dir=data_root, limit=300,
                  variants=("naive-pin", "resident+cudagraphs", "resident+fused"))
    variants = variants_of("bench.workloads.ladder:make", ctx)
    for name, phrase in (("naive-pin", "pinned memory"), ("resident+cudagraphs", "CUDA graphs")):
        with pytest.raises(Unavailable, match=phrase):
            variants.build(name)
    assert variants.build("resident+fused").optimizer.defaults["fused"] is True


def test_worker_variants_drain_the_prefetch_and_join_fewer_rounds(data_root: Path):
    from bench.measure.engine import Engine, Plan
    from bench.workload import variants_of

    ctx = Context(device=torch.device("cpu"), data_dir=data_root, limit=300,
                  variants=("naive-w1", "naive"))
    engine = Engine(variants_of("bench.workloads.ladder:make", ctx),
                      Plan(rounds=8, steps=1, warmup=1, bound=False, epochs=0))
    engine.prepare()
    assert engine.info["naive-w1"].round_steps == 4 and engine.info["naive"].round_steps == 1
    assert engine.works["naive-w1"].min_round_warmup == 3  # the 2 prefetched batches and one more
    assert engine.info["naive-w1"].first_step_s > 0 and engine.info["naive"].build_s >= 0
    timings, orders = engine.interleaved()
    assert [t.round for t in timings["naive-w1"]] == [0, 4] and len(timings["naive"]) == 8
    assert all(len(t.steps) == 4 for t in timings["naive-w1"])
    assert orders[1] == ["naive"] and set(orders[4]) == {"naive", "naive-w1"}


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--cuda-graphs"], "--cuda-graphs needs a CUDA device"),
        (["--num-workers", "2"], "--num-workers applies to the DataLoader pipelines"),
        (["--num-workers", "-1"], "must be 0 or more"),
        (["--optimizer-impl", "lion"], "invalid choice: 'lion'"),
    ],
)
def test_training_cli_validates_the_step_options(tmp_path: Path, data_root: Path, args, phrase):
    from tests.helpers import run_vae

    if args == ["--cuda-graphs"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_vae("train", "--data-dir", data_root, "--out", tmp_path / "o", *args)
    assert proc.returncode == 2 and phrase in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_training_cli_trains_with_fused_adam_and_workers(tmp_path: Path, data_root: Path):
    from tests.helpers import run_vae

    proc = run_vae("train", "--data-dir", data_root, "--out", tmp_path / "o", "--epochs", "1",
                   "--limit", "200", "--pipeline", "naive", "--num-workers", "1",
                   "--optimizer-impl", "fused", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "optimizer_impl='fused'" in (tmp_path / "o" / "train.log").read_text()
