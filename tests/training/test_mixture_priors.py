"""VampPrior and MoG priors end to end: train, checkpoint, resume, evaluate and draw figures."""

import pytest
import torch

from vaelab.cli import main
from vaelab.evaluation import evaluate
from vaelab.plots import plot_run
from vaelab.training import load_model, read_checkpoint

TINY = ["--dataset", "tiny-mnist", "--hidden", "16", "--latent-dim", "2", "--batch-size", "32",
        "--no-progress", "--quiet", "--binarize", "static"]


@pytest.mark.parametrize("prior, parameter, flag", [("vamp", "prior.pseudo_inputs", "--vamp-components"),
                                                     ("mog", "prior.means", "--mog-components")])
def test_prior_parameters_are_learned_checkpointed_and_resumed(tiny_data, tmp_path, prior, parameter, flag):
    root, _ = tiny_data
    runs = tmp_path / "runs"
    assert main(["train", *TINY, "--data-dir", str(root), "--prior", prior, flag, "3", "--epochs", "1",
                 "--output-dir", str(runs), "--name", prior]) == 0
    run_dir = runs / prior
    state = read_checkpoint(run_dir / "checkpoints" / "last.safetensors").model_state
    assert parameter in state and state[parameter].shape[0] == 3
    model = load_model(run_dir, "last")
    torch.testing.assert_close(dict(model.named_parameters())[parameter].detach(), state[parameter])
    fresh = load_model(run_dir, "last")  # rebuilt from the checkpoint, not from the initial draw
    torch.manual_seed(123)
    assert torch.equal(dict(fresh.named_parameters())[parameter], state[parameter])

    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--quiet"]) == 0
    after = read_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    assert after.training_state.epoch == 2 and not torch.equal(after.model_state[parameter], state[parameter])

    result = evaluate(run_dir, k=20, examples=16, fid="none", probe=False, verbose=False).results
    assert result["nll_iwae"] <= result["neg_elbo"] + 1.0 and result["latent"]["kl_per_dim"] is None
    assert result["kl"] > 0  # a Monte Carlo KL of the K samples
    kinds = ["samples", "latent_manifold", "reconstructions", "interpolations"]  # drawn from the mixture
    assert [p.name for p in plot_run(run_dir, kinds)] == [f"{kind}.png" for kind in kinds]
