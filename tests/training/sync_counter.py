"""Counting the calls that copy a tensor's value to the host: on CUDA each makes the CPU wait for
the GPU (a host sync). On the CPU nothing waits, but the same calls are made, so counting them
here shows what a GPU run would wait for (tests/training/test_stepsync.py,
tests/evaluation/test_loglik.py). ``torch.cuda.set_sync_debug_mode`` counts them on a GPU
(benchmarks/gpu_check.py)."""

from __future__ import annotations

import torch

READS = ("item", "tolist", "__float__", "__int__", "__bool__")
"""The tensor methods that hand a value to Python."""

COPIES = ("cpu", "numpy")
"""The tensor methods that copy a tensor to the host memory."""


class SyncCounter:
    """Counts the calls of ``names`` (default: :data:`READS`) on any tensor while installed
    (by ``monkeypatch``, so they are restored at the end of the test or on ``monkeypatch.undo()``);
    ``calls`` lists the method names in order."""

    def __init__(self, monkeypatch, names: tuple[str, ...] = READS):
        self.calls: list[str] = []
        for name in names:
            real = getattr(torch.Tensor, name)

            def counted(self_, *a, _real=real, _name=name, **k):
                self.calls.append(_name)
                return _real(self_, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, counted)

    @property
    def n(self) -> int:
        return len(self.calls)
