"""Objectives: the (β-weighted) ELBO and its terms, and schedules of the KL weight."""

from .elbo import ELBOTerms, elbo_terms, kl_term
from .schedules import kl_weight

__all__ = ["ELBOTerms", "elbo_terms", "kl_term", "kl_weight"]
