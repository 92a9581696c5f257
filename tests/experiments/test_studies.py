"""The study sweeps under configs/studies/ and the claims evaluator behind docs/studies.md.

Every sweep file must load and validate for both budgets, and every claim must name real config
keys and values that select runs of its sweep (this catches typos before anything trains). The
evaluator is checked on small fabricated sweep directories with known verdicts.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

from vaelab.config import Config
from vaelab.experiments import load_sweep
from vaelab.experiments.claims import (FAILS, HOLDS, INCONCLUSIVE, KINDS, NOT_RUN, PENDING_EVALUATE, PENDING_FIGURE,
                                       RunRecord, matches, collect_runs, evaluate_claim, setting_of)

REPO = Path(__file__).resolve().parents[2]
STUDY_FILES = sorted((REPO / "configs" / "studies").glob("*/*.yaml"))


def test_each_study_page_gives_the_command_of_each_of_its_sweeps_and_the_campaign_runs_only_those():
    from vaelab.experiments.campaign import load_plan

    plan = load_plan(REPO / "configs" / "studies" / "campaign.yaml")  # every step's sweep loads at its budget
    assert {step.sweep for step in plan.steps if step.sweep is not None} <= set(STUDY_FILES)
    for path in STUDY_FILES:
        page = (REPO / "docs" / "studies" / f"{path.parent.name}.md").read_text()
        command = f"vaelab sweep configs/studies/{path.parent.name}/{path.name} --budget full"
        assert command in page, f"{path.parent.name}.md does not say how to run {path.name}"


def test_every_sweep_the_committed_campaign_status_calls_done_has_all_its_runs_kept():
    # a clone with the committed results must not train a finished sweep again (a kept run that
    # selects on a validation split once counted as lacking its evaluation, and was re-trained)
    from vaelab.experiments.campaign import load_plan
    from vaelab.experiments.studies import kept_runs

    results = REPO / "docs" / "studies" / "results"
    plan = load_plan(REPO / "configs" / "studies" / "campaign.yaml")
    files = {(str(step.sweep.relative_to(plan.path.parent)), step.budget) for step in plan.steps if step.sweep}
    status = json.loads((results / "campaign" / "status.json").read_text())
    done = [step for step in status["steps"] if step.get("sweep") and step["state"] == "done"]
    assert len(done) >= 19
    for step in done:
        assert (step["file"], step["budget"]) in files, step
        kept = kept_runs(plan.path.parent / step["file"], step["budget"], results)
        assert len(kept) == step["runs"], (
            f"{step['sweep']} ({step['budget']}): {len(kept)} of {step['runs']} kept; if a sweep file changed on "
            "purpose, rewrite the status: vaelab campaign status configs/studies/campaign.yaml --write")


@pytest.mark.parametrize("budget", ["quick", "full"])
@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_study_sweep_loads_and_validates(path, budget, tmp_path):
    spec = yaml.safe_load(path.read_text())
    assert {"name", "description", "budgets", "seeds"} <= set(spec), "every study sweep says what it tests"
    assert set(spec["budgets"]) == {"quick", "full"}
    seeds = spec["seeds"] if isinstance(spec["seeds"], list) else spec["seeds"][budget]
    assert 3 <= len(seeds) <= 10 and seeds[:3] == [1, 2, 3]
    assert spec.get("full_budget", "").split(":")[0] in ("report", "chosen"), "say whose report budget it is"
    sweep = load_sweep(path, budget, tmp_path)
    assert sweep.runs and sweep.name == spec["name"]
    if budget == "full":
        assert spec["budgets"]["full"] == {}, "full is the report's own budget: the base config"


def test_sweep_names_are_unique_and_prefixed_by_their_study():
    names = [yaml.safe_load(p.read_text())["name"] for p in STUDY_FILES]
    assert len(set(names)) == len(names)
    for path, name in zip(STUDY_FILES, names):
        assert name.startswith(path.parent.name[:2] + "-")


def _claims():
    for path in STUDY_FILES:
        for claim in yaml.safe_load(path.read_text()).get("claims") or []:
            yield path, claim


@pytest.mark.parametrize("path,claim", list(_claims()), ids=lambda v: v.get("id") if isinstance(v, dict) else "")
def test_claims_name_real_keys_and_select_runs(path, claim, tmp_path):
    assert claim["kind"] in KINDS and claim.get("claim") and claim.get("id")
    sweep = load_sweep(path, "quick", tmp_path)
    records = [RunRecord(tmp_path / r.name, Config.from_dict(r.config), setting=setting_of(r.name), seed=r.seed)
               for r in sweep.runs]
    by_name = {yaml.safe_load(p.read_text())["name"]: p for p in path.parent.glob("*.yaml")}
    for other in claim.get("sweeps") or []:
        records += [RunRecord(tmp_path / r.name, Config.from_dict(r.config), setting=f"{other}/" + setting_of(r.name),
                              seed=r.seed) for r in load_sweep(by_name[other], "quick", tmp_path).runs]
    defaults = Config().to_dict()

    def check_keys(where):
        for key in where or {}:
            node = defaults
            for part in key.split("."):
                assert part in node, f"claim {claim['id']}: {key} is not a config key"
                node = node[part]

    for field in ("where", "first", "second"):
        check_keys(claim.get(field))
    if claim.get("along"):
        check_keys({claim["along"]: None})
    metric = claim.get("metric", "")
    if claim["kind"] != "figure":
        assert metric and (metric.split(":")[0] in ("eval", "probe", "curve") or metric in (
            "test_recon", "test_kl", "test_neg_elbo", "train_recon", "train_kl", "train_neg_elbo", "test_objective"))
    if metric.startswith("probe:"):
        from vaelab.experiments.probes import PROBES
        assert metric[len("probe:"):] in PROBES
    selected = [r for r in records if matches(r, claim.get("where"))]
    assert selected, f"claim {claim['id']}: `where` selects no run"
    if claim["kind"] in ("compare", "similar"):
        for side in ("first", "second"):
            assert [r for r in selected if matches(r, claim[side])], f"claim {claim['id']}: `{side}` selects no run"
    if claim["kind"] == "best":
        inside = [r for r in selected if matches(r, claim["expect"])]
        assert inside, f"claim {claim['id']}: `expect` selects no run"
        assert len(inside) < len(selected) or claim.get("sweeps"), f"claim {claim['id']}: nothing to compare with"
    if claim["kind"] == "trend":
        assert len({str(r.value(claim["along"])) for r in selected}) >= 2
    if claim["kind"] in ("trend", "compare", "best"):
        assert "min_effect" in claim or "min_effect_rel" in claim, f"claim {claim['id']}: no effect-size floor"
    if claim["kind"] == "rank":
        settings = {r.setting for r in selected}
        assert set(claim["reference"]) <= settings, f"claim {claim['id']}: reference names unknown settings"
    figure_ids = {str(e.get("id", e["kind"])) for e in yaml.safe_load(path.read_text()).get("figures") or []}
    assert set(claim.get("show") or []) <= figure_ids, f"claim {claim['id']}: shows a figure the sweep does not draw"


# --- the evaluator on fabricated results ----------------------------------------------------------


def fabricate(root: Path, name: str, settings: dict[str, dict], values: dict[str, list[float]],
              metric: str = "recon", kl_curves: dict[str, list[list[float]]] | None = None,
              evaluation: dict[str, list[dict]] | None = None) -> Path:
    """A sweep directory whose runs have the given final test ``metric`` per seed.

    ``settings``: setting name -> dotted config overrides; ``values``: setting name -> one value
    per seed. ``kl_curves`` gives per-seed train_kl series; ``evaluation`` per-seed
    evaluation.json contents.
    """
    sweep_dir = root / name
    names = []
    for setting, overrides in settings.items():
        for i, value in enumerate(values[setting]):
            run = f"{setting}-seed{i + 1}"
            names.append(run)
            run_dir = sweep_dir / "runs" / run
            run_dir.mkdir(parents=True)
            config = Config.from_dict({}).replace(overrides).to_dict()
            config.update(seed=i + 1, name=run)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
            final = {"recon": 100.0, "kl": 10.0, "neg_elbo": 110.0}
            final[metric] = value
            curve = (kl_curves or {}).get(setting, [[10.0, 9.0, 8.0]] * len(values[setting]))[i]
            rows = ["epoch,train_recon,train_kl,train_neg_elbo,test_recon,test_kl,test_neg_elbo"]
            rows += [f"{e + 1},100,{kl},{100 + kl},100,{kl},{100 + kl}" for e, kl in enumerate(curve)]
            (run_dir / "metrics.csv").write_text("\n".join(rows) + "\n")
            (run_dir / "summary.json").write_text(json.dumps(
                {"epochs": len(curve), "final": final, "final_train": final, "seconds_per_epoch": 1.0}))
            if evaluation and setting in evaluation:
                (run_dir / "evaluation.json").write_text(json.dumps(evaluation[setting][i]))
    (sweep_dir / "sweep.yaml").write_text(yaml.safe_dump({"name": name, "resolved_runs": names, "budget": "quick"}))
    return sweep_dir


LATENT = {f"latent_dim={d}": {"model.latent_dim": d} for d in (1, 2, 3)}
TREND = {"id": "t", "claim": "more latent, less loss", "kind": "trend", "metric": "test_recon",
         "along": "model.latent_dim", "expect": "decreasing", "min_effect": 1.0}


@pytest.mark.parametrize("values,verdict", [
    ({"latent_dim=1": [150, 151], "latent_dim=2": [140, 141], "latent_dim=3": [130, 131]}, HOLDS),
    # a middle step within the noise still holds end to end
    ({"latent_dim=1": [150, 151], "latent_dim=2": [140, 145], "latent_dim=3": [142, 142.5]}, HOLDS),
    ({"latent_dim=1": [130, 131], "latent_dim=2": [140, 141], "latent_dim=3": [150, 151]}, FAILS),
    ({"latent_dim=1": [150, 140], "latent_dim=2": [146, 144], "latent_dim=3": [145, 139]}, INCONCLUSIVE),
])
def test_trend_verdicts(tmp_path, values, verdict):
    records = collect_runs(fabricate(tmp_path, "s", LATENT, values))
    assert len(records) == 6 and records[0].setting == "latent_dim=1"
    result = evaluate_claim(TREND, records)
    assert result.verdict == verdict, result.reason
    assert [row.setting for row in result.rows] == list(LATENT)
    assert result.rows[0].mean == pytest.approx(sum(values["latent_dim=1"]) / 2)


def test_trend_with_one_seed_is_inconclusive(tmp_path):
    values = {"latent_dim=1": [150], "latent_dim=2": [140], "latent_dim=3": [130]}
    assert evaluate_claim(TREND, collect_runs(fabricate(tmp_path, "s", LATENT, values))).verdict == INCONCLUSIVE


def test_trend_sorts_settings_by_the_along_key_not_by_name(tmp_path):
    settings = {"w=1000": {"model.hidden": [1000]}, "w=200": {"model.hidden": [200]}}
    records = collect_runs(fabricate(tmp_path, "s", settings, {"w=1000": [90, 91], "w=200": [100, 101]}))
    claim = {**TREND, "along": "model.hidden"}
    result = evaluate_claim(claim, records)
    assert [r.setting for r in result.rows] == ["w=200", "w=1000"] and result.verdict == HOLDS


CNN = {"mlp": {"model.network": "mlp"}, "cnn": {"model.network": "conv"}}
COMPARE = {"id": "c", "claim": "cnn lower", "kind": "compare", "metric": "test_recon",
           "first": {"model.network": "conv"}, "second": {"model.network": "mlp"}, "expect": "lower",
           "min_effect": 1.0}


@pytest.mark.parametrize("values,verdict", [
    ({"mlp": [150, 152], "cnn": [140, 141]}, HOLDS),
    ({"mlp": [130, 131], "cnn": [140, 141]}, FAILS),
    ({"mlp": [141, 150], "cnn": [140, 145]}, INCONCLUSIVE),
])
def test_compare_verdicts(tmp_path, values, verdict):
    result = evaluate_claim(COMPARE, collect_runs(fabricate(tmp_path, "s", CNN, values)))
    assert result.verdict == verdict, result.reason


CLIPS = {f"clip_value={v:g}": {"training.clip_value": v} for v in (0.1, 0.5, 1.0)}
BEST = {"id": "b", "claim": "clip 1 best", "kind": "best", "metric": "test_neg_elbo",
        "expect": {"training.clip_value": 1.0}, "min_effect": 1.0}


@pytest.mark.parametrize("values,verdict", [
    ([[120, 121], [110, 111], [100, 101]], HOLDS),
    ([[120, 121], [100, 101], [110, 111]], FAILS),
    ([[120, 121], [100, 106], [101, 104]], INCONCLUSIVE),
])
def test_best_verdicts(tmp_path, values, verdict):
    records = collect_runs(fabricate(tmp_path, "s", CLIPS, dict(zip(CLIPS, values)), metric="neg_elbo"))
    assert evaluate_claim(BEST, records).verdict == verdict


def test_best_accepts_a_set_of_expected_values(tmp_path):
    settings = {f"m={m}": {"training.optimizer": "sgd", "training.momentum": m} for m in (0.5, 0.9, 0.95)}
    values = {"m=0.5": [120, 121], "m=0.9": [101, 102], "m=0.95": [100, 101]}
    claim = {**BEST, "expect": {"training.momentum": [0.9, 0.95]}}
    records = collect_runs(fabricate(tmp_path, "s", settings, values, metric="neg_elbo"))
    assert evaluate_claim(claim, records).verdict == HOLDS


PRIORS = {"n01": {"model.prior_loc": [0.0]}, "n12": {"model.prior_loc": [1.0], "model.prior_std": [2.0]}}
SIMILAR = {"id": "s", "claim": "priors similar", "kind": "similar", "metric": "test_neg_elbo",
           "first": {"model.prior_loc": [0.0]}, "second": {"model.prior_loc": [1.0]}, "tolerance": 0.01}


@pytest.mark.parametrize("values,verdict", [
    ({"n01": [150, 151, 150.5], "n12": [150.4, 151.2, 150.8]}, HOLDS),  # TOST: inside the 1% margin
    ({"n01": [150, 151, 150.5], "n12": [160, 161, 160.5]}, FAILS),      # shown outside it
    ({"n01": [145, 155, 150], "n12": [150, 160, 155]}, INCONCLUSIVE),  # 3% apart, too noisy to tell
    ({"n01": [150, 151], "n12": [150.5, 151.2]}, INCONCLUSIVE),  # inside, but two seeds cannot show it
    ({"n01": [150], "n12": [150]}, INCONCLUSIVE),
])
def test_similar_verdicts(tmp_path, values, verdict):
    records = collect_runs(fabricate(tmp_path, "s", PRIORS, values, metric="neg_elbo"))
    assert evaluate_claim(SIMILAR, records).verdict == verdict


def test_eval_metrics_are_pending_until_evaluation_json_exists(tmp_path):
    claim = {**SIMILAR, "metric": "eval:samples.fid_classifier"}
    values = {"n01": [150, 151], "n12": [150, 151]}
    pending = evaluate_claim(claim, collect_runs(fabricate(tmp_path / "a", "s", PRIORS, values)))
    assert pending.verdict == PENDING_EVALUATE
    evaluation = {"n01": [{"samples": {"fid_classifier": 10.0}}, {"samples": {"fid_classifier": 11.0}}],
                  "n12": [{"samples": {"fid_classifier": 30.0}}, {"samples": {"fid_classifier": 31.0}}]}
    records = collect_runs(fabricate(tmp_path / "b", "s", PRIORS, values, evaluation=evaluation))
    result = evaluate_claim(claim, records)
    assert result.verdict == FAILS and result.rows[0].mean == pytest.approx(10.5)


def test_runs_evaluated_otherwise_than_the_sweep_asks_leave_eval_metrics_pending(tmp_path):
    # an FID from another classifier (the perceptual loss's own) is not compared with the rest
    claim = {**SIMILAR, "metric": "eval:samples.fid_classifier"}
    values = {"n01": [150, 151], "n12": [150, 151]}
    scored = {"classifier": "independent", "samples": {"fid_classifier": 10.0}}
    evaluation = {"n01": [scored, scored], "n12": [scored, {"samples": {"fid_classifier": 3.0}}]}  # the default one
    sweep_dir = fabricate(tmp_path, "s", PRIORS, values, evaluation=evaluation)
    meta = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    (sweep_dir / "sweep.yaml").write_text(yaml.safe_dump({**meta, "evaluate": {"classifier": "independent"}}))
    records = collect_runs(sweep_dir)
    assert [r.evaluated_otherwise for r in records] == [[], [], [], ["classifier independent"]]
    result = evaluate_claim(claim, records)
    assert result.verdict == "pending: some runs were not evaluated with the sweep file's classifier independent"
    assert evaluate_claim(claim, records[:3]).verdict != result.verdict  # the others alone are decided


def test_value_verdicts(tmp_path):
    settings = {"base": {}}
    claim = {"id": "v", "claim": "about 14", "kind": "value", "metric": "test_kl", "expect": {"between": [12, 16]}}
    for values, verdict in (([14, 14.5], HOLDS), ([19, 20], FAILS), ([11.8, 12.3], INCONCLUSIVE)):
        root = tmp_path / str(values[0])
        records = collect_runs(fabricate(root, "s", settings, {"base": values}, metric="kl"))
        assert evaluate_claim(claim, records).verdict == verdict


def test_curve_falls_then_rises(tmp_path):
    claim = {"id": "k", "claim": "kl dips", "kind": "curve", "metric": "curve:train_kl", "expect": "falls_then_rises"}
    settings = {"a": {"model.latent_dim": 2}}
    dips = {"a": [[10, 8, 9, 11], [10, 7, 8, 9], [10, 9, 8, 7]]}
    records = collect_runs(fabricate(tmp_path / "yes", "s", settings, {"a": [1, 1, 1]}, kl_curves=dips))
    result = evaluate_claim(claim, records)
    assert result.verdict == INCONCLUSIVE and "2 of 3 runs" in result.reason  # mixed: not every run
    dips = {"a": [[10, 8, 9, 11], [10, 7, 8, 9], [10, 9, 8, 9]]}
    records = collect_runs(fabricate(tmp_path / "all", "s", settings, {"a": [1, 1, 1]}, kl_curves=dips))
    assert evaluate_claim(claim, records).verdict == HOLDS
    falls = {"a": [[10, 9, 8, 7], [10, 9, 8, 8.01], [10, 9, 9, 9]]}
    records = collect_runs(fabricate(tmp_path / "no", "s", settings, {"a": [1, 1, 1]}, kl_curves=falls))
    assert evaluate_claim(claim, records).verdict == FAILS
    records = collect_runs(fabricate(tmp_path / "two", "s", settings, {"a": [1, 1]}, kl_curves={"a": dips["a"][:2]}))
    assert evaluate_claim(claim, records).verdict == INCONCLUSIVE  # fewer than 3 runs


def test_figure_claims_are_pending_and_collect_one_figure_per_setting(tmp_path):
    sweep_dir = fabricate(tmp_path, "s", CLIPS, {s: [1, 1] for s in CLIPS})
    for run in (sweep_dir / "runs").iterdir():
        (run / "figures").mkdir()
        (run / "figures" / "latent_scatter.png").write_bytes(b"png")
    claim = {"id": "f", "claim": "diamond", "kind": "figure", "figure": ["toy2d.png", "latent_scatter.png"],
             "along": "training.clip_value", "needs": "a look"}
    result = evaluate_claim(claim, collect_runs(sweep_dir))
    assert result.verdict == PENDING_FIGURE
    assert [s for s, _ in result.figures] == list(CLIPS)
    assert all(p.name == "latent_scatter.png" and "seed1" in p.parent.parent.name for _, p in result.figures)

    checked = {**claim, "checked": {"verdict": "does not hold", "by": "us", "reason": "already a diamond at 0"}}
    result = evaluate_claim(checked, collect_runs(sweep_dir))
    assert result.verdict == FAILS and "figure check by us" in result.reason and "already a diamond" in result.reason
    assert len(result.figures) == len(CLIPS)  # still shown beside the verdict
    with pytest.raises(ValueError, match="checked needs verdict"):
        evaluate_claim({**claim, "checked": {"verdict": "looks fine", "by": "us", "reason": "r"}}, collect_runs(sweep_dir))


def test_no_runs_and_bad_claims(tmp_path):
    assert evaluate_claim(TREND, collect_runs(tmp_path / "absent")).verdict == NOT_RUN
    with pytest.raises(ValueError, match="kind must be one of"):
        evaluate_claim({**TREND, "kind": "vibes"}, [])
    records = collect_runs(fabricate(tmp_path, "s", LATENT, {s: [1, 2] for s in LATENT}))
    with pytest.raises(ValueError, match="missing or unknown key"):
        evaluate_claim({k: v for k, v in TREND.items() if k != "along"}, records)


def test_unfinished_runs_are_left_out(tmp_path):
    sweep_dir = fabricate(tmp_path, "s", LATENT, {s: [1, 2] for s in LATENT})
    (sweep_dir / "runs" / "latent_dim=3-seed2" / "summary.json").unlink()
    records = collect_runs(sweep_dir)
    assert len(records) == 5
    assert [r.seed for r in records if r.setting == "latent_dim=3"] == [1]


# --- probes ---------------------------------------------------------------------------------------


def test_probes_on_tiny_toy2d_runs(tmp_path):
    from vaelab.experiments.probes import compute_probe, pca_variance_shares
    from vaelab import train

    base = {"data": {"dataset": "toy2d", "toy2d_train_size": 200, "toy2d_test_size": 100},
            "model": {"hidden": [8], "likelihood": "gaussian"},
            "training": {"epochs": 1, "batch_size": 50, "progress": False}, "output_dir": str(tmp_path)}
    one = train({**base, "name": "z1", "model": {**base["model"], "latent_dim": 1}}, verbose=False)
    two = train({**base, "name": "z2", "model": {**base["model"], "latent_dim": 2}}, verbose=False)
    record = lambda run: RunRecord(run.run_dir, run.config, summary=run.summary, setting="base", seed=1)
    length = compute_probe(record(one), "toy_curve_length")
    assert 0 <= length < 10
    edge = compute_probe(record(two), "toy_edge_fraction")
    assert 0 <= edge <= 1
    assert 1 <= compute_probe(record(two), "pca_components_98.5") <= 2
    with pytest.raises(ValueError, match="1-D latent"):
        compute_probe(record(two), "toy_curve_length")
    with pytest.raises(KeyError, match="unknown probe"):
        compute_probe(record(two), "vibes")

    class Fixed(torch.nn.Module):  # posterior means with variances 9, 4, 1 along the axes
        def posterior(self, x):
            return torch.distributions.Independent(torch.distributions.Normal(x, torch.ones_like(x)), 1)

    x = torch.randn(20000, 3, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    shares = pca_variance_shares(Fixed(), x)
    assert shares.tolist() == pytest.approx([9 / 14, 13 / 14, 1.0], abs=0.01)
    from vaelab.experiments.probes import latent_kurtosis

    gaussian = torch.randn(50000, 2, dtype=torch.float64) @ torch.tensor([[2.0, 0.5], [0.0, 1.0]], dtype=torch.float64)
    rotation = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
    diamond = (torch.rand(50000, 2, dtype=torch.float64) - 0.5) @ rotation
    assert latent_kurtosis(Fixed(), gaussian) == pytest.approx(8.0, abs=0.2)
    assert latent_kurtosis(Fixed(), diamond) == pytest.approx(5.6, abs=0.1)


# --- the docs script ------------------------------------------------------------------------------


def _make_studies():
    spec = importlib.util.spec_from_file_location("make_studies", REPO / "docs" / "make_studies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pages_label_validation_numbers_and_show_the_test_split_at_the_chosen_checkpoint():
    from types import SimpleNamespace

    module = _make_studies()
    assert module.selects_on_validation({"base": {"data": {"validation_size": 200}}})
    assert not module.selects_on_validation({"base": {"data": {"dataset": "mnist"}}})
    records = [SimpleNamespace(setting="a", evaluation={"neg_elbo": 10.0, "recon": 8.0, "kl": 2.0, "nll_iwae": 9.0}),
               SimpleNamespace(setting="a", evaluation={"neg_elbo": 12.0, "recon": 9.0, "kl": 3.0, "nll_iwae": 11.0}),
               SimpleNamespace(setting="b", evaluation=None)]
    table = module.evaluation_table(records)
    assert len(table) == 3 and table[2].startswith("| `a` | 2 | 11.000 ± 1.414 |")
    assert module.evaluation_table([SimpleNamespace(setting="b", evaluation=None)]) == []
    # the committed Frey page says its final-epoch table is the validation split's
    page = (REPO / "docs" / "studies" / "05-likelihoods-pca.md").read_text()
    assert "`test_` columns here hold the validation split's numbers" in page


def test_make_studies_writes_verdicts_from_kept_results(tmp_path):
    module = _make_studies()
    configs = tmp_path / "configs"
    (configs / "01-demo").mkdir(parents=True)
    (configs / "01-demo" / "latent.yaml").write_text(yaml.safe_dump({
        "name": "01-latent", "description": "demo", "seeds": [1, 2], "base": {},
        "grid": {"model.latent_dim": [1, 2, 3]}, "claims": [TREND, {**SIMILAR, "id": "fid",
                                                                  "metric": "eval:fid_classifier",
                                                                  "first": {"model.latent_dim": 1},
                                                                  "second": {"model.latent_dim": 2}}]}))
    (configs / "01-demo" / "other.yaml").write_text(yaml.safe_dump({"name": "01-other", "claims": [COMPARE]}))
    docs = tmp_path / "docs"
    results = docs / "studies" / "results"
    fabricate(results / "quick", "01-latent", LATENT, {"latent_dim=1": [150, 151], "latent_dim=2": [140, 141],
                                                       "latent_dim=3": [130, 131]})
    (docs / "studies" / "01-demo.md").write_text("# Study 1: demo\n\nhand-written\n")
    assert module.main(["--configs", str(configs), "--docs", str(docs)]) == 0
    text = (docs / "studies.md").read_text()
    assert "| Study 1 | [t](studies/01-demo.md#t-more-latent-less-loss) more latent, less loss | holds | not run |" in text
    assert "| Study 1 | [fid](studies/01-demo.md#fid-priors-similar) priors similar | pending: needs `vaelab evaluate` | not run |" in text
    assert "| Study 1 | [c](studies/01-demo.md#c-cnn-lower) cnn lower | not run | not run |" in text
    assert "Welch" in text and "TOST" in text and "/tmp" not in text
    page = (docs / "studies" / "01-demo.md").read_text()
    assert page.startswith("# Study 1: demo\n\nhand-written\n") and module.MARKER in page
    assert "| `latent_dim=1` | 150.500 ± 0.707 (n=2) |" in page
    assert "runs/studies/quick" in page and "/tmp" not in page
    first = page
    assert module.main(["--configs", str(configs), "--docs", str(docs)]) == 0
    assert (docs / "studies" / "01-demo.md").read_text() == first  # the hand-written part stays, once


def test_committed_study_pages_are_regenerated_byte_for_byte(tmp_path):
    # `python docs/make_studies.py` on the committed results gives the committed pages
    module = _make_studies()
    import shutil

    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs" / "studies", docs / "studies")
    shutil.copyfile(REPO / "docs" / "studies.md", docs / "studies.md")
    assert module.main(["--docs", str(docs)]) == 0
    for page in [docs / "studies.md", *sorted((docs / "studies").glob("*.md"))]:
        committed = REPO / "docs" / page.relative_to(docs)
        assert page.read_bytes() == committed.read_bytes(), f"{committed} is stale: run python docs/make_studies.py"
    assert "/tmp/" not in "".join(p.read_text() for p in (REPO / "docs").rglob("*.md"))
    for kept in sorted((REPO / "docs" / "studies" / "results").glob("*/*/runs/*")):  # no machine's paths
        assert not Path(yaml.safe_load((kept / "config.yaml").read_text())["output_dir"]).is_absolute(), kept
        assert not Path(json.loads((kept / "summary.json").read_text())["run_dir"]).is_absolute(), kept


def test_numbers_show_the_std_to_two_significant_digits():
    from vaelab.experiments.claims import format_pair

    assert format_pair(1.8389, 6.67e-6) == "1.838900 ± 0.000007"
    assert format_pair(1.84112, 0.000113) == "1.84112 ± 0.00011"
    assert format_pair(6.2061, 0.025) == "6.206 ± 0.025"
    assert format_pair(150.5, 0.0) == "150.500 ± 0.000"


def test_a_significant_difference_below_the_floor_is_not_decided(tmp_path):
    values = {"latent_dim=1": [150.0003, 150.0004, 150.0003], "latent_dim=2": [150.0002, 150.0001, 150.0002],
              "latent_dim=3": [150.0000, 150.0001, 150.0000]}
    records = collect_runs(fabricate(tmp_path, "s", LATENT, values))
    assert evaluate_claim({**TREND, "min_effect": 0.0}, records).verdict == HOLDS      # Welch alone says so
    result = evaluate_claim(TREND, records)                                            # floor: 1 nat
    assert result.verdict == INCONCLUSIVE and "floor 1.000" in result.reason
    with pytest.raises(ValueError, match="effect-size floor"):
        evaluate_claim({k: v for k, v in TREND.items() if k != "min_effect"}, records)


def test_claims_can_be_limited_to_a_budget(tmp_path):
    from vaelab.experiments.claims import NOT_AT_BUDGET

    records = collect_runs(fabricate(tmp_path, "s", LATENT, {s: [1, 2] for s in LATENT}))
    claim = {**TREND, "budgets": ["full"]}
    assert evaluate_claim(claim, records, budget="quick").verdict == NOT_AT_BUDGET
    assert evaluate_claim(claim, records, budget="full").verdict != NOT_AT_BUDGET


def test_rank_agreement_with_the_reports_numbers(tmp_path):
    settings = {f"m{i}": {"model.latent_dim": i + 1} for i in range(6)}
    ours = {f"m{i}": [10.0 * i, 10.0 * i + 1] for i in range(6)}
    records = collect_runs(fabricate(tmp_path, "s", settings, ours))
    claim = {"id": "r", "claim": "same order", "kind": "rank", "metric": "test_recon",
             "reference": {f"m{i}": 100.0 + i for i in range(6)}}
    result = evaluate_claim(claim, records)
    assert result.verdict == HOLDS and "rho = 1.00" in result.reason
    reverse = {**claim, "reference": {f"m{i}": 100.0 - i for i in range(6)}}
    assert evaluate_claim(reverse, records).verdict == FAILS
    few = {**claim, "reference": {"m0": 1.0, "m1": 2.0}}
    assert evaluate_claim(few, records).verdict == INCONCLUSIVE


def test_probe_values_kept_in_probes_json_are_used_without_a_checkpoint(tmp_path):
    sweep_dir = fabricate(tmp_path, "s", LATENT, {s: [1, 2, 3] for s in LATENT})
    for i, run in enumerate(sorted((sweep_dir / "runs").iterdir())):
        (run / "probes.json").write_text(json.dumps({"toy_edge_fraction": 0.1 * int(run.name[11])}))
    claim = {**TREND, "metric": "probe:toy_edge_fraction", "expect": "increasing", "min_effect": 0.05}
    result = evaluate_claim(claim, collect_runs(sweep_dir))
    assert result.verdict == HOLDS and result.rows[-1].mean == pytest.approx(0.3)


@pytest.mark.slow
def test_export_keeps_small_files_probes_and_figures(tmp_path, monkeypatch):
    from vaelab.experiments import run_sweep
    from vaelab.experiments.studies import export_sweep

    study = tmp_path / "configs" / "04-demo"
    study.mkdir(parents=True)
    spec = {
        "name": "04-demo", "description": "tiny", "seeds": [1, 2], "seed_keys": ["data.toy2d_seed"],
        "base": {"data": {"dataset": "toy2d", "toy2d_train_size": 200, "toy2d_test_size": 100},
                 "model": {"latent_dim": 2, "hidden": [8], "likelihood": "gaussian"},
                 "training": {"epochs": 2, "batch_size": 50, "progress": False, "logger": "csv"},
                 "figures": {"draw_at_end": False}},
        "grid": {"objective.beta": [0.01, 0.1], "training.weight_decay": [0, 0.001]},
        "budgets": {"quick": {"training.epochs": 1}, "full": {}},
        "figures": [{"kind": "toy2d_grid", "rows": "objective.beta", "cols": "training.weight_decay"},
                    {"kind": "latent_scatter", "where": {"training.weight_decay": 0}}],
        "claims": [{"id": "4.x", "claim": "edges", "kind": "trend", "metric": "probe:toy_edge_fraction",
                    "along": "objective.beta", "where": {"training.weight_decay": 0}, "expect": "decreasing",
                    "min_effect": 0.01, "show": ["toy2d_grid"]}],
    }
    path = study / "demo.yaml"
    path.write_text(yaml.safe_dump(spec))
    runs = tmp_path / "runs"
    monkeypatch.chdir(tmp_path)  # a campaign runs from the repository root
    run_sweep(load_sweep(path, "quick", runs / "quick"), jobs=1, verbose=False)
    assert export_sweep(path, runs, "full", tmp_path / "results") is None  # not run at that budget
    out = export_sweep(path, runs, "quick", tmp_path / "results", verbose=False)
    assert out == tmp_path / "results" / "quick" / "04-demo"
    kept = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "sweep.yaml" in kept and "results.csv" in kept and "figures/toy2d_grid.png" in kept
    assert sorted(p for p in kept if p.startswith("figures/latent_scatter/")) == [
        "figures/latent_scatter/beta=0.01-weight_decay=0.png", "figures/latent_scatter/beta=0.1-weight_decay=0.png"]
    run = "beta=0.01-weight_decay=0-seed2"
    assert {f"runs/{run}/{f}" for f in ("config.yaml", "summary.json", "metrics.csv", "probes.json")} <= set(kept)
    assert not any("checkpoints" in p or "tensorboard" in p for p in kept)
    # the kept files name the run's directory relative to where the campaign runs, not this machine's path
    assert yaml.safe_load((out / "runs" / run / "config.yaml").read_text())["output_dir"] == "runs/quick/04-demo/runs"
    assert json.loads((out / "runs" / run / "summary.json").read_text())["run_dir"] == f"runs/quick/04-demo/runs/{run}"
    probes = json.loads((out / "runs" / run / "probes.json").read_text())
    assert set(probes) == {"toy_edge_fraction"} and 0 <= probes["toy_edge_fraction"] <= 1
    # the seeds drew different points
    configs = [yaml.safe_load((out / "runs" / f"beta=0.01-weight_decay=0-seed{k}" / "config.yaml").read_text())
               for k in (1, 2)]
    assert [c["data"]["toy2d_seed"] for c in configs] == [1, 2]
    records = collect_runs(out)
    assert len(records) == 8 and evaluate_claim(spec["claims"][0], records, budget="quick").rows
