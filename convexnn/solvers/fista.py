"""Accelerated proximal gradient (FISTA) for the gated program (G) with a smooth loss (MATH.md §7).

    min_U  f(U) + g(U),   f(U) = L(F U),   g(U) = α Σ_ik ‖U_ik‖₂

Each iteration: one forward pass F·Y, one backward pass Fᵀ∇L, a group soft-threshold, with a
backtracking line search on the step (the sufficient-decrease test
f(x⁺) ≤ f(y) + ⟨∇f(y), x⁺ − y⟩ + ‖x⁺ − y‖²/(2t)) and adaptive restarts (momentum reset when
⟨y − x⁺, x⁺ − x⟩ > 0, O'Donoghue & Candès). The step grows again by 1.25× after accepted steps.
The duality certificate of :func:`convexnn.ops.certificates.dual_value_gated` stops the loop.
"""

from __future__ import annotations

import torch

from convexnn.ops import certificates, losses, operators
from convexnn.solvers.problem import Certificate, ConvexProblem, Monitor, SolverResult


def _lipschitz_estimate(pb: ConvexProblem, iters: int = 20) -> float:
    """Upper estimate of the Lipschitz constant of ∇f: curvature × ‖F‖², ‖F‖² by power iteration."""
    U = torch.ones((pb.P, pb.d, 1), dtype=pb.X.dtype, device=pb.X.device)
    nrm = 1.0
    for _ in range(iters):
        U = operators.adjoint(pb.X, pb.D, operators.forward(pb.X, pb.D, U))
        nrm = float(torch.linalg.vector_norm(U))
        U = U / max(nrm, 1e-300)
    curvature = 1.0 if pb.loss == "squared" else 0.25
    return curvature * nrm / pb.n


def fista(
    problem: ConvexProblem,
    tol: float = 1e-6,
    max_iter: int = 10000,
    check_every: int = 10,
    warm_start: SolverResult | None = None,
    callback=None,
    max_time: float | None = None,
    stall_after: int | None = None,
) -> SolverResult:
    """Solve (G) with a smooth loss ("squared" or "logistic") by FISTA with line search and restarts.

    Stops at relative gap ≤ ``tol``, after ``max_iter`` iterations or ``max_time`` seconds, or (``stall_after``)
    when the gap stalls (:class:`~convexnn.solvers.problem.Monitor`); ``info["stalled"]`` says so."""
    pb = problem
    if pb.kind != "gated":
        raise ValueError("fista solves the gated program (kind='gated'); use admm for kind='relu'")
    if pb.loss not in losses.SMOOTH:
        raise ValueError(f"fista needs a smooth loss, got {pb.loss!r}; use admm for the hinge loss")
    X, D, Y, alpha, loss = pb.X, pb.D, pb.Y, pb.alpha, pb.loss

    def f_and_grad(U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pred = operators.forward(X, D, U)
        return losses.value(loss, pred, Y).sum(), operators.adjoint(X, D, losses.grad(loss, pred, Y)), pred

    step = 1.0 / max(_lipschitz_estimate(pb), 1e-300)
    x = warm_start.V.clone() if warm_start is not None else pb.zeros()
    y = x.clone()
    theta = 1.0
    monitor = Monitor(tol, callback, max_time, stall_after)
    it = 0
    for it in range(1, max_iter + 1):
        fy, gy, _ = f_and_grad(y)
        while True:
            x_new = operators.group_soft_threshold(y - step * gy, step * alpha)
            diff = x_new - y
            fx_new = losses.value(loss, operators.forward(X, D, x_new), Y).sum()
            if fx_new <= fy + torch.sum(gy * diff) + torch.sum(diff * diff) / (2 * step) + 1e-15 * abs(fy):
                break
            step *= 0.5
        if torch.sum((y - x_new) * (x_new - x)) > 0:  # adaptive restart
            theta = 1.0
            y = x_new.clone()
        else:
            theta_new = 0.5 * (1 + (1 + 4 * theta * theta) ** 0.5)
            y = x_new + ((theta - 1) / theta_new) * (x_new - x)
            theta = theta_new
        x = x_new
        step *= 1.25

        if it % check_every == 0 or it == max_iter:
            pred = operators.forward(X, D, x)
            primal = losses.value(loss, pred, Y) + alpha * operators.group_norms(x).sum(0)
            dual = certificates.dual_value_gated(X, D, Y, losses.grad(loss, pred, Y), alpha, loss)
            cert = Certificate(primal=float(primal.sum()), dual=float(dual.sum()))
            if monitor.check(it, cert, (x.clone(),), step=step):
                break
    assert monitor.best is not None
    cert, (V,) = monitor.best
    return SolverResult(V=V, W=None, certificate=cert, n_iter=it, converged=monitor.converged, solver="fista",
                        history=monitor.history, info={"stalled": monitor.stalled})
