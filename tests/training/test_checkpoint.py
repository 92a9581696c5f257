import pytest
import torch

from vaelab.config import Config, ModelConfig
from vaelab.errors import CheckpointError
from vaelab.models import build_model
from vaelab.training.checkpoint import TrainingState, encode_checkpoint, read_checkpoint, restore_rng


def test_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=2, hidden=[8]), (1, 4, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss = model.decode(model.posterior(torch.rand(2, 1, 4, 4)).mean).sum()
    loss.backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(5)
    state = TrainingState(epoch=3, best_epoch=2, best_value=99.5, history=[{"epoch": e, "x": 1.5} for e in (1, 2, 3)])
    path = tmp_path / "last.safetensors"
    path.write_bytes(encode_checkpoint(model, optimizer, state, Config().to_dict(), generator))
    expected_draw = torch.rand(3, generator=generator), torch.rand(3)

    checkpoint = read_checkpoint(path)
    assert checkpoint.training_state == state
    assert Config.from_dict(checkpoint.config) == Config()
    fresh = build_model(ModelConfig(latent_dim=2, hidden=[8]), (1, 4, 4))
    fresh.load_state_dict(checkpoint.model_state)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.01)
    fresh_opt.load_state_dict(checkpoint.optimizer_state)
    assert torch.equal(fresh_opt.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    other = torch.Generator()
    restore_rng(checkpoint.rng_tensors, checkpoint.rng_meta, other)
    assert torch.equal(torch.rand(3, generator=other), expected_draw[0])
    assert torch.equal(torch.rand(3), expected_draw[1])


def test_foreign_truncated_and_missing_files_are_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(junk)
    from safetensors.torch import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a vaelab checkpoint"):
        read_checkpoint(foreign)
