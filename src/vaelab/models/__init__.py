"""Models: encoders q(z|x), decoders p(x|z), priors p(z), likelihoods, and the VAE."""

from .likelihoods import LIKELIHOODS, BernoulliLikelihood
from .networks import EncoderOutput, MLPDecoder, MLPEncoder
from .priors import PRIORS, StandardNormalPrior
from .vae import VAE, build_model, reparameterize

__all__ = [
    "LIKELIHOODS", "PRIORS", "VAE", "BernoulliLikelihood", "EncoderOutput", "MLPDecoder",
    "MLPEncoder", "StandardNormalPrior", "build_model", "reparameterize",
]
