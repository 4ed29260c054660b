"""Solvers: each takes a :class:`ConvexProblem` and returns a :class:`SolverResult`.

- :func:`admm`   ADMM for (C) and (G), every loss (MATH.md §6)
- :func:`fista`  accelerated proximal gradient for (G) with a smooth loss (§7)
- :func:`cvxpy_solve`  the CVXPY + Clarabel reference (optional dependency)
- :func:`solve`  picks one by name, or the fastest correct one for ``solver="auto"``
"""

from __future__ import annotations

from convexnn.ops import losses
from convexnn.solvers.admm import admm
from convexnn.solvers.cvxpy_ref import cvxpy_solve
from convexnn.solvers.fista import fista
from convexnn.solvers.problem import Certificate, ConvexProblem, SolverResult

SOLVERS = ("auto", "admm", "fista", "cvxpy")


def pick_solver(kind: str, loss: str) -> str:
    """What ``solver="auto"`` runs: FISTA for (G) with a smooth loss, ADMM otherwise."""
    return "fista" if kind == "gated" and loss in losses.SMOOTH else "admm"


def solve(problem: ConvexProblem, solver: str = "auto", tol: float = 1e-6, max_iter: int = 10000,
          **options) -> SolverResult:
    """Solve ``problem`` with the named solver (see :data:`SOLVERS`)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}: expected one of {SOLVERS}")
    if solver == "auto":
        solver = pick_solver(problem.kind, problem.loss)
    if solver == "cvxpy":
        return cvxpy_solve(problem)
    if solver == "fista":
        return fista(problem, tol=tol, max_iter=max_iter, **options)
    return admm(problem, tol=tol, max_iter=max_iter, **options)


__all__ = ["SOLVERS", "Certificate", "ConvexProblem", "SolverResult", "admm", "cvxpy_solve", "fista",
           "pick_solver", "solve"]
