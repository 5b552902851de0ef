"""`vaebench run train.py`: steps and parts found in unmodified scripts, the report, the ranks
under torchrun, and every way a script or its user can go wrong."""

from __future__ import annotations

import json
import pstats
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bench import cli
from bench.measure.result import Result
from tests import helpers

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "examples" / "scripts"


def run(*argv: str) -> int:
    return cli.main(["run", *argv])


def write(tmp_path: Path, body: str, name: str = "train.py") -> Path:
    return helpers.write(tmp_path, body, name)


def test_a_dataloader_script_steps_and_parts(tmp_path: Path, data_root: Path):
    out = tmp_path / "out"
    assert run("--steps", "12", "--warmup", "2", "--profile-windows", "2", "--profile-steps", "2",
               "--observe-windows", "4", "--out", str(out), str(SCRIPTS / "mnist_classifier.py"),
               "--data-dir", str(data_root),
               "--batch-size", "20", "--epochs", "2") == 0
    result = Result.load(out / "run.json")
    m = result["mnist_classifier.py"]
    assert m.process.step_rule == "optimizer" and m.batch_size == 20 and m.process.stopped
    steps = result["mnist_classifier.py"].samples
    assert len(steps) == 12  # exactly the measured window
    for t in steps:  # the parts and `other` add up to the step
        assert sum(v[0] for v in t.parts.values()) == pytest.approx(t.seconds, rel=0.02)
        assert {"data", "forward", "backward", "optimizer", "other"} <= set(t.parts)
    # 2 warm-up steps, 3 for the memory (2 and a settling step), 12 measured, 1 counted (FLOPs),
    # 3 tools x 2 pairs x 2 windows x 2 steps, 1 settling step, 4 pairs of single steps with the
    # part hooks on and off
    assert m.process.steps_seen == 2 + 3 + 12 + 1 + 24 + 1 + 8
    assert m.footprint.breakdown is not None and m.footprint.breakdown.parts["parameters"] > 0
    unhooked = m.profiles["unhooked"]
    assert len(unhooked.plain) == len(unhooked.tool) == 4
    assert all(len(t.steps) == 1 for t in unhooked.plain + unhooked.tool)
    assert all(set(t.parts) == {"other"} for t in unhooked.tool)  # the step clock alone: no parts
    assert all("forward" in t.parts for t in unhooked.plain)
    assert "Observing it (vaebench's part hooks" in (out / "summary.md").read_text()
    # the classifier's matmuls, by hand: forward 2*B*(784*256 + 256*10), weight gradients the
    # same, input gradients of every layer but the first 2*B*256*10
    b = 20
    assert m.footprint.flops_per_step == 2 * b * (784 * 256 + 256 * 10) * 2 + 2 * b * 256 * 10
    stats = pstats.Stats(str(out / "mnist_classifier.py.prof"))
    assert any(name == "cross_entropy" for _, _, name in stats.stats)
    trace = json.loads(next((out / "tb" / "mnist_classifier.py").glob("*.pt.trace.json")).read_text())
    assert sum(1 for e in trace["traceEvents"] if str(e.get("name")).startswith("ProfilerStep#")) >= 2
    summary = (out / "summary.md").read_text()
    assert "samples/s (batch 20" in summary and "peak memory" in summary
    assert "-bound**" in summary or "**no single bound**" in summary
    # what it built, and the line of the script that built it
    loader, opt, model = m.process.built
    source = (SCRIPTS / "mnist_classifier.py").read_text().splitlines()
    assert loader.kind == "DataLoader" and loader.options["num_workers"] == 0
    assert loader.options["batch_size"] == 20 and "DataLoader(" in source[int(loader.where.split(":")[1]) - 1]
    assert opt.type == "SGD" and opt.options["fused"] is None
    assert "optim.SGD(" in source[int(opt.where.split(":")[1]) - 1]
    assert model.kind == "model"
    assert "It built: `DataLoader` at `mnist_classifier.py:" in summary
    # the run's own README.md: the files that are there, and the command that opens each
    readme = (out / "README.md").read_text()
    assert "mnist_classifier.py --data-dir" in readme.splitlines()[2]  # the command it observed
    assert "`snakeviz mnist_classifier.py.prof`" in readme and "`tensorboard --logdir ./tb`" in readme
    assert "`python -m line_profiler mnist_classifier.py.lprof`" in readme
    assert "MFU" in summary and (out / "mnist_classifier.py.lines.txt").is_file()
    assert torch.Tensor.backward is getattr(torch.Tensor.backward, "__wrapped__", torch.Tensor.backward)


def test_a_script_without_an_optimizer_is_stepped_at_backward(tmp_path: Path):
    out = tmp_path / "out"
    assert run("--steps", "20", "--warmup", "3", "--tools", "none", "--out", str(out),
               str(SCRIPTS / "manual_update.py"), "--steps", "60") == 0
    result = Result.load(out / "run.json")
    m = result["manual_update.py"]
    assert m.process.step_rule == "backward" and m.batch_size == 128  # from the forward's input
    assert len(result["manual_update.py"].samples) == 20
    assert "each `backward()` (no optimizer" in (out / "summary.md").read_text()


@pytest.mark.parametrize(("make", "phrase"), [
    (lambda p: p / "missing.py", "no such script"),
    (lambda p: write(p, "def broken(:\n    pass\n"), "has a syntax error at line 1"),
])
def test_bad_scripts_are_one_line_exit_2(tmp_path: Path, capsys, make, phrase: str):
    out = tmp_path / "out"
    assert run("--out", str(out), str(make(tmp_path))) == 2
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err and not out.exists()


def test_no_training_step_is_said_so(tmp_path: Path, capsys):
    script = write(tmp_path, "import time\nfor _ in range(100):\n    time.sleep(0.05)\n")
    out = tmp_path / "out"
    assert run("--wait", "1", "--out", str(out), str(script)) == 2
    err = capsys.readouterr().err
    assert "no optimizer.step() or backward() in 1 s of running: is this a training script?" in err
    assert not out.exists()


TINY = """
    import sys
    import torch
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(STEPS):
        if step == FAIL:
            raise ValueError("bad batch")
        loss = model(torch.randn(16, 8)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    """


def test_fewer_steps_than_the_warm_up_is_one_line(tmp_path: Path, capsys):
    script = write(tmp_path, TINY.replace("STEPS", "3").replace("FAIL", "-1"))
    assert run("--warmup", "5", "--out", str(tmp_path / "out"), str(script)) == 2
    assert "ran 3 step(s), fewer than --warmup 5 + 1" in capsys.readouterr().err


def test_a_script_that_raises_keeps_its_traceback_code_and_what_was_measured(tmp_path: Path, capsys):
    script = write(tmp_path, TINY.replace("STEPS", "100").replace("FAIL", "30"))
    out = tmp_path / "out"
    assert run("--warmup", "2", "--steps", "50", "--tools", "none", "--out", str(out), str(script)) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: bad batch" in err  # the script's own
    assert "the script raised ValueError: bad batch (in its step 31, after 30 complete)" in err
    result = Result.load(out / "run.json")
    assert len(result["train.py"].samples) == 25 and result["train.py"].status == "failed"  # 30 - 2 - 3
    assert "**failed**" in (out / "summary.md").read_text()


def test_the_script_sees_its_own_argv_and_main(tmp_path: Path):
    script = write(tmp_path, """
        import sys, json, pathlib
        import helper  # its own folder is importable, as under python
        pathlib.Path(sys.argv[2]).write_text(json.dumps({"argv": sys.argv[1:], "name": __name__}))
        """)
    (tmp_path / "helper.py").write_text("")
    seen = tmp_path / "seen.json"
    assert run("--out", str(tmp_path / "out"), str(script), "--flag", str(seen)) == 2
    assert json.loads(seen.read_text()) == {"argv": ["--flag", str(seen)], "name": "__main__"}


def test_run_help_answers_without_torch():
    code = ("import sys; from bench import cli\n"
            "try:\n    cli.main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "vaebench run [options] train.py [its arguments]" in proc.stdout


def test_compare_a_script_with_itself_finds_no_difference(tmp_path: Path, monkeypatch, capsys):
    """Both command lines go through --try's runner and the child entry (in this process, to keep
    the test fast), alternating A B, B A, ... Each process's measured steps are then given the
    same times on both sides (process k: 10 + k/10 ms), so the test judges the pipeline --
    alternation, run.json, the rule, the page -- and not this machine's load (the rule's A/A
    false-alarm rate is tested on generated samples in test_compare.py)."""
    import json

    from bench.capture import child
    from bench.fixes import children
    from bench.measure.result import Result

    calls = []

    def in_process(words: list[str]) -> tuple[int, str]:
        assert words[1:3] == ["-m", "bench.capture.child"]
        given = json.loads(Path(words[3]).read_text())
        calls.append("B" if given["spec"]["command"][-1] == "--same" else "A")
        code = child.main(words[3:])
        out = Path(words[4]) / "run.json"
        result = Result.load(out)
        k = calls.count(calls[-1])
        for t in result[result.measured[0]].samples:
            t.seconds = t.steps[0] = (10 + k / 10) / 1e3
        result.save(out)
        return code, ""

    monkeypatch.setattr(children, "launch", in_process)
    script = write(tmp_path, TINY.replace("STEPS", "60").replace("FAIL", "-1"))
    assert run("--compare", str(script), f"{script} --same", "--steps", "20", "--warmup", "3",
               "--out", str(tmp_path / "cmp")) == 0
    said = capsys.readouterr().out
    assert "".join(calls) == "ABBAABBAAB"  # five processes a side, alternating
    assert "median step per process (ms): A 10.10, 10.20, 10.30, 10.40, 10.50; B 10.10" in said
    assert "B / A = 1.000" in said and "A and B are the same within 5%" in said, said
    result = Result.load(tmp_path / "cmp" / "run.json")  # a Result like every command's
    assert result.kind == "try" and result.spec.versus[-1] == "--same" and len(result.measurements) == 10
    assert "B / A = 1.000" in (tmp_path / "cmp" / "summary.md").read_text()
    page = (tmp_path / "cmp" / "report.html").read_text()  # the same sentence on the run's page
    assert "A and B are the same within 5%" in page and page.count('<svg class="chart"') == 2
    assert helpers.run_bench("report", str(tmp_path / "cmp" / "run.json")).returncode == 0


def test_compare_takes_command_lines_that_start_with_dash_m(monkeypatch):
    seen = {}
    monkeypatch.setattr("bench.commands.run.compare_commands",
                        lambda args: seen.setdefault("c", args.compare) and 0)
    assert run("--compare", "-m vae train --pipeline naive", "-m vae train --pipeline optimized",
               "--repeats", "5") == 0
    assert seen["c"] == ["-m vae train --pipeline naive", "-m vae train --pipeline optimized"]
    from bench.cli import take_compare  # a script's own --compare stays the script's

    assert take_compare(["run", "train.py", "--compare", "a", "b"]) == (
        ["run", "train.py", "--compare", "a", "b"], None)


def test_compare_needs_enough_processes_for_a_verdict(tmp_path: Path, capsys):
    script = str(SCRIPTS / "manual_update.py")
    assert run("--compare", script, script, "--repeats", "3", "--out", str(tmp_path)) == 2
    assert "--repeats 3: at least 5 processes a side" in capsys.readouterr().err


def test_ctrl_c_keeps_what_was_measured_and_says_partial(tmp_path: Path, capsys):
    """Ctrl-C half-way (the script gets KeyboardInterrupt, as from the terminal): exit 130, the
    steps measured so far are written and the report says the run is partial."""
    stop = "        if step == 40:\n            raise KeyboardInterrupt\n"
    script = write(tmp_path, TINY.replace("STEPS", "100").replace("FAIL", "-1").replace(
        "        loss = model", stop + "        loss = model"))
    out = tmp_path / "out"
    assert run("--warmup", "2", "--steps", "80", "--tools", "none", "--out", str(out), str(script)) == 130
    result = Result.load(out / "run.json")
    # 40 steps ran: 2 warm-up, 3 for the memory, 30 measured, 1 FLOPs counted, 4 more measured
    assert len(result["train.py"].samples) == 34 and result["train.py"].process.interrupted
    assert "interrupted (Ctrl-C) after 40 steps: **partial**" in (out / "summary.md").read_text()


@pytest.mark.parametrize("trainer", ["plain", pytest.param("lightning", marks=pytest.mark.slow)])
def test_the_projects_own_training_cli_runs_unchanged(tmp_path: Path, data_root: Path, trainer: str):
    """`vaebench run -m vae train`: the plain loop, and Lightning (whose optimizer.step runs forward
    and backward inside its closure: the parts still add up to the step)."""
    out = tmp_path / "out"
    # 600 training images: 6 steps an epoch, 2 epochs (2 warm-up, 3 for the memory, 3 measured, 1 counted)
    assert run("--steps", "3", "--warmup", "2", "--tools", "none", "--out", str(out), "-m", "vae", "train",
               "--trainer", trainer, "--epochs", "2", "--data-dir", str(data_root), "--limit", "1000",
               "--out", str(tmp_path / "train")) == 0
    result = Result.load(out / "run.json")
    steps = result["vae"].samples
    assert len(steps) == 3 and result["vae"].process.step_rule == "optimizer"
    assert result["vae"].batch_size == 100 and result["vae"].footprint.flops_per_step == 520_000_000
    for t in steps:
        assert sum(v[0] for v in t.parts.values()) == pytest.approx(t.seconds, rel=0.02)
        assert t.parts["forward"][0] > 0 and t.parts["backward"][0] > 0


def test_gradient_accumulation_counts_every_micro_batch(tmp_path: Path):
    """4 micro-batches of 8 per optimizer.step(): a step processes 32 samples, and says so."""
    out = tmp_path / "out"
    assert run("--warmup", "2", "--steps", "12", "--tools", "none", "--out", str(out),
               str(SCRIPTS / "accumulate.py"), "--accumulate", "4", "--batch-size", "8") == 0
    m = Result.load(out / "run.json")["accumulate.py"]
    assert m.batch_size == 32 and m.process.micro_batches == 4
    assert "(4 micro-batches of 8 per optimizer step: gradients accumulated)" in \
        (out / "summary.md").read_text()


def test_a_closure_is_one_input_however_often_it_runs(tmp_path: Path):
    """LBFGS evaluates the same batch up to 20 times per step: 256 samples a step, not 5,120."""
    out = tmp_path / "out"
    assert run("--warmup", "2", "--steps", "8", "--tools", "none", "--out", str(out),
               str(SCRIPTS / "lbfgs.py"), "--steps", "15") == 0
    m = Result.load(out / "run.json")["lbfgs.py"]
    assert m.batch_size == 256 and m.process.micro_batches == 1


@pytest.mark.slow
def test_a_slow_first_step_with_a_closure_is_waited_for(tmp_path: Path):
    """The first optimizer.step(closure) takes ~2 s, twice the --wait: backward() keeps running
    inside it, so the wait goes on, and the script is measured."""
    out = tmp_path / "out"
    assert run("--wait", "1", "--warmup", "2", "--steps", "8", "--tools", "none", "--out", str(out),
               str(SCRIPTS / "lbfgs.py"), "--steps", "15", "--first-step-seconds", "2") == 0
    assert len(Result.load(out / "run.json")["lbfgs.py"].samples) == 8


class _Seen:
    """A recorder as the watchdog reads it."""

    def __init__(self, in_optimizer: bool, backwards: list[int], forwards: int = 0):
        self.in_optimizer, self._backwards, self.forwards_seen = in_optimizer, backwards, forwards
        self.steps_seen = 0

    @property
    def backwards_seen(self) -> int:  # each look sees the next value
        return self._backwards.pop(0) if len(self._backwards) > 1 else self._backwards[0]


@pytest.mark.parametrize(("seen", "phrase"), [
    (_Seen(True, [0, 5, 9, 9]), "the first optimizer.step() has not returned after 0.15 s; backward() ran 9 "
                                "times inside it -- an optimizer with a closure?"),
    (_Seen(False, [0], forwards=7), "no optimizer.step() or backward() in 0.05 s of running; forward ran 7 "
                                    "times but no backward(): is this a training script?"),
    (_Seen(False, [3]), "backward() ran 3 times but no optimizer.step() returned in 0.05 s"),
])
def test_the_wait_gives_up_only_without_progress_and_says_what_it_saw(monkeypatch, seen, phrase):
    from bench.capture import script

    stopped = []
    monkeypatch.setattr(script._thread, "interrupt_main", lambda: stopped.append(True))
    outcome = script.Outcome(recorder=seen)  # type: ignore[arg-type]
    dog = script._Watchdog(outcome, 0.05)
    dog.start()
    dog.join(5)
    assert stopped == [True] and outcome.no_step and phrase in outcome.waited, outcome.waited


def test_profilers_the_script_ended_before_are_named_and_no_missing_file_listed(tmp_path: Path):
    out = tmp_path / "out"
    # warm-up 2, 3 for the memory, 20 measured, 1 counted, then 8 steps each for cprofile, lines
    # and kineto, one settling step and the hooks-off pairs (4 pairs of single steps): the
    # script's 40 steps end inside the lines windows, before kineto's and observing's
    assert run("--warmup", "2", "--steps", "20", "--profile-windows", "2", "--profile-steps", "2",
               "--observe-windows", "4", "--out", str(out), str(SCRIPTS / "short.py"), "--steps", "40") == 0
    summary = (out / "summary.md").read_text()
    assert "kineto did not run (its windows take steps 43-50; the script ran 40)" in summary
    assert "lines ran 1 of 2 window pairs" in summary
    assert "observing-cost windows (part hooks off) did not run (its windows take steps 52-59" in summary
    assert "tensorboard" not in summary and not (out / "tb").exists()
    readme = (out / "README.md").read_text()
    assert "tensorboard" not in readme and "short.py.prof" in readme


def test_a_script_of_100_steps_gets_every_profiler_with_the_default_windows(tmp_path: Path):
    """The defaults: 5 warm-up steps, 3 for the memory, 30 measured, 1 counted, 3 x 2 x 3 steps a
    profiler, one settling step, then the rest of the measured steps: a 100-step script (as
    users debug with) gets cProfile, line_profiler and a Kineto trace, and 36 measured steps."""
    out = tmp_path / "out"
    assert run("--out", str(out), str(SCRIPTS / "short.py"), "--steps", "100") == 0
    m = Result.load(out / "run.json")["short.py"]
    assert set(m.profiles) >= {"cprofile", "lines", "kineto"}
    assert all(len(m.profiles[t].tool) == 3 for t in ("cprofile", "lines", "kineto"))
    assert len(m.samples) == 30 + (100 - 5 - 3 - 30 - 1 - 54 - 1)  # the first 30, 6 after the profilers
    summary = (out / "summary.md").read_text()
    for tool in ("cprofile", "lines", "kineto"):
        assert f"{tool} did not run" not in summary and f"{tool} ran" not in summary
    assert (out / "short.py.prof").is_file() and list((out / "tb" / "short.py").glob("*.pt.trace.json"))


DIRECT_FORWARD = """
    import torch
    from torch import nn
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(60):
        h = torch.randn(128, 256)
        for layer in model:
            h = layer.forward(h)  # forward called directly: no module hook sees it
        with torch.no_grad():  # an evaluation pass the same way: unlabelled time well above a quarter
            for _ in range(3):
                model[2].forward(torch.randn(512, 512))
        loss = h.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    """


def test_a_forward_the_hooks_cannot_see_draws_no_verdict(tmp_path: Path):
    out = tmp_path / "out"
    assert run("--warmup", "2", "--steps", "20", "--tools", "none", "--out", str(out),
               str(write(tmp_path, DIRECT_FORWARD))) == 0
    summary = (out / "summary.md").read_text()
    assert "No bottleneck verdict: `forward` takes 0% of the step" in summary
    assert "-bound**" not in summary and "what usually helps" not in summary


def test_a_forward_the_hooks_see_keeps_its_verdict():
    from bench.measure.bound import forward_unseen

    assert not forward_unseen({"forward": 0.25, "backward": 0.5, "other": 0.25})
    assert forward_unseen({"forward": 0.01, "backward": 0.5, "other": 0.45})
    assert not forward_unseen({"forward": 0.0, "backward": 0.0, "other": 0.9})  # no backward seen: not this


def test_observing_pairs_fit_a_time_budget_for_slow_steps():
    """400 pairs of single steps cost 4 s on a 5 ms step; at 1 s a step they would cost 800 s:
    after the measured window only what fits the budget is kept (at least the minimum)."""
    from bench.capture.script import plan
    from bench.capture.windows import OBSERVE_MIN_PAIRS, Window, fit_observing
    from bench.defaults import UNHOOKED
    from bench.measure.clock import Timing
    from bench.measure.specs import ScriptSpec

    def kept(step_s: float) -> tuple[int | None, int]:
        spec = ScriptSpec(command=("t.py",), tools=("cprofile",))
        windows = plan(spec)
        measured = Window("measure", 3, timings=[Timing(step_s, [step_s]) for _ in range(3)])
        windows, pairs = fit_observing(windows, measured)
        observing = [w for w in windows if UNHOOKED in (w.kind, w.tool)]
        profiled = [w for w in windows if w.kind == "cprofile"]
        assert len(profiled) == spec.profile_windows  # the profilers' untouched
        return pairs, len(observing) // 2

    assert kept(0.005) == (400, 400)  # 4 s: all of them
    assert kept(0.1) == (50, 50)  # 10 s / (2 x 0.1 s)
    assert kept(1.0) == (OBSERVE_MIN_PAIRS, OBSERVE_MIN_PAIRS)


def test_a_script_that_ends_while_its_hooks_are_off_leaves_none_behind(tmp_path: Path):
    """The script ends inside the observing windows (part hooks detached): closing the capture
    must not attach them again -- they would stay in the process, in every later forward (a
    later test's torch.compile saw the recorder's record_function and lost its graph breaks)."""
    from torch.nn.modules import module as nn_module
    from torch.utils.data import dataloader

    before = dataloader._BaseDataLoaderIter.__next__
    # 2 warm-up + 10 measured + 1 counted steps, then pairs of single steps (plain, hooks off;
    # hooks off, plain; ...): a script of 43 steps ends as its 44th, one with the hooks off, begins
    assert run("--warmup", "2", "--steps", "10", "--tools", "none", "--observe-windows", "100",
               "--out", str(tmp_path / "out"), str(SCRIPTS / "short.py"), "--steps", "43") == 0
    assert "observing-cost windows" in (tmp_path / "out" / "summary.md").read_text()  # it ended inside
    assert not nn_module._global_forward_pre_hooks and not nn_module._global_forward_hooks
    assert dataloader._BaseDataLoaderIter.__next__ is before


SEGFAULT = """
    import ctypes
    import torch
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(10):
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
        if step == 2:
            ctypes.string_at(0)  # a native library's crash, as a broken extension would
    """


def test_a_script_that_crashes_natively_names_its_python_line(tmp_path: Path):
    """A segmentation fault kills the process that runs the script: no report can be written,
    but the user gets the Python stack down to the line that crashed, not a bare signal."""
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(SEGFAULT))
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--tools", "none", "--observe-windows", "0",
                           "--warmup", "1", "--steps", "3", "--out", str(tmp_path / "out"), str(script)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode != 0
    assert "Fatal Python error: Segmentation fault" in proc.stderr
    assert f'File "{script}", line 11' in proc.stderr
