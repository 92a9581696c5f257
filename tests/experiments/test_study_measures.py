"""The study measures: Holm's correction over a study's claims, the probes of reconstructions,
interpolations, sharpness and samples, kept results that lack what a sweep file now asks, and
merging kept runs with new ones."""

import json
import math

import pytest
import torch
import yaml

from tests.experiments.test_studies import LATENT, TREND, fabricate
from vaelab.experiments import load_sweep
from vaelab.experiments.claims import (FAILS, HOLDS, INCONCLUSIVE, ClaimResult, collect_runs, evaluate_claim, holm,
                                       holm_verdicts)


def test_holm_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, 0.2]
    # sorted 0.01, 0.03, 0.04, 0.2 -> 4 * 0.01, max(0.04, 3 * 0.03), max(0.09, 2 * 0.04), max(0.09, 0.2)
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([]) == []
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_every_numeric_verdict_keeps_the_p_value_it_rests_on(tmp_path):
    records = collect_runs(fabricate(tmp_path, "s", LATENT, {"latent_dim=1": [150, 151], "latent_dim=2": [140, 141],
                                                            "latent_dim=3": [130, 131]}))
    trend = evaluate_claim(TREND, records)
    assert trend.verdict == HOLDS and 0 < trend.p < 0.05
    compare = evaluate_claim({"id": "c", "claim": "", "kind": "compare", "metric": "test_recon", "expect": "lower",
                              "first": {"model.latent_dim": 3}, "second": {"model.latent_dim": 1}, "min_effect": 1},
                             records)
    assert compare.verdict == HOLDS and compare.p == pytest.approx(trend.p)
    value = evaluate_claim({"id": "v", "claim": "", "kind": "value", "metric": "test_recon",
                            "where": {"model.latent_dim": 3}, "expect": {"below": 140}}, records)
    assert value.verdict == HOLDS and value.p < 0.05


def test_holm_turns_a_marginal_verdict_inconclusive_and_leaves_the_others():
    results = [ClaimResult("a", "", HOLDS, "", p=0.001), ClaimResult("b", "", HOLDS, "", p=0.03),
               ClaimResult("c", "", FAILS, "", p=0.02), ClaimResult("d", "", INCONCLUSIVE, "", p=0.4),
               ClaimResult("e", "", HOLDS, "")]  # a figure claim: no test, not in the family
    after = holm_verdicts(results)
    assert set(after) == {"a", "b", "c", "d"}
    assert after["a"] == (pytest.approx(0.004), HOLDS)
    assert after["c"][1] == INCONCLUSIVE and after["c"][0] == pytest.approx(0.06)  # 3 * 0.02
    assert after["b"][1] == INCONCLUSIVE and after["d"][1] == INCONCLUSIVE


class Linear(torch.nn.Module):
    """A 'VAE' whose posterior mean is the first two pixels and whose decoder maps z linearly
    to an image: decoded interpolations move by equal steps."""

    latent_dim = 2

    def __init__(self):
        super().__init__()
        self.weight = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))

    def posterior(self, x):
        loc = x.flatten(1)[:, :2]
        return torch.distributions.Independent(torch.distributions.Normal(loc, torch.ones_like(loc)), 1)

    def decode_mean(self, z):
        return (z @ self.weight).reshape(-1, 1, 4, 4)

    def prior_distribution(self):
        return torch.distributions.Independent(torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1)


def test_interpolation_and_reconstruction_probes_against_closed_forms():
    from vaelab.experiments.probes import interpolation_max_step, recon_sse

    model = Linear()
    images = torch.rand(50, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    # a linear decoder moves the image by the same amount at each of the 9 steps: 1/9
    assert interpolation_max_step(model, images) == pytest.approx(1 / 9)
    expected = (images.double() - model.decode_mean(images.flatten(1)[:, :2]).reshape(images.shape).double()
                ).pow(2).flatten(1).sum(1).mean().item()
    assert recon_sse(model, images, batch_size=7) == pytest.approx(expected)


def test_sharpness_is_a_median_so_a_few_speckled_samples_do_not_decide_it():
    from vaelab.experiments.probes import sample_sharpness

    class Decoder(Linear):
        def decode_mean(self, z):  # a smooth ramp, and pure speckle for one sample in ten
            ramp = torch.linspace(0, 1, 16).reshape(1, 1, 4, 4).expand(len(z), 1, 4, 4).clone()
            noisy = torch.arange(len(z)) % 10 == 0
            ramp[noisy] = torch.rand(int(noisy.sum()), 1, 4, 4, generator=torch.Generator().manual_seed(0))
            return ramp

    smooth = sample_sharpness(Decoder(), None, n=100)
    from scipy import ndimage

    ramp = torch.linspace(0, 1, 16).reshape(4, 4).double().numpy()
    assert smooth == pytest.approx(ndimage.laplace(ramp).var())


def test_classifier_probes_use_the_independent_classifier(tiny_data, tmp_path):
    from vaelab.evaluation.classifier import train_classifier
    from vaelab.experiments.probes import recon_accuracy, sample_class_entropy
    from vaelab.models import build_model
    from vaelab.config import Config
    from vaelab.errors import CheckpointError

    root, spec = tiny_data
    config = Config.from_dict({"data": {"dataset": "tiny-mnist", "data_dir": str(root)}, "model": {"hidden": [8],
                                                                                                   "latent_dim": 2}})
    model = build_model(config.model, (1, 28, 28)).eval()
    images, labels = torch.rand(30, 1, 28, 28), torch.arange(30) % 10
    with pytest.raises(CheckpointError, match="recipe independent.*--recipe independent"):
        recon_accuracy(model, images, labels, "tiny-mnist")
    train_classifier({"dataset": "tiny-mnist", "recipe": "independent", "epochs": 1, "channels": [2, 2, 4, 4],
                      "hidden": 8, "data_dir": str(root)}, verbose=False)
    with torch.inference_mode():
        accuracy = recon_accuracy(model, images, labels, "tiny-mnist")
        entropy = sample_class_entropy(model, images, labels, "tiny-mnist", n=200)
    assert 0 <= accuracy <= 1 and 0 <= entropy <= math.log(10) + 1e-9


def test_kept_runs_lacking_what_the_sweep_now_asks_are_not_kept(tmp_path):
    """A kept run counts when its config is the sweep's and its results hold the probes,
    evaluation keys and (first seed) figures that the sweep file now asks for."""
    from vaelab.experiments import run_sweep
    from vaelab.experiments.studies import export_sweep, kept_runs

    study = tmp_path / "configs" / "04-demo"
    study.mkdir(parents=True)
    spec = {"name": "04-demo", "description": "tiny", "seeds": [1, 2], "seed_keys": ["data.toy2d_seed"],
            "base": {"data": {"dataset": "toy2d", "toy2d_train_size": 200, "toy2d_test_size": 100},
                     "model": {"latent_dim": 2, "hidden": [8], "likelihood": "gaussian"},
                     "training": {"epochs": 1, "batch_size": 50, "progress": False, "logger": "csv"},
                     "figures": {"draw_at_end": False}},
            "grid": {"objective.beta": [0.01, 0.1]}, "budgets": {"quick": {}, "full": {}}}
    path = study / "demo.yaml"
    path.write_text(yaml.safe_dump(spec))
    runs, results = tmp_path / "runs", tmp_path / "results"
    run_sweep(load_sweep(path, "quick", runs / "quick"), jobs=1, verbose=False)
    export_sweep(path, runs, "quick", results, verbose=False)
    assert len(kept_runs(path, "quick", results)) == 4
    # a claim now asks for a probe the kept results lack: none is complete, all still match
    spec["claims"] = [{"id": "4.x", "claim": "edges", "kind": "trend", "metric": "probe:toy_edge_fraction",
                       "along": "objective.beta", "expect": "decreasing", "min_effect": 0.01}]
    spec["figures"] = [{"kind": "latent_scatter"}]
    path.write_text(yaml.safe_dump(spec))
    assert kept_runs(path, "quick", results) == {}
    assert len(kept_runs(path, "quick", results, complete=False)) == 4
    # the checkpoints are still there: a new export adds the probes and the first seeds' figures
    export_sweep(path, runs, "quick", results, verbose=False)
    assert len(kept_runs(path, "quick", results)) == 4
    # a kept run without its checkpoint is merged with the others as it was kept
    import shutil

    shutil.rmtree(runs / "quick" / "04-demo" / "runs" / "beta=0.1-seed2")
    export_sweep(path, runs, "quick", results, verbose=False)
    assert len(kept_runs(path, "quick", results)) == 4
    kept = json.loads((results / "quick" / "04-demo" / "runs" / "beta=0.1-seed2" / "probes.json").read_text())
    assert set(kept) == {"toy_edge_fraction"}
    # an edited config: the kept run is no longer the sweep's
    spec["base"]["training"]["epochs"] = 2
    path.write_text(yaml.safe_dump(spec))
    assert kept_runs(path, "quick", results, complete=False) == {}


def test_a_random_test_split_pools_the_examples_and_keeps_the_sizes(tiny_data):
    from vaelab.config import DataConfig
    from vaelab.data import load_dataset

    root, _ = tiny_data
    own = load_dataset(DataConfig(dataset="tiny-mnist", data_dir=str(root)))
    drawn = load_dataset(DataConfig(dataset="tiny-mnist", data_dir=str(root), test_split_seed=3))
    again = load_dataset(DataConfig(dataset="tiny-mnist", data_dir=str(root), test_split_seed=3))
    other = load_dataset(DataConfig(dataset="tiny-mnist", data_dir=str(root), test_split_seed=4))
    assert len(drawn.train) == len(own.train) and len(drawn.test) == len(own.test)
    assert torch.equal(drawn.test.images, again.test.images)
    assert not torch.equal(drawn.test.images, other.test.images)
    pooled = torch.cat([own.train.images, own.test.images]).flatten(1)
    for split in (drawn.train, drawn.test):  # every example comes from the pool, none twice
        rows = {tuple(r.tolist()) for r in split.images.flatten(1)}
        assert len(rows) == len(split.images)
    drawn_rows = {tuple(r.tolist()) for r in torch.cat([drawn.train.images, drawn.test.images]).flatten(1)}
    assert drawn_rows == {tuple(r.tolist()) for r in pooled}
    with_val = load_dataset(DataConfig(dataset="tiny-mnist", data_dir=str(root), test_split_seed=3, validation_size=10))
    assert torch.equal(with_val.test.images, drawn.test.images) and len(with_val.validation) == 10


def test_evaluation_records_which_classifier_scored_the_samples(tiny_data, tmp_path):
    from vaelab.evaluation import evaluate
    from vaelab.evaluation.classifier import train_classifier
    from vaelab import train

    root, _ = tiny_data
    tiny = {"epochs": 1, "channels": [2, 2, 4, 4], "hidden": 8, "data_dir": str(root), "dataset": "tiny-mnist"}
    train_classifier(tiny, verbose=False)
    train_classifier({**tiny, "recipe": "independent"}, verbose=False)
    run = train({"data": {"dataset": "tiny-mnist", "data_dir": str(root)}, "model": {"hidden": [8], "latent_dim": 2},
                 "objective": {"reconstruction": "perceptual+likelihood", "perceptual_weight": 0.01},
                 "training": {"epochs": 1, "batch_size": 16, "progress": False}, "output_dir": str(tmp_path),
                 "name": "p", "figures": {"tensorboard_images_every": 0}}, verbose=False)
    options = {"k": 2, "probe": False, "fid": "classifier", "fid_samples": 50, "checkpoint": "last"}
    default = evaluate(run.run_dir, options, verbose=False).results
    assert default["classifier"] == "default" and default["samples"]["classifier_recipe"] == "default"
    assert "trained against the same classifier" in default["samples"]["classifier_bias"]
    independent = evaluate(run.run_dir, {**options, "classifier": "independent"}, verbose=False).results
    samples = independent["samples"]
    assert independent["classifier"] == "independent" and samples["classifier_config"]["seed"] == 2
    assert samples["classifier_sha256"] != default["samples"]["classifier_sha256"]
    assert "classifier_bias" not in samples and 0.1 <= samples["class_confidence"] <= 1


def test_kl_curve_rule_needs_the_step_log_and_judges_fall_and_rise(tmp_path):
    from vaelab.experiments.claims import falls_then_rises

    claim = {"id": "k", "claim": "kl", "kind": "curve", "metric": "curve:kl", "expect": "falls_then_rises"}
    sweep = fabricate(tmp_path, "s", {"a": {}}, {"a": [1, 1, 1]}, kl_curves={"a": [[5.0, 4.0, 6.0]] * 3})
    records = collect_runs(sweep)
    result = evaluate_claim(claim, records)
    assert result.verdict == INCONCLUSIVE and "logged the KL within epochs" in result.reason
    # step logs: the training KL rises fast, then drops (the fall), for two runs; the third never drops
    logs = {1: [1.0, 8.0, 6.0, 5.0], 2: [2.0, 9.0, 7.5, 7.0], 3: [1.0, 3.0, 5.0, 6.0]}
    for record in records:
        rows = ["epoch,step,train_recon,train_kl,train_neg_elbo,kl_weight,epoch_examples,epoch_recon_sum,epoch_kl_sum"]
        rows += [f"1,{25 * (i + 1)},100,{kl},{100 + kl},1,0,0,0" for i, kl in enumerate(logs[record.seed])]
        (record.run_dir / "steps.csv").write_text("\n".join(rows) + "\n")
    assert [falls_then_rises(r, 0.01) for r in records] == [True, True, False]
    result = evaluate_claim(claim, records)
    assert result.verdict == INCONCLUSIVE and "2 of 3 runs" in result.reason
    third = next(r for r in records if r.seed == 3)  # its log now dips too
    text = (third.run_dir / "steps.csv").read_text().splitlines()
    (third.run_dir / "steps.csv").write_text("\n".join(text[:-1] + [text[-1].replace(",6.0,106.0,", ",2.0,102.0,")]) + "\n")
    assert evaluate_claim(claim, collect_runs(sweep)).verdict == HOLDS  # the test KL of every run: 5, 4, 6
    flat = fabricate(tmp_path / "flat", "s", {"a": {}}, {"a": [1, 1, 1]}, kl_curves={"a": [[5.0, 6.0, 7.0]] * 3})
    for record in collect_runs(flat):
        (record.run_dir / "steps.csv").write_text((sweep / "runs" / record.name / "steps.csv").read_text())
    assert evaluate_claim(claim, collect_runs(flat)).verdict == FAILS  # the test KL never rises from a minimum inside


@pytest.mark.slow
def test_the_step_log_of_a_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    import csv
    import os
    import signal
    import time

    from tests.conftest import make_tiny_dataset
    from tests.training.test_reliability import TINY, child, wait_for
    from vaelab.cli import main

    root = tmp_path / "data"
    make_tiny_dataset(root)
    common = [*TINY, "--data-dir", str(root), "--output-dir", str(tmp_path), "--epochs", "4",
              "--checkpoint-every-steps", "3", "--log-every-steps", "2", "--log-steps-epochs", "3"]
    assert main(["train", *common, "--name", "straight"]) == 0
    proc = child(root, ["train", *common, "--name", "killed"])
    wait_for(tmp_path / "killed" / "checkpoints" / "last.safetensors", proc)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert main(["train", "--resume", str(tmp_path / "killed")]) == 0
    straight = (tmp_path / "straight" / "steps.csv").read_text()
    assert (tmp_path / "killed" / "steps.csv").read_text() == straight
    rows = list(csv.DictReader(straight.splitlines()))
    assert {int(r["epoch"]) for r in rows} == {1, 2, 3} and all(int(r["step"]) % 2 == 0 for r in rows)
    # each row is the mean over its own two steps: the epoch's sums rebuild from the rows
    first = [r for r in rows if r["epoch"] == "1"]
    assert float(first[-1]["epoch_kl_sum"]) / int(first[-1]["epoch_examples"]) == pytest.approx(
        sum(float(r["train_kl"]) * (int(r["epoch_examples"]) - int(p["epoch_examples"]) if p else int(r["epoch_examples"]))
            for r, p in zip(first, [None] + first[:-1])) / int(first[-1]["epoch_examples"]))


def test_a_run_with_a_validation_split_is_kept_by_its_test_evaluation(tmp_path):
    """A run that selects on a validation split (``eval_split: val``) is still evaluated on the
    split the sweep file's ``evaluate:`` names (test), and counts as kept by that evaluation:
    a clone with the kept results and no checkpoints trains nothing again."""
    import shutil

    from vaelab.experiments import run_sweep
    from vaelab.experiments.studies import export_sweep, kept_runs

    study = tmp_path / "configs" / "05-demo"
    study.mkdir(parents=True)
    spec = {"name": "05-demo", "description": "tiny", "seeds": [1, 2], "seed_keys": ["data.toy2d_seed"],
            "base": {"data": {"dataset": "toy2d", "toy2d_train_size": 200, "toy2d_test_size": 100,
                              "validation_size": 50},
                     "model": {"latent_dim": 2, "hidden": [8], "likelihood": "gaussian"},
                     "training": {"epochs": 1, "batch_size": 50, "progress": False, "logger": "csv"},
                     "figures": {"draw_at_end": False}},
            "evaluate": {"checkpoint": "best", "split": "test", "k": 5, "probe": False, "fid": "none"},
            "grid": {"objective.beta": [0.1]}, "budgets": {"quick": {}}}
    path = study / "demo.yaml"
    path.write_text(yaml.safe_dump(spec))
    runs, results = tmp_path / "runs", tmp_path / "results"
    run_sweep(load_sweep(path, "quick", runs / "quick"), jobs=1, verbose=False)
    export_sweep(path, runs, "quick", results, verbose=False)
    kept = results / "quick" / "05-demo" / "runs" / "beta=0.1-seed1"
    assert json.loads((kept / "summary.json").read_text())["eval_split"] == "val"
    assert json.loads((kept / "evaluation.json").read_text())["split"] == "test"
    shutil.rmtree(runs)
    assert len(kept_runs(path, "quick", results)) == 2
