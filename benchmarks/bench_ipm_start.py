"""Iterations of the interior-point method of (C) as its starting multipliers are scaled (IPM_MU_START).

Problems: 11 PMLB binary tables (at most 400 rows, seed 0; label +1 for the largest class code), X raw and
standardised, an intercept column, 50 Gaussian gates (seed 0), squared loss, alpha 1e-3. For each value of
``--mu-start`` it runs ``polish(problem, 0, 0, method="ipm", gap_target=1e-6)`` with
``convexnn.solvers.newton.interior_point.IPM_MU_START`` set to it and records the interior-point iterations and
the relative gap it certified (``PolishInfo.ipm_gap``; > 1e-4 counts as a failure).

    python benchmarks/bench_ipm_start.py --out results/ipm_start.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import emit, machine_info, pmlb_at_most, standardise
from threadpoolctl import threadpool_limits

import convexnn.solvers.newton as newton
from convexnn.ops.patterns import add_intercept, patterns_from_gates, sample_gates
from convexnn.solvers.problem import ConvexProblem

TABLES = ["magic", "spambase", "chess", "tic_tac_toe", "monk1", "ionosphere", "spectf", "sonar", "waveform_21",
          "adult", "mushroom"]


def problems(n_max: int):
    for name in TABLES:
        X, y = pmlb_at_most(name, n_max)
        for scale in ("raw", "std"):
            Xs = X if scale == "raw" else standardise(X)
            Xa = add_intercept(Xs)
            D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], 50, 0))
            yy = np.where(y == y.max(), 1.0, -1.0)

            def t(a):
                return torch.as_tensor(a, dtype=torch.float64)

            yield name, scale, ConvexProblem(t(Xa), t(yy[:, None]), t(D), t(H), 1e-3, "squared", "relu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mu-start", type=float, nargs="+", default=[1.0, 1e-1, 1e-2, 1e-3])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    default = newton.interior_point.IPM_MU_START
    runs = []
    with threadpool_limits(args.threads):
        cases = list(problems(args.n))
        for value in args.mu_start:
            newton.interior_point.IPM_MU_START = value
            rows = []
            for name, scale, pb in cases:
                z = pb.zeros()
                t0 = time.perf_counter()
                _, _, _, info = newton.polish(pb, z, z.clone(), method="ipm", gap_target=1e-6, return_info=True)
                rows.append({"data": name, "scale": scale, "n": pb.n, "d": pb.d, "P": pb.P,
                             "ipm_iterations": info.ipm_iterations, "ipm_gap": info.ipm_gap,
                             "seconds": time.perf_counter() - t0})
            runs.append({"mu_start": value, "iterations_total": sum(r["ipm_iterations"] for r in rows),
                         "failures": sum(not r["ipm_gap"] <= 1e-4 for r in rows), "rows": rows})
            print(f"mu_start {value:g}: {runs[-1]['iterations_total']} iterations, {runs[-1]['failures']} failures",
                  flush=True)
    newton.interior_point.IPM_MU_START = default
    emit({"benchmark": "ipm_start", "machine": machine_info(), "settings": vars(args), "default": default,
          "runs": runs}, args.out)


if __name__ == "__main__":
    main()
