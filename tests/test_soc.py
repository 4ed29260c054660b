"""The second-order cone operations of convexnn.ops.soc against explicit matrices and brute force.

Random pairs u = (t, x), v = (λ, z) strictly inside K = {‖x‖ ≤ t} (d = 4, 6 cones, float64). Checks: the
Nesterov–Todd W, built as an explicit (d+1)×(d+1) matrix from its parameters, is symmetric positive definite
and maps v to W⁻¹u (= the scaled point λ̂); apply / apply_inv agree with the explicit W and its inverse; the
closed-form parts of W⁻² and its Schur complement agree with the explicit inverse; the arrow solve agrees with
a dense solve; the maximal step agrees with a fine grid search.
"""

import pytest
import torch

from convexnn.ops import soc

DT = torch.float64
NB, D = 6, 4


def _pairs(seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(NB, D, generator=g, dtype=DT)
    t = torch.linalg.vector_norm(x, dim=1) + torch.rand(NB, generator=g, dtype=DT) * 2.0 + 1e-3
    z = torch.randn(NB, D, generator=g, dtype=DT) * 0.3
    lam = torch.linalg.vector_norm(z, dim=1) + torch.rand(NB, generator=g, dtype=DT) * 0.1 + 1e-3
    return (t, x), (lam, z)


def _stack(p, b):
    return torch.cat([p[0][b:b + 1], p[1][b]])


def _explicit_W(nt: soc.NTScaling, b: int) -> torch.Tensor:
    a, q = nt.a[b], nt.q[b]
    top = torch.cat([a[None], q])[None]
    rest = torch.cat([q[:, None], torch.eye(D, dtype=DT) + torch.outer(q, q) / (1.0 + a)], 1)
    return nt.eta[b] * torch.cat([top, rest])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nt_scaling_against_explicit_matrices(seed):
    u, v = _pairs(seed)
    nt = soc.NTScaling(u, v)
    y = (torch.randn(NB, dtype=DT), torch.randn(NB, D, dtype=DT))
    Wy, Wiy = nt.apply(y), nt.apply_inv(y)
    q00, q0, c, om, qh = nt.inv_square_parts()
    for b in range(NB):
        W = _explicit_W(nt, b)
        assert torch.allclose(W, W.T)
        assert float(torch.linalg.eigvalsh(W).min()) > 0
        ub, vb = _stack(u, b), _stack(v, b)
        # the defining property W v = W⁻¹ u, and λ̂ is that point
        assert torch.allclose(W @ vb, torch.linalg.solve(W, ub), rtol=1e-12, atol=1e-12)
        assert torch.allclose(_stack(nt.lam, b), W @ vb, rtol=1e-12, atol=1e-12)
        assert torch.allclose(_stack(Wy, b), W @ _stack(y, b), rtol=1e-12, atol=1e-12)
        assert torch.allclose(_stack(Wiy, b), torch.linalg.solve(W, _stack(y, b)), rtol=1e-12, atol=1e-12)
        Q = torch.linalg.inv(W @ W)
        assert torch.allclose(q00[b], Q[0, 0], rtol=1e-12)
        assert torch.allclose(q0[b], Q[1:, 0], rtol=1e-10, atol=1e-12)
        schur = Q[1:, 1:] - torch.outer(Q[1:, 0], Q[0, 1:]) / Q[0, 0]
        closed = c[b] * (torch.eye(D, dtype=DT) - (1.0 - 1.0 / om[b]) * torch.outer(qh[b], qh[b]))
        assert torch.allclose(closed, schur, rtol=1e-10, atol=1e-12 * float(schur.abs().max()))


def test_jordan_product_and_arrow_solve():
    u, v = _pairs(3)
    r = (torch.randn(NB, dtype=DT), torch.randn(NB, D, dtype=DT))
    a = soc.arrow_solve(u, r)
    uv = soc.jordan(u, v)
    for b in range(NB):
        ub, vb = _stack(u, b), _stack(v, b)
        arw = ub[0] * torch.eye(D + 1, dtype=DT)
        arw[0, 1:], arw[1:, 0] = ub[1:], ub[1:]
        assert torch.allclose(_stack(uv, b), arw @ vb, rtol=1e-13)
        assert torch.allclose(_stack(a, b), torch.linalg.solve(arw, _stack(r, b)), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("seed", [0, 1])
def test_max_step_against_a_grid(seed):
    u, _ = _pairs(seed)
    g = torch.Generator().manual_seed(100 + seed)
    du = (torch.randn(NB, generator=g, dtype=DT), torch.randn(NB, D, generator=g, dtype=DT))
    du[0][0] = 5.0  # a direction deep into the cone: every step stays inside
    du[1][0] = 0.0
    tau = soc.max_step(u, du)
    grid = torch.linspace(0.0, 20.0, 400_001, dtype=DT)
    h = float(grid[1])
    for b in range(NB):
        tt = u[0][b] + grid * du[0][b]
        xx = torch.linalg.vector_norm(u[1][b][None] + grid[:, None] * du[1][b][None], dim=1)
        out = torch.nonzero(tt < xx)
        if out.numel() == 0:
            assert float(tau[b]) > 20.0
        else:
            first = float(grid[out[0, 0]])
            assert first - h <= float(tau[b]) <= first
    assert float(tau[0]) == float("inf")
