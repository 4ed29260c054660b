"""Issue 2's figures: every program and loss on scikit-learn's breast cancer (and diabetes), timed.

Problem: breast cancer standardised, labels ±1, intercept column, alpha = 1e-3, 40 Gaussian gates
(seed 0); diabetes with X and y standardised (squared loss). For each (kind, loss) it measures the
wall time of ``convexnn.solvers.solve(problem, solver="auto", tol=1e-6)`` (median of --repeat runs, one
thread unless --threads), the certificate, and, with --reference, the CVXPY + Clarabel optimum and time
and the relative difference of convexnn's objective from it.

    python benchmarks/bench_core.py --reference --out results/core.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import emit, machine_info
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from convexnn.ops.patterns import add_intercept, patterns_from_gates, sample_gates
from convexnn.solvers import ConvexProblem, cvxpy_solve, solve


def problems(n_gates: int, seed: int):
    X, y = load_breast_cancer(return_X_y=True)
    X = add_intercept(StandardScaler().fit_transform(X))
    y = 2.0 * y - 1.0
    D, H = patterns_from_gates(X, sample_gates(X.shape[1], n_gates, seed))
    for kind in ("relu", "gated"):
        for loss in ("squared", "logistic", "hinge"):
            yield "breast_cancer", X, y, D, H, kind, loss
    Xd, yd = load_diabetes(return_X_y=True)
    Xd = add_intercept(StandardScaler().fit_transform(Xd))
    yd = (yd - yd.mean()) / yd.std()
    Dd, Hd = patterns_from_gates(Xd, sample_gates(Xd.shape[1], n_gates, seed))
    for kind in ("relu", "gated"):
        yield "diabetes", Xd, yd, Dd, Hd, kind, "squared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpha", type=float, default=1e-3)
    ap.add_argument("--gates", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-iter", type=int, default=20000)
    ap.add_argument("--reference", action="store_true", help="also solve with CVXPY + Clarabel")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # scipy's BLAS/LAPACK (used by polish) too
    rows = []
    for name, X, y, D, H, kind, loss in problems(args.gates, args.seed):
        def t(a):
            return torch.as_tensor(a, dtype=torch.float64)

        pb = ConvexProblem(t(X), t(y[:, None]), t(D), t(H), args.alpha, loss, kind)
        times, cpu, res = [], [], None
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            res = solve(pb, solver="auto", tol=args.tol, max_iter=args.max_iter)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        row = {
            "data": name, "n": X.shape[0], "d": X.shape[1], "P": D.shape[1], "kind": kind, "loss": loss,
            "solver": res.solver, "seconds_median": statistics.median(times), "seconds_all": times,
            "cpu_seconds_median": statistics.median(cpu), "cpu_seconds_all": cpu,
            "iterations": res.n_iter, "converged": res.converged, **res.certificate.as_dict(),
            "info": {k: v for k, v in res.info.items() if isinstance(v, int | float | str)},
            "polish": res.info.get("polish"),
        }
        if args.reference:
            t0 = time.perf_counter()
            ref = cvxpy_solve(pb)
            row["cvxpy_seconds"] = time.perf_counter() - t0
            opt = ref.info["optimal_value"]
            row["cvxpy_optimum"] = opt
            row["relative_difference_from_cvxpy"] = (res.certificate.primal - opt) / abs(opt)
            row["dual_minus_cvxpy_optimum"] = res.certificate.dual - opt
        print(f"{name:14s} {kind:5s} {loss:8s} {row['seconds_median']:.3f}s (cpu {row['cpu_seconds_median']:.3f}s) "
              f"{res.solver:12s} it={res.n_iter:6d} "
              f"rel.gap={res.certificate.relative_gap:.1e}"
              + (f"  vs cvxpy {row['relative_difference_from_cvxpy']:+.1e} ({row['cvxpy_seconds']:.1f}s)"
                 if args.reference else ""), flush=True)
        rows.append(row)
    emit({"benchmark": "core", "settings": vars(args), "machine": machine_info(),
          "method": "wall time (and process CPU time) of solve(problem, solver='auto') to relative gap <= tol, "
                    "median of repeats; the machine may be shared: CPU time is the less load-sensitive figure",
          "results": rows}, args.out)


if __name__ == "__main__":
    main()
