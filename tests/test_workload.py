"""Loading a user's workload by name, the errors a user sees, and the examples/ CNN end to end."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import cli
from bench.measure.result import Result
from bench.workload import Context, WorkloadError, load_factory, variants_of

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = f"{ROOT / 'examples' / 'cnn.py'}:make"


def write(tmp_path: Path, body: str, name: str = "mine.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize(
    ("ref", "phrase"),
    [
        ("no_such_pkg.module:make", "cannot import 'no_such_pkg.module'"),
        ("missing/file.py:make", "file missing/file.py not found"),
        ("examples/cnn.py", "write it as module:function"),
        (f"{ROOT / 'examples' / 'cnn.py'}:nothing", "has no 'nothing'"),
        (f"{ROOT / 'examples' / 'cnn.py'}:SmallCNN", "must take one argument"),
    ],
)
def test_loading_errors_say_what_and_how(ref: str, phrase: str):
    with pytest.raises(WorkloadError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        load_factory(ref)


def test_a_file_that_fails_to_import_is_named(tmp_path: Path):
    path = write(tmp_path, "import torch\nraise ImportError('needs my_lib')\n")
    with pytest.raises(WorkloadError, match=r"importing .*mine.py failed: ImportError: needs my_lib"):
        load_factory(f"{path}:make")


def test_not_a_workload_lists_what_is_missing(tmp_path: Path):
    path = write(tmp_path, """
        import torch
        class Half:
            device = torch.device("cpu")
            def fetch(self): return 1
        def make(ctx):
            return Half()
        """)
    with pytest.raises(WorkloadError, match="not a workload: it lacks step, state, restore"):
        variants_of(f"{path}:make", Context(device=torch.device("cpu")))


def test_unknown_variant_lists_the_valid_ones():
    ctx = Context(device=torch.device("cpu"), variants=("dataloader", "gpu-magic"))
    with pytest.raises(WorkloadError, match=r"unknown variant 'gpu-magic'.*dataloader, preloaded"):
        variants_of(EXAMPLE, ctx)


BROKEN = """
    import torch
    from bench.workload import ModelWorkload

    class Tiny(ModelWorkload):
        def __init__(self, fail):
            self.device = torch.device("cpu")
            self.model = torch.nn.Linear(4, 1)
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
            self.fail, self.calls = fail, 0

        def fetch(self):
            return torch.ones(8, 4)

        def step(self, batch, part):
            self.calls += 1
            if self.fail and self.calls > 8:
                raise ValueError("shapes went wrong")
            with part("forward"):
                loss = self.model(batch).sum()
            with part("backward"):
                self.optimizer.zero_grad()
                loss.backward()
            with part("optimizer"):
                self.optimizer.step()

    def make(ctx):
        return {"good": lambda: Tiny(False), "bad": lambda: Tiny(True)}
    """


def test_a_step_that_raises_fails_its_variant_and_keeps_the_others(tmp_path: Path, capsys):
    path = write(tmp_path, BROKEN)
    out = tmp_path / "out"
    code = cli.main(["profile", "--workload", f"{path}:make", "--out", str(out), "--rounds", "5",
                     "--steps", "2", "--warmup", "1", "--tools", "none", "--no-progress", "--epochs", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "variant 'bad' failed: step raised ValueError: shapes went wrong (at mine.py:" in err
    result = Result.load(out / "run.json")
    assert result.status == {"good": "ok", "bad": "failed"} and len(result.rounds["good"]) == 5
    assert "`bad` (failed): step raised ValueError" in (out / "summary.md").read_text()


def test_a_workload_that_cannot_be_imported_writes_nothing(tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert cli.main(["profile", "--workload", "no_such_pkg:make", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot import 'no_such_pkg'" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_the_example_cnn_goes_through_profile_with_the_full_report_set(tmp_path: Path, data_root: Path):
    out = tmp_path / "reports"
    assert cli.main(["profile", "--workload", "examples/cnn.py:make", "--data-dir", str(data_root),
                     "--out", str(out), "--rounds", "5", "--steps", "3", "--warmup", "1",
                     "--profile-rounds", "5", "--profile-steps", "2", "--trace-steps", "3", "--limit", "300",
                     "--threads", "2",
                     "--no-progress"]) == 0
    for name in ("run.json", "summary.md", "summary.csv", "ladder.csv", "speedup.png", "breakdown.png",
                 "dataloader.prof", "dataloader.lprof", "dataloader.lines.txt", "dataloader.ops.txt",
                 "preloaded.prof"):
        assert (out / name).is_file(), name
    assert list((out / "tb" / "dataloader").glob("*.pt.trace.json"))
    ladder = pd.read_csv(out / "ladder.csv")
    assert list(ladder["variant"]) == ["dataloader", "preloaded"]
    result = Result.load(out / "run.json")
    assert result.bound_of == "preloaded" and result.epochs["dataloader"][0].steps
    lines = (out / "dataloader.lines.txt").read_text()
    assert "CNNWorkload.fetch" in lines and "CNNWorkload.step" in lines


def test_the_builtin_rungs_restore_to_the_very_same_batches(train_split):
    """`restore` rewinds the data and the weights: every measured round does the same work."""
    from bench.measure.clock import time_steps
    from bench.workloads.ladder import LadderWorkload

    work = LadderWorkload("naive", train_split, Context(device=torch.device("cpu")))
    snapshot = work.state()
    weights = work.model.encoder.fc_input.weight.detach().clone()
    before = [work.fetch() for _ in range(3)]
    time_steps(work, 2)
    assert not torch.equal(weights, work.model.encoder.fc_input.weight)
    work.restore(snapshot)
    assert torch.equal(weights, work.model.encoder.fc_input.weight)
    after = [work.fetch() for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
