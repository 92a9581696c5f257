"""An OS-level lock that keeps two processes from working in the same run (or sweep) directory
(imports neither torch nor numpy, so a process can take it in milliseconds).

The lock is an ``flock`` on ``DIR/.lock`` (through :mod:`filelock`): taking it is one atomic
system call, and the kernel releases it when its process exits, however it dies, so there are
no stale locks to detect. The file holds the owner's PID only to name it in the message; the
file itself stays after release (removing a lock file while others may open it breaks mutual
exclusion).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import VaelabError
from .io import make_dirs, write_error

LOCK_NAME = ".lock"


class RunDirectoryBusy(VaelabError):
    """Another live process holds the run directory."""


def _owner(path: Path) -> str:
    try:
        pid = int(path.read_text().strip() or "0")
    except (OSError, ValueError, UnicodeDecodeError):
        pid = 0
    return f"process {pid}" if pid > 0 else "another process"


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, doing: str = "training", kind: str = "run") -> Iterator[Path]:
    """Hold ``run_dir/.lock`` for the duration of the block (creating ``run_dir``).

    ``doing`` names the work in the message (training, evaluating, sweeping); ``kind`` the
    directory (run, sweep). A directory that this call created and that holds nothing but the
    lock file at the end (the work failed before writing anything) is removed again.

    Raises:
        RunDirectoryBusy: a live process holds the lock (the message names its PID).
        VaelabError: the directory or the lock file cannot be created (read-only, a file in
            the way, ``.lock`` is a directory).
    """
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    for attempt in range(3):
        created = not run_dir.exists()
        make_dirs(run_dir)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            what = "directory" if path.is_dir() else "special file or link"
            raise VaelabError(f"{path} is a {what}, not vaelab's lock file; remove it and try again")
        lock = FileLock(str(path), timeout=0)
        try:
            lock.acquire()
            break
        except Timeout:
            raise RunDirectoryBusy(
                f"{kind} directory {run_dir} is in use by {_owner(path)} (lock file {path}); wait for it to "
                f"finish, or stop it, before {doing} here"
            ) from None
        except FileNotFoundError as exc:  # a process whose work failed removed the new directory: again
            if attempt == 2:
                raise write_error(path, exc, "create the lock file") from exc
        except OSError as exc:
            raise write_error(path, exc, "create the lock file") from exc
    try:
        try:
            with open(path, "w") as f:  # we hold the flock: nobody else writes the file
                f.write(str(os.getpid()))
        except OSError as exc:
            raise write_error(path, exc, "write the lock file") from exc
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.truncate(path, 0)
        with contextlib.suppress(OSError):
            if created and {p.name for p in run_dir.iterdir()} == {LOCK_NAME}:
                path.unlink()
                run_dir.rmdir()
        lock.release()
