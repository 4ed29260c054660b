"""The hinge loss (piecewise linear): a barrier method (:func:`_hinge_barrier`), a primal-dual interior-point method
that starts it for (C) (:func:`_hinge_ipm`), and Newton on the identified reduced problem — support, working sets
and the samples at the kink (:func:`_hinge_reduced`, LU where its KKT system is regular, else least squares) —
with the certificates of their points (:func:`_hinge_certificate`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import torch

from convexnn.ops import certificates, losses, operators
from convexnn.solvers.linsys import lstsq
from convexnn.solvers.newton.active_set import _initial_working_sets, _lift_to_cone
from convexnn.solvers.newton.certificate import _column_certificate
from convexnn.solvers.newton.column import _Column
from convexnn.solvers.newton.diagnostics import PolishInfo, _Deadline
from convexnn.solvers.newton.interior_point import (
    _gate_start,
    _max_step,
    _norm_barrier_hessian,
    _NormCones,
    _report,
    _Scratch,
)
from convexnn.solvers.newton.newton_system import _IPMSystem, _outer_rows, _weighted_grams

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


def _hinge_column(col: _Column, info: PolishInfo, target: float, max_iter: int, deadline: _Deadline,
                  progress: Callable[[dict], None] | None, column: int) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                                torch.Tensor, float]:
    """One output column of a hinge-loss program: ((C): the interior-point method from the gates,) the barrier method
    (``max_iter`` Newton steps at most), then Newton on the identified reduced problem, to the relative gap
    ``target``. Returns (blocks x (nb, d), cone multipliers μ (nb, n) or None, the hinge dual u (n,) (Λ = −u·y),
    its certified relative gap); diagnostics into ``info``."""
    relu = col.relu

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
                                             deadline=deadline, progress=progress, column=column)
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
        x, mu, u, _ = _hinge_barrier(col, info, gap_tol=target, max_iter=max_iter,
                                     deadline=deadline, finish=finish, start=start)
        # judged as its reduced Newton points were, and as polish certifies; out of time, without the NNLS
        # repair (its certificate as the interior-point one is measured: vehicle, max_time 10 s, the repair of
        # two columns' points ran 0.9 s past the limit)
        gap = (_hinge_gap if deadline.passed() else _hinge_repaired_gap)(col, x, mu, u)
        if gap_i < gap:  # the barrier method did not improve on its start (time limit, centering failed)
            x, mu, u, gap = xi, mui, ui, gap_i
    return x, mu, u, gap
