"""Figures of a study's claims that no single run has: a metric per setting beside a report's
own numbers (for example our FIDs next to the report's Table 1)."""

from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure

from .figures import styled


def plot_reference_bars(settings: Sequence[str], means: Sequence[float], stds: Sequence[float],
                        reference: Sequence[float | None], ours_label: str, reference_label: str,
                        title: str) -> Figure:
    """Two bar panels with the settings in the same order (one row each): our metric (mean with a
    ±1 sample-std error bar over seeds) and the report's number for the same setting (a gap
    where the report has none). The panels have their own axes, because the two numbers are
    usually measured differently (here: classifier-feature FID vs the report's Inception FID),
    so only their orders are comparable.

    Raises:
        ValueError: the sequences differ in length.
    """
    n = len(settings)
    if not (len(means) == len(stds) == len(reference) == n):
        raise ValueError("settings, means, stds and reference must have one entry per setting")
    rows = list(range(n))[::-1]
    with styled():
        fig = Figure(figsize=(11, 0.42 * n + 1.8), layout="constrained")
        ax_ours, ax_ref = fig.subplots(1, 2, sharey=True)
        ax_ours.barh(rows, means, xerr=stds, color="tab:blue", capsize=3)
        ax_ours.set_yticks(rows, list(settings), fontsize=9)
        ax_ours.set_xlabel(ours_label)
        known = [(r, v) for r, v in zip(rows, reference) if v is not None]
        ax_ref.barh([r for r, _ in known], [v for _, v in known], color="tab:gray")
        for r, v in zip(rows, reference):
            if v is None:
                ax_ref.text(0, r, "  not in the report", va="center", fontsize=8, color="0.4")
        ax_ref.set_xlabel(reference_label)
        for ax in (ax_ours, ax_ref):
            ax.grid(axis="y", visible=False)
        fig.suptitle(title)
    return fig


__all__ = ["plot_reference_bars"]
