"""What batch fits: the line through two batch sizes, the largest batch the memory holds, the
check at a third size; --fit on a DataLoader script (its batch_size patched per process, run
here in-process), and on a script whose batch cannot be changed without editing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.measure.fits import fit, with_fixes
from bench.measure.result import Breakdown, Footprint, Measurement, Result
from tests.helpers import TEST_ENV, write

SCRIPTS = Path(__file__).resolve().parents[1] / "examples" / "scripts"


def _measured(batch: int, peak: int, **notes) -> Measurement:
    return Measurement(name=f"batch {batch}", notes={"batch": batch, **notes},
                       footprint=Footprint(breakdown=Breakdown(peak=peak)))


def test_the_line_the_largest_batch_and_the_check_are_computed_by_hand():
    from bench.measure.specs import FitSpec

    result = Result(kind="fit", spec=FitSpec(command=("t.py",)), machine=TEST_ENV, measurements=[
        _measured(64, 100 + 64 * 10, capacity=10_100, capacity_source="t"),
        _measured(128, 100 + 128 * 10), _measured(256, 100 + 256 * 11)])
    found = fit(result)
    assert found is not None and (found.fixed, found.per_sample) == (100, 10)
    assert found.largest == 1000  # (10,100 - 100) / 10
    assert found.predicted == 100 + 2560 and found.error == pytest.approx((2916 - 2660) / 2916)
    assert found.holds is True  # 8.8% off: within 10%


def _in_process(words: list[str]) -> tuple[int, str]:
    from bench.capture import child

    return child.main(words[3:]), ""


def test_fit_on_a_dataloader_script_measures_three_sizes_and_checks_the_line(tmp_path, monkeypatch, capsys):
    from bench import cli
    from bench.fixes import fit as fitting

    monkeypatch.setattr(fitting, "launch", _in_process)
    out = tmp_path / "out"
    assert cli.main(["run", "--fit", "--fixes", "fused", "--out", str(out), str(SCRIPTS / "gan.py"),
                     "--images", "2560"]) == 0
    result = Result.load(out / "run.json")
    assert [m.notes["batch"] for m in result.measurements] == [64, 128, 256, 64, 128]
    assert [m.name for m in result.measurements][3:] == ["batch 64 + fused=True", "batch 128 + fused=True"]
    # the batch the fix lets through: its own line (fused keeps the same state: about the same)
    fused = with_fixes(result)["fused=True"]
    assert fused.largest and fused.per_sample > 0 and fused.sizes == (64, 128)
    peaks = [m.footprint.breakdown.peak for m in result.measurements]
    assert peaks[0] < peaks[1] < peaks[2]
    found = fit(result)
    assert found is not None and found.per_sample > 0 and found.largest and found.largest > 256
    said = capsys.readouterr().out
    assert "Linear in the batch, measured at 64 and 128" in said and "Checked at batch 256" in said
    assert "With `fused=True` (measured at 64 and 128, not checked at a third size)" in said
    assert "## What batch fits" in (out / "summary.md").read_text()


def test_fit_says_when_the_batch_cannot_be_changed(tmp_path, monkeypatch, capsys):
    from bench import cli
    from bench.fixes import fit as fitting

    monkeypatch.setattr(fitting, "launch", _in_process)
    script = write(tmp_path, """
        import torch
        model = torch.nn.Linear(8, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(40):
            loss = model(torch.randn(32, 8)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    """, "train.py")
    assert cli.main(["run", "--fit", "--out", str(tmp_path / "out"), str(script)]) == 0
    assert "cannot be changed without editing it" in capsys.readouterr().out


def test_fit_refuses_an_unknown_fix_in_one_line(tmp_path, capsys):
    from bench import cli

    assert cli.main(["run", "--fit", "--fixes", "warp", str(SCRIPTS / "gan.py")]) == 2
    assert "--fixes: unknown fix 'warp'" in capsys.readouterr().err
