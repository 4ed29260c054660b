"""The fast solvers against CVXPY + a conic solver (independent reference).

Default run: subsets of breast cancer (±1 labels) and diabetes (standardised), alpha = 1e-3, given
Gaussian gates, every program and smooth loss: objective within 1e-4 (relative) of the conic optimum,
the certificate's dual never above it, the recovered network's objective equal to the convex one.
``-m slow``: the same on issue 2's full problems (569 and 442 rows, 40 gates).
"""

import numpy as np
import pytest
import torch

import convexnn.solvers.newton as newton
from convexnn.baselines import nonconvex_objective
from convexnn.estimators import ConvexReLUClassifier, ConvexReLURegressor
from convexnn.ops.patterns import add_intercept, patterns_from_gates, sample_gates
from convexnn.solvers import ConvexProblem, cvxpy_solve, solve

pytest.importorskip("cvxpy")

ALPHA = 1e-3
_REFERENCE: dict = {}


def _problem(X, y, kind, loss, gates):
    Xa = add_intercept(X)
    G = sample_gates(Xa.shape[1], gates, 0)
    D, H = patterns_from_gates(Xa, G)

    def t(a):
        return torch.as_tensor(a, dtype=torch.float64)

    return ConvexProblem(t(Xa), t(y[:, None]), t(D), t(H), ALPHA, loss, kind), G


def _reference(key, pb):
    """Clarabel's optimum; SCS at high accuracy when Clarabel reports an inaccurate solution."""
    if key not in _REFERENCE:
        ref = cvxpy_solve(pb)
        if ref.info["status"] != "optimal":
            ref = cvxpy_solve(pb, solver="SCS", eps=1e-9, max_iters=200000)
        _REFERENCE[key] = ref.info["optimal_value"]
    return _REFERENCE[key]


def _check(pb, key, tol_rel=1e-4):
    res = solve(pb, solver="auto", tol=1e-6, max_iter=20000)
    opt = _reference(key, pb)
    cert = res.certificate
    assert res.converged, cert
    assert cert.gap >= 0
    # a valid lower bound never exceeds the optimum (allow the reference's own tolerance)
    assert cert.dual <= opt * (1 + 1e-7)
    assert abs(cert.primal - opt) <= tol_rel * abs(opt)
    # the objective reported is the program's objective at the returned, exactly feasible point
    assert float(pb.objective(res.V, res.W).sum()) == pytest.approx(cert.primal, rel=1e-12)
    if res.W is not None:
        for B in (res.V, res.W):
            assert float(((2 * pb.D - 1)[:, :, None] * (pb.X @ B.permute(1, 0, 2).reshape(pb.d, -1))
                          .reshape(pb.n, pb.P, pb.K)).min()) >= -1e-12
    return res, opt


SMOOTH = [(kind, loss) for kind in ("relu", "gated") for loss in ("squared", "logistic")]
ALL = [(kind, loss) for kind in ("relu", "gated") for loss in ("squared", "logistic", "hinge")]


@pytest.mark.parametrize("kind,loss", SMOOTH)
def test_breast_cancer_subset_matches_cvxpy(breast_cancer, kind, loss):
    X, y = breast_cancer
    pb, _ = _problem(X[:200], y[:200], kind, loss, gates=15)
    _check(pb, ("bc200", kind, loss))


@pytest.mark.parametrize("kind", ["relu", "gated"])
def test_diabetes_subset_matches_cvxpy(diabetes, kind):
    X, y = diabetes
    pb, _ = _problem(X[:200], y[:200], kind, "squared", gates=15)
    _check(pb, ("db200", kind, "squared"))


def test_multiclass_columns_are_independent_programs(breast_cancer):
    X, y = breast_cancer
    X = X[:150]
    Y = np.stack([y[:150], -y[:150], np.sign(X[:, 0] + 0.1)], axis=1)
    Xa = add_intercept(X)
    D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], 10, 0))

    def t(a):
        return torch.as_tensor(a, dtype=torch.float64)

    pb = ConvexProblem(t(Xa), t(Y), t(D), t(H), ALPHA, "logistic", "relu")
    res = solve(pb, tol=1e-7, max_iter=20000)
    total = 0.0
    for k in range(3):
        pk = ConvexProblem(t(Xa), t(Y[:, k:k + 1]), t(D), t(H), ALPHA, "logistic", "relu")
        total += solve(pk, tol=1e-7, max_iter=20000).certificate.primal
    assert res.certificate.primal == pytest.approx(total, rel=1e-6)


@pytest.mark.parametrize("strategy", ["cholesky", "woodbury", "pcg"])
def test_admm_linear_system_strategies_give_the_same_iterates(diabetes, strategy):
    X, y = diabetes
    pb, _ = _problem(X[:120], y[:120], "relu", "squared", gates=8)
    ref = solve(pb, solver="admm", tol=1e-12, max_iter=200, strategy="cholesky", check_every=200)
    res = solve(pb, solver="admm", tol=1e-12, max_iter=200, strategy=strategy, check_every=200, cg_rtol=1e-13)
    assert res.info["strategy"] == strategy
    assert res.certificate.primal == pytest.approx(ref.certificate.primal, rel=1e-6)


def test_float32_and_warm_start_agree(diabetes):
    X, y = diabetes
    pb, _ = _problem(X, y, "gated", "squared", gates=20)
    a = solve(pb, tol=1e-8, max_iter=20000)
    warm = solve(pb, solver="fista", tol=1e-8, max_iter=20000, warm_start=a)
    assert warm.n_iter <= 10
    assert warm.certificate.primal == pytest.approx(a.certificate.primal, rel=1e-7)
    pb32 = ConvexProblem(pb.X.float(), pb.Y.float(), pb.D.float(), pb.H.float(), ALPHA, "squared", "gated")
    b = solve(pb32, solver="fista", tol=1e-4, max_iter=20000)
    assert b.certificate.primal == pytest.approx(a.certificate.primal, rel=1e-3)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_admm_warm_started_at_the_optimum_stays_near_it(breast_cancer, diabetes, loss):
    """(C): ADMM started from a certified solution (blocks only, its multipliers unknown) moves it by a fraction of
    its size in its first iteration. Its slack copies s start at the scaled cone values Gv/σ the iteration keeps
    (they once started at Gv, σ = ‖X‖₂ times too large, and the first u-step moved the point by 10–150× its norm)."""
    X, y = diabetes if loss == "squared" else breast_cancer
    pb, _ = _problem(X[:200], y[:200], "relu", loss, gates=15)
    opt = solve(pb, tol=1e-8)
    assert opt.converged
    one = solve(pb, solver="admm", tol=1e-12, max_iter=1, warm_start=opt)
    move = torch.linalg.vector_norm(torch.cat([(one.info["V_raw"] - opt.V).flatten(),
                                               (one.info["W_raw"] - opt.W).flatten()]))
    assert float(move) <= 0.5 * float(torch.linalg.vector_norm(torch.cat([opt.V.flatten(), opt.W.flatten()])))


@pytest.mark.parametrize("kind", ["relu", "gated"])
def test_hinge_matches_cvxpy(breast_cancer, kind):
    X, y = breast_cancer
    pb, _ = _problem(X[:150], y[:150], kind, "hinge", gates=8)
    _check(pb, ("bc150", kind, "hinge"))


def test_plain_admm_hinge_certificate_is_valid(breast_cancer):
    """ADMM alone converges slowly on the hinge loss; whatever it reaches, its certificate brackets the
    optimum."""
    X, y = breast_cancer
    pb, _ = _problem(X[:150], y[:150], "relu", "hinge", gates=8)
    res = solve(pb, solver="admm", tol=1e-6, max_iter=500)
    opt = _reference(("bc150", "relu", "hinge"), pb)
    assert res.certificate.dual <= opt * (1 + 1e-7)
    assert res.certificate.primal >= opt * (1 - 1e-7)


def test_cvxpy_solver_through_the_estimator(diabetes):
    X, y = diabetes
    est = ConvexReLURegressor(solver="cvxpy", n_patterns=5).fit(X[:80], y[:80])
    assert est.solver_ == "cvxpy"
    assert np.isfinite(est.objective_)


# --- issue 2's full problems (slow: CVXPY takes 10–40 s each) -------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind,loss", ALL)
def test_issue_breast_cancer_matches_cvxpy(breast_cancer, kind, loss):
    X, y = breast_cancer
    pb, G = _problem(X, y, kind, loss, gates=40)
    res, opt = _check(pb, ("bc", kind, loss))
    if kind == "relu":
        est = ConvexReLUClassifier(alpha=ALPHA, loss=loss, gate_vectors=G).fit(X, y)
        assert nonconvex_objective(est.network_, X, y, ALPHA, loss) == pytest.approx(opt, rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["relu", "gated"])
def test_issue_diabetes_matches_cvxpy(diabetes, kind):
    X, y = diabetes
    pb, _ = _problem(X, y, kind, "squared", gates=40)
    _check(pb, ("db", kind, "squared"))


# --- the prediction split of ADMM for large (C) (convexnn.solvers.admm.admm_relu_split) -----------
def _admm_module():
    import importlib

    return importlib.import_module("convexnn.solvers.admm")


def test_split_zstep_matches_cvxpy():
    """The per-sample loss-and-cone problem of the prediction split, against CVXPY + Clarabel."""
    import cvxpy as cp

    A = _admm_module()
    g = torch.Generator().manual_seed(0)
    n, P, K, kappa = 6, 5, 2, 0.3
    C = torch.randn(n, 2 * P, K, generator=g, dtype=torch.float64)
    on1 = torch.rand(n, P, 1, generator=g) > 0.4
    on = torch.cat([on1, on1], 1)
    Y = torch.randn(n, K, generator=g, dtype=torch.float64)
    tau0 = torch.randn(n, K, generator=g, dtype=torch.float64)
    for t0 in (None, tau0):  # cold (sorting) and warm (Newton) paths
        Z, _ = A.zstep(C, on, Y, kappa, t0)
        for k in range(n):
            for c in range(K):
                o = on[k, :, 0].numpy()
                z = cp.Variable(2 * P)
                s = np.r_[np.ones(P), -np.ones(P)] * o
                cons = [z[i] >= 0 if o[i] else z[i] <= 0 for i in range(2 * P)]
                fit = cp.sum_squares(s @ z - float(Y[k, c])) / (2 * kappa)
                obj = fit + 0.5 * cp.sum_squares(z - C[k, :, c].numpy())
                cp.Problem(cp.Minimize(obj), cons).solve(solver="CLARABEL")
                assert np.abs(z.value - Z[k, :, c].numpy()).max() < 1e-6


def test_split_dual_bound_is_the_certificate_bound(diabetes):
    """split_dual_bound (one product for all blocks) equals certificates.dual_value_relu on the same (Λ, μ)."""
    from convexnn.ops import certificates

    A = _admm_module()
    X, y = diabetes
    pb, _ = _problem(X[:100], y[:100], "relu", "squared", gates=6)
    g = torch.Generator().manual_seed(1)
    Lam = torch.randn(pb.n, 1, generator=g, dtype=torch.float64) / pb.n
    Mu = torch.randn(pb.n, 2 * pb.P, 1, generator=g, dtype=torch.float64) / pb.n
    D2 = torch.cat([pb.D, pb.D], 1)
    sgn = torch.cat([torch.ones(pb.P), -torch.ones(pb.P)]).double()
    ours = A.split_dual_bound(pb.X, D2, sgn, pb.Y, Lam, Mu, pb.alpha)
    ref = certificates.dual_value_relu(pb.X, pb.D, pb.Y, Lam, Mu[:, :pb.P], Mu[:, pb.P:], pb.alpha, "squared")
    assert float(ours) == pytest.approx(float(ref), rel=1e-12)


def test_prediction_split_brackets_the_optimum(breast_cancer):
    """Whatever the prediction split reaches, its point is feasible and its certificate brackets CVXPY's optimum."""
    X, y = breast_cancer
    pb, _ = _problem(X[:200], y[:200], "relu", "squared", gates=15)
    opt = _reference(("bc200", "relu", "squared"), pb)
    for dtype in (None, torch.float32):
        res = solve(pb, solver="admm", splitting="prediction", tol=1e-8, max_iter=400, iter_dtype=dtype)
        cert = res.certificate
        assert res.info["strategy"] == "prediction-split"
        assert cert.dual <= opt * (1 + 1e-7)
        assert cert.primal >= opt * (1 - 1e-9)
        assert cert.relative_gap < 1.0
        assert float(pb.objective(res.V, res.W).sum()) == pytest.approx(cert.primal, rel=1e-12)
        for B in (res.V, res.W):
            assert float(((2 * pb.D - 1)[:, :, None] * (pb.X @ B.permute(1, 0, 2).reshape(pb.d, -1))
                          .reshape(pb.n, pb.P, pb.K)).min()) >= -1e-12


def test_prediction_split_checks_memory_first(diabetes):
    X, y = diabetes
    pb, _ = _problem(X[:100], y[:100], "relu", "squared", gates=6)
    with pytest.raises(MemoryError, match="memory_limit"):
        solve(pb, solver="admm", splitting="prediction", memory_limit=1000)


def test_cvxpy_certificate_is_a_proven_bound(breast_cancer):
    """cvxpy_solve's certificate comes from our dual bound, not the conic solver's reported value (which
    can sit above the optimum): its dual never exceeds the optimum certified by solve()."""
    X, y = breast_cancer
    Xa = add_intercept(X[:120])
    D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], 8, 1))

    def t(a):
        return torch.as_tensor(a, dtype=torch.float64)

    for loss in ("squared", "logistic"):
        pb = ConvexProblem(t(Xa), t(y[:120, None]), t(D), t(H), ALPHA, loss, "relu")
        ref, ours = cvxpy_solve(pb), solve(pb, tol=1e-9)
        assert ref.certificate.dual <= ours.certificate.primal + 1e-12
        assert ref.certificate.relative_gap < 1e-3


@pytest.mark.parametrize("kind", ["relu", "gated"])
def test_more_columns_than_rows_and_zero_columns(kind):
    """d > n with constant-zero columns (raw pixels of a few images, wide backbone features): ``solve`` works
    in X's row space (:func:`convexnn.solvers.problem.row_space`) and matches CVXPY on the ORIGINAL program;
    the returned blocks are in the original space and exactly feasible there."""
    from convexnn.solvers.problem import row_space

    rng = np.random.default_rng(5)
    n, d = 30, 60
    X = rng.standard_normal((n, d))
    X[:, [3, 17, 40]] = 0.0
    y = np.sin(X[:, 0]) + 0.3 * X[:, 1]
    pb, _ = _problem(X, y, kind, "squared", 8)
    pr, B = row_space(pb)
    assert pr.d == n and B.shape == (d + 1, n)
    assert torch.allclose(pr.X @ B.T, pb.X, atol=1e-12)
    _check(pb, ("wide", kind))
    res = solve(pb, solver="auto", tol=1e-6)
    assert res.V.shape == (pb.P, pb.d, 1) and res.info["row_space"] == {"d": d + 1, "r": n}
    # the blocks live in the row space (the optimum never spends norm on X's null space)
    assert float(torch.linalg.vector_norm(res.V[:, [3, 17, 40], :])) == 0.0
    cols = [0, 1, 2, 4, 5]  # no zero column, n > d: nothing to reduce
    assert row_space(ConvexProblem(pb.X[:, cols], pb.Y, pb.D, pb.H[cols], ALPHA, "squared", kind)) is None


def test_row_space_warm_start_is_projected():
    """A warm start given in the original coordinates is projected (v' = Bᵀv) and the result is the same optimum."""
    rng = np.random.default_rng(1)
    X = np.hstack([rng.standard_normal((25, 40)), np.zeros((25, 2))])
    y = X[:, 0] - np.abs(X[:, 1])
    pb, _ = _problem(X, y, "relu", "squared", 6)
    cold = solve(pb, solver="auto", tol=1e-8)
    warm = solve(pb, solver="auto", tol=1e-8, warm_start=cold)
    assert warm.converged and cold.converged
    assert warm.certificate.primal == pytest.approx(cold.certificate.primal, rel=1e-7)
    assert warm.V.shape == cold.V.shape == (pb.P, pb.d, 1)


def test_spd_cholesky_factors_what_plain_cholesky_cannot():
    """PSD + I with the PSD part 1e20 times larger (features 1e5 apart, a small ADMM penalty): plain Cholesky
    fails in float64, spd_cholesky returns the factor of a rounding-level shift of it."""
    from convexnn.solvers.linsys import spd_cholesky

    g = torch.Generator().manual_seed(0)
    Z = torch.randn(30, 40, generator=g, dtype=torch.float64)  # rank 30 < 40: ZᵀZ singular
    A = 1e20 * (Z.T @ Z)
    A.diagonal().add_(1.0)
    assert bool(torch.linalg.cholesky_ex(A).info)  # the failure this guards against
    L = spd_cholesky(A)
    assert bool(torch.isfinite(L).all())
    assert float(torch.linalg.matrix_norm(L @ L.T - A)) <= 1e-9 * float(torch.linalg.matrix_norm(A))
    B = torch.eye(5, dtype=torch.float64) * 2.0  # a well-conditioned one: the plain factor, untouched
    assert torch.equal(spd_cholesky(B), torch.linalg.cholesky(B))
    with pytest.raises(torch.linalg.LinAlgError, match="standardise X"):
        spd_cholesky(-torch.eye(3, dtype=torch.float64))


def test_lstsq_on_rank_deficient_matrices_is_the_minimum_norm_solution():
    """linsys.lstsq on matrices with zero columns (as padded batches have), one at a time and batched, called
    repeatedly: always NumPy's minimum-norm least-squares solution. (torch's default CPU driver "gelsy", in
    the same loop, missed it in all 10 calls: pytorch/pytorch#187411.)"""
    from convexnn.solvers.linsys import lstsq

    g = torch.Generator().manual_seed(0)
    A = torch.randn(4, 40, 30, generator=g, dtype=torch.float64)
    for j, k in enumerate((20, 30, 7, 12)):
        A[j, :, k:] = 0.0
    A[0, :, 3] = 0.0
    B = torch.randn(4, 40, 2, generator=g, dtype=torch.float64)
    want = np.stack([np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(A.numpy(), B.numpy(), strict=True)])
    for _ in range(5):
        np.testing.assert_allclose(lstsq(A, B).numpy(), want, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(lstsq(A[0], B[0]).numpy(), want[0], rtol=1e-10, atol=1e-12)


def test_shifted_cholesky_on_a_batch():
    """A batch with one singular PSD matrix: every matrix gets δ = s × its own largest diagonal entry, the
    factors reproduce the shifted matrices, and a matrix no shift can fix reports ok False."""
    from convexnn.solvers.linsys import shifted_cholesky

    g = torch.Generator().manual_seed(1)
    Z = torch.randn(3, 6, generator=g, dtype=torch.float64)
    A = torch.stack([Z.T @ Z, torch.eye(6, dtype=torch.float64) * 4.0])  # rank 3, then well conditioned
    assert bool(torch.linalg.cholesky_ex(A).info.any())
    L, B, ok = shifted_cholesky(A, (1e-12, 1e-8))
    assert ok
    top = A.diagonal(dim1=1, dim2=2).amax(1)
    first = A + (1e-12 * top)[:, None, None] * torch.eye(6, dtype=torch.float64)
    second = A + (1e-8 * top)[:, None, None] * torch.eye(6, dtype=torch.float64)
    assert torch.equal(B, first) or torch.equal(B, second)
    assert torch.allclose(L @ L.transpose(1, 2), B, rtol=0, atol=1e-12 * float(top.max()))
    L1, B1, ok1 = shifted_cholesky(A[1], (1e-12,))  # nothing to fix: the plain factor of A itself
    assert ok1 and torch.equal(B1, A[1])
    assert torch.equal(L1, torch.linalg.cholesky(A[1]))
    _, _, bad = shifted_cholesky(-torch.eye(3, dtype=torch.float64), (1e-12, 1e-6))
    assert not bad


def test_lstsq_solves_rank_deficient_systems_batched():
    """linsys.lstsq: a least-squares solution of a singular system (the min-norm one with "gelsd"), batched."""
    from convexnn.solvers.linsys import lstsq

    g = torch.Generator().manual_seed(2)
    Z = torch.randn(2, 6, 3, generator=g, dtype=torch.float64)
    A = Z @ Z.transpose(1, 2)  # two rank-3 6×6 matrices
    b = torch.randn(2, 6, 1, generator=g, dtype=torch.float64)
    want = torch.linalg.pinv(A) @ b
    assert torch.allclose(lstsq(A, b, driver="gelsd"), want, atol=1e-10)
    x = lstsq(A, b)  # default driver: the same residual
    assert torch.allclose(A @ x, A @ want, atol=1e-10)


def test_device_limits_and_a_clear_error_for_the_gpu_kernel_off_cuda():
    from convexnn.solvers import device_limits, fused
    from convexnn.solvers.admm import admm_relu_split

    X = torch.randn(20, 3, dtype=torch.float64)
    D = (X @ torch.randn(3, 4, dtype=torch.float64) >= 0).to(torch.float64)
    pb = ConvexProblem(X, torch.randn(20, 1, dtype=torch.float64), D, torch.randn(3, 4, dtype=torch.float64),
                       0.1, "squared", "relu")
    assert device_limits(pb) == (1.0, 8 * 2**30)  # the CPU: the limits as documented
    assert device_limits(pb, 2**30) == (1.0, 2**30)  # a user's limit is kept
    if not fused.usable(pb.X.device):  # a CPU problem, without Triton's interpreter
        with pytest.raises(ValueError, match="fused_zstep=True needs Triton and the problem on a CUDA device"):
            admm_relu_split(pb, max_iter=2, fused_zstep=True)


@pytest.mark.parametrize(("kind", "loss"), [("relu", "squared"), ("relu", "logistic"), ("gated", "squared")])
def test_repeated_and_empty_patterns_are_merged(breast_cancer, kind, loss):
    """A program whose patterns are repeated (and one empty) has the optimum of its distinct patterns: solve
    returns that optimum certified on the original program, each pattern's block at its first occurrence."""
    from convexnn.solvers.problem import distinct_patterns

    X, y = breast_cancer
    X, y = X[:200], y[:200]
    base, _ = _problem(X, y, kind, loss, 12)
    P = base.P
    order = torch.tensor([0, 1, 1, 2, 0, *range(3, P), 5])  # 0 and 1 twice, 5 twice (last), then an empty one
    D = torch.cat([base.D[:, order], torch.zeros_like(base.D[:, :1])], 1)
    H = torch.cat([base.H[:, order], base.H[:, :1]], 1)
    pb = ConvexProblem(base.X, base.Y, D, H, base.alpha, loss, kind)
    reduced, keep, owner = distinct_patterns(pb)
    assert torch.equal(reduced.D, base.D) and keep.tolist() == [0, 1, 3, *range(5, P + 2)]
    assert owner.tolist() == [0, 1, 1, 2, 0, *range(3, P), 5, -1]
    ref = solve(base, tol=1e-8)
    res = solve(pb, tol=1e-8)
    assert res.V.shape[0] == pb.P and res.converged
    assert res.info["distinct_patterns"] == {"P": pb.P, "distinct": P}
    assert abs(res.certificate.primal - ref.certificate.primal) <= 1e-8 * ref.certificate.primal
    assert float(pb.objective(res.V, res.W).sum()) == res.certificate.primal  # certified on pb itself
    dup = [2, 4, P + 2, P + 3]  # repeats and the empty pattern: zero blocks
    assert float(res.V[dup].abs().max()) == 0.0
    # a warm start given on the original patterns is merged onto the distinct ones
    warm = solve(pb, tol=1e-8, warm_start=res)
    assert abs(warm.certificate.primal - res.certificate.primal) <= 1e-8 * res.certificate.primal
    assert distinct_patterns(base) is None


def test_monitor_stops_when_the_gap_stalls():
    """Monitor's stall rule: from iteration ``stall_after`` on, stop when the best gap is above STALL_RATIO × the
    best gap at half the iterations; a gap falling like 1/k (ADMM's rate) never stalls; without stall_after no
    stop; a bad stall_after is refused."""
    from convexnn.solvers.problem import STALL_RATIO, Certificate, Monitor

    def run(gap_at, stall_after, last=2000):
        mon = Monitor(1e-12, stall_after=stall_after)
        for it in range(10, last + 1, 10):
            if mon.check(it, Certificate(primal=1.0, dual=1.0 - gap_at(it)), ()):
                return it, mon.stalled
        return None, mon.stalled

    assert run(lambda it: 0.5, 100) == (100, True)  # flat: stops at the first check it may
    assert run(lambda it: 0.5, None) == (None, False)
    assert run(lambda it: 1.0 / it, 100) == (None, False)  # halves when the iterations double
    # 5% better per doubling of the iterations: a stall
    assert run(lambda it: (1 - 0.05) ** np.log2(it), 100) == (100, True)
    # 1/k until 300, then flat at 1/310: stops at the first check i with 1/310 > STALL_RATIO / j, j the last
    # check at or before i/2, i.e. j ≥ 280 (= 279.0 rounded up to a check), i = 560
    assert STALL_RATIO == 0.9 and run(lambda it: 1.0 / it if it <= 300 else 1.0 / 310, 100) == (560, True)
    with pytest.raises(ValueError, match="stall_after"):
        Monitor(1e-6, stall_after=0)


def _unscaled_diabetes():
    """150 diabetes rows with X and y scaled by 1000: alpha = 1e-3 is then negligible and ADMM's certificate
    stays at relative gap 1 (537_houses' situation)."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    Xa = add_intercept(X[:150] * 1000)
    D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], 10, 0))

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float64))

    return ConvexProblem(t(Xa), t(y[:150, None] * 1000), t(D), t(H), 1e-3, "squared", "relu")


def test_admm_stall_after_stops_a_run_that_makes_no_progress():
    from convexnn.solvers.admm import admm

    pb = _unscaled_diabetes()
    res = admm(pb, tol=1e-6, max_iter=5000, stall_after=200)
    assert res.info["stalled"] and res.n_iter == 200 and not res.converged
    assert res.certificate.relative_gap > 0.5
    assert not admm(pb, tol=1e-6, max_iter=300).info["stalled"]


@pytest.mark.parametrize("polish_ran", [True, False])
def test_solve_auto_continuation_stops_when_stalled_after_polishing(monkeypatch, polish_ran):
    """solve(auto): after polishing ran and fell short, the first-order continuation stops once its gap stalls
    (with a note saying so); when polishing did not run (too large), it is the solver and runs to max_iter.
    Polishing is replaced by a stand-in that 'ran' (or was not affordable) and improved nothing."""
    import importlib

    solvers_mod = importlib.import_module("convexnn.solvers")

    def fell_short(problem, *args, **kwargs):
        info = newton.PolishInfo(method="ipm+active-set" if polish_ran else "")
        info.notes.append("stand-in: fell short" if polish_ran else "not polished: stand-in")
        return None, info

    monkeypatch.setattr(solvers_mod, "polish", fell_short)
    monkeypatch.setattr(solvers_mod, "ipm_direct", lambda *a, **k: False)
    pb = _unscaled_diabetes()
    seen = []
    res = solve(pb, tol=1e-6, max_iter=1500, callback=lambda rec: seen.append(rec["iteration"]))
    notes = res.info.get("polish_notes", [])
    if polish_ran:  # 20 iterations, polishing, then the continuation's 1000
        assert any("after polishing: stopped at its iteration 1000" in note for note in notes), notes
        assert max(seen) == 20 + 1000
    else:
        assert not any("after polishing" in note for note in notes) and max(seen) == 1500
    assert not res.converged


@pytest.mark.parametrize("ipm_ran", [True, False])
def test_solve_auto_polishes_again_without_repeating_the_interior_point_method(monkeypatch, ipm_ran):
    """solve(auto) on a program too large for the interior-point method from scratch: polishing the first-order
    point fell short, the continuation found a better point, and that is polished again, with the active-set
    method only where the first polish ran the interior-point method (which starts from its own point: it would
    repeat itself), else as the first. Polishing is a stand-in that records its method and improves nothing."""
    import importlib

    solvers_mod = importlib.import_module("convexnn.solvers")
    methods = []

    def fell_short(problem, *args, method="auto", **kwargs):
        methods.append(method)
        info = newton.PolishInfo(method="ipm+active-set" if ipm_ran else "active-set")
        info.ipm_iterations = 30 if ipm_ran else 0
        return None, info

    monkeypatch.setattr(solvers_mod, "polish", fell_short)
    monkeypatch.setattr(solvers_mod, "ipm_direct", lambda *a, **k: False)
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    pb, _ = _problem(X[:150], (y[:150] - y.mean()) / y.std(), "relu", "squared", 10)
    res = solve(pb, tol=1e-6, max_iter=300)  # 300 ADMM iterations: the continuation's point is the better
    assert methods == ["auto", "active-set" if ipm_ran else "auto"]
    assert not res.converged


def test_monitor_keeps_the_lowest_objective_with_the_highest_bound():
    """The best point is the checked one of lowest objective, certified with the highest dual bound seen (both
    bound the same optimum); convergence is judged on that pair."""
    from convexnn.solvers.problem import Certificate, Monitor

    mon = Monitor(0.3)
    checks = [(2.0, 0.1), (1.5, 0.5), (1.8, 1.2)]  # relative gaps 0.95, 0.67, 0.33: none ≤ 0.3 on its own
    stops = [mon.check(10 * (j + 1), Certificate(primal=p, dual=q), (f"point {j}",)) for j, (p, q) in
             enumerate(checks)]
    cert, point = mon.best
    assert point == ("point 1",) and (cert.primal, cert.dual) == (1.5, 1.2)
    assert stops == [False, False, True] and mon.converged  # (1.5 − 1.2)/1.5 = 0.2 ≤ 0.3
    assert [rec["relative_gap"] for rec in mon.history] == [Certificate(p, q).relative_gap for p, q in checks]


def test_solve_keeps_the_better_point_with_the_better_bound():
    from convexnn.solvers import _better_of
    from convexnn.solvers.problem import Certificate, SolverResult

    def result(primal, dual, n_iter):
        z = torch.zeros(1, 2, 1)
        return SolverResult(V=z, W=None, certificate=Certificate(primal, dual), n_iter=n_iter, converged=False,
                            solver="x", history=[{"iteration": n_iter}])

    first, then = result(0.65, 0.002, 3), result(189.0, 0.15, 1003)
    got = _better_of(first, then, tol=1e-6)
    assert got.V is first.V and (got.certificate.primal, got.certificate.dual) == (0.65, 0.15)
    assert got.n_iter == 1003 and got.history == then.history and not got.converged
    assert _better_of(then, first, tol=1e-6).V is first.V
    assert _better_of(first, result(0.6, 0.59, 5), tol=0.1).converged


def _gated_threshold(pb):
    """max_i ‖Xᵀ D_i ∇L(0)‖: the smallest α at which (G)'s optimum, hence (C)'s, is the zero network."""
    from convexnn.ops import losses, operators

    g = losses.grad(pb.loss, pb.X.new_zeros(pb.Y.shape), pb.Y)
    return float(operators.group_norms(operators.adjoint(pb.X, pb.D, g)).max())


def test_zero_network_is_certified_without_the_interior_point_method(breast_cancer):
    """Between (C)'s threshold and (G)'s, (C)'s optimum is the zero network although the gated bound alone cannot
    show it: solve certifies it by cone multipliers (solver "zero", no iteration), and CVXPY + Clarabel finds the
    same optimum L(0) = 1/2. Below (C)'s threshold the screen lets the interior-point method run."""
    import dataclasses

    pb, _ = _problem(breast_cancer[0][:150], breast_cancer[1][:150], "relu", "squared", 20)
    top = _gated_threshold(pb)
    above = dataclasses.replace(pb, alpha=0.85 * top)
    res = solve(above, solver="auto", tol=1e-6)
    assert res.solver == "zero" and res.n_iter == 0 and res.converged
    assert res.certificate.primal == pytest.approx(0.5, rel=1e-15) and res.certificate.relative_gap <= 1e-6
    assert float(res.V.abs().max()) == 0.0 and float(res.W.abs().max()) == 0.0
    assert cvxpy_solve(above).info["optimal_value"] == pytest.approx(0.5, rel=1e-7)
    below = dataclasses.replace(pb, alpha=0.4 * top)
    res = solve(below, solver="auto", tol=1e-6)
    opt = cvxpy_solve(below).info["optimal_value"]
    assert res.solver != "zero" and res.converged and opt < 0.49
    assert res.certificate.dual <= opt * (1 + 1e-7) and res.certificate.primal == pytest.approx(opt, rel=1e-6)


def test_residue_blocks_are_pruned_and_the_result_stays_certified(breast_cancer):
    """The interior-point method leaves every zero block of the optimum at rounding level; solve zeroes them
    (info["pruned"]) and the point is still optimal against CVXPY + Clarabel, exactly feasible, certified, with no
    block below 1e-6 of the largest left. prune_blocks itself removes residue added to a zero block again and,
    given no slack, never drops a block of the optimum (that raises the objective)."""
    import dataclasses

    from convexnn.ops import operators
    from convexnn.solvers.problem import prune_blocks

    pb, _ = _problem(breast_cancer[0][:150], breast_cancer[1][:150], "relu", "squared", 20)
    pb = dataclasses.replace(pb, alpha=0.15 * _gated_threshold(pb))
    res = solve(pb, solver="auto", tol=1e-6)
    opt = cvxpy_solve(pb).info["optimal_value"]
    assert res.converged and res.info.get("pruned", 0) > 0
    assert res.certificate.dual <= opt * (1 + 1e-7) and res.certificate.primal == pytest.approx(opt, rel=1e-6)
    assert float(pb.objective(res.V, res.W).sum()) == pytest.approx(res.certificate.primal, rel=1e-12)
    norms = torch.cat([operators.group_norms(res.V), operators.group_norms(res.W)]).ravel()
    kept = norms[norms > 0]
    assert 0 < kept.numel() < 2 * pb.P and float(kept.min()) >= 1e-6 * float(kept.max())
    assert float(operators.cone(pb.X, pb.D, res.V).min()) >= -1e-12
    assert float(operators.cone(pb.X, pb.D, res.W).min()) >= -1e-12

    primal = res.certificate.primal
    V, W, value, dropped = prune_blocks(pb, res.V, res.W, 0.0)
    assert dropped == 0 and V is res.V and float(value.sum()) == primal
    zero_block = int(torch.nonzero(operators.group_norms(res.V)[:, 0] == 0)[0, 0])
    noisy = res.V.clone()
    noisy[zero_block] = 1e-11 * torch.randn(pb.d, 1, dtype=noisy.dtype, generator=torch.Generator().manual_seed(0))
    V, W, value, dropped = prune_blocks(pb, noisy, res.W, 1e-8)
    assert dropped == 1 and torch.equal(V, res.V) and float(value.sum()) == pytest.approx(primal, rel=1e-12)


def test_interior_point_progress_records_are_valid_certificates(breast_cancer):
    """The default path's history carries the interior-point method's certificate after each certified iterate
    (the best so far): each one's dual is below CVXPY + Clarabel's optimum and its primal above it, the gaps
    never grow, and the last record is the result's own certificate."""
    pb, _ = _problem(breast_cancer[0][:150], breast_cancer[1][:150], "relu", "squared", 20)
    seen: list[dict] = []
    res = solve(pb, solver="auto", tol=1e-6, callback=seen.append)
    assert seen == res.history and res.converged
    ipm = [r for r in res.history if r.get("stage") == "ipm"]
    assert len(ipm) >= 3 and res.history[-1]["stage"] in ("polish", "prune")
    opt = cvxpy_solve(pb).info["optimal_value"]
    for r in ipm:
        assert r["column"] == 0 and r["columns"] == 1
        assert r["dual"] <= opt * (1 + 1e-7) and r["primal"] >= opt * (1 - 1e-7)
        assert r["relative_gap"] == pytest.approx((r["primal"] - r["dual"]) / r["primal"], rel=1e-9)
    gaps = [r["relative_gap"] for r in ipm]
    assert all(b <= a for a, b in zip(gaps, gaps[1:], strict=False))
    assert [r["iteration"] for r in res.history] == sorted(r["iteration"] for r in res.history)
    assert res.history[-1]["relative_gap"] == pytest.approx(res.certificate.relative_gap, abs=1e-12)


def test_zero_output_columns_are_certified_apart_and_pruned_whole():
    """Wine (standardised, three one-vs-rest outputs, 40 gates) at half the largest gated threshold: CVXPY +
    Clarabel finds output 1's program optimal at zero (objective L(0) = 1/2) and the others not. solve certifies
    that column at zero without the interior-point method (info["zero_columns"]), solves the other two, and
    returns each at CVXPY's optimum, certified, with a history of whole-program records ending at its
    certificate. prune_blocks, given that column at rounding level instead (as the interior-point method leaves
    it), zeroes it whole."""
    import dataclasses

    from sklearn.datasets import load_wine
    from sklearn.preprocessing import StandardScaler

    from convexnn.ops import certificates, operators
    from convexnn.solvers.problem import prune_blocks

    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    Y = np.where(y[:, None] == np.arange(3)[None, :], 1.0, -1.0)
    pb, _ = _problem(X, Y[:, 0], "relu", "squared", 40)
    pb = dataclasses.replace(pb, Y=torch.as_tensor(Y))
    pb = dataclasses.replace(pb, alpha=0.5 * _gated_threshold(pb))
    seen: list[dict] = []
    res = solve(pb, solver="auto", tol=1e-6, callback=seen.append)
    assert res.converged and res.info["zero_columns"] == 1
    col_opt = [cvxpy_solve(dataclasses.replace(pb, Y=pb.Y[:, k:k + 1])).info["optimal_value"] for k in range(3)]
    assert col_opt[1] == pytest.approx(0.5, rel=1e-7) and max(col_opt[0], col_opt[2]) < 0.4999
    top = torch.maximum(operators.group_norms(res.V).amax(0), operators.group_norms(res.W).amax(0))
    assert float(top[1]) == 0.0 and float(top[0]) > 0 and float(top[2]) > 0
    np.testing.assert_allclose(pb.objective(res.V, res.W).numpy(), col_opt, rtol=1e-6)
    assert res.certificate.dual <= sum(col_opt) * (1 + 1e-7)
    assert seen == res.history and {r["column"] for r in res.history if "column" in r} == {0, 2}
    assert res.history[-1]["primal"] == pytest.approx(res.certificate.primal, rel=1e-12)

    noisy_v, noisy_w = res.V.clone(), res.W.clone()
    g = torch.Generator().manual_seed(0)
    noisy_v[:, :, 1] = 1e-10 * torch.rand(noisy_v[:, :, 1].shape, generator=g, dtype=noisy_v.dtype)
    noisy_w[:, :, 1] = 1e-10 * torch.rand(noisy_w[:, :, 1].shape, generator=g, dtype=noisy_w.dtype)
    noisy_v[:, :, 1:2] = certificates.make_feasible(pb.X, pb.D, pb.H, noisy_v[:, :, 1:2])
    noisy_w[:, :, 1:2] = certificates.make_feasible(pb.X, pb.D, pb.H, noisy_w[:, :, 1:2])
    assert int((operators.group_norms(noisy_v)[:, 1] > 0).sum()) == pb.P  # every block of output 1 is residue
    V, W, values, dropped = prune_blocks(pb, noisy_v, noisy_w, 1e-8)
    assert dropped >= 2 * pb.P and float(V[:, :, 1].abs().max()) == 0.0 and float(W[:, :, 1].abs().max()) == 0.0
    assert float(values[1]) == 0.5
    np.testing.assert_allclose(values[[0, 2]].numpy(), pb.objective(res.V, res.W)[[0, 2]].numpy(), rtol=1e-8)


def test_float32_result_is_certified_by_its_float64_solution(breast_cancer):
    """A float32 program is solved in float64 and its result rounded: the certificate's primal is the rounded
    point's objective, its dual the float64 solution's bound (valid: below CVXPY's optimum). Where the rounding's
    cost alone exceeds tol, solve says so and stops, instead of running the first-order method in float32."""
    X, y = breast_cancer
    pb, _ = _problem(X[:200], y[:200], "relu", "squared", gates=15)
    opt = _reference(("bc200", "relu", "squared"), pb)
    pb32 = pb.to(torch.float32)
    for tol in (1e-4, 1e-5, 1e-7):
        res = solve(pb32, tol=tol)
        cert, cost = res.certificate, res.info["polish"]["rounding_cost"]
        assert res.V.dtype == torch.float32 and res.W.dtype == torch.float32
        assert cert.dual <= opt * (1 + 1e-7) and cert.primal >= opt * (1 - 1e-7)
        # the primal is the objective of the float32 program (X rounded to float32) at the returned point
        assert float(pb32.to(torch.float64).objective(res.V.double(), res.W.double()).sum()) == pytest.approx(
            cert.primal, rel=1e-12)
        assert 0 < cost <= cert.relative_gap
        assert {rec.get("stage") for rec in res.history} <= {"ipm", "polish", "prune"}  # no float32 ADMM
        if tol >= 1e-5:
            assert res.converged
        else:  # the rounding alone costs more than 1e-7: not certified, and the note says why
            assert not res.converged and cert.relative_gap - cost <= tol
            assert any("rounded to float32" in note for note in res.info["polish_notes"])


def test_targets_far_from_unit_scale_are_solved_rescaled(diabetes):
    """Squared loss with targets × 2¹⁰ (RMS ≈ 1e3) and alpha × 2¹⁰: the same program as the unit-scale one, whose
    solutions are the unit-scale solutions × 2¹⁰ and whose objective is × 2²⁰. solve() works on the rescaled
    program (info["target_scale"]) and returns the original's blocks and certificate: the optimum matches CVXPY's
    on the unit-scale program × 2²⁰; history and callback records are in the original's units."""
    X, y = diabetes
    pb, _ = _problem(X[:200], y[:200], "relu", "squared", gates=15)
    opt = _reference(("db200", "relu", "squared"), pb)
    s = 2.0 ** 10
    big = ConvexProblem(pb.X, pb.Y * s, pb.D, pb.H, ALPHA * s, "squared", "relu")
    seen = []
    res = solve(big, tol=1e-6, callback=seen.append)
    cert = res.certificate
    assert res.info["target_scale"] == s and res.converged
    assert cert.dual <= opt * s * s * (1 + 1e-7)
    assert cert.primal == pytest.approx(opt * s * s, rel=1e-6)
    assert float(big.objective(res.V, res.W).sum()) == pytest.approx(cert.primal, rel=1e-12)
    assert res.history[-1]["primal"] == pytest.approx(cert.primal, rel=1e-12)
    assert seen and seen[-1]["primal"] == pytest.approx(cert.primal, rel=1e-12)
    ref = solve(pb, tol=1e-6)
    assert "target_scale" not in ref.info  # unit scale: solved as it is
    assert torch.allclose(res.V, ref.V * s, rtol=1e-4, atol=1e-6 * s * float(ref.V.abs().max()))
