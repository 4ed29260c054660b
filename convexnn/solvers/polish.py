"""Active-set Newton polishing of approximate solutions of (C) and (G) (MATH.md §3, §4, §8).

First-order solvers (ADMM, FISTA) reach a few digits quickly and crawl after that. Like OSQP's
"solution polishing", :func:`polish` takes such an approximate solution, guesses which blocks are
non-zero (the *support*) and, for (C), which cone rows each block touches (its *working set*), and
solves the remaining smooth problem by Newton's method. Each output column k is solved on its own (several at
once on worker threads where the caller's thread settings leave cores idle: :func:`polish`'s ``workers``).

Reduced problem. For a support block b with working set A_b (rows r with (G_i v_b)_r = 0, kept linearly
independent) the block lives in the null space of X_{A_b}: v_b = N_b z_b with N_b an orthonormal basis
(SVD; for (G), N_b = I). With a = Σ_b s_b D_i X N_b z_b (s_b = +1 for v-blocks, −1 for w-blocks):

    min_z  φ(z) = L(a) + α Σ_b ‖z_b‖₂              (‖z_b‖ = ‖v_b‖ since N_b is orthonormal)

with Hessian  AᵀΛA + blockdiag(α (I − ẑ_b ẑ_bᵀ)/‖z_b‖),  Λ = diag(ℓ''(a_k))/n, factored densely or, when
Σ dim N_b is large compared with n, by Woodbury through an (n + #blocks) saddle-point system.

Active-set method ((C) and (G)): a primal feasible active-set method with Newton steps.
  * A step is a Newton step in the reduced space, bent per block at the first cone row it would cross
    (block b moves by min(t, T_b) along its direction, T_b from a ratio test); a block stopped by a row
    adds it to its working set; backtracking on φ keeps φ decreasing.
  * Small blocks whose removal decreases φ are set to zero (Newton handles vanishing blocks badly: the
    norm has no radial curvature).
  * When Newton has converged for the current working sets (reduced gradient ≤ ``tol``·α, or the rounding
    floor) the multipliers of the working rows, μ_b = argmin ‖G_{A_b}ᵀ μ − (c_b + α v̂_b)‖ with
    c_b = s_b Xᵀ D_i ∇L, are computed and rows with μ < 0 released.
  * A zero block enters when it violates its dual constraint: (G) ‖c_b‖ > α; (C) the non-negative least
    squares residual min_{μ≥0} ‖c_b − G_iᵀ μ‖ > α; it enters along G_iᵀμ − c_b (the steepest feasible
    descent direction within its cone) with the rows of μ > 0 as working set.
  * It stops when nothing changes: the KKT conditions then hold to rounding.

Interior-point identification ((C) only). When the given point is too inaccurate to guess working sets
from (relative gap of its certificate > ``ipm_threshold``, or the active-set method needs too many
changes), a primal-dual interior-point method (Mehrotra predictor-corrector on the cone constraints and on
the group norm as second-order cones with Nesterov–Todd scaling, infeasible start from the gates) runs to a
relative gap ≈ 1e-5; its slacks and multipliers give the working sets (row r active when
μ_r‖x_r‖/α > s_r/(‖x_r‖‖v_b‖)) and the active-set method finishes. Its Newton systems are solved through one
n×n or one (P·d)×(P·d) Cholesky factor, whichever is smaller (see :class:`_IPMSystem`): the n×n Gram matrix by
one BLAS ``dsyrk``, the (P·d)×(P·d) one from pattern-pair × column-pair products (:func:`_pattern_gram`), the
factor by LAPACK ``dpotrf`` (float64 on the CPU), the per-block matrices Gᵀdiag(μ/s)G by one product with the
rows' outer products. Every iterate past the first phase is certified (``make_feasible`` of x; loss-dual
candidates ∇L at the repaired point and at x itself; μ refined by projected-gradient steps on the blocks whose
dual constraint it violates, Λ repaired where the blocks in use exceed it, :func:`_relu_dual_bound`). With
``gap_target`` (what ``solve(solver="auto", tol)`` passes) the method runs to that gap and a column it
certifies there is returned without the active-set phase; on breast cancer (n = 569, d = 31, 2P = 80 blocks)
that takes 22 interior-point iterations to a relative gap < 1e-6. Where the active-set phase runs, a start that
ends short of the KKT tolerance at a point certified to ``gap_target`` is the column's result (no second start).

Certificate. The final blocks are lifted onto their cones by a least-norm correction at rounding level
(2·eps relative slack on the working rows; :func:`certificates.make_feasible` is then a no-op — applied to
a point on the boundary it can take a large step along the gate); the primal is ``problem.objective``.
The dual candidate is Λ = ∇L(ŷ) and, for (C), multipliers μ ≥ 0 for every block of all P patterns: the
working-set multipliers of support blocks (clamped at 0) and, for every block whose residual would exceed
α, a non-negative least squares fit (``scipy.optimize.nnls``; batched accelerated projected gradient in
torch for large n·d). The bound itself is :func:`certificates.dual_value_relu` /
:func:`certificates.dual_value_gated` of these candidates, so it is a valid lower bound whatever the
guess was: a wrong guess only gives a large gap.

Losses: squared and logistic (the above), and hinge. The hinge loss is piecewise linear: for it a barrier
method (:func:`_hinge_barrier`: the hinge's epigraph ξ ≥ 0, ξ ≥ 1 − y a, the norms' epigraphs and, for (C),
the cone rows under a log barrier; ξ and the norms' epigraph variables eliminated in closed form; Newton
with a line search per barrier parameter τ) runs until its certificate's relative gap is ≤ ``hinge_gap`` or
rounding stops it (about 1e-5–1e-6). The input point is not used: for (G) the barrier method starts from the
gates; for (C) a primal-dual interior-point method (:func:`_hinge_ipm`) runs from the gates to a relative gap of
:data:`HINGE_IPM_GAP` first (in a third of the barrier method's Newton steps), and the barrier method starts from
its point at the barrier parameter of its gap. From the barrier method's point,
:func:`_hinge_reduced` identifies the support, the working sets and the partition of the samples into
margin < 1 (L), = 1 (kinks, E) and > 1, and solves  min (1/n) Σ_L (1 − y a) + α Σ ‖z_b‖  s.t.  y a = 1 on E
by Newton on its KKT system (LU where it is regular, else least squares); the better-certified of the two points is
returned. With ``gap_target`` both stop once a point is certified to it. The dual candidate is
Λ = −p y/n: the barrier's p = nτ/(ξ − r), or p = 1 on L, 0 off L ∪ E and the KKT multipliers (clamped into
[0, 1]) on E; for (C) the cone multipliers μ (barrier: τ·w/s; reduced: least squares on the working rows),
NNLS-repaired as above. As for the other losses, the bound is that of :mod:`convexnn.ops.certificates`.
Typically (G) reaches machine precision; (C) often stays at the barrier's 1e-6–1e-5 (the reduced problem's
identification of the cone rows is then not exact).
Computations run in float64 (a float32 problem is polished in a float64 copy and returned in float32).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from convexnn._config import column_workers
from convexnn.ops import certificates, losses, operators, soc
from convexnn.solvers.linsys import lstsq, shifted_cholesky
from convexnn.solvers.problem import Certificate, ConvexProblem

__all__ = ["IPM_MAX_FLOPS", "PolishInfo", "active_set_bytes", "dual_certificate", "ipm_cost", "polish"]

POLISH_LOSSES = ("squared", "logistic", "hinge")

# method="auto" skips the interior-point (and hinge barrier) method when one of its iterations would cost more
# than this many flops (:func:`ipm_cost`): up to about a minute per iteration on one core of the development
# machine (≈ 20–40 Gflop/s there), and it typically needs 25–65 iterations
IPM_MAX_FLOPS = 2e12


def newton_mode(n: int, d: int, P: int, constant_lam: bool = False) -> str:
    """How :class:`_IPMSystem` factors the interior-point Newton matrix: "n" (the n×n Woodbury form, n²·P·d +
    n³/3 flops an iteration) or "pd" (the (P·d)² form, n·(P·d)²/2 + (P·d)³/3). Where Λ is constant
    (``constant_lam``: the squared loss) the "pd" form's Gram part is formed once and its iteration costs
    (P·d)³/3 and the solves with the larger factor (memory-bound; counted as a quarter more): "pd" where that
    is less than the "n" form's, from n ≈ 0.58·P·d on; else "pd" only for n > P·d. Measured (50 PCA features
    of Fashion-MNIST, d = 51, P = 100, one thread, ``bench_scaling.py --mode exact``): n = 3000, 39 s "n" and
    41 s "pd"; n = 4000, 77 s and 47 s, the same 34 iterations."""
    pd = P * d
    if constant_lam:
        return "pd" if 1.25 * pd ** 3 / 3.0 < float(n) * n * pd + n ** 3 / 3.0 else "n"
    return "n" if n <= pd else "pd"


def ipm_cost(n: int, d: int, P: int, relu: bool = True, constant_lam: bool = False) -> tuple[float, float]:
    """(flops, bytes) of one interior-point iteration (:func:`_ipm`, and the hinge barrier method's Newton
    step) on one output column of a program with n rows, d columns and P patterns, in float64.

    Flops: the Gram matrix of :class:`_IPMSystem` — n ≤ P·d: n²·P·d (``syrk`` of the n × P·d factor Z);
    n > P·d: n·(P·d)²/2 (:func:`_pattern_gram`) — and its Cholesky factor, min(n, P·d)³/3; per block (nb = 2P
    for (C), P for (G)) the weighted Gram Gᵀdiag(μ/s)G, 2·n·d², its Cholesky factor and inverse, ≈ 2·d³; the
    products with X, ≈ 8·nb·n·d. Bytes: n ≤ P·d: Z and the n×n matrix; n > P·d: the (P·d)² Gram matrix and
    the copy of it that is factored (:func:`_pattern_gram`'s pair weights of a row chunk come before the
    copy); five (nb, d, d) block arrays, sixteen (nb, n) arrays (:func:`_ipm`'s scratch held 13 at most, with
    one or two correctors, and a certificate forms a few more) and the rows' packed outer products (n, d(d+1)/2),
    or a row chunk of them with its two gathered factors (:func:`_weighted_grams`).
    With the squared loss (``constant_lam``: constant Λ) the "pd" Gram matrix is formed in the first iteration
    only and kept (:class:`_IPMSystem`), and the form is chosen by :func:`newton_mode`: the estimate is that of the
    first iteration, an upper bound for the later ones.
    """
    nb = 2 * P if relu else P
    pd = P * d
    if newton_mode(n, d, P, constant_lam) == "n":
        gram_flops, gram_elems = float(n) * n * pd, n * pd + n * n
    else:
        npair = P * (P + 1) // 2  # _pattern_gram's pair weights of a row chunk
        gram_elems = 2.0 * pd * pd + _pattern_gram_rows(n, P) * npair
        gram_flops = n * float(pd) * pd / 2
    lo = min(n, pd)
    flops = gram_flops + lo ** 3 / 3 + nb * (2.0 * n * d * d + 2.0 * d ** 3) + 8.0 * nb * n * d
    T = d * (d + 1) // 2  # the rows' packed outer products, kept, or a row chunk of them (_weighted_grams)
    elems = gram_elems + 5 * nb * d * d + 16 * nb * n + (n * T if n * T <= OUTER_ROWS_LIMIT else 3 * OUTER_ROWS_CHUNK)
    return flops, 8.0 * elems


def active_set_bytes(n: int, d: int, blocks: int) -> float:
    """Bytes of the active-set method's Newton step with ``blocks`` support blocks, at most: each block's
    F_b N_b (n × d at most, kept and concatenated) and the dense Newton matrix, the smaller of m² and
    (n + blocks)², m = blocks·d (see :func:`_newton_direction`)."""
    m = blocks * d
    return 8.0 * (2.0 * n * m + min(m, n + blocks) ** 2 + blocks * d * d)


def _gib(b: float) -> str:
    """A byte count for messages: 12.9 GiB, 3.3 MiB, 512 KiB."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if b >= size:
            return f"{b / size:.1f} {unit}"
    return f"{b / 2**10:.0f} KiB"


class _Deadline:
    """The wall-clock end of a :func:`polish` call (``time.perf_counter`` seconds, None: none), which another
    thread can also bring forward (:meth:`stop`): when output columns run in parallel and one of them raises
    (e.g. KeyboardInterrupt from a progress callback), the others end at their next check. An output column runs
    to its :meth:`share` of the time left, which also passes when its parent does."""

    def __init__(self, at: float | None, parent: _Deadline | None = None) -> None:
        self.at = at
        self.parent = parent
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def passed(self) -> bool:
        return (self._stop.is_set() or (self.parent is not None and self.parent.passed())
                or (self.at is not None and time.perf_counter() > self.at))

    def share(self, parts: int) -> _Deadline:
        """A deadline ``1/parts`` of the time left from now (no limit without one): the columns still to run each
        get an equal share, and what one leaves unused goes to those after it. Without shares the columns after
        the first few would start past the deadline and come back at their starting point (vehicle, 4 columns,
        max_time = 2/3 of the full solve: the certificate's relative gap was 0.54, the sum over columns being
        dominated by the unstarted ones)."""
        if self.at is None:
            return self
        now = time.perf_counter()
        return _Deadline(now + max(self.at - now, 0.0) / max(parts, 1), parent=self)


@dataclass
class PolishInfo:
    """Diagnostics of one call of :func:`polish` (summed over output columns)."""

    method: str = ""
    newton_iterations: int = 0
    ipm_iterations: int = 0
    ipm_gap: float = math.inf  # the interior-point method's best certified relative gap (worst column)
    # a result in float32: the rise of its objective from rounding the float64 solution, relative (0 in float64)
    rounding_cost: float = 0.0
    rows_added: int = 0
    rows_released: int = 0
    blocks_entered: int = 0
    blocks_dropped: int = 0
    converged: bool = True
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def tick(self, key: str, t0: float) -> float:
        t = time.perf_counter()
        self.timings[key] = self.timings.get(key, 0.0) + t - t0
        return t

    def absorb(self, other: PolishInfo, method: str) -> None:
        """Take in the diagnostics ``other`` of one output column run on its own (started with ``method``), as if it
        had run on this info after the columns before it: counts, timings and notes add up, a method the column set
        replaces this one's, ``converged`` holds for all, ``ipm_gap`` is the worst column's."""
        if other.method != method:
            self.method = other.method
        for name in ("newton_iterations", "ipm_iterations", "rows_added", "rows_released", "blocks_entered",
                     "blocks_dropped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.ipm_iterations > 0 or other.ipm_gap != math.inf:
            self.ipm_gap = other.ipm_gap if self.ipm_gap == math.inf else max(self.ipm_gap, other.ipm_gap)
        self.converged = self.converged and other.converged
        for key, sec in other.timings.items():
            self.timings[key] = self.timings.get(key, 0.0) + sec
        self.notes.extend(other.notes)


# ----------------------------------------------------------------------------------------------------
# the losses' first and second derivatives per sample (convention L = (1/n) Σ ℓ)


def _loss_hess(loss: str, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Diagonal of ∇²L(a) (per sample, already divided by n)."""
    n = a.shape[0]
    if loss == "squared":
        return torch.full_like(a, 1.0 / n)
    if loss == "logistic":
        s = torch.sigmoid(-y * a)
        return s * (1.0 - s) / n
    raise ValueError(f"polish does not handle the {loss!r} loss")


def _loss_value(loss: str, a: torch.Tensor, y: torch.Tensor) -> float:
    return float(losses.per_sample(loss, a, y).sum()) / a.shape[0]


def _loss_grad(loss: str, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return losses.grad(loss, a[:, None], y[:, None])[:, 0]


# ----------------------------------------------------------------------------------------------------
# one output column of one problem


class _Column:
    """The data of output column k in block form.

    Blocks b = 0..nb−1: for (C) the v-blocks i = 0..P−1 then the w-blocks (nb = 2P); for (G) nb = P.
    ``Dm[b]`` is s_b·D_i as a vector (the signed pattern: prediction a = Σ_b Dm_b ⊙ (X x_b)) and
    ``Sg[b]`` the diagonal of 2D_i − I (cone rows of block b: Sg_b ⊙ (X x_b) ≥ 0).
    """

    def __init__(self, pb: ConvexProblem, k: int) -> None:
        X, D = pb.X, pb.D
        self.pb = pb
        self.X = X
        self.n, self.d = X.shape
        self.P = D.shape[1]
        self.relu = pb.kind == "relu"
        self.nb = 2 * self.P if self.relu else self.P
        pat = torch.arange(self.nb, device=X.device) % self.P
        self.pat = pat
        sgn = torch.ones(self.nb, dtype=X.dtype, device=X.device)
        if self.relu:
            sgn[self.P:] = -1.0
        self.Dm = D.T[pat] * sgn[:, None]
        self.Sg = (2.0 * D - 1.0).T[pat]
        self.y = pb.Y[:, k]
        self.alpha = float(pb.alpha)
        self.loss = pb.loss
        self.xn = torch.linalg.vector_norm(X, dim=1)
        self.eps = torch.finfo(X.dtype).eps

    # --- evaluations
    # pred and block_grad go through the P patterns ((C): the v- and w-blocks of a pattern share its rows), whose
    # (n, P) temporaries are half the size of the (nb, n) ones of Dm: at n = 36631 these products are memory-bound
    def pred(self, x: torch.Tensor) -> torch.Tensor:
        """a = Σ_i D_i X (v_i − w_i) ((C)) or Σ_i D_i X u_i ((G)), (n,)."""
        q = x[:self.P] - x[self.P:] if self.relu else x
        return torch.mm(self.X, q.T).mul_(self.pb.D).sum(1)

    def fval(self, x: torch.Tensor) -> float:
        return _loss_value(self.loss, self.pred(x), self.y) + self.alpha * float(
            torch.linalg.vector_norm(x, dim=1).sum())

    def block_grad(self, gl: torch.Tensor) -> torch.Tensor:
        """c_b = s_b Xᵀ D_i ∇L for every block, (nb, d)."""
        c = torch.mm(torch.mul(self.pb.D, gl[:, None]).T, self.X)  # (P, d)
        return torch.cat([c, -c]) if self.relu else c

    def slack(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """G x: the cone rows' values Sg_b ⊙ (X x_b), (nb, n) (in ``out`` if given, else one fresh array)."""
        return torch.mm(x, self.X.T, out=out).mul_(self.Sg)

    def repaired(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """(C): the blocks x (nb, d) made exactly cone-feasible (:func:`certificates.make_feasible`), as
        (V, W) (P, d, 1) each, with their prediction (n, 1) and objective L + α Σ‖·‖ (the primal of a
        certificate, valid whatever x)."""
        pb, P = self.pb, self.P
        V = certificates.make_feasible(self.X, pb.D, pb.H, x[:P, :, None])
        W = certificates.make_feasible(self.X, pb.D, pb.H, x[P:, :, None])
        pred = operators.forward(self.X, pb.D, V - W)
        prim = float(losses.value(self.loss, pred, self.y[:, None]).sum()) + self.alpha * float(
            operators.group_norms(V).sum() + operators.group_norms(W).sum())
        return V, W, pred, prim

    def G(self, b: int) -> torch.Tensor:
        """The cone rows (2D_i − I) X of block b, (n, d)."""
        return self.Sg[b][:, None] * self.X

    def F(self, b: int) -> torch.Tensor:
        """s_b D_i X, (n, d)."""
        return self.Dm[b][:, None] * self.X

    # --- linear algebra of working sets
    def null_basis(self, rows: torch.Tensor) -> torch.Tensor:
        """Orthonormal basis (d, d − rank) of the null space of X[rows]."""
        d = self.d
        if rows.numel() == 0:
            return torch.eye(d, dtype=self.X.dtype, device=self.X.device)
        # on the CPU: these small (|rows| × d) SVDs, one per block and working-set change, are latency-bound on
        # a GPU (2.3 ms each on an H100, 0.9 s of a 4 s active-set phase at n = 2000, d = 51, P = 100)
        XA = self.X[rows].cpu()
        _, s, Vh = torch.linalg.svd(XA, full_matrices=True)
        r = int((s > 1e-10 * max(float(s[0]), 1e-300)).sum()) if s.numel() else 0
        return Vh[r:].T.contiguous().to(self.X.device)

    def independent_rows(self, cand: torch.Tensor, tol: float = 1e-8) -> torch.Tensor:
        """Greedy maximal linearly independent subset of the rows ``cand`` of X, in the given order
        (at most d − 1 rows: a block needs a non-trivial null space)."""
        if cand.numel() == 0:
            return cand
        R = self.X[cand].cpu().numpy()
        nrm = np.sqrt(np.einsum("ij,ij->i", R, R))
        Q = np.empty((self.d, self.d))  # orthonormal basis of the kept rows, columns 0..k−1
        keep: list[int] = []
        k = 0
        for j in range(R.shape[0]):
            if k >= self.d - 1:
                break
            if nrm[j] == 0:
                continue
            Qk = Q[:, :k]
            res = R[j] - Qk @ (Qk.T @ R[j])
            res -= Qk @ (Qk.T @ res)  # re-orthogonalise
            nres = math.sqrt(float(res @ res))
            if nres > tol * nrm[j]:
                Q[:, k] = res / nres
                k += 1
                keep.append(j)
        return cand[torch.as_tensor(keep, dtype=torch.long, device=cand.device)]


# ----------------------------------------------------------------------------------------------------
# non-negative least squares for the cone multipliers


def _nnls(col: _Column, blocks: list[int], C: torch.Tensor, target: torch.Tensor | None = None,
         method: str = "auto", max_iter: int = 3000, mu0: torch.Tensor | None = None, Lx: float | None = None,
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """min_{μ ≥ 0} ‖c_b − G_bᵀ μ‖₂ for the listed blocks (rows of C, (B, d)); G_b = (2D_i − I) X.

    Returns (μ (B, n), residual norms (B,)). ``method``:
      "scipy"  Lawson–Hanson (:func:`scipy.optimize.nnls`), exact, one block at a time on the CPU;
      "pg"     batched accelerated projected gradient (FISTA with adaptive restart) in torch, from ``mu0``
               (or 0), stopping once every residual is ≤ ``target`` (or after ``max_iter`` iterations), step
               1/``Lx`` (Lx = ‖X‖₂², computed when not given);
      "auto"   (with a target) 100 warm-started pg iterations, then scipy for the blocks still above
               ``target`` when n·d ≤ 5·10⁶ (else more pg); (without a target) scipy, or pg when n·d is large.
    """
    B = len(blocks)
    n, d = col.n, col.d
    X = col.X
    if B == 0:
        return X.new_zeros((0, n)), X.new_zeros((0,))
    if method == "auto":
        # a short batched projected-gradient pass settles the blocks that are clearly below target;
        # Lawson–Hanson decides the others exactly (when n·d is not too large)
        if target is not None:
            mu, res = _nnls(col, blocks, C, target, "pg", 100 if n * d <= 5_000_000 else max_iter, mu0)
        else:
            mu, res = X.new_zeros((B, n)), X.new_full((B,), math.inf)
        left = list(range(B)) if target is None else torch.nonzero(res > target)[:, 0].tolist()
        if left and n * d <= 5_000_000:
            m2, r2 = _nnls(col, [blocks[i] for i in left], C[left], None, "scipy")
            better = r2 < res[left]
            idx = torch.as_tensor(left, dtype=torch.long, device=X.device)[better]
            mu[idx], res[idx] = m2[better], r2[better]
        elif left and target is None:
            mu, res = _nnls(col, blocks, C, None, "pg", max_iter, mu0)
        return mu, res
    if method == "scipy":
        from scipy.optimize import nnls as _sp_nnls

        Mu = np.zeros((B, n))
        res = np.zeros(B)
        Xn = X.detach().cpu().double().numpy()
        Cn = C.detach().cpu().double().numpy()
        Sg = col.Sg[blocks].detach().cpu().double().numpy()
        for j in range(B):
            try:
                Mu[j], res[j] = _sp_nnls((Sg[j][:, None] * Xn).T, Cn[j], maxiter=50 * n)
            except RuntimeError:  # iteration limit
                Mu[j], res[j] = 0.0, np.inf
        Mu_t = torch.as_tensor(Mu, dtype=X.dtype, device=X.device)
        res_t = torch.as_tensor(res, dtype=X.dtype, device=X.device)
        bad = ~torch.isfinite(res_t)
        if bool(bad.any()):
            idx = torch.nonzero(bad)[:, 0].tolist()
            m2, r2 = _nnls(col, [blocks[i] for i in idx], C[idx], target, "pg", max_iter)
            Mu_t[idx], res_t[idx] = m2, r2
        return Mu_t, res_t
    if method != "pg":
        raise ValueError(f"unknown NNLS method {method!r}: expected 'auto', 'scipy' or 'pg'")
    # batched FISTA with adaptive restart on ½‖c − Gᵀμ‖², step 1/‖X‖₂², in the signed multipliers ν = Sg ⊙ μ
    # (Sg = ±1): Gᵀμ = Xᵀν, the gradient step is ν + X r / L and the projection keeps the entries with Sg ⊙ ν ≥ 0.
    # The extrapolation's Gᵀy is combined from those of the iterates ((B, d) arrays), so an iteration makes one
    # product of each kind, and the (B, n) arrays are four, reused in place: fresh (B, n) arrays cost more in
    # page faults than their arithmetic (adult, n = 36631, entering blocks after the interior point).
    Sg = col.Sg[blocks]  # (B, n)
    L = float(torch.linalg.matrix_norm(X, ord=2)) ** 2 if Lx is None else Lx
    nu = X.new_zeros((B, n)) if mu0 is None else torch.clamp(mu0, min=0.0).mul_(Sg)
    yk, nu_new, best = nu.clone(), torch.empty_like(nu), nu.clone()
    G = nu @ X  # Gᵀμ (B, d)
    Gy = G.clone()
    tk = X.new_ones((B,))
    tgt = target if target is not None else X.new_full((B,), -1.0)
    res = torch.linalg.vector_norm(C - G, dim=1)
    best_res = res.clone()
    for _ in range(max_iter):
        torch.addmm(yk, C - Gy, X.T, alpha=1.0 / L, out=nu_new)  # ν_y + X(c − Gᵀy)/L
        nu_new.mul_(Sg).clamp_(min=0.0).mul_(Sg)  # onto Sg ⊙ ν ≥ 0
        G_new = nu_new @ X
        res_new = torch.linalg.vector_norm(C - G_new, dim=1)
        t_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * tk * tk))
        restart = res_new > res
        beta = torch.where(restart, torch.zeros_like(tk), (tk - 1.0) / t_new)  # y = ν_new + β (ν_new − ν)
        tk = torch.where(restart, torch.ones_like(tk), t_new)
        torch.mul(nu_new, (1.0 + beta)[:, None], out=yk).addcmul_(nu, beta[:, None], value=-1.0)
        Gy = (1.0 + beta)[:, None] * G_new - beta[:, None] * G
        nu, nu_new = nu_new, nu
        G, res = G_new, res_new
        improved = torch.nonzero(res < best_res)[:, 0]
        if improved.numel():
            best[improved] = nu[improved]
            best_res[improved] = res[improved]
        if bool((best_res <= tgt).all()):
            break
    return best.mul_(Sg).clamp_(min=0.0), best_res


# ----------------------------------------------------------------------------------------------------
# the active-set Newton method


def _spd_solve(H: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """−H⁻¹g for a symmetric positive (semi)definite H (only its lower triangle is read): Cholesky, with a
    tiny ridge if needed."""
    Lc, _, ok = shifted_cholesky(H, (1e-12,))
    if not ok:
        H = torch.tril(H) + torch.tril(H, -1).T
        return -lstsq(H, g[:, None])[:, 0]
    return -torch.cholesky_solve(g[:, None], Lc)[:, 0]


def _newton_direction(A: torch.Tensor, h: torch.Tensor, zh: torch.Tensor, bn: torch.Tensor, sizes: list[int],
                      g: torch.Tensor, alpha: float, ridge: float = 0.0) -> torch.Tensor | None:
    """The Newton direction −H⁻¹g of the reduced problem, H = AᵀΛA + blockdiag(β_b (I − ẑ_b ẑ_bᵀ)),
    β_b = α/‖z_b‖ (A (n, m), Λ = diag(h)); with ``ridge`` > 0, −(H + ρI)⁻¹g, ρ = ridge·max_j H_jj.

    Dense Cholesky of the m×m matrix, or — when m is large compared with n — Woodbury through an
    (n + q)×(n + q) saddle-point system (q support blocks): H + ρI = B + U C Uᵀ with B = diag(β + ρ),
    U = [AᵀΛ^½, Ẑ] and C = diag(I, −β); then C⁻¹ + UᵀB⁻¹U = [[I + Λ^½AB⁻¹AᵀΛ^½, Λ^½AB⁻¹Ẑ], [·ᵀ, diag(1/(β + ρ)
    − 1/β)]] (‖ẑ_b‖ = 1; the corner is 0 without a ridge). One step of iterative refinement with the exact H + ρI
    follows. The ridge goes the same way: formed densely on wide data its m×m matrix would not fit (300 Fashion-MNIST
    images, 784 pixels: m = 43972, 14.4 GiB, against (n + q)² for the Woodbury form); the dense matrix is only a
    fallback (the saddle-point system does not factor) while it stays small (:data:`DENSE_FALLBACK_BYTES`), else there
    is no direction: None (the caller takes no step and tries a ridge).
    """
    n, m = A.shape
    q = len(sizes)
    beta = alpha / bn

    def dense() -> torch.Tensor:
        H = _gram_rows((A * h.sqrt()[:, None]).T.contiguous())  # AᵀΛA, lower triangle
        off = 0
        for j, sz in enumerate(sizes):
            u = zh[off:off + sz]
            blk = H[off:off + sz, off:off + sz]
            blk -= beta[j] * torch.outer(u, u)
            blk.diagonal().add_(beta[j])
            off += sz
        if ridge > 0:
            H.diagonal().add_(ridge * float(H.diagonal().abs().max()))
        return _spd_solve(H, g)

    if n * n * m + (n + q) ** 3 >= 0.7 * (n * m * m + m ** 3 / 3):
        return dense()

    def fallback() -> torch.Tensor | None:
        return dense() if 8.0 * m * m <= DENSE_FALLBACK_BYTES else None

    sizes_t = torch.as_tensor(sizes, device=A.device)
    idx = torch.repeat_interleave(torch.arange(q, device=A.device), sizes_t)
    bexp = beta[idx]
    rho = 0.0
    if ridge > 0:  # ρ relative to H's largest diagonal entry, Σ_r h_r A_rj² + β_j (1 − ẑ_j²), as dense() takes it
        rho = ridge * float(((h[:, None] * A * A).sum(0) + bexp * (1.0 - zh * zh)).abs().max())
    bb = bexp + rho
    sl = h.sqrt()
    At = A * (sl[:, None] / bb.sqrt()[None, :])
    K = A.new_zeros((n + q, n + q))
    K[:n, :n] = At @ At.T
    K[:n, :n].diagonal().add_(1.0)
    z = zh / bb * alpha  # without a ridge z = ẑ‖z‖ blockwise
    Az = torch.zeros((n, q), dtype=A.dtype, device=A.device).index_add_(1, idx, A * z[None, :])  # A_b z_b
    K[:n, n:] = sl[:, None] * Az / alpha
    K[n:, :n] = K[:n, n:].T
    if rho > 0:
        K[n:, n:].diagonal().copy_(1.0 / (beta + rho) - 1.0 / beta)

    def zdot(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(q, dtype=v.dtype, device=v.device).index_add_(0, idx, zh * v)

    def apply_H(v: torch.Tensor) -> torch.Tensor:
        Hv = A.T @ (h * (A @ v)) + bexp * v - zh * (beta * zdot(v))[idx]
        return Hv + rho * v if rho > 0 else Hv

    LU, piv, info = torch.linalg.lu_factor_ex(K)
    if bool(info):
        return fallback()

    def solve(r: torch.Tensor) -> torch.Tensor:
        Br = r / bb
        rhs = torch.cat([sl * (A @ Br), zdot(Br)])
        y = torch.linalg.lu_solve(LU, piv, rhs[:, None])[:, 0]
        return Br - (A.T @ (sl * y[:n]) + zh * y[n:][idx]) / bb

    dz = solve(-g)
    dz = dz + solve(-g - apply_H(dz))
    if not bool(torch.isfinite(dz).all()):
        return fallback()
    return dz


# the active-set Newton step's dense m×m matrix as a fallback of its Woodbury form: at most this many bytes
DENSE_FALLBACK_BYTES = 2.0 * 2**30


def _padded_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The row indices of each row of a boolean ``mask`` (B, n), padded: (idx (B, m), valid (B, m)) with m the
    largest count; row b's indices come first in increasing order, then padding (index 0, valid False)."""
    counts = mask.sum(1)
    m = int(counts.max()) if mask.shape[0] else 0
    # a stable sort of ~mask puts each row's True entries first, in order
    idx = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices[:, :m]
    valid = torch.arange(m, device=mask.device)[None, :] < counts[:, None]
    return torch.where(valid, idx, torch.zeros_like(idx)), valid


def _padded_cone_rows(col: _Column, blocks: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The cone rows (2D_i − I) x_r of each listed block at the padded row indices of :func:`_padded_rows`,
    (B, m, d), with zero rows for the padding."""
    sg = torch.gather(col.Sg[blocks], 1, idx) * valid
    return sg[:, :, None] * col.X[idx]


class _ActiveSet:
    """Primal feasible active-set Newton method on one column (see the module docstring)."""

    def __init__(self, col: _Column, x: torch.Tensor, W: torch.Tensor | None, info: PolishInfo,
                 nnls_method: str = "auto", mu: torch.Tensor | None = None) -> None:
        self.col = col
        self.x = x.clone()
        nb = col.nb
        self.sup = torch.linalg.vector_norm(self.x, dim=1) > 0
        self.W = W if W is not None else torch.zeros((nb, col.n), dtype=torch.bool, device=x.device)
        self.N: list[torch.Tensor | None] = [None] * nb
        self.A: list[torch.Tensor | None] = [None] * nb
        self.info = info
        self.nnls_method = nnls_method
        # (one SVD per block: a batched SVD of the padded working rows gives other bases of the same null spaces,
        # and on chess (binary features, a degenerate vertex) the method then cycled, +268/−277 rows in 326
        # Newton steps instead of +38/−38 in 24)
        for b in torch.nonzero(self.sup)[:, 0].tolist():
            self._rebasis(b)
        self.mu_W = x.new_zeros((nb, col.n))  # multipliers of the working rows (:meth:`working_multipliers`)
        # NNLS multipliers of zero blocks (warm starts of :meth:`_enter`): at first those of ``mu`` (nb, n), e.g.
        # the interior-point method's, which nearly settle the dual constraints of the blocks that stay at zero
        self.mu_cache: dict[int, torch.Tensor] = {}
        if mu is not None:
            self.mu_cache = dict(zip(torch.nonzero(~self.sup)[:, 0].tolist(), mu[~self.sup].clamp(min=0.0),
                                     strict=True))
        self._degenerate: set[tuple[int, int]] = set()  # (block, row) added by a zero step (see _step)

    def _rebasis(self, b: int) -> bool:
        """Recompute block b's null-space basis from its working set and project x_b on it.
        Returns False (and zeroes the block) if the null space is trivial."""
        col = self.col
        rows = torch.nonzero(self.W[b])[:, 0] if col.relu else torch.zeros(0, dtype=torch.long)
        N = col.null_basis(rows)
        if N.shape[1] == 0:
            self._zero(b)
            return False
        self.N[b] = N
        self.A[b] = col.F(b) @ N
        self.x[b] = N @ (N.T @ self.x[b])
        if float(torch.linalg.vector_norm(self.x[b])) == 0.0:
            self._zero(b)
            return False
        return True

    def _zero(self, b: int) -> None:
        self.x[b] = 0.0
        self.sup[b] = False
        self.W[b] = False
        self.N[b] = None
        self.A[b] = None

    # ---- multipliers of the working rows
    def working_multipliers(self, c: torch.Tensor) -> torch.Tensor:
        """μ on the working rows of each support block, (nb, n) (zero off the working rows and on blocks
        without any): least squares for G_Aᵀ μ = c_b + α v̂_b, all blocks in one batched solve (their
        working rows padded with zero rows, which leave each solution unchanged)."""
        col = self.col
        M = col.X.new_zeros((col.nb, col.n))
        bl = torch.nonzero(self.sup & self.W.any(1))[:, 0]
        if bl.numel() == 0:
            return M
        idx, valid = _padded_rows(self.W[bl])
        xb = self.x[bl]
        rhs = c[bl] + col.alpha * xb / torch.linalg.vector_norm(xb, dim=1, keepdim=True)
        mu = lstsq(_padded_cone_rows(col, bl, idx, valid).mT, rhs[:, :, None])[:, :, 0]
        M[bl[:, None].expand_as(idx)[valid], idx[valid]] = mu[valid]
        return M

    def run(self, max_newton: int = 300, gtol: float = 1e-13, drop_tol: float = 1e-12,
            enter_tol: float = 1e-12, max_changes: int | None = None, deadline: _Deadline | None = None,
            stall_tol: float = 1e-6) -> bool:
        """Iterate until the KKT conditions hold (returns True) or the budget is spent (False).

        Newton stops making progress at the rounding floor, where the largest reduced gradient
        max_b ‖g_b‖/α is ~1e-10 on well-scaled data; a stall with max_b ‖g_b‖/α > ``stall_tol`` is not that
        (an ill-conditioned reduced Hessian, e.g. on unscaled targets) and ends the method with False."""
        col, info = self.col, self.info
        alpha, loss, y = col.alpha, col.loss, col.y
        f = col.fval(self.x)
        changes = 0
        stalled = 0
        gmax = 0.0
        self._last_added = 0
        for _ in range(max_newton):
            if deadline is not None and deadline.passed():
                info.notes.append("active-set: time limit")
                return False
            if max_changes is not None and changes > max_changes:
                info.notes.append("active-set: too many working-set changes")
                return False
            t0 = time.perf_counter()
            bl = torch.nonzero(self.sup)[:, 0].tolist()
            if bl:
                sizes = [self.N[b].shape[1] for b in bl]
                Ared = torch.cat([self.A[b] for b in bl], dim=1)
                z = torch.cat([self.N[b].T @ self.x[b] for b in bl])
                a = Ared @ z
                gl = _loss_grad(loss, a, y)
                h = _loss_hess(loss, a, y)
                zs = torch.split(z, sizes)
                bn = torch.stack([torch.linalg.vector_norm(zz) for zz in zs])
                zh = torch.cat([zz / nn for zz, nn in zip(zs, bn, strict=True)])
                g = Ared.T @ gl + alpha * zh
                gmax = max(float(torch.linalg.vector_norm(gg)) for gg in torch.split(g, sizes)) / alpha
                if gmax > gtol:
                    dz = _newton_direction(Ared, h, zh, bn, sizes, g, alpha)
                    info.newton_iterations += 1
                    t0 = info.tick("newton system", t0)
                    stepped = dz is not None and self._step(bl, sizes, g, dz, f)
                    if not stepped and gmax > stall_tol:
                        # far from stationary yet no decrease: the reduced Hessian is (numerically) singular
                        # (the group norm is flat along a block's radius where two blocks predict alike, and
                        # an ill-conditioned X adds more), so the Newton step is garbage. Levenberg–Marquardt:
                        # the same system with a growing ridge, until a step decreases φ
                        for ridge in (1e-10, 1e-7, 1e-4):
                            dz = _newton_direction(Ared, h, zh, bn, sizes, g, alpha, ridge=ridge)
                            info.newton_iterations += 1
                            if dz is not None and self._step(bl, sizes, g, dz, f):
                                stepped = True
                                break
                        t0 = info.tick("newton system", t0)
                    if stepped:
                        f_new = col.fval(self.x)
                        changes += self._last_added
                        # a step that changes nothing but rounding: count towards the rounding floor
                        progress = self._last_added > 0 or f_new < f - 4 * col.eps * abs(f)
                        stalled = 0 if progress else stalled + 1
                        f = f_new
                        t0 = info.tick("line search", t0)
                        if stalled < 2:
                            continue
                    else:
                        # no decrease at all: the reduced problem is solved as far as rounding allows
                        stalled += 1
                        t0 = info.tick("line search", t0)
                        if stalled < 2:
                            continue
            # ---- stationary for the current working sets: release rows, enter blocks
            a = col.pred(self.x)
            gl = _loss_grad(loss, a, y)
            c = col.block_grad(gl)
            released = 0
            if col.relu:
                self.mu_W = self.working_multipliers(c)
                neg = self.W & (self.mu_W * col.xn[None, :] < -drop_tol * alpha)
                released = int(neg.sum())
                if released:
                    self.W &= ~neg
                    for b in torch.nonzero(neg.any(1))[:, 0].tolist():
                        self._rebasis(b)
                info.rows_released += released
                changes += released
            t0 = info.tick("multipliers", t0)
            if released:
                f = col.fval(self.x)
                stalled = 0
                continue
            entered = self._enter(c, f, enter_tol)
            t0 = info.tick("entering", t0)
            if entered:
                changes += entered
                f = col.fval(self.x)
                stalled = 0
                continue
            if bl and gmax > stall_tol:
                info.notes.append(f"active-set: Newton stalled at reduced gradient {gmax:.1e}·alpha")
                return False
            return True
        info.notes.append("active-set: Newton budget spent")
        return False

    def _step(self, bl: list[int], sizes: list[int], g: torch.Tensor, dz: torch.Tensor, f: float) -> bool:
        """Bent backtracking line search along the Newton direction; adds the blocking rows.
        Returns False when no decrease (at rounding level) was found."""
        col = self.col
        X = col.X
        dt = X.dtype
        self._last_added = 0
        # (one block at a time: batched sums round differently, and the method's path on ill-conditioned data
        # (magic, raw) follows rounding-level differences: with segment sums here and for the block norms in
        # run it lost its certificate there)
        dx = torch.zeros_like(self.x)
        gdz = torch.zeros(col.nb, dtype=dt, device=X.device)
        for b, gg, dzz in zip(bl, torch.split(g, sizes), torch.split(dz, sizes), strict=True):
            dx[b] = self.N[b] @ dzz
            gdz[b] = gg @ dzz
        blt = torch.as_tensor(bl, device=X.device)
        T = torch.full((col.nb,), math.inf, dtype=dt, device=X.device)
        blocker = torch.zeros(col.nb, dtype=torch.long, device=X.device)
        if col.relu:
            S = col.slack(self.x)
            R = col.slack(dx)
            dxn = torch.linalg.vector_norm(dx, dim=1)
            mask = (~self.W) & (R < -1e-13 * col.xn[None, :] * dxn[:, None])
            ratio = torch.where(mask, torch.clamp(S, min=0.0) / torch.where(mask, -R, torch.ones_like(R)),
                                torch.full_like(R, math.inf))
            T, blocker = ratio.min(dim=1)
        t = 1.0
        while t > 1e-12:
            tb = torch.clamp(T, max=t)
            xn_ = self.x + tb[:, None] * dx
            fn = col.fval(xn_)
            lin = float((tb * gdz).sum())
            if fn <= f + 1e-4 * min(lin, 0.0) and fn <= f:
                break
            t *= 0.5
        else:
            # no decrease: if rows at zero slack outside the working sets block some blocks at once (T_b ≈ 0,
            # a degenerate vertex), take the zero step and add them, so that the next direction respects them
            # (each row at most once per run: a row released and blocking again would otherwise cycle)
            at0 = blt[T[blt] <= 1e-12]
            stuck = [(b, r) for b, r in zip(at0.tolist(), blocker[at0].tolist(), strict=True)
                     if (b, r) not in self._degenerate]
            if not stuck:
                return False
            saved = (self.x.clone(), self.W.clone(), self.sup.clone(), list(self.N), list(self.A))
            for b, r in stuck:
                self._degenerate.add((b, r))
                self.W[b, r] = True
                self._rebasis(b)
            # the projection onto the new faces must be a rounding-level move (not a block set to zero)
            if not bool(self.sup[[b for b, _ in stuck]].all()) or col.fval(self.x) > f + 64 * col.eps * abs(f):
                self.x, self.W, self.sup, self.N, self.A = saved
                return False
            self.info.rows_added += len(stuck)
            self._last_added += len(stuck)
            return True
        self.x = xn_
        hit = blt[T[blt] <= t]
        for b, r in zip(hit.tolist(), blocker[hit].tolist(), strict=True):
            self.W[b, r] = True
            self.info.rows_added += 1
            self._last_added += 1
            self._rebasis(b)
        self._collapse(bl)
        return True

    def _collapse(self, bl: list[int]) -> None:
        """Set to zero the small support blocks whose removal decreases φ.

        Newton's method handles a block that should vanish badly (the norm has no radial curvature), so
        small blocks with α + c_bᵀv̂_b > 0 (φ decreases when the block shrinks) are tried at zero."""
        col = self.col
        nrm = torch.linalg.vector_norm(self.x, dim=1)
        top = float(nrm.max()) if nrm.numel() else 0.0
        if top == 0.0:
            return
        c = col.block_grad(_loss_grad(col.loss, col.pred(self.x), col.y))
        radial = col.alpha + (c * self.x).sum(1) / nrm.clamp(min=1e-300)
        blt = torch.as_tensor(bl, dtype=torch.long, device=nrm.device)
        blt = blt[self.sup[blt] & (nrm[blt] <= 0.05 * top) & (radial[blt] > 0)]
        cand = blt[torch.argsort(nrm[blt], stable=True)].tolist()
        f = col.fval(self.x)
        for b in cand:
            xt = self.x.clone()
            xt[b] = 0.0
            ft = col.fval(xt)
            if ft <= f:
                self._zero(b)
                self.info.blocks_dropped += 1
                f = ft

    def _enter(self, c: torch.Tensor, f: float, enter_tol: float) -> int:
        """Let the zero blocks that violate their dual constraint enter; returns how many did."""
        col = self.col
        alpha = col.alpha
        zero = torch.nonzero(~self.sup)[:, 0]
        if zero.numel() == 0:
            return 0
        cn = torch.linalg.vector_norm(c[zero], dim=1)
        cand = zero[cn > alpha * (1.0 + enter_tol)].tolist()
        if not cand:
            return 0
        dirs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if col.relu:
            mu0 = torch.stack([self.mu_cache.get(b, col.X.new_zeros(col.n)) for b in cand])
            tgt = col.X.new_full((len(cand),), alpha * (1.0 + enter_tol))
            Mu, res = _nnls(col, cand, c[cand], target=tgt, method=self.nnls_method, mu0=mu0)
            for j, b in enumerate(cand):
                self.mu_cache[b] = Mu[j]
            for j, b in enumerate(cand):
                if float(res[j]) <= alpha * (1.0 + enter_tol):
                    continue
                dvec = (col.Sg[b] * Mu[j]) @ col.X - c[b]
                rows = torch.nonzero(Mu[j] > 0)[:, 0]
                rows = col.independent_rows(rows[torch.argsort(Mu[j][rows], descending=True)])
                dirs[b] = (dvec, rows)
        else:
            for b in cand:
                dirs[b] = (-c[b], torch.zeros(0, dtype=torch.long))
        if not dirs:
            return 0
        # directions, projected on the null space of their working rows (a no-op up to rounding)
        D = torch.zeros_like(self.x)
        for b, (dvec, rows) in dirs.items():
            self.W[b] = False
            if rows.numel():
                self.W[b, rows] = True
            N = col.null_basis(rows)
            if N.shape[1] == 0:
                continue
            dv = N @ (N.T @ dvec)
            nd = float(torch.linalg.vector_norm(dv))
            if nd == 0.0:
                continue
            D[b] = dv / nd
        if float(torch.linalg.vector_norm(D)) == 0.0:
            return 0
        nrm = torch.linalg.vector_norm(self.x, dim=1)
        eps = float(nrm.max()) if bool(self.sup.any()) else 1.0
        xt = None
        while eps > 1e-14:
            xt = self.x + eps * D
            if col.fval(xt) < f:
                break
            eps *= 0.25
            xt = None
        if xt is None:
            for b in dirs:
                self.W[b] = False
            return 0
        self.x = xt
        count = 0
        for b in dirs:
            if float(torch.linalg.vector_norm(D[b])) > 0:
                self.sup[b] = True
                if self._rebasis(b):
                    count += 1
        self.info.blocks_entered += count
        return count

    def multipliers_dense(self) -> torch.Tensor:
        """The working-set multipliers as an (nb, n) tensor (clamped at 0; zero off the working sets)."""
        M = torch.clamp(self.mu_W * self.W, min=0.0)
        for b, mu in self.mu_cache.items():  # zero blocks: their last NNLS fit (from :meth:`_enter`)
            if not bool(self.sup[b]):
                M[b] = torch.clamp(mu, min=0.0)
        return M


def _initial_working_sets(col: _Column, x: torch.Tensor, mu: torch.Tensor | None, act_tol: float,
                          support_tol: float, info: PolishInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Guess support and working sets from an approximate point (and optionally multipliers), and move
    x onto the guessed faces: x_b ← N_b N_bᵀ x_b, adding violated rows (a few rounds) so that the
    result is cone-feasible; blocks that cannot be made feasible this way start at zero."""
    nb, n = col.nb, col.n
    x = x.clone()
    nrm = torch.linalg.vector_norm(x, dim=1)
    top = float(nrm.max()) if nrm.numel() else 0.0
    W = torch.zeros((nb, n), dtype=torch.bool, device=x.device)
    if top == 0.0:
        return x, W
    sup = nrm > support_tol * top
    x[~sup] = 0.0
    if not col.relu:
        return x, W
    S = col.slack(x)
    rel = S / (col.xn[None, :] * nrm[:, None]).clamp(min=1e-300)
    score = act_tol - rel  # > 0: slack below act_tol (relative), violated rows first
    if mu is not None:
        score = torch.maximum(score, mu * col.xn[None, :] / col.alpha - rel)
    for b in torch.nonzero(sup)[:, 0].tolist():
        cand = torch.nonzero(score[b] > 0)[:, 0]
        cand = cand[torch.argsort(score[b][cand], descending=True)][: 4 * col.d]
        ok = False
        xb = x[b]
        for _ in range(4):
            rows = col.independent_rows(cand)
            N = col.null_basis(rows)
            if N.shape[1] == 0:
                break
            xb = N @ (N.T @ x[b])
            sb = col.Sg[b] * (col.X @ xb)
            tol = 1e-12 * col.xn * float(torch.linalg.vector_norm(xb))
            mask = torch.ones(n, dtype=torch.bool, device=x.device)
            mask[rows] = False
            viol = torch.nonzero(mask & (sb < -tol))[:, 0]
            if viol.numel() == 0:
                ok = float(torch.linalg.vector_norm(xb)) > 0
                break
            viol = viol[torch.argsort(sb[viol])]
            cand = torch.cat([rows, viol])
        if ok:
            x[b] = xb
            W[b, rows] = True
        else:
            x[b] = 0.0
            info.blocks_dropped += 1
    return x, W


# the margin of :func:`_lift_to_cone` (in units of the rounding eps·‖x_r‖‖v_b‖) for a result rounded to float32: its
# cost in objective is proportional to it. Over 24 programs (12 PMLB tables, 400 rows standardised, 50 gates, alpha
# 1e-2 and 1e-3 × its maximum: each float64 optimum rounded, lifted and made feasible in float32) 2 cost 0.8e-6 …
# 1.5e-5 relative, 1 half that, with float64-evaluated slack as good (at 0.5 more rows fell ~1e-8 short in float64
# and the gate step moved some blocks by 1e-4); in float64 the margin's cost is ~1e-13 and the default 2 stays.
ROUNDING_MARGIN = 1.0


def _lift_to_cone(col: _Column, x: torch.Tensor, rounds: int = 3, limit: int = 25_000_000,
                  margin: float = 2.0) -> torch.Tensor:
    """Make every block strictly cone-feasible in floating point with a change at rounding level.

    The active-set solution has zero slack on its working rows up to rounding (±1e-16 relative), and
    :func:`certificates.make_feasible` would repair a tiny violation by a step along the gate, whose
    slack can be small on the same rows (a large step). Instead, the rows with slack below
    margin·eps·‖x_r‖‖v_b‖ are moved to that target by the least-norm correction G_Vᵀδ: one batched least-squares
    solve per round for all blocks that have such rows (their rows padded with zero rows, in groups of blocks
    whose padded rows have at most ``limit`` entries).
    """
    if not col.relu:
        return x
    x = x.clone()
    for _ in range(rounds):
        nrm = torch.linalg.vector_norm(x, dim=1)
        sb = col.slack(x)
        tgt = margin * col.eps * col.xn[None, :] * nrm[:, None]
        low = (sb < tgt) & (nrm > 0)[:, None]
        todo = torch.nonzero(low.any(1))[:, 0]
        if todo.numel() == 0:
            break
        per = max(1, limit // (col.d * max(int(low[todo].sum(1).max()), 1)))
        for bl in torch.split(todo, per):
            idx, valid = _padded_rows(low[bl])
            rhs = (torch.gather((tgt - sb)[bl], 1, idx) * valid)[:, :, None]
            x[bl] += lstsq(_padded_cone_rows(col, bl, idx, valid), rhs)[:, :, 0]
    return x


# ----------------------------------------------------------------------------------------------------
# the interior-point method that identifies the working sets of (C)



def _gram_rows(Z: torch.Tensor) -> torch.Tensor:
    """Z Zᵀ for Z (r, c), with its LOWER triangle exact (the upper one may be left unset: the result is
    only handed to Cholesky factorizations, which read the lower triangle). On the CPU in float64 it is
    one BLAS ``dsyrk`` (half the flops of a general product), else ``Z @ Zᵀ``."""
    if Z.device.type == "cpu" and Z.dtype == torch.float64 and Z.shape[0] >= 64:
        from scipy.linalg.blas import dsyrk

        # Z C-ordered is Zᵀ F-ordered: dsyrk(trans=1) forms (Zᵀ)ᵀZᵀ = Z Zᵀ in its upper triangle (F-order),
        # which is the lower triangle of the transposed (C-order) view
        C = dsyrk(1.0, Z.contiguous().numpy().T, trans=1)
        return torch.from_numpy(C).T
    return Z @ Z.T


class _Chol:
    """Cholesky factor of a symmetric positive definite K (its lower triangle is read; K may be
    overwritten); ``ok`` False when it failed. On the CPU in float64 LAPACK ``dpotrf``/``dpotrs`` (faster
    than torch's for the sizes here), else :func:`torch.linalg.cholesky_ex`/:func:`torch.cholesky_solve`."""

    def __init__(self, K: torch.Tensor) -> None:
        self.lapack = K.device.type == "cpu" and K.dtype == torch.float64 and K.shape[0] >= 64
        if self.lapack:
            from scipy.linalg.lapack import dpotrf

            # the lower triangle of K (C-order) is the upper one of the F-order array K.numpy().T (K is
            # overwritten when that array is F-contiguous, as from :func:`_gram_rows`)
            self.U, info = dpotrf(np.asfortranarray(K.numpy().T), lower=0, clean=1, overwrite_a=1)
            self.ok = info == 0
        else:
            self.L, bad = torch.linalg.cholesky_ex(K)
            self.ok = not bool(bad)

    def solve(self, B: torch.Tensor) -> torch.Tensor:
        """K⁻¹ B for B (m, k)."""
        if self.lapack:
            from scipy.linalg.lapack import dpotrs

            return torch.from_numpy(dpotrs(self.U, B.numpy(), lower=0)[0])
        return torch.cholesky_solve(B, self.L)


# the largest order of a matrix that :meth:`_IPMSystem.solve_checked` factors when the factored forms' direction is
# inaccurate, the whole Newton matrix in its reduced form (P·d, for (C)) or as it is (nb·d): order³/3 flops,
# ≈ 1–1.4 s at 3560–4312 on one thread, 8·order² bytes
DENSE_NEWTON_MAX = 4500
# ... and the factored direction's relative residual above which it does. bench_defaults --loss hinge, binary
# tables, one thread, 1e-6 against 1e-4: adult standardised 22 whole-matrix solves (N = 3000, residuals 1e-6–1e-4,
# 2.5e-5 after them) took its fit from 7 to 21 s, mushroom raw 24 (N = 3828) from 9 to 35 s, for the same results;
# adult raw, whose one direction there has N = 450, ended at 6.3e-5 against 2.0e-5
NEWTON_RESIDUAL_TOL = 1e-4
# above DENSE_NEWTON_CHEAP unknowns only a direction with a relative residual above DENSE_NEWTON_BAD is solved again
# (waveform raw, N = 4312: 135 of 258 directions solved again at 1e-4 with the whole matrix, 49 s of a 70 s fit that
# took 21 s without; with the reduced form, at 1e-4 for every size the hinge raw suites of bench_defaults certified
# the same fits to about the same gaps, binary in 80.6 s against 74.1 s, multi-class 347 s against 323 s)
DENSE_NEWTON_CHEAP = 2000
DENSE_NEWTON_BAD = 1e-2


def _equilibrated_solver(K: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """b ↦ K⁻¹b for b (m,), by the Cholesky factor of the symmetric positive definite K (m, m) symmetrically
    equilibrated (its diagonal scaled to ones; K is overwritten), with a rounding-level shift where that does not
    factor; None when even the shift does not make it factor."""
    sc = K.diagonal().clamp(min=1e-300).rsqrt()
    K.mul_(sc[:, None]).mul_(sc[None, :])
    L, _, ok = shifted_cholesky(K, (1e-14, 1e-12))
    if not ok:
        return None
    return lambda b: sc * torch.cholesky_solve((sc * b)[:, None], L)[:, 0]


class _IPMSystem:
    """The interior-point Newton matrix  FᵀΛF + blockdiag(S_b)  of one iteration, factored.

    S_b = ∇²h(x_b) + G_bᵀ diag(μ_b/s_b) G_b (d×d per block); F = [F_v, −F_v] with F_v = [D_1 X … D_P X]
    for (C). Two equivalent factorizations, whichever is smaller:
      "n"   (n ≤ P·d) Woodbury: F S⁻¹ Fᵀ = Σ_i D_i X M_i Xᵀ D_i with M_i = S_v,i⁻¹ + S_w,i⁻¹ (the signs of
            v and w cancel) and one n×n Cholesky factor of  I + Λ^½ F S⁻¹ Fᵀ Λ^½;
      "pd"  (P·d < n) the prediction depends on q = x_v − x_w only: (M⁻¹ + F_vᵀΛF_v) q = M⁻¹(S_v⁻¹r_v −
            S_w⁻¹r_w), then x_v = S_v⁻¹(r_v − F_vᵀΛF_v q), x_w = S_w⁻¹(r_w + F_vᵀΛF_v q): one (P·d)² factor
            (F_vᵀΛF_v by :func:`_pattern_gram`, without forming F_v; the solves apply it through that Gram).
    (For (G) the same with M = S⁻¹ and no w-blocks.)
    ``workspace``: a dict that keeps the "n" mode's (n, P·d) array from one iteration's system to the next (a
    method passes the same one to each of its systems; a system does not use it once built), and with
    ``constant_lam`` (Λ the same in every system of the method: the squared loss, λ = 1/n) the "pd" mode's
    F_vᵀΛF_v, formed by the first system only (its n·(P·d)²/2 flops are most of a "pd" iteration: 60000 rows,
    P·d = 5100, 1.6e12 against 4.4e10 for the factor).
    """

    def __init__(self, col: _Column, S: torch.Tensor, lam: torch.Tensor, workspace: dict | None = None,
                 constant_lam: bool = False) -> None:
        self.col = col
        n, d, P = col.n, col.d, col.P
        self.ok = False
        self._gamma_n: torch.Tensor | None = None  # Γ in mode "n", formed by :meth:`gamma` when first asked for
        Lb, S, ok = shifted_cholesky(S, (1e-12,))
        if not ok:
            return
        Sinv = torch.cholesky_inverse(Lb)
        M = Sinv[:P] + Sinv[P:] if col.relu else Sinv
        # M is positive definite, but the inverse of a nearly singular S_b (a block the shift above rescued) carries
        # rounding of the size of its largest entries, and M can then fail to factor: factored with a rounding-level
        # shift instead (the iterative refinement of :meth:`solve` corrects the direction against the unshifted M).
        # Seen on adult standardised, hinge loss, one thread: the barrier method stopped at its third Newton step
        # and the fit ended uncertified (relative gap 0.76); with two BLAS threads the rounding let it through.
        LM, M, ok = shifted_cholesky(M, (1e-14, 1e-12, 1e-10))
        if not ok:
            return
        self.S, self.Lb, self.lam = S, Lb, lam
        self.mode = newton_mode(n, d, P, constant_lam and workspace is not None)
        Dn = col.pb.D  # (n, P)
        if self.mode == "n":
            self.sl = lam.sqrt()
            # Z = Λ^½ [D_1 X L_1 … D_P X L_P] (n, P·d) by one product X·[L_1 … L_P] and the pattern mask, in
            # place in the workspace's array: two fresh (n, P·d) arrays per iteration cost more in page faults than
            # the product itself (n = 2000, P·d = 5100, one thread: 125 → 34 ms, against 450 ms for Z Zᵀ)
            Z = None if workspace is None else workspace.get("Z")
            if Z is None or Z.shape != (n, P * d) or Z.dtype != col.X.dtype or Z.device != col.X.device:
                Z = col.X.new_empty((n, P * d))
                if workspace is not None:
                    workspace["Z"] = Z
            torch.matmul(col.X, LM.permute(1, 0, 2).reshape(d, P * d), out=Z)
            Z.view(n, P, d).mul_((Dn * self.sl[:, None])[:, :, None])

            def matrix() -> torch.Tensor:
                K = _gram_rows(Z)
                K.diagonal().add_(1.0)
                return K
        else:
            self.LM = LM
            Minv = torch.cholesky_inverse(LM)  # (P, d, d)
            ip = torch.arange(P, device=Minv.device)

            gram = workspace.get("gram") if constant_lam and workspace is not None else None
            if gram is None:
                gram = _pattern_gram(col.X, Dn, lam)  # F_vᵀ Λ F_v, without forming F_v (n, P·d)
                if constant_lam and workspace is not None:
                    workspace["gram"] = gram
            self.gram = gram

            def matrix() -> torch.Tensor:
                K = gram.clone()  # (the factorization overwrites K, and a retry below needs the gram again)
                K.view(P, d, P, d)[ip, :, ip, :] += Minv  # + blockdiag(M⁻¹)
                return K

        # K is positive definite, yet rounding can defeat its factorization when its scaled condition is beyond
        # float64 (columns of X on scales 1e5 apart: adult raw, hinge loss, pd mode). Then K is formed again (the
        # factorization overwrites it) with each diagonal entry raised by a relative 1e-14, 1e-12, 1e-10: a shift
        # relative to the largest entry would wipe out the small-scale columns. :meth:`solve`'s iterative refinement
        # corrects the directions against the unshifted system.
        for shift in (0.0, 1e-14, 1e-12, 1e-10):
            K = matrix()
            if shift:
                K.diagonal().mul_(1.0 + shift)
            self.LK = _Chol(K)
            if self.LK.ok:
                self.ok = True
                return

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """(FᵀΛF + blockdiag S) v for v (nb, d)."""
        col = self.col
        Sv = (self.S @ v[:, :, None])[:, :, 0]
        if self.mode == "pd":
            return Sv + self._gram_apply(v[:col.P] - v[col.P:] if col.relu else v)
        return Sv + col.block_grad(self.lam * col.pred(v))

    def _gram_apply(self, q: torch.Tensor) -> torch.Tensor:
        """FᵀΛF_v q for q (P, d) by the (P·d)² Gram of the "pd" mode, (nb, d) (F = [F_v, −F_v] for (C)).

        (Through X and D instead it costs 4·n·P·d flops and (n, P) temporaries: at n = 36631, P·d = 1500 that is
        about 50 times the Gram's 2·(P·d)².)"""
        col = self.col
        Aq = (self.gram @ q.reshape(-1)).view(col.P, col.d)
        return torch.cat([Aq, -Aq]) if col.relu else Aq

    def solve(self, r: torch.Tensor, refine: int = 1) -> torch.Tensor:
        """(FᵀΛF + blockdiag S)⁻¹ r, with ``refine`` steps of iterative refinement."""
        return self._refined(self._solve, r, refine)

    def _refined(self, solve: Callable[[torch.Tensor], torch.Tensor], r: torch.Tensor, refine: int) -> torch.Tensor:
        """``solve(r)`` followed by ``refine`` steps of iterative refinement against this matrix (:meth:`apply`)."""
        x = solve(r)
        for _ in range(refine):
            x = x + solve(r - self.apply(x))
        return x

    def gamma(self) -> torch.Tensor:
        """Γ = F_vᵀΛF_v (P·d, P·d): the "pd" mode's Gram, or in mode "n" (which factors without it) formed by
        :func:`_pattern_gram` once, when first asked for (both whole-matrix solves of :meth:`solve_checked` use it).
        Not to be modified."""
        if self.mode == "pd":
            return self.gram
        if self._gamma_n is None:
            self._gamma_n = _pattern_gram(self.col.X, self.col.pb.D, self.lam)
        return self._gamma_n

    def dense(self) -> torch.Tensor:
        """The whole matrix FᵀΛF + blockdiag S, (nb·d, nb·d): for (C) [[Γ + S_v, −Γ], [−Γ, Γ + S_w]] with
        Γ = F_vᵀΛF_v (:meth:`gamma`), for (G) Γ + S."""
        col = self.col
        nb, d = col.nb, col.d
        gram = self.gamma()
        K = torch.cat([torch.cat([gram, -gram], 1), torch.cat([-gram, gram], 1)]) if col.relu else gram.clone()
        ib = torch.arange(nb, device=K.device)
        K.view(nb, d, nb, d)[ib, :, ib, :] += self.S
        return K

    def solve_checked(self, r: torch.Tensor, refine: int = 1, tol: float = NEWTON_RESIDUAL_TOL,
                      dense_max: int = DENSE_NEWTON_MAX) -> tuple[torch.Tensor, float]:
        """:meth:`solve`, then its relative residual ‖r − K x‖/‖r‖; above ``tol`` (above ``DENSE_NEWTON_BAD`` past
        ``DENSE_NEWTON_CHEAP`` unknowns) the whole matrix is factored instead, with ``refine`` steps of refinement:
        for (C) first in its reduced form (:meth:`_reduced_solver`, P·d unknowns), then, where its residual is still
        above that bound, as it is (:meth:`_dense_solver`, nb·d), each where its order is at most ``dense_max``.
        Returns (x, its relative residual): the best of the solves.

        (The factored forms go through S_b⁻¹, whose rounding grows with the blocks' condition: on raw features
        (magic, hinge barrier at τ = 4e-9) their direction's residual was 1e3 × ‖r‖, while the whole matrix's
        equilibrated condition was 4e13 and its Cholesky factor solved to 1e-9.)"""
        rn = max(float(torch.linalg.vector_norm(r)), 1e-300)

        def residual(x: torch.Tensor) -> float:
            return float(torch.linalg.vector_norm(r - self.apply(x))) / rn

        x = self.solve(r, refine)
        res = residual(x)
        bound = tol if r.numel() <= DENSE_NEWTON_CHEAP else max(tol, DENSE_NEWTON_BAD)
        col = self.col
        # (order of the matrix factored, its solver): for (C) the reduced form first, the whole matrix only where
        # that is not accurate enough either (adult raw, hinge barrier at τ = 7e-9: 1.8e5 against 2.3e-2)
        whole = [(col.P * col.d, self._reduced_solver)] if col.relu else []
        for order, make in whole + [(col.nb * col.d, self._dense_solver)]:
            if res <= bound:
                break
            solver = make() if order <= dense_max else None
            if solver is not None:
                z = self._refined(solver, r, refine)
                res_z = residual(z)
                if res_z < res:
                    x, res = z, res_z
        return x, res

    def _dense_solver(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """A solver of the whole matrix (:meth:`dense`, (nb·d)²) by its symmetrically equilibrated Cholesky factor
        (None when even a rounding-level shift does not make it factor)."""
        solve = _equilibrated_solver(self.dense())
        return None if solve is None else (lambda b: solve(b.reshape(-1)).view_as(b))

    def _reduced_solver(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """For (C): a solver of the whole matrix in a basis where it reduces to P·d unknowns, by Cholesky factors
        that do not go through S_b⁻¹ (None when even a rounding-level shift does not make them factor).

        In the coordinates q = (x_v − x_w)/2, p = (x_v + x_w)/2 (x_v = p + q, x_w = p − q) the matrix is
        [[4Γ + A, B], [B, A]] with the block-diagonal A = S_v + S_w and B = S_v − S_w (d×d per pattern), and the
        right-hand side is (r_v − r_w, r_v + r_w). The p-block is eliminated by A's per-pattern factors L_A
        (C = L_A⁻¹B): (4Γ + A − CᵀC) q = r_q − Cᵀz with z = L_A⁻¹r_p, then p = L_A⁻ᵀ(z − Cq). The Schur complement
        4Γ + A − CᵀC = 4(Γ + M⁻¹) is the "pd" mode's matrix, formed without inverting S_v and S_w, and factored
        symmetrically equilibrated: (P·d)³/3 flops against the whole matrix's (2P·d)³/3. A − CᵀC can cancel where
        S_v and S_w are on scales far apart (its rounding is of the size of the larger), which the whole matrix's
        equilibration avoids: where this direction is still inaccurate :meth:`solve_checked` goes on to that."""
        P, d = self.col.P, self.col.d
        Sv, Sw = self.S[:P], self.S[P:]
        LA, _, ok = shifted_cholesky(Sv + Sw, (1e-14, 1e-12))
        if not ok:
            return None
        C = torch.linalg.solve_triangular(LA, Sv - Sw, upper=False)  # (P, d, d)
        K = 4.0 * self.gamma()
        ip = torch.arange(P, device=K.device)
        K.view(P, d, P, d)[ip, :, ip, :] += Sv + Sw - C.mT @ C
        schur_solve = _equilibrated_solver(K)
        if schur_solve is None:
            return None

        def solve(r: torch.Tensor) -> torch.Tensor:
            rq, rp = r[:P] - r[P:], r[:P] + r[P:]
            z = torch.linalg.solve_triangular(LA, rp[:, :, None], upper=False)  # (P, d, 1)
            q = schur_solve((rq - (C.mT @ z)[:, :, 0]).reshape(-1)).view(P, d)
            p = torch.linalg.solve_triangular(LA.mT, z - C @ q[:, :, None], upper=True)[:, :, 0]
            return torch.cat([p + q, p - q])

        return solve

    def _block_solve(self, r: torch.Tensor, L: torch.Tensor | None = None) -> torch.Tensor:
        """S_b⁻¹ r_b for every block, r (nb, d), by two batched triangular solves with the factors L_b
        (``L``: other factors of the same shape).

        (On the CPU ``torch.cholesky_solve`` with one right-hand side per block was measured 6× slower than
        this at nb = 200, d = 300.)"""
        L = self.Lb if L is None else L
        z = torch.linalg.solve_triangular(L, r[:, :, None], upper=False)
        return torch.linalg.solve_triangular(L.mT, z, upper=True)[:, :, 0]

    def _solve(self, r: torch.Tensor) -> torch.Tensor:
        col, P, d = self.col, self.col.P, self.col.d
        Sr = self._block_solve(r)
        if self.mode == "n":
            wv = self.sl * self.LK.solve((self.sl * col.pred(Sr))[:, None])[:, 0]  # (F S⁻¹ r = pred(S⁻¹ r))
            return Sr - self._block_solve(col.block_grad(wv))
        u = Sr[:P] - Sr[P:] if col.relu else Sr
        rhs = self._block_solve(u, self.LM)  # M⁻¹ u
        q = self.LK.solve(rhs.reshape(P * d, 1))[:, 0]
        return Sr - self._block_solve(self._gram_apply(q.view(P, d)))  # FᵀΛF_v q


# the most entries of :func:`_pattern_gram`'s pair weights of one row chunk
PATTERN_GRAM_ENTRIES = 2 ** 24


def _pattern_gram_rows(n: int, P: int, chunk: int = 4096) -> int:
    """Rows per chunk of :func:`_pattern_gram` (n rows, P patterns): at most ``chunk``, and fewer where the
    chunk's P(P+1)/2 pair weights would pass :data:`PATTERN_GRAM_ENTRIES` entries."""
    return max(1, min(chunk, n, PATTERN_GRAM_ENTRIES // (P * (P + 1) // 2)))


def _pattern_gram(X: torch.Tensor, D: torch.Tensor, lam: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """F_vᵀ diag(λ) F_v for F_v = [D_1 X … D_P X] (n, P·d), as a full symmetric (P·d, P·d) matrix.

    Block (i, j) is Xᵀ diag(λ ⊙ d_i ⊙ d_j) X = Σ_r λ_r d_ri d_rj x_r x_rᵀ: a product of the (P(P+1)/2, n)
    weights of the pattern pairs i ≤ j with the (n, d(d+1)/2) products x_ra x_rb of the column pairs a ≤ b.
    Both symmetries are used, so this takes 2·n·P(P+1)/2·d(d+1)/2 ≈ n(P·d)²/2 flops, half of a ``syrk`` of
    F_v (which only uses the symmetry of the whole matrix); rows go in chunks (:func:`_pattern_gram_rows`), so no
    n × P·d array is formed.

    The pair weights are formed pattern-major, one contiguous row slice per pattern i, in one array reused by every
    chunk. (Row-major, in a fresh array per chunk, their strided products and page faults took longer than the
    product itself: PMLB adult standardised, n = 36631, d = 15, P = 100, one thread, 2.5 s → 1.45 s, of which the
    product is 1.1 s.)
    """
    n, d = X.shape
    P = D.shape[1]
    iu, ju = torch.triu_indices(P, P, device=X.device)
    au, bu = torch.triu_indices(d, d, device=X.device)
    npair = iu.numel()
    acc = X.new_zeros((npair, au.numel()))
    start = [0]
    for i in range(P):  # pairs (i, j ≥ i) are rows start[i] … start[i] + P − i − 1 (triu_indices' order)
        start.append(start[-1] + P - i)
    c = _pattern_gram_rows(n, P, chunk)
    W = X.new_empty((npair, c))  # λ d_i d_j per pattern pair (rows) and sample (columns) of a chunk
    XXc = X.new_empty((c, au.numel()))
    for r0 in range(0, n, c):
        r1 = min(n, r0 + c)
        Wc, XXr = W[:, :r1 - r0], XXc[:r1 - r0]
        Dt = D[r0:r1].T.to(X.dtype).contiguous()  # (P, rows)
        Dl = Dt * lam[None, r0:r1]
        for i in range(P):
            torch.mul(Dt[i:], Dl[i:i + 1], out=Wc[start[i]:start[i + 1]])
        _packed_outer(X[r0:r1], out=XXr)
        acc.addmm_(Wc, XXr)
    B = X.new_empty((npair, d, d))
    B[:, au, bu] = acc
    B[:, bu, au] = acc
    K = X.new_empty((P, d, P, d))
    K[iu, :, ju, :] = B
    K[ju, :, iu, :] = B.transpose(1, 2)
    return K.view(P * d, P * d)


# entries of the rows' packed outer products kept for the interior-point methods (:func:`_outer_rows`: 800 MB in
# float64), and of one row chunk of them where they are not kept (:func:`_weighted_grams`)
OUTER_ROWS_LIMIT = 100_000_000
OUTER_ROWS_CHUNK = 20_000_000


def _packed_outer(X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """The upper triangles (i ≤ j, row-major as ``torch.triu_indices``) of the rows' outer products x_r x_rᵀ,
    (n, d(d+1)/2): the symmetric half of Gᵀ diag(w) G, which :func:`_weighted_grams` forms as a product with
    them (half the flops and memory of all d² entries)."""
    d = X.shape[1]
    i, j = torch.triu_indices(d, d, device=X.device)
    return torch.mul(X[:, i], X[:, j], out=out)


def _outer_rows(X: torch.Tensor, limit: int = OUTER_ROWS_LIMIT) -> torch.Tensor | None:
    """The rows' packed outer products (:func:`_packed_outer`), (n, d(d+1)/2), formed in row chunks (each
    gathers two arrays of its size), or None when they have more than ``limit`` entries."""
    n, d = X.shape
    T = d * (d + 1) // 2
    if n * T > limit:
        return None
    XX = X.new_empty((n, T))
    step = max(1, OUTER_ROWS_CHUNK // T)
    for r in range(0, n, step):
        _packed_outer(X[r:r + step], out=XX[r:r + step])
    return XX


def _weighted_grams(X: torch.Tensor, XX: torch.Tensor | None, Wt: torch.Tensor,
                    chunk: int = OUTER_ROWS_CHUNK) -> torch.Tensor:
    """Xᵀ diag(w_b) X for every row w_b of Wt (B, n): (B, d, d). Their upper triangles by one (B, n)·(n, d(d+1)/2)
    product with the packed outer products ``XX`` (:func:`_outer_rows`); without them the same product in row
    chunks whose outer products have at most ``chunk`` entries; then mirrored. (A batched (B, d, n)·(n, d)
    product instead would build a B·d·n temporary: 150 GiB at n = 10⁶, d = 101, B = 200.)"""
    n, d = X.shape
    T = d * (d + 1) // 2
    if XX is not None:
        packed = Wt @ XX
    else:
        step = max(1, chunk // T)
        packed = Wt.new_zeros((Wt.shape[0], T))
        for r in range(0, n, step):
            packed.addmm_(Wt[:, r:r + step], _packed_outer(X[r:r + step]))
    i, j = torch.triu_indices(d, d, device=X.device)
    out = Wt.new_empty((Wt.shape[0], d, d))
    out[:, i, j] = packed
    out[:, j, i] = packed
    return out


def _norm_barrier_hessian(xh: torch.Tensor, c: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """c_b (I − ((w_b − 1)/w_b) x̂_b x̂_bᵀ) per block, (nb, d, d), for unit directions x̂ (nb, d), c > 0 (nb,) and
    w ≥ 1 (nb,): the Hessian of the barrier-smoothed group norm (:func:`_hinge_barrier`: c = α/t) and the norm
    cones' block of the interior-point systems (:class:`_NormCones`: c = η⁻², x̂ = q̂, w = ω).

    Built in place (a diagonal, then one batched rank-one update): at large d every (nb, d, d) temporary is
    a full pass over memory (the plain expression's five cost 0.6 s per iteration at nb = 200, d = 300).
    Callers add their Gram terms to the result in place."""
    nb, d = xh.shape
    S = torch.diag_embed(c[:, None].expand(nb, d))
    xr = xh * torch.sqrt(c * (w - 1.0) / w)[:, None]
    return S.baddbmm_(xr[:, :, None], xr[:, None, :], alpha=-1.0)


def _max_step(v: torch.Tensor, dv: torch.Tensor, out: torch.Tensor | None = None) -> float:
    """Largest step in [0, 1] with v + step·dv ≥ 0, for v > 0: 1 / max(1, max_j (−dv_j / v_j)).

    (One quotient array, in ``out`` if given, not the five temporaries of a masked ratio v/(−dv): on the
    interior-point method's (2P, n) slacks and multipliers at n = 36631 that was 0.18 s a call, most of it page
    faults of fresh arrays.)"""
    worst = float(torch.amax(torch.div(dv, v, out=out).neg_()))
    if math.isnan(worst):  # a zero v (not an interior point): the masked ratio
        ratio = torch.where(dv < 0, v / (-dv).clamp(min=1e-300), torch.ones_like(v))
        return min(1.0, float(ratio.min()))
    return 1.0 if worst <= 1.0 else 1.0 / worst


class _Scratch:
    """Reusable arrays of one shape (the interior-point method's (nb, n) slacks, multipliers, directions and
    temporaries) for the length of one run.

    :meth:`take` hands out an array that nothing else refers to (no other Python reference, no view of its
    storage), else a new one: the arrays kept by the caller (the best iterate's s and μ) stay untouched, and
    the number held is the largest number alive at once. Why: a fresh (nb, n) float64 array at n = 36631
    (59 MB) is mapped anew by the C allocator and costs 25 ms of page faults on the 2-core machine against 6.7 ms
    for an addition into an existing one; the interior-point iteration formed about twenty.
    """

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> None:
        self.shape, self.dtype, self.device = shape, dtype, device
        # arrays[0] is never handed out: referred to by the list alone, it gives the reference counts that a free
        # array shows to take() (counted, not assumed: the interpreter may borrow references, Python 3.14 does)
        self.arrays: list[torch.Tensor] = [torch.empty(1, dtype=dtype, device=device)]

    # torch's count of a storage's users (a private function: without it views go uncounted)
    _use_count = staticmethod(getattr(torch._C, "_storage_Use_Count", lambda cdata: 0))

    @classmethod
    def _counts(cls, a: torch.Tensor) -> tuple[int, int]:
        """(Python references, users of the storage: views add theirs)."""
        return sys.getrefcount(a), cls._use_count(a.untyped_storage()._cdata)

    def take(self) -> torch.Tensor:
        """An array of the shape whose values are to be overwritten."""
        free = None
        for a in self.arrays:
            counts = self._counts(a)
            if free is None:
                free = counts
            elif counts[0] <= free[0] and counts[1] <= free[1]:
                return a
        a = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        self.arrays.append(a)
        return a


def _loss_dual_repair(col: _Column, lam: torch.Tensor, R: torch.Tensor, near: float = 1e-4) -> torch.Tensor:
    """Λ − δ: the least-norm change of the loss dual Λ (n,) that brings the residual norm ‖r_b‖ of every block
    above α(1 − ``near``) to at most α, to first order, for the residuals R = C(Λ) − Gᵀμ (nb, d) of fixed μ.

    Why: at an exact solution, a block in use has r_b = −α x̂_b with G_bᵀμ_b the projection of c_b on the cone
    {G_bᵀμ : μ ≥ 0} (Moreau: x̂_b is in the polar of that cone and orthogonal to G_bᵀμ_b), so no μ brings ‖r_b‖
    below α; a Λ accurate to ε leaves it at α(1 + O(ε)), and the bound's scaling s = α/max_b‖r_b‖ then costs that
    relative O(ε). On chess standardised (600 rows, 152 blocks near α) the interior-point iterate's Λ had
    max ‖r_b‖/α = 1 + 1.5e-6 and its certificate stalled at a relative gap of 1.1e-6; the repair moves Λ by
    ‖δ‖ = 1.8e-9, to 1 + 1e-10, and the gap reads 1.7e-7. The constraints are linear in δ: r̂_bᵀ c_b(δ) =
    ‖r_b‖ − min(‖r_b‖, α(1 − 1e-12)), c_b(δ) = s_b Xᵀ D_i δ, i.e. A δ = e with rows a_b = Dm_b ⊙ (X r̂_b) (k, n);
    δ = Aᵀ(AAᵀ)⁻¹e (a rounding-level ridge: two blocks of one pattern give dependent rows). Any Λ' gives a valid
    bound; the caller keeps the better of the two."""
    res = torch.linalg.vector_norm(R, dim=1)
    idx = torch.nonzero(res > col.alpha * (1.0 - near))[:, 0]
    rh = R[idx] / res[idx, None]
    A = col.Dm[idx] * (rh @ col.X.T)
    e = res[idx] - torch.clamp(res[idx], max=col.alpha * (1.0 - 1e-12))
    AA = A @ A.T
    AA.diagonal().add_(1e-14 * float(AA.diagonal().max()) + torch.finfo(AA.dtype).tiny)
    return lam - A.T @ torch.linalg.solve(AA, e)


def _relu_dual_bound(col: _Column, lam: torch.Tensor, mu: torch.Tensor, steps: int = 0,
                     Lx: float | None = None) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The certificate's lower bound for one column of (C) at loss-dual candidate Λ (n,) and cone
    multipliers μ (nb, n): Λ projected on dom L*, r_b = ‖c_b − G_bᵀμ_b‖ (c_b = s_b Xᵀ D_i Λ), then
    −L*(s Λ) with s = min(1, α / max_b r_b) — exactly :func:`certificates.dual_value_relu`. Before that,
    ``steps`` accelerated projected-gradient steps on ½‖c_b − G_bᵀμ_b‖² (step 1/``Lx``, Lx = ‖X‖₂²; those of
    :func:`_nnls`, each block's best iterate kept where it lowers r_b) for the blocks with r_b > α; after it,
    where some r_b > α, the same bound at the repaired Λ of :func:`_loss_dual_repair`, if higher. Returns
    (bound, the μ used, the Λ used)."""
    y = col.y[:, None]
    lam = losses.project_dual(col.loss, lam[:, None], y)[:, 0]
    c = col.block_grad(lam)
    mu = torch.clamp(mu, min=0.0)
    Gmu = torch.mul(col.Sg, mu) @ col.X  # G_bᵀμ_b per block (nb, d)
    res = torch.linalg.vector_norm(c - Gmu, dim=1)
    bad = torch.nonzero(res > col.alpha)[:, 0]
    if steps > 0 and bad.numel() > 0:
        # (the batched projected gradient of :func:`_nnls`, from μ_b: it keeps the best iterate of each block)
        Mb, rb = _nnls(col, bad.tolist(), c[bad], method="pg", max_iter=steps, mu0=mu[bad], Lx=Lx)
        keep = rb < res[bad]
        if bool(keep.any()):
            better = bad[keep]
            mu, Gmu, res = mu.clone(), Gmu.clone(), res.clone()
            mu[better], res[better] = Mb[keep], rb[keep]
            Gmu[better] = torch.mul(col.Sg[better], mu[better]) @ col.X

    def scaled_bound(lam: torch.Tensor, res: torch.Tensor) -> tuple[float, float]:
        s = min(1.0, col.alpha / max(float(res.max()), 1e-300))
        return -float(losses.conjugate(col.loss, (s * lam)[:, None], y).sum()), s

    bound, s = scaled_bound(lam, res)
    if s < 1.0:
        lam2 = losses.project_dual(col.loss, _loss_dual_repair(col, lam, c - Gmu)[:, None], y)[:, 0]
        bound2, _ = scaled_bound(lam2, torch.linalg.vector_norm(col.block_grad(lam2) - Gmu, dim=1))
        if bound2 > bound:
            return bound2, mu, lam2
    return bound, mu, lam


# scale of the interior-point method's starting multipliers (relative to the least-norm solution of Gᵀμ = r).
# Measured by benchmarks/bench_ipm_start.py (11 PMLB tables, 400 rows, raw and standardised, 50 gates): 1 → 706
# iterations in all and 2 runs without a certificate, 1e-1 → 627 and 2, 1e-2 → 564 and 1, 1e-3 → 576 and 1;
# pendigits raw (600 rows, 10 classes) diverged at 1 on one class and converges at 1e-1 .. 1e-3.
IPM_MU_START = 1e-2

# Gondzio centrality correctors per interior-point iteration: IPM_CORRECTORS for the squared loss on programs whose
# iteration costs at least IPM_CORRECTOR_FLOPS (ipm_cost), where a corrector's solve is cheap next to the factorization,
# one on the others and for the logistic loss. One thread, (C) on Fashion-MNIST PCA-50, P = 100
# (benchmarks/bench_cvxpy.py's programs), none → 2: n = 2000 33 → 26 iterations, 24.2 → 20.3 s; n = 1000 29 → 25
# iterations, 7.8 s either way (measured with the smoothed norm, before the norm cones). The one corrector on cheap
# programs is for the norm cones' centrality (:meth:`_NormCones.centred`): without it magic raw (600 × 11, P = 88) ended
# uncertified after 80 iterations (steps of 0.01–0.1 cut by off-centre cones), with one it certifies in 3.9 s, with two
# in 13.7 s; the squared-loss tables of bench_defaults (4 suites, 42 fits, one thread) take 239 s with one and 247 s
# with two, all else equal; magic raw with the logistic loss, none → one: 18.1 s uncertified → 2.75 s. Two only for the
# squared loss: with the logistic loss the dual residual does not contract (its linearisation error), the certificate
# rests on the multipliers' refinement, and with two correctors (and the smoothed norm) it stalled at 1e-3 on 150
# breast-cancer rows (1e-7 without) while the primal converged.
IPM_CORRECTORS = 2
IPM_CORRECTOR_FLOPS = 1e9


class _NormCones:
    """The group norm of :func:`_ipm` as second-order cones: α Σ_b t_b with (t_b, x_b) ∈ K (‖x_b‖ ≤ t_b), whose
    dual pairs are (α, z_b) ∈ K (‖z_b‖ ≤ α; the t-equation fixes their first entry at α). Holds the
    Nesterov–Todd scaling W of the pairs u = (t, x), v = (α, z) (:class:`convexnn.ops.soc.NTScaling`) and the parts of
    W⁻² that eliminating dt and dz leaves: λ̂ ∘ (W dv + W⁻¹ du) = r with dλ = 0 gives, for a = Arw(λ̂)⁻¹ r and
    g = W⁻¹ a,  dv = g − W⁻² du,  dt = (g₀ − q₀ᵀdx)/q₀₀,  and adds to the x-system the block
    Q₁₁ − q₀q₀ᵀ/q₀₀ = η⁻²(I − (1 − 1/ω) q̂q̂ᵀ) (:meth:`block`) and to its right-hand side g₁ − q₀ g₀/q₀₀."""

    def __init__(self, t: torch.Tensor, x: torch.Tensor, z: torch.Tensor, alpha: float) -> None:
        self.alpha = torch.full_like(t, alpha)
        self.nt = soc.NTScaling((t, x), (self.alpha, z))
        self.q00, self.q0, self.c, self.om, self.qh = self.nt.inv_square_parts()

    def block(self) -> torch.Tensor:
        """The cones' d×d block of the Newton matrix, (nb, d, d)."""
        return _norm_barrier_hessian(self.qh, self.c, self.om)

    @staticmethod
    def central(x: torch.Tensor, alpha: float, m: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The interior methods' start of the cones: the central pair of each x_b for the mean complementarity m,
        t² − ‖x‖² = m t/α and z = −αx/t (then (t, x) ∘ (α, z) = m e). Returns (t (nb,), z (nb, d))."""
        xr = torch.linalg.vector_norm(x, dim=1)
        t = 0.5 * (m / alpha + torch.sqrt((m / alpha) ** 2 + 4.0 * xr * xr))
        return t, -alpha * x / t[:, None]

    @staticmethod
    def products(t: torch.Tensor, x: torch.Tensor, z: torch.Tensor, alpha: float) -> torch.Tensor:
        """Each cone's complementarity (t_b, x_b)ᵀ(α, z_b) = α t_b + x_bᵀz_b, (nb,)."""
        return alpha * t + (x * z).sum(1)

    def target(self, tgt: float, aff: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The cones' complementarity target r = tgt·e − λ̂∘λ̂ (the predictor's with tgt = 0), less Mehrotra's
        second-order term (W⁻¹du) ∘ (W dv) of the predictor's direction ``aff`` = (dt, dx, dz) when given."""
        l2 = soc.jordan(self.nt.lam, self.nt.lam)
        r = (tgt - l2[0], -l2[1])
        if aff is None:
            return r
        dt, dx, dz = aff
        so = soc.jordan(self.nt.apply_inv((dt, dx)), self.nt.apply((torch.zeros_like(dt), dz)))
        return r[0] - so[0], r[1] - so[1]

    def steps(self, t: torch.Tensor, x: torch.Tensor, z: torch.Tensor, dt: torch.Tensor, dx: torch.Tensor,
              dz: torch.Tensor) -> tuple[float, float]:
        """The largest steps that keep (t, x) ∈ K and (α, z) ∈ K (inf where any step does)."""
        return (float(soc.max_step((t, x), (dt, dx)).min()),
                float(soc.max_step((self.alpha, z), (torch.zeros_like(t), dz)).min()))

    def rhs(self, r: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, tuple[tuple, torch.Tensor]]:
        """For the complementarity target r: the x-system's extra right-hand side g₁ − q₀ g₀/q₀₀ (nb, d), and
        (a, g₀) for :meth:`back`."""
        a = soc.arrow_solve(self.nt.lam, r)
        g = self.nt.apply_inv(a)
        return g[1] - self.q0 * (g[0] / self.q00)[:, None], (a, g[0])

    def centred(self, r: tuple[torch.Tensor, torch.Tensor], step: tuple[torch.Tensor, ...], tp: float, td: float,
                tgt: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Gondzio's centrality correction of the cones' target r for the direction ``step`` = (dx, ·, ·, dt, dz):
        the scaled product q = (λ̂ + tp W⁻¹du) ∘ (λ̂ + td W dv) of the trial steps tp, td has the eigenvalues
        q₀ ± ‖q₁‖ with the frames ½(1, ±q̂₁); each moves into [0.1, 10]·``tgt`` (by at most 10·tgt downwards), and
        r gains the change, δ₊ ½(1, q̂₁) + δ₋ ½(1, −q̂₁) (the orthant's correction, eigenvalue by eigenvalue).
        Without it the cones drifted off the central path where the orthant did not: magic raw (600 rows, 11
        columns), both a block's x near ‖x‖ = t and its z near ‖z‖ = α, steps of 0.01–0.1 and no certificate in
        80 iterations; with it, 4.6 s to 2e-8."""
        l0, l1 = self.nt.lam
        pu = self.nt.apply_inv((step[3], step[0]))
        pv = self.nt.apply((torch.zeros_like(step[3]), step[4]))
        q0, q1 = soc.jordan((l0 + tp * pu[0], l1 + tp * pu[1]), (l0 + td * pv[0], l1 + td * pv[1]))
        nq = torch.linalg.vector_norm(q1, dim=1)
        qh = q1 / nq.clamp(min=1e-300)[:, None]

        def move(e: torch.Tensor) -> torch.Tensor:
            return torch.clamp(torch.clamp(e, min=0.1 * tgt, max=10.0 * tgt) - e, min=-10.0 * tgt)

        dp, dm = move(q0 + nq), move(q0 - nq)
        return r[0] + 0.5 * (dp + dm), r[1] + (0.5 * (dp - dm))[:, None] * qh

    def back(self, sol: tuple[tuple, torch.Tensor], dx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dt (nb,), dz (nb, d)) from dx and :meth:`rhs`'s (a, g₀): dt = (g₀ − q₀ᵀdx)/q₀₀, dv = W⁻¹(a − W⁻¹du)."""
        a, g0 = sol
        dt = (g0 - (self.q0 * dx).sum(1)) / self.q00
        wu = self.nt.apply_inv((dt, dx))
        return dt, self.nt.apply_inv((a[0] - wu[0], a[1] - wu[1]))[1]


def _ipm_direction(system: _IPMSystem, col: _Column, rd: torch.Tensor, rp: torch.Tensor, s: torch.Tensor,
                   mu: torch.Tensor, F2: torch.Tensor, cones: _NormCones, r: tuple[torch.Tensor, torch.Tensor],
                   refine: int, scratch: _Scratch) -> tuple[torch.Tensor, ...]:
    """The interior-point Newton direction (dx (nb, d), ds, dμ (nb, n), dt (nb,), dz (nb, d)) of
    H dx − Gᵀdμ − dz = −rd,  G dx − ds = −rp,  μ ds + s dμ = −F2,  λ̂ ∘ (W dv + W⁻¹du) = r  (u = (t, x),
    v = (α, z), dλ = 0; see :class:`_NormCones`), with the factored H of ``system`` (``refine`` steps of
    iterative refinement), checked (:meth:`_IPMSystem.solve_checked`: the whole matrix where the factored forms'
    direction is inaccurate; squared loss on raw features, bench_defaults: adult's fit went from relative gap 0.57 to
    2.1e-7, 537_houses' from 1.0 to 2.2e-7); ds and dμ in arrays of ``scratch``."""
    extra, sol = cones.rhs(r)
    # in place, in two arrays of the scratch: at n = 36631 a new (nb, n) array costs more in page faults than
    # its arithmetic
    g = torch.addcmul(F2, mu, rp, out=scratch.take()).div_(s).mul_(col.Sg)  # Gᵀ applied below: Sg ⊙ (F2 + μ ⊙ rp)/s
    dx, _ = system.solve_checked(extra - rd - g @ col.X, refine=refine)
    ds = torch.matmul(dx, col.X.T, out=g).mul_(col.Sg).add_(rp)  # G dx + rp, in g's array
    dt, dz = cones.back(sol, dx)
    return dx, ds, torch.addcmul(F2, mu, ds, out=scratch.take()).div_(s).neg_(), dt, dz


def _ipm_steps(s: torch.Tensor, mu: torch.Tensor, t: torch.Tensor, x: torch.Tensor, z: torch.Tensor,
               cones: _NormCones, d: tuple[torch.Tensor, ...], scratch: _Scratch) -> tuple[float, float]:
    """The largest primal and dual steps ≤ 1 along d = (dx, ds, dμ, dt, dz) that keep s, μ ≥ 0, (t, x) ∈ K and
    (α, z) ∈ K (the quotients in an array of ``scratch``)."""
    dx, ds, dmu, dt, dz = d
    kp, kd = cones.steps(t, x, z, dt, dx, dz)
    return min(_max_step(s, ds, scratch.take()), kp), min(_max_step(mu, dmu, scratch.take()), kd)


def _report(progress: Callable[[dict], None] | None, column: int, iteration: int, cert: tuple[float, float],
            gap: float) -> None:
    """An interior-point method's progress record: the certificate (primal, dual) and relative gap it would return
    if it stopped here (its best iterate's)."""
    if progress is not None:
        progress({"stage": "ipm", "column": column, "ipm_iteration": iteration, "primal": cert[0],
                  "dual": cert[1], "gap": cert[0] - cert[1], "relative_gap": gap})


def _gate_start(col: _Column, beta: float) -> torch.Tensor:
    """The interior methods' starting blocks (nb, d): each block's gate (strictly inside its cone), scaled to norm
    ``beta``·√d / mean‖x_r‖ (predictions of order ``beta``)."""
    Hg = col.pb.H[:, col.pat].T
    x = Hg / torch.linalg.vector_norm(Hg, dim=1, keepdim=True).clamp(min=1e-300)
    return x * (beta * math.sqrt(col.d) / max(float(col.xn.mean()), 1e-300))


def _ipm(col: _Column, info: PolishInfo, gap_tol: float = 1e-5, max_iter: int = 80,
         deadline: _Deadline | None = None, beta: float = 0.3, split_steps: bool = False, refine_steps: int = 20,
         eta_step: float = 0.99, progress: Callable[[dict], None] | None = None, column: int = 0,
         correctors: int | None = None, rounded: Callable[..., float] | None = None,
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, torch.Tensor | None, torch.Tensor,
                    torch.Tensor, torch.Tensor]:
    """Primal-dual interior point (Mehrotra predictor-corrector) for (C) on one column.

    Variables x (nb, d), slacks s ≈ G x (nb, n) and multipliers μ ≥ 0 (nb, n), infeasible start. The group
    norm is a second-order cone per block, min α Σ_b t_b with ‖x_b‖ ≤ t_b, with primal-dual pairs (t_b, x_b),
    (α, z_b) and Nesterov–Todd scaling (:class:`_NormCones`); the mean complementarity
    m̄ = (μᵀs + Σ_b (α t_b + x_bᵀz_b))/(nb·n + nb) counts a cone once. (The norm was first smoothed by its barrier
    at parameter m̄, a primal treatment: t and z functions of x. On 200 raw-pixel Fashion-MNIST images (7/9,
    41 patterns, n = d after the row-space reduction) its iterates fitted the data ever closer while the norms grew
    without bound, objective 0.038 → 1.6 in 14 iterations against an optimum of 0.00305 (CVXPY + Clarabel), and
    the fit ended uncertified after 60 s.) Start: the gates (strictly inside their cones) scaled by
    ``beta``·√d/mean‖x_r‖, Mehrotra's least-squares multipliers shifted into the positive orthant, each cone at
    the central pair of its x for the orthant's mean complementarity m₀ (t² − ‖x‖² = m₀t/α, z = −αx/t).
    ``correctors``: Gondzio centrality correctors per iteration after Mehrotra's, on the orthant's products and
    the cones' eigenvalues (:meth:`_NormCones.centred`; each one more solve with the same factor; None:
    :data:`IPM_CORRECTORS` for the squared loss when an iteration costs at least :data:`IPM_CORRECTOR_FLOPS`,
    else one). ``split_steps``: primal (x, s, t) and dual (μ, z) step lengths apart (off
    by default: the dual residual c(x) − z − Gᵀμ moves with both and then contracts with neither). Stops at
    relative certificate gap ≤ ``gap_tol``, after three iterations without a better certificate, or after
    ``max_iter``. Returns (x, μ, s, relative gap, Λ (n,), μ_cert) of the best certified iterate: its certificate
    is that of ``make_feasible(x)`` with the dual candidates Λ and μ_cert (μ improved by ``refine_steps``
    projected-gradient steps on the blocks whose dual constraint it violates, once the gap is < 1e-3, and Λ
    repaired where the blocks in use exceed α; see :func:`_relu_dual_bound`), then (x, μ) of the certified
    iterate of lowest objective (the best certified one if none). The two differ when the bound stalls while the primal
    still improves (its loss-dual candidate ∇L(ŷ) is only as accurate as the square root of the primal's, and on
    ill-conditioned data the dual residual grows late): the later point is the better guess of the active set.
    ``progress`` receives, after each certified iterate, the certificate of the best so far (of this column's program,
    ``column``). ``rounded(x, Λ, μ)``: the certificate of an iterate once rounded to the caller's precision
    (:func:`_rounded_column_certificate`); for the iterates that reach ``gap_tol`` it replaces the float64 one where its
    gap is larger, in the choice of the best, the stopping rule and ``progress`` (closer to the optimum, an iterate
    comes closer to the faces, and rounding it can cost more: chess standardised in float32, gap 1.5e-6 → 2.5e-3
    rounded, 9e-6 → 1.2e-5).
    """
    X = col.X
    n, d, nb = col.n, col.d, col.nb
    alpha, loss, y = col.alpha, col.loss, col.y
    dt = X.dtype
    m = nb * n
    if correctors is None:
        costly = ipm_cost(n, d, col.P, col.relu, loss == "squared")[0] >= IPM_CORRECTOR_FLOPS
        correctors = IPM_CORRECTORS if costly and loss == "squared" else 1
    XX = _outer_rows(X)  # (n, d(d+1)/2) rows x_r x_rᵀ, packed: Gᵀ diag(w) G from w @ XX per block
    workspace: dict = {}  # the Newton systems' array, reused from iteration to iteration (_IPMSystem)
    scratch = _Scratch((nb, n), dt, X.device)
    # --- starting point
    x = _gate_start(col, beta)
    s = torch.clamp(col.slack(x), min=1e-8 * beta * math.sqrt(d))
    r0 = col.block_grad(_loss_grad(loss, col.pred(x), y)) + alpha * x / torch.linalg.vector_norm(x, dim=1, keepdim=True)
    # least-norm μ with G_bᵀμ_b = r_b; XᵀX is singular when n < d or a column is constant (raw pixels), and a
    # tiny ridge keeps this starting point defined (it only has to be a reasonable start)
    XtX = X.T @ X
    XtX.diagonal().add_(1e-10 * float(XtX.diagonal().mean()) + torch.finfo(dt).tiny)
    # damped by IPM_MU_START: the least-norm μ (of both signs) shifted into the orthant dominates the
    # complementarity and starts far from the central path; on unscaled data the method then diverged
    mu = IPM_MU_START * col.Sg * (torch.linalg.solve(XtX, r0.T).T @ X.T)
    mu = mu + max(-1.5 * float(mu.min()), 0.0)
    sm = float((s * mu).sum())
    s = s + 0.5 * sm / max(float(mu.sum()), 1e-300)
    mu = mu + 0.5 * sm / max(float(s.sum()), 1e-300)
    # the norm cones at the central pair of each x_b for the orthant's mean complementarity
    t, z = _NormCones.central(x, alpha, float((mu * s).sum()) / m)
    best = (math.inf, x, mu, s, None, mu)
    best_cert = (math.inf, -math.inf)  # (primal, dual) of the best certified iterate
    lowest = (math.inf, x, mu)  # (primal, x, μ) of the certified iterate of lowest objective (the start if none)
    since_best = 0
    Lx = float(torch.linalg.matrix_norm(X, ord=2)) ** 2  # ‖G_b‖₂² = ‖X‖₂²

    def complementarity() -> float:
        """μᵀs + Σ_b (t_b, x_b)ᵀ(α, z_b)."""
        return float(torch.vdot(mu.flatten(), s.flatten())) + float(_NormCones.products(t, x, z, alpha).sum())

    def certify(x: torch.Tensor, mu: torch.Tensor, s: torch.Tensor) -> float:
        """Certify the iterate (x, μ, s) (valid whatever the iterate), keep it if it is the best or the lowest so
        far, report it; its relative gap."""
        nonlocal best, best_cert, lowest, since_best, t0
        _, _, pred, prim = col.repaired(x)
        # two loss-dual candidates: ∇L at the repaired point and at the iterate itself (whose dual
        # residual c − z − Gᵀμ → 0); late, projected-gradient steps on the μ of the violating blocks
        dual, lam, mu_c = -math.inf, None, mu
        for cand in (losses.grad(loss, pred, y[:, None])[:, 0], _loss_grad(loss, col.pred(x), y)):
            dv, mu_v, lam_v = _relu_dual_bound(col, cand, mu, refine_steps if best[0] < 1e-3 else 0, Lx)
            if dv > dual:
                dual, lam, mu_c = dv, lam_v, mu_v
        gap = (prim - dual) / max(abs(prim), 1e-300)
        cert = (float(prim), float(dual))
        if rounded is not None and gap <= gap_tol:
            r = rounded(x, lam, mu_c)  # as the caller will get it: rounded to its precision
            if r.relative_gap > gap:
                cert, gap = (r.primal, r.dual), r.relative_gap
        t0 = info.tick("ipm certificate", t0)
        if prim < lowest[0]:
            lowest = (float(prim), x, mu)
        if gap < best[0]:
            best = (gap, x, mu, s, lam, mu_c)
            best_cert = cert
            since_best = 0
        else:
            since_best += 1
        _report(progress, column, info.ipm_iterations, best_cert, best[0])
        return gap

    t0 = time.perf_counter()
    certified = x  # the last iterate certified (the start: nothing to certify)
    for _ in range(max_iter):
        if deadline is not None and deadline.passed():
            info.notes.append("ipm: time limit")
            if x is not certified:
                # stopped early, before the complementarity came down to where iterates are certified: the last
                # iterate is still the best point so far, and a loose certificate beats none (a column
                # returned at its start certifies a relative gap of about 1)
                certify(x, mu, s)
            break
        info.ipm_iterations += 1
        # (the (nb, n) arrays below are formed in the scratch's arrays or in place: at n = 36631 a fresh one costs
        # more in page faults than its arithmetic)
        a = col.pred(x)
        rp = col.slack(x, out=scratch.take()).sub_(s)  # G x − s
        mbar = complementarity() / (m + nb)
        c = col.block_grad(_loss_grad(loss, a, y))
        cones = _NormCones(t, x, z, alpha)
        S = cones.block()
        S += _weighted_grams(X, XX, torch.div(mu, s, out=scratch.take()))  # + Gᵀ diag(μ/s) G per block
        system = _IPMSystem(col, S, _loss_hess(loss, a, y), workspace, constant_lam=loss == "squared")
        if not system.ok:
            info.notes.append("ipm: Newton system not positive definite")
            break
        t0 = info.tick("ipm factor", t0)
        rd = c - z - torch.mul(col.Sg, mu, out=scratch.take()) @ X  # dual residual
        # predictor (affine; no iterative refinement: it only sets σ and the second-order term), then corrector
        aff = _ipm_direction(system, col, rd, rp, s, mu, torch.mul(s, mu, out=scratch.take()), cones,
                             cones.target(0.0), refine=0, scratch=scratch)
        ap, ad = _ipm_steps(s, mu, t, x, z, cones, aff, scratch)
        dxa, dsa, dmua, dta, dza = aff
        maff = (float(torch.vdot(torch.add(s, dsa, alpha=ap, out=scratch.take()).flatten(),
                                 torch.add(mu, dmua, alpha=ad, out=scratch.take()).flatten()))
                + float(_NormCones.products(t + ap * dta, x + ap * dxa, z + ad * dza, alpha).sum())) / (m + nb)
        sigma = min(1.0, (maff / max(mbar, 1e-300)) ** 3)
        F2 = torch.mul(dsa, dmua, out=scratch.take()).addcmul_(s, mu).sub_(sigma * mbar)
        del aff, dsa, dmua  # (their arrays go back before the next directions are formed)
        r = cones.target(sigma * mbar, (dta, dxa, dza))
        step = _ipm_direction(system, col, rd, rp, s, mu, F2, cones, r, refine=1, scratch=scratch)
        ap, ad = _ipm_steps(s, mu, t, x, z, cones, step, scratch)
        for _ in range(correctors):
            # Gondzio's centrality corrector: at the trial point of a longer step (1.5 α + 0.1), push the
            # complementarity products μ_j s_j, and the eigenvalues of the cones' scaled products, back into
            # [0.1, 10]·σμ̄ (large ones by at most 10·σμ̄); keep the corrected direction only while it lengthens the
            # shorter of the two steps
            tgt = sigma * mbar
            tp, td = min(1.0, 1.5 * ap + 0.1), min(1.0, 1.5 * ad + 0.1)
            v = torch.add(s, step[1], alpha=tp, out=scratch.take())
            v.mul_(torch.add(mu, step[2], alpha=td, out=scratch.take()))
            F2c = torch.clamp(v, min=0.1 * tgt, max=10.0 * tgt, out=scratch.take()).sub_(v)
            F2c.clamp_(min=-10.0 * tgt).neg_().add_(F2)
            del v
            rc = cones.centred(r, step, tp, td, tgt)
            stepc = _ipm_direction(system, col, rd, rp, s, mu, F2c, cones, rc, refine=1, scratch=scratch)
            apc, adc = _ipm_steps(s, mu, t, x, z, cones, stepc, scratch)
            if min(apc, adc) < 1.01 * min(ap, ad):
                break
            step, ap, ad, F2, r = stepc, apc, adc, F2c, rc
        dx, ds, dmu, dt, dz = step
        ap, ad = min(ap, 1.0), min(ad, 1.0)
        if split_steps:  # primal (x, s, t) and dual (μ, z) step lengths apart
            st, sd = eta_step * ap, eta_step * ad
        else:
            st = sd = eta_step * min(ap, ad)
        # into arrays of the scratch: those of the best certified iterate's s and μ are not handed out
        x, s, t = x + st * dx, torch.add(s, ds, alpha=st, out=scratch.take()), t + st * dt
        mu, z = torch.add(mu, dmu, alpha=sd, out=scratch.take()), z + sd * dz
        del step, ds, dmu
        t0 = info.tick("ipm solve", t0)
        if st < 1e-10:
            break
        # the complementarity (orthant and cones) is about the duality gap near the central path: while it exceeds
        # 1e-3 of the objective the certificate would not be of use (no stopping rule looks at it): not computed
        if complementarity() > 1e-3 * abs(_loss_value(loss, col.pred(x), y) + alpha * float(
                torch.linalg.vector_norm(x, dim=1).sum())):
            continue
        gap = certify(x, mu, s)
        certified = x
        # stagnation: late (rounding limits the Newton systems) or for good
        if gap <= gap_tol or (since_best >= 3 and best[0] < 1e-3) or since_best >= 15 or st < 1e-10:
            break
    info.ipm_gap = best[0] if info.ipm_gap == math.inf else max(info.ipm_gap, best[0])
    return best[1], best[2], best[3], best[0], best[4], best[5], lowest[1], lowest[2]


# ----------------------------------------------------------------------------------------------------
# the hinge loss: a barrier method, then Newton on the identified reduced problem (both kinds)

# the weight of the cone rows' log barrier in :func:`_hinge_barrier` (see its docstring)
HINGE_CONE_WEIGHT = 0.01


def _smooth_hinge(r: torch.Tensor, c: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The barrier-smoothed hinge min_ξ ξ − c log ξ − c log(ξ − r) (times 1/n outside) at r = 1 − y a.

    Returns (value, p, curvature): p = c/(ξ − r) ∈ (0, 1) is the derivative in r, and the curvature is the
    second derivative. All in cancellation-free form (c > 0)."""
    q = torch.sqrt(r * r + 4.0 * c * c)
    u = r + 2.0 * c
    xi = torch.where(u >= 0, 0.5 * (u + q), 2.0 * c * r / (u - q).clamp(max=-1e-300))
    v = 2.0 * c - r
    e = torch.where(v >= 0, 0.5 * (v + q), -2.0 * c * r / (v - q).clamp(max=-1e-300))  # ξ − r
    p = c / e
    qr = torch.where(r <= 0, q - r, 4.0 * c * c / (q + r))  # √(r² + 4c²) − r
    curv = c * qr / (2.0 * q * e * e)
    val = xi - c * torch.log(xi) - c * torch.log(e)
    return val, p, curv


# :func:`_hinge_barrier` stops when a centred point certifies this many times worse than its best point
HINGE_BARRIER_LOST = 1e3


def _hinge_barrier(col: _Column, info: PolishInfo, gap_tol: float = 1e-10, max_iter: int = 200,
                   deadline: _Deadline | None = None, beta: float = 0.3, shrink: float = 0.1, refine: int = 3,
                   cone_weight: float = HINGE_CONE_WEIGHT, finish=None, finish_from: float = 1e-4,
                   finish_tol: float = 1e-11, late_finish: float = 1e-2,
                   start: tuple[torch.Tensor, float] | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, float]:
    """Barrier (path-following) method for (C) or (G) with the hinge loss, on one column.

    For a barrier parameter τ it minimizes the self-concordant
        φ_τ(x) = (1/n) Σ_k ψ(1 − y_k a_k) + Σ_b [α t_b − τ log(t_b² − ‖x_b‖²)]_{t_b optimal} − τ Σ log(G x)
    (ψ the hinge's epigraph ξ ≥ 0, ξ ≥ 1 − y a with its log barrier, ξ eliminated in closed form; the cone
    term only for (C), weighted by ``cone_weight``: the duality gap on the central path is τ·(2n + 2nb +
    w·nb·n), and the nb·n cone rows would otherwise dominate it) by Newton's method with a backtracking line
    search (a full step once the Newton decrement is small), then shrinks τ by ``shrink``. Its Newton matrix
    has the structure of :class:`_IPMSystem`, solved by :meth:`_IPMSystem.solve_checked` (``refine`` steps of
    iterative refinement; the whole matrix where the factored forms' direction is inaccurate). The dual estimates
    are p = nτ/(ξ − r) (Λ = −p y/n) and μ = wτ/(G x); every outer iteration's point is certified
    (:func:`_hinge_gap`). Rounding stops the method at a relative gap of about 1e-5–1e-6 (the Newton
    matrices' condition grows like 1/τ²). Once the gap is ≤ ``finish_from`` each point is handed to
    ``finish(x, μ, u, τ) → (x', μ', u', gap')`` (the reduced Newton step), and the method stops when that
    certifies ≤ ``finish_tol``; it also stops at ``gap_tol``, after ``max_iter`` Newton steps, when centering
    fails (a Newton direction that does not descend counts as failed) or when a centred point certifies
    ``HINGE_BARRIER_LOST`` times worse than the best (then, for (C), if the best gap is ≤ ``late_finish``,
    ``finish`` is tried from the best point; for (G) that late attempt was measured to gain nothing and is not
    made). ``start``: (x, τ) to begin from (x strictly inside its cones, as :func:`_hinge_ipm`'s points are)
    instead of the scaled gates at τ = 1/m.
    Returns the best certified (x, μ or None, u = p/n, τ).
    """
    X = col.X
    n = col.n
    alpha, y, relu = col.alpha, col.y, col.relu
    cw = cone_weight
    m = _hinge_barrier_size(col, cw)
    XX = _outer_rows(X) if relu else None
    workspace: dict = {}  # (see _ipm)
    x = _gate_start(col, beta)
    tau = 1.0 / m
    if start is not None:
        x, tau = start

    def parts(x: torch.Tensor, tau: float, need_hess: bool = True):
        XT = x @ X.T
        a = (col.Dm * XT).sum(0)
        val, p, curv = _smooth_hinge(1.0 - y * a, n * tau)
        f = float(val.sum()) / n
        a_s = alpha / tau
        r2 = (x * x).sum(1)
        w = torch.sqrt(1.0 + a_s * a_s * r2)
        tb = (1.0 + w) / a_s
        f += float((alpha * tb - tau * torch.log(2.0 * (1.0 + w) / (a_s * a_s))).sum())
        g = col.block_grad(-y * p / n) + alpha * x / tb[:, None]
        s = None
        if relu:
            s = col.Sg * XT
            if bool((s <= 0).any()):
                return math.inf, None, None, None, None
            f -= tau * cw * float(torch.log(s).sum())
            g = g - tau * cw * (col.Sg / s) @ X
        if not need_hess:
            return f, g, p, s, None
        xh = x / torch.sqrt(r2).clamp(min=1e-300)[:, None]
        S = _norm_barrier_hessian(xh, alpha / tb, w)
        if relu:
            S += tau * cw * _weighted_grams(X, XX, 1.0 / (s * s))
        return f, g, p, s, _IPMSystem(col, S, curv / n, workspace)

    best = (math.inf, x, None, None, tau)
    newton = 0
    t0 = time.perf_counter()
    while newton < max_iter:
        if deadline is not None and deadline.passed():
            info.notes.append("hinge barrier: time limit")
            break
        # ---- centering: Newton's method on φ_τ
        centred = False
        # the first τ may take the whole budget: from the gates, on unscaled data, the damped Newton phase
        # (decrement ≫ 1, φ still falling) can need more than 50 steps (wine raw: about 60)
        for _ in range(50 if best[3] is not None else max_iter):
            if newton >= max_iter or (deadline is not None and deadline.passed()):
                break  # (a centering can take 50 steps: checked at each, it ran 1.5 s past max_time on vehicle)
            newton += 1
            info.ipm_iterations += 1
            f, g, p, s, system = parts(x, tau)
            if system is None or not system.ok:
                info.notes.append("hinge barrier: Newton system not positive definite")
                break
            dx, _ = system.solve_checked(-g, refine=refine)
            lam2 = float(-(g * dx).sum()) / tau  # squared Newton decrement of φ_τ/τ
            t0 = info.tick("ipm factor+solve", t0)
            if not lam2 > -1e-10:
                # not a descent direction (NaN included): the Newton system is beyond its solve. Taken for the centre
                # before (lam2 < 1e-10), and τ shrank on from that point: magic raw at τ = 4e-9, lam2 = −613 after
                # three damped steps, its certificate 0.999 and every later one too
                info.notes.append("hinge barrier: the Newton direction is not a descent direction (rounding)")
                break
            if lam2 < 1e-10:
                centred = True
                break
            step = 1.0
            if relu:
                ds = col.Sg * (dx @ X.T)
                step = min(1.0, 0.99 * _max_step(s, ds)) if bool((ds < 0).any()) else 1.0
            if lam2 < 0.05 and step == 1.0:
                x = x + dx  # quadratic convergence region: no line search (rounding)
            else:
                gd = float((g * dx).sum())
                while step > 1e-12:
                    fn = parts(x + step * dx, tau, need_hess=False)[0]
                    if fn <= f + 1e-4 * step * gd:
                        break
                    step *= 0.5
                else:
                    break
                x = x + step * dx
            t0 = info.tick("ipm line search", t0)
            if lam2 < 1e-3:
                centred = True
                break
        if not centred and deadline is not None and deadline.passed():
            info.notes.append("hinge barrier: time limit")  # the best certified stage so far is returned
            break
        if not centred:
            info.notes.append("hinge barrier: centering failed")
        # ---- the certificate at this point, then the next τ
        _, _, p, s, _ = parts(x, tau, need_hess=False)
        if p is None:
            break
        mu = tau * cw / s if relu else None
        gap = _hinge_gap(col, x, mu, p / n)
        t0 = info.tick("ipm certificate", t0)
        # a centred point whose certificate is far worse than the best one: rounding has taken over (the
        # multipliers τ w/s of slacks at rounding level), and every later τ did as badly (spambase raw: 2.7e-4 and
        # then 0.998 at each of six smaller τ; iris raw 6.4e-6, then 0.19–0.99)
        lost = centred and best[0] <= late_finish and gap > HINGE_BARRIER_LOST * best[0]
        if lost:
            info.notes.append(f"hinge barrier: certificate lost to rounding at τ = {tau:.1e}")
        if gap < best[0]:
            best = (gap, x, mu, p / n, tau)
        if finish is not None and (lost or not centred) and finish_from < best[0] <= late_finish \
                and best[2] is not None:
            # centering failed before the gap reached finish_from (rounding, on ill-conditioned X): try the
            # reduced Newton step from the best point anyway; kept only if it certifies better. (C) only
            # (μ is None for (G)): on the gated default classifier with raw wine and raw iris, where it would
            # run (88 and 16 reduced Newton steps), it certified nothing better
            xf, muf, uf, gapf = finish(best[1], best[2], best[3], best[4])
            t0 = time.perf_counter()
            if gapf < best[0]:
                best = (gapf, xf, muf, uf, best[4])
        if finish is not None and gap <= finish_from and best[0] > gap_tol:  # (not when this point is certified)
            # Newton on the reduced problem identified at this point; done if it certifies to rounding
            xf, muf, uf, gapf = finish(x, mu, p / n, tau)
            t0 = time.perf_counter()
            if gapf < best[0]:
                best = (gapf, xf, muf, uf, tau)
            if gapf <= finish_tol:
                break
        if best[0] <= gap_tol or tau < 1e-18 or not centred or lost:
            break
        tau *= shrink
    if best[3] is None:  # not even one certified point: the multipliers of the current one
        _, _, p, s, _ = parts(x, tau, need_hess=False)
        if p is None:
            x, p, s = best[1], torch.zeros_like(y), torch.ones_like(col.Sg)
        return x, (tau * cw / s if relu else None), p / n, tau
    return best[1], best[2], best[3], best[4]


# the hinge loss: the interior-point method runs until it certifies HINGE_IPM_GAP, and the barrier method takes over
# from its point if it reached HINGE_IPM_HANDOFF. Optdigits standardised (600 rows, P = 100), one output column, one
# thread: the barrier method alone takes 142 Newton steps (30 s); 29 interior-point iterations (to a gap of 1.7e-4,
# its first certificate) and 39 barrier Newton steps take 15 s, to the same point (gap 2e-13). On other tables its
# steps stay short (0.1–0.3: adult, magic, tic-tac-toe standardised) and it certifies nothing below
# HINGE_IPM_HANDOFF in HINGE_IPM_MAX_ITER iterations; the barrier method then starts from the gates, as it did alone
# (yeast standardised, whose steps are as short, gets below it by iteration 50 and hands over). (Giving up at
# iteration 20 when the mean complementarity had not fallen by 1e3 saved those iterations but lost spambase, which
# certified by iteration 50: 10 of 11 standardised binary tables certified without that rule, 9 with it.)
HINGE_IPM_GAP = 1e-3
# the hinge interior-point method's starting cone multipliers: μ_j s_j at this fraction of the hinge pairs' mean
# complementarity. The nb·n cone pairs outnumber the 2n hinge pairs about P to 1, and at 1 their complementarity
# (73 × the objective on adult standardised) took the method's first 20 iterations to bring down. bench_defaults
# --loss hinge --threads 1 --max-time 120, 1 and 0.1 side by side: binary standardised 208 -> 178 s, multi-class
# standardised 340 -> 301 s, binary raw 159 -> 156 s; the same tables certified (24 of 32), optdigits at the time
# limit 1.7e-4 -> 1.4e-5, adult standardised now hands over to the barrier method (it fell back to the gates).
HINGE_IPM_MU_START = 0.1
HINGE_IPM_HANDOFF = 1e-2
HINGE_IPM_MAX_ITER = 50
# past HINGE_IPM_MAX_ITER iterations the interior-point method goes on, up to HINGE_IPM_LONG_ITER, while its
# complementarity (relative to the objective) falls fast enough to reach HINGE_IPM_GAP by then, at its rate over the
# last HINGE_IPM_RATE_SPAN iterations. On 6000 rows of PMLB adult standardised its steps stay at 0.1–0.4 and it
# reaches the handoff at iteration 80 and HINGE_IPM_GAP at 117 (projected at iteration 50: 126); stopped at 50 it
# certified nothing, the barrier method started from the gates, and the fit ended at a relative gap of 0.019 after
# 138 s, against 1.4e-14 after 127–145 s when it went on (one thread). On all 36631 rows the rate at iteration
# 50 does not project to 150, and it stops there (the fit's relative gap at max_time=300: 0.172).
HINGE_IPM_LONG_ITER = 150
HINGE_IPM_RATE_SPAN = 10
# the reduced hinge Newton finish solves its whole KKT system (an SVD least squares: ≈ 0.2 s at 800 rows, 13 s at
# 3300 on one thread) only up to this many rows, where the block-eliminated system's step fails. On the 11 binary
# tables of bench_defaults --loss hinge it succeeded after a failed eliminated step on 2 standardised (spambase 57 of
# 64 times, systems of ≤ 818 rows; tic-tac-toe 8 of 14) and 2 raw ones (spectf 28 of 32, breast cancer 22 of 26,
# ≤ 620 rows), never on the 10 standardised multi-class tables; on (G) spambase its 3300-row systems took 7 × 13 s
# and never succeeded
HINGE_WHOLE_KKT_MAX = 1500


def _hinge_barrier_size(col: _Column, cone_weight: float = HINGE_CONE_WEIGHT) -> float:
    """The barrier parameter's multiplier m in the duality gap τ·m of :func:`_hinge_barrier`'s central path."""
    return 2 * col.n + 2 * col.nb + (cone_weight * col.nb * col.n if col.relu else 0)


def _hinge_ipm_direction(system: _IPMSystem, col: _Column, v: tuple, res: tuple, om: torch.Tensor, F: tuple,
                         cones: _NormCones, r: tuple[torch.Tensor, torch.Tensor], refine: int, scratch: _Scratch,
                         ) -> tuple[tuple, float, float]:
    """The Newton direction of :func:`_hinge_ipm` (its formulas) at the variables v = (x, t, z, ξ, e, π₀, π₁, s, μ)
    with the residuals res = (r_d, r_ξ, r_e, r_p), the sample weights ω, the complementarity targets
    F = (F_c, F₀, F₁) and the norm cones' target r (:class:`_NormCones`). Returns ((dx, dt, dz, dξ, de, dπ₀, dπ₁,
    ds, dμ), the largest primal and dual steps ≤ 1 that keep (t, x) ∈ K, (ξ, e, s) ≥ 0 and (α, z) ∈ K,
    (π₀, π₁, μ) ≥ 0); ds, dμ in arrays of ``scratch`` (as in :func:`_ipm_direction`)."""
    x, t, z, xi, e, pi0, pi1, s, mu = v
    rd, rxi, re, rp = res
    Fc, F0, F1 = F
    y, X = col.y, col.X
    th0, th1 = pi0 / xi, pi1 / e
    g1 = -F1 / e + th1 * (rxi + F0 / xi + F1 / e) / (th0 + th1)
    extra, sol = cones.rhs(r)
    g = torch.addcmul(Fc, mu, rp, out=scratch.take()).div_(s).mul_(col.Sg)  # Gᵀ applied below: Sg ⊙ (F_c + μ r_p)/s
    dx = system.solve(extra + col.block_grad(y * (g1 - om * re)) - rd - g @ X, refine=refine)
    dt, dz = cones.back(sol, dx)
    q = y * col.pred(dx) + re
    dxi = (-rxi - F0 / xi - F1 / e - th1 * q) / (th0 + th1)
    de = dxi + q
    dpi0 = (-F0 - pi0 * dxi) / xi
    dpi1 = (-F1 - pi1 * de) / e
    ds = torch.matmul(dx, X.T, out=g).mul_(col.Sg).add_(rp)  # G dx + r_p, in g's array
    dmu = torch.addcmul(Fc, mu, ds, out=scratch.take()).div_(s).neg_()  # (−F_c − μ ds)/s
    kp, kd = cones.steps(t, x, z, dt, dx, dz)
    ap = min(_max_step(xi, dxi), _max_step(e, de), _max_step(s, ds, scratch.take()), kp)
    ad = min(_max_step(pi0, dpi0), _max_step(pi1, dpi1), _max_step(mu, dmu, scratch.take()), kd)
    return (dx, dt, dz, dxi, de, dpi0, dpi1, ds, dmu), ap, ad


def _hinge_ipm(col: _Column, info: PolishInfo, gap_tol: float = 1e-3, max_iter: int = 100,
               long_iter: int | None = None, deadline: _Deadline | None = None, beta: float = 0.3,
               eta_step: float = 0.99, progress: Callable[[dict], None] | None = None, column: int = 0,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, float]:
    """Primal-dual interior point (Mehrotra predictor-corrector) for (C) with the hinge loss, on one column: the
    fast start of :func:`_hinge_barrier`.

    The hinge in epigraph form, with slacks and multipliers for every inequality:
        min (1/n) Σ_k ξ_k + α Σ_b ‖x_b‖   s.t.  ξ ≥ 0 (π₀),  e = ξ − 1 + y ⊙ a(x) ≥ 0 (π₁),  s = G x ≥ 0 (μ)
    (infeasible start: the residuals r_ξ = 1/n − π₀ − π₁, r_e = ξ − 1 + y a − e and r_p = G x − s go to zero
    with the complementarity). The group norm is a second-order cone per block, as in :func:`_ipm` (primal-dual
    pairs (t_b, x_b), (α, z_b), Nesterov–Todd scaling, :class:`_NormCones`: its block C_b and right-hand side c_b).
    Eliminating (ξ, e, π₀, π₁) sample by sample leaves the Newton matrix of :class:`_IPMSystem` with the sample
    weights ω = θ₀θ₁/(θ₀ + θ₁), θ₀ = π₀/ξ, θ₁ = π₁/e:
        (C + GᵀΘG + FᵀΩF) dx = c − r_d − Gᵀ((F_c + μ r_p)/s) + Fᵀ(y ⊙ (g₁ − ω r_e)),
        g₁ = −F₁/e + θ₁ (r_ξ + F₀/ξ + F₁/e)/(θ₀ + θ₁)
    (F₀, F₁, F_c: the complementarity targets of the predictor and the corrector), then
        dξ = (−r_ξ − F₀/ξ − F₁/e − θ₁ q)/(θ₀ + θ₁),  de = dξ + q,  q = y ⊙ F dx + r_e,
        dπ₀ = (−F₀ − π₀ dξ)/ξ,  dπ₁ = (−F₁ − π₁ de)/e,
    one step length for all (split steps left the dual residual behind). The loss-dual candidate is
    u = π₁ ∈ [0, 1/n] (Λ = −u y). Stops at a certified relative gap ≤ ``gap_tol``, after ``max_iter``
    iterations, when the Newton matrix does not factor, or when the certificate stops improving (three
    iterations without a better one). With ``long_iter`` > ``max_iter`` it goes on past ``max_iter`` while its
    complementarity, relative to the objective, falls at a rate (over the last :data:`HINGE_IPM_RATE_SPAN`
    iterations) that brings it to ``gap_tol`` by iteration ``long_iter``.
    It is not an end game: with the norm smoothed by its barrier (before the norm cones), below a gap of about 1e-4 its
    dual residual stalled while m̄ collapsed, and the barrier method goes on from there (not measured again with the
    cones: the hinge suites of bench_defaults certify the same tables in the same time either way). (The same method
    without the cone rows was tried on (G), breast cancer, 150 rows, 8 gates: its steps shrank to 0.01–0.3 at m̄ ≈ 1e-6
    with the dual residual at 5e-4, and it certified nothing in 100 iterations; (G) keeps the barrier method alone.)
    Returns the best certified (x, μ, u, primal, dual); (start, μ, u, ∞, −∞) when nothing was certified.
    """
    X = col.X
    n, nb = col.n, col.nb
    alpha, y = col.alpha, col.y
    m = 2 * n + nb * n + nb  # the hinge pairs, the cone rows and the norm cones (once each)
    XX = _outer_rows(X)
    workspace: dict = {}  # (see _ipm)
    scratch = _Scratch((nb, n), X.dtype, X.device)  # the (nb, n) arrays, formed in place (see _ipm)
    # --- starting point: the gates (strictly inside their cones) scaled as in _ipm; ξ, e ≥ 1 around the hinge,
    # π₀ = π₁ = 1/(2n) (so r_ξ = 0), μ s at HINGE_IPM_MU_START of the mean complementarity of the hinge pairs
    x = _gate_start(col, beta)
    r = 1.0 - y * col.pred(x)
    xi = r.clamp(min=0.0) + 1.0
    e = xi - r
    pi0 = torch.full_like(y, 0.5 / n)
    pi1 = pi0.clone()
    s = col.slack(x)
    s = s.clamp(min=1e-8 * max(float(s.mean()), 1e-300))
    hinge_mean = float((xi * pi0).sum() + (e * pi1).sum()) / (2 * n)
    mu = torch.full_like(s, HINGE_IPM_MU_START * hinge_mean / float(s.mean()))
    # the norm cones at the central pair of each x_b for the mean complementarity of the hinge pairs
    t, z = _NormCones.central(x, alpha, hinge_mean)
    best = (math.inf, x, mu, pi1.clamp(0.0, 1.0 / n))  # (gap, x, μ, u) of the best certified point
    best_cert = (math.inf, -math.inf)  # its (primal, dual)
    since_best = 0

    def complementarity() -> float:
        return float((xi * pi0).sum() + (e * pi1).sum() + torch.vdot(s.flatten(), mu.flatten())
                     + _NormCones.products(t, x, z, alpha).sum())

    def certify(x: torch.Tensor, mu: torch.Tensor, pi1: torch.Tensor) -> None:
        """Certify the iterate (x, μ, π₁), keep it if it is the best so far, report the best."""
        nonlocal best, best_cert, since_best, t0
        u = pi1.clamp(0.0, 1.0 / n)
        muc = mu.clamp(min=0.0)
        prim, dual = _hinge_certificate(col, x, muc, u)
        gap = (prim - dual) / max(abs(prim), 1e-300)
        t0 = info.tick("ipm certificate", t0)
        if gap < best[0]:
            best, best_cert = (gap, x, muc, u), (prim, dual)
            since_best = 0
        else:
            since_best += 1
        _report(progress, column, info.ipm_iterations, best_cert, best[0])

    def objective() -> float:
        return float(xi.mean() + alpha * torch.linalg.vector_norm(x, dim=1).sum())

    def on_course(k: int) -> bool:
        """Past ``max_iter`` (k iterations done): whether the relative complementarity, at its rate over the last
        HINGE_IPM_RATE_SPAN iterations, reaches ``gap_tol`` by iteration ``long_iter``."""
        if long_iter is None or k >= long_iter or len(rel) <= HINGE_IPM_RATE_SPAN:
            return False
        rate = rel[-1] / rel[-1 - HINGE_IPM_RATE_SPAN]
        if not 0.0 < rate < 1.0:
            return False
        return k + HINGE_IPM_RATE_SPAN * math.log(gap_tol / rel[-1]) / math.log(rate) <= long_iter

    comp = complementarity()
    rel = [comp / objective()]  # the relative complementarity after each iteration
    t0 = time.perf_counter()
    certified = x  # the last iterate certified (the start: nothing to certify)
    for k in range(max(max_iter, long_iter or 0)):
        if k >= max_iter and not on_course(k):
            info.notes.append(f"hinge ipm: stopped at iteration {k}, its complementarity not on course to {gap_tol:g} "
                              f"by iteration {long_iter}")
            break
        if deadline is not None and deadline.passed():
            info.notes.append("hinge ipm: time limit")
            if x is not certified:  # stopped early: a loose certificate of the last iterate beats none (see _ipm)
                certify(x, mu, pi1)
            break
        info.ipm_iterations += 1
        a = col.pred(x)
        mbar = comp / m
        cones = _NormCones(t, x, z, alpha)
        S = cones.block()
        S += _weighted_grams(X, XX, torch.div(mu, s, out=scratch.take()))
        th0, th1 = pi0 / xi, pi1 / e
        om = th0 * th1 / (th0 + th1)
        system = _IPMSystem(col, S, om, workspace)
        if not system.ok:
            info.notes.append("hinge ipm: Newton system not positive definite")
            break
        t0 = info.tick("ipm factor", t0)
        rd = -z - col.block_grad(y * pi1) - torch.mul(col.Sg, mu, out=scratch.take()) @ X
        rp = col.slack(x, out=scratch.take()).sub_(s)  # G x − s
        rxi = 1.0 / n - pi0 - pi1
        re = xi - 1.0 + y * a - e
        v, res = (x, t, z, xi, e, pi0, pi1, s, mu), (rd, rxi, re, rp)

        # predictor (affine scaling), then Mehrotra's corrector with centering σ = (m̄_aff/m̄)³
        F = (torch.mul(s, mu, out=scratch.take()), xi * pi0, e * pi1)
        aff, ap, ad = _hinge_ipm_direction(system, col, v, res, om, F, cones, cones.target(0.0), refine=0,
                                           scratch=scratch)
        dxa, dta, dza, dxi, de, dpi0, dpi1, ds, dmu = aff
        comp_aff = float(((xi + ap * dxi) * (pi0 + ad * dpi0)).sum() + ((e + ap * de) * (pi1 + ad * dpi1)).sum()
                         + torch.vdot(torch.add(s, ds, alpha=ap, out=scratch.take()).flatten(),
                                      torch.add(mu, dmu, alpha=ad, out=scratch.take()).flatten())
                         + _NormCones.products(t + ap * dta, x + ap * dxa, z + ad * dza, alpha).sum())
        tgt = min(1.0, (comp_aff / m / max(mbar, 1e-300)) ** 3) * mbar
        Fc = F[0].addcmul_(ds, dmu).sub_(tgt)  # s μ + ds dμ − tgt, in the array of s μ
        F = (Fc, xi * pi0 + dxi * dpi0 - tgt, e * pi1 + de * dpi1 - tgt)
        del aff, ds, dmu, Fc  # (their arrays go back to the scratch)
        step, ap, ad = _hinge_ipm_direction(system, col, v, res, om, F, cones, cones.target(tgt, (dta, dxa, dza)),
                                            refine=1, scratch=scratch)
        dx, dt, dz, dxi, de, dpi0, dpi1, ds, dmu = step
        del step, F, v, res, rp
        st = eta_step * min(ap, ad, 1.0)
        x, t, z, xi, e = x + st * dx, t + st * dt, z + st * dz, xi + st * dxi, e + st * de
        pi0, pi1 = pi0 + st * dpi0, pi1 + st * dpi1
        # into arrays of the scratch (the best certified iterate keeps a copy of its μ, not the array)
        s, mu = torch.add(s, ds, alpha=st, out=scratch.take()), torch.add(mu, dmu, alpha=st, out=scratch.take())
        del ds, dmu
        t0 = info.tick("ipm solve", t0)
        if st < 1e-10:
            break
        # the certificate only once the complementarity (about the duality gap near the central path) is below
        # HINGE_IPM_HANDOFF of the objective: before that it could not certify a point the barrier method takes.
        # (It was 1e-3: on yeast, waveform and vehicle standardised the method then ended its 50 iterations between
        # the two, certified nothing, and the barrier method started from the gates; multi-class standardised
        # tables, one thread: 362 -> 342 s, the same certificates)
        comp = complementarity()
        rel.append(comp / objective())
        if rel[-1] > HINGE_IPM_HANDOFF:
            continue
        certify(x, mu, pi1)
        certified = x
        if best[0] <= gap_tol or since_best >= 3:
            break
    return best[1], best[2], best[3], best_cert[0], best_cert[1]


def _hinge_reduced(col: _Column, x: torch.Tensor, mu: torch.Tensor | None, u: torch.Tensor, tau: float,
                   info: PolishInfo, max_newton: int = 30, support_factor: float = 1e3,
                   act_tol: float = 1e-6, use_mu: bool = True, thr_factor: float = 10.0,
                   drop_rounds: int = 1, drop_factor: float = 1e-5, deadline: _Deadline | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Newton on the reduced hinge problem identified from a barrier point (x, μ, u = p/n) at parameter τ.

    Identification: support blocks ‖x_b‖ > 10³·τ/α; samples r = 1 − y a split into L (r > f√(nτ)),
    E (|r| ≤ f√(nτ), the kinks; f = ``thr_factor``) and R; for (C) the working sets of
    :func:`_initial_working_sets`. Then Newton (least-squares steps with backtracking on the residual: the
    reduced problem may have a continuum of solutions) on the KKT system of
        min (1/n) Σ_L (1 − y a) + α Σ_b ‖z_b‖  s.t.  y_E ⊙ a_E = 1,   a = Σ_b A_b z_b (A_b = s_b D_i X N_b)
    with multipliers ν_E. Each step is the first of :func:`_hinge_kkt_steps` that lowers the residual: the
    block-eliminated system's (:func:`_hinge_eliminated_kkt`, ne + nb unknowns), then the whole system's
    (:func:`_hinge_whole_kkt`, mz + ne unknowns, only up to ``HINGE_WHOLE_KKT_MAX``: on stalled finishes the
    eliminated step sometimes fails where the whole one makes a short step, spectf raw 32 of 43 times, the whole
    step then succeeding 28 times). Newton stops at ``deadline``. When Newton stops with a residual above 1e-12,
    the blocks whose norm has fallen below ``drop_factor`` × the largest are taken out and Newton goes on without
    them (at most ``drop_rounds`` times; one sufficed on every standardised table of ``bench_defaults --loss hinge``
    it certified, and each round costs up to ``max_newton`` least-squares solves).
    Returns (x, p, μ-candidate or None): p = 1 on L, 0 on R, clamp(nν, 0, 1) on E.
    """
    n, alpha, y = col.n, col.alpha, col.y
    nrm = torch.linalg.vector_norm(x, dim=1)
    top = float(nrm.max())
    r = 1.0 - y * col.pred(x)  # the partition of the samples, from the barrier point itself
    thr = thr_factor * math.sqrt(n * tau)
    Lset, Eset = r > thr, r.abs() <= thr
    x = torch.where((nrm > max(support_factor * tau / alpha, 1e-12 * top))[:, None], x, torch.zeros_like(x))
    x, W = _initial_working_sets(col, x, mu if use_mu else None, act_tol, 0.0, info)
    bl = torch.nonzero(torch.linalg.vector_norm(x, dim=1) > 0)[:, 0].tolist()
    Ns, As = [], []
    for b in bl:
        rows = torch.nonzero(W[b])[:, 0]
        N = col.null_basis(rows) if col.relu else torch.eye(col.d, dtype=x.dtype, device=x.device)
        Ns.append(N)
        As.append(col.F(b) @ N)
    sizes = [N.shape[1] for N in Ns]
    if not bl or min(sizes) == 0:
        return x, (u * n).clamp(0.0, 1.0), mu
    z = torch.cat([N.T @ x[b] for N, b in zip(Ns, bl, strict=True)])
    yE, yL = y[Eset], y[Lset]
    nu = u[Eset].clone()
    for _ in range(drop_rounds + 1):
        A = torch.cat(As, dim=1)
        AE, AL = A[Eset], A[Lset]
        GE = AE * yE[:, None]  # the constraints' Jacobian y_E ⊙ A_E
        gL = -(AL.T @ yL) / n
        mz = z.numel()
        best_res = math.inf
        res = math.inf
        for _ in range(max_newton):
            if deadline is not None and deadline.passed():
                break
            zs = torch.split(z, sizes)
            bn = torch.stack([torch.linalg.vector_norm(zz) for zz in zs])
            if float(bn.min()) == 0.0:
                break
            zh = torch.cat([zz / nn for zz, nn in zip(zs, bn, strict=True)])
            F1 = gL - AE.T @ (yE * nu) + alpha * zh
            F2 = yE * (AE @ z) - 1.0
            res = float(torch.cat([F1, F2]).abs().max())
            if res >= best_res * 0.9 and res < 1e-12:
                break
            best_res = min(best_res, res)
            info.newton_iterations += 1
            kkt = (sizes, gL, AE, yE, alpha)
            t = 0.0
            for step in _hinge_kkt_steps(sizes, bn, zh, alpha, GE, -F1, -F2, info, deadline):
                t = _residual_backtracking(step, z, nu, res, kkt)
                if t > 0.0:
                    break
            if t == 0.0:
                break
            z, nu = z + t * step[:mz], nu + t * step[mz:]
        if res <= 1e-12 or len(bl) < 2:
            break
        # a block kept by the identification whose optimum is zero (its gradient on the boundary ‖g_b‖ ≈ α,
        # where the barrier leaves it at ≈ √τ): α ẑ_b + g_b = 0 has no solution and Newton stalls there
        # (spectf standardised: one block at norm 2e-8 against a median 0.19 held the residual at 3e-6).
        # Such blocks are dropped and Newton is run again on the rest
        zs = torch.split(z, sizes)
        bn = torch.stack([torch.linalg.vector_norm(zz) for zz in zs])
        keep = bn > drop_factor * float(bn.max())
        if bool(keep.all()) or not bool(keep.any()):
            break
        kept = torch.nonzero(keep)[:, 0].tolist()
        bl, Ns, As = [bl[j] for j in kept], [Ns[j] for j in kept], [As[j] for j in kept]
        z = torch.cat([zs[j] for j in kept])
        sizes = [sizes[j] for j in kept]
    x = torch.zeros_like(x)
    for N, b, zz in zip(Ns, bl, torch.split(z, sizes), strict=True):
        x[b] = N @ zz
    p = torch.zeros_like(y)
    p[Lset] = 1.0
    p[Eset] = (n * nu).clamp(0.0, 1.0)
    Mu = None
    if col.relu:  # support blocks: least squares for G_Aᵀ μ = c_b + α x̂_b on the working rows
        c = col.block_grad(-p * y / n)
        Mu = mu.clone()  # the barrier's multipliers for the zero blocks
        for b in bl:
            Mu[b] = 0.0
            rows = torch.nonzero(W[b])[:, 0]
            if rows.numel() == 0:
                continue
            rhs = c[b] + alpha * x[b] / torch.linalg.vector_norm(x[b])
            Mu[b, rows] = lstsq(col.G(b)[rows].T, rhs[:, None])[:, 0].clamp(min=0.0)
    return _lift_to_cone(col, x), p, Mu


def _hinge_kkt_steps(sizes: list[int], bn: torch.Tensor, zh: torch.Tensor, alpha: float, G: torch.Tensor,
                     r1: torch.Tensor, r2: torch.Tensor, info: PolishInfo,
                     deadline: _Deadline | None) -> Iterator[torch.Tensor]:
    """The reduced hinge Newton step's candidates, in order (the caller takes the first that lowers the residual):
    the block-eliminated system's (ne + nb unknowns), then, before ``deadline`` and up to ``HINGE_WHOLE_KKT_MAX``
    rows, the whole (mz + ne) system's. Lazily: the whole system is only built when the eliminated steps failed."""
    yield from _hinge_eliminated_kkt(sizes, bn, zh, alpha, G, r1, r2)
    m = G.shape[0] + G.shape[1]
    if m > HINGE_WHOLE_KKT_MAX:
        # the whole system's SVD least squares: ≈ 13 s on one thread at 3301 (spambase standardised, (G)), and 44 of
        # them made a 20 s fit take 630 s
        note = f"hinge reduced newton: a {m}-row system not solved whole (over {HINGE_WHOLE_KKT_MAX})"
        if note not in info.notes:
            info.notes.append(note)
    elif deadline is None or not deadline.passed():
        yield from _hinge_whole_kkt(sizes, bn, zh, alpha, G, r1, r2)


def _hinge_eliminated_kkt(sizes: list[int], bn: torch.Tensor, zh: torch.Tensor, alpha: float, G: torch.Tensor,
                          r1: torch.Tensor, r2: torch.Tensor) -> Iterator[torch.Tensor]:
    """Candidate Newton steps (dz, dν) of the reduced hinge KKT system, from its block-eliminated form.

    The system (:func:`_hinge_reduced`) is  H dz − Gᵀ dν = r1,  G dz = r2,  with G (ne, mz) = y_E ⊙ A_E and
    H = blockdiag(c_b Π_b), c_b = α/‖z_b‖, Π_b = I − ẑ_b ẑ_bᵀ: on each block H is c_b·I across ẑ_b and 0
    along it. So dz_b = Π_b (r1_b + G_bᵀ dν)/c_b + s_b ẑ_b exactly, and what remains is the symmetric
    (ne + nb) system in (dν, s)

        [ M   C ] [dν]   [ r2 − Σ_b G_b Π_b r1_b / c_b ]
        [ Cᵀ  0 ] [ s] = [ −(ẑ_bᵀ r1_b)_b              ],   M = Σ_b G_b Π_b G_bᵀ / c_b,  C = (G_b ẑ_b)_b,

    singular exactly when the whole one is (the elimination divides only by c_b > 0). It costs ne²·mz flops
    to form, against the (mz + ne)³ of the whole system: on spambase standardised, (G), 600 rows, 100 gates,
    280 rows instead of 3301, 0.01 s instead of 13 s. Solved equilibrated (:func:`_symmetric_equilibration`), it
    yields its LU step where it is clearly regular (:func:`_regular_lu_solve`), then its minimum-norm
    least-squares step (minimum in the scaled (dν, s), not in (dz, dν) as the whole system's; the same step where
    J's null space lies in the multipliers, as where two kinks' rows are equal)."""
    nb = len(sizes)
    ne = G.shape[0]
    blk = torch.repeat_interleave(torch.arange(nb, device=G.device), torch.tensor(sizes, device=G.device))
    inv_c = (bn / alpha)[blk]  # 1/c_b on each of the block's variables

    def segsum(v: torch.Tensor) -> torch.Tensor:  # Σ over each block's variables (last dimension)
        return v.new_zeros((*v.shape[:-1], nb)).index_add_(-1, blk, v)

    def proj(v: torch.Tensor) -> torch.Tensor:  # Π_b v_b on each block
        return v - zh * segsum(zh * v)[blk]

    C = segsum(G * zh)
    Gp = G - C[:, blk] * zh  # G_b Π_b: M from it, not as G diag(1/c) Gᵀ − C diag(1/c) Cᵀ, a difference that cancels
    M = (Gp * inv_c) @ Gp.T
    S = G.new_zeros((ne + nb, ne + nb))
    S[:ne, :ne] = M
    S[:ne, ne:] = C
    S[ne:, :ne] = C.T
    rhs = torch.cat([r2 - Gp @ (r1 * inv_c), -segsum(zh * r1)])[:, None]
    # solved as (E S E)(E⁻¹ sol) = E rhs, E equilibrating: M's entries (‖G‖²/c) and C's (‖G‖) are orders of
    # magnitude apart on raw data, and unscaled the SVD least squares dropped C's directions as rounding (spectf
    # raw: the step left 95–100% of the residual where the whole system's step left 1e-7; scaled, 1e-7 too)
    e = _symmetric_equilibration(S)
    S = S * e[:, None] * e
    rhs = e[:, None] * rhs

    def back(sol: torch.Tensor) -> torch.Tensor:
        dnu, sb = (e * sol).split([ne, nb])
        return torch.cat([(proj(r1) + Gp.T @ dnu) * inv_c + zh * sb[blk], dnu])

    step = _regular_lu_solve(S, rhs)
    if step is not None:
        yield back(step)
    yield back(lstsq(S, rhs)[:, 0])


def _symmetric_equilibration(S: torch.Tensor, iters: int = 3) -> torch.Tensor:
    """Ruiz's symmetric scaling e (m,) of a symmetric S (m, m): after ``iters`` rounds of e_i ← e_i /
    √(maxⱼ |e_i S_ij e_j|) every row of E S E (E = diag e) has its largest entry near 1 (zero rows keep e_i)."""
    e = torch.ones(S.shape[0], dtype=S.dtype, device=S.device)
    for _ in range(iters):
        top = (S * e[:, None] * e).abs().amax(1)
        e = e / torch.where(top > 0, top, torch.ones_like(top)).sqrt()
    return e


def _hinge_whole_kkt(sizes: list[int], bn: torch.Tensor, zh: torch.Tensor, alpha: float, G: torch.Tensor,
                     r1: torch.Tensor, r2: torch.Tensor) -> Iterator[torch.Tensor]:
    """Candidate steps of the same system as :func:`_hinge_eliminated_kkt`, from the whole (mz + ne) matrix
    J = [[H, −Gᵀ], [G, 0]]: its LU step where it is clearly regular, then its minimum-norm least-squares step."""
    mz, ne = G.shape[1], G.shape[0]
    J = G.new_zeros((mz + ne, mz + ne))
    off = 0
    for j, sz in enumerate(sizes):
        u_ = zh[off:off + sz]
        J[off:off + sz, off:off + sz] = (alpha / bn[j]) * (torch.eye(sz, dtype=G.dtype, device=G.device)
                                                        - torch.outer(u_, u_))
        off += sz
    J[:mz, mz:] = -G.T
    J[mz:, :mz] = G
    rhs = torch.cat([r1, r2])[:, None]
    step = _regular_lu_solve(J, rhs)
    if step is not None:
        yield step
    yield lstsq(J, rhs)[:, 0]


def _regular_lu_solve(J: torch.Tensor, rhs: torch.Tensor, min_pivot: float = 1e-10) -> torch.Tensor | None:
    """J⁻¹ rhs (rhs (m, 1)) by partial-pivoting LU when J is clearly regular, else None (the caller takes the
    minimum-norm least-squares step).

    Regular: every pivot |U_ii| > ``min_pivot`` · max |U_ii|, so cond(J) is far below the 1/(m·eps) at which
    gelsd's least squares starts to drop singular values, and both give the same step (to 1e-11 relative on
    sonar standardised's 1200 × 1200 reduced hinge systems, whose pivot ratios are 1e-8–1e-5, at a ninth of the
    time). The singular systems met (a continuum of reduced solutions: wine quality standardised, spambase
    standardised) have ratios of 1e-16 and below; LU's step there, huge and arbitrary along the null space, cost
    those tables their certificates."""
    LU, piv, info = torch.linalg.lu_factor_ex(J)
    if int(info) != 0:
        return None
    pivots = LU.diagonal().abs()
    if not float(pivots.min()) > min_pivot * float(pivots.max()):
        return None
    step = torch.linalg.lu_solve(LU, piv, rhs)[:, 0]
    return step if bool(torch.isfinite(step).all()) else None


def _residual_backtracking(step: torch.Tensor, z: torch.Tensor, nu: torch.Tensor, res: float, kkt: tuple) -> float:
    """Backtracking on the reduced hinge KKT residual (merit ‖F‖∞, :func:`_kkt_residual` with the other arguments
    ``kkt`` = (sizes, gL, AE, yE, alpha)): the first t = 2⁻ᵏ > 1e-6 with ‖F(z + t dz, ν + t dν)‖∞ < (1 − 1e-4 t)·res
    for step = (dz, dν), else 0."""
    mz = z.numel()
    t = 1.0
    while t > 1e-6:
        if _kkt_residual(z + t * step[:mz], nu + t * step[mz:], *kkt) < (1 - 1e-4 * t) * res:
            return t
        t *= 0.5
    return 0.0


def _kkt_residual(z: torch.Tensor, nu: torch.Tensor, sizes: list[int], gL: torch.Tensor, AE: torch.Tensor,
                  yE: torch.Tensor, alpha: float) -> float:
    """‖KKT residual‖∞ of the reduced hinge problem (see :func:`_hinge_reduced`)."""
    zs = torch.split(z, sizes)
    bn = torch.stack([torch.linalg.vector_norm(zz) for zz in zs])
    if float(bn.min()) == 0.0:
        return math.inf
    zh = torch.cat([zz / nn for zz, nn in zip(zs, bn, strict=True)])
    F1 = gL - AE.T @ (yE * nu) + alpha * zh
    F2 = yE * (AE @ z) - 1.0
    return float(torch.cat([F1, F2]).abs().max())


def _hinge_gap(col: _Column, x: torch.Tensor, mu: torch.Tensor | None, u2: torch.Tensor) -> float:
    """Relative certificate gap of an interior-point iterate (valid whatever the iterate)."""
    prim, dual = _hinge_certificate(col, x, mu, u2)
    return (prim - dual) / max(abs(prim), 1e-300)


def _hinge_repaired_gap(col: _Column, x: torch.Tensor, mu: torch.Tensor | None, u2: torch.Tensor) -> float:
    """:func:`_hinge_gap` with the cone multipliers of (C) repaired by NNLS where a block's dual constraint is
    violated, as :func:`polish` certifies its result (:func:`dual_certificate`). The reduced Newton step's
    least-squares μ can miss the bound its point allows: tic-tac-toe standardised, where the barrier method's
    reduced Newton point at its 5.9e-7 stage certifies 1.9e-13 repaired; judged without the repair, the barrier
    method went on for 79 more Newton steps and ended at 4.1e-7)."""
    if not col.relu:
        return _hinge_gap(col, x, mu, u2)
    return _column_certificate(col, x, mu, -u2 * col.y).relative_gap


def _hinge_certificate(col: _Column, x: torch.Tensor, mu: torch.Tensor | None, u2: torch.Tensor) -> tuple[float, float]:
    """(primal, dual) of the certificate of a hinge iterate x (nb, d) with cone multipliers μ (nb, n) ((C)) and
    loss-dual u2 (n,) (Λ = −u2 ⊙ y): the objective at x made cone-feasible, and the dual bound."""
    pb, X, P, alpha = col.pb, col.X, col.P, col.alpha
    Y = col.y[:, None]
    lam = (-u2 * col.y)[:, None]
    if col.relu:
        prim = col.repaired(x)[3]
        dual = float(certificates.dual_value_relu(X, pb.D, Y, lam, mu[:P].T[:, :, None], mu[P:].T[:, :, None],
                                                  alpha, "hinge").sum())
    else:
        pred = operators.forward(X, pb.D, x[:, :, None])
        prim = float(losses.value("hinge", pred, Y).sum()) + alpha * float(operators.group_norms(x[:, :, None]).sum())
        dual = float(certificates.dual_value_gated(X, pb.D, Y, lam, alpha, "hinge").sum())
    return float(prim), dual


# ----------------------------------------------------------------------------------------------------
# certificates


def _column_certificate(col: _Column, x: torch.Tensor, mu: torch.Tensor, lam: torch.Tensor | None = None,
                        nnls_method: str = "auto") -> Certificate:
    """The certificate of one column of (C) at x (nb, d) as :func:`polish` certifies its result: primal at x made
    exactly feasible (:func:`certificates.make_feasible`), dual by :func:`dual_certificate` with the multipliers
    μ (nb, n) repaired by NNLS where they fall short, and the loss-dual candidate ``lam`` (n,) (None: ∇L)."""
    pb, P = col.pb, col.P
    V, W, _, _ = col.repaired(x)
    one = ConvexProblem(X=col.X, Y=col.y[:, None], D=pb.D, H=pb.H, alpha=pb.alpha, loss=pb.loss, kind=pb.kind)
    cert, _ = dual_certificate(one, V, W, mu[:P].T[:, :, None], mu[P:].T[:, :, None], nnls_method=nnls_method,
                               Lam=None if lam is None else lam[:, None])
    return cert


def _column_gap(col: _Column, x: torch.Tensor, mu: torch.Tensor, nnls_method: str = "auto") -> float:
    """Relative certificate gap of one column of (C) at :func:`_lift_to_cone` (x) (:func:`_column_certificate`), with
    the loss-dual candidate ∇L at x itself (:func:`_point_lam`)."""
    return _column_certificate(col, _lift_to_cone(col, x), mu, _point_lam(col, x), nnls_method).relative_gap


def _point_lam(col: _Column, x: torch.Tensor) -> torch.Tensor:
    """Λ = ∇L at the blocks x (nb, d) of one column, (n,): the loss-dual candidate of an active-set point.

    Taken at x, not at its lift to the cone: the KKT conditions hold at x, and on unscaled features Λ's residuals
    amplify the lift's rounding-level move (adult raw, logistic: a 4.5e-13 change of x moved Xᵀ D_b Λ by 2.5e-5,
    2.5% of α, and a zero block's least residual from 0.999997 α to 1.0003 α: relative gap 1.3e-5 instead of
    1.25e-9). Any Λ gives a valid bound; this one is tight where the method converged."""
    return _loss_grad(col.loss, col.pred(x), col.y)


def _rounded_column_certificate(col: _Column, out: _Column, x: torch.Tensor, lam: torch.Tensor,
                                mu: torch.Tensor) -> Certificate:
    """The certificate of one column of (C) as polish returns it in a lower precision: x (nb, d) of the
    float64 column ``col`` rounded to the precision of ``out`` (the same column of the caller's program), lifted
    and made feasible there; its objective in float64; the bound of the float64 solution's Λ (n,) and μ (nb, n)
    (:func:`_relu_dual_bound`), which the rounding does not change."""
    V, W, _, _ = out.repaired(_lift_to_cone(out, x.to(out.X.dtype), margin=ROUNDING_MARGIN))
    primal = col.fval(torch.cat([V[:, :, 0], W[:, :, 0]]).to(col.X.dtype))
    dual, _, _ = _relu_dual_bound(col, lam, mu)
    return Certificate(primal=primal, dual=dual)


def dual_certificate(problem: ConvexProblem, V: torch.Tensor, W: torch.Tensor | None = None,
                     Mu_v: torch.Tensor | None = None, Mu_w: torch.Tensor | None = None,
                     nnls_method: str = "auto", Lam: torch.Tensor | None = None,
                     repair: bool = True, nnls_max_iter: int = 3000) -> tuple[Certificate, torch.Tensor]:
    """A certificate for a cone-feasible point (V, W) (or U for kind="gated").

    primal = ``problem.objective``; dual = the bound of :mod:`convexnn.ops.certificates` at Λ = ∇L(ŷ)
    and, for (C), multipliers μ ≥ 0 per block: the candidates ``Mu_v``, ``Mu_w`` ((n, P, K), clamped at 0),
    replaced by a non-negative least-squares fit wherever a block's residual exceeds α. Valid for any
    input: the multipliers only decide how tight the bound is (``repair=False``: no NNLS, the candidates as
    they are; ``nnls_max_iter``: the projected-gradient NNLS's iteration limit). ``Lam`` (n, K) replaces
    Λ = ∇L(ŷ) as the loss dual candidate (needed for the hinge loss, whose subgradient at the kinks is not the
    optimal Λ; it is projected onto the domain of L* by the certificate functions). Returns (certificate, dual
    per column).
    """
    pb = problem
    X, D, Y, alpha, loss = pb.X, pb.D, pb.Y, float(pb.alpha), pb.loss
    if pb.kind == "gated":
        pred = operators.forward(X, D, V)
        primal = pb.objective(V)
        lam = losses.grad(loss, pred, Y) if Lam is None else Lam
        dual = certificates.dual_value_gated(X, D, Y, lam, alpha, loss)
        return Certificate(primal=float(primal.sum()), dual=float(dual.sum())), dual
    assert W is not None
    pred = operators.forward(X, D, V - W)
    primal = pb.objective(V, W)
    lam = losses.project_dual(loss, losses.grad(loss, pred, Y) if Lam is None else Lam, Y)
    n, P, K = pb.n, pb.P, pb.K
    Mv = X.new_zeros((n, P, K)) if Mu_v is None else torch.clamp(Mu_v, min=0.0).clone()
    Mw = X.new_zeros((n, P, K)) if Mu_w is None else torch.clamp(Mu_w, min=0.0).clone()
    Aadj = operators.adjoint(X, D, lam)  # (P, d, K)
    lam_r = None  # Λ repaired where a column's residuals exceed α (_loss_dual_repair)
    for k in range(K if repair else 0):
        col = _Column(pb, k)
        c = torch.cat([Aadj[:, :, k], -Aadj[:, :, k]])  # (2P, d)
        Mk = torch.cat([Mv[:, :, k].T, Mw[:, :, k].T])  # (2P, n)
        res = torch.linalg.vector_norm(c - (col.Sg * Mk) @ X, dim=1)
        # blocks whose candidate is off by more than rounding (the bound scales the rest in: still sound)
        need = torch.nonzero(res > alpha * (1.0 + 1e-9))[:, 0].tolist()
        if need:
            Mn, rn = _nnls(col, need, c[need], target=X.new_full((len(need),), alpha), method=nnls_method,
                          mu0=Mk[need], max_iter=nnls_max_iter)
            for j, b in enumerate(need):
                if float(rn[j]) < float(res[b]):
                    Mk[b] = Mn[j]
        Mv[:, :, k] = Mk[:P].T
        Mw[:, :, k] = Mk[P:].T
        R = c - (col.Sg * Mk) @ X
        if float(torch.linalg.vector_norm(R, dim=1).max()) > alpha:
            lam_r = lam.clone() if lam_r is None else lam_r
            lam_r[:, k] = _loss_dual_repair(col, lam[:, k], R)
    dual = certificates.dual_value_relu(X, D, Y, lam, Mv, Mw, alpha, loss)
    if lam_r is not None:  # each column's bound is valid on its own: the better of the two per column
        dual = torch.maximum(dual, certificates.dual_value_relu(X, D, Y, lam_r, Mv, Mw, alpha, loss))
    return Certificate(primal=float(primal.sum()), dual=float(dual.sum())), dual


# ----------------------------------------------------------------------------------------------------
# the entry point


ColumnTask = Callable[[int, PolishInfo, Callable | None, _Deadline], bool]


def _polish_columns_parallel(polish_column: ColumnTask, columns: list[int], workers: int, info: PolishInfo,
                             deadline: _Deadline, progress: Callable[[dict], None] | None) -> list[bool]:
    """Run ``polish_column(k, its own PolishInfo, progress, its deadline)`` for every k of ``columns`` on ``workers``
    threads; the columns' diagnostics are then absorbed into ``info`` in column order. A column's deadline is its
    :meth:`_Deadline.share` of the time left when it starts: one of ⌈r / workers⌉ parts, r the columns not yet
    started (it included). ``progress`` is called one record at a time, with ``ipm_iteration`` the total over the
    columns. If a column raises (or the wait is interrupted), the others are stopped at their next deadline check
    and the exception propagates."""
    infos = {k: PolishInfo(method=info.method) for k in columns}
    lock = threading.Lock()
    base = info.ipm_iterations
    waiting = [len(columns)]  # columns not yet started

    def column_progress(rec: dict) -> None:
        with lock:
            progress({**rec, "ipm_iteration": base + sum(i.ipm_iterations for i in infos.values())})

    def run(k: int) -> bool:
        with lock:
            share = deadline.share(-(-waiting[0] // workers))
            waiting[0] -= 1
        return polish_column(k, infos[k], None if progress is None else column_progress, share)

    with ThreadPoolExecutor(workers, thread_name_prefix="convexnn-polish") as pool:
        futures = [pool.submit(run, k) for k in columns]
        try:
            ran = [f.result() for f in futures]
        except BaseException:
            deadline.stop()
            for f in futures:
                f.cancel()
            raise
    start = info.method
    for k in columns:
        info.absorb(infos[k], start)
    return ran


def polish(
    problem: ConvexProblem,
    V: torch.Tensor,
    W: torch.Tensor | None = None,
    Nv: torch.Tensor | None = None,
    Nw: torch.Tensor | None = None,
    *,
    certificate: Certificate | None = None,
    method: str = "auto",
    tol: float = 1e-13,
    max_newton: int = 300,
    ipm_threshold: float = 1e-2,
    ipm_gap: float = 1e-5,
    ipm_max_iter: int = 80,
    act_tol: float = 1e-6,
    support_tol: float = 1e-6,
    nnls_method: str = "auto",
    hinge_gap: float = 1e-12,
    hinge_max_iter: int = 300,
    max_time: float | None = None,
    gap_target: float | None = None,
    memory_limit: float = 8 * 2**30,
    ipm_max_flops: float = IPM_MAX_FLOPS,
    return_info: bool = False,
    progress: Callable[[dict], None] | None = None,
    workers: int | None = None,
):
    """Polish an approximate solution of (C) (V, W) or (G) (V = U, W = None) to near machine precision.

    Parameters
    ----------
    problem : the program.
    V, W : approximate blocks (P, d, K) (W None for kind="gated"); need not be cone-feasible.
    Nv, Nw : optional cone multipliers of an ADMM run, (n, P, K), whose NEGATIVES approximate μ ≥ 0
        (ADMM's scaled duals ν; pass ``-mu`` if you have μ itself); they help guess the working sets.
    certificate : the certificate of the input, if known. The polished result is returned only if its
        relative gap is smaller; it also decides (``method="auto"``) whether the input is accurate enough
        to guess working sets from (relative gap ≤ ``ipm_threshold``) or the interior-point
        identification runs first.
    method : "auto", "active-set" (never run the interior-point method) or "ipm" (always run it first).
    tol : Newton stops when every block's reduced gradient ‖g_b‖ ≤ tol·α (or at the rounding floor).
    max_newton : Newton iterations per column and per start.
    ipm_gap, ipm_max_iter : the interior-point method's target relative gap and iteration limit.
    hinge_gap, hinge_max_iter : the hinge barrier method's target relative gap and Newton-step limit.
    act_tol : a cone row is guessed active when its slack ≤ act_tol·‖x_r‖‖v_b‖.
    support_tol : a block is guessed non-zero when its norm > support_tol·(largest block norm).
    nnls_method : "auto", "scipy" or "pg" (see :func:`_nnls`).
    max_time : wall-clock budget in seconds (the result so far is certified when it runs out).
    gap_target : (C) with the squared or logistic loss: when the interior-point method runs, it runs to this
        relative gap (instead of ``ipm_gap``), and a column it certifies to ≤ ``gap_target`` is returned
        as it is, without the active-set phase (which would take it to near machine precision). None:
        always finish with the active-set phase. With the hinge loss: the barrier method and its reduced
        Newton finish stop once they certify ``gap_target`` (None: ``hinge_gap``).
    memory_limit : bytes the interior-point / barrier method (:func:`ipm_cost`) and the active-set method
        (:func:`active_set_bytes`) may use, estimated before allocating. A method over it is not run (a
        note in the info says why); ``method="ipm"`` over it raises MemoryError.
    ipm_max_flops : with ``method="auto"`` the interior-point / barrier method is not run when one of its
        iterations would cost more flops than this (:func:`ipm_cost`); then a rough point (relative gap
        > ``ipm_threshold``) is not polished at all: the result is None and the info says why.
    return_info : also return a :class:`PolishInfo`.
    progress : called after each certified interior-point iterate of each output column with the certificate of
        the best iterate so far (what the method returns if stopped there): a dict with ``stage`` ("ipm"),
        ``column``, ``ipm_iteration`` (counted over columns), and that column's program's ``primal``, ``dual``,
        ``gap``, ``relative_gap`` ((C) separates over output columns).
    workers : output columns polished at once, each in its own thread (CPU only). None:
        :func:`convexnn._config.column_workers`, i.e. the cores that the enclosing ``num_threads`` context allows
        beyond its torch threads (an estimator's fit of a small program on two cores: two), at most as many as fit in
        ``memory_limit``. Each column's result is the same either way (each runs the same operations on one thread);
        ``progress`` is then called from the worker threads, one call at a time, and its ``ipm_iteration`` counts the
        iterations of all columns so far.

    Returns
    -------
    (V, W, certificate) — W None for kind="gated" — with V, W exactly cone-feasible and the certificate
    valid (dual ≤ optimum ≤ primal); or None when the polished certificate is not better than
    ``certificate``. For the hinge loss the input point is not used (for (C) an interior-point method from the
    gates, then the barrier method from its point; for (G) the barrier method from the gates).
    With ``return_info`` a 4-tuple / (None, info).
    """
    t_start = time.perf_counter()
    info = PolishInfo()
    pb = problem
    deadline = _Deadline(None if max_time is None else t_start + max_time)

    def done(result):
        info.seconds = time.perf_counter() - t_start
        if return_info:
            return (*result, info) if result is not None else (None, info)
        return result

    if pb.loss not in POLISH_LOSSES:
        info.notes.append(f"the {pb.loss!r} loss is not handled")
        info.converged = False
        return done(None)
    if method not in ("auto", "active-set", "ipm"):
        raise ValueError(f"unknown method {method!r}: expected 'auto', 'active-set' or 'ipm'")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    relu = pb.kind == "relu"
    if relu and W is None:
        raise ValueError("kind='relu' needs both V and W")
    # the interior-point / barrier method's cost, estimated before anything is allocated
    ipm_flops, ipm_bytes = ipm_cost(pb.n, pb.d, pb.P, relu, pb.loss == "squared")
    ipm_size = (f"one interior-point iteration would take ≈ {ipm_flops:.1e} flops and {_gib(ipm_bytes)} "
                f"(n = {pb.n}, d = {pb.d}, P = {pb.P})")
    if method == "ipm" and ipm_bytes > memory_limit:
        raise MemoryError(f"polish(method='ipm'): {ipm_size}, more than memory_limit = "
                          f"{_gib(memory_limit)}; use fewer patterns or rows, or a first-order solver")
    ipm_allowed = ipm_bytes <= memory_limit and (method == "ipm" or ipm_flops <= ipm_max_flops)
    if not ipm_allowed and (pb.loss == "hinge" or (relu and method == "auto" and certificate is not None
                                                   and certificate.relative_gap > ipm_threshold)):
        # the interior-point identification (or the hinge barrier method) is what this point would need
        info.notes.append(f"not polished: {ipm_size} (limits: {ipm_max_flops:.1e} flops, "
                          f"memory_limit {_gib(memory_limit)})")
        info.converged = False
        return done(None)
    out_dtype = pb.X.dtype
    if out_dtype != torch.float64:
        # Newton and the interior-point method need double precision: work on a float64 copy
        pb = pb.to(torch.float64)
        V = V.double()
        W = W.double() if W is not None else None
        Nv = Nv.double() if Nv is not None else None
        Nw = Nw.double() if Nw is not None else None
    P, K = pb.P, pb.K
    Vo = pb.zeros()
    Wo = pb.zeros() if relu else None
    Mu_v = pb.X.new_zeros((pb.n, P, K)) if relu else None
    Mu_w = pb.X.new_zeros((pb.n, P, K)) if relu else None

    Lam = None
    if pb.loss == "hinge":
        info.method = "hinge ipm+barrier+reduced newton" if relu else "hinge barrier+reduced newton"
        Lam = pb.X.new_zeros((pb.n, K))

    def hinge_column(k: int, info: PolishInfo, progress: Callable[[dict], None] | None, deadline: _Deadline) -> bool:
        """Output column k of a hinge-loss program: ((C): interior-point start,) barrier method, then Newton on the
        identified reduced problem;
        its blocks, multipliers and Λ into Vo, Wo, Mu_v, Mu_w and Lam, its diagnostics into ``info``."""
        col = _Column(pb, k)
        target = hinge_gap if gap_target is None else max(gap_target, hinge_gap)

        def finish(x, mu, u, tau):
            # two partitions of the samples: a wide and a narrow band of kinks |1 − y a| ≤ f·√(nτ)
            t0 = time.perf_counter()
            out = (x, mu, u, math.inf)
            for thr_factor in (10.0, 1.0):
                if deadline.passed():
                    break
                x2, p2, mu2 = _hinge_reduced(col, x, mu, u, tau, info, thr_factor=thr_factor, deadline=deadline)
                gap2 = _hinge_repaired_gap(col, x2, mu2, p2 / col.n)
                if gap2 < out[3]:
                    out = (x2, mu2, p2 / col.n, gap2)
                if gap2 <= max(1e-11, target):
                    break
            info.tick("reduced newton", t0)
            return out

        # the interior-point method to a gap of HINGE_IPM_GAP, then the barrier method from its point, at the τ of
        # the barrier's central path with that gap (or from the gates, if the interior-point method got nowhere)
        xi = mui = ui = None
        gap_i = math.inf
        # with a gap target, the barrier method (and its reduced Newton finish) stops once it certifies that: sonar
        # standardised, default classifier, tol 1e-6: 36 s to 3.7e-13 before, 4.5 s to 4.8e-7 (with the LU step of
        # _hinge_reduced). The interior-point method still hands over at HINGE_IPM_GAP, not at the target: run on
        # to its stall (about 2e-5 there) its point gave the barrier method a worse start (17 s against 12 s)
        if relu:
            xi, mui, ui, prim, dual = _hinge_ipm(col, info, gap_tol=HINGE_IPM_GAP, max_iter=HINGE_IPM_MAX_ITER,
                                                 long_iter=HINGE_IPM_LONG_ITER,
                                                 deadline=deadline, progress=progress, column=k)
            gap_i = (prim - dual) / max(abs(prim), 1e-300) if math.isfinite(prim - dual) else math.inf
        if gap_i <= target or (deadline.passed() and gap_i < math.inf):
            # certified to the target; or out of time with a certified point: the barrier method would stop at once,
            # at the gates, and its repaired certificate there costs an NNLS solve per block (vehicle, 4 columns: 1 s
            # past the deadline)
            x, mu, u, gap = xi, mui, ui, gap_i
        else:
            start = None
            if gap_i <= HINGE_IPM_HANDOFF and bool((col.slack(xi) > 0).all()):  # the log barrier needs G x > 0
                start = (xi, (prim - dual) / _hinge_barrier_size(col))
            elif relu:
                if gap_i == math.inf:
                    why = "nothing certified"
                elif gap_i > HINGE_IPM_HANDOFF:
                    why = f"stopped at a relative gap of {gap_i:.1e}"
                else:
                    why = "its point on a cone's face"
                info.notes.append(f"hinge ipm: {why}; barrier method from the gates")
            x, mu, u, _ = _hinge_barrier(col, info, gap_tol=target, max_iter=hinge_max_iter,
                                         deadline=deadline, finish=finish, start=start)
            # judged as its reduced Newton points were, and as polish certifies; out of time, without the NNLS
            # repair (its certificate as the interior-point one is measured: vehicle, max_time 10 s, the repair of
            # two columns' points ran 0.9 s past the limit)
            gap = (_hinge_gap if deadline.passed() else _hinge_repaired_gap)(col, x, mu, u)
            if gap_i < gap:  # the barrier method did not improve on its start (time limit, centering failed)
                x, mu, u, gap = xi, mui, ui, gap_i
        info.converged = info.converged and gap <= 1e-8
        Lam[:, k] = -u * col.y
        if relu:
            Vo[:, :, k], Wo[:, :, k] = x[:P], x[P:]
            Mu_v[:, :, k], Mu_w[:, :, k] = mu[:P].T, mu[P:].T
        else:
            Vo[:, :, k] = x
        return True

    use_ipm_first = Lam is None and relu and (method == "ipm" or (
        method == "auto" and certificate is not None and certificate.relative_gap > ipm_threshold))
    if Lam is None:  # (the hinge loss's method is named above)
        info.method = "ipm+active-set" if use_ipm_first else "active-set"
    ipm_lams: dict[int, torch.Tensor] = {}  # columns certified by the interior-point method: its Λ
    point_lams: dict[int, torch.Tensor] = {}  # (C) columns solved by the active-set method: Λ at its point

    def active_set(info: PolishInfo, col: _Column, x: torch.Tensor, Wk: torch.Tensor | None,
                   mu: torch.Tensor | None = None) -> _ActiveSet | None:
        """The active-set method from (x, Wk), or None (with a note) when it would not fit in memory."""
        nsup = int((torch.linalg.vector_norm(x, dim=1) > 0).sum())
        need = active_set_bytes(col.n, col.d, nsup)
        if need > memory_limit:
            info.notes.append(f"active-set: not run, its Newton step with {nsup} blocks could take "
                              f"{_gib(need)} (memory_limit {_gib(memory_limit)})")
            return None
        return _ActiveSet(col, x, Wk, info, nnls_method, mu)

    def preferred(new: _ActiveSet, new_ok: bool, old: _ActiveSet | None) -> bool:
        """Whether an active-set run ``new`` replaces ``old``: it converged, or it ended lower."""
        return old is None or new_ok or new.col.fval(new.x) < old.col.fval(old.x)

    def polish_column(k: int, info: PolishInfo, progress: Callable[[dict], None] | None, deadline: _Deadline) -> bool:
        """Output column k ((C) and (G) separate over columns): its blocks and multipliers into Vo, Wo, Mu_v, Mu_w
        (its Λ into ``ipm_lams`` where the interior-point method certified it), its diagnostics into ``info``;
        False when no method could run on it."""
        col = _Column(pb, k)
        x0 = torch.cat([V[:, :, k], W[:, :, k]]) if relu else V[:, :, k].clone()
        mu0 = None
        if relu and Nv is not None and Nw is not None:
            mu0 = torch.clamp(-torch.cat([Nv[:, :, k].T, Nw[:, :, k].T]), min=0.0)

        ok = False
        solver = None
        if not use_ipm_first:
            t0 = time.perf_counter()
            x, Wk = _initial_working_sets(col, x0, mu0, act_tol, support_tol, info)
            t0 = info.tick("initial guess", t0)
            solver = active_set(info, col, x, Wk)
            if solver is not None:
                ok = solver.run(max_newton=max_newton, gtol=tol, deadline=deadline,
                                max_changes=None if not relu else 4 * col.nb + 50)
        if relu and not ok and method != "active-set" and not ipm_allowed:
            info.notes.append(f"ipm: not run, {ipm_size}")
        elif relu and not ok and method != "active-set":
            if not use_ipm_first:
                info.method = "active-set, then ipm+active-set"
            out = _Column(problem, k) if out_dtype != torch.float64 else None

            def rounded(x, lam, mu, col=col, out=out):
                return _rounded_column_certificate(col, out, x, lam, mu)

            # in a lower precision, the iterates are judged by their certificate once rounded (breast cancer
            # standardised, float32, tol 1e-5: 9.5e-6 in float64 is 1.4e-5 rounded)
            xi, mui, _, gi, lami, muc, xl, mul = _ipm(
                col, info, gap_tol=ipm_gap if gap_target is None else gap_target, max_iter=ipm_max_iter,
                deadline=deadline, progress=progress, column=k, rounded=None if out is None else rounded)
            certified = lami is not None and gap_target is not None and gi <= gap_target
            solver2 = None
            # the active-set phase starts from the iterate of lowest objective (the best guess of the active
            # set: segmentation raw, 7 columns: 715 → 131 Newton steps), and if it fails from there, from the
            # best certified one (on degenerate vertices, tic-tac-toe raw, the later point can stall Newton)
            starts = [(xl, mul)] if xl is xi else [(xl, mul), (xi, mui)]
            gaps: list[tuple[_ActiveSet, float]] = []  # the certified gaps of the runs' points, each formed once

            def gap_of(run: _ActiveSet) -> float:
                for known, g in gaps:
                    if known is run:
                        return g
                gaps.append((run, _column_gap(col, run.x, run.multipliers_dense(), nnls_method)))
                return gaps[-1][1]

            for j, (xs, ms) in enumerate(starts if not certified else []):
                if deadline.passed():
                    break
                if j:
                    info.notes.append("active-set: started again from the best certified interior-point iterate")
                t0 = time.perf_counter()
                x, Wk = _initial_working_sets(col, xs, ms, act_tol, support_tol, info)
                t0 = info.tick("initial guess", t0)
                attempt = active_set(info, col, x, Wk, ms)
                if attempt is None:
                    break
                ok_a = attempt.run(max_newton=max_newton, gtol=tol, deadline=deadline)
                if not ok_a and gap_target is not None:
                    # stopped short of the KKT tolerance (on raw data Newton can stall on a tiny block whose
                    # tangential step is below rounding) at a point that may already meet the caller's gap: then
                    # that is this column's result, not a restart (breast cancer raw: a restart from the best
                    # certified iterate took 176 more Newton steps, 4 s, to a point certified no better)
                    g_a = gap_of(attempt)
                    if g_a <= gap_target:
                        info.notes.append(f"active-set: stopped short, at a point certified to {g_a:.1e} "
                                          f"≤ {gap_target:.1e}")
                        ok_a = True
                if preferred(attempt, ok_a, solver2):
                    solver2, ok = attempt, ok_a
                if ok:
                    break
            if solver2 is not None:
                if preferred(solver2, ok, solver):
                    solver = solver2
                if not ok and lami is not None and gap_of(solver) >= gi:
                    # the active-set phase stopped short (budget, time, too many changes) at a point less well
                    # certified than the interior-point one: keep that (seen on unscaled targets, where a
                    # poor working-set guess sent it to a point 1% worse with no usable multipliers)
                    info.notes.append("active-set: stopped short; the interior-point point is kept")
                    solver2 = None
                if solver2 is not None and lami is not None and out is not None:
                    # rounded to the caller's precision, a point on a degenerate vertex (many rows at zero slack) can
                    # cost far more than an interior one: the column keeps whichever rounds better
                    lam_a = _point_lam(col, solver2.x)
                    if rounded(xi, lami, muc).relative_gap < rounded(solver2.x, lam_a,
                                                                     solver2.multipliers_dense()).relative_gap:
                        info.notes.append(f"active-set: its point rounds to {out_dtype} worse than the interior-point "
                                          "one, which is kept")
                        solver2 = None
            if solver2 is None and (lami is not None or solver is None):
                # certified well enough (≤ gap_target), out of time, the active-set phase does not fit or did
                # worse: the interior-point point is this column's result (with the multipliers it certified with)
                info.method = "ipm"
                Vo[:, :, k], Wo[:, :, k] = xi[:P], xi[P:]
                mk = muc if lami is not None else mui
                Mu_v[:, :, k], Mu_w[:, :, k] = mk[:P].T, mk[P:].T
                if lami is not None:
                    ipm_lams[k] = lami
                info.converged = info.converged and certified
                return True
        if solver is None:  # nothing could run on this column
            return False
        info.converged = info.converged and ok
        x = _lift_to_cone(col, solver.x)
        if relu:
            Vo[:, :, k], Wo[:, :, k] = x[:P], x[P:]
            Mk = solver.multipliers_dense()
            Mu_v[:, :, k], Mu_w[:, :, k] = Mk[:P].T, Mk[P:].T
            point_lams[k] = _point_lam(col, solver.x)
        else:
            Vo[:, :, k] = x
        return True

    if workers is None:
        workers = column_workers(K)
    if workers > 1 and pb.X.device.type == "cpu":
        # one column's methods in memory per worker
        hinge_or_ipm = pb.loss == "hinge" or (relu and method != "active-set")
        per_column = max(ipm_bytes if hinge_or_ipm else 0.0, active_set_bytes(pb.n, pb.d, 2 * P if relu else P))
        workers = min(workers, K, max(1, int(memory_limit // max(per_column, 1.0))))
    else:
        workers = 1
    column = hinge_column if Lam is not None else polish_column
    if workers == 1:
        ran = []
        for k in range(K):
            ran.append(column(k, info, progress, deadline.share(K - k)))
            if not ran[-1]:
                break
    else:
        ran = _polish_columns_parallel(column, list(range(K)), workers, info, deadline, progress)
    if not all(ran):  # no method could run on a column
        info.converged = False
        return done(None)
    t0 = time.perf_counter()
    if Lam is None and (ipm_lams or point_lams or out_dtype != torch.float64):
        # the loss-dual candidate: the interior-point method's Λ where it certified a column, ∇L at the active-set
        # point before its lift where that method solved it (_point_lam), else ∇L at the float64 solution. A float32
        # result is certified with the Λ and μ of its float64 solution, not with ∇L at the rounded point: on an
        # ill-conditioned face the multipliers cancel most of Xᵀ D_b Λ, and the rounding moved that residual by
        # 7e-4 α (breast cancer standardised, alpha 1e-3 × alpha_max: relative gap 2.9e-4 → 4.2e-6, the primal
        # cost of the rounding, with NNLS repairs no longer needed)
        Lam = losses.grad(pb.loss, operators.forward(pb.X, pb.D, Vo - Wo if relu else Vo), pb.Y)
        for k, lam_k in (ipm_lams | point_lams).items():
            Lam[:, k] = lam_k
    primal64 = None
    if out_dtype != torch.float64:
        # back to the caller's precision, lifted there; certified in float64 at exactly that point
        primal64 = float(pb.objective(Vo, Wo).sum())
        Vo = Vo.to(out_dtype)
        Wo = Wo.to(out_dtype) if Wo is not None else None
        if relu:
            for k in range(K):
                x = _lift_to_cone(_Column(problem, k), torch.cat([Vo[:, :, k], Wo[:, :, k]]), margin=ROUNDING_MARGIN)
                Vo[:, :, k], Wo[:, :, k] = x[:P], x[P:]
    if relu:  # a no-op up to rounding after the lift: the project's definition of a feasible point
        Vo = certificates.make_feasible(problem.X, problem.D, problem.H, Vo)
        Wo = certificates.make_feasible(problem.X, problem.D, problem.H, Wo)
    # columns certified by the interior-point method carry multipliers already refined against Λ: the
    # NNLS repair could only tighten a bound that is ≤ gap_target already
    cert, _ = dual_certificate(pb, Vo.double(), Wo.double() if Wo is not None else None, Mu_v, Mu_w,
                               nnls_method=nnls_method, Lam=Lam,
                               repair=len(ipm_lams) < K and not deadline.passed())
    info.tick("certificate", t0)
    if primal64 is not None:
        info.rounding_cost = max(cert.primal - primal64, 0.0) / max(abs(cert.primal), 1e-300)
    if certificate is not None and not cert.relative_gap < certificate.relative_gap:
        info.notes.append("no improvement over the given certificate")
        return done(None)
    return done((Vo, Wo, cert))
