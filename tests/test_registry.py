"""The component registries are the only lists of names: every name registered builds its
component from a config, and a name added at run time is a config choice and a CLI option."""

import pytest
import torch

from vaelab import registry
from vaelab.cli import build_parser
from vaelab.config import Config
from vaelab.errors import ConfigError
from vaelab.models import build_model
from vaelab.models.likelihoods import LIKELIHOODS
from vaelab.models.networks import CUSTOM
from vaelab.objectives import build_objective
from vaelab.training.optim import make_optimizer

NEEDS = {  # what a name needs beside it to make a valid config
    ("model.network", "dcgan"): {"model.hidden": [8]},
    ("model.network", "conv3"): {"model.hidden": [8]},
}


def every_registered_name():
    for key, names in registry.REGISTRIES.items():
        for name in names:
            yield key, name


@pytest.mark.parametrize("key,name", list(every_registered_name()), ids=lambda v: str(v))
def test_every_registered_name_makes_a_config_whose_component_builds(key, name):
    config = Config().replace({key: name, "model.hidden": [8], "model.latent_dim": 2,
                               **NEEDS.get((key, name), {})})
    if name == CUSTOM:  # your own modules: the config is valid, the model needs them
        with pytest.raises(ConfigError, match="encoder= and decoder="):
            build_model(config.model, (1, 28, 28))
        return
    model = build_model(config.model, (1, 28, 28))
    terms = build_objective(config.objective, config.data.dataset, torch.device("cpu"))(model, torch.rand(3, 1, 28, 28), 1.0)
    assert torch.isfinite(terms.loss)
    optimizer = make_optimizer(model, config.training)
    terms.loss.backward()
    optimizer.step()


def test_a_name_added_at_run_time_is_a_choice_of_the_config_and_the_cli(monkeypatch):
    def choices(dest):
        train = build_parser("train")._subparsers._group_actions[0].choices["train"]
        return next(a for a in train._actions if a.dest == dest).choices

    assert "my_likelihood" not in choices("model.likelihood")
    with pytest.raises(ConfigError, match="model.likelihood must be one of .*; got 'my_likelihood'"):
        Config.from_dict({"model": {"likelihood": "my_likelihood"}})
    monkeypatch.setitem(LIKELIHOODS, "my_likelihood", LIKELIHOODS["gaussian"])
    assert Config.from_dict({"model": {"likelihood": "my_likelihood"}}).model.likelihood == "my_likelihood"
    assert "my_likelihood" in choices("model.likelihood")
    with pytest.raises(ConfigError, match="did you mean my_likelihood"):
        Config.from_dict({"model": {"likelihood": "my_likelihod"}})


def test_the_vaelab_help_does_not_read_the_registries():
    import subprocess
    import sys

    code = ("import sys; from vaelab.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
