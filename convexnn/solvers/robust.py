r"""Convex adversarial training (MATH.md §9): the robust program, a first-order solver, its certificate.

The program
-----------
For a :class:`~convexnn.solvers.problem.ConvexProblem` (X with its column of ones, ±1 or real targets Y,
patterns D, gates H) and a radius ε of the ℓ∞ or ℓ2 ball, write the 2P blocks u_b = (v_1..v_P, w_1..w_P)
with signs σ_b = +1 (v) / −1 (w), pattern d_b and sign vector s_b = 2d_b − 1. Only the feature
coordinates are perturbed (the ones column is not): E u is u without its intercept coordinate. For a
perturbation set Δ_j around x_j (the ε-ball, optionally intersected with a box [lo, hi] for ℓ∞) let

    N_j^s(e) = max_{δ ∈ Δ_j} (−s δ)ᵀ e     (= ε‖e‖₁ for the plain ℓ∞ ball, ε‖e‖₂ for the ℓ2 ball)

be the worst decrease of s·δᵀe. The robust program, per output column, is

    min_u  (1/n) Σ_j  ℓ_rob(ŷ_j, a_j)  +  α Σ_b ‖u_b‖₂
    s.t.   s_bj x_jᵀ u_b ≥ N_j^{s_bj}(E u_b)     for every block b and every sample j in its mask,

with ŷ_j = Σ_b σ_b d_bj x_jᵀu_b (the clean prediction), a_j = Σ_b σ_b d_bj E u_b (the network's gradient
on the ball of x_j) and the worst-case losses of §9:

    hinge     ℓ_rob = (1 − y_j ŷ_j + N_j^{y_j}(a_j))_+
    logistic  ℓ_rob = log(1 + exp(−y_j ŷ_j + N_j^{y_j}(a_j)))
    squared   ℓ_rob = ½(|ŷ_j − y_j| + N_j(a_j))²      (plain balls only: N_j symmetric)

(the squared loss keeps the project's ½). The scale convention is the project's: mean over samples,
summed over output columns.

What the objective guarantees
-----------------------------
``constraints="all"`` (the program of §9, the default): every block satisfies its cone constraint on the
whole perturbation set of every training point, so every neuron of the recovered network keeps its
activation on every ball: the network is *linear* on each ball, f(x_j + δ) = ŷ_j + δᵀa_j, and the data
term above *equals* the network's exact worst-case training loss. The objective value (``certificate.
primal``) is therefore exactly the adversarial training objective of the returned network
(worst-case loss + weight decay, in the non-convex parametrisation), hence an upper bound on the min-max
adversarial training problem over all networks; ``certificate.dual`` is a proven lower bound on the
robust program's optimum over these patterns.

``constraints="opposing"`` (hinge / logistic only): a sound relaxation. A neuron that votes *for* a
point's label (a v block at a +1 point, a w block at a −1 point) only helps the margin, and
relu(z) ≥ d·z for d ∈ {0, 1}, so it needs no constraint there; only the neurons that vote *against* a
point's label must keep their pattern on its ball. Then y_j f(x_j + δ) ≥ y_j ŷ_j + y_j δᵀa_j still holds on
the ball, and the data term is an *upper bound* (no longer the exact value) on the worst-case training
loss of the returned network; the objective is still an upper bound on its adversarial training
objective. It keeps half the constraints, which matters on image data (see :func:`robust_gates`).
(Checked against an exact convex worst-case computation in tests/test_robust_training.py.)

What it does *not* guarantee, in both modes: (i) the bounds are about the training points only —
robustness at test points is not implied and must be checked separately (e.g. by
``convexnn.robustness.certify(method="exact")``, which is independent of this program); (ii) the patterns
(and, with ``drop_empty``, the set of usable blocks) are fixed, so ``certificate.dual`` bounds the optimum
of the robust program *over these patterns*, not the min-max problem over all networks; (iii) when the
solver stops on its time or iteration budget the returned point is feasible and its objective is still
a valid upper bound, but the gap to the dual bound may be large (on 784-feature image problems with
the default budgets of ``benchmarks/bench_adversarial.py`` it is: the dual bound is then close to 0 and
says little).

The solver
----------
:func:`robust_solve` runs a preconditioned primal-dual hybrid gradient method (Chambolle–Pock with the
diagonal preconditioners of Pock & Chambolle 2011), accelerated by reflected Halpern iterations with
adaptive restarts and primal-weight updates (as in PDLP / r²HPDHG), on a lifted form of the program in
which every non-smooth piece is a simple prox: the group norms (group soft-threshold), the loss (its
per-sample prox, through m_j ≥ −y_j ŷ_j + N_j), non-negativity (ℓ∞: N_j is linear in the positive and
negative parts p ≥ (Eu)_+, q ≥ (Eu)_−) or second-order cones (ℓ2). Each iteration is a few batched
matrix products with X over all blocks at once (no loop over patterns or samples). Every
``check_every`` iterations the iterate is repaired to exact feasibility (each violating block moves
along a strictly feasible direction of its cone — its gate when the gate is robust — or is set to zero)
and certified: ``primal`` is the objective at that feasible point, ``dual`` the value of a dual feasible
point built from the multipliers (see :func:`robust_dual_bound`), a proven lower bound. The loop stops
when the relative gap is ≤ tol.

The dual used by the certificate (per column): for Λ ∈ Rⁿ, B ∈ R^{n×d'} in the domain of the loss
conjugate (hinge/logistic: Λ in the usual domain and B_j ∈ Λ_j Δ_j; squared: anything), μ_b ≥ 0 on the
mask of block b and R_b ∈ Σ_j μ_bj s_bj Δ_j,

    OPT ≥ −L*(Λ, B)   whenever   ‖σ_b(Xᵀ D_b Λ + Eᵀ Σ_j d_bj B_j) − X_bᵀ S_b μ_b − EᵀR_b‖₂ ≤ α   for all b,

with L*(Λ, B) = (1/n) Σ ℓ*(nΛ_j) (hinge/logistic, the usual conjugate) or
(1/n) Σ [nΛ_j y_j + ½ max(n|Λ_j|, n‖B_j‖_{Δ°})²] (squared; ‖·‖_{Δ°} = ‖·‖_∞/ε or ‖·‖₂/ε). Any candidate is
clamped into these sets and scaled by min(1, α / max_b residual_b), which keeps it feasible.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from convexnn.ops import losses, operators
from convexnn.solvers.problem import Certificate, ConvexProblem, SolverResult

NORMS = ("inf", "2")
CONSTRAINTS = ("all", "opposing")

__all__ = [
    "CONSTRAINTS",
    "NORMS",
    "RobustSpec",
    "blocks_to_network",
    "cone_margins",
    "robust_cvxpy",
    "robust_dual_bound",
    "robust_gates",
    "robust_objective",
    "robust_patterns",
    "robust_solve",
    "worst_case_losses",
]


# ----------------------------------------------------------------------------------------------
# the specification and the geometry shared by everything below
# ----------------------------------------------------------------------------------------------


def parse_norm(norm: object) -> str:
    """"inf" for ℓ∞ ("inf", "linf", np.inf), "2" for ℓ2 (2, "2", "l2")."""
    if isinstance(norm, bool):
        raise ValueError(f"norm must be 'inf' or 2, got {norm!r}")
    if isinstance(norm, str):
        key = norm.strip().lower().replace("ℓ", "l")
        if key in ("inf", "linf", "l_inf", "∞"):
            return "inf"
        if key in ("2", "l2", "l_2"):
            return "2"
    elif isinstance(norm, int | float | np.integer | np.floating):
        if math.isinf(float(norm)) and float(norm) > 0:
            return "inf"
        if float(norm) == 2:
            return "2"
    raise ValueError(f"norm must be 'inf' or 2, got {norm!r}")


@dataclass(frozen=True)
class RobustSpec:
    """The perturbation model of the robust program.

    eps : radius ε > 0.  norm : "inf" or "2".
    box : optional (lo, hi): for ℓ∞ the perturbed points must also stay in [lo, hi] (e.g. (0, 1) for
        pixels); the perturbation set of x_j is then [max(−ε, lo − x_j), min(ε, hi − x_j)] per feature
        (hinge / logistic losses only).
    intercept : the last column of X is the column of ones (not perturbed).
    constraints : "all" (MATH.md §9, exact worst case) or "opposing" (hinge / logistic: the sound
        relaxation described in the module docstring).
    """

    eps: float
    norm: str = "inf"
    box: tuple[float, float] | None = None
    intercept: bool = True
    constraints: str = "all"


def _make_spec(problem: ConvexProblem, eps: float, norm: object = "inf", box=None, intercept: bool | None = None,
               constraints: str = "all") -> RobustSpec:
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0 (use the standard solvers for eps = 0), got {eps!r}")
    normp = parse_norm(norm)
    if constraints not in CONSTRAINTS:
        raise ValueError(f"constraints must be one of {CONSTRAINTS}, got {constraints!r}")
    if constraints == "opposing" and problem.loss == "squared":
        raise ValueError("constraints='opposing' is a margin argument: hinge or logistic loss only")
    if box is not None:
        if normp != "inf":
            raise ValueError("box is supported with the ℓ∞ ball only")
        if problem.loss == "squared":
            raise ValueError("box is supported with the hinge and logistic losses only")
        box = (float(box[0]), float(box[1]))
        if not box[0] < box[1]:
            raise ValueError(f"box must be (lo, hi) with lo < hi, got {box!r}")
    if intercept is None:
        last = problem.X[:, -1]
        intercept = bool(torch.all(last == 1.0))
    if intercept and problem.d < 2:
        raise ValueError("with an intercept X needs at least one feature column besides the ones")
    return RobustSpec(eps=eps, norm=normp, box=box, intercept=bool(intercept), constraints=constraints)


class _Geometry:
    """Everything the robust program needs, precomputed once (all tensors on the problem's device)."""

    def __init__(self, pb: ConvexProblem, spec: RobustSpec) -> None:
        self.pb, self.spec = pb, spec
        X, D, Y = pb.X, pb.D, pb.Y
        self.X, self.Y = X, Y
        self.n, self.d, self.P, self.K = pb.n, pb.d, pb.P, pb.K
        self.df = self.d - 1 if spec.intercept else self.d
        self.Xf = X[:, : self.df]
        self.eps = spec.eps
        self.loss = pb.loss
        self.alpha = pb.alpha
        one = torch.ones(self.P, dtype=X.dtype, device=X.device)
        self.sig = torch.cat([one, -one])  # (2P,)
        self.D2 = torch.cat([D, D], dim=1)  # (n, 2P)
        self.DS = self.D2 * self.sig  # σ_b d_bj
        self.S2 = 2.0 * self.D2 - 1.0  # s_bj
        if spec.constraints == "all":
            self.mask = torch.ones((self.n, 2 * self.P, self.K), dtype=X.dtype, device=X.device)
        else:  # v blocks at −1 points, w blocks at +1 points
            self.mask = torch.cat(
                [(Y < 0).to(X.dtype)[:, None, :].expand(-1, self.P, -1),
                 (Y > 0).to(X.dtype)[:, None, :].expand(-1, self.P, -1)], dim=1,
            ).contiguous()
        self.active = torch.ones((2 * self.P, self.K), dtype=X.dtype, device=X.device)
        # ℓ∞ with a box: per-sample weights A⁺ = −L, B⁺ = U of the perturbation box [L, U]
        self.box = spec.box is not None
        if self.box:
            lo, hi = spec.box
            self.Apos = torch.clamp(torch.clamp(self.Xf - lo, max=spec.eps), min=0.0)
            self.Bpos = torch.clamp(torch.clamp(hi - self.Xf, max=spec.eps), min=0.0)
            Yp = (Y > 0)[:, None, :]
            # loss-side weights on the positive / negative parts of a_j (depend on y_j)
            self.WA = torch.where(Yp, self.Apos[:, :, None], self.Bpos[:, :, None])  # (n, df, K)
            self.WB = torch.where(Yp, self.Bpos[:, :, None], self.Apos[:, :, None])
            self.Splus = (self.S2 > 0).to(X.dtype)[:, :, None]  # (n, 2P, 1)
            self.AB = torch.cat([self.Apos, self.Bpos], 0)  # (2n, df)

    def box_pair(self, Pp: torch.Tensor, Pq: torch.Tensor) -> torch.Tensor:
        """N_j^{s_bj} of the parts (Pp, Pq) (2P, df, K): A^s_j·Pp_b + B^s_j·Pq_b, shape (n, 2P, K); one matmul."""
        nb, df, K = Pp.shape
        Q = torch.stack([Pp, Pq], 0).permute(2, 0, 1, 3).reshape(df, 2 * nb * K)
        M = (self.AB @ Q).reshape(2, self.n, 2, nb, K)
        ap, aq, bp, bq = M[0, :, 0], M[0, :, 1], M[1, :, 0], M[1, :, 1]
        return torch.where(self.Splus > 0, ap + bq, bp + aq)

    def box_pair_T(self, y3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Adjoint of :meth:`box_pair`: y3 (n, 2P, K) ↦ (dPp, dPq), each (2P, df, K); one matmul."""
        n, nb, K = y3.shape
        yp = y3 * self.Splus
        yn = y3 - yp
        R = torch.stack([torch.stack([yp, yn], 1), torch.stack([yn, yp], 1)], 0).reshape(2 * n, 2 * nb * K)
        M = (self.AB.T @ R).reshape(self.df, 2, nb, K).permute(1, 2, 0, 3)
        return M[0], M[1]

    def set_active(self, active: torch.Tensor) -> None:
        """Fix the blocks where ``active`` (2P, K) is False at zero (their constraints are dropped)."""
        self.active = active.to(self.X.dtype)
        self.mask = self.mask * self.active[None]

    # --- the maps ---------------------------------------------------------------------------------
    def local(self, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ŷ (n, K), Z (n, df, K)): clean predictions and the network's gradients a_j."""
        Zfull = torch.einsum("nb,bdk->ndk", self.DS, U)
        yhat = torch.einsum("nd,ndk->nk", self.X, Zfull)
        return yhat, Zfull[:, : self.df]

    def local_adjoint(self, lam: torch.Tensor, B: torch.Tensor | None) -> torch.Tensor:
        """Adjoint of U ↦ (ŷ, Z): (λ (n, K), B (n, df, K)) ↦ (2P, d, K)."""
        G = self.X[:, :, None] * lam[:, None, :]
        if B is not None:
            G = G.clone()
            G[:, : self.df] += B
        return torch.einsum("nb,ndk->bdk", self.DS, G)

    def worst_dev(self, Z: torch.Tensor, sign: torch.Tensor | None) -> torch.Tensor:
        """N_j^{sign_j}(Z_j) for Z (n, df, K), sign (n, K) (None: symmetric), shape (n, K)."""
        if self.spec.norm == "2":
            return self.eps * torch.linalg.vector_norm(Z, dim=1)
        if not self.box:
            return self.eps * Z.abs().sum(1)
        pos, neg = Z.clamp(min=0.0), (-Z).clamp(min=0.0)
        return (self.WA * pos + self.WB * neg).sum(1)

    def block_dev(self, U: torch.Tensor) -> torch.Tensor:
        """N_j^{s_bj}(E u_b) for every (j, b), shape (n, 2P, K) (or broadcastable (1, 2P, K))."""
        EU = U[:, : self.df]
        if self.spec.norm == "2":
            return self.eps * torch.linalg.vector_norm(EU, dim=1)[None]
        if not self.box:
            return self.eps * EU.abs().sum(1)[None]
        return self.box_pair(EU.clamp(min=0.0), (-EU).clamp(min=0.0))

    def margins(self, U: torch.Tensor) -> torch.Tensor:
        """Robust cone margins s_bj x_jᵀu_b − N_j^{s_bj}(E u_b), masked min over j: (2P, K), +inf where the
        mask of the block is empty. A block is feasible iff its margin ≥ 0."""
        M = self.S2[:, :, None] * operators.xu(self.X, U) - self.block_dev(U)
        M = torch.where(self.mask > 0, M, torch.full_like(M, math.inf))
        return M.amin(0)

    def data_loss(self, U: torch.Tensor) -> torch.Tensor:
        """(1/n) Σ_j ℓ_rob per column, (K,)."""
        yhat, Z = self.local(U)
        if self.loss == "squared":
            return (0.5 * ((yhat - self.Y).abs() + self.worst_dev(Z, None)) ** 2).sum(0) / self.n
        m = -self.Y * yhat + self.worst_dev(Z, self.Y)
        return losses.per_sample(self.loss, m, -torch.ones_like(m)).sum(0) / self.n

    def objective(self, U: torch.Tensor) -> torch.Tensor:
        return self.data_loss(U) + self.alpha * operators.group_norms(U).sum(0)


# ----------------------------------------------------------------------------------------------
# public helpers: objective, margins, worst-case losses
# ----------------------------------------------------------------------------------------------


def _stack(V: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    return torch.cat([V, W], dim=0)


def robust_objective(problem: ConvexProblem, V: torch.Tensor, W: torch.Tensor, eps: float, norm: object = "inf",
                     box=None, intercept: bool | None = None, constraints: str = "all") -> torch.Tensor:
    """Objective of the robust program per output column (K,) at blocks V, W (P, d, K) (feasibility
    not checked: see :func:`cone_margins`)."""
    g = _Geometry(problem, _make_spec(problem, eps, norm, box, intercept, constraints))
    return g.objective(_stack(V, W))


def cone_margins(problem: ConvexProblem, V: torch.Tensor, W: torch.Tensor, eps: float, norm: object = "inf",
                 box=None, intercept: bool | None = None,
                 constraints: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
    """Robust cone margins (min over the masked samples) of the v and w blocks, each (P, K);
    ≥ 0 means the block keeps its pattern on every perturbation set (+inf: no constraint)."""
    g = _Geometry(problem, _make_spec(problem, eps, norm, box, intercept, constraints))
    M = g.margins(_stack(V, W))
    return M[: problem.P], M[problem.P:]


def worst_case_losses(problem: ConvexProblem, V: torch.Tensor, W: torch.Tensor, eps: float,
                      norm: object = "inf", box=None, intercept: bool | None = None) -> torch.Tensor:
    """Per-sample worst-case losses ℓ_rob (n, K) of §9 for the network of (V, W) — exact when the blocks
    satisfy the robust cone constraints (the network is then linear on every ball)."""
    g = _Geometry(problem, _make_spec(problem, eps, norm, box, intercept, "all"))
    U = _stack(V, W)
    yhat, Z = g.local(U)
    if g.loss == "squared":
        return 0.5 * ((yhat - g.Y).abs() + g.worst_dev(Z, None)) ** 2
    m = -g.Y * yhat + g.worst_dev(Z, g.Y)
    return losses.per_sample(g.loss, m, -torch.ones_like(m))


# ----------------------------------------------------------------------------------------------
# the dual bound (certificate)
# ----------------------------------------------------------------------------------------------


def _conjugate(g: _Geometry, Lam: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """L*(Λ, B) per column (K,), for (Λ, B) already in the domain."""
    if g.loss != "squared":
        return losses.conjugate(g.loss, Lam, g.Y)
    n = g.n
    if g.spec.norm == "2":
        gauge = torch.linalg.vector_norm(B, dim=1) / g.eps
    else:
        gauge = B.abs().amax(1) / g.eps
    vals = n * Lam * g.Y + 0.5 * torch.maximum(n * Lam.abs(), n * gauge) ** 2
    return vals.sum(0) / n


def _project_loss_dual(g: _Geometry, Lam: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamp (Λ, B) into the domain of L*."""
    if g.loss == "squared":
        return Lam, B
    Lam = losses.project_dual(g.loss, Lam, g.Y)
    if g.spec.norm == "2":
        nrm = torch.linalg.vector_norm(B, dim=1, keepdim=True)
        cap = g.eps * Lam.abs()[:, None, :]
        B = B * torch.clamp(cap / torch.clamp(nrm, min=torch.finfo(B.dtype).tiny), max=1.0)
    elif not g.box:
        cap = g.eps * Lam.abs()[:, None, :]
        B = torch.maximum(torch.minimum(B, cap), -cap)
    else:  # B_j ∈ Λ_j [L_j, U_j] with L = −A⁺, U = B⁺
        a = -Lam[:, None, :] * g.Apos[:, :, None]
        b = Lam[:, None, :] * g.Bpos[:, :, None]
        B = torch.maximum(torch.minimum(B, torch.maximum(a, b)), torch.minimum(a, b))
    return Lam, B


def _mu_box(g: _Geometry, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds (lo, hi) (2P, df, K) of R_b ∈ Σ_j μ_bj s_bj Δ_j for the ℓ∞ ball (with or without a box)."""
    if not g.box:
        r = g.eps * mu.sum(0)[:, None, :]
        return -r, r
    dp, dq = g.box_pair_T(mu)  # Aᵀμ⁺ + Bᵀμ⁻ and Bᵀμ⁺ + Aᵀμ⁻
    return -dp, dq


def _block_residuals2(g: _Geometry, A: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """‖a_b − G_bᵀμ_b − EᵀR_b‖₂² with the best R_b for μ: (2P, K) (differentiable everywhere in μ)."""
    r = A - operators.cone_adjoint(g.X, g.D2, mu)
    rf = r[:, : g.df]
    if g.spec.norm == "2":
        rad = g.eps * mu.sum(0)
        nf = torch.sqrt((rf * rf).sum(1) + torch.finfo(rf.dtype).tiny)
        excess2 = torch.clamp(nf - rad, min=0.0) ** 2
    else:
        lo, hi = _mu_box(g, mu)
        excess2 = ((rf - torch.minimum(torch.maximum(rf, lo), hi)) ** 2).sum(1)
    rest = (r[:, g.df:] ** 2).sum(1)
    return excess2 + rest


def _block_residuals(g: _Geometry, A: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(_block_residuals2(g, A, mu))


def _refine_mu(g: _Geometry, A: torch.Tensor, mu: torch.Tensor, steps: int) -> torch.Tensor:
    """A few projected-gradient steps (with backtracking) on Σ_b (residual_b(μ)² − (0.999α)²)_+ over
    μ ≥ 0 on the mask: tightens the cone multipliers for fixed (Λ, B). Any μ gives a valid bound."""
    if steps <= 0:
        return mu
    target = (0.999 * g.alpha) ** 2

    def f(m: torch.Tensor) -> torch.Tensor:
        res2 = _block_residuals2(g, A, m) * g.active
        return torch.clamp(res2 - target, min=0.0).sum()

    step = 1.0 / max(float(torch.sum(g.X * g.X)) / max(g.n, 1) * g.n, 1e-300)  # ≈ 1/‖G‖², grown below
    with torch.enable_grad():
        for _ in range(steps):
            m = mu.detach().requires_grad_(True)
            val = f(m)
            if float(val.detach()) == 0.0:
                break
            (grad,) = torch.autograd.grad(val, m)
            grad = grad * g.mask
            accepted = False
            for _ls in range(30):
                cand = torch.clamp(mu - step * grad, min=0.0) * g.mask
                with torch.no_grad():
                    fc = f(cand)
                if float(fc) <= float(val.detach()) - 0.5 * float(torch.sum(grad * (mu - cand))):
                    accepted = True
                    break
                step *= 0.5
            if not accepted:
                break
            mu = cand.detach()
            step *= 2.0
    return mu


def robust_dual_bound(g_or_problem, Lam: torch.Tensor, B: torch.Tensor, mu: torch.Tensor,
                      refine_steps: int = 0, **spec) -> torch.Tensor:
    """Proven lower bound (K,) on the optimum of the robust program from dual candidates:
    Λ (n, K), B (n, d', K), μ (n, 2P, K) (see the module docstring). The candidates are clamped into the
    dual domain, the best R for μ is taken, and (Λ, B) are scaled by min(1, α / max_b residual_b)."""
    g = g_or_problem if isinstance(g_or_problem, _Geometry) else _Geometry(
        g_or_problem, _make_spec(g_or_problem, **spec))
    Lam, B = _project_loss_dual(g, Lam, B)
    mu = torch.clamp(mu, min=0.0) * g.mask
    A = g.local_adjoint(Lam, B)
    mu = _refine_mu(g, A, mu, refine_steps)
    res = _block_residuals(g, A, mu)
    worst = torch.where(g.active > 0, res, torch.zeros_like(res)).amax(0)  # (K,)
    s = torch.clamp(g.alpha / torch.clamp(worst, min=torch.finfo(worst.dtype).tiny), max=1.0)
    return -_conjugate(g, Lam * s, B * s[None, None, :])


def _grad_candidate(g: _Geometry, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Λ, B) = gradient of the data term at U w.r.t. (ŷ, Z): a dual candidate."""
    yhat, Z = g.local(U)
    n = g.n
    if g.loss == "squared":
        r = yhat - g.Y
        dev = g.worst_dev(Z, None)
        c = (r.abs() + dev) / n
        Lam = c * torch.sign(r)
        if g.spec.norm == "2":
            nz = torch.linalg.vector_norm(Z, dim=1, keepdim=True)
            B = c[:, None, :] * g.eps * Z / torch.clamp(nz, min=torch.finfo(Z.dtype).tiny)
        else:
            B = c[:, None, :] * g.eps * torch.sign(Z)
        return Lam, B
    m = -g.Y * yhat + g.worst_dev(Z, g.Y)
    h = losses.grad(g.loss, m, -torch.ones_like(m))  # H'(m)/n ≥ 0
    Lam = -g.Y * h
    if g.spec.norm == "2":
        nz = torch.linalg.vector_norm(Z, dim=1, keepdim=True)
        B = h[:, None, :] * g.eps * Z / torch.clamp(nz, min=torch.finfo(Z.dtype).tiny)
    elif not g.box:
        B = h[:, None, :] * g.eps * torch.sign(Z)
    else:  # ∂N^{y}(Z) = WA on positive coordinates, −WB on negative ones
        B = h[:, None, :] * torch.where(Z > 0, g.WA, torch.where(Z < 0, -g.WB, torch.zeros_like(g.WA)))
    return Lam, B


# ----------------------------------------------------------------------------------------------
# exact feasibility
# ----------------------------------------------------------------------------------------------


def _max_margin(g: _Geometry, C: torch.Tensor, iters: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Improve directions C (2P, d, K) towards max_{‖c‖₂=1} margin_b(c) by Adam ascent on a soft-min of
    the per-sample margins (batched over all blocks); returns the best (C, true margins) met."""
    best_C, best_m = C, g.margins(C)
    scale = float(torch.clamp(best_m.abs().max(), min=1e-12)) if bool(torch.isfinite(best_m).all()) else 1.0
    Cv = C.clone().requires_grad_(True)
    opt = torch.optim.Adam([Cv], lr=0.05)
    big = torch.finfo(C.dtype).max / 4
    with torch.enable_grad():
        for i in range(iters):
            Cn = Cv / torch.linalg.vector_norm(Cv, dim=1, keepdim=True).clamp(min=1e-300)
            M = g.S2[:, :, None] * operators.xu(g.X, Cn) - g.block_dev(Cn)
            temp = scale * 0.05 * (0.02 ** (i / max(iters - 1, 1)))
            Mm = torch.where(g.mask > 0, M, torch.full_like(M, big))
            soft = -temp * torch.logsumexp(-(Mm - Mm.detach().amin(0, keepdim=True)) / temp, dim=0) \
                + Mm.detach().amin(0)
            opt.zero_grad()
            (-soft.sum()).backward()
            opt.step()
            with torch.no_grad():
                Cn = Cv / torch.linalg.vector_norm(Cv, dim=1, keepdim=True).clamp(min=1e-300)
                m = g.margins(Cn)
                better = m > best_m
                best_m = torch.where(better, m, best_m)
                best_C = torch.where(better[:, None, :], Cn, best_C)
    return best_C.detach().contiguous(), best_m.detach()


def _directions(g: _Geometry, improve_iters: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Strictly feasible directions of each block's cone (unit norm), (2P, d, K), and their margins (2P, K)
    (≤ 0 where none was found: the cone then has an empty interior, or nearly). Candidates: the gate of
    the block's pattern, the intercept direction, and the gate improved by a max-margin ascent."""
    H = g.pb.H.T  # (P, d)
    C = torch.cat([H, H], 0)[:, :, None].expand(-1, -1, g.K)
    C = (C / torch.clamp(torch.linalg.vector_norm(C, dim=1, keepdim=True), min=1e-300)).contiguous()
    m = g.margins(C)
    if g.spec.intercept:
        C2 = torch.zeros_like(C)
        C2[:, -1] = 1.0
        m2 = g.margins(C2)
        use2 = m2 > m
        C = torch.where(use2[:, None, :], C2, C)
        m = torch.where(use2, m2, m)
    if improve_iters > 0:
        C3, m3 = _max_margin(g, C, improve_iters)
        use3 = m3 > m
        C = torch.where(use3[:, None, :], C3, C)
        m = torch.where(use3, m3, m)
    return C.contiguous(), m


def _repair(g: _Geometry, U: torch.Tensor, dirs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """The nearest-along-a-direction feasible point: u_b + t c_b with the least t ≥ 0 that makes the block
    feasible (margins are superadditive, so t = −margin(u_b)/margin(c_b) suffices); blocks with no strictly
    feasible direction are set to zero. Returns (U, number of blocks zeroed)."""
    C, mc = dirs
    U = U * g.active[:, None, :]
    m = g.margins(U)
    bad = m < 0
    if not bool(bad.any()):
        return U, 0
    ok = mc > 0
    t = torch.where(bad & ok, -m / torch.where(ok, mc, torch.ones_like(mc)), torch.zeros_like(m))
    U = U + (t * (1.0 + 1e-9))[:, None, :] * C
    for _ in range(3):  # rounding: push a little further where the margin is still (tinily) negative
        m2 = g.margins(U)
        still = (m2 < 0) & ok
        if not bool(still.any()):
            break
        t2 = torch.where(still, -m2 / torch.where(ok, mc, torch.ones_like(mc)), torch.zeros_like(m2))
        U = U + (t2 * 2.0 + still * 1e-12 * torch.linalg.vector_norm(U, dim=1))[:, None, :] * C
    zero = (bad & ~ok) | (g.margins(U) < 0)  # never return an infeasible block
    U = torch.where(zero[:, None, :], torch.zeros_like(U), U)
    return U, int(zero.sum())


# ----------------------------------------------------------------------------------------------
# the lifted program and its PDHG operator
# ----------------------------------------------------------------------------------------------


class _Lifted:
    """min g(x) s.t. Kx + c ∈ cone, with x and the constraints as dicts of tensors (see module doc).

    ℓ∞: x = (U, Pp, Pq, Ap, Aq, m);  constraints
        c1: Pp − EU ≥ 0,  c2: Pq + EU ≥ 0,  c3: mask·(S ⊙ XU − N(Pp, Pq)) ≥ 0,
        c4: Ap − Z ≥ 0,   c5: Aq + Z ≥ 0,   c6: m + y ŷ − N^y(Ap, Aq) ≥ 0
        (squared: c6: m − (ŷ − y) − ε1ᵀ(Ap + Aq) ≥ 0, c7: m + (ŷ − y) − ε1ᵀ(Ap + Aq) ≥ 0).
    ℓ2:  x = (U, r, t, m);  constraints c1: (εEU_b, r_b) ∈ SOC, c3: mask·(S ⊙ XU − r) ≥ 0,
        c4: (εZ_j, t_j) ∈ SOC, c6: m + y ŷ − t ≥ 0 (squared: c6, c7 as above with t).
    g(x) = α Σ‖U_b‖₂ + (1/n) Σ H(m_j) (hinge/logistic, H(m) = ℓ(m, −1)) or (1/2n) Σ (m_j)_+² (squared),
    + indicators of Pp, Pq, Ap, Aq ≥ 0.
    """

    def __init__(self, g: _Geometry, gamma: float = 1.0) -> None:
        self.g = g
        self.sq = g.loss == "squared"
        self.l2 = g.spec.norm == "2"
        self.gam = float(gamma)  # scale of the lifting rows (c1, c2, c4, c5): a preconditioning choice
        self._preconditioners()

    # --- K and Kᵀ ---------------------------------------------------------------------------------
    def K(self, x: dict) -> dict:
        g = self.g
        U = x["U"]
        EU = U[:, : g.df]
        yhat, Z = g.local(U)
        XU = operators.xu(g.X, U)
        out = {}
        gm = self.gam
        if self.l2:
            out["c1w"] = (gm * g.eps) * EU
            out["c1s"] = gm * x["r"]
            out["c3"] = g.mask * (g.S2[:, :, None] * XU - x["r"][None])
            out["c4w"] = (gm * g.eps) * Z
            out["c4s"] = gm * x["t"]
            dev = x["t"]
        else:
            out["c1"] = gm * (x["Pp"] - EU)
            out["c2"] = gm * (x["Pq"] + EU)
            out["c3"] = g.mask * (g.S2[:, :, None] * XU - self._dev3(x["Pp"], x["Pq"]))
            out["c4"] = gm * (x["Ap"] - Z)
            out["c5"] = gm * (x["Aq"] + Z)
            dev = self._dev6(x["Ap"], x["Aq"])
        if self.sq:
            out["c6"] = x["m"] - yhat - dev
            out["c7"] = x["m"] + yhat - dev
        else:
            out["c6"] = x["m"] + g.Y * yhat - dev
        return out

    def KT(self, y: dict) -> dict:
        g = self.g
        out = {}
        lam = (y["c7"] - y["c6"]) if self.sq else g.Y * y["c6"]
        y3 = g.mask * y["c3"]
        gm = self.gam
        if self.l2:
            Bz = (gm * g.eps) * y["c4w"]
        else:
            Bz = gm * (y["c5"] - y["c4"])
        U = g.local_adjoint(lam, Bz) + operators.cone_adjoint(g.X, g.D2, y3)
        if self.l2:
            U[:, : g.df] += (gm * g.eps) * y["c1w"]
            out["r"] = gm * y["c1s"] - y3.sum(0)
            out["t"] = gm * y["c4s"] - (y["c6"] + y["c7"] if self.sq else y["c6"])
        else:
            U[:, : g.df] += gm * (y["c2"] - y["c1"])
            dp, dq = self._dev3T(y3)
            out["Pp"] = gm * y["c1"] - dp
            out["Pq"] = gm * y["c2"] - dq
            w = (y["c6"] + y["c7"]) if self.sq else y["c6"]
            ap, aq = self._dev6T(w)
            out["Ap"] = gm * y["c4"] - ap
            out["Aq"] = gm * y["c5"] - aq
        out["U"] = U
        out["m"] = (y["c6"] + y["c7"]) if self.sq else y["c6"].clone()
        return out

    def const(self) -> dict:
        """The constant c of Kx + c (non-zero only for the squared loss: ∓y)."""
        if self.sq:
            return {"c6": self.g.Y, "c7": -self.g.Y}
        return {}

    # the deviation terms of the lifted ℓ∞ program
    def _dev3(self, Pp: torch.Tensor, Pq: torch.Tensor) -> torch.Tensor:
        g = self.g
        if not g.box:
            return g.eps * (Pp + Pq).sum(1)[None]
        return g.box_pair(Pp, Pq)

    def _dev3T(self, y3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.g
        if not g.box:
            s = g.eps * y3.sum(0)[:, None, :].expand(-1, g.df, -1)
            return s, s
        return g.box_pair_T(y3)

    def _dev6(self, Ap: torch.Tensor, Aq: torch.Tensor) -> torch.Tensor:
        g = self.g
        if not g.box:
            return g.eps * (Ap + Aq).sum(1)
        return (g.WA * Ap + g.WB * Aq).sum(1)

    def _dev6T(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.g
        if not g.box:
            s = g.eps * w[:, None, :].expand(-1, g.df, -1)
            return s, s
        return g.WA * w[:, None, :], g.WB * w[:, None, :]

    # --- prox and projections ---------------------------------------------------------------------
    def prox_g(self, x: dict, tau: dict) -> dict:
        g = self.g
        out = {}
        U = x["U"]
        nrm = operators.group_norms(U)
        thr = g.alpha * tau["U"][:, 0, :]
        shrink = torch.clamp(1.0 - thr / torch.clamp(nrm, min=torch.finfo(U.dtype).tiny), min=0.0) * g.active
        out["U"] = U * shrink[:, None, :]
        for k in ("Pp", "Pq", "Ap", "Aq"):
            if k in x:
                out[k] = torch.clamp(x[k], min=0.0)
        for k in ("r", "t"):
            if k in x:
                out[k] = x[k]
        tm = tau["m"] / g.n
        if self.sq:
            m = x["m"]
            out["m"] = torch.where(m > 0, m / (1.0 + tm), m)
        else:
            out["m"] = losses.prox(g.loss, x["m"], -torch.ones_like(x["m"]), tm)
        return out

    @staticmethod
    def _soc(w: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projection onto {(w, s): s ≥ ‖w‖₂}, w (·, m, K) and s (·, K)."""
        nw = torch.linalg.vector_norm(w, dim=1)
        inside = nw <= s
        below = nw <= -s
        a = 0.5 * (nw + s)
        scale = torch.where(inside | below, torch.zeros_like(nw), a / torch.clamp(nw, min=torch.finfo(w.dtype).tiny))
        w_new = torch.where(inside[:, None, :], w, w * scale[:, None, :])
        s_new = torch.where(inside, s, torch.where(below, torch.zeros_like(s), a))
        return w_new, s_new

    def proj_dual(self, y: dict) -> dict:
        out = {}
        for k, v in y.items():
            if k in ("c1w", "c1s", "c4w", "c4s"):
                continue
            out[k] = torch.clamp(v, min=0.0)
        if self.l2:
            out["c1w"], out["c1s"] = self._soc(y["c1w"], y["c1s"])
            out["c4w"], out["c4s"] = self._soc(y["c4w"], y["c4s"])
        out["c3"] = out["c3"] * self.g.mask
        return out

    # --- diagonal preconditioners (Pock & Chambolle 2011, α = 1) -----------------------------------
    def _preconditioners(self) -> None:
        g = self.g
        X, D2, mask = g.X, g.D2, g.mask
        aX = X.abs()
        rowX = aX.sum(1)  # (n,)
        nact = D2.sum(1)  # (n,) active blocks per sample
        ncopy = 2.0 if self.sq else 1.0
        tiny = torch.finfo(X.dtype).tiny
        # column sums for U (2P, d, K)
        c3col = torch.einsum("nd,nbk->bdk", aX, mask)  # Σ_{j∈mask} |x_jp|
        c6col = ncopy * torch.einsum("nd,nb->bd", aX, D2)[:, :, None]  # Σ_j d_jb |x_jp|
        colU = c3col + c6col
        dsum = D2.sum(0)[:, None, None]  # Σ_j d_jb
        gm = self.gam
        if self.l2:
            colU[:, : g.df] += gm * g.eps * (1.0 + dsum)
        else:
            colU[:, : g.df] += gm * (2.0 + 2.0 * dsum)
        tau = {"U": (1.0 / torch.clamp(colU.amax(1), min=tiny))[:, None, :]}  # one step per block (group prox)
        sig = {}
        if self.l2:
            tau["r"] = 1.0 / (gm + mask.sum(0))
            tau["t"] = torch.full((g.n, g.K), 1.0 / (gm + ncopy), dtype=X.dtype, device=X.device)
            sig["c1w"] = torch.full((2 * g.P, 1, g.K), 1.0 / (gm * max(g.eps, 1.0)), dtype=X.dtype, device=X.device)
            sig["c1s"] = sig["c1w"][:, 0]
            rz = gm * torch.clamp(g.eps * nact, min=1.0)[:, None]  # (n, 1)
            sig["c4w"] = (1.0 / rz)[:, :, None].expand(-1, 1, g.K)
            sig["c4s"] = (1.0 / rz).expand(-1, g.K)
            sig["c3"] = (1.0 / (rowX + 1.0))[:, None, None].expand(-1, 2 * g.P, g.K)
            dev_row = 1.0
        else:
            if g.box:
                wsum = (g.Apos + g.Bpos).sum(1)  # (n,)
                tau["Pp"] = 1.0 / (gm + torch.einsum("np,nbk->bpk", g.Apos, mask * g.Splus)
                                   + torch.einsum("np,nbk->bpk", g.Bpos, mask * (1 - g.Splus)))
                tau["Pq"] = 1.0 / (gm + torch.einsum("np,nbk->bpk", g.Bpos, mask * g.Splus)
                                   + torch.einsum("np,nbk->bpk", g.Apos, mask * (1 - g.Splus)))
                tau["Ap"] = 1.0 / (gm + g.WA)
                tau["Aq"] = 1.0 / (gm + g.WB)
                dev_row = wsum[:, None]
            else:
                wsum = torch.full((g.n,), 2.0 * g.eps * g.df, dtype=X.dtype, device=X.device)
                tp = (1.0 / (gm + g.eps * mask.sum(0)))[:, None, :].expand(-1, g.df, -1)
                tau["Pp"], tau["Pq"] = tp, tp
                ta = torch.full((g.n, g.df, g.K), 1.0 / (gm + ncopy * g.eps), dtype=X.dtype, device=X.device)
                tau["Ap"], tau["Aq"] = ta, ta
                dev_row = wsum[:, None]
            sig["c1"] = torch.full((2 * g.P, g.df, g.K), 0.5 / gm, dtype=X.dtype, device=X.device)
            sig["c2"] = sig["c1"]
            sig["c3"] = (1.0 / (rowX + wsum))[:, None, None].expand(-1, 2 * g.P, g.K)
            s4 = (1.0 / (gm * (1.0 + nact)))[:, None, None].expand(-1, g.df, g.K)
            sig["c4"], sig["c5"] = s4, s4
        tau["m"] = torch.full((g.n, g.K), 1.0 / ncopy, dtype=X.dtype, device=X.device)
        row6 = 1.0 + torch.einsum("nb,n->n", D2, rowX)[:, None] + dev_row  # (n, 1)
        sig["c6"] = (1.0 / row6).expand(-1, g.K)
        if self.sq:
            sig["c7"] = sig["c6"]
        self.tau0 = {k: v.contiguous() for k, v in tau.items()}
        self.sig0 = {k: v.contiguous() for k, v in sig.items()}

    def zeros_x(self) -> dict:
        g = self.g
        z = g.X.new_zeros
        x = {"U": z((2 * g.P, g.d, g.K)), "m": z((g.n, g.K))}
        if self.l2:
            x["r"] = z((2 * g.P, g.K))
            x["t"] = z((g.n, g.K))
        else:
            x["Pp"] = z((2 * g.P, g.df, g.K))
            x["Pq"] = z((2 * g.P, g.df, g.K))
            x["Ap"] = z((g.n, g.df, g.K))
            x["Aq"] = z((g.n, g.df, g.K))
        return x

    def x_from_U(self, U: torch.Tensor) -> dict:
        """A consistent primal point for blocks U (auxiliary variables at their optimal values)."""
        g = self.g
        yhat, Z = g.local(U)
        EU = U[:, : g.df]
        x = {"U": U}
        if self.l2:
            x["r"] = g.eps * torch.linalg.vector_norm(EU, dim=1)
            x["t"] = g.worst_dev(Z, None)
            dev = x["t"]
        else:
            x["Pp"], x["Pq"] = EU.clamp(min=0.0), (-EU).clamp(min=0.0)
            x["Ap"], x["Aq"] = Z.clamp(min=0.0), (-Z).clamp(min=0.0)
            dev = self._dev6(x["Ap"], x["Aq"])
        x["m"] = ((yhat - g.Y).abs() + dev) if self.sq else (-g.Y * yhat + dev)
        return x

    def dual_candidate(self, y: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Λ, B, μ) of the certificate from the PDHG multipliers."""
        g = self.g
        Lam = (y["c6"] - y["c7"]) if self.sq else -g.Y * y["c6"]
        B = (-self.gam * g.eps * y["c4w"]) if self.l2 else self.gam * (y["c4"] - y["c5"])
        return Lam, B, g.mask * y["c3"]


def _axpby(a: float, x: dict, b: float, y: dict) -> dict:
    return {k: a * x[k] + b * y[k] for k in x}


def _wnorm2(x: dict, w: dict) -> float:
    """Σ x² / w (the PDHG metric without the cross term)."""
    return float(sum(torch.sum(x[k] * x[k] / w[k]) for k in x))


# ----------------------------------------------------------------------------------------------
# the solver
# ----------------------------------------------------------------------------------------------


def _penalty_init(g: _Geometry, dirs, iters: int, lr: float, rho: float | None = None) -> torch.Tensor:
    """A quick feasible starting point: Adam (cosine-decayed step) on the exact-penalty form
    objective(U) + ρ Σ_{b,j ∈ mask} (−margin_bj(U))_+ (ρ = 10/n by default), then the repair."""
    rho = 10.0 / g.n if rho is None else float(rho)
    U = torch.zeros((2 * g.P, g.d, g.K), dtype=g.X.dtype, device=g.X.device, requires_grad=True)
    opt = torch.optim.Adam([U], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(iters, 1))
    act = g.active[:, None, :]
    with torch.enable_grad():
        for _ in range(iters):
            Ua = U * act
            M = g.S2[:, :, None] * operators.xu(g.X, Ua) - g.block_dev(Ua)
            f = g.objective(Ua).sum() + rho * (torch.clamp(-M, min=0.0) * g.mask).sum()
            opt.zero_grad(set_to_none=True)
            f.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        Ur, _ = _repair(g, U.detach() * act, dirs)
    return Ur


def robust_solve(
    problem: ConvexProblem,
    eps: float,
    norm: object = "inf",
    tol: float = 1e-6,
    max_iter: int = 20000,
    box: tuple[float, float] | None = None,
    intercept: bool | None = None,
    constraints: str = "all",
    check_every: int = 50,
    refine_steps: int = 10,
    max_time: float | None = None,
    warm_start: SolverResult | None = None,
    init: str = "zeros",
    init_iters: int = 1000,
    init_lr: float = 5e-3,
    callback=None,
    restart: bool = True,
    omega0: float | None = None,
    drop_empty: bool = True,
    direction_iters: int = 300,
    gamma: float = 1.0,
) -> SolverResult:
    """Solve the robust program (MATH.md §9; module docstring) by restarted reflected Halpern PDHG.

    Parameters
    ----------
    problem : a ConvexProblem (``kind`` is ignored: the robust program is always the cone-constrained
        ReLU program; X with its ones column last when ``intercept``). Binary or one-vs-rest targets.
    eps, norm : radius ε > 0 and ball, "inf" or 2.
    tol : stop when the certificate's relative gap ≤ tol.
    max_iter, max_time : iteration and wall-clock limits (the best certified point is returned). The
        clock starts before the direction search and the ``init`` phase, which are not interrupted: the
        time is checked at the certificates only, so at least ``check_every`` iterations run after them.
    box : optional (lo, hi) for ℓ∞ with the hinge / logistic losses: the perturbation set is ball ∩ box
        (e.g. (0, 1) for pixels), which is less conservative when many coordinates sit on the box.
    intercept : the last column of X is the ones column (None: detected, True iff it is all ones).
    constraints : "all" (§9, exact worst case) or "opposing" (relaxation, see the module docstring).
    check_every : iterations between certificates.
    refine_steps : projected-gradient steps tightening the cone multipliers of each certificate.
    warm_start : a previous result on the same patterns (its blocks start the iteration).
    init : "zeros", or "penalty": start from ``init_iters`` Adam steps (step ``init_lr``) on an exact
        penalty form of the program, repaired to feasibility — a good primal point fast on large
        problems; PDHG then improves it and builds the dual bound.
    callback : called with each history record.
    restart, omega0 : adaptive restarts (recommended) and the initial primal weight (default 1/√n).
    drop_empty : fix at zero the blocks for which no strictly feasible direction was found (their
        robust cone has an empty interior, in practice {0}); the certificate is then for the program
        over the remaining blocks (``info["dropped_blocks"]`` counts them).
    direction_iters : Adam steps of the search for strictly feasible directions (used by the repair).

    Returns
    -------
    SolverResult with V, W (P, d, K) satisfying the robust cone constraints exactly (checked in the
    problem's dtype after the repair), ``certificate`` (primal = robust objective at the best feasible
    point met, dual = the best proven lower bound met — any dual feasible point bounds the optimum)
    and ``info``: eps, norm, box, constraints, restarts, the primal weight, ``zeroed_blocks`` (blocks
    the repair set to zero at the returned point), ``dropped_blocks``, ``robust_gates`` (patterns
    whose gate, or a found direction, lies strictly inside the robust cone of both blocks) and
    ``min_margin`` (smallest robust cone margin of the returned blocks, ≥ 0).
    """
    spec = _make_spec(problem, eps, norm, box, intercept, constraints)
    g = _Geometry(problem, spec)
    t0 = time.perf_counter()
    dirs = _directions(g, direction_iters)
    n_dropped = 0
    if drop_empty:
        keep = dirs[1] > 0
        n_dropped = int((~keep).sum())
        g.set_active(keep)
    lp = _Lifted(g, gamma)
    tau0, sig0 = lp.tau0, lp.sig0
    eta = 0.99
    omega = float(omega0) if omega0 is not None else 1.0 / math.sqrt(problem.n)
    cvec = lp.const()

    def steps(om: float) -> tuple[dict, dict]:
        return ({k: eta * v / om for k, v in tau0.items()}, {k: eta * v * om for k, v in sig0.items()})

    tau, sig = steps(omega)

    def T(x: dict, y: dict) -> tuple[dict, dict]:
        kty = lp.KT(y)
        xn = lp.prox_g({k: torch.addcmul(x[k], tau[k], kty[k]) for k in x}, tau)
        kx = lp.K({k: 2.0 * xn[k] - x[k] for k in x})
        for k, c in cvec.items():
            kx[k] = kx[k] + c
        yn = lp.proj_dual({k: torch.addcmul(y[k], sig[k], kx[k], value=-1.0) for k in y})
        return xn, yn

    history: list[dict[str, float]] = []
    best_primal: tuple[float, torch.Tensor, int] | None = None
    best_dual = -math.inf

    def certify(xc: dict, yc: dict, it: int, r: float) -> Certificate:
        nonlocal best_primal, best_dual
        primal, dual, U, nz = _certify(g, lp, xc, yc, dirs, refine_steps)
        if best_primal is None or primal < best_primal[0]:
            best_primal = (primal, U, nz)
        best_dual = max(best_dual, dual)
        cert = Certificate(primal=best_primal[0], dual=best_dual)
        rec = {"iteration": it, "seconds": time.perf_counter() - t0, "omega": omega,
               "fixed_point_residual": r, "primal_now": primal, "dual_now": dual, **cert.as_dict()}
        history.append(rec)
        if callback is not None:
            callback(rec)
        return cert

    if warm_start is not None:
        U0 = _stack(warm_start.V, warm_start.W).to(problem.X) * g.active[:, None, :]
    elif init == "penalty":
        U0 = _penalty_init(g, dirs, init_iters, init_lr)
    elif init == "zeros":
        U0 = None
    else:
        raise ValueError(f"init must be 'zeros' or 'penalty', got {init!r}")
    x = lp.zeros_x() if U0 is None else lp.x_from_U(U0)
    y = {k: torch.zeros_like(v) for k, v in lp.K(x).items()}
    if U0 is not None:
        certify(x, y, 0, math.nan)
    x0, y0 = x, y
    k_inner = 0
    r = r_start = math.nan
    r_prev = math.inf
    n_restarts = 0
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        xT, yT = T(x, y)
        check_restart = restart and (k_inner + 1) % 16 == 0
        if check_restart or it % check_every == 0 or k_inner == 0:
            r = math.sqrt(_wnorm2({k: x[k] - xT[k] for k in x}, tau) + _wnorm2({k: y[k] - yT[k] for k in y}, sig))
            if k_inner == 0:
                r_start = r
        # reflected Halpern step towards the anchor: z ← w(2T(z) − z) + (1 − w) z₀, w = (k+1)/(k+2)
        w = (k_inner + 1.0) / (k_inner + 2.0)
        for z, zT, z0 in ((x, xT, x0), (y, yT, y0)):
            for k in z:
                z[k] = torch.add(zT[k], z[k], alpha=-0.5).mul_(2.0 * w).add_(z0[k], alpha=1.0 - w)
        k_inner += 1

        if check_restart:
            if r <= 0.2 * r_start or (r <= 0.8 * r_start and r > r_prev) or k_inner >= max(256, 0.36 * it):
                # restart at T(z); update the primal weight from the anchor's move (PDLP)
                mx = math.sqrt(_wnorm2({k: xT[k] - x0[k] for k in x}, tau0))
                my = math.sqrt(_wnorm2({k: yT[k] - y0[k] for k in y}, sig0))
                if mx > 1e-12 and my > 1e-12:
                    omega = math.exp(0.5 * math.log(my / mx) + 0.5 * math.log(omega))
                    tau, sig = steps(omega)
                x0, y0 = xT, yT
                x = {k: v.clone() for k, v in xT.items()}
                y = {k: v.clone() for k, v in yT.items()}
                k_inner = 0
                n_restarts += 1
                r_prev = math.inf
            else:
                r_prev = r

        if it % check_every == 0 or it == max_iter:
            cert = certify(xT, yT, it, r)
            if cert.relative_gap <= tol:
                converged = True
                break
            if max_time is not None and time.perf_counter() - t0 > max_time:
                break
    if best_primal is None:  # the loop never checked
        certify(x, y, it, r)
    assert best_primal is not None
    _, U, nz = best_primal
    cert = Certificate(primal=best_primal[0], dual=best_dual)
    P = problem.P
    margins = g.margins(U)
    fin = torch.isfinite(margins)
    return SolverResult(
        V=U[:P].contiguous(), W=U[P:].contiguous(), certificate=cert, n_iter=it, converged=converged,
        solver="robust-pdhg", history=history,
        info={
            "eps": spec.eps, "norm": spec.norm, "box": spec.box, "constraints": spec.constraints,
            "intercept": spec.intercept, "restarts": n_restarts, "omega": omega, "zeroed_blocks": nz,
            "dropped_blocks": n_dropped,
            "robust_gates": int((dirs[1][:P] > 0).all(1).sum()),
            "min_margin": float(margins[fin].min()) if bool(fin.any()) else math.inf,
            "seconds": time.perf_counter() - t0,
        },
    )


def _certify(g: _Geometry, lp: _Lifted, x: dict, y: dict, dirs, refine_steps: int):
    """(primal, dual, U, zeroed): primal objective at the repaired (exactly feasible) blocks, dual the best
    of the multiplier and gradient candidates (a proven lower bound)."""
    U, nz = _repair(g, x["U"], dirs)
    primal = g.objective(U)
    Lam, B, mu = lp.dual_candidate(y)
    d1 = robust_dual_bound(g, Lam, B, mu, refine_steps=refine_steps)
    Lg, Bg = _grad_candidate(g, U)
    d2 = robust_dual_bound(g, Lg, Bg, mu, refine_steps=refine_steps)
    dual = torch.maximum(d1, d2)
    return float(primal.sum()), float(dual.sum()), U, nz


# ----------------------------------------------------------------------------------------------
# the CVXPY reference
# ----------------------------------------------------------------------------------------------


def robust_cvxpy(problem: ConvexProblem, eps: float, norm: object = "inf", box=None,
                 intercept: bool | None = None, constraints: str = "all", solver: str = "CLARABEL",
                 verbose: bool = False, **solver_opts) -> SolverResult:
    """The robust program with CVXPY (one output column at a time), for checking :func:`robust_solve`
    on small problems. ``certificate.dual`` is the conic solver's optimal value, ``certificate.primal``
    the objective re-evaluated at its solution after the repair to exact feasibility."""
    import cvxpy as cp

    spec = _make_spec(problem, eps, norm, box, intercept, constraints)
    g = _Geometry(problem, spec)
    X = problem.X.detach().cpu().double().numpy()
    Yall = problem.Y.detach().cpu().double().numpy()
    DS = g.DS.cpu().double().numpy()
    S2 = g.S2.cpu().double().numpy()
    maskall = g.mask.cpu().double().numpy()
    n, d = X.shape
    df = g.df
    nb = DS.shape[1]
    if g.box:
        Apos = g.Apos.cpu().double().numpy()
        Bpos = g.Bpos.cpu().double().numpy()
        Splus = (S2 > 0).astype(float)
    Us, values = [], []
    t0 = time.perf_counter()
    for k in range(problem.K):
        y = Yall[:, k]
        mask = maskall[:, :, k]
        U = cp.Variable((d, nb))  # column b = block u_b
        Zf = DS @ U.T  # (n, d)
        yhat = cp.sum(cp.multiply(X, Zf), axis=1)
        Z = Zf[:, :df]
        EU = U[:df, :]
        if spec.norm == "2":
            worst = spec.eps * cp.norm(Z, 2, axis=1)
            bdev = spec.eps * cp.norm(EU, 2, axis=0)
            dev_mat = np.ones((n, 1)) @ cp.reshape(bdev, (1, nb), order="C")
        elif not g.box:
            worst = spec.eps * cp.norm(Z, 1, axis=1)
            bdev = spec.eps * cp.norm(EU, 1, axis=0)
            dev_mat = np.ones((n, 1)) @ cp.reshape(bdev, (1, nb), order="C")
        else:
            yp = (y > 0).astype(float)[:, None]
            WA = yp * Apos + (1 - yp) * Bpos
            WB = yp * Bpos + (1 - yp) * Apos
            worst = cp.sum(cp.multiply(WA, cp.pos(Z)) + cp.multiply(WB, cp.neg(Z)), axis=1)
            pos, neg = cp.pos(EU), cp.neg(EU)
            dev_mat = (cp.multiply(Splus, Apos @ pos + Bpos @ neg)
                       + cp.multiply(1 - Splus, Bpos @ pos + Apos @ neg))
        cons = [cp.multiply(mask, cp.multiply(S2, X @ U) - dev_mat) >= 0]
        if problem.loss == "hinge":
            data = cp.sum(cp.pos(1 - cp.multiply(y, yhat) + worst)) / n
        elif problem.loss == "logistic":
            data = cp.sum(cp.logistic(-cp.multiply(y, yhat) + worst)) / n
        else:
            e = cp.Variable(n)
            cons += [e >= cp.abs(yhat - y) + worst]
            data = 0.5 * cp.sum_squares(e) / n
        pen = cp.sum(cp.norm(U, 2, axis=0))
        prob = cp.Problem(cp.Minimize(data + problem.alpha * pen), cons)
        prob.solve(solver=solver, verbose=verbose, **solver_opts)
        if prob.status not in ("optimal", "optimal_inaccurate"):
            raise RuntimeError(f"CVXPY did not solve the robust program: status {prob.status}")
        values.append(prob.value)
        Us.append(np.asarray(U.value).T)
    seconds = time.perf_counter() - t0
    Ut = torch.as_tensor(np.stack(Us, axis=2), dtype=problem.X.dtype, device=problem.X.device)
    Ut, nz = _repair(g, Ut, _directions(g))
    primal = float(g.objective(Ut).sum())
    P = problem.P
    return SolverResult(
        V=Ut[:P].contiguous(), W=Ut[P:].contiguous(), certificate=Certificate(primal=primal, dual=float(sum(values))),
        n_iter=0, converged=True, solver="robust-cvxpy",
        info={"optimal_value": float(sum(values)), "seconds": seconds, "backend": solver, "zeroed_blocks": nz},
    )


def robust_gates(
    X: np.ndarray,
    y: np.ndarray,
    eps: float,
    directions: np.ndarray,
    biases: np.ndarray | None = None,
    roles: np.ndarray | None = None,
    norm: object = "inf",
    box: tuple[float, float] | None = None,
    constraints: str = "opposing",
    rel_margin: float = 1e-6,
) -> tuple[np.ndarray, dict]:
    """Gate vectors that lie strictly inside their robust cone: re-biased copies of given directions.

    The robust cone of a pattern has an empty interior — and its blocks are forced to zero — as soon as
    one constrained training point lies within the perturbation radius of every hyperplane realising
    the pattern. For a direction w the pre-activation of x_j ranges over the interval
    [x_jᵀw − N_j(−w), x_jᵀw + N_j(w)] on the perturbation set (N_j(w) = max_δ δᵀw: ε‖w‖₁, ε‖w‖₂, or the
    box-clipped version); the gate (w, b) keeps its pattern on every constrained point iff the threshold
    −b lies outside all of these intervals. This function moves each threshold to the nearest such point
    (keeping it if it already is one), with a relative margin so that the gate is *strictly* feasible:
    its cone then has an interior, the solver's repair can use the gate, and the pattern is a useful one
    for the robust program.

    Which points constrain a gate: ``constraints="all"`` every training point (then a threshold exists
    between the data only where the projections have a gap wider than the ball, so most gates end up
    on an extreme — all points on or all off); ``"opposing"`` (hinge / logistic) only the points of the
    class the block votes against: a v block (role +1, positive output weight) is constrained by the −1
    points, a w block (role −1) by the +1 points. Every direction has such a threshold (above or below
    the whole opposing class), so no direction is wasted.

    Parameters
    ----------
    X : (n, d) features (without the ones column).  y : (n,) labels ±1.
    eps, norm, box : the perturbation model (as :func:`robust_solve`).
    directions : (m, d) first-layer weights, e.g. the neurons of a trained network.
    biases : (m,) their biases (the thresholds to stay close to); default 0.
    roles : (m,) ±1, the sign of each neuron's output weight (which class it votes for); default: both
        roles for every direction (2m gates). Ignored for ``constraints="all"``.
    rel_margin : strictness of the new thresholds, relative to the spread of the projections.

    Returns
    -------
    H : (d + 1, m') gates with the bias as the last row (for X with the ones column appended).
    info : "roles" (m',), "moved" (m',) bool (threshold changed), "D" (n, m') the patterns to use (see
        :func:`robust_patterns`), "active_fraction" (m',) the fraction of the training points on which
        the pattern is on.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    Wd = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    m = Wd.shape[0]
    b0 = np.zeros(m) if biases is None else np.asarray(biases, dtype=np.float64).reshape(m)
    normp = parse_norm(norm)
    eps = float(eps)
    if constraints not in CONSTRAINTS:
        raise ValueError(f"constraints must be one of {CONSTRAINTS}, got {constraints!r}")
    if constraints == "all":
        rl = np.ones(m)
        Wr, br = Wd, b0
    else:
        if roles is None:
            Wr, br, rl = np.vstack([Wd, Wd]), np.concatenate([b0, b0]), np.concatenate([np.ones(m), -np.ones(m)])
        else:
            rl = np.sign(np.asarray(roles, dtype=np.float64).reshape(m))
            rl[rl == 0] = 1.0
            Wr, br = Wd, b0
    proj = X @ Wr.T  # (n, m')
    if normp == "2":
        up = lo = eps * np.linalg.norm(Wr, axis=1)[None, :]
    elif box is None:
        up = lo = eps * np.abs(Wr).sum(1)[None, :]
    else:
        A = np.clip(np.minimum(eps, X - box[0]), 0, None)  # room downwards
        B = np.clip(np.minimum(eps, box[1] - X), 0, None)  # room upwards
        Wp, Wn = np.maximum(Wr, 0).T, np.maximum(-Wr, 0).T
        up = B @ Wp + A @ Wn  # max δᵀw
        lo = A @ Wp + B @ Wn  # max −δᵀw
    left = proj - lo
    right = proj + up
    spread = np.maximum(right.max(0) - left.min(0), 1e-12)
    pad = rel_margin * spread
    left = left - pad[None, :]
    right = right + pad[None, :]
    if constraints == "opposing":
        cons = (y[:, None] * rl[None, :]) < 0  # the opposing class of each gate
    else:
        cons = np.ones_like(proj, dtype=bool)
    # merged forbidden intervals per gate: sort by left end, running max of right ends
    BIG = np.inf
    Ls = np.where(cons, left, BIG)
    Rs = np.where(cons, right, -BIG)
    order = np.argsort(Ls, axis=0)
    Ls = np.take_along_axis(Ls, order, 0)
    Rs = np.take_along_axis(Rs, order, 0)
    cmR = np.maximum.accumulate(Rs, axis=0)
    # allowed gaps: (−inf, Ls[0]], [cmR[k−1], Ls[k]] where cmR[k−1] < Ls[k], [cmR[-1], inf)
    ga = np.vstack([np.full((1, Ls.shape[1]), -BIG), cmR])  # gap starts
    gb = np.vstack([Ls, np.full((1, Ls.shape[1]), BIG)])  # gap ends
    valid = ga <= gb
    t0 = -br
    dist = np.where(valid, np.maximum(np.maximum(ga - t0[None, :], 0.0), t0[None, :] - gb), np.inf)
    dist = np.where(valid, np.maximum(dist, 0.0), np.inf)
    k = np.argmin(dist, axis=0)
    a_k = ga[k, np.arange(ga.shape[1])]
    b_k = gb[k, np.arange(gb.shape[1])]
    t = np.clip(t0, a_k, b_k)
    moved = t != t0
    H = np.vstack([Wr.T, -t[None, :]])
    D = (proj - t[None, :]) >= 0
    if constraints == "opposing":  # unconstrained (helping) points keep the pattern of the original gate
        D = np.where(cons, D, (proj + br[None, :]) >= 0)
    return H, {"roles": rl, "moved": moved, "active_fraction": D.mean(0), "D": D.astype(np.float64)}


def robust_patterns(
    X: np.ndarray,
    y: np.ndarray,
    eps: float,
    directions: np.ndarray,
    biases: np.ndarray | None = None,
    roles: np.ndarray | None = None,
    norm: object = "inf",
    box: tuple[float, float] | None = None,
    constraints: str = "opposing",
    rel_margin: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Patterns D (n, P) and gates H (d + 1, P) for the robust program, from given neurons (e.g. the first
    layer of a trained network): see :func:`robust_gates`. With ``constraints="opposing"`` a pattern is
    the re-biased gate's on the points its block is constrained by (where it must be robust) and the
    *original* neuron's on the other points (where the program imposes nothing, so the neuron's own
    behaviour is kept and the patterns stay diverse); the re-biased gate is a strictly feasible
    direction of the block's cone either way. Duplicate and empty patterns are dropped (first kept)."""
    H, info = robust_gates(X, y, eps, directions, biases, roles, norm, box, constraints, rel_margin)
    D = info["D"]
    nonempty = D.any(0)
    packed = np.packbits(D.astype(bool), axis=0)
    _, first = np.unique(packed, axis=1, return_index=True)
    keep = np.zeros(D.shape[1], dtype=bool)
    keep[first] = True
    keep &= nonempty
    idx = np.flatnonzero(keep)
    return D[:, idx], H[:, idx]


def blocks_to_network(V: torch.Tensor, W: torch.Tensor, intercept: bool = True, rtol: float = 1e-12):
    """:func:`convexnn.network.network_from_blocks` (blocks below ``rtol`` times the largest norm are
    dropped), with the zero solution as one dead neuron (the robustness tools need a neuron)."""
    from convexnn.network import TwoLayerReLU, network_from_blocks

    net = network_from_blocks(V, W, intercept, rtol)
    if net.width == 0:
        K = V.shape[2]
        w2 = np.zeros(1) if K == 1 else np.zeros((1, K))
        net = TwoLayerReLU(W1=np.zeros((1, net.n_features)), b1=np.zeros(1), w2=w2)
    return net
