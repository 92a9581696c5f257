"""Statistics of the latent space: active units, KL per dimension, and linear / k-NN probes.

* **Active units** (Burda et al. 2016, Sec. 5.2): dimension u is active when
  ``A_u = Cov_x(E_{z~q(z|x)}[z_u]) > 0.01``, i.e. the posterior mean of that coordinate varies
  across the data. An inactive dimension's posterior equals the prior for every x (posterior
  collapse) and carries no information.
* **KL per dimension**: ``E_x KL(q(z_u|x) || p(z_u))`` in nats, from the closed form (Kingma &
  Welling 2014, Appendix B); it sums to the KL term of the ELBO. Collapsed dimensions have ~0.
  Only for a diagonal Gaussian prior: a mixture prior (MoG, VampPrior) does not factorise.
* **Probes** on the posterior means (labelled data only): a multinomial logistic regression on
  standardised means and a 5-nearest-neighbour classifier (scikit-learn), fit on training
  examples and scored on the evaluated split. Accuracy says how much of the label the latent
  space makes linearly (or locally) available.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import torch
from ..errors import option
from ..models.priors import factorises
from ..models.vae import VAE
from ..objectives.elbo import kl_estimate
from ..runtime import flush_denormals
from ..training.callbacks import Callback

ACTIVE_THRESHOLD = 0.01


class LatentSummary(NamedTuple):
    """Posterior statistics of a set of images."""

    means: torch.Tensor
    """``(N, D)`` float32 posterior means E_q[z|x]."""
    kl_per_dim: torch.Tensor | None
    """``(D,)`` float64: mean over the N examples of KL(q(z_u|x) || p(z_u)), nats; None for a
    mixture prior, which does not factorise over dimensions."""


@torch.inference_mode()
def posterior_summary(model: VAE, images: torch.Tensor, batch_size: int = 1000,
                      device: torch.device | str | None = None, labels: torch.Tensor | None = None) -> LatentSummary:
    """Posterior means and the mean KL per latent dimension over ``images: (N, C, H, W)``
    (``labels: (N,)`` for a conditional VAE: of q(z|x,y))."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    prior = model.prior_distribution()
    prior = prior if factorises(prior) else None  # a mixture has no KL per dimension
    means, kl_sum = [], torch.zeros(model.latent_dim, dtype=torch.float64, device=device)
    try:
        with flush_denormals():
            label_batches = labels.split(batch_size) if labels is not None else [None] * len(images.split(batch_size))
            for x, y in zip(images.split(batch_size), label_batches):
                y = y.to(device) if y is not None else None
                q = model.posterior(x.to(device, non_blocking=True), y)
                means.append(q.base_dist.loc.float().cpu())
                if prior is not None:
                    kl_sum += kl_estimate(q, prior)[1].sum(0, dtype=torch.float64)  # closed form, (D,)
    finally:
        model.train(was_training)
    return LatentSummary(torch.cat(means), (kl_sum / images.shape[0]).cpu() if prior is not None else None)


def active_units(means: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> tuple[int, torch.Tensor]:
    """Burda et al. 2016's active units from posterior means ``(N, D)``.

    Returns:
        (number of dimensions with variance > ``threshold``, the variances ``(D,)`` float64,
        computed across the N examples with the 1/(N-1) estimator).
    """
    variances = means.to(torch.float64).var(0) if means.shape[0] > 1 else torch.zeros(means.shape[1], dtype=torch.float64)
    return int((variances > threshold).sum()), variances


def probe_accuracy(train_means: torch.Tensor, train_labels: torch.Tensor, test_means: torch.Tensor,
                   test_labels: torch.Tensor, kind: str = "logistic", seed: int = 0) -> float:
    """Accuracy in [0, 1] on ``test`` of a probe fit on ``train`` posterior means ``(N, D)``.

    ``kind``: ``logistic`` (multinomial logistic regression, L2 C=1, on standardised features,
    lbfgs) or ``knn`` (5 nearest neighbours, Euclidean).

    Raises:
        ValueError: an unknown ``kind``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logistic":
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    elif kind == "knn":
        probe = KNeighborsClassifier(n_neighbors=5)
    else:
        raise ValueError(f"unknown probe {kind!r}; use logistic or knn")
    probe.fit(train_means.double().numpy(), train_labels.numpy())
    return float(probe.score(test_means.double().numpy(), test_labels.numpy()))


def posterior_collapse(model: VAE, images: torch.Tensor, latent_dim: int, batch_size: int = 1000,
                       labels: torch.Tensor | None = None, config=None) -> str | None:
    """A warning when no latent dimension is active (Burda et al. 2016's active units: the
    posterior means over the first 2000 ``images`` vary by more than :data:`ACTIVE_THRESHOLD`):
    the decoder ignores z and every reconstruction is the same. None when some are active. With
    the run's ``config`` the remedies it suggests are only those the run does not use yet."""
    labels = labels[:2000] if labels is not None else None  # a conditional VAE's q(z|x,y)
    means = posterior_summary(model, images[:2000], batch_size, labels=labels).means
    active, _ = active_units(means)
    if active:
        return None
    o, m = (config.objective, config.model) if config is not None else (None, None)
    remedies = []
    if o is None or o.kl_schedule == "constant":
        remedies.append(f"a KL warm-up ({option('objective.kl_schedule', 'linear')})")
    if o is None or not o.free_bits:
        remedies.append(f"free bits ({option('objective.free_bits', 0.5)})")
    if m is None or (m.likelihood not in ("gaussian", "laplace", "logit_normal") or m.learn_scale == "none"):
        remedies.append(f"a likelihood with a learned scale ({option('model.likelihood', 'gaussian')} "
                        f"{option('model.learn_scale', 'scalar')})")
    remedies.append("more epochs")
    return (f"posterior collapse: none of the {latent_dim} latent dimensions is active (the "
            f"posterior means vary by less than {ACTIVE_THRESHOLD} across examples), so the model ignores z; "
            f"try {', '.join(remedies[:-1])} or {remedies[-1]}" if len(remedies) > 1 else
            f"posterior collapse: none of the {latent_dim} latent dimensions is active (the posterior means vary "
            f"by less than {ACTIVE_THRESHOLD} across examples), so the model ignores z; try more epochs")


class PosteriorCollapseCheck(Callback):
    """At the end of training, :func:`posterior_collapse` on the evaluation split: its warning
    goes to stderr and into the summary's ``warnings`` (put it before the summary's writer)."""

    def on_fit_end(self, trainer, summary: dict) -> None:
        if not trainer.state.history:
            return
        warning = posterior_collapse(trainer.eval_model, trainer.eval_images, trainer.config.model.latent_dim,
                                     trainer.config.training.eval_batch_size, trainer.eval_labels, trainer.config)
        if warning is not None:
            summary["warnings"] = [warning]
            print(f"warning: {warning}", file=sys.stderr)
