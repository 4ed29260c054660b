"""Active-set Newton polishing (convexnn.solvers.newton) on issue 2's problems: breast cancer (±1
labels) and diabetes (standardised), alpha = 1e-3, 40 Gaussian gates (seed 0), float64. The hinge loss
(barrier method + reduced Newton) on small breast-cancer subsets against CVXPY.

ADMM runs 300 iterations, polish takes its result. Checks: the polished objective within 1e-6 (relative)
of the CVXPY + Clarabel optimum, the point exactly cone-feasible, and its certificate valid and tight
(dual ≤ optimum, gap ≥ 0, relative gap ≤ 1e-6). Soundness: wrong guesses never give a dual above the
optimum.
"""

import dataclasses
import math
import time

import pytest
import torch
from sklearn.datasets import load_breast_cancer

import convexnn.solvers.newton as newton
from convexnn.ops import certificates, operators, soc
from convexnn.ops.patterns import add_intercept, patterns_from_gates, sample_gates
from convexnn.solvers.admm import admm
from convexnn.solvers.newton import dual_certificate, polish
from convexnn.solvers.problem import Certificate, ConvexProblem

ALPHA = 1e-3
# CVXPY + Clarabel optima of (C), squared loss, gates sample_gates(d, 40, 0) (see test_references_slow)
BC_RELU_SQUARED_OPT = 0.04673389773683115
DIABETES_RELU_SQUARED_OPT = 0.2087249727967589


def _problem(data, kind, loss):
    X, y = data
    Xa = add_intercept(X)
    D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], 40, 0))

    def t(a):
        return torch.as_tensor(a, dtype=torch.float64)

    return ConvexProblem(t(Xa), t(y[:, None]), t(D), t(H), ALPHA, loss, kind)


def _cvxpy_optimum(pb):
    pytest.importorskip("cvxpy")
    from convexnn.solvers.cvxpy_ref import cvxpy_solve

    return cvxpy_solve(pb).info["optimal_value"]


def _bound_at(pb, lam, mu):
    """The bound of certificates.dual_value_relu for one column of (C) at Λ (n,) and μ (2P, n) (v-blocks, then w)."""
    P = pb.P
    return float(certificates.dual_value_relu(pb.X, pb.D, pb.Y, lam[:, None], mu[:P].T[:, :, None],
                                              mu[P:].T[:, :, None], pb.alpha, pb.loss).sum())


def _assert_feasible_point(pb, V, W, cert):
    """(C): V and W satisfy their cone constraints exactly; (G): W is None. The certificate's primal is the objective
    at the point."""
    if pb.kind == "relu":
        assert float(operators.cone(pb.X, pb.D, V).min()) >= 0.0
        assert float(operators.cone(pb.X, pb.D, W).min()) >= 0.0
    else:
        assert W is None
    assert cert.primal == pytest.approx(float(pb.objective(V, W).sum()), rel=1e-12)


def _check(pb, V, W, cert, opt, rel=1e-6):
    """Feasible, objective ≈ opt, certificate valid and tight."""
    _assert_feasible_point(pb, V, W, cert)
    obj = float(pb.objective(V, W).sum())
    assert abs(obj - opt) <= rel * abs(opt)
    assert cert.gap >= 0.0
    assert cert.dual <= opt + 1e-9 * max(1.0, abs(opt)), "the dual bound may never exceed the optimum"
    assert cert.relative_gap <= rel


def test_relu_squared_breast_cancer(breast_cancer):
    pb = _problem(breast_cancer, "relu", "squared")
    res = admm(pb, tol=1e-6, max_iter=300)
    t0 = time.perf_counter()
    out = polish(pb, res.V, res.W, certificate=res.certificate, return_info=True)
    seconds = time.perf_counter() - t0
    V, W, cert, info = out
    assert V is not None, info.notes
    _check(pb, V, W, cert, BC_RELU_SQUARED_OPT)
    assert cert.relative_gap <= 1e-9  # near machine precision, not just the test tolerance
    assert cert.relative_gap < res.certificate.relative_gap
    assert info.converged
    print(f"polish on breast cancer (C, squared): {seconds:.2f} s, {info.method}, "
          f"{info.ipm_iterations} IPM + {info.newton_iterations} Newton iterations, {cert}")


def test_relu_squared_diabetes(diabetes):
    pb = _problem(diabetes, "relu", "squared")
    res = admm(pb, tol=1e-6, max_iter=300)
    V, W, cert = polish(pb, res.V, res.W, certificate=res.certificate)
    _check(pb, V, W, cert, DIABETES_RELU_SQUARED_OPT)


@pytest.mark.slow
@pytest.mark.parametrize("name,opt", [("breast_cancer", BC_RELU_SQUARED_OPT),
                                      ("diabetes", DIABETES_RELU_SQUARED_OPT)])
def test_references_slow(request, name, opt):
    """The hard-coded optima are CVXPY + Clarabel's (about 10 s each)."""
    pb = _problem(request.getfixturevalue(name), "relu", "squared")
    assert _cvxpy_optimum(pb) == pytest.approx(opt, rel=1e-9)


@pytest.mark.parametrize("name,loss", [("breast_cancer", "squared"), ("diabetes", "squared"),
                                       ("breast_cancer", "logistic")])
def test_gated(request, name, loss):
    pb = _problem(request.getfixturevalue(name), "gated", loss)
    res = admm(pb, tol=1e-6, max_iter=300)
    V, W, cert = polish(pb, res.V, None, certificate=res.certificate)
    _check(pb, V, W, cert, _cvxpy_optimum(pb))


def test_relu_logistic_certificate(breast_cancer):
    """No CVXPY reference here: Clarabel only reaches 'optimal_inaccurate' on this exponential-cone program
    (its value is 0.5 % above the optimum). The certificate alone proves optimality."""
    pb = _problem(breast_cancer, "relu", "logistic")
    res = admm(pb, tol=1e-6, max_iter=300)
    V, W, cert = polish(pb, res.V, res.W, certificate=res.certificate)
    _assert_feasible_point(pb, V, W, cert)
    assert 0.0 <= cert.relative_gap <= 1e-8


def test_polish_from_an_accurate_point_uses_the_active_set_method_alone(diabetes):
    """A point close to the optimum (here: a polished one, perturbed by 1e-7) needs no interior point."""
    pb = _problem(diabetes, "relu", "squared")
    res = admm(pb, tol=1e-6, max_iter=300)
    V, W, cert = polish(pb, res.V, res.W, certificate=res.certificate)
    g = torch.Generator().manual_seed(0)
    Vp = V + 1e-7 * torch.randn(V.shape, generator=g, dtype=V.dtype) * (operators.group_norms(V) > 0)[:, None, :]
    V2, W2, cert2, info = polish(pb, Vp, W, method="active-set", return_info=True)
    assert info.ipm_iterations == 0 and info.converged
    assert cert2.relative_gap <= 1e-9
    assert cert2.primal == pytest.approx(cert.primal, rel=1e-10)


def test_active_set_certificate_takes_the_loss_dual_at_its_point():
    """Raw breast-cancer features (300 rows, columns up to 4e3), squared loss. The active-set point is returned
    lifted to its cones, a rounding-level move that shifts Xᵀ D_b ∇L by far more on unscaled columns. The certificate
    takes Λ = ∇L at the method's point: relative gap 1.4e-13, where Λ at the lifted point gives 7.1e-11 even with
    exact (Lawson–Hanson) multipliers."""
    X, y = load_breast_cancer(return_X_y=True)
    pb = _problem((X[:300], 2.0 * y[:300] - 1.0), "relu", "squared")
    res = admm(pb, tol=1e-6, max_iter=300)
    V, W, cert, info = polish(pb, res.V, res.W, certificate=res.certificate, return_info=True)
    assert "active-set" in info.method and info.converged
    _assert_feasible_point(pb, V, W, cert)
    assert 0.0 <= cert.relative_gap <= 1e-11
    at_lift, _ = dual_certificate(pb, V, W, nnls_method="scipy")
    assert at_lift.relative_gap > 10 * cert.relative_gap


def test_wrong_guesses_never_overstate_optimality(breast_cancer):
    pb = _problem(breast_cancer, "relu", "squared")
    opt = BC_RELU_SQUARED_OPT
    tol = 1e-9 * opt
    res = admm(pb, tol=1e-6, max_iter=50)
    g = torch.Generator().manual_seed(1)
    # a crude, perturbed point; the active-set method alone, with a tiny budget: wrong working sets
    V = res.V + 0.05 * torch.randn(res.V.shape, generator=g, dtype=res.V.dtype)
    W = res.W + 0.05 * torch.randn(res.W.shape, generator=g, dtype=res.W.dtype)
    for budget in (1, 3, 10):
        out = polish(pb, V, W, method="active-set", max_newton=budget)
        assert out is not None
        Vp, Wp, cert = out
        assert cert.dual <= opt + tol
        assert cert.primal >= opt - tol
        assert float(operators.cone(pb.X, pb.D, Vp).min()) >= 0.0
    # certificates of arbitrary feasible points with arbitrary (even negative) multiplier guesses
    for scale in (0.0, 1e-3, 1.0):
        Vf = certificates.make_feasible(pb.X, pb.D, pb.H, V)
        Wf = certificates.make_feasible(pb.X, pb.D, pb.H, W)
        Mu = scale * torch.randn((pb.n, pb.P, pb.K), generator=g, dtype=V.dtype)
        cert, _ = dual_certificate(pb, Vf, Wf, Mu, -Mu)
        assert cert.dual <= opt + tol
        assert cert.primal >= opt - tol


def test_returns_none_when_not_better_or_not_handled(breast_cancer):
    pb = _problem(breast_cancer, "gated", "squared")
    res = admm(pb, tol=1e-6, max_iter=300)
    V, _, cert = polish(pb, res.V, None)
    exact = Certificate(primal=cert.primal, dual=cert.primal)  # relative gap 0: cannot be beaten
    assert polish(pb, V, None, certificate=exact) is None
    hinge = _hinge_problem(breast_cancer, "gated", 150, 8)
    V, _, cert = polish(hinge, hinge.zeros(), None)
    exact = Certificate(primal=cert.primal, dual=cert.primal)
    out, info = polish(hinge, V, None, certificate=exact, return_info=True)
    assert out is None and "no improvement" in info.notes[-1]


# ----------------------------------------------------------------------------------------------------
# the hinge loss: interior-point start, barrier method, then Newton on the identified reduced problem


def _hinge_problem(data, kind, rows, gates):
    """A subset of the first ``rows`` samples with ``gates`` gates (fast enough for the default run)."""
    X, y = data
    Xa = add_intercept(X[:rows])
    D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], gates, 0))

    def t(a):
        return torch.as_tensor(a, dtype=torch.float64)

    return ConvexProblem(t(Xa), t(y[:rows, None]), t(D), t(H), ALPHA, "hinge", kind)


def _cvxpy_reference(pb):
    pytest.importorskip("cvxpy")
    from convexnn.solvers.cvxpy_ref import cvxpy_solve

    ref = cvxpy_solve(pb)
    if ref.info["status"] != "optimal":
        ref = cvxpy_solve(pb, solver="SCS", eps=1e-9, max_iters=200000)
    return ref.info["optimal_value"]


def _check_hinge(pb, V, W, cert, opt):
    """Feasible, certificate valid and tight (relative gap ≤ 1e-6), objective within 1e-4 of CVXPY's."""
    _assert_feasible_point(pb, V, W, cert)
    obj = float(pb.objective(V, W).sum())
    assert 0.0 <= cert.relative_gap <= 1e-6
    assert cert.dual <= opt * (1 + 1e-6), "the dual bound may never exceed the optimum (CVXPY's tolerance)"
    assert abs(obj - opt) <= 1e-4 * abs(opt)


@pytest.mark.parametrize("kind,rows,gates", [("gated", 200, 10), ("relu", 200, 10), ("gated", 150, 15),
                                             ("relu", 150, 8)])
def test_hinge_against_cvxpy(breast_cancer, kind, rows, gates):
    pb = _hinge_problem(breast_cancer, kind, rows, gates)
    t0 = time.perf_counter()
    out = polish(pb, pb.zeros(), pb.zeros() if kind == "relu" else None, return_info=True)
    seconds = time.perf_counter() - t0
    V, W, cert, info = out
    assert V is not None, info.notes
    _check_hinge(pb, V, W, cert, _cvxpy_reference(pb))
    assert cert.relative_gap <= 1e-10  # the reduced Newton step reaches rounding level, not just 1e-6
    print(f"hinge polish ({kind}, {rows} rows, {gates} gates): {seconds:.2f} s, {info.ipm_iterations} barrier + "
          f"{info.newton_iterations} reduced Newton iterations, {cert}")


def _normal(g, *shape):
    """Standard normal draws of ``shape`` from the generator g (float64)."""
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _positive(g, *shape):
    """Draws of ``shape`` from U(0.1, 1.1), away from zero (float64): interior slacks and multipliers."""
    return 0.1 + torch.rand(shape, generator=g, dtype=torch.float64)


def _interior_cone_pairs(col, g, scale=1.0):
    """Random norm-cone pairs strictly inside their cones for the blocks of ``col``: x (nb, d) of entries
    ``scale``·N(0, 1), t > ‖x‖ by U(0.1, 1.1), z of norm U(0, 1)·α."""
    x = scale * torch.randn((col.nb, col.d), generator=g, dtype=torch.float64)
    t = torch.linalg.vector_norm(x, dim=1) + 0.1 + torch.rand(col.nb, generator=g, dtype=torch.float64)
    z = torch.randn((col.nb, col.d), generator=g, dtype=torch.float64)
    z *= col.alpha * torch.rand((col.nb, 1), generator=g, dtype=torch.float64) / torch.linalg.vector_norm(
        z, dim=1, keepdim=True)
    return t, x, z


def _scaled_complementarity(cones, dt, dx, dz):
    """The left side λ̂ ∘ (W (0, dz) + W⁻¹ (dt, dx)) of the norm cones' linearised complementarity."""
    nt = cones.nt
    w = nt.apply((torch.zeros_like(dt), dz))
    wi = nt.apply_inv((dt, dx))
    return soc.jordan(nt.lam, (w[0] + wi[0], w[1] + wi[1]))


def test_hinge_ipm_direction_solves_the_unreduced_newton_system(breast_cancer):
    """The hinge interior-point direction, found through the reduced (n-space) system, against every equation of
    the full linearised KKT system it eliminates:
        −Gᵀdμ − Fᵀ(y dπ₁) − dz = −r_d,  −dπ₀ − dπ₁ = −r_ξ,  G dx − ds = −r_p,  dξ + y F dx − de = −r_e,
        μ ds + s dμ = −F_c,  π₀ dξ + ξ dπ₀ = −F₀,  π₁ de + e dπ₁ = −F₁,  λ̂ ∘ (W (0, dz) + W⁻¹ (dt, dx)) = r
    at random positive variables, random norm-cone pairs (t, x), (α, z) strictly inside their cones, residuals and
    targets."""

    pb = _hinge_problem(breast_cancer, "relu", 40, 3)
    col = newton.column._Column(pb, 0)
    n, d, nb = col.n, col.d, col.nb
    g = torch.Generator().manual_seed(5)
    t, x, z = _interior_cone_pairs(col, g)
    cones = newton.interior_point._NormCones(t, x, z, col.alpha)
    xi, e, pi0, pi1 = _positive(g, n), _positive(g, n), _positive(g, n) / n, _positive(g, n) / n
    s, mu, rp, Fc = _positive(g, nb, n), _positive(g, nb, n), _normal(g, nb, n), _normal(g, nb, n)
    S = cones.block() + newton.newton_system._weighted_grams(col.X, None, mu / s)
    th0, th1 = pi0 / xi, pi1 / e
    om = th0 * th1 / (th0 + th1)
    system = newton.newton_system._IPMSystem(col, S, om)
    assert system.ok
    rd, rxi, re, F0, F1 = _normal(g, nb, d), _normal(g, n) / n, _normal(g, n), _normal(g, n) / n, _normal(g, n) / n
    r = (_normal(g, nb), _normal(g, nb, d))
    (dx, dt, dz, dxi, de, dpi0, dpi1, ds, dmu), ap, ad = newton.hinge._hinge_ipm_direction(
        system, col, (x, t, z, xi, e, pi0, pi1, s, mu), (rd, rxi, re, rp), om, (Fc, F0, F1), cones, r, refine=2,
        scratch=newton.interior_point._Scratch(s.shape, s.dtype, s.device))
    y = col.y
    lhs = -col.block_grad(y * dpi1) - (col.Sg * dmu) @ col.X - dz
    comp = _scaled_complementarity(cones, dt, dx, dz)
    assert torch.allclose(comp[0], r[0], atol=1e-9) and torch.allclose(comp[1], r[1], atol=1e-9)
    assert torch.allclose(col.slack(dx) - ds, -rp, atol=1e-10)
    assert torch.allclose(mu * ds + s * dmu, -Fc, atol=1e-10)
    assert torch.allclose(lhs, -rd, atol=1e-9 * float(rd.abs().max()))
    assert torch.allclose(-dpi0 - dpi1, -rxi, atol=1e-12)
    assert torch.allclose(dxi + y * col.pred(dx) - de, -re, atol=1e-10)
    assert torch.allclose(pi0 * dxi + xi * dpi0, -F0, atol=1e-12)
    assert torch.allclose(pi1 * de + e * dpi1, -F1, atol=1e-12)
    assert 0.0 < ap <= 1.0 and 0.0 < ad <= 1.0


def test_hinge_ipm_certifies_a_bracket_of_the_optimum(breast_cancer):
    """The hinge interior-point method on its own (the barrier method's start for (C)): a certified point with
    relative gap ≤ 1e-3 whose certificate brackets CVXPY's optimum."""

    pb = _hinge_problem(breast_cancer, "relu", 150, 8)
    info = newton.PolishInfo()
    x, mu, u, prim, dual = newton.hinge._hinge_ipm(newton.column._Column(pb, 0), info, gap_tol=1e-3)
    opt = _cvxpy_reference(pb)
    assert (prim - dual) / prim <= 1e-3
    assert dual <= opt * (1 + 1e-6) and prim >= opt * (1 - 1e-6)
    assert 0.0 <= float(u.min()) and float(u.max()) <= 1.0 / pb.n
    assert info.ipm_iterations < 60


def test_hinge_ipm_goes_on_past_max_iter_while_on_course(breast_cancer):
    """Past max_iter the hinge interior-point method goes on (up to long_iter) only while its complementarity falls
    fast enough to reach gap_tol by long_iter: then it ends where the uncapped run ends; cut at max_iter, or with a
    long_iter too close, it stops there (with a note) before certifying anything."""
    pb = _hinge_problem(breast_cancer, "relu", 150, 8)

    def run(**kw):
        info = newton.PolishInfo()
        out = newton.hinge._hinge_ipm(newton.column._Column(pb, 0), info, gap_tol=1e-3, **kw)
        return out, info

    (x, _, _, prim, dual), info = run(max_iter=100)
    assert (prim - dual) / prim <= 1e-3 and 15 < info.ipm_iterations < 60
    (x2, _, _, prim2, dual2), info2 = run(max_iter=15, long_iter=100)
    assert info2.ipm_iterations == info.ipm_iterations
    assert (prim2, dual2) == (prim, dual) and torch.equal(x2, x)
    for kw in ({"max_iter": 15}, {"max_iter": 15, "long_iter": 16}):
        (_, _, _, prim3, _), info3 = run(**kw)
        assert info3.ipm_iterations == 15 and prim3 == math.inf
    assert any("hinge ipm: stopped at iteration 15, its complementarity not on course" in s for s in info3.notes)


def test_hinge_barrier_from_the_gates_when_the_ipm_start_fails(breast_cancer, monkeypatch):
    """(C): when the interior-point start certifies nothing (here: one iteration allowed), the barrier method runs
    from the gates as it did alone, to the same optimum; the info says so. With the start, fewer Newton steps."""
    pb = _hinge_problem(breast_cancer, "relu", 150, 8)
    V, W, cert, info = polish(pb, pb.zeros(), pb.zeros(), return_info=True)
    monkeypatch.setattr(newton.hinge, "HINGE_IPM_MAX_ITER", 1)
    V1, W1, cert1, info1 = polish(pb, pb.zeros(), pb.zeros(), return_info=True)
    assert any("hinge ipm: nothing certified; barrier method from the gates" in s for s in info1.notes)
    assert not any("hinge ipm" in s for s in info.notes)
    assert cert.relative_gap <= 1e-10 and cert1.relative_gap <= 1e-10
    assert cert1.primal == pytest.approx(cert.primal, rel=1e-9)
    assert info.ipm_iterations + info.newton_iterations < info1.ipm_iterations + info1.newton_iterations


def test_hinge_after_admm_improves_its_certificate(breast_cancer):
    """As solve() would call it: after ADMM, with ADMM's certificate; float32 input comes back float32."""
    pb = _hinge_problem(breast_cancer, "relu", 150, 8)
    res = admm(pb, tol=1e-6, max_iter=100)
    V, W, cert = polish(pb, res.V, res.W, certificate=res.certificate)
    assert cert.relative_gap < res.certificate.relative_gap and cert.relative_gap <= 1e-6
    pb32 = ConvexProblem(pb.X.float(), pb.Y.float(), pb.D.float(), pb.H.float(), ALPHA, "hinge", "gated")
    V32, W32, cert32 = polish(pb32, pb32.zeros(), None)
    assert V32.dtype == torch.float32 and W32 is None
    assert cert32.relative_gap <= 1e-4  # certified at the float32 point (rounding: ~1e-5)


def test_hinge_certificates_never_overstate_optimality(breast_cancer):
    """Arbitrary loss-dual candidates and multipliers, and a crude barrier run: the bound stays below."""
    pb = _hinge_problem(breast_cancer, "relu", 150, 8)
    opt = _cvxpy_reference(pb)
    g = torch.Generator().manual_seed(2)
    V, W, _ = polish(pb, pb.zeros(), pb.zeros(), hinge_max_iter=5)  # far from optimal
    for scale in (0.0, 0.5, 3.0):
        Lam = scale * torch.randn((pb.n, 1), generator=g, dtype=pb.X.dtype) / pb.n
        Mu = scale * torch.randn((pb.n, pb.P, 1), generator=g, dtype=pb.X.dtype)
        cert, _ = dual_certificate(pb, V, W, Mu, -Mu, Lam=Lam)
        assert cert.dual <= opt * (1 + 1e-6)
        assert cert.primal >= opt * (1 - 1e-6)


def test_hinge_stops_at_the_gap_target(breast_cancer):
    """(C), hinge, with a gap target (what solve(solver="auto", tol) passes): certified to the target against CVXPY,
    in fewer steps than to rounding level; without one, to rounding level."""
    pb = _hinge_problem(breast_cancer, "relu", 150, 8)
    opt = _cvxpy_reference(pb)
    V, W, cert, info = polish(pb, pb.zeros(), pb.zeros(), method="ipm", gap_target=1e-5, return_info=True)
    V0, W0, cert0, info0 = polish(pb, pb.zeros(), pb.zeros(), method="ipm", return_info=True)
    assert 0.0 <= cert.relative_gap <= 1e-5 and cert0.relative_gap <= 1e-10
    assert cert.dual <= opt * (1 + 1e-6) and abs(cert.primal - opt) <= 1e-5 * opt
    assert float(operators.cone(pb.X, pb.D, V).min()) >= 0.0 and float(operators.cone(pb.X, pb.D, W).min()) >= 0.0
    assert info.ipm_iterations + info.newton_iterations < info0.ipm_iterations + info0.newton_iterations


def test_hinge_barrier_on_raw_features_checks_its_newton_directions(monkeypatch):
    """Unscaled breast-cancer features (columns 1e-3 to 1e3): near the hinge's kinks the factored Newton solve
    loses its accuracy, and its direction stops descending (at τ ≈ 3e-7 here). The barrier method counts that as
    a failed centering (it once counted it as centred, and shrank τ on from a point whose certificate then
    collapsed); with :meth:`_IPMSystem.solve_checked` solving the whole matrix there, it goes on to a certified
    point a hundred times better."""
    X, y = load_breast_cancer(return_X_y=True)
    col = newton.column._Column(_hinge_problem((X, 2.0 * y - 1.0), "relu", 150, 8), 0)
    x, mu, u, _ = newton.hinge._hinge_barrier(col, newton.PolishInfo(), gap_tol=1e-10)
    checked = newton.hinge._hinge_gap(col, x, mu, u)
    with monkeypatch.context() as m:
        m.setattr(newton.newton_system._IPMSystem, "solve_checked",
                  lambda self, r, refine=1: (self.solve(r, refine), 0.0))
        info = newton.PolishInfo()
        x, mu, u, _ = newton.hinge._hinge_barrier(col, info, gap_tol=1e-10)
    factored = newton.hinge._hinge_gap(col, x, mu, u)
    assert "hinge barrier: the Newton direction is not a descent direction (rounding)" in info.notes
    assert factored > 1e-3 and checked < 1e-2 * factored


def test_hinge_reduced_newton_by_lu_matches_least_squares(breast_cancer, monkeypatch):
    """The reduced Newton step solves its KKT systems by LU where they are clearly regular, by minimum-norm least
    squares elsewhere: from the same barrier point, least squares throughout reaches the same point."""
    pb = _hinge_problem(breast_cancer, "relu", 150, 8)
    col = newton.column._Column(pb, 0)
    x, mu, u, tau = newton.hinge._hinge_barrier(col, newton.PolishInfo(), gap_tol=1e-5)
    regular = newton.hinge._regular_lu_solve
    used = []

    def counted(J, rhs):
        out = regular(J, rhs)
        used.append(out is not None)
        return out

    monkeypatch.setattr(newton.hinge, "_regular_lu_solve", counted)
    x1, p1, mu1 = newton.hinge._hinge_reduced(col, x, mu, u, tau, newton.PolishInfo())
    assert any(used)
    monkeypatch.setattr(newton.hinge, "_regular_lu_solve", lambda J, rhs: None)
    x2, p2, mu2 = newton.hinge._hinge_reduced(col, x, mu, u, tau, newton.PolishInfo())
    assert torch.allclose(x1, x2, rtol=1e-8, atol=1e-10 * float(x1.abs().max()))
    assert torch.allclose(p1, p2, atol=1e-8) and torch.allclose(mu1, mu2, rtol=1e-6, atol=1e-10)
    assert newton.hinge._hinge_repaired_gap(col, x1, mu1, p1 / col.n) <= 1e-8  # from the barrier point's 1e-5


def _reduced_kkt(g: torch.Generator, sizes: list[int], ne: int, bn: torch.Tensor | None = None,
                 g_scale: float = 1.0):
    """A random reduced hinge KKT system of :func:`_hinge_reduced`'s form: (bn, ẑ, G, r1, r2) and its whole matrix
    J = [[blockdiag(α/‖z_b‖ (I − ẑ_b ẑ_bᵀ)), −Gᵀ], [G, 0]], α = 0.3 (block norms ``bn``: those of the draws)."""
    z = [_normal(g, sz) for sz in sizes]
    bn = torch.stack([torch.linalg.vector_norm(v) for v in z]) if bn is None else bn
    zh = torch.cat([v / torch.linalg.vector_norm(v) for v in z])
    mz = sum(sizes)
    G = g_scale * _normal(g, ne, mz)
    J = torch.zeros((mz + ne, mz + ne), dtype=torch.float64)
    off = 0
    for j, sz in enumerate(sizes):
        u = zh[off:off + sz]
        J[off:off + sz, off:off + sz] = 0.3 / bn[j] * (torch.eye(sz, dtype=torch.float64) - torch.outer(u, u))
        off += sz
    J[:mz, mz:], J[mz:, :mz] = -G.T, G
    return bn, zh, G, _normal(g, mz), _normal(g, ne), J


def test_hinge_eliminated_kkt_step_solves_the_whole_system():
    """The reduced hinge Newton step from the block-eliminated (ne + nb) system is the whole (mz + ne) system's:
    its solution where J is regular (against torch.linalg.solve), and a solution where J is singular and the
    system consistent (two kink rows equal: the multipliers are not unique), the whole system's least squares' one."""
    g = torch.Generator().manual_seed(5)
    sizes = [3, 5, 4, 2]
    bn, zh, G, r1, r2, J = _reduced_kkt(g, sizes, 6)
    mz = sum(sizes)
    exact = torch.linalg.solve(J, torch.cat([r1, r2])[:, None])[:, 0]
    steps = list(newton.hinge._hinge_eliminated_kkt(sizes, bn, zh, 0.3, G, r1, r2))
    assert len(steps) == 2  # the LU step (the small system is regular), then the least-squares one
    for step in steps:
        assert torch.allclose(step, exact, rtol=1e-9, atol=1e-11)
    # singular: kink rows 0 and 1 equal, and so their right-hand sides
    G[1], r2[1] = G[0], r2[0]
    J[mz + 1, :mz], J[:mz, mz + 1] = G[0], -G[0]
    rhs = torch.cat([r1, r2])[:, None]
    assert newton.hinge._regular_lu_solve(J, rhs) is None
    steps = list(newton.hinge._hinge_eliminated_kkt(sizes, bn, zh, 0.3, G, r1, r2))
    assert len(steps) == 1  # no LU step: the minimum-norm least squares in (dν, s)
    assert float((J @ steps[0] - rhs[:, 0]).abs().max()) <= 1e-10 * float(rhs.abs().max())
    whole = list(newton.hinge._hinge_whole_kkt(sizes, bn, zh, 0.3, G, r1, r2))
    assert float((J @ whole[-1] - rhs[:, 0]).abs().max()) <= 1e-10 * float(rhs.abs().max())
    # J's null space is (0, e₀ − e₁): both minimum norms split the two multipliers equally, the same step
    assert torch.allclose(steps[0], whole[-1], rtol=1e-9, atol=1e-11)



def test_hinge_eliminated_kkt_step_on_badly_scaled_systems():
    """Raw features: G's entries ~1e3, c_b = α/‖z_b‖ from 1e5 to 1e-5 (spectf raw's systems span 2e-3 to 1e3), and
    J singular (two equal kink rows). The eliminated system, equilibrated, gives the whole system's minimum-norm
    step (unequilibrated, its SVD least squares drops the constraint directions as rounding: a step 100% off,
    leaving 13% of the residual)."""
    sizes = [4, 6, 3, 5, 4]
    bn = 0.3 * 10.0 ** torch.linspace(-5.0, 5.0, len(sizes), dtype=torch.float64)
    bn, zh, G, r1, r2, J = _reduced_kkt(torch.Generator().manual_seed(6), sizes, 12, bn=bn, g_scale=1e3)
    mz = sum(sizes)
    G[1], r2[1] = G[0], r2[0]
    J[mz + 1, :mz], J[:mz, mz + 1] = G[0], -G[0]
    whole = list(newton.hinge._hinge_whole_kkt(sizes, bn, zh, 0.3, G, r1, r2))[-1]
    steps = list(newton.hinge._hinge_eliminated_kkt(sizes, bn, zh, 0.3, G, r1, r2))
    assert len(steps) == 1  # singular: least squares only
    assert float((steps[0] - whole).norm()) <= 1e-7 * float(whole.norm())


def test_hinge_reduced_newton_eliminated_matches_whole_system(breast_cancer, monkeypatch):
    """From the same barrier point, the reduced Newton finish reaches the same point with the block-eliminated
    steps as with the whole system's steps only; a deadline already passed stops it before its first step."""
    col = newton.column._Column(_hinge_problem(breast_cancer, "relu", 150, 8), 0)
    x, mu, u, tau = newton.hinge._hinge_barrier(col, newton.PolishInfo(), gap_tol=1e-5)
    x1, p1, mu1 = newton.hinge._hinge_reduced(col, x, mu, u, tau, newton.PolishInfo())
    monkeypatch.setattr(newton.hinge, "_hinge_eliminated_kkt", lambda *args: iter(()))
    x2, p2, mu2 = newton.hinge._hinge_reduced(col, x, mu, u, tau, newton.PolishInfo())
    assert torch.allclose(x1, x2, rtol=1e-8, atol=1e-10 * float(x1.abs().max()))
    assert torch.allclose(p1, p2, atol=1e-8) and torch.allclose(mu1, mu2, rtol=1e-6, atol=1e-10)
    assert newton.hinge._hinge_repaired_gap(col, x1, mu1, p1 / col.n) <= 1e-8
    info = newton.PolishInfo()
    past = newton.diagnostics._Deadline(time.perf_counter() - 1.0)
    newton.hinge._hinge_reduced(col, x, mu, u, tau, info, deadline=past)
    assert info.newton_iterations == 0


def test_hinge_barrier_skips_the_finish_once_certified(breast_cancer):
    """The reduced Newton finish is only tried on a barrier point not yet certified to the target: with a target the
    barrier's own points reach, it is never called (it costs more than the barrier stages: 19 s of spambase
    standardised's 50 s went to one finish after such a point)."""
    col = newton.column._Column(_hinge_problem(breast_cancer, "relu", 150, 8), 0)
    calls = []

    def finish(x, mu, u, tau):
        calls.append(tau)
        return x, mu, u, math.inf

    # the finish is due from a gap of 1e-4, where the barrier's point is certified to the target already
    newton.hinge._hinge_barrier(col, newton.PolishInfo(), gap_tol=1e-4, finish=finish, finish_from=1e-4)
    assert not calls
    newton.hinge._hinge_barrier(col, newton.PolishInfo(), gap_tol=1e-8, finish=finish, finish_from=1e-4)
    assert calls


def test_regular_lu_solve_refuses_singular_systems():
    """LU's solution for a regular matrix, None for a numerically singular one (where least squares must choose
    among the solutions) and for an exactly singular one."""
    g = torch.Generator().manual_seed(1)
    A = torch.randn((30, 30), generator=g, dtype=torch.float64)
    b = torch.randn((30, 1), generator=g, dtype=torch.float64)
    assert torch.allclose(newton.hinge._regular_lu_solve(A, b), torch.linalg.solve(A, b)[:, 0], rtol=1e-10, atol=1e-12)
    B = torch.randn((30, 29), generator=g, dtype=torch.float64)
    singular = B @ torch.randn((29, 30), generator=g, dtype=torch.float64)  # rank 29, up to rounding
    assert newton.hinge._regular_lu_solve(singular, b) is None
    A[:, 3] = 0.0
    assert newton.hinge._regular_lu_solve(A, b) is None


# ----------------------------------------------------------------------------------------------------
# the interior-point path with a gap target (what solve(solver="auto") runs for (C)), and its linear algebra


def _small_relu(data, loss, rows, gates, seed=0):
    X, y = data
    Xa = add_intercept(X[:rows])
    D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], gates, seed))

    def t(a):
        return torch.as_tensor(a, dtype=torch.float64)

    return ConvexProblem(t(Xa), t(y[:rows, None]), t(D), t(H), ALPHA, loss, "relu")


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_ipm_with_gap_target_against_cvxpy(breast_cancer, loss):
    """polish(method="ipm", gap_target) from zeros: stops in the interior-point method once certified; the
    certificate brackets the CVXPY + Clarabel optimum and the objective is within the target of it."""
    pb = _small_relu(breast_cancer, loss, 150, 12)
    opt = _cvxpy_optimum(pb)
    zero = pb.zeros()
    V, W, cert, info = polish(pb, zero, zero.clone(), method="ipm", gap_target=1e-6, return_info=True)
    if loss == "squared":  # here the interior-point method certifies the target itself
        assert info.method == "ipm" and info.newton_iterations == 0
    if info.method == "ipm":
        assert info.ipm_gap <= 1e-6
    else:  # it stalled above the target (rounding): the active-set phase finished the job
        assert info.method == "ipm+active-set" and info.converged
    assert cert.relative_gap <= 1e-6
    assert cert.dual <= opt + 1e-9 * abs(opt)  # sound
    assert cert.primal <= opt + 2e-6 * abs(opt)  # not worse than Clarabel beyond the target
    # Clarabel's exponential-cone (logistic) optima are themselves only good to a few 1e-6
    assert abs(cert.primal - opt) <= (2e-6 if loss == "squared" else 1e-5) * abs(opt)
    # the certificate is the project's own bound at the returned point
    _assert_feasible_point(pb, V, W, cert)


def test_active_set_stopped_short_but_certified_meets_the_gap_target(breast_cancer):
    """An active-set run that ends short of the KKT tolerance (here: its Newton budget) at a point already certified
    to ``gap_target`` is the column's result, with no restart: converged, and its certificate sound against
    CVXPY + Clarabel."""
    pb = _small_relu(breast_cancer, "squared", 150, 12)
    opt = _cvxpy_optimum(pb)
    zero = pb.zeros()
    V, W, cert, info = polish(pb, zero, zero.clone(), method="ipm", gap_target=1e-4, ipm_max_iter=10, max_newton=4,
                              return_info=True)
    assert info.ipm_gap > 1e-4  # the interior-point method stopped above the target: the active-set phase ran
    assert any(note.startswith("active-set: stopped short, at a point certified") for note in info.notes)
    assert info.method == "ipm+active-set" and info.converged
    assert info.newton_iterations <= 4  # one start, not two
    assert cert.relative_gap <= 1e-4
    assert cert.dual <= opt + 1e-9 * abs(opt) and cert.primal >= opt - 1e-9 * abs(opt)
    assert float(operators.cone(pb.X, pb.D, V).min()) >= 0.0
    assert float(operators.cone(pb.X, pb.D, W).min()) >= 0.0


def test_ipm_with_centrality_correctors_against_cvxpy(breast_cancer):
    """The interior-point method with and without Gondzio's centrality correctors (the default: two for the
    squared loss on costly iterations, one elsewhere): both certify the CVXPY + Clarabel optimum; the certificate
    it reports is the project's bound at its point; the iterate of lowest objective is not above it."""

    pb = _small_relu(breast_cancer, "squared", 150, 12)
    opt = _cvxpy_optimum(pb)
    col = newton.column._Column(pb, 0)
    for correctors in (0, 2):
        x, _, _, gap, lam, mu_c, xl, _ = newton.interior_point._ipm(col, newton.PolishInfo(), gap_tol=1e-7,
                                                                    correctors=correctors)
        _, _, _, primal = col.repaired(x)
        dual = _bound_at(pb, lam, mu_c)
        assert gap == pytest.approx((primal - dual) / primal, rel=1e-9, abs=1e-15)
        # Clarabel's value is good to its relative gap tolerance, 1e-8 (here 1e-8 above a feasible point's objective)
        assert dual <= opt + 1e-9 * abs(opt) and opt <= primal + 1e-7 * abs(opt)
        assert gap <= 1e-5
        assert col.repaired(xl)[3] <= primal


def test_solve_auto_relu_polishes_from_scratch(breast_cancer):
    """solve(auto) on a moderate (C) skips the first-order start and matches CVXPY to the tolerance."""
    from convexnn.solvers import ipm_direct, solve

    pb = _small_relu(breast_cancer, "squared", 120, 10, seed=1)
    assert ipm_direct(pb)
    opt = _cvxpy_optimum(pb)
    res = solve(pb, tol=1e-6)
    assert res.solver == "polish" and res.converged
    assert res.certificate.relative_gap <= 1e-6
    assert res.certificate.dual <= opt + 1e-9 * abs(opt)
    assert abs(res.certificate.primal - opt) <= 2e-6 * abs(opt)
    tight = solve(pb, tol=1e-12)  # beyond the interior point's reach: the active-set phase finishes
    assert tight.certificate.relative_gap <= 1e-9
    assert tight.certificate.dual <= opt + 1e-9 * abs(opt)


def test_relu_dual_bound_matches_certificates_module(breast_cancer):
    """_relu_dual_bound (used inside the interior-point method) is certificates.dual_value_relu; with
    projected-gradient refinement it only tightens, and stays below the optimum."""
    pb = _small_relu(breast_cancer, "logistic", 100, 8)
    col = newton.column._Column(pb, 0)
    gen = torch.Generator().manual_seed(0)
    lam = -0.5 * pb.Y[:, 0] / pb.n + 0.1 * torch.randn(pb.n, generator=gen, dtype=torch.float64) / pb.n
    mu = torch.rand((col.nb, pb.n), generator=gen, dtype=torch.float64) * 1e-3
    ref = float(certificates.dual_value_relu(pb.X, pb.D, pb.Y, lam[:, None], mu[:pb.P].T[:, :, None],
                                             mu[pb.P:].T[:, :, None], pb.alpha, pb.loss).sum())
    b0, _, lam0 = newton.certificate._relu_dual_bound(col, lam, mu, steps=0)
    at_lam0 = float(certificates.dual_value_relu(pb.X, pb.D, pb.Y, lam0[:, None], mu[:pb.P].T[:, :, None],
                                                 mu[pb.P:].T[:, :, None], pb.alpha, pb.loss).sum())
    assert b0 == pytest.approx(at_lam0, rel=1e-12, abs=1e-15)
    assert b0 >= ref - 1e-15  # the Λ it used is the given one or its repair, whichever bounds higher
    b1, mu1, lam1 = newton.certificate._relu_dual_bound(col, lam, mu, steps=50)
    assert b1 >= b0 - 1e-15
    again = float(certificates.dual_value_relu(pb.X, pb.D, pb.Y, lam1[:, None], mu1[:pb.P].T[:, :, None],
                                               mu1[pb.P:].T[:, :, None], pb.alpha, pb.loss).sum())
    assert again == pytest.approx(b1, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("rows,gates", [(60, 6), (300, 4)])  # mode "n" (n ≤ P·d) and mode "pd" (P·d < n)
def test_ipm_newton_system_against_dense(breast_cancer, rows, gates):
    """_IPMSystem.solve (Woodbury through syrk + LAPACK Cholesky) against a dense solve of FᵀΛF + blockdiag S."""
    pb = _small_relu(breast_cancer, "logistic", rows, gates)
    col = newton.column._Column(pb, 0)
    n, d, nb = pb.n, pb.d, col.nb
    gen = torch.Generator().manual_seed(1)
    A = torch.randn((nb, d, d), generator=gen, dtype=torch.float64)
    S = A @ A.transpose(1, 2) + 0.1 * torch.eye(d, dtype=torch.float64)
    lam = torch.rand(n, generator=gen, dtype=torch.float64) / n
    system = newton.newton_system._IPMSystem(col, S, lam)
    assert system.ok and system.mode == ("n" if n <= pb.P * d else "pd")
    F = torch.cat([col.F(b) for b in range(nb)], dim=1)  # (n, nb·d): a = F vec(x)
    Hd = F.T @ (lam[:, None] * F) + torch.block_diag(*S)
    r = torch.randn((nb, d), generator=gen, dtype=torch.float64)
    ref = torch.linalg.solve(Hd, r.reshape(-1)).reshape(nb, d)
    got = system.solve(r)
    assert float((got - ref).abs().max()) <= 1e-8 * float(ref.abs().max())
    # without refinement the factor alone solves it too, and apply is the dense product (in mode "pd" both go
    # through the kept F_vᵀΛF_v instead of X and D)
    assert float((system.solve(r, refine=0) - ref).abs().max()) <= 1e-8 * float(ref.abs().max())
    Hr = (Hd @ r.reshape(-1)).reshape(nb, d)
    assert torch.allclose(system.apply(r), Hr, rtol=1e-12, atol=1e-12 * float(Hr.abs().max()))


def _random_newton_system(pb, gen, big):
    """An _IPMSystem of pb's first column with random positive definite S_b (d×d, ≈ 1e-3 + 1e-6 I) and random Λ
    (≈ 1/n, times ``big`` on 30% of the rows), after checking that it factored in the mode newton_mode names and
    that its dense() is FᵀΛF + blockdiag S formed from F. Returns (system, r (nb, d) random, res(x): the relative
    residual ‖r − Hx‖/‖r‖ against that dense H, and res of a dense LU solve of the equilibrated H)."""
    col = newton.column._Column(pb, 0)
    n, d, nb = pb.n, pb.d, col.nb
    F = torch.cat([col.F(b) for b in range(nb)], dim=1)  # (n, nb·d): a = F vec(x)
    A = torch.randn((nb, d, d), generator=gen, dtype=torch.float64)
    S = A @ A.transpose(1, 2) * 1e-3 + 1e-6 * torch.eye(d, dtype=torch.float64)
    lam = torch.rand(n, generator=gen, dtype=torch.float64) / n
    lam[torch.rand(n, generator=gen) < 0.3] *= big
    system = newton.newton_system._IPMSystem(col, S, lam)
    assert system.ok and system.mode == ("n" if n <= pb.P * d else "pd")
    Hd = F.T @ (lam[:, None] * F) + torch.block_diag(*system.S)
    assert torch.allclose(system.dense(), Hd, rtol=1e-13, atol=1e-13 * float(Hd.abs().max()))
    r = torch.randn((nb, d), generator=gen, dtype=torch.float64)

    def res(x):
        return float(torch.linalg.vector_norm(r.reshape(-1) - Hd @ x.reshape(-1)) / torch.linalg.vector_norm(r))

    sc = Hd.diagonal().rsqrt()
    return system, r, res, res(sc * torch.linalg.solve(sc[:, None] * Hd * sc[None, :], sc * r.reshape(-1)))


# mode "n" (n ≤ P·d: its Woodbury form stays about as accurate as a dense solve) and mode "pd" (P·d < n: at
# Λ ≈ 1e8 the factored solve's residual is about ‖r‖, a dense solve's 2e-6)
@pytest.mark.parametrize("rows,gates,fails", [(60, 6, False), (300, 4, True)])
def test_ipm_newton_system_dense_and_checked_solve(breast_cancer, rows, gates, fails):
    """_IPMSystem.dense is FᵀΛF + blockdiag S formed from F; solve_checked keeps the factored solve where its
    residual is small, and where the loss curvature Λ dominates S (the hinge barrier near its kinks: Λ ~ 1/(nτ))
    and the factored form's cancellation leaves a large residual, it solves the whole matrix instead (reduced to
    P·d unknowns, or as it is), to about the residual of a dense LU solve of the same matrix."""
    pb = _small_relu(breast_cancer, "logistic", rows, gates)
    gen = torch.Generator().manual_seed(1)
    system, r, res, lu = _random_newton_system(pb, gen, 1.0)  # well conditioned: the factored solve, unchanged
    x, rx = system.solve_checked(r, refine=1)
    assert torch.equal(x, system.solve(r, 1)) and rx <= 1e-10 and res(x) <= 1e-10
    system, r, res, lu = _random_newton_system(pb, gen, 1e8)
    factored = res(system.solve(r, 3))
    assert (factored > 1e3 * lu) == fails
    x, rx = system.solve_checked(r, refine=3)
    assert res(x) <= 10.0 * lu and rx <= 10.0 * lu  # (its own residual, through apply)
    # the reduced form ((q, p) basis, P·d unknowns) and the whole matrix, each on its own, solve it as well
    for solver in (system._reduced_solver(), system._dense_solver()):
        assert res(system._refined(solver, r, 3)) <= 10.0 * lu
    # with dense_max below P·d neither is formed: the factored solve is returned as it is
    x2, _ = system.solve_checked(r, refine=3, dense_max=pb.P * pb.d - 1)
    assert res(x2) == pytest.approx(factored, rel=1e-6)


@pytest.mark.parametrize("rows,gates", [(60, 12), (300, 4)])  # modes "n" and "pd"
def test_ipm_newton_system_checked_solve_gated(rows, gates):
    """For (G) (no w-blocks: the whole matrix is Γ + S, solved as it is), on raw breast-cancer features: dense() is
    FᵀΛF + blockdiag S, and where Λ ≈ 1e8 on 30% of the rows leaves the factored solve's residual far above a dense
    LU solve's (8e8 and 6e16 against 5e-2 and 7e-8), solve_checked solves to within 10 times LU's residual."""
    X, y = load_breast_cancer(return_X_y=True)
    pb = dataclasses.replace(_small_relu((X, 2.0 * y - 1.0), "logistic", rows, gates), kind="gated")
    system, r, res, lu = _random_newton_system(pb, torch.Generator().manual_seed(1), 1e8)
    assert not system.col.relu and system.col.nb == pb.P
    assert res(system.solve(r, 3)) > 1e3 * lu
    x, _ = system.solve_checked(r, refine=3)
    assert res(x) <= 10.0 * lu


@pytest.mark.parametrize("rows,gates", [(300, 4), (200, 8)])  # n > P·d, and 0.53·P·d < n < P·d
def test_ipm_newton_systems_share_the_constant_gram(breast_cancer, rows, gates):
    """With constant_lam (the squared loss) the "pd" mode forms F_vᵀΛF_v once, in the workspace, and the later
    systems of the same workspace factor a copy of it: each one still solves its own FᵀΛF + blockdiag S (dense
    reference), and the kept Gram is not overwritten by the factorizations. With a constant Λ that mode is
    also taken for fewer rows than P·d, where its (P·d)³/3 flops an iteration are fewer than the Woodbury
    form's n²·P·d + n³/3."""
    pb = _small_relu(breast_cancer, "squared", rows, gates)
    col = newton.column._Column(pb, 0)
    n, d, nb = pb.n, pb.d, col.nb
    assert newton.newton_system.newton_mode(n, d, pb.P, constant_lam=True) == "pd"
    assert newton.newton_system.newton_mode(n, d, pb.P) == ("pd" if n > pb.P * d else "n")
    gen = torch.Generator().manual_seed(5)
    lam = torch.full((n,), 1.0 / n, dtype=torch.float64)
    F = torch.cat([col.F(b) for b in range(nb)], dim=1)  # (n, nb·d): a = F vec(x)
    workspace: dict = {}
    for it in range(3):
        A = torch.randn((nb, d, d), generator=gen, dtype=torch.float64)
        S = A @ A.transpose(1, 2) + 10.0 ** (-it) * torch.eye(d, dtype=torch.float64)
        system = newton.newton_system._IPMSystem(col, S, lam, workspace, constant_lam=True)
        assert system.ok and system.mode == "pd"
        Hd = F.T @ (lam[:, None] * F) + torch.block_diag(*S)
        r = torch.randn((nb, d), generator=gen, dtype=torch.float64)
        ref = torch.linalg.solve(Hd, r.reshape(-1)).reshape(nb, d)
        assert float((system.solve(r) - ref).abs().max()) <= 1e-8 * float(ref.abs().max())
        gram = newton.newton_system._pattern_gram(pb.X, pb.D, lam)
        assert torch.equal(workspace["gram"], gram)
    # without constant_lam nothing is kept (Λ changes from system to system: the logistic loss)
    other: dict = {}
    assert newton.newton_system._IPMSystem(col, S, lam, other).ok and "gram" not in other


def test_max_step_is_the_largest_feasible_step():
    """_max_step(v, dv) = the largest t in [0, 1] with v + t·dv ≥ 0 (against the ratio test written out), also
    with a zero entry of v (the fallback)."""
    gen = torch.Generator().manual_seed(0)
    for case in range(6):
        v = torch.rand((7, 50), generator=gen, dtype=torch.float64) + 1e-3
        dv = torch.randn((7, 50), generator=gen, dtype=torch.float64) * 10.0 ** (case - 3)
        if case == 5:
            v[2, 3], dv[2, 3] = 0.0, 0.0
        neg = dv < 0
        want = min(1.0, float((v[neg] / -dv[neg]).min())) if bool(neg.any()) else 1.0
        got = newton.interior_point._max_step(v, dv)
        assert got == pytest.approx(want, rel=1e-14)
        assert float((v + got * dv).min()) >= -1e-15 * float(v.max())
    one = torch.ones(4, dtype=torch.float64)
    assert newton.interior_point._max_step(one, one) == 1.0


def test_scratch_hands_out_only_unreferenced_arrays():
    """_Scratch.take returns an array nobody refers to (no other reference, no view of it), else a new one; the
    interior-point method relies on this to keep the best iterate's s and μ while reusing its (nb, n) arrays.
    (arrays[0] is the scratch's reference array, never handed out.)"""
    sc = newton.interior_point._Scratch((3, 4), torch.float64, torch.device("cpu"))
    a = sc.take()
    b = sc.take()
    assert a is not b and len(sc.arrays) == 3
    view = b.flatten()
    del b
    c = sc.take()  # b's array is still seen through the view
    assert len(sc.arrays) == 4 and all(c is not x for x in sc.arrays[1:3])
    kept = (a,)  # held in a tuple, as the best iterate is
    del a, view
    assert sc.take() is sc.arrays[2]  # the viewed array, free again
    assert sc.take() is sc.arrays[2] and len(sc.arrays) == 4  # (the result above was not held)
    assert kept[0] is sc.arrays[1]
    d = sc.take()
    assert d is sc.arrays[2]
    e = sc.take()
    assert e is not d and e is not kept[0] and e.shape == (3, 4) and len(sc.arrays) == 5
    # out= through torch keeps the identity of the array: the kind of use the method makes of it
    del c
    f = torch.add(kept[0], 1.0, out=sc.take())
    assert f is sc.arrays[3] and torch.equal(f, kept[0] + 1.0) and len(sc.arrays) == 5


@pytest.mark.parametrize("kind", ["relu", "gated"])
def test_column_pred_and_block_grad_follow_the_signed_patterns(breast_cancer, kind):
    """_Column.pred and block_grad (through the P patterns) against their definitions with the signed patterns
    Dm of the nb blocks: a = Σ_b Dm_b ⊙ (X x_b), c_b = Xᵀ(Dm_b ⊙ g)."""
    pb = _small_relu(breast_cancer, "squared", 120, 5)
    if kind == "gated":
        pb = dataclasses.replace(pb, kind="gated")
    col = newton.column._Column(pb, 0)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn((col.nb, pb.d), generator=gen, dtype=torch.float64)
    g = torch.randn(pb.n, generator=gen, dtype=torch.float64)
    ref_a = (col.Dm * (x @ pb.X.T)).sum(0)
    ref_c = (col.Dm * g[None, :]) @ pb.X
    assert float((col.pred(x) - ref_a).abs().max()) <= 1e-13 * float(ref_a.abs().max())
    assert float((col.block_grad(g) - ref_c).abs().max()) <= 1e-13 * float(ref_c.abs().max())


@pytest.mark.parametrize("which", ["M", "K"])
@pytest.mark.parametrize(("rows", "gates"), [(60, 8), (200, 3)])
def test_ipm_newton_system_when_a_factorization_needs_a_shift(breast_cancer, monkeypatch, rows, gates, which):
    """When M = S_v⁻¹ + S_w⁻¹ or K (the n×n or (P·d)² matrix) fails to factor (rounding, next to a nearly singular
    S_b or with columns of X on very different scales: adult standardised and raw, hinge loss, one thread),
    _IPMSystem factors it with a small shift instead of giving up (K: each diagonal entry raised by a relative
    1e-14), and the refined solve still matches a dense solve of FᵀΛF + blockdiag S. The failure is simulated: the
    first, unshifted attempt is reported as failed."""
    pb = _small_relu(breast_cancer, "squared", rows, gates)
    col = newton.column._Column(pb, 0)
    n, d, nb = pb.n, pb.d, col.nb
    calls = []
    if which == "M":
        real_cholesky_ex = torch.linalg.cholesky_ex

        def cholesky_ex(A, *args, **kwargs):
            L, info = real_cholesky_ex(A, *args, **kwargs)
            if A.dim() == 3 and A.shape[0] == pb.P and not calls:  # M's first, unshifted factorization
                calls.append(A.shape)
                info = torch.ones_like(info)
            return L, info

        monkeypatch.setattr(torch.linalg, "cholesky_ex", cholesky_ex)
    else:
        class FailingOnce(newton.newton_system._Chol):
            def __init__(self, K):
                super().__init__(K)
                if not calls:
                    calls.append(float(K.diagonal().max()))
                    self.ok = False

        monkeypatch.setattr(newton.newton_system, "_Chol", FailingOnce)
    gen = torch.Generator().manual_seed(2)
    A = torch.randn((nb, d, d), generator=gen, dtype=torch.float64)
    S = A @ A.transpose(1, 2) + 0.1 * torch.eye(d, dtype=torch.float64)
    lam = torch.rand(n, generator=gen, dtype=torch.float64) / n
    system = newton.newton_system._IPMSystem(col, S, lam)
    assert calls and system.ok
    F = torch.cat([col.F(b) for b in range(nb)], dim=1)
    Hd = F.T @ (lam[:, None] * F) + torch.block_diag(*S)
    r = torch.randn((nb, d), generator=gen, dtype=torch.float64)
    ref = torch.linalg.solve(Hd, r.reshape(-1)).reshape(nb, d)
    got = system.solve(r, refine=2)
    assert float((got - ref).abs().max()) <= 1e-8 * float(ref.abs().max())


@pytest.mark.parametrize("chunk", [7, 4096])
def test_pattern_gram_is_the_masked_gram(chunk):
    """_pattern_gram (pattern pairs × column pairs, no n × P·d array) equals F_vᵀ diag(λ) F_v formed densely,
    in every entry (both triangles), whatever the row chunking."""
    gen = torch.Generator().manual_seed(3)
    n, d, P = 50, 6, 9
    X = torch.randn((n, d), generator=gen, dtype=torch.float64)
    D = (torch.rand((n, P), generator=gen) < 0.5).double()
    lam = torch.rand(n, generator=gen, dtype=torch.float64)
    Fv = (D[:, :, None] * X[:, None, :]).reshape(n, P * d)
    ref = Fv.T @ (lam[:, None] * Fv)
    K = newton.newton_system._pattern_gram(X, D, lam, chunk=chunk)
    assert K.shape == (P * d, P * d)
    assert float((K - ref).abs().max()) <= 1e-13 * float(ref.abs().max())


def test_gram_and_cholesky_helpers():
    gen = torch.Generator().manual_seed(2)
    Z = torch.randn((80, 200), generator=gen, dtype=torch.float64)
    K = newton.newton_system._gram_rows(Z)
    ref = Z @ Z.T
    assert float((torch.tril(K) - torch.tril(ref)).abs().max()) <= 1e-12 * float(ref.abs().max())
    K.diagonal().add_(1.0)
    ch = newton.newton_system._Chol(K)
    assert ch.ok
    b = torch.randn((80, 3), generator=gen, dtype=torch.float64)
    x = ch.solve(b)
    ref.diagonal().add_(1.0)
    assert float((ref @ x - b).abs().max()) <= 1e-10
    bad = -torch.eye(70, dtype=torch.float64)
    assert not newton.newton_system._Chol(bad).ok


def test_polish_estimates_its_cost_before_allocating(breast_cancer):
    """The interior-point method's memory and flops are estimated first (ipm_cost): method="ipm" over
    memory_limit raises a MemoryError that names it; method="auto" on a rough point whose interior-point
    iterations are over budget is not polished and says why; solve(auto) then keeps the first-order
    result, whose certificate is still valid (dual ≤ CVXPY's optimum ≤ primal), and reports the reason."""
    from convexnn.solvers import ipm_direct, solve
    from convexnn.solvers.newton import ipm_cost

    pb = _small_relu(breast_cancer, "squared", 200, 10)
    flops, need = ipm_cost(pb.n, pb.d, pb.P)
    # the dominant allocations, counted by hand: the n × P·d factor, the n×n Gram (n < P·d), five (2P, d, d)
    # block arrays, sixteen (2P, n) arrays and the rows' packed outer products (n, d(d+1)/2)
    n, d, P = pb.n, pb.d, pb.P
    assert need == 8.0 * (n * P * d + n * n + 5 * 2 * P * d * d + 16 * 2 * P * n + n * d * (d + 1) // 2)
    assert flops > n * n * P * d
    zero = pb.zeros()
    with pytest.raises(MemoryError, match="memory_limit"):
        polish(pb, zero, zero.clone(), method="ipm", memory_limit=need / 2)
    rough = admm(pb, max_iter=5, tol=1e-12)
    assert rough.certificate.relative_gap > 1e-2
    out, info = polish(pb, rough.V, rough.W, certificate=rough.certificate, ipm_max_flops=flops / 2,
                       return_info=True)
    assert out is None and any("not polished" in note for note in info.notes)

    limit = need / 2  # enough for ADMM's factorisation, not for the interior-point method
    assert not ipm_direct(pb, memory_limit=limit) and ipm_direct(pb)
    res = solve(pb, tol=1e-6, max_iter=200, memory_limit=limit)
    assert not res.converged and res.solver == "admm"
    assert any("memory_limit" in note for note in res.info["polish_notes"])
    opt = _cvxpy_optimum(pb)
    assert res.certificate.dual <= opt + 1e-9 * abs(opt) <= res.certificate.primal + 2e-9 * abs(opt)
    assert res.certificate.primal == pytest.approx(float(pb.objective(res.V, res.W).sum()), rel=1e-12)


def test_solve_auto_respects_max_time(breast_cancer):
    """solve(auto, max_time): the interior-point method stops at the limit and its point is returned with a
    valid certificate (no active-set phase or NNLS after the limit)."""
    from convexnn.solvers import solve

    pb = _small_relu(breast_cancer, "squared", 200, 10)
    t0 = time.perf_counter()
    full = solve(pb, tol=1e-6)
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = solve(pb, tol=1e-6, max_time=1e-3)
    assert not res.converged and res.n_iter < full.n_iter
    assert time.perf_counter() - t0 < t_full
    assert res.certificate.dual <= full.certificate.primal * (1 + 1e-9)
    assert res.certificate.primal >= full.certificate.dual
    for B in (res.V, res.W):
        assert float(operators.cone(pb.X, pb.D, B).min()) >= 0.0


def test_active_set_stopping_short_keeps_the_interior_point_result(diabetes, monkeypatch):
    """An active-set phase that ends early (budget, stall, too many changes) at a worse point does not
    replace the interior-point point: the result is certified at least as well as the IPM certified it."""

    pb = _problem(diabetes, "relu", "squared")
    z = pb.zeros()

    def stops_short(self, *args, **kwargs):  # a failed phase: it wandered off (a 5% larger point) and gave up
        self.x = 1.05 * self.x
        return False

    monkeypatch.setattr(newton.active_set._ActiveSet, "run", stops_short)
    V, W, cert, info = polish(pb, z, z.clone(), method="ipm", gap_target=1e-14, return_info=True)
    assert info.method == "ipm" and any("interior-point point is kept" in note for note in info.notes)
    assert cert.relative_gap <= info.ipm_gap * (1 + 1e-6) and cert.relative_gap < 1e-4
    _check(pb, V, W, cert, DIABETES_RELU_SQUARED_OPT, rel=1e-4)


def test_active_set_starts_from_the_lowest_interior_point_iterate_then_the_best_certified(diabetes, monkeypatch):
    """After an interior-point method that stalls above its target, the active-set phase starts from the
    certified iterate of lowest objective (here a later one than the best certified iterate: the bound stalls
    while the primal still improves); when that attempt fails, it starts again from the best certified one, and
    the result is still certified at the optimum. (The bound stalls here once the loss-dual repair is off: with
    it, this program's certificate follows the primal to the end.)"""

    monkeypatch.setattr(newton.certificate, "_loss_dual_repair", lambda col, lam, R, near=1e-4: lam)
    pb = _problem(diabetes, "relu", "squared")
    col = newton.column._Column(pb, 0)
    xi, _, _, gi, _, _, xl, _ = newton.interior_point._ipm(col, newton.PolishInfo(), gap_tol=1e-14)
    assert xl is not xi, "the premise: the lowest-objective iterate is not the best certified one here"
    assert col.repaired(xl)[3] < col.repaired(xi)[3]

    starts, real_guess, real_run = [], newton.active_set._initial_working_sets, newton.active_set._ActiveSet.run

    def guess(col, x, *args, **kwargs):
        starts.append(x.clone())
        return real_guess(col, x, *args, **kwargs)

    def run(self, *args, **kwargs):  # the first attempt fails (as a Newton stall on a degenerate vertex does)
        return False if len(starts) == 1 else real_run(self, *args, **kwargs)

    monkeypatch.setattr(newton.driver, "_initial_working_sets", guess)
    monkeypatch.setattr(newton.active_set._ActiveSet, "run", run)
    z = pb.zeros()
    V, W, cert, info = polish(pb, z, z.clone(), method="ipm", gap_target=1e-14, return_info=True)
    assert len(starts) == 2
    assert torch.equal(starts[0], xl) and torch.equal(starts[1], xi)
    assert info.method == "ipm+active-set" and info.converged
    _check(pb, V, W, cert, DIABETES_RELU_SQUARED_OPT)


def test_active_set_newton_on_a_singular_reduced_hessian(breast_cancer):
    """Every pattern twice: moving weight between two identical blocks leaves φ unchanged, so the reduced
    Hessian is singular. The active-set phase must not report convergence from a stall far from stationarity
    (it did, at relative gap 1e-2 where the interior-point point had 1e-6)."""
    pb = _problem((breast_cancer[0][:150], breast_cancer[1][:150]), "relu", "squared")
    pb = ConvexProblem(pb.X, pb.Y, torch.cat([pb.D, pb.D], 1), torch.cat([pb.H, pb.H], 1), pb.alpha, pb.loss,
                       pb.kind)
    z = pb.zeros()
    V, W, cert, info = polish(pb, z, z.clone(), method="ipm", return_info=True)
    assert cert.relative_gap <= info.ipm_gap * (1 + 1e-6) and cert.relative_gap < 1e-5
    assert float(operators.cone(pb.X, pb.D, V).min()) >= 0.0 and float(operators.cone(pb.X, pb.D, W).min()) >= 0.0
    assert cert.gap >= 0.0


def test_weighted_grams_in_row_chunks():
    """Xᵀ diag(w_b) X per block, from the precomputed outer products and in row chunks (a limit that cuts
    the rows into uneven chunks), against the dense formula."""
    from convexnn.solvers.newton.newton_system import _outer_rows, _weighted_grams

    g = torch.Generator().manual_seed(3)
    X = torch.randn(103, 7, generator=g, dtype=torch.float64)
    Wt = torch.rand(5, 103, generator=g, dtype=torch.float64)
    want = torch.stack([X.T @ (w[:, None] * X) for w in Wt])
    assert torch.allclose(_weighted_grams(X, _outer_rows(X), Wt), want, rtol=1e-13, atol=1e-12)
    assert torch.allclose(_weighted_grams(X, None, Wt, chunk=10 * 28), want, rtol=1e-13, atol=1e-12)  # 10 rows
    # kept outer products formed in uneven row chunks give the same, and above the limit none are kept
    old = newton.newton_system.OUTER_ROWS_CHUNK
    try:
        newton.newton_system.OUTER_ROWS_CHUNK = 7 * 28
        XX = _outer_rows(X)
    finally:
        newton.newton_system.OUTER_ROWS_CHUNK = old
    assert XX.shape == (103, 28) and torch.allclose(_weighted_grams(X, XX, Wt), want, rtol=1e-13, atol=1e-12)
    assert _outer_rows(X, limit=103 * 28 - 1) is None


def test_batched_working_set_algebra_matches_one_block_at_a_time(breast_cancer):
    """The active-set method's batched solves over padded rows against one unpadded LAPACK call per block:
    the working-row multipliers (least squares G_Aᵀμ = c_b + α v̂_b) and the lift onto the cones (three rounds
    of each block's least-norm correction of its low rows). Working sets of 0 to d − 1 rows, so the padding is
    uneven (torch's batched "gelsy" got such padded systems wrong)."""


    pb = _problem((breast_cancer[0][:200], breast_cancer[1][:200]), "relu", "squared")
    col = newton.column._Column(pb, 0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(col.nb, col.d, generator=g, dtype=torch.float64)
    W = torch.zeros((col.nb, col.n), dtype=torch.bool)
    for b in range(col.nb):
        W[b, torch.randperm(col.n, generator=g)[: (7 * b + 11) % col.d]] = True
    solver = newton.active_set._ActiveSet(col, torch.zeros_like(x), W, newton.PolishInfo())
    solver.x, solver.sup = x, torch.ones(col.nb, dtype=torch.bool)
    c = torch.randn(col.nb, col.d, generator=g, dtype=torch.float64)
    M = solver.working_multipliers(c)
    for b in range(col.nb):
        rows = torch.nonzero(W[b])[:, 0]
        assert bool((M[b][~W[b]] == 0).all())
        if rows.numel():
            rhs = c[b] + col.alpha * x[b] / torch.linalg.vector_norm(x[b])
            want = torch.linalg.lstsq(col.G(b)[rows].T, rhs[:, None]).solution[:, 0]
            assert torch.allclose(M[b, rows], want, rtol=1e-9, atol=1e-12 * float(want.abs().max()))
    # the lift, against the same rounds one block at a time (rows with slack below 2·eps·‖x_r‖‖v_b‖ moved to
    # that target by the block's least-norm correction), from points on the working rows' faces
    on = torch.stack([N @ (N.T @ xb) for N, xb in zip([col.null_basis(torch.nonzero(w)[:, 0]) for w in W], x,
                                                      strict=True)])
    want = on.clone()
    for b in range(col.nb):
        for _ in range(3):
            s = col.G(b) @ want[b]
            tgt = 2 * col.eps * col.xn * float(torch.linalg.vector_norm(want[b]))
            rows = torch.nonzero(s < tgt)[:, 0]
            if rows.numel() == 0:
                break
            want[b] += torch.linalg.lstsq(col.G(b)[rows], (tgt - s)[rows, None], driver="gelsd").solution[:, 0]
    assert bool((want != on).any())
    lifted = newton.active_set._lift_to_cone(col, on)
    assert torch.allclose(lifted, want, rtol=1e-10, atol=1e-12 * float(on.abs().max()))


def _wine_one_vs_rest(gates=10):
    """sklearn's wine (178 × 13, standardised) with ±1 one-vs-rest targets for its three classes, (C)."""
    from sklearn.datasets import load_wine
    from sklearn.preprocessing import StandardScaler

    X, y = load_wine(return_X_y=True)
    Xa = add_intercept(StandardScaler().fit_transform(X))
    Y = 2.0 * (y[:, None] == [0, 1, 2]) - 1.0
    D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], gates, 0))

    def t(a):
        return torch.as_tensor(a, dtype=torch.float64)

    return ConvexProblem(t(Xa), t(Y), t(D), t(H), ALPHA, "squared", "relu")


@pytest.mark.parametrize("gap_target", [1e-6, None])
def test_output_columns_polished_side_by_side_give_the_same_result(gap_target):
    """Three one-vs-rest columns polished on two worker threads (interior point to the target, or then the active-set
    phase too) against one after the other: the same blocks bit for bit, the same certificate and counts, the same
    progress records per column, and ``ipm_iteration`` counting all columns' iterations in increasing order."""
    pb = _wine_one_vs_rest()
    zero = pb.zeros()
    runs = {}
    for workers in (1, 2):
        records = []
        V, W, cert, info = polish(pb, zero, zero.clone(), method="ipm", gap_target=gap_target, return_info=True,
                                  workers=workers, progress=records.append)
        runs[workers] = (V, W, cert, info, records)
    (V1, W1, c1, i1, r1), (V2, W2, c2, i2, r2) = runs[1], runs[2]
    assert torch.equal(V1, V2) and torch.equal(W1, W2)
    assert (c1.primal, c1.dual) == (c2.primal, c2.dual) and c1.relative_gap <= 1e-6
    for name in ("method", "ipm_iterations", "newton_iterations", "rows_added", "rows_released", "ipm_gap",
                 "converged", "notes"):
        assert getattr(i1, name) == getattr(i2, name), name
    assert i1.ipm_iterations > 3 * 5  # every column ran the interior-point method
    if gap_target is None:
        assert i1.method == "ipm+active-set" and i1.newton_iterations > 0

    def per_column(records):
        return {k: [(r["primal"], r["dual"]) for r in records if r["column"] == k] for k in range(pb.K)}

    assert per_column(r1) == per_column(r2) and all(per_column(r2).values())
    its = [r["ipm_iteration"] for r in r2]
    assert its == sorted(its) and its[-1] <= i2.ipm_iterations


def test_an_interrupted_column_stops_the_others():
    """When one column raises (KeyboardInterrupt from a progress callback), the columns still running see the
    deadline passed at their next check, the exception reaches the caller, and no worker thread is left."""
    import threading

    deadline = newton.diagnostics._Deadline(None)
    saw_stop = threading.Event()
    started = threading.Event()

    def column(k, info, progress, column_deadline):
        if k == 0:
            started.wait(5.0)  # column 1 is running
            raise KeyboardInterrupt
        started.set()
        t_end = time.perf_counter() + 30.0
        while time.perf_counter() < t_end:
            if column_deadline.passed():
                saw_stop.set()
                return True
            time.sleep(0.001)
        return True

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        newton.driver._polish_columns_parallel(column, [0, 1, 2], 2, newton.PolishInfo(), deadline, None)
    assert saw_stop.is_set() and time.perf_counter() - t0 < 25.0
    assert not [t for t in threading.enumerate() if t.name.startswith("convexnn-polish")]
    # and from a real polish: the interrupt raised by the progress callback of one column propagates
    pb = _wine_one_vs_rest()
    zero = pb.zeros()

    def progress(rec):
        if rec["column"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        polish(pb, zero, zero.clone(), method="ipm", workers=2, progress=progress)
    assert not [t for t in threading.enumerate() if t.name.startswith("convexnn-polish")]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers must be a positive integer"):
            polish(pb, zero, zero.clone(), workers=bad)


@pytest.mark.parametrize("ridge", [0.0, 1e-7, 1e-4])
def test_active_set_newton_direction_against_the_explicit_system(ridge):
    """The active-set Newton direction on wide data (m = 600 reduced variables, n = 40 rows: the Woodbury form is
    taken) solves (H + ρI) dz = −g for H = AᵀΛA + blockdiag(β_b (I − ẑ_b ẑ_bᵀ)), formed here explicitly, with
    ρ = ridge·max_j H_jj; and on narrow data (the dense form) the same. The ridge used to force the dense m×m form,
    which on 300 × 784 images needed 14.4 GiB."""

    gen = torch.Generator().manual_seed(0)
    for n, sizes in ((40, [30] * 20), (200, [5, 7, 3])):
        m = sum(sizes)
        A = torch.randn(n, m, generator=gen, dtype=torch.float64)
        h = torch.rand(n, generator=gen, dtype=torch.float64) + 0.1
        z = torch.randn(m, generator=gen, dtype=torch.float64)
        zs = torch.split(z, sizes)
        bn = torch.stack([torch.linalg.vector_norm(v) for v in zs])
        zh = torch.cat([v / nv for v, nv in zip(zs, bn, strict=True)])
        g = torch.randn(m, generator=gen, dtype=torch.float64)
        alpha = 0.3
        H = A.T @ (h[:, None] * A)
        off = 0
        for j, sz in enumerate(sizes):
            u = zh[off:off + sz]
            H[off:off + sz, off:off + sz] += (alpha / bn[j]) * (torch.eye(sz, dtype=torch.float64) - torch.outer(u, u))
            off += sz
        Hr = H + ridge * float(H.diagonal().max()) * torch.eye(m, dtype=torch.float64)
        want = torch.linalg.solve(Hr, -g)
        got = newton.active_set._newton_direction(A, h, zh, bn, sizes, g, alpha, ridge=ridge)
        assert torch.allclose(got, want, rtol=1e-8, atol=1e-10 * float(want.abs().max()))


def test_columns_share_the_time_left():
    """Under a time limit each output column gets its share of the time left when it starts: one of ⌈r/workers⌉
    equal parts, r the columns not yet started, so that the last columns do not start past the deadline and come
    back at their starting point. A share also passes when its parent is stopped; without a limit there is none."""

    t = time.perf_counter()
    d = newton.diagnostics._Deadline(t + 100.0)
    c = d.share(4)
    t2 = time.perf_counter()
    assert t + (d.at - t2) / 4 <= c.at <= t2 + (d.at - t) / 4
    assert not c.passed()
    d.stop()
    assert c.passed()
    assert newton.diagnostics._Deadline(None).share(3).at is None

    for workers, want in ((2, [3, 2, 2, 1, 1]), (1, [5, 4, 3, 2, 1])):
        d = newton.diagnostics._Deadline(time.perf_counter() + 1000.0)
        parts = {}

        def column(k, info, progress, share, d=d, parts=parts):
            now = time.perf_counter()
            parts[k] = (d.at - now) / (share.at - now)  # the number of parts, as seen when the column ran
            return True

        if workers == 1:  # polish's own loop: column k gets one of K − k parts
            for k in range(5):
                column(k, None, None, d.share(5 - k))
        else:
            newton.driver._polish_columns_parallel(column, list(range(5)), workers, newton.PolishInfo(), d, None)
        assert sorted(parts) == list(range(5))
        assert sorted(parts.values(), reverse=True) == pytest.approx(want, rel=1e-3)


def test_ipm_stopped_by_the_clock_certifies_its_last_iterate(breast_cancer):
    """An interior-point run stopped by its deadline before its iterates reach the complementarity where they are
    certified as it goes still certifies its last iterate: a loose bound, but a valid
    one that brackets CVXPY's optimum, and far better than the relative gap of about 1 of its starting point.
    The same for the hinge loss's interior-point method."""


    class After:  # a deadline that passes at its (k+1)-th check
        def __init__(self, k):
            self.k = k

        def passed(self):
            self.k -= 1
            return self.k < 0

    pb = _small_relu(breast_cancer, "squared", 150, 12)
    opt = _cvxpy_optimum(pb)
    col = newton.column._Column(pb, 0)
    info = newton.PolishInfo()
    records = []
    x, _, _, gap, lam, mu_c, _, _ = newton.interior_point._ipm(col, info, gap_tol=1e-7, deadline=After(6),
                                                               progress=records.append)
    assert info.ipm_iterations == 6 and "ipm: time limit" in info.notes
    assert len(records) == 1 and records[0]["relative_gap"] == gap  # only the last iterate was certified
    _, _, _, primal = col.repaired(x)
    dual = _bound_at(pb, lam, mu_c)
    assert gap == pytest.approx((primal - dual) / primal, rel=1e-9)
    assert dual <= opt + 1e-9 * abs(opt) and opt <= primal + 1e-9 * abs(opt)
    gate = newton.interior_point._gate_start(col, 0.3)
    start_gap = newton.certificate._column_gap(col, gate, torch.zeros(col.nb, col.n, dtype=torch.float64))
    assert 1e-3 < gap < 0.5 < start_gap

    pbh = _hinge_problem(breast_cancer, "relu", 150, 8)
    info = newton.PolishInfo()
    x, mu, u, prim, dual = newton.hinge._hinge_ipm(newton.column._Column(pbh, 0), info, gap_tol=1e-3, deadline=After(5))
    opt = _cvxpy_reference(pbh)
    assert info.ipm_iterations == 5 and "hinge ipm: time limit" in info.notes
    assert dual <= opt * (1 + 1e-6) and prim >= opt * (1 - 1e-6)
    assert 0.0 < (prim - dual) / prim < 1.0
    # the barrier method checks the clock at each Newton step of a centering (one can take 50), and a centering
    # cut short by it is not reported as failed
    info = newton.PolishInfo()
    newton.hinge._hinge_barrier(newton.column._Column(pbh, 0), info, deadline=After(3))
    assert info.ipm_iterations == 2
    assert "hinge barrier: time limit" in info.notes and "hinge barrier: centering failed" not in info.notes


def test_hinge_columns_side_by_side_give_the_same_result():
    """The hinge loss's columns (barrier method, reduced Newton) on two worker threads against one after the other:
    the same blocks and certificate; the info names the hinge method."""
    pb = _wine_one_vs_rest(gates=6)
    pb = ConvexProblem(pb.X[::2], pb.Y[::2], pb.D[::2], pb.H, pb.alpha, "hinge", "relu")
    zero = pb.zeros()
    V1, W1, c1, i1 = polish(pb, zero, zero.clone(), return_info=True, workers=1)
    V2, W2, c2, i2 = polish(pb, zero, zero.clone(), return_info=True, workers=2)
    assert torch.equal(V1, V2) and torch.equal(W1, W2) and (c1.primal, c1.dual) == (c2.primal, c2.dual)
    assert i1.method == i2.method == "hinge ipm+barrier+reduced newton" and i1.converged == i2.converged
    assert c1.relative_gap <= 1e-5


def test_ipm_direction_solves_the_linearised_kkt_system(breast_cancer):
    """The squared-loss interior-point direction (reduced to the x-system through the norm cones' NT scaling and
    Woodbury) against every equation it eliminates, at random interior variables, residuals and targets:
        H_L dx − Gᵀdμ − dz = −r_d,  G dx − ds = −r_p,  μ ds + s dμ = −F₂,  λ̂ ∘ (W (0, dz) + W⁻¹ (dt, dx)) = r
    (H_L = FᵀΛF, the loss Hessian; (t, x), (α, z) the cones' primal-dual pairs, dλ = 0)."""
    pb = _small_relu(breast_cancer, "squared", 80, 6)
    col = newton.column._Column(pb, 0)
    n, d, nb = col.n, col.d, col.nb
    g = torch.Generator().manual_seed(3)
    t, x, z = _interior_cone_pairs(col, g, scale=0.1)
    s, mu = _positive(g, nb, n), _positive(g, nb, n)
    a = col.pred(x)
    lam = newton.column._loss_hess("squared", a, col.y)
    cones = newton.interior_point._NormCones(t, x, z, col.alpha)
    ns = newton.newton_system
    system = ns._IPMSystem(col, cones.block() + ns._weighted_grams(col.X, None, mu / s), lam)
    assert system.ok
    rd = col.block_grad(newton.column._loss_grad("squared", a, col.y)) - z - (col.Sg * mu) @ col.X
    rp, F2 = _normal(g, nb, n), 0.01 * _normal(g, nb, n)
    r = (_normal(g, nb), _normal(g, nb, d))
    scratch = newton.interior_point._Scratch((nb, n), s.dtype, s.device)
    keep = [a.clone() for a in (rd, rp, s, mu, F2)]
    dx, ds, dmu, dt, dz = newton.interior_point._ipm_direction(system, col, rd, rp, s, mu, F2, cones, r, refine=2,
                                                               scratch=scratch)
    # the inputs are untouched, and ds, dμ are arrays of the scratch
    assert all(torch.equal(a, b) for a, b in zip(keep, (rd, rp, s, mu, F2), strict=True))
    assert any(ds is a for a in scratch.arrays) and any(dmu is a for a in scratch.arrays)
    lhs = col.block_grad(lam * col.pred(dx)) - (col.Sg * dmu) @ col.X - dz
    assert torch.allclose(lhs, -rd, atol=1e-10 * float(rd.abs().max()))
    assert torch.allclose(col.slack(dx) - ds, -rp, atol=1e-12)
    assert torch.allclose(mu * ds + s * dmu, -F2, atol=1e-12)
    comp = _scaled_complementarity(cones, dt, dx, dz)
    assert torch.allclose(comp[0], r[0], atol=1e-10) and torch.allclose(comp[1], r[1], atol=1e-10)
    ap, ad = newton.interior_point._ipm_steps(s, mu, t, x, z, cones, (dx, ds, dmu, dt, dz), scratch)
    for step, ok in ((ap, lambda h: bool(((s + h * ds) >= 0).all()) and soc.jdet(t + h * dt, x + h * dx).min() >= 0),
                     (ad, lambda h: bool(((mu + h * dmu) >= 0).all())
                      and bool((torch.linalg.vector_norm(z + h * dz, dim=1) <= col.alpha).all()))):
        h = min(step, 1.0)
        assert ok(0.999 * h)
        if step < 1.0:
            assert not ok(1.001 * h)


def test_loss_dual_repair_tightens_a_sound_bound(breast_cancer):
    """At an interior-point iterate near the optimum (gap target 1e-7), the loss dual ∇L(ŷ) leaves the blocks in use
    with residuals ‖c_b − G_bᵀμ_b‖ just above α, and the bound's scaling costs most of the certificate's gap
    (relative 3.5e-8); the repaired Λ (_loss_dual_repair) certifies the same point at least twice as tightly
    (6e-9), its bound is exactly certificates.dual_value_relu at the Λ it reports, and it stays below the CVXPY +
    Clarabel optimum and the point's objective."""
    pb = _small_relu(breast_cancer, "squared", 150, 12)
    opt = _cvxpy_optimum(pb)
    col = newton.column._Column(pb, 0)
    x, _, _, _, _, mu_c, _, _ = newton.interior_point._ipm(col, newton.PolishInfo(), gap_tol=1e-7)
    primal = col.repaired(x)[3]
    lam = newton.column._loss_grad("squared", col.pred(x), col.y)
    plain = _bound_at(pb, lam, mu_c)
    bound, _, used = newton.certificate._relu_dual_bound(col, lam, mu_c)
    assert not torch.equal(used, lam)  # the repair was taken
    assert bound == pytest.approx(_bound_at(pb, used, mu_c), rel=1e-13)
    assert plain < bound <= min(primal, opt + 1e-9 * abs(opt))
    assert (primal - bound) <= 0.5 * (primal - plain)


def test_nnls_projected_gradient_against_lawson_hanson(breast_cancer):
    """The batched projected-gradient NNLS (signed multipliers, in place) against scipy's Lawson–Hanson on the
    dual subproblems min_{μ ≥ 0} ‖c_b − G_bᵀμ‖ of a few blocks: μ ≥ 0, the residual it reports is that of its μ,
    never below the exact minimum, and close to it; with a target it stops once every block is at or below it,
    and warm-starting from the exact μ keeps the exact residual."""
    pb = _small_relu(breast_cancer, "squared", 120, 6)
    col = newton.column._Column(pb, 0)
    gen = torch.Generator().manual_seed(2)
    blocks = [0, 3, 7, 10]
    C = torch.randn((len(blocks), col.d), generator=gen, dtype=torch.float64)
    mu_ex, res_ex = newton.nnls._nnls(col, blocks, C, method="scipy")
    mu, res = newton.nnls._nnls(col, blocks, C, method="pg", max_iter=20000)
    assert bool((mu >= 0).all())
    own = torch.linalg.vector_norm(C - (col.Sg[blocks] * mu) @ col.X, dim=1)
    assert torch.allclose(own, res, rtol=1e-12, atol=1e-12)
    assert bool((res >= res_ex - 1e-9).all())
    assert torch.allclose(res, res_ex, rtol=1e-3, atol=1e-6)
    tgt = res_ex * 1.05 + 1e-3
    mu_t, res_t = newton.nnls._nnls(col, blocks, C, target=tgt, method="pg", max_iter=20000)
    assert bool((res_t <= tgt).all())
    _, res_w = newton.nnls._nnls(col, blocks, C, method="pg", max_iter=5, mu0=mu_ex)
    assert torch.allclose(res_w, res_ex, rtol=1e-9, atol=1e-12)
