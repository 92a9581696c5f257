"""What a newcomer trips over (issue 14): misspelt and abbreviated options, dataset case,
--threads, dir(vaelab), and a run whose posterior collapsed."""

from __future__ import annotations

import json

import pytest
import torch

import vaelab
from vaelab.cli import main


@pytest.mark.parametrize("typed, suggested", [("--lattent-dim", "--latent-dim"), ("--lr", "--learning-rate"),
                                               ("--epoch", "--epochs")])
def test_unknown_and_abbreviated_options_get_the_closest_one(capsys, typed, suggested):
    with pytest.raises(SystemExit) as exit_:
        main(["train", typed, "3"])
    assert exit_.value.code == 2
    assert f"unrecognized arguments: {typed} (did you mean {suggested}?)" in capsys.readouterr().err


def test_dataset_names_are_case_insensitive_and_threads_are_set(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        assert main(["train", "--dataset", "TOY2D", "--toy2d-train-size", "256", "--toy2d-test-size", "64",
                     "--hidden", "8", "--epochs", "1", "--no-progress", "--threads", "1", "--output-dir",
                     str(tmp_path), "--name", "t", "--quiet"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    env = json.loads((tmp_path / "t" / "environment.json").read_text())
    assert env["torch_threads"] == 1
    assert "dataset: toy2d" in (tmp_path / "t" / "config.yaml").read_text()


def test_dir_lists_the_lazy_api():
    names = dir(vaelab)
    for name in ("train", "resume", "Config", "evaluate", "plot_run", "VaelabError"):
        assert name in names and name in vaelab.__all__


@pytest.mark.slow
def test_a_collapsed_posterior_is_a_warning_and_the_readme_toy2d_example_learns(tmp_path, capsys):
    common = ["train", "--dataset", "toy2d", "--latent-dim", "2", "--hidden", "32", "--no-progress",
              "--output-dir", str(tmp_path), "--quiet"]
    assert main([*common, "--epochs", "2", "--toy2d-train-size", "1000", "--name", "collapsed"]) == 0
    assert "warning: posterior collapse: none of the 2 latent dimensions is active" in capsys.readouterr().err
    assert json.loads((tmp_path / "collapsed" / "summary.json").read_text())["warnings"]
    # the README's example (10 epochs on the default 10,000 points)
    assert main([*common, "--likelihood", "gaussian", "--learn-scale", "scalar", "--likelihood-scale", "0.1",
                 "--name", "readme"]) == 0
    assert "posterior collapse" not in capsys.readouterr().err
    assert json.loads((tmp_path / "readme" / "summary.json").read_text())["final"]["kl"] > 0.5


def test_options_that_do_not_apply_warn(monkeypatch, capsys):
    import vaelab.api
    from vaelab.errors import VaelabError

    def no_training(*args, **kwargs):
        raise VaelabError("not training in this test")

    monkeypatch.setattr(vaelab.api, "train", no_training)
    assert main(["train", "--toy2d-train-size", "500", "--iwae-k", "3", "--latent-dim", "3"]) == 2
    err = capsys.readouterr().err
    assert "warning: --toy2d-train-size applies only with --dataset toy2d; it is ignored here" in err
    assert "warning: --iwae-k applies only with --bound iwae; it is ignored here" in err
    assert "--latent-dim applies" not in err


def test_without_a_terminal_progress_is_a_line_every_few_seconds(capsys):
    from vaelab.config import Config
    from vaelab.training.callbacks import _PlainProgress, progress_bar

    bar = progress_bar(Config(), total=40, epoch=3)  # pytest's stdout is no terminal
    assert isinstance(bar, _PlainProgress) and bar.every <= 10
    bar.every = 0
    bar.set_postfix(loss="101.50")
    bar.update(1)
    assert capsys.readouterr().out.startswith("epoch 3: 1/40 batches (2%), 0 s, loss 101.50")
