import pytest
import torch

from vaelab.config import Config, TrainingConfig
from vaelab.errors import ConfigError
from vaelab.training.optim import clip_gradients, make_optimizer, make_scheduler, step_scheduler


@pytest.mark.parametrize("name, kind", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                        ("sgd", torch.optim.SGD), ("rmsprop", torch.optim.RMSprop)])
def test_optimisers_by_name(name, kind):
    model = torch.nn.Linear(3, 2)
    extra = {"momentum": 0.9} if name in ("sgd", "rmsprop") else {}
    opt = make_optimizer(model, TrainingConfig(optimizer=name, learning_rate=0.05, weight_decay=0.01, **extra))
    assert isinstance(opt, kind)
    group = opt.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.01
    if extra:
        assert group["momentum"] == 0.9


def test_nesterov_sgd_and_invalid_combinations():
    opt = make_optimizer(torch.nn.Linear(2, 2), TrainingConfig(optimizer="sgd", momentum=0.9, nesterov=True))
    assert opt.param_groups[0]["nesterov"]
    with pytest.raises(ConfigError, match="momentum applies to sgd and rmsprop, not adam"):
        Config.from_dict({"training": {"momentum": 0.9}})
    with pytest.raises(ConfigError, match="nesterov needs optimizer: sgd and momentum > 0"):
        Config.from_dict({"training": {"optimizer": "sgd", "nesterov": True}})


def test_schedules_change_the_learning_rate_per_epoch():
    def lrs(config, metrics):
        opt = make_optimizer(torch.nn.Linear(2, 2), config)
        sched = make_scheduler(opt, config)
        out = []
        for m in metrics:
            opt.step()
            step_scheduler(sched, m)
            out.append(opt.param_groups[0]["lr"])
        return out
    step = TrainingConfig(lr_schedule="step", lr_step_epochs=2, lr_gamma=0.5, learning_rate=1.0)
    assert lrs(step, [0] * 4) == [1.0, 0.5, 0.5, 0.25]
    cosine = TrainingConfig(lr_schedule="cosine", epochs=4, learning_rate=1.0)
    assert lrs(cosine, [0] * 4)[-1] == pytest.approx(0.0, abs=1e-12)
    plateau = TrainingConfig(lr_schedule="plateau", lr_patience=1, lr_gamma=0.1, learning_rate=1.0)
    assert lrs(plateau, [5, 4, 4, 4]) == pytest.approx([1.0, 1.0, 1.0, 0.1])
    assert make_scheduler(make_optimizer(torch.nn.Linear(2, 2), TrainingConfig()), TrainingConfig()) is None


def test_clipping_by_value_and_by_norm():
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, -4.0, 0.5, 0.0])
    clip_gradients([p], TrainingConfig(clip_value=1.0))
    assert p.grad.tolist() == [1.0, -1.0, 0.5, 0.0]
    p.grad = torch.tensor([3.0, -4.0, 0.0, 0.0])
    clip_gradients([p], TrainingConfig(clip_norm=1.0))
    assert p.grad.norm().item() == pytest.approx(1.0, rel=1e-4)
