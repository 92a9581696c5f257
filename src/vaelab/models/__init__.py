"""Models: encoders q(z|x), decoders p(x|z), priors p(z), likelihoods, and the VAE."""

from .likelihoods import LIKELIHOODS, BernoulliLikelihood, Likelihood
from .networks import (ConvDecoder, ConvEncoder, EncoderOutput, MLPDecoder, MLPEncoder, decoder_channels,
                       register_network)
from .priors import PRIORS, DiagonalGaussianMixture, MixturePrior, NormalPrior, VampPrior, sample_prior
from .vae import VAE, build_model, reparameterize

__all__ = [
    "LIKELIHOODS", "PRIORS", "VAE", "BernoulliLikelihood", "ConvDecoder", "ConvEncoder", "EncoderOutput",
    "DiagonalGaussianMixture", "Likelihood", "MLPDecoder", "MLPEncoder", "MixturePrior", "NormalPrior", "VampPrior",
    "build_model", "decoder_channels", "register_network", "reparameterize", "sample_prior",
]
