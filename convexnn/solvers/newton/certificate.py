"""Certificates of a column's point (MATH.md §8): the primal at the point made exactly cone-feasible, the dual bound
of :mod:`convexnn.ops.certificates` at a loss-dual candidate Λ and cone multipliers μ ≥ 0 (NNLS-repaired where they
fall short, and Λ itself repaired where the blocks in use exceed α: :func:`_loss_dual_repair`). Any candidates give a
valid bound; these functions choose candidates that make it tight."""

from __future__ import annotations

import torch

from convexnn.ops import certificates, losses, operators
from convexnn.solvers.newton.active_set import ROUNDING_MARGIN, _lift_to_cone
from convexnn.solvers.newton.column import _Column, _loss_grad
from convexnn.solvers.newton.nnls import _nnls
from convexnn.solvers.problem import Certificate, ConvexProblem


def _loss_dual_repair(col: _Column, lam: torch.Tensor, R: torch.Tensor, near: float = 1e-4) -> torch.Tensor:
    """Λ − δ: the least-norm change of the loss dual Λ (n,) that brings the residual norm ‖r_b‖ of every block
    above α(1 − ``near``) to at most α, to first order, for the residuals R = C(Λ) − Gᵀμ (nb, d) of fixed μ.

    Why: at an exact solution, a block in use has r_b = −α x̂_b with G_bᵀμ_b the projection of c_b on the cone
    {G_bᵀμ : μ ≥ 0} (Moreau: x̂_b is in the polar of that cone and orthogonal to G_bᵀμ_b), so no μ brings ‖r_b‖
    below α; a Λ accurate to ε leaves it at α(1 + O(ε)), and the bound's scaling s = α/max_b‖r_b‖ then costs that
    relative O(ε). On chess standardised (600 rows, 152 blocks near α) the interior-point iterate's Λ had
    max ‖r_b‖/α = 1 + 1.5e-6 and its certificate stalled at a relative gap of 1.1e-6; the repair moves Λ by
    ‖δ‖ = 1.8e-9, to 1 + 1e-10, and the gap reads 1.7e-7. The constraints are linear in δ: r̂_bᵀ c_b(δ) =
    ‖r_b‖ − min(‖r_b‖, α(1 − 1e-12)), c_b(δ) = s_b Xᵀ D_i δ, i.e. A δ = e with rows a_b = Dm_b ⊙ (X r̂_b) (k, n);
    δ = Aᵀ(AAᵀ)⁻¹e (a rounding-level ridge: two blocks of one pattern give dependent rows). Any Λ' gives a valid
    bound; the caller keeps the better of the two."""
    res = torch.linalg.vector_norm(R, dim=1)
    idx = torch.nonzero(res > col.alpha * (1.0 - near))[:, 0]
    rh = R[idx] / res[idx, None]
    A = col.Dm[idx] * (rh @ col.X.T)
    e = res[idx] - torch.clamp(res[idx], max=col.alpha * (1.0 - 1e-12))
    AA = A @ A.T
    AA.diagonal().add_(1e-14 * float(AA.diagonal().max()) + torch.finfo(AA.dtype).tiny)
    return lam - A.T @ torch.linalg.solve(AA, e)


def _relu_dual_bound(col: _Column, lam: torch.Tensor, mu: torch.Tensor, steps: int = 0,
                     Lx: float | None = None) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The certificate's lower bound for one column of (C) at loss-dual candidate Λ (n,) and cone
    multipliers μ (nb, n): Λ projected on dom L*, r_b = ‖c_b − G_bᵀμ_b‖ (c_b = s_b Xᵀ D_i Λ), then
    −L*(s Λ) with s = min(1, α / max_b r_b) — exactly :func:`certificates.dual_value_relu`. Before that,
    ``steps`` accelerated projected-gradient steps on ½‖c_b − G_bᵀμ_b‖² (step 1/``Lx``, Lx = ‖X‖₂²; those of
    :func:`_nnls`, each block's best iterate kept where it lowers r_b) for the blocks with r_b > α; after it,
    where some r_b > α, the same bound at the repaired Λ of :func:`_loss_dual_repair`, if higher. Returns
    (bound, the μ used, the Λ used)."""
    y = col.y[:, None]
    lam = losses.project_dual(col.loss, lam[:, None], y)[:, 0]
    c = col.block_grad(lam)
    mu = torch.clamp(mu, min=0.0)
    Gmu = torch.mul(col.Sg, mu) @ col.X  # G_bᵀμ_b per block (nb, d)
    res = torch.linalg.vector_norm(c - Gmu, dim=1)
    bad = torch.nonzero(res > col.alpha)[:, 0]
    if steps > 0 and bad.numel() > 0:
        # (the batched projected gradient of :func:`_nnls`, from μ_b: it keeps the best iterate of each block)
        Mb, rb = _nnls(col, bad.tolist(), c[bad], method="pg", max_iter=steps, mu0=mu[bad], Lx=Lx)
        keep = rb < res[bad]
        if bool(keep.any()):
            better = bad[keep]
            mu, Gmu, res = mu.clone(), Gmu.clone(), res.clone()
            mu[better], res[better] = Mb[keep], rb[keep]
            Gmu[better] = torch.mul(col.Sg[better], mu[better]) @ col.X

    def scaled_bound(lam: torch.Tensor, res: torch.Tensor) -> tuple[float, float]:
        s = min(1.0, col.alpha / max(float(res.max()), 1e-300))
        return -float(losses.conjugate(col.loss, (s * lam)[:, None], y).sum()), s

    bound, s = scaled_bound(lam, res)
    if s < 1.0:
        lam2 = losses.project_dual(col.loss, _loss_dual_repair(col, lam, c - Gmu)[:, None], y)[:, 0]
        bound2, _ = scaled_bound(lam2, torch.linalg.vector_norm(col.block_grad(lam2) - Gmu, dim=1))
        if bound2 > bound:
            return bound2, mu, lam2
    return bound, mu, lam


def _column_certificate(col: _Column, x: torch.Tensor, mu: torch.Tensor, lam: torch.Tensor | None = None,
                        nnls_method: str = "auto") -> Certificate:
    """The certificate of one column of (C) at x (nb, d) as :func:`polish` certifies its result: primal at x made
    exactly feasible (:func:`certificates.make_feasible`), dual by :func:`dual_certificate` with the multipliers
    μ (nb, n) repaired by NNLS where they fall short, and the loss-dual candidate ``lam`` (n,) (None: ∇L)."""
    pb, P = col.pb, col.P
    V, W, _, _ = col.repaired(x)
    one = ConvexProblem(X=col.X, Y=col.y[:, None], D=pb.D, H=pb.H, alpha=pb.alpha, loss=pb.loss, kind=pb.kind)
    cert, _ = dual_certificate(one, V, W, mu[:P].T[:, :, None], mu[P:].T[:, :, None], nnls_method=nnls_method,
                               Lam=None if lam is None else lam[:, None])
    return cert


def _column_gap(col: _Column, x: torch.Tensor, mu: torch.Tensor, nnls_method: str = "auto") -> float:
    """Relative certificate gap of one column of (C) at :func:`_lift_to_cone` (x) (:func:`_column_certificate`), with
    the loss-dual candidate ∇L at x itself (:func:`_point_lam`)."""
    return _column_certificate(col, _lift_to_cone(col, x), mu, _point_lam(col, x), nnls_method).relative_gap


def _point_lam(col: _Column, x: torch.Tensor) -> torch.Tensor:
    """Λ = ∇L at the blocks x (nb, d) of one column, (n,): the loss-dual candidate of an active-set point.

    Taken at x, not at its lift to the cone: the KKT conditions hold at x, and on unscaled features Λ's residuals
    amplify the lift's rounding-level move (adult raw, logistic: a 4.5e-13 change of x moved Xᵀ D_b Λ by 2.5e-5,
    2.5% of α, and a zero block's least residual from 0.999997 α to 1.0003 α: relative gap 1.3e-5 instead of
    1.25e-9). Any Λ gives a valid bound; this one is tight where the method converged."""
    return _loss_grad(col.loss, col.pred(x), col.y)


def _rounded_column_certificate(col: _Column, out: _Column, x: torch.Tensor, lam: torch.Tensor,
                                mu: torch.Tensor) -> Certificate:
    """The certificate of one column of (C) as polish returns it in a lower precision: x (nb, d) of the
    float64 column ``col`` rounded to the precision of ``out`` (the same column of the caller's program), lifted
    and made feasible there; its objective in float64; the bound of the float64 solution's Λ (n,) and μ (nb, n)
    (:func:`_relu_dual_bound`), which the rounding does not change."""
    V, W, _, _ = out.repaired(_lift_to_cone(out, x.to(out.X.dtype), margin=ROUNDING_MARGIN))
    primal = col.fval(torch.cat([V[:, :, 0], W[:, :, 0]]).to(col.X.dtype))
    dual, _, _ = _relu_dual_bound(col, lam, mu)
    return Certificate(primal=primal, dual=dual)


def dual_certificate(problem: ConvexProblem, V: torch.Tensor, W: torch.Tensor | None = None,
                     Mu_v: torch.Tensor | None = None, Mu_w: torch.Tensor | None = None,
                     nnls_method: str = "auto", Lam: torch.Tensor | None = None,
                     repair: bool = True, nnls_max_iter: int = 3000) -> tuple[Certificate, torch.Tensor]:
    """A certificate for a cone-feasible point (V, W) (or U for kind="gated").

    primal = ``problem.objective``; dual = the bound of :mod:`convexnn.ops.certificates` at Λ = ∇L(ŷ)
    and, for (C), multipliers μ ≥ 0 per block: the candidates ``Mu_v``, ``Mu_w`` ((n, P, K), clamped at 0),
    replaced by a non-negative least-squares fit wherever a block's residual exceeds α. Valid for any
    input: the multipliers only decide how tight the bound is (``repair=False``: no NNLS, the candidates as
    they are; ``nnls_max_iter``: the projected-gradient NNLS's iteration limit). ``Lam`` (n, K) replaces
    Λ = ∇L(ŷ) as the loss dual candidate (needed for the hinge loss, whose subgradient at the kinks is not the
    optimal Λ; it is projected onto the domain of L* by the certificate functions). Returns (certificate, dual
    per column).
    """
    pb = problem
    X, D, Y, alpha, loss = pb.X, pb.D, pb.Y, float(pb.alpha), pb.loss
    if pb.kind == "gated":
        pred = operators.forward(X, D, V)
        primal = pb.objective(V)
        lam = losses.grad(loss, pred, Y) if Lam is None else Lam
        dual = certificates.dual_value_gated(X, D, Y, lam, alpha, loss)
        return Certificate(primal=float(primal.sum()), dual=float(dual.sum())), dual
    assert W is not None
    pred = operators.forward(X, D, V - W)
    primal = pb.objective(V, W)
    lam = losses.project_dual(loss, losses.grad(loss, pred, Y) if Lam is None else Lam, Y)
    n, P, K = pb.n, pb.P, pb.K
    Mv = X.new_zeros((n, P, K)) if Mu_v is None else torch.clamp(Mu_v, min=0.0).clone()
    Mw = X.new_zeros((n, P, K)) if Mu_w is None else torch.clamp(Mu_w, min=0.0).clone()
    Aadj = operators.adjoint(X, D, lam)  # (P, d, K)
    lam_r = None  # Λ repaired where a column's residuals exceed α (_loss_dual_repair)
    for k in range(K if repair else 0):
        col = _Column(pb, k)
        c = torch.cat([Aadj[:, :, k], -Aadj[:, :, k]])  # (2P, d)
        Mk = torch.cat([Mv[:, :, k].T, Mw[:, :, k].T])  # (2P, n)
        res = torch.linalg.vector_norm(c - (col.Sg * Mk) @ X, dim=1)
        # blocks whose candidate is off by more than rounding (the bound scales the rest in: still sound)
        need = torch.nonzero(res > alpha * (1.0 + 1e-9))[:, 0].tolist()
        if need:
            Mn, rn = _nnls(col, need, c[need], target=X.new_full((len(need),), alpha), method=nnls_method,
                          mu0=Mk[need], max_iter=nnls_max_iter)
            for j, b in enumerate(need):
                if float(rn[j]) < float(res[b]):
                    Mk[b] = Mn[j]
        Mv[:, :, k] = Mk[:P].T
        Mw[:, :, k] = Mk[P:].T
        R = c - (col.Sg * Mk) @ X
        if float(torch.linalg.vector_norm(R, dim=1).max()) > alpha:
            lam_r = lam.clone() if lam_r is None else lam_r
            lam_r[:, k] = _loss_dual_repair(col, lam[:, k], R)
    dual = certificates.dual_value_relu(X, D, Y, lam, Mv, Mw, alpha, loss)
    if lam_r is not None:  # each column's bound is valid on its own: the better of the two per column
        dual = torch.maximum(dual, certificates.dual_value_relu(X, D, Y, lam_r, Mv, Mw, alpha, loss))
    return Certificate(primal=float(primal.sum()), dual=float(dual.sum())), dual
