"""Convex adversarial training (convexnn.solvers.robust, MATH.md §9): the first-order solver against
CVXPY + Clarabel, exact feasibility of the returned blocks, the certificate, and the worst-case loss
formula of §9 against a brute-force maximisation over the ball for the recovered network."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from convexnn.baselines import train_adam_pgd
from convexnn.ops import patterns
from convexnn.solvers.problem import ConvexProblem
from convexnn.solvers.robust import (
    blocks_to_network,
    cone_margins,
    robust_cvxpy,
    robust_gates,
    robust_objective,
    robust_solve,
    worst_case_losses,
)

pytest.importorskip("cvxpy")

DT = torch.float64
ALPHA = 0.02


def t(a):
    return torch.as_tensor(a, dtype=DT)


def make_problem(loss: str, n: int = 20, d: int = 2, P: int = 4, seed: int = 0) -> ConvexProblem:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if loss == "squared":
        Y = X[:, :1] ** 2 - 0.5 + 0.1 * rng.standard_normal((n, 1))
    else:
        Y = np.sign(X[:, :1] + 0.5 * X[:, 1:2] ** 2 - 0.3 + 0.3 * rng.standard_normal((n, 1)))
    Xa = patterns.add_intercept(X)
    D, H = patterns.patterns_from_gates(Xa, rng.standard_normal((d + 1, P)))
    return ConvexProblem(t(Xa), t(Y), t(D), t(H), ALPHA, loss)


def per_sample_loss(loss: str, a: np.ndarray, y: np.ndarray) -> np.ndarray:
    if loss == "squared":
        return 0.5 * (a - y) ** 2
    if loss == "logistic":
        return np.logaddexp(0.0, -y * a)
    return np.maximum(0.0, 1.0 - y * a)


def brute_force_worst(net, X: np.ndarray, Y: np.ndarray, loss: str, eps: float, norm: str, box=None) -> np.ndarray:
    """max over the ball (∩ box) of the loss of the network, per sample: over the box's vertices for ℓ∞
    (exact for a network that is affine on the ball, as the loss is convex), over 3600 points of the
    circle for ℓ2 (d = 2)."""
    n, d = X.shape
    if norm == "inf":
        deltas = np.array(list(itertools.product([-eps, eps], repeat=d)))  # (2^d, d)
        pts = X[:, None, :] + deltas[None]
        if box is not None:
            pts = np.clip(pts, box[0], box[1])
    else:
        ang = np.linspace(0, 2 * np.pi, 3600, endpoint=False)
        deltas = eps * np.stack([np.cos(ang), np.sin(ang)], 1)
        pts = X[:, None, :] + deltas[None]
    out = net.forward(pts.reshape(-1, d)).reshape(n, -1)
    return per_sample_loss(loss, out, Y[:, :1]).max(1)


CASES = [(loss, norm, eps) for loss in ("squared", "logistic", "hinge") for norm, eps in (("inf", 0.1), (2, 0.15))]


@pytest.fixture(scope="module")
def solved():
    """Each case solved once, by CVXPY and by robust_solve."""
    out = {}
    for loss, norm, eps in CASES:
        pb = make_problem(loss)
        ref = robust_cvxpy(pb, eps, norm)
        res = robust_solve(pb, eps, norm, tol=1e-6, max_iter=10000, check_every=100, direction_iters=100)
        out[(loss, norm)] = (pb, eps, ref, res)
    return out


@pytest.mark.parametrize("loss,norm,eps", CASES)
def test_objective_matches_cvxpy(solved, loss, norm, eps):
    pb, eps, ref, res = solved[(loss, norm)]
    opt = ref.info["optimal_value"]
    assert res.converged
    assert abs(res.certificate.primal - opt) <= 1e-4 * abs(opt)
    # the certificate's claims: dual ≤ optimum ≤ primal (up to the conic solver's own accuracy)
    assert res.certificate.dual <= opt + 1e-7 * abs(opt)
    assert res.certificate.primal >= opt - 1e-7 * abs(opt)
    assert res.certificate.relative_gap <= 1e-6
    # the reported primal is the robust objective of the returned blocks
    val = float(robust_objective(pb, res.V, res.W, eps, norm).sum())
    assert val == pytest.approx(res.certificate.primal, rel=1e-12)


@pytest.mark.parametrize("loss,norm,eps", CASES)
def test_returned_blocks_satisfy_robust_constraints(solved, loss, norm, eps):
    pb, eps, ref, res = solved[(loss, norm)]
    mv, mw = cone_margins(pb, res.V, res.W, eps, norm)
    assert bool((mv >= 0).all()) and bool((mw >= 0).all())
    # and independently: every non-zero block keeps its pattern on the whole ball of every sample
    X = pb.X.numpy()
    S = 2 * pb.D.numpy() - 1
    q = 1 if norm == "inf" else 2
    for B in (res.V.numpy()[:, :, 0], res.W.numpy()[:, :, 0]):
        lhs = S * (X @ B.T)  # (n, P)
        rhs = eps * np.linalg.norm(B[:, :-1], ord=q, axis=1)[None, :]
        assert np.all(lhs - rhs >= -1e-12 * (1 + np.abs(lhs).max()))
    assert res.info["min_margin"] >= 0


@pytest.mark.parametrize("loss,norm,eps", CASES)
def test_worst_case_formula_matches_brute_force(solved, loss, norm, eps):
    """The network of the returned blocks is affine on each ball, so the §9 formula is its exact
    worst-case loss: compare with a brute-force maximisation over the ball."""
    pb, eps, ref, res = solved[(loss, norm)]
    net = blocks_to_network(res.V, res.W)
    X = pb.X.numpy()[:, :-1]
    Y = pb.Y.numpy()
    formula = worst_case_losses(pb, res.V, res.W, eps, norm).numpy()[:, 0]
    brute = brute_force_worst(net, X, Y, loss, eps, "inf" if norm == "inf" else "2")
    assert np.all(brute <= formula + 1e-9 * (1 + formula))
    tol = 1e-9 if norm == "inf" else 1e-5  # the circle is sampled for ℓ2
    np.testing.assert_allclose(brute, formula, rtol=tol, atol=tol)
    # the recovered network predicts the program's clean predictions, and the data term + penalty of
    # the network is the certificate's primal
    A = (pb.D.numpy()[:, :, None] * np.einsum("nd,pdk->npk", pb.X.numpy(), (res.V - res.W).numpy())).sum(1)
    np.testing.assert_allclose(net.forward(X), A[:, 0], rtol=1e-9, atol=1e-9)
    obj = formula.mean() + ALPHA * net.penalty()
    assert obj == pytest.approx(res.certificate.primal, rel=1e-9)


def test_box_and_opposing_relaxation():
    """ℓ∞ ∩ box with the 'opposing' constraints: same optimum as CVXPY, and the objective's data term is
    an upper bound on the network's worst-case loss over ball ∩ box (brute force over the vertices)."""
    pb = make_problem("hinge", n=24, seed=3)
    eps, box = 0.3, (-1.0, 1.0)
    Xf = pb.X.numpy()[:, :-1]
    pb.X[:, :-1] = t(np.clip(Xf, -1.0, 1.0))  # the data must lie in the box
    ref = robust_cvxpy(pb, eps, "inf", box=box, constraints="opposing")
    res = robust_solve(pb, eps, "inf", box=box, constraints="opposing", tol=1e-6, max_iter=10000,
                       check_every=100, direction_iters=100)
    opt = ref.info["optimal_value"]
    assert abs(res.certificate.primal - opt) <= 1e-4 * abs(opt)
    assert res.certificate.dual <= opt + 1e-7 * abs(opt)
    # the relaxation is no more constrained than the full program
    full = robust_cvxpy(pb, eps, "inf", box=box, constraints="all")
    assert opt <= full.info["optimal_value"] * (1 + 1e-7)
    net = blocks_to_network(res.V, res.W)
    X, Y = pb.X.numpy()[:, :-1], pb.Y.numpy()
    bound = float(robust_objective(pb, res.V, res.W, eps, "inf", box=box, constraints="opposing").sum())
    data_bound = bound - ALPHA * net.penalty()
    brute = brute_force_worst(net, X, Y, "hinge", eps, "inf", box=box)
    assert brute.mean() <= data_bound + 1e-9


def test_robust_gates_are_strictly_feasible():
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, (60, 5))
    y = np.where(X[:, 0] + X[:, 1] > 1, 1.0, -1.0)
    Wd = rng.standard_normal((8, 5))
    b = rng.standard_normal(8)
    eps = 0.05
    for cons, roles in (("opposing", np.sign(rng.standard_normal(8))), ("all", None)):
        H, info = robust_gates(X, y, eps, Wd, b, roles=roles, constraints=cons)
        w, bias = H[:-1].T, H[-1]
        pre = X @ w.T + bias  # (n, m)
        rad = eps * np.abs(w).sum(1)
        if cons == "opposing":
            constrained = (y[:, None] * info["roles"][None, :]) < 0
        else:
            constrained = np.ones_like(pre, dtype=bool)
        assert np.all((np.abs(pre) > rad[None, :]) | ~constrained)
    # the solver sees such gates as strictly feasible directions
    Xa = patterns.add_intercept(X)
    D, Hk = patterns.patterns_from_gates(Xa, H)
    pb = ConvexProblem(t(Xa), t(y[:, None]), t(D), t(Hk), ALPHA, "hinge")
    mv, mw = cone_margins(pb, t(Hk.T[:, :, None]), t(Hk.T[:, :, None]), eps, "inf")
    assert bool((mv > 0).all())


def test_solve_with_gates_on_uniform_data_runs_and_is_feasible():
    """A box-constrained, 'opposing' problem in the setting of the benchmark (pixels in [0, 1])."""
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 1, (40, 6))
    y = np.where(X[:, 0] - X[:, 1] + 0.3 * rng.standard_normal(40) > 0, 1.0, -1.0)
    H, _ = robust_gates(X, y, 0.05, rng.standard_normal((6, 6)), roles=np.tile([1.0, -1.0], 3), box=(0, 1))
    Xa = patterns.add_intercept(X)
    D, H = patterns.patterns_from_gates(Xa, H)
    pb = ConvexProblem(t(Xa), t(y[:, None]), t(D), t(H), 1e-2, "logistic")
    res = robust_solve(pb, 0.05, "inf", box=(0, 1), constraints="opposing", tol=1e-4, max_iter=3000,
                       check_every=100, direction_iters=100)
    mv, mw = cone_margins(pb, res.V, res.W, 0.05, "inf", box=(0, 1), constraints="opposing")
    assert bool((mv >= 0).all()) and bool((mw >= 0).all())
    assert res.certificate.dual <= res.certificate.primal
    assert res.certificate.relative_gap < 0.05


def test_train_adam_pgd_smoke():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (80, 4))
    y = np.where(X[:, 0] > 0.5, 1.0, -1.0)
    res = train_adam_pgd(X, y, 8, 1e-4, "logistic", eps=0.05, box=(0, 1), epochs=30, batch_size=20, pgd_steps=3,
                         lr=1e-2)
    assert res.network.width == 8 and res.epochs == 30
    assert np.isfinite(res.objective)
    acc = np.mean(np.sign(res.network.forward(X)) == y)
    assert acc > 0.8


def exact_min_margin(net, X: np.ndarray, y: np.ndarray, eps: float, box) -> np.ndarray:
    """min over δ ∈ ball ∩ box of y_j f(x_j + δ) by CVXPY, valid when y_j f is *convex* in δ: every neuron
    voting against y_j (output weight of sign −y_j) is affine on the ball (active or inactive throughout,
    checked here), the others contribute relu(·) ≥ 0 terms with positive weights (convex)."""
    import cvxpy as cp

    W1, b1, w2 = net.W1, net.b1, np.asarray(net.w2).reshape(-1)
    out = []
    for x, yj in zip(X, y, strict=True):
        lo = np.maximum(x - eps, box[0]) - x
        hi = np.minimum(x + eps, box[1]) - x
        opp = np.sign(w2) * yj < 0
        # the opposing neurons keep their activation on the whole ball ∩ box (interval arithmetic)
        c = W1 @ x + b1
        rad_hi = np.maximum(W1, 0) @ hi + np.minimum(W1, 0) @ lo
        rad_lo = np.minimum(W1, 0) @ hi + np.maximum(W1, 0) @ lo
        assert np.all(((c + rad_lo >= -1e-9) | (c + rad_hi <= 1e-9))[opp])
        act = (c > 0) & opp
        d = cp.Variable(X.shape[1])
        pre = W1 @ (x + d) + b1
        help_ = ~opp
        obj = yj * (w2[help_] @ cp.pos(pre[help_])) + yj * (w2[act] @ pre[act])
        pb = cp.Problem(cp.Minimize(obj), [d >= lo, d <= hi])
        pb.solve(solver="CLARABEL")
        out.append(pb.value)
    return np.array(out)


def test_opposing_objective_bounds_exact_worst_case_loss():
    """The soundness claim of constraints='opposing' on the benchmark's kind of patterns (robust_patterns:
    re-biased gates on the constrained class, the original neurons' patterns elsewhere): the robust
    objective is ≥ the network's exact adversarial objective, with the worst case over ball ∩ box computed
    exactly (a convex minimisation per sample, see exact_min_margin) — no vertex enumeration."""
    from convexnn.solvers.robust import robust_patterns

    rng = np.random.default_rng(4)
    n, d, m = 30, 3, 6
    X = rng.uniform(0, 1, (n, d))
    y = np.where(X[:, 0] - X[:, 1] + 0.2 * rng.standard_normal(n) > 0, 1.0, -1.0)
    eps, box = 0.1, (0.0, 1.0)
    D, H = robust_patterns(X, y, eps, rng.standard_normal((m, d)), rng.standard_normal(m) * 0.3,
                           roles=np.tile([1.0, -1.0], m // 2), box=box)
    Xa = patterns.add_intercept(X)
    pb = ConvexProblem(t(Xa), t(y[:, None]), t(D), t(H), 1e-2, "hinge")
    res = robust_solve(pb, eps, "inf", box=box, constraints="opposing", tol=1e-5, max_iter=5000,
                       check_every=100, direction_iters=100)
    net = blocks_to_network(res.V, res.W)
    assert net.penalty() > 0  # a non-trivial network
    worst = np.maximum(0.0, 1.0 - exact_min_margin(net, X, y, eps, box))
    exact_obj = worst.mean() + 1e-2 * net.penalty()
    assert exact_obj <= res.certificate.primal + 1e-7
    # the clean margins of the network are at least the program's (relu(z) ≥ d·z)
    A = (pb.D.numpy()[:, :, None] * np.einsum("nd,pdk->npk", pb.X.numpy(), (res.V - res.W).numpy())).sum(1)[:, 0]
    assert np.all(y * net.forward(X) >= y * A - 1e-9)


def test_estimator_standard_gates_objective_bounds_exact_worst_case():
    """ConvexReLUClassifier(adversarial_gates="standard"): patterns from a standard fit, 'opposing'
    constraints; the reported objective bounds the network's exact worst-case hinge loss + weight decay
    over ball ∩ box (computed per sample by CVXPY), and the network is not trivial."""
    from sklearn.datasets import load_digits

    from convexnn import ConvexReLUClassifier

    X, y = load_digits(return_X_y=True)
    keep = (y == 3) | (y == 8)
    X, y = X[keep][:40] / 16.0, y[keep][:40]
    eps, box = 0.05, (0.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = ConvexReLUClassifier(loss="hinge", n_patterns=10, alpha=1e-2, adversarial_eps=eps,
                                   adversarial_box=box, adversarial_gates="standard", max_iter=3000,
                                   tol=1e-5).fit(X, y)
    net = est.network_
    assert net.width > 0 and net.penalty() > 0
    ypm = np.where(y == est.classes_[1], 1.0, -1.0)
    worst = np.maximum(0.0, 1.0 - exact_min_margin(net, X, ypm, eps, box))
    exact_obj = worst.mean() + 1e-2 * net.penalty()
    assert exact_obj <= est.objective_ + 1e-7
    assert est.certificate_.dual <= est.certificate_.primal


def test_estimator_adversarial_options_are_validated():
    from sklearn.datasets import load_iris

    from convexnn import ConvexReLUClassifier

    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="adversarial_gates='standard' needs one output"):
        ConvexReLUClassifier(adversarial_eps=0.1, adversarial_gates="standard", n_patterns=3).fit(X, y)
    with pytest.raises(ValueError, match="adversarial_box"):
        ConvexReLUClassifier(adversarial_eps=0.1, adversarial_box=(1.0, 0.0), n_patterns=3).fit(X, y == 0)
