"""The run-directory lock (:mod:`vaelab.runlock`), where the trainer has always imported it."""

from ..runlock import LOCK_NAME, RunDirectoryBusy, run_lock

__all__ = ["LOCK_NAME", "RunDirectoryBusy", "run_lock"]
