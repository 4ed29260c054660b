"""Non-negative least squares for the cone multipliers of (C): min_{μ ≥ 0} ‖c_b − G_bᵀμ‖₂ per block, G_b = (2D_i − I) X
(MATH.md §8). A block's dual constraint holds when that residual is at most α; :func:`_nnls` decides it exactly
(Lawson–Hanson) or by batched accelerated projected gradient in torch."""

from __future__ import annotations

import math

import numpy as np
import torch

from convexnn.solvers.newton.column import _Column


def _nnls(col: _Column, blocks: list[int], C: torch.Tensor, target: torch.Tensor | None = None,
          method: str = "auto", max_iter: int = 3000, mu0: torch.Tensor | None = None, Lx: float | None = None,
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """min_{μ ≥ 0} ‖c_b − G_bᵀ μ‖₂ for the listed blocks (rows of C, (B, d)); G_b = (2D_i − I) X.

    Returns (μ (B, n), residual norms (B,)). ``method``:
      "scipy"  Lawson–Hanson (:func:`scipy.optimize.nnls`), exact, one block at a time on the CPU;
      "pg"     batched accelerated projected gradient (FISTA with adaptive restart) in torch, from ``mu0``
               (or 0), stopping once every residual is ≤ ``target`` (or after ``max_iter`` iterations), step
               1/``Lx`` (Lx = ‖X‖₂², computed when not given);
      "auto"   (with a target) 100 warm-started pg iterations, then scipy for the blocks still above
               ``target`` when n·d ≤ 5·10⁶ (else more pg); (without a target) scipy, or pg when n·d is large.
    """
    B = len(blocks)
    n, d = col.n, col.d
    X = col.X
    if B == 0:
        return X.new_zeros((0, n)), X.new_zeros((0,))
    if method == "auto":
        # a short batched projected-gradient pass settles the blocks that are clearly below target;
        # Lawson–Hanson decides the others exactly (when n·d is not too large)
        if target is not None:
            mu, res = _nnls(col, blocks, C, target, "pg", 100 if n * d <= 5_000_000 else max_iter, mu0)
        else:
            mu, res = X.new_zeros((B, n)), X.new_full((B,), math.inf)
        left = list(range(B)) if target is None else torch.nonzero(res > target)[:, 0].tolist()
        if left and n * d <= 5_000_000:
            m2, r2 = _nnls(col, [blocks[i] for i in left], C[left], None, "scipy")
            better = r2 < res[left]
            idx = torch.as_tensor(left, dtype=torch.long, device=X.device)[better]
            mu[idx], res[idx] = m2[better], r2[better]
        elif left and target is None:
            mu, res = _nnls(col, blocks, C, None, "pg", max_iter, mu0)
        return mu, res
    if method == "scipy":
        from scipy.optimize import nnls as _sp_nnls

        Mu = np.zeros((B, n))
        res = np.zeros(B)
        Xn = X.detach().cpu().double().numpy()
        Cn = C.detach().cpu().double().numpy()
        Sg = col.Sg[blocks].detach().cpu().double().numpy()
        for j in range(B):
            try:
                Mu[j], res[j] = _sp_nnls((Sg[j][:, None] * Xn).T, Cn[j], maxiter=50 * n)
            except RuntimeError:  # iteration limit
                Mu[j], res[j] = 0.0, np.inf
        Mu_t = torch.as_tensor(Mu, dtype=X.dtype, device=X.device)
        res_t = torch.as_tensor(res, dtype=X.dtype, device=X.device)
        bad = ~torch.isfinite(res_t)
        if bool(bad.any()):
            idx = torch.nonzero(bad)[:, 0].tolist()
            m2, r2 = _nnls(col, [blocks[i] for i in idx], C[idx], target, "pg", max_iter)
            Mu_t[idx], res_t[idx] = m2, r2
        return Mu_t, res_t
    if method != "pg":
        raise ValueError(f"unknown NNLS method {method!r}: expected 'auto', 'scipy' or 'pg'")
    # batched FISTA with adaptive restart on ½‖c − Gᵀμ‖², step 1/‖X‖₂², in the signed multipliers ν = Sg ⊙ μ
    # (Sg = ±1): Gᵀμ = Xᵀν, the gradient step is ν + X r / L and the projection keeps the entries with Sg ⊙ ν ≥ 0.
    # The extrapolation's Gᵀy is combined from those of the iterates ((B, d) arrays), so an iteration makes one
    # product of each kind, and the (B, n) arrays are four, reused in place: fresh (B, n) arrays cost more in
    # page faults than their arithmetic (adult, n = 36631, entering blocks after the interior point).
    Sg = col.Sg[blocks]  # (B, n)
    L = float(torch.linalg.matrix_norm(X, ord=2)) ** 2 if Lx is None else Lx
    nu = X.new_zeros((B, n)) if mu0 is None else torch.clamp(mu0, min=0.0).mul_(Sg)
    yk, nu_new, best = nu.clone(), torch.empty_like(nu), nu.clone()
    G = nu @ X  # Gᵀμ (B, d)
    Gy = G.clone()
    tk = X.new_ones((B,))
    tgt = target if target is not None else X.new_full((B,), -1.0)
    res = torch.linalg.vector_norm(C - G, dim=1)
    best_res = res.clone()
    for _ in range(max_iter):
        torch.addmm(yk, C - Gy, X.T, alpha=1.0 / L, out=nu_new)  # ν_y + X(c − Gᵀy)/L
        nu_new.mul_(Sg).clamp_(min=0.0).mul_(Sg)  # onto Sg ⊙ ν ≥ 0
        G_new = nu_new @ X
        res_new = torch.linalg.vector_norm(C - G_new, dim=1)
        t_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * tk * tk))
        restart = res_new > res
        beta = torch.where(restart, torch.zeros_like(tk), (tk - 1.0) / t_new)  # y = ν_new + β (ν_new − ν)
        tk = torch.where(restart, torch.ones_like(tk), t_new)
        torch.mul(nu_new, (1.0 + beta)[:, None], out=yk).addcmul_(nu, beta[:, None], value=-1.0)
        Gy = (1.0 + beta)[:, None] * G_new - beta[:, None] * G
        nu, nu_new = nu_new, nu
        G, res = G_new, res_new
        improved = torch.nonzero(res < best_res)[:, 0]
        if improved.numel():
            best[improved] = nu[improved]
            best_res[improved] = res[improved]
        if bool((best_res <= tgt).all()):
            break
    return best.mul_(Sg).clamp_(min=0.0), best_res
