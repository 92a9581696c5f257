"""The HTML report: one self-contained file for one or more runs.

``vaelab report RUN_DIR... -o report.html`` writes a single HTML file that needs nothing else:
figures are embedded as base64 PNG ``data:`` URIs, styles are inline, there is no script and
no reference to the network. It holds, for several runs, the comparison figure and the table
of final metrics; then for each run its status, metrics (final, best, per epoch, and
``evaluation.json`` when present), every figure and its config.

Figures are taken from each run's ``figures/`` directory; kinds missing there are drawn first
(with :func:`vaelab.plots.plot_run`, which needs the run's checkpoint and dataset), and
``redraw=True`` draws them all again.
"""

from __future__ import annotations

import base64
import html
import json
import struct
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..errors import VaelabError
from ..io import atomic_write_text
from ..rundir import read_json
from ..schema import flatten
from .compare import (comparison_figure, differing_keys, flat_config, format_table, load_comparison,
                      metric_values)
from .figures import figure_png
from .run import KINDS, RunRecord, plot_run

CAPTIONS = {
    "loss_curves": "Loss per epoch, train and evaluation split: negative ELBO, reconstruction NLL and KL "
                   "in nats per example; the dotted line marks the best epoch.",
    "reconstructions": "Fixed test images (the first of each class, then the second) above their "
                       "reconstructions: decoder means at the posterior mean.",
    "samples": "Decoder means of latents drawn from the prior (seeded by the run's seed).",
    "latent_manifold": "Decoder means over an evenly spaced grid of the latent space.",
    "latent_scatter": "Posterior means of the test set coloured by label (PCA projection for more than "
                      "3 latent dimensions).",
    "singular_values": "Singular values of the centred matrix of test posterior means and the cumulative "
                       "share of variance they explain.",
    "interpolations": "Decoder means along paths between the posterior means of pairs of test images.",
    "toy2d": "Toy 2-D data: inputs, latent codes and reconstructions coloured by quadrant.",
}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0; color: #1d1d1f; background: #fafafa; line-height: 1.45; }
main { max-width: 1280px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.8rem; margin: 0.2rem 0; }
h2 { font-size: 1.4rem; border-bottom: 2px solid #d0d7de; padding-bottom: 0.25rem; margin-top: 2.5rem; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
p.meta, .note { color: #57606a; }
.warning { background: #fff8c5; border: 1px solid #d4a72c; padding: 0.5rem 0.8rem; border-radius: 6px; }
nav ul { padding-left: 1.2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; background: #fff; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f3f6; }
tr:nth-child(even) td { background: #f8fafc; }
tr.differs td { font-weight: 600; background: #fff5e6; }
figure { margin: 1rem 0 2rem; background: #fff; border: 1px solid #d0d7de; border-radius: 6px;
         padding: 0.75rem; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { color: #57606a; font-size: 0.9rem; margin-top: 0.5rem; }
pre { background: #f6f8fa; padding: 0.75rem; overflow-x: auto; font-size: 0.85rem; }
details { margin: 0.5rem 0 1rem; }
summary { cursor: pointer; color: #0969da; }
"""


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk.

    Raises:
        ValueError: ``data`` is not a PNG.
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return struct.unpack(">II", data[16:24])


def embed_png(data: bytes, alt: str) -> str:
    """An ``<img>`` element holding ``data`` as a base64 ``data:`` URI, with its pixel size."""
    width, height = png_size(data)
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}" '
            f'width="{width}" height="{height}" loading="eager">')


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def html_table(rows: Sequence[dict[str, Any]], highlight: Sequence[bool] | None = None) -> str:
    """Rows of equal keys as an HTML table; numbers right-aligned with 3 decimals."""
    if not rows:
        return "<p class='note'>no rows</p>"
    columns = list(rows[0])
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns) + "</tr>"]
    for i, row in enumerate(rows):
        cls = ' class="differs"' if highlight and highlight[i] else ""
        cells = []
        for c in columns:
            value = row.get(c)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            cells.append(f"<td{' class=num' if numeric else ''}>{_num(value)}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _anchor(record: RunRecord, index: int) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in record.name)
    return f"run-{index}-{safe}"


def _ensure_figures(record: RunRecord, redraw: bool, data_dir: str | None) -> str | None:
    """Draw the run's missing figures (all with ``redraw``); the problem as text if drawing fails."""
    try:
        plot_run(record.run_dir, data_dir=data_dir, only_missing=not redraw)
    except VaelabError as exc:
        return f"some figures could not be drawn: {exc}"
    return None


def _figures_html(record: RunRecord) -> str:
    figures = record.files.figures
    paths = sorted(figures.glob("*.png")) if figures.is_dir() else []
    order = {kind: i for i, kind in enumerate(KINDS)}
    paths.sort(key=lambda p: (order.get(p.stem, len(order)), p.name))
    if not paths:
        return "<p class='note'>no figures</p>"
    out = []
    for path in paths:
        data = path.read_bytes()
        try:
            image = embed_png(data, f"{record.name}: {path.stem}")
        except ValueError:
            out.append(f"<p class='warning'>{html.escape(path.name)} is not a PNG file; skipped</p>")
            continue
        caption = CAPTIONS.get(path.stem, "")
        if path.stem == "singular_values":
            caption += _spectrum_note(figures / "latent_spectrum.json")
        out.append(f"<figure id='{html.escape(_anchor_fig(record, path.stem))}'>{image}<figcaption>"
                   f"<b>{html.escape(path.stem.replace('_', ' '))}</b> ({html.escape(path.name)}). "
                   f"{html.escape(caption)}</figcaption></figure>")
    return "\n".join(out)


def _anchor_fig(record: RunRecord, stem: str) -> str:
    return f"{record.name}-{stem}"


def _spectrum_note(path: Path) -> str:
    try:
        values = read_json(path) or {}
        needed = ", ".join(f"{k}: {v}" for k, v in values["dims_needed"].items())
        return f" Dimensions needed ({values['latent_dim']} in all): {needed}."
    except (VaelabError, KeyError, TypeError, AttributeError):  # damaged or missing: no note
        return ""


def _run_summary_rows(record: RunRecord) -> list[dict[str, Any]]:
    split = record.eval_name
    final = record.history[-1] if record.history else {}
    best = record.best_row or {}
    rows = []
    for term, name in (("neg_elbo", "negative ELBO"), ("recon", "reconstruction NLL"), ("kl", "KL")):
        rows.append({"term (nats per example)": name,
                     f"final {split}": final.get(f"{split}_{term}"),
                     f"best {split} (epoch {best.get('epoch', '-')})": best.get(f"{split}_{term}"),
                     "final train": final.get(f"train_{term}")})
    return rows


def _flatten(values: dict[str, Any]) -> dict[str, Any]:
    """Nested JSON values as ``{"a.b": value}`` (lists shown as text)."""
    return {k: v if isinstance(v, (int, float, str, type(None))) else json.dumps(v) for k, v in flatten(values).items()}


def _run_section(record: RunRecord, index: int, differing: set[str], note: str | None) -> str:
    config = record.config
    status = "finished" if record.finished else "still training (no summary.json yet)"
    env = record.environment or {}
    seconds = record.summary.get("seconds_per_epoch") if record.summary else None
    meta = [f"directory <code>{html.escape(str(record.run_dir))}</code>",
            f"dataset <b>{html.escape(config.data.dataset)}</b>",
            f"latent dimensions <b>{config.model.latent_dim}</b>",
            f"{len(record.history)} epoch(s), {status}"]
    if seconds:
        meta.append(f"{seconds:.2f} s per training epoch")
    if env.get("device"):
        meta.append(f"device {html.escape(str(env['device']))}, torch {html.escape(str(env.get('torch', '?')))}")
    parts = [f"<section id='{_anchor(record, index)}'>", f"<h2>{html.escape(record.name)}</h2>",
             f"<p class='meta'>{' · '.join(meta)}</p>"]
    if note:
        parts.append(f"<p class='warning'>{html.escape(note)}</p>")
    parts.append("<h3>Metrics</h3>")
    if record.history:
        parts.append(html_table(_run_summary_rows(record)))
        parts.append(f"<details><summary>metrics per epoch ({len(record.history)} rows of metrics.csv)"
                     f"</summary>{html_table(record.history)}</details>")
    else:
        parts.append("<p class='note'>no epoch finished yet</p>")
    if record.evaluation:
        rows = [{"metric (evaluation.json)": k, "value": v} for k, v in _flatten(record.evaluation).items()]
        parts.append("<h3>Evaluation</h3>" + html_table(rows))
    parts.append("<h3>Figures</h3>")
    parts.append(_figures_html(record))
    parts.append("<h3>Config</h3>")
    flat = flat_config(record)
    rows = [{"key": k, "value": v if not isinstance(v, list) else str(v)} for k, v in flat.items()]
    parts.append(("<p class='note'>highlighted: keys whose values differ between the runs of this report</p>"
                  if differing else ""))
    parts.append(html_table(rows, [k in differing for k in flat]))
    parts.append(f"<details><summary>config.yaml</summary><pre>{html.escape(config.to_yaml())}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def render_report(run_dirs: Sequence[str | Path], redraw: bool = False, data_dir: str | None = None,
                  title: str | None = None, label_keys: Sequence[str] | None = None,
                  metrics: Sequence[str] | None = None) -> str:
    """The report's HTML text (see :func:`write_report`)."""
    comparison = load_comparison(run_dirs, metrics, label_keys)  # reads and checks every run first
    notes = {id(r): _ensure_figures(r, redraw, data_dir) for r in comparison.records}
    records = comparison.records
    differing = set(differing_keys(records)) if len(records) > 1 else set()
    title = title or ("vaelab report: " + (records[0].name if len(records) == 1 else f"{len(records)} runs"))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class='meta'>generated {now} by vaelab {__version__} from {len(records)} run "
            f"director{'y' if len(records) == 1 else 'ies'}; losses in nats per example (lower is better)</p>"]
    toc = [f"<li><a href='#{_anchor(r, i)}'>{html.escape(r.name)}</a> — {html.escape(label)}</li>"
           for i, (r, label) in enumerate(zip(records, comparison.labels))]
    if len(records) > 1:
        toc.insert(0, "<li><a href='#comparison'>comparison</a></li>")
    body.append("<nav><ul>" + "".join(toc) + "</ul></nav>")
    if len(records) > 1:
        usable = [m for m in comparison.metrics if all(metric_values(r, m) for r in records)]
        body.append("<section id='comparison'><h2>Comparison</h2>")
        if comparison.keys:
            body.append("<p class='meta'>runs differ in: " + ", ".join(f"<code>{html.escape(k)}</code>"
                                                                       for k in comparison.keys) + "</p>")
        if usable and all(r.history for r in records):
            fig = comparison_figure(records, comparison.labels, usable, comparison.keys)
            body.append(f"<figure>{embed_png(figure_png(fig), 'comparison of the runs')}<figcaption>"
                        "Curves of every run, one panel per metric.</figcaption></figure>")
        body.append("<h3>Final metrics</h3>" + html_table(comparison.table))
        body.append(f"<details><summary>as text</summary><pre>{html.escape(format_table(comparison.table))}"
                    "</pre></details></section>")
    for i, record in enumerate(records):
        body.append(_run_section(record, i, differing, notes[id(record)]))
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


def write_report(run_dirs: Sequence[str | Path], output: str | Path = "report.html", redraw: bool = False,
                 data_dir: str | None = None, title: str | None = None,
                 label_keys: Sequence[str] | None = None, metrics: Sequence[str] | None = None) -> Path:
    """Write the self-contained HTML report of ``run_dirs`` to ``output`` and return its path.

    Args:
        run_dirs: one or more run directories.
        output: the HTML file to write (atomically).
        redraw: draw every figure again instead of using those in ``figures/``.
        data_dir: where to find datasets when figures must be drawn.
        title: the page title (default: names the runs).
        label_keys, metrics: as for :func:`vaelab.plots.compare.compare_runs`.

    Raises:
        CheckpointError: a run directory is missing or damaged.
        ConfigError: an unknown metric or label key.
    """
    text = render_report(run_dirs, redraw=redraw, data_dir=data_dir, title=title, label_keys=label_keys,
                         metrics=metrics)
    return atomic_write_text(output, text)
