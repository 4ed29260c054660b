"""Run-time settings shared by the solvers: threads, devices, dtypes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity and cgroup-limited containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def default_num_threads() -> int:
    """Threads used when the user names none: torch's own choice, capped at the cores we may run on,
    so that a container with 2 cores on a 64-core host does not start 64 BLAS threads."""
    return max(1, min(torch.get_num_threads(), available_cores()))


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[int]:
    """Temporarily set torch's intra-op thread count (``None``: :func:`default_num_threads`)."""
    if n is not None and (not isinstance(n, int | type(None)) or isinstance(n, bool) or n < 1):
        raise ValueError(f"n_threads must be a positive integer or None, got {n!r}")
    previous = torch.get_num_threads()
    wanted = default_num_threads() if n is None else int(n)
    if wanted != previous:
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype in _DTYPES.values():
            return dtype
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}: use 'cpu' or 'cuda'")
    return dev
