"""ℓ2 certification on MNIST 3 vs 5: methods "crown", "lp" (triangle SOCP) and "exact" (branch and bound).

    python benchmarks/bench_certify_l2.py [--eps 0.5 1.0] [--n 100] [--time-limit 20] [--out results/x.json]

The 784-100-1 network is trained exactly as in ``bench_certify.py`` (its ``train_network``: torch Adam,
logistic loss, 3/5 images of t10k[:5000]); the first ``--n`` held-out 3/5 images of t10k[5000:] are
certified with ``certify(..., norm=2, box=(0, 1))`` per method and ε. Prints one JSON document (machine,
versions, settings, counts of certified / attacked / undecided, solver calls and time-outs, wall times).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info  # noqa: E402
from bench_certify import mnist35_split, train_network  # noqa: E402

from convexnn.robustness import certify  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.5, 1.0], help="ℓ2 radii")
    ap.add_argument("--n", type=int, default=100, help="held-out 3/5 points")
    ap.add_argument("--methods", nargs="+", default=["crown", "lp", "exact"])
    ap.add_argument("--time-limit", type=float, default=20.0, help="solver seconds per point")
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    X_all, y35, _, train_idx, test_idx = mnist35_split()
    pts = test_idx[: args.n]
    t0 = time.perf_counter()
    net = train_network(X_all[train_idx], y35[train_idx], args.width, args.epochs, args.seed)
    train_s = time.perf_counter() - t0

    runs = []
    for eps in args.eps:
        for method in args.methods:
            t0 = time.perf_counter()
            res = certify(net, X_all[pts], y35[pts], eps, norm=2, method=method, box=(0.0, 1.0),
                          time_limit=args.time_limit)  # fmt: skip
            wall = time.perf_counter() - t0
            s = res.summary()
            runs.append(
                {
                    "eps": eps,
                    "method": method,
                    "n_points": int(len(pts)),
                    **{k: s[k] for k in ("certified", "attacked", "undecided", "clean_accuracy")},
                    "solver_calls": res.n_solver_calls,
                    "solver_timeouts": res.n_solver_timeouts,
                    "unstable_neurons_mean": float(res.n_unstable.mean()),
                    "unstable_neurons_max": int(res.n_unstable.max()),
                    "seconds_total": round(wall, 3),
                    "seconds": {k: round(v, 3) for k, v in res.timings.items()},
                }
            )
            print(json.dumps(runs[-1]), file=sys.stderr)
    report = {
        "benchmark": "convexnn.robustness ℓ2 certification (bench_certify_l2)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "settings": {**vars(args), "box": [0.0, 1.0], "norm": 2, "torch_threads": 1},
        "network": {"shape": [net.n_features, net.width, net.n_outputs], "train_seconds": round(train_s, 2)},
        "runs": runs,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
