"""Experiments: sweeps over configs, their result tables, and checks of a study's claims."""

from .claims import ClaimResult, RunRecord, collect_runs, evaluate_claim
from .sweep import RunSpec, Sweep, load_sweep, run_name, run_sweep, setting_of, summarize_sweep, sweep_figures

__all__ = ["ClaimResult", "RunRecord", "RunSpec", "Sweep", "collect_runs", "evaluate_claim", "load_sweep",
           "run_name", "run_sweep", "setting_of", "summarize_sweep", "sweep_figures"]
