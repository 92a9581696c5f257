"""Your own torch Dataset or DataLoader as data: read into memory when it fits, streamed by
index otherwise, with the same numbers, and an exact resume after SIGKILL."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import vaelab
from tests.data.stream_child import EPOCHS, CountingDataset, arrays, config, datasets
from vaelab.cli import main
from vaelab.data import StreamedSplit
from vaelab.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    for row in rows:
        row.pop("train_seconds")
    return rows


def short(cfg: dict, epochs: int = 2, **data) -> dict:
    return {**cfg, "data": {**cfg["data"], **data}, "training": {**cfg["training"], "epochs": epochs,
                                                                 "checkpoint_every_steps": None}}


def test_a_streamed_dataset_trains_as_the_same_data_in_memory_and_as_arrays(tmp_path, capsys):
    (x_train, y_train), (x_test, y_test) = arrays(96, 0), arrays(40, 1)
    split = {"validation_size": 16, "train_examples": 60, "subset_seed": 3}
    streamed_train, test = datasets()
    streamed = vaelab.train(short(config(tmp_path, "streamed"), **split), verbose=False,
                            data=(DataLoader(streamed_train, batch_size=5, shuffle=True), test))
    in_memory = vaelab.train(short(config(tmp_path, "memory"), max_gigabytes=1, **split), verbose=False,
                             data=datasets())
    from_arrays = vaelab.train(short(config(tmp_path, "arrays"), **split), verbose=False,
                               data=(x_train, x_test, y_train, y_test))
    assert metrics(streamed.run_dir) == metrics(in_memory.run_dir) == metrics(from_arrays.run_dir)
    assert len(metrics(streamed.run_dir)) == 2 and "val_neg_elbo" in metrics(streamed.run_dir)[0]
    # never read whole: item 0 twice (its shape, learnt, then checked as the run loads), the 16
    # validation examples once, then each of the 60 training examples once per epoch, one index at a time
    assert streamed_train.reads == 2 + 16 + 2 * 60
    kept = np.load(streamed.run_dir / "data.npz")
    assert "x_train" not in kept.files and kept["x_test"].shape == (40, 1, 28, 28) and kept["x_val"].shape[0] == 16
    assert "x_train" in np.load(in_memory.run_dir / "data.npz").files
    # the command line: the in-memory run resumes, the streamed one says how in one line; both evaluate
    assert main(["train", "--resume", str(in_memory.run_dir), "--epochs", "3", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(streamed.run_dir), "--epochs", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"vaelab: error: {streamed.run_dir} streamed its training split from a torch Dataset given from "
                   "Python, which the run directory does not keep; resume it from Python: "
                   "vaelab.resume(run_dir, data=(train, test))")
    assert main(["evaluate", str(streamed.run_dir), "--k", "2", "--fid", "none", "--no-probe", "--quiet"]) == 0
    assert main(["evaluate", str(streamed.run_dir), "--k", "2", "--fid", "none", "--quiet"]) == 2  # probes need it
    assert "evaluate with --no-probe" in capsys.readouterr().err
    assert main(["plot", str(streamed.run_dir), "--kind", "samples", "reconstructions"]) == 0
    resumed = vaelab.resume(streamed.run_dir, {"training.epochs": 3}, verbose=False, data=streamed_train)
    assert metrics(resumed.run_dir) == metrics(in_memory.run_dir)


@pytest.mark.slow
def test_a_streamed_run_killed_with_sigkill_resumes_to_the_uninterrupted_metrics(tmp_path):
    train, test = datasets()
    straight = vaelab.train(config(tmp_path, "straight"), verbose=False, data=(DataLoader(train, batch_size=8), test))
    assert train.reads == 2 + EPOCHS * 96  # item 0's shape, then each example once per epoch: no pass before
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.data.stream_child", str(tmp_path), "killed"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint, deadline = tmp_path / "killed" / "checkpoints" / "last.safetensors", time.monotonic() + 120
    while not checkpoint.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.01)
    time.sleep(random.Random().uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "summary.json").exists(), "killed mid-run"
    train, test = datasets()
    resumed = vaelab.resume(tmp_path / "killed", verbose=False, data=(DataLoader(train, batch_size=8), test))
    assert resumed.summary["epochs"] == EPOCHS
    assert metrics(tmp_path / "killed") == metrics(straight.run_dir)


def test_static_binarisation_of_a_streamed_example_is_one_fixed_draw():
    train, _ = datasets()
    split = StreamedSplit(train, torch.arange(96), (1, 28, 28), "run", static_seed=5)
    first, again = split.gather(torch.tensor([3, 7])), split.gather(torch.tensor([7, 1, 3]))
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(first[0], again[2]) and torch.equal(first[1], again[0])


class Stream(IterableDataset):
    def __iter__(self):
        yield torch.zeros(28, 28)


@pytest.mark.parametrize("data,message", [
    ((Stream(), datasets()[1]), "the training dataset is an IterableDataset, which has no random access"),
    ((TensorDataset(torch.zeros(4, 28, 28), torch.zeros(4), torch.zeros(4)), datasets()[1]),
     "data: training item 0 has 3 parts; an item is an image or (image, label)"),
    ((TensorDataset(torch.full((4, 28, 28), 2.0)), datasets()[1]),
     "data: training item 0 has values in [2, 2], outside [0, 1]"),
    ((TensorDataset(torch.zeros(4, 5, 28, 28)), datasets()[1]), "data: training item 0 has an image of shape (5, 28, 28)"),
    ((datasets()[0], TensorDataset(torch.zeros(4, 1, 14, 14))),
     "data: test item 0 has an image of shape (1, 14, 14) (C, H, W), but item 0 of the training dataset has (1, 28, 28)"),
    ((TensorDataset(torch.zeros(4, 28, 28), torch.tensor([0, 1, -1, 2])), datasets()[1]),
     "data: training item 2 has the label tensor(-1); a label is one integer >= 0"),
    ((datasets()[0], np.zeros((4, 28, 28))), "data with a torch Dataset or DataLoader must be (train, test), both"),
])
def test_a_dataset_vaelab_cannot_read_is_one_line(tmp_path, data, message):
    with pytest.raises(DataError) as info:
        vaelab.train(short(config(tmp_path, "bad"), max_gigabytes=1), verbose=False, data=data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_streaming_refuses_what_needs_the_training_split_whole(tmp_path):
    with pytest.raises(DataError, match=r"the test split hold 0\.00 GB as float32, more than data.max_gigabytes = "
                                        r"1e-05; they are kept in memory \(only the training dataset streams\)"):
        vaelab.train(short(config(tmp_path, "big-test"), max_gigabytes=1e-5), verbose=False, data=datasets())
    with pytest.raises(ConfigError, match="data.test_split_seed pools the training and test examples"):
        vaelab.train(short(config(tmp_path, "pooled"), test_split_seed=1), verbose=False, data=datasets())
    cfg = short(config(tmp_path, "cvae"))
    with pytest.raises(ConfigError, match="model.conditional needs every training label in memory"):
        vaelab.train({**cfg, "model": {**cfg["model"], "conditional": True}}, verbose=False, data=datasets())
    with pytest.raises(ConfigError, match="figures.split=train draws the training split whole"):
        vaelab.train({**short(config(tmp_path, "fig")), "figures": {"split": "train"}}, verbose=False, data=datasets())


def test_a_resume_checks_the_dataset_it_is_given(tmp_path):
    run = vaelab.train(short(config(tmp_path, "run")), verbose=False, data=datasets())
    smaller = CountingDataset(*arrays(90, 0))
    with pytest.raises(DataError, match=r"the training dataset has 90 items of shape \(1, 28, 28\), but the run "
                                        r"trained on 96 of shape \(1, 28, 28\)"):
        vaelab.resume(run.run_dir, {"training.epochs": 3}, verbose=False, data=smaller)
    with pytest.raises(DataError, match="resume it from Python: vaelab.resume"):
        vaelab.resume(run.run_dir, {"training.epochs": 3}, verbose=False)
    whole = vaelab.train(short(config(tmp_path, "whole"), max_gigabytes=1), verbose=False, data=datasets())
    with pytest.raises(DataError, match="holds the run's whole data: resume it without data="):
        vaelab.resume(whole.run_dir, {"training.epochs": 3}, verbose=False, data=datasets())
