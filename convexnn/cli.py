"""The ``convexnn`` command line.

    convexnn demo                       convexnn vs Adam on scikit-learn's breast-cancer data
    convexnn fit DATA -o MODEL          fit a classifier or regressor on a CSV/TSV file (label column named);
                                        --cv K chooses alpha by cross-validation, --plot FILE draws the fit
    convexnn info MODEL                 what a model file holds, and its certificate
    convexnn certify MODEL DATA --eps E robustness certificates of a saved model on a data file (several
                                        radii and --plot FILE: robust accuracy against eps)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np


def _progress(desc: str, total: int | None, enabled: bool):
    """A tqdm bar on stderr (a no-op object when disabled or tqdm is missing); ``total`` None: a counter (the
    iterations a solver will take are not known in advance: max_iter is only a limit)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        enabled = False
    if not enabled:
        class _Null:
            def update(self, n: int = 1) -> None: ...
            def set_postfix_str(self, s: str) -> None: ...
            def close(self) -> None: ...
        return _Null()
    # disable=None: no bar when stderr is not a terminal (logs, CI)
    return tqdm(total=total, desc=desc, unit="it", file=sys.stderr, leave=False, disable=None)


def _solver_progress(bar):
    """A solver callback that advances ``bar`` to each record's iteration and shows its relative gap."""
    last = [0]

    def on_check(rec: dict) -> None:
        bar.update(max(rec["iteration"] - last[0], 0))
        last[0] = max(rec["iteration"], last[0])
        bar.set_postfix_str(f"rel.gap {rec['relative_gap']:.1e}")

    return on_check


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain-text table; ``columns`` are (key, header)."""
    cells = [[h for _, h in columns]] + [[str(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(columns))) for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    import torch
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from convexnn import ConvexReLUClassifier
    from convexnn.baselines import nonconvex_objective, train_adam

    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    ypm = 2.0 * ytr - 1.0
    print(f"breast cancer: {Xtr.shape[0]} train / {Xte.shape[0]} test rows, {X.shape[1]} features; "
          f"loss={args.loss}, alpha={args.alpha}, {args.patterns} sampled patterns, "
          f"threads={args.threads}", file=sys.stderr)

    bar = _progress("convexnn", args.max_iter, not args.quiet)
    on_check = _solver_progress(bar)
    est = ConvexReLUClassifier(alpha=args.alpha, n_patterns=args.patterns, loss=args.loss,
                               max_iter=args.max_iter, tol=args.tol, random_state=0, n_threads=args.threads)
    t0 = time.perf_counter()
    est.fit(Xtr, ytr, callback=on_check)
    t_cvx = time.perf_counter() - t0
    bar.close()
    width = est.network_.width
    rows = [{
        "method": f"convexnn (optimal for its {est.gate_vectors_.shape[1]} patterns)",
        "objective": f"{nonconvex_objective(est.network_, Xtr, ypm, args.alpha, args.loss):.6f}",
        "gap": f"{est.certificate_.gap:.2e}",
        "accuracy": f"{est.score(Xte, yte):.4f}",
        "time": f"{t_cvx:.2f}",
        "width": width,
    }]
    if args.grow_rounds > 0 and args.loss in ("squared", "logistic"):
        # the same training problem over ALL neurons (no sampled patterns), by column generation for a fixed number
        # of rounds: shows where the fixed-pattern optimum stands against the global one. (It had a 2 s budget, and
        # its objective varied from run to run, 0.0137 to 0.0206 in six cold runs: imports and warm-up ate into it.)
        from convexnn._config import num_threads
        from convexnn.solvers.column_generation import adcg

        with num_threads(args.threads):
            t0 = time.perf_counter()
            grown = adcg(Xtr, ypm[:, None], args.alpha, args.loss, max_rounds=args.grow_rounds,
                         max_time=args.grow_seconds, seed=0)
            t_grow = time.perf_counter() - t0
        fg = grown.network.forward(Xte).reshape(-1)
        rows.append({
            "method": f"convexnn, neurons grown ({grown.rounds} rounds)",
            "objective": f"{nonconvex_objective(grown.network, Xtr, ypm, args.alpha, args.loss):.6f}",
            "gap": f"{grown.lasso_primal - grown.lasso_dual:.2e}*",
            "accuracy": f"{float(np.mean((fg > 0).astype(int) == yte)):.4f}",
            "time": f"{t_grow:.2f}",
            "width": grown.network.width,
        })
    torch.manual_seed(0)
    res = train_adam(Xtr, ypm, width=max(width, 1), alpha=args.alpha, loss=args.loss, lr=args.adam_lr,
                     epochs=args.adam_epochs, seed=0, n_threads=args.threads,
                     log_every=max(args.adam_epochs // 20, 1))
    f = res.network.forward(Xte)
    acc = float(np.mean((f > 0).astype(int) == yte))
    rows.append({
        "method": f"Adam (lr={args.adam_lr}, {args.adam_epochs} full-batch epochs)",
        "objective": f"{res.objective:.6f}",
        "gap": "n/a",
        "accuracy": f"{acc:.4f}",
        "time": f"{res.time:.2f}",
        "width": width,
    })
    print(_table(rows, [("method", "method"), ("width", "width"), ("objective", "training objective"),
                        ("gap", "certificate gap"), ("accuracy", "test accuracy"), ("time", "wall time (s)")]))
    if any(r["gap"].endswith("*") for r in rows):
        print("* gap over the grown neurons' directions; global optimality over all widths is searched for, not "
              "proven (n_patterns='grow' runs this to convergence)")
    if args.json:
        print(json.dumps({"rows": rows, "certificate": est.certificate_.as_dict()}, indent=2))
    return 0


def _read_table(path: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    sep = "\t" if path.endswith((".tsv", ".tsv.gz")) else ","
    df = pd.read_csv(path, sep=sep)
    if target not in df.columns:
        raise SystemExit(f"error: {path} has no column {target!r} (columns: {', '.join(map(str, df.columns))})")
    y = df.pop(target).to_numpy()
    return df.to_numpy(dtype=np.float64), y


def _check_plot_option(plot: str | None) -> None:
    """Refuse a --plot file that could not be written, before any work (not after a long fit)."""
    if plot is None:
        return
    from convexnn.plotting import require_matplotlib

    if not str(plot).lower().endswith((".png", ".pdf", ".svg")):
        raise ValueError(f"--plot {plot!r}: expected a .png, .pdf or .svg file name")
    require_matplotlib()


def _close(fig) -> None:
    """Release a figure pyplot keeps a reference to (main() may be called many times in one process)."""
    import matplotlib.pyplot as plt

    plt.close(fig)


def cmd_fit(args: argparse.Namespace) -> int:
    from convexnn import ConvexReLUClassifier, ConvexReLUClassifierCV, ConvexReLURegressor, ConvexReLURegressorCV

    if args.cv is not None and args.alpha is not None:
        raise ValueError("--alpha and --cv exclude each other: --cv K chooses alpha by K-fold cross-validation")
    if args.cv is not None and args.cv < 2:
        raise ValueError(f"--cv needs at least 2 folds, got {args.cv}")
    _check_plot_option(args.plot)
    X, y = _read_table(args.data, args.target)
    regression = args.task == "regression"
    params = {"n_patterns": args.patterns, "kind": args.kind, "loss": args.loss, "max_iter": args.max_iter,
              "max_time": args.max_time, "tol": args.tol, "random_state": args.seed, "n_threads": args.threads}
    t0 = time.perf_counter()
    cv_report = None
    if args.cv is not None:
        cls = ConvexReLURegressorCV if regression else ConvexReLUClassifierCV
        print(f"choosing alpha by {args.cv}-fold cross-validation over {args.n_alphas} values "
              f"({args.jobs or 1} process(es))", file=sys.stderr)
        cv_est = cls(n_alphas=args.n_alphas, cv=args.cv, estimator_params=params, n_jobs=args.jobs).fit(X, y)
        est = cv_est.best_estimator_
        scores = cv_est.cv_scores_
        cv_report = {"folds": int(scores.shape[1]), "alphas": cv_est.alphas_.tolist(),
                     "mean_score": scores.mean(1).tolist(), "std_score": scores.std(1).tolist()}
    else:
        cls = ConvexReLURegressor if regression else ConvexReLUClassifier
        est = cls(alpha=1e-3 if args.alpha is None else args.alpha, **params)
        bar = _progress("convexnn", None, not args.quiet)
        try:
            est.fit(X, y, callback=_solver_progress(bar))
        finally:
            bar.close()
    seconds = time.perf_counter() - t0
    report = {"seconds": seconds, "alpha": est.alpha, "width": est.network_.width, "n_iter": est.n_iter_,
              "solver": est.solver_, "score": est.score(X, y), **est.certificate_.as_dict()}
    if cv_report is not None:
        report["cv"] = cv_report
    est.save(args.output)
    print(f"model written to {args.output}", file=sys.stderr)
    if args.plot is not None:
        from convexnn.plotting import plot_cv, plot_history, save_figure

        if cv_report is not None:
            import matplotlib.pyplot as plt

            fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), constrained_layout=True)
            plot_cv(cv_est, axes[0])
            plot_history(est.history_, axes[1:])
        else:
            fig = plot_history(est.history_)
        fig.suptitle(f"{args.data}: {type(est).__name__}, alpha = {est.alpha:.3g}", fontsize="medium")
        save_figure(fig, args.plot)
        _close(fig)
        print(f"plot written to {args.plot}", file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from convexnn import load

    est = load(args.model)
    net = est.network_
    print(json.dumps({
        "estimator": type(est).__name__, "params": {k: (v if not hasattr(v, "shape") else list(v.shape))
                                                     for k, v in est.get_params().items()},
        "network": {"n_features": net.n_features, "width": net.width, "n_outputs": net.n_outputs},
        "certificate": est.certificate_.as_dict(), "n_iter": est.n_iter_,
    }, indent=2, default=str))
    return 0


def cmd_certify(args: argparse.Namespace) -> int:
    from convexnn import load

    try:
        from convexnn.robustness import certify_report
    except ImportError as exc:  # pragma: no cover - the robustness module ships with the package
        raise SystemExit(f"error: robustness tools unavailable ({exc})") from None
    if any(not np.isfinite(e) or e < 0 for e in args.eps):
        raise ValueError(f"--eps: radii must be finite and ≥ 0, got {args.eps}")
    _check_plot_option(args.plot)
    est = load(args.model)
    X, y = _read_table(args.data, args.target)
    if hasattr(est, "classes_"):
        idx = np.searchsorted(est.classes_, y)
        if np.any(idx >= len(est.classes_)) or np.any(est.classes_[np.minimum(idx, len(est.classes_) - 1)] != y):
            raise SystemExit("error: the data has labels the model was not trained on")
        y = 2.0 * idx - 1.0 if len(est.classes_) == 2 else idx
    box = None if args.box is None else tuple(args.box)
    reports = []
    bar = _progress("certify", len(args.eps), len(args.eps) > 1 and not args.quiet)
    try:
        for eps in args.eps:
            reports.append(certify_report(est, X, y, eps=eps, norm=args.norm, method=args.method, box=box))
            bar.update()
    finally:
        bar.close()
    if args.plot is not None:
        from convexnn.plotting import plot_robustness, save_figure

        fig = plot_robustness(reports)
        save_figure(fig, args.plot)
        _close(fig)
        print(f"plot written to {args.plot}", file=sys.stderr)
    # one radius: its report; several: the curve, one report per radius
    out = reports[0] if len(reports) == 1 else {"eps": list(args.eps), "reports": reports}
    print(json.dumps(out, indent=2, default=float))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convexnn", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")

    d = sub.add_parser("demo", help="convexnn vs Adam on scikit-learn's breast-cancer data")
    d.add_argument("--alpha", type=float, default=1e-3)
    d.add_argument("--loss", default="squared", choices=["squared", "logistic", "hinge"])
    d.add_argument("--patterns", type=int, default=40)
    d.add_argument("--tol", type=float, default=1e-6)
    d.add_argument("--max-iter", type=int, default=10000)
    d.add_argument("--grow-rounds", type=int, default=15,
                   help="pricing rounds of the grown-neurons run (0: skip it; squared/logistic loss only); a round "
                        "budget, unlike a time budget, gives the same network on every machine")
    d.add_argument("--grow-seconds", type=float, default=None,
                   help="also stop the grown-neurons run after this many seconds (the result then depends on the "
                        "machine's speed)")
    d.add_argument("--adam-lr", type=float, default=1e-3)
    d.add_argument("--adam-epochs", type=int, default=2000)
    d.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    d.add_argument("--json", action="store_true", help="also print the results as JSON")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_demo)

    f = sub.add_parser("fit", help="fit a model on a CSV/TSV file and save it")
    f.add_argument("data")
    f.add_argument("--target", default="target", help="label column (default: target)")
    f.add_argument("--task", choices=["classification", "regression"], default="classification")
    f.add_argument("-o", "--output", required=True, help="model file to write (.npz)")
    f.add_argument("--alpha", type=float, default=None, help="regularisation strength (default 1e-3)")
    f.add_argument("--cv", type=int, default=None, metavar="K",
                   help="choose alpha by K-fold cross-validation instead (ConvexReLU*CV), then refit on all rows")
    f.add_argument("--n-alphas", type=int, default=8,
                   help="with --cv: alphas tried, log-spaced from alpha_max down to 1e-3 alpha_max (default 8)")
    f.add_argument("--jobs", type=int, default=None, help="with --cv: folds fitted in parallel processes")
    f.add_argument("--kind", default="relu", choices=["relu", "gated"])
    f.add_argument("--loss", default="squared", choices=["squared", "logistic", "hinge"])
    f.add_argument("--patterns", type=int, default=100)
    f.add_argument("--tol", type=float, default=1e-6)
    f.add_argument("--max-iter", type=int, default=10000)
    f.add_argument("--max-time", type=float, default=None,
                   help="wall-clock limit of the solver in seconds (the best certified point so far is kept)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--threads", type=int, default=None)
    f.add_argument("--plot", default=None, metavar="FILE",
                   help="also draw the certificate's history (and with --cv the scores against alpha) to a "
                        ".png/.pdf/.svg file (needs matplotlib: pip install 'convexnn[plot]')")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_fit)

    i = sub.add_parser("info", help="describe a model file")
    i.add_argument("model")
    i.set_defaults(func=cmd_info)

    c = sub.add_parser("certify", help="robustness certificates of a saved model on a data file")
    c.add_argument("model")
    c.add_argument("data")
    c.add_argument("--target", default="target")
    c.add_argument("--eps", type=float, nargs="+", required=True,
                   help="radius of the perturbation ball; several: one report per radius (a curve)")
    c.add_argument("--norm", default="inf", choices=["inf", "2"])
    c.add_argument("--method", default="crown", choices=["ibp", "crown", "lp", "exact"])
    c.add_argument("--box", type=float, nargs=2, default=None, metavar=("LO", "HI"))
    c.add_argument("--plot", default=None, metavar="FILE",
                   help="draw the certified and attacked fractions against eps to a .png/.pdf/.svg file")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_certify)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from convexnn import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "norm", None) == "2":
        args.norm = 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
