"""Evaluation: metrics computed over whole splits (ELBO, importance-sampled log-likelihood,
latent statistics, probes, Fréchet distances) and the dataset classifier they use."""

from ..objectives.elbo import evaluate_elbo  # the per-epoch test ELBO, used by the trainer too
from .loglik import LogLikelihood, LogMeanExp, example_noise, importance_log_likelihood


def __getattr__(name):  # the rest on first use: `vaelab train` need not import sklearn or torchmetrics
    import importlib

    modules = {
        "evaluate": "run", "Evaluation": "run", "EvaluationConfig": "run",
        "train_classifier": "classifier", "class_histogram": "classifier", "predict": "classifier",
        "active_units": "latents", "posterior_summary": "latents", "probe_accuracy": "latents",
        "fid_classifier": "fid", "fid_inception": "fid", "generate_samples": "fid",
        "GMMSampler": "samplers", "draw_latents": "samplers", "decode_latents": "samplers",
    }
    if name in modules:
        return getattr(importlib.import_module(f".{modules[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Evaluation", "EvaluationConfig", "GMMSampler", "LogLikelihood", "LogMeanExp", "active_units", "class_histogram", "decode_latents", "draw_latents", "evaluate",
           "evaluate_elbo", "example_noise", "fid_classifier", "fid_inception", "generate_samples",
           "importance_log_likelihood", "posterior_summary", "predict", "probe_accuracy", "train_classifier"]
