"""convexnn vs Adam on the same non-convex objective (issue 3, "vs Adam").

For each data set: the objective is  (1/n) Σ ½‖f(x) − y‖² + (alpha/2)(‖W1‖² + ‖b1‖² + ‖w2‖²)  of a two-layer
ReLU network f(x) = relu(x W1ᵀ + b1) w2 (no output bias), on standardised features; classification uses
±1 targets (binary: one output; K classes: K outputs, +1 in the true class's column, −1 elsewhere, all
neurons feeding all outputs); regression targets are standardised.

convexnn: :func:`convexnn.solvers.column_generation.adcg` — neuron-level column generation on the
infinite-width convex program (group lasso over neurons + pricing of the dual constraint
‖Λᵀ(X̃u)_+‖ ≤ alpha + local sliding). Its time includes everything (pricing, convex steps, sliding,
network recovery); the objective of every round's network is re-evaluated independently with
:func:`convexnn.baselines.nonconvex_objective` (outside the timer).

Adam: :func:`convexnn.baselines.train_adam` with width = the width of convexnn's final network, over
lr ∈ {1e-4, 3e-4, 1e-3, 3e-3, 1e-2} × seeds {0, 1, 2} × {full batch: ``--full-epochs`` epochs,
mini-batch of ``--batch`` rows: ``--mb-epochs`` epochs}, each run also capped at ``--adam-max-time`` s.
The best Adam objective is the lowest full-data objective any run reached at any evaluation
(``best_objective``); its time is the training time of that run up to that evaluation (evaluations
excluded), and the run's total training time is reported too.

Both sides run on one CPU thread, float64, in the same process (a warm-up of both is run first so that
neither pays torch's lazy imports). The machine is shared: timings are noisy.

Data: the PMLB tables of ``DATASETS`` (tables with more than 2000 rows — spambase, chess, 529_pollen,
225_puma8NH, 197_cpu_act — are subsampled to 2000 rows, seed 0); Fashion-MNIST: the training set restricted
to classes 0/6, 7/9 or all 10, subsampled to 2000 rows (seed 0), pixels/255 projected on the top 50 principal
components of that subset, then standardised. convexnn stops after the round that passes ``--cnn-max-time``
seconds (its final width is then whatever it reached; Adam gets that width).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_adam.py --out results/adam.json [--datasets a,b,...]
      [--partial results/adam_runs]   (one file per finished data set; ``--merge results/adam_runs`` gathers
      them into --out without running anything, so that several processes can share the data sets)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, machine_info, standardise  # noqa: E402

from convexnn import datasets  # noqa: E402
from convexnn.baselines import nonconvex_objective, train_adam  # noqa: E402
from convexnn.solvers.column_generation import adcg  # noqa: E402

LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
SEEDS = (0, 1, 2)

# name -> (source, task, rows kept (None: all))
DATASETS = {
    "monk1": ("pmlb", "binary", None),
    "tic_tac_toe": ("pmlb", "binary", None),
    "ionosphere": ("pmlb", "binary", None),
    "sonar": ("pmlb", "binary", None),
    "spectf": ("pmlb", "binary", None),
    "spambase": ("pmlb", "binary", 2000),
    "chess": ("pmlb", "binary", 2000),
    "529_pollen": ("pmlb", "regression", 2000),
    "225_puma8NH": ("pmlb", "regression", 2000),
    "197_cpu_act": ("pmlb", "regression", 2000),
    "iris": ("pmlb", "multiclass", None),
    "vehicle": ("pmlb", "multiclass", None),
    "fmnist_0v6": ("fmnist", "binary", 2000),
    "fmnist_7v9": ("fmnist", "binary", 2000),
    "fmnist_10": ("fmnist", "multiclass", 2000),
}
FMNIST_PCA = 50


def load(name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Standardised X, encoded targets Y (n, K), and a description of the preprocessing."""
    src, task, rows = DATASETS[name]
    if src == "pmlb":
        X, y = datasets.load_pmlb(name, n=rows, seed=0)
        desc = {"source": f"PMLB {name}", "rows": int(X.shape[0]), "subsampled_to": rows}
    else:
        classes = None if name == "fmnist_10" else tuple(int(c) for c in name.split("_")[1].split("v"))
        X, y = datasets.load_fashion_mnist("train", classes=classes, n=rows, seed=0)
        # PCA to FMNIST_PCA components (on the subset itself) to keep the CPU cost reasonable
        Xc = X - X.mean(0)
        _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
        X = Xc @ Vt[:FMNIST_PCA].T
        desc = {"source": f"Fashion-MNIST train, classes {classes or 'all 10'}", "rows": int(X.shape[0]),
                "subsampled_to": rows, "features": f"pixels/255, PCA to {FMNIST_PCA} components"}
    X = standardise(X)
    if task == "regression":
        Y = standardise(y[:, None])
    elif task == "binary":
        labels = np.unique(y)
        Y = np.where(y == labels[1], 1.0, -1.0)[:, None]
    else:
        labels, idx = np.unique(y, return_inverse=True)
        Y = -np.ones((y.shape[0], labels.size))
        Y[np.arange(y.shape[0]), idx] = 1.0
    desc.update({"task": task, "n": int(X.shape[0]), "d": int(X.shape[1]), "K": int(Y.shape[1])})
    return X, Y, desc


def _adam_target(Y: np.ndarray) -> np.ndarray:
    return Y[:, 0] if Y.shape[1] == 1 else Y


def warm_up() -> None:
    """Run both methods once on tiny random data (torch's lazy imports, first-call overheads)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = rng.standard_normal((40, 1))
    adcg(X, y, 0.1, max_rounds=2)
    train_adam(X, y[:, 0], 3, 0.1, epochs=3, n_threads=1)
    train_adam(X, y[:, 0], 3, 0.1, epochs=1, batch_size=8, n_threads=1)


def run_one(name: str, alpha: float, args: argparse.Namespace) -> dict:
    X, Y, desc = load(name)
    y_adam = _adam_target(Y)
    # --- convexnn
    trace: list[dict] = []

    def cb(rec: dict, net) -> None:
        trace.append({"seconds": rec["seconds"], "objective": nonconvex_objective(net, X, y_adam, alpha, "squared"),
                      "width": net.width, "round": rec["round"]})

    torch.set_num_threads(1)
    res = adcg(X, Y, alpha, "squared", max_time=args.cnn_max_time, seed=0, callback=cb)
    width = res.network.width
    cnn_obj = nonconvex_objective(res.network, X, y_adam, alpha, "squared")
    # --- Adam grid
    runs = []
    for lr in LRS:
        for mode, bs, ep in (("full", None, args.full_epochs), ("mini", args.batch, args.mb_epochs)):
            for seed in SEEDS:
                r = train_adam(X, y_adam, width, alpha, "squared", lr=lr, epochs=ep, batch_size=bs, seed=seed,
                               max_time=args.adam_max_time, n_threads=1,
                               log_every=max(ep // 100, 1))
                t_best = next(t for (_, t, o) in r.history if o <= r.best_objective)
                runs.append({"lr": lr, "seed": seed, "batch_mode": mode, "batch_size": bs, "epochs_run": r.epochs,
                             "stopped": r.stopped, "best_objective": r.best_objective,
                             "final_objective": r.objective, "time_to_best": t_best, "time": r.time})
    best = min(runs, key=lambda r: r["best_objective"])
    beat = next((t for t in trace if t["objective"] < best["best_objective"]), None)
    row = {
        "dataset": name, **desc, "alpha": alpha, "loss": "squared",
        "adam_best_objective": best["best_objective"], "adam_best_lr": best["lr"], "adam_best_seed": best["seed"],
        "adam_best_batch_mode": best["batch_mode"], "adam_best_time_to_best": best["time_to_best"],
        "adam_best_run_time": best["time"], "adam_best_epochs_run": best["epochs_run"],
        "convexnn_objective": cnn_obj, "convexnn_total_time": res.seconds, "convexnn_width": width,
        "convexnn_rounds": res.rounds, "convexnn_converged": res.converged,
        "convexnn_lasso_gap": res.lasso_primal - res.lasso_dual,
        "convexnn_max_violation": res.max_violation,
        "convexnn_heuristic_lower_bound": res.heuristic_lower_bound,
        "convexnn_rigorous_lower_bound": res.rigorous_lower_bound,
        "convexnn_time_to_beat_adam": beat["seconds"] if beat else None,
        "convexnn_beats_adam_objective": cnn_obj < best["best_objective"],
        "convexnn_beats_in_less_time_than_adam_run": bool(beat and beat["seconds"] < best["time"]),
        "convexnn_beats_in_less_time_than_adam_time_to_best": bool(beat and beat["seconds"] < best["time_to_best"]),
        "convexnn_trace": trace,
        "adam_runs": runs,
    }
    print(json.dumps({k: v for k, v in row.items() if k not in ("convexnn_trace", "adam_runs")}), file=sys.stderr,
          flush=True)
    return row


def _settings(args: dict) -> dict:
    return {**args, "lrs": LRS, "seeds": SEEDS, "threads": 1, "dtype": "float64",
            "objective": "(1/n) sum 0.5||f(x)-y||^2 + (alpha/2)(||W1||^2+||b1||^2+||w2||^2)",
            "note": "shared 2-core machine, one thread per method: timings are noisy"}


def merge(folder: str, out: str) -> int:
    """Combine the per-data-set files written with --partial into one JSON (each row keeps its run's machine
    description and settings)."""
    rows = []
    for name in DATASETS:
        path = Path(folder) / f"adam_{name}.json"
        if path.exists():
            part = json.loads(path.read_text())
            for row in part["rows"]:
                rows.append({**row, "run_machine": part["machine"], "run_settings": part["settings"]})
    summary = [{k: r[k] for k in ("dataset", "n", "d", "K", "convexnn_width", "adam_best_objective",
                                  "adam_best_time_to_best", "adam_best_run_time", "convexnn_objective",
                                  "convexnn_time_to_beat_adam", "convexnn_beats_adam_objective",
                                  "convexnn_beats_in_less_time_than_adam_run")} for r in rows]
    emit({"benchmark": "vs Adam (issue 3)", "machine": machine_info(), "settings": _settings({}),
          "n_datasets": len(rows),
          "n_beats_objective": sum(r["convexnn_beats_adam_objective"] for r in rows),
          "n_beats_objective_in_less_time": sum(r["convexnn_beats_in_less_time_than_adam_run"] for r in rows),
          "summary": summary, "rows": rows}, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--alpha", type=float, default=1e-2)
    p.add_argument("--full-epochs", type=int, default=2000)
    p.add_argument("--mb-epochs", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--adam-max-time", type=float, default=20.0)
    p.add_argument("--cnn-max-time", type=float, default=120.0)
    p.add_argument("--out", default="results/adam.json")
    p.add_argument("--partial", default=None, help="folder for one JSON per finished data set")
    p.add_argument("--merge", default=None,
                   help="no runs: gather the adam_<name>.json files of this --partial folder (in DATASETS order) "
                        "into --out")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    torch.set_num_threads(1)
    warm_up()
    rows = []
    for name in args.datasets.split(","):
        rows.append(run_one(name, args.alpha, args))
        if args.partial:  # one file per data set as soon as it is done
            emit({"machine": machine_info(), "settings": _settings(vars(args)), "rows": rows[-1:]},
                 str(Path(args.partial) / f"adam_{name}.json"))
    result = {
        "benchmark": "vs Adam (issue 3)",
        "machine": machine_info(),
        "settings": _settings(vars(args)),
        "rows": rows,
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
