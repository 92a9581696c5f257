"""The training loss a config describes: a bound (ELBO or IWAE) and a reconstruction term
(the likelihood, a perceptual distance, or both).

================  =====================================================================
bound / recon     loss per example (averaged over the batch)
================  =====================================================================
elbo, likelihood  -E_q[log p(x|z)] + β·KL                    (Kingma & Welling 2014, eq. 3)
elbo, perceptual  λ·E_q[perceptual(x, E[x|z])] + β·KL        (Hou et al. 2017, eq. 6)
elbo, p+l         E_q[λ·perceptual - log p(x|z)] + β·KL
iwae, likelihood  -log (1/K) Σ_k p(x|z_k) (p(z_k)/q(z_k|x))^β  (Burda et al. 2016, eq. 8)
================  =====================================================================

Whatever the loss, the returned ``recon`` is the plain likelihood's reconstruction NLL and
``kl`` the KL (closed form for a diagonal Gaussian prior, a Monte Carlo estimate from the same
samples for a mixture prior: :func:`~vaelab.objectives.elbo.kl_estimate`), in nats per example, so that the metrics of every run are comparable
negative ELBOs; the perceptual term and the IWAE bound are reported beside them (``extra``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from ..config import ObjectiveConfig
from ..models.vae import VAE
from .elbo import ELBOTerms, elbo_pass
from .iwae import iwae_terms
from .perceptual import PerceptualDistance

EXTRA_TERMS = ("neg_iwae", "perceptual")
"""Names of the per-example terms an :class:`Objective` may report beside recon and kl (and a
hierarchical VAE's ``kl_1`` ... ``kl_L``, :func:`layer_terms`)."""

class LossTerms(NamedTuple):
    """What one training step needs and logs."""

    loss: torch.Tensor
    """The scalar to minimise (nats per example for likelihood-based losses)."""
    recon: torch.Tensor
    """``(B,)`` reconstruction NLL of the plain likelihood, -E_q[log p(x|z)], nats."""
    kl: torch.Tensor
    """``(B,)`` KL(q(z|x) || p(z)), nats (closed form, or Monte Carlo for a mixture prior)."""
    extra: dict[str, torch.Tensor]
    """Per-example ``(B,)`` terms among :data:`EXTRA_TERMS`: ``neg_iwae`` (nats) or
    ``perceptual`` (unweighted, feature units, not nats)."""


class Objective:
    """Callable ``objective(model, x, beta) -> LossTerms`` for ``x: (B, C, H, W)``.

    ``perceptual`` is the feature distance, required when ``config.reconstruction`` uses it
    (:func:`build_objective` loads the dataset's classifier for it).

    Raises:
        ValueError: the config asks for a perceptual term and none is given.
    """

    def __init__(self, config: ObjectiveConfig, perceptual: PerceptualDistance | None = None):
        if config.reconstruction != "likelihood" and perceptual is None:
            raise ValueError(f"objective.reconstruction={config.reconstruction} needs a PerceptualDistance")
        self.config = config
        self.perceptual = perceptual

    def __call__(self, model: VAE, x: torch.Tensor, beta: float = 1.0,
                 generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> LossTerms:
        """The loss of batch ``x: (B, C, H, W)``; ``y: (B,)`` the labels of a conditional VAE."""
        return BOUNDS[self.config.bound].loss(self, model, x, beta, generator, y)


def _elbo_loss(objective: Objective, model: VAE, x: torch.Tensor, beta: float,
               generator: torch.Generator | None, y: torch.Tensor | None) -> LossTerms:
    """The β-weighted negative ELBO with ``objective.config``'s reconstruction term."""
    c = objective.config
    terms, params = elbo_pass(model, x, c.n_samples, generator, y)
    recon, kl, kl_per_dim = terms.recon, terms.kl, terms.kl_per_dim
    if c.reconstruction == "likelihood":
        return LossTerms(terms.loss(beta, c.free_bits), recon, kl, layer_terms(terms.kl_layers))
    perceptual = objective.perceptual(x, model.likelihood.mean(params)).mean(0)  # (B,)
    surrogate = c.perceptual_weight * perceptual
    if c.reconstruction == "perceptual+likelihood":
        surrogate = surrogate + recon
    loss = ELBOTerms(surrogate, kl, kl_per_dim).loss(beta, c.free_bits)
    return LossTerms(loss, recon, kl, {"perceptual": perceptual})


def _iwae_loss(objective: Objective, model: VAE, x: torch.Tensor, beta: float,
               generator: torch.Generator | None, y: torch.Tensor | None) -> LossTerms:
    """The negative K-sample IWAE bound (``objective.config.iwae_k``)."""
    terms = iwae_terms(model, x, objective.config.iwae_k, beta, generator, y)
    return LossTerms(terms.loss(), terms.recon, terms.kl, {"neg_iwae": terms.neg_bound,
                                                           **layer_terms(terms.kl_layers)})


def _iwae_problems(o: ObjectiveConfig) -> list[str]:
    problems = []
    if o.n_samples != 1:
        problems.append("objective.n_samples is the ELBO's sample count; with bound iwae set objective.iwae_k")
    if o.free_bits:
        problems.append("objective.free_bits applies to the ELBO's KL term, not to bound iwae")
    if o.reconstruction != "likelihood":
        problems.append("bound iwae needs reconstruction: likelihood (a perceptual term is not a log-density)")
    return problems


class Bound(NamedTuple):
    """A bound a training loss maximises (an entry of :data:`BOUNDS`)."""

    loss: Callable[..., LossTerms]
    """``loss(objective, model, x, beta, generator, y) -> LossTerms``."""
    problems: Callable[[ObjectiveConfig], list[str]]
    """Its checks of the objective's other fields (one line each)."""
    description: str


BOUNDS: dict[str, Bound] = {
    "elbo": Bound(_elbo_loss, lambda o: [], "the (beta-weighted) ELBO, Kingma & Welling 2014 (objectives.elbo)"),
    "iwae": Bound(_iwae_loss, _iwae_problems,
                  "the K-sample importance-weighted bound, Burda et al. 2016 (objectives.iwae)"),
}
"""The bounds a loss maximises, by ``objective.bound``."""


def layer_keys(metrics) -> list[str]:
    """The per-layer KL names in ``metrics`` (``kl_1``, ``kl_2``, ...), in layer order."""
    keys = [k for k in metrics if k.startswith("kl_") and k[3:].isdigit()]
    return sorted(keys, key=lambda k: int(k[3:]))


def layer_terms(kl_layers: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """A hierarchical VAE's KL per layer as extra terms ``kl_1`` ... ``kl_L`` (``(B,)`` nats
    each; none for a one-layer VAE), logged beside the total KL."""
    if kl_layers is None or kl_layers.shape[-1] < 2:
        return {}
    return {f"kl_{i + 1}": kl_layers[:, i] for i in range(kl_layers.shape[-1])}


def build_objective(config: ObjectiveConfig, dataset: str, device: torch.device | str = "cpu") -> Objective:
    """The :class:`Objective` of ``config`` for data from ``dataset``; a perceptual term uses the
    dataset's cached classifier (``vaelab classifier train --dataset DATASET``).

    Raises:
        CheckpointError: a perceptual term is asked for and no valid classifier is cached.
        ConfigError: an unknown classifier layer in ``config.perceptual_layers``.
    """
    if config.reconstruction == "likelihood":
        return Objective(config)
    from ..models.classifier import check_layer_names, load_classifier

    check_layer_names(config.perceptual_layers)
    classifier, _ = load_classifier(dataset, device=device)
    return Objective(config, PerceptualDistance(classifier, config.perceptual_layers))


def config_problems(config) -> list[str]:
    """The bound's checks of a whole :class:`~vaelab.config.Config` (see :mod:`vaelab.registry`)."""
    bound = BOUNDS.get(config.objective.bound)  # None: an unknown name, which the choices already report
    return bound.problems(config.objective) if bound is not None else []
