"""`bench history`: runs over time, steps found where they are and not in noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import cli
from bench.regress.history import change_points, load_history, steps
from tests.helpers import write_runs


def test_a_step_is_found_with_its_size_and_commit(tmp_path: Path):
    write_runs(tmp_path / "b", {"slow": [0.010] * 6 + [0.013] * 6, "flat": [0.005] * 12})
    history = load_history([tmp_path / "b"])
    assert [r.commit for r in history.runs][:2] == ["00c0ffeec0", "01c0ffeec0"]
    (found,) = steps(history, "slow")
    assert found.index == 6 and found.change == pytest.approx(0.30, abs=0.05)
    assert steps(history, "flat") == []


@pytest.mark.parametrize("seed", range(8))
def test_noise_alone_makes_no_steps(seed: int):
    rng = np.random.default_rng(seed)
    medians = list(0.01 * np.exp(rng.normal(0, 0.08, 20)))  # 8% run-to-run noise, no change
    assert change_points(medians) == []


def test_cli_writes_table_figure_and_csv(tmp_path: Path, capsys):
    write_runs(tmp_path / "b", {"test_step[x]": [0.01] * 5 + [0.02] * 5})
    (tmp_path / "b" / "notes.json").write_text('{"not": "a run"}')
    out = tmp_path / "h"
    assert cli.main(["history", str(tmp_path / "b"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 step(s) found" in text and "+100.0% at run 6" in text and "05c0ffeec0" in text
    md = (out / "history.md").read_text()
    assert "| test_step[x]" in md and "notes.json" in md  # left out, and said so
    assert (out / "history.png").stat().st_size > 1000 and (out / "history.csv").is_file()


def test_cli_errors(tmp_path: Path, capsys):
    assert cli.main(["history", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "e").mkdir()
    assert cli.main(["history", str(tmp_path / "e")]) == 2
    assert "no pytest-benchmark runs" in capsys.readouterr().err
    write_runs(tmp_path / "b", {"a": [0.01] * 4})
    assert cli.main(["history", str(tmp_path / "b"), "-k", "zzz", "--out", str(tmp_path / "h")]) == 2
    assert "no benchmark name contains 'zzz'" in capsys.readouterr().err
