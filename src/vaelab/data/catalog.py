"""The datasets vaelab knows: files, canonical mirrors, checksums, reader and split of each.

| name | images | split | files |
| --- | --- | --- | --- |
| ``mnist``, ``fashion-mnist`` | 1x28x28 | official 60k / 10k | four IDX files (sha256 of decompressed bytes) |
| ``binarized-mnist`` | 1x28x28 | as ``mnist`` | ``mnist``'s files; dynamic binarisation implied |
| ``frey`` | 1x28x20 | first 1765 frames / last 200 | ``frey_rawface.mat`` (sha256 of the pixel array) |
| ``cifar10`` | 3x32x32 | official 50k / 10k | ``cifar-10-python.tar.gz`` (sha256) or its extracted batches (md5 each) |
| ``cifar10-8x8`` | 3x8x8 | as ``cifar10`` | ``cifar10``'s files; central 8x8 crop |
| ``svhn`` | 3x32x32 | official 73257 / 26032 | ``train_32x32.mat``, ``test_32x32.mat`` (sha256) |
| ``toy2d`` | 1x1x2 points | generated, seeded | none |
| ``digits`` | 1x8x8 | seeded 1437 / 360 | bundled with scikit-learn (sha256 of the array) |

The readers live with their formats (:mod:`.idx`, :mod:`.matlab`, :mod:`.cifar`, :mod:`.toy`).
Published checksums: the sha256 of the CIFAR-10 archive and the SVHN files are those that
Keras and TensorFlow Datasets pin; the md5s of CIFAR-10's extracted batches are those of
torchvision (the CIFAR page publishes only the archive's md5, ``c58f30108f718f92721af3b95e74349a``;
SVHN's page publishes none; torchvision's md5s are train ``e26dedcc434d2e4c54c9b2d4a06d8373``
and test ``eb5a983be6a315427106f1b164d9cef3``).
"""

from __future__ import annotations

from dataclasses import replace

from .cifar import CLASSES as CIFAR10_CLASSES
from .cifar import TEST_BATCH, TRAIN_BATCHES, read_cifar10, read_cifar10_8x8
from .matlab import frey_digest_content, read_frey, read_svhn
from .registry import DataFile, DatasetSpec, register_dataset
from .toy import QUADRANTS, read_digits, read_toy2d

_MNIST_CLASSES = tuple(str(d) for d in range(10))

MNIST = register_dataset(DatasetSpec(
    name="mnist",
    files={
        "train_images": DataFile("train-images-idx3-ubyte.gz",
                                 "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", size=16 + 60000 * 784),
        "train_labels": DataFile("train-labels-idx1-ubyte.gz",
                                 "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", size=8 + 60000),
        "test_images": DataFile("t10k-images-idx3-ubyte.gz",
                                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", size=16 + 10000 * 784),
        "test_labels": DataFile("t10k-labels-idx1-ubyte.gz",
                                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", size=8 + 10000),
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
                                 "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", size=16 + 60000 * 784),
        "train_labels": DataFile("train-labels-idx1-ubyte.gz",
                                 "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", size=8 + 60000),
        "test_images": DataFile("t10k-images-idx3-ubyte.gz",
                                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", size=16 + 10000 * 784),
        "test_labels": DataFile("t10k-labels-idx1-ubyte.gz",
                                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", size=8 + 10000),
    },
    image_shape=(1, 28, 28),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    citation="Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747",
))

register_dataset(replace(
    MNIST,
    name="binarized-mnist",
    folders=("mnist",),
    binarize="dynamic",
    citation="MNIST with dynamic binarisation (a fresh Bernoulli draw per batch, Burda et al. 2016)",
))

register_dataset(DatasetSpec(
    name="frey",
    files={"faces": DataFile(
        "frey_rawface.mat",
        sha256="2438ba4f0d2a6bd8bac43de756141eaa33c8d248dd613d464bdb1210d9b7af78",
        digest_of=frey_digest_content,
        digest_label="the pixel array ff.T as C-contiguous uint8 (1965, 560)",
    )},
    image_shape=(1, 28, 20),
    classes=("face",),
    mirrors=("https://cs.nyu.edu/~roweis/data/",),
    citation="Frey, Colmenarez & Huang 1998 (Frey Faces); test = last 200 video frames",
    reader=read_frey,
    folders=("frey", "frey-faces"),
))

_CIFAR10_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
if set(_CIFAR10_BATCH_MD5) != {*TRAIN_BATCHES, TEST_BATCH}:  # pragma: no cover - a typo here
    raise RuntimeError("CIFAR-10 batch checksums do not match the batches the reader reads")

CIFAR10 = register_dataset(DatasetSpec(
    name="cifar10",
    files={
        "archive": DataFile("cifar-10-python.tar.gz", gunzip=False,
                            sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
        **{batch: DataFile(f"cifar-10-batches-py/{batch}", md5=md5, archive="archive")
           for batch, md5 in _CIFAR10_BATCH_MD5.items()},
    },
    image_shape=(3, 32, 32),
    classes=CIFAR10_CLASSES,
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    citation="Krizhevsky 2009, Learning multiple layers of features from tiny images",
    reader=read_cifar10,
    folders=("cifar10", "cifar-10"),
))

register_dataset(replace(
    CIFAR10,
    name="cifar10-8x8",
    image_shape=(3, 8, 8),
    citation="CIFAR-10, central 8x8 crop (rows and columns 12-19)",
    reader=read_cifar10_8x8,
))

register_dataset(DatasetSpec(
    name="svhn",
    files={
        "train": DataFile("train_32x32.mat",
                          sha256="435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8"),
        "test": DataFile("test_32x32.mat",
                         sha256="cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b"),
    },
    image_shape=(3, 32, 32),
    classes=tuple(str(d) for d in range(10)),
    mirrors=("http://ufldl.stanford.edu/housenumbers/",),
    citation="Netzer et al. 2011, SVHN format 2 (cropped digits); label 10 read as digit 0",
    reader=read_svhn,
))

register_dataset(DatasetSpec(
    name="toy2d",
    files={},
    image_shape=(1, 1, 2),
    classes=QUADRANTS,
    citation="2-D points uniform in a square, labelled by quadrant (generated, --toy2d-* options)",
    kind="points",
    reader=read_toy2d,
))

register_dataset(DatasetSpec(
    name="digits",
    files={},
    image_shape=(1, 8, 8),
    classes=tuple(str(d) for d in range(10)),
    citation="scikit-learn's 8x8 digits (UCI optical digits test set), bundled, offline",
    reader=read_digits,
))
