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
  bound for any y ≤ 0, so the result does not rely on the solver's tolerances (only on rounding in this
  sum). The triangle LP with the same l, u is at least as tight as every CROWN slope choice
  (λz ≤ max(0, z) ≤ h on its feasible set).
  ℓ∞ only: an ℓ2 ball is not polyhedral.
* ``"exact"``: the mixed-integer program with one binary a_i per unstable neuron (big-M from l, u):
      h_i ≥ 0, h_i ≥ z_i, h_i ≤ z_i − l_i (1 − a_i), h_i ≤ u_i a_i,
  solved by HiGHS (``scipy.optimize.milp``, relative gap 0) per point and specification with a time
  limit. The value is HiGHS's dual bound (the exact minimum when solved, up to HiGHS's absolute gap and
  tolerances, about 1e-6), capped by the margin of the solver's own point re-evaluated by a float64
  forward pass; on a time-out it is the best of that dual bound and the CROWN bound. Specifications
  whose CROWN bound already exceeds the best value found are skipped (they cannot be the minimum).
  ℓ∞ only (ℓ2 would need a mixed-integer QCP).

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
    box_rows,
    check_box,
    check_eps,
    check_labels,
    check_X,
    get_network,
    parse_method,
    parse_norm,
    small_work_threads,
    spec_weights,
    to_torch,
)

__all__ = ["margin_bounds", "preactivation_bounds"]

_F64 = torch.float64
#: Elements per block of (points × specifications × features) tensors: blocks small enough to stay in
#: the CPU cache make the bounds memory-bandwidth friendly (all work is a few passes over each block).
_BLOCK_ELEMENTS = 1 << 19
#: Iterations of the bisection on the ℓ2 ∩ box dual variable.
_DUAL_ITERS = 60


_t = to_torch


def _blocks(n: int, per_point: int) -> list[slice]:
    size = max(1, _BLOCK_ELEMENTS // max(1, per_point))
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


@dataclass
class Problem:
    """A validated certification problem, as float64 NumPy arrays.

    X (n, d), y (n,), eps (n,), box: (lo, hi) each (1, d) or (n, d), or None; C (n, S, m): the
    specification weights; l, u (n, m): pre-activation bounds over the set.
    """

    net: TwoLayerReLU
    X: np.ndarray
    y: np.ndarray
    eps: np.ndarray
    norm: str
    box: tuple[np.ndarray, np.ndarray] | None
    C: np.ndarray
    l: np.ndarray
    u: np.ndarray

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def enclosing(self, rows: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The box [L, H] ⊇ set for the given rows: L = max(x − ε, lo), H = min(x + ε, hi).
        For ℓ∞ it is the set itself."""
        return _enclosing_box(self.X[rows], self.eps[rows], box_rows(self.box, rows))

    def subset(self, idx: np.ndarray) -> Problem:
        return Problem(
            self.net, self.X[idx], self.y[idx], self.eps[idx], self.norm, box_rows(self.box, idx),
            self.C[idx], self.l[idx], self.u[idx],
        )  # fmt: skip


def prepare(model: object, X: object, y: object, eps: object, norm: object = "inf", box: object = None) -> Problem:
    """Validate the inputs and compute the pre-activation bounds."""
    net = get_network(model)
    norm = parse_norm(norm)
    Xa = check_X(net, X)
    n = Xa.shape[0]
    ya = check_labels(net, y, n)
    ea = check_eps(eps, n)
    boxa = check_box(box, Xa)
    l, u = _preact(net, Xa, ea, norm, boxa)
    return Problem(net, Xa, ya, ea, norm, boxa, spec_weights(net, ya), l, u)


def _enclosing_box(
    X: np.ndarray, eps: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    L = X - eps[:, None]
    H = X + eps[:, None]
    if box is not None:
        L = np.maximum(L, box[0])
        H = np.minimum(H, box[1])
    return L, H


def _block_geometry(
    X: np.ndarray, eps: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None
) -> tuple[torch.Tensor, ...]:
    """Torch views of one block: x₀, ε, and the enclosing box as centre/half-width and as [L, H]."""
    x0, e = _t(X), _t(eps)
    if box is None:
        L = x0 - e[:, None]
        H = x0 + e[:, None]
    else:
        L = torch.maximum(x0 - e[:, None], _t(box[0]))
        H = torch.minimum(x0 + e[:, None], _t(box[1]))
    return x0, e, (L + H) * 0.5, (H - L) * 0.5, L, H


def _preact(
    net: TwoLayerReLU, X: np.ndarray, eps: np.ndarray, norm: str, box: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Pre-activation bounds l, u (n, m) over the set (see the module docstring), block by block."""
    with small_work_threads(X.shape[0] * max(net.n_features, net.width)):
        return _preact_blocks(net, X, eps, norm, box)


def _preact_blocks(
    net: TwoLayerReLU, X: np.ndarray, eps: np.ndarray, norm: str, box: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    W1, b1 = _t(net.W1), _t(net.b1)
    W1abs, W1norm = W1.abs(), torch.linalg.vector_norm(W1, dim=1)
    n = X.shape[0]
    l_out, u_out = np.empty((n, net.width)), np.empty((n, net.width))
    for sl in _blocks(n, X.shape[1]):
        x0, e, center, rad, _, _ = _block_geometry(X[sl], eps[sl], box_rows(box, sl))
        if norm == "inf" or box is not None:
            zc = center @ W1.T + b1
            zr = rad @ W1abs.T
            l, u = zc - zr, zc + zr
        if norm == "2":
            z = x0 @ W1.T + b1
            r = e[:, None] * W1norm[None, :]
            if box is None:
                l, u = z - r, z + r
            else:
                l, u = torch.maximum(l, z - r), torch.minimum(u, z + r)
        l_out[sl], u_out[sl] = l.numpy(), u.numpy()
    return l_out, u_out


def preactivation_bounds(
    model: object, X: object, eps: object, norm: object = "inf", box: object = None
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds l ≤ X' W1ᵀ + b1 ≤ u, each (n, m), valid for every X' in the ball (∩ box) around X."""
    net = get_network(model)
    norm = parse_norm(norm)
    Xa = check_X(net, X)
    ea = check_eps(eps, Xa.shape[0])
    return _preact(net, Xa, ea, norm, check_box(box, Xa))


# ----------------------------------------------------------------------------------------------------
# Closed-form bounds (torch, vectorised)
# ----------------------------------------------------------------------------------------------------


def ibp_lower(p: Problem) -> np.ndarray:
    """Interval bound per point and specification, (n, S)."""
    with small_work_threads(p.C.size):
        C = _t(p.C)
        hl = torch.relu(_t(p.l))[:, None, :]
        hu = torch.relu(_t(p.u))[:, None, :]
        return (C.clamp(min=0) * hl + C.clamp(max=0) * hu).sum(-1).numpy()


def _min_linear_l2_box(
    a: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, L: torch.Tensor, H: torch.Tensor
) -> torch.Tensor:
    """Lower bound on min aᵀx over {‖x − x₀‖₂ ≤ ε} ∩ [L, H] (tight up to the bisection), (b, S).

    a: (b, S, d); x0, L, H: (b, d); eps: (b,). Best of: the ball alone (aᵀx₀ − ε‖a‖₂), the box
    alone (Σ min(a L, a H)), and the Lagrangian dual values met while bisecting on μ.
    """
    anorm = torch.linalg.vector_norm(a, dim=-1)
    e = eps[:, None]
    Lb, Hb, xb = L[:, None, :], H[:, None, :], x0[:, None, :]
    best = torch.einsum("bsd,bd->bs", a, x0) - e * anorm
    best = torch.maximum(best, torch.where(a > 0, a * Lb, a * Hb).sum(-1))
    live = (e > 0) & (anorm > 0)
    if not bool(live.any()):
        return best
    mu_top = torch.where(live, anorm / (2 * torch.where(live, e, torch.ones_like(e))), torch.ones_like(anorm))
    lo_log = torch.log(mu_top) - 40.0
    hi_log = torch.log(mu_top)
    for _ in range(_DUAL_ITERS):
        mid = (lo_log + hi_log) / 2
        mu = torch.exp(mid)
        t = torch.minimum(torch.maximum(xb - a / (2 * mu[..., None]), Lb), Hb)
        dist2 = ((t - xb) ** 2).sum(-1)
        val = (a * t).sum(-1) + mu * (dist2 - e**2)
        best = torch.where(live, torch.maximum(best, val), best)
        too_small = dist2 > e**2  # the dual slope is positive: increase μ
        lo_log = torch.where(too_small, mid, lo_log)
        hi_log = torch.where(too_small, hi_log, mid)
    return best


SLOPES = ("adaptive", "zero", "one")


def crown_lower(p: Problem, slopes: tuple[str, ...] = SLOPES) -> np.ndarray:
    """CROWN bound per point and specification, (n, S): the best over the given slope choices λ.

    Per block of points, with V slope choices stacked along the specification axis:
    α (b, V·S, m) the coefficients of z in the linear lower bound, a = α W1 (b, V·S, d), and
        ℓ∞:       α·z(centre) − |a|·(half-width) + k
        ℓ2:       α·z(x₀) − ε‖a‖₂ + k
        ℓ2 ∩ box: :func:`_min_linear_l2_box`(a) + α·b1 + k.
    """
    n, S, m = p.C.shape
    with small_work_threads(n * len(slopes) * S * max(p.net.n_features, m)):
        return _crown_blocks(p, slopes)


def _crown_blocks(p: Problem, slopes: tuple[str, ...]) -> np.ndarray:
    net = p.net
    W1, b1 = _t(net.W1), _t(net.b1)
    n, S, m = p.C.shape
    d = net.n_features
    V = len(slopes)
    out = np.empty((n, S))
    for sl in _blocks(n, V * S * max(d, m)):
        l, u = _t(p.l[sl]), _t(p.u[sl])
        C = _t(p.C[sl])
        x0, e, center, rad, L, H = _block_geometry(p.X[sl], p.eps[sl], box_rows(p.box, sl))
        unstable = (l < 0) & (u > 0)
        active = (l >= 0).to(_F64)
        denom = torch.where(unstable, u - l, torch.ones_like(u))
        s_up = torch.where(unstable, u / denom, active)
        t_up = torch.where(unstable, -u * l / denom, torch.zeros_like(u))
        Cp, Cn = C.clamp(min=0), C.clamp(max=0)
        upper_part = Cn * s_up[:, None, :]
        const_up = (Cn * t_up[:, None, :]).sum(-1)  # (b, S)
        alphas = []
        for choice in slopes:
            if choice == "adaptive":
                lam = (u >= -l).to(_F64)
            elif choice == "zero":
                lam = torch.zeros_like(u)
            elif choice == "one":
                lam = torch.ones_like(u)
            else:
                raise ValueError(f"unknown slope choice {choice!r}")
            alphas.append(Cp * torch.where(unstable, lam, active)[:, None, :] + upper_part)
        alpha = torch.cat(alphas, dim=1)  # (b, V·S, m)
        a = alpha @ W1  # (b, V·S, d)
        if p.norm == "inf":
            zc = center @ W1.T + b1
            val = torch.einsum("bvm,bm->bv", alpha, zc) - torch.einsum("bvd,bd->bv", a.abs_(), rad)
        elif p.box is None:
            z0 = x0 @ W1.T + b1
            val = torch.einsum("bvm,bm->bv", alpha, z0) - e[:, None] * torch.linalg.vector_norm(a, dim=-1)
        else:
            val = _min_linear_l2_box(a, x0, e, L, H) + alpha @ b1
        val = val.view(-1, V, S) + const_up[:, None, :]
        out[sl] = val.max(dim=1).values.numpy()
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
    l, u = p.l[i], p.u[i]
    L, H = (b[0] for b in p.enclosing(slice(i, i + 1)))
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
                # The solver's point, clipped into the box, and its margin by a float64 forward pass: the
                # minimum is at most this value, so the bound is capped by it (HiGHS works to 1e-6..1e-7
                # feasibility tolerances and its dual bound can exceed the true minimum by about that).
                x = np.clip(res.x[:d], L, H)
                val = float(np.maximum(W1 @ x + b1, 0.0) @ c)
                lowers[s] = min(lowers[s], val)
                if val < best_upper:
                    best_upper = val
                    witness = x
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
