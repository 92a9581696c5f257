"""The sweep runner on tiny data: expansion, parallel workers, SIGTERM halfway, re-launch."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import yaml
from PIL import Image

from tests.conftest import make_tiny_dataset
from tests.plots.conftest import history_rows, write_run_dir
from vaelab.cli import main
from vaelab.config import Config
from vaelab.errors import ConfigError
from vaelab.experiments import load_sweep, run_name, run_sweep, summarize_sweep

REPO = Path(__file__).resolve().parents[2]


def spec(root, **extra):
    return {
        "name": "grid",
        "base": {"data": {"dataset": "tiny-mnist", "data_dir": str(root)},
                 "model": {"hidden": [16]}, "training": {"batch_size": 16, "epochs": 2, "progress": False,
                                                         "logger": "csv"}, "figures": {"draw_at_end": False}},
        "grid": {"model.latent_dim": [1, 2], "objective.beta": [0.5, 1.0]},
        "seeds": [1, 2],
        "budgets": {"quick": {"training.epochs": 3}, "full": {"training.epochs": 4}},
        **extra,
    }


def test_expansion_names_and_budgets(tmp_path):
    sweep = load_sweep(spec(tmp_path), "quick", tmp_path / "out")
    assert len(sweep.runs) == 8
    assert sweep.runs[0].name == "latent_dim=1-beta=0.5-seed1"
    assert sweep.runs[0].config["training"]["epochs"] == 3
    assert sweep.runs[0].config["output_dir"] == str(tmp_path / "out" / "grid" / "runs")
    assert load_sweep(spec(tmp_path), "full").runs[0].config["training"]["epochs"] == 4
    variants = load_sweep({**spec(tmp_path), "grid": {}, "variants": [{"name": "cnn", "model.network": "conv3"},
                                                                      {"name": "mlp"}]})
    assert [r.name for r in variants.runs] == ["cnn-network=conv3-seed1", "cnn-network=conv3-seed2",
                                                "mlp-seed1", "mlp-seed2"]
    assert run_name({"model.hidden": [512, 256]}, 3) == "hidden=512x256-seed3"


def test_a_stopping_worker_starts_no_queued_run(tmp_path, monkeypatch):
    # the pool hands a worker its next run before the current one ends; once the sweep is
    # stopping (SIGTERM reached the worker, or its run was interrupted) that run is not started
    import vaelab.experiments.sweep_runner as sweep_module

    root = tmp_path / "data"
    make_tiny_dataset(root)
    run = load_sweep(spec(root), "quick", tmp_path / "out").runs[0]
    monkeypatch.setattr(sweep_module, "_STOPPING", False)
    sweep_module._stop_worker(signal.SIGTERM, None)
    assert sweep_module._train_one(run.config)["status"] == "not started"
    assert not (tmp_path / "out" / "grid" / "runs" / run.name).exists()
    monkeypatch.setattr(sweep_module, "_STOPPING", False)
    assert sweep_module._train_one(run.config)["status"] == "done"


def test_invalid_sweeps_are_rejected_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="unknown sweep keys grids"):
        load_sweep({"grids": {}})
    with pytest.raises(ConfigError, match=r"latent_dim=0-seed1: invalid config: model.latent_dim must be >= 1"):
        load_sweep({**spec(tmp_path), "grid": {"model.latent_dim": [0]}})
    with pytest.raises(ConfigError, match="unknown budget 'huge'"):
        load_sweep(spec(tmp_path), "huge")


def test_claims_are_typed_when_the_sweep_file_loads(tmp_path):
    trend = {"id": "1.1", "claim": "more latents, lower loss", "kind": "trend", "metric": "test_neg_elbo",
             "along": "model.latent_dim", "expect": "decreasing", "min_effect": 1}
    assert len(load_sweep(spec(tmp_path, claims=[trend])).runs) == 8
    path = tmp_path / "study.yaml"
    for change, message in [({"min_efect": 1}, r"claim '1.1': min_efect: Extra inputs are not permitted"),
                            ({"expect": "down"}, r"claim '1.1': expect: Input should be 'increasing' or 'decreasing'"),
                            ({"min_effect": None}, "claim '1.1': state its effect-size floor"),
                            ({"kind": "trends"}, "claim '1.1': kind must be one of trend, compare"),
                            ({"along": 3}, "claim '1.1': along: Input should be a valid string")]:
        claim = {k: v for k, v in {**trend, **change}.items() if v is not None}
        path.write_text(yaml.safe_dump(spec(tmp_path, claims=[claim])))
        with pytest.raises(ConfigError, match=rf"sweep file {path}: {message}"):
            load_sweep(path)
    with pytest.raises(ConfigError, match="appears twice"):
        load_sweep(spec(tmp_path, claims=[trend, trend]))
    value = {"id": "v", "kind": "value", "metric": "test_recon", "expect": {"between": [3.0, 2.0]}}
    with pytest.raises(ConfigError, match="low < high"):
        load_sweep(spec(tmp_path, claims=[value]))


@pytest.mark.slow
def test_sigterm_halfway_then_relaunch_completes_without_repeating_runs(tmp_path):
    root = tmp_path / "data"
    make_tiny_dataset(root)
    sweep_file = tmp_path / "grid.yaml"
    # runs long enough (without figures a tiny run takes a fraction of a second) that the
    # signal lands while some are still to train
    sweep_file.write_text(json.dumps(spec(root, budgets={"quick": {"training.epochs": 30}})))
    out = tmp_path / "out"
    code = ("import sys, functools; from pathlib import Path; from tests.conftest import make_tiny_dataset; "
            "from vaelab.experiments import run_sweep, load_sweep; root = Path(sys.argv[1]); "
            "make_tiny_dataset(root); "
            "run_sweep(load_sweep(sys.argv[2], 'quick', sys.argv[3]), 2, verbose=False, "
            "worker_init=functools.partial(make_tiny_dataset, root))")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(root), str(sweep_file), str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = out / "grid" / "runs"
    deadline = time.monotonic() + 120
    while not list(runs.glob("*/summary.json")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "sweep stopped by SIGTERM" in err
    finished = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/summary.json")}
    assert 1 <= len(finished) < 8

    summary = run_sweep(load_sweep(sweep_file, "quick", out), 2, verbose=False,
                        worker_init=functools.partial(make_tiny_dataset, root))
    assert {name for name, status in summary["statuses"].items() if status == "skipped"} == set(finished)
    assert all(status in ("done", "skipped") for status in summary["statuses"].values())
    for name, mtime in finished.items():
        assert (runs / name / "summary.json").stat().st_mtime_ns == mtime  # not trained again
    table = summary["table"]
    assert len(table) == 4 and all(row["seeds"] == 2 for row in table)
    assert all(row["test_neg_elbo_std"] >= 0 for row in table)
    md = (out / "grid" / "results.md").read_text()
    assert "| latent_dim=1-beta=0.5 | 2 |" in md and "±" in md
    assert (out / "grid" / "results.csv").read_text().count("\n") == 5
    assert main(["sweep-summary", str(out / "grid")]) == 0
    assert [p.name for p in summarize_sweep(out / "grid")["figures"]] == ["compare_latent_dim.png", "compare_beta.png"]


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    root = tmp_path / "data"
    make_tiny_dataset(root)
    bad = {**spec(root), "grid": {"training.batch_size": [16, 500]}, "seeds": [1]}  # 500 > 96 examples
    summary = run_sweep(load_sweep(bad, "quick", tmp_path / "out"), 1, verbose=False,
                        worker_init=functools.partial(make_tiny_dataset, root))
    assert summary["statuses"] == {"batch_size=16-seed1": "done", "batch_size=500-seed1": "failed"}
    error = (tmp_path / "out" / "grid" / "runs" / "batch_size=500-seed1" / "error.txt").read_text()
    assert "training.batch_size=500 is larger than the training set" in error
    assert summary["unfinished"] == ["batch_size=500-seed1"]
    again = summarize_sweep(tmp_path / "out" / "grid")
    assert again["unfinished"] == ["batch_size=500-seed1"]
    # one batch size finished: nothing to compare but its seed, the failed run named, not drawn
    assert [p.name for p in again["figures"]] == ["compare_seed.png"]
    assert again["not_plotted"] == {"batch_size=500-seed1": "not finished"}


# --- the summary's figures, on sweep directories written without training ------------------------


def fake_sweep(root: Path, sweep: dict, skip: dict[str, str] | None = None) -> Path:
    """The directory ``run_sweep`` would leave for ``sweep``, written without training: sweep.yaml
    and each run's config.yaml, metrics.csv and summary.json (losses that depend on the run's
    values). ``skip``: run name -> ``unfinished`` (no summary.json), ``no-metrics`` (a
    summary.json but no metrics.csv) or ``damaged`` (a config.yaml that does not parse)."""
    loaded = load_sweep(sweep, "quick", root)
    loaded.directory.mkdir(parents=True)
    (loaded.directory / "sweep.yaml").write_text(yaml.safe_dump(
        {**sweep, "resolved_runs": [r.name for r in loaded.runs], "keys": loaded.keys, "budget": "quick"}))
    for run in loaded.runs:
        config = Config.from_dict(run.config)
        start = 100 + 20 * config.model.latent_dim + 10 * config.objective.beta + run.seed
        run_dir = loaded.directory / "runs" / run.name
        how = (skip or {}).get(run.name)
        history = history_rows(3, start=start)
        write_run_dir(run_dir, config, [] if how == "no-metrics" else history, summary=False)
        last = history[-1]
        if how != "unfinished":
            (run_dir / "summary.json").write_text(json.dumps({
                "epochs": 3, "eval_split": "test", "seconds_per_epoch": 1.5,
                "final": {m: last[f"test_{m}"] for m in ("recon", "kl", "neg_elbo")},
                "final_train": {m: last[f"train_{m}"] for m in ("recon", "kl", "neg_elbo")}}))
        if how == "damaged":
            (run_dir / "config.yaml").write_text("model: [\n")
    return loaded.directory


def drawn_figures(monkeypatch) -> dict[str, object]:
    """Keep the figures the summary saves (file name -> Figure) to look at their legends."""
    import vaelab.plots.figures as figures

    kept, save = {}, figures.save_figure

    def keep(fig, path):
        kept[Path(path).name] = fig
        return save(fig, path)

    monkeypatch.setattr(figures, "save_figure", keep)
    return kept


def is_png(path: Path) -> bool:
    with Image.open(path) as image:
        image.verify()
        return image.format == "PNG"


def test_summary_draws_the_compare_figures_of_each_swept_key(tmp_path, monkeypatch):
    sweep = {**spec(tmp_path), "seeds": [1, 2, 3]}  # latent_dim {1, 2} x beta {0.5, 1} x 3 seeds
    directory = fake_sweep(tmp_path, sweep, {"latent_dim=2-beta=1-seed3": "unfinished",
                                             "latent_dim=1-beta=0.5-seed3": "no-metrics",
                                             "latent_dim=2-beta=0.5-seed3": "damaged"})
    (directory / "figures").mkdir()
    (directory / "figures" / "compare_hidden.png").write_bytes(b"from an earlier summary")
    kept = drawn_figures(monkeypatch)
    summary = summarize_sweep(directory)

    figures = directory / "figures"
    assert summary["figures"] == [figures / "compare_latent_dim.png", figures / "compare_beta.png"]
    assert all(is_png(p) for p in summary["figures"])
    assert not (figures / "compare_hidden.png").exists()  # stale figures go
    md = (directory / "results.md").read_text()
    assert "![compare_latent_dim](figures/compare_latent_dim.png)" in md
    assert "![compare_beta](figures/compare_beta.png)" in md
    assert "Not finished (1): latent_dim=2-beta=1-seed3" in md
    assert "Not in the figures (2): latent_dim=1-beta=0.5-seed3 (no neg_elbo, recon, kl, train_kl in metrics.csv); " \
           "latent_dim=2-beta=0.5-seed3 (" in md
    assert set(summary["not_plotted"]) == {"latent_dim=1-beta=0.5-seed3", "latent_dim=2-beta=0.5-seed3",
                                           "latent_dim=2-beta=1-seed3"}
    assert "config.yaml" in summary["not_plotted"]["latent_dim=2-beta=0.5-seed3"]
    assert summary["table"][2]["seeds"] == 3  # the table still counts the damaged run's summary

    fig = kept["compare_latent_dim.png"]  # rows: one per beta; colours: one per latent_dim
    legend = fig.legends[0]
    assert legend.get_title().get_text() == "model.latent_dim"
    assert [t.get_text() for t in legend.get_texts()] == ["1", "2"]  # seeds share an entry
    axes = fig.axes
    assert len(axes) == 2 * 4  # 2 values of beta x (negative ELBO, recon, KL, train KL)
    assert axes[0].get_ylabel() == "beta=0.5\nnats per example" and axes[4].get_ylabel().startswith("beta=1\n")
    assert axes[0].get_title() == "test negative ELBO (lower is better)"
    assert len(axes[0].lines) == 2 + 2 and len(axes[4].lines) == 3 + 2  # the runs of each beta
    colours = {}
    for line, run in zip(axes[4].lines, ["latent_dim=1-beta=1-seed1", "latent_dim=1-beta=1-seed2",
                                         "latent_dim=1-beta=1-seed3", "latent_dim=2-beta=1-seed1",
                                         "latent_dim=2-beta=1-seed2"]):
        colours.setdefault(run.split("-")[0], set()).add(line.get_color())
    assert all(len(c) == 1 for c in colours.values()) and len(set.union(*colours.values())) == 2
    assert [t.get_text() for t in kept["compare_beta.png"].legends[0].get_texts()] == ["0.5", "1"]
    assert kept["compare_beta.png"].axes[0].get_ylabel().startswith("latent_dim=1\n")


def test_variants_ordered_values_and_single_settings(tmp_path, monkeypatch):
    kept = drawn_figures(monkeypatch)
    variants = {**spec(tmp_path), "name": "variants", "grid": {},
                "variants": [{"name": "narrow"}, {"name": "wide", "model.hidden": [32]}, {"objective.beta": 2.0}]}
    summary = summarize_sweep(fake_sweep(tmp_path, variants))
    assert [p.name for p in summary["figures"]] == ["compare_variant.png"]
    legend = kept["compare_variant.png"].legends[0]
    assert legend.get_title().get_text() == "variant"
    assert [t.get_text() for t in legend.get_texts()] == ["narrow", "wide", "beta=2"]

    unordered = {**spec(tmp_path), "name": "unordered", "grid": {"objective.beta": [4.0, 0.5, 1.0]}}
    summarize_sweep(fake_sweep(tmp_path, unordered))
    legend = kept["compare_beta.png"].legends[0]  # values in order, as vaelab compare orders them
    assert [t.get_text() for t in legend.get_texts()] == ["0.5", "1", "4"]

    single = {**spec(tmp_path), "name": "single", "grid": {}}
    summary = summarize_sweep(fake_sweep(tmp_path, single))
    assert [p.name for p in summary["figures"]] == ["compare_seed.png"] and is_png(summary["figures"][0])
    assert [t.get_text() for t in kept["compare_seed.png"].legends[0].get_texts()] == ["1", "2"]


def test_sweep_summary_command_writes_the_figures(tmp_path, capsys):
    directory = fake_sweep(tmp_path, spec(tmp_path))
    assert main(["sweep-summary", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "| latent_dim=1-beta=0.5 | 2 |" in out and "![compare_beta](figures/compare_beta.png)" in out
    assert f"wrote {directory / 'figures' / 'compare_latent_dim.png'}" in out
    assert is_png(directory / "figures" / "compare_latent_dim.png") and is_png(directory / "figures" / "compare_beta.png")
    assert main(["sweep-summary", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error:") and "is not a sweep directory" in err and "Traceback" not in err


def test_seed_keys_give_each_run_its_seed(tmp_path):
    sweep = load_sweep(spec(tmp_path, seed_keys=["data.subset_seed"]), "quick")
    assert [(r.seed, r.config["data"]["subset_seed"]) for r in sweep.runs[:2]] == [(1, 1), (2, 2)]
    with pytest.raises(ConfigError, match="seed_keys"):
        load_sweep(spec(tmp_path, seed_keys="data.subset_seed"))


def test_local_workers_default_to_the_gpu_count_and_take_the_gpus_in_turn(monkeypatch):
    import multiprocessing

    import torch

    from vaelab.experiments.sweep_runner import assign_gpu, local_workers

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert local_workers(None, 100)[0] == (os.cpu_count() or 1) and local_workers(None, 100)[2] == []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    jobs, threads, ids = local_workers(None, 100)
    assert (jobs, ids) == (2, ["0", "1"]) and threads == max(1, (os.cpu_count() or 1) // 2)
    assert local_workers(3, 100)[0] == 3 and local_workers(None, 1)[0] == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert local_workers(None, 100)[2] == ["5", "7"]
    counter = multiprocessing.get_context("spawn").Value("i", 0)
    assert [assign_gpu(counter, ["5", "7"]) for _ in range(5)] == ["5", "7", "5", "7", "5"]
