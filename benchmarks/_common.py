"""Shared helpers for the benchmark scripts: machine description, JSON output, data preparation."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch


def machine_info() -> dict:
    import scipy
    import sklearn

    import convexnn

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "convexnn": convexnn.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    try:
        import cvxpy

        info["cvxpy"] = cvxpy.__version__
    except ImportError:
        pass
    return info


def emit(result: dict, out: str | None) -> None:
    """Print the JSON to stdout and, when asked, write it to a file (atomically)."""
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def standardise(X: np.ndarray) -> np.ndarray:
    """Every non-constant column of X to mean 0 and standard deviation 1 (constant columns only centred)."""
    sd = X.std(0)
    return (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)


def pmlb_at_most(name: str, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """A PMLB table whole, or a random subset of ``n_max`` rows (seed 0) when it has more."""
    from convexnn.datasets import load_pmlb

    X, y = load_pmlb(name)
    if X.shape[0] > n_max:
        X, y = load_pmlb(name, n=n_max, seed=0)
    return X, y
