"""`vaelab compare`: labels from differing config values, ordered curves, metric names, the
final-metrics table."""

import csv

import numpy as np
import pytest

from vaelab.cli import main
from vaelab.config import Config
from vaelab.plots.compare import (comparison_figure, differing_keys, load_comparison, metric_values, read_run,
                                  run_labels)

from .conftest import history_rows, png_size, write_run_dir


@pytest.fixture
def beta_runs(tmp_path):
    """Four runs differing in beta (given out of order), plus noise keys that must not label them."""
    dirs = []
    for i, beta in enumerate([4.0, 0.1, 1.0, 0.5]):
        config = Config.from_dict({"name": f"b{i}", "objective": {"beta": beta}, "training": {"device": "cpu" if i else "auto"},
                                   "figures": {"log_scale": bool(i % 2)}})
        dirs.append(write_run_dir(tmp_path / f"b{i}", config, history_rows(4, start=100 + 10 * beta)))
    return dirs


def test_labels_come_from_the_differing_config_values(beta_runs):
    records = [read_run(d) for d in beta_runs]
    assert differing_keys(records) == ["objective.beta"]  # name, device and figure options ignored
    labels, keys = run_labels(records)
    assert labels == ["beta=4", "beta=0.1", "beta=1", "beta=0.5"] and keys == ["objective.beta"]
    assert run_labels(records, ["model.latent_dim"])[0] == [f"latent_dim=20 (b{i})" for i in range(4)]
    with pytest.raises(Exception, match=r"label latnt_dim: no such config key \(did you mean latent_dim\?\)"):
        run_labels(records, ["latnt_dim"])


def test_runs_are_ordered_by_value_and_coloured_in_sequence(beta_runs):
    comparison = load_comparison(beta_runs)
    assert comparison.labels == ["beta=0.1", "beta=0.5", "beta=1", "beta=4"]
    fig = comparison_figure(comparison.records, comparison.labels, ["neg_elbo"], comparison.keys)
    ax = fig.axes[0]
    assert [line.get_ydata()[-1] for line in ax.lines] == [r.history[-1]["test_neg_elbo"] for r in comparison.records]
    legend = fig.legends[0]
    assert legend.get_title().get_text() == "beta"
    assert [t.get_text() for t in legend.get_texts()] == ["0.1", "0.5", "1", "4"]
    assert ax.get_ylabel() == "nats per example" and ax.get_title() == "test negative ELBO (lower is better)"
    greens = [line.get_color()[1] for line in ax.lines]  # viridis: ordered colours for ordered values
    assert greens == sorted(greens)


def test_metric_names(beta_runs):
    record = read_run(beta_runs[0])
    epochs, elbo = metric_values(record, "test_elbo")
    assert epochs == [1, 2, 3, 4] and elbo == [-row["test_neg_elbo"] for row in record.history]
    assert metric_values(record, "kl")[1] == [row["test_kl"] for row in record.history]
    assert metric_values(record, "train_kl")[1] == [row["train_kl"] for row in record.history]
    assert metric_values(record, "val_kl") is None
    with pytest.raises(Exception, match=r"metric 'test_nll' is not in .*metrics.csv \(did you mean test_kl\?\)"):
        load_comparison(beta_runs, ["test_nll"])


def test_compare_command_prints_and_writes_the_table(beta_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, beta_runs), "--metric", "test_neg_elbo", "--metric", "train_kl",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:6] == ["label", "run", "epochs", "finished", "split", "final"]
    assert [line.split()[0] for line in printed[2:6]] == ["beta=0.1", "beta=0.5", "beta=1", "beta=4"]
    rows = list(csv.DictReader((out / "final_metrics.csv").open()))
    assert [r["run"] for r in rows] == ["b1", "b3", "b2", "b0"]
    b0 = read_run(beta_runs[0]).history[-1]
    assert float(rows[-1]["final -ELBO"]) == pytest.approx(b0["test_neg_elbo"])
    assert float(rows[-1]["final train_kl"]) == pytest.approx(b0["train_kl"])
    assert rows[-1]["best epoch"] == "4" and rows[-1]["finished"] == "yes"
    assert (out / "final_metrics.md").read_text().startswith("| label | run | epochs |")
    assert png_size(out / "comparison.png")[0] > 2 * png_size(out / "comparison.png")[1]


def test_compare_errors_are_one_line(beta_runs, tmp_path, capsys):
    assert main(["compare", str(beta_runs[0]), str(tmp_path / "missing"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: run directory") and "does not exist" in err and "Traceback" not in err
    assert main(["compare", *map(str, beta_runs), "--label", "beta", "--label", "latent_dim", "-o",
                 str(tmp_path / "o")]) == 0
    assert np.all([line.startswith("beta=") for line in capsys.readouterr().out.splitlines()[2:6]])


def test_runs_with_one_label_share_a_colour_and_rows_split_the_panels(beta_runs):
    records = [read_run(d) for d in beta_runs]
    labels = ["beta=small", "beta=large", "beta=small", "beta=large"]  # e.g. the seeds of two settings
    fig = comparison_figure(records, labels, ["neg_elbo", "kl"], rows=["r1", "r1", "r2", "r2"], legend_title="size")
    assert len(fig.axes) == 2 * 2 and [len(ax.lines) for ax in fig.axes] == [2, 2, 2, 2]
    legend = fig.legends[0]
    assert legend.get_title().get_text() == "size"
    assert [t.get_text() for t in legend.get_texts()] == ["beta=small", "beta=large"]
    assert fig.axes[0].lines[0].get_color() == fig.axes[2].lines[0].get_color()  # "small" in both rows
    assert fig.axes[0].lines[0].get_color() != fig.axes[0].lines[1].get_color()
    assert fig.axes[0].get_ylabel() == "r1\nnats per example" and fig.axes[2].get_ylabel().startswith("r2\n")
    assert fig.axes[2].get_title() == ""  # metric titles on the first row only
    assert run_labels(records, ["model.latent_dim"], distinct=False)[0] == ["latent_dim=20"] * 4


def test_compare_writes_beside_the_runs_by_default_and_says_where(beta_runs, tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["compare", *map(str, beta_runs)]) == 0
    assert (tmp_path / "comparison" / "comparison.png").is_file()  # the runs' parent, not the current folder
    assert not list(elsewhere.iterdir())
    assert f"wrote {tmp_path / 'comparison'}" in capsys.readouterr().out
