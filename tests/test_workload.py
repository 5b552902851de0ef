"""Loading a user's workload by name, the errors a user sees, and the examples/ CNN end to end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import cli
from bench.measure.result import Result
from bench.workload import Context, WorkloadError, load_factory, variants_of
from tests import helpers
from tests.helpers import BROKEN

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = f"{ROOT / 'examples' / 'cnn.py'}:make"


def write(tmp_path: Path, body: str, name: str = "mine.py") -> Path:
    return helpers.write(tmp_path, body, name)


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


def test_variants_know_how_many_they_are():
    variants = variants_of(EXAMPLE, Context(device=torch.device("cpu")))
    assert len(variants) == 2 and list(variants) == ["dataloader", "preloaded"]


def test_unknown_variant_lists_the_valid_ones():
    ctx = Context(device=torch.device("cpu"), variants=("dataloader", "gpu-magic"))
    with pytest.raises(WorkloadError, match=r"unknown variant 'gpu-magic'.*dataloader, preloaded"):
        variants_of(EXAMPLE, ctx)




def test_a_step_that_raises_fails_its_variant_and_keeps_the_others(tmp_path: Path, capsys):
    path = write(tmp_path, BROKEN)
    out = tmp_path / "out"
    code = cli.main(["profile", "--workload", f"{path}:make", "--out", str(out), "--rounds", "5",
                     "--steps", "2", "--warmup", "1", "--tools", "none", "--no-progress", "--epochs", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert ("variant 'bad' failed: round 2 of the interleaved rounds raised ValueError: shapes went "
            "wrong (at mine.py:") in err
    result = Result.load(out / "run.json")
    assert {m.name: m.status for m in result.measurements} == {"good": "ok", "bad": "failed"}
    assert len(result["good"].samples) == 5
    # 1 warm-up step and 2 counted ones (FLOPs, memory), then 3 steps a round (1 unmeasured):
    # the 9th call fails in round 2, and round 1 is kept
    assert len(result["bad"].samples) == 1
    summary = (out / "summary.md").read_text()
    assert ("`bad` (failed): round 2 of the interleaved rounds raised ValueError: shapes went wrong"
            in summary) and "kept what it measured before: 1 interleaved rounds" in summary


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
                     "--profile-windows", "5", "--profile-steps", "2", "--trace-steps", "1", "--limit", "300",
                     "--threads", "1",
                     "--no-progress"]) == 0
    for name in ("run.json", "summary.md", "summary.csv", "variants.csv", "speedup.png", "breakdown.png",
                 "dataloader.prof", "dataloader.lprof", "dataloader.lines.txt", "dataloader.ops.txt",
                 "preloaded.prof"):
        assert (out / name).is_file(), name
    assert list((out / "tb" / "dataloader").glob("*.pt.trace.json"))
    table = pd.read_csv(out / "variants.csv")
    assert list(table["variant"]) == ["dataloader", "preloaded"]
    result = Result.load(out / "run.json")
    assert result.bound_of("preloaded") == "preloaded:bound" and result["dataloader"].epochs[0].steps
    # A user's comparison is not the VAE's ladder: none of its words, targets or tables.
    assert "vs_previous" not in table.columns
    summary = (out / "summary.md").read_text()
    for vae_only in ("ladder", "vs previous", "within 5%", "straddles 1.05", "rung"):
        assert vae_only not in summary.lower(), vae_only
    assert "`preloaded` runs at" in summary and "its compute-only bound" in summary
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


BAD_DEVICE = """
    import torch
    from bench.workload import ModelWorkload

    class Tiny(ModelWorkload):
        def __init__(self, device):
            self.device = device
            self.model = torch.nn.Linear(4, 1)
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

        def fetch(self):
            return torch.ones(8, 4)

        def step(self, batch, part):
            self.optimizer.zero_grad()
            self.model(batch).sum().backward()
            self.optimizer.step()

    def make(ctx):
        return Tiny(DEVICE)
    """


def test_a_device_named_by_a_string_runs(tmp_path: Path):
    path = write(tmp_path, BAD_DEVICE.replace("DEVICE", "'cpu'"))
    out = tmp_path / "out"
    assert cli.main(["profile", "--workload", f"{path}:make", "--out", str(out), "--rounds", "5",
                     "--warmup", "1", "--tools", "none", "--no-progress", "--epochs", "0"]) == 0
    assert Result.load(out / "run.json")["make"].device == "cpu"


def test_a_bad_device_is_one_line_and_leaves_no_out_behind(tmp_path: Path, capsys):
    path = write(tmp_path, BAD_DEVICE.replace("DEVICE", "3"))
    out = tmp_path / "out"
    args = ["profile", "--workload", f"{path}:make", "--rounds", "5", "--tools", "none",
            "--no-progress", "--epochs", "0"]
    assert cli.main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "device must be a torch.device or a name such as 'cpu', got int 3" in err
    assert "Traceback" not in err and not out.exists()
    # an --out that was there is left as it was: its files, and no lock file added
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "summary.md").write_text("an earlier run")
    assert cli.main([*args, "--out", str(kept)]) == 2
    assert [p.name for p in kept.iterdir()] == ["summary.md"]


RNN = f"{ROOT / 'examples' / 'rnn.py'}:make"


@pytest.mark.slow
def test_the_stateful_example_measures_its_full_epochs(tmp_path: Path):
    """Data that ends after exactly batches_per_epoch batches (a plain iterator): the default
    phases all finish, the epoch included; the report is a comparison, not a ladder."""
    out = tmp_path / "out"
    assert cli.main(["profile", "--workload", RNN, "--limit", "6000", "--out", str(out), "--rounds", "5",
                     "--warmup", "2", "--tools", "cprofile", "--profile-windows", "5", "--profile-steps", "1",
                     "--no-progress", "--threads", "1"]) == 0
    result = Result.load(out / "run.json")
    assert {m.name: m.status for m in result.measurements} == {"lstm": "ok", "gru": "ok"}
    bpe = result["lstm"].batches_per_epoch
    assert [len(result[v].epochs[0].steps) for v in ("lstm", "gru")] == [bpe, bpe]
    assert result["lstm"].batch_size == 20  # its own, not the harness's suggestion of 100
    assert not any(m.bound_of for m in result.measurements)
    assert "LSTM language model" in (out / "summary.md").read_text()


def test_restore_covers_the_hidden_state_so_rounds_repeat_exactly():
    import importlib.util

    spec = importlib.util.spec_from_file_location("rnn_example", ROOT / "examples" / "rnn.py")
    rnn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rnn)
    from bench.measure.clock import time_steps

    work = rnn.LanguageModel(Context(device=torch.device("cpu"), limit=4000), "lstm")
    time_steps(work, 2)  # a hidden state that is not the initial one
    snapshot = work.state()
    runs = []
    for _ in range(2):
        work.restore(snapshot)
        time_steps(work, 3)
        runs.append((work.model.decoder.weight.detach().clone(), work.hidden[0].clone()))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_restoring_twice_starts_from_the_same_optimizer_state():
    """Optimizer.load_state_dict keeps the tensors it is given: the snapshot must not be updated
    in place by the steps after a restore."""
    from bench.workload import ModelWorkload

    class Tiny(ModelWorkload):
        def __init__(self):
            self.model = torch.nn.Linear(4, 1)
            self.optimizer = torch.optim.Adam(self.model.parameters())

        def step(self):
            self.optimizer.zero_grad()
            self.model(torch.ones(2, 4)).sum().backward()
            self.optimizer.step()

    work = Tiny()
    work.step()
    snapshot = work.state()
    moments = snapshot["optimizer"]["state"][0]["exp_avg"].clone()
    work.restore(snapshot)
    work.step()
    assert torch.equal(snapshot["optimizer"]["state"][0]["exp_avg"], moments)


SHORT_DATA = """
    import torch
    from bench.workload import ModelWorkload

    class Short(ModelWorkload):
        batches_per_epoch = 6  # but one pass yields 4: the epoch phase runs out

        def __init__(self):
            self.device = torch.device("cpu")
            self.model = torch.nn.Linear(4, 1)
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
            self.rewind()

        def rewind(self):
            self.batches = iter([torch.ones(8, 4)] * 4)

        def fetch(self):
            return next(self.batches)

        def step(self, batch, part):
            self.optimizer.zero_grad()
            self.model(batch).sum().backward()
            self.optimizer.step()

    def make(ctx):
        return Short()
    """


def test_data_that_runs_out_in_the_epoch_keeps_the_rounds_and_says_why(tmp_path: Path, capsys):
    path = write(tmp_path, SHORT_DATA)
    out = tmp_path / "out"
    assert cli.main(["profile", "--workload", f"{path}:make", "--out", str(out), "--rounds", "5",
                     "--warmup", "1", "--tools", "none", "--no-progress", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert ("`fetch()` ran out of data after 4 batches in the full epoch (batches_per_epoch = 6); "
            "`restore()` must rewind the data stream (see `rewind()`)") in err
    result = Result.load(out / "run.json")
    assert len(result["make"].samples) == 5 and result["make"].status == "failed"
    summary = (out / "summary.md").read_text()
    assert "kept what it measured before: 5 interleaved rounds" in summary and "ms per step" in summary
