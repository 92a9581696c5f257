"""Check a study's claims against the runs of its sweeps: numbers from files, a verdict per claim.

A claim is a mapping in a sweep file's ``claims:`` list (the sweep loader checks each against
its kind's type in :mod:`.claim_schema`)::

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
- ``rank``: ``reference: {setting: the report's number}``; ``min_effect`` is the smallest rank
  correlation counted (default 0.5).
- ``figure``: no numeric test; ``figure`` (a file under each run's ``figures/``, or a list: the
  first one present is shown) and ``needs`` (what would settle it). The verdict is "pending"
  until somebody has looked: ``checked: {verdict: holds | does not hold | inconclusive, by:
  who and when, reason: what the figures show}`` records that judgement, which the page then
  prints as a figure check beside the figures (the figures are drawn from the runs either way).
  ``checked`` may be a list of such mappings, each with ``budget:``: a look at the quick runs
  says nothing of the report-budget runs.

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

Any claim may also state ``budgets: [full]``: it is tested only on runs of those budgets (a
report's converged number means nothing after ten epochs); elsewhere its verdict is "not tested
at this budget".

Verdict rule (one method for every claim; see :data:`ALPHA`): two settings *differ* when each has
at least two finished seeds, Welch's t-test rejects equal means at p < 0.05, and the means differ
by at least the claim's effect-size floor (``min_effect`` in the metric's units, or
``min_effect_rel`` as a share of the means; every trend, compare and best claim states one). A
claim holds when the comparison it makes goes the claimed way and differs, and none goes the
other way and differs; it does not hold when one goes the other way and differs; otherwise it is
inconclusive at this budget. ``similar`` claims are equivalence tests (TOST) against their
margin, ``value`` claims one-sample t-tests against their bounds, ``rank`` claims Spearman's
rank correlation with the report's numbers.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from ..rundir import RunRecord, SweepDir, read_run
from .claim_schema import KINDS
from .sweep import setting_of

HOLDS = "holds"
FAILS = "does not hold"
INCONCLUSIVE = "inconclusive at this budget"
PENDING_EVALUATE = "pending: needs `vaelab evaluate`"
PENDING_FIGURE = "pending: needs a figure check"
NOT_RUN = "not run"
NOT_AT_BUDGET = "not tested at this budget"

FINAL_METRICS = {f"{split}_{term}": (key, term) for split, key in (("test", "final"), ("train", "final_train"))
                 for term in ("recon", "kl", "neg_elbo")}


class Pending(Exception):
    """A metric cannot be computed from the files present (e.g. no ``evaluation.json``)."""


EVALUATE_KEYS = ("checkpoint", "k", "examples", "seed", "split", "classifier")
"""The settings of a sweep file's ``evaluate:`` that two runs' evaluations must share to be compared."""


def evaluated_otherwise(evaluation: dict[str, Any] | None, evaluate: dict[str, Any] | None) -> list[str]:
    """The settings of a sweep file's ``evaluate:`` that ``evaluation`` (a run's
    ``evaluation.json``) was not made with, as ``["classifier independent"]``: its numbers are
    not comparable with those of the runs evaluated as the sweep file asks (an FID from the
    perceptual loss's own classifier favours the models trained against it). Evaluations made
    before the ``classifier`` option used the default classifier. Empty when either is missing."""
    if not evaluation or not evaluate:
        return []
    recorded = {"classifier": "default", **evaluation}
    return [f"{key} {evaluate[key]}" for key in EVALUATE_KEYS if key in evaluate and recorded.get(key) != evaluate[key]]


def collect_runs(sweep_dir: str | Path, prefix: str = "") -> list[RunRecord]:
    """The finished runs (those with ``summary.json`` and at least one epoch) of a sweep
    directory, in the order the sweep listed them; ``prefix`` is put before each setting name
    (to pool sweeps: ``"other-sweep/"``). A run evaluated otherwise than the sweep file's
    ``evaluate:`` asks has :attr:`~vaelab.rundir.RunRecord.evaluated_otherwise` set, and its
    ``eval:`` metrics are pending (:func:`run_metric`). Missing directory -> empty list."""
    sweep = SweepDir(sweep_dir)
    if not sweep.is_sweep():
        return []
    evaluate = sweep.read_meta().get("evaluate")
    records = []
    for name in sweep.run_names():
        files = sweep.run(name)
        summary = files.read_summary()
        if not summary or not summary.get("epochs"):
            continue
        record = read_run(files.path)
        probes = files.read_probes()
        match = re.search(r"seed(\d+)$", name)
        record.setting, record.probes = prefix + setting_of(name), probes
        record.seed = int(match.group(1)) if match else int(record.config.seed)
        record.evaluated_otherwise = evaluated_otherwise(record.evaluation, evaluate)
        records.append(record)
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
        if record.evaluated_otherwise:
            raise Pending(f"pending: some runs were not evaluated with the sweep file's "
                          f"{', '.join(record.evaluated_otherwise)}")
        node: Any = record.evaluation
        for part in metric[len("eval:"):].split("."):
            if not isinstance(node, dict) or part not in node:  # an evaluation made before the key existed
                raise Pending(f"pending: evaluation.json has no {metric[len('eval:'):]}; evaluate again")
            node = node[part]
        return float(node)
    if metric.startswith("probe:"):
        if metric[len("probe:"):] in record.probes:
            value = record.probes[metric[len("probe:"):]]
            return math.nan if value is None else float(value)
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


ALPHA = 0.05
"""Significance level of every test behind a verdict (two-sided unless the claim is one-sided)."""


@dataclass
class Difference:
    """``b - a`` for two settings, with Welch's t-test and the claim's effect-size floor.

    ``decided`` is True when both settings have at least two seeds, Welch's unequal-variance
    t-test (Welch 1947; ``scipy.stats.ttest_ind(equal_var=False)``) rejects equal means at
    :data:`ALPHA`, and ``|b - a|`` is at least ``floor`` (in the metric's units).
    """

    a: SettingStats
    b: SettingStats
    floor: float

    @property
    def diff(self) -> float:
        return self.b.mean - self.a.mean

    @property
    def p(self) -> float:
        return welch_p(self.a.values, self.b.values)

    @property
    def decided(self) -> bool:
        return self.a.n >= 2 and self.b.n >= 2 and self.p < ALPHA and abs(self.diff) >= self.floor

    def text(self) -> str:
        return (f"{self.b.setting} - {self.a.setting} = {format_number(self.diff)} "
                f"(Welch {format_p(self.p)}, floor {format_number(self.floor)})")


def welch_p(a: list[float], b: list[float], alternative: str = "two-sided") -> float:
    """p-value of Welch's t-test of equal means (``scipy.stats.ttest_ind``, ``equal_var=False``).

    With no spread on either side the test is degenerate: p is 0 when the means differ in the
    tested direction and 1 otherwise. Fewer than two values on a side: p = 1.
    """
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return 1.0
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        d = statistics.fmean(a) - statistics.fmean(b)
        hit = {"two-sided": d != 0, "greater": d > 0, "less": d < 0}[alternative]
        return 0.0 if hit else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)


def format_p(p: float) -> str:
    """``p < 0.001`` or ``p = 0.280``."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def effect_floor(claim: dict[str, Any], stats: list[SettingStats]) -> float:
    """The smallest difference a claim counts, in the metric's units: ``min_effect`` (absolute)
    or ``min_effect_rel`` (a share of the larger |mean| of the compared settings ``stats``).

    Raises:
        ValueError: the claim states neither.
    """
    if "min_effect" in claim:
        return float(claim["min_effect"])
    if "min_effect_rel" in claim:
        return float(claim["min_effect_rel"]) * max((abs(s.mean) for s in stats), default=0.0)
    raise ValueError(f"claim {claim.get('id')!r}: state its effect-size floor, min_effect (in the metric's "
                     "units) or min_effect_rel (a share of the means)")


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
    reference: dict[str, float] = field(default_factory=dict)  # rank claims: the report's numbers
    p: float | None = None
    """The p-value of the test the verdict rests on (numeric kinds; None for curve and figure
    claims, which have no test): what a multiple-testing correction (:func:`holm`) adjusts."""


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


def evaluate_claim(claim: dict[str, Any], records: list[RunRecord], probe: Callable | None = None,
                   budget: str | None = None) -> ClaimResult:
    """The verdict of one claim on a sweep's finished runs of ``budget`` (see the module docstring).

    Raises:
        ValueError: the claim is malformed (unknown kind, missing keys).
    """
    kind = claim.get("kind")
    if kind not in KINDS:
        raise ValueError(f"claim {claim.get('id')!r}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    result = ClaimResult(str(claim.get("id", "?")), str(claim.get("claim", "")), INCONCLUSIVE, "",
                         str(claim.get("metric", "")))
    if budget is not None and claim.get("budgets") and budget not in claim["budgets"]:
        result.verdict = NOT_AT_BUDGET
        result.reason = f"tested at the {' and '.join(claim['budgets'])} budget only"
        return result
    if kind == "figure":
        return _figure(claim, records, result, budget)
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
        if kind == "rank":
            return _rank(claim, records, stats, result)
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
    floor = effect_floor(claim, [stats[0], stats[-1]])
    steps = [Difference(a, b, floor) for a, b in zip(stats[:-1], stats[1:])]
    ends = Difference(stats[0], stats[-1], floor)
    agree = [sign * d.diff > 0 for d in steps]
    against = [d for d, ok in zip(steps + [ends], agree + [sign * ends.diff > 0]) if not ok and d.decided]
    n_dec = sum(ok and d.decided for d, ok in zip(steps, agree))
    word = claim["expect"]
    result.p = against[0].p if against else ends.p
    if against:
        result.verdict = FAILS
        result.reason = f"goes against the trend: {against[0].text()}"
    elif sign * ends.diff > 0 and ends.decided:
        result.verdict = HOLDS
        result.reason = (f"{word} end to end: {ends.text()}; {sum(agree)}/{len(steps)} steps go the claimed way "
                         f"({n_dec} of them decided), none decided against")
    else:
        result.reason = (f"{sum(agree)}/{len(steps)} steps go the claimed way, but the end-to-end difference is not "
                         f"decided: {ends.text()}")
    return result


def _compare(claim, first: SettingStats, second: SettingStats, result: ClaimResult) -> ClaimResult:
    sign = {"lower": -1, "higher": 1}[claim["expect"]]
    d = Difference(second, first, effect_floor(claim, [first, second]))  # first - second
    goes = sign * d.diff > 0
    result.p = d.p
    if d.decided:
        result.verdict = HOLDS if goes else FAILS
    word = claim["expect"] if goes else {"lower": "higher", "higher": "lower"}[claim["expect"]]
    result.reason = f"{first.setting} is {word} than {second.setting}: {d.text()}" + ("" if d.decided else ", not decided")
    return result


def _similar(claim, first: SettingStats, second: SettingStats, result: ClaimResult) -> ClaimResult:
    """Equivalence by two one-sided Welch tests (TOST, Schuirmann 1987) against the margin
    ``tolerance`` x the larger |mean|: holds when both reject (the difference is inside the
    margin), does not hold when a one-sided test shows it outside the margin, else inconclusive."""
    tolerance = float(claim.get("tolerance", 0.01))
    diff = second.mean - first.mean
    margin = tolerance * max(abs(first.mean), abs(second.mean))
    share = f"{format_number(diff)} ({format_number(100 * diff / max(abs(first.mean), abs(second.mean)), 2)}%)"
    if first.n < 2 or second.n < 2:
        result.reason = "needs at least two seeds per setting"
        return result
    a, b = first.values, second.values
    # H0: diff <= -margin or diff >= margin, both one-sided Welch tests (statsmodels' TOST)
    from statsmodels.stats.weightstats import ttost_ind

    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:  # degenerate: no spread to test
        p_tost = 0.0 if -margin < diff < margin else 1.0
    else:
        p_tost = float(ttost_ind(b, a, -margin, margin, usevar="unequal")[0])
    # outside: diff > margin or diff < -margin, one-sided
    p_out = min(welch_p(b, [v + margin for v in a], "greater"), welch_p(b, [v - margin for v in a], "less"))
    test = f"margin ± {format_number(margin)} ({format_number(100 * tolerance, 2)}%)"
    result.p = p_tost if p_tost < ALPHA else p_out if p_out < ALPHA else min(p_tost, p_out)
    if p_tost < ALPHA:
        result.verdict = HOLDS
        result.reason = f"the means differ by {share}; equivalent within {test}: TOST {format_p(p_tost)}"
    elif p_out < ALPHA:
        result.verdict = FAILS
        result.reason = f"the means differ by {share}, outside {test}: one-sided Welch {format_p(p_out)}"
    else:
        result.reason = (f"the means differ by {share}; neither equivalence within {test} (TOST "
                         f"{format_p(p_tost)}) nor a difference beyond it ({format_p(p_out)}) is shown")
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
    floor = effect_floor(claim, [best_in, best_out])
    better_in = (best_in.mean < best_out.mean) if goal == "min" else (best_in.mean > best_out.mean)
    d = Difference(best_out, best_in, floor)
    result.p = d.p
    if d.decided:
        result.verdict = HOLDS if better_in else FAILS
    winner, runner = (best_in, best_out) if better_in else (best_out, best_in)
    word = "lowest" if goal == "min" else "highest"
    result.reason = (f"{word} is {winner.setting}, ahead of {runner.setting}: {d.text()}"
                     + ("" if d.decided else ", not decided"))
    return result


def _value(claim, stats: list[SettingStats], result: ClaimResult) -> ClaimResult:
    """Each setting's mean against fixed bounds by one-sample t-tests (``scipy.stats.ttest_1samp``):
    holds when every setting is shown inside (one-sided at :data:`ALPHA` against each bound),
    does not hold when some setting is shown outside, else inconclusive."""
    from scipy import stats as sps

    expect = claim["expect"]
    if "between" in expect:
        lo, hi = (float(v) for v in expect["between"])
    else:
        lo = float(expect.get("above", -math.inf))
        hi = float(expect.get("below", math.inf))

    def p_of(values, bound, alternative):
        if not math.isfinite(bound):
            return 0.0
        if statistics.pvariance(values) == 0:
            d = values[0] - bound
            return 0.0 if (d > 0 if alternative == "greater" else d < 0) else 1.0
        return float(sps.ttest_1samp(values, bound, alternative=alternative).pvalue)

    verdicts, p_ins, p_outs = [], [], []
    for s in stats:
        if s.n < 2:
            verdicts.append(INCONCLUSIVE)
            continue
        p_in = max(p_of(s.values, lo, "greater"), p_of(s.values, hi, "less"))
        p_out = min(p_of(s.values, lo, "less") if math.isfinite(lo) else 1.0,
                    p_of(s.values, hi, "greater") if math.isfinite(hi) else 1.0)
        p_ins.append(p_in)
        p_outs.append(p_out)
        verdicts.append(HOLDS if p_in < ALPHA else FAILS if p_out < ALPHA else INCONCLUSIVE)
    if p_ins:  # holds rests on every setting (the largest p), does not hold on one (the smallest)
        result.p = min(p_outs) if any(v == FAILS for v in verdicts) else max(p_ins)
    bounds = " and ".join(t for t in ([f"above {format_number(lo)}"] if lo > -math.inf else []) +
                          ([f"below {format_number(hi)}"] if hi < math.inf else []))
    if all(v == HOLDS for v in verdicts):
        result.verdict, result.reason = HOLDS, f"every setting's mean is {bounds} (one-sample t-tests, p < {ALPHA})"
    elif any(v == FAILS for v in verdicts):
        result.verdict, result.reason = FAILS, f"some setting's mean is shown not {bounds} (one-sample t-test, p < {ALPHA})"
    else:
        result.reason = f"the seeds neither show the mean {bounds} nor outside it (one-sample t-tests), or fewer than two seeds"
    return result


def _rank(claim, records, stats: list[SettingStats], result: ClaimResult) -> ClaimResult:
    """Agreement of the settings' order with a reference (the report's numbers): Spearman's rank
    correlation (``scipy.stats.spearmanr``), one-sided. Holds when rho is at least
    ``min_effect`` (default 0.5) and p < :data:`ALPHA`; does not hold when rho is significantly
    negative; else inconclusive."""
    from scipy import stats as sps

    reference = {str(k): float(v) for k, v in claim["reference"].items()}
    ours = {s.setting: s.mean for s in stats if s.setting in reference}
    missing = sorted(set(reference) - set(ours))
    if len(ours) < 3:
        result.reason = f"needs at least three settings with a reference value; missing {', '.join(missing)}"
        return result
    names = list(ours)
    x, y = [ours[n] for n in names], [reference[n] for n in names]
    rho = float(sps.spearmanr(x, y).statistic)
    p_pos = float(sps.spearmanr(x, y, alternative="greater").pvalue)
    p_neg = float(sps.spearmanr(x, y, alternative="less").pvalue)
    floor = float(claim.get("min_effect", 0.5))
    result.p = p_neg if p_neg < ALPHA else p_pos
    if rho >= floor and p_pos < ALPHA:
        result.verdict = HOLDS
    elif p_neg < ALPHA:
        result.verdict = FAILS
    result.reason = (f"Spearman rho = {rho:.2f} over {len(names)} settings (one-sided {format_p(p_pos)}, "
                     f"floor rho >= {floor:g})" + (f"; no reference for {', '.join(missing)}" if missing else ""))
    result.rows = [s for s in stats if s.setting in reference]
    result.reference = {n: reference[n] for n in names}
    return result


def falls_then_rises(record: RunRecord, tolerance: float) -> bool | None:
    """The rule of ``curve:kl`` claims ("the KL falls first and rises later"), for one run: it
    *falls* when the training KL of ``steps.csv`` (means over the steps between log points,
    ``training.log_every_steps``) drops more than ``tolerance`` (a share) below an earlier
    point, and *rises* when the evaluation KL at the end of each epoch ends more than
    ``tolerance`` above its minimum, reached inside the run. None when the run has no step log
    (its fall cannot be seen: an epoch's running average hides it)."""
    if not record.files.steps_csv.is_file():
        return None
    steps = [row["train_kl"] for row in record.files.read_steps()]
    peak, falls = -math.inf, False
    for value in steps:
        falls = falls or value < peak - tolerance * abs(peak)
        peak = max(peak, value)
    series = [row[f"{record.eval_name}_kl"] for row in record.history]
    low = min(range(len(series)), key=series.__getitem__) if series else 0
    rises = 0 < low < len(series) - 1 and series[-1] - series[low] > tolerance * abs(series[low])
    return falls and rises


def _curve(claim, records, result: ClaimResult) -> ClaimResult:
    metric = claim["metric"]
    if not metric.startswith("curve:") or claim.get("expect") != "falls_then_rises":
        raise ValueError(f"claim {result.id}: a curve claim needs metric curve:<column> and "
                         "expect: falls_then_rises")
    if metric == "curve:kl":
        return _kl_curve(claim, records, result)
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
        if n_runs >= 3 and n_yes == n_runs:
            result.verdict = HOLDS
        elif n_runs >= 3 and n_yes == 0:
            result.verdict = FAILS
        result.reason = (f"{n_yes} of {n_runs} runs have their {column} minimum inside the run and end "
                         f"more than {format_number(100 * tolerance, 2)}% above it (holds when all of at least "
                         "3 runs do, does not hold when none does)")
    return result


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the order given
    (``statsmodels.stats.multitest.multipletests(method="holm")``): rejecting where the adjusted
    p is below alpha controls the family-wise error rate at alpha over the m tests."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(p_values, alpha=ALPHA, method="holm")[1]]


def holm_verdicts(results: list[ClaimResult]) -> dict[str, tuple[float, str]]:
    """Claim id -> (Holm-adjusted p, verdict after the correction) over the numeric claims of
    one family (a study's claims at one budget, those with a test: ``p`` not None). A verdict
    that rested on a test whose adjusted p is no longer below :data:`ALPHA` becomes
    inconclusive; the others stay as they were."""
    tested = [r for r in results if r.p is not None and r.verdict in (HOLDS, FAILS, INCONCLUSIVE)]
    adjusted = holm([r.p for r in tested])
    out = {}
    for result, p_adj in zip(tested, adjusted):
        verdict = result.verdict if (result.verdict == INCONCLUSIVE or p_adj < ALPHA) else INCONCLUSIVE
        out[result.id] = (p_adj, verdict)
    return out


def _kl_curve(claim, records, result: ClaimResult) -> ClaimResult:
    """``curve:kl`` with :func:`falls_then_rises` per run: holds when every one of at least 3
    runs with a step log falls then rises, does not hold when none does."""
    tolerance = float(claim.get("tolerance", 0.01))
    shown: dict[str, list[float]] = {}
    unlogged = 0
    for record in records:
        if not matches(record, claim.get("where")):
            continue
        verdict = falls_then_rises(record, tolerance)
        if verdict is None:
            unlogged += 1
            continue
        shown.setdefault(record.setting, []).append(1.0 if verdict else 0.0)
    result.rows = [SettingStats(s, v) for s, v in shown.items()]
    n_runs = sum(len(v) for v in shown.values())
    n_yes = int(sum(sum(v) for v in shown.values()))
    rule = (f"training KL every few steps drops more than {format_number(100 * tolerance, 2)}% below an earlier "
            f"point, and the test KL per epoch ends more than {format_number(100 * tolerance, 2)}% above its "
            "minimum inside the run")
    if not n_runs:
        result.reason = (f"none of the {unlogged} runs logged the KL within epochs (training.log_every_steps), so "
                         "a fall in the first epoch cannot be seen" if unlogged else "no finished run matches")
        return result
    if n_runs >= 3 and n_yes == n_runs:
        result.verdict = HOLDS
    elif n_runs >= 3 and n_yes == 0:
        result.verdict = FAILS
    result.reason = (f"{n_yes} of {n_runs} runs fall then rise ({rule}); holds when all of at least 3 runs do, "
                     "does not hold when none does" + (f"; {unlogged} runs without a step log left out" if unlogged else ""))
    return result


FIGURE_CHECK_VERDICTS = {"holds": HOLDS, "does not hold": FAILS, "inconclusive": INCONCLUSIVE}


def _figure(claim, records, result: ClaimResult, budget: str | None = None) -> ClaimResult:
    checked = claim.get("checked")
    if isinstance(checked, list):  # one check per budget: [{budget: quick, verdict: ..., by: ..., reason: ...}]
        checked = next((c for c in checked if budget is None or c.get("budget") == budget), None)
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
        paths = [record.files.figures / name for name in names]
        present = [p for p in paths if p.is_file()]
        if record.setting not in seen and present:
            seen.add(record.setting)
            result.figures.append((record.setting, present[0]))
    return result
