"""The mathematics (convexnn.ops) against independent computations: brute force, numerical
minimisation, finite differences, explicit matrices."""

from itertools import product

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize_scalar

from convexnn.ops import certificates, losses, operators, patterns

DT = torch.float64


def t(a):
    return torch.as_tensor(a, dtype=DT)


# --- patterns ------------------------------------------------------------------------------------
def brute_force_chambers(X: np.ndarray) -> set[tuple[int, ...]]:
    """Every sign vector s with {h : (2s − 1) ⊙ X h > 0} non-empty, by one LP per vector."""
    n, d = X.shape
    found = set()
    for s in product([0, 1], repeat=n):
        if not any(s):
            continue
        sg = 2 * np.array(s) - 1
        res = linprog(np.zeros(d), A_ub=-(sg[:, None] * X), b_ub=-np.ones(n), bounds=[(None, None)] * d,
                      method="highs")
        if res.status == 0:
            found.add(s)
    return found


@pytest.mark.parametrize("seed", range(6))
def test_enumeration_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(3, 9)), int(rng.integers(1, 3))
    X = patterns.add_intercept(rng.standard_normal((n, d)))  # rank ≤ 3
    D, H = patterns.enumerate_patterns(X)
    got = {tuple(int(v) for v in col) for col in D.T}
    assert got == brute_force_chambers(X)
    assert len(got) == D.shape[1]  # distinct
    # each gate lies strictly inside its chamber
    assert np.all((2 * D - 1) * (X @ H) > 0)


def test_enumeration_rank_two_and_duplicates():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0], [-1.0, 2.0]])
    D, _ = patterns.enumerate_patterns(X)
    assert {tuple(int(v) for v in c) for c in D.T} == brute_force_chambers(X)


def test_enumeration_refuses_high_rank():
    X = np.random.default_rng(0).standard_normal((10, 4))
    with pytest.raises(ValueError, match="rank"):
        patterns.enumerate_patterns(X)


def test_sampled_patterns_distinct_nonempty_and_reproducible():
    rng = np.random.default_rng(1)
    X = patterns.add_intercept(rng.standard_normal((50, 3)))
    H0 = patterns.sample_gates(4, 200, 7)
    D, H = patterns.patterns_from_gates(X, H0)
    assert D.shape[1] == len({tuple(c) for c in D.T.astype(int)})
    assert np.all(D.sum(0) > 0)
    np.testing.assert_array_equal(D, (X @ H >= 0).astype(float))
    np.testing.assert_array_equal(H0, patterns.sample_gates(4, 200, 7))


# --- losses --------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", losses.LOSSES)
def test_prox_matches_numerical_minimisation(loss):
    rng = np.random.default_rng(0)
    z = rng.normal(scale=2.0, size=30)
    y = rng.choice([-1.0, 1.0], size=30) if loss != "squared" else rng.normal(size=30)
    for step in (0.05, 0.7, 3.0):
        got = losses.prox(loss, t(z)[:, None], t(y)[:, None], step).numpy()[:, 0]
        for k in range(30):
            def f(a, k=k, step=step):
                return float(losses.per_sample(loss, t([[a]]), t([[y[k]]]))) + (a - z[k]) ** 2 / (2 * step)
            ref = minimize_scalar(f, bounds=(z[k] - 10, z[k] + 10), method="bounded",
                                  options={"xatol": 1e-12}).x
            assert got[k] == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("loss", losses.LOSSES)
def test_conjugate_matches_numerical_sup(loss):
    """ℓ*(t) = sup_a t a − ℓ(a) checked by maximising over a grid and refining."""
    rng = np.random.default_rng(1)
    n = 7
    y = rng.choice([-1.0, 1.0], size=n) if loss != "squared" else rng.normal(size=n)
    # a dual point inside the domain: −t y ∈ [0, 1] for logistic / hinge
    p = rng.uniform(0.05, 0.95, size=n)
    T = -p * y if loss != "squared" else rng.normal(size=n)
    Lam = t(T / n)[:, None]
    got = float(losses.conjugate(loss, Lam, t(y)[:, None]))
    ref = 0.0
    for k in range(n):
        def neg(a, k=k):
            return -(T[k] * a - float(losses.per_sample(loss, t([[a]]), t([[y[k]]]))))
        ref += -minimize_scalar(neg, bounds=(-60, 60), method="bounded", options={"xatol": 1e-10}).fun
    assert got == pytest.approx(ref / n, abs=1e-6)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_gradient_matches_finite_differences(loss):
    rng = np.random.default_rng(2)
    A = t(rng.normal(size=(9, 2)))
    Y = t(rng.choice([-1.0, 1.0], size=(9, 2)))
    g = losses.grad(loss, A, Y)
    eps = 1e-6
    for i in range(9):
        for j in range(2):
            E = torch.zeros_like(A)
            E[i, j] = eps
            fd = (losses.value(loss, A + E, Y).sum() - losses.value(loss, A - E, Y).sum()) / (2 * eps)
            assert float(g[i, j]) == pytest.approx(float(fd), abs=1e-8)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_hessian_diag_is_the_whole_hessian(loss):
    """losses.hessian_diag against autograd's full Hessian of Σ L(A) over the n·K entries of A: its diagonal,
    and zero off it (the loss is separable)."""
    rng = np.random.default_rng(3)
    A = t(rng.normal(size=(7, 3)))
    Y = t(rng.choice([-1.0, 1.0], size=(7, 3)))
    H = torch.autograd.functional.hessian(lambda a: losses.value(loss, a, Y).sum(), A).reshape(21, 21)
    torch.testing.assert_close(torch.diagonal(H), losses.hessian_diag(loss, A, Y).reshape(-1), rtol=1e-12, atol=1e-14)
    assert float((H - torch.diag(torch.diagonal(H))).abs().max()) == 0.0
    with pytest.raises(ValueError, match="no Hessian"):
        losses.hessian_diag("hinge", A, Y)


def test_logistic_value_is_exact_at_large_margins():
    a = t([[50.0], [-50.0]])
    y = t([[1.0], [1.0]])
    vals = losses.per_sample("logistic", a, y).numpy()[:, 0]
    np.testing.assert_allclose(vals, [np.log1p(np.exp(-50.0)), 50.0 + np.log1p(np.exp(-50.0))], rtol=1e-14)


# --- operators -----------------------------------------------------------------------------------
def test_operators_match_explicit_matrices_and_adjoints():
    rng = np.random.default_rng(3)
    n, d, P, K = 13, 4, 5, 2
    X = t(rng.normal(size=(n, d)))
    D = t((rng.random((n, P)) > 0.5).astype(float))
    U = t(rng.normal(size=(P, d, K)))
    F = torch.cat([D[:, i:i + 1] * X for i in range(P)], dim=1)  # [D_1 X … D_P X]
    np.testing.assert_allclose(operators.forward(X, D, U), F @ U.reshape(P * d, K), atol=1e-12)
    R = t(rng.normal(size=(n, K)))
    np.testing.assert_allclose(operators.adjoint(X, D, R).reshape(P * d, K), F.T @ R, atol=1e-12)
    S = t(rng.normal(size=(n, P, K)))
    lhs = float((operators.cone(X, D, U) * S).sum())
    rhs = float((U * operators.cone_adjoint(X, D, S)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_group_soft_threshold_is_the_prox():
    rng = np.random.default_rng(4)
    U = t(rng.normal(size=(3, 4, 2)))
    out = operators.group_soft_threshold(U, 0.8)
    for i in range(3):
        for k in range(2):
            u = U[i, :, k].numpy()
            nrm = np.linalg.norm(u)
            expect = u * max(0.0, 1 - 0.8 / nrm)
            np.testing.assert_allclose(out[i, :, k].numpy(), expect, atol=1e-14)


def test_make_feasible_satisfies_the_cone_exactly():
    rng = np.random.default_rng(5)
    X = patterns.add_intercept(rng.normal(size=(40, 3)))
    D, H = patterns.patterns_from_gates(X, patterns.sample_gates(4, 10, 0))
    V = t(rng.normal(size=(D.shape[1], 4, 1)))
    Vf = certificates.make_feasible(t(X), t(D), t(H), V)
    assert float(operators.cone(t(X), t(D), Vf).min()) >= -1e-12
    # a feasible input is left unchanged
    np.testing.assert_allclose(certificates.make_feasible(t(X), t(D), t(H), Vf), Vf, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_cone_residual_lower_bound_is_below_the_exact_nnls_residual(seed):
    """min_{μ ≥ 0} ‖a + G_iᵀ μ‖₂ (G_i = (2D_i − I) X, the cone's rows), the distance from a to the cone −G_iᵀμ
    whose polar is {u : G_i u ≥ 0}, by SciPy's NNLS block by block: the cheap bound never exceeds it, and is
    positive where a = h_i (the gate, inside the cone: a distance ≥ aᵀh_i/‖h_i‖ = ‖h_i‖)."""
    from scipy.optimize import nnls

    rng = np.random.default_rng(seed)
    X = patterns.add_intercept(rng.normal(size=(30, 3)))
    D, H = patterns.patterns_from_gates(X, patterns.sample_gates(4, 12, seed))
    A = rng.normal(size=(D.shape[1], 4, 2))
    A[:, :, 1] = H.T
    low = certificates.cone_residual_lower_bound(t(X), t(D), t(H), t(A)).numpy()
    assert low.shape == (D.shape[1], 2)
    for i in range(D.shape[1]):
        G = (2.0 * D[:, i] - 1.0)[:, None] * X  # (n, d)
        for k in range(2):
            _, exact = nnls(G.T, -A[i, :, k], maxiter=10_000)  # min ‖−a − Gᵀμ‖ = min ‖a + Gᵀμ‖
            assert low[i, k] <= exact * (1 + 1e-9) + 1e-12
    np.testing.assert_array_less(np.linalg.norm(H, axis=0) * (1 - 1e-12), low[:, 1])
