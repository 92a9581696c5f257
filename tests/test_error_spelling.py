"""Error messages name config keys for Python callers and flags on the command line."""

import pytest

from vaelab.cli import main
from vaelab.errors import ConfigError, cli_spelling, option
from vaelab.runtime import resolve_device


def test_option_spells_keys_for_python_and_flags_inside_the_cli():
    assert option("training.clip_norm", 5) == "training.clip_norm=5"
    assert option("split", "test") == "split=test"
    assert option("model.conditional") == "model.conditional"
    with cli_spelling():
        assert option("training.clip_norm", 5) == "--clip-norm 5"
        assert option("inception_weights", "PATH") == "--inception-weights PATH"
        assert option("model.conditional") == "--conditional"
    assert option("training.learning_rate") == "training.learning_rate"  # reset after the block


def test_a_python_caller_reads_the_config_key_and_the_cli_the_flag(monkeypatch, capsys, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as info:
        resolve_device("cuda")
    assert "use training.device=cpu" in str(info.value) and "--" not in str(info.value)
    code = main(["train", "--device", "cuda", "--epochs", "1", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "use --device cpu" in err, err
    with pytest.raises(ConfigError, match="use training.device=cpu"):  # the CLI left nothing behind
        resolve_device("cuda")
