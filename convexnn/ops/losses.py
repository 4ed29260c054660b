"""Losses and what the solvers need from them (MATH.md §5).

Convention used everywhere in convexnn, for predictions A (n, K) and targets Y (n, K):

    L(A) = (1/n) Σ_k Σ_c ℓ(A_kc, Y_kc)

    squared   ℓ(a, y) = ½(a − y)²
    logistic  ℓ(a, y) = log(1 + exp(−y a))        (y = ±1)
    hinge     ℓ(a, y) = max(0, 1 − y a)           (y = ±1)

K = 1 for regression and binary classification; K > 1 for one-vs-rest multi-class targets.
The Fenchel conjugate of L is L*(Λ) = (1/n) Σ ℓ*(n Λ_kc), with the per-sample conjugates

    squared   ℓ*(t) = ½ t² + t y
    logistic  ℓ*(t) = p log p + (1 − p) log(1 − p),  p = −t y ∈ [0, 1]   (+∞ outside)
    hinge     ℓ*(t) = t y,                          −t y ∈ [0, 1]      (+∞ outside)
"""

from __future__ import annotations

import torch

LOSSES = ("squared", "logistic", "hinge")
SMOOTH = ("squared", "logistic")


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: expected one of {LOSSES}")
    return loss


def per_sample(loss: str, A: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """ℓ(A, Y) elementwise, shape of A."""
    if loss == "squared":
        return 0.5 * (A - Y) ** 2
    if loss == "logistic":
        return torch.logaddexp(torch.zeros_like(A), -Y * A)
    if loss == "hinge":
        return torch.clamp(1.0 - Y * A, min=0.0)
    raise ValueError(f"unknown loss {loss!r}")


def value(loss: str, A: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """L(A) = (1/n) Σ ℓ(A_kc, Y_kc) per output column: shape (K,)."""
    return per_sample(loss, A, Y).sum(0) / A.shape[0]


def grad(loss: str, A: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """∇L(A), shape (n, K). For the hinge loss a subgradient (−y/n where y a < 1, else 0)."""
    n = A.shape[0]
    if loss == "squared":
        return (A - Y) / n
    if loss == "logistic":
        return -Y * torch.sigmoid(-Y * A) / n
    if loss == "hinge":
        return torch.where(Y * A < 1.0, -Y, torch.zeros_like(Y)) / n
    raise ValueError(f"unknown loss {loss!r}")


def hessian_diag(loss: str, A: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """∂²L/∂A_kc², shape (n, K): L is separable over entries, so this diagonal is its whole Hessian.

    squared: 1/n; logistic (y = ±1): σ(yA)σ(−yA)/n ≤ 1/(4n). The hinge loss has none (not twice differentiable)."""
    n = A.shape[0]
    if loss == "squared":
        return torch.full_like(A, 1.0 / n)
    if loss == "logistic":
        return torch.sigmoid(Y * A) * torch.sigmoid(-Y * A) / n
    raise ValueError(f"loss {loss!r} has no Hessian: expected 'squared' or 'logistic'")


def prox(loss: str, Z: torch.Tensor, Y: torch.Tensor, t: float, newton_iters: int = 50) -> torch.Tensor:
    """prox_{tℓ}(Z) = argmin_a ℓ(a, y) + (a − z)² / (2t), elementwise.

    squared: (z + t y)/(1 + t).  hinge: z + t y if y z < 1 − t; y if 1 − t ≤ y z ≤ 1; z if y z > 1.
    logistic: safeguarded Newton on a ↦ −y σ(−y a) + (a − z)/t (strongly convex, curvature in
    [1/t, 1/t + 1/4]), which converges to machine precision in a handful of steps.
    """
    if loss == "squared":
        return (Z + t * Y) / (1.0 + t)
    if loss == "hinge":
        yz = Y * Z
        return torch.where(yz < 1.0 - t, Z + t * Y, torch.where(yz <= 1.0, Y, Z))
    if loss == "logistic":
        # work in m = y a (y = ±1): minimise softplus(−m) + (m − y z)² / (2t)
        m0 = Y * Z
        m = m0.clone()
        lo = m0  # the minimiser lies in [y z, y z + t]: the loss's derivative is in (−1, 0)
        hi = m0 + t
        for _ in range(newton_iters):
            s = torch.sigmoid(-m)
            g = -s + (m - m0) / t
            h = s * (1.0 - s) + 1.0 / t
            m_new = torch.clamp(m - g / h, lo, hi)
            if torch.max(torch.abs(m_new - m)) <= 1e-15 * (1.0 + torch.max(torch.abs(m))):
                m = m_new
                break
            m = m_new
        return Y * m
    raise ValueError(f"unknown loss {loss!r}")


def project_dual(loss: str, Lam: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Project a dual candidate Λ (n, K) onto the domain of L* (no-op for the squared loss)."""
    if loss == "squared":
        return Lam
    n = Lam.shape[0]
    p = torch.clamp(-Lam * Y * n, 0.0, 1.0)
    return -p * Y / n


def conjugate(loss: str, Lam: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """L*(Λ) = (1/n) Σ_k ℓ*(n Λ_kc) per column, shape (K,). Λ must lie in the domain
    (see :func:`project_dual`); values outside are not checked here."""
    n = Lam.shape[0]
    T = n * Lam
    if loss == "squared":
        vals = 0.5 * T**2 + T * Y
    elif loss == "logistic":
        p = torch.clamp(-T * Y, 0.0, 1.0)
        vals = torch.xlogy(p, p) + torch.xlogy(1.0 - p, 1.0 - p)
    elif loss == "hinge":
        vals = T * Y
    else:
        raise ValueError(f"unknown loss {loss!r}")
    return vals.sum(0) / n
