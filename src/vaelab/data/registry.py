"""Dataset registry: what each dataset is made of, where its files live, how they are verified.

A dataset's files are looked up, in order, in:

1. the ``data_dir`` given in the config or by ``--data-dir``;
2. the directory named by the environment variable ``VAELAB_DATA_DIR``;
3. the user cache directory (``$VAELAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/vaelab``, else
   ``~/.cache/vaelab``), under ``datasets/``;
4. system dataset packages (Debian's ``dataset-fashion-mnist`` installs
   ``/usr/share/datasets/fashion-mnist``);
5. the canonical mirrors, downloaded into the cache with an atomic write.

In each directory a file is found as ``DIR/<folder>/<file>`` (``<folder>`` is the dataset's name
or one of its :attr:`DatasetSpec.folders`) or ``DIR/<file>``, gzip-compressed (``.gz``) or not.
A file that lives inside an archive (CIFAR-10's batches inside ``cifar-10-python.tar.gz``) is
looked up extracted first, then read out of the archive in memory (nothing is extracted to
disk). Every file is verified by its checksum (see :class:`DataFile`) before it is parsed.

The datasets themselves are registered in :mod:`vaelab.data.catalog`.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..io import atomic_write_bytes
from .arrays import Fetch, Splits
from .idx import read_bytes, read_idx

BINARIZE_MODES = ("none", "static", "dynamic")


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its canonical name and the checksum that verifies it.

    Attributes:
        name: the canonical file name, or a path relative to the dataset folder for a file
            that an archive holds in a subfolder (``cifar-10-batches-py/data_batch_1``).
        sha256: hex digest of the file's content: its bytes, decompressed first when the file
            is gzip and ``gunzip`` is true (so faithful recompressed copies pass).
        md5: hex digest of the same content, for files whose only published checksum is an
            md5. At least one of ``sha256`` and ``md5`` is required; both are checked if given.
        gunzip: decompress a gzip file before hashing and parsing (false for ``.tar.gz``
            archives, whose published checksum is that of the compressed file).
        archive: the role of the archive that holds this file under ``name``, if any.
        size: the exact size of the (decompressed) content, when known; a gzip file is not
            decompressed beyond it (default limit: :data:`vaelab.data.idx.MAX_DECOMPRESSED`).
        digest_of: ``digest_of(data, source) -> bytes``, the canonical bytes the checksum
            covers, for formats whose container is legitimately re-encoded (Frey Faces' ``.mat``:
            the pixel array). ``digest_label`` says what they are, for error messages.
    """

    name: str
    sha256: str | None = None
    md5: str | None = None
    gunzip: bool = True
    archive: str | None = None
    digest_of: Callable[[bytes, str], bytes] | None = None
    digest_label: str = ""
    size: int | None = None
    """The content's size in bytes (decompressed), when known: decompression stops past it."""

    def __post_init__(self):
        if not self.sha256 and not self.md5:
            raise ValueError(f"DataFile {self.name!r} needs a sha256 or an md5 checksum")

    @property
    def checksum_of(self) -> str:
        """What the checksum covers, in words."""
        if self.digest_of is not None:
            return self.digest_label or "parsed content"
        return "decompressed content" if self.gunzip else "file bytes"


Reader = Callable[["DatasetSpec", Fetch, object], Splits]
"""``reader(spec, fetch, data_config) -> Splits`` (see :mod:`vaelab.data.arrays`)."""


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is made of and where it comes from.

    ``files`` maps a role (e.g. ``train_images``, ``archive``) to its :class:`DataFile`; a
    generated or bundled dataset has none. ``reader`` turns the files into arrays (default:
    four IDX files). ``image_shape`` is ``(C, H, W)``. ``kind`` is ``"image"``, or
    ``"points"`` for low-dimensional point data stored as ``(N, 1, 1, d)`` (e.g. toy 2-D data),
    which figures draw as scatter plots instead of image grids. ``folders`` are the folder
    names its files may sit in (default: its name; the first one receives downloads), so that
    variants share files (``cifar10-8x8`` reads ``cifar10``'s). ``binarize`` is a binarisation
    the dataset's name implies (``binarized-mnist``: ``"dynamic"``; see
    :func:`vaelab.data.datasets.resolve_binarize`). ``source`` and ``sha256`` are set for your
    own data (:mod:`vaelab.data.files`): its absolute path and the digest of its content.
    ``streamed_train`` is set for the kept file of a run whose training dataset streamed
    (:mod:`vaelab.data.streaming`): the number of training examples, which the file lacks.
    """

    name: str
    files: dict[str, DataFile]
    image_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    mirrors: tuple[str, ...] = ()
    system_dirs: tuple[str, ...] = ()
    citation: str = ""
    kind: str = "image"
    reader: Reader = read_idx
    folders: tuple[str, ...] = ()
    binarize: str | None = None
    source: str | None = None
    sha256: str | None = None
    streamed_train: int | None = None

    def __post_init__(self):
        if self.kind not in ("image", "points"):
            raise ValueError(f"DatasetSpec.kind must be 'image' or 'points', got {self.kind!r}")
        if self.binarize not in (None, *BINARIZE_MODES):
            raise ValueError(f"DatasetSpec.binarize must be one of {BINARIZE_MODES}, got {self.binarize!r}")
        for role, file in self.files.items():
            if file.archive is not None and file.archive not in self.files:
                raise ValueError(f"{self.name}: {role} names archive {file.archive!r}, which is not one of its files")

    @property
    def dirnames(self) -> tuple[str, ...]:
        """Folder names searched under each data directory; downloads go to the first."""
        return self.folders or (self.name,)


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add (or replace) a dataset in the registry and return it."""
    _REGISTRY[spec.name] = spec
    return spec


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    """The registered spec of ``name``.

    Raises:
        DataError: no dataset of that name (with the list of known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        if isinstance(name, str) and name.lower() in _REGISTRY:  # MNIST is mnist
            return _REGISTRY[name.lower()]
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise DataError(f"unknown dataset {name!r}; {hint}known: {', '.join(dataset_names())}") from None


def cache_dir() -> Path:
    """The user cache directory of vaelab (datasets are kept under ``datasets/``)."""
    if os.environ.get("VAELAB_CACHE_DIR"):
        return Path(os.environ["VAELAB_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaelab"


def search_dirs(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> list[tuple[str, Path]]:
    """The directories searched for ``spec``'s files, in order, with a label for each.

    Raises:
        DataError: an explicitly given directory (``data_dir`` or ``$VAELAB_DATA_DIR``)
            does not exist.
    """
    dirs: list[tuple[str, Path]] = []
    for label, value in (("--data-dir", data_dir), ("VAELAB_DATA_DIR", os.environ.get("VAELAB_DATA_DIR"))):
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise DataError(f"data directory {path} (from {label}) does not exist; fix the path")
            dirs.append((label, path))
    dirs.append(("cache", cache_dir() / "datasets"))
    dirs.extend(("system", Path(d)) for d in spec.system_dirs)
    return dirs


def local_folder(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> Path | None:
    """Where every file of ``spec`` is found on this machine (the first searched folder that
    holds them all: ``data_dir``, ``$VAELAB_DATA_DIR``, the cache, system folders), or None.
    Only file names are looked at (nothing is read or verified); a generated or bundled dataset
    (no files) is its own: None."""
    if not spec.files:
        return None
    try:
        dirs = search_dirs(spec, data_dir)
    except DataError:
        dirs = [("cache", cache_dir() / "datasets")]
    for _, directory in dirs:
        found = [next((c for c in _candidates(directory, spec, f) if c.is_file()), None) for f in spec.files.values()]
        if all(found):
            return found[0].parent
    return None


def _candidates(directory: Path, spec: DatasetSpec, file: DataFile) -> list[Path]:
    if not file.gunzip:
        names = [file.name]
    elif file.name.endswith(".gz"):
        names = [file.name, file.name[:-3]]
    else:
        names = [file.name, file.name + ".gz"]
    bases = [directory / folder for folder in spec.dirnames] + [directory]
    return [base / n for base in bases for n in names]


def verify(data: bytes, file: DataFile, source: str) -> bytes:
    """Check ``data`` (the content of ``file`` read from ``source``) against its checksums.

    Raises:
        DataError: checksum mismatch (naming what was hashed, expected and found), or the
            content cannot be parsed for hashing (``digest_of``).
    """
    content = file.digest_of(data, source) if file.digest_of is not None else data
    for algorithm, expected in (("sha256", file.sha256), ("md5", file.md5)):
        if not expected:
            continue
        digest = hashlib.new(algorithm, content).hexdigest()
        if digest != expected:
            raise DataError(
                f"{source}: checksum mismatch ({algorithm} of {file.checksum_of} {digest[:16]}..., "
                f"expected {expected[:16]}...); the file is corrupt or not {file.name}: "
                "delete it and fetch it again"
            )
    return data


def read_verified(path: Path, file: DataFile) -> bytes:
    """Read ``path`` (decompressing gzip unless ``file.gunzip`` is false) and verify it.

    Raises:
        DataError: unreadable, corrupt, or checksum mismatch (naming expected and found).
    """
    return verify(read_bytes(path, gunzip=file.gunzip, max_size=file.size), file, str(path))


def read_tar_members(data: bytes, names: Iterable[str], source: str) -> dict[str, bytes]:
    """The content of the regular files ``names`` inside the tar archive ``data`` (gzip or
    not), read in one pass and in memory: nothing is written to disk, so member paths cannot
    escape anywhere.

    Raises:
        DataError: the archive is corrupt or truncated, or lacks one of ``names``.
    """
    wanted, found = set(names), {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile():
                    found[name] = tar.extractfile(member).read()
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{source} is a corrupt or truncated archive ({exc}); delete it and fetch it again") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise DataError(
            f"{source} has no file {missing[0]}; it is not the expected archive: delete it and fetch it again"
        )
    return found


def _find_local(spec: DatasetSpec, file: DataFile, dirs: list[tuple[str, Path]]) -> bytes | None:
    """The verified content of the first copy of ``file`` in ``dirs``, or None if there is none.

    A corrupt copy in the cache is deleted (so that it is fetched again); a corrupt copy
    anywhere else is an error.
    """
    for label, directory in dirs:
        for path in _candidates(directory, spec, file):
            if path.is_file():
                if label == "cache":
                    try:
                        return read_verified(path, file)
                    except DataError:
                        path.unlink(missing_ok=True)  # corrupt cached copy: fetch it again
                        return None
                return read_verified(path, file)
    return None


def _download(spec: DatasetSpec, file: DataFile) -> tuple[bytes | None, list[str]]:
    """Download ``file`` from the first mirror that serves it verified; keep it in the cache."""
    target = cache_dir() / "datasets" / spec.dirnames[0] / file.name
    errors = []
    for mirror in spec.mirrors:
        url = mirror.rstrip("/") + "/" + file.name
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        tmp = target.with_name(target.name + ".download")
        atomic_write_bytes(tmp, payload)
        try:
            data = read_verified(tmp, file)
        except DataError as exc:
            tmp.unlink(missing_ok=True)
            errors.append(f"{url}: {exc}")
            continue
        os.replace(tmp, target)
        return data, errors
    return None, errors


def _not_found(spec: DatasetSpec, file: DataFile, dirs: list[tuple[str, Path]], errors: list[str]) -> DataError:
    reason = f" (download failed: {errors[0]})" if errors else ""
    searched = ", ".join(str(d) for _, d in dirs)
    names = [f.name for f in spec.files.values() if f.archive is None]
    if any(f.archive is not None for f in spec.files.values()):
        names.append("or the files extracted from it")
    return DataError(
        f"dataset {spec.name}: {file.name} not found in {searched}{reason}; put the files "
        f"({', '.join(names)}) in a directory DIR or {' or '.join(f'DIR/{d}/' for d in spec.dirnames)} and pass "
        f"--data-dir DIR or set VAELAB_DATA_DIR, or run `vaelab download {spec.name}` with network access"
    )


def fetch_files(spec: DatasetSpec, roles: Sequence[str], data_dir: str | os.PathLike | None = None,
                download: bool = True) -> dict[str, bytes]:
    """Find, verify and return the content (decompressed unless ``gunzip`` is false) of
    several files of ``spec``, as ``{role: bytes}``.

    Each file is looked up in :func:`search_dirs`; if absent everywhere, a file inside an
    archive is read out of the archive (itself fetched like any file, all its members in one
    pass), and any other file is downloaded from ``spec.mirrors`` into the cache when
    ``download`` is true (verified before it is kept). A cached copy that fails verification
    is deleted and fetched again.

    Raises:
        DataError: no copy found and none could be downloaded (one line naming the file and
            the ways to provide it), or a copy found is corrupt.
    """
    dirs = search_dirs(spec, data_dir)
    out: dict[str, bytes] = {}
    from_archives: dict[str, list[str]] = {}
    for role in roles:
        file = spec.files[role]
        data = _find_local(spec, file, dirs)
        if data is not None:
            out[role] = data
        elif file.archive is not None:
            from_archives.setdefault(file.archive, []).append(role)
        else:
            data, errors = _download(spec, file) if download else (None, [])
            if data is None:
                raise _not_found(spec, file, dirs, errors)
            out[role] = data
    for archive_role, members in from_archives.items():
        archive = spec.files[archive_role]
        content = fetch_files(spec, [archive_role], data_dir, download)[archive_role]
        extracted = read_tar_members(content, [spec.files[r].name for r in members], archive.name)
        for role in members:
            file = spec.files[role]
            out[role] = verify(extracted[file.name], file, f"{archive.name}:{file.name}")
    return out


def fetch_file(spec: DatasetSpec, role: str, data_dir: str | os.PathLike | None = None,
               download: bool = True) -> bytes:
    """The verified content of one file of ``spec`` (see :func:`fetch_files`).

    Raises:
        DataError: as :func:`fetch_files`.
    """
    return fetch_files(spec, [role], data_dir, download)[role]
