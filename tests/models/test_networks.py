import pytest
import torch

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models import build_model

SHAPES = [(1, 28, 28), (1, 28, 20), (3, 32, 32), (3, 8, 8)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("network, extra", [
    ("mlp", {}), ("conv", {"conv_channels": [8, 16], "conv_kernels": [3, 5]}),
    ("conv", {"conv_channels": [8], "conv_downsample": "stride", "conv_upsample": "upsample"}),
    ("conv3", {}), ("dcgan", {}),
])
def test_networks_fit_every_data_shape(shape, network, extra):
    config = ModelConfig(network=network, latent_dim=3, hidden=[16], **extra)
    model = build_model(config, shape)
    x = torch.rand(2, *shape)
    q = model.posterior(x)
    assert q.mean.shape == (2, 3)
    assert model.decode(torch.randn(4, 2, 3)).shape == (4, 2, *shape)


def test_conv3_matches_the_study():
    model = build_model(ModelConfig(network="conv3", latent_dim=2), (1, 28, 28))
    convs = [m for m in model.encoder.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0]) for c in convs] == [(32, 3), (64, 7), (128, 5)]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.encoder.convs) == 3
    assert model.encoder.heads.mean.in_features == 128 * 3 * 3  # 28 -> 14 -> 7 -> 3, then one FC


def test_downsampling_below_one_pixel_is_rejected():
    with pytest.raises(ConfigError, match=r"network=conv3: 3 downsampling layers shrink 4x4 inputs to 0x0"):
        build_model(ModelConfig(network="conv3"), (1, 4, 4))
    with pytest.raises(ConfigError, match="shrink 1x2 inputs"):
        build_model(ModelConfig(network="conv", conv_channels=[4]), (1, 1, 2))


@pytest.mark.parametrize("scheme", ["xavier_uniform", "xavier_normal", "kaiming_normal", "kaiming_uniform"])
def test_initialisation_schemes(scheme):
    torch.manual_seed(0)
    model = build_model(ModelConfig(init=scheme, hidden=[400]), (1, 28, 28))
    first = model.encoder.body[0]
    assert torch.count_nonzero(first.bias) == 0
    fan_in, fan_out = 784, 400
    expected = {"xavier_uniform": (2 / (fan_in + fan_out)) ** 0.5, "xavier_normal": (2 / (fan_in + fan_out)) ** 0.5,
                "kaiming_normal": (2 / fan_in) ** 0.5, "kaiming_uniform": (2 / fan_in) ** 0.5}[scheme]
    assert first.weight.std().item() == pytest.approx(expected, rel=0.02)


def test_batch_norm_and_dropout_are_off_by_default_and_on_by_option():
    plain = build_model(ModelConfig(), (1, 28, 28))
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.Dropout)) for m in plain.modules())
    rich = build_model(ModelConfig(batch_norm=True, dropout=0.2), (1, 28, 28))
    kinds = {type(m) for m in rich.modules()}
    assert torch.nn.BatchNorm1d in kinds and torch.nn.Dropout in kinds
