"""A lock file that keeps two processes from training in the same run directory."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import VaelabError

LOCK_NAME = ".lock"


class RunDirectoryBusy(VaelabError):
    """Another live process holds the run directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[Path]:
    """Hold ``run_dir/.lock`` (holding this process's PID) for the duration of the block.

    A lock left by a process that no longer exists (killed, crashed) is stale and is taken over.

    Raises:
        RunDirectoryBusy: a live process holds the lock.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = int(path.read_text().strip() or "0")
            except (OSError, ValueError):
                owner = 0
            if owner and owner != os.getpid() and _alive(owner):
                raise RunDirectoryBusy(
                    f"run directory {run_dir} is in use by process {owner} (lock file {path}); wait for "
                    "it to finish, or stop it, before training here"
                ) from None
            path.unlink(missing_ok=True)  # stale: its owner is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:
        raise RunDirectoryBusy(f"cannot take the lock file {path}; another process keeps creating it")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
