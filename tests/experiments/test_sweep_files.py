"""A sweep's own files damaged or missing pieces: the table says what budget was used, a
truncated or binary summary.json makes a run unfinished (a relaunch resumes it), a damaged
sweep.yaml is one line."""

import pytest

from tests.experiments.test_sweep import fake_sweep, spec
from vaelab.errors import VaelabError
from vaelab.experiments import summarize_sweep


def test_without_budgets_the_table_does_not_claim_one(tmp_path):
    sweep = spec(tmp_path)
    sweep.pop("budgets")
    directory = fake_sweep(tmp_path, sweep)
    summarize_sweep(directory, figures=False)
    assert (directory / "results.md").read_text().startswith("# Sweep grid (no budget overrides)")
    directory = fake_sweep(tmp_path / "b", spec(tmp_path))
    summarize_sweep(directory, figures=False)
    assert (directory / "results.md").read_text().startswith("# Sweep grid (quick budget)")


def test_damaged_summaries_count_as_unfinished_and_a_damaged_sweep_yaml_is_one_line(tmp_path):
    directory = fake_sweep(tmp_path, spec(tmp_path))
    runs = sorted((directory / "runs").iterdir())
    (runs[0] / "summary.json").write_text('{"epochs": 3, "fin')
    (runs[1] / "summary.json").write_bytes(b"\xff\xfe\x00")
    summary = summarize_sweep(directory, figures=False)
    assert {runs[0].name, runs[1].name} <= set(summary["unfinished"])
    (directory / "sweep.yaml").write_bytes(b"\x89PNG\x00")
    with pytest.raises(VaelabError, match="sweep.yaml is not UTF-8 text"):
        summarize_sweep(directory, figures=False)
