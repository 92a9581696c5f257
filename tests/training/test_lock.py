"""The run lock: an OS-level flock that exactly one of two racing processes gets."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.lock_contender import contend
from vaelab.errors import VaelabError
from vaelab.runlock import RunDirectoryBusy, run_lock

TRIALS = 200


def test_two_processes_through_a_barrier_200_times_exactly_one_wins(tmp_path):
    # spawn, not fork: a fork of a process with torch's threads running can deadlock
    context = multiprocessing.get_context("spawn")
    start, done, results = context.Barrier(2), context.Barrier(2), context.Queue()
    procs = [context.Process(target=contend, args=(str(tmp_path), TRIALS, start, done, results))
             for _ in range(2)]
    for p in procs:
        p.daemon = True  # a failed test must not wait for them
    for p in procs:
        p.start()
    wins: dict[int, int] = {}
    for _ in range(2 * TRIALS):
        trial, won = results.get(timeout=60)
        wins[trial] = wins.get(trial, 0) + won
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    assert wins == {trial: 1 for trial in range(TRIALS)}


def test_a_live_lock_refuses_naming_its_owner_and_a_killed_owner_releases_it(tmp_path):
    code = ("import sys, time; from pathlib import Path; from vaelab.runlock import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    owner = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert owner.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryBusy, match=f"is in use by process {owner.pid} "):
            with run_lock(tmp_path):
                pass
    finally:
        owner.kill()  # SIGKILL: no clean-up runs, the kernel drops the flock
        owner.wait()
    assert (tmp_path / ".lock").read_text() == str(owner.pid)  # a PID is no lock
    with run_lock(tmp_path) as lock:
        assert lock.read_text() == str(os.getpid())
        with pytest.raises(RunDirectoryBusy):  # a second holder in the same process is refused too
            with run_lock(tmp_path):
                pass
    assert lock.read_text() == ""


def test_a_lock_path_of_the_wrong_type_is_one_line(tmp_path):
    (tmp_path / "run" / ".lock").mkdir(parents=True)
    with pytest.raises(VaelabError, match=r"\.lock is a directory, not vaelab's lock file; remove it"):
        with run_lock(tmp_path / "run"):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(VaelabError, match="a file of that name is in the way"):
        with run_lock(tmp_path / "file"):
            pass


def test_a_directory_created_for_work_that_failed_is_removed(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with run_lock(tmp_path / "new"):
            1 / 0
    assert not (tmp_path / "new").exists()
