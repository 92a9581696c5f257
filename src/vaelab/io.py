"""Atomic file writes: a crash during a write leaves the previous file intact.

Every result file vaelab writes (checkpoints, metrics, configs, downloads) goes through
:func:`atomic_write_bytes`: the content is written to a temporary file in the same directory,
flushed and fsynced, then renamed over the target (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import VaelabError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path.

    Raises:
        VaelabError: the disk is full or the directory is not writable; the previous
            content of ``path`` (if any) is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if exc.errno == errno.ENOSPC:
            what = "checkpoint" if path.suffix == ".safetensors" else "version"
            kept = f"; previous {what} kept at {path}" if path.exists() else "; nothing was written"
            raise VaelabError(f"disk full while writing {path}{kept}; free some space and resume") from exc
        raise VaelabError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))
