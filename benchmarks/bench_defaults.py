"""The default estimators on real data as it ships: does a plain ``fit`` certify, and how fast?

For every PMLB table in ``../shared/data/pmlb`` (at most ``--n`` rows, drawn with seed 0) and four of
scikit-learn's built-in data sets (diabetes, breast cancer, wine, iris), ``ConvexReLURegressor`` (regression)
or ``ConvexReLUClassifier`` (binary and multi-class; ``--loss``) with default parameters except ``random_state=0``,
``n_threads=--threads`` (0: None, the default), ``max_time=--max-time`` (and ``--dtype``, ``--tol``: float64, 1e-6 by
default), fitted on X as it is ("raw") and on X with every non-constant column standardised ("std"). Recorded per
fit: wall time, the certificate's relative gap, the objective, whether it reached ``tol`` without a
ConvergenceWarning, the warnings' text, the training score.

    python benchmarks/bench_defaults.py --out results/defaults.json
    python benchmarks/bench_defaults.py --loss logistic --tasks binary multiclass --out results/defaults_logistic.json
    python benchmarks/bench_defaults.py --dtype float32 --tol 1e-5 --scales std --out results/defaults_f32.json
    python benchmarks/bench_defaults.py --threads 0 --tasks multiclass --out results/defaults_multiclass.json
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings

import numpy as np
import torch
from _common import emit, machine_info, pmlb_at_most, standardise
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from convexnn import ConvexReLUClassifier, ConvexReLURegressor
from convexnn.datasets import list_pmlb

BUILTIN = {"sklearn:diabetes": (load_diabetes, "regression"), "sklearn:breast_cancer": (load_breast_cancer, "binary"),
           "sklearn:wine": (load_wine, "multiclass"), "sklearn:iris": (load_iris, "multiclass")}


def datasets(n_max: int, only: list[str] | None):
    for name, task in list_pmlb().items():
        if only and name not in only:
            continue
        X, y = pmlb_at_most(name, n_max)
        yield name, task, X, y
    for name, (loader, task) in BUILTIN.items():
        if only and name not in only:
            continue
        X, y = loader(return_X_y=True)
        yield name, task, X, y


def fit_one(X: np.ndarray, y: np.ndarray, task: str, threads: int | None, max_time: float, loss: str,
            dtype: str = "float64", tol: float = 1e-6) -> dict:
    est = (ConvexReLURegressor if task == "regression" else ConvexReLUClassifier)(
        random_state=0, n_threads=threads, max_time=max_time, dtype=dtype, tol=tol,
        **({} if task == "regression" else {"loss": loss}))
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est.fit(X, y)
            error = None
        except Exception as exc:  # a crash is a result here, not the end of the benchmark
            error = f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - t0
    rec: dict = {"seconds": wall, "error": error,
                 "warnings": [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]}
    if error is None:
        rec.update(relative_gap=est.certificate_.relative_gap, objective=est.objective_, score=float(est.score(X, y)),
                   certified=est.certificate_.relative_gap <= est.tol and not rec["warnings"])
    else:
        rec["certified"] = False
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="rows per data set at most (random subset, seed 0)")
    ap.add_argument("--threads", type=int, default=1,
                    help="n_threads of every fit; 0: none named, the estimators' default (small programs: one torch "
                         "thread, their output columns side by side on the machine's other cores)")
    ap.add_argument("--max-time", type=float, default=120.0, help="max_time of each fit (seconds)")
    ap.add_argument("--only", nargs="*", help="data set names to run (default: all)")
    ap.add_argument("--loss", choices=("squared", "logistic", "hinge"), default="squared",
                    help="the classifiers' loss (regressors: squared)")
    ap.add_argument("--tasks", nargs="*", choices=("binary", "multiclass", "regression"),
                    default=["binary", "multiclass", "regression"])
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="the estimators' dtype")
    ap.add_argument("--tol", type=float, default=1e-6, help="the estimators' tol")
    ap.add_argument("--scales", nargs="*", choices=("raw", "std"), default=["raw", "std"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    threads = args.threads or None
    if threads is not None:
        torch.set_num_threads(threads)
    rows = []
    with threadpool_limits(threads) if threads is not None else contextlib.nullcontext():
        for name, task, X, y in datasets(args.n, args.only):
            if task not in args.tasks:
                continue
            for scale in args.scales:
                Xs = standardise(X) if scale == "std" else X
                rec = {"data": name, "task": task, "scale": scale, "n": X.shape[0], "d": X.shape[1],
                       **fit_one(Xs, y, task, threads, args.max_time, args.loss, args.dtype, args.tol)}
                rows.append(rec)
                print(f"{name:22s} {scale:4s} n={X.shape[0]:5d} d={X.shape[1]:3d} {rec['seconds']:7.2f} s  "
                      f"gap {rec.get('relative_gap', float('nan')):.1e}  certified {rec['certified']}", flush=True)
    summary = {scale: {"fits": sum(r["scale"] == scale for r in rows),
                       "certified": sum(r["scale"] == scale and r["certified"] for r in rows),
                       "errors": sum(r["scale"] == scale and r["error"] is not None for r in rows),
                       "seconds_total": sum(r["seconds"] for r in rows if r["scale"] == scale)}
               for scale in ("raw", "std")}
    emit({"benchmark": "defaults", "machine": machine_info(), "settings": vars(args),
          "method": "default ConvexReLURegressor / ConvexReLUClassifier (random_state=0; dtype, tol as set), one fit "
                    "per data set and scaling; 'certified': relative gap <= tol and no ConvergenceWarning",
          "summary": summary, "results": rows}, args.out)


if __name__ == "__main__":
    main()
