"""Bad input that used to pass silently or end in a traceback (issue 14): infinite values, a
fixed scale below the floor, conflicting loss and likelihood, duplicate YAML keys, numbers
written as 1e-3, files that are not UTF-8, and writes that fail."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vaelab.cli import main
from vaelab.config import Config, load_config, yaml_load
from vaelab.errors import ConfigError, VaelabError
from vaelab.io import atomic_write_text, remove_stale_temporaries

REPO = Path(__file__).resolve().parents[1]


def test_infinite_values_are_rejected(capsys):
    with pytest.raises(ConfigError, match="training.learning_rate must be a finite number, got inf"):
        Config.from_dict(yaml_load("training:\n  learning_rate: .inf\n"))
    assert main(["train", "--beta", "inf"]) == 2
    assert "objective.beta must be a finite number, got inf" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="must be a finite number"):
        Config.from_dict({"model": {"prior_loc": [0.0, float("nan")], "latent_dim": 2}})


def test_a_fixed_scale_below_the_floor_and_a_conflicting_loss_are_errors(capsys):
    with pytest.raises(ConfigError, match="model.likelihood_scale=0.0001 is below model.scale_floor=0.001"):
        Config.from_dict({"model": {"likelihood": "gaussian", "likelihood_scale": 1e-4}})
    assert main(["train", "--loss", "mse", "--likelihood", "bernoulli"]) == 2
    assert "model.loss mse means likelihood gaussian, but model.likelihood is 'bernoulli'" in capsys.readouterr().err
    config = Config().replace({"model.loss": "mse"})  # alone, the shortcut still works
    assert (config.model.likelihood, config.model.likelihood_scale, config.model.learn_scale) == ("gaussian", 1.0, "none")


def test_yaml_rejects_duplicate_keys_and_reads_1e_3_as_a_number(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  learning_rate: 1e-3\n  epochs: 2\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"key 'epochs' appears twice in one mapping \(lines 3 and 4\)"):
        load_config(path)
    path.write_text("training:\n  learning_rate: 3e-4\n  weight_decay: 1E-5\n")
    config = load_config(path)
    assert config.training.learning_rate == 3e-4 and config.training.weight_decay == 1e-5
    assert yaml_load("a: '1e-3'\nb: 1.2.3\nc: 7")["a"] == "1e-3"  # quoted stays a string
    assert main(["train", "--set", "training.learning_rate=1e-3", "--set", "training.epochs=0"]) == 2
    err = capsys.readouterr().err
    assert "training.epochs must be >= 1" in err and "learning_rate" not in err


def test_text_files_that_are_not_utf8_are_one_line(tmp_path, capsys):
    binary = tmp_path / "c.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert main(["train", "--config", str(binary)]) == 2
    err = capsys.readouterr().err
    assert f"config file {binary} is not UTF-8 text (byte 0 is 0x89)" in err and "Traceback" not in err
    assert main(["sweep", str(binary)]) == 2
    assert "sweep file" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["file", "dev-null", "read-only"])
def test_an_output_dir_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch, case):
    if case == "file":
        target = tmp_path / "out"
        target.write_text("x")
        want = f"{target} is a file, not a directory; remove it or choose another --output-dir"
    elif case == "dev-null":
        target, want = Path("/dev/null"), "/dev/null is a file, not a directory"
    else:  # as on a read-only mount (we may be root, who can write anywhere else)
        def read_only(self, *args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", str(self))

        monkeypatch.setattr(Path, "mkdir", read_only)
        target = tmp_path / "ro"
        want = f"cannot create the directory {target}/x: the file system is read-only; choose a writable --output-dir"
    assert main(["train", "--dataset", "toy2d", "--output-dir", str(target), "--name", "x", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert want in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_writes_through_a_file_or_a_directory_in_the_way_are_one_line(tmp_path):
    (tmp_path / "figures").write_text("not a directory")
    with pytest.raises(VaelabError, match="a file of that name is in the way"):
        atomic_write_text(tmp_path / "figures" / "a.png", "x")
    (tmp_path / "summary.json").mkdir()
    with pytest.raises(VaelabError, match="it is a directory; remove it"):
        atomic_write_text(tmp_path / "summary.json", "{}")


def test_files_get_the_umask_mode_and_stale_temporaries_are_removed(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    stale = tmp_path / ".last.safetensors.abc123.tmp"
    stale.write_bytes(b"\0" * 100)
    assert remove_stale_temporaries(tmp_path) == [stale] and not stale.exists() and path.exists()


def test_safetensors_files_are_the_same_bytes_for_the_same_weights_and_metadata(tmp_path):
    # safetensors writes its metadata map in a random order: the same classifier, retrained bit
    # for bit, got another sha256; safetensors_bytes sorts it, and the file reads back as before
    import torch
    from safetensors import safe_open
    from safetensors.torch import save

    from vaelab.io import safetensors_bytes

    tensors = {"b.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.tensor([1, 2], dtype=torch.int64)}
    metadata = {key: f"value of {key}" for key in ("format", "dataset", "config", "n_classes", "vaelab", "run")}
    metadata["run"] = "étude-β"  # not ASCII: the header is UTF-8 as safetensors writes it
    assert len({save(tensors, metadata=metadata) for _ in range(10)}) > 1
    written = {safetensors_bytes(tensors, metadata) for _ in range(10)}
    assert len(written) == 1
    path = tmp_path / "w.safetensors"
    path.write_bytes(written.pop())
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == metadata
        assert {k: f.get_tensor(k).tolist() for k in f.keys()} == {k: v.tolist() for k, v in tensors.items()}
    assert safetensors_bytes(tensors) == save(tensors)


def test_a_signal_interrupts_the_block_even_through_broad_excepts():
    # a handler that raised a VaelabError was swallowed by code that catches errors on the way
    from vaelab.errors import TrainingInterrupted
    from vaelab.processes import interrupt_on_signals, signals_ignored

    before = signal.getsignal(signal.SIGTERM)
    reached = []
    with pytest.raises(TrainingInterrupted, match="^stopped by SIGTERM: draw them with `vaelab plot x`$"):
        with interrupt_on_signals("draw them with `vaelab plot x`"):
            try:
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(1)
                except VaelabError:
                    pass
            except Exception:  # noqa: BLE001 - what the block's code may do
                pass
            reached.append("after the excepts")
    assert reached == [] and signal.getsignal(signal.SIGTERM) is before
    with signals_ignored():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_child_dies_with_its_parent_even_after_sigkill(tmp_path):
    child = ("import sys, time; sys.path.insert(0, sys.argv[1]); from vaelab.processes import die_with_parent\n"
             "die_with_parent(grace_seconds=1); print('ready', flush=True)\n"
             "while True: time.sleep(0.1)\n")
    parent = ("import subprocess, sys, time\n"
              "p = subprocess.Popen([sys.executable, '-c', sys.argv[2], sys.argv[1]], stdout=subprocess.PIPE, text=True)\n"
              "assert p.stdout.readline().strip() == 'ready'; print(p.pid, flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", parent, str(REPO / "src"), child], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{pid}/stat") as f:  # reaped by init once it has exited
            if f.read().split()[2] == "Z":
                break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the child outlived its parent")


def test_a_gzip_bomb_stops_at_the_files_known_size(tmp_path):
    import gzip

    from vaelab.data import get_spec
    from vaelab.data.idx import read_bytes
    from vaelab.errors import DataError

    bomb = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bomb.write_bytes(gzip.compress(b"\0" * 20_000_000))  # 20 MB from about 20 kB
    with pytest.raises(DataError, match="decompresses to more than 10,008 bytes, the most this file can hold"):
        read_bytes(bomb, max_size=get_spec("mnist").files["test_labels"].size)
    assert {f.size for f in get_spec("mnist").files.values()} == {47_040_016, 60_008, 7_840_016, 10_008}


def test_a_model_too_large_for_memory_fails_with_an_estimate_before_allocating(monkeypatch, tmp_path, capsys):
    import vaelab.runtime

    monkeypatch.setattr(vaelab.runtime, "available_memory", lambda device: 8 * 10**9)
    assert main(["train", "--dataset", "toy2d", "--hidden", "10000000", "--output-dir", str(tmp_path),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the model has 660,000,042 parameters and needs about" in err and "more than the 8.0 GB free on cpu" in err
