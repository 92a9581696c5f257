"""Write docs/studies.md: for each study under configs/studies/, each claim its sweep files
record, the numbers our runs produced (mean ± std over seeds) and a verdict.

Every number comes from the sweep directories (each run's summary.json, metrics.csv,
config.yaml, evaluation.json when present, and its last checkpoint for the probes); nothing
here is typed by hand. Claims whose files are missing are reported as pending, so the page can
be regenerated as the sweeps and `vaelab evaluate` fill in.

    # run the sweeps first, e.g.
    vaelab sweep configs/studies/04-toy2d/latent-2d.yaml --budget quick --jobs 2 --output-dir runs/studies
    VAELAB_DATA_DIR=../shared/data python docs/make_studies.py --runs-root runs/studies
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import shutil
import sys
from pathlib import Path

import yaml

from vaelab.experiments.claims import (FAILS, HOLDS, INCONCLUSIVE, NOT_RUN, ClaimResult, collect_runs, format_pair,
                                       evaluate_claim)

REPO = Path(__file__).resolve().parents[1]
TABLE_COLUMNS = ("test_neg_elbo", "test_recon", "test_kl", "train_kl")


def study_title(study_dir: Path, docs_dir: Path) -> tuple[str, Path | None]:
    """The study's title: the first heading of docs/studies/<study>.md, else the folder name."""
    page = docs_dir / f"{study_dir.name}.md"
    if page.is_file():
        for line in page.read_text().splitlines():
            if line.startswith("# "):
                return line[2:].strip(), page
    return study_dir.name, None


def sweeps_in_order(study_dir: Path) -> list[tuple[Path, dict]]:
    """The study's sweep files in the order of their claims' ids (the report's order); sweeps
    without claims last, by name."""
    def claim_key(spec: dict) -> tuple:
        ids = [str(c.get("id", "")) for c in spec.get("claims") or []]
        if not ids:
            return (1, ())
        return (0, tuple(int(n) if n.isdigit() else n for n in re.findall(r"\d+|[a-z]+", ids[0])))

    specs = [(path, yaml.safe_load(path.read_text())) for path in sorted(study_dir.glob("*.yaml"))]
    return sorted(specs, key=lambda item: (claim_key(item[1]), item[0].name))


def results_table(sweep_dir: Path) -> list[str]:
    """The sweep's results.csv as a compact Markdown table (mean ± std over seeds)."""
    path = sweep_dir / "results.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    lines = ["| setting | seeds | " + " | ".join(TABLE_COLUMNS) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in TABLE_COLUMNS) + " |"]
    for row in rows:
        cells = []
        for column in TABLE_COLUMNS:
            mean, std = float(row[f"{column}_mean"]), float(row[f"{column}_std"])
            cells.append("–" if math.isnan(mean) else format_pair(mean, std))
        lines.append(f"| `{row['setting']}` | {row['seeds']} | " + " | ".join(cells) + " |")
    return lines


def claim_block(result: ClaimResult, figures_out: Path, out_dir: Path, sweep_name: str) -> list[str]:
    lines = [f"**{result.id}** {result.claim}", "",
             f"- verdict: **{result.verdict}** — {result.reason}"]
    if result.rows:
        metric = result.metric or "value"
        header = f"{metric}: runs" if metric.startswith("curve:") else f"{metric} (mean ± std over seeds)"
        lines += ["", f"| setting | {header} |", "| --- | ---: |"]
        for row in result.rows:
            if metric.startswith("curve:"):
                cell = f"{int(sum(row.values))} of {row.n} runs fall then rise"
            else:
                cell = row.text()
            lines.append(f"| `{row.setting}` | {cell} |")
    if result.figures:
        target = figures_out / sweep_name
        target.mkdir(parents=True, exist_ok=True)
        links = []
        for setting, path in result.figures:
            copy = target / f"{setting}-{path.name}"
            shutil.copyfile(path, copy)
            links.append(f"![{setting}]({copy.relative_to(out_dir).as_posix()})")
        lines += ["", "Figures (first seed of each setting): " + " ".join(f"`{s}`" for s, _ in result.figures), "",
                  " ".join(links)]
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-root", default="runs/studies", help="parent of the sweep directories")
    parser.add_argument("--configs", default=str(REPO / "configs" / "studies"))
    parser.add_argument("--out", default=str(REPO / "docs" / "studies.md"))
    parser.add_argument("--pages", default=None, help="the per-study pages (default: studies/ beside --out)")
    args = parser.parse_args(argv)
    configs, out = Path(args.configs), Path(args.out)
    runs_root = Path(args.runs_root)
    docs_dir = Path(args.pages) if args.pages else out.parent / "studies"
    figures_out = out.parent / "studies" / "figures"
    if figures_out.exists():
        shutil.rmtree(figures_out)

    body: list[str] = []
    overview = ["| study | claim | verdict |", "| --- | --- | --- |"]
    counts: dict[str, int] = {}
    for study_dir in sorted(p for p in configs.iterdir() if p.is_dir()):
        title, page = study_title(study_dir, docs_dir)
        body += [f"## {title}", ""]
        if page is not None:
            link = os.path.relpath(page, out.parent).replace(os.sep, "/")
            body += [f"What the report did, what our configs do and every choice we made: [{link}]({link}).", ""]
        for sweep_file, spec in sweeps_in_order(study_dir):
            name = spec["name"]
            sweep_dir = runs_root / name
            records = collect_runs(sweep_dir)
            meta_path = sweep_dir / "sweep.yaml"
            meta = yaml.safe_load(meta_path.read_text()) if meta_path.is_file() else {}
            budget = meta.get("budget", "quick")
            n_planned = len(meta.get("resolved_runs", []))
            rel = sweep_file.relative_to(REPO) if sweep_file.is_relative_to(REPO) else sweep_file
            seconds = sum(r.summary.get("seconds_per_epoch", 0) * r.summary.get("epochs", 0) for r in records)
            body += [f"### `{rel.name}` — sweep `{name}`", "", str(spec.get("description", "")).strip(), ""]
            if meta:
                body.append(f"Our run: **{budget}** budget, {len(records)} of {n_planned} runs finished, seeds "
                            f"{spec.get('seeds')}, {seconds / 60:.1f} min of training summed over runs.")
            else:
                body.append("Not run yet.")
            body += ["", f"Reproduce: `vaelab sweep {rel.as_posix()} --budget {budget} --jobs 2 "
                     f"--output-dir {args.runs_root}` then `python docs/make_studies.py --runs-root {args.runs_root}`.",
                     ""]
            evaluated = [r.evaluation for r in records if r.evaluation]
            if evaluated:
                e = evaluated[0]
                fid = (e.get("samples") or {}).get("n")
                options = f"--checkpoint {e.get('checkpoint')} --k {e.get('k')} --examples {e.get('examples')}"
                options += " --no-probe" if e.get("probe") is None else ""
                options += f" --fid classifier --fid-samples {fid}" if fid else " --fid none"
                body += [f"`evaluation.json` in {len(evaluated)} of {len(records)} runs, written by "
                         f"`vaelab evaluate RUN_DIR {options}` (vaelab {e.get('vaelab', '?')}).", ""]
            elif any(str(c.get("metric", "")).startswith("eval:") for c in spec.get("claims") or []):
                body += ["Its FID claims need `vaelab evaluate RUN_DIR` in every run first.", ""]
            table = results_table(sweep_dir)
            if table:
                body += ["Final-epoch metrics (nats per example, mean ± std over seeds):", "", *table, ""]
            curves = sorted((sweep_dir / "figures").glob("compare_*.png"))
            if curves:
                target = figures_out / name
                target.mkdir(parents=True, exist_ok=True)
                links = []
                for path in curves:
                    shutil.copyfile(path, target / path.name)
                    rel_fig = os.path.relpath(target / path.name, out.parent).replace(os.sep, "/")
                    links.append(f"![{name} {path.stem}]({rel_fig})")
                body += ["Per-epoch test curves of every run (`vaelab sweep-summary`, one colour per value of the "
                         "swept key):", "", *links, ""]
            for claim in spec.get("claims") or []:
                pooled = records + [r for other in claim.get("sweeps") or []
                                    for r in collect_runs(runs_root / other, prefix=f"{other}/")]
                result = evaluate_claim(claim, pooled)
                if not meta and result.verdict != NOT_RUN and not result.verdict.startswith("pending"):
                    result.verdict = NOT_RUN
                body += claim_block(result, figures_out, out.parent, name)
                short = result.verdict.split(":")[0]
                counts[short] = counts.get(short, 0) + 1
                overview.append(f"| {title.split(':')[0]} | {result.id} {result.claim} | {result.verdict} |")
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    head = [
        "# The five studies: claims, numbers and verdicts",
        "",
        "Generated by `docs/make_studies.py` from the sweep directories under "
        f"`{args.runs_root}`; do not edit by hand. Numbers are final-epoch values in nats per example "
        "(mean ± sample std over seeds) unless the metric says otherwise; `probe:` metrics are computed "
        "from each run's last checkpoint (see `vaelab.experiments.probes`), `eval:` metrics come from "
        "`vaelab evaluate` (evaluation.json).",
        "",
        f"Verdicts: **{HOLDS}**, **{FAILS}** or **{INCONCLUSIVE}**. Two settings count as different when "
        "their means differ by more than the sum of their seeds' standard deviations (and each has at "
        "least two seeds); a trend holds when it goes the claimed way end to end beyond that spread with "
        "no step going the other way beyond it. A `quick` budget checks trends, not the reports' "
        "converged numbers.",
        "",
        f"Overall: {summary}.",
        "",
        *overview,
        "",
    ]
    out.write_text("\n".join(head + body).rstrip() + "\n")
    print(f"wrote {out} ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
