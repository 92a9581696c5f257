import torch
from torch.distributions import Bernoulli, Independent

from vaelab.config import ModelConfig
from vaelab.models import BernoulliLikelihood, build_model, reparameterize


def test_shapes_through_the_model():
    model = build_model(ModelConfig(latent_dim=3, hidden=[32, 16]), (1, 28, 20))
    x = torch.rand(5, 1, 28, 20)
    q = model.posterior(x)
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    z = reparameterize(q, 4)
    assert z.shape == (4, 5, 3)
    assert model.decode(z).shape == (4, 5, 1, 28, 20)
    assert model.sample(7).shape == (7, 1, 28, 20)
    # decoder widths mirror the encoder's by default
    widths = [m.out_features for m in model.decoder.body if isinstance(m, torch.nn.Linear)]
    assert widths == [16, 32]


def test_bernoulli_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    logits = 5 * torch.randn(3, 2, 1, 4, 4)
    x = torch.bernoulli(torch.full((2, 1, 4, 4), 0.5))
    ours = BernoulliLikelihood().log_prob(x, logits)
    reference = Independent(Bernoulli(logits=logits), 3).log_prob(x.expand_as(logits))
    assert ours.shape == (3, 2)
    torch.testing.assert_close(ours, reference)
    # numerically stable for saturated logits
    extreme = BernoulliLikelihood().log_prob(torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), -200.0))
    assert torch.isfinite(extreme).all() and extreme.abs().item() < 1e-30


def test_reparameterized_samples_have_the_posterior_moments_and_gradients():
    torch.manual_seed(0)
    mean = torch.tensor([[1.0, -2.0]], requires_grad=True)
    std = torch.tensor([[0.5, 2.0]], requires_grad=True)
    q = Independent(torch.distributions.Normal(mean, std), 1)
    z = reparameterize(q, 100_000)
    torch.testing.assert_close(z.mean((0, 1)), mean[0].detach(), atol=0.03, rtol=0)
    torch.testing.assert_close(z.std((0, 1)), std[0].detach(), atol=0.03, rtol=0)
    z.sum().backward()
    assert mean.grad is not None and std.grad is not None


def test_a_convolutional_encoder_can_have_an_mlp_decoder():
    # the SJTU report's CNN: only the encoder is convolutional
    from vaelab.models.networks import ConvEncoder, MLPDecoder

    config = ModelConfig(latent_dim=3, network="conv", conv_channels=[4, 8], conv_kernels=[5], hidden=[16],
                         decoder_network="mlp", decoder_hidden=[12])
    model = build_model(config, (1, 28, 28))
    assert isinstance(model.encoder, ConvEncoder) and isinstance(model.decoder, MLPDecoder)
    x = torch.rand(5, 1, 28, 28)
    params = model.decode(model.posterior(x).rsample())
    assert params.shape == (5, 1, 28, 28)
    assert [m.out_features for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)] == [12, 784]
