import pytest
import torch

from vaelab.config import ObjectiveConfig
from vaelab.objectives import ELBOTerms, kl_weight


def test_constant_linear_and_cyclical_kl_weights():
    constant = ObjectiveConfig(beta=0.5)
    assert kl_weight(constant, 999, 10, 10) == 0.5
    linear = ObjectiveConfig(beta=2.0, kl_schedule="linear", kl_warmup_epochs=2)
    assert [kl_weight(linear, s, 10, 10) for s in (0, 5, 10, 20, 90)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    cyclical = ObjectiveConfig(beta=1.0, kl_schedule="cyclical", kl_cycles=2, kl_cycle_ramp=0.5)
    # 10 epochs of 10 steps: two 5-epoch cycles, rising over the first 2.5 epochs of each
    weights = [kl_weight(cyclical, s, 10, 10) for s in (0, 10, 25, 40, 50, 60)]
    assert weights == pytest.approx([0.0, 0.4, 1.0, 1.0, 0.0, 0.4])


def test_free_bits_stop_penalising_small_kl_dimensions():
    kl_per_dim = torch.tensor([[0.1, 3.0], [0.3, 1.0]], requires_grad=True)  # batch means 0.2 and 2.0
    terms = ELBOTerms(recon=torch.tensor([5.0, 7.0]), kl=kl_per_dim.sum(-1), kl_per_dim=kl_per_dim)
    assert terms.loss(1.0).item() == pytest.approx(6.0 + 2.2)
    loss = terms.loss(1.0, free_bits=0.5)
    assert loss.item() == pytest.approx(6.0 + 0.5 + 2.0)
    loss.backward()
    assert kl_per_dim.grad[:, 0].abs().sum() == 0  # below the threshold: no gradient
    assert kl_per_dim.grad[:, 1].abs().sum() > 0
