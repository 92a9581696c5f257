"""Dataset registry: where each dataset's files live and how they are verified.

A dataset's files are looked up, in order, in:

1. the ``data_dir`` given in the config or by ``--data-dir``;
2. the directory named by the environment variable ``VAELAB_DATA_DIR``;
3. the user cache directory (``$VAELAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/vaelab``, else
   ``~/.cache/vaelab``), under ``datasets/``;
4. system dataset packages (Debian's ``dataset-fashion-mnist`` installs
   ``/usr/share/datasets/fashion-mnist``);
5. the canonical mirrors, downloaded into the cache with an atomic write.

In each directory a file is found as ``DIR/<dataset>/<file>`` or ``DIR/<file>``, gzip-compressed
(``.gz``) or not. Content is verified by the sha256 of the *decompressed* bytes, so faithful
recompressed copies (such as Debian's) are accepted.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..io import atomic_write_bytes
from .idx import read_bytes, sha256_hex


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its canonical name and the sha256 of its decompressed bytes."""

    name: str
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is made of and where it comes from.

    ``files`` maps a role (``train_images``, ``train_labels``, ``test_images``,
    ``test_labels``) to its :class:`DataFile`. ``image_shape`` is ``(C, H, W)``. ``kind`` is
    ``"image"``, or ``"points"`` for low-dimensional point data stored as ``(N, 1, 1, d)``
    (e.g. toy 2-D data), which figures draw as scatter plots instead of image grids.
    """

    name: str
    files: dict[str, DataFile]
    image_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    mirrors: tuple[str, ...] = ()
    system_dirs: tuple[str, ...] = ()
    citation: str = ""
    kind: str = "image"


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


def _candidates(directory: Path, spec: DatasetSpec, file: DataFile) -> list[Path]:
    plain = file.name[:-3] if file.name.endswith(".gz") else file.name
    names = [file.name, plain] if file.name != plain else [plain, plain + ".gz"]
    return [base / n for base in (directory / spec.name, directory) for n in names]


def read_verified(path: Path, file: DataFile) -> bytes:
    """Read (and decompress) ``path`` and check its sha256 against ``file``.

    Raises:
        DataError: unreadable, corrupt, or checksum mismatch (naming expected and found).
    """
    data = read_bytes(path)
    digest = sha256_hex(data)
    if digest != file.sha256:
        raise DataError(
            f"{path}: checksum mismatch (sha256 of decompressed content {digest[:16]}..., "
            f"expected {file.sha256[:16]}...); the file is corrupt or not {file.name}: "
            "delete it and fetch it again"
        )
    return data


def fetch_file(spec: DatasetSpec, role: str, data_dir: str | os.PathLike | None = None,
               download: bool = True) -> bytes:
    """Find, verify and return the decompressed bytes of one dataset file.

    Looks in :func:`search_dirs`; if absent everywhere and ``download`` is true, downloads
    from ``spec.mirrors`` into the cache (verified before it is kept). A cached download that
    fails verification is deleted and fetched once more.

    Raises:
        DataError: no copy found and none could be downloaded (one line naming the file and
            the ways to provide it), or a copy found is corrupt.
    """
    file = spec.files[role]
    dirs = search_dirs(spec, data_dir)
    for label, directory in dirs:
        for path in _candidates(directory, spec, file):
            if path.is_file():
                if label == "cache":
                    try:
                        return read_verified(path, file)
                    except DataError:
                        path.unlink(missing_ok=True)  # corrupt cached copy: fetch it again
                        break
                return read_verified(path, file)
    if download and spec.mirrors:
        target = cache_dir() / "datasets" / spec.name / file.name
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
            return data
        reason = f" (download failed: {errors[0]})" if errors else ""
    else:
        reason = ""
    searched = ", ".join(str(d) for _, d in dirs)
    raise DataError(
        f"dataset {spec.name}: {file.name} not found in {searched}{reason}; put the files "
        f"({', '.join(f.name for f in spec.files.values())}) in a directory and pass "
        f"--data-dir DIR or set VAELAB_DATA_DIR, or run `vaelab download {spec.name}` with network access"
    )


_MNIST_CLASSES = tuple(str(d) for d in range(10))

register_dataset(DatasetSpec(
    name="mnist",
    files={
        "train_images": DataFile("train-images-idx3-ubyte.gz",
                                 "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train_labels": DataFile("train-labels-idx1-ubyte.gz",
                                 "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "test_images": DataFile("t10k-images-idx3-ubyte.gz",
                                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "test_labels": DataFile("t10k-labels-idx1-ubyte.gz",
                                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    image_shape=(1, 28, 28),
    classes=_MNIST_CLASSES,
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    citation="LeCun, Cortes & Burges, The MNIST database of handwritten digits",
))

register_dataset(DatasetSpec(
    name="fashion-mnist",
    files={
        "train_images": DataFile("train-images-idx3-ubyte.gz",
                                 "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train_labels": DataFile("train-labels-idx1-ubyte.gz",
                                 "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "test_images": DataFile("t10k-images-idx3-ubyte.gz",
                                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "test_labels": DataFile("t10k-labels-idx1-ubyte.gz",
                                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
    image_shape=(1, 28, 28),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    citation="Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747",
))
