r"""Lower bounds on the margin of a two-layer ReLU network over a perturbation set (MATH.md §10).

The set around a point x₀ (row of X) is the ball {x : ‖x − x₀‖_p ≤ ε} (p = ∞ or 2), intersected with an
optional box {lo ≤ x ≤ hi}. Write z(x) = W1 x + b1 ∈ R^m for the pre-activations and, for one margin
specification with output weights c ∈ R^m (see :mod:`convexnn.robustness._checks`),

    g(x) = Σ_i c_i relu(z_i(x)).

The margin is min_s g_s(x). Every method below returns a number that is ≤ min_{x in set} g(x):

* Pre-activation bounds l ≤ z(x) ≤ u over the set. ℓ∞ (∩ box): the set is the box [L, H] with
  L = max(x₀ − ε, lo), H = min(x₀ + ε, hi), and l_i = W1_i·(L+H)/2 + b1_i − |W1_i|·(H−L)/2 is exact.
  ℓ2: l_i = W1_i x₀ + b1_i − ε‖W1_i‖₂ (exact without a box); with a box, the tighter of this and the
  interval bound over [L, H] (both sets contain ball ∩ box, so the intersection of the intervals is valid).
* ``"ibp"``: relu(z_i) ∈ [relu(l_i), relu(u_i)], so g ≥ Σ_i min(c_i relu(l_i), c_i relu(u_i)).
* ``"crown"``: linear relaxation of each neuron. Stable neurons are linear (slope 1 if l ≥ 0, 0 if
  u ≤ 0). An unstable neuron (l < 0 < u) satisfies λ z ≤ relu(z) ≤ u (z − l)/(u − l) for λ ∈ [0, 1];
  take the lower line where c_i ≥ 0 and the upper line where c_i < 0. This gives g(x) ≥ aᵀx + k with
  a = W1ᵀ α, and its minimum over the set in closed form:
      ℓ∞ (∩ box, a box [L, H]):  aᵀ(L+H)/2 − |a|ᵀ(H−L)/2 + k;
      ℓ2 without box:            aᵀx₀ − ε‖a‖₂ + k;
      ℓ2 ∩ box: the Lagrangian dual  max_{μ≥0} Σ_k min_{t∈[L_k,H_k]} (a_k t + μ (t − x₀_k)²) − μ ε²,
      whose inner minimiser is t = clip(x₀ − a/(2μ), L, H); every μ gives a valid bound (weak duality),
      we bisect on μ (the dual is concave, its slope ‖t(μ) − x₀‖² − ε² decreasing) and keep the best.
  Three slope choices are evaluated and the best (largest) bound kept: adaptive λ_i = 1 if u_i ≥ −l_i
  else 0, λ = 0 and λ = 1. The λ = 0 bound is never below the IBP bound, so crown ≥ ibp always.
* ``"lp"``: the triangle relaxation h ≥ 0, h ≥ z, h ≤ u(z − l)/(u − l) of every unstable neuron,
  minimised by HiGHS (``scipy.optimize.linprog``), one LP per point and specification. The value
  returned is a *safe* dual bound: with HiGHS's multipliers y ≤ 0 of the inequality rows A v ≤ b and
  all variables in bounds [lb, ub], yᵀb + Σ_k min(r_k lb_k, r_k ub_k) with r = cost − Aᵀy is a lower
  bound for any y ≤ 0, so the result does not depend on the solver's tolerances. The triangle LP with the
  same l, u is at least as tight as every CROWN slope choice (λz ≤ max(0, z) ≤ h on its feasible set).
  ℓ∞ only: an ℓ2 ball is not polyhedral.
* ``"exact"``: the mixed-integer program with one binary a_i per unstable neuron (big-M from l, u):
      h_i ≥ 0, h_i ≥ z_i, h_i ≤ z_i − l_i (1 − a_i), h_i ≤ u_i a_i,
  solved by HiGHS (``scipy.optimize.milp``) per point and specification with a time limit. The value is
  HiGHS's dual bound (the exact minimum when solved, up to its absolute gap 1e-6); on a time-out it is
  the best of that dual bound and the CROWN bound. ℓ∞ only (ℓ2 would need a mixed-integer QCP).

Everything except the per-point LP/MILP solves is vectorised in torch float64 over points, neurons and
specifications.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from convexnn.network import TwoLayerReLU
from convexnn.robustness._checks import (
    UnsupportedNormError,
    check_box,
    check_eps,
    check_labels,
    check_X,
    get_network,
    parse_method,
    parse_norm,
    spec_weights,
)

__all__ = ["margin_bounds", "preactivation_bounds"]

_F64 = torch.float64
#: Elements per block of (points × specifications × features) tensors.
_BLOCK_ELEMENTS = 1 << 22
#: Iterations of the bisection on the ℓ2 ∩ box dual variable.
_DUAL_ITERS = 60


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=_F64)


@dataclass
class Problem:
    """A validated certification problem: everything as float64 NumPy arrays.

    X (n, d), y (n,), eps (n,), L/H (n, d): the box that contains the perturbation set (for ℓ∞ it *is*
    the set: ball ∩ box), C (n, S, m): specification weights, l/u (n, m): pre-activation bounds.
    """

    net: TwoLayerReLU
    X: np.ndarray
    y: np.ndarray
    eps: np.ndarray
    norm: str
    box: tuple[np.ndarray, np.ndarray] | None
    L: np.ndarray
    H: np.ndarray
    C: np.ndarray
    l: np.ndarray
    u: np.ndarray

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def subset(self, idx: np.ndarray) -> Problem:
        box = None if self.box is None else (self.box[0][idx], self.box[1][idx])
        return Problem(
            self.net,
            self.X[idx],
            self.y[idx],
            self.eps[idx],
            self.norm,
            box,
            self.L[idx],
            self.H[idx],
            self.C[idx],
            self.l[idx],
            self.u[idx],
        )


def prepare(
    model: object, X: object, y: object, eps: object, norm: object = "inf", box: object = None
) -> Problem:
    """Validate the inputs and compute the enclosing box and the pre-activation bounds."""
    net = get_network(model)
    norm = parse_norm(norm)
    Xa = check_X(net, X)
    n = Xa.shape[0]
    ya = check_labels(net, y, n)
    ea = check_eps(eps, n)
    boxa = check_box(box, Xa)
    L, H = _enclosing_box(Xa, ea, boxa)
    l, u = _preact(net, Xa, ea, norm, L, H, boxa is not None)
    return Problem(net, Xa, ya, ea, norm, boxa, L, H, spec_weights(net, ya), l, u)


def _enclosing_box(
    X: np.ndarray, eps: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    L = X - eps[:, None]
    H = X + eps[:, None]
    if box is not None:
        L = np.maximum(L, box[0])
        H = np.minimum(H, box[1])
    return L, H


def _preact(
    net: TwoLayerReLU, X: np.ndarray, eps: np.ndarray, norm: str, L: np.ndarray, H: np.ndarray, has_box: bool
) -> tuple[np.ndarray, np.ndarray]:
    W1, b1 = _t(net.W1), _t(net.b1)
    if norm == "inf" or has_box:
        Lt, Ht = _t(L), _t(H)
        zc = ((Lt + Ht) / 2) @ W1.T + b1
        zr = ((Ht - Lt) / 2) @ W1.abs().T
        l_box, u_box = zc - zr, zc + zr
        if norm == "inf":
            return l_box.numpy(), u_box.numpy()
    z = _t(X) @ W1.T + b1
    r = _t(eps)[:, None] * torch.linalg.vector_norm(W1, dim=1)[None, :]
    l, u = z - r, z + r
    if has_box:
        l, u = torch.maximum(l, l_box), torch.minimum(u, u_box)
    return l.numpy(), u.numpy()


def preactivation_bounds(
    model: object, X: object, eps: object, norm: object = "inf", box: object = None
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds l ≤ X' W1ᵀ + b1 ≤ u, each (n, m), valid for every X' in the ball (∩ box) around X."""
    net = get_network(model)
    norm = parse_norm(norm)
    Xa = check_X(net, X)
    ea = check_eps(eps, Xa.shape[0])
    boxa = check_box(box, Xa)
    L, H = _enclosing_box(Xa, ea, boxa)
    return _preact(net, Xa, ea, norm, L, H, boxa is not None)


# ----------------------------------------------------------------------------------------------------
# Closed-form bounds (torch, vectorised)
# ----------------------------------------------------------------------------------------------------


def ibp_lower(p: Problem) -> np.ndarray:
    """Interval bound per point and specification, (n, S)."""
    C = _t(p.C)
    hl = torch.relu(_t(p.l))[:, None, :]
    hu = torch.relu(_t(p.u))[:, None, :]
    return (C.clamp(min=0) * hl + C.clamp(max=0) * hu).sum(-1).numpy()


def _min_linear(
    a: torch.Tensor,
    X: torch.Tensor,
    eps: torch.Tensor,
    L: torch.Tensor,
    H: torch.Tensor,
    norm: str,
    has_box: bool,
) -> torch.Tensor:
    """A lower bound (exact for ℓ∞ and for ℓ2 without box) on min aᵀx over the set, (b, S).

    a: (b, S, d); X, L, H: (b, d); eps: (b,).
    """
    if norm == "inf":
        center, rad = (L + H) / 2, (H - L) / 2
        return torch.einsum("bsd,bd->bs", a, center) - torch.einsum("bsd,bd->bs", a.abs(), rad)
    anorm = torch.linalg.vector_norm(a, dim=-1)
    e = eps[:, None]
    best = torch.einsum("bsd,bd->bs", a, X) - e * anorm
    if not has_box:
        return best
    Lb, Hb, x0 = L[:, None, :], H[:, None, :], X[:, None, :]
    box_only = torch.where(a > 0, a * Lb, a * Hb).sum(-1)
    best = torch.maximum(best, box_only)
    live = (e > 0) & (anorm > 0)
    if not bool(live.any()):
        return best
    mu_top = torch.where(live, anorm / (2 * torch.where(live, e, torch.ones_like(e))), torch.ones_like(anorm))
    lo_log = torch.log(mu_top) - 40.0
    hi_log = torch.log(mu_top)
    for _ in range(_DUAL_ITERS):
        mid = (lo_log + hi_log) / 2
        mu = torch.exp(mid)
        t = torch.minimum(torch.maximum(x0 - a / (2 * mu[..., None]), Lb), Hb)
        dist2 = ((t - x0) ** 2).sum(-1)
        val = (a * t).sum(-1) + mu * (dist2 - e**2)
        best = torch.where(live, torch.maximum(best, val), best)
        too_small = dist2 > e**2  # the dual slope is positive: increase μ
        lo_log = torch.where(too_small, mid, lo_log)
        hi_log = torch.where(too_small, hi_log, mid)
    return best


def crown_lower(p: Problem, slopes: tuple[str, ...] = ("adaptive", "zero", "one")) -> np.ndarray:
    """CROWN bound per point and specification, (n, S): the best over the given slope choices λ."""
    net = p.net
    W1, b1 = _t(net.W1), _t(net.b1)
    n, S, m = p.C.shape
    d = net.n_features
    block = max(1, _BLOCK_ELEMENTS // (S * max(d, m)))
    out = np.empty((n, S))
    has_box = p.box is not None
    for start in range(0, n, block):
        sl = slice(start, min(n, start + block))
        l, u = _t(p.l[sl]), _t(p.u[sl])
        C = _t(p.C[sl])
        X, eps, L, H = _t(p.X[sl]), _t(p.eps[sl]), _t(p.L[sl]), _t(p.H[sl])
        unstable = (l < 0) & (u > 0)
        active = (l >= 0).to(_F64)
        denom = torch.where(unstable, u - l, torch.ones_like(u))
        s_up = torch.where(unstable, u / denom, active)
        t_up = torch.where(unstable, -u * l / denom, torch.zeros_like(u))
        Cp, Cn = C.clamp(min=0), C.clamp(max=0)
        upper_part = Cn * s_up[:, None, :]
        const_up = (Cn * t_up[:, None, :]).sum(-1)
        best = None
        for choice in slopes:
            if choice == "adaptive":
                lam = (u >= -l).to(_F64)
            elif choice == "zero":
                lam = torch.zeros_like(u)
            elif choice == "one":
                lam = torch.ones_like(u)
            else:  # pragma: no cover - internal
                raise ValueError(f"unknown slope choice {choice!r}")
            s_lo = torch.where(unstable, lam, active)
            alpha = Cp * s_lo[:, None, :] + upper_part  # (b, S, m)
            a = alpha @ W1  # (b, S, d)
            val = _min_linear(a, X, eps, L, H, p.norm, has_box) + alpha @ b1 + const_up
            best = val if best is None else torch.maximum(best, val)
        out[sl] = best.numpy()
    return out


# ----------------------------------------------------------------------------------------------------
# LP / MILP (per point, HiGHS)
# ----------------------------------------------------------------------------------------------------


@dataclass
class PointSolve:
    """Outcome of the LP/MILP refinement of one point (all specifications)."""

    lower: float  # min over specifications of a lower bound of g_s
    witness: np.ndarray | None  # a point of the set found by the MILP (None for LP / no solution)
    solved: bool  # every specification that could matter was solved to optimality
    scale: float  # Σ_i |c_i| max(|l_i|, |u_i|) (largest over specifications): the size of the margin
    seconds: float


def _point_model(
    W1: np.ndarray, b1: np.ndarray, l: np.ndarray, u: np.ndarray, integer: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows A v ≤ b over v = [x (d), h (|U|), a (|U|) if integer] and the index sets."""
    U = np.flatnonzero((l < 0) & (u > 0))
    d, k = W1.shape[1], U.size
    WU, bU, lU, uU = W1[U], b1[U], l[U], u[U]
    eye = np.eye(k)
    nv = d + k + (k if integer else 0)
    rows = [np.hstack([WU, -eye, np.zeros((k, nv - d - k))])]  # h ≥ z:  W x − h ≤ −b
    rhs = [-bU]
    if integer:
        rows.append(np.hstack([-WU, eye, -np.diag(lU)]))  # h ≤ z − l (1 − a):  −W x + h − l a ≤ b − l
        rhs.append(bU - lU)
        rows.append(np.hstack([np.zeros((k, d)), eye, -np.diag(uU)]))  # h − u a ≤ 0
        rhs.append(np.zeros(k))
    else:
        s = uU / (uU - lU)
        rows.append(np.hstack([-s[:, None] * WU, eye]))  # h − s (z − l) ≤ 0
        rhs.append(s * (bU - lU))
    A = np.vstack(rows) if k else np.zeros((0, nv))
    b = np.concatenate(rhs) if k else np.zeros(0)
    return A, b, U, np.flatnonzero(l >= 0)


def _safe_lp_bound(
    cost: np.ndarray, A: np.ndarray, b: np.ndarray, lb: np.ndarray, ub: np.ndarray, y: np.ndarray
) -> float:
    """Weak-duality bound yᵀb + Σ min(r lb, r ub), r = cost − Aᵀy, for y ≤ 0 (any such y is valid)."""
    y = np.minimum(y, 0.0)
    r = cost - A.T @ y
    return float(y @ b + np.sum(np.where(r > 0, r * lb, r * ub)))


def solve_point(p: Problem, i: int, crown_s: np.ndarray, integer: bool, time_limit: float) -> PointSolve:
    """Refine point ``i`` with the triangle LP (``integer=False``) or the exact MILP (``integer=True``).

    Specifications are visited in increasing order of their CROWN bound ``crown_s`` (S,) and skipped
    when that bound is already ≥ the best value found so far (they cannot hold the minimum).
    """
    t0 = time.perf_counter()
    net = p.net
    W1, b1 = net.W1, net.b1
    l, u, L, H = p.l[i], p.u[i], p.L[i], p.H[i]
    A, b, U, Aidx = _point_model(W1, b1, l, u, integer)
    d, k = W1.shape[1], U.size
    lb = np.concatenate([L, np.zeros(k)] + ([np.zeros(k)] if integer else []))
    ub = np.concatenate([H, u[U]] + ([np.ones(k)] if integer else []))
    lowers = np.array(crown_s, dtype=np.float64)
    best_upper = np.inf
    witness: np.ndarray | None = None
    solved = True
    scale = 0.0
    for s in np.argsort(crown_s):
        c = p.C[i, s]
        scale = max(scale, float(np.sum(np.abs(c) * np.maximum(np.abs(l), np.abs(u)))))
        if crown_s[s] >= best_upper:
            continue
        cost = np.zeros(lb.size)
        cost[:d] = c[Aidx] @ W1[Aidx]
        cost[d : d + k] = c[U]
        const = float(c[Aidx] @ b1[Aidx])
        if k == 0:
            # The margin is linear on the set: the LP over the box [L, H] is solved in closed form.
            val = const + float(np.sum(np.where(cost[:d] > 0, cost[:d] * L, cost[:d] * H)))
            lowers[s] = max(lowers[s], val)
            if val < best_upper:
                best_upper = val
                if integer:
                    witness = np.where(cost[:d] > 0, L, H)
            continue
        remaining = time_limit - (time.perf_counter() - t0)
        if remaining <= 0:
            solved = False
            continue
        if integer:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = milp(
                    cost,
                    constraints=[LinearConstraint(A, -np.inf, b)],
                    bounds=Bounds(lb, ub),
                    integrality=np.concatenate([np.zeros(d + k), np.ones(k)]),
                    options={"time_limit": float(remaining), "mip_rel_gap": 0.0, "presolve": True},
                )
            dual = getattr(res, "mip_dual_bound", None)
            if dual is not None and np.isfinite(dual):
                lowers[s] = max(lowers[s], float(dual) + const)
            if res.status != 0:
                solved = False
            if res.x is not None:
                val = float(res.fun) + const
                if val < best_upper:
                    best_upper = val
                    witness = np.clip(res.x[:d], L, H)
        else:
            res = linprog(
                cost,
                A_ub=A,
                b_ub=b,
                bounds=np.column_stack([lb, ub]),
                method="highs",
                options={"time_limit": float(remaining)},
            )
            if res.status == 0:
                bound = _safe_lp_bound(cost, A, b, lb, ub, res.ineqlin.marginals) + const
                lowers[s] = max(lowers[s], bound)
                best_upper = min(best_upper, float(res.fun) + const)
            else:
                solved = False
    return PointSolve(float(lowers.min()), witness, solved, scale, time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------------


def _require_linf(norm: str, method: str) -> None:
    if norm != "inf":
        raise UnsupportedNormError(
            f"method={method!r} supports the ℓ∞ norm only (an ℓ2 ball is not polyhedral; exact ℓ2 "
            "certification would need a mixed-integer QCP); use method='crown' or 'ibp' for ℓ2"
        )


def spec_lower_bounds(p: Problem, method: str, time_limit: float = 10.0) -> np.ndarray:
    """Lower bounds per point and specification (n, S) for "ibp"/"crown"; for "lp"/"exact" the
    per-point minimum over specifications is returned in column 0 of an (n, 1) array."""
    if method == "ibp":
        return ibp_lower(p)
    cr = crown_lower(p)
    if method == "crown":
        return cr
    _require_linf(p.norm, method)
    out = np.empty((p.n, 1))
    for i in range(p.n):
        out[i, 0] = solve_point(p, i, cr[i], method == "exact", time_limit).lower
    return out


def margin_bounds(
    model: object,
    X: object,
    y: object,
    eps: object,
    norm: object = "inf",
    method: str = "crown",
    box: object = None,
    time_limit: float = 10.0,
) -> np.ndarray:
    """A lower bound on min_{x ∈ ball(X_i, eps) ∩ box} margin(x) for every point, (n,).

    Parameters
    ----------
    model : a network accepted by :func:`convexnn.network.as_network`.
    X : (n, d) points; y : (n,) labels (±1 for one output, 0..K-1 for K outputs).
    eps : radius, scalar or (n,).
    norm : "inf" or 2.
    method : "ibp", "crown", "lp" (ℓ∞ only) or "exact" (ℓ∞ only): see the module docstring.
    box : optional (lo, hi) constraint on the perturbed point.
    time_limit : seconds per point for "lp"/"exact"; a time-out returns the best bound proven so far.

    Unlike :func:`convexnn.robustness.certify`, this evaluates the method on *every* point (no
    attack, no early decision), which is what one wants to compare bounds.
    """
    method = parse_method(method)
    p = prepare(model, X, y, eps, norm, box)
    if method in ("lp", "exact"):
        _require_linf(p.norm, method)
    return spec_lower_bounds(p, method, time_limit).min(axis=1)
