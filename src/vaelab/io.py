"""Atomic file writes, and the one place where a failed write becomes a one-line error.

Every result file vaelab writes (checkpoints, metrics, configs, figures, downloads, tables)
goes through :func:`atomic_write_bytes`: the content is written to a temporary file in the same
directory, flushed and fsynced, then renamed over the target (``os.replace`` is atomic on
POSIX). Every directory vaelab creates goes through :func:`make_dirs`. An ``OSError`` on either
path (read-only file system, permission denied, disk full, a file where a directory should be)
is turned into a :class:`~vaelab.errors.VaelabError` by :func:`write_error`, which names the
path and says what to do. Files get the mode the umask gives (like ``open()``), not
``mkstemp``'s 0600.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import VaelabError

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    """The process's umask, read without changing it where /proc allows."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_error(path: str | os.PathLike, exc: OSError, what: str = "write") -> VaelabError:
    """A one-line :class:`VaelabError` for the ``OSError`` ``exc`` raised while trying to
    ``what`` (write, create) ``path``: what went wrong and how to fix it."""
    path = Path(path)
    code = exc.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        kept = f"; previous version kept at {path}" if path.is_file() else "; nothing was written"
        if path.suffix == ".safetensors" and path.is_file():
            kept = f"; previous checkpoint kept at {path}"
        return VaelabError(f"disk full while writing {path}{kept}; free some space and resume")
    if code == errno.EROFS:
        return VaelabError(f"cannot {what} {path}: the file system is read-only; choose a writable "
                           "--output-dir")
    if code in (errno.EACCES, errno.EPERM):
        return VaelabError(f"cannot {what} {path}: permission denied; choose a directory you can write "
                           "to (--output-dir) or fix its permissions")
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
        if blocker is not None and blocker != path:
            return VaelabError(f"cannot {what} {path}: {blocker} is a file, not a directory; remove it or "
                               "choose another --output-dir")
    if code == errno.EISDIR or (path.is_dir() and what == "write"):
        return VaelabError(f"cannot {what} {path}: it is a directory; remove it (or rename it) and try again")
    return VaelabError(f"cannot {what} {path}: {exc.strerror or exc}")


def make_dirs(path: str | os.PathLike) -> Path:
    """``mkdir -p path``; return it.

    Raises:
        VaelabError: it cannot be created (a file is in the way, read-only, no permission).
    """
    path = Path(path)
    try:  # no exists() check first: another process may create it at the same moment
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # exists, and is not a directory
        raise VaelabError(f"cannot create the directory {path}: a file of that name is in the way; "
                          "remove it or choose another --output-dir") from None
    except OSError as exc:
        raise write_error(path, exc, "create the directory") from exc
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path.

    Raises:
        VaelabError: the disk is full, the directory is not writable, or something other than a
            regular file is in the way (a directory, a device such as ``/dev/full``, a FIFO); the
            previous content of ``path`` (if any) is left untouched.
    """
    path = Path(path)
    make_dirs(path.parent)
    if path.is_dir():
        raise VaelabError(f"cannot write {path}: it is a directory; remove it (or rename it) and try again")
    if path.exists() and not path.is_file():  # a device, FIFO or socket: the rename would replace it
        raise VaelabError(f"cannot write {path}: it is not a regular file (a device, FIFO or socket), which vaelab "
                          "never replaces; write to a file path instead")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise write_error(path, exc) from exc
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def safetensors_bytes(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    """``safetensors.torch.save(tensors, metadata)`` with the header's metadata in sorted key
    order, so the same tensors and metadata give the same bytes (and sha256) in every process.

    safetensors (0.8 and before) writes the metadata map in a per-process random order
    (safetensors issue #584), so two saves of the same weights had different checksums: the
    same classifier, retrained bit for bit on another machine, got another ``sha256``. The
    header is the file's first ``8 + n`` bytes (``n`` little-endian, then JSON padded with
    spaces to a multiple of 8; safetensors' format spec); only the order of its metadata
    changes here, and :func:`safetensors.safe_open` reads the result as before.

    Args:
        tensors: name -> contiguous CPU tensor.
        metadata: string -> string, as safetensors takes it.
    """
    import json

    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    if not metadata:
        return data
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + size:]


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.NAME.XXXX.tmp``) that a process killed in the middle of an
    :func:`atomic_write_bytes` left in ``directory``; return the paths removed. Call it only while
    holding the directory's lock, so no live writer's file is removed."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for tmp in directory.glob(f".*{TMP_SUFFIX}"):
        if tmp.is_file() and not tmp.is_symlink():
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The UTF-8 text of ``path``.

    Raises:
        FileNotFoundError: it does not exist (callers name the fix).
        VaelabError: it cannot be read, is a directory, or is not UTF-8 text.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise VaelabError(f"{what} {path} is a directory, not a file; check the path") from None
    except OSError as exc:
        raise VaelabError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VaelabError(f"{what} {path} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x}); it is "
                          "binary or damaged: check the path, or restore the file") from None
