""":func:`polish`: the entry point of the Newton methods. Per output column it picks the method (active-set from the
given point, interior-point identification first, or the hinge methods), keeps each column within its share of
``max_time``, runs the columns on worker threads where the thread settings leave cores idle, and certifies the
result (see the package docstring of :mod:`convexnn.solvers.newton`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from convexnn._config import column_workers
from convexnn.ops import certificates, losses, operators
from convexnn.solvers.newton.active_set import (
    ROUNDING_MARGIN,
    _ActiveSet,
    _initial_working_sets,
    _lift_to_cone,
    active_set_bytes,
)
from convexnn.solvers.newton.certificate import _column_gap, _point_lam, _rounded_column_certificate, dual_certificate
from convexnn.solvers.newton.column import POLISH_LOSSES, _Column
from convexnn.solvers.newton.diagnostics import PolishInfo, _Deadline, _gib
from convexnn.solvers.newton.hinge import _hinge_column
from convexnn.solvers.newton.interior_point import IPM_MAX_ITER, _ipm
from convexnn.solvers.newton.newton_system import IPM_MAX_FLOPS, ipm_cost
from convexnn.solvers.problem import Certificate, ConvexProblem

ColumnTask = Callable[[int, PolishInfo, Callable | None, _Deadline], object]


@dataclass(frozen=True)
class _Options:
    """:func:`polish`'s settings of one call, as its column methods read them (see its docstring), and what it
    decided before the columns ran."""

    method: str
    tol: float
    max_newton: int
    ipm_gap: float
    ipm_max_iter: int
    act_tol: float
    support_tol: float
    nnls_method: str
    hinge_gap: float
    hinge_max_iter: int
    gap_target: float | None
    memory_limit: float
    ipm_allowed: bool  # one interior-point iteration fits in the memory and flop limits
    ipm_size: str  # its estimated cost, for the notes
    ipm_first: bool  # the interior-point identification runs before the active-set method


@dataclass
class _ColumnResult:
    """One output column's polished point (float64, on the cones where it is an active-set point)."""

    x: torch.Tensor  # blocks (nb, d): [V_k; W_k] for (C), V_k for (G)
    mu: torch.Tensor | None  # cone multipliers (nb, n); None for (G)
    lam: torch.Tensor | None = None  # the loss-dual candidate Λ_k (n,) to certify it with; None: ∇L at the solution
    ipm_certified: bool = False  # certified by the interior-point method, its μ already refined against ``lam``


def _polish_columns_parallel(polish_column: ColumnTask, columns: list[int], workers: int, info: PolishInfo,
                             deadline: _Deadline, progress: Callable[[dict], None] | None) -> list:
    """Run ``polish_column(k, its own PolishInfo, progress, its deadline)`` for every k of ``columns`` on ``workers``
    threads and return the results in column order; the columns' diagnostics are then absorbed into ``info`` in
    column order. A column's deadline is its :meth:`_Deadline.share` of the time left when it starts: one of
    ⌈r / workers⌉ parts, r the columns not yet started (it included). ``progress`` is called one record at a time,
    with ``ipm_iteration`` the total over the columns. If a column raises (or the wait is interrupted), the others
    are stopped at their next deadline check and the exception propagates."""
    infos = {k: PolishInfo(method=info.method) for k in columns}
    lock = threading.Lock()
    base = info.ipm_iterations
    waiting = [len(columns)]  # columns not yet started

    def column_progress(rec: dict) -> None:
        with lock:
            progress({**rec, "ipm_iteration": base + sum(i.ipm_iterations for i in infos.values())})

    def run(k: int):
        with lock:
            share = deadline.share(-(-waiting[0] // workers))
            waiting[0] -= 1
        return polish_column(k, infos[k], None if progress is None else column_progress, share)

    with ThreadPoolExecutor(workers, thread_name_prefix="convexnn-polish") as pool:
        futures = [pool.submit(run, k) for k in columns]
        try:
            results = [f.result() for f in futures]
        except BaseException:
            deadline.stop()
            for f in futures:
                f.cancel()
            raise
    start = info.method
    for k in columns:
        info.absorb(infos[k], start)
    return results


def _hinge_task(col: _Column, opts: _Options, info: PolishInfo, progress: Callable[[dict], None] | None,
                deadline: _Deadline, k: int) -> _ColumnResult:
    """Output column k of a hinge-loss program (:func:`_hinge_column`), certified with its hinge dual: Λ = −u·y."""
    target = opts.hinge_gap if opts.gap_target is None else max(opts.gap_target, opts.hinge_gap)
    x, mu, u, gap = _hinge_column(col, info, target, opts.hinge_max_iter, deadline, progress, k)
    info.converged = info.converged and gap <= 1e-8
    return _ColumnResult(x, mu, -u * col.y)


def _active_set(col: _Column, x: torch.Tensor, Wk: torch.Tensor | None, opts: _Options, info: PolishInfo,
                mu: torch.Tensor | None = None) -> _ActiveSet | None:
    """The active-set method from (x, Wk), or None (with a note) when it would not fit in memory."""
    nsup = int((torch.linalg.vector_norm(x, dim=1) > 0).sum())
    need = active_set_bytes(col.n, col.d, nsup)
    if need > opts.memory_limit:
        info.notes.append(f"active-set: not run, its Newton step with {nsup} blocks could take "
                          f"{_gib(need)} (memory_limit {_gib(opts.memory_limit)})")
        return None
    return _ActiveSet(col, x, Wk, info, opts.nnls_method, mu)


def _preferred(new: _ActiveSet, new_ok: bool, old: _ActiveSet | None) -> bool:
    """Whether an active-set run ``new`` replaces ``old``: it converged, or it ended lower."""
    return old is None or new_ok or new.col.fval(new.x) < old.col.fval(old.x)


def _ipm_phase(col: _Column, caller: ConvexProblem | None, opts: _Options, info: PolishInfo,
               progress: Callable[[dict], None] | None, deadline: _Deadline, k: int, solver: _ActiveSet | None,
               ) -> tuple[_ColumnResult | None, _ActiveSet | None, bool]:
    """(C), squared or logistic loss: the interior-point method on column k, then the active-set method from its
    point unless it certified ``gap_target``. ``solver``: an earlier active-set run from the given point that did not
    converge, if any. ``caller``: the program in the caller's precision when that is not float64 (the iterates are
    then judged by their certificate once rounded to it). Returns (the interior-point point as the column's result,
    or None), the active-set run to finish from, and whether it converged."""
    ok = False
    out = _Column(caller, k) if caller is not None else None

    def rounded(x, lam, mu):
        return _rounded_column_certificate(col, out, x, lam, mu)

    # in a lower precision, the iterates are judged by their certificate once rounded (breast cancer
    # standardised, float32, tol 1e-5: 9.5e-6 in float64 is 1.4e-5 rounded)
    gap_target = opts.gap_target
    xi, mui, _, gi, lami, muc, xl, mul = _ipm(
        col, info, gap_tol=opts.ipm_gap if gap_target is None else gap_target, max_iter=opts.ipm_max_iter,
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
        gaps.append((run, _column_gap(col, run.x, run.multipliers_dense(), opts.nnls_method)))
        return gaps[-1][1]

    for j, (xs, ms) in enumerate(starts if not certified else []):
        if deadline.passed():
            break
        if j:
            info.notes.append("active-set: started again from the best certified interior-point iterate")
        t0 = time.perf_counter()
        x, Wk = _initial_working_sets(col, xs, ms, opts.act_tol, opts.support_tol, info)
        t0 = info.tick("initial guess", t0)
        attempt = _active_set(col, x, Wk, opts, info, ms)
        if attempt is None:
            break
        ok_a = attempt.run(max_newton=opts.max_newton, gtol=opts.tol, deadline=deadline)
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
        if _preferred(attempt, ok_a, solver2):
            solver2, ok = attempt, ok_a
        if ok:
            break
    if solver2 is not None:
        if _preferred(solver2, ok, solver):
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
                info.notes.append(f"active-set: its point rounds to {out.X.dtype} worse than the interior-point "
                                  "one, which is kept")
                solver2 = None
    if solver2 is None and (lami is not None or solver is None):
        # certified well enough (≤ gap_target), out of time, the active-set phase does not fit or did
        # worse: the interior-point point is this column's result (with the multipliers it certified with)
        info.method = "ipm"
        info.converged = info.converged and certified
        return _ColumnResult(xi, muc if lami is not None else mui, lami, lami is not None), solver, ok
    return None, solver, ok


def _newton_task(col: _Column, caller: ConvexProblem | None, x0: torch.Tensor, mu0: torch.Tensor | None, opts: _Options,
                 info: PolishInfo, progress: Callable[[dict], None] | None, deadline: _Deadline,
                 k: int) -> _ColumnResult | None:
    """Output column k of a squared- or logistic-loss program from the given blocks x0 (nb, d) (and the cone
    multipliers' guess mu0 (nb, n)): the active-set method from there, unless the interior-point identification
    comes first (``opts.ipm_first``) or is needed because that method failed ((C); :func:`_ipm_phase`, which
    ``caller`` is passed to). None when no method could run on it."""
    ok = False
    solver = None
    if not opts.ipm_first:
        t0 = time.perf_counter()
        x, Wk = _initial_working_sets(col, x0, mu0, opts.act_tol, opts.support_tol, info)
        t0 = info.tick("initial guess", t0)
        solver = _active_set(col, x, Wk, opts, info)
        if solver is not None:
            ok = solver.run(max_newton=opts.max_newton, gtol=opts.tol, deadline=deadline,
                            max_changes=None if not col.relu else 4 * col.nb + 50)
    if col.relu and not ok and opts.method != "active-set":
        if not opts.ipm_allowed:
            info.notes.append(f"ipm: not run, {opts.ipm_size}")
        else:
            if not opts.ipm_first:
                info.method = "active-set, then ipm+active-set"
            result, solver, ok = _ipm_phase(col, caller, opts, info, progress, deadline, k, solver)
            if result is not None:
                return result
    if solver is None:  # nothing could run on this column
        return None
    info.converged = info.converged and ok
    x = _lift_to_cone(col, solver.x)
    if not col.relu:
        return _ColumnResult(x, None)
    return _ColumnResult(x, solver.multipliers_dense(), _point_lam(col, solver.x))


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
    ipm_max_iter: int = IPM_MAX_ITER,
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
    hinge = pb.loss == "hinge"
    ipm_first = not hinge and relu and (method == "ipm" or (
        method == "auto" and certificate is not None and certificate.relative_gap > ipm_threshold))
    if hinge:
        info.method = "hinge ipm+barrier+reduced newton" if relu else "hinge barrier+reduced newton"
    else:
        info.method = "ipm+active-set" if ipm_first else "active-set"
    Vo = pb.zeros()
    Wo = pb.zeros() if relu else None
    Mu_v = pb.X.new_zeros((pb.n, P, K)) if relu else None
    Mu_w = pb.X.new_zeros((pb.n, P, K)) if relu else None
    opts = _Options(method=method, tol=tol, max_newton=max_newton, ipm_gap=ipm_gap, ipm_max_iter=ipm_max_iter,
                    act_tol=act_tol, support_tol=support_tol, nnls_method=nnls_method, hinge_gap=hinge_gap,
                    hinge_max_iter=hinge_max_iter, gap_target=gap_target, memory_limit=memory_limit,
                    ipm_allowed=ipm_allowed, ipm_size=ipm_size, ipm_first=ipm_first)

    def column(k: int, info: PolishInfo, progress: Callable[[dict], None] | None,
               deadline: _Deadline) -> tuple[torch.Tensor | None, bool] | None:
        """Output column k ((C) and (G) separate over output columns): its blocks and multipliers into Vo, Wo, Mu_v
        and Mu_w as soon as it is solved (not held twice), its diagnostics into ``info``; returns its result's Λ_k
        and ``ipm_certified`` (None when no method could run on it)."""
        col = _Column(pb, k)
        if hinge:
            r = _hinge_task(col, opts, info, progress, deadline, k)
        else:
            x0 = torch.cat([V[:, :, k], W[:, :, k]]) if relu else V[:, :, k].clone()
            mu0 = None
            if relu and Nv is not None and Nw is not None:
                mu0 = torch.clamp(-torch.cat([Nv[:, :, k].T, Nw[:, :, k].T]), min=0.0)
            r = _newton_task(col, problem if out_dtype != torch.float64 else None, x0, mu0, opts, info, progress,
                             deadline, k)
        if r is None:
            return None
        if relu:
            Vo[:, :, k], Wo[:, :, k] = r.x[:P], r.x[P:]
            Mu_v[:, :, k], Mu_w[:, :, k] = r.mu[:P].T, r.mu[P:].T
        else:
            Vo[:, :, k] = r.x
        return r.lam, r.ipm_certified

    if workers is None:
        workers = column_workers(K)
    if workers > 1 and pb.X.device.type == "cpu":
        # one column's methods in memory per worker
        hinge_or_ipm = hinge or (relu and method != "active-set")
        per_column = max(ipm_bytes if hinge_or_ipm else 0.0, active_set_bytes(pb.n, pb.d, 2 * P if relu else P))
        workers = min(workers, K, max(1, int(memory_limit // max(per_column, 1.0))))
    else:
        workers = 1
    if workers == 1:
        results: list[tuple[torch.Tensor | None, bool] | None] = []
        for k in range(K):
            results.append(column(k, info, progress, deadline.share(K - k)))
            if results[-1] is None:
                break
    else:
        results = _polish_columns_parallel(column, list(range(K)), workers, info, deadline, progress)
    if any(r is None for r in results):  # no method could run on a column
        info.converged = False
        return done(None)
    t0 = time.perf_counter()
    lams = {k: lam_k for k, (lam_k, _) in enumerate(results) if lam_k is not None}
    Lam = None
    if lams or out_dtype != torch.float64:
        # the loss-dual candidate: the column method's Λ where it gave one (the hinge dual; the interior-point
        # method's Λ where it certified the column; ∇L at the active-set point before its lift where that method
        # solved it, _point_lam), else ∇L at the float64 solution. A float32 result is certified with the Λ and μ
        # of its float64 solution, not with ∇L at the rounded point: on an ill-conditioned face the multipliers
        # cancel most of Xᵀ D_b Λ, and the rounding moved that residual by 7e-4 α (breast cancer standardised,
        # alpha 1e-3 × alpha_max: relative gap 2.9e-4 → 4.2e-6, the primal cost of the rounding, with NNLS
        # repairs no longer needed)
        Lam = (losses.grad(pb.loss, operators.forward(pb.X, pb.D, Vo - Wo if relu else Vo), pb.Y) if len(lams) < K
               else pb.X.new_zeros((pb.n, K)))
        for k, lam_k in lams.items():
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
                               repair=sum(by_ipm for _, by_ipm in results) < K and not deadline.passed())
    info.tick("certificate", t0)
    if primal64 is not None:
        info.rounding_cost = max(cert.primal - primal64, 0.0) / max(abs(cert.primal), 1e-300)
    if certificate is not None and not cert.relative_gap < certificate.relative_gap:
        info.notes.append("no improvement over the given certificate")
        return done(None)
    return done((Vo, Wo, cert))
