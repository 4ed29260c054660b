"""Benchmark of convexnn.robustness on MNIST (3 vs 5): CROWN bounds at scale, exact certification.

    python benchmarks/bench_certify.py [--threads 1 2] [--eps 0.05 0.1] [--n-exact 100]
                                       [--time-limit 20] [--model PATH] [--out results.json]

Data: the MNIST test set (t10k) in ../shared/data/mnist (read by convexnn.datasets), pixels in [0, 1]. The
training images are not available there, so unless ``--model`` is given the script trains the
784-100-1 network (no output bias, logistic loss, torch Adam, fixed seed) on the 3/5 images of the
first half of t10k and evaluates on the 3/5 images of the second half (labels: 3 → +1, 5 → −1).

Measured:
1. CROWN (and IBP) lower bounds on all 10000 t10k images, ℓ∞ with box (0, 1), for each torch thread
   count in ``--threads`` (default: 1 and all usable cores); the labels of digits other than 3/5 are
   the network's own predictions (only the time matters for those). Times are medians of repeats.
2. ``certify(method="exact")`` on the first ``--n-exact`` held-out 3/5 images for each ε, with the first
   thread count: counts of certified / attacked / undecided and the times.

Prints one JSON document (machine, versions, settings, figures).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import torch

from convexnn.datasets import load_mnist_test
from convexnn.network import TwoLayerReLU, as_network
from convexnn.robustness import certify, margin_bounds


def mnist35_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The MNIST test images in [0, 1] (10000, 784), labels ±1 (3 → +1, else −1), the mask of the 3/5
    images, and the indices of the 3/5 images in the first half of the file (training) and in the second
    half (evaluation)."""
    X_all, labels = load_mnist_test()  # file order: no class filter, no subset
    is35 = (labels == 3) | (labels == 5)
    first_half = np.arange(len(labels)) < len(labels) // 2
    y35 = np.where(labels == 3, 1, -1)
    return X_all, y35, is35, np.flatnonzero(is35 & first_half), np.flatnonzero(is35 & ~first_half)


def train_network(X: np.ndarray, y: np.ndarray, width: int, epochs: int, seed: int) -> TwoLayerReLU:
    """784-width-1 ReLU network, logistic loss on labels ±1, Adam, mini-batches of 64."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], width), torch.nn.ReLU(), torch.nn.Linear(width, 1, bias=False)
    ).double()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(Xt), generator=gen)
        for start in range(0, len(Xt), 64):
            idx = perm[start : start + 64]
            loss = torch.nn.functional.softplus(-yt[idx] * net(Xt[idx])[:, 0]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return TwoLayerReLU.from_torch(net)


def load_model(path: str) -> TwoLayerReLU:
    if path.endswith(".npz"):
        with np.load(path) as z:
            return TwoLayerReLU(z["W1"], z["b1"], z["w2"])
    from convexnn import load  # a model file written by estimator.save(path)

    return as_network(load(path))


@contextlib.contextmanager
def stdout_to_stderr():
    """Send file descriptor 1 to stderr meanwhile: HiGHS (C++) occasionally prints debug lines to
    stdout, which would spoil the JSON document printed at the end."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def timed(fn, repeats: int) -> tuple[float, list[float], float, object]:
    """Median wall time, all wall times, median process CPU time (all threads), last result."""
    times, cpu, out = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(times)), times, float(np.median(cpu)), out


def main(argv: list[str] | None = None) -> dict:
    with stdout_to_stderr():
        report = run(argv)
    text = json.dumps(report, indent=2)
    print(text)
    out = report["settings"]["out"]
    if out:
        Path(out).write_text(text + "\n")
    return report


def run(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="torch thread counts (default: 1, cores)")
    ap.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.1], help="ℓ∞ radii for the exact run")
    ap.add_argument("--crown-eps", type=float, default=0.05, help="ℓ∞ radius for the CROWN timing")
    ap.add_argument("--n-exact", type=int, default=100, help="held-out 3/5 points certified exactly")
    ap.add_argument("--time-limit", type=float, default=20.0, help="MILP seconds per point")
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats for the CROWN bounds")
    ap.add_argument("--model", default=None, help="a .npz (W1, b1, w2) or a file for convexnn.load")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count() or 1
    thread_counts = args.threads or sorted({1, cores})
    if any(t < 1 for t in thread_counts):
        ap.error("--threads must be positive")
    load_before = os.getloadavg()

    X_all, y35, is35, train_idx, test_idx = mnist35_split()

    t0 = time.perf_counter()
    if args.model:
        net = load_model(args.model)
        model_info = {"source": "file", "path": args.model}
    else:
        net = train_network(X_all[train_idx], y35[train_idx], args.width, args.epochs, args.seed)
        model_info = {
            "source": "trained in this script: torch Adam (lr 1e-3, weight decay 1e-4, batch 64), logistic "
            "loss, no output bias, on the 3/5 images of t10k[:5000]; evaluated on the 3/5 images of "
            "t10k[5000:]",
            "epochs": args.epochs,
            "seed": args.seed,
        }
    train_s = time.perf_counter() - t0
    f_all = net(X_all)
    model_info.update(
        shape=[net.n_features, net.width, net.n_outputs],
        train_seconds=round(train_s, 3),
        train_accuracy=float(np.mean(np.sign(f_all[train_idx]) == y35[train_idx])),
        test_accuracy=float(np.mean(np.sign(f_all[test_idx]) == y35[test_idx])),
        n_train=int(train_idx.size),
        n_test=int(test_idx.size),
    )

    # 1. CROWN / IBP on all 10000 images.
    y_all = np.where(is35, y35, np.where(f_all >= 0, 1, -1))
    box = (0.0, 1.0)
    timings = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        margin_bounds(net, X_all[:500], y_all[:500], args.crown_eps, method="crown", box=box)  # warm-up
        crown_s, crown_times, crown_cpu, crown = timed(
            lambda: margin_bounds(net, X_all, y_all, args.crown_eps, method="crown", box=box), args.repeats
        )
        ibp_s, _, _, ibp = timed(
            lambda: margin_bounds(net, X_all, y_all, args.crown_eps, method="ibp", box=box), args.repeats
        )
        timings.append(
            {
                "torch_threads": torch.get_num_threads(),
                "crown_seconds_median": round(crown_s, 4),
                "crown_seconds_all": [round(t, 4) for t in crown_times],
                "crown_cpu_seconds_median": round(crown_cpu, 4),
                "ibp_seconds_median": round(ibp_s, 4),
                "crown_under_1s": bool(crown_s < 1.0),
            }
        )
    crown_block = {
        "call": "margin_bounds(net, X (10000, 784), y, eps, method='crown', norm='inf', box=(0, 1))",
        "n_points": int(len(X_all)),
        "eps": args.crown_eps,
        "timings": timings,
        "crown_certified_fraction_test35": float(np.mean(crown[test_idx] > 0)),
        "ibp_certified_fraction_test35": float(np.mean(ibp[test_idx] > 0)),
        "crown_certified_fraction_all10000": float(np.mean(crown > 0)),
    }
    torch.set_num_threads(thread_counts[0])

    # 2. Exact certification of held-out points.
    pts = test_idx[: args.n_exact]
    exact_runs = []
    for eps in args.eps if len(pts) else []:
        t0 = time.perf_counter()
        res = certify(net, X_all[pts], y35[pts], eps, norm="inf", method="exact", box=box, time_limit=args.time_limit)
        wall = time.perf_counter() - t0
        s = res.summary()
        decided, counts = np.unique(res.decided_by[res.decided_by != ""], return_counts=True)
        solver_idx = res.decided_by != ""
        exact_runs.append(
            {
                "eps": eps,
                "n_points": int(len(pts)),
                "certified": s["certified"],
                "attacked": s["attacked"],
                "undecided": s["undecided"],
                "clean_accuracy": s["clean_accuracy"],
                "decided_by": {str(k): int(v) for k, v in zip(decided, counts, strict=True)},
                "milp_calls": res.n_solver_calls,
                "milp_timeouts": res.n_solver_timeouts,
                "unstable_neurons_mean": float(res.n_unstable.mean()),
                "unstable_neurons_max": int(res.n_unstable.max()),
                "seconds_total": round(wall, 3),
                "seconds": {k: round(v, 3) for k, v in res.timings.items()},
                "under_5min": bool(wall < 300),
                "time_limit_per_point_s": args.time_limit,
                "decided_fraction": float(np.mean(solver_idx)),
            }
        )

    report = {
        "benchmark": "convexnn.robustness bench_certify",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "usable_cores": cores,
            "torch_threads_crown": thread_counts,
            "torch_threads_exact": thread_counts[0],
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")},
            "load_average_1_5_15_before": [round(v, 2) for v in load_before],
            "load_average_1_5_15_after": [round(v, 2) for v in os.getloadavg()],
        },
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "torch": torch.__version__,
        },
        "settings": {
            "crown_eps": args.crown_eps,
            "exact_eps": args.eps,
            "n_exact": args.n_exact,
            "time_limit_per_point_s": args.time_limit,
            "repeats": args.repeats,
            "out": args.out,
        },
        "model": model_info,
        "crown_10000": crown_block,
        "exact": exact_runs,
    }
    return report


if __name__ == "__main__":
    main()
