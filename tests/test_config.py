from pathlib import Path

import pytest

from vaelab.config import Config, load_config
from vaelab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_match_pytorch_examples_vae():
    c = Config()
    assert (c.data.dataset, c.data.binarize) == ("mnist", "none")
    assert (c.model.hidden, c.model.latent_dim, c.model.activation) == ([400], 20, "relu")
    assert (c.training.learning_rate, c.training.batch_size, c.training.epochs) == (1e-3, 128, 10)
    assert c.objective.beta == 1.0 and c.seed == 1


def test_yaml_round_trip(tmp_path):
    c = Config().replace({"model.hidden": [512, 256], "objective.beta": 4, "name": "x"})
    path = tmp_path / "c.yaml"
    path.write_text(c.to_yaml())
    again = load_config(path)
    assert again == c
    assert again.objective.beta == 4.0 and isinstance(again.objective.beta, float)


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown key model\.latent_dims \(did you mean model\.latent_dim\?\)"):
        Config.from_dict({"model": {"latent_dims": 2}})


def test_all_problems_listed_at_once():
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"model": {"latent_dim": 0, "activation": "relux"},
                          "training": {"learning_rate": -1, "epochs": "ten"}, "objective": {"beta": -0.5}})
    message = str(info.value)
    assert "5 problems" in message
    assert "model.latent_dim must be >= 1 (got 0)" in message
    assert "did you mean relu" in message
    assert "training.learning_rate must be > 0" in message
    assert "training.epochs must be an integer, got 'ten'" in message
    assert "objective.beta must be >= 0" in message


def test_types_are_checked_and_scalars_promoted():
    assert Config.from_dict({"model": {"hidden": 300}}).model.hidden == [300]
    with pytest.raises(ConfigError, match="must be a non-empty list of an integer"):
        Config.from_dict({"model": {"hidden": ["wide"]}})
    with pytest.raises(ConfigError, match="true or false"):
        Config.from_dict({"training": {"progress": "yes"}})
    with pytest.raises(ConfigError, match="data must be a mapping"):
        Config.from_dict({"data": 3})


def test_names_cannot_escape_their_folder():
    with pytest.raises(ConfigError, match="plain directory name"):
        Config.from_dict({"name": "../elsewhere"})
    # a dataset with a path names your own data: never a folder name of the cache or the run
    from vaelab.data import dataset_spec
    from vaelab.errors import DataError

    config = Config.from_dict({"data": {"dataset": "../../no-such-data.npz"}})
    with pytest.raises(DataError, match="does not exist"):
        dataset_spec(config.data)
    with pytest.raises(ConfigError, match="dataset name or the path"):
        Config.from_dict({"data": {"dataset": ""}})


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(wrong)


def test_loss_shortcuts_name_the_likelihood():
    mse = Config.from_dict({"model": {"loss": "mse"}}).model
    assert (mse.likelihood, mse.likelihood_scale, mse.learn_scale, mse.loss) == ("gaussian", 1.0, "none", None)
    assert Config.from_dict({"model": {"loss": "mae"}}).model.likelihood == "laplace"
    assert Config.from_dict({"model": {"loss": "bce"}}).model.likelihood == "bernoulli"
    with pytest.raises(ConfigError, match="model.loss must be one of bce, mse, mae; got 'l2'"):
        Config.from_dict({"model": {"loss": "l2"}})


@pytest.mark.parametrize("values, message", [
    ({"model": {"likelihood": "logit_normal"}, "data": {"binarize": "static"}}, "cannot model binarised data"),
    ({"model": {"learn_scale": "scalar"}}, "the bernoulli likelihood has no scale"),
    ({"model": {"prior_std": [1], "prior_variance": [1]}}, "not both"),
    ({"model": {"latent_dim": 3, "prior_loc": [0, 1]}}, "prior_loc needs 1 or latent_dim=3 values, got 2"),
    ({"model": {"prior": "standard_normal", "prior_loc": 2}}, "use prior: normal"),
    ({"model": {"conv_channels": [8]}}, "need network: conv"),
    ({"model": {"dropout": 1.5}}, "model.dropout must be in [0, 1)"),
])
def test_incompatible_combinations_are_rejected(values, message):
    with pytest.raises(ConfigError) as info:
        Config.from_dict(values)
    assert message in str(info.value)


def test_a_lone_dot_is_a_string_not_a_float_and_the_fast_loader_reads_as_the_strict_one():
    import yaml

    from vaelab.schema import _FAST_LOADER, _StrictLoader, yaml_load

    assert yaml_load("output_dir: .\nbeta: .5\nlr: 1e-3\nx: 5.") == {"output_dir": ".", "beta": 0.5, "lr": 0.001, "x": 5.0}
    text = (REPO / "configs" / "benchmarks" / "burda-vae.yaml").read_text()
    assert yaml.load(text, Loader=_FAST_LOADER) == yaml.load(text, Loader=_StrictLoader)
    with pytest.raises(ConfigError, match="objective.beta"):
        Config.from_dict(yaml_load("objective: {beta: .}"))


def test_every_committed_config_and_sweep_resolves_the_same_in_the_component_form():
    """Every config.yaml, recipe and sweep file in the repository loads, and its component-section
    form (``model: {prior: {name: vamp, components: 500}}``) resolves to the same values."""
    import subprocess

    from vaelab.config import nest_components
    from vaelab.experiments import load_sweep
    from vaelab.schema import yaml_load

    repo = Path(__file__).resolve().parents[1]
    files = subprocess.run(["git", "ls-files", "*.yaml"], cwd=repo, capture_output=True, text=True).stdout.split()
    configs = sweeps = 0
    for name in files:
        path = repo / name
        values = yaml_load(path.read_text())
        if not isinstance(values, dict) or name.endswith(("campaign.yaml", "sweep.yaml")) or ".github" in name:
            continue
        if "claims" in values or "grid" in values or "variants" in values:
            for run in load_sweep(path, "full").runs:
                flat = Config.from_dict(run.config)
                assert Config.from_dict(nest_components(flat.to_dict())) == flat, (name, run.name)
            sweeps += 1
            continue
        flat = load_config(path)
        assert Config.from_dict(nest_components(flat.to_dict())) == flat, name
        assert Config.from_dict(nest_components(values)) == flat, name  # the file as written, too
        configs += 1
    assert configs > 300 and sweeps >= 18, (configs, sweeps)
