"""Objectives: the (β-weighted) ELBO and its terms, the IWAE bound, the perceptual term, and
schedules of the KL weight."""

from .elbo import ELBOTerms, elbo_terms, evaluate_elbo, kl_estimate
from .iwae import IWAETerms, LogWeights, iwae_terms, log_mean_exp, log_weights
from .objective import EXTRA_TERMS, LossTerms, Objective, build_objective, layer_keys
from .perceptual import PerceptualDistance
from .schedules import kl_weight

__all__ = ["ELBOTerms", "EXTRA_TERMS", "IWAETerms", "LogWeights", "LossTerms", "Objective", "PerceptualDistance",
           "build_objective", "elbo_terms", "evaluate_elbo", "iwae_terms", "kl_estimate", "kl_weight", "layer_keys", "log_mean_exp", "log_weights"]
