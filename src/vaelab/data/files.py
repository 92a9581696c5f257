"""Your own data: arrays in a ``.npz``, ``.pt`` or ``.safetensors`` file, a folder of images, or
arrays handed to :func:`vaelab.train` from Python.

``data.dataset`` (``--dataset``) names a built-in dataset or, when it ends in ``.npz``, ``.pt``
or ``.safetensors`` or names a directory, a file of yours:

* **array files** hold ``x_train`` and ``x_test`` and optionally ``y_train`` and ``y_test`` (both
  or neither). Images are ``uint8`` gray levels 0..255 (divided by 255) or floats in [0, 1],
  shaped ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with C in 1, 3, 4 (channels
  last when the last axis is 1, 3 or 4 and the second is not); labels are ``(N,)`` integers >= 0.
  ``.npz`` is read with ``allow_pickle=False``, ``.pt`` with ``torch.load(weights_only=True)``
  (a dict of tensors; no code is unpickled), ``.safetensors`` with safetensors.
* **an image folder** ``ROOT/train/<class>/*.png|jpg|jpeg`` and ``ROOT/test/<class>/...``,
  read with Pillow: gray (mode L) when every image is gray, else RGB; every image must have
  the same size unless ``data.image_size H W`` resizes them (bilinear). Classes are the
  sub-folder names of ``train/``, sorted; labels are their indices.

The arrays then go through the same pipeline as a built-in dataset (validation split, example
limits, binarisation, figures; :func:`vaelab.data.load_dataset`). :func:`user_spec` returns a
:class:`~vaelab.data.registry.DatasetSpec` whose ``source`` is the absolute path and ``sha256``
the digest of the content (a folder: of every image's relative path and bytes, in sorted
order), which the run directory records so that ``--resume`` refuses changed data.

Every problem with a file is a :class:`~vaelab.errors.DataError` of one line: the file, what
is wrong (missing or unknown keys, mixed shapes, values outside the range, an unreadable image,
an empty class folder) and how to fix it.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, option
from .arrays import RawSplit, Splits
from .registry import DatasetSpec, dataset_names
from .streaming import STREAMED_KEY

ARRAY_SUFFIXES = (".npz", ".pt", ".safetensors")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
KEYS = ("x_train", "x_test", "y_train", "y_test")


def is_user_dataset(name: str) -> bool:
    """True when ``data.dataset`` names a file or folder rather than a built-in dataset: it is
    not a registered name (``mnist`` stays MNIST even beside a folder called ``mnist``) and it
    ends in one of :data:`ARRAY_SUFFIXES`, contains a path separator, starts with ``.`` or ``~``,
    or is an existing directory."""
    if name in dataset_names():
        return False
    return (name.lower().endswith(ARRAY_SUFFIXES) or "/" in name or "\\" in name
            or name.startswith((".", "~")) or Path(name).is_dir())


MAX_CLASSES = 10000
"""Default of ``data.max_classes``."""
MAX_GIGABYTES = 16.0
"""Default of ``data.max_gigabytes``."""


def user_spec(path: str | os.PathLike, image_size: list[int] | None = None, max_classes: int = MAX_CLASSES,
              max_gigabytes: float = MAX_GIGABYTES) -> DatasetSpec:
    """Read and check the file or folder at ``path``; return its spec, whose reader hands back
    the arrays already read. ``max_classes`` and ``max_gigabytes`` bound the labels and the
    decompressed size of the arrays (``data.max_classes``, ``data.max_gigabytes``).

    Raises:
        DataError: the path does not exist or is not a regular file or folder (a FIFO, a
            device), has an unknown suffix, or its content is invalid or too large (see the
            module docstring).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"dataset {path} does not exist; pass a .npz, .pt or .safetensors file, an image "
                        "folder with train/ and test/, or a built-in name (`vaelab datasets`)")
    if path.is_dir():
        splits, classes, digest = read_image_folder(path, image_size)
    else:
        if not path.is_file():
            raise DataError(f"dataset {path} is not a regular file (a FIFO, device or socket); save the arrays "
                            "to a .npz, .pt or .safetensors file and pass that")
        if image_size is not None:
            raise DataError(f"data.image_size resizes the images of an image folder, not of {path.name}; "
                            f"resize the arrays before saving them, or drop {option('data.image_size')}")
        arrays, digest = read_array_file(path, max_gigabytes)
        if STREAMED_KEY in arrays:  # the kept test split of a run whose training dataset streamed
            return _streamed_spec(path, arrays, digest)
        splits, classes = arrays_to_splits(arrays, path.name, max_classes)
    return DatasetSpec(name=path.name, files={}, image_shape=tuple(splits.train.images.shape[1:]),
                       classes=classes, citation=f"your data: {path.resolve()}",
                       reader=lambda spec, fetch, config: splits,
                       source=str(path.resolve()), sha256=digest)


def _streamed_spec(path: Path, arrays: dict[str, np.ndarray], digest: str) -> DatasetSpec:
    """The spec of a streamed run's kept file (:mod:`vaelab.data.streaming`): the test split's
    shape and classes, the training examples it lacks."""
    labels = [arrays[k] for k in ("y_test", "y_val") if k in arrays]
    n_classes = int(max(y.max() for y in labels)) + 1 if labels else 1
    classes = tuple(str(i) for i in range(n_classes)) if labels else ("none",)

    def reader(spec, fetch, config):
        raise DataError(f"{path} keeps the evaluation splits of a run whose training dataset streamed; load it with "
                        "vaelab.data.load_dataset")

    return DatasetSpec(name=path.name, files={}, image_shape=tuple(arrays["x_test"].shape[1:]), classes=classes,
                       citation=f"your torch Dataset (training split streamed; test split kept in {path.resolve()})",
                       reader=reader, source=str(path.resolve()), sha256=digest,
                       streamed_train=int(arrays[STREAMED_KEY][0]))


def _too_large(path: Path, nbytes: float, max_gigabytes: float) -> DataError:
    size = f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e3:,.0f} kB"
    return DataError(f"{path} holds {size} of arrays once read, more than data.max_gigabytes = "
                     f"{max_gigabytes:g}; use a smaller file, or raise {option('data.max_gigabytes', 64)} if the "
                     "machine has the memory")


def _tensor_to_numpy(value, key: str, path: Path) -> np.ndarray:
    """A torch tensor of any layout and dtype vaelab can use as numpy: sparse made dense,
    quantized dequantized, bfloat16/float16/float8 as float32.

    Raises:
        DataError: a tensor without data (meta) or of a complex dtype.
    """
    import torch

    if value.is_meta:
        raise DataError(f"{path}: {key} is a meta tensor, which holds no data; save the tensor itself "
                        "(e.g. after .to('cpu'))")
    if value.layout != torch.strided:
        value = value.to_dense()
    if value.is_quantized:
        value = value.dequantize()
    if value.is_complex():
        raise DataError(f"{path}: {key} is complex ({value.dtype}); images are real numbers")
    if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
        value = value.float()  # bfloat16, float16 and float8 have no numpy dtype
    return value.detach().cpu().numpy()


def read_array_file(path: Path, max_gigabytes: float = MAX_GIGABYTES) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a ``.npz``, ``.pt`` or ``.safetensors`` file, as numpy, and the file's
    sha256 (hex).

    Raises:
        DataError: an unknown suffix, a damaged file, arrays larger than ``max_gigabytes`` once
            read (checked before they are allocated), or a file that cannot be read without
            running code.
    """
    limit = max_gigabytes * 1e9
    size = path.stat().st_size
    if size > limit:
        raise _too_large(path, size, max_gigabytes)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    suffix = path.suffix.lower()
    if suffix == ".npz":
        import zipfile
        import zlib

        if not data.startswith(b"PK"):
            raise DataError(f"{path} is not a readable .npz file (not a zip archive); write it with np.savez")
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:  # the sizes are in the directory: nothing decompressed
                unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > limit:
                raise _too_large(path, unpacked, max_gigabytes)
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                raise DataError(f"{path} holds object arrays (pickled); save plain numeric arrays with "
                                "np.savez(path, x_train=..., x_test=...)") from None
            raise DataError(f"{path} is not a readable .npz file ({exc}); write it with np.savez") from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
            raise DataError(f"{path} is not a readable .npz file, it is truncated or damaged ({exc}); write it "
                            "again with np.savez") from None
    elif suffix == ".pt":
        import pickle

        import torch

        try:
            loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{path} cannot be loaded with torch.load(weights_only=True) ({first}); save a dict "
                            "of tensors: torch.save({'x_train': x, 'x_test': t}, path)") from None
        if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            raise DataError(f"{path} must hold a dict of tensors ({', '.join(KEYS[:2])}, optional "
                            f"{', '.join(KEYS[2:])}), found {type(loaded).__name__}")
        nbytes = sum(v.numel() * 4 for v in loaded.values() if not v.is_meta)  # at most float32 per element
        if nbytes > limit:
            raise _too_large(path, nbytes, max_gigabytes)
        arrays = {str(k): _tensor_to_numpy(v, str(k), path) for k, v in loaded.items()}
    elif suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors

        try:
            loaded = load_safetensors(data)  # torch, not numpy: bfloat16 has no numpy dtype
        except (SafetensorError, ValueError, OSError, RuntimeError) as exc:
            raise DataError(f"{path} is not a readable .safetensors file ({exc}); write it with "
                            "safetensors.numpy.save_file") from None
        arrays = {str(k): _tensor_to_numpy(v, str(k), path) for k, v in loaded.items()}
    else:
        raise DataError(f"{path}: unknown data file type {path.suffix!r}; use .npz, .pt or .safetensors, "
                        "or a folder of images")
    return arrays, digest


def check_keys(arrays: Mapping[str, Any], source: str) -> None:
    """Raise a one-line :class:`DataError` unless ``arrays`` holds ``x_train`` and ``x_test``,
    both or neither of ``y_train``/``y_test``, and nothing else."""
    unknown = [k for k in arrays if k not in KEYS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], KEYS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise DataError(f"{source}: unknown key {unknown[0]!r}{hint}; the keys are x_train, x_test and "
                        "optionally y_train, y_test")
    missing = [k for k in KEYS[:2] if k not in arrays]
    if missing:
        raise DataError(f"{source}: no {missing[0]} (found {', '.join(arrays) or 'nothing'}); the keys are "
                        "x_train, x_test and optionally y_train, y_test")
    if ("y_train" in arrays) != ("y_test" in arrays):
        have, lack = ("y_train", "y_test") if "y_train" in arrays else ("y_test", "y_train")
        raise DataError(f"{source}: {have} without {lack}; give labels for both splits or for neither")


def to_nchw(images: np.ndarray, name: str, source: str) -> np.ndarray:
    """``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` -> ``(N, C, H, W)`` (C in 1, 3, 4).

    Raises:
        DataError: another number of axes, no examples, or no axis that can be the channels.
    """
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        if images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):
            images = np.moveaxis(images, -1, 1)
        elif images.shape[1] not in (1, 3, 4):
            raise DataError(f"{source}: {name} has shape {images.shape}; with 4 axes the channels (1, 3 or 4) "
                            "must be the second or the last axis")
    else:
        raise DataError(f"{source}: {name} has shape {images.shape}; give (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if images.shape[0] == 0:
        raise DataError(f"{source}: {name} holds no examples")
    return images


def check_range(images: np.ndarray, name: str, source: str) -> np.ndarray:
    """uint8 (0..255) as it is, bool as uint8 0/1 scaled to 0/255; floats must be finite and in
    [0, 1] (returned as float32).

    Raises:
        DataError: another dtype, or values outside the range (with the range found).
    """
    if images.dtype == np.uint8:
        return images
    if images.dtype == np.bool_:
        return images.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            raise DataError(f"{source}: {name} has NaN or infinite values; replace them")
        lo, hi = float(images.min()), float(images.max())
        if lo < 0 or hi > 1:
            raise DataError(f"{source}: {name} has values in [{lo:g}, {hi:g}], outside [0, 1]; rescale it to "
                            "[0, 1] (gray levels 0..255: divide by 255 or save them as uint8)")
        return images.astype(np.float32, copy=False)
    raise DataError(f"{source}: {name} has dtype {images.dtype}; give uint8 gray levels 0..255 or floats in [0, 1]")


def check_labels(labels: np.ndarray, n: int, name: str, source: str, max_classes: int = MAX_CLASSES) -> np.ndarray:
    """``(N,)`` integers >= 0 (floats with integral values allowed) as int64.

    Raises:
        DataError: wrong shape, count, dtype or a negative label.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise DataError(f"{source}: {name} has shape {labels.shape} but there are {n} images; give one "
                        "integer label per image, shape (N,)")
    if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{source}: {name} has dtype {labels.dtype}; labels are integers 0..classes-1")
    if labels.size and labels.min() < 0:
        raise DataError(f"{source}: {name} has a negative label ({labels.min()}); labels are integers 0..classes-1")
    if labels.size and labels.max() >= max_classes:  # before any cast: a uint64 near 2^64 must not wrap
        raise DataError(f"{source}: {name} has the label {labels.max()}, so {labels.max()} + 1 classes, more than "
                        f"data.max_classes = {max_classes}; number the classes 0..classes-1, or raise "
                        f"{option('data.max_classes', int(labels.max()) + 1)}")
    return labels.astype(np.int64)


def arrays_to_splits(arrays: Mapping[str, Any], source: str, max_classes: int = MAX_CLASSES
                     ) -> tuple[Splits, tuple[str, ...]]:
    """Check ``{x_train, x_test[, y_train, y_test]}`` (numpy arrays or tensors) and return the
    raw splits and the class names (``"0"``.. for labels, ``("none",)`` when unlabelled).

    Raises:
        DataError: see :func:`check_keys`, :func:`to_nchw`, :func:`check_range`,
            :func:`check_labels`, or train and test images of different shapes.
    """
    check_keys(arrays, source)
    x = {}
    for key in KEYS[:2]:
        value = arrays[key]
        value = _tensor_to_numpy(value, key, Path(source)) if hasattr(value, "detach") else np.asarray(value)
        x[key] = check_range(to_nchw(value, key, source), key, source)
    if x["x_train"].shape[1:] != x["x_test"].shape[1:]:
        raise DataError(f"{source}: x_train images are {x['x_train'].shape[1:]} (C, H, W) but x_test images are "
                        f"{x['x_test'].shape[1:]}; give both splits the same image shape")
    if x["x_train"].dtype != x["x_test"].dtype:  # one scale for both: uint8 -> float in [0, 1]
        x = {k: (v.astype(np.float32) / 255 if v.dtype == np.uint8 else v) for k, v in x.items()}
    if "y_train" in arrays:
        y = {}
        for key, images in (("y_train", "x_train"), ("y_test", "x_test")):
            value = arrays[key]
            value = _tensor_to_numpy(value, key, Path(source)) if hasattr(value, "detach") else np.asarray(value)
            y[key] = check_labels(value, len(x[images]), key, source, max_classes)
        n_classes = int(max(y["y_train"].max(), y["y_test"].max())) + 1
        classes = tuple(str(i) for i in range(n_classes))
    else:
        y = {"y_train": np.zeros(len(x["x_train"]), np.int64), "y_test": np.zeros(len(x["x_test"]), np.int64)}
        classes = ("none",)
    return Splits(RawSplit(x["x_train"], y["y_train"]), RawSplit(x["x_test"], y["y_test"])), classes


def read_image_folder(root: Path, image_size: list[int] | None = None) -> tuple[Splits, tuple[str, ...], str]:
    """Read ``root/train/<class>/`` and ``root/test/<class>/`` images with Pillow.

    Returns the raw splits (uint8 ``(N, C, H, W)``), the class names (sorted sub-folders of
    ``train/``) and the sha256 of every image's relative path and bytes, in sorted order.

    Raises:
        DataError: ``train/`` or ``test/`` missing, a class folder without images, a test class
            that is not a training class, an unreadable image (naming it), or images of
            different sizes without ``image_size``.
    """
    from PIL import Image, UnidentifiedImageError

    digest = hashlib.sha256()
    found: dict[str, list[tuple[Path, int]]] = {}
    classes: tuple[str, ...] = ()
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(f"image folder {root} has no {split}/ sub-folder; lay it out as "
                            f"{root}/train/<class>/*.png and {root}/test/<class>/*.png")
    for split in ("train", "test"):
        folder = root / split
        names = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not names:
            raise DataError(f"{folder} has no class sub-folders; put the images in {folder}/<class>/")
        if split == "train":
            classes = tuple(names)
        else:
            extra = [n for n in names if n not in classes]
            if extra:
                raise DataError(f"{folder / extra[0]} is a test class with no training folder; add "
                                f"{root / 'train' / extra[0]} or remove it")
        files = []
        for name in names:
            images = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                raise DataError(f"class folder {folder / name} has no PNG or JPEG image; add images or remove the folder")
            files.extend((p, classes.index(name)) for p in images)
        found[split] = files
    decoded: dict[str, list] = {}
    for split, files in found.items():
        decoded[split] = []
        for path, label in files:
            try:
                data = path.read_bytes()
                image = Image.open(io.BytesIO(data))
                image.load()
            except Image.DecompressionBombError:
                raise DataError(f"image {path} has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, Pillow's limit "
                                "against decompression bombs; shrink it or remove it") from None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise DataError(f"cannot read image {path} ({exc}); replace or remove it") from None
            digest.update(str(path.relative_to(root)).encode() + b"\0" + hashlib.sha256(data).digest())
            decoded[split].append((path, image, label))
    gray = all(image.mode in ("1", "L", "LA", "I", "I;16", "F") for files in decoded.values() for _, image, _ in files)
    mode = "L" if gray else "RGB"
    first_path, first_image, _ = decoded["train"][0]
    splits = []
    for split in ("train", "test"):
        arrays, labels = [], []
        for path, image, label in decoded[split]:
            image = image.convert(mode)
            if image_size is not None:
                image = image.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            elif image.size != first_image.size:
                raise DataError(f"mixed image sizes: {path} is {image.size[0]}x{image.size[1]} but {first_path} is "
                                f"{first_image.size[0]}x{first_image.size[1]} (width x height); pass {option('data.image_size', 'H W')} "
                                "to resize them all")
            array = np.asarray(image, dtype=np.uint8)
            arrays.append(array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0))
            labels.append(label)
        splits.append(RawSplit(np.stack(arrays), np.asarray(labels, dtype=np.int64)))
    return Splits(*splits), classes, digest.hexdigest()


def save_arrays(path: Path, data: tuple | list | Mapping[str, Any]) -> Path:
    """Check in-memory data and write it to ``path`` as a compressed ``.npz`` (what
    ``vaelab.train(config, data=...)`` keeps in the run directory, so that evaluation, figures
    and ``--resume`` read it back like any ``--dataset FILE.npz``).

    ``data`` is ``(x_train, x_test)``, ``(x_train, x_test, y_train, y_test)`` or a mapping with
    those keys; numpy arrays or tensors.

    Raises:
        DataError: another number of items, or arrays that fail the checks of
            :func:`arrays_to_splits`.
    """
    if isinstance(data, Mapping):
        arrays = dict(data)
    else:
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 4):
            raise DataError("data must be (x_train, x_test) or (x_train, x_test, y_train, y_test), got "
                            f"{type(data).__name__} of {len(data) if hasattr(data, '__len__') else '?'} items")
        arrays = dict(zip(KEYS, data))
    splits, _ = arrays_to_splits(arrays, "data")
    out = {"x_train": splits.train.images, "x_test": splits.test.images}
    if "y_train" in arrays:
        out.update(y_train=splits.train.labels, y_test=splits.test.labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **out)
    os.replace(tmp, path)
    return path
