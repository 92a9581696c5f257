"""Experiments: sweeps over configs and their result tables."""

from .sweep import RunSpec, Sweep, load_sweep, run_name, run_sweep, summarize_sweep

__all__ = ["RunSpec", "Sweep", "load_sweep", "run_name", "run_sweep", "summarize_sweep"]
