"""Solvers: each takes a :class:`ConvexProblem` and returns a :class:`SolverResult`.

- :func:`admm`   ADMM for (C) and (G), every loss (MATH.md §6)
- :func:`fista`  accelerated proximal gradient for (G) with a smooth loss (§7)
- :func:`polish`  active-set Newton polishing of an approximate solution (every loss)
- :func:`cvxpy_solve`  the CVXPY + Clarabel reference (optional dependency)
- :func:`solve`  picks one by name, or the fastest correct one for ``solver="auto"``

``solver="auto"`` runs the first-order method for a short budget and then polishes its point (an
active-set Newton method, with an interior-point start when the point is rough) to near machine
precision; if polishing does not reach ``tol`` the first-order method continues from where it was (until its
gap stalls, when polishing ran: :data:`CONTINUATION_STALL_AFTER`).
For (C) of moderate size (:func:`ipm_direct`) without a warm start it skips the first-order start (whose
point the interior-point identification does not use) and polishes from scratch; there polishing stops
as soon as the certificate's relative gap is ≤ ``tol`` (``gap_target`` of :func:`polish`). Polishing
estimates its cost first (:func:`convexnn.solvers.newton.ipm_cost`) and is skipped, with a note in
``info["polish_notes"]``, where it would not fit in ``memory_limit`` or would be too slow (on CUDA the flop
limits are up to :data:`CUDA_FLOP_SCALE` times higher, by the device's float64 rate, and the memory limit
follows the device's free memory: :func:`device_limits`); ``max_time`` bounds the whole solve.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import torch

from convexnn.ops import certificates, losses, operators
from convexnn.solvers.admm import admm
from convexnn.solvers.cvxpy_ref import cvxpy_solve
from convexnn.solvers.fista import fista
from convexnn.solvers.newton import IPM_MAX_FLOPS, POLISH_LOSSES, PolishInfo, dual_certificate, ipm_cost, polish
from convexnn.solvers.problem import (
    STALL_RATIO,
    Certificate,
    ConvexProblem,
    SolverResult,
    distinct_patterns,
    lift_blocks,
    merge_pattern_blocks,
    project_blocks,
    prune_blocks,
    row_space,
    spread_pattern_blocks,
    target_scale,
)

SOLVERS = ("auto", "admm", "fista", "cvxpy")


def pick_solver(kind: str, loss: str) -> str:
    """What ``solver="auto"`` runs: FISTA for (G) with a smooth loss, ADMM otherwise."""
    return "fista" if kind == "gated" and loss in losses.SMOOTH else "admm"


# iterations before the first polish attempt. For (C) a short ADMM run suffices: when its point is rough
# polishing identifies the active set with its interior-point start, which does not use ADMM's point.
FIRST_ORDER_BUDGET = {"relu": 20, "gated": 300}


def _first_order(problem: ConvexProblem, name: str, tol: float, max_iter: int, **options) -> SolverResult:
    if name == "fista":
        return fista(problem, tol=tol, max_iter=max_iter, **options)
    return admm(problem, tol=tol, max_iter=max_iter, **options)


# the first-order method continued after polishing fell short stops when its gap stalls, from this iteration on
# (:class:`~convexnn.solvers.problem.Monitor`): 537_houses (600 rows, unscaled prices) spent 33 s in 10000 ADMM
# iterations there at relative gap 1.0 throughout
CONTINUATION_STALL_AFTER = 1000


# (C) is solved by polishing from scratch (interior point, then active set) when one interior-point
# iteration costs at most this many flops (:func:`convexnn.solvers.newton.ipm_cost`)
IPM_DIRECT_FLOPS = 2e11


# On a GPU the interior-point method's Gram products and factorizations run two to three orders of magnitude
# faster than on one CPU core (bench_scaling --mode exact on an H100: 60000 PCA rows to gap 1e-4 in 4.2 s
# against 1833 s on one core; the 12000 × 785 pixel pair, 1.5e13 flops per iteration, in 0.8 s per
# iteration), so the flop limits of "auto" (IPM_DIRECT_FLOPS here, IPM_MAX_FLOPS of polish) are scaled on
# CUDA by the device's float64 matrix-product rate over CUDA_REFERENCE_RATE (so that IPM_DIRECT_FLOPS × scale
# is about one second of that rate), at most CUDA_FLOP_SCALE: 100 on an H100 or A100 (tens of Tflop/s in
# float64), a few on a consumer card whose float64 rate is 1/64 of its float32 one, where a fixed factor of
# 100 would send "auto" into interior-point iterations of a minute or more.
CUDA_FLOP_SCALE = 100.0
CUDA_REFERENCE_RATE = 2e11


@functools.cache
def _float64_rate(device: torch.device) -> float:
    """The device's float64 matrix-product rate in flop/s: three 2048 × 2048 products after a warm-up
    (≈ 50 Gflop; a few ms on an H100, about 40 ms where float64 runs at 1 Tflop/s)."""
    g = torch.Generator(device=device).manual_seed(0)  # its own generator: the user's random state is untouched
    A = torch.randn(2048, 2048, dtype=torch.float64, device=device, generator=g)
    A @ A
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(3):
        A @ A
    torch.cuda.synchronize(device)
    return 3 * 2 * 2048.0**3 / max(time.perf_counter() - t0, 1e-9)


def device_limits(problem: ConvexProblem, memory_limit: float | None = None) -> tuple[float, float]:
    """(flop scale, memory limit in bytes) for ``solve(solver="auto")``'s cost checks on the problem's device.

    On CUDA: the float64 product rate over :data:`CUDA_REFERENCE_RATE`, between 1 and :data:`CUDA_FLOP_SCALE`
    (measured once per device), and 80% of the memory PyTorch can still get there (free plus its own cached
    blocks); elsewhere 1 and 8 GiB. A ``memory_limit`` given by the user is kept as it is."""
    dev = problem.X.device
    if dev.type == "cuda":
        dev = torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())
        scale = min(CUDA_FLOP_SCALE, max(1.0, _float64_rate(dev) / CUDA_REFERENCE_RATE))
        free, _ = torch.cuda.mem_get_info(dev)
        cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        return scale, (0.8 * (free + cached) if memory_limit is None else float(memory_limit))
    return 1.0, (8 * 2**30 if memory_limit is None else float(memory_limit))


def ipm_direct(problem: ConvexProblem, memory_limit: float = 8 * 2**30, flop_scale: float = 1.0) -> bool:
    """Whether ``solver="auto"`` solves (C) by :func:`polish` from scratch, skipping the first-order start:
    one interior-point iteration costs ≤ ``flop_scale`` × :data:`IPM_DIRECT_FLOPS` flops and fits in
    ``memory_limit`` bytes."""
    if problem.kind != "relu" or problem.loss not in POLISH_LOSSES:
        return False
    flops, need = ipm_cost(problem.n, problem.d, problem.P, constant_lam=problem.loss == "squared")
    return flops <= flop_scale * IPM_DIRECT_FLOPS and need <= memory_limit


def _info_dict(pinfo) -> dict:
    """A :class:`~convexnn.solvers.newton.PolishInfo` as a plain dict: its counts and flags, and the seconds of
    each of its phases ("timings")."""
    return {**{k: v for k, v in vars(pinfo).items() if isinstance(v, int | float | str)},
            "timings": dict(pinfo.timings)}


# projected-gradient iterations of the zero network's cone multipliers (:func:`_zero_columns`)
ZERO_CHECK_ITERATIONS = 200


def _zero_columns(problem: ConvexProblem, tol: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The output columns (their programs: (C) separates over them) that a dual certificate proves optimal at zero
    to ``tol``:
    (mask (K,), L_k(0) (K,), the certified dual bound per column (K,), −inf where not certified).

    Λ = ∇L(0) and cone multipliers μ fitted by :data:`ZERO_CHECK_ITERATIONS` batched projected-gradient
    iterations (:func:`~convexnn.solvers.newton.dual_certificate`): at α above a column's threshold in (C) the
    bound equals L_k(0). It saves the interior-point method its slowest case, an optimum at the apex of every
    norm cone (breast cancer, α at 0.37 of :func:`~convexnn.model_selection.alpha_max`: 54 iterations, 3.9 s,
    for the zero network). Columns where a cone point shows zero is not optimal
    (:func:`~convexnn.ops.certificates.cone_residual_lower_bound`) cost three products with X and no NNLS.
    """
    K = problem.K
    pred = problem.Y.new_zeros(problem.Y.shape)  # the zero network's predictions
    zero_loss = losses.value(problem.loss, pred, problem.Y)
    dual = torch.full((K,), -math.inf, dtype=zero_loss.dtype, device=zero_loss.device)
    # first a screen of one product: a cone point u with |Aᵀu| > α‖u‖ shows that no μ can certify zero (the
    # usual case, where the projected-gradient fit would only spend its iterations)
    lam = losses.project_dual(problem.loss, losses.grad(problem.loss, pred, problem.Y), problem.Y)
    A = operators.adjoint(problem.X, problem.D, lam)
    low = torch.maximum(certificates.cone_residual_lower_bound(problem.X, problem.D, problem.H, A),
                        certificates.cone_residual_lower_bound(problem.X, problem.D, problem.H, -A))
    maybe = torch.nonzero(low.amax(0) <= problem.alpha * (1.0 + 1e-9))[:, 0]
    if maybe.numel() == 0:
        return torch.zeros(K, dtype=torch.bool, device=dual.device), zero_loss, dual
    sub = dataclasses.replace(problem, Y=problem.Y[:, maybe])
    zero = sub.zeros()
    _, dual_cols = dual_certificate(sub, zero, zero.clone(), nnls_method="pg", nnls_max_iter=ZERO_CHECK_ITERATIONS)
    dual[maybe] = dual_cols.to(dual.dtype)
    gap = (zero_loss - dual) / zero_loss.abs().clamp(min=torch.finfo(dual.dtype).tiny)
    return gap <= tol, zero_loss, dual


def _certified_zero(problem: ConvexProblem, tol: float, zero_loss: torch.Tensor, zero_dual: torch.Tensor,
                    t0: float, callback=None) -> SolverResult:
    """The zero network with the certificate of :func:`_zero_columns` (every column certified)."""
    cert = Certificate(primal=float(zero_loss.sum()), dual=float(zero_dual.sum()))
    rec = {"iteration": 0, "seconds": time.perf_counter() - t0, "stage": "zero check", **cert.as_dict()}
    if callback is not None:
        callback(rec)
    zero = problem.zeros()
    return SolverResult(V=zero, W=zero.clone(), certificate=cert, n_iter=0, converged=cert.relative_gap <= tol,
                        solver="zero", history=[rec])


def _solve_without_zero_columns(problem: ConvexProblem, zero_cols: torch.Tensor, zero_loss: torch.Tensor,
                                zero_dual: torch.Tensor, solver: str, tol: float, max_iter: int,
                                **options) -> SolverResult:
    """(C) separates over output columns: the columns certified zero (:func:`_zero_columns`) are left at zero and
    the others solved as one program; the certificate adds both parts' primal values and dual bounds. The
    history's records of the rest are of the whole program (the zero columns' constant parts added; records of
    one column get its index in ``problem``)."""
    K = problem.K
    rest = torch.nonzero(~zero_cols)[:, 0]
    sub = dataclasses.replace(problem, Y=problem.Y[:, rest])
    zp, zd = float(zero_loss[zero_cols].sum()), float(zero_dual[zero_cols].sum())

    def whole(rec: dict) -> dict:
        rec = dict(rec)
        if "column" in rec:  # one column's own program
            rec["column"], rec["columns"] = int(rest[rec["column"]]), K
        elif "primal" in rec:
            cert = Certificate(primal=rec["primal"] + zp, dual=rec["dual"] + zd)
            rec.update(cert.as_dict())
        return rec

    user_cb = options.get("callback")
    if user_cb is not None:
        options["callback"] = lambda rec: user_cb(whole(rec))
    warm = options.get("warm_start")
    if warm is not None:
        options["warm_start"] = dataclasses.replace(
            warm, V=warm.V[:, :, rest], W=None if warm.W is None else warm.W[:, :, rest])
    res = _solve(sub, solver, tol, max_iter, zero_check=False, **options)
    V = problem.zeros()
    V[:, :, rest] = res.V
    W = None
    if res.W is not None:
        W = problem.zeros()
        W[:, :, rest] = res.W
    cert = Certificate(primal=res.certificate.primal + zp, dual=res.certificate.dual + zd)
    return dataclasses.replace(res, V=V, W=W, certificate=cert, converged=cert.relative_gap <= tol,
                               history=[whole(r) for r in res.history],
                               info={**res.info, "zero_columns": int(zero_cols.sum())})


def _polish_from_scratch(problem: ConvexProblem, tol: float, callback=None, **limits) -> SolverResult:
    """(C): interior-point identification then active-set Newton, stopping once certified to ``tol``
    (``limits``: ``max_time``, ``memory_limit``, ``ipm_max_flops`` of :func:`polish`)."""
    t0 = time.perf_counter()
    zero = problem.zeros()
    history: list[dict] = []

    def progress(rec: dict) -> None:
        # a certified interior-point iterate of one output column (its own program's certificate: (C) separates
        # over columns, so with K = 1 it is the whole program's)
        rec = {"iteration": rec["ipm_iteration"], "seconds": time.perf_counter() - t0, "columns": problem.K, **rec}
        history.append(rec)
        if callback is not None:
            callback(rec)

    V, W, cert, pinfo = polish(problem, zero, zero.clone(), method="ipm", gap_target=tol, return_info=True,
                               progress=progress, **limits)
    # its iterations: interior-point plus active-set Newton (or barrier) steps
    its = max(1, pinfo.ipm_iterations + pinfo.newton_iterations)
    rec = {"iteration": its, "seconds": time.perf_counter() - t0, "stage": "polish", **cert.as_dict()}
    history.append(rec)
    if callback is not None:
        callback(rec)
    return SolverResult(V=V, W=W, certificate=cert, n_iter=its, converged=cert.relative_gap <= tol,
                        solver="polish", history=history, info={"polish": _info_dict(pinfo)})


def _polished(problem: ConvexProblem, res: SolverResult, tol: float, notes: list[str],
              **limits) -> tuple[SolverResult | None, PolishInfo]:
    """(the polished result when it improves the certificate, else None; polish's info, whose ``method`` is empty
    when polishing did not run: it would not fit or was too slow, or the loss is not handled). ``limits``:
    ``max_time``, ``memory_limit``, ``ipm_max_flops``, ``method`` of :func:`polish`. Why polishing did not run or
    help is appended to ``notes``."""
    info = res.info
    # (G) with the squared or logistic loss: the active-set phase takes it to rounding level, cheaply; the hinge
    # barrier method stops at the fit's tol for either program
    target = tol if problem.kind == "relu" or problem.loss == "hinge" else None
    if "V_raw" in info:  # ADMM: polish from the raw iterate and its multipliers, not the repaired point
        out = polish(problem, info["V_raw"], info["W_raw"], info.get("Nv"), info.get("Nw"),
                     certificate=res.certificate, gap_target=target, return_info=True, **limits)
    else:
        out = polish(problem, res.V, res.W, certificate=res.certificate, gap_target=target, return_info=True,
                     **limits)
    if out[0] is None:  # (None, info): no improvement, not affordable, or an unsupported loss
        notes.extend(out[1].notes)
        return None, out[1]  # its method is set once it gets past the cost and loss checks
    V, W, cert, pinfo = out
    if not cert.relative_gap < res.certificate.relative_gap:
        return None, pinfo
    rec = {"iteration": res.n_iter, "seconds": (res.history[-1]["seconds"] if res.history else 0.0) + pinfo.seconds,
           "stage": "polish", **cert.as_dict()}
    return SolverResult(V=V, W=W, certificate=cert, n_iter=res.n_iter, converged=cert.relative_gap <= tol,
                        solver=f"{res.solver}+polish", history=[*res.history, rec],
                        info={**res.info, "polish": _info_dict(pinfo)}), pinfo


def _short_by_rounding(problem: ConvexProblem, res: SolverResult, tol: float, notes: list[str]) -> bool:
    """Whether a polished result in float32 misses ``tol`` only by the rounding of its float64 solution (whose gap,
    the rounding's cost taken off, is ≤ tol); then a note says so. No first-order method in that precision gets
    further: it would only spend its iterations (breast cancer standardised, alpha 1e-3 × alpha_max, tol 1e-6:
    1000 ADMM iterations after polishing, 2 s, for nothing)."""
    cost = res.info.get("polish", {}).get("rounding_cost", 0.0)
    if res.converged or cost <= 0.0 or res.certificate.relative_gap - cost > tol:
        return False
    dtype = str(problem.X.dtype).replace("torch.", "")
    notes.append(f"the {dtype} result is the float64 solution rounded to {dtype}, which raises the objective by "
                 f"{cost:.1e} (relative): a tol below that needs dtype float64")
    return True


def _better_of(first: SolverResult, then: SolverResult, tol: float) -> SolverResult:
    """Of two results on the same program, the one of lower objective, certified with the higher of their two
    dual bounds (both bound the same optimum from below); ``then`` (the later run) carries the iterations and
    history of both."""
    keep = then if then.certificate.primal < first.certificate.primal else first
    cert = Certificate(primal=keep.certificate.primal, dual=max(first.certificate.dual, then.certificate.dual))
    return dataclasses.replace(keep, certificate=cert, converged=cert.relative_gap <= tol, n_iter=then.n_iter,
                               history=then.history)


def solve(problem: ConvexProblem, solver: str = "auto", tol: float = 1e-6, max_iter: int = 10000,
          **options) -> SolverResult:
    """Solve ``problem`` with the named solver (see :data:`SOLVERS`).

    "admm" and "fista" run the plain first-order method; "auto" picks one of them
    (:func:`pick_solver`) and polishes its point. ``options`` go to the first-order method; with "auto",
    ``max_time`` (seconds) bounds the whole solve, polishing included, and ``memory_limit`` (bytes) also
    bounds polishing (:func:`polish` estimates its cost before allocating and is skipped when it would not
    fit or would be too slow; ``info["polish_notes"]`` then says why). A program with repeated or empty patterns
    is solved over its distinct ones (:func:`~convexnn.solvers.problem.distinct_patterns`), one whose X has
    zero columns or more columns than rows in X's row space (:func:`~convexnn.solvers.problem.row_space`).

    The result's residue blocks are then set to zero (:func:`~convexnn.solvers.problem.prune_blocks`: those an
    interior-point iterate leaves at 1e-8 of the network's neurons), where that raises the objective by at most
    :data:`PRUNE_SLACK` × ``tol`` relative and keeps a certified result certified; ``info["pruned"]`` counts
    them. The CVXPY reference is returned as it is.
    """
    res = _solve(problem, solver, tol, max_iter, **options)
    return res if solver == "cvxpy" else _pruned(problem, res, tol, options.get("callback"))


# pruning may raise the objective by at most this fraction of tol, relative (the certificate barely moves)
PRUNE_SLACK = 0.01


def _pruned(problem: ConvexProblem, res: SolverResult, tol: float, callback=None) -> SolverResult:
    """``res`` with its residue blocks zeroed (:func:`prune_blocks`) and its certificate's primal re-evaluated
    there (the dual still bounds the same optimum), recorded as a last history record (stage "prune"); ``res``
    itself when nothing qualifies."""
    t0 = time.perf_counter()
    # decided and re-evaluated in float64: pruning may cost 1e-2 × tol of the objective, below what a float32
    # evaluation resolves (a float32 result is certified in float64, see polish)
    dt = res.V.dtype
    W64 = None if res.W is None else res.W.double()
    V, W, values, dropped = prune_blocks(problem.to(torch.float64), res.V.double(), W64, PRUNE_SLACK * tol)
    if dropped == 0:
        return res
    V, W = V.to(dt), None if W is None else W.to(dt)  # zeroed blocks: exact in any precision
    cert = Certificate(primal=float(values.sum()), dual=res.certificate.dual)
    if res.converged and cert.relative_gap > tol:
        return res
    last = res.history[-1]["seconds"] if res.history else 0.0
    rec = {"iteration": res.n_iter, "seconds": last + time.perf_counter() - t0, "stage": "prune",
           "pruned": dropped, **cert.as_dict()}
    if callback is not None:
        callback(rec)
    return dataclasses.replace(res, V=V, W=W, certificate=cert, converged=cert.relative_gap <= tol,
                               history=[*res.history, rec], info={**res.info, "pruned": dropped})


def _solve(problem: ConvexProblem, solver: str, tol: float, max_iter: int, zero_check: bool = True,
           **options) -> SolverResult:
    """:func:`solve` before pruning (``zero_check``: look for output columns certified zero first)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}: expected one of {SOLVERS}")
    distinct = distinct_patterns(problem)
    if distinct is not None:
        return _solve_on_distinct_patterns(problem, distinct, solver, tol, max_iter, **options)
    reduced = row_space(problem)
    if reduced is not None:
        return _solve_in_row_space(problem, reduced, solver, tol, max_iter, **options)
    if solver == "cvxpy":  # the reference solves the program as it is given
        return cvxpy_solve(problem)
    scale = target_scale(problem)
    if scale is not None:
        return _solve_scaled(problem, scale, solver, tol, max_iter, **options)
    if solver != "auto":
        return _first_order(problem, solver, tol, max_iter, **options)
    name = pick_solver(problem.kind, problem.loss)
    max_time = options.pop("max_time", None)
    deadline = None if max_time is None else time.perf_counter() + float(max_time)
    scale, mem = device_limits(problem, options.get("memory_limit"))
    memory = {"memory_limit": mem, "ipm_max_flops": scale * IPM_MAX_FLOPS}  # polish's cost limits

    def left() -> dict:
        """The time left, as the ``max_time`` option (none without a limit)."""
        return {} if deadline is None else {"max_time": max(deadline - time.perf_counter(), 0.0)}

    def out_of_time() -> bool:
        return deadline is not None and time.perf_counter() >= deadline

    direct = ipm_direct(problem, mem, scale)  # (C) small enough for the interior-point method from scratch
    if zero_check and direct:
        t0 = time.perf_counter()
        zero_cols, zero_loss, zero_dual = _zero_columns(problem, tol)
        if bool(zero_cols.all()):
            return _certified_zero(problem, tol, zero_loss, zero_dual, t0, options.get("callback"))
        if bool(zero_cols.any()):
            if max_time is not None:
                options["max_time"] = max(deadline - time.perf_counter(), 0.0)
            return _solve_without_zero_columns(problem, zero_cols, zero_loss, zero_dual, solver, tol, max_iter,
                                               **options)
    notes: list[str] = []
    # the hinge loss's polishing (a barrier method from the gates) does not use the point it is given: once it
    # has run, running it again only repeats it (20 s on a 600-row table)
    polish_once = problem.loss == "hinge"
    # how polishing runs after the first time: "auto" (active-set method, then the interior-point method where that
    # falls short), "active-set" once the interior-point method has run, for it starts from its own point and
    # would only repeat itself (197_cpu_act raw, 600 rows: 10 s, its 80 iterations and two active-set runs again,
    # for the same point), None once the hinge loss's polishing has run
    again: str | None = "auto"
    # the interior-point method starts from its own point: a warm start would only cost the first-order budget
    # before it (breast cancer, alpha 0.0516 -> 0.0193: median 1.66 s warm against 1.59 s cold, the same result)
    if direct:
        res = _polish_from_scratch(problem, tol, options.get("callback"), **memory, **left())
        if res.converged or max_iter <= 0 or out_of_time():
            return res
        if _short_by_rounding(problem, res, tol, notes):
            res.info["polish_notes"] = notes
            return res
        # not certified to tol: the active-set method from the interior-point point (its working sets guessed
        # afresh from that point, where polish's own runs took them from the interior-point multipliers), then the
        # first-order method goes on from the better of the two
        again = None if polish_once else "active-set"
        better = None if again is None else _polished(problem, res, tol, notes, method=again, **memory, **left())[0]
        options["warm_start"] = better or res
        budget, polish_ran = 0, True
    else:
        budget = min(max_iter, FIRST_ORDER_BUDGET[problem.kind])
        res = _first_order(problem, name, tol, budget, **options, **left())
        if res.converged:
            return res
        better, polish_ran = None, False
        if not out_of_time():
            better, pinfo = _polished(problem, res, tol, notes, **memory, **left())
            polish_ran = bool(pinfo.method)
            if polish_ran and polish_once:
                again = None
            elif pinfo.ipm_iterations:
                again = "active-set"
    if better is not None and (better.converged or _short_by_rounding(problem, better, tol, notes)):
        if notes:
            better.info["polish_notes"] = list(dict.fromkeys(notes))
        return better
    if max_iter > budget and not out_of_time():  # polishing did not finish the job: keep iterating
        options["warm_start"] = better or res
        done_its = res.n_iter if budget == 0 else budget
        user_cb = options.get("callback")
        if user_cb is not None:  # the continuation's records count on from the iterations already done
            options["callback"] = lambda rec: user_cb({**rec, "iteration": rec["iteration"] + done_its})
        # after polishing ran and fell short, the first-order method rarely gets further (it stalls where the
        # program is ill-conditioned): it stops once its gap stalls (Monitor's stall_after). Without polishing
        # (too large) it is the solver itself and runs to max_iter / max_time.
        stall = {"stall_after": CONTINUATION_STALL_AFTER} if polish_ran and "stall_after" not in options else {}
        rest = _first_order(problem, name, tol, max_iter - budget, **options, **stall, **left())
        if rest.info.get("stalled"):
            notes.append(f"{name} after polishing: stopped at its iteration {rest.n_iter}, its gap having fallen "
                         f"by less than {1 - STALL_RATIO:.0%} since iteration {rest.n_iter // 2}")
        rest.n_iter += done_its
        rest.history = [*res.history, *({**rec, "iteration": rec["iteration"] + done_its} for rec in rest.history)]
        res = _better_of(better or res, rest, tol)
        # polished once more from the continuation's point, if that is better (from the same point as before
        # polishing would only repeat itself)
        if res.V is rest.V and not res.converged and not out_of_time() and again is not None:
            res = _polished(problem, res, tol, notes, method=again, **memory, **left())[0] or res
    else:
        res = better or res
    if notes:
        res.info["polish_notes"] = list(dict.fromkeys(notes))  # each reason once
    return res


def _outer_info(info: dict) -> dict:
    """A result's info without its raw iterates and multipliers (``V_raw``, ``W_raw``, ``Nv``, ``Nw``: for polishing
    the program they were found on), for the result of an equivalent program that is passed back."""
    return {k: v for k, v in info.items() if k not in ("V_raw", "W_raw", "Nv", "Nw")}


def _solve_scaled(problem: ConvexProblem, s: float, solver: str, tol: float, max_iter: int,
                  **options) -> SolverResult:
    """Solve the program with targets Y/s and strength α/s (:func:`~convexnn.solvers.problem.target_scale`, s a
    power of two) and scale back: blocks × s, and the certificate's values, the history's and the callback's
    primal, dual and gap × s² (relative gaps unchanged). With s a power of two every one of these products is
    exact in floating point, and so is the objective: evaluated on ``problem`` at the scaled-back point it is the
    same number."""
    pr = dataclasses.replace(problem, Y=problem.Y / s, alpha=problem.alpha / s)
    s2 = s * s

    def back(rec: dict) -> dict:
        return {k: (v * s2 if k in ("primal", "dual", "gap") and isinstance(v, float) else v) for k, v in rec.items()}

    warm = options.get("warm_start")
    if warm is not None:
        c = warm.certificate
        options["warm_start"] = dataclasses.replace(
            warm, V=warm.V / s, W=None if warm.W is None else warm.W / s,
            certificate=Certificate(primal=c.primal / s2, dual=c.dual / s2))
    user_cb = options.get("callback")
    if user_cb is not None:
        options["callback"] = lambda rec: user_cb(back(rec))
    res = _solve(pr, solver, tol, max_iter, **options)
    V = res.V * s
    W = None if res.W is None else res.W * s
    cert = Certificate(primal=res.certificate.primal * s2, dual=res.certificate.dual * s2)
    info = _outer_info(res.info)
    info["target_scale"] = s
    return SolverResult(V=V, W=W, certificate=cert, n_iter=res.n_iter, converged=cert.relative_gap <= tol,
                        solver=res.solver, history=[back(r) for r in res.history], info=info)


def _solve_on_distinct_patterns(problem: ConvexProblem, distinct: tuple[ConvexProblem, torch.Tensor, torch.Tensor],
                                solver: str, tol: float, max_iter: int, **options) -> SolverResult:
    """Solve :func:`distinct_patterns`' equivalent program and spread its blocks back (the same cone rows and
    predictions: the point stays exactly feasible; its objective is re-evaluated on ``problem``)."""
    pr, keep, owner = distinct
    warm = options.get("warm_start")
    if warm is not None:
        options["warm_start"] = SolverResult(
            V=merge_pattern_blocks(owner, warm.V, pr.P),
            W=None if warm.W is None else merge_pattern_blocks(owner, warm.W, pr.P),
            certificate=warm.certificate, n_iter=warm.n_iter, converged=warm.converged, solver=warm.solver)
    res = _solve(pr, solver, tol, max_iter, **options)
    V = spread_pattern_blocks(keep, res.V, problem.P)
    W = None if res.W is None else spread_pattern_blocks(keep, res.W, problem.P)
    cert = Certificate(primal=float(problem.objective(V, W).sum()), dual=res.certificate.dual)
    info = _outer_info(res.info)
    info["distinct_patterns"] = {"P": problem.P, "distinct": pr.P}
    return SolverResult(V=V, W=W, certificate=cert, n_iter=res.n_iter, converged=cert.relative_gap <= tol,
                        solver=res.solver, history=res.history, info=info)


def _solve_in_row_space(problem: ConvexProblem, reduced: tuple[ConvexProblem, torch.Tensor], solver: str,
                        tol: float, max_iter: int, **options) -> SolverResult:
    """Solve :func:`row_space`'s equivalent program and lift its blocks back (v = B v').

    The certificate's primal is re-evaluated on ``problem`` at the lifted point (made exactly cone-feasible
    there, a no-op up to rounding); its dual is the reduced program's bound, a bound on the same optimum.
    """
    pr, B = reduced
    warm = options.get("warm_start")
    if warm is not None:  # the warm start in the row space's coordinates: same predictions, no larger penalty
        options["warm_start"] = SolverResult(
            V=project_blocks(B, warm.V), W=None if warm.W is None else project_blocks(B, warm.W),
            certificate=warm.certificate, n_iter=warm.n_iter, converged=warm.converged, solver=warm.solver)
    res = _solve(pr, solver, tol, max_iter, **options)
    V = lift_blocks(B, res.V)
    W = None if res.W is None else lift_blocks(B, res.W)
    if problem.kind == "relu":  # repaired along the gates' row-space parts (same X h), so V stays in the row space
        Hr = B @ (B.T @ problem.H)
        V = certificates.make_feasible(problem.X, problem.D, Hr, V)
        W = certificates.make_feasible(problem.X, problem.D, Hr, W)
    primal = float(problem.objective(V, W).sum())
    cert = Certificate(primal=primal, dual=res.certificate.dual)
    info = _outer_info(res.info)
    info["row_space"] = {"d": problem.d, "r": pr.d}
    return SolverResult(V=V, W=W, certificate=cert, n_iter=res.n_iter, converged=cert.relative_gap <= tol,
                        solver=res.solver, history=res.history, info=info)


__all__ = ["SOLVERS", "Certificate", "ConvexProblem", "SolverResult", "admm", "cvxpy_solve", "device_limits",
           "fista", "ipm_direct", "pick_solver", "polish", "solve"]
