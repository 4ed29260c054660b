"""Duality certificates (MATH.md §8) and cone feasibility.

Both programs have the Fenchel dual  max_Λ −L*(Λ)  subject to, for every block,

    (G):  ‖Xᵀ D_i Λ_k‖₂ ≤ α
    (C):  ‖Xᵀ D_i Λ_k − G_iᵀ μ_ik‖₂ ≤ α  and  ‖−Xᵀ D_i Λ_k − G_iᵀ μ'_ik‖₂ ≤ α  for some μ, μ' ≥ 0.

Any Λ in the domain of L* and any μ, μ' ≥ 0 give a lower bound after scaling (Λ, μ, μ') by
s = min(1, α / max_i norm_i): the scaled point is feasible, and the domain of L* is convex and contains 0.
The output columns k are independent programs, so the scaling is per column and the bounds add up.
"""

from __future__ import annotations

import torch

from convexnn.ops import losses, operators


def dual_value_gated(X: torch.Tensor, D: torch.Tensor, Y: torch.Tensor, Lam: torch.Tensor,
                     alpha: float, loss: str) -> torch.Tensor:
    """Lower bound on the optimum of (G) per column (K,) from a dual candidate Λ (n, K)."""
    Lam = losses.project_dual(loss, Lam, Y)
    worst = operators.group_norms(operators.adjoint(X, D, Lam)).amax(0)  # (K,)
    s = torch.clamp(alpha / torch.clamp(worst, min=torch.finfo(X.dtype).tiny), max=1.0)
    return -losses.conjugate(loss, Lam * s, Y)


def dual_value_relu(X: torch.Tensor, D: torch.Tensor, Y: torch.Tensor, Lam: torch.Tensor,
                    Mu_v: torch.Tensor, Mu_w: torch.Tensor, alpha: float, loss: str,
                    refine_steps: int = 0) -> torch.Tensor:
    """Lower bound on the optimum of (C) per column (K,).

    Λ (n, K) is the loss dual; μ_v, μ_w (n, P, K) are candidate multipliers of the cone constraints
    (clamped at 0 here). ``refine_steps`` projected-gradient steps on ½‖a_i − G_iᵀμ_i‖² tighten μ for Λ
    (a non-negative least squares per block, batched over all blocks).
    """
    Lam = losses.project_dual(loss, Lam, Y)
    A = operators.adjoint(X, D, Lam)  # (P, d, K): Xᵀ D_i Λ
    Mu_v = torch.clamp(Mu_v, min=0.0)
    Mu_w = torch.clamp(Mu_w, min=0.0)
    if refine_steps > 0:
        step = 1.0 / torch.linalg.matrix_norm(X, ord=2) ** 2  # ‖G_i‖₂ = ‖X‖₂ since (2D_i − I)² = I
        for _ in range(refine_steps):
            Rv = A - operators.cone_adjoint(X, D, Mu_v)
            Rw = -A - operators.cone_adjoint(X, D, Mu_w)
            Mu_v = torch.clamp(Mu_v + step * operators.cone(X, D, Rv), min=0.0)
            Mu_w = torch.clamp(Mu_w + step * operators.cone(X, D, Rw), min=0.0)
    nv = operators.group_norms(A - operators.cone_adjoint(X, D, Mu_v)).amax(0)
    nw = operators.group_norms(-A - operators.cone_adjoint(X, D, Mu_w)).amax(0)
    worst = torch.maximum(nv, nw)
    s = torch.clamp(alpha / torch.clamp(worst, min=torch.finfo(X.dtype).tiny), max=1.0)
    return -losses.conjugate(loss, Lam * s, Y)


def make_feasible(X: torch.Tensor, D: torch.Tensor, H: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """The nearest point along the gate direction that satisfies the cone constraints exactly.

    For each block, v_ik + t_ik h_i with the least t_ik ≥ 0 such that (2D_i − I) X (v_ik + t_ik h_i) ≥ 0.
    The gate h_i lies in the cone ((2D_i − I) X h_i ≥ 0, with equality only where X h_i = 0), so this
    works whenever the violated rows have (2D_i − I) X h_i > 0; blocks where it cannot are set to zero
    (always feasible). Returns a tensor of V's shape (P, d, K).
    """
    GV = operators.cone(X, D, V)  # (n, P, K)
    Gh = ((2.0 * D - 1.0) * (X @ H))[:, :, None]  # (n, P, 1)
    viol = torch.clamp(-GV, min=0.0)
    pos = Gh > 0
    ratio = torch.where(pos, viol / torch.where(pos, Gh, torch.ones_like(Gh)), torch.zeros_like(viol))
    t = ratio.amax(0)  # (P, K)
    stuck = ((viol > 0) & ~pos).any(0)  # violated where the gate cannot help
    Vf = V + t[:, None, :] * H.T[:, :, None]
    for _ in range(3):
        # v + t h evaluated in floating point can miss by rounding (slack −1e-16 on the row that set t): twice
        # the step that the rounding took back (a no-op for exactly feasible blocks)
        left = torch.clamp(-operators.cone(X, D, Vf), min=0.0) * pos
        if not bool((left > 0).any()):
            break
        extra = 2.0 * torch.where(pos, left / torch.where(pos, Gh, torch.ones_like(Gh)), 0.0).amax(0)
        Vf = Vf + extra[:, None, :] * H.T[:, :, None]
    Vf = torch.where(stuck[:, None, :], torch.zeros_like(Vf), Vf)
    return Vf


def cone_residual_lower_bound(X: torch.Tensor, D: torch.Tensor, H: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """A lower bound on min_{μ ≥ 0} ‖A_ik + G_iᵀ μ‖₂ per block (P, K), for A (P, d, K), without solving it
    (G_i = (2D_i − I) X; with −A it bounds min ‖A_ik − G_iᵀ μ‖₂, the other sign of the dual constraint).

    That minimum is the distance from A_ik to the cone {−G_iᵀμ : μ ≥ 0}, whose polar is the cone G_i u ≥ 0: it
    equals max A_ikᵀu over unit vectors u with G_i u ≥ 0, so every point u of that cone gives A_ikᵀu / ‖u‖
    below it. Two points per block, one product with X each: the gate h_i and A_ik
    made feasible along it (:func:`make_feasible`). When the bound exceeds α the block's dual constraint
    cannot be met at this Λ, whatever μ: the NNLS need not be run to know it.
    """
    Hb = H.T[:, :, None]  # (P, d, 1), in the cone by construction of D
    tiny = torch.finfo(X.dtype).tiny
    by_gate = (A * Hb).sum(1) / torch.clamp(torch.linalg.vector_norm(Hb, dim=1), min=tiny)
    F = make_feasible(X, D, H, A)
    by_repair = (A * F).sum(1) / torch.clamp(torch.linalg.vector_norm(F, dim=1), min=tiny)
    return torch.maximum(by_gate, by_repair)
