"""The figures of a sweep (``figures/compare_<key>.png``): the ``vaelab compare`` curves of its
runs once per swept key, the seeds of a setting sharing a colour, one row per value of the
other keys and per likelihood. Which keys are swept is the sweep's to say
(:func:`vaelab.experiments.sweep.sweep_figures`)."""

from __future__ import annotations

from pathlib import Path


def draw_sweep_figures(records: list, factors: dict[str, tuple[list[str], list[str]]], name: str,
                       figures_dir: Path, metrics: tuple[str, ...]) -> list[Path]:
    """One comparison figure per factor: ``factors`` maps a factor's name (a swept key's leaf,
    ``variant``, ``setting`` or ``seed``) to (its label for each of ``records``, the config keys
    it stands for); returns the written ``figures_dir/compare_<factor>.png``."""
    from .compare import comparison_figure, sort_key
    from .figures import save_figure

    datasets = ", ".join(sorted({r.config.data.dataset for r in records}))
    paths = []
    named = {f: (keys[0] if keys else f) for f, (labels, keys) in factors.items()}  # objective.beta
    for factor, (labels, keys) in factors.items():
        order = sorted(range(len(records)), key=lambda i: sort_key(records[i], keys))  # stable: sweep order
        others = [f for f in factors if f != factor]
        rows = [", ".join(factors[f][0][i] for f in others) for i in order] if others else None
        likelihoods = [r.config.model.likelihood for r in records]
        if len(set(likelihoods)) > 1:  # NLLs of different likelihoods: one row (own axes) each
            rows = [f"likelihood={likelihoods[i]}" + (f", {rows[j]}" if rows else "") for j, i in enumerate(order)]
            others = others + ["likelihood"]
            named.setdefault("likelihood", "likelihood")
        notes = [f"one row per {', '.join(named[f] for f in others)}"] if others else []
        if factor != "seed":
            notes.append("the seeds of a setting share a colour")
        title = f"sweep {name} ({datasets}): {len(records)} runs by {named[factor]}"
        title += ("\n" + "; ".join(notes)) if notes else ""
        fig = comparison_figure([records[i] for i in order], [labels[i] for i in order], list(metrics), keys,
                                title=title, rows=rows, legend_title=named[factor])
        paths.append(save_figure(fig, figures_dir / f"compare_{factor}.png"))
    return paths
