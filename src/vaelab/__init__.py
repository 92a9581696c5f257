"""vaelab: train, evaluate and study variational autoencoders.

The package follows the flow of a study::

    data -> models (encoder, decoder, prior, likelihood) -> objectives -> training
         -> evaluation -> plots -> cli

Typical use from Python::

    import vaelab
    run = vaelab.train({"data": {"dataset": "mnist"}, "model": {"latent_dim": 2}})
    model = run.load_model()
"""

__version__ = "0.1.0"

_LAZY = {
    "Config": "config", "load_config": "config",
    "train": "api", "resume": "api", "Callback": "api", "load_model": "training", "Run": "training",
    "register_network": "models", "decoder_channels": "models", "EncoderOutput": "models",
    "VaelabError": "errors", "ConfigError": "errors", "DataError": "errors",
    "CheckpointError": "errors", "TrainingError": "errors",
    "run_sweep": "experiments", "load_sweep": "experiments", "summarize_sweep": "experiments",
    "plot_run": "plots", "compare_runs": "plots", "write_report": "plots",
    "evaluate": "evaluation", "EvaluationConfig": "evaluation", "train_classifier": "evaluation",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):  # imported on first use, so `vaelab --help` does not wait for torch
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vaelab' has no attribute {name!r}")


def __dir__():  # the lazily loaded names too, for dir(vaelab) and tab completion
    return sorted(set(globals()) | set(__all__))
