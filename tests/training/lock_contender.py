"""The process side of the lock race test: imports only the lock (no torch), so a spawned
child starts in a fraction of a second."""

from __future__ import annotations

from pathlib import Path

from vaelab.runlock import RunDirectoryBusy, run_lock


def contend(root: str, trials: int, start, done, results) -> None:
    """Take the lock of a fresh directory at the same moment as the other contender, ``trials``
    times; hold it (if won) until both have tried."""
    for trial in range(trials):
        start.wait(timeout=30)
        won = False
        try:
            with run_lock(Path(root) / f"run{trial}"):
                won = True
                done.wait(timeout=30)
        except RunDirectoryBusy:
            done.wait(timeout=30)
        results.put((trial, won))
