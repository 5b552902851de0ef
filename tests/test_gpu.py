"""The GPU paths: pinned memory and its side-stream copies, the device-resident data set, CUDA
training and CUDA traces. Each test needs a CUDA device and is skipped with a reason without one
(see conftest.py); `test_pipelines.py` checks that the GPU batches match the CPU ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import cli
from bench.measure.clock import time_steps
from bench.measure.counters import count_operators
from bench.workload import Context
from bench.workloads.ladder import LadderWorkload
from vae.pipelines import make_pipeline
from vae.train import train_epoch

pytestmark = pytest.mark.gpu

BATCH_BYTES = 100 * 784 * 4  # one float32 (100, 784) batch


def test_pinned_stages_batches_in_pinned_memory(train_split):
    pipeline = make_pipeline("pinned", train_split, device="cuda")
    assert pipeline.data.is_pinned()
    assert all(buffer.is_pinned() for buffer in pipeline.staging)
    batches = list(pipeline)
    assert all(b.device.type == "cuda" and b.shape == (100, 784) for b in batches)


def _trace_events(trace_dir: Path) -> list[dict]:
    (trace,) = trace_dir.glob("*.json")
    return json.loads(trace.read_text())["traceEvents"]


def test_pinned_copies_run_on_a_side_stream(train_split, tmp_path: Path):
    """The point of `pinned`: the host-to-device copy is not on the stream that trains."""
    from torch.profiler import ProfilerActivity, profile

    from vae.model import VAE

    model = VAE().cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    pipeline = make_pipeline("pinned", train_split, device="cuda")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        train_epoch(model, pipeline, optimizer)
        torch.cuda.synchronize()
    prof.export_chrome_trace(str(tmp_path / "t.json"))
    events = _trace_events(tmp_path)
    copy_streams = {e["args"]["stream"] for e in events
                    if e.get("cat") == "gpu_memcpy" and "HtoD" in e.get("name", "")}
    kernel_streams = {e["args"]["stream"] for e in events if e.get("cat") == "kernel"}
    assert copy_streams and kernel_streams
    assert not copy_streams & kernel_streams, (copy_streams, kernel_streams)


@pytest.mark.parametrize(("name", "copies"), [("batched", 1), ("pinned", 1), ("resident", 0)])
def test_host_to_device_copies_per_step(name, copies, data_root: Path, train_split):
    """`resident` copies nothing per step; the host-memory pipelines copy one batch (for `pinned`,
    the next one, while this one trains)."""
    work = LadderWorkload(name, train_split, Context(device=torch.device("cuda"), data_dir=data_root))
    time_steps(work, 2)
    counters = count_operators(work, work.state(), steps=3)
    assert counters.h2d_copies_per_step == copies
    assert counters.h2d_bytes_per_step == copies * BATCH_BYTES


def test_profile_on_cuda_records_gpu_kernels(data_root: Path, tmp_path: Path):
    out = tmp_path / "reports"
    args = ["profile", "--data-dir", str(data_root), "--out", str(out), "--rounds", "5", "--steps", "3",
            "--warmup", "1", "--limit", "300", "--variants", "pinned,resident", "--device", "cuda",
            "--no-progress", "--profile-windows", "5"]
    assert cli.main(args) == 0
    for name in ("pinned", "resident"):
        events = _trace_events(out / "tb" / name)
        assert any(e.get("cat") == "kernel" for e in events), name
    summary = (out / "summary.md").read_text()
    assert "| pinned" in summary and "| resident" in summary and "cuda" in summary


def test_parts_on_cuda_come_from_events_and_add_up(train_split):
    """On a GPU the parts are timed with CUDA events (no synchronize inside the step): each part is
    positive and together they fit inside the synchronized run."""
    work = LadderWorkload("pinned", train_split, Context(device=torch.device("cuda")))
    time_steps(work, 3)
    t = time_steps(work, 5)
    assert set(t.parts) == {"data", "forward", "backward", "optimizer"}
    assert all(v > 0 for values in t.parts.values() for v in values)
    assert sum(sum(v) for v in t.parts.values()) <= t.seconds * 1.05


@pytest.mark.slow
def test_train_cli_on_cuda(data_root: Path, tmp_path: Path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "vae", "train", "--device", "cuda", "--data-dir",
                           str(data_root), "--out", str(out), "--epochs", "1", "--limit", "300",
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in ("orig_data.png", "reconstructions.png", "generated_samples.png"):
        assert (out / name).is_file(), name
    assert "cuda" in (out / "train.log").read_text()


def test_cuda_graph_step_trains_the_same_model_as_eager():
    """The captured step (torch.compile mode reduce-overhead) matches eager within the tolerance
    test_speedups.py states for compiled steps."""
    import torch._inductor.config as inductor

    from tests.helpers import assert_same_training
    from vae.model import VAE
    from vae.speedups import make_optimizer, step_functions
    from vae.train import train_step

    def run(compile: str) -> tuple[torch.Tensor, list[float]]:
        torch.manual_seed(1)
        data = torch.rand(5, 100, 784, device="cuda")
        torch.manual_seed(0)
        model = VAE().cuda()
        optimizer = make_optimizer(model.parameters(), 1e-3)
        loss_fn, update_fn = step_functions(model, optimizer, compile)
        torch.manual_seed(42)
        losses = [train_step(model, data[i], optimizer, loss_fn=loss_fn, update_fn=update_fn).item()
                  for i in range(5)]
        return torch.cat([p.detach().flatten() for p in model.parameters()]), losses

    with inductor.patch(fallback_random=True):
        eager, captured = run("none"), run("cudagraphs")
    assert_same_training((captured[0].cpu(), captured[1]), (eager[0].cpu(), eager[1]))


def test_pin_memory_rung_yields_the_same_batches_on_the_gpu(train_split):
    plain = torch.cat(list(make_pipeline("naive", train_split, device="cuda", seed=3)))
    pinned = torch.cat(list(make_pipeline("naive", train_split, device="cuda", seed=3, pin_memory=True)))
    assert torch.equal(plain, pinned)


def test_cuda_peak_memory_flops_and_the_datasheet_peak(train_split, tmp_path: Path, monkeypatch):
    from bench.measure import footprint

    work = LadderWorkload("resident", train_split, Context(device=torch.device("cuda")))
    time_steps(work, 2)
    from tests.helpers import memory_of

    memory, found = memory_of(lambda: time_steps(work, 1), torch.device("cuda"))
    # the replay of the allocator's events agrees with its own peak; the parts sum to it
    assert memory.rise(found) > 0 and sum(found.parts.values()) == found.peak
    assert found.peak == pytest.approx(memory.cuda["max_allocated"], rel=0.05)
    assert footprint.flops_of(lambda: time_steps(work, 1)) == 520_000_000
    monkeypatch.setattr(footprint, "CACHE", tmp_path)
    machine = footprint.machine_peak(torch.device("cuda"), "test gpu")
    assert machine["measured_flops"] > 0
    if any(k in torch.cuda.get_device_name() for k in footprint.DATASHEET):
        assert "datasheet" in machine["source"]


def test_memory_snapshot_is_written_for_memory_viz(data_root: Path, tmp_path: Path):
    out = tmp_path / "out"
    assert cli.main(["profile", "--data-dir", str(data_root), "--out", str(out), "--rounds", "5",
                     "--variants", "resident", "--tools", "none", "--epochs", "0", "--limit", "300",
                     "--memory-snapshot", "--no-progress"]) == 0
    assert (out / "resident.memory.pickle").stat().st_size > 0


def test_run_times_parts_with_events_and_sees_the_copies(data_root: Path, tmp_path: Path):
    from bench.measure.result import Result

    script = Path(__file__).resolve().parents[1] / "examples" / "scripts" / "mnist_classifier.py"
    out = tmp_path / "out"
    assert cli.main(["run", "--steps", "10", "--warmup", "2", "--tools", "none", "--out", str(out),
                     str(script), "--data-dir", str(data_root), "--batch-size", "20"]) == 0
    result = Result.load(out / "run.json")
    steps = result["mnist_classifier.py"].samples
    assert all(t.parts.get("copy", [0])[0] > 0 for t in steps)  # host-to-device .to(device)
    assert result["mnist_classifier.py"].footprint.cuda_peak_mb > 0


def test_every_switch_on_a_gpu():
    """--try's switches on CUDA, each toggled between steps: fused Adam's step counters moved to
    the parameters' device while on and back after; autocast (bf16, fp16), TF32,
    cudnn.benchmark and channels_last leave the model as built when off; the losses stay finite."""
    from bench.capture import switches
    from bench.capture.switches import Live

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 26 * 26, 10)).cuda()  # (batch, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    live = Live()
    live.add_optimizer(opt)
    live.add_module(model)
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    for name in ("foreach", "fused", "bf16", "fp16", "tf32", "cudnn_benchmark", "channels_last"):
        switch = switches.make((name,), live)
        for i in range(6):
            (switch.on if i % 2 == 0 else switch.off)()
            x = torch.randn(16, 1, 28, 28, device="cuda")
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), torch.randint(0, 10, (16,), device="cuda"))
            loss.backward()
            opt.step()
            assert torch.isfinite(loss)
            if name == "fused" and i % 2 == 0:
                assert all(s["step"].device.type == "cuda" for s in opt.state.values())
        switch.off()
        assert all(s["step"].device.type == "cpu" for s in opt.state.values())  # as plain Adam keeps it
        assert model[0].weight.is_contiguous() and not opt.param_groups[0]["fused"]
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark) == flags


CUDA_OOM = """
    import torch
    from torch import nn

    model = nn.Linear(1024, 1024).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batch = 64
    for step in range(40):
        if step == 8:
            batch = 10**12 // 4096  # a batch tried too large: ~1 TB of activations
        loss = model(torch.randn(batch, 1024, device="cuda")).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
"""


def test_a_cuda_out_of_memory_is_explained_with_the_allocators_snapshot(tmp_path: Path):
    """OutOfMemoryError on the device: the line, the bytes asked, the device's parts, and the
    allocator's snapshot (its history from the warm-up) written for PyTorch's memory viewer."""
    import pickle

    from bench.measure.result import Result
    from tests.helpers import write

    script = write(tmp_path, CUDA_OOM, "train.py")
    out = tmp_path / "out"
    assert cli.main(["run", "--warmup", "5", "--steps", "20", "--tools", "none", "--observe-windows", "0",
                     "--out", str(out), str(script)]) == 1
    m = Result.load(out / "run.json")["train.py"]
    oom = m.process.oom
    assert oom is not None and oom.device == "cuda" and oom.line == "train.py:11" and oom.asked
    assert oom.live["parameters"] == (1024 * 1024 + 1024) * 4
    snapshot = pickle.loads((out / oom.snapshot).read_bytes())
    assert snapshot["segments"] and any(t.get("entries") for t in snapshot.get("device_traces", []))
    assert oom.snapshot in m.artifacts
