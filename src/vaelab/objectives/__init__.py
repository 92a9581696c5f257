"""Objectives: the (β-weighted) ELBO and its terms."""

from .elbo import ELBOTerms, elbo_terms, kl_term

__all__ = ["ELBOTerms", "elbo_terms", "kl_term"]
