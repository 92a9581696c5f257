"""Child processes that do not outlive their parent (sweep workers).

Imports neither torch nor numpy.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def die_with_parent(grace_seconds: float = 60.0, poll_seconds: float = 1.0) -> None:
    """Make the calling process stop when its parent dies, even by SIGKILL.

    On Linux the kernel sends it SIGTERM the moment the parent exits (``prctl(PR_SET_PDEATHSIG)``),
    which a training run answers by checkpointing and stopping. Everywhere, a daemon thread also
    watches the parent's PID: once the parent is gone, the process exits after
    ``grace_seconds`` (the time a run gets to write its checkpoint) if it has not stopped yet.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except OSError:
            pass
        time.sleep(grace_seconds)
        os._exit(143)

    threading.Thread(target=watch, name="vaelab-parent-watch", daemon=True).start()
