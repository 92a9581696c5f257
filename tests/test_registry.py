"""The component registries are the only lists of names: the config's choices, its validation
and the CLI's options read them."""

import dataclasses

import pytest

from vaelab import registry
from vaelab.cli import build_parser
from vaelab.config import Config, sections
from vaelab.errors import ConfigError
from vaelab.models.likelihoods import LIKELIHOODS
from vaelab.models.networks import ACTIVATIONS, CONV_PRESETS, INITIALISERS, NETWORKS
from vaelab.models.priors import PRIORS
from vaelab.objectives.objective import BOUNDS
from vaelab.training.optim import OPTIMIZERS

REGISTERED = {
    "model.likelihood": LIKELIHOODS, "model.prior": PRIORS, "model.network": NETWORKS,
    "model.activation": ACTIVATIONS, "model.init": INITIALISERS, "training.optimizer": OPTIMIZERS,
    "objective.bound": BOUNDS,
}


def field_choices(dotted: str):
    section, name = dotted.split(".")
    return {f.name: f for f in dataclasses.fields(sections()[section])}[name].metadata["choices"]


@pytest.mark.parametrize("dotted", sorted(REGISTERED))
def test_the_configs_choices_are_the_registrys_keys(dotted):
    assert tuple(field_choices(dotted)) == tuple(REGISTERED[dotted])
    assert registry.REGISTRIES[dotted].entries is REGISTERED[dotted]


@pytest.mark.parametrize("dotted", sorted(REGISTERED))
def test_the_cli_offers_the_registrys_keys(dotted):
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    action = next(a for a in train._actions if a.dest == dotted)
    assert tuple(action.choices) == tuple(REGISTERED[dotted])


def test_every_registry_names_a_config_field():
    assert set(registry.REGISTRIES) == set(REGISTERED)
    assert set(NETWORKS) == {"mlp", "conv", *CONV_PRESETS}


def test_a_registered_name_is_valid_and_another_is_refused_with_a_suggestion(monkeypatch):
    monkeypatch.setitem(LIKELIHOODS, "my_likelihood", LIKELIHOODS["gaussian"])
    monkeypatch.setattr(registry.LIKELIHOODS, "_names", None)  # re-read the registry
    assert Config.from_dict({"model": {"likelihood": "my_likelihood"}}).model.likelihood == "my_likelihood"
    monkeypatch.undo()
    registry.LIKELIHOODS._names = None
    with pytest.raises(ConfigError, match="did you mean my_likelihood|did you mean"):
        Config.from_dict({"model": {"likelihood": "gausian"}})


def test_the_vaelab_help_does_not_read_the_registries():
    import subprocess
    import sys

    code = ("import sys; from vaelab.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
