"""Shared helpers for the benchmark scripts: machine description and JSON output."""

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
