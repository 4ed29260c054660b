"""Regularisation paths with warm starts, and estimators that choose alpha by cross-validation
(like scikit-learn's ``LassoCV``)."""

from __future__ import annotations

import copy
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import check_cv
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from convexnn._config import available_cores, default_num_threads
from convexnn.estimators import ConvexReLUClassifier, ConvexReLURegressor, _ConvexReLUBase, _to_numpy
from convexnn.network import TwoLayerReLU
from convexnn.solvers.problem import Certificate


@dataclass
class PathResult:
    """One fit per alpha, in the order solved (largest alpha first)."""

    alphas: np.ndarray
    objectives: np.ndarray
    certificates: list[Certificate]
    networks: list[TwoLayerReLU]
    n_iter: np.ndarray
    widths: np.ndarray
    estimators: list[Any] = field(default_factory=list, repr=False)


def alpha_max(X: Any, y: Any, estimator: _ConvexReLUBase) -> float:
    """The smallest alpha at which the gated program's solution is zero: max_i ‖X̃ᵀ D_i ∇L(0)‖₂ over the
    estimator's patterns (an upper end for an alpha grid; (C)'s zero threshold is no larger)."""
    est = clone(estimator).set_params(max_iter=1)
    X = np.asarray(_to_numpy(X), dtype=np.float64)
    Xa = est._augment(X) if est.fit_intercept else X
    D, _ = est._gates(Xa)
    y = np.asarray(_to_numpy(y))
    if isinstance(est, ConvexReLUClassifier):
        classes, idx = np.unique(y, return_inverse=True)
        if classes.size == 2:
            Y = (2.0 * idx - 1.0)[:, None]
        else:
            Y = -np.ones((y.size, classes.size))
            Y[np.arange(y.size), idx] = 1.0
    else:
        Y = y.reshape(y.shape[0], -1).astype(np.float64)
    n = X.shape[0]
    if est.loss == "squared":
        G = -Y / n
    elif est.loss == "logistic":
        G = -Y / (2 * n)
    else:
        G = -Y / n
    # ‖X̃ᵀ D_i g_k‖ for every pattern i and column k
    norms = np.linalg.norm(np.einsum("nd,np,nk->pdk", Xa, D, G), axis=1)
    return float(norms.max())


def regularization_path(X: Any, y: Any, alphas: Any = None, *, estimator: _ConvexReLUBase | None = None,
                        n_alphas: int = 10, eps: float = 1e-3, keep_estimators: bool = False) -> PathResult:
    """Fit ``estimator`` (default ``ConvexReLURegressor()``) for every alpha, largest first, each fit
    warm-started from the previous one on the same gates.

    ``alphas`` default: ``n_alphas`` values log-spaced from :func:`alpha_max` down to eps·alpha_max.
    """
    est = clone(estimator) if estimator is not None else ConvexReLURegressor()
    if alphas is None:
        amax = alpha_max(X, y, est)
        alphas = np.geomspace(amax, amax * eps, n_alphas)
    alphas = np.sort(np.asarray(alphas, dtype=np.float64))[::-1]
    if alphas.size == 0 or np.any(~np.isfinite(alphas)) or np.any(alphas <= 0):
        raise ValueError("alphas must be a non-empty list of positive finite numbers")
    est.set_params(warm_start=True)
    certs, nets, objs, iters, widths, ests = [], [], [], [], [], []
    for a in alphas:
        est.set_params(alpha=float(a)).fit(X, y)
        certs.append(est.certificate_)
        nets.append(est.network_)
        objs.append(est.objective_)
        iters.append(est.n_iter_)
        widths.append(est.network_.width)
        if keep_estimators:
            ests.append(copy.deepcopy(est).set_params(warm_start=False))
    return PathResult(alphas=alphas, objectives=np.array(objs), certificates=certs, networks=nets,
                      n_iter=np.array(iters), widths=np.array(widths), estimators=ests)


def _fold_scores(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, alphas: np.ndarray,
                 estimator: _ConvexReLUBase) -> tuple[np.ndarray, list[str]]:
    """The held-out scores (len(alphas),) of one fold's warm-started path (run in a worker when n_jobs > 1), and
    the messages of the ConvergenceWarnings its fits raised (a worker's warnings do not reach the caller: they
    are handed back to be raised there)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        path = regularization_path(X[train], y[train], alphas, estimator=estimator, keep_estimators=True)
    scores = np.array([e.score(X[test], y[test]) for e in path.estimators])
    return scores, [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


class _ConvexReLUCV(BaseEstimator):
    """Choose alpha by K-fold cross-validation over a warm-started path, then refit on all data."""

    _base: type = ConvexReLURegressor
    _parameter_constraints: dict = {
        "alphas": ["array-like", None],
        "n_alphas": [Interval(numbers.Integral, 1, None, closed="left")],
        "eps": [Interval(numbers.Real, 0, 1, closed="neither")],
        "cv": ["cv_object"],
        "estimator_params": [dict, None],
        "n_jobs": [numbers.Integral, None],
    }

    def __init__(self, alphas: Any = None, n_alphas: int = 8, eps: float = 1e-3, cv: Any = 5,
                 estimator_params: dict | None = None, n_jobs: int | None = None) -> None:
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.eps = eps
        self.cv = cv
        self.estimator_params = estimator_params
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any) -> _ConvexReLUCV:
        self._validate_params()
        regression = not issubclass(self._base, ClassifierMixin)
        X, y = validate_data(self, _to_numpy(X), _to_numpy(y), dtype=np.float64, order="C", ensure_min_samples=2,
                             multi_output=regression, y_numeric=regression)
        if not regression:
            check_classification_targets(y)
        base = self._base(**(self.estimator_params or {}))
        alphas = self.alphas
        if alphas is None:
            amax = alpha_max(X, y, base)
            alphas = np.geomspace(amax, amax * self.eps, self.n_alphas)
        alphas = np.sort(np.asarray(alphas, dtype=np.float64))[::-1]
        cv = check_cv(self.cv, y, classifier=isinstance(base, ClassifierMixin))
        splits = list(cv.split(X, y))
        jobs = min(effective_n_jobs(self.n_jobs), len(splits))
        fold_base = base
        if jobs > 1 and base.n_threads is None:
            # the folds share the cores: each its own share of them, not every core each (oversubscribed BLAS
            # threads slow small products down by orders of magnitude), and one thread for a small program
            # (n·d·P below _config.SMALL_WORK, as a fit without n_threads would choose)
            patterns = base.n_patterns if isinstance(base.n_patterns, int) else X.shape[0]
            share = min(available_cores() // jobs, default_num_threads(X.shape[0] * (X.shape[1] + 1) * patterns))
            fold_base = clone(base).set_params(n_threads=max(1, share))
        folds = Parallel(n_jobs=jobs)(delayed(_fold_scores)(X, y, tr, te, alphas, fold_base) for tr, te in splits)
        for j, (_, messages) in enumerate(folds):  # the same in-process and from workers
            for message in dict.fromkeys(messages):
                warnings.warn(f"cross-validation fold {j}: {message}", ConvergenceWarning, stacklevel=2)
        self.alphas_ = alphas
        self.cv_scores_ = np.stack([scores for scores, _ in folds], axis=1)
        scores = self.cv_scores_
        best = int(np.argmax(scores.mean(1)))
        self.alpha_ = float(alphas[best])
        self.best_estimator_ = clone(base).set_params(alpha=self.alpha_).fit(X, y)
        for attr in ("network_", "certificate_", "objective_", "gate_vectors_", "n_features_in_"):
            setattr(self, attr, getattr(self.best_estimator_, attr))
        if hasattr(self.best_estimator_, "classes_"):
            self.classes_ = self.best_estimator_.classes_
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict(X)


class ConvexReLURegressorCV(RegressorMixin, _ConvexReLUCV):
    """:class:`ConvexReLURegressor` with alpha chosen by cross-validated R² over a warm-started path.

    Parameters: ``alphas`` (default: ``n_alphas`` log-spaced values from alpha_max down to
    eps·alpha_max), ``cv`` (folds or splitter), ``estimator_params`` (the other parameters of the
    regressor), ``n_jobs`` (folds fitted in parallel processes, as in scikit-learn: None one, −1 every core;
    without an ``n_threads`` in ``estimator_params`` each fold then gets its share of the cores).
    Attributes: ``alpha_``, ``alphas_``, ``cv_scores_`` (n_alphas, n_folds),
    ``best_estimator_`` and its ``network_``, ``certificate_``.
    """

    _base = ConvexReLURegressor

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # as the regressor: y (n, K), scored by the mean R² over columns
        tags.target_tags.single_output = True
        return tags


class ConvexReLUClassifierCV(ClassifierMixin, _ConvexReLUCV):
    """:class:`ConvexReLUClassifier` with alpha chosen by cross-validated accuracy (see
    :class:`ConvexReLURegressorCV`)."""

    _base = ConvexReLUClassifier

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.decision_function(X)
