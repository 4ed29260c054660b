"""Reference solutions of (C) and (G) with CVXPY and a conic solver (Clarabel by default).

Slow (interior point, cubic in the number of variables) and meant for checking the fast solvers on
small problems. Needs the optional extra: ``pip install convexnn[cvxpy]``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from convexnn.ops import certificates, operators
from convexnn.solvers.newton import dual_certificate
from convexnn.solvers.problem import ConvexProblem, SolverResult


def _require_cvxpy():
    try:
        import cvxpy as cp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("solver='cvxpy' needs CVXPY: pip install 'convexnn[cvxpy]'") from exc
    return cp


def _loss_expr(cp, loss: str, pred, y: np.ndarray, n: int):
    if loss == "squared":
        return cp.sum_squares(pred - y) / (2 * n)
    if loss == "logistic":
        return cp.sum(cp.logistic(-cp.multiply(y, pred))) / n
    if loss == "hinge":
        return cp.sum(cp.pos(1 - cp.multiply(y, pred))) / n
    raise ValueError(f"unknown loss {loss!r}")


def cvxpy_solve(problem: ConvexProblem, solver: str = "CLARABEL", verbose: bool = False,
                **solver_opts) -> SolverResult:
    """Solve the program with CVXPY, one output column at a time.

    The certificate's ``primal`` is the objective at the solver's point after repair to exact cone
    feasibility; its ``dual`` is computed by :func:`convexnn.solvers.newton.dual_certificate` from that
    point and the solver's cone multipliers, so it is a proven lower bound like every other solver's (the
    conic solver's own reported value, which can sit above the optimum at its default accuracy, is
    ``info["optimal_value"]``). ``info["status"]`` is "optimal_inaccurate" when the conic solver said so
    (Clarabel does on some logistic (exponential-cone) programs; SCS is then a useful second reference).
    """
    cp = _require_cvxpy()
    X = problem.X.detach().cpu().double().numpy()
    D = problem.D.detach().cpu().double().numpy()
    Y = problem.Y.detach().cpu().double().numpy()
    n, d = X.shape
    P = D.shape[1]
    sign = 2 * D - 1
    Vs, Ws, values, statuses, mus = [], [], [], [], []
    t0 = time.perf_counter()
    for k in range(problem.K):
        y = Y[:, k]
        V = cp.Variable((d, P))
        if problem.kind == "relu":
            W = cp.Variable((d, P))
            pred = cp.sum(cp.multiply(D, X @ (V - W)), axis=1)
            pen = cp.sum(cp.norm(V, 2, axis=0)) + cp.sum(cp.norm(W, 2, axis=0))
            cons = [cp.multiply(sign, X @ V) >= 0, cp.multiply(sign, X @ W) >= 0]
        else:
            W = None
            pred = cp.sum(cp.multiply(D, X @ V), axis=1)
            pen = cp.sum(cp.norm(V, 2, axis=0))
            cons = []
        prob = cp.Problem(cp.Minimize(_loss_expr(cp, problem.loss, pred, y, n) + problem.alpha * pen), cons)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "solution may be inaccurate": see status
            prob.solve(solver=solver, verbose=verbose, **solver_opts)
        if prob.status not in ("optimal", "optimal_inaccurate"):
            raise RuntimeError(f"CVXPY did not solve the problem: status {prob.status}")
        statuses.append(prob.status)
        if W is not None:  # cone multipliers (n, P) of sign ⊙ X V ≥ 0 and sign ⊙ X W ≥ 0: candidates for μ
            mus.append([None if c.dual_value is None else np.asarray(c.dual_value, dtype=np.float64)
                        for c in cons])
        values.append(prob.value)
        Vs.append(V.value.T)
        Ws.append(W.value.T if W is not None else None)
    seconds = time.perf_counter() - t0
    like = problem.X
    Vt = torch.as_tensor(np.stack(Vs, axis=2), dtype=like.dtype, device=like.device)
    Wt = None
    if problem.kind == "relu":
        Wt = torch.as_tensor(np.stack(Ws, axis=2), dtype=like.dtype, device=like.device)
        Vt = certificates.make_feasible(problem.X, problem.D, problem.H, Vt)
        Wt = certificates.make_feasible(problem.X, problem.D, problem.H, Wt)
    Mu_v = Mu_w = None
    if mus and all(m is not None for pair in mus for m in pair):
        Mu_v, Mu_w = (torch.as_tensor(np.stack([pair[j] for pair in mus], axis=2), dtype=like.dtype,
                                      device=like.device) for j in (0, 1))
    certificate, _ = dual_certificate(problem, Vt, Wt, Mu_v, Mu_w)
    return SolverResult(
        V=Vt, W=Wt, certificate=certificate,
        n_iter=0, converged=True, solver="cvxpy",
        info={"optimal_value": float(sum(values)), "seconds": seconds, "backend": solver,
              "status": "optimal" if all(st == "optimal" for st in statuses) else "optimal_inaccurate"},
    )


__all__ = ["cvxpy_solve", "operators"]
