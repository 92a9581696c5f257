"""A resume, evaluate or plot never trusts an edited config.yaml or a wrong checkpoint value: the
checkpoint's config is the run's truth, every checkpoint field is validated, a resume that
trains nothing changes nothing, and environment.json keeps the run's provenance."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from vaelab.cli import main
from vaelab.errors import CheckpointError
from vaelab.plots import plot_run
from vaelab.training import read_checkpoint

TINY = ["--dataset", "tiny-mnist", "--hidden", "16", "--batch-size", "8", "--no-progress", "--latent-dim", "2"]


def run_files(run_dir):
    return {p.relative_to(run_dir).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}  # the lock is no content


@pytest.fixture
def run(tiny_data, tmp_path):
    root, _ = tiny_data
    assert main(["train", *TINY, "--data-dir", str(root), "--output-dir", str(tmp_path), "--name", "r",
                 "--epochs", "1", "--quiet"]) == 0
    return tmp_path / "r"


def rewrite(path, meta=None, tensors=None, out=None):
    """Copy the checkpoint at ``path`` to ``out`` (default: itself) with metadata keys and tensors
    replaced."""
    with safe_open(str(path), framework="pt") as f:
        values, arrays = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    values.update(meta or {})
    for key, value in (tensors or {}).items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    save_file(arrays, str(out or path), metadata=values)
    return out or path


def edit_state(path, out, **changes):
    with safe_open(str(path), framework="pt") as f:
        state = json.loads(f.metadata()["training_state"])
    state.update(changes)
    return rewrite(path, {"training_state": json.dumps(state)}, out=out)


def test_every_checkpoint_field_is_validated_and_the_error_names_it(run, tmp_path):
    last = run / "checkpoints" / "last.safetensors"
    with safe_open(str(last), framework="pt") as f:
        rng = json.loads(f.metadata()["rng"])
        exp_avg = f.get_tensor("optimizer.state.0.exp_avg")
    position = {"step": 2, "recon_total": 0.0, "kl_total": 0.0, "n_seen": 16, "seconds": 0.0, "kl_weight": 1.0,
                "extra_totals": {}}
    cases = {
        "training_state.epoch": [edit_state(last, tmp_path / "a.safetensors", epoch=-1),
                                 edit_state(last, tmp_path / "b.safetensors", epoch="1")],
        "data.order": [rewrite(edit_state(last, tmp_path / "c.safetensors", position=position),
                               tensors={"data.order": torch.arange(96) + 1})],
        "rng.torch": [rewrite(last, tensors={"rng.torch": torch.zeros(7, dtype=torch.uint8)},
                              out=tmp_path / "d.safetensors")],
        "rng.numpy": [rewrite(last, {"rng": json.dumps({**rng, "numpy": ["MT19937", [1, 2], 0, 0, 0.0]})},
                              out=tmp_path / "e.safetensors")],
        "optimizer.state.0.exp_avg": [rewrite(last, tensors={"optimizer.state.0.exp_avg": exp_avg.long()},
                                              out=tmp_path / "f.safetensors")],
        "training_state.best_epoch": [edit_state(last, tmp_path / "g.safetensors", best_epoch=7)],
    }
    for field, paths in cases.items():
        for path in paths:
            with pytest.raises(CheckpointError, match=f"checkpoint field {field}[ .].*use (the other|another) checkpoint"):
                read_checkpoint(path)
    read_checkpoint(last)  # the untouched one is fine


def test_a_resume_refuses_checkpoint_values_that_do_not_fit_the_run(run, capsys):
    last = run / "checkpoints" / "last.safetensors"
    before = (run / "metrics.csv").read_bytes()
    with safe_open(str(last), framework="pt") as f:
        exp_avg = f.get_tensor("optimizer.state.0.exp_avg")
    good = last.read_bytes()
    rewrite(last, tensors={"optimizer.state.0.exp_avg": exp_avg[:1]})
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint field optimizer.state.0.exp_avg has shape" in err and "Traceback" not in err
    last.write_bytes(good)
    position = {"step": 2, "recon_total": 0.0, "kl_total": 0.0, "n_seen": 16, "seconds": 0.0, "kl_weight": 1.0,
                "extra_totals": {}}
    rewrite(edit_state(last, last, position=position), tensors={"data.order": torch.randperm(50)})
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert "checkpoint field data.order has 50 entries for a training set of 96" in capsys.readouterr().err
    assert (run / "metrics.csv").read_bytes() == before


def test_resume_trusts_the_checkpoint_not_an_edited_or_empty_config(run, capsys):
    config_path = run / "config.yaml"
    original = config_path.read_text()
    edited = yaml.safe_load(original)
    edited["data"]["dataset"] = "fashion-mnist"
    config_path.write_text(yaml.safe_dump(edited))
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "config.yaml differs from the run's checkpoint (data.dataset: 'tiny-mnist' in the checkpoint, " \
           "'fashion-mnist' in config.yaml); a resume may change only" in err
    config_path.write_text("")
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert "config.yaml is empty; restore it, or delete it" in capsys.readouterr().err
    config_path.write_bytes(b"\x89PNG\x00\xff")
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err
    config_path.unlink()  # the checkpoint's config is used, and config.yaml written again
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert yaml.safe_load(config_path.read_text())["data"]["dataset"] == "tiny-mnist"


def test_resume_may_lower_the_learning_rate_and_uses_it_and_records_the_resume(run, tmp_path):
    env = json.loads((run / "environment.json").read_text())
    assert main(["train", "--resume", str(run), "--epochs", "2", "--learning-rate", "1e-4", "--quiet"]) == 0
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    rates = [float(r.split(",")[header.index("learning_rate")]) for r in rows[1:]]
    assert rates == [pytest.approx(1e-3), pytest.approx(1e-4)]
    assert yaml.safe_load((run / "config.yaml").read_text())["training"]["learning_rate"] == 1e-4
    after = json.loads((run / "environment.json").read_text())
    assert after["command"] == env["command"] and after["started"] == env["started"]
    (entry,) = after["resumes"]
    assert entry["from_epoch"] == 1 and entry["command"][:3] == ["vaelab", "train", "--resume"]
    assert entry["changed"] == {"training.epochs": {"from": 1, "to": 2},
                                "training.learning_rate": {"from": 0.001, "to": 0.0001}}


def test_a_resume_with_nothing_to_train_changes_nothing(run, capsys):
    before = run_files(run)
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 0
    assert main(["train", "--resume", str(run)]) == 0  # config.yaml says 1 epoch, 1 is done
    out = capsys.readouterr().out
    assert f"run {run} already finished 1 epochs: nothing to do, nothing changed" in out
    assert run_files(run) == before


def test_plot_and_evaluate_take_model_and_data_from_the_checkpoint(run, capsys):
    config_path = run / "config.yaml"
    edited = yaml.safe_load(config_path.read_text())
    edited["data"]["dataset"] = "fashion-mnist"  # not available here: using it would fail
    edited["model"]["latent_dim"] = 7
    config_path.write_text(yaml.safe_dump(edited))
    assert plot_run(run, ["reconstructions"])
    assert main(["evaluate", str(run), "--k", "2", "--examples", "8", "--no-probe", "--fid", "none",
                 "--quiet"]) == 0
    assert json.loads((run / "evaluation.json").read_text())["dataset"] == "tiny-mnist"


def test_nan_weights_are_found_before_plot_overwrites_a_figure(run, capsys):
    last = run / "checkpoints" / "last.safetensors"
    with safe_open(str(last), framework="pt") as f:
        name = next(k for k in f.keys() if k.startswith("model.") and k.endswith("weight"))
        weight = f.get_tensor(name)
    weight[0, 0] = float("nan")
    rewrite(last, tensors={name: weight})
    figures = run_files(run / "figures")
    assert main(["plot", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint field {name} holds non-finite values (NaN or inf)" in err
    assert "use the other checkpoint" in err and "Traceback" not in err
    assert run_files(run / "figures") == figures


def test_an_epoch_with_every_step_skipped_is_a_failure(run, monkeypatch, capsys):
    from vaelab.objectives import Objective

    real = Objective.__call__
    monkeypatch.setattr(Objective, "__call__",
                        lambda *a, **k: real(*a, **k)._replace(recon=torch.full((a[2].shape[0],), float("nan"))))
    # the fix the message of a non-finite loss suggests is accepted on --resume
    assert main(["train", "--resume", str(run), "--epochs", "2", "--nonfinite", "skip",
                 "--max-skipped-steps", "1000"]) == 2
    err = capsys.readouterr().err
    assert "epoch 2: every one of its 12 steps was skipped (non-finite), so it has no result; training stopped" in err
    assert f"The last good checkpoint is kept: {run / 'checkpoints' / 'last.safetensors'}" in err
    assert read_checkpoint(run / "checkpoints" / "last.safetensors").training_state.epoch == 1
    assert len((run / "metrics.csv").read_text().splitlines()) == 2  # header and epoch 1
