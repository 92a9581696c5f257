"""``training.ema_decay``: the weights' exponential moving average (``torch.optim.swa_utils``) is
the analytic average, differs from the trained weights, is what evaluation uses, and is
checkpointed so that a resumed run computes the same numbers as an uninterrupted one."""

from __future__ import annotations

import pytest
import torch

from vaelab import resume as resume_run
from vaelab import train as train_run
from vaelab.config import Config
from vaelab.errors import ConfigError, TrainingInterrupted
from vaelab.objectives import evaluate_elbo
from vaelab.training import Callback, load_model, read_checkpoint
from vaelab.training.optim import make_ema

TINY = {"data": {"dataset": "tiny-mnist", "binarize": "dynamic"}, "model": {"latent_dim": 2, "hidden": [16]},
        "training": {"epochs": 3, "batch_size": 8, "progress": False, "ema_decay": 0.9, "logger": "csv"}}


def tiny_config(root, tmp_path, name, **training):
    return {**TINY, "data": {**TINY["data"], "data_dir": str(root)}, "output_dir": str(tmp_path / "runs"),
            "name": name, "training": {**TINY["training"], **training}}


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5])
def test_an_ema_decay_outside_0_1_is_a_one_line_error_naming_the_key(decay):
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"training": {"ema_decay": decay}})
    assert "training.ema_decay must be in [0, 1)" in str(info.value) and "\n" not in str(info.value)


def test_no_ema_when_the_decay_is_0():
    assert make_ema(torch.nn.Linear(2, 1), 0.0) is None


def test_the_ema_is_the_analytic_exponential_average_of_the_weights():
    model = torch.nn.Linear(3, 1, bias=False)
    ema = make_ema(model, 0.75)
    values = [torch.full((1, 3), v) for v in (1.0, 5.0, -3.0)]
    expected = None
    for value in values:
        with torch.no_grad():
            model.weight.copy_(value)
        ema.update_parameters(model)
        # the first update copies the weights, then ema = d * ema + (1 - d) * w
        expected = value.clone() if expected is None else 0.75 * expected + 0.25 * value
    torch.testing.assert_close(ema.module.weight, expected)
    assert torch.allclose(expected, torch.full((1, 3), 0.75 * (0.75 * 1 + 0.25 * 5) + 0.25 * -3))
    assert not torch.equal(ema.module.weight, model.weight)


def test_the_average_equals_torch_s_averaged_model_and_keeps_its_count_off_the_host():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))  # float and integer buffers
    ours, reference = make_ema(model, 0.8), AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.8),
                                                          use_buffers=True)
    for _ in range(4):
        model(torch.randn(8, 3))  # moves the batch norm's running statistics and step count
        with torch.no_grad():
            model[0].weight.add_(torch.randn(4, 3))
        ours.update_parameters(model)
        reference.update_parameters(model)
    for (name, a), b in zip(ours.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert ours.updates == 4 and ours.n_averaged.device == model[0].weight.device
    restored = make_ema(model, 0.8)
    restored.load_state_dict(ours.state_dict())  # a resume: the Python count follows the checkpoint's
    assert restored.updates == 4


def test_a_run_evaluates_and_checkpoints_the_averaged_weights(tiny_data, tmp_path):
    root, _ = tiny_data
    run = train_run(tiny_config(root, tmp_path, "ema", epochs=2), verbose=False)
    checkpoint = read_checkpoint(run.run_dir / "checkpoints" / "last.safetensors")
    assert checkpoint.ema_state is not None and int(checkpoint.ema_state["n_averaged"]) == 2 * 96 // 8
    averaged = checkpoint.eval_state()
    assert averaged.keys() == checkpoint.model_state.keys()
    assert any(not torch.equal(averaged[k], checkpoint.model_state[k]) for k in averaged)
    model = load_model(run.run_dir, "last")  # evaluate, plot and export read this
    for name, value in model.state_dict().items():
        assert torch.equal(value, averaged[name])
    # the per-epoch test -ELBO of metrics.csv is the averaged model's
    from vaelab.data import load_dataset

    dataset = load_dataset(run.config.data)
    neg_elbo = evaluate_elbo(model, dataset.test.images, run.config.training.eval_batch_size, 1,
                             seed=run.config.seed)["neg_elbo"]
    assert neg_elbo == pytest.approx(run.history[-1]["test_neg_elbo"], rel=1e-6)


class StopAt(Callback):
    def __init__(self, epoch, step):
        self.epoch, self.step = epoch, step

    def on_batch_end(self, trainer, step):
        if (step.epoch, step.position.step) == (self.epoch, self.step):
            trainer.request_stop("stopped by the test")


def without_seconds(history):
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in history]


def test_an_interrupted_and_resumed_ema_run_equals_an_uninterrupted_one(tiny_data, tmp_path):
    root, _ = tiny_data
    straight = train_run(tiny_config(root, tmp_path, "straight"), verbose=False)
    # stopped mid-epoch 2 (a mid-epoch checkpoint holding the average so far), then resumed
    with pytest.raises(TrainingInterrupted):
        train_run(tiny_config(root, tmp_path, "resumed"), verbose=False,
                  callbacks=[StopAt(2, 5)])
    resumed = resume_run(tmp_path / "runs" / "resumed", verbose=False)
    assert without_seconds(resumed.history) == without_seconds(straight.history)
    a = read_checkpoint(straight.run_dir / "checkpoints" / "last.safetensors")
    b = read_checkpoint(resumed.run_dir / "checkpoints" / "last.safetensors")
    for key, value in a.ema_state.items():
        assert torch.equal(value, b.ema_state[key]), key
