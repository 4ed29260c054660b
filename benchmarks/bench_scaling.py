"""Issue 3's scaling figures for (C) with the squared loss on Fashion-MNIST: ADMM (prediction split), and the
interior-point path to a target gap (``--mode exact``).

Problem: Fashion-MNIST train images, pixels scaled to [0, 1] (no standardisation), an intercept column,
labels ±1, P Gaussian gates (seed 0), alpha as given. Two kinds of rows:

- ``pair`` (default): one two-class pair (``--pair 7 9`` = sneaker vs ankle boot: label +1 for the first class),
  12000 rows, or a random subset of ``--n`` rows (seed 0);
- ``all``: n rows drawn from all 60000 (seed 0), label +1 for classes 5–9 (sandal, shirt, sneaker, bag,
  ankle boot), −1 for classes 0–4.

``--mode exact`` measures the time to relative gap ``--tol`` of the interior-point path (float64) for each
n in ``--ns`` (or each P in ``--Ps`` with ``--vary P``) on PCA features (``--pca`` components) of rows from
all ten classes, as n grows to all 60000 (``--rows synthetic``: the synthetic rows below instead).
``--mode target`` runs :func:`convexnn.solvers.admm.admm_relu_split` once until the certificate's relative gap
is ≤ ``--tol`` or ``--max-time`` seconds and reports the time to each gap level reached, the iterations,
the mean time per iteration and the non-zero blocks.
``--mode relaxation`` runs FISTA on the gated program (G) with the same data and patterns for ``--max-time``
seconds: (G) relaxes (C) (every (C) point gives a (G) point with the same predictions and no larger penalty),
so its optimum is a lower bound on (C)'s and its gap curve shows how far a first-order method gets on this
data at all. ``--mode scaling`` measures the time per iteration (``--iters`` iterations, certificate only
at the end) for each n in ``--ns`` (rows from ``all``) and each P
in ``--Ps`` (rows of the pair). ``--device cuda`` and ``--rows synthetic --ns N`` (Gaussian X of N × ``--d``,
labels sign of a random ReLU network) are for a GPU machine.

    python benchmarks/bench_scaling.py --mode target --threads 1 --out results/scaling_target_1t.json
    python benchmarks/bench_scaling.py --mode relaxation --threads 2 --max-time 150 --out results/relaxation.json
    python benchmarks/bench_scaling.py --mode scaling --out results/scaling.json
    python benchmarks/bench_scaling.py --mode exact --ns 3000 12000 30000 60000 --out results/scaling_exact.json
    python benchmarks/bench_scaling.py --mode exact --vary P --n 2000 --out results/scaling_exact_P.json
    python benchmarks/bench_scaling.py --mode exact --device cuda --out results/scaling_exact_gpu.json
    python benchmarks/bench_scaling.py --mode exact --device cuda --pca 0 --ns 12000 --memory-limit 60
    python benchmarks/bench_scaling.py --mode exact --device cuda --rows synthetic --ns 10000 100000 1000000 \
        --memory-limit 60
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

import numpy as np
import torch
from _common import emit, machine_info

from convexnn.datasets import load_fashion_mnist, to_pm1
from convexnn.ops import operators
from convexnn.ops.patterns import add_intercept, patterns_from_gates, sample_gates
from convexnn.solvers.newton import ipm_cost, polish
from convexnn.solvers.problem import ConvexProblem

admm_mod = importlib.import_module("convexnn.solvers.admm")


def build(rows: str, n: int | None, P: int, alpha: float, pair: tuple[int, int], device: str,
          synthetic_d: int = 100) -> ConvexProblem:
    if rows == "pair":
        X, y = load_fashion_mnist("train", classes=pair, n=n, seed=0)
        y = to_pm1(y, pair[0])
    elif rows == "all":
        X, y = load_fashion_mnist("train", n=n, seed=0)
        y = np.where(y >= 5, 1.0, -1.0)
    else:  # synthetic
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, synthetic_d))
        y = np.sign(np.maximum(X @ rng.standard_normal((synthetic_d, 20)), 0) @ rng.standard_normal(20) + 1e-12)
    Xa = add_intercept(X)
    D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], P, 0))

    def t(a):
        return torch.as_tensor(a, dtype=torch.float64, device=device)

    return ConvexProblem(t(Xa), t(y[:, None]), t(D), t(H), alpha, "squared", "relu")


def nonzero_blocks(res) -> int:
    return int((operators.group_norms(res.V) > 0).sum() + (operators.group_norms(res.W) > 0).sum())


def run_target(args, dtype) -> dict:
    pb = build(args.rows, args.n, args.P, args.alpha, tuple(args.pair), args.device)
    t0 = time.perf_counter()
    res = admm_mod.admm_relu_split(pb, tol=args.tol, max_iter=args.max_iter, check_every=args.check_every,
                                   max_time=args.max_time, iter_dtype=dtype)
    wall = time.perf_counter() - t0
    reached = {}
    for level in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
        hit = next((h for h in res.history if h["relative_gap"] <= level), None)
        reached[f"{level:g}"] = None if hit is None else {"seconds": hit["seconds"], "iteration": hit["iteration"]}
    return {
        "n": pb.n, "d": pb.d, "P": pb.P, "alpha": args.alpha, "wall_seconds": wall, "iterations": res.n_iter,
        "seconds_per_iteration_incl_checks": wall / max(res.n_iter, 1), "converged": res.converged,
        "certificate": res.certificate.as_dict(), "time_to_relative_gap": reached,
        "nonzero_blocks": nonzero_blocks(res), "blocks_total": 2 * pb.P, "rho": res.info["rho"],
        "rho_z": res.info["rho_z"], "history": res.history,
    }


def run_relaxation(args) -> dict:
    """FISTA on (G) (float64) for --max-time seconds: the certified relative gap as time goes on."""
    from convexnn.solvers.fista import fista

    pb = build(args.rows, args.n, args.P, args.alpha, tuple(args.pair), args.device)
    g = ConvexProblem(pb.X, pb.Y, pb.D, pb.H, pb.alpha, pb.loss, "gated")
    t0 = time.perf_counter()
    res = fista(g, tol=args.tol, max_iter=args.max_iter, check_every=20, max_time=args.max_time)
    wall = time.perf_counter() - t0
    return {"n": g.n, "d": g.d, "P": g.P, "alpha": args.alpha, "wall_seconds": wall, "iterations": res.n_iter,
            "seconds_per_iteration": wall / max(res.n_iter, 1), "certificate": res.certificate.as_dict(),
            "nonzero_blocks": int((operators.group_norms(res.V) > 0).sum()), "history": res.history}


def build_pca(n: int, P: int, alpha: float, components: int, device: str = "cpu") -> ConvexProblem:
    """n rows drawn from all 60000 training images (seed 0; all of them for n = 60000), label +1 for classes
    5–9, PCA to ``components`` fitted on those rows and standardised, intercept, P Gaussian gates (seed 0).
    ``components`` 0: the raw pixels /255 of the ``pair`` rows instead (see :func:`build`)."""
    from sklearn.decomposition import PCA

    if components == 0:
        return build("pair", n, P, alpha, (7, 9), device)
    X, y = load_fashion_mnist("train", n=n, seed=0)
    Z = PCA(components, random_state=0).fit_transform(X)
    Xa = add_intercept((Z - Z.mean(0)) / Z.std(0))
    D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], P, 0))

    def t(a):
        return torch.as_tensor(a, dtype=torch.float64, device=device)

    return ConvexProblem(t(Xa), t(np.where(y >= 5, 1.0, -1.0)[:, None]), t(D), t(H), alpha, "squared", "relu")


def run_exact(n: int, P: int, args) -> dict:
    """Time to relative gap ``--tol`` of the interior-point path (:func:`polish` from zero, method "ipm",
    gap_target = tol: what ``solve(solver="auto")`` runs for (C) when it is affordable)."""
    if args.rows == "synthetic":
        pb = build("synthetic", n, P, args.alpha, tuple(args.pair), args.device, args.d)
    else:
        pb = build_pca(n, P, args.alpha, args.pca, args.device)
    flops, need = ipm_cost(pb.n, pb.d, pb.P, constant_lam=pb.loss == "squared")
    zero = pb.zeros()
    if args.device == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    V, W, cert, info = polish(pb, zero, zero.clone(), method="ipm", gap_target=args.tol, return_info=True,
                              memory_limit=args.memory_limit * 2**30)
    if args.device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"n": pb.n, "d": pb.d, "P": pb.P, "alpha": args.alpha, "wall_seconds": wall, "cpu_seconds": cpu,
            "reached_tol": cert.relative_gap <= args.tol, "certificate": cert.as_dict(),
            "ipm_iterations": info.ipm_iterations, "active_set_newton_steps": info.newton_iterations,
            "method": info.method, "timings": info.timings,
            "ipm_cost_estimate": {"flops_per_iteration": flops, "bytes": need},
            "nonzero_blocks": int((operators.group_norms(V) > 0).sum() + (operators.group_norms(W) > 0).sum())}


def run_per_iteration(rows: str, n: int | None, P: int, args, dtype) -> dict:
    pb = build(rows, n, P, args.alpha, tuple(args.pair), args.device, args.d)
    admm_mod.admm_relu_split(pb, max_iter=2, check_every=10**9, iter_dtype=dtype)  # warm-up
    if args.device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = admm_mod.admm_relu_split(pb, max_iter=args.iters, check_every=10**9, iter_dtype=dtype)
    if args.device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"rows": rows, "n": pb.n, "d": pb.d, "P": pb.P, "iterations": args.iters, "wall_seconds": wall,
            "seconds_per_iteration": wall / args.iters,
            "note": "wall includes setup (d×d Cholesky) and one certificate",
            "relative_gap_at_end": res.certificate.relative_gap}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("target", "scaling", "exact", "relaxation"), default="target")
    ap.add_argument("--rows", choices=("pair", "all", "synthetic"), default="pair")
    ap.add_argument("--pair", type=int, nargs=2, default=(7, 9))
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--P", type=int, default=100)
    ap.add_argument("--alpha", type=float, default=1e-2)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-time", type=float, default=60.0)
    ap.add_argument("--max-iter", type=int, default=100000)
    ap.add_argument("--check-every", type=int, default=10)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="dtype of the iteration")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ns", type=int, nargs="*", default=[3000, 12000, 30000, 60000])
    ap.add_argument("--Ps", type=int, nargs="*", default=[50, 100, 200, 500, 1000])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--d", type=int, default=100, help="columns of the synthetic X")
    ap.add_argument("--pca", type=int, default=50,
                    help="PCA components (--mode exact); 0: the raw pixels of the --pair rows")
    ap.add_argument("--memory-limit", type=float, default=8.0, help="GiB the interior-point method may use")
    ap.add_argument("--vary", choices=("n", "P"), default="n",
                    help="--mode exact: n over --ns (P = --P), or P over --Ps (n = --n, default 2000)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}
    out = {"benchmark": "bench_scaling", "machine": machine_info(), "settings": settings,
           "problem": "(C), squared loss, Fashion-MNIST pixels/255 + intercept, labels ±1, Gaussian gates seed 0",
           "solver": "convexnn.solvers.admm.admm_relu_split (prediction split), certificate in float64"}
    if args.mode == "exact":
        out["problem"] = ("(C), squared loss, Fashion-MNIST train rows from all classes (label +1 for classes "
                          "5-9), PCA to --pca components fitted on those rows, standardised, intercept, "
                          "Gaussian gates seed 0")
        out["solver"] = "polish(method='ipm', gap_target=tol) from zero: interior point, float64"
        key, runs = ("by_n", [(n, args.P) for n in args.ns]) if args.vary == "n" else \
            ("by_P", [(args.n or 2000, P) for P in args.Ps])
        out[key] = []
        for n, P in runs:
            out[key].append(run_exact(n, P, args))
            print(json.dumps(out[key][-1]), file=sys.stderr, flush=True)  # progress: one row per run
    elif args.mode == "target":
        out["target"] = run_target(args, dtype)
    elif args.mode == "relaxation":
        out["solver"] = "convexnn.solvers.fista.fista on the gated program (G), float64"
        out["relaxation"] = run_relaxation(args)
    else:
        rows_n = "synthetic" if args.rows == "synthetic" else "all"
        out["by_n"] = [run_per_iteration(rows_n, n, args.P, args, dtype) for n in args.ns]
        out["by_P"] = [run_per_iteration("pair", args.n, P, args, dtype) for P in args.Ps]
    emit(out, args.out)


if __name__ == "__main__":
    main()
