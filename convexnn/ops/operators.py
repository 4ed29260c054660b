"""The linear operators of the convex programs (MATH.md §3, §6), batched over patterns and outputs.

Shapes: X (n, d) data, D (n, P) 0/1 patterns, block weights U (P, d, K) (one d-vector per pattern and
output), residuals R (n, K).

    F U  = Σ_i D_i X U_i                      (n, K)     the model's predictions
    Fᵀ R = (Xᵀ D_i R)_i                       (P, d, K)
    G U  = ((2D_i − I) X U_i)_i               (n, P, K)  the cone constraints G U ≥ 0
    Gᵀ S = (Xᵀ (2D_i − I) S_i)_i              (P, d, K)

Each is one matrix product with X over all patterns at once: never a Python loop over patterns.
"""

from __future__ import annotations

import torch


def xu(X: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """(X U_i)_i as an (n, P, K) tensor."""
    P, d, K = U.shape
    return (X @ U.permute(1, 0, 2).reshape(d, P * K)).reshape(X.shape[0], P, K)


def xt(X: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """(Xᵀ S_i)_i for S (n, P, K) → (P, d, K)."""
    n, P, K = S.shape
    return (X.T @ S.reshape(n, P * K)).reshape(X.shape[1], P, K).permute(1, 0, 2)


def forward(X: torch.Tensor, D: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """F U = Σ_i D_i X U_i, shape (n, K)."""
    return torch.einsum("np,npk->nk", D, xu(X, U))


def adjoint(X: torch.Tensor, D: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Fᵀ R = (Xᵀ D_i R)_i, shape (P, d, K)."""
    return xt(X, D[:, :, None] * R[:, None, :])


def cone(X: torch.Tensor, D: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """G U = ((2D_i − I) X U_i)_i, shape (n, P, K)."""
    return (2.0 * D - 1.0)[:, :, None] * xu(X, U)


def cone_adjoint(X: torch.Tensor, D: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """Gᵀ S = (Xᵀ (2D_i − I) S_i)_i for S (n, P, K), shape (P, d, K)."""
    return xt(X, (2.0 * D - 1.0)[:, :, None] * S)


def group_norms(U: torch.Tensor) -> torch.Tensor:
    """‖U_ik‖₂ for every block, shape (P, K)."""
    return torch.linalg.vector_norm(U, dim=1)


def group_soft_threshold(U: torch.Tensor, thresh: float) -> torch.Tensor:
    """prox of thresh·Σ‖U_ik‖₂: U_ik (1 − thresh/‖U_ik‖)_+ for every block."""
    nrm = group_norms(U)
    scale = torch.clamp(1.0 - thresh / torch.clamp(nrm, min=torch.finfo(U.dtype).tiny), min=0.0)
    return U * scale[:, None, :]
