"""Child processes that do not outlive their parent (sweep workers), and SIGINT/SIGTERM that
interrupt a block of work with one line instead of a traceback.

Imports neither torch nor numpy.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


class _Signalled(BaseException):
    """Raised by :func:`interrupt_on_signals`' handler. A ``BaseException``, as
    ``KeyboardInterrupt`` is, so that no ``except Exception`` or ``except VaelabError`` inside
    the block swallows it (reading a campaign's kept results treats an unreadable run as not
    kept, and once took a SIGTERM for one and trained on)."""


@contextlib.contextmanager
def interrupt_on_signals(message: str):
    """Inside the block, SIGINT or SIGTERM stop the work in progress and raise
    :class:`~vaelab.errors.TrainingInterrupted` ``"stopped by SIGTERM: <message>"`` (a one-line
    ending that says what to run to continue) when it leaves the block. In the main thread only
    (elsewhere the block runs as it is); the previous handlers come back on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Signalled(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Signalled as stop:
        from .errors import TrainingInterrupted

        raise TrainingInterrupted(f"stopped by {stop}: {message}") from None
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_ignored():
    """SIGINT and SIGTERM ignored inside the block (main thread only): for a last write that
    must be whole, such as a status file after a stop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
