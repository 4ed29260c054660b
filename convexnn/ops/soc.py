"""The second-order cone K = {(t, x) ∈ R × Rᵈ : ‖x‖ ≤ t}: Nesterov–Todd scaling and the Jordan-algebra
operations of a primal-dual interior-point method, batched over blocks.

A point of K is a pair (t (nb,), x (nb, d)): nb cones at once. J = diag(1, −I); e = (1, 0) is the identity
of the Jordan product u∘v = (uᵀv, u₀v₁ + v₀u₁), and the central path of a primal-dual pair (u, v) is
u∘v = m e (uᵀv = m per cone: a cone counts once in the mean complementarity, as in CVXOPT).

The Nesterov–Todd scaling of u, v ∈ int K is the symmetric W with W v = W⁻¹ u = λ̂ (the scaled point), in the
form of ECOS and CVXOPT (Vandenberghe, "The CVXOPT linear and quadratic cone program solvers", §4.2):
    ū = u/√(uᵀJu),  v̄ = v/√(vᵀJv),  γ = √((1 + ūᵀv̄)/2),  w̄ = (a, q) = (ū + J v̄)/(2γ),  η = (uᵀJu / vᵀJv)^¼,
    W = η [[a, qᵀ], [q, I + qqᵀ/(1 + a)]],   W⁻¹ = η⁻¹ [[a, −qᵀ], [−q, I + qqᵀ/(1 + a)]]
(a² − ‖q‖² = 1; W² = η² (2w̄w̄ᵀ − J), the quadratic representation of the NT point η w̄, which maps v to u).
The linearised scaled complementarity λ̂ ∘ (W dv + W⁻¹ du) = r gives dv = W⁻¹ a − W⁻² du with a = Arw(λ̂)⁻¹ r.
"""

from __future__ import annotations

import torch

Pair = tuple[torch.Tensor, torch.Tensor]


def jdet(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """uᵀJu = t² − ‖x‖², as (t − ‖x‖)(t + ‖x‖) (no cancellation in the square), (nb,)."""
    r = torch.linalg.vector_norm(x, dim=1)
    return (t - r) * (t + r)


class NTScaling:
    """The Nesterov–Todd scaling W of the pairs u = (t, x), v = (λ, z) (both in int K, nb cones).

    Attributes: ``eta`` (nb,), ``a`` (nb,), ``q`` (nb, d) (w̄ = (a, q), a² − ‖q‖² = 1) and the scaled point
    ``lam`` = (λ̂₀ (nb,), λ̂₁ (nb, d)) = W v = W⁻¹ u.
    """

    def __init__(self, u: Pair, v: Pair) -> None:
        t, x = u
        l0, z = v
        du, dv = jdet(t, x), jdet(l0, z)
        su, sv = du.sqrt(), dv.sqrt()
        u0, u1 = t / su, x / su[:, None]
        v0, v1 = l0 / sv, z / sv[:, None]
        gam = torch.sqrt(0.5 * (1.0 + u0 * v0 + (u1 * v1).sum(1)))
        self.a = (u0 + v0) / (2.0 * gam)
        self.q = (u1 - v1) / (2.0 * gam)[:, None]
        self.eta = (du / dv) ** 0.25
        self.lam = self.apply(v)

    def apply(self, y: Pair) -> Pair:
        """W y = η (a y₀ + qᵀy₁,  q y₀ + y₁ + q (qᵀy₁)/(1 + a))."""
        y0, y1 = y
        qy = (self.q * y1).sum(1)
        return (self.eta * (self.a * y0 + qy),
                self.eta[:, None] * (self.q * (y0 + qy / (1.0 + self.a))[:, None] + y1))

    def apply_inv(self, y: Pair) -> Pair:
        """W⁻¹ y = η⁻¹ (a y₀ − qᵀy₁,  −q y₀ + y₁ + q (qᵀy₁)/(1 + a))."""
        y0, y1 = y
        qy = (self.q * y1).sum(1)
        return ((self.a * y0 - qy) / self.eta,
                (self.q * (qy / (1.0 + self.a) - y0)[:, None] + y1) / self.eta[:, None])

    def inv_square_parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """W⁻² = η⁻² (2 J w̄ w̄ᵀ J − J) = [[q₀₀, q₀ᵀ], [q₀, Q₁₁]] and the Schur complement Q₁₁ − q₀q₀ᵀ/q₀₀ of q₀₀.

        q₀₀ = η⁻²(2a² − 1),  q₀ = −2η⁻² a q,  Q₁₁ = η⁻²(I + 2qqᵀ), and Q₁₁ − q₀q₀ᵀ/q₀₀ = η⁻² (I − (1 − 1/ω) q̂q̂ᵀ),
        ω = 2a² − 1 ≥ 1, q̂ = q/‖q‖ (positive definite: eigenvalues η⁻² and η⁻²/ω). Returns (q₀₀ (nb,), q₀ (nb, d),
        c = η⁻² (nb,), ω (nb,), q̂ (nb, d)).
        """
        c = self.eta ** -2.0
        om = 2.0 * self.a * self.a - 1.0
        q0 = (-2.0 * c * self.a)[:, None] * self.q
        qh = self.q / torch.linalg.vector_norm(self.q, dim=1, keepdim=True).clamp(min=1e-300)
        return c * om, q0, c, om, qh


def jordan(u: Pair, v: Pair) -> Pair:
    """u∘v = (uᵀv, u₀v₁ + v₀u₁)."""
    return u[0] * v[0] + (u[1] * v[1]).sum(1), u[0][:, None] * v[1] + v[0][:, None] * u[1]


def arrow_solve(lam: Pair, r: Pair) -> Pair:
    """a with λ∘a = r, i.e. Arw(λ) a = r, Arw(λ) = [[λ₀, λ₁ᵀ], [λ₁, λ₀ I]] (λ ∈ int K):
    a₀ = (λ₀r₀ − λ₁ᵀr₁)/(λ₀² − ‖λ₁‖²),  a₁ = (r₁ − a₀λ₁)/λ₀."""
    l0, l1 = lam
    a0 = (l0 * r[0] - (l1 * r[1]).sum(1)) / jdet(l0, l1)
    return a0, (r[1] - a0[:, None] * l1) / l0[:, None]


def max_step(u: Pair, du: Pair) -> torch.Tensor:
    """The largest τ ≥ 0 with u + τ du ∈ K, per cone (inf when every τ ≥ 0 is), for u ∈ int K.

    The first positive root of f(τ) = Aτ² + 2Bτ + C, A = du₀² − ‖du₁‖², B = u₀du₀ − u₁ᵀdu₁, C = uᵀJu > 0
    (leaving K means crossing the boundary t = ‖x‖): with Δ = B² − AC it is C/(√Δ − B), which exists when
    A < 0 or (B < 0 and Δ ≥ 0)."""
    t, x = u
    dt, dx = du
    A = dt * dt - (dx * dx).sum(1)
    B = t * dt - (x * dx).sum(1)
    C = jdet(t, x).clamp(min=0.0)
    disc = B * B - A * C
    hit = (A < 0) | ((B < 0) & (disc >= 0))
    den = torch.sqrt(disc.clamp(min=0.0)) - B
    tau = C / den.clamp(min=1e-300)
    return torch.where(hit & (den > 0), tau, torch.full_like(tau, float("inf")))
