"""``vaebench run --try``: the catalogue's choices and reasons, the patches (applied and undone),
the numerics, the verdicts of a try Result and its renderers, bad input, and the whole command on
a small script of our own -- its processes run in this process (the same ``bench run`` entry a
subprocess would run) so the suite stays fast; the figures on real scripts are in docs/results.md."""

from __future__ import annotations

import math
import os
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bench import cli
from bench.capture import patches
from bench.fixes import catalogue
from bench.measure import tries
from bench.measure.clock import Timing
from bench.measure.environment import Environment
from bench.measure.result import Built, Measurement, Process, Result
from bench.measure.specs import TrySpec


def _seen(**kw) -> catalogue.Seen:
    base = dict(loaders=[Built("DataLoader", "DataLoader", "train.py:12", {"num_workers": 0})],
                optimizers=[Built("optimizer", "Adam", "train.py:20", {"foreach": None, "fused": None})],
                models=[Built("model", "Net", "", {})], device="cpu", threads=2, cores=2)
    return catalogue.Seen(**(base | kw))


def test_the_catalogue_proposes_from_what_the_script_built_and_says_why_it_skips():
    fixes, skipped = catalogue.propose(_seen())
    names = [f.name for f in fixes]
    assert "num_workers=1" in names and "num_workers=2" in names and "fused=True" in names
    workers = next(f for f in fixes if f.name == "num_workers=2")
    assert workers.edit == "train.py:12: DataLoader(..., num_workers=2)"
    fused = next(f for f in fixes if f.name == "fused=True")
    assert fused.edit == "train.py:20: torch.optim.Adam(..., fused=True)"
    assert skipped["pin_memory"] == "CUDA only: the script ran on the CPU"
    assert "2 cores" in skipped["threads"] and "--fixes compile" in skipped["compile"]
    _, skipped = catalogue.propose(_seen(optimizers=[], loaders=[]))
    assert skipped["fused"].startswith("no optimizer seen") and skipped["num_workers"] == "no DataLoader seen"
    lbfgs = [Built("optimizer", "LBFGS", "t.py:3", {})]
    assert "takes no `fused`" in catalogue.propose(_seen(optimizers=lbfgs))[1]["fused"]
    busy = [Built("DataLoader", "DataLoader", "t.py:1", {"num_workers": 2})]
    assert "already has 2 workers" in catalogue.propose(_seen(loaders=busy))[1]["num_workers"]
    only, _ = catalogue.propose(_seen(), asked=["foreach"])
    assert [f.name for f in only] == ["foreach=True"]


def test_patches_change_the_constructors_and_are_undone():
    data = TensorDataset(torch.zeros(8, 2))
    undo = patches.apply(("num_workers=2", "persistent_workers", "fused"))
    try:
        assert DataLoader(data, 4).num_workers == 2
        assert DataLoader(data, 4, False, None, None, 0).num_workers == 2  # passed positionally
        assert DataLoader(data, 4).persistent_workers is True
        opt = torch.optim.Adam(torch.nn.Linear(2, 2).parameters())
        assert opt.defaults["fused"] is True and opt.defaults["foreach"] is None
    finally:
        patches.restore(undo)
    assert DataLoader(data, 4).num_workers == 0 and DataLoader(data, 4).persistent_workers is False
    assert not torch.optim.Adam(torch.nn.Linear(2, 2).parameters()).defaults["fused"]


def test_bf16_autocast_wraps_only_the_outermost_forward():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    seen = []
    model[0].register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    undo = patches.apply(("bf16",))
    try:
        out = model(torch.ones(2, 4))
        assert seen == [torch.bfloat16]  # the layers ran in bf16 ...
        assert out.dtype == torch.float32  # ... and the loss gets float32, as the script expects
        torch.nn.functional.binary_cross_entropy(torch.sigmoid(out), torch.ones(2, 4))
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32  # outside it: unchanged
    finally:
        patches.restore(undo)
    assert model(torch.ones(2, 4)).dtype == torch.float32


def _fit(steps: int, fixes: tuple[str, ...] = (), blow_up_at: int = -1) -> dict:
    """A small regression trained with clipping, as a script writes it (no scaler of its own)."""
    out: dict = {"losses": [], "norms": [], "params": []}
    undo = patches.apply(fixes)  # before the script starts, as --try applies it
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        x, y = torch.randn(64, 8), torch.randn(64, 1)
        for step in range(steps):
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            (loss * (1e30 if step == blow_up_at else 1.0)).backward()
            out["norms"].append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)))
            opt.step()
            out["losses"].append(loss.item())
            out["params"].append([p.detach().clone() for p in model.parameters()])
    finally:
        patches.restore(undo)
    return out


def test_fp16_scales_the_scripts_own_backward_unscales_before_clipping_and_skips_inf_steps():
    """The fp16 fix on a script with no scaler of its own (run here on the CPU, which has fp16
    autocast and a CPU GradScaler; the catalogue proposes it on CUDA only)."""
    plain, half = _fit(20), _fit(20, ("fp16",))
    # clipping saw the true gradients (a scaled one would be 65536 times larger)
    assert half["norms"][0] == pytest.approx(plain["norms"][0], rel=0.02)
    # it trains as the float32 script does, within fp16's precision
    assert half["losses"][-1] == pytest.approx(plain["losses"][-1], rel=0.05)
    assert half["losses"][-1] < half["losses"][0]
    # a step whose scaled gradients overflow changes nothing, and training goes on
    blown = _fit(6, ("fp16",), blow_up_at=3)
    assert all(torch.equal(a, b) for a, b in zip(blown["params"][2], blown["params"][3], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(blown["params"][3], blown["params"][4], strict=True))
    assert math.isfinite(blown["losses"][-1])
    # undone: backward and clipping are PyTorch's own again
    assert _fit(2)["norms"] == plain["norms"][:2]


def test_fp16_refuses_a_closure_in_one_line_and_is_proposed_on_cuda_only():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.LBFGS(model.parameters())
    undo = patches.apply(("fp16",))
    try:
        def closure():
            opt.zero_grad()
            loss = model(torch.ones(3, 2)).pow(2).mean()
            loss.backward()
            return loss

        closure()
        with pytest.raises(RuntimeError, match="closure cannot be scaled"):
            opt.step(closure)
    finally:
        patches.restore(undo)
    assert catalogue.propose(_seen())[1]["fp16"].startswith("CUDA only")
    fixes, _ = catalogue.propose(_seen(device="cuda"), asked=["fp16"])
    assert fixes[0].patches == ("fp16",) and fixes[0].group == "precision"
    assert "train.py:20: scaler = torch.amp.GradScaler('cuda')" in fixes[0].edit
    lbfgs = [Built("optimizer", "LBFGS", "t.py:3", {})]
    assert "closure" in catalogue.propose(_seen(device="cuda", optimizers=lbfgs), asked=["fp16"])[1]["fp16"]


def test_channels_last_converts_a_conv_model_and_its_images_and_is_undone():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    seen = []
    model[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x = torch.randn(2, 3, 8, 8)
    eager = model(x)
    undo = patches.apply(("channels_last",))
    try:
        out = model(x)
        assert seen[-1].is_contiguous(memory_format=torch.channels_last)
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(out, eager, atol=1e-5)  # the same function, another memory order
        lengths = torch.nn.Linear(3, 2)(torch.ones(5, 3))  # not 4-D: passed as it is
        assert lengths.shape == (5, 2)
    finally:
        patches.restore(undo)
    model(x)
    assert seen[-1].is_contiguous()  # the hooks are gone
    fixes, _ = catalogue.propose(_seen(models=[Built("model", "Net", "", {"conv2d": 2})]))
    (fix,) = [f for f in fixes if f.name == "channels_last"]
    assert fix.edit.startswith("after building Net: model = model.to(memory_format=torch.channels_last)")
    assert catalogue.propose(_seen())[1]["channels_last"] == "no 2-D convolution in the model"


@pytest.mark.parametrize(("cand", "said"), [
    ([[1.0, 0.9, 0.8]], "same numerics (bitwise)"),
    ([[1.0, 0.905, 0.81]], "numerics changed, loss off by at most 1.3%"),
    ([[1.0, 0.9, 0.8000001]], "numerics changed, loss off by less than 0.1%"),  # not "within 0.0%"
    ([[1.0, 2.0, 9.0]], "changes the result: loss diverged"),
    ([[1.0, math.nan, 0.8]], "changes the result: loss diverged (not finite)"),
])
def test_numerics_against_the_baseline(cand, said):
    assert tries.numerics([[1.0, 0.9, 0.8], [1.0, 0.9, 0.8]], cand, 0.05).startswith(said)


def test_a_baseline_whose_loss_is_nan_blames_no_fix():
    said = tries.numerics([[1.0, math.nan], [1.0, math.nan]], [[1.0, math.nan]], 0.05)
    assert said == "not compared: the baseline's own loss is not finite"


def _process(side: str, i: int, step_ms: float, losses: list[float], phase: int = 1, **notes) -> Measurement:
    steps = [step_ms / 1e3 * (1 + 0.01 * ((i + k) % 3)) for k in range(10)]
    return Measurement(name=f"{side} #{i + 1}", samples=[Timing(s, [s]) for s in steps], batch_size=32,
                       notes={"side": side, "repeat": i, "phase": phase, **notes},
                       process=Process(losses=losses, warmup_s=3.0 if side == "num_workers=2" else 1.0))


def _try_result() -> Result:
    good, same = [2.0, 1.5, 1.2], [2.0, 1.5, 1.2]
    ms = []
    for i in range(5):
        ms += [_process(tries.BASELINE, i, 10.0, same), _process(tries.AGAIN, i, 10.0, same),
               _process("num_workers=2", i, 7.0, same, group="loader",
                        edit="t.py:9: DataLoader(..., num_workers=2)"),
               _process("wrong", i, 5.0, [2.0, 8.0, 30.0], group="mine", edit="t.py:1: lr"),
               _process("fused=True", i, 9.0, [2.0, 1.51, 1.21], group="optimizer", edit="t.py:3: fused"),
               _process(tries.BASELINE, i, 10.0, good, phase=2),
               _process(tries.COMBINED, i, 6.0, good, phase=2, group="combined", edit="both")]
    spec = TrySpec(command=("t.py",), fixes=("num_workers=2", "wrong", "fused=True"),
                   skipped=("pin_memory: CUDA only: the script ran on the CPU",),
                   combination=("num_workers=2", "fused=True"))
    return Result(kind="try", spec=spec, machine=Environment.capture(torch.device("cpu")), measurements=ms)


def test_a_machine_whose_speed_jumps_between_processes_is_said_why_not_measurable():
    """Processes alternating between two speeds of the machine (10 and 13.6 ms for the same
    baseline, seen here): no verdict, and the report says which sides spread and by how much."""
    same = [2.0, 1.5]
    ms = []
    for i, state in enumerate([1.0, 1.36, 1.0, 1.36, 1.0]):
        ms += [_process(tries.BASELINE, i, 10.0 * state, same), _process(tries.AGAIN, i, 10.0, same),
               _process("fused=True", i, 9.0 * state, same, group="optimizer", edit="t.py:3: fused")]
    spec = TrySpec(command=("t.py",), fixes=("fused=True",))
    result = Result(kind="try", spec=spec, machine=Environment.capture(torch.device("cpu")), measurements=ms)
    by = {r.name: r for r in tries.rows(result)}
    assert by["fused=True"].verdict == "not measurable" and by[tries.AGAIN].verdict == "not measurable"
    assert list(tries.unsteady(result)) == [tries.BASELINE, "fused=True"]
    from bench.render import tries as rendered
    said = "\n".join(rendered.markdown(result))
    assert "the processes of a side spread by more than 25%" in said
    assert "baseline 36% (10.10-13.74 ms)" in said and "re-run on a quieter machine" in said
    assert any("spread by more than" in line for line in rendered.terminal(result))
    assert not tries.unsteady(_try_result())  # a steady run says nothing of it


def test_a_try_result_says_faster_unchanged_and_flags_the_fix_that_changes_the_loss(tmp_path: Path):
    result = _try_result()
    by = {r.name: r for r in tries.rows(result)}
    assert by[tries.AGAIN].verdict == "unchanged"
    assert by["num_workers=2"].verdict == "faster" and by["num_workers=2"].recommended
    low, high = by["num_workers=2"].speedup[1:]
    assert low > 1 and low <= 10 / 7 <= high * 1.05
    assert by["wrong"].verdict == "faster" and by["wrong"].diverged and not by["wrong"].recommended
    assert by["fused=True"].numerics.startswith("numerics changed, loss off by")
    assert [r.name for r in tries.choose(tries.rows(result))] == ["num_workers=2", "fused=True"]
    saved = Result.load(result.save(tmp_path / "run.json"))  # kind try survives the round trip
    assert [r.verdict for r in tries.rows(saved)] == [r.verdict for r in tries.rows(result)]


def test_the_try_report_recommends_from_the_combination_and_never_the_diverged_fix(tmp_path: Path):
    from bench.render import render_all

    result = _try_result()
    render_all(result, tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert "**Apply num_workers=2 + fused=True: together 1.67x faster" in md
    wrong = next(line for line in md.splitlines() if line.startswith("| wrong"))
    assert "changes the result: loss diverged" in wrong
    assert "`t.py:9: DataLoader(..., num_workers=2)`" in md
    workers = next(line for line in md.splitlines() if line.startswith("| num_workers=2"))
    assert "+2.00 s" in workers  # its one-off cost (worker start), and the steps that pay it back
    base, fast = 10.0 * 1.01, 7.0 * 1.01  # the medians of _process's steps
    assert f"| {math.ceil(2.0 / ((base - fast) / 1e3))} steps |" in workers
    again = next(line for line in md.splitlines() if line.startswith("| baseline again"))
    assert " steps |" not in again
    assert "The A/A (the baseline against itself) reads" in md and "pin_memory: CUDA only" in md
    csv = (tmp_path / "summary.csv").read_text()
    assert csv.splitlines()[0].startswith("fix,group,measured,processes,blocks") and "wrong" in csv
    assert (tmp_path / "speedup.png").stat().st_size > 0
    html = (tmp_path / "report.html").read_text()
    assert "together 1.67x faster" in html and "<svg" in html


@pytest.mark.parametrize(("argv", "said"), [
    (["--steps", "0"], "--try --steps 0"),
    (["--repeats", "1"], "--try --repeats 1"),
    (["--fixes", "warp-drive"], "unknown fix 'warp-drive'"),
    (["--fixes", ""], "--fixes names no fix"),
    (["--fixes", " , "], "--fixes names no fix"),
    (["--fixes-from", "no_such_fixes_module"], "--fixes-from no_such_fixes_module: cannot import it"),
])
def test_bad_try_input_is_one_line_and_exit_2(tmp_path: Path, capsys, argv, said):
    script = tmp_path / "t.py"
    script.write_text("print('never run')\n")
    code = cli.main(["run", "--try", *argv, "--out", str(tmp_path / "out"), str(script)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and said in err and len(err.splitlines()) == 1, err


SCRIPT = textwrap.dedent("""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.randn(256, 8), torch.randn(256, 1))
    loader = DataLoader(data, batch_size=16, shuffle=True)
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(20):
        for x, y in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
""")

PLUGIN = textwrap.dedent("""
    import torch
    from bench.fixes import catalogue
    from bench.capture import patches
    @patches.patch("lr100")
    def lr100(value, undo):  # a deliberately wrong fix: it changes what the script computes
        patches.wrap_init(torch.optim.SGD, lambda bound: bound.arguments.update(lr=5.0), undo)

    catalogue.register(catalogue.Entry("lr100", lambda seen: [catalogue.Fix(
        "lr x500", "mine", ("lr100",), "nowhere: this fix is wrong on purpose")]))

    @patches.patch("refuse")
    def refuse(value, undo):  # a fix the script's optimizer rejects, as fused=True can be
        def change(bound):
            raise ValueError("SGD rejects this option")
        patches.wrap_init(torch.optim.SGD, change, undo)

    catalogue.register(catalogue.Entry("refuse", lambda seen: [catalogue.Fix(
        "refused", "other", ("refuse",), "nowhere")]))
""")


def _in_process(words: list[str]) -> tuple[int, str]:
    """A ``python -m bench run ...`` process, run here (argv and modules as a process would)."""
    import contextlib
    import io

    from bench.capture import child

    assert words[1:3] == ["-m", "bench.capture.child"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = child.main(words[3:])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue()


def test_try_end_to_end_flags_a_wrong_fix_and_never_ranks_the_a_a(tmp_path: Path, monkeypatch, capsys):
    from bench.fixes import children
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "my_fixes.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(children, "launch", _in_process)
    monkeypatch.setattr(catalogue, "CATALOGUE", list(catalogue.CATALOGUE))
    out = tmp_path / "out"
    code = cli.main(["run", "--try", "--fixes", "lr100,fused,refuse", "--fixes-from", "my_fixes",
                     "--blocks", "3", "--pairs", "5", "--steps", "10", "--warmup", "2", "--out", str(out),
                     str(tmp_path / "train.py")])
    assert code == 0, capsys.readouterr().err
    result = Result.load(out / "run.json")
    assert result.kind == "try" and "lr x500" in result.spec.fixes and "fused=True" in result.spec.fixes
    # fused is a switch: in-process pairs (one process of the script holds its 3 blocks and the
    # A/A's) and one short seeded run for its numerics; the fixes with no switch in processes,
    # 5 a side against the baseline's (the probe the first); the refused fix failed once and
    # was not run again
    assert result.spec.switched == ("fused=True",)
    assert len(result.measurements) == 1 + 1 + 1 + 4 + 5 + 1
    by = {r.name: r for r in tries.rows(result)}
    assert by["fused=True"].how == "in-process pairs, 3 blocks" and by["fused=True"].comparison is None
    assert by[tries.AGAIN].how == "in-process pairs, 3 blocks" and by["lr x500"].how == "5 processes"
    # sub-millisecond steps in one shared process: the A/A may be unmeasurable, never a finding
    assert by[tries.AGAIN].verdict in ("unchanged", "not measurable")
    assert by["lr x500"].diverged and not by["lr x500"].recommended
    # each process's tensors at the step's peak, against the baseline's: the same model and optimizer
    assert by["lr x500"].tensors_mb["parameters"] == 0 and by["lr x500"].tensors_mb["optimizer state"] == 0
    assert "activations" in by["lr x500"].tensors_mb and "peak" in by["lr x500"].tensors_mb
    # a switched fix's, from its seeded short runs: fused keeps the same state
    fused = by["fused=True"].tensors_mb
    assert fused["parameters"] == 0 and fused["optimizer state"] == 0
    assert tries.deterministic(result) is True  # --seed 0 in every process: the same losses
    assert by["fused=True"].numerics != "" and not by["fused=True"].failed
    assert by["refused"].verdict == "failed" and "SGD rejects this option" in by["refused"].failed
    md = (out / "summary.md").read_text()
    refused = next(line for line in md.splitlines() if line.startswith("| refused"))
    assert "| lr x500 |" in md and "loss diverged" in md
    assert "failed: " in refused and "SGD rejects" in refused
    assert sys.modules.get("my_fixes") is not None


def _script(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text(SCRIPT)
    return tmp_path / "train.py"


def test_ctrl_c_half_way_keeps_every_process_measured(tmp_path: Path, monkeypatch, capsys):
    """Ctrl-C reaches the switches' second process too (one process group): it writes what it
    measured, and the parent keeps those blocks with the first process's."""
    from bench.fixes import children
    calls = []

    def interrupted_in_the_third(words: list[str]) -> tuple[int, str]:
        calls.append(words)
        said = _in_process(words)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return said

    monkeypatch.setattr(children, "launch", interrupted_in_the_third)
    out = tmp_path / "out"
    code = cli.main(["run", "--try", "--fixes", "foreach", "--steps", "5", "--warmup", "1", "--out", str(out),
                     str(_script(tmp_path))])
    assert code == 130
    result = Result.load(out / "run.json")
    assert len(result.measurements) == 3 and "interrupted (Ctrl-C) after 3 processes" in \
        result.partial["try/schedule"]
    kept = result.measurements[2]
    assert kept.notes["side"] == tries.SWITCHES and kept.profiles["switch:foreach=True"].plain
    before = replace(result, measurements=result.measurements[:2], cache={})
    blocks = tries.block_speedups
    assert len(blocks(result, "foreach=True")) > len(blocks(before, "foreach=True"))
    assert "Stopped early: interrupted" in (out / "summary.md").read_text()


def test_max_minutes_starts_no_process_past_it(tmp_path: Path, monkeypatch):
    from bench.fixes import children
    monkeypatch.setattr(children, "launch", _in_process)
    out = tmp_path / "out"
    code = cli.main(["run", "--try", "--fixes", "foreach", "--max-minutes", "0.0001", "--steps", "5",
                     "--warmup", "1", "--out", str(out), str(_script(tmp_path))])
    result = Result.load(out / "run.json")
    assert code == 0 and len(result.measurements) == 1  # the probe only
    assert result.partial["try/schedule"].startswith("stopped at --max-minutes 0.0001")
    assert "No recommendation: the run stopped before it was complete." in (out / "summary.md").read_text()


def test_a_script_that_updates_by_hand_gets_no_optimizer_fix_and_says_why(tmp_path: Path, monkeypatch):
    from bench.fixes import children
    monkeypatch.setattr(children, "launch", _in_process)
    out = tmp_path / "out"
    script = Path(__file__).parents[1] / "examples" / "scripts" / "manual_update.py"
    code = cli.main(["run", "--try", "--max-minutes", "0.0001", "--steps", "5", "--warmup", "1",
                     "--out", str(out), str(script)])
    result = Result.load(out / "run.json")
    assert code == 0 and result.measurements[0].process.step_rule == "backward"
    skipped = dict(s.split(": ", 1) for s in result.spec.skipped)
    assert skipped["foreach"].startswith("no optimizer seen") and skipped["fused"].startswith("no optimizer")
    assert not any(f.endswith("=True") and f.split("=")[0] in ("foreach", "fused") for f in result.spec.fixes)


def test_compare_of_two_batch_sizes_is_judged_per_sample_not_per_step():
    """`run --compare "train.py" "train.py --batch-size 128"`: B's step takes longer because it
    steps on twice the samples; B / A is the time per sample (B here 0.94 of A's: faster), and
    says so. The same batch on both sides keeps B / A per step."""
    from bench.measure import advice

    def side(name: str, batch: int, step_ms: float) -> list[Measurement]:
        ms = [_process(name, i, step_ms, [1.0]) for i in range(5)]
        for m in ms:
            m.batch_size = batch
        return ms

    spec = TrySpec(command=("t.py",), versus=("t.py", "--batch-size", "128"), fixes=("B",))
    two = Result(kind="try", spec=spec, machine=Environment.capture(torch.device("cpu")),
                 measurements=side(tries.BASELINE, 64, 4.0) + side("B", 128, 7.5))
    b = next(r for r in tries.rows(two) if r.name == "B")
    assert b.per == "sample" and b.verdict == "faster" and b.speedup[0] == pytest.approx(8 / 7.5, rel=0.02)
    assert b.samples_per_s == pytest.approx(128 / 7.5e-3, rel=0.02)
    said = advice.compared(two)
    assert said.startswith("B / A = 0.9") and "per sample" in said and "that B is faster" in said
    same = Result(kind="try", spec=spec, machine=Environment.capture(torch.device("cpu")),
                  measurements=side(tries.BASELINE, 64, 4.0) + side("B", 64, 7.5))
    b = next(r for r in tries.rows(same) if r.name == "B")
    assert b.per == "step" and b.verdict == "slower" and "per sample" not in advice.compared(same)
    unseen = side("B", 64, 7.5)
    for m in unseen:
        m.batch_size = None  # a script whose batches are not tensors
    blind = Result(kind="try", spec=spec, machine=Environment.capture(torch.device("cpu")),
                   measurements=side(tries.BASELINE, 64, 4.0) + unseen)
    assert "per step (the batch of a step was not seen on both sides" in advice.compared(blind)


def test_plugins_written_against_the_old_patch_names_and_module_still_load():
    """`from bench.fixes.patches import patch` and the patch names before this release
    (workers, persistent, pin) keep a user's --fixes-from module working for one release."""
    from bench.capture import switches
    from bench.fixes.patches import patch as old_patch

    assert old_patch is patches.patch
    assert patches.names(("workers=2", "persistent", "pin")) == [
        ("num_workers", "2"), ("persistent_workers", None), ("pin_memory", None)]
    assert switches.switchable(("workers=2",)) and switches.window_of(("workers=2",)) == (5, 8)


def test_try_under_torchrun_runs_each_process_as_a_job_and_shares_the_cores(tmp_path: Path):
    """--try --nproc N: every process of the schedule is a torchrun job of N ranks (the fix applied
    in each), rank 0's steps and losses its sample, a failed rank fails the process; the
    catalogue fits workers and threads to the cores a rank has."""
    import json

    from bench.fixes import children
    spec = TrySpec(command=("ddp.py", "--epochs", "1"), nproc=2, torchrun="--master-port 29999")
    runner = children.Children(spec, tmp_path)
    from bench.capture.child import command

    words = command(runner.child(("fused",), 50), tmp_path / "p0")
    assert words[1:3] == ["-m", "bench.capture.child"]
    given = json.loads(Path(words[3]).read_text())  # the child's spec, as data
    assert given["spec"]["nproc"] == 2 and given["spec"]["torchrun"] == "--master-port 29999"
    assert given["spec"]["command"] == ["ddp.py", "--epochs", "1"] and given["spec"]["patches"] == ["fused"]
    ok = [_process("baseline", 0, 10.0, [1.0]), _process("baseline", 0, 10.0, [1.0])]
    ok[0].name, ok[1].name = "rank0", "rank1"
    child = Result(kind="script", spec=TrySpec(command=("x.py",)), machine=_try_result().machine,
                   measurements=ok)
    assert children._sample(child) is ok[0]
    ok[1].status, ok[1].reason = "failed", "the script raised ValueError: fused"
    assert children._sample(child).status == "failed" and children._sample(child).reason.startswith("rank1: ")
    rank0 = Measurement(name="rank0", process=Process(threads=1, built=[
        Built("DataLoader", "DataLoader", "ddp.py:9", {"num_workers": 0})]))
    seen = catalogue.Seen.of(rank0, nproc=2)
    assert seen.cores == max(1, (os.cpu_count() or 1) // 2) and seen.nproc == 2
    fixes, skipped = catalogue.propose(catalogue.Seen(**{**seen.__dict__, "cores": 1}))
    loader = [f.name for f in fixes if f.group == "loader"]
    assert loader == ["num_workers=1"]  # persistent workers: asked for by name only
    assert skipped["threads"] == "torch already uses all 1 core a rank (2 ranks) (1 threads)"


def test_try_across_several_nodes_is_refused_in_one_line(tmp_path: Path, capsys):
    script = tmp_path / "t.py"
    script.write_text("print('never run')\n")
    code = cli.main(["run", "--try", "--nproc", "1", "--torchrun", "--nnodes 2 --node-rank 0", "--out",
                     str(tmp_path / "out"), str(script)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--try across several nodes is not built" in err and len(err.splitlines()) == 1


BREAKS = textwrap.dedent("""
    from bench.capture import switches
    from bench.fixes import catalogue
    from bench.capture import patches
    @patches.patch("breaks")
    def breaks(value, undo):
        raise RuntimeError("this fix breaks the script")

    @switches.switch("breaks")
    def breaks_switch(value, live):
        def on():
            raise RuntimeError("this fix breaks the script")
        return switches.Toggle(on=on, off=lambda: None)

    catalogue.register(catalogue.Entry("breaks", lambda seen: [catalogue.Fix(
        "breaks", "mine", ("breaks",), "nowhere")]))
""")


def test_a_switch_that_breaks_the_script_fails_alone_and_the_others_are_measured(tmp_path: Path, monkeypatch):
    from bench.capture import switches
    from bench.fixes import children
    (tmp_path / "breaking.py").write_text(BREAKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(children, "launch", _in_process)
    monkeypatch.setattr(catalogue, "CATALOGUE", list(catalogue.CATALOGUE))
    monkeypatch.setattr(switches, "REGISTRY", dict(switches.REGISTRY))
    monkeypatch.setattr(patches, "PATCHES", dict(patches.PATCHES))
    out = tmp_path / "out"
    code = cli.main(["run", "--try", "--fixes", "breaks,foreach", "--fixes-from", "breaking", "--blocks",
                     "3", "--pairs", "5", "--steps", "5", "--warmup", "1", "--out", str(out),
                     str(_script(tmp_path))])
    assert code == 0
    result = Result.load(out / "run.json")
    by = {r.name: r for r in tries.rows(result)}
    assert by["breaks"].verdict == "failed" and "this fix breaks the script" in by["breaks"].failed
    assert by["foreach=True"].how == "in-process pairs, 3 blocks" and by["foreach=True"].speedup
    assert not result.partial  # the run went on without it
    assert not [m for m in result.measurements if m.notes.get("numerics") and m.notes["side"] == "breaks"]


def test_a_stopped_run_never_recommends_a_fix_whose_numerics_were_not_checked():
    """Ctrl-C after the switches' blocks but before the numerics' short runs: the fix measured
    faster is named with its figure, not recommended; a stopped run that did check says it
    stopped."""
    from bench.measure import advice

    result = _try_result()
    def alone(r: Result) -> list[Measurement]:  # phase one without fused: one fix measured faster
        return [m for m in r.measurements if m.notes.get("phase") == 1 and m.notes["side"] != "fused=True"]

    unchecked = alone(result)
    for m in unchecked:
        if m.notes["side"] == "num_workers=2" and m.process:
            m.process.losses = []
    spec = replace(result.spec, combination=())
    stopped = replace(result, spec=spec, measurements=unchecked, partial={"try/schedule": "interrupted"},
                      cache={})
    said = advice.recommendation(stopped)
    assert said.startswith("Not yet a recommendation: num_workers=2 measured 1.") and "numerics" in said
    assert "Apply" not in said
    checked = replace(stopped, measurements=alone(_try_result()), cache={})
    assert advice.recommendation(checked).startswith("Apply num_workers=2: 1.")
    assert "from a run stopped early" in advice.recommendation(checked)


SHORT = SCRIPT.replace("range(20)", "range(4)")  # 64 steps: too few for a block of every switch


def test_a_short_script_gets_its_switches_regrouped_into_processes_it_is_long_enough_for(
        tmp_path: Path, monkeypatch, capsys):
    from bench.fixes import children
    (tmp_path / "train.py").write_text(SHORT)
    monkeypatch.setattr(children, "launch", _in_process)
    out = tmp_path / "out"
    code = cli.main(["run", "--try", "--fixes", "foreach,fused", "--blocks", "3", "--warmup", "2",
                     "--steps", "5", "--out", str(out), str(tmp_path / "train.py")])
    assert code == 0, capsys.readouterr().err
    result = Result.load(out / "run.json")
    assert not result.partial
    by = {r.name: r for r in tries.rows(result)}
    for name in (tries.AGAIN, "foreach=True", "fused=True"):
        assert len(by[name].blocks) == 3, (name, by[name].how)  # exactly --blocks, never more
        assert by[name].how == "in-process pairs, 3 blocks"
    assert by["fused=True"].checked and by["foreach=True"].checked  # the numerics ran
    for m in tries.processes(result, tries.SWITCHES, 1):
        assert m.process.steps_seen <= 64 and m.notes["pairs"]


def test_pack_groups_sides_into_the_steps_a_process_has_and_sets_apart_what_never_fits():
    from bench.fixes import schedule

    spec = TrySpec(command=("t.py",), pairs=16, switch_warm=3)
    aa, fused, foreach = (tries.AGAIN, ()), ("fused=True", ("fused",)), ("foreach=True", ("foreach",))
    workers = ("num_workers=2", ("num_workers=2",))
    groups, dropped = schedule.pack(spec, [aa, fused, foreach], 200)
    assert groups == [([aa, fused, foreach], 16)] and dropped == []  # 2 + 96 + 6 steps: all in one
    groups, dropped = schedule.pack(spec, [aa, fused, foreach, workers], 58)
    assert groups == [([aa, fused], 13), ([foreach], 16)]  # the A/A rides with the first switch
    assert dropped == ["num_workers=2"]  # 3 pairs of 2 x 13-step windows: 78 steps, never in 58
    for group, pairs in groups:
        plan = schedule._plan(spec, group, 0, pairs)
        need = sum(2 * plan.pairs_of(s) * sum(plan.window(s)) for s in plan.sides)
        assert need + 3 * sum(1 for _, p in group if p) <= 58


CRASH = SCRIPT.replace("        optimizer.step()", """        optimizer.step()
        STEP[0] += 1
        if STEP[0] == 60:
            raise RuntimeError("the script's own bug at step 60")""").replace(
    "optimizer = torch", "STEP = [0]\noptimizer = torch")


def test_a_script_that_fails_on_its_own_blames_no_switch_and_says_it_failed(tmp_path: Path, monkeypatch,
                                                                           capsys):
    from bench.fixes import children
    assert "STEP[0] == 60" in CRASH and "STEP = [0]" in CRASH
    (tmp_path / "train.py").write_text(CRASH)
    monkeypatch.setattr(children, "launch", _in_process)
    out = tmp_path / "out"
    code = cli.main(["run", "--try", "--fixes", "foreach", "--blocks", "3", "--warmup", "2", "--steps", "5",
                     "--out", str(out), str(tmp_path / "train.py")])
    assert code == 0, capsys.readouterr().err
    result = Result.load(out / "run.json")
    row = {r.name: r for r in tries.rows(result)}["foreach=True"]
    assert not row.failed and len(row.blocks) == 3  # measured in the 60 steps it runs
    said = ("the script raised RuntimeError: the script's own bug at step 60 (in its step 61, after 60 "
            "complete)")
    assert tries.script_failures(result) == [said]
    assert "The script itself failed in a process of the switches" in capsys.readouterr().out


def test_a_rerun_into_the_same_folder_leaves_no_figure_of_the_earlier_run(tmp_path: Path):
    from bench.output import writing

    out = tmp_path / "out"
    with writing(out) as o:
        o.publish(_try_result())
    assert (out / "speedup.png").is_file()
    first = _try_result()
    nothing = replace(first, measurements=[m for m in first.measurements if m.notes["side"] == tries.BASELINE
                                           and m.notes["phase"] == 1], cache={})
    with writing(out) as o:
        o.publish(nothing)  # no fix measured: no figure to draw
    assert not (out / "speedup.png").exists() and (out / "summary.md").is_file()
    assert (out / "report.html").is_file()


def test_a_fix_that_lowers_the_tensors_peak_points_at_the_batch_it_lets_through(monkeypatch):
    """bf16 autocast lowers the peak by 16 of 105 MB: the report names it and the --fit command
    that measures the batch it lets through, with the catalogue entry --fixes takes."""
    from bench.measure import advice
    from bench.measure.result import Breakdown, Footprint, Measurement
    from bench.measure.specs import TrySpec
    from bench.measure.tries import Row
    from tests.helpers import TEST_ENV

    base = Measurement(name="baseline #1", notes={"side": tries.BASELINE},
                       footprint=Footprint(breakdown=Breakdown(peak=105 * 2**20)))
    switches = Measurement(name="switches #1", notes={"side": tries.SWITCHES, "fixes": {
        "bf16 autocast": {"entry": "bf16"}, "fused=True": {"entry": "fused"}}})
    result = Result(kind="try", spec=TrySpec(command=("train.py", "--lr", "0.1")), machine=TEST_ENV,
                    measurements=[base, switches])
    rows = [Row("bf16 autocast", "", "precision", 1, "", None, None, None, None, "",
                tensors_mb={"peak": -16.0}),
            Row("fused=True", "", "optimizer", 1, "", None, None, None, None, "", tensors_mb={"peak": -0.1})]
    monkeypatch.setattr(tries, "rows", lambda r: rows)
    said = advice.memory_savers(result)
    assert "`bf16 autocast` (-16.0 MB)" in said and "fused" not in said
    assert said.endswith("`vaebench run --fit --fixes bf16 train.py --lr 0.1`.")
