"""Your own encoder and decoder: as modules from Python (``vaelab.train(encoder=, decoder=)``)
or registered under a name (``vaelab.register_network``, ``vaelab --import MODULE``); the
contract checked in one line; runs that checkpoint, resume, evaluate and plot."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import vaelab
from tests.data.stream_child import arrays
from vaelab.cli import main
from vaelab.config import Config
from vaelab.errors import ConfigError
from vaelab.experiments import load_sweep
from vaelab.models import networks

TINY = {"data": {"dataset": "tiny-mnist", "binarize": "dynamic"},
        "training": {"epochs": 2, "batch_size": 16, "progress": False, "logger": "csv"}}


class Encoder(nn.Module):
    """A user's MLP encoder: x (B, 1, 28, 28) -> EncoderOutput((B, D), (B, D)) or a plain tuple."""

    def __init__(self, latent_dim: int = 3, plain_tuple: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Tanh())
        self.mean, self.log_var = nn.Linear(32, latent_dim), nn.Linear(32, latent_dim)
        self.plain_tuple = plain_tuple

    def forward(self, x):
        h = self.body(x)
        out = (self.mean(h), self.log_var(h))
        return out if self.plain_tuple else vaelab.EncoderOutput(*out)


class Decoder(nn.Module):
    """A user's decoder written for z (N, D) only: vaelab flattens the sample dimensions."""

    def __init__(self, latent_dim: int = 3, channels: int = 1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, 32), nn.Tanh(), nn.Linear(32, channels * 784))
        self.channels = channels

    def forward(self, z):
        assert z.dim() == 2, z.shape
        return self.net(z).view(-1, self.channels, 28, 28)


def modules(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return Encoder(**kwargs), Decoder()


def config(root, tmp_path, name, **model):
    return {**TINY, "data": {**TINY["data"], "data_dir": str(root)}, "output_dir": str(tmp_path / "runs"),
            "name": name, "model": {"latent_dim": 3, **model}}


def rows(run_dir):
    out = list(csv.DictReader((run_dir / "metrics.csv").open()))
    for row in out:
        row.pop("train_seconds")
    return out


def test_your_encoder_and_decoder_train_with_a_vampprior_resume_evaluate_and_plot(tiny_data, tmp_path, capsys):
    root, _ = tiny_data
    cfg = config(root, tmp_path, "mine", prior="vamp", vamp_components=4)
    encoder, decoder = modules()
    before = encoder.mean.weight.detach().clone()
    run = vaelab.train(cfg, verbose=False, encoder=encoder, decoder=decoder)
    assert run.config.model.network == "custom" and not torch.equal(before, encoder.mean.weight)  # trained in place
    env = json.loads((run.run_dir / "environment.json").read_text())
    assert env["networks"]["encoder"].endswith("test_plugins.Encoder") and env["networks"]["builder"] is None
    # resumed from Python with fresh modules of the same kind: the metrics of an uninterrupted run
    straight = vaelab.train({**cfg, "name": "straight", "training": {**cfg["training"], "epochs": 3}}, verbose=False,
                            encoder=modules()[0], decoder=modules()[1])
    resumed = vaelab.resume(run.run_dir, {"training.epochs": 3}, verbose=False, encoder=Encoder(), decoder=Decoder())
    assert resumed.summary["epochs"] == 3 and rows(run.run_dir) == rows(straight.run_dir)
    model = run.load_model("last")  # copies of the run's own modules, with the checkpoint's weights
    assert isinstance(model.encoder, Encoder) and model.encoder is not encoder
    assert model.sample(5).shape == (5, 1, 28, 28)
    result = vaelab.evaluate(run.run_dir, k=3, probe=False, fid="none", verbose=False, encoder=Encoder(),
                             decoder=Decoder())
    assert result["nll_iwae"] <= result["neg_elbo"] + 3 * result["neg_elbo_stderr"]
    assert [p.name for p in vaelab.plot_run(run.run_dir, ["samples"], encoder=Encoder(), decoder=Decoder())] == \
        ["samples.png"]
    # the command line cannot rebuild them: one line saying what to do
    capsys.readouterr()
    for command in (["evaluate", str(run.run_dir), "--k", "2"], ["plot", str(run.run_dir), "--kind", "samples"],
                    ["train", "--resume", str(run.run_dir), "--epochs", "4"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "encoder= and decoder=" in err and "--import MODULE" in err, err


def test_a_decoder_with_a_learned_scale_per_pixel_returns_two_parameters_per_pixel(tiny_data, tmp_path):
    root, _ = tiny_data
    cfg = config(root, tmp_path, "scale", likelihood="gaussian", learn_scale="decoder")
    assert vaelab.decoder_channels(cfg, (1, 28, 28)) == 2 and vaelab.decoder_channels(Config(), (3, 32, 32)) == 3
    torch.manual_seed(0)
    run = vaelab.train(cfg, verbose=False, encoder=Encoder(plain_tuple=True), decoder=Decoder(channels=2))
    assert run.summary["epochs"] == 2


@pytest.mark.parametrize("encoder,decoder,message", [
    (Encoder(latent_dim=4), Decoder(), "your encoder returns 4 latent dimensions but model.latent_dim is 3; set "
                                       "model.latent_dim=4"),
    (Encoder(), Decoder(channels=2), r"your decoder returned (2, 2, 28, 28) for z of shape (2, 3); it must return "
                                     r"(N, K*C, H, W) = (2, 1, 28, 28)"),
    (nn.Linear(784, 3), Decoder(), "your encoder failed on x of shape (2, 1, 28, 28) (RuntimeError"),
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 3)), Decoder(), "your encoder returned Tensor; it must return "
                                                                "(mean, log_var)"),
    (Encoder(), None, "give both encoder= and decoder= (got only encoder)"),
    (Encoder(), "decoder", "decoder= must be a torch.nn.Module, got str"),
])
def test_a_broken_contract_is_one_line_before_training(tiny_data, tmp_path, encoder, decoder, message):
    root, _ = tiny_data
    with pytest.raises(ConfigError) as info:
        vaelab.train(config(root, tmp_path, "bad"), verbose=False, encoder=encoder, decoder=decoder)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "runs" / "bad" / "checkpoints").exists()


def test_own_modules_do_not_replace_a_chosen_network_or_make_a_conditional_vae(tiny_data, tmp_path):
    root, _ = tiny_data
    with pytest.raises(ConfigError, match="replace model.network, which is conv here"):
        vaelab.train(config(root, tmp_path, "conv", network="conv"), verbose=False, encoder=Encoder(), decoder=Decoder())
    with pytest.raises(ConfigError, match="model.conditional appends the label to the built-in networks' inputs"):
        vaelab.train(config(root, tmp_path, "cvae", conditional=True), verbose=False, encoder=Encoder(),
                     decoder=Decoder())


PLUGIN = "tests.models.plugin_networks"


def forget() -> None:
    """As in a new process: the plug-in's module not imported, its network not registered."""
    sys.modules.pop(PLUGIN, None)
    networks.NETWORKS.pop("tiny_conv", None)
    networks.BUILDERS.pop("tiny_conv", None)
    vaelab.plugins._IMPORTED.clear()


@pytest.fixture
def plugin():
    """The plug-in module's name, not imported yet; the registries as they were after the test."""
    import vaelab.plugins

    names, builders, imported = dict(networks.NETWORKS), dict(networks.BUILDERS), list(vaelab.plugins._IMPORTED)
    forget()
    yield PLUGIN
    forget()
    networks.NETWORKS.update(names)
    networks.BUILDERS.update(builders)
    vaelab.plugins._IMPORTED.extend(imported)


def test_a_registered_network_trains_from_the_cli_with_import_and_runs_say_what_to_import(
        tiny_data, tmp_path, plugin, capsys):
    root, _ = tiny_data
    args = ["train", "--dataset", "tiny-mnist", "--data-dir", str(root), "--output-dir", str(tmp_path), "--epochs", "1",
            "--batch-size", "16", "--latent-dim", "2", "--no-progress", "--logger", "csv", "--quiet"]
    with pytest.raises(SystemExit):  # not imported: not a choice
        main([*args, "--network", "tiny_conv", "--name", "without"])
    assert "invalid choice: 'tiny_conv'" in capsys.readouterr().err
    assert main(["--import", plugin, *args, "--network", "tiny_conv", "--name", "plug"]) == 0
    run_dir = tmp_path / "plug"
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["imports"] == [plugin] and env["networks"]["builder"] == f"{plugin}.build"
    assert "TinyConvEncoder" in env["networks"]["encoder"]
    forget()
    capsys.readouterr()
    for command in (["evaluate", str(run_dir), "--k", "2", "--no-probe", "--fid", "none"],
                    ["plot", str(run_dir), "--kind", "samples"], ["train", "--resume", str(run_dir), "--epochs", "2"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"this run imported {plugin}: `vaelab --import {plugin} " in err, err
    assert main(["--import", plugin, "train", "--resume", str(run_dir), "--epochs", "2", "--quiet"]) == 0
    assert main(["--import", plugin, "evaluate", str(run_dir), "--k", "2", "--no-probe", "--fid", "none",
                 "--quiet"]) == 0


def test_the_same_network_from_yaml_and_an_unknown_name_says_how_to_register_it(tiny_data, tmp_path, plugin):
    root, _ = tiny_data
    __import__(plugin)
    run = vaelab.train(config(root, tmp_path, "yaml", network="tiny_conv"), verbose=False)
    assert type(run.load_model().encoder).__name__ == "TinyConvEncoder"
    forget()
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps({"name": "s", "base": config(root, tmp_path, "x", network="tiny_conv"), "seeds": [1]}))
    with pytest.raises(ConfigError, match=r"got 'tiny_conv' \(did you mean conv\?\); a plug-in network is registered "
                                          r"when its module is imported: `vaelab --import MODULE COMMAND \.\.\.`"):
        load_sweep(sweep, "quick", tmp_path)


def test_import_errors_and_register_network_errors_are_one_line(capsys):
    assert main(["--import", "no_such_module_xyz", "datasets"]) == 2
    assert capsys.readouterr().err.strip() == ("vaelab: error: --import no_such_module_xyz: no module named "
                                               "'no_such_module_xyz'; give a dotted module name importable from the "
                                               "current directory or the Python path (e.g. mypackage.networks)")
    with pytest.raises(ConfigError, match="mlp is a built-in network"):
        vaelab.register_network("mlp", lambda *a: None)
    with pytest.raises(ConfigError, match="must start with a letter"):
        vaelab.register_network("my net", lambda *a: None)
    with pytest.raises(ConfigError, match="must be callable"):
        vaelab.register_network("mine", "not a function")


def test_a_sweep_with_import_trains_a_plug_in_network_in_its_workers(tmp_path, plugin):
    (x_train, y_train), (x_test, y_test) = arrays(96, 0), arrays(40, 1)
    np.savez(tmp_path / "tiny.npz", x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)
    base = {"data": {"dataset": str(tmp_path / "tiny.npz")}, "model": {"network": "tiny_conv", "latent_dim": 2},
            "training": {**TINY["training"], "epochs": 1}, "figures": {"draw_at_end": False}}
    sweep = tmp_path / "plug.yaml"
    sweep.write_text(json.dumps({"name": "plug", "base": base, "seeds": [1]}))
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo / "src") + os.pathsep + str(repo)}
    command = [sys.executable, "-m", "vaelab", "--import", plugin, "sweep", str(sweep), "--jobs", "1", "--quiet",
               "-o", str(tmp_path)]  # without --import: the sweep file is refused (test above)
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run_dir = next((tmp_path / "plug" / "runs").iterdir())
    assert json.loads((run_dir / "environment.json").read_text())["imports"] == [plugin]  # the worker imported it
