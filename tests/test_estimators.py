"""The scikit-learn estimators: API, recovered network, inputs, errors."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import check_estimator

import convexnn
import convexnn.solvers.newton as newton
from convexnn import ConvexReLUClassifier, ConvexReLURegressor
from convexnn.baselines import nonconvex_objective


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


SMALL = {"n_patterns": 12, "max_iter": 400, "tol": 1e-5}


@pytest.mark.parametrize("est", [ConvexReLURegressor(**SMALL), ConvexReLUClassifier(**SMALL),
                                 ConvexReLUClassifier(kind="gated", loss="logistic", **SMALL)],
                         ids=["regressor", "classifier", "gated-logistic"])
def test_sklearn_estimator_checks(est):
    check_estimator(est)


@pytest.mark.parametrize("loss", ["squared", "logistic", "hinge"])
def test_relu_network_objective_and_predictions_match_convex_model(breast_cancer, loss):
    X, y = breast_cancer
    est = ConvexReLUClassifier(n_patterns=20, loss=loss, max_iter=2000, tol=1e-6).fit(X, y)
    net = est.network_
    obj = nonconvex_objective(net, X, y, est.alpha, loss)
    assert obj == pytest.approx(est.objective_, rel=1e-9)
    # the convex model's predictions Σ D_i X̃ (v_i − w_i) equal the network's
    Xa = np.hstack([X, np.ones((X.shape[0], 1))])
    D = (Xa @ est.gate_vectors_ >= 0).astype(float)
    V, W = est.blocks_
    convex_pred = np.einsum("np,npk->nk", D, np.einsum("nd,pdk->npk", Xa, V - W))[:, 0]
    np.testing.assert_allclose(net.forward(X), convex_pred, atol=1e-9)
    np.testing.assert_allclose(est.decision_function(X), convex_pred, atol=1e-9)
    assert est.certificate_.dual <= est.certificate_.primal


def test_torch_export_matches_predictions(breast_cancer):
    X, y = breast_cancer
    est = ConvexReLUClassifier(n_patterns=15, max_iter=500).fit(X, y)
    module = est.to_torch()
    out = module(torch.as_tensor(X)).detach().numpy()[:, 0]
    np.testing.assert_allclose(out, est.decision_function(X), atol=1e-10)
    back = convexnn.TwoLayerReLU.from_torch(module)
    np.testing.assert_allclose(back.W1, est.network_.W1)


@pytest.mark.parametrize("layers", [
    lambda: (torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1, bias=False)),
    lambda: (torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1, bias=False), torch.nn.Sigmoid()),
    lambda: (torch.nn.Linear(3, 4), torch.nn.Linear(4, 1, bias=False)),
    lambda: (torch.nn.Linear(3, 4), torch.nn.LeakyReLU(), torch.nn.Linear(4, 1, bias=False)),
])
def test_from_torch_refuses_a_module_that_is_not_linear_relu_linear(layers):
    """Two Linear layers are not enough: another activation or an extra layer computes a different function, and
    the network read back (with every bound certified on it) would not describe the module."""
    module = torch.nn.Sequential(*layers()).double()
    with pytest.raises(ValueError, match=r"Sequential\(Linear, ReLU, Linear\), got Sequential\("):
        convexnn.TwoLayerReLU.from_torch(module)
    with pytest.raises(ValueError, match="Linear, ReLU, Linear"):
        convexnn.robustness.certify(module, np.zeros((2, 3)), np.ones(2), 0.1)


def test_multiclass_one_network_k_outputs():
    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    est = ConvexReLUClassifier(n_patterns=20, loss="logistic", max_iter=1500).fit(X, y)
    assert est.network_.w2.shape[1] == 3
    assert est.score(X, y) > 0.9
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert np.array_equal(est.classes_[proba.argmax(1)], est.predict(X))
    # each neuron feeds exactly one output (one-vs-rest): objectives coincide
    assert np.all((est.network_.w2 != 0).sum(1) == 1)
    Y = -np.ones((X.shape[0], 3))
    Y[np.arange(X.shape[0]), y] = 1
    assert nonconvex_objective(est.network_, X, Y, est.alpha, "logistic") == pytest.approx(est.objective_, rel=1e-9)


def test_predict_proba_only_for_logistic(breast_cancer):
    X, y = breast_cancer
    est = ConvexReLUClassifier(n_patterns=5, max_iter=50).fit(X[:100], y[:100])
    assert not hasattr(est, "predict_proba")


def test_inputs_numpy_pandas_torch_agree(diabetes):
    X, y = diabetes
    kw = {"n_patterns": 10, "max_iter": 300}
    a = ConvexReLURegressor(**kw).fit(X, y).predict(X)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    b = ConvexReLURegressor(**kw).fit(df, pd.Series(y)).predict(df)
    c = ConvexReLURegressor(**kw).fit(torch.as_tensor(X), torch.as_tensor(y)).predict(torch.as_tensor(X))
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, c)


def test_reproducible_by_default(diabetes):
    X, y = diabetes
    a = ConvexReLURegressor(n_patterns=10, max_iter=200).fit(X, y)
    b = ConvexReLURegressor(n_patterns=10, max_iter=200).fit(X, y)
    np.testing.assert_array_equal(a.gate_vectors_, b.gate_vectors_)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_user_gate_vectors(diabetes):
    X, y = diabetes
    G = np.random.default_rng(3).standard_normal((X.shape[1] + 1, 8))
    est = ConvexReLURegressor(gate_vectors=G, max_iter=200).fit(X, y)
    assert est.gate_vectors_.shape[0] == X.shape[1] + 1
    assert est.gate_vectors_.shape[1] <= 8
    G0 = G[:-1]  # (d, P): gates through the origin
    est0 = ConvexReLURegressor(gate_vectors=G0, max_iter=200).fit(X, y)
    np.testing.assert_array_equal(est0.gate_vectors_[-1], 0.0)


def test_all_patterns_low_rank():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2
    est = ConvexReLURegressor(n_patterns="all", alpha=1e-2, max_iter=3000).fit(X, y)
    assert est.gate_vectors_.shape[1] > 20  # all chambers of 20 planes in R³
    assert est.certificate_.relative_gap <= 1e-6
    with pytest.raises(ValueError, match="rank"):
        ConvexReLURegressor(n_patterns="all").fit(rng.normal(size=(20, 4)), rng.normal(size=20))


BAD = [
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": -1.0}, "alpha"),
    ({"n_patterns": 0}, "n_patterns"),
    ({"kind": "sigmoid"}, "kind"),
    ({"loss": "l1"}, "loss"),
    ({"solver": "newton"}, "solver"),
    ({"dtype": "float16"}, "dtype"),
]


@pytest.mark.parametrize("params,word", BAD)
def test_bad_parameters_are_named(params, word, breast_cancer):
    X, y = breast_cancer
    with pytest.raises((ValueError, TypeError), match=word):
        ConvexReLUClassifier(**params).fit(X[:50], y[:50])


def test_bad_device(breast_cancer):
    X, y = breast_cancer
    with pytest.raises(ValueError, match="device"):
        ConvexReLUClassifier(device="tpu", n_patterns=3).fit(X[:50], y[:50])


def test_bad_data_errors(breast_cancer):
    X, y = breast_cancer
    est = ConvexReLUClassifier(n_patterns=3, max_iter=20)
    Xn = X[:50].copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(Xn, y[:50])
    Xi = X[:50].copy()
    Xi[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity|inf"):
        est.fit(Xi, y[:50])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X[:50], y[:40])
    with pytest.raises(ValueError, match="2D array|2-D|Expected 2D"):
        est.fit(X[:50, 0], y[:50])
    with pytest.raises(ValueError, match="0 sample"):
        est.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="class"):
        est.fit(X[:50], np.ones(50))
    with pytest.raises(ValueError, match="could not convert|numeric|dtype"):
        est.fit(np.array([["a", "b"], ["c", "d"], ["e", "f"]]), [0, 1, 0])
    fitted = ConvexReLUClassifier(n_patterns=3, max_iter=20).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:5, :10])
    with pytest.raises(ValueError, match="gate_vectors"):
        ConvexReLUClassifier(gate_vectors=np.ones((5, 3))).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="loss='squared'"):
        ConvexReLURegressor(loss="hinge").fit(X[:50], y[:50])


def test_adversarial_training_through_the_estimator(breast_cancer):
    X, y = breast_cancer
    X, y = X[:120, :5], y[:120]
    est = ConvexReLUClassifier(n_patterns=8, loss="hinge", adversarial_eps=0.05, max_iter=5000, tol=1e-4).fit(X, y)
    clean = ConvexReLUClassifier(n_patterns=8, loss="hinge", max_iter=5000).fit(X, y)
    assert est.certificate_.dual <= est.certificate_.primal
    # the robust objective (worst-case loss) is never below the clean optimum over the same patterns
    assert est.objective_ >= clean.certificate_.dual
    with pytest.raises(ValueError, match="kind='relu'"):
        ConvexReLUClassifier(kind="gated", adversarial_eps=0.1, n_patterns=3).fit(X, y)
    with pytest.raises(ValueError, match="adversarial_eps"):
        ConvexReLUClassifier(adversarial_eps=-1.0).fit(X, y)


def test_grow_patterns_by_column_generation(diabetes):
    """n_patterns="grow": the network's non-convex objective (computed independently) equals objective_,
    it is below the optimum over 40 sampled patterns, the proven global lower bound is below it, and the
    model file round-trips."""
    import os
    import tempfile

    from convexnn import load
    from convexnn.baselines import nonconvex_objective

    X, y = diabetes
    X, y = X[:150], y[:150]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grow = ConvexReLURegressor(alpha=1e-2, n_patterns="grow").fit(X, y)
    fixed = ConvexReLURegressor(alpha=1e-2, n_patterns=40).fit(X, y)
    assert grow.solver_ == "adcg" and grow.network_.width > 0
    assert abs(nonconvex_objective(grow.network_, X, y, 1e-2) - grow.objective_) <= 1e-9 * grow.objective_
    assert grow.objective_ < fixed.objective_
    assert grow.certificate_.dual <= grow.certificate_.primal
    assert grow.global_lower_bound_ <= grow.objective_
    assert grow.gate_vectors_.shape == (X.shape[1] + 1, grow.network_.width)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "grow.npz")
        grow.save(path)
        np.testing.assert_array_equal(load(path).predict(X), grow.predict(X))
    with pytest.raises(ValueError, match="n_patterns='grow' needs kind='relu'"):
        ConvexReLURegressor(n_patterns="grow", kind="gated").fit(X, y)
    with pytest.raises(ValueError, match="loss 'squared' or 'logistic'"):
        ConvexReLUClassifier(n_patterns="grow", loss="hinge").fit(X, y > 0)


def test_max_time_keeps_a_certified_point(breast_cancer):
    """max_time: the fit stops at the limit, warns with the gap reached and keeps a certified point."""
    X, y = breast_cancer[0][:200], breast_cancer[1][:200]
    full = ConvexReLUClassifier(n_patterns=10, n_threads=1).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="max_time"):
        cut = ConvexReLUClassifier(n_patterns=10, n_threads=1, max_time=1e-3).fit(X, y)
    assert cut.n_iter_ < full.n_iter_
    assert cut.certificate_.dual <= full.certificate_.primal * (1 + 1e-9)
    assert cut.certificate_.primal >= full.certificate_.dual
    with pytest.raises(ValueError, match="max_time"):
        ConvexReLUClassifier(max_time=-1.0).fit(X, y)


def _no_convergence_warning_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        return est.fit(X, y)


def test_default_regressor_on_raw_diabetes_matches_clarabel():
    """scikit-learn's diabetes as it ships (X columns of unit norm, y from 25 to 346, not standardised).

    The active-set phase used to stop at a point 1% worse than the interior-point one, with multipliers
    that certified nothing (relative gap 0.998 after 12 s of ADMM). Now: certified to tol, and the objective
    agrees with CVXPY + Clarabel on the same program."""
    from sklearn.datasets import load_diabetes

    from convexnn.ops.patterns import add_intercept
    from convexnn.solvers import ConvexProblem, cvxpy_solve

    pytest.importorskip("cvxpy")
    X, y = load_diabetes(return_X_y=True)
    m = _no_convergence_warning_fit(ConvexReLURegressor(n_threads=1, random_state=0), X, y)
    cert = m.certificate_
    assert 0.0 <= cert.gap and cert.relative_gap <= 1e-6
    assert m.history_ and all(rec.get("stage") in ("ipm", "polish", "prune") for rec in m.history_)
    Xa = add_intercept(X)
    H = m.gate_vectors_
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    pb = ConvexProblem(t(Xa), t(y[:, None]), t((Xa @ H >= 0).astype(float)), t(H), m.alpha, "squared", "relu")
    opt = cvxpy_solve(pb).info["optimal_value"]
    assert m.objective_ == pytest.approx(opt, rel=1e-6)
    assert cert.dual <= opt * (1 + 1e-8)  # Clarabel's own accuracy on this scale is ~1e-8 relative


@pytest.mark.parametrize("name,n", [("spectf", None), ("tic_tac_toe", 600)])
def test_default_classifier_certifies_raw_pmlb_tables(name, n):
    """Raw (unstandardised) PMLB tables. The active-set phase met a numerically singular reduced Hessian
    (spectf: Newton steps of norm 1e86; it now retries with a Levenberg–Marquardt ridge) and rows at zero
    slack blocking every step (tic_tac_toe: a degenerate vertex; the rows now join the working set), and
    reported convergence at relative gaps 3e-3 and 6e-6. Now certified to tol with no warning."""
    from convexnn.datasets import load_pmlb

    X, y = load_pmlb(name, n=n, seed=0)
    m = _no_convergence_warning_fit(ConvexReLUClassifier(n_threads=1, random_state=0), X, y)
    assert 0.0 <= m.certificate_.gap and m.certificate_.relative_gap <= 1e-6
    assert m.objective_ == pytest.approx(m.certificate_.primal)
    # certified by polishing alone: no first-order continuation was needed (tic_tac_toe's took 30 s before)
    assert m.history_ and all(rec.get("stage") in ("ipm", "polish", "prune") for rec in m.history_)


def test_default_estimators_certify_raw_adult_and_house_prices(monkeypatch):
    """Raw adult (classifier, columns with standard deviations from 0.46 to 1e5) and raw 537_houses (regressor,
    house prices): the interior-point method's factored Newton solves, which go through the blocks' inverses, lost
    their accuracy (relative residuals up to 2.4e4 and 1.2e3), and the fits ended at relative gaps 0.57 and 1.0.
    With each direction checked (:meth:`_IPMSystem.solve_checked`: the whole matrix, reduced or as it is, where the
    factored direction is inaccurate) both certify, adult's by the interior-point method itself. With the factored
    directions alone that method ends above 1e-2; the active-set method from its point then certifies the fit (3e-10)
    now that the certificate takes Λ at that method's point, not at its lift to the cone (1.1e-5 before)."""
    from convexnn.datasets import load_pmlb

    X, y = load_pmlb("adult", n=600, seed=0)
    m = _no_convergence_warning_fit(ConvexReLUClassifier(n_threads=1, random_state=0), X, y)
    assert 0.0 <= m.certificate_.gap and m.certificate_.relative_gap <= 1e-6
    assert [r["relative_gap"] for r in m.history_ if r.get("stage") == "ipm"][-1] <= 1e-6
    with monkeypatch.context() as mp:  # the factored directions as they are
        mp.setattr(newton.newton_system._IPMSystem, "solve_checked",
                   lambda self, r, refine=1: (self.solve(r, refine), 0.0))
        m = ConvexReLUClassifier(n_threads=1, random_state=0).fit(X, y)
        assert [r["relative_gap"] for r in m.history_ if r.get("stage") == "ipm"][-1] > 1e-2
        assert 0.0 <= m.certificate_.gap and m.certificate_.relative_gap <= 1e-6
    X, y = load_pmlb("537_houses", n=600, seed=0)
    m = _no_convergence_warning_fit(ConvexReLURegressor(n_threads=1, random_state=0), X, y)
    assert 0.0 <= m.certificate_.gap and m.certificate_.relative_gap <= 1e-6
    assert m.objective_ == pytest.approx(m.certificate_.primal)


def test_auto_runs_the_interior_point_method_once(monkeypatch):
    """Raw adult, logistic loss (600 rows), with the interior-point method held to 80 iterations (its former limit;
    it certifies at its 90th): from scratch it stops uncertified (relative gap 1.4e-3) and the active-set runs from
    its point and multipliers fall short. solve(auto) then runs the active-set method from that point with working
    sets guessed afresh (2.0e-6; 2.1e-5 when the certificate took Λ at the point's lift to the cone), and no longer
    the interior-point method again: it starts from its own point, so it only repeated itself."""
    from convexnn.datasets import load_pmlb

    calls = []
    ipm = newton.interior_point._ipm
    monkeypatch.setattr(newton.driver, "_ipm", lambda *a, **k: calls.append(1) or ipm(*a, **{**k, "max_iter": 80}))
    X, y = load_pmlb("adult", n=600, seed=0)
    with pytest.warns(ConvergenceWarning):
        m = ConvexReLUClassifier(loss="logistic", n_threads=1, random_state=0).fit(X, y)
    assert len(calls) == 1
    ipm_gap = [r["relative_gap"] for r in m.history_ if r.get("stage") == "ipm"][-1]
    assert ipm_gap > 1e-4
    assert 0.0 <= m.certificate_.gap and m.certificate_.relative_gap < min(ipm_gap / 10, 1e-5)


def test_default_logistic_classifier_certifies_raw_adult(monkeypatch):
    """Raw adult, logistic loss (600 rows, fnlwgt up to 7e5): the interior-point method from scratch needs 90
    iterations to certify the default tol; with the former limit of 80 the fit ended uncertified (1.9e-6, after two
    active-set runs)."""
    from convexnn.datasets import load_pmlb

    its = []
    ipm = newton.interior_point._ipm

    def counted(col, info, **k):
        i0 = info.ipm_iterations
        out = ipm(col, info, **k)
        its.append(info.ipm_iterations - i0)
        return out

    monkeypatch.setattr(newton.driver, "_ipm", counted)
    X, y = load_pmlb("adult", n=600, seed=0)
    m = _no_convergence_warning_fit(ConvexReLUClassifier(loss="logistic", n_threads=1, random_state=0), X, y)
    assert 0.0 <= m.certificate_.gap and m.certificate_.relative_gap <= 1e-6
    assert len(its) == 1 and 80 < its[0] <= newton.interior_point.IPM_MAX_ITER
    assert m.certificate_.primal == pytest.approx(m.objective_)


def test_default_classifier_certifies_raw_pixels_with_as_many_rows_as_columns():
    """200 raw Fashion-MNIST images (sneaker vs ankle boot, pixels in [0, 1], 50 patterns): the row-space program
    has n = d and can fit the labels almost exactly. With the group norm smoothed by its barrier, the
    interior-point iterates traded norm for fit without bound (objective 0.038 → 1.6 in 14 iterations, optimum
    0.00305) and the fit ended at relative gap 1.0, training accuracy 0.48; with the norm as second-order cones it
    certifies (20 iterations)."""
    from convexnn.datasets import load_fashion_mnist

    X, y = load_fashion_mnist("train", classes=(7, 9), n=200, seed=0)
    m = _no_convergence_warning_fit(ConvexReLUClassifier(n_threads=1, n_patterns=50, random_state=0),
                                    X.reshape(len(X), -1).astype(np.float64), y)
    assert 0.0 <= m.certificate_.gap and m.certificate_.relative_gap <= 1e-6
    assert m.score(X.reshape(len(X), -1), y) == 1.0


def test_default_classifier_certifies_raw_magic():
    """Raw magic (600 rows, columns on scales up to 1e2): the norm cones drift off the central path (a block's x
    near its cone's boundary while its dual z is near ‖z‖ = α) and the interior-point steps shrank to 0.01–0.1,
    no certificate in 80 iterations, until the Gondzio corrector moved the cones' eigenvalues too."""
    from convexnn.datasets import load_pmlb

    X, y = load_pmlb("magic", n=600, seed=0)
    m = _no_convergence_warning_fit(ConvexReLUClassifier(n_threads=1, random_state=0), X, y)
    assert 0.0 <= m.certificate_.gap and m.certificate_.relative_gap <= 1e-6
    assert m.objective_ == pytest.approx(m.certificate_.primal)


def test_default_hinge_classifier_certifies_standardised_magic():
    """Standardised magic (600 rows), hinge loss. The barrier stops at about 2e-6 (rounding); the reduced
    Newton finish used to stall on a support block whose optimum is zero (traced on standardised spectf: a
    block at norm 2e-8 against a median 0.19 held the KKT residual at 3e-6), and the fit warned at 2.4e-6.
    The finish now drops such blocks and certifies to rounding (asked for by tol = 1e-10: with the default 1e-6
    the fit stops once it certifies that, here at 1.1e-7)."""
    from convexnn.datasets import load_pmlb

    X, y = load_pmlb("magic", n=600, seed=0)
    X = (X - X.mean(0)) / X.std(0)
    m = _no_convergence_warning_fit(ConvexReLUClassifier(loss="hinge", tol=1e-10, n_threads=1, random_state=0), X, y)
    assert 0.0 <= m.certificate_.gap and m.certificate_.relative_gap <= 1e-10
    assert m.objective_ == pytest.approx(m.certificate_.primal)


def test_convergence_warning_suggests_standardising_badly_scaled_X(breast_cancer):
    """Columns on scales 1e5 apart: when the fit is not certified, the warning says to standardise X."""
    X, y = breast_cancer[0][:150].copy(), breast_cancer[1][:150]
    X[:, 0] *= 1e5
    with pytest.warns(ConvergenceWarning, match="standardise X"):
        ConvexReLUClassifier(n_patterns=10, n_threads=1, max_iter=1, max_time=1e-3).fit(X, y)
    with pytest.warns(ConvergenceWarning) as record:  # well-scaled: no such advice
        ConvexReLUClassifier(n_patterns=10, n_threads=1, max_iter=1, max_time=1e-3).fit(breast_cancer[0][:150], y)
    assert not any("standardise" in str(r.message) for r in record)


def test_convergence_warning_flags_a_nearly_unregularised_program(diabetes):
    """y on a scale 1e9 times alpha's: when the fit is not certified, the warning names the ratio and says to
    scale y or raise alpha; on the standardised target it does not."""
    X, y = diabetes
    fast = {"n_patterns": 10, "n_threads": 1, "max_iter": 1, "max_time": 1e-3}
    with pytest.warns(ConvergenceWarning, match="nearly unregularised"):
        ConvexReLURegressor(**fast).fit(X, 1e9 * y)
    with pytest.warns(ConvergenceWarning) as record:
        ConvexReLURegressor(**fast).fit(X, y)
    assert not any("unregularised" in str(r.message) for r in record)
