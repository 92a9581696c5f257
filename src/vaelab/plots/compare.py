"""Comparing runs: curves of several runs on shared axes, labelled by the config values in
which they differ ("latent_dim=1 / 2 / 3", "beta=0.1 ... 4"), and a table of final metrics.

Used by ``vaelab compare RUN_DIR...`` and by the HTML report. Reads only the run directories
(``config.yaml``, ``metrics.csv``, ``summary.json``); no model or data is loaded.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import ConfigError, option
from ..io import atomic_write_text
from ..schema import flatten
from .figures import UNITS, save_figure, set_log_scale, styled
from .run import RunRecord, read_run

IGNORED_KEYS = ("name", "output_dir", "data.data_dir", "training.device", "training.progress",
                "training.eval_batch_size", "figures.")
"""Config keys (or prefixes, ending in '.') that do not change a run's results and are never
used to label runs."""

LOSS_TERMS = ("neg_elbo", "recon", "kl", "elbo")
SHORT_TITLES = {"neg_elbo": "negative ELBO (lower is better)", "recon": "reconstruction NLL",
                "kl": "KL(q(z|x) || p(z))", "elbo": "ELBO (higher is better)"}


def flat_config(record: RunRecord) -> dict[str, Any]:
    """The run's config as ``{"model.latent_dim": 2, "objective.beta": 1.0, ...}``."""
    return flatten(record.config.to_dict())


def _ignored(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in IGNORED_KEYS)


def differing_keys(records: Sequence[RunRecord]) -> list[str]:
    """Config keys whose values differ between ``records`` (ignoring :data:`IGNORED_KEYS`),
    in config order."""
    flats = [flat_config(r) for r in records]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    return [k for k in keys if not _ignored(k) and len({repr(flat.get(k)) for flat in flats}) > 1]


def resolve_key(key: str, records: Sequence[RunRecord]) -> str:
    """A dotted config key from ``key`` given in full (``objective.beta``) or by its last part
    (``beta``).

    Raises:
        ConfigError: unknown or ambiguous key (with the closest valid names).
    """
    known = list(flat_config(records[0]))
    if key in known:
        return key
    matches = [k for k in known if k.rsplit(".", 1)[-1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"{option('label')} {key} is ambiguous: use one of {', '.join(matches)}")
    close = difflib.get_close_matches(key, known + [k.rsplit(".", 1)[-1] for k in known], n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"{option('label')} {key}: no such config key{hint}; keys look like model.latent_dim or beta")


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "-".join(str(v) for v in value)
    return str(value)


def _short(keys: Sequence[str]) -> dict[str, str]:
    leaves = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (leaf if leaves.count(leaf) == 1 else k) for k, leaf in zip(keys, leaves)}


def run_labels(records: Sequence[RunRecord], keys: Sequence[str] | None = None,
               distinct: bool = True) -> tuple[list[str], list[str]]:
    """A legend label per run and the dotted keys it was made of.

    ``keys`` (dotted or last part) default to :func:`differing_keys`; labels read like
    ``latent_dim=2, beta=0.1``. Runs that differ in nothing but their directory are labelled
    by directory name; two runs with the same label get their directory name appended, unless
    ``distinct`` is False (the seeds of one setting then share a label, and
    :func:`comparison_figure` draws them in one colour).
    """
    keys = [resolve_key(k, records) for k in keys] if keys else differing_keys(records)
    if not keys:
        return [r.name for r in records], []
    short = _short(keys)
    labels = []
    for record in records:
        flat = flat_config(record)
        labels.append(", ".join(f"{short[k]}={_format_value(flat.get(k))}" for k in keys))
    if distinct:
        repeated = {label for label in labels if labels.count(label) > 1}
        labels = [f"{label} ({record.name})" if label in repeated else label
                  for label, record in zip(labels, records)]
    return labels, keys


def sort_key(record: RunRecord, keys: Sequence[str]):
    """Order runs by their values of ``keys``: numerically when all are numbers, else as text."""
    flat = flat_config(record)
    values = [_numeric(flat.get(k)) for k in keys]
    if all(v is not None for v in values):  # numbers, or lists of numbers (widths 100 < 400 < 1000)
        return (0, tuple(values), "")
    return (1, (), " ".join(str(flat.get(k)) for k in keys))


def _numeric(value: Any):
    """A number as itself, a list of numbers as a tuple (compared element-wise), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                          for v in value):
        return tuple(value)
    return None


# --- metrics ----------------------------------------------------------------------------------


def metric_column(record: RunRecord, metric: str) -> str:
    """The ``metrics.csv`` column of ``metric`` for this run: ``test_neg_elbo`` as is,
    ``neg_elbo``/``recon``/``kl``/``elbo`` without a split mean the run's evaluation split.
    ``<split>_elbo`` is derived as minus ``<split>_neg_elbo``."""
    if metric in LOSS_TERMS:
        return f"{record.eval_name}_{metric}"
    return metric


def metric_values(record: RunRecord, metric: str) -> tuple[list[int], list[float]] | None:
    """Epochs and values of ``metric`` in ``record`` (None when the run does not have it)."""
    column = metric_column(record, metric)
    if not record.history:
        return [], []
    epochs = [int(row["epoch"]) for row in record.history]
    if column in record.history[0]:
        return epochs, [row[column] for row in record.history]
    if column.endswith("_elbo") and not column.endswith("_neg_elbo"):
        source = column[: -len("elbo")] + "neg_elbo"
        if source in record.history[0]:
            return epochs, [-row[source] for row in record.history]
    return None


def check_metrics(records: Sequence[RunRecord], metrics: Sequence[str]) -> None:
    """Raises ConfigError naming a metric that some run lacks, with the columns it has."""
    for metric in metrics:
        missing = [r for r in records if metric_values(r, metric) is None]
        if missing:
            columns = [c for c in (missing[0].history[0] if missing[0].history else {}) if c != "epoch"]
            derived = [c[: -len("neg_elbo")] + "elbo" for c in columns if c.endswith("_neg_elbo")]
            close = difflib.get_close_matches(metric, columns + derived, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"metric {metric!r} is not in {missing[0].run_dir}/metrics.csv{hint}; available: "
                f"{', '.join(columns + derived) or 'none (no epoch finished yet)'}"
            )


def _describe(metric: str, records: Sequence[RunRecord]) -> tuple[str, str]:
    """(panel title, y label) of ``metric``."""
    column = metric_column(records[0], metric) if metric in LOSS_TERMS else metric
    split, _, term = column.partition("_")
    if metric in LOSS_TERMS:
        splits = sorted({r.eval_name for r in records})
        split = "/".join(splits)
    if term in SHORT_TITLES:
        return f"{split} {SHORT_TITLES[term]}", UNITS
    if column.endswith("_seconds"):
        return column.replace("_", " "), "seconds"
    return column, column


# --- figure and table -----------------------------------------------------------------------


def _colours(records: Sequence[RunRecord], keys: Sequence[str]) -> list:
    import matplotlib

    flats = [flat_config(r) for r in records]
    if len(keys) == 1 and all(_numeric(f.get(keys[0])) is not None for f in flats) and len(records) > 2:
        cmap = matplotlib.colormaps["viridis"]
        return [cmap(0.9 * i / (len(records) - 1)) for i in range(len(records))]  # ordered by value
    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(len(records))]


def comparison_figure(records: Sequence[RunRecord], labels: Sequence[str], metrics: Sequence[str],
                      keys: Sequence[str] = (), log_scale: bool = False, title: str | None = None,
                      rows: Sequence[str] | None = None, legend_title: str | None = None) -> Figure:
    """One panel per metric, one curve per run, a shared legend of ``labels`` on the right.

    Runs with the same label (the seeds of one setting) share a colour and one legend entry.
    ``rows`` (one title per run) splits the runs into rows of panels, one row per distinct title
    in order of first appearance (e.g. one row per value of a grid's other key). The legend's
    title names ``keys`` (or is ``legend_title``).
    """
    styles = ["-", "--", "-.", ":"]
    groups = list(dict.fromkeys(labels))  # one colour and legend entry per distinct label
    group_colours = _colours([records[list(labels).index(g)] for g in groups], keys)
    colour = {g: (group_colours[i], styles[(i // 10) % 4]) for i, g in enumerate(groups)}
    rows = list(rows) if rows is not None else [""] * len(records)
    row_titles = list(dict.fromkeys(rows))
    short = _short(keys)
    longest = max((len(g) for g in groups), default=0)
    below = longest > 28  # long labels: the legend goes under the panels, not beside them
    with styled():
        n = len(metrics)
        height = 4.2 if len(row_titles) == 1 else 3.4 * len(row_titles) + 0.8
        if below:
            height += 0.3 * (len(groups) // (2 if longest <= 60 else 1) + 1) + 0.4
        fig = Figure(figsize=(max(4.6 * n, 8.0) + (0 if below else 2.2), height), layout="constrained")
        grid = fig.subplots(len(row_titles), n, squeeze=False)
        handles: dict[str, Any] = {}
        for r, (axes, row_title) in enumerate(zip(grid, row_titles)):
            for ax, metric in zip(axes, metrics):
                for record, label, row in zip(records, labels, rows):
                    if row != row_title:
                        continue
                    epochs, values = metric_values(record, metric)
                    (line,) = ax.plot(epochs, values, color=colour[label][0], linestyle=colour[label][1],
                                      marker="o", markersize=3 if len(epochs) <= 60 else 0)  # beyond: a smear
                    handles.setdefault(label, line)
                panel_title, ylabel = _describe(metric, records)
                ax.set_title(textwrap.fill(panel_title, 40) if r == 0 else "")
                ax.set_xlabel("epoch")
                ax.set_ylabel(f"{row_title}\n{ylabel}" if row_title and ax is axes[0] else ylabel)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                if log_scale:
                    set_log_scale(ax)
        if legend_title is None:  # one key: the title names it and the entries give its values
            legend_title = short[keys[0]] if len(keys) == 1 else None if keys else "run"
        shown = [g for g in groups if g in handles]
        entries = shown
        if len(keys) == 1:
            entries = [g.split("=", 1)[1] if g.startswith(f"{short[keys[0]]}=") else g for g in shown]
        entries = [textwrap.fill(e, 90 if below else 40) for e in entries]
        fig.legend([handles[g] for g in shown], entries, loc="outside lower center" if below else "outside right upper",
                   title=legend_title, frameon=False, ncols=2 if below and longest <= 60 else 1)
        varied = f" differing in {', '.join(short[k] for k in keys)}" if keys else ""
        datasets = sorted({r.config.data.dataset for r in records})
        warning = "; different datasets: their losses are not comparable" if len(datasets) > 1 else ""
        fig.suptitle(title or textwrap.fill(f"{len(records)} runs{varied} ({', '.join(datasets)}){warning}",
                                            int(14 * fig.get_figwidth())))
    return fig


def final_metrics_table(records: Sequence[RunRecord], labels: Sequence[str],
                        extra_metrics: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per run: its label and directory, epochs, evaluation split, final and best
    evaluation negative ELBO (nats per example), final recon and KL, final train negative ELBO,
    seconds per epoch, and the final value of each of ``extra_metrics``."""
    rows = []
    for record, label in zip(records, labels):
        final = record.history[-1] if record.history else {}
        best = record.best_row or {}
        split = record.eval_name
        seconds = [r["train_seconds"] for r in record.history if "train_seconds" in r]
        row = {
            "label": label, "run": record.name, "epochs": final.get("epoch", 0),
            "finished": "yes" if record.finished else "no", "split": split,
            "final -ELBO": final.get(f"{split}_neg_elbo"), "final recon": final.get(f"{split}_recon"),
            "final KL": final.get(f"{split}_kl"), "best -ELBO": best.get(f"{split}_neg_elbo"),
            "best epoch": best.get("epoch"), "final train -ELBO": final.get("train_neg_elbo"),
            "s/epoch": sum(seconds) / len(seconds) if seconds else None,
        }
        for metric in extra_metrics:
            values = metric_values(record, metric)
            row[f"final {metric}"] = values[1][-1] if values and values[1] else None
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}" if abs(value) < 1e5 else f"{value:.4g}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    """Rows as an aligned plain-text table (or a Markdown table)."""
    if not rows:
        return ""
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines) + "\n"
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [all(_is_number(r[i]) for r in cells) for i in range(len(columns))]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)]) + "\n"


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return text == "-"


def table_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


@dataclass
class Comparison:
    """The result of :func:`compare_runs`."""

    records: list[RunRecord]
    labels: list[str]
    keys: list[str]
    metrics: list[str]
    table: list[dict[str, Any]]
    files: list[Path] = field(default_factory=list)

    @property
    def text(self) -> str:
        return format_table(self.table)

    @property
    def notes(self) -> list[str]:
        """Warnings about what is compared: runs on different datasets, or of different
        likelihoods (whose NLLs are densities of different families)."""
        notes = []
        datasets = sorted({r.config.data.dataset for r in self.records})
        if len(datasets) > 1:
            notes.append(f"these runs use different datasets ({', '.join(datasets)}): their losses are not comparable")
        likelihoods = sorted({r.config.model.likelihood for r in self.records})
        if len(likelihoods) > 1:
            notes.append(f"these runs use different likelihoods ({', '.join(likelihoods)}): their NLLs are densities "
                         "of different families, not comparable numbers")
        return notes


def load_comparison(run_dirs: Sequence[str | Path], metrics: Sequence[str] | None = None,
                    label_keys: Sequence[str] | None = None) -> Comparison:
    """Read ``run_dirs`` and work out labels (sorted by the labelling values when they are
    numbers), metrics (default: the evaluation split's negative ELBO, reconstruction NLL and
    KL) and the final-metrics table, without drawing.

    Raises:
        CheckpointError: a run directory is missing or damaged.
        ConfigError: an unknown metric or label key.
    """
    if not run_dirs:
        raise ConfigError("give at least one run directory to compare")
    records = [read_run(d) for d in run_dirs]
    labels, keys = run_labels(records, label_keys)
    if keys:
        order = sorted(range(len(records)), key=lambda i: sort_key(records[i], keys))
        records, labels = [records[i] for i in order], [labels[i] for i in order]
    metrics = list(metrics) if metrics else ["neg_elbo", "recon", "kl"]
    check_metrics(records, metrics)
    extra = [m for m in metrics if m not in ("neg_elbo", "recon", "kl")]
    return Comparison(records, labels, keys, metrics, final_metrics_table(records, labels, extra))


def compare_runs(run_dirs: Sequence[str | Path], metrics: Sequence[str] | None = None,
                 label_keys: Sequence[str] | None = None, output_dir: str | Path = "comparison",
                 log_scale: bool = False) -> Comparison:
    """Overlay the curves of ``run_dirs`` and tabulate their final metrics.

    Writes ``comparison.png`` (one panel per metric), ``final_metrics.csv`` and
    ``final_metrics.md`` into ``output_dir`` and returns the :class:`Comparison` (its
    ``text`` is the table as printed by ``vaelab compare``).

    Args:
        run_dirs: run directories written by ``vaelab train``.
        metrics: ``metrics.csv`` columns (``test_neg_elbo``, ``train_kl``, ...), a term without a
            split (``neg_elbo``, ``recon``, ``kl``: the evaluation split) or ``<split>_elbo``
            (minus the negative ELBO).
        label_keys: config keys to label runs by (default: every key whose value differs).
        output_dir: where to write the files.
        log_scale: logarithmic y axes.
    """
    comparison = load_comparison(run_dirs, metrics, label_keys)
    out = Path(output_dir)
    fig = comparison_figure(comparison.records, comparison.labels, comparison.metrics, comparison.keys, log_scale)
    comparison.files = [
        save_figure(fig, out / "comparison.png"),
        atomic_write_text(out / "final_metrics.csv", table_csv(comparison.table)),
        atomic_write_text(out / "final_metrics.md", format_table(comparison.table, markdown=True)),
    ]
    return comparison
