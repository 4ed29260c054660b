"""What a solver takes and what it returns.

A :class:`ConvexProblem` is one of the programs of MATH.md with a fixed set of patterns:

    (C) kind="relu":   min_{V,W} L(F(V − W)) + α Σ_ik (‖V_ik‖₂ + ‖W_ik‖₂)   s.t.  G V ≥ 0,  G W ≥ 0
    (G) kind="gated":  min_U     L(F U)      + α Σ_ik ‖U_ik‖₂

with L the mean loss of :mod:`convexnn.ops.losses`, summed over the K output columns. The K columns
are independent programs that share X and the patterns (one-vs-rest for multi-class), solved together.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from convexnn.ops import losses, operators

KINDS = ("relu", "gated")


@dataclass
class ConvexProblem:
    """One convex program over tensors on one device.

    Attributes
    ----------
    X : (n, d) data, with a column of ones already appended for an intercept.
    Y : (n, K) targets (±1 for classification losses).
    D : (n, P) 0/1 activation patterns, same dtype/device as X.
    H : (d, P) the gate vector of each pattern (used to repair cone feasibility, see
        :func:`convexnn.ops.certificates.make_feasible`).
    alpha : regularisation strength α > 0.
    loss : "squared", "logistic" or "hinge".
    kind : "relu" (program C) or "gated" (program G).
    """

    X: torch.Tensor
    Y: torch.Tensor
    D: torch.Tensor
    H: torch.Tensor
    alpha: float
    loss: str = "squared"
    kind: str = "relu"

    def __post_init__(self) -> None:
        losses.check_loss(self.loss)
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}: expected one of {KINDS}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        n, d = self.X.shape
        if self.Y.ndim != 2 or self.Y.shape[0] != n:
            raise ValueError(f"Y must have shape ({n}, K), got {tuple(self.Y.shape)}")
        if self.D.shape[0] != n or self.H.shape != (d, self.D.shape[1]):
            raise ValueError("D must be (n, P) and H (d, P)")

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def P(self) -> int:
        return self.D.shape[1]

    @property
    def K(self) -> int:
        return self.Y.shape[1]

    def zeros(self) -> torch.Tensor:
        """A zero block tensor (P, d, K)."""
        return self.X.new_zeros((self.P, self.d, self.K))

    def to(self, dtype: torch.dtype) -> ConvexProblem:
        """The same program with its tensors in ``dtype`` (itself when they are already)."""
        if self.X.dtype == dtype:
            return self
        return dataclasses.replace(self, X=self.X.to(dtype), Y=self.Y.to(dtype), D=self.D.to(dtype),
                                   H=self.H.to(dtype))

    def objective(self, U: torch.Tensor, W: torch.Tensor | None = None) -> torch.Tensor:
        """Objective per output column (K,). For (C) pass (V, W); for (G) pass U only."""
        if W is None:
            pred = operators.forward(self.X, self.D, U)
            pen = operators.group_norms(U).sum(0)
        else:
            pred = operators.forward(self.X, self.D, U - W)
            pen = operators.group_norms(U).sum(0) + operators.group_norms(W).sum(0)
        return losses.value(self.loss, pred, self.Y) + self.alpha * pen


def target_scale(problem: ConvexProblem) -> float | None:
    """The power of two s nearest the RMS of Y, for a squared-loss program whose targets are far from unit scale
    (RMS outside [2⁻², 2²]); None otherwise.

    With ℓ = ½(a − y)², the program with targets Y/s and strength α/s has the solutions of the original divided by
    s, and its objective (and every dual bound) divided by s²: the same program, in units where the loss and the
    penalty are comparable. A power of two makes the rescaling exact in floating point (a cone-feasible point
    stays feasible bit for bit). On 537_houses (house prices, RMS 2.4e5; 600 rows standardised, alpha 1e-3) the
    default regressor stopped at relative gap 1.0 with R² 0.80; rescaled, it reaches 2.4e-5 and R² 1.0, an
    objective 4500 times lower.
    """
    if problem.loss != "squared":
        return None
    rms = float(torch.sqrt(torch.mean(problem.Y.double() ** 2)))
    if not (rms > 0 and math.isfinite(rms)):
        return None
    e = round(math.log2(rms))
    return None if abs(e) <= 2 else float(2.0 ** e)


def row_space(problem: ConvexProblem) -> tuple[ConvexProblem, torch.Tensor] | None:
    """The same program over the row space of X when X has zero columns or fewer rows than columns.

    Every term of (C) and (G) sees a block only through X v, except the penalty ‖v‖₂. With B (d, r) an
    orthonormal basis of X's row space (X = X B Bᵀ), v and its projection B Bᵀ v give the same X v and
    ‖Bᵀv‖ ≤ ‖v‖, so the optimum uses blocks v = B v' and the program over Z = X B (n, r), v' ∈ Rʳ has the
    same optimal value; the gates become Bᵀ H (X h = Z Bᵀ h). Zero columns are dropped exactly (B selects
    the others); when the remaining d' > n, B is the full set of n right singular vectors of that X (an
    interior-point method on the original program would face the null space of X, where only the penalty
    curves, and stall). Returns None when neither applies (nothing to gain).
    """
    X = problem.X
    keep = torch.nonzero(X.abs().amax(0) > 0)[:, 0]
    n, d = X.shape
    if (keep.numel() == d and n >= d) or keep.numel() == 0:
        return None
    B = torch.eye(d, dtype=X.dtype, device=X.device)[:, keep]
    Z = X[:, keep]
    if n < keep.numel():
        _, _, Vh = torch.linalg.svd(Z, full_matrices=False)  # (n, d'): all n right singular vectors
        B, Z = B @ Vh.T, Z @ Vh.T
    return ConvexProblem(Z, problem.Y, problem.D, B.T @ problem.H, problem.alpha, problem.loss, problem.kind), B


def lift_blocks(B: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Blocks (P, r, K) of :func:`row_space`'s program back to (P, d, K): v = B v'."""
    return torch.einsum("dr,prk->pdk", B, V)


def project_blocks(B: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Blocks (P, d, K) onto :func:`row_space`'s coordinates (P, r, K): v' = Bᵀ v (same X v, no larger norm)."""
    return torch.einsum("dr,pdk->prk", B, V)


def distinct_patterns(problem: ConvexProblem) -> tuple[ConvexProblem, torch.Tensor, torch.Tensor] | None:
    """The same program over D's distinct non-empty patterns, when D repeats a pattern or has an empty one.

    Two blocks with the same pattern have the same prediction map D_i X and the same cone (2D_i − I) X v ≥ 0,
    so their sum is feasible, predicts the same and has no larger norm: one block per distinct pattern
    reaches the same optimum, and a block whose pattern is empty only adds to the penalty (its optimum is 0).
    Each kept pattern keeps its first occurrence's gate. Returns (program, keep (P',): the original index of
    each kept pattern, owner (P,): the kept position of each original pattern, −1 for an empty one), or None
    when every pattern is distinct and non-empty (nothing to gain).

    The estimators deduplicate their sampled patterns already; this is for user-built programs, where a
    repeated pattern makes the interior-point and active-set systems singular (breast cancer with every
    pattern twice: 22 s to a worse certificate than the distinct program's in 4.5 s).
    """
    D = problem.D
    P = D.shape[1]
    uniq, inverse = torch.unique(D.T, dim=0, return_inverse=True)
    first = torch.full((uniq.shape[0],), P, dtype=torch.long, device=D.device)
    first = first.scatter_reduce(0, inverse, torch.arange(P, device=D.device), reduce="amin")
    empty = ~(uniq != 0).any(1)  # (U,)
    if uniq.shape[0] == P and not bool(empty.any()):
        return None
    keep = torch.sort(first[~empty]).values  # original indices, in their order
    if keep.numel() == 0:
        return None
    pos = torch.full((uniq.shape[0],), -1, dtype=torch.long, device=D.device)
    pos[inverse[keep]] = torch.arange(keep.numel(), device=D.device)
    owner = pos[inverse]
    reduced = ConvexProblem(problem.X, problem.Y, D[:, keep], problem.H[:, keep], problem.alpha, problem.loss,
                            problem.kind)
    return reduced, keep, owner


def merge_pattern_blocks(owner: torch.Tensor, V: torch.Tensor, size: int) -> torch.Tensor:
    """Blocks (P, d, K) onto :func:`distinct_patterns`' program (size, d, K): the blocks of equal patterns
    summed (same prediction, no larger norm), those of empty patterns dropped."""
    used = owner >= 0
    return V.new_zeros((size, *V.shape[1:])).index_add_(0, owner[used], V[used])


def spread_pattern_blocks(keep: torch.Tensor, V: torch.Tensor, P: int) -> torch.Tensor:
    """Blocks (P', d, K) of :func:`distinct_patterns`' program back to (P, d, K): each at its pattern's first
    occurrence, zero elsewhere."""
    out = V.new_zeros((P, *V.shape[1:]))
    out[keep] = V
    return out


# the relative levels tried by :func:`prune_blocks`, largest first
PRUNE_LEVELS = tuple(10.0**-e for e in range(2, 13))


def prune_blocks(problem: ConvexProblem, V: torch.Tensor, W: torch.Tensor | None,
                 rel_slack: float) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, int]:
    """Zero the blocks that are residue rather than neurons: interior-point iterates never reach the zero blocks
    of the optimum exactly (breast cancer: 7 blocks of 200 carry the network, 193 sit at 1e-8 of the largest;
    wine at 0.6 × alpha_max: a whole output column at 1e-9, its optimum being zero).

    Per output column k (the objective separates over columns), tries the zero column, then each level t of
    :data:`PRUNE_LEVELS`, largest first: every block of the column whose norm is ≤ t × the column's largest is
    set to zero, and the first candidate whose objective is at most f_k (1 + ``rel_slack``) is kept, f_k the
    column's objective at (V, W). A zero block lies in every cone of (C), so the result is as feasible as the
    input, and any dual bound of the program still bounds it. Returns (V, W, the objective per column (K,), the
    number of blocks zeroed); the input itself where nothing qualifies.

    Cost: one forward pass (F U, (n, K)) per candidate level, all columns at once.
    """
    nv = operators.group_norms(V)  # (P, K)
    nw = None if W is None else operators.group_norms(W)
    top = nv.amax(0) if nw is None else torch.maximum(nv.amax(0), nw.amax(0))  # (K,)
    values = problem.objective(V, W)
    limit = values + rel_slack * values.abs()  # per column
    nonzero = (nv > 0).sum(0) + (0 if nw is None else (nw > 0).sum(0))  # (K,)
    # the zero column first: near its smallest α with a non-zero optimum all its blocks are residue alike
    zero = losses.value(problem.loss, problem.Y.new_zeros(problem.Y.shape), problem.Y)
    done = (top == 0) | (zero <= limit)
    keep_v = torch.where(done[None, :], torch.zeros_like(nv, dtype=torch.bool), nv > 0)
    keep_w = None if nw is None else torch.where(done[None, :], torch.zeros_like(nw, dtype=torch.bool), nw > 0)
    for t in PRUNE_LEVELS:
        if bool(done.all()):
            break
        cand_v = nv > t * top
        cand_w = None if nw is None else nw > t * top
        kept = cand_v.sum(0) + (0 if cand_w is None else cand_w.sum(0))
        trial = ~done & (kept < nonzero)  # columns with something at or below this level
        if not bool(trial.any()):
            continue
        vals = problem.objective(V * cand_v[:, None, :], None if W is None else W * cand_w[:, None, :])
        take = trial & (vals <= limit)
        keep_v = torch.where(take[None, :], cand_v, keep_v)
        if keep_w is not None:
            keep_w = torch.where(take[None, :], cand_w, keep_w)
        done = done | take
    dropped = int(nonzero.sum()) - int(keep_v.sum()) - (0 if keep_w is None else int(keep_w.sum()))
    if dropped == 0:
        return V, W, values, 0
    Vp = V * keep_v[:, None, :]
    Wp = None if W is None else W * keep_w[:, None, :]
    return Vp, Wp, problem.objective(Vp, Wp), dropped


@dataclass
class Certificate:
    """A duality certificate: ``dual ≤ optimum ≤ primal``.

    ``primal`` is the objective of a feasible point of the program solved, ``dual`` the value of a dual
    feasible point (a proven lower bound on the optimum), ``gap = primal − dual`` and
    ``relative_gap = gap / max(primal, tiny)``.
    """

    primal: float
    dual: float

    @property
    def gap(self) -> float:
        return max(self.primal - self.dual, 0.0)

    @property
    def relative_gap(self) -> float:
        return self.gap / max(abs(self.primal), 1e-300)

    def as_dict(self) -> dict[str, float]:
        return {"primal": self.primal, "dual": self.dual, "gap": self.gap, "relative_gap": self.relative_gap}

    def __repr__(self) -> str:
        return (
            f"Certificate(primal={self.primal:.10g}, dual={self.dual:.10g}, gap={self.gap:.3g}, "
            f"relative_gap={self.relative_gap:.3g})"
        )


@dataclass
class SolverResult:
    """What every solver returns.

    ``V`` holds the blocks v_i (relu) or u_i (gated), ``W`` the blocks w_i (relu) or None, each (P, d, K).
    ``history`` is a list of dicts (iteration, seconds, primal, dual, relative_gap) at each check.
    """

    V: torch.Tensor
    W: torch.Tensor | None
    certificate: Certificate
    n_iter: int
    converged: bool
    solver: str
    history: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)


# a first-order run with a stall check (``stall_after``) stops once its best relative gap, at iteration i, is above
# this fraction of its best gap at iteration i/2: doubling the iterations bought less than 10%. (ADMM's O(1/k)
# rate halves the gap when the iterations double; at this pace another tenfold run gains at most about 30%.)
STALL_RATIO = 0.9


class Monitor:
    """The certificate checks of an iterative solver: keeps the history, calls the user's callback, keeps the best
    point and says when to stop.

    ``best`` is (certificate, point): the checked point of lowest objective, certified with the highest dual
    bound of all checks (each bounds the same optimum from below, so the pair is a valid certificate and its gap
    is no larger than any single check's). It stops at a best relative gap ≤ tol, past ``max_time`` seconds, or
    (with ``stall_after``) at iteration i ≥ ``stall_after`` when the best gap is above :data:`STALL_RATIO` × the
    best gap at iteration i/2 (``stalled`` then says so)."""

    def __init__(self, tol: float, callback: Callable[[dict], None] | None = None,
                 max_time: float | None = None, stall_after: int | None = None) -> None:
        if stall_after is not None and stall_after < 1:
            raise ValueError(f"stall_after must be a positive number of iterations or None, got {stall_after}")
        self.tol, self.callback, self.max_time, self.stall_after = tol, callback, max_time, stall_after
        self.t0 = time.perf_counter()
        self.history: list[dict[str, float]] = []
        self.best: tuple[Certificate, tuple] | None = None
        self.converged = False
        self.stalled = False
        self._its: list[int] = []  # the iteration of every check, and the best relative gap so far there
        self._best_gaps: list[float] = []

    def check(self, iteration: int, cert: Certificate, point: tuple, **extra: float) -> bool:
        """Record one check of ``point`` (the solver's blocks); True when the solver should stop."""
        if self.best is None:
            self.best = (cert, point)
        else:
            low, at = (cert.primal, point) if cert.primal < self.best[0].primal else (self.best[0].primal,
                                                                                      self.best[1])
            self.best = (Certificate(primal=low, dual=max(cert.dual, self.best[0].dual)), at)
        rec = {"iteration": iteration, "seconds": time.perf_counter() - self.t0, **extra, **cert.as_dict()}
        self.history.append(rec)
        if self.callback is not None:
            self.callback(rec)
        best = self.best[0].relative_gap
        self.converged = best <= self.tol
        self._its.append(iteration)
        self._best_gaps.append(best)
        if self.stall_after is not None and iteration >= self.stall_after and not self.converged:
            j = bisect.bisect_right(self._its, iteration // 2) - 1  # the last check at or before iteration/2
            self.stalled = j >= 0 and best > STALL_RATIO * self._best_gaps[j]
        return (self.converged or self.stalled
                or (self.max_time is not None and rec["seconds"] > self.max_time))
