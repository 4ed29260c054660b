"""Issue 3's figures: convexnn against CVXPY + Clarabel on (C), time to the same objective.

Data (real): Fashion-MNIST train, classes 0 (T-shirt/top) vs 6 (Shirt), labels ±1, a random subset of n
rows (seed), PCA to 50 components fitted on that subset and standardised, intercept column appended
(d = 51). P Gaussian gate vectors (seed), their distinct activation patterns. Program (C) with the squared
loss (or --loss logistic), alpha as given.

For every n it measures
  * convexnn: wall and process-CPU time of ``solve(problem, solver="auto", tol)`` (``--threads``, default one),
    its certificate (relative gap ≤ tol is the stopping rule) and the number of non-zero blocks
    (‖v_i‖, ‖w_i‖ > 1e-6 · the largest);
  * CVXPY + Clarabel (default settings) on the same program, in a child process with a hard wall-clock
    limit (--cvxpy-timeout): CVXPY's compile time, Clarabel's solve time, total, status and optimal value.
    A run killed at the limit is reported as a lower bound (``cvxpy_seconds_lower_bound``);
  * the relative difference of convexnn's objective from Clarabel's, and whether Clarabel's value lies
    above convexnn's certified lower bound (it must, up to Clarabel's own tolerances, 1e-8 relative).

    python benchmarks/bench_cvxpy.py --sizes 5000 --cvxpy-timeout 600 --out results/cvxpy_5000.json

    python benchmarks/bench_cvxpy.py --sizes 500 1000 2000 --cvxpy-timeout 600 --out results/cvxpy.json

``--device cuda`` runs convexnn on a GPU; with ``--reference FILE`` (an earlier run's JSON on the same problems)
the CVXPY + Clarabel figures are taken from that file instead of being run again (a GPU machine need not have
CVXPY; Clarabel runs on the CPU either way), and the JSON says so:

    python benchmarks/bench_cvxpy.py --sizes 500 1000 2000 --device cuda --reference results/cvxpy.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import emit, machine_info
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from convexnn.datasets import load_fashion_mnist, to_pm1
from convexnn.ops.patterns import add_intercept, patterns_from_gates, sample_gates
from convexnn.solvers import ConvexProblem, solve


def make_problem(n: int, n_components: int, gates: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                                np.ndarray]:
    """(X with intercept (n, d), y ±1 (n,), D (n, P), H (d, P)) as described in the module docstring."""
    X, y = load_fashion_mnist("train", classes=(0, 6), n=n, seed=seed)
    Z = PCA(n_components, random_state=seed).fit_transform(X)
    Z = (Z - Z.mean(0)) / Z.std(0)
    Xa = add_intercept(Z)
    D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], gates, seed))
    return Xa, to_pm1(y, 0), np.asarray(D, dtype=np.float64), np.asarray(H, dtype=np.float64)


def clarabel_child(npz: str, out: str) -> None:
    """Solve the program in ``npz`` with CVXPY + Clarabel (default settings); write timings as JSON."""
    import cvxpy as cp

    f = np.load(npz)
    X, y, D, alpha, loss = f["X"], f["y"], f["D"], float(f["alpha"]), str(f["loss"])
    n, d = X.shape
    P = D.shape[1]
    t0, c0 = time.perf_counter(), time.process_time()
    V, W = cp.Variable((d, P)), cp.Variable((d, P))
    sign = 2 * D - 1
    pred = cp.sum(cp.multiply(D, X @ (V - W)), axis=1)
    data = cp.sum_squares(pred - y) / (2 * n) if loss == "squared" else cp.sum(cp.logistic(-cp.multiply(y, pred))) / n
    pen = cp.sum(cp.norm(V, 2, axis=0)) + cp.sum(cp.norm(W, 2, axis=0))
    prob = cp.Problem(cp.Minimize(data + alpha * pen), [cp.multiply(sign, X @ V) >= 0, cp.multiply(sign, X @ W) >= 0])
    prob.get_problem_data(cp.CLARABEL)  # compile (cached for the solve)
    t1, c1 = time.perf_counter(), time.process_time()
    prob.solve(solver=cp.CLARABEL)
    t2, c2 = time.perf_counter(), time.process_time()
    stats = prob.solver_stats
    Path(out).write_text(json.dumps({
        "status": prob.status, "optimal_value": float(prob.value) if prob.value is not None else None,
        "compile_seconds": t1 - t0, "solve_call_seconds": t2 - t1, "total_seconds": t2 - t0,
        "compile_cpu_seconds": c1 - c0, "solve_cpu_seconds": c2 - c1, "total_cpu_seconds": c2 - c0,
        "clarabel_solve_time": getattr(stats, "solve_time", None),
        "clarabel_iterations": getattr(stats, "num_iters", None),
        "cvxpy": cp.__version__, "clarabel": _clarabel_version(),
    }))


def _clarabel_version() -> str | None:
    try:
        import clarabel

        return getattr(clarabel, "__version__", None)
    except ImportError:
        return None


def run_clarabel(X: np.ndarray, y: np.ndarray, D: np.ndarray, alpha: float, loss: str, timeout: float) -> dict:
    """Clarabel in a child process (one thread), killed after ``timeout`` seconds of wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        npz, out = os.path.join(tmp, "pb.npz"), os.path.join(tmp, "out.json")
        np.savez(npz, X=X, y=y, D=D, alpha=alpha, loss=loss)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "RAYON_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        try:
            subprocess.run([sys.executable, __file__, "--child", npz, out], env=env, timeout=timeout, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except subprocess.TimeoutExpired:
            return {"status": "killed at the time limit", "cvxpy_seconds_lower_bound": time.perf_counter() - t0}
        except subprocess.CalledProcessError as exc:
            return {"status": "failed", "error": exc.stderr.decode(errors="replace")[-2000:]}
        return json.loads(Path(out).read_text())


def nonzero_blocks(V: torch.Tensor, W: torch.Tensor, rel: float = 1e-6) -> int:
    nrm = torch.cat([torch.linalg.vector_norm(V, dim=1).flatten(), torch.linalg.vector_norm(W, dim=1).flatten()])
    return int((nrm > rel * float(nrm.max())).sum()) if float(nrm.max()) > 0 else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 5000])
    ap.add_argument("--pca", type=int, default=50)
    ap.add_argument("--gates", type=int, default=100)
    ap.add_argument("--alpha", type=float, default=1e-3)
    ap.add_argument("--loss", default="squared", choices=["squared", "logistic"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cvxpy-timeout", type=float, default=900.0, help="wall-clock limit per Clarabel run (s)")
    ap.add_argument("--no-cvxpy", action="store_true")
    ap.add_argument("--device", default="cpu", help="where convexnn runs (Clarabel runs on the CPU)")
    ap.add_argument("--reference", default=None,
                    help="JSON of an earlier run on the same problems: take the CVXPY figures from it")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", nargs=2, metavar=("NPZ", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        clarabel_child(*args.child)
        return
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    rows = []
    reference = {}
    if args.reference:
        old = json.loads(Path(args.reference).read_text())
        keep = ("pca", "gates", "alpha", "loss", "seed")
        if any(old["settings"][k] != getattr(args, k) for k in keep):
            raise SystemExit(f"--reference {args.reference} was run with other settings: "
                             f"{ {k: old['settings'][k] for k in keep} }")
        reference = {r["n"]: {**r["cvxpy"], "from": args.reference, "machine": old["machine"]}
                     for r in old["results"] if "cvxpy" in r}
    for n in args.sizes:
        X, y, D, H = make_problem(n, args.pca, args.gates, args.seed)

        def t(a):
            return torch.as_tensor(a, dtype=torch.float64, device=args.device)

        pb = ConvexProblem(t(X), t(y[:, None]), t(D), t(H), args.alpha, args.loss, "relu")
        if args.device != "cpu":  # kernels loaded and the allocator warmed on a small solve first
            solve(ConvexProblem(pb.X[:200], pb.Y[:200], pb.D[:200, :5], pb.H[:, :5], args.alpha, args.loss,
                                "relu"), tol=1e-3)
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        res = solve(pb, solver="auto", tol=args.tol)
        if args.device != "cpu":
            torch.cuda.synchronize()
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        cert = res.certificate
        row = {"n": pb.n, "d": pb.d, "P": pb.P, "alpha": args.alpha, "loss": args.loss, "device": args.device,
               "variables": 2 * pb.P * pb.d, "cone_rows": 2 * pb.P * pb.n,
               "convexnn_seconds": sec, "convexnn_cpu_seconds": cpu, "convexnn_solver": res.solver,
               "convexnn_converged": res.converged, **{f"convexnn_{k}": v for k, v in cert.as_dict().items()},
               "nonzero_blocks": nonzero_blocks(res.V, res.W), "polish": res.info.get("polish")}
        timings = (row["polish"] or {}).get("timings", {})
        ipm = sum(v for k, v in timings.items() if k.startswith("ipm"))
        row["phases_seconds"] = {"interior_point": ipm, "after_it": sec - ipm}  # after: active set, certificate
        print(f"n={pb.n} d={pb.d} P={pb.P}: convexnn {sec:.2f}s (cpu {cpu:.2f}s; interior point {ipm:.2f}s, after it "
              f"{sec - ipm:.2f}s) rel.gap {cert.relative_gap:.1e} blocks {row['nonzero_blocks']}/{2 * pb.P}",
              flush=True)
        if n in reference or (not args.no_cvxpy and not args.reference):
            ref = reference[n] if n in reference else run_clarabel(X, y, D, args.alpha, args.loss, args.cvxpy_timeout)
            row["cvxpy"] = ref
            if ref.get("optimal_value") is not None:
                opt = ref["optimal_value"]
                row["relative_difference_from_clarabel"] = (cert.primal - opt) / abs(opt)
                # Clarabel's value is its primal objective at a point feasible to its default tolerances
                # (1e-8): it may lie that far below the optimum, hence below a tight certified bound
                row["clarabel_value_minus_certified_bound"] = opt - cert.dual
                row["clarabel_value_above_certified_bound"] = opt >= cert.dual - 1e-8 * abs(opt)
                row["speedup"] = ref["total_seconds"] / sec
                if "total_cpu_seconds" in ref and args.device == "cpu":
                    row["speedup_cpu"] = ref["total_cpu_seconds"] / cpu
                print(f"   clarabel {ref['status']} {ref['total_seconds']:.1f}s (compile {ref['compile_seconds']:.1f}s)"
                      f" value {opt:.10g}; convexnn primal {cert.primal:.10g} (rel.diff "
                      f"{row['relative_difference_from_clarabel']:+.1e}); speed-up {row['speedup']:.0f}x", flush=True)
            elif "cvxpy_seconds_lower_bound" in ref:
                row["speedup_lower_bound"] = ref["cvxpy_seconds_lower_bound"] / sec
                print(f"   clarabel killed after {ref['cvxpy_seconds_lower_bound']:.0f}s: speed-up >= "
                      f"{row['speedup_lower_bound']:.0f}x", flush=True)
            else:
                print(f"   clarabel {ref['status']}", flush=True)
        rows.append(row)
    emit({"benchmark": "cvxpy", "settings": {k: v for k, v in vars(args).items() if k != "child"},
          "machine": machine_info(),
          "data": "Fashion-MNIST train, classes 0 vs 6 (labels +1/-1), random n rows, PCA-50 (fit on them), "
                  "standardised, intercept column; Gaussian gates (seed), distinct patterns",
          "method": "convexnn: wall/CPU time of solve(auto) to certified relative gap <= tol, one thread; "
                    "CVXPY+Clarabel: default settings, child process, one thread, compile + solve wall time, "
                    "killed at --cvxpy-timeout (then a lower bound). The machine may be shared with other jobs.",
          "results": rows}, args.out)


if __name__ == "__main__":
    main()
