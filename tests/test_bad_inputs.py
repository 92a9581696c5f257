"""Malformed inputs of every kind vaelab reads (configs, flags, sweep files, data files, run
directories, weights files, tracker URIs) end in one line on stderr and a non-zero exit, never a
traceback or a hang; where a run would otherwise be corrupted, nothing on disk changes. See
docs/reliability.md for the limits and messages."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab.cli import main
from vaelab.config import Config
from vaelab.errors import ConfigError

TINY = ["--dataset", "tiny-mnist", "--hidden", "8", "--batch-size", "8", "--no-progress", "--latent-dim", "2",
        "--epochs", "1", "--logger", "csv"]


def one_line_error(capsys, code: int = 2) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("vaelab: error: ") or code == 130, err
    return last


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def tiny_run(tiny_data, tmp_path):
    root, _ = tiny_data
    assert main(["train", *TINY, "--data-dir", str(root), "--output-dir", str(tmp_path / "runs"), "--name", "run"]) == 0
    return tmp_path / "runs" / "run"


# --- configs and flags ------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, message", [
    (["--name", "a\x01b"], "name must be printable text"),
    (["--name", "x" * 300], "a run name has at most 150"),
    (["--name", "bad\udcffname"], "not valid text"),
    (["--seed", str(2 ** 64)], "seed must be an integer between -2^63 and 2^63 - 1"),
    (["--set", "objective.beta=."], "objective.beta must be a number, got '.'"),
    (["--set", "objective.beta=1e400"], "finite"),
    (["--data-dir", "a\x00b"], "NUL"),
])
def test_bad_flags_are_one_line(tiny_data, tmp_path, capsys, flags, message):
    root, _ = tiny_data
    code = main(["train", *TINY, "--data-dir", str(root), "--output-dir", str(tmp_path), *flags])
    assert code == 2 and message in one_line_error(capsys)


@pytest.mark.parametrize("text, message", [
    ("a: &a [1, 2]\nb: *a\n", "YAML aliases (*a) are not allowed"),
    ("model: " + "[" * 200 + "]" * 200 + "\n", "nested more than 64 levels deep"),
    ("seed: 1\nseed: 2\n", "appears twice"),
    ("name: [1, 2\n", "not valid YAML"),
])
def test_bad_yaml_is_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert main(["train", "--config", str(path)]) == 2
    assert message in one_line_error(capsys)


def test_a_name_that_looks_like_a_number_stays_text(tiny_data, tmp_path):
    root, _ = tiny_data
    assert main(["train", *TINY, "--data-dir", str(root), "--output-dir", str(tmp_path), "--name", "1e5"]) == 0
    assert "name: '1e5'" in (tmp_path / "1e5" / "config.yaml").read_text()
    assert main(["train", "--resume", str(tmp_path / "1e5"), "--epochs", "2"]) == 0


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=st.sampled_from(["data", "model", "objective", "training", "figures"]),
       key=st.sampled_from(["seed", "latent_dim", "hidden", "beta", "epochs", "dataset", "logger", "learning_rate",
                            "manifold_steps", "image_size", "prior_std", "split"]),
       value=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=8))
def test_any_value_for_any_key_is_a_config_error_or_a_config(section, key, value):
    try:
        Config.from_dict({section: {key: value}})
    except ConfigError:
        pass


# --- sweep files ----------------------------------------------------------------------------------


@settings(max_examples=120, deadline=None, database=None)
@given(key=st.sampled_from(["name", "base", "grid", "variants", "seeds", "seed_keys", "budgets", "output_dir",
                            "description", "full_budget"]),
       value=st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=8),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                              st.text(max_size=5) | st.integers(0, 3), inner, max_size=3), max_leaves=6))
def test_any_sweep_field_of_any_type_is_a_config_error_or_a_sweep(tmp_path_factory, key, value):
    from vaelab.experiments import load_sweep

    spec = {"name": "s", "base": {"data": {"dataset": "mnist"}}, key: value}
    try:
        load_sweep(spec, "quick", tmp_path_factory.mktemp("sweep"))
    except ConfigError:
        pass


# --- data files -------------------------------------------------------------------------------------


def write_data(tmp_path: Path, kind: str) -> Path:
    x, t = np.random.rand(40, 4, 4).astype("float32"), np.random.rand(10, 4, 4).astype("float32")
    if kind in ("truncated", "bad-crc"):
        path = tmp_path / "d.npz"
        np.savez(path, x_train=x, x_test=t)
        data = bytearray(path.read_bytes())
        if kind == "truncated":
            data = data[: len(data) // 2]
        else:
            data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return path
    if kind == "huge-labels":
        path = tmp_path / "d.npz"
        np.savez(path, x_train=x, x_test=t, y_train=np.full(40, 2 ** 64 - 1, np.uint64), y_test=np.zeros(10, np.uint64))
        return path
    if kind == "billion-classes":
        path = tmp_path / "d.npz"
        np.savez(path, x_train=x, x_test=t, y_train=np.arange(40) * 10 ** 9, y_test=np.arange(10))
        return path
    if kind == "meta":
        path = tmp_path / "d.pt"
        torch.save({"x_train": torch.empty(40, 4, 4, device="meta"), "x_test": torch.empty(10, 4, 4, device="meta")}, path)
        return path
    if kind == "fifo":
        path = tmp_path / "d.npz"
        os.mkfifo(path)
        return path
    raise ValueError(kind)


@pytest.mark.parametrize("kind, message", [
    ("truncated", "truncated or damaged"),
    ("bad-crc", "truncated or damaged"),
    ("huge-labels", "more than data.max_classes = 10000"),
    ("billion-classes", "more than data.max_classes = 10000"),
    ("meta", "meta tensor, which holds no data"),
    ("fifo", "is not a regular file"),
])
def test_damaged_or_unusual_data_files_are_one_line(tmp_path, capsys, kind, message):
    path = write_data(tmp_path, kind)
    code = main(["train", "--dataset", str(path), "--hidden", "8", "--batch-size", "8", "--epochs", "1",
                 "--no-progress", "--output-dir", str(tmp_path / "runs")])
    assert code == 2 and message in one_line_error(capsys)


@pytest.mark.parametrize("convert", [torch.Tensor.bfloat16, torch.Tensor.half, lambda t: t.to(torch.float8_e4m3fn),
                                     torch.Tensor.to_sparse])
def test_tensors_in_other_dtypes_and_layouts_are_read(tmp_path, convert):
    from vaelab.data.files import read_array_file, arrays_to_splits

    path = tmp_path / "d.pt"
    torch.save({"x_train": convert(torch.rand(12, 4, 4)), "x_test": convert(torch.rand(3, 4, 4))}, path)
    arrays, _ = read_array_file(path)
    splits, _ = arrays_to_splits(arrays, "d.pt")
    assert splits.train.images.shape == (12, 1, 4, 4) and splits.train.images.dtype in (np.float32, np.float64)


def test_bf16_safetensors_are_read(tmp_path):
    from safetensors.torch import save_file

    from vaelab.data.files import read_array_file

    save_file({"x_train": torch.rand(12, 4, 4).bfloat16(), "x_test": torch.rand(3, 4, 4).bfloat16()},
              tmp_path / "d.safetensors")
    arrays, _ = read_array_file(tmp_path / "d.safetensors")
    assert arrays["x_train"].dtype == np.float32


def test_arrays_larger_than_the_limit_are_refused_before_they_are_read(tmp_path):
    from vaelab.data.files import read_array_file
    from vaelab.errors import DataError

    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((40, 28, 28), np.float32), x_test=np.zeros((10, 28, 28), np.float32))
    with pytest.raises(DataError, match="more than data.max_gigabytes = 1e-05"):
        read_array_file(path, max_gigabytes=1e-5)


# --- outputs ------------------------------------------------------------------------------------


def test_a_device_or_fifo_as_output_is_refused_and_left_alone(tiny_run, tmp_path, capsys):
    fifo = tmp_path / "out.safetensors"
    os.mkfifo(fifo)
    assert main(["export-weights", str(tiny_run), "-o", str(fifo)]) == 2
    assert "not a regular file" in one_line_error(capsys)
    assert fifo.is_fifo()
    from vaelab.io import atomic_write_text
    from vaelab.errors import VaelabError

    with pytest.raises(VaelabError, match="never replaces"):
        atomic_write_text("/dev/null", "x")
    assert Path("/dev/null").is_char_device()


def test_non_finite_weights_are_not_exported(tiny_run, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = tiny_run / "checkpoints" / "last.safetensors"
    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    name = next(k for k, v in tensors.items() if k.startswith("model.") and v.is_floating_point())
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, path, metadata=meta)
    assert main(["export-weights", str(tiny_run), "-o", str(tmp_path / "w.safetensors")]) == 2
    assert "weights are not finite" in one_line_error(capsys)
    assert not (tmp_path / "w.safetensors").exists()


def test_a_training_checkpoint_or_a_damaged_weights_file_given_to_evaluate(tiny_run, tmp_path, capsys):
    from safetensors.torch import save_file

    assert main(["evaluate", str(tiny_run / "checkpoints" / "last.safetensors"), "--k", "2"]) == 2
    assert "is a training checkpoint, not a weights file; pass its run directory" in one_line_error(capsys)
    save_file({"a": torch.zeros(2)}, tmp_path / "w.safetensors", metadata={"format": "vaelab-weights-1", "config": "{"})
    assert main(["evaluate", str(tmp_path / "w.safetensors"), "--k", "2"]) == 2
    assert "not a JSON mapping" in one_line_error(capsys)


@pytest.mark.parametrize("args, message", [
    (["evaluate", "RUN", "--k", "100000000"], "k must be between 1 and 100,000"),
    (["evaluate", "RUN", "--fid-samples", "1000000000"], "between 2 and 1,000,000"),
    (["sample", "RUN", "--n", "100000000"], "--n must be between 1 and 10,000"),
    (["plot", "RUN", "--kind", "latent_manifold", "--manifold-steps", "100000"], "between 2 and 200"),
])
def test_sizes_that_would_hang_or_exhaust_memory_are_refused(tiny_run, capsys, args, message):
    assert main([str(tiny_run) if a == "RUN" else a for a in args]) == 2
    assert message in one_line_error(capsys)


@pytest.mark.figures
def test_a_signal_while_the_figures_are_drawn_says_how_to_draw_them(tiny_data, tmp_path, capsys, monkeypatch):
    import vaelab.plots.callbacks as callbacks

    root, _ = tiny_data

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the signal should have stopped the drawing")

    monkeypatch.setattr(callbacks, "plot_run", interrupted)
    code = main(["train", *TINY, "--data-dir", str(root), "--output-dir", str(tmp_path), "--name", "f"])
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err
    assert "stopped by SIGTERM: training finished and is saved" in err and f"`vaelab plot {tmp_path / 'f'}`" in err
    assert (tmp_path / "f" / "summary.json").is_file()


def test_an_unusable_mlflow_store_is_one_line(tiny_data, tmp_path, capsys):
    pytest.importorskip("mlflow")
    root, _ = tiny_data
    (tmp_path / "notdb.db").write_text("not a database")
    code = main(["train", *TINY[:-2], "--data-dir", str(root), "--output-dir", str(tmp_path / "runs"),
                 "--logger", "mlflow", "--mlflow-uri", f"sqlite:///{tmp_path / 'notdb.db'}"])
    assert code == 2 and "cannot open its store" in one_line_error(capsys)


def test_an_unreachable_mlflow_server_fails_fast(monkeypatch):
    from vaelab.errors import VaelabError
    from vaelab.training.trackers import _check_server

    with pytest.raises(VaelabError, match="cannot reach the MLflow tracking server at http://127.0.0.1:9"):
        _check_server("http://127.0.0.1:9", timeout=2)


# --- frictions ----------------------------------------------------------------------------------


def test_datasets_says_which_are_here(tiny_data, capsys, monkeypatch):
    root, _ = tiny_data
    monkeypatch.setenv("VAELAB_DATA_DIR", str(root))
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "[built in]" in out and "not here: `vaelab download cifar10`" in out


def test_compare_says_when_runs_are_not_comparable(tmp_path, capsys):
    from tests.plots.conftest import history_rows, write_run_dir

    a = write_run_dir(tmp_path / "a", Config.from_dict({"data": {"dataset": "mnist"}}), history_rows(3))
    b = write_run_dir(tmp_path / "b", Config.from_dict({"data": {"dataset": "fashion-mnist"},
                                                        "model": {"likelihood": "gaussian"}}), history_rows(3))
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "cmp")]) == 0
    err = capsys.readouterr().err
    assert "different datasets (fashion-mnist, mnist)" in err and "different likelihoods" in err


def test_hints_do_not_suggest_what_the_run_already_does(monkeypatch):
    from types import SimpleNamespace

    import vaelab.evaluation.latents as latents
    from vaelab.training.callbacks import slow_epoch_hint

    assert "threads" not in slow_epoch_hint(10.0, 1.0, 1) and "threads" in slow_epoch_hint(10.0, 1.0, 2)
    monkeypatch.setattr(latents, "posterior_summary", lambda *a, **k: SimpleNamespace(means=torch.zeros(10, 2)))
    config = Config.from_dict({"model": {"likelihood": "gaussian", "learn_scale": "scalar"},
                               "objective": {"kl_schedule": "linear"}})
    text = latents.posterior_collapse(None, torch.rand(10, 4), 2, config=config)
    assert "learned scale" not in text and "warm-up" not in text and "free bits" in text
    assert "learned scale" in latents.posterior_collapse(None, torch.rand(10, 4), 2)


# --- checkpoints and run directories ------------------------------------------------------------------


def edit_checkpoint(path: Path, field: str, change) -> None:
    """Rewrite the JSON metadata ``field`` of the checkpoint at ``path`` with ``change(value)``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    value = json.loads(meta.get(field, "null"))
    meta[field] = json.dumps(change(value))
    save_file(tensors, path, metadata=meta)


@pytest.mark.parametrize("field, change, message", [
    ("training_state", lambda t: {**t, "history": t["history"][:0]}, "history must hold one row per finished epoch"),
    ("training_state", lambda t: {**t, "best_value": float("nan")}, "best_value must be a finite number"),
    ("training_state", lambda t: {**t, "best_value": float("-inf")}, "best_value must be a finite number"),
    ("training_state", lambda t: {**t, "epoch": "2"}, "training_state.epoch"),
    ("optimizer", lambda o: {**o, "param_groups": [{**o["param_groups"][0], "eps": -1.0}]}, "param_groups.0.eps"),
    ("optimizer", lambda o: {**o, "param_groups": [{**o["param_groups"][0], "lr": "fast"}]}, "param_groups.0.lr"),
    ("optimizer", lambda o: {**o, "param_groups": [{k: v for k, v in o["param_groups"][0].items() if k != "lr"}]},
     "param_groups.0.lr field required"),
    ("optimizer", lambda o: {**o, "param_groups": [{**o["param_groups"][0], "betas": [0.9, 1.5]}]}, "betas"),
    ("optimizer", lambda o: {**o, "param_groups": [{k: v for k, v in o["param_groups"][0].items() if k != "betas"}]},
     "param_groups.0 lacks betas, which Adam reads"),
    ("rng", lambda r: {**r, "numpy": ["MT19937", r["numpy"][1][:10], 0, 0, 0.0]}, "rng.numpy"),
    ("rng", lambda r: {**r, "python": "abc"}, "rng.python"),
    ("scheduler", lambda s: {"last_epoch": "x"}, "scheduler.last_epoch"),
    ("grad_scaler", lambda g: {"scale": -1.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000},
     "grad_scaler.scale"),
])
def test_each_checkpoint_field_is_checked_against_its_schema(tiny_run, capsys, field, change, message):
    path = tiny_run / "checkpoints" / "last.safetensors"
    edit_checkpoint(path, field, change)
    before = snapshot(tiny_run)
    assert main(["train", "--resume", str(tiny_run), "--epochs", "2"]) == 2
    line = one_line_error(capsys)
    assert message in line and "the checkpoint is damaged" in line
    assert snapshot(tiny_run) == before  # nothing rewritten


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["training_state", "optimizer", "rng", "scheduler", "grad_scaler"]),
       key=st.text(max_size=12),
       value=st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.lists(st.integers(), max_size=3))
def test_any_edit_of_checkpoint_metadata_is_a_checkpoint_error_or_harmless(tmp_path_factory, field, key, value):
    from vaelab.errors import CheckpointError
    from vaelab.training import read_checkpoint
    from vaelab.training.checkpoint import TrainingState, encode_checkpoint

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    state = TrainingState(epoch=1, best_epoch=1, best_value=3.0, history=[{"epoch": 1, "test_neg_elbo": 3.0}])
    path = tmp_path_factory.mktemp("ckpt") / "last.safetensors"
    path.write_bytes(encode_checkpoint(model, optimizer, state, {"seed": 1}, torch.Generator()))

    def change(old):
        if isinstance(old, dict):
            return {**old, key: value} if key else value
        return value

    if field in ("scheduler", "grad_scaler"):
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(path), "pt") as f:
            meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
        meta[field] = json.dumps({key: value} if key else value)
        save_file(tensors, path, metadata=meta)
    else:
        edit_checkpoint(path, field, change)
    try:
        read_checkpoint(path)
    except CheckpointError as exc:
        assert str(exc).count("\n") == 0


def test_resume_never_starts_over_a_run_whose_checkpoints_are_gone(tiny_run, capsys):
    import shutil

    shutil.rmtree(tiny_run / "checkpoints")
    before = snapshot(tiny_run)
    assert main(["train", "--resume", str(tiny_run), "--epochs", "2"]) == 2
    assert "a resume would start over from epoch 1 and overwrite them" in one_line_error(capsys)
    assert snapshot(tiny_run) == before
