"""Where and how computations run: device choice and CPU floating-point settings."""

from __future__ import annotations

import contextlib
import ctypes
import re
from collections.abc import Iterator
from pathlib import Path

import torch

from .errors import ConfigError, option


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device.

    Raises:
        ConfigError: the name is not a device, names CUDA on a machine without it, or names a
            GPU number ``cuda:N`` the machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"training.device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device is {name!r} but no CUDA device is available; use {option('training.device', 'cpu')}")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(f"training.device is {name!r} but this machine has {count} CUDA device(s), "
                          f"cuda:0 to cuda:{count - 1}; use one of them, or {option('training.device', 'cuda')}")
    return device


def out_of_memory_message(exc: BaseException) -> str:
    """One line for a ``torch.OutOfMemoryError`` (CUDA's allocator, whose message runs over
    several sentences and advice on its settings): how much was asked for, on which GPU, and how
    much was free, when the message says so; then what to make smaller."""
    text = str(exc)
    asked = re.search(r"Tried to allocate ([\d.]+ [KMGT]?i?B)", text)
    gpu = re.search(r"GPU (\d+) has a total capacity of ([\d.]+ [KMGT]?i?B) of which ([\d.]+ [KMGT]?i?B) is free", text)
    what = "out of GPU memory"
    if asked:
        what += f": {asked.group(1)} asked for"
        if gpu:
            what += f" on GPU {gpu.group(1)}, {gpu.group(3)} free of {gpu.group(2)}"
    elif text.strip():
        what += f" ({text.strip().splitlines()[0][:160]})"
    return (f"{what}; use a smaller model, batch (--batch-size), --eval-batch-size, or for evaluate a smaller "
            "--chunk-size; another process on the GPU (nvidia-smi lists them) may hold the rest")


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new allocations on ``device`` (CPU: MemAvailable), or None if unknown."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@contextlib.contextmanager
def device_memory_lock(device: torch.device, timeout: float = 120.0) -> Iterator[None]:
    """On CUDA, hold an inter-process lock of ``device``'s GPU for the block: a file lock in the
    temporary directory named after the GPU's UUID (the same GPU whatever
    ``CUDA_VISIBLE_DEVICES`` calls it). Processes that check their memory needs and reserve
    them inside it (:func:`vaelab.training.optim.check_model_fits_memory`) do so one at a
    time. After ``timeout`` seconds of waiting the block runs without it. Nothing on the CPU."""
    if device.type != "cuda":
        yield
        return
    import tempfile

    from filelock import FileLock, Timeout

    try:
        name = str(torch.cuda.get_device_properties(device).uuid)
    except (RuntimeError, AssertionError, AttributeError):
        name = str(device)
    lock = FileLock(str(Path(tempfile.gettempdir()) / f"vaelab-gpu-{re.sub(r'[^A-Za-z0-9-]', '-', name)}.lock"))
    try:
        lock.acquire(timeout=timeout)
    except (Timeout, OSError):
        yield
        return
    try:
        yield
    finally:
        lock.release()


def reserve_device_memory(device: torch.device, nbytes: int) -> None:
    """On CUDA, take ``nbytes`` into torch's caching allocator and free them again: the
    allocator keeps the block for this process's later tensors, and other processes see it as
    used (``torch.cuda.mem_get_info``). Nothing on the CPU."""
    if device.type == "cuda" and nbytes > 0:
        block = torch.empty(nbytes, dtype=torch.uint8, device=device)
        del block


def place_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` moved to ``device``; on the CPU a model with 4-D (convolution) weights is also
    put in the channels-last memory format, which made conv VAE epochs on MNIST 6-13% faster
    here (`python -m benchmarks.ideas`: conv 16-32 9.17 -> 8.26 s; conv3 and dcgan on 3,000
    images 0.87x and 0.94x). An MLP is left as it is."""
    model = model.to(device)
    if device.type == "cpu" and any(p.dim() == 4 for p in model.parameters()):
        model = model.to(memory_format=torch.channels_last)
    return model


def match_optimizer_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor (Adam's moments, momentum buffers) its parameter's
    memory layout. A state loaded from a checkpoint is contiguous, while a channels-last weight
    is not, and fused optimizer kernels walk parameter and state as the same flat memory."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    optimizer.state[param][name] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def _openmp_library() -> ctypes.CDLL | None:
    """The GNU OpenMP runtime torch computes with (its thread pool runs GEMMs and element-wise
    kernels), or None where it is not loaded (other platforms or builds)."""
    global _GOMP
    if _GOMP is None:
        _GOMP = False
        try:
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "libgomp" in line and "/" in line}
            if paths:
                library = ctypes.CDLL(sorted(paths)[0])
                library.GOMP_parallel.argtypes = [_PARALLEL_BODY, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                library.GOMP_parallel.restype = None
                _GOMP = library
        except (OSError, AttributeError):
            pass
    return _GOMP or None


_GOMP: ctypes.CDLL | bool | None = None
_PARALLEL_BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def set_flush_denormal_all_threads(on: bool) -> bool:
    """``torch.set_flush_denormal(on)`` in the calling thread and in every thread of torch's
    OpenMP pool.

    ``torch.set_flush_denormal`` sets the floating-point control register of the calling thread
    only, so the pool's other threads, which compute their share of every parallel kernel, kept
    subnormals: with 2 threads, half of a large element-wise product of subnormals stayed
    unflushed (tests/training/test_runtime.py). Here the setting is also made inside one OpenMP
    parallel region of ``torch.get_num_threads()`` threads, which the GNU runtime takes from the
    same pool that torch's kernels use. (A MNIST epoch did not get measurably faster from this
    on our VM, whose timing noise is about 10%; it makes the setting do what it says.)

    Returns:
        whether the CPU supports flushing subnormals (False: nothing changed).
    """
    supported = torch.set_flush_denormal(on)
    library = _openmp_library()
    if supported and library is not None and torch.get_num_threads() > 1:
        body = _PARALLEL_BODY(lambda _: torch.set_flush_denormal(on))
        library.GOMP_parallel(body, None, torch.get_num_threads(), 0)
    return supported


def configure_backends(device: torch.device, tf32: bool) -> None:
    """On CUDA, allow (``tf32``) or forbid TensorFloat-32 in float32 matrix products and cuDNN
    convolutions: about 8x the fp32 matmul throughput of an A100/H100 for a 10-bit mantissa in
    the products' inputs. cuDNN is also asked for deterministic convolution algorithms and no
    autotuning (``cudnn.deterministic``, ``cudnn.benchmark = False``), so that a conv VAE
    resumed from a checkpoint repeats the uninterrupted run's numbers (the autotuner may pick
    another algorithm in each process, and some backward algorithms add in a varying order).
    Nothing on the CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """The autocast context of ``training.precision`` (``fp32``: none) on ``device``'s type."""
    dtype = AUTOCAST_DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


@contextlib.contextmanager
def flush_denormals(device: torch.device | str | None = None) -> Iterator[None]:
    """Treat subnormal floats (|x| < 1.2e-38) as zero on the CPU, in every compute thread,
    while inside the block (:func:`set_flush_denormal_all_threads`). With a ``device`` that is
    not the CPU it does nothing (GPUs flush in their own kernels; the host does no arithmetic).

    A Bernoulli decoder's saturated logits make log-sigmoids and gradients subnormal, and x86
    CPUs process subnormals up to ~100x slower: on MNIST this costs about a third of an epoch
    (measured with torch.profiler: the first layer's weight-gradient GEMM 1.70 ms -> 0.77 ms,
    log_sigmoid 0.51 ms -> <0.05 ms per step). Values that small do not change the losses.
    The default (off) is restored on exit.
    """
    if device is not None and torch.device(device).type != "cpu":
        yield
        return
    changed = set_flush_denormal_all_threads(True)
    try:
        yield
    finally:
        if changed:
            set_flush_denormal_all_threads(False)
