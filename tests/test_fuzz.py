"""Random and mutated bytes fed to every file loader end in the project's own error, with a
message: never an unhandled exception or a hang."""

import gzip
import random

import numpy as np
import pytest

from tests.conftest import idx_bytes
from vaelab.data.idx import parse_idx, read_bytes
from vaelab.errors import CheckpointError, DataError
from vaelab.training import read_checkpoint

MNIST_HEADER = bytes.fromhex("00000803") + (10000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2


def mutations(seed: int, base: bytes, n: int):
    rng = random.Random(seed)
    for _ in range(n):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            if kind < 0.5 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif kind < 0.75:
                data = data[: rng.randrange(len(data) + 1)]
            else:
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        yield bytes(data)


def random_strings(seed: int, n: int):
    rng = random.Random(seed)
    for _ in range(n):
        yield bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))


def test_idx_parser_on_random_and_mutated_bytes(tmp_path):
    real_like = MNIST_HEADER + bytes(28 * 28 * 3)  # a real header over too little data
    valid = idx_bytes(np.zeros((3, 2, 4), np.uint8))
    cases = [*random_strings(0, 200), *mutations(1, real_like, 150), *mutations(2, valid, 150)]
    outcomes = {"error": 0, "parsed": 0}
    for data in cases:
        try:
            parse_idx(data, "fuzz.idx")
            outcomes["parsed"] += 1
        except DataError as exc:
            assert str(exc).startswith("fuzz.idx: ")
            outcomes["error"] += 1
    assert outcomes["error"] > 400


def test_gzip_reader_on_mutated_files(tmp_path):
    content = idx_bytes(np.arange(60, dtype=np.uint8).reshape(5, 3, 4))
    base = gzip.compress(content)
    path = tmp_path / "f.gz"
    outcomes = {"error": 0, "not gzip": 0, "intact": 0}
    for data in mutations(3, base, 200):
        path.write_bytes(data)
        try:
            out = read_bytes(path)
        except DataError as exc:
            assert str(path) in str(exc)
            outcomes["error"] += 1
            continue
        if data[:2] != b"\x1f\x8b":  # no gzip magic left: the bytes as they are
            assert out == data
            outcomes["not gzip"] += 1
        else:  # a gzip stream that reads is the original content (its CRC-32 and size check it)
            assert out == content
            outcomes["intact"] += 1
    assert outcomes["error"] >= 150 and sum(outcomes.values()) == 200


@pytest.mark.parametrize("seed", [4, 5])
def test_checkpoint_reader_on_random_and_mutated_files(tmp_path, seed):
    from safetensors.torch import save
    import torch

    base = save({"model.w": torch.zeros(3)}, metadata={"format": "vaelab-checkpoint-1", "training_state": "{}"})
    path = tmp_path / "c.safetensors"
    for data in [*random_strings(seed, 100), *mutations(seed, base, 100)]:
        path.write_bytes(data)
        with pytest.raises(CheckpointError):
            read_checkpoint(path)
