"""Regularisation paths with warm starts, and the cross-validated estimators (issue 3, item 2).

Small diabetes and breast-cancer subsets, 20 patterns: every fit is certified, so warm and cold fits must
agree to solver tolerance, and the optimal value must fall monotonically as alpha decreases.
"""

import numpy as np
import pytest
from sklearn.model_selection import KFold

from convexnn import ConvexReLUClassifierCV, ConvexReLURegressor, ConvexReLURegressorCV
from convexnn.model_selection import alpha_max, regularization_path

PARAMS = {"n_patterns": 20, "random_state": 0}


@pytest.fixture(scope="module")
def small_diabetes(diabetes):
    X, y = diabetes
    return X[:120], y[:120]


def test_regularization_path_is_certified_and_matches_cold_fits(small_diabetes):
    X, y = small_diabetes
    est = ConvexReLURegressor(**PARAMS, n_threads=1)
    path = regularization_path(X, y, estimator=est, n_alphas=4, eps=1e-2)
    amax = alpha_max(X, y, est)
    np.testing.assert_allclose(path.alphas, np.geomspace(amax, 1e-2 * amax, 4))
    assert all(c.relative_gap <= 1e-6 for c in path.certificates)
    # at alpha_max the optimum is the zero network, whose objective is L(0) = mean(y²)/2
    assert path.widths[0] == 0 and path.objectives[0] == pytest.approx(0.5 * np.mean(y**2), rel=1e-12)
    # the optimal value is non-decreasing in alpha, and the networks grow as alpha falls
    assert np.all(np.diff(path.objectives) <= 1e-9 * path.objectives[:-1])
    assert path.widths[-1] > 0
    for a, obj in zip(path.alphas[1:], path.objectives[1:], strict=True):
        cold = ConvexReLURegressor(**PARAMS, n_threads=1, alpha=a).fit(X, y)
        assert cold.objective_ == pytest.approx(obj, rel=2e-6)


def test_cv_chooses_the_best_mean_score_and_runs_folds_in_parallel(small_diabetes):
    X, y = small_diabetes
    serial = ConvexReLURegressorCV(n_alphas=3, eps=1e-2, cv=3, estimator_params={**PARAMS, "n_threads": 1}).fit(X, y)
    assert serial.cv_scores_.shape == (3, 3)
    assert serial.alpha_ == serial.alphas_[np.argmax(serial.cv_scores_.mean(1))]
    # a score is the held-out R² of that fold's fit at that alpha (warm-started there, cold here)
    tr, te = next(iter(KFold(3).split(X)))
    fold = ConvexReLURegressor(**PARAMS, n_threads=1, alpha=serial.alphas_[2]).fit(X[tr], y[tr])
    assert serial.cv_scores_[2, 0] == pytest.approx(fold.score(X[te], y[te]), abs=1e-5)
    assert serial.best_estimator_.alpha == serial.alpha_ and serial.certificate_.relative_gap <= 1e-6
    np.testing.assert_allclose(serial.predict(X), serial.best_estimator_.predict(X))
    # two worker processes, one thread each (n_threads left to the CV estimator): the same scores
    parallel = ConvexReLURegressorCV(n_alphas=3, eps=1e-2, cv=3, estimator_params=PARAMS, n_jobs=2).fit(X, y)
    np.testing.assert_allclose(parallel.cv_scores_, serial.cv_scores_, rtol=1e-9, atol=1e-12)
    assert parallel.alpha_ == serial.alpha_


def test_classifier_cv_on_breast_cancer(breast_cancer):
    X, y = breast_cancer[0][:200], breast_cancer[1][:200]
    est = ConvexReLUClassifierCV(n_alphas=3, eps=1e-2, cv=3, estimator_params={**PARAMS, "n_threads": 1}).fit(X, y)
    np.testing.assert_array_equal(est.classes_, [-1.0, 1.0])
    assert est.cv_scores_.shape == (3, 3) and est.score(X, y) > 0.9
    assert est.decision_function(X).shape == (200,)


@pytest.mark.slow
@pytest.mark.parametrize("cls", [ConvexReLURegressorCV, ConvexReLUClassifierCV])
def test_cv_estimators_pass_sklearn_estimator_checks(cls):
    # ~25 s (regressor) and ~45 s (classifier) on one core: slow marker
    from sklearn.utils.estimator_checks import check_estimator

    params = {"n_patterns": 8, "random_state": 0, "max_iter": 200, "n_threads": 1}
    check_estimator(cls(n_alphas=2, cv=2, estimator_params=params))


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_cv_raises_the_folds_convergence_warnings_in_the_caller(small_diabetes, n_jobs):
    """A fold's ConvergenceWarning reaches the caller, from a worker process too (ADMM stopped at 5 iterations
    cannot certify these fits)."""
    from sklearn.exceptions import ConvergenceWarning

    X, y = small_diabetes
    params = {**PARAMS, "solver": "admm", "max_iter": 5, "n_threads": 1}
    with pytest.warns(ConvergenceWarning) as caught:
        ConvexReLURegressorCV(n_alphas=2, eps=1e-2, cv=2, estimator_params=params, n_jobs=n_jobs).fit(X, y)
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("cross-validation fold 0: convexnn did not reach") for m in messages)
    assert any(m.startswith("cross-validation fold 1: ") for m in messages)
