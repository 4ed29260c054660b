"""scikit-learn estimators: thin layers over the convex programs and their solvers.

Objective (the same everywhere in convexnn), for n samples and K output columns:

    (1/n) Σ_k Σ_c ℓ(ŷ_kc, y_kc) + alpha · Σ_blocks ‖·‖₂

which for ``kind="relu"`` equals the non-convex objective of the recovered network
loss + (alpha/2)(‖W1‖² + ‖b1‖² + ‖w2‖²). X is used as given (no hidden rescaling): standardise it in a
scikit-learn Pipeline. Multi-class problems (K > 2 classes) are solved one-vs-rest: K programs on ±1
targets that share the gate vectors, giving one network with K outputs; the predicted class is the
arg-max output.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from convexnn._config import num_threads, resolve_device, resolve_dtype
from convexnn.network import TwoLayerReLU, network_from_blocks
from convexnn.ops import operators, patterns
from convexnn.solvers import SOLVERS, ConvexProblem, SolverResult, solve
from convexnn.solvers.problem import KINDS, Certificate


def _to_numpy(a: Any) -> Any:
    """Accept torch tensors at the boundary (scikit-learn's validation handles NumPy and pandas)."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return a


# columns of X whose standard deviations differ by more than this factor make the convex program
# ill-conditioned in floating point (the interior-point Newton systems lose every digit)
SCALE_SPREAD_HINT = 1e3


def _scale_hint(X: np.ndarray) -> str:
    """A sentence for the convergence warning when X's columns are on very different scales, else ""."""
    sd = X.std(axis=0)
    sd = sd[sd > 0]
    if sd.size < 2 or not sd.max() > SCALE_SPREAD_HINT * sd.min():
        return ""
    return (f"; the columns of X have standard deviations from {sd.min():.2g} to {sd.max():.2g}, which makes "
            "the program ill-conditioned: standardise X (e.g. sklearn.preprocessing.StandardScaler in a Pipeline)")


# alpha below this fraction of max_i ‖X̃ᵀD_i y‖/n (the scale above which the zero network is optimal) leaves the
# program nearly unregularised: its certificate needs ~1/ratio relative accuracy in the dual constraints. On the
# shipped data sets (benchmarks/bench_defaults.py) every default fit with a ratio below 1e-8 failed to certify
# (537_houses raw 1.5e-12 and standardised-X 4.7e-9, 197_cpu_act raw 8.6e-12, adult raw 8.3e-9) and every one
# above 5e-6 certified
ALPHA_RATIO_HINT = 1e-7


def _alpha_hint(problem: ConvexProblem) -> str:
    """A sentence for the convergence warning when alpha is tiny for the data's scale, else ""."""
    top = float(operators.group_norms(operators.adjoint(problem.X, problem.D, problem.Y)).max()) / problem.n
    if not problem.alpha < ALPHA_RATIO_HINT * top:
        return ""
    return (f"; alpha = {problem.alpha:g} is {problem.alpha / top:.0e} of max_i ‖X̃ᵀD_i y‖/n = {top:.2g} (above which "
            "the zero network is optimal): the program is nearly unregularised and certifying it needs more digits "
            "than floating point keeps; scale y (e.g. sklearn.compose.TransformedTargetRegressor) and X, or raise "
            "alpha")


class _ConvexReLUBase(BaseEstimator):
    """Shared parameters, validation and fitting of the convex two-layer ReLU estimators."""

    _parameter_constraints: dict = {
        "alpha": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_patterns": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"all", "grow"})],
        "kind": [StrOptions(set(KINDS))],
        "loss": [StrOptions({"squared", "logistic", "hinge"})],
        "solver": [StrOptions(set(SOLVERS))],
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_time": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "fit_intercept": ["boolean"],
        "gate_vectors": ["array-like", None],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "dtype": [StrOptions({"float32", "float64"})],
        "n_threads": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "warm_start": ["boolean"],
        "adversarial_eps": [Interval(numbers.Real, 0, None, closed="left")],
        "adversarial_norm": [StrOptions({"inf", "2"}), Options(numbers.Integral, {2})],
        "adversarial_gates": [StrOptions({"auto", "standard", "sampled"})],
        "adversarial_box": [tuple, list, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        alpha: float = 1e-3,
        n_patterns: int | str = 100,
        kind: str = "relu",
        loss: str = "squared",
        solver: str = "auto",
        tol: float = 1e-6,
        max_iter: int = 10000,
        max_time: float | None = None,
        fit_intercept: bool = True,
        gate_vectors: np.ndarray | None = None,
        random_state: int | np.random.Generator | None = None,
        device: str = "cpu",
        dtype: str = "float64",
        n_threads: int | None = None,
        warm_start: bool = False,
        adversarial_eps: float = 0.0,
        adversarial_norm: str | int = "inf",
        adversarial_gates: str = "auto",
        adversarial_box: tuple[float, float] | None = None,
        verbose: bool = False,
    ) -> None:
        self.alpha = alpha
        self.n_patterns = n_patterns
        self.kind = kind
        self.loss = loss
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.max_time = max_time
        self.fit_intercept = fit_intercept
        self.gate_vectors = gate_vectors
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.n_threads = n_threads
        self.warm_start = warm_start
        self.adversarial_eps = adversarial_eps
        self.adversarial_norm = adversarial_norm
        self.adversarial_gates = adversarial_gates
        self.adversarial_box = adversarial_box
        self.verbose = verbose

    # --- the pieces of fit -------------------------------------------------------------------------
    def _max_time(self) -> float | None:
        return None if self.max_time is None else float(self.max_time)

    def _augment(self, X: np.ndarray) -> np.ndarray:
        return patterns.add_intercept(X) if self.fit_intercept else X

    def _gates(self, Xa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Patterns D (n, P) and gates H (d̃, P) from the user's gates, sampling, or enumeration."""
        d_aug = Xa.shape[1]
        if self.gate_vectors is not None:
            H = np.asarray(_to_numpy(self.gate_vectors), dtype=np.float64)
            d = d_aug - 1 if self.fit_intercept else d_aug
            if H.ndim != 2 or H.shape[0] not in {d_aug, d} or H.shape[1] < 1:
                expect = f"({d_aug}, P) or ({d}, P)" if self.fit_intercept else f"({d}, P)"
                raise ValueError(f"gate_vectors must have shape {expect} for {d} features; got {H.shape}")
            if not np.all(np.isfinite(H)):
                raise ValueError("gate_vectors contains NaN or inf")
            if H.shape[0] != d_aug:  # gates through the origin: no bias component
                H = np.vstack([H, np.zeros((1, H.shape[1]))])
        elif self.n_patterns == "all":
            return patterns.enumerate_patterns(Xa)
        else:
            seed = 0 if self.random_state is None else self.random_state
            H = patterns.sample_gates(d_aug, int(self.n_patterns), seed)
        D, H = patterns.patterns_from_gates(Xa, H)
        if D.shape[1] == 0:
            raise ValueError("no gate vector gives a non-empty activation pattern on this data")
        return D, H

    def _fit_targets(self, X: np.ndarray, Y: np.ndarray, callback=None) -> None:
        """Solve the convex program for targets Y (n, K) and set the fitted attributes."""
        if self.n_patterns == "grow":
            self._fit_grow(X, Y, callback)
            return
        dev = resolve_device(self.device)
        dt = resolve_dtype(self.dtype)
        Xa = self._augment(X)
        warm = None
        if self.warm_start and hasattr(self, "gate_vectors_") and self.gate_vectors_.shape[0] == Xa.shape[1]:
            # reuse the gates and start from the previous solution (same data, e.g. along an alpha path)
            H = self.gate_vectors_
            D = (Xa @ H >= 0).astype(np.float64)
            B = np.asarray(self.blocks_)
            if B.shape[-1] == Y.shape[1] and B.shape[-3] == H.shape[1]:
                V = torch.as_tensor(B if self.kind == "gated" else B[0], dtype=dt, device=dev)
                W = None if self.kind == "gated" else torch.as_tensor(B[1], dtype=dt, device=dev)
                warm = SolverResult(V=V, W=W, certificate=Certificate(np.inf, -np.inf), n_iter=0,
                                    converged=False, solver="warm")
        else:
            D, H = self._gates(Xa)

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, dtype=dt, device=dev)

        problem = ConvexProblem(t(Xa), t(Y), t(D), t(H), float(self.alpha), self.loss, self.kind)
        if self.verbose and callback is None:
            def callback(rec: dict) -> None:
                # interior-point records certify one output column's program at a time
                of = f"  (output {rec['column']})" if rec.get("columns", 1) > 1 else ""
                print(f"[convexnn] iter {rec['iteration']:6d}  primal {rec['primal']:.8g}  "
                      f"dual {rec['dual']:.8g}  rel.gap {rec['relative_gap']:.2e}{of}")
        with num_threads(self.n_threads, work=problem.n * problem.d * problem.P):
            if self.adversarial_eps > 0:
                if self.kind != "relu":
                    raise ValueError("adversarial training (adversarial_eps > 0) needs kind='relu'")
                from convexnn.solvers.robust import robust_solve

                box = self._check_box()
                constraints, init = "all", "zeros"
                if self._standard_gates(Y, warm):
                    D, H, constraints = self._robust_gates_from_standard_fit(X, Y, box)
                    problem = ConvexProblem(t(Xa), t(Y), t(D), t(H), float(self.alpha), self.loss, self.kind)
                    init = "penalty"
                result = robust_solve(problem, float(self.adversarial_eps), self.adversarial_norm,
                                      tol=float(self.tol), max_iter=int(self.max_iter), max_time=self._max_time(),
                                      box=box, constraints=constraints, init=init, intercept=self.fit_intercept,
                                      callback=callback, warm_start=warm)
            else:
                options = {} if self.solver == "cvxpy" else {"callback": callback, "warm_start": warm,
                                                             "max_time": self._max_time()}
                result = solve(problem, solver=self.solver, tol=float(self.tol), max_iter=int(self.max_iter),
                               **options)
        if not result.converged:
            why = "".join(f"; {note}" for note in result.info.get("polish_notes", []))
            limit = "" if self.max_time is None else f" or max_time ({self.max_time:g} s)"
            warnings.warn(
                f"convexnn did not reach relative gap {self.tol:g} in {result.n_iter} iterations "
                f"(reached {result.certificate.relative_gap:.2e}{why}); increase max_iter{limit} or tol"
                f"{_scale_hint(X)}{_alpha_hint(problem)}",
                ConvergenceWarning, stacklevel=3,
            )
        self._set_solution(result, Xa, H)

    # --- n_patterns="grow": neuron-level column generation -------------------------------------------
    def _fit_grow(self, X: np.ndarray, Y: np.ndarray, callback=None) -> None:
        """Fit by :func:`convexnn.solvers.column_generation.adcg`: neurons are added where the dual
        constraint ‖Λᵀ(X̃u)₊‖ ≤ alpha of the infinite-width program is violated (MATH.md §8), then the
        weights are re-optimised; no fixed pattern set."""
        from convexnn.solvers.column_generation import adcg

        problems = []
        if self.kind != "relu":
            problems.append("kind='relu'")
        if self.loss not in ("squared", "logistic"):
            problems.append("loss 'squared' or 'logistic'")
        if self.adversarial_eps > 0:
            problems.append("adversarial_eps=0")
        if self.gate_vectors is not None:
            problems.append("gate_vectors=None")
        if resolve_device(self.device).type != "cpu":
            problems.append("device='cpu'")
        if problems:
            raise ValueError("n_patterns='grow' needs " + ", ".join(problems))
        seed = 0 if self.random_state is None else self.random_state
        cb = None if callback is None else (lambda rec, net: callback(rec))
        # column generation's work: its pricing products of X̃ with about 100 directions (n_random + n_data starts);
        # breast cancer (398 rows, 20 rounds): 1.7 s on one thread, 4.1 s on two
        with num_threads(self.n_threads, work=X.shape[0] * (X.shape[1] + 1) * 100), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = adcg(X, Y, float(self.alpha), self.loss, fit_intercept=self.fit_intercept, tol=float(self.tol),
                       seed=seed, dtype=resolve_dtype(self.dtype), callback=cb, max_time=self._max_time())
        if not res.converged:
            warnings.warn(f"convexnn (n_patterns='grow') stopped after {res.rounds} rounds with a dual "
                          f"violation of {res.max_violation:.4g}·alpha", ConvergenceWarning, stacklevel=3)
        U = res.U.detach().cpu().double().numpy()  # (d̃, m) unit neurons
        C = res.C.detach().cpu().double().numpy()  # (m, K)
        self.gate_vectors_ = U
        self.blocks_ = np.stack([np.einsum("dm,mk->mdk", U, np.clip(C, 0, None)),
                                 np.einsum("dm,mk->mdk", U, np.clip(-C, 0, None))])
        self.certificate_ = Certificate(primal=float(res.lasso_primal), dual=float(res.lasso_dual))
        self.objective_ = self.certificate_.primal
        self.n_iter_ = int(res.rounds)
        self.history_ = res.history
        self.solver_ = "adcg"
        self.network_ = res.network
        self.max_violation_ = float(res.max_violation)
        self.global_lower_bound_ = float(res.rigorous_lower_bound)

    # --- adversarial training: patterns chosen for robustness -----------------------------------------
    def _check_box(self) -> tuple[float, float] | None:
        box = self.adversarial_box
        if box is None:
            return None
        try:
            lo, hi = (float(v) for v in box)
        except (TypeError, ValueError):
            raise ValueError(f"adversarial_box must be a pair (lo, hi) of numbers, got {box!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"adversarial_box must be finite with lo < hi, got {box!r}")
        return lo, hi

    def _standard_gates(self, Y: np.ndarray, warm) -> bool:
        """Whether adversarial training picks its patterns from a standard fit (see the class docstring)."""
        mode = self.adversarial_gates
        possible = Y.shape[1] == 1 and self.fit_intercept and self.gate_vectors is None and warm is None
        if mode == "standard" and not possible:
            raise ValueError("adversarial_gates='standard' needs one output (binary classification or one "
                             "regression target), fit_intercept=True and no gate_vectors; use 'sampled'")
        return mode == "standard" or (mode == "auto" and possible)

    def _robust_gates_from_standard_fit(self, X: np.ndarray, Y: np.ndarray,
                                        box: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray, str]:
        """Patterns (D, H) for the robust program from the neurons of a standard (non-robust) convex fit.

        The fixed-pattern robust program (MATH.md §9) forces a block to zero as soon as one constrained
        training point lies within ε of every hyperplane realising its pattern; sampled Gaussian gates
        almost always have such points on image data. So: fit the gated program (FISTA; logistic loss for
        classification, squared for regression) with the same alpha and gates, take the neurons of its
        network as directions, and move each threshold just outside the ε-intervals of the points its
        block is constrained by (:func:`convexnn.solvers.robust.robust_patterns`). For classification
        only the neurons voting against a point's label are constrained ("opposing"; the objective is
        then a sound upper bound of the worst-case training loss), for regression all ("all", exact).
        """
        from sklearn.base import clone

        from convexnn.solvers.robust import robust_patterns

        smooth = "squared" if self.loss == "squared" else "logistic"
        pre = clone(self).set_params(adversarial_eps=0.0, kind="gated", loss=smooth, solver="auto",
                                     tol=max(float(self.tol), 1e-4), warm_start=False, verbose=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pre._fit_targets(X, Y)
        net = pre.network_
        constraints = "all" if self.loss == "squared" else "opposing"
        D, H = robust_patterns(X, Y[:, 0], float(self.adversarial_eps), net.W1, net.b1,
                               roles=np.sign(np.asarray(net.w2).reshape(-1)), norm=self.adversarial_norm,
                               box=box, constraints=constraints)
        if D.shape[1] == 0:
            raise ValueError("no robust pattern could be built from the standard fit; use "
                             "adversarial_gates='sampled'")
        return D, H, constraints

    def _set_solution(self, result: SolverResult, Xa: np.ndarray, H: np.ndarray) -> None:
        V = result.V.detach().cpu().double().numpy()
        if result.W is None:
            # gated: keep the blocks u_i for prediction; the ReLU network comes from the cone split
            self.blocks_ = V
            V, W = _cone_split(Xa, H, V)
        else:
            W = result.W.detach().cpu().double().numpy()
            self.blocks_ = np.stack([V, W])  # (2, P, d̃, K)
        self.gate_vectors_ = H
        self.certificate_ = result.certificate
        self.objective_ = result.certificate.primal
        self.n_iter_ = result.n_iter
        self.history_ = result.history
        self.solver_ = result.solver
        self.network_ = self._network_from_blocks(V, W)

    def _network_from_blocks(self, V: np.ndarray, W: np.ndarray) -> TwoLayerReLU:
        """MATH.md §3 (:func:`convexnn.network.network_from_blocks`)."""
        return network_from_blocks(V, W, intercept=self.fit_intercept)

    def _raw_predict(self, X: Any) -> np.ndarray:
        """Model outputs (n, K)."""
        check_is_fitted(self, "network_")
        X = validate_data(self, _to_numpy(X), reset=False, dtype=np.float64, order="C")
        if self.kind == "relu":
            out = self.network_.forward(X)
        else:
            Xa = self._augment(X)
            gate = (Xa @ self.gate_vectors_ >= 0).astype(np.float64)  # (n, P)
            out = np.einsum("np,npk->nk", gate, np.einsum("nd,pdk->npk", Xa, self.blocks_))
        return out.reshape(X.shape[0], -1)

    def _fit_validate(self, X: Any, y: Any, **kw) -> tuple[np.ndarray, np.ndarray]:
        self._validate_params()
        return validate_data(self, _to_numpy(X), _to_numpy(y), dtype=np.float64, order="C", ensure_min_samples=2, **kw)

    # --- model files -------------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the fitted model to ``path`` (see :mod:`convexnn.io` for the format; no pickle)."""
        from convexnn.io import save_model

        save_model(self, path)

    def to_torch(self, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
        """The fitted network as ``torch.nn.Sequential(Linear, ReLU, Linear(bias=False))``."""
        check_is_fitted(self, "network_")
        return self.network_.to_torch(dtype=dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _cone_split(Xa: np.ndarray, H: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split gated blocks u_i (P, d̃, K) as u_i = v_i − w_i with both in the cone of pattern i:
    v_i = u_i + t_i h_i, w_i = t_i h_i with the least t_i ≥ 0 such that (2D_i − I) X̃ v_i ≥ 0
    (the gate h_i satisfies (2D_i − I) X̃ h_i ≥ 0). The ReLU network built from (v, w) reproduces the
    gated model's predictions on the training data exactly; its penalty is higher."""
    S = 2.0 * (Xa @ H >= 0) - 1.0  # (n, P)
    GU = S[:, :, None] * np.einsum("nd,pdk->npk", Xa, U)  # (n, P, K)
    Gh = (S * (Xa @ H))[:, :, None]
    viol = np.maximum(-GU, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(Gh > 0, viol / np.where(Gh > 0, Gh, 1.0), np.where(viol > 0, np.inf, 0.0))
    t = ratio.max(axis=0)  # (P, K)
    t = np.where(np.isfinite(t), t, 0.0)
    W = t[:, None, :] * H.T[:, :, None]
    return U + W, W


class ConvexReLURegressor(RegressorMixin, _ConvexReLUBase):
    """Two-layer ReLU regression trained to the global optimum of its convex reformulation.

    Squared loss: objective (1/n) Σ ½(ŷ − y)² + alpha Σ_blocks ‖·‖₂ (= the network's
    loss + (alpha/2)(‖W1‖² + ‖b1‖² + ‖w2‖²) for ``kind="relu"``). ``y`` may be (n,) or (n, K).

    Parameters
    ----------
    alpha : weight-decay strength (> 0).
    n_patterns : number of Gaussian gate vectors to sample (distinct non-empty patterns are kept),
        "all" to enumerate every pattern exactly (rank of [X, 1] ≤ 3 only), or "grow": no fixed patterns;
        neurons are added by column generation where the dual constraint of the infinite-width program
        is violated (:func:`convexnn.solvers.column_generation.adcg`; kind="relu", squared or logistic
        loss, CPU). Then ``certificate_`` certifies optimality over the final neurons' directions,
        ``max_violation_`` (≈ 1 when the search finds no violation: heuristic evidence of global
        optimality over all widths) and ``global_lower_bound_`` (a proven, loose, lower bound on the
        non-convex objective at every width) are set; ``gate_vectors_`` holds the neurons (d̃, m).
        With K > 1 outputs the neurons are shared by all outputs (one network, not one-vs-rest).
    kind : "relu" for the exact program (C), "gated" for the gated-ReLU program (G).
    loss : "squared" (the only regression loss).
    solver : "auto", "admm", "fista" (gated only) or "cvxpy" (needs the cvxpy extra).
    tol : stop when the duality certificate's relative gap ≤ tol.
    max_iter : iteration limit of the solver.
    max_time : wall-clock limit of the solver in seconds (None: none). When it runs out the best certified
        point so far is kept and a ConvergenceWarning gives its gap. With several outputs (classes), each output's
        interior-point polishing gets an equal share of the time left when it starts (what one leaves unused goes
        to the next), so that all of them make progress. (Not applied to solver="cvxpy"; with n_patterns="grow"
        the column generation stops after the round that passes it.)
    fit_intercept : append a column of ones (the hidden layer's bias b1).
    gate_vectors : user gates, shape (d + 1, P) or (d, P) (the latter: gates through the origin).
    random_state : seed of the sampled gates (None means seed 0: fits are reproducible).
    device, dtype : where and in which precision the solver runs ("cpu", "cuda"; "float32", "float64").
    n_threads : threads of torch and of SciPy's BLAS during fit (None: one for small programs, n·d·P below
        ``convexnn._config.SMALL_WORK`` = 5e6, where more threads only slow the small tensor operations down, with
        the output columns of a multi-class or multi-output fit polished side by side on the other cores; otherwise
        torch's default capped at the cores available). A count named here is the number of threads in all.
    warm_start : when refitting a fitted estimator on the same data (e.g. with another alpha), keep its
        gates and start the first-order solver from the previous solution (programs the interior-point method
        takes directly start from its own point).
    adversarial_eps, adversarial_norm : convex adversarial training (kind="relu"): the robust program of
        MATH.md §9 over balls of radius eps ("inf" or 2) around the training points, solved by
        :func:`convexnn.solvers.robust.robust_solve`. With sampled or given gates every neuron keeps its
        pattern on every ball, so ``objective_`` is exactly the returned network's worst-case training
        loss plus weight decay; with ``adversarial_gates="standard"`` and a classification loss it is a
        sound upper bound of it (README, "Robustness").
    adversarial_gates : "sampled" (the gates above), "standard" (patterns from the neurons of a standard
        convex fit, re-biased to be robust: much less conservative on real data), or "auto" ("standard"
        when possible: one output, fit_intercept, no gate_vectors, no warm start).
    adversarial_box : optional input box (lo, hi), e.g. (0, 1) for pixels: the perturbation set is the
        ball ∩ box (ℓ∞ with the hinge / logistic losses).
    verbose : print the certificate as the solver runs.

    Attributes
    ----------
    gate_vectors_ : (d + 1, P) or (d, P) gates actually used.  network_ : :class:`TwoLayerReLU`.
    certificate_ : duality certificate (primal, dual, gap, relative_gap).  objective_ : its primal.
    n_iter_, history_ : solver iterations and the certificate at each check.
    """

    def fit(self, X: Any, y: Any, callback=None) -> ConvexReLURegressor:
        """Fit on X (n, d) and y (n,) or (n, K). ``callback(record)`` receives each certificate check."""
        X, y = self._fit_validate(X, y, multi_output=True, y_numeric=True)
        if self.loss != "squared":
            raise ValueError(f"ConvexReLURegressor supports loss='squared' only, got {self.loss!r}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or inf")
        self._y_ndim = y.ndim
        self._fit_targets(X, y.reshape(X.shape[0], -1).astype(np.float64), callback)
        return self

    def predict(self, X: Any) -> np.ndarray:
        out = self._raw_predict(X)
        return out[:, 0] if self._y_ndim == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y (n, K): K programs sharing the gates
        tags.target_tags.single_output = True
        return tags


class ConvexReLUClassifier(ClassifierMixin, _ConvexReLUBase):
    """Two-layer ReLU classification trained to the global optimum of its convex reformulation.

    Binary: labels mapped to −1 (``classes_[0]``) and +1 (``classes_[1]``), one output.
    Multi-class (K > 2): one-vs-rest ±1 targets, K programs sharing the gates, one network with K outputs;
    predict takes the arg-max. ``loss`` is "squared", "logistic" or "hinge"; ``predict_proba`` exists
    for the logistic loss (one-vs-rest sigmoids, normalised to sum to one for K > 2).
    See :class:`ConvexReLURegressor` for the other parameters and the fitted attributes.
    """

    def fit(self, X: Any, y: Any, callback=None) -> ConvexReLUClassifier:
        """Fit on X (n, d) and labels y (n,). ``callback(record)`` receives each certificate check."""
        X, y = self._fit_validate(X, y)
        check_classification_targets(y)
        self.classes_, idx = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"need at least 2 classes to fit a classifier, got {self.classes_.size}")
        if self.classes_.size == 2:
            Y = (2.0 * idx - 1.0)[:, None]
        else:
            Y = -np.ones((X.shape[0], self.classes_.size))
            Y[np.arange(X.shape[0]), idx] = 1.0
        self._fit_targets(X, Y, callback)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        out = self._raw_predict(X)
        return out[:, 0] if out.shape[1] == 1 else out

    def predict(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]

    def _has_proba(self) -> bool:
        if self.loss != "logistic":
            raise AttributeError("predict_proba is available for loss='logistic' only")
        return True

    @available_if(_has_proba)
    def predict_proba(self, X: Any) -> np.ndarray:
        """Binary: [1 − σ(f), σ(f)]; K > 2: one-vs-rest sigmoids normalised to sum to one."""
        scores = self.decision_function(X)
        p = 1.0 / (1.0 + np.exp(-scores))
        if scores.ndim == 1:
            return np.column_stack([1.0 - p, p])
        return p / p.sum(axis=1, keepdims=True)

    @available_if(_has_proba)
    def predict_log_proba(self, X: Any) -> np.ndarray:
        return np.log(self.predict_proba(X))


__all__ = ["Certificate", "ConvexReLUClassifier", "ConvexReLURegressor"]
