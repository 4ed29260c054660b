"""Run-time settings shared by the solvers: threads, devices, dtypes."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

import torch
from threadpoolctl import threadpool_limits

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity and cgroup-limited containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


# Programs with less work than this per output column (n·d·P: one product of X with every pattern's block) run
# on one thread when the user names none. Their solvers are made of small tensor operations, for which extra
# threads only add synchronisation. Measured on the 2-core development machine, default estimators, one thread
# against two: sklearn wine (n·d·P ≈ 2e5) 0.85 s vs 4.4 s, segmentation (1e6) 33 s vs 90 s, breast cancer raw
# (1.8e6) 7.2 s vs 20 s; (C) on Fashion-MNIST PCA-50 (benchmarks/bench_cvxpy.py, P = 100): n = 500 (2.6e6)
# 3.7 s vs 4.5 s, n = 1000 (5.1e6) 9.3 s vs 9.4 s, n = 2000 (1e7) 33 s vs 26 s.
SMALL_WORK = 5e6


def default_num_threads(work: float | None = None) -> int:
    """Threads used when the user names none: torch's own choice, capped at the cores we may run on (so that a
    container with 2 cores on a 64-core host does not start 64 BLAS threads); one thread for programs whose
    ``work`` (n·d·P per output column) is below :data:`SMALL_WORK`."""
    if work is not None and work < SMALL_WORK:
        return 1
    return max(1, min(torch.get_num_threads(), available_cores()))


# the cores the enclosing num_threads context lets a fit use (1 outside any): independent output columns may run
# on those its torch threads leave idle (:func:`column_workers`)
_CORES: contextvars.ContextVar[int] = contextvars.ContextVar("convexnn_cores", default=1)


def column_workers(columns: int) -> int:
    """How many independent output columns may be solved at once, each on its own thread: the cores of the enclosing
    :func:`num_threads` context divided by the torch threads each column would use, at most ``columns``; 1 outside
    such a context. A small multi-class program fitted without ``n_threads`` on two cores runs one torch thread
    (:data:`SMALL_WORK`) and two columns at a time: optdigits (600 rows standardised, 10 classes, 100 patterns),
    four columns of its interior-point method 22.7 s one after the other, 14.4 s two at a time."""
    return max(1, min(columns, _CORES.get() // max(1, torch.get_num_threads())))


@contextlib.contextmanager
def num_threads(n: int | None, work: float | None = None) -> Iterator[int]:
    """Temporarily set the thread count of torch and of the BLAS libraries loaded beside it (SciPy's, used for
    some factorizations; through threadpoolctl). ``None``: :func:`default_num_threads` for a program of this
    ``work``; the cores left idle by a small program's single thread may then run its output columns side by side
    (:func:`column_workers`). A count ``n`` the user names is the number of threads in all."""
    if n is not None and (not isinstance(n, int | type(None)) or isinstance(n, bool) or n < 1):
        raise ValueError(f"n_threads must be a positive integer or None, got {n!r}")
    previous = torch.get_num_threads()
    wanted = default_num_threads(work) if n is None else int(n)
    cores = default_num_threads() if n is None else int(n)  # what the fit may use in all
    if wanted != previous:
        torch.set_num_threads(wanted)
    token = _CORES.set(cores)  # ≥ wanted: default_num_threads(work) is 1 or the same count
    try:
        with threadpool_limits(wanted, user_api="blas"):
            yield wanted
    finally:
        _CORES.reset(token)
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
