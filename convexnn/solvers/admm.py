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

Large (C) with the squared loss: the *prediction split* (:func:`admm_relu_split`, ``splitting="prediction"``)
copies every block's predictions z_j = X u_j instead, so that the u-step is ONE d×d system for all blocks
and the loss and the cone constraints meet in a per-sample problem solved exactly; see that function.
"""

from __future__ import annotations

import torch

from convexnn.ops import certificates, losses, operators
from convexnn.solvers import fused
from convexnn.solvers.linsys import QSystem, choose_strategy, lstsq, spd_cholesky
from convexnn.solvers.problem import Certificate, ConvexProblem, Monitor, SolverResult

SPLIT_SIZE = 20_000_000  # n·d·P from which splitting="auto" uses the prediction split for (C), squared loss


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
    splitting: str = "auto",
    iter_dtype: torch.dtype | None = None,
    stall_after: int | None = None,
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
    splitting : "loss" (the splitting above), "prediction" (:func:`admm_relu_split`; kind="relu" with the
        squared loss only) or "auto": "prediction" for kind="relu", squared loss, ``strategy="auto"`` and
        n·d·P ≥ :data:`SPLIT_SIZE`, else "loss".
    iter_dtype : dtype of the iteration of the prediction split (e.g. torch.float32 for speed); its
        certificate is always computed in the problem's dtype.
    stall_after : stop early when the gap stalls, from this iteration on (see
        :class:`~convexnn.solvers.problem.Monitor`); ``info["stalled"]`` says whether it did. None: never.
    """
    pb = problem
    if splitting not in ("auto", "loss", "prediction"):
        raise ValueError(f"unknown splitting {splitting!r}: expected 'auto', 'loss' or 'prediction'")
    if splitting == "auto":
        big = pb.n * pb.d * pb.P >= SPLIT_SIZE
        splitting = "prediction" if (pb.kind == "relu" and pb.loss == "squared" and strategy == "auto"
                                     and big) else "loss"
    if splitting == "prediction":
        return admm_relu_split(pb, tol=tol, max_iter=max_iter, rho=rho, check_every=check_every,
                               memory_limit=memory_limit, warm_start=warm_start, callback=callback,
                               max_time=max_time, relax=relax, adaptive_rho=adaptive_rho, iter_dtype=iter_dtype,
                               stall_after=stall_after)
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
            st.Sv = torch.clamp(operators.cone(X, D, st.V) / sigma, min=0.0)
            st.Sw = torch.clamp(operators.cone(X, D, st.W) / sigma, min=0.0)
        if split:
            st.Z = operators.forward(X, D, st.V - st.W if relu else st.V)

    Yt = Y
    monitor = Monitor(tol, callback, max_time, stall_after)
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
              "cg_iterations": sysm.cg_iters, "stalled": monitor.stalled, **raw},
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


# ----------------------------------------------------------------------------------------------------
# the prediction split for (C) with the squared loss


def _zstep_exact(C: torch.Tensor, on: torch.Tensor, Y: torch.Tensor, kappa: float) -> torch.Tensor:
    """The root τ (n, K) of φ(τ) = Σ_on (c_v − τ)_+ − Σ_on (c_w + τ)_+ − y − κτ, exactly, by sorting.

    C (n, 2P, K) holds the v-blocks then the w-blocks, ``on`` (n, 2P, 1) the patterns. φ is piecewise linear
    and strictly decreasing (slope ≤ −κ); its breakpoints are c_v (a v-term switches off) and −c_w (a w-term
    switches on). φ at every breakpoint comes from cumulative sums in sorted order; the root lies after the
    last breakpoint with φ ≥ 0, where φ is linear.
    """
    n, P2, K = C.shape
    P = P2 // 2
    onv, onw = on[:, :P].expand(-1, -1, K), on[:, P:].expand(-1, -1, K)
    b = torch.cat([torch.where(onv, C[:, :P], 0.0), torch.where(onw, -C[:, P:], 0.0)], 1)
    fv = torch.cat([onv, torch.zeros_like(onw)], 1).to(C.dtype)
    fw = torch.cat([torch.zeros_like(onv), onw], 1).to(C.dtype)
    bs, idx = torch.sort(b, dim=1)
    fv, fw = torch.gather(fv, 1, idx), torch.gather(fw, 1, idx)
    cnt_v, sum_v = torch.cumsum(fv, 1), torch.cumsum(fv * bs, 1)  # v-breakpoints ≤ b_j
    cnt_w, sum_w = torch.cumsum(fw, 1), torch.cumsum(fw * bs, 1)  # w-breakpoints ≤ b_j
    av, sv = cnt_v[:, -1:] - cnt_v, sum_v[:, -1:] - sum_v  # active v-terms just above b_j
    phi = (sv - av * bs) - (cnt_w * bs - sum_w) - Y[:, None, :] - kappa * bs
    j = (phi >= 0).sum(1, keepdim=True) - 1
    jc = j.clamp(min=0)
    none = j < 0  # the root lies below every breakpoint: all v-terms on, no w-term

    def at(A: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        return torch.where(none, first, torch.gather(A, 1, jc))

    a_v, s_v = at(av, cnt_v[:, -1:]), at(sv, sum_v[:, -1:])
    a_w, s_w = at(cnt_w, torch.zeros_like(sv[:, :1])), at(sum_w, torch.zeros_like(sv[:, :1]))
    return ((s_v + s_w - Y[:, None, :]) / (a_v + a_w + kappa))[:, 0, :]


def zstep(C: torch.Tensor, on: torch.Tensor, Y: torch.Tensor, kappa: float, tau0: torch.Tensor | None = None,
          newton_iters: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss-and-cone step of the prediction split, exactly, for every sample at once.

    For each sample k and output column: minimise over z (2P values)

        (1/2n)(Σ_{j on} s_j z_j − y)² + (ρ_z/2) Σ_j (z_j − c_j)²   s.t.  z_j ≥ 0 where D_kj = 1, z_j ≤ 0 elsewhere

    (s_j = +1 for v-blocks, −1 for w-blocks). Off-pattern entries give z_j = min(c_j, 0); on-pattern entries
    z_v = (c_v − τ)_+, z_w = (c_w + τ)_+ with τ = (a − y)/(nρ_z) the root of the φ of :func:`_zstep_exact`
    (κ = nρ_z). Newton steps warm-started from ``tau0`` settle most samples (φ is piecewise linear: a step that
    keeps the active terms is exact); the rest are solved by sorting. Returns (Z (n, 2P, K), τ (n, K)).
    """
    n, P2, K = C.shape
    P = P2 // 2
    ninf = torch.tensor(-float("inf"), dtype=C.dtype, device=C.device)
    cv = torch.where(on[:, :P], C[:, :P], ninf)
    cw = torch.where(on[:, P:], C[:, P:], ninf)
    eps = torch.finfo(C.dtype).eps
    tau = torch.zeros_like(Y) if tau0 is None else tau0.clone()
    done = torch.zeros_like(Y, dtype=torch.bool)
    for _ in range(newton_iters if tau0 is not None else 0):
        t = tau[:, None, :]
        ev, ew = torch.clamp(cv - t, min=0.0), torch.clamp(cw + t, min=0.0)
        sv, sw = ev.sum(1), ew.sum(1)
        phi = sv - sw - Y - kappa * tau
        done = torch.abs(phi) <= 64 * eps * (1.0 + torch.abs(Y) + sv + sw + kappa * torch.abs(tau))
        if bool(done.all()):
            break
        slope = (ev > 0).sum(1).to(C.dtype) + (ew > 0).sum(1).to(C.dtype) + kappa
        tau = torch.where(done, tau, tau + phi / slope)
    else:
        if tau0 is not None:  # was the last Newton step exact?
            t = tau[:, None, :]
            sv, sw = torch.clamp(cv - t, min=0.0).sum(1), torch.clamp(cw + t, min=0.0).sum(1)
            phi = sv - sw - Y - kappa * tau
            done = torch.abs(phi) <= 64 * eps * (1.0 + torch.abs(Y) + sv + sw + kappa * torch.abs(tau))
    rows = torch.nonzero(~done.all(1))[:, 0]
    if rows.numel() > 0:
        tau = tau.clone()
        tau[rows] = _zstep_exact(C[rows], on[rows], Y[rows], kappa)
    return _z_at(C, on, tau), tau


def _z_at(C: torch.Tensor, on: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """The z-step's z given τ (n, K): (c_v − τ)_+ and (c_w + τ)_+ on the patterns, min(c, 0) elsewhere."""
    P = C.shape[1] // 2
    t = tau[:, None, :]
    return torch.where(on, torch.cat([torch.clamp(C[:, :P] - t, min=0.0), torch.clamp(C[:, P:] + t, min=0.0)], 1),
                       torch.clamp(C, max=0.0))


def split_dual_bound(X: torch.Tensor, D2: torch.Tensor, sgn: torch.Tensor, Y: torch.Tensor, Lam: torch.Tensor,
                     Mu: torch.Tensor, alpha: float) -> torch.Tensor:
    """Lower bound on (C) per column (K,) (squared loss) from Λ (n, K) and cone multipliers μ (n, 2P, K).

    Same bound as :func:`convexnn.ops.certificates.dual_value_relu` (Λ scaled by s = min(1, α / max_j ‖r_j‖)),
    with the block residuals r_j = Xᵀ(s_j D_j Λ − (2D_j − I) μ_j) of all 2P blocks (v then w, s_j = ±1) in
    one matrix product. μ is clamped at 0, so any input gives a valid bound.
    """
    Mu = torch.clamp(Mu, min=0.0)
    S = (sgn[None, :, None] * D2[:, :, None]) * Lam[:, None, :] - (2.0 * D2 - 1.0)[:, :, None] * Mu
    worst = operators.group_norms(operators.xt(X, S)).amax(0)
    s = torch.clamp(alpha / torch.clamp(worst, min=torch.finfo(X.dtype).tiny), max=1.0)
    return -losses.conjugate("squared", Lam * s, Y)


def repair_to_cone(X: torch.Tensor, D2: torch.Tensor, V: torch.Tensor, XV: torch.Tensor, rounds: int = 4,
                   max_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A cone-feasible point near the blocks V (B, d, K) by least-norm corrections of their low rows.

    For each non-zero block, the rows r with (G v)_r < θ_r (θ_r = 4·eps·‖x_r‖‖v‖, a rounding margin) are
    pinned: v ← v + G_Aᵀ(G_A G_Aᵀ)⁻¹(θ_A − G_A v)_+, the least-norm change that lifts them to θ (rows already
    above θ stay where they are); rows that the change pushes below θ join A in the next round. All blocks
    are done together, padded to the largest A. ``XV`` = X V (n, B, K). Returns (V', X V', ok (B, K)),
    ok = every row of the block ≥ 0 (blocks with more than ``max_rows`` (default min(d/2, 128)) low rows are left
    as they were, not ok).
    """
    n, d = X.shape
    B, _, K = V.shape
    max_rows = min(d // 2, 128) if max_rows is None else max_rows
    sg = 2.0 * D2 - 1.0  # (n, B)
    Vf, XVf = V.clone(), XV.clone()
    flat = torch.nonzero(operators.group_norms(V).reshape(-1) > 0)[:, 0]
    ok = (sg[:, :, None] * XV).amin(0) >= 0
    if flat.numel() == 0:
        return Vf, XVf, ok
    bi, ki = flat // K, flat % K
    Vb = V[bi, :, ki]  # (m, d)
    S = sg[:, bi].T  # (m, n)
    GV = S * XV[:, bi, ki].T  # (m, n)
    eps = torch.finfo(X.dtype).eps
    tgt = 4 * eps * torch.linalg.vector_norm(X, dim=1)[None, :] * torch.linalg.vector_norm(Vb, dim=1, keepdim=True)
    pinned = torch.zeros_like(GV, dtype=torch.bool)
    active = torch.ones(Vb.shape[0], dtype=torch.bool, device=X.device)
    for _ in range(rounds):
        low = (GV < tgt) & active[:, None]
        if not bool(low.any()):
            break
        pinned |= low
        cnt = pinned.sum(1)
        active &= cnt <= max_rows
        pinned &= active[:, None]
        m = int(cnt[active].max()) if bool(active.any()) else 0
        if m == 0:
            break
        order = torch.argsort((~pinned).to(torch.int8), dim=1, stable=True)[:, :m]  # pinned rows first
        valid = torch.gather(pinned, 1, order)
        GA = X[order] * (torch.gather(S, 1, order) * valid)[:, :, None]  # (m_blocks, m, d)
        rhs = torch.clamp(torch.gather(tgt - GV, 1, order), min=0.0) * valid
        Gram = GA @ GA.transpose(1, 2) + torch.diag_embed((~valid).to(X.dtype))
        Lc, info = torch.linalg.cholesky_ex(Gram)
        if bool((info == 0).all()):
            sol = torch.cholesky_solve(rhs[:, :, None], Lc)
        else:
            sol = lstsq(Gram, rhs[:, :, None])
        delta = (GA.transpose(1, 2) @ sol)[:, :, 0]
        Vb = Vb + delta
        GV = GV + S * (delta @ X.T)
    XVb = Vb @ X.T  # (m, n)
    good = ((S * XVb).amin(1) >= 0) & active
    Vf[bi[good], :, ki[good]] = Vb[good]
    XVf[:, bi[good], ki[good]] = XVb[good].T
    ok = (sg[:, :, None] * XVf).amin(0) >= 0
    return Vf, XVf, ok


def admm_relu_split(
    problem: ConvexProblem,
    tol: float = 1e-6,
    max_iter: int = 10000,
    rho: float | None = None,
    rho_z: float | None = None,
    check_every: int = 10,
    memory_limit: int = 8 * 2**30,
    warm_start: SolverResult | None = None,
    callback=None,
    max_time: float | None = None,
    relax: float = 1.0,
    adaptive_rho: bool = True,
    iter_dtype: torch.dtype | None = None,
    fused_zstep: bool | None = None,
    stall_after: int | None = None,
) -> SolverResult:
    """ADMM for (C) with the squared loss, splitting the blocks' predictions (for large n·d·P).

    With the 2P blocks u = (v_1..v_P, w_1..w_P) (s_j = ±1) and copies v of u and z_j = X u_j of their
    predictions:

        min (1/2n)‖Σ_j s_j D_j z_j − y‖² + 1[(2D_j − I) z_j ≥ 0 ∀j] + α Σ_j ‖v_j‖₂   s.t.  u = v,  X u_j = z_j

    Scaled ADMM with penalties ρ (u = v) and ρ_z (Xu = z), γ = ρ_z/ρ:

        1. u ← (I + γXᵀX)⁻¹ (v − λ + γ Xᵀ(z − ν))        one d×d Cholesky for every block; two products
        2. v ← group soft-threshold(u + λ, α/ρ)          with X per iteration: Xᵀ(z − ν) and X u
        3. z ← the per-sample problem of :func:`zstep` at c = X u + ν   (loss and cone, exact)
        4. λ ← λ + u − v;   ν ← ν + X u − z

    (with over-relaxation ``relax``, u and Xu enter steps 2–4 as relax·(·) + (1 − relax)·(v, z)).
    Every iteration costs O(ndP) (two products with X) + O(d²P) + O(nP), memory O(nP + dP + d²).

    Certificate (every ``check_every`` iterations, in the problem's dtype): the dual candidate is
    Λ = ρ_z τ (the z-step's loss gradient) with the cone multipliers μ_j = (2D_j − I)(s_j D_j Λ − ρ_z ν_j),
    which step 3's optimality conditions make ≥ 0 (:func:`split_dual_bound`), or Λ = ∇L at the primal point
    with the same formula (μ clamped at 0), whichever bound is higher; the primal is the objective at
    :func:`repair_to_cone` of v (blocks it cannot repair: the better of a gate step and zero). ρ and ρ_z are
    balanced every five checks on the residuals of their constraints (factor 2; refactoring is d×d).

    ``fused_zstep``: step 3 (with ν's update and the next step 1's z − ν) as one GPU kernel
    (:mod:`convexnn.solvers.fused`: five passes over the (n, 2P, K) arrays instead of about thirty); None
    uses it when X is on CUDA and Triton is installed. Same iterates up to rounding. ``stall_after``: as for
    :func:`admm`.
    """
    pb = problem
    if pb.kind != "relu" or pb.loss != "squared":
        raise ValueError("the prediction split handles kind='relu' with the squared loss")
    X64, D, Y64, alpha = pb.X, pb.D, pb.Y, float(pb.alpha)
    n, d, P, K = pb.n, pb.d, pb.P, pb.K
    dt = X64.dtype if iter_dtype is None else iter_dtype
    itemsize = torch.finfo(dt).bits // 8
    need = itemsize * (9 * n * 2 * P * K + 6 * 2 * P * d * K + 2 * d * d) + X64.element_size() * 4 * n * 2 * P * K
    if need > memory_limit:
        raise MemoryError(
            f"ADMM (prediction split) for n={n}, d={d}, P={P}, K={K} needs about {need / 2**30:.1f} GiB, more than "
            f"the {memory_limit / 2**30:.1f} GiB allowed (memory_limit): use fewer patterns or a subset of rows"
        )
    X, Y = X64.to(dt), Y64.to(dt)
    D2_64 = torch.cat([D, D], 1)
    D2 = D2_64.to(dt)
    on = (D2 > 0)[:, :, None]
    sgn64 = torch.cat([X64.new_ones(P), -X64.new_ones(P)])
    H2 = torch.cat([pb.H, pb.H], 1)
    rho_z = 1.0 / n if rho_z is None else float(rho_z)
    rho = alpha if rho is None else float(rho)

    def factor(gam: float) -> torch.Tensor:
        M = gam * (X.T @ X)
        M.diagonal().add_(1.0)
        return spd_cholesky(M)

    LM = factor(rho_z / rho)
    V = X.new_zeros((2 * P, d, K))
    if warm_start is not None:
        V = torch.cat([warm_start.V, warm_start.W if warm_start.W is not None else torch.zeros_like(warm_start.V)])
        V = V.to(dt)
    Lv = torch.zeros_like(V)
    Z = operators.xu(X, V)
    Z = torch.where(on, torch.clamp(Z, min=0.0), torch.clamp(Z, max=0.0))
    Nu = torch.zeros_like(Z)
    Rz = Z  # z − ν, the u-step's input
    tau: torch.Tensor | None = None
    if fused_zstep is None:
        fused_zstep = X.device.type == "cuda" and fused.usable(X.device)
    elif fused_zstep and not fused.usable(X.device):
        raise ValueError(f"fused_zstep=True needs Triton and the problem on a CUDA device (it is on {X.device})")
    on_p = D > 0
    monitor = Monitor(tol, callback, max_time, stall_after)
    n_updates = 0
    it = 0
    for it in range(1, max_iter + 1):
        gam = rho_z / rho
        R = (V - Lv) + gam * operators.xt(X, Rz)
        U = torch.cholesky_solve(R.permute(1, 0, 2).reshape(d, 2 * P * K), LM).reshape(d, 2 * P, K).permute(1, 0, 2)
        XU = operators.xu(X, U)
        if relax != 1.0:
            XU = relax * XU + (1.0 - relax) * Z
            U = relax * U + (1.0 - relax) * V
        V_old, Z_old = V, Z
        V = operators.group_soft_threshold(U + Lv, alpha / rho)
        Lv = Lv + U - V
        if fused_zstep:
            Z, Nu_new, Rz, tau, done = fused.zstep_fused(XU, Nu, on_p, Y, n * rho_z, tau)
            rows = torch.nonzero(~done.all(1))[:, 0]
            if rows.numel() > 0:  # samples the kernel's safeguarded Newton did not settle: exactly, by sorting
                Cr = XU[rows] + Nu[rows]
                tau[rows] = _zstep_exact(Cr, on[rows], Y[rows], n * rho_z)
                Zr = _z_at(Cr, on[rows], tau[rows])
                Z[rows], Nu_new[rows] = Zr, Cr - Zr
                Rz[rows] = Zr - (Cr - Zr)
            Nu = Nu_new
        else:
            Cz = XU + Nu
            Z, tau = zstep(Cz, on, Y, n * rho_z, tau)
            Nu = Cz - Z
            Rz = Z - Nu
        if it % check_every == 0 or it == max_iter:
            cert, Vf = _split_certificate(pb, D2_64, sgn64, H2, V, Nu, tau, rho_z)
            if monitor.check(it, cert, (Vf[:P], Vf[P:]), rho=rho, rho_z=rho_z):
                break
            if adaptive_rho and it % (5 * check_every) == 0:
                r_u = float(torch.linalg.vector_norm(U - V))
                s_u = rho * float(torch.linalg.vector_norm(V - V_old))
                r_z = float(torch.linalg.vector_norm(XU - Z))
                s_z = rho_z * float(torch.linalg.vector_norm(operators.xt(X, Z - Z_old)))
                f = 2.0 if r_u > 10 * s_u else (0.5 if s_u > 10 * r_u else 1.0)
                g = 2.0 if r_z > 10 * s_z else (0.5 if s_z > 10 * r_z else 1.0)
                if f != 1.0 or g != 1.0:
                    rho, rho_z = rho * f, rho_z * g
                    Lv, Nu = Lv / f, Nu / g
                    Rz = Z - Nu
                    LM = factor(rho_z / rho)
                    n_updates += 1
    assert monitor.best is not None
    cert, (Vf, Wf) = monitor.best
    # the returned point: exactly feasible by the same test as everywhere else (a no-op when it already is)
    Vf = certificates.make_feasible(X64, D, pb.H, Vf)
    Wf = certificates.make_feasible(X64, D, pb.H, Wf)
    primal = float(pb.objective(Vf, Wf).sum())
    if primal != cert.primal:
        cert = Certificate(primal=primal, dual=cert.dual)
    V64, Nu64 = V.to(X64.dtype), Nu.to(X64.dtype)
    Mu = _split_mu(D2_64, sgn64, rho_z * tau.to(X64.dtype), rho_z * Nu64) if tau is not None else None
    info = {"strategy": "prediction-split", "rho": rho, "rho_z": rho_z, "rho_updates": n_updates,
            "iter_dtype": str(dt).replace("torch.", ""), "V_raw": V64[:P], "W_raw": V64[P:], "stalled": monitor.stalled}
    if Mu is not None:  # −μ, the convention of the loss split's info["Nv"] (μ ≈ −Nv)
        info.update(Nv=-Mu[:, :P], Nw=-Mu[:, P:])
    return SolverResult(V=Vf, W=Wf, certificate=cert, n_iter=it, converged=cert.relative_gap <= tol, solver="admm",
                        history=monitor.history, info=info)


def _split_mu(D2: torch.Tensor, sgn: torch.Tensor, Lam: torch.Tensor, RNu: torch.Tensor) -> torch.Tensor:
    """μ_j = (2D_j − I)(s_j D_j Λ − ρ_z ν_j), shape (n, 2P, K) (≥ 0 up to rounding after a z-step)."""
    return (2.0 * D2 - 1.0)[:, :, None] * ((sgn[None, :, None] * D2[:, :, None]) * Lam[:, None, :] - RNu)


def _split_certificate(pb: ConvexProblem, D2: torch.Tensor, sgn: torch.Tensor, H2: torch.Tensor, V: torch.Tensor,
                       Nu: torch.Tensor, tau: torch.Tensor, rho_z: float) -> tuple[Certificate, torch.Tensor]:
    """Certificate of the prediction split in the problem's dtype: (certificate, feasible blocks (2P, d, K))."""
    X, Y, alpha = pb.X, pb.Y, float(pb.alpha)
    V = V.to(X.dtype)
    Lam = rho_z * tau.to(X.dtype)
    dual = split_dual_bound(X, D2, sgn, Y, Lam, _split_mu(D2, sgn, Lam, rho_z * Nu.to(X.dtype)), alpha)
    nz = torch.nonzero((operators.group_norms(V) > 0).any(1))[:, 0]
    Vf = V.clone()
    if nz.numel() > 0:
        XV = operators.xu(X, V[nz])
        Vr, XVr, ok = repair_to_cone(X, D2[:, nz], V[nz], XV)
        bad = ~ok  # (m, K): blocks the least-norm lift could not fix
        if bool(bad.any()):
            gate = certificates.make_feasible(X, D2[:, nz], H2[:, nz], Vr)
            cands = [torch.where(bad[:, None, :], gate, Vr), torch.where(bad[:, None, :], 0.0, Vr)]
            objs = []
            for c in cands:
                pred = torch.einsum("nb,nbk->nk", D2[:, nz] * sgn[nz], operators.xu(X, c))
                objs.append(losses.value("squared", pred, Y) + alpha * operators.group_norms(c).sum(0))
            Vr = cands[0] if float(objs[0].sum()) <= float(objs[1].sum()) else cands[1]
            XVr = operators.xu(X, Vr)
        Vf[nz] = Vr
        pred = torch.einsum("nb,nbk->nk", D2[:, nz] * sgn[nz], XVr)
    else:
        pred = torch.zeros_like(Y)
    primal = losses.value("squared", pred, Y) + alpha * operators.group_norms(Vf).sum(0)
    # second candidate: Λ = ∇L at the feasible point, with the same ν-based multipliers (clamped at 0)
    Lam2 = losses.grad("squared", pred, Y)
    dual2 = split_dual_bound(X, D2, sgn, Y, Lam2, _split_mu(D2, sgn, Lam2, rho_z * Nu.to(X.dtype)), alpha)
    dual = torch.maximum(dual, dual2)
    return Certificate(primal=float(primal.sum()), dual=float(dual.sum())), Vf
