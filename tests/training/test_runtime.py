"""CPU floating-point settings: subnormal flushing reaches every compute thread."""

import pytest
import torch

from vaelab.runtime import flush_denormals, set_flush_denormal_all_threads

# 2**21 copies of 1e-39, below float32's smallest normal number (1.18e-38), made from their
# bits: converting 1e-39 to float32 while flushing is on would already give 0
SUBNORMALS = torch.full((1 << 21,), 713_000, dtype=torch.int32).view(torch.float32)


def _fraction_flushed() -> float:
    """Fraction of a large multiply whose subnormal inputs came out as zero: torch splits the
    tensor across its threads, so each thread's setting decides its share."""
    return ((SUBNORMALS * 1.0) == 0).float().mean().item()


@pytest.fixture
def two_threads():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    _fraction_flushed()  # the pool's threads exist before any setting (they inherit it when created)
    set_flush_denormal_all_threads(False)
    yield
    set_flush_denormal_all_threads(False)
    torch.set_num_threads(before)


def test_flush_denormals_covers_every_thread(two_threads):
    assert 0 < SUBNORMALS[0].item() < torch.finfo(torch.float32).tiny
    assert _fraction_flushed() == 0.0
    with flush_denormals():
        assert _fraction_flushed() == 1.0
    assert _fraction_flushed() == 0.0  # the default is restored in every thread


def test_torch_setting_alone_misses_the_worker_thread(two_threads):
    # why set_flush_denormal_all_threads exists: torch's own setting is per thread
    assert _fraction_flushed() == 0.0
    torch.set_flush_denormal(True)
    try:
        assert _fraction_flushed() < 1.0
    finally:
        torch.set_flush_denormal(False)
