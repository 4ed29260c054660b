"""The Newton methods of (C) and (G): active-set Newton polishing, interior-point identification, the hinge
loss's barrier method, and their certificates (MATH.md §3, §4, §8).

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

Modules, one idea each:
  :mod:`.column`          one output column in block form; the losses' derivatives
  :mod:`.nnls`            non-negative least squares for the cone multipliers
  :mod:`.newton_system`   the interior-point Newton matrix, its factorization and cost model
  :mod:`.active_set`      the active-set Newton method, its working-set guess and the lift to the cones
  :mod:`.certificate`     the certificate of a column's point
  :mod:`.interior_point`  the interior-point method (squared and logistic losses)
  :mod:`.hinge`           the hinge loss's barrier, interior-point and reduced Newton methods
  :mod:`.diagnostics`     what a call reports; the deadline its columns share
  :mod:`.driver`          :func:`polish`, the entry point
"""

from convexnn.solvers.newton.active_set import active_set_bytes
from convexnn.solvers.newton.certificate import dual_certificate
from convexnn.solvers.newton.column import POLISH_LOSSES
from convexnn.solvers.newton.diagnostics import PolishInfo
from convexnn.solvers.newton.driver import polish
from convexnn.solvers.newton.newton_system import IPM_MAX_FLOPS, ipm_cost

__all__ = ["IPM_MAX_FLOPS", "POLISH_LOSSES", "PolishInfo", "active_set_bytes", "dual_certificate", "ipm_cost", "polish"]
