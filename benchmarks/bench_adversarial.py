"""Convex adversarial training against standard convex training and PGD adversarial training (Adam).

    python benchmarks/bench_adversarial.py [--eps 0.05 0.1] [--n-eval 500] [--time-limit 2]
                                           [--robust-time 150] [--init-iters 1000] [--fashion-classes 7 9]
                                           [--datasets mnist fashion] [--models a b c [b2]] [--no-study]
                                           [--out FILE [--append]] [--quick]

For MNIST 3 vs 5 (train: the 1000 3/5 images of mnist-5k; test: the 1902 3/5 images of the MNIST test
set) and a Fashion-MNIST pair (default 7 sneaker vs 9 ankle boot; train: 1000 random images of the
pair from the training set; test: the 2000 test images of the pair), pixels in [0, 1], labels ±1
(second class +1), ℓ∞ perturbations clipped to the pixel box [0, 1], for each radius ε:

(a) standard convex training: ConvexReLUClassifier (kind="gated", logistic loss, alpha 1e-3, 50 sampled
    Gaussian gates, FISTA to a relative gap 1e-4; ε-independent, trained once), evaluated as the ReLU
    network ``network_`` of its cone split (which reproduces the gated model on the training data). (The
    kind="relu" ADMM did not reach a useful point within a minute on these 784-feature problems.)
(b) convex adversarial training: :func:`convexnn.solvers.robust.robust_solve` (hinge loss, alpha 1e-3,
    ℓ∞ ball ∩ box [0, 1], constraints="opposing"), with the patterns of gates chosen for robustness:
    the first-layer weights of the PGD-trained network (c) as directions, re-biased by
    :func:`convexnn.solvers.robust.robust_gates` so that every gate keeps its activation on the whole
    ε-box around every training point of the class its block votes against (on the other class the
    original neuron's pattern is kept: :func:`convexnn.solvers.robust.robust_patterns`). The solve starts
    from ``--init-iters`` Adam steps on the exact-penalty form of the program, repaired to exact
    feasibility (``init="penalty"``; from zero, 100 PDHG iterations on MNIST gave an objective worse than
    the zero network), then PDHG until the time budget ``--robust-time`` seconds (checked every 50
    iterations, after the start, which is not time-limited); the certificate (primal, dual, relative gap)
    is reported. This variant uses information from (c): the directions of its neurons.
(b2) (``--models ... b2``) the same with the neurons of the standard convex network (a) as directions:
    independent of (c).
(c) PGD adversarial training with Adam (:func:`convexnn.baselines.train_adam_pgd`): width 100, logistic
    loss, alpha 1e-4, 10 PGD steps from a random start, ε ramped up over the first 30% of 60 epochs,
    mini-batches of 50.

Reported per model and ε: clean accuracy on the whole test set, and on ``--n-eval`` random test points
(the same for every model): clean accuracy, PGD accuracy (50 steps, 10 restarts, box [0, 1]) and the
fraction *exactly certified* by ``convexnn.robustness.certify(method="exact", box=(0, 1))`` (CROWN, then
PGD, then one MILP per remaining point with a ``--time-limit`` second limit; a point the MILP does not
settle in time counts as not certified and is reported as undecided).

A study of the conservativeness of the fixed-pattern robust program is added (MNIST, each ε): how many
gates are strictly robust (their robust cone has an interior, so their blocks can be non-zero) for
Gaussian gates and for the PGD network's neurons, raw and re-biased, under constraints "all" (the exact
program of MATH.md §9) and "opposing", and one solve of the exact "all" program with re-biased gates.

Prints one JSON document (machine, settings, tables); ``--out`` also writes it to a file (``--append``
merges the run into an existing file: data sets, radii and models are added, the command of each run kept
under "runs"). ``--datasets`` / ``--models`` run a part of the table (the "goal" entry needs b and c).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch

from convexnn.baselines import train_adam_pgd
from convexnn.datasets import load_fashion_mnist, load_mnist_5k, load_mnist_test, to_pm1
from convexnn.estimators import ConvexReLUClassifier
from convexnn.ops import patterns
from convexnn.solvers.problem import ConvexProblem
from convexnn.solvers.robust import blocks_to_network, cone_margins, robust_gates, robust_patterns, robust_solve

try:
    from convexnn.robustness import certify, pgd_attack
except ImportError:  # pragma: no cover - the robustness package is part of the project
    certify = pgd_attack = None

BOX = (0.0, 1.0)


def machine_info() -> dict:
    try:
        sys.path.insert(0, os.path.dirname(__file__))
        from _common import machine_info as mi  # type: ignore[import-not-found]

        return mi()
    except Exception:  # noqa: BLE001 - the helper is optional
        return {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}


@contextlib.contextmanager
def timer(store: dict, key: str):
    t0 = time.perf_counter()
    yield
    store[key] = round(time.perf_counter() - t0, 2)


def evaluate(net, Xt, yt, Xe, ye, eps: float, time_limit: float, seed: int) -> dict:
    """Clean accuracy (whole test set), and on the evaluation subset: clean, PGD, exactly certified."""
    out = {"clean_accuracy": float(np.mean(np.sign(net.forward(Xt)) == yt))}
    t0 = time.perf_counter()
    xa = pgd_attack(net, Xe, ye, eps, norm="inf", steps=50, restarts=10, box=BOX, random_state=seed)
    out["pgd_accuracy"] = float(np.mean(ye * net.forward(xa) > 0))
    t1 = time.perf_counter()
    res = certify(net, Xe, ye, eps, norm="inf", method="exact", box=BOX, time_limit=time_limit,
                  random_state=seed)
    s = res.summary()
    out.update({
        "clean_accuracy_subset": float(s["clean_accuracy"]),
        "certified_accuracy": float(s["certified_fraction"]),
        "attacked": int(s["attacked"]),
        "undecided": int(s["undecided"]),
        "milp_calls": int(s["solver_calls"]),
        "milp_timeouts": int(s["solver_timeouts"]),
        "seconds_pgd": round(t1 - t0, 2),
        "seconds_certify": round(time.perf_counter() - t1, 2),
    })
    return out


def conservativeness(X, y, eps, net_c, seed: int) -> dict:
    """Fraction of gates strictly inside their robust cone (v role, w role), per gate source."""
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    Xa = patterns.add_intercept(X)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    G = rng.standard_normal((d + 1, 100))
    Gd, Gb = G[:-1].T, G[-1]
    sources = {
        "gaussian": (Gd, Gb, None),
        "pgd_network": (net_c.W1, net_c.b1, np.sign(net_c.w2)),
    }
    out = {}
    for name, (Wd, b, roles) in sources.items():
        for cons in ("all", "opposing"):
            for rebias in (False, True):
                if rebias:
                    H, _ = robust_gates(X, y, eps, Wd, b, roles=roles, box=BOX, constraints=cons)
                else:
                    H = np.vstack([Wd.T, b[None]])
                D, Hk = patterns.patterns_from_gates(Xa, H)
                pb = ConvexProblem(t(Xa), t(y[:, None]), t(D), t(Hk), 1e-3, "hinge")
                C = t(Hk.T[:, :, None])
                mv, mw = cone_margins(pb, C, C, eps, "inf", box=BOX, constraints=cons)
                key = f"{name}{'_rebiased' if rebias else ''}_{cons}"
                out[key] = {
                    "patterns": int(Hk.shape[1]),
                    "v_blocks_strictly_robust": int((mv > 0).sum()),
                    "w_blocks_strictly_robust": int((mw > 0).sum()),
                }
    return out


def robust_fit(X, y, eps, net_src, constraints: str, max_time: float, max_iter: int, init_iters: int) -> tuple:
    """Convex adversarial training with the patterns of robust_patterns(first layer of ``net_src``)."""
    Xa = patterns.add_intercept(X)
    D, H = robust_patterns(X, y, eps, net_src.W1, net_src.b1, roles=np.sign(net_src.w2), box=BOX,
                           constraints=constraints)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    pb = ConvexProblem(t(Xa), t(y[:, None]), t(D), t(H), 1e-3, "hinge")
    res = robust_solve(pb, eps, "inf", box=BOX, constraints=constraints, tol=1e-4, max_iter=max_iter,
                       check_every=50, max_time=max_time, direction_iters=100,
                       init="penalty" if init_iters > 0 else "zeros", init_iters=init_iters)
    net = blocks_to_network(res.V, res.W)
    info = {
        "patterns": int(pb.P),
        "width": int(net.width),
        "init_penalty_adam_steps": int(init_iters),
        "pdhg_iterations": int(res.n_iter),
        "seconds": round(float(res.info["seconds"]), 1),
        "certificate": res.certificate.as_dict(),
        "dropped_blocks": res.info["dropped_blocks"],
        "zeroed_blocks": res.info["zeroed_blocks"],
        "min_robust_margin": res.info["min_margin"],
    }
    return net, info


def run_dataset(name: str, X, y, Xt, yt, args) -> dict:
    rng = np.random.default_rng(args.seed)
    idx = rng.choice(len(yt), size=min(args.n_eval, len(yt)), replace=False)
    Xe, ye = Xt[idx], yt[idx]
    out: dict = {"n_train": int(len(y)), "n_test": int(len(yt)), "n_eval": int(len(ye)), "timings_s": {},
                 "table": {}}
    tm = out["timings_s"]
    # (a) standard convex training (ε-independent)
    with timer(tm, "train_standard_convex"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = ConvexReLUClassifier(alpha=1e-3, n_patterns=50, kind="gated", loss="logistic", tol=1e-4,
                                   max_iter=args.fista_iter, random_state=args.seed, n_threads=args.threads)
        clf.fit(X, y)
    net_a = clf.network_
    out["standard_convex"] = {"width": int(net_a.width), "certificate": clf.certificate_.as_dict(),
                              "iterations": int(clf.n_iter_)}
    models = set(args.models)
    for eps in args.eps:
        row: dict = {}
        if models & {"b", "c"}:
            with timer(tm, f"train_pgd_adam_eps{eps}"):
                rc = train_adam_pgd(X, y, 100, 1e-4, "logistic", eps=eps, box=BOX, epochs=args.epochs,
                                    batch_size=50, seed=args.seed, n_threads=args.threads)
            net_c = rc.network
        if "b" in models:
            with timer(tm, f"train_convex_adversarial_eps{eps}"):
                net_b, binfo = robust_fit(X, y, eps, net_c, "opposing", args.robust_time, args.robust_iter,
                                          args.init_iters)
        if "b2" in models:  # the same, with the neurons of the standard convex network (a): independent of (c)
            with timer(tm, f"train_convex_adversarial_from_a_eps{eps}"):
                net_b2, b2info = robust_fit(X, y, eps, net_a, "opposing", args.robust_time, args.robust_iter,
                                            args.init_iters)
        with timer(tm, f"evaluate_eps{eps}"):
            if "a" in models:
                row["a_standard_convex"] = evaluate(net_a, Xt, yt, Xe, ye, eps, args.time_limit, args.seed)
            if "b" in models:
                row["b_convex_adversarial"] = evaluate(net_b, Xt, yt, Xe, ye, eps, args.time_limit, args.seed)
                row["b_convex_adversarial"]["solver"] = binfo
            if "b2" in models:
                row["b2_convex_adversarial_from_a"] = evaluate(net_b2, Xt, yt, Xe, ye, eps, args.time_limit,
                                                               args.seed)
                row["b2_convex_adversarial_from_a"]["solver"] = b2info
            if "c" in models:
                row["c_pgd_adam"] = evaluate(net_c, Xt, yt, Xe, ye, eps, args.time_limit, args.seed)
                row["c_pgd_adam"]["width"] = int(net_c.width)
        if {"b", "c"} <= models:
            b, c = row["b_convex_adversarial"], row["c_pgd_adam"]
            row["goal"] = {
                "b_certified_above_c": b["certified_accuracy"] > c["certified_accuracy"],
                "b_clean_within_3_points_of_c": b["clean_accuracy"] >= c["clean_accuracy"] - 0.03,
            }
        if args.study and name == "mnist_3_vs_5" and "c" in models:
            with timer(tm, f"study_eps{eps}"):
                study = {"strictly_robust_gates": conservativeness(X, y, eps, net_c, args.seed)}
                net_all, ainfo = robust_fit(X, y, eps, net_c, "all", args.robust_time / 2, args.robust_iter,
                                           args.init_iters)
                study["exact_program_all_constraints"] = evaluate(net_all, Xt, yt, Xe, ye, eps, args.time_limit,
                                                                  args.seed)
                study["exact_program_all_constraints"]["solver"] = ainfo
            row["conservativeness_study"] = study
        out["table"][f"eps={eps}"] = row
        print(f"[bench_adversarial] {name} eps={eps}: " + json.dumps(
            {k: {kk: v[kk] for kk in ("clean_accuracy", "pgd_accuracy", "certified_accuracy")}
             for k, v in row.items() if k[:2] in ("a_", "b_", "c_", "b2")}), file=sys.stderr, flush=True)
    return out


def _merge(old: dict, new: dict) -> dict:
    """Recursive dict merge (new wins on leaves): adds a run's data sets / radii / models to a file."""
    out = dict(old)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.1])
    ap.add_argument("--n-eval", type=int, default=500, help="test points for PGD and exact certification")
    ap.add_argument("--time-limit", type=float, default=2.0, help="MILP seconds per point")
    ap.add_argument("--robust-time", type=float, default=150.0, help="seconds per convex adversarial solve")
    ap.add_argument("--robust-iter", type=int, default=5000)
    ap.add_argument("--init-iters", type=int, default=1000,
                    help="Adam steps of the exact-penalty start of robust_solve (0: PDHG from zero)")
    ap.add_argument("--models", nargs="+", choices=["a", "b", "b2", "c"], default=["a", "b", "c"],
                    help="b2: convex adversarial training with the neurons of (a) instead of (c)")
    ap.add_argument("--datasets", nargs="+", choices=["mnist", "fashion"], default=["mnist", "fashion"])
    ap.add_argument("--append", action="store_true",
                    help="merge the datasets run into an existing --out file (one JSON per data set run)")
    ap.add_argument("--fista-iter", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=60, help="PGD-Adam epochs")
    ap.add_argument("--fashion-classes", type=int, nargs=2, default=[7, 9])
    ap.add_argument("--n-fashion", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-study", dest="study", action="store_false")
    ap.add_argument("--quick", action="store_true", help="a fast smoke run (small budgets, ε = 0.1 only)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.eps, args.n_eval, args.robust_time, args.epochs, args.study = [0.1], 100, 30.0, 10, False
        args.fista_iter, args.init_iters = 300, 200
    if certify is None:
        raise SystemExit("convexnn.robustness (pgd_attack, certify) is needed")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    result: dict = {
        "benchmark": "bench_adversarial",
        "machine": machine_info(),
        "settings": {
            "eps": args.eps, "norm": "inf", "box": list(BOX), "n_eval": args.n_eval,
            "milp_time_limit_s": args.time_limit, "robust_time_budget_s": args.robust_time,
            "robust_max_iter": args.robust_iter, "robust_init_penalty_adam_steps": args.init_iters,
            "pgd_adam_epochs": args.epochs, "threads": args.threads,
            "seed": args.seed,
            "standard_convex": "ConvexReLUClassifier(kind='gated', loss='logistic', alpha=1e-3, n_patterns=50, "
                               f"tol=1e-4, max_iter={args.fista_iter}) (FISTA), network_ = its cone split",
            "convex_adversarial": "robust_solve(loss='hinge', alpha=1e-3, norm='inf', box=(0,1), "
                                  "constraints='opposing', tol=1e-4, init='penalty'); patterns = "
                                  "robust_patterns(first layer of the PGD network (c))",
            "pgd_adam": "train_adam_pgd(width=100, loss='logistic', alpha=1e-4, pgd_steps=10, ramp=0.3, "
                        "batch_size=50, lr=1e-3)",
            "attack": "pgd_attack(steps=50, restarts=10, box=(0,1))",
            "certification": "certify(method='exact', box=(0,1)); undecided points count as not certified",
        },
        "datasets": {},
    }
    if "mnist" in args.datasets:
        X, y = load_mnist_5k(classes=(3, 5))
        Xt, yt = load_mnist_test(classes=(3, 5))
        result["datasets"]["mnist_3_vs_5"] = run_dataset("mnist_3_vs_5", X, to_pm1(y, 5), Xt, to_pm1(yt, 5), args)
    if "fashion" in args.datasets:
        a, b = args.fashion_classes
        X, y = load_fashion_mnist("train", classes=(a, b), n=args.n_fashion, seed=args.seed)
        Xt, yt = load_fashion_mnist("test", classes=(a, b))
        result["datasets"][f"fashion_mnist_{a}_vs_{b}"] = run_dataset(
            f"fashion_mnist_{a}_vs_{b}", X, to_pm1(y, b), Xt, to_pm1(yt, b), args)
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    result["command"] = "python benchmarks/bench_adversarial.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.append and args.out and os.path.exists(args.out):
        with open(args.out) as fh:
            old = json.load(fh)
        runs = old.get("runs", [old])
        merged = dict(old)
        merged["datasets"] = _merge(old.get("datasets", {}), result["datasets"])
        merged["runs"] = [{k: v for k, v in r.items() if k != "datasets"} for r in runs] + [
            {k: v for k, v in result.items() if k != "datasets"}]
        result = merged
    text = json.dumps(result, indent=2, default=lambda o: float(o) if np.isscalar(o) else str(o))
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
