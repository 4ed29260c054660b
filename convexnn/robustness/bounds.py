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
  ℓ2: the same relaxation with ‖x − x₀‖₂ ≤ ε (∩ box) is a second-order cone program, solved by Clarabel
  (optional dependency) per point and specification (:func:`_l2_node`); without active box constraints
  it is solved in the span of the few directions it depends on (x = x₀ + Q t, ‖t‖₂ ≤ ε). The value is
  again a weak-duality bound from the multipliers y ≥ 0 of the linear rows, with the residual minimised
  exactly over the ball (rᵀx₀ − ε‖r‖₂, or over the enclosing box if larger), valid whatever the solver's
  accuracy.
* ``"exact"``: the mixed-integer program with one binary a_i per unstable neuron (big-M from l, u):
      h_i ≥ 0, h_i ≥ z_i, h_i ≤ z_i − l_i (1 − a_i), h_i ≤ u_i a_i,
  solved by HiGHS (``scipy.optimize.milp``, relative gap 0) per point and specification with a time
  limit. The value is HiGHS's dual bound (the exact minimum when solved, up to HiGHS's absolute gap and
  tolerances, about 1e-6), capped by the margin of the solver's own point re-evaluated by a float64
  forward pass; on a time-out it is the best of that dual bound and the CROWN bound. Specifications
  whose CROWN bound already exceeds the best value found are skipped (they cannot be the minimum).
  ℓ2 (:func:`_solve_point_l2`): branch and bound over the unstable neurons. A node fixes some of them on
  (z_j ≥ 0, linear) or off (z_j ≤ 0, zero) and relaxes the others by the triangle SOCP above; nodes whose
  safe bound is ≥ the best margin found (or, in :func:`certify`, > the tolerance) are pruned, the others
  split on the neuron with the largest relaxation error at the node's minimiser; each minimiser, moved
  into ball ∩ box, is evaluated by a float64 forward pass (a witness). When it finishes the bound is the
  exact minimum (up to a gap of 1e-8·(1 + scale) and the conic solver's accuracy on the leaves); on a
  time-out it is the smallest bound over the open nodes, still valid.

Everything except the per-point LP/MILP/SOCP solves is vectorised in torch float64 over points, neurons and
specifications.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from convexnn.network import TwoLayerReLU
from convexnn.robustness._checks import (
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


@contextlib.contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """Point the process's file descriptor 1 at /dev/null for the duration.

    HiGHS's MIP solver (inside ``scipy.optimize.milp``) was seen to print a debug line
    ("HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();") from C++ straight to fd 1,
    which ``disp=False`` does not silence and which would end up in a user's report or JSON output.
    Native code writes to descriptor 1 whatever ``sys.stdout`` is, so that descriptor is redirected (and
    restored after); Python's ``sys.stdout`` is flushed first. Nothing happens when fd 1 is not open."""
    try:
        os.fstat(1)
    except OSError:
        yield
        return
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
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


def solve_point(
    p: Problem, i: int, crown_s: np.ndarray, integer: bool, time_limit: float, decide_tol: float | None = None
) -> PointSolve:
    """Refine point ``i`` with the triangle LP (``integer=False``) or the exact MILP (``integer=True``).

    Specifications are visited in increasing order of their CROWN bound ``crown_s`` (S,) and skipped
    when that bound is already ≥ the best value found so far (they cannot hold the minimum).
    For ℓ2 this is :func:`_solve_point_l2` (triangle SOCP / branch and bound; ``decide_tol`` only
    matters there: stop at the sign of the margin instead of its exact value).
    """
    if p.norm == "2":
        return _solve_point_l2(p, i, crown_s, integer, time_limit, decide_tol)
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
            with warnings.catch_warnings(), _native_stdout_silenced():
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
# ℓ2: triangle relaxation as an SOCP (Clarabel), branch and bound for the exact minimum
# ----------------------------------------------------------------------------------------------------

#: Relative gap of the ℓ2 branch and bound: a node whose bound is within gap·(1 + scale) of the best
#: margin found is pruned (it cannot hold a smaller minimum by more than that).
L2_BAB_GAP = 1e-8


def _require_clarabel() -> object:
    try:
        import clarabel
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "method='lp' or 'exact' with norm=2 solves second-order cone programs with Clarabel, an optional "
            "dependency: pip install 'convexnn[cvxpy]' (or pip install clarabel)"
        ) from exc
    return clarabel


@dataclass
class _L2Set:
    """The set {x : ‖x − x₀‖₂ ≤ ε} ∩ box of one point and the change of variables used by the SOCPs.

    x0 (d,), eps, L/H (d,) the enclosing box, lo/hi (d,) the user box (None without one); ``brows`` the
    coordinates whose box bound can be active on the ball (x₀ − ε < lo or x₀ + ε > hi). Without active box
    rows the problem only sees x through a few directions and x = x₀ + Q t with Q (d, r) an orthonormal
    basis of the span of those directions (the rows of W1 for the unstable neurons and the linear parts
    of the objectives): min over ‖t‖ ≤ ε is the same problem in r ≤ |U| + S variables. With a box,
    Q = None and t = x − x₀ (d variables).
    """

    x0: np.ndarray
    eps: float
    L: np.ndarray
    H: np.ndarray
    lo: np.ndarray | None
    hi: np.ndarray | None
    lo_rows: np.ndarray
    hi_rows: np.ndarray
    Q: np.ndarray | None

    def min_linear(self, r: np.ndarray) -> float:
        """A lower bound on min rᵀx over the set: max(rᵀx₀ − ε‖r‖₂, Σ min(r L, r H)) (both sets contain it)."""
        ball = float(r @ self.x0) - self.eps * float(np.linalg.norm(r))
        box = float(np.sum(np.where(r > 0, r * self.L, r * self.H)))
        return max(ball, box)

    def inside(self, x: np.ndarray) -> np.ndarray:
        """A point of the set near x: clipped into the box, then pulled towards x₀ onto the ball (the box is
        convex and contains x₀, so the second step keeps the first)."""
        if self.lo is not None:
            x = np.minimum(np.maximum(x, self.lo), self.hi)
        delta = x - self.x0
        dist = float(np.linalg.norm(delta))
        if dist > self.eps:
            x = self.x0 + delta * (self.eps / dist) * (1.0 - 1e-14)
        return x


def _l2_set(p: Problem, i: int, directions: np.ndarray) -> _L2Set:
    x0 = p.X[i]
    eps = float(p.eps[i])
    L, H = (b[0] for b in p.enclosing(slice(i, i + 1)))
    box = box_rows(p.box, slice(i, i + 1))
    if box is None:
        lo = hi = None
        lo_rows = hi_rows = np.zeros(0, dtype=np.int64)
    else:
        lo, hi = box[0][0], box[1][0]
        lo_rows = np.flatnonzero(x0 - eps < lo)
        hi_rows = np.flatnonzero(x0 + eps > hi)
    Q = None
    if lo_rows.size + hi_rows.size == 0:
        if directions.shape[0]:
            Uq, sv, _ = np.linalg.svd(directions.T, full_matrices=False)
            Q = Uq[:, sv > sv[0] * 1e-12] if sv[0] > 0 else Uq[:, :0]
        else:
            Q = np.zeros((x0.size, 0))
    return _L2Set(x0, eps, L, H, lo, hi, lo_rows, hi_rows, Q)


@dataclass
class _Node:
    """Result of one relaxation: a safe lower bound, the relaxed minimiser x (d,) (None if the solver gave
    none) and h (|free|,), and whether the node was proven empty."""

    lower: float
    x: np.ndarray | None
    h: np.ndarray | None
    empty: bool
    objective: float


def _l2_node(
    clarabel: object,
    net: TwoLayerReLU,
    st: _L2Set,
    c: np.ndarray,
    lin: np.ndarray,
    free: np.ndarray,
    on: np.ndarray,
    off: np.ndarray,
    l: np.ndarray,
    u: np.ndarray,
    time_left: float,
) -> _Node:
    r"""Minimise the triangle relaxation of g(x) = Σ c_i relu(z_i) over the set ∩ {z_on ≥ 0, z_off ≤ 0}.

    Neurons in ``lin`` (stable active, or fixed on) are linear, neurons off (stable inactive, fixed off) are
    0, and each neuron j in ``free`` (l_j < 0 < u_j) gets h_j with h_j ≥ 0, h_j ≥ z_j,
    h_j ≤ s_j (z_j − l_j), s_j = u_j/(u_j − l_j). In x-space the linear rows are G_x x + G_h h ≤ g and the
    objective costᵀx + c_Fᵀh + k. Clarabel solves it in the variables (t, h) with x = x₀ + Q t and the cone
    ‖t‖₂ ≤ ε. The returned bound does not trust the solver: for y = max(z, 0) (z the multipliers of the
    linear rows) weak duality gives, for every feasible (x, h) (x in the set, 0 ≤ h ≤ u),

        costᵀx + c_Fᵀh + k ≥ k − gᵀy + min_x (cost + G_xᵀy)ᵀx + Σ_j min(0, (c_F + G_hᵀy)_j u_j),

    and the min over x uses :meth:`_L2Set.min_linear`. When Clarabel reports the node infeasible, the same
    sum without the objective (a Farkas certificate) proves it empty if it is clearly > 0.
    """
    W1, b1 = net.W1, net.b1
    d, k = W1.shape[1], free.size
    cost = c[lin] @ W1[lin]
    const = float(c[lin] @ b1[lin])
    WF, bF, lF, uF = W1[free], b1[free], l[free], u[free]
    sF = uF / (uF - lF)
    eye = np.eye(k)
    blocks_x = [np.zeros((k, d)), WF, -sF[:, None] * WF, -W1[on], W1[off]]
    blocks_h = [-eye, -eye, eye, np.zeros((on.size, k)), np.zeros((off.size, k))]
    g_parts = [np.zeros(k), -bF, sF * (bF - lF), b1[on], -b1[off]]
    Gx_dense = np.vstack(blocks_x)
    Gh = np.vstack(blocks_h)
    n_dense = Gx_dense.shape[0]
    nlo, nhi = st.lo_rows.size, st.hi_rows.size
    g = np.concatenate(g_parts + ([-st.lo[st.lo_rows], st.hi[st.hi_rows]] if st.lo is not None else []))

    def lagrangian(y: np.ndarray, with_objective: bool) -> tuple[float, float]:
        """(bound, magnitude of its terms) for multipliers y ≥ 0."""
        rx = Gx_dense.T @ y[:n_dense]
        if nlo:
            np.subtract.at(rx, st.lo_rows, y[n_dense : n_dense + nlo])
        if nhi:
            np.add.at(rx, st.hi_rows, y[n_dense + nlo :])
        rh = Gh.T @ y[:n_dense]
        if with_objective:
            rx = rx + cost
            rh = rh + c[free]
        val = -float(g @ y) + st.min_linear(rx) + float(np.sum(np.minimum(rh * uF, 0.0)))
        mag = float(np.abs(g) @ y) + float(np.abs(rx) @ np.maximum(np.abs(st.L), np.abs(st.H)))
        mag += float(np.abs(rh) @ uF)
        return (val + const if with_objective else val), mag

    # Solver variables v = (t, w, h): t = Qᵀ(x − x₀) (or x − x₀ with a box). With a box (d variables),
    # w = W_rows t (the pre-activation changes of the free/on/off neurons, ZeroCone rows) keeps the dense
    # rows of W1 once in the matrix instead of once per linear row (3× fewer nonzeros, faster KKT solves).
    lift = st.Q is None and free.size + on.size + off.size > 0
    if st.Q is None:
        ncols_t = d
        qt = cost
    else:
        ncols_t = st.Q.shape[1]
        qt = st.Q.T @ cost
    obj0 = const + float(cost @ st.x0)
    if ncols_t + k == 0:
        val, _ = lagrangian(np.zeros(g.size), True)
        return _Node(val, st.x0.copy(), np.zeros(0), False, obj0)
    if lift:
        Wrows = np.vstack([WF, W1[on], W1[off]])
        nz = Wrows.shape[0]
        nf, non = free.size, on.size
        ik, ion, ioff = sp.eye(nf), sp.eye(non), sp.eye(off.size)
        Gw = sp.block_diag([ik, -ion, ioff], format="csr") if nz else sp.csr_matrix((0, 0))
        Gw = sp.vstack([sp.csr_matrix((nf, nz)), Gw[:nf], -sp.diags(sF) @ Gw[:nf], Gw[nf:]])
        eq = sp.hstack([sp.csr_matrix(Wrows), -sp.eye(nz), sp.csr_matrix((nz, k))])
        lin = sp.hstack([sp.csr_matrix((n_dense, ncols_t)), Gw, sp.csr_matrix(Gh)])
    else:
        nz = 0
        At_dense = Gx_dense if st.Q is None else Gx_dense @ st.Q
        eq = None
        lin = sp.csr_matrix(np.hstack([At_dense, Gh]))
    nv = ncols_t + nz + k
    rows = ([eq] if lift else []) + [lin]
    if nlo:
        rows.append(sp.csr_matrix((-np.ones(nlo), (np.arange(nlo), st.lo_rows)), shape=(nlo, nv)))
    if nhi:
        rows.append(sp.csr_matrix((np.ones(nhi), (np.arange(nhi), st.hi_rows)), shape=(nhi, nv)))
    soc = sp.hstack([-sp.eye(ncols_t), sp.csr_matrix((ncols_t, nz + k))])
    rows.append(sp.vstack([sp.csr_matrix((1, nv)), soc]))
    A = sp.vstack(rows).tocsc()
    b_lin = g - np.concatenate([Gx_dense @ st.x0, -st.x0[st.lo_rows], st.x0[st.hi_rows]])  # g − G_x x₀
    b = np.concatenate([np.zeros(nz), b_lin, [st.eps], np.zeros(ncols_t)])
    q = np.concatenate([qt, np.zeros(nz), c[free]])
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.max_threads = 1
    settings.time_limit = max(float(time_left), 1e-3)
    cones = ([clarabel.ZeroConeT(nz)] if nz else []) + ([clarabel.NonnegativeConeT(g.size)] if g.size else [])
    cones.append(clarabel.SecondOrderConeT(ncols_t + 1))
    sol = clarabel.DefaultSolver(sp.csc_matrix((nv, nv)), q, A, b, cones, settings).solve()
    z = np.asarray(sol.z, dtype=np.float64)[nz : nz + g.size]
    status = str(sol.status)
    if not np.all(np.isfinite(z)):
        return _Node(-np.inf, None, None, False, np.nan)
    y = np.maximum(z, 0.0)
    if "Infeasible" in status and "Dual" not in status:
        val, mag = lagrangian(y, False)
        if val > 1e-9 * mag:
            return _Node(np.inf, None, None, True, np.inf)
    lower, _ = lagrangian(y, True)
    v = np.asarray(sol.x, dtype=np.float64)
    x = h = None
    if "Solved" in status and np.all(np.isfinite(v)):
        t = v[:ncols_t]
        x = st.x0 + (t if st.Q is None else st.Q @ t)
        h = v[ncols_t + nz :]
    return _Node(lower, x, h, False, float(sol.obj_val) + obj0 if x is not None else np.nan)


def _solve_point_l2(
    p: Problem,
    i: int,
    crown_s: np.ndarray,
    integer: bool,
    time_limit: float,
    decide_tol: float | None = None,
) -> PointSolve:
    r"""ℓ2 refinement of point ``i``: the triangle SOCP (``integer=False``) or branch and bound (``True``).

    Branch and bound, per specification (visited in increasing order of the CROWN bound and skipped when
    that bound is ≥ the best margin found): best-first over nodes; a node fixes some unstable neurons on
    (z_j ≥ 0, relu(z_j) = z_j) or off (z_j ≤ 0, relu(z_j) = 0) and relaxes the others by the triangle
    (:func:`_l2_node`). Every node's minimiser is moved into the set and the network evaluated there (float64
    forward pass, all specifications): the smallest such margin is the incumbent, an attained value. A node is
    pruned when empty, when its bound is ≥ incumbent − gap (gap = ``L2_BAB_GAP``·(1 + scale)), or, with
    ``decide_tol`` (used by :func:`certify`), when its bound is > decide_tol·(1 + scale) (certified branch);
    with ``decide_tol`` the search also stops as soon as the incumbent is ≤ 0 (attacked). Otherwise it is
    split on the free neuron with the largest relaxation error |c_j| (h_j − relu(z_j)) at its minimiser
    (the largest triangle gap |c_j| u_j (−l_j)/(u_j − l_j) if all errors vanish). The bound returned is the
    minimum over the leaves (and the nodes left open by the time limit) of their bounds, which is ≤ the
    minimum of g over the set since the leaves partition it; capped by the incumbent. When the search
    finishes without ``decide_tol`` it is the exact minimum up to the gap.
    """
    clarabel = _require_clarabel()
    t0 = time.perf_counter()
    net = p.net
    W1, b1 = net.W1, net.b1
    l, u = p.l[i], p.u[i]
    C = p.C[i]
    U = np.flatnonzero((l < 0) & (u > 0))
    active = np.flatnonzero(l >= 0)
    scale = float(np.max(np.sum(np.abs(C) * np.maximum(np.abs(l), np.abs(u))[None, :], axis=1)))
    gap = L2_BAB_GAP * (1.0 + scale)
    prune_above = np.inf if decide_tol is None else decide_tol * (1.0 + scale)
    lowers = np.array(crown_s, dtype=np.float64)
    x0 = p.X[i]
    if p.eps[i] == 0 or np.all(p.enclosing(slice(i, i + 1))[0] == p.enclosing(slice(i, i + 1))[1]):
        val = float(np.min(C @ np.maximum(W1 @ x0 + b1, 0.0)))
        return PointSolve(val, x0.copy() if integer else None, True, scale, time.perf_counter() - t0)
    directions = np.vstack([W1[U], C[:, active] @ W1[active]])
    st = _l2_set(p, i, directions)

    def margin_at(x: np.ndarray) -> float:
        return float(np.min(C @ np.maximum(W1 @ x + b1, 0.0)))

    best_upper = np.inf
    witness: np.ndarray | None = None
    if integer:
        best_upper, witness = margin_at(x0), x0.copy()
    solved = True
    counter = 0
    for s in np.argsort(crown_s):
        c = C[s]
        if decide_tol is not None and best_upper <= 0:
            break
        if crown_s[s] >= best_upper:
            continue
        if not integer:
            if U.size == 0:
                continue  # the margin is linear on the set: CROWN is already the exact minimum
            remaining = time_limit - (time.perf_counter() - t0)
            if remaining <= 0:
                solved = False
                continue
            node = _l2_node(clarabel, net, st, c, active, U, U[:0], U[:0], l, u, remaining)
            lowers[s] = max(lowers[s], node.lower)
            if not np.isfinite(node.objective):
                solved = False
            else:
                best_upper = min(best_upper, node.objective)
            continue
        # branch and bound: heap of (parent bound, tie, fixed-on, fixed-off)
        heap: list[tuple[float, int, np.ndarray, np.ndarray]] = [(float(crown_s[s]), 0, U[:0], U[:0])]
        leaves = np.inf
        while heap:
            if decide_tol is not None and best_upper <= 0:
                break
            bound, _, on, off = heapq.heappop(heap)
            if bound >= best_upper - gap or bound > prune_above:
                leaves = min(leaves, bound)
                continue
            remaining = time_limit - (time.perf_counter() - t0)
            if remaining <= 0:
                solved = False
                leaves = min(leaves, bound, *(h[0] for h in heap))
                heap = []
                break
            fixed = np.concatenate([on, off])
            free = U[~np.isin(U, fixed)]
            node = _l2_node(
                clarabel, net, st, c, np.concatenate([active, on]), free, on, off, l, u, remaining,
            )  # fmt: skip
            if node.empty:
                continue
            nb = max(bound, node.lower)
            if node.x is not None:
                xw = st.inside(node.x)
                mw = margin_at(xw)
                if mw < best_upper:
                    best_upper, witness = mw, xw
            if free.size == 0 or nb >= best_upper - gap or nb > prune_above:
                leaves = min(leaves, nb)
                continue
            if node.x is not None and node.h is not None:
                zf = W1[free] @ node.x + b1[free]
                err = np.abs(c[free]) * np.maximum(node.h - np.maximum(zf, 0.0), 0.0)
            else:
                err = np.zeros(free.size)
            if not np.any(err > 1e-12 * (1.0 + scale)):
                lf, uf = l[free], u[free]
                err = np.abs(c[free]) * uf * (-lf) / (uf - lf)
            j = free[int(np.argmax(err))]
            for child_on, child_off in ((np.append(on, j), off), (on, np.append(off, j))):
                counter += 1
                heapq.heappush(heap, (nb, counter, child_on, child_off))
        if heap:  # stopped early with an attack: the open nodes still bound the minimum
            leaves = min(leaves, *(h[0] for h in heap))
        lowers[s] = max(lowers[s], leaves) if np.isfinite(leaves) else max(lowers[s], best_upper)
    lower = float(lowers.min())
    if integer:
        lower = min(lower, best_upper)
    return PointSolve(lower, witness if integer else None, solved, scale, time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------------


def spec_lower_bounds(p: Problem, method: str, time_limit: float = 10.0) -> np.ndarray:
    """Lower bounds per point and specification (n, S) for "ibp"/"crown"; for "lp"/"exact" the
    per-point minimum over specifications is returned in column 0 of an (n, 1) array."""
    if method == "ibp":
        return ibp_lower(p)
    cr = crown_lower(p)
    if method == "crown":
        return cr
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
    method : "ibp", "crown", "lp" or "exact": see the module docstring (ℓ2 "lp"/"exact" need Clarabel).
    box : optional (lo, hi) constraint on the perturbed point.
    time_limit : seconds per point for "lp"/"exact"; a time-out returns the best bound proven so far.

    Unlike :func:`convexnn.robustness.certify`, this evaluates the method on *every* point (no
    attack, no early decision), which is what one wants to compare bounds.
    """
    method = parse_method(method)
    p = prepare(model, X, y, eps, norm, box)
    return spec_lower_bounds(p, method, time_limit).min(axis=1)
