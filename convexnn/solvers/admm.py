"""ADMM for the programs (C) and (G) (MATH.md §6, Bai, Gautam & Sojoudi).

Splitting (scaled form, penalty ρ; for losses other than squared also a copy z = F u with penalty ρ_z):

    min  L(F u) + α Σ_b ‖v_b‖₂ + 1[s ≥ 0]     s.t.  u = v,   G u = s   (G and s only for kind="relu")

    1. u ← argmin ‖u − v + λ‖² + ‖Gu − s + ν‖² + c₀‖Fu − T‖²      (the linear system of linsys.py)
         squared loss:  T = y,      c₀ = 1/(nρ)
         other losses:  T = z − η,  c₀ = ρ_z/ρ
    2. v ← group soft-threshold(u + λ, α/ρ);   s ← (G u + ν)_+;   z ← prox_{L/ρ_z}(F u + η)
    3. λ ← λ + u − v;   ν ← ν + G u − s;   η ← η + F u − z

For the split losses ρ and ρ_z are rescaled together (residual balancing), which leaves c₀ and hence the
factored linear system unchanged. Every ``check_every`` iterations a duality certificate is computed at
a cone-feasible repair of v (:func:`convexnn.ops.certificates.make_feasible`), and the loop stops when
its relative gap is ≤ tol.
"""

from __future__ import annotations

import torch

from convexnn.ops import certificates, losses, operators
from convexnn.solvers.linsys import QSystem, choose_strategy
from convexnn.solvers.problem import Certificate, ConvexProblem, Monitor, SolverResult


def default_rho(problem: ConvexProblem) -> float:
    """Penalty ρ scaled to the data: the loss curvature per sample is 1/n and ‖X‖² sets the scale of
    F; ρ ≈ ‖X‖²_F/(n·d·P) keeps c₀‖F‖² comparable to the identity term."""
    X = problem.X
    return float(torch.sum(X * X)) / (problem.n * problem.d) / max(problem.P, 1) ** 0.5


class _State:
    """Iterates of ADMM; for kind="gated" the cone parts (W, S, Nu) stay None."""

    def __init__(self, pb: ConvexProblem) -> None:
        relu = pb.kind == "relu"
        z = pb.zeros
        self.V, self.Lv = z(), z()
        self.W, self.Lw = (z(), z()) if relu else (None, None)
        shape = (pb.n, pb.P, pb.K)
        self.Sv = pb.X.new_zeros(shape) if relu else None
        self.Sw = pb.X.new_zeros(shape) if relu else None
        self.Nv = pb.X.new_zeros(shape) if relu else None
        self.Nw = pb.X.new_zeros(shape) if relu else None
        self.Z = pb.X.new_zeros((pb.n, pb.K))
        self.Eta = pb.X.new_zeros((pb.n, pb.K))
        self.Uv, self.Uw = z(), (z() if relu else None)


def admm(
    problem: ConvexProblem,
    tol: float = 1e-6,
    max_iter: int = 10000,
    rho: float | None = None,
    strategy: str = "auto",
    check_every: int = 10,
    memory_limit: int = 8 * 2**30,
    warm_start: SolverResult | None = None,
    callback=None,
    max_time: float | None = None,
    cone_scale: float | None = None,
    relax: float = 1.0,
    adaptive_rho: bool = True,
    cg_rtol: float = 1e-3,
) -> SolverResult:
    """Solve (C) or (G) by ADMM. See the module docstring for the iteration.

    Parameters
    ----------
    problem : the program.
    tol : stop when the certificate's relative gap ≤ tol.
    rho : ADMM penalty (default :func:`default_rho`).
    strategy : "cholesky", "woodbury" or "auto" (cheapest that fits in ``memory_limit`` bytes).
    check_every : iterations between certificates.
    warm_start : a previous result on the same patterns; its blocks start v (and u).
    callback : called as ``callback(record)`` with each history record; may raise KeyboardInterrupt.
    max_time : wall-clock limit in seconds.
    cone_scale : σ in the scaled cone constraint (G/σ)u = s (default ‖X‖₂).
    relax : over-relaxation factor (1 = none).
    adaptive_rho : residual balancing of ρ every 5 checks.
    cg_rtol : initial relative tolerance of the PCG u-solves (strategy "pcg").
    """
    pb = problem
    X, D, Y, alpha, loss = pb.X, pb.D, pb.Y, pb.alpha, pb.loss
    relu = pb.kind == "relu"
    split = loss != "squared"
    n = pb.n
    rho = default_rho(pb) if rho is None else float(rho)
    rho_z = 1.0 / n  # curvature of the mean squared loss per sample
    c0 = rho_z / rho if split else 1.0 / (n * rho)
    if strategy == "auto":
        strategy = choose_strategy(n, pb.d, pb.P, pb.K, X.element_size(), memory_limit)
    # The cone constraint is imposed as (G/σ) u = s: same program, better-balanced ADMM (σ ~ ‖X‖₂).
    sigma = float(torch.linalg.matrix_norm(X, ord=2)) if cone_scale is None else float(cone_scale)
    if relu:
        M = X.T @ X / sigma**2
        M.diagonal().add_(1.0)
    else:
        M = torch.eye(pb.d, dtype=X.dtype, device=X.device)
    sysm_M = M
    sysm = QSystem(X, D, M, (2.0 if relu else 1.0) * c0, strategy)
    n_refactor = 0
    # cg_rtol (PCG only): relative residual of the first solves, tightened as the certificate's gap falls

    st = _State(pb)
    if warm_start is not None:
        st.V = warm_start.V.clone()
        st.Uv = st.V.clone()
        if relu and warm_start.W is not None:
            st.W = warm_start.W.clone()
            st.Uw = st.W.clone()
            st.Sv = torch.clamp(operators.cone(X, D, st.V), min=0.0)
            st.Sw = torch.clamp(operators.cone(X, D, st.W), min=0.0)
        if split:
            st.Z = operators.forward(X, D, st.V - st.W if relu else st.V)

    Yt = Y
    monitor = Monitor(tol, callback, max_time)
    it = 0
    for it in range(1, max_iter + 1):
        # 1. u-step
        T = (st.Z - st.Eta) if split else Yt
        FtT = operators.adjoint(X, D, T)
        if relu:
            rv = st.V - st.Lv + operators.cone_adjoint(X, D, st.Sv - st.Nv) / sigma
            rw = st.W - st.Lw + operators.cone_adjoint(X, D, st.Sw - st.Nw) / sigma
            p = sysm.solve_M(rv + rw)
            q = sysm.solve(rv - rw + 2.0 * c0 * FtT, x0=st.Uv - st.Uw, rtol=cg_rtol)
            st.Uv, st.Uw = 0.5 * (p + q), 0.5 * (p - q)
        else:
            st.Uv = sysm.solve(st.V - st.Lv + c0 * FtT, x0=st.Uv, rtol=cg_rtol)
        # 2. v, s, z steps
        V_old = st.V
        if relax != 1.0:  # over-relaxation: the u-step output enters as relax·u + (1 − relax)·v
            st.Uv = relax * st.Uv + (1.0 - relax) * st.V
            if relu:
                st.Uw = relax * st.Uw + (1.0 - relax) * st.W
        st.V = operators.group_soft_threshold(st.Uv + st.Lv, alpha / rho)
        st.Lv += st.Uv - st.V
        if relu:
            st.W = operators.group_soft_threshold(st.Uw + st.Lw, alpha / rho)
            st.Lw += st.Uw - st.W
            GUv, GUw = operators.cone(X, D, st.Uv) / sigma, operators.cone(X, D, st.Uw) / sigma
            st.Sv = torch.clamp(GUv + st.Nv, min=0.0)
            st.Sw = torch.clamp(GUw + st.Nw, min=0.0)
            st.Nv += GUv - st.Sv
            st.Nw += GUw - st.Sw
        if split:
            FU = operators.forward(X, D, st.Uv - st.Uw if relu else st.Uv)
            st.Z = losses.prox(loss, FU + st.Eta, Y, 1.0 / (n * rho_z))
            st.Eta += FU - st.Z

        if it % check_every == 0 or it == max_iter:
            cert, Vf, Wf = _certify(pb, st, rho, rho_z, split, sigma)
            if monitor.check(it, cert, (Vf, Wf), rho=rho):
                break
            cg_rtol = max(min(cg_rtol, 0.1 * cert.relative_gap), 1e-12)
            if adaptive_rho and it % (check_every * 5) == 0:
                # residual balancing (Boyd et al. §3.4.1) on the consensus and cone constraints
                r_pri = float(torch.linalg.vector_norm(st.Uv - st.V))
                r_dual = rho * float(torch.linalg.vector_norm(st.V - V_old))
                if relu:
                    r_pri += float(torch.linalg.vector_norm(st.Uw - st.W))
                if r_pri > 10 * r_dual or r_dual > 10 * r_pri:
                    f = 2.0 if r_pri > r_dual else 0.5
                    rho *= f
                    st.Lv /= f
                    if relu:
                        st.Lw /= f
                        st.Nv /= f
                        st.Nw /= f
                    if split:  # ρ and ρ_z together: c₀ = ρ_z/ρ and the factorisation stay as they are
                        rho_z *= f
                        st.Eta /= f
                    else:  # c₀ = 1/(nρ) changed: refactor
                        c0 = 1.0 / (n * rho)
                        sysm = QSystem(X, D, sysm_M, (2.0 if relu else 1.0) * c0, strategy)
                    n_refactor += 1
    assert monitor.best is not None
    cert, (Vf, Wf) = monitor.best
    # the raw iterates and cone multipliers (−Nv ≈ μ ≥ 0): a better start for polishing than the repair
    raw = {"V_raw": st.V, "W_raw": st.W}
    if relu:
        raw.update(Nv=rho * st.Nv / sigma, Nw=rho * st.Nw / sigma)
    return SolverResult(
        V=Vf, W=Wf, certificate=cert, n_iter=it, converged=monitor.converged, solver="admm",
        history=monitor.history, info={"strategy": strategy, "rho": rho, "cone_scale": sigma, "rho_updates": n_refactor,
              "cg_iterations": sysm.cg_iters, **raw},
    )


def _certify(pb: ConvexProblem, st: _State, rho: float, rho_z: float, split: bool, sigma: float = 1.0):
    """Certificate at the current iterate: primal at a feasible point, best of two dual candidates."""
    X, D, Y, alpha, loss = pb.X, pb.D, pb.Y, pb.alpha, pb.loss
    if pb.kind == "relu":
        Vf = certificates.make_feasible(X, D, pb.H, st.V)
        Wf = certificates.make_feasible(X, D, pb.H, st.W)
        pred = operators.forward(X, D, Vf - Wf)
        primal = losses.value(loss, pred, Y) + alpha * (
            operators.group_norms(Vf).sum(0) + operators.group_norms(Wf).sum(0)
        )
        cands = [losses.grad(loss, pred, Y)]
        if split:
            cands.append(rho_z * st.Eta)
        # unscaled cone multipliers are ρν; the dual's μ = −ρν ≥ 0
        duals = [
            certificates.dual_value_relu(X, D, Y, lam, -rho * st.Nv / sigma, -rho * st.Nw / sigma, alpha, loss)
            for lam in cands
        ]
    else:
        Vf, Wf = st.V, None
        pred = operators.forward(X, D, Vf)
        primal = losses.value(loss, pred, Y) + alpha * operators.group_norms(Vf).sum(0)
        cands = [losses.grad(loss, pred, Y)]
        if split:
            cands.append(rho_z * st.Eta)
        duals = [certificates.dual_value_gated(X, D, Y, lam, alpha, loss) for lam in cands]
    dual = torch.stack(duals).amax(0)  # per column, the best valid bound
    cert = Certificate(primal=float(primal.sum()), dual=float(dual.sum()))
    return cert, Vf, Wf
