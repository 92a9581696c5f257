"""`vaelab plot RUN_DIR`: every figure from the run directory and checkpoint alone, without
training; clear one-line errors for missing or damaged files."""

import hashlib
import json
import math
import shutil

import pytest
import torch

from vaelab.cli import main
from vaelab.config import Config
from vaelab.errors import CheckpointError, ConfigError
from vaelab.plots import plot_run, read_run
from vaelab.plots.figures import tick_label_width

from .conftest import history_rows, png_size, synthetic_dataset, tiny_model, write_run_dir

IMAGE_KINDS = ["loss_curves", "reconstructions", "samples", "latent_manifold", "latent_scatter",
               "singular_values", "interpolations"]


def digest_outside_figures(run_dir):
    return {p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and "figures" not in p.parts}


def test_training_wrote_every_figure_of_a_2d_latent_run(trained_runs):
    figures = trained_runs["z2"] / "figures"
    assert sorted(p.stem for p in figures.glob("*.png")) == sorted(IMAGE_KINDS)
    for png in figures.glob("*.png"):
        width, height = png_size(png)
        assert width >= 400 and height >= 300, png.name
    spectrum = json.loads((figures / "latent_spectrum.json").read_text())
    assert spectrum["latent_dim"] == 2 and spectrum["n_examples"] == 40 and set(spectrum["dims_needed"]) == {
        "95%", "98.5%", "99%"}


def test_plot_redraws_from_the_run_directory_without_training(trained_runs, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "copy"
    shutil.copytree(trained_runs["z3"], run_dir)
    shutil.rmtree(run_dir / "figures")
    before = digest_outside_figures(run_dir)

    def no_training(*args, **kwargs):
        raise AssertionError("plotting must not train")

    import vaelab.training.runs as runs
    import vaelab.training.trainer as trainer

    monkeypatch.setattr(runs, "_fit", no_training)
    monkeypatch.setattr(trainer, "train_epoch", no_training)
    monkeypatch.setattr(torch.optim.Optimizer, "step", no_training)
    assert main(["plot", str(run_dir)]) == 0
    printed = capsys.readouterr().out.split()
    written = sorted(p.name for p in (run_dir / "figures").iterdir())
    assert written == sorted([f"{k}.png" for k in IMAGE_KINDS] + ["latent_spectrum.json"])
    assert sorted(p.rsplit("/", 1)[-1] for p in printed) == written
    assert digest_outside_figures(run_dir) == before  # checkpoints, metrics, config untouched
    # the same model drawn twice gives the same pixels
    first = (run_dir / "figures" / "samples.png").read_bytes()
    assert main(["plot", str(run_dir), "--kind", "samples"]) == 0
    assert (run_dir / "figures" / "samples.png").read_bytes() == first


def test_plot_options_kinds_and_output_dir(trained_runs, tmp_path, capsys):
    out = tmp_path / "elsewhere"
    assert main(["plot", str(trained_runs["z2"]), "--kind", "latent-manifold", "loss_curves", "--output-dir",
                 str(out), "--manifold-range", "-5", "5", "--manifold-steps", "7", "--log-scale",
                 "--checkpoint", "best"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["latent_manifold.png", "loss_curves.png"]
    width, _ = png_size(out / "latent_manifold.png")
    assert width == 7 * 28 * round(900 / (7 * 28)) + 12 + tick_label_width(2) + 22 + 12


@pytest.mark.parametrize("args, message", [
    (["--kind", "toy2d"], "cannot draw toy2d for"),
    (["--kind", "reconstruction"], "unknown figure kind 'reconstruction'; did you mean reconstructions?"),
    (["--manifold-dims", "1", "5"], "figures.manifold_dims [1, 5] must be at most model.latent_dim=2"),
    (["--manifold-dims", "0", "1"], "must be two different latent dimensions counted from 1"),
])
def test_plot_rejects_bad_requests_in_one_line(trained_runs, tmp_path, capsys, args, message):
    assert main(["plot", str(trained_runs["z2"]), "--output-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def _damage(run_dir, what):
    if what == "no config.yaml":
        (run_dir / "config.yaml").unlink()
    elif what == "bad config.yaml":
        (run_dir / "config.yaml").write_text("model:\n  latent_dim: zero\n")
    elif what == "truncated metrics.csv":
        lines = (run_dir / "metrics.csv").read_text().splitlines()
        lines[-1] = ",".join(lines[-1].split(",")[:5])  # a copy interrupted in the middle of the last row
        (run_dir / "metrics.csv").write_text("\n".join(lines))
    elif what == "no checkpoint":
        (run_dir / "checkpoints" / "last.safetensors").unlink()
    elif what == "no checkpoints at all":
        shutil.rmtree(run_dir / "checkpoints")
    elif what == "corrupt checkpoint":
        path = run_dir / "checkpoints" / "last.safetensors"
        path.write_bytes(path.read_bytes()[:100])
    elif what == "bad summary.json":
        (run_dir / "summary.json").write_text('{"epochs": 2,')


@pytest.mark.parametrize("what, message", [
    ("no config.yaml", "is not a run directory: config.yaml is missing (found: checkpoints, environment.json"),
    ("bad config.yaml", "cannot use the run's config: in " + "RUN/config.yaml: invalid config: model.latent_dim must be an integer"),
    ("truncated metrics.csv", "metrics.csv, line 3: 5 values for"),  # 8 columns in the core, more later
    ("no checkpoint", "has no checkpoints/last.safetensors (it has best.safetensors: pass --checkpoint best)"),
    ("no checkpoints at all", "has no checkpoints/last.safetensors (the run has not finished an epoch yet"),
    ("corrupt checkpoint", "is not a readable checkpoint"),
    ("bad summary.json", "summary.json is not valid JSON"),
])
def test_missing_or_partial_files_give_one_clear_line(trained_runs, tmp_path, capsys, what, message):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_runs["z2"], run_dir)
    shutil.rmtree(run_dir / "figures")
    _damage(run_dir, what)
    assert main(["plot", str(run_dir)]) == 2
    err = capsys.readouterr().err.replace(str(run_dir), "RUN")
    assert err.startswith("vaelab: error: ") and message in err, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (run_dir / "figures").exists()  # nothing half-drawn


def test_missing_run_directory(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nope")]) == 2
    assert "run directory " + str(tmp_path / "nope") + " does not exist" in capsys.readouterr().err


def test_a_run_still_training_is_plotted(trained_runs, tmp_path):
    run_dir = tmp_path / "running"
    shutil.copytree(trained_runs["z2"], run_dir)
    shutil.rmtree(run_dir / "figures")
    (run_dir / "summary.json").unlink()
    record = read_run(run_dir)
    assert not record.finished and len(record.history) == 2 and record.eval_name == "test"
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[2] = ""  # a metric not computed at epoch 1 (an empty cell) reads as NaN
    (run_dir / "metrics.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    assert math.isnan(read_run(run_dir).history[0][lines[0].split(",")[2]])
    paths = plot_run(run_dir, ["loss_curves", "samples"])
    assert [p.name for p in paths] == ["loss_curves.png", "samples.png"]
    # before the first epoch: no metrics yet, so only the loss curves are refused
    (run_dir / "metrics.csv").unlink()
    with pytest.raises(CheckpointError, match="metrics.csv is missing or has no rows"):
        plot_run(run_dir, ["loss_curves"])
    assert [p.name for p in plot_run(run_dir, ["samples"])] == ["samples.png"]


@pytest.mark.parametrize("shape, latent_dim", [((1, 28, 20), 2), ((3, 32, 32), 20)])
def test_frey_shaped_and_colour_runs(tmp_path, shape, latent_dim):
    dataset = synthetic_dataset("synthetic", shape, n_test=60)
    model = tiny_model(shape, latent_dim)
    config = Config.from_dict({"model": {"latent_dim": latent_dim, "hidden": [8]}})
    run_dir = write_run_dir(tmp_path / "run", config, history_rows(3), model, shape)
    paths = plot_run(run_dir, dataset=dataset)
    assert sorted(p.stem for p in paths if p.suffix == ".png") == sorted(IMAGE_KINDS)
    c, h, w = shape
    from .conftest import png_array

    pixels = png_array(run_dir / "figures" / "samples.png")
    grid_w, grid_h = 8 * (w + 1) + 1, 8 * (h + 1) + 1
    scale = (pixels.shape[1] - 24) // grid_w
    assert pixels.shape[1] == grid_w * scale + 24 and pixels.shape[0] == grid_h * scale + 33 + 12  # aspect kept
    assert ((pixels[..., 0] != pixels[..., 1]).any()) == (c == 3)  # colour only for colour data


def test_point_data_runs_get_the_toy2d_figure(tmp_path):
    dataset = synthetic_dataset("toy", (1, 1, 2), n_test=120, kind="points")
    config = Config.from_dict({"model": {"latent_dim": 2, "hidden": [8]}})
    run_dir = write_run_dir(tmp_path / "run", config, history_rows(2), tiny_model((1, 1, 2), 2), (1, 1, 2))
    paths = plot_run(run_dir, dataset=dataset)
    assert sorted(p.stem for p in paths if p.suffix == ".png") == sorted(
        ["loss_curves", "samples", "latent_manifold", "latent_scatter", "singular_values", "toy2d"])
    assert png_size(run_dir / "figures" / "toy2d.png") == (1600, 540)
    with pytest.raises(ConfigError, match="reconstructions are drawn for image data; for point data see the toy2d"):
        plot_run(run_dir, ["reconstructions"], dataset=dataset)
