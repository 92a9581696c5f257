"""Check a study's claims against the runs of its sweeps: numbers from files, a verdict per claim.

A claim is a mapping in a sweep file's ``claims:`` list (the sweep loader accepts the key and
ignores it)::

    - id: "1.1"
      claim: "Higher latent size gives lower test loss"   # the report's words
      kind: trend                 # trend | compare | best | similar | value | curve | figure
      metric: test_recon          # see below
      along: model.latent_dim     # trend: order the settings by this config key
      where: {training.weight_decay: 0}   # only settings whose config has these values
      expect: decreasing

Kinds and their keys:

- ``trend``: ``along``, ``expect: increasing|decreasing``. The metric moves that way from each
  setting to the next.
- ``compare``: ``first: {where}``, ``second: {where}``, ``expect: lower|higher`` (first vs
  second).
- ``best``: ``expect: {key: value or [values]}`` names the setting(s) that should be best;
  ``goal: min`` (default) or ``max``.
- ``similar``: ``first``, ``second``, ``tolerance`` (relative, default 0.01): holds when the two
  means differ by less than the tolerance, does not hold when they differ by more than both the
  tolerance and the seeds' spread, inconclusive in between.
- ``value``: ``expect: {above: x}``, ``{below: x}`` or ``{between: [a, b]}`` for each matching
  setting.
- ``curve``: ``metric: curve:<metrics.csv column>``, ``expect: falls_then_rises``: in each run
  the column's minimum lies strictly inside the run and the last epoch is above it by more than
  ``tolerance`` (relative, default 0.01) of the minimum. Holds when most runs do so.
- ``figure``: no numeric test; ``figure`` (a file under each run's ``figures/``, or a list: the
  first one present is shown) and ``needs`` (what would settle it). The verdict is "pending"
  until somebody has looked: ``checked: {verdict: holds | does not hold | inconclusive, by:
  who and when, reason: what the figures show}`` records that judgement, which the page then
  prints as a figure check beside the figures (the figures are drawn from the runs either way).

Any claim may list ``sweeps: [other-sweep, ...]``: the finished runs of those sweeps (same
study) join this sweep's, their settings named ``other-sweep/<setting>``.

Metrics (per run, then mean ± sample std over seeds per setting):

- ``test_recon``, ``test_kl``, ``test_neg_elbo``, ``train_recon``, ``train_kl``,
  ``train_neg_elbo``: the final epoch's values from ``summary.json`` (nats per example; train =
  averaged over the last training epoch).
- ``test_objective``: ``test_recon + beta * test_kl``, the loss a beta-VAE minimises.
- ``eval:<key>``: a number from the run's ``evaluation.json`` (written by ``vaelab evaluate``);
  when that file is absent the verdict is "pending: needs `vaelab evaluate`".
- ``probe:<name>``: a statistic computed from the run's last checkpoint (see
  :mod:`vaelab.experiments.probes`).

Verdict rule: two settings are *separated* when their means differ by more than the sum of
their seeds' standard deviations, and each has at least two finished seeds. A claim holds when
the comparisons it makes go the claimed way and the decisive ones are separated; it does not
hold when a comparison goes the other way and is separated; otherwise it is inconclusive at
this budget.
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .sweep import setting_of

HOLDS = "holds"
FAILS = "does not hold"
INCONCLUSIVE = "inconclusive at this budget"
PENDING_EVALUATE = "pending: needs `vaelab evaluate`"
PENDING_FIGURE = "pending: needs a figure check"
NOT_RUN = "not run"

KINDS = ("trend", "compare", "best", "similar", "value", "curve", "figure")
FINAL_METRICS = {f"{split}_{term}": (key, term) for split, key in (("test", "final"), ("train", "final_train"))
                 for term in ("recon", "kl", "neg_elbo")}


class Pending(Exception):
    """A metric cannot be computed from the files present (e.g. no ``evaluation.json``)."""


@dataclass
class RunRecord:
    """One finished run of a sweep, as read from its directory."""

    name: str
    setting: str
    seed: int
    run_dir: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    evaluation: dict[str, Any] | None = None
    _history: list[dict[str, float]] | None = field(default=None, repr=False)

    def value(self, dotted: str) -> Any:
        """The resolved config's value at ``dotted`` (``"model.latent_dim"``)."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"config has no key {dotted!r}")
            node = node[part]
        return node

    @property
    def history(self) -> list[dict[str, float]]:
        """``metrics.csv`` as a list of rows of floats (read on first use)."""
        if self._history is None:
            with open(self.run_dir / "metrics.csv", newline="") as handle:
                self._history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
        return self._history


def collect_runs(sweep_dir: str | Path, prefix: str = "") -> list[RunRecord]:
    """The finished runs (those with ``summary.json`` and at least one epoch) of a sweep
    directory, in the order the sweep listed them; ``prefix`` is put before each setting name
    (to pool sweeps: ``"other-sweep/"``). Missing directory -> empty list."""
    sweep_dir = Path(sweep_dir)
    meta_path = sweep_dir / "sweep.yaml"
    if not meta_path.is_file():
        return []
    meta = yaml.safe_load(meta_path.read_text()) or {}
    records = []
    for name in meta.get("resolved_runs", []):
        run_dir = sweep_dir / "runs" / name
        summary_path = run_dir / "summary.json"
        if not summary_path.is_file():
            continue
        summary = json.loads(summary_path.read_text())
        if not summary.get("epochs"):
            continue
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        evaluation_path = run_dir / "evaluation.json"
        evaluation = json.loads(evaluation_path.read_text()) if evaluation_path.is_file() else None
        match = re.search(r"seed(\d+)$", name)
        seed = int(match.group(1)) if match else int(config.get("seed", 0))
        records.append(RunRecord(name, prefix + setting_of(name), seed, run_dir, config, summary, evaluation))
    return records


# --- metrics ----------------------------------------------------------------------------------


def run_metric(record: RunRecord, metric: str, probe: Callable[[RunRecord, str], float] | None = None) -> float:
    """One number for one run.

    Raises:
        Pending: ``eval:`` metric without ``evaluation.json``.
        KeyError: unknown metric, or a key absent from ``evaluation.json``.
    """
    if metric in FINAL_METRICS:
        key, term = FINAL_METRICS[metric]
        return float(record.summary[key][term])
    if metric == "test_objective":
        final = record.summary["final"]
        return float(final["recon"]) + float(record.value("objective.beta")) * float(final["kl"])
    if metric.startswith("eval:"):
        if record.evaluation is None:
            raise Pending(PENDING_EVALUATE)
        node: Any = record.evaluation
        for part in metric[len("eval:"):].split("."):
            node = node[part]
        return float(node)
    if metric.startswith("probe:"):
        if probe is None:
            from .probes import compute_probe as probe
        return float(probe(record, metric[len("probe:"):]))
    raise KeyError(f"unknown metric {metric!r}")


@dataclass
class SettingStats:
    """Mean ± sample std of a metric over one setting's seeds."""

    setting: str
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def text(self) -> str:
        return f"{format_pair(self.mean, self.std)} (n={self.n})"


def format_number(x: float, digits: int = 3) -> str:
    if math.isnan(x):
        return "nan"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 10 ** -(digits)):
        return f"{x:.{digits}g}"
    return f"{x:.{digits}f}" if abs(x) < 100 else f"{x:.{max(digits - 2, 1)}f}"


def format_pair(mean: float, std: float) -> str:
    """``mean ± std`` with as many decimals as show the std's first two significant digits
    (at least 3, at most 6): ``1.84100 ± 0.00011``, ``6.206 ± 0.025``."""
    if math.isnan(mean):
        return "nan"
    decimals = 3
    if std > 0 and math.isfinite(std):
        decimals = min(6, max(3, 1 - math.floor(math.log10(std))))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def separated(a: SettingStats, b: SettingStats) -> bool:
    """Both have >= 2 seeds and their means differ by more than the sum of their stds."""
    return a.n >= 2 and b.n >= 2 and abs(a.mean - b.mean) > a.std + b.std


# --- claims -----------------------------------------------------------------------------------


@dataclass
class ClaimResult:
    """A claim's verdict, a one-line reason, and the numbers behind it."""

    id: str
    claim: str
    verdict: str
    reason: str
    metric: str = ""
    rows: list[SettingStats] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (setting, figure path)


def matches(record: RunRecord, where: dict[str, Any] | None) -> bool:
    """Whether the run's config has every value of ``where`` (dotted key -> value; a list of
    values for a scalar key means any of them)."""
    for key, wanted in (where or {}).items():
        try:
            value = record.value(key)
        except KeyError:
            return False
        options = wanted if isinstance(wanted, list) and not isinstance(value, list) else [wanted]
        if not any(_equal(value, w) for w in options):
            return False
    return True


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def group_stats(records: list[RunRecord], metric: str, where: dict | None = None,
                probe: Callable | None = None) -> list[SettingStats]:
    """Per setting (in first-seen order) the metric's values over the matching runs.

    Raises:
        Pending: some matching run lacks the file the metric needs.
    """
    groups: dict[str, list[float]] = {}
    for record in records:
        if matches(record, where):
            groups.setdefault(record.setting, []).append(run_metric(record, metric, probe))
    return [SettingStats(s, v) for s, v in groups.items()]


def _sort_along(records: list[RunRecord], stats: list[SettingStats], along: str) -> list[SettingStats]:
    key = {r.setting: r.value(along) for r in records}
    return sorted(stats, key=lambda s: key[s.setting])


def evaluate_claim(claim: dict[str, Any], records: list[RunRecord], probe: Callable | None = None) -> ClaimResult:
    """The verdict of one claim on a sweep's finished runs (see the module docstring).

    Raises:
        ValueError: the claim is malformed (unknown kind, missing keys).
    """
    kind = claim.get("kind")
    if kind not in KINDS:
        raise ValueError(f"claim {claim.get('id')!r}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    result = ClaimResult(str(claim.get("id", "?")), str(claim.get("claim", "")), INCONCLUSIVE, "",
                         str(claim.get("metric", "")))
    if kind == "figure":
        return _figure(claim, records, result)
    if not records:
        result.verdict, result.reason = NOT_RUN, "no finished runs of this sweep were found"
        return result
    try:
        if kind == "curve":
            return _curve(claim, records, result)
        metric = claim["metric"]
        if kind in ("compare", "similar"):
            first = group_stats(records, metric, {**claim.get("where", {}), **claim["first"]}, probe)
            second = group_stats(records, metric, {**claim.get("where", {}), **claim["second"]}, probe)
            result.rows = first + second
            if len(first) != 1 or len(second) != 1:
                result.reason = (f"expected one setting on each side, found {len(first)} and {len(second)} "
                                 "(a run may have failed, or `first`/`second` match several settings)")
                return result
            return (_compare if kind == "compare" else _similar)(claim, first[0], second[0], result)
        stats = group_stats(records, metric, claim.get("where"), probe)
        result.rows = stats
        if not stats:
            result.reason = "no finished run matches the claim's settings"
            return result
        if kind == "trend":
            result.rows = stats = _sort_along(records, stats, claim["along"])
            return _trend(claim, stats, result)
        if kind == "best":
            return _best(claim, records, stats, result)
        return _value(claim, stats, result)
    except Pending as exc:
        result.verdict, result.reason = str(exc), "the files this metric needs are not in the run directories yet"
        return result
    except KeyError as exc:
        raise ValueError(f"claim {result.id}: missing or unknown key {exc}") from None


def _trend(claim, stats: list[SettingStats], result: ClaimResult) -> ClaimResult:
    sign = {"increasing": 1, "decreasing": -1}[claim["expect"]]
    if len(stats) < 2:
        result.reason = f"needs at least two settings, found {len(stats)}"
        return result
    steps = list(zip(stats[:-1], stats[1:]))
    agree = [sign * (b.mean - a.mean) > 0 for a, b in steps]
    against = [(a, b) for (a, b), ok in zip(steps, agree) if not ok and separated(a, b)]
    ends = stats[0], stats[-1]
    ends_ok = sign * (ends[1].mean - ends[0].mean) > 0
    n_sep = sum(ok and separated(a, b) for (a, b), ok in zip(steps, agree))
    word = claim["expect"]
    if against:
        a, b = against[0]
        result.verdict = FAILS
        result.reason = f"{b.setting} vs {a.setting} goes against the trend by more than the seeds' spread"
    elif ends_ok and separated(*ends):
        result.verdict = HOLDS
        result.reason = (f"{word} from {ends[0].setting} to {ends[1].setting} beyond the seeds' spread; "
                         f"{sum(agree)}/{len(steps)} steps go the claimed way ({n_sep} of them separated)")
    else:
        result.reason = (f"{sum(agree)}/{len(steps)} steps go the claimed way, but the end-to-end difference "
                         f"is within the seeds' spread" if ends_ok else
                         f"the last setting is not {word} relative to the first (within the seeds' spread)")
    return result


def _compare(claim, first: SettingStats, second: SettingStats, result: ClaimResult) -> ClaimResult:
    sign = {"lower": -1, "higher": 1}[claim["expect"]]
    goes = sign * (first.mean - second.mean) > 0
    if separated(first, second):
        result.verdict = HOLDS if goes else FAILS
    word = claim["expect"] if goes else {"lower": "higher", "higher": "lower"}[claim["expect"]]
    spread = "beyond" if separated(first, second) else "within"
    result.reason = f"{first.setting} is {word} than {second.setting} ({spread} the seeds' spread)"
    return result


def _similar(claim, first: SettingStats, second: SettingStats, result: ClaimResult) -> ClaimResult:
    tolerance = float(claim.get("tolerance", 0.01))
    diff = abs(first.mean - second.mean)
    scale = max(abs(first.mean), abs(second.mean))
    share = f"{format_number(diff)} ({format_number(100 * diff / scale, 2)}%)"
    if first.n < 2 or second.n < 2:
        result.reason = "needs at least two seeds per setting"
    elif diff <= tolerance * scale:
        result.verdict = HOLDS
        result.reason = f"the means differ by {share}, within {format_number(100 * tolerance, 2)}%"
    elif diff <= first.std + second.std:
        result.reason = (f"the means differ by {share}, more than {format_number(100 * tolerance, 2)}% but within "
                         "the seeds' spread")
    else:
        result.verdict = FAILS
        result.reason = (f"the means differ by {share}, more than {format_number(100 * tolerance, 2)}% and the "
                         "seeds' spread")
    return result


def _best(claim, records, stats: list[SettingStats], result: ClaimResult) -> ClaimResult:
    goal = claim.get("goal", "min")
    expected = {r.setting for r in records if matches(r, claim["expect"])}
    inside = [s for s in stats if s.setting in expected]
    outside = [s for s in stats if s.setting not in expected]
    pick = min if goal == "min" else max
    if not inside:
        result.reason = "none of the expected settings finished"
        return result
    best_in = pick(inside, key=lambda s: s.mean)
    if not outside:
        result.reason = "every finished setting is an expected one; nothing to compare with"
        return result
    best_out = pick(outside, key=lambda s: s.mean)
    better_in = (best_in.mean < best_out.mean) if goal == "min" else (best_in.mean > best_out.mean)
    if separated(best_in, best_out):
        result.verdict = HOLDS if better_in else FAILS
    winner, runner = (best_in, best_out) if better_in else (best_out, best_in)
    spread = "beyond" if separated(best_in, best_out) else "within"
    result.reason = (f"best is {winner.setting}, ahead of {runner.setting} ({spread} the seeds' spread)")
    return result


def _value(claim, stats: list[SettingStats], result: ClaimResult) -> ClaimResult:
    expect = claim["expect"]
    if "between" in expect:
        lo, hi = (float(v) for v in expect["between"])
    else:
        lo = float(expect.get("above", -math.inf))
        hi = float(expect.get("below", math.inf))
    verdicts = []
    for s in stats:
        if s.n < 2:
            verdicts.append(INCONCLUSIVE)
        elif lo < s.mean - s.std and s.mean + s.std < hi:
            verdicts.append(HOLDS)
        elif s.mean + s.std < lo or s.mean - s.std > hi:
            verdicts.append(FAILS)
        else:
            verdicts.append(INCONCLUSIVE)
    bounds = " and ".join(t for t in ([f"above {format_number(lo)}"] if lo > -math.inf else []) +
                          ([f"below {format_number(hi)}"] if hi < math.inf else []))
    if all(v == HOLDS for v in verdicts):
        result.verdict, result.reason = HOLDS, f"mean ± std {bounds} for every setting"
    elif any(v == FAILS for v in verdicts):
        result.verdict, result.reason = FAILS, f"mean ± std not {bounds} for some setting"
    else:
        result.reason = f"mean ± std straddles the bound ({bounds}), or fewer than two seeds"
    return result


def _curve(claim, records, result: ClaimResult) -> ClaimResult:
    metric = claim["metric"]
    if not metric.startswith("curve:") or claim.get("expect") != "falls_then_rises":
        raise ValueError(f"claim {result.id}: a curve claim needs metric curve:<column> and "
                         "expect: falls_then_rises")
    column = metric[len("curve:"):]
    tolerance = float(claim.get("tolerance", 0.01))
    shown: dict[str, list[float]] = {}
    epochs = []
    for record in records:
        if not matches(record, claim.get("where")):
            continue
        series = [row[column] for row in record.history]
        epochs.append(len(series))
        low = min(range(len(series)), key=series.__getitem__)
        rises = 0 < low < len(series) - 1 and series[-1] - series[low] > tolerance * abs(series[low])
        shown.setdefault(record.setting, []).append(1.0 if rises else 0.0)
    result.rows = [SettingStats(s, v) for s, v in shown.items()]
    n_runs = sum(len(v) for v in shown.values())
    n_yes = int(sum(sum(v) for v in shown.values()))
    if not n_runs:
        result.reason = "no finished run matches the claim's settings"
    elif min(epochs) < 3:
        result.reason = "runs need at least 3 epochs to show a fall and a rise"
    else:
        result.verdict = HOLDS if 2 * n_yes > n_runs else FAILS
        result.reason = (f"{n_yes} of {n_runs} runs have their {column} minimum inside the run and end "
                         f"more than {format_number(100 * tolerance, 2)}% above it")
    return result


FIGURE_CHECK_VERDICTS = {"holds": HOLDS, "does not hold": FAILS, "inconclusive": INCONCLUSIVE}


def _figure(claim, records, result: ClaimResult) -> ClaimResult:
    checked = claim.get("checked")
    if checked:
        verdict = FIGURE_CHECK_VERDICTS.get(str(checked.get("verdict", "")).strip())
        if verdict is None or not checked.get("reason") or not checked.get("by"):
            raise ValueError(f"claim {result.id}: checked needs verdict (one of "
                             f"{', '.join(FIGURE_CHECK_VERDICTS)}), by and reason; got {checked!r}")
        result.verdict = verdict
        result.reason = f"figure check by {checked['by']}, not a numeric test: {checked['reason']}"
    else:
        result.verdict = PENDING_FIGURE
        result.reason = f"no numeric test; needs {claim.get('needs', 'a figure')}"
    names = claim.get("figure") or []
    names = [names] if isinstance(names, str) else list(names)
    seen = set()
    chosen = [r for r in records if matches(r, claim.get("where"))]
    if claim.get("along"):
        chosen.sort(key=lambda r: (r.value(claim["along"]), r.seed))
    for record in chosen:
        paths = [record.run_dir / "figures" / name for name in names]
        present = [p for p in paths if p.is_file()]
        if record.setting not in seen and present:
            seen.add(record.setting)
            result.figures.append((record.setting, present[0]))
    return result
