"""Issue 3's GPU figures (they also run on CPU, at any size, for a check of the script itself).

Problem: (C) with the squared loss, solved by the prediction-split ADMM
(:func:`convexnn.solvers.admm.admm_relu_split`), iterations in ``--dtype``, certificate in float64.

Rows (``--rows``):

- ``fmnist`` (default): Fashion-MNIST train images (``--n`` rows drawn with seed 0; all 60000 by default), pixels
  /255, intercept (d = 785), ``--classes 10``: targets one-vs-rest ±1 (n, 10), as ConvexReLUClassifier encodes
  them, P Gaussian gates (seed 0) shared by the 10 outputs, each output with its own 2P blocks;
  ``--classes 2``: label +1 for classes 5–9, −1 for 0–4 (one output).
- ``synthetic``: Gaussian X of n × ``--d`` (seed 0) + intercept, y = sign of a random ReLU network of width 20.

Modes:

- ``ratio``: the time of one ADMM iteration against the two matrix products it cannot avoid, X·U (n×d by
  d×2PK) and Xᵀ·R (d×n by n×2PK), in the iteration's dtype and at the same shapes. The iteration's time is
  (wall(k2 iterations) − wall(k1 iterations)) / (k2 − k1), each run without certificate checks but the last, so
  that set-up and the final certificate cancel; the products are timed alone (mean of ``--reps`` after a
  warm-up). Every size in ``--ns`` (default: the one of ``--n``) and every P in ``--Ps``.
- ``target``: one ADMM run until the relative gap is ≤ ``--tol`` or ``--max-time`` seconds; the time to each
  gap level reached, the iterations and the time per iteration (checks included).
- ``estimator``: the default ``ConvexReLUClassifier`` (``--P`` gates, ``--alpha``, ``--max-time``) fitted on
  the rows on ``--device``: wall time, certificate, training accuracy.
- ``agree``: the same problem (``--n`` rows, default 2000) on every available device: ``solve(solver="auto")``
  to 1e-6, then warm-started from its solution, and on the float32 problem to 1e-4; the prediction-split ADMM
  for ``--max-iter`` iterations with float64 and with float32 iterations: the certified objectives and the
  largest prediction differences (against the CPU float64 solution, and between devices).

``matmul`` settings are PyTorch's defaults (TF32 off: products in true float32).

    python benchmarks/bench_gpu.py --mode ratio --device cuda --out results/gpu_ratio.json
    python benchmarks/bench_gpu.py --mode ratio --device cuda --rows synthetic --ns 10000 100000 1000000 --P 100
    python benchmarks/bench_gpu.py --mode target --device cuda --P 256 --max-time 120 --out results/gpu_target.json
    python benchmarks/bench_gpu.py --mode estimator --device cuda --pair 7 9 --P 100 --max-time 120
    python benchmarks/bench_gpu.py --mode agree --rows synthetic --n 2000 --P 20 --alpha 1e-3 --max-iter 2000 \
        --out results/gpu_agree.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from _common import emit, machine_info

from convexnn.datasets import load_fashion_mnist
from convexnn.ops import operators
from convexnn.ops.patterns import add_intercept, patterns_from_gates, sample_gates
from convexnn.solvers import solve
from convexnn.solvers.admm import admm_relu_split
from convexnn.solvers.problem import ConvexProblem

FUSED = {"auto": None, "on": True, "off": False}


def data(rows: str, n: int | None, classes: int, d: int, pair: tuple[int, int] | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """X with intercept (n, d+1) and targets Y (n, K)."""
    if rows == "fmnist" and pair is not None:
        X, y = load_fashion_mnist("train", classes=pair, n=n, seed=0)
        Y = np.where(y == pair[0], 1.0, -1.0)[:, None]
    elif rows == "fmnist":
        X, y = load_fashion_mnist("train", n=n, seed=0)
        if classes == 10:
            Y = -np.ones((X.shape[0], 10))
            Y[np.arange(X.shape[0]), y.astype(int)] = 1.0
        else:
            Y = np.where(y >= 5, 1.0, -1.0)[:, None]
    else:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, d))
        Y = np.sign(np.maximum(X @ rng.standard_normal((d, 20)), 0) @ rng.standard_normal(20) + 1e-12)[:, None]
    return add_intercept(X), Y


def problem(Xa: np.ndarray, Y: np.ndarray, P: int, alpha: float, device: str,
            dtype: torch.dtype = torch.float64) -> ConvexProblem:
    D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], P, 0))

    def t(a):
        return torch.as_tensor(a, dtype=dtype, device=device)

    return ConvexProblem(t(Xa), t(Y), t(D), t(H), alpha, "squared", "relu")


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def run_ratio(pb: ConvexProblem, args, dtype: torch.dtype) -> dict:
    n, d, P, K = pb.n, pb.d, pb.P, pb.K
    lim = {"memory_limit": args.memory_limit * 2**30, "fused_zstep": FUSED[args.fused]}
    k1, k2 = args.iters

    def admm_run(k: int):
        return admm_relu_split(pb, max_iter=k, check_every=10**9, iter_dtype=dtype, **lim)

    admm_run(2)  # warm-up: kernels, allocator
    w1 = timed(lambda: admm_run(k1), args.device)
    w2 = timed(lambda: admm_run(k2), args.device)
    per_it = (w2 - w1) / (k2 - k1)
    X = pb.X.to(dtype)
    g = torch.Generator(device="cpu").manual_seed(0)
    U = torch.randn(d, 2 * P * K, generator=g, dtype=dtype).to(pb.X.device)
    R = torch.randn(n, 2 * P * K, generator=g, dtype=dtype).to(pb.X.device)
    del g
    times = {}
    for name, fn in (("X_U", lambda: X @ U), ("Xt_R", lambda: X.T @ R)):
        fn()
        times[name] = timed(lambda f=fn: [f() for _ in range(args.reps)], args.device) / args.reps
    both = times["X_U"] + times["Xt_R"]
    flops = 2 * 2 * n * d * 2 * P * K
    return {"n": n, "d": d, "P": P, "K": K, "columns_2PK": 2 * P * K, "iterations": [k1, k2], "fused": args.fused,
            "wall_k1": w1, "wall_k2": w2, "seconds_per_iteration": per_it,
            "seconds_X_U": times["X_U"], "seconds_Xt_R": times["Xt_R"], "seconds_two_products": both,
            "ratio_iteration_to_products": per_it / both, "products_tflops": flops / both / 1e12,
            "peak_memory_gib": (torch.cuda.max_memory_allocated() / 2**30
                                if torch.device(args.device).type == "cuda" else None)}


def run_target(pb: ConvexProblem, args, dtype: torch.dtype) -> dict:
    t0 = time.perf_counter()
    res = admm_relu_split(pb, tol=args.tol, max_iter=args.max_iter, check_every=args.check_every,
                          max_time=args.max_time, iter_dtype=dtype, memory_limit=args.memory_limit * 2**30,
                          fused_zstep=FUSED[args.fused])
    sync(args.device)
    wall = time.perf_counter() - t0
    reached = {}
    for level in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
        hit = next((h for h in res.history if h["relative_gap"] <= level), None)
        reached[f"{level:g}"] = None if hit is None else {"seconds": hit["seconds"], "iteration": hit["iteration"]}
    nz = int((operators.group_norms(res.V) > 0).sum() + (operators.group_norms(res.W) > 0).sum())
    return {"n": pb.n, "d": pb.d, "P": pb.P, "K": pb.K, "alpha": pb.alpha, "wall_seconds": wall,
            "iterations": res.n_iter, "seconds_per_iteration_incl_checks": wall / max(res.n_iter, 1),
            "converged": res.converged, "certificate": res.certificate.as_dict(), "time_to_relative_gap": reached,
            "nonzero_blocks": nz, "blocks_total": 2 * pb.P * pb.K, "rho": res.info["rho"],
            "rho_z": res.info["rho_z"], "history": res.history}


def run_agree(Xa: np.ndarray, Y: np.ndarray, args) -> dict:
    """On every device: solve(auto) to 1e-6 on the float64 problem, then warm-started from its own solution,
    and on the float32 problem (to 1e-4); the prediction-split ADMM for ``--max-iter`` iterations (no time
    limit, so that every device runs the same iterations) with float64 and with float32 iterations."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows, preds = [], {}
    lim = {"memory_limit": args.memory_limit * 2**30}

    def record(name: str, pb: ConvexProblem, res, wall: float) -> None:
        preds[name] = operators.forward(pb.X, pb.D, res.V - res.W).double().cpu().numpy()
        rows.append({"run": name, "seconds": wall, **res.certificate.as_dict(), "solver": res.solver,
                     "n_iter": res.n_iter, "converged": bool(res.converged)})

    def timed_run(dev: str, fn):
        t0 = time.perf_counter()
        res = fn()
        sync(dev)
        return res, time.perf_counter() - t0

    for dev in devices:
        pb = problem(Xa, Y, args.P, args.alpha, dev)
        res, w = timed_run(dev, lambda pb=pb: solve(pb, tol=1e-6, **lim))
        record(f"{dev}: solve(auto, tol=1e-6), float64", pb, res, w)
        res2, w = timed_run(dev, lambda pb=pb, res=res: solve(pb, tol=1e-6, warm_start=res, **lim))
        record(f"{dev}: the same, warm-started from its solution", pb, res2, w)
        pb32 = problem(Xa, Y, args.P, args.alpha, dev, torch.float32)
        res, w = timed_run(dev, lambda pb=pb32: solve(pb, tol=1e-4, **lim))
        record(f"{dev}: solve(auto, tol=1e-4), float32 problem", pb32, res, w)
        for it_dtype in (torch.float64, torch.float32):
            res, w = timed_run(dev, lambda pb=pb, it_dtype=it_dtype: admm_relu_split(
                pb, tol=0.0, max_iter=args.max_iter, iter_dtype=it_dtype, **lim))
            record(f"{dev}: admm_relu_split, {args.max_iter} iterations in {str(it_dtype)[6:]}", pb, res, w)
    ref = preds["cpu: solve(auto, tol=1e-6), float64"]
    scale = max(float(np.abs(ref).max()), 1e-300)
    best = min(r["primal"] for r in rows)
    for r in rows:
        r["max_prediction_difference_vs_cpu_solve_auto"] = float(np.abs(preds[r["run"]] - ref).max()) / scale
        r["primal_relative_to_lowest"] = (r["primal"] - best) / best
    # the same ADMM iterations on two devices: how far apart they end
    for it_dtype in ("float64", "float32"):
        keys = [f"{dev}: admm_relu_split, {args.max_iter} iterations in {it_dtype}" for dev in devices]
        if len(keys) == 2:
            rows.append({"run": f"admm {it_dtype}: cuda vs cpu, largest prediction difference (relative)",
                         "value": float(np.abs(preds[keys[0]] - preds[keys[1]]).max()) / scale})
    return {"n": Xa.shape[0], "d": Xa.shape[1], "P": args.P, "K": Y.shape[1], "runs": rows}


def run_estimator(Xa: np.ndarray, Y: np.ndarray, args) -> dict:
    """The default ConvexReLUClassifier (only n_patterns, alpha, device and max_time set) on the rows."""
    from convexnn import ConvexReLUClassifier

    X = Xa[:, :-1]  # the estimator adds its own intercept
    y = Y[:, 0] if Y.shape[1] == 1 else Y.argmax(1)
    est = ConvexReLUClassifier(alpha=args.alpha, n_patterns=args.P, device=args.device, max_time=args.max_time,
                               n_threads=args.threads)
    t0 = time.perf_counter()
    est.fit(X, y)
    wall = time.perf_counter() - t0
    return {"n": X.shape[0], "d": X.shape[1], "P": args.P, "classes": int(np.unique(y).size),
            "estimator": repr(est), "fit_seconds": wall, "certificate": est.certificate_.as_dict(),
            "n_iter": est.n_iter_, "training_accuracy": float(est.score(X, y)),
            "history": [{k: v for k, v in h.items() if isinstance(v, int | float | str)} for h in est.history_]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("ratio", "target", "agree", "estimator"), default="ratio")
    ap.add_argument("--rows", choices=("fmnist", "synthetic"), default="fmnist")
    ap.add_argument("--classes", type=int, choices=(2, 10), default=10)
    ap.add_argument("--pair", type=int, nargs=2, default=None,
                    help="fmnist rows of these two classes only (label +1 for the first), e.g. 7 9")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--ns", type=int, nargs="*", default=None)
    ap.add_argument("--d", type=int, default=100, help="columns of the synthetic X")
    ap.add_argument("--P", type=int, default=256)
    ap.add_argument("--Ps", type=int, nargs="*", default=None)
    ap.add_argument("--alpha", type=float, default=1e-2)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-time", type=float, default=30.0)
    ap.add_argument("--max-iter", type=int, default=100000)
    ap.add_argument("--check-every", type=int, default=10)
    ap.add_argument("--iters", type=int, nargs=2, default=(5, 25), help="k1 k2 of --mode ratio")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="dtype of the iteration")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--memory-limit", type=float, default=60.0, help="GiB the ADMM may use")
    ap.add_argument("--fused", choices=("auto", "on", "off"), default="auto",
                    help="the fused z-step kernel (auto: on CUDA when Triton is installed)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    out = {"benchmark": "bench_gpu", "machine": machine_info(),
           "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
           "solver": "convexnn.solvers.admm.admm_relu_split (prediction split), certificate in float64"}
    if args.mode == "agree":
        n = args.n or 2000
        Xa, Y = data(args.rows, n, args.classes, args.d, args.pair)
        out["agree"] = run_agree(Xa, Y, args)
    elif args.mode == "estimator":
        Xa, Y = data(args.rows, args.n, args.classes, args.d, args.pair)
        out["estimator"] = run_estimator(Xa, Y, args)
    else:
        out["runs"] = []
        ns = args.ns or [args.n]
        Ps = args.Ps or [args.P]
        for n in ns:
            Xa, Y = data(args.rows, n, args.classes, args.d, args.pair)
            for P in Ps:
                pb = problem(Xa, Y, P, args.alpha, args.device)
                row = run_ratio(pb, args, dtype) if args.mode == "ratio" else run_target(pb, args, dtype)
                out["runs"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "history"}), file=sys.stderr, flush=True)
                del pb
                if torch.device(args.device).type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
    emit(out, args.out)


if __name__ == "__main__":
    main()
