r"""Certification of trained two-layer ReLU networks: certify / attack / undecided (MATH.md §10).

For each point x₀ (label y) and radius ε, :func:`certify` decides whether the margin stays positive on
the whole set B = {x : ‖x − x₀‖_p ≤ ε} ∩ box:

* ``"certified"`` — a *proven* lower bound of min_{x∈B} margin(x) is > 0;
* ``"attacked"`` — a concrete x ∈ B was found whose margin, by a float64 forward pass, is ≤ 0
  (the clean point itself, a PGD iterate, or a minimiser found by the MILP / ℓ2 branch and bound);
* ``"undecided"`` — neither (a loose bound, or a solver time limit).

Pipeline: CROWN (or IBP for ``method="ibp"``) bounds on all points, vectorised; PGD on the points the
bound does not certify; then, for ``method="lp"``/``"exact"``, one LP/MILP per point still undecided
(see :mod:`convexnn.robustness.bounds`; for ℓ2: one triangle SOCP, or branch and bound over the
unstable neurons with SOCP relaxations, stopped as soon as the sign of the margin is known). A time-out
leaves a point undecided, never wrong. For the
solver-based methods a point is certified only when the solver's bound exceeds a small tolerance,
``1e-6·(1 + scale)`` with scale = Σ_i |c_i| max(|l_i|, |u_i|) the size of the margin, which absorbs
the MILP solver's floating-point tolerances (HiGHS's dual bound was seen to exceed a margin attained by
PGD by 8e-8·scale on MNIST); a point whose exact margin is positive but below it stays undecided. The
LP bound is a safe weak-duality bound and needs no such slack, but uses the same rule.

``margin_lower`` is the best lower bound *computed* for the point: for a point decided by the cheap
bound or by the attack the solver is not run, so for ``method="exact"`` it is the exact minimum only
on the points that reached the MILP and were solved (use
:func:`convexnn.robustness.margin_bounds` to evaluate one method on every point).
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field

import numpy as np

from convexnn.robustness._checks import (
    box_rows,
    check_box,
    check_eps,
    check_labels,
    check_X,
    get_network,
    in_set,
    margins,
    parse_method,
    parse_norm,
)
from convexnn.robustness.attacks import run_pgd
from convexnn.robustness.bounds import (
    crown_lower,
    ibp_lower,
    prepare,
    solve_point,
)

__all__ = ["CertifyResult", "certified_radius", "certify", "certify_report"]

#: Relative tolerance on LP/MILP bounds before a point is called certified (see the module docstring).
SOLVER_TOL = 1e-6
STATUSES = ("certified", "attacked", "undecided")


@dataclass
class CertifyResult:
    """Per-point outcome of :func:`certify` (n points, d features).

    Attributes
    ----------
    status : (n,) str, "certified" / "attacked" / "undecided".
    margin_lower : (n,) proven lower bound of the margin over ball ∩ box (best bound computed).
    margin_upper : (n,) margin of ``adversarial`` (best attack found; the clean margin if none better).
    adversarial : (n, d) the point of ball ∩ box with margin ``margin_upper``.
    clean_margin : (n,) margin at the clean point.
    decided_by : (n,) str, the step that decided the point: "ibp", "crown", "lp", "exact" (a bound),
        "clean", "pgd", "exact-witness" (an attack), or "" for undecided points.
    n_unstable : (n,) number of neurons whose sign can change over the set (by the interval bounds).
    eps : (n,) radii; norm : "inf" or "2"; method : the method asked for.
    timings : seconds spent in "bounds", "attack", "solver" and "total".
    """

    status: np.ndarray
    margin_lower: np.ndarray
    margin_upper: np.ndarray
    adversarial: np.ndarray
    clean_margin: np.ndarray
    decided_by: np.ndarray
    n_unstable: np.ndarray
    eps: np.ndarray
    norm: str
    method: str
    timings: dict[str, float] = field(default_factory=dict)
    n_solver_calls: int = 0
    n_solver_timeouts: int = 0

    @property
    def certified(self) -> np.ndarray:
        return self.status == "certified"

    @property
    def attacked(self) -> np.ndarray:
        return self.status == "attacked"

    @property
    def undecided(self) -> np.ndarray:
        return self.status == "undecided"

    def summary(self) -> dict[str, object]:
        """Counts and fractions of each status, clean accuracy, and the settings (JSON-able)."""
        n = int(self.status.size)
        out: dict[str, object] = {"n": n, "method": self.method, "norm": self.norm}
        eps = np.unique(self.eps)
        out["eps"] = float(eps[0]) if eps.size == 1 else [float(self.eps.min()), float(self.eps.max())]
        for s in STATUSES:
            k = int(np.sum(self.status == s))
            out[s] = k
            out[f"{s}_fraction"] = k / n if n else 0.0
        out["clean_accuracy"] = float(np.mean(self.clean_margin > 0)) if n else 0.0
        out["solver_calls"] = int(self.n_solver_calls)
        out["solver_timeouts"] = int(self.n_solver_timeouts)
        return out


def _check_positive(name: str, value: object, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    return v


def certify(
    model: object,
    X: object,
    y: object,
    eps: object,
    norm: object = "inf",
    method: str = "exact",
    box: object = None,
    time_limit: float = 10.0,
    attack: bool = True,
    attack_steps: int = 50,
    attack_restarts: int = 10,
    random_state: object = 0,
) -> CertifyResult:
    """Certify, attack or leave undecided every point; see the module docstring.

    Parameters
    ----------
    model : a network accepted by :func:`convexnn.network.as_network`.
    X : (n, d) points; y : (n,) labels, ±1 for one output or 0..K-1 for K outputs.
    eps : radius ≥ 0, scalar or (n,).
    norm : "inf" or 2 (ℓ2 "lp"/"exact" solve SOCPs with Clarabel, an optional dependency).
    method : "ibp", "crown", "lp" or "exact".
    box : optional (lo, hi), scalars or arrays broadcastable to X; X must lie inside.
    time_limit : seconds per point for the LP/MILP (shared by its K − 1 specifications).
    attack : run PGD on the points the cheap bound does not certify.
    attack_steps, attack_restarts, random_state : PGD settings (see :func:`pgd_attack`).
    """
    t_start = time.perf_counter()
    method = parse_method(method)
    normp = parse_norm(norm)
    time_limit = _check_positive("time_limit", time_limit)
    if not isinstance(attack, bool | np.bool_):
        raise TypeError("attack must be a bool")
    p = prepare(model, X, y, eps, normp, box)
    net, n = p.net, p.n

    t0 = time.perf_counter()
    spec_lower = ibp_lower(p) if method == "ibp" else crown_lower(p)
    lower = spec_lower.min(axis=1)
    cheap = "ibp" if method == "ibp" else "crown"
    decided_by = np.full(n, "", dtype=object)
    decided_by[lower > 0] = cheap
    clean = margins(net, p.X, p.y)
    upper = clean.copy()
    adversarial = p.X.copy()
    decided_by[clean <= 0] = "clean"
    n_unstable = np.sum((p.l < 0) & (p.u > 0), axis=1)
    t_bounds = time.perf_counter() - t0

    t0 = time.perf_counter()
    todo = np.flatnonzero((lower <= 0) & (clean > 0))
    if attack and todo.size:
        box_t = box_rows(p.box, todo)
        xa, ma = run_pgd(
            net,
            p.X[todo],
            p.y[todo],
            p.eps[todo],
            normp,
            attack_steps,
            attack_restarts,
            None,
            box_t,
            random_state,
        )
        ok = in_set(xa, p.X[todo], p.eps[todo], normp, box_t)
        better = ok & (ma < upper[todo])
        idx = todo[better]
        upper[idx] = ma[better]
        adversarial[idx] = xa[better]
        decided_by[idx[upper[idx] <= 0]] = "pgd"
    t_attack = time.perf_counter() - t0

    t0 = time.perf_counter()
    threshold = np.zeros(n)
    calls = timeouts = 0
    if method in ("lp", "exact"):
        integer = method == "exact"
        for i in np.flatnonzero((lower <= 0) & (upper > 0)):
            res = solve_point(p, int(i), spec_lower[i], integer, time_limit, decide_tol=SOLVER_TOL)
            calls += 1
            timeouts += int(not res.solved)
            threshold[i] = SOLVER_TOL * (1.0 + res.scale)
            lower[i] = max(lower[i], res.lower)
            if lower[i] > threshold[i]:
                decided_by[i] = method
            if res.witness is not None:
                w = res.witness[None, :]
                mw = float(margins(net, w, p.y[i : i + 1])[0])
                inside = in_set(
                    w,
                    p.X[i : i + 1],
                    p.eps[i : i + 1],
                    normp,
                    box_rows(p.box, slice(i, i + 1)),
                )[0]
                if inside and mw < upper[i]:
                    upper[i] = mw
                    adversarial[i] = res.witness
                    if mw <= 0:
                        decided_by[i] = "exact-witness"
    t_solver = time.perf_counter() - t0

    # A lower bound above a margin attained in the set can only come from solver tolerances: cap it.
    # (So a point is never both certified and attacked: a concrete witness with margin ≤ 0 wins.)
    lower = np.minimum(lower, upper)
    certified = lower > threshold
    attacked = upper <= 0
    status = np.full(n, "undecided", dtype=object)
    status[certified] = "certified"
    status[attacked] = "attacked"
    decided_by[status == "undecided"] = ""
    timings = {
        "bounds": t_bounds,
        "attack": t_attack,
        "solver": t_solver,
        "total": time.perf_counter() - t_start,
    }
    return CertifyResult(
        status=status.astype(str),
        margin_lower=lower,
        margin_upper=upper,
        adversarial=adversarial,
        clean_margin=clean,
        decided_by=decided_by.astype(str),
        n_unstable=n_unstable,
        eps=p.eps,
        norm=normp,
        method=method,
        timings=timings,
        n_solver_calls=calls,
        n_solver_timeouts=timeouts,
    )


def certified_radius(
    model: object,
    X: object,
    y: object,
    norm: object = "inf",
    method: str = "crown",
    box: object = None,
    eps_max: float = 1.0,
    tol: float = 1e-4,
    time_limit: float = 10.0,
    attack: bool | None = None,
    random_state: object = 0,
) -> np.ndarray:
    """Largest radius certified by ``method`` per point (bisection on ε), (n,).

    The bisection keeps, per point, an interval [lo, hi] with lo certified by the method (0 at the
    start) and hi not certified (or ``eps_max``), and stops when hi − lo ≤ tol; it returns lo, so the
    point is certified at the returned radius (a certificate at ε covers every smaller ball too). A point
    certified at ``eps_max`` gets ``eps_max``; a point whose clean margin is ≤ 0 gets 0. When an attack
    finds a witness at distance δ, hi shrinks to δ. For ibp/crown all points are bisected together in
    vectorised form; lp/exact run their solver per point and step.

    ``attack`` (PGD inside each step) defaults to True for lp/exact (it saves solver calls) and False for
    ibp/crown. ``time_limit`` is per point and step for lp/exact; a time-out counts as "not certified".
    """
    method = parse_method(method)
    normp = parse_norm(norm)
    eps_max = _check_positive("eps_max", eps_max)
    tol = _check_positive("tol", tol)
    net = get_network(model)
    Xa = check_X(net, X)
    n = Xa.shape[0]
    ya = check_labels(net, y, n)
    boxa = check_box(box, Xa)
    use_attack = method in ("lp", "exact") if attack is None else bool(attack)

    def run(idx: np.ndarray, eps: np.ndarray) -> CertifyResult:
        bx = box_rows(boxa, idx)
        return certify(net, Xa[idx], ya[idx], eps, normp, method, bx, time_limit, use_attack, random_state=random_state)

    clean = margins(net, Xa, ya)
    lo = np.zeros(n)
    hi = np.full(n, eps_max)
    live = np.flatnonzero(clean > 0)
    if live.size:
        top = run(live, hi[live])
        ok = top.status == "certified"
        lo[live[ok]] = eps_max
        _shrink(hi, lo, live, top, normp, Xa)
    hi[clean <= 0] = 0.0
    while True:
        live = np.flatnonzero(hi - lo > tol)
        if live.size == 0:
            break
        mid = (lo[live] + hi[live]) / 2
        res = run(live, mid)
        ok = res.status == "certified"
        lo[live[ok]] = mid[ok]
        hi[live[~ok]] = mid[~ok]
        _shrink(hi, lo, live, res, normp, Xa)
    return lo


def _shrink(hi: np.ndarray, lo: np.ndarray, live: np.ndarray, res: CertifyResult, norm: str, X: np.ndarray) -> None:
    """Attacked points cannot be certified beyond the size of their witness: hi ← min(hi, ‖δ‖)."""
    att = res.status == "attacked"
    if not np.any(att):
        return
    idx = live[att]
    delta = res.adversarial[att] - X[idx]
    size = np.abs(delta).max(axis=1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    hi[idx] = np.maximum(lo[idx], np.minimum(hi[idx], size))


def certify_report(
    model: object,
    X: object,
    y: object,
    eps: object,
    norm: object = "inf",
    method: str = "exact",
    box: object = None,
    time_limit: float = 10.0,
    attack: bool = True,
    per_point: bool = False,
    random_state: object = 0,
) -> dict[str, object]:
    """Run :func:`certify` and return a JSON-able summary.

    Keys: "settings" (method, norm, eps, box given, time_limit, attack), "network" (d, m, outputs),
    "n", "counts" and "fractions" of certified / attacked / undecided, "clean_accuracy",
    "decided_by" (counts per deciding step), "timings_s" (bounds, attack, solver, total),
    "solver" (calls, time-outs), "margin_lower"/"margin_upper" (mean, min), "unstable_neurons"
    (mean, max), the Python/platform versions, and with ``per_point=True`` the per-point lists.
    """
    net = get_network(model)
    res = certify(net, X, y, eps, norm, method, box, time_limit, attack, random_state=random_state)
    s = res.summary()
    n = int(s["n"])
    decided, counts = np.unique(res.decided_by[res.decided_by != ""], return_counts=True)
    eps_arr = check_eps(eps, n)
    out: dict[str, object] = {
        "settings": {
            "method": res.method,
            "norm": res.norm,
            "eps": float(eps_arr[0]) if np.all(eps_arr == eps_arr[0]) else eps_arr.tolist(),
            "box": box is not None,
            "time_limit_s": float(time_limit),
            "attack": bool(attack),
        },
        "network": {"d": net.n_features, "m": net.width, "outputs": net.n_outputs},
        "n": n,
        "counts": {k: int(s[k]) for k in STATUSES},
        "fractions": {k: float(s[f"{k}_fraction"]) for k in STATUSES},
        "clean_accuracy": float(s["clean_accuracy"]),
        "decided_by": {str(k): int(v) for k, v in zip(decided, counts, strict=True)},
        "timings_s": {k: float(v) for k, v in res.timings.items()},
        "solver": {"calls": res.n_solver_calls, "timeouts": res.n_solver_timeouts},
        "margin_lower": {"mean": float(np.mean(res.margin_lower)), "min": float(np.min(res.margin_lower))},
        "margin_upper": {"mean": float(np.mean(res.margin_upper)), "min": float(np.min(res.margin_upper))},
        "unstable_neurons": {"mean": float(np.mean(res.n_unstable)), "max": int(np.max(res.n_unstable))},
        "python": platform.python_version(),
    }
    if per_point:
        out["points"] = {
            "status": res.status.tolist(),
            "margin_lower": res.margin_lower.tolist(),
            "margin_upper": res.margin_upper.tolist(),
            "decided_by": res.decided_by.tolist(),
        }
    return out
