"""Cross-validated choice of alpha: how long ``ConvexReLUClassifierCV`` / ``ConvexReLURegressorCV`` take, and what
they choose (issue 3, item 2).

For scikit-learn's breast cancer (binary), wine (3 classes) and diabetes (regression, y standardised), X
standardised: the CV estimator with its defaults (8 alphas log-spaced from alpha_max down to 1e-3·alpha_max,
5 folds, every fold a warm-started regularisation path) and ``estimator_params={"random_state": 0}``, for each
``--jobs`` value (folds in parallel processes; with one job, ``n_threads=--threads``; with more, each fold gets
its share of the cores). Recorded: wall time, alpha_, the mean held-out score per alpha, the final network's
width and certificate.

    python benchmarks/bench_cv.py --out results/cv.json
    python benchmarks/bench_cv.py --data wine --jobs 1 2
"""

from __future__ import annotations

import argparse
import time
import warnings

from _common import emit, machine_info, standardise
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.exceptions import ConvergenceWarning

from convexnn import ConvexReLUClassifierCV, ConvexReLURegressorCV

DATA = {"breast_cancer": (load_breast_cancer, ConvexReLUClassifierCV),
        "wine": (load_wine, ConvexReLUClassifierCV),
        "diabetes": (load_diabetes, ConvexReLURegressorCV)}


def run(name: str, jobs: int, threads: int) -> dict:
    loader, cls = DATA[name]
    X, y = loader(return_X_y=True)
    X = standardise(X)
    if cls is ConvexReLURegressorCV:
        y = (y - y.mean()) / y.std()
    params = {"random_state": 0}
    if jobs == 1:
        params["n_threads"] = threads
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        t0 = time.perf_counter()
        est = cls(estimator_params=params, n_jobs=jobs).fit(X, y)
        seconds = time.perf_counter() - t0
    best = est.best_estimator_
    return {"data": name, "n": X.shape[0], "d": X.shape[1], "estimator": cls.__name__, "n_jobs": jobs,
            "seconds": seconds, "alpha_": est.alpha_, "alphas": est.alphas_.tolist(),
            "mean_scores": est.cv_scores_.mean(1).tolist(), "width": best.network_.width,
            "solver": best.solver_, "certificate": best.certificate_.as_dict(),
            # caught in this process: with n_jobs > 1 the folds' own warnings stay in their workers
            "convergence_warnings": [str(w.message)[:300] for w in caught
                                     if issubclass(w.category, ConvergenceWarning)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="*", choices=sorted(DATA), default=sorted(DATA))
    ap.add_argument("--jobs", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each fit with one job")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results = []
    for name in args.data:
        for jobs in args.jobs:
            r = run(name, jobs, args.threads)
            print(f"{name:14s} n_jobs={jobs}  {r['seconds']:7.2f} s  alpha_ {r['alpha_']:.4g}  width {r['width']:4d}"
                  f"  gap {r['certificate']['relative_gap']:.1e}", flush=True)
            results.append(r)
    emit({"benchmark": "cv", "machine": machine_info(),
          "settings": {"threads": args.threads, "cv": 5, "n_alphas": 8, "eps": 1e-3}, "results": results}, args.out)


if __name__ == "__main__":
    main()
