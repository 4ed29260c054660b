"""The primal-dual interior-point method for (C) with the squared or logistic loss (:func:`_ipm`): Mehrotra
predictor-corrector on the cone rows and on the group norms as second-order cones with Nesterov–Todd scaling
(:class:`_NormCones`), infeasible start from the gates. It runs to a certified gap (every iterate past the first
phase is certified) or to a point whose slacks and multipliers give the active-set method its working sets."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import torch

from convexnn.ops import losses, soc
from convexnn.solvers.newton.certificate import _relu_dual_bound
from convexnn.solvers.newton.column import _Column, _loss_grad, _loss_hess, _loss_value
from convexnn.solvers.newton.diagnostics import PolishInfo, _Deadline
from convexnn.solvers.newton.newton_system import _IPMSystem, _outer_rows, _weighted_grams, ipm_cost


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

# the interior-point method's iteration limit (polish's ipm_max_iter). Over the default fits of bench_defaults (600
# rows, squared loss: 52 fits, 148 runs; logistic: 42 fits, 138 runs; one thread) the runs that stop by their gap or
# stagnation take at most 73 iterations; the one run that reached the former limit of 80 still improving, raw adult
# with the logistic loss, certifies 7.9e-7 at iteration 90 (0.8 s; it ended at 1.4e-3, and after the active-set runs
# uncertified at 1.9e-6 in 4.6 s). Raw 197_cpu_act stagnates at its iteration 80 either way.
IPM_MAX_ITER = 150


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


def _ipm(col: _Column, info: PolishInfo, gap_tol: float = 1e-5, max_iter: int = IPM_MAX_ITER,
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
