"""The interior-point Newton matrix  FᵀΛF + blockdiag(S_b)  and its factorization (:class:`_IPMSystem`): one n×n
(Woodbury, by one ``dsyrk``) or one (P·d)×(P·d) Cholesky factor, whichever is cheaper (:func:`newton_mode`), with
the Gram products that form it without Python loops over patterns (:func:`_pattern_gram`, :func:`_weighted_grams`),
and the cost model (:func:`ipm_cost`) by which ``solve(solver="auto")`` decides whether the interior-point method
fits in time and memory."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from convexnn.solvers.linsys import shifted_cholesky
from convexnn.solvers.newton.column import _Column

# method="auto" skips the interior-point (and hinge barrier) method when one of its iterations would cost more
# than this many flops (:func:`ipm_cost`): up to about a minute per iteration on one core of the development
# machine (≈ 20–40 Gflop/s there), and it typically needs 25–65 iterations
IPM_MAX_FLOPS = 2e12


def newton_mode(n: int, d: int, P: int, constant_lam: bool = False) -> str:
    """How :class:`_IPMSystem` factors the interior-point Newton matrix: "n" (the n×n Woodbury form, n²·P·d +
    n³/3 flops an iteration) or "pd" (the (P·d)² form, n·(P·d)²/2 + (P·d)³/3). Where Λ is constant
    (``constant_lam``: the squared loss) the "pd" form's Gram part is formed once and its iteration costs
    (P·d)³/3 and the solves with the larger factor (memory-bound; counted as a quarter more): "pd" where that
    is less than the "n" form's, from n ≈ 0.58·P·d on; else "pd" only for n > P·d. Measured (50 PCA features
    of Fashion-MNIST, d = 51, P = 100, one thread, ``bench_scaling.py --mode exact``): n = 3000, 39 s "n" and
    41 s "pd"; n = 4000, 77 s and 47 s, the same 34 iterations."""
    pd = P * d
    if constant_lam:
        return "pd" if 1.25 * pd ** 3 / 3.0 < float(n) * n * pd + n ** 3 / 3.0 else "n"
    return "n" if n <= pd else "pd"


def ipm_cost(n: int, d: int, P: int, relu: bool = True, constant_lam: bool = False) -> tuple[float, float]:
    """(flops, bytes) of one interior-point iteration (:func:`_ipm`, and the hinge barrier method's Newton
    step) on one output column of a program with n rows, d columns and P patterns, in float64.

    Flops: the Gram matrix of :class:`_IPMSystem` — n ≤ P·d: n²·P·d (``syrk`` of the n × P·d factor Z);
    n > P·d: n·(P·d)²/2 (:func:`_pattern_gram`) — and its Cholesky factor, min(n, P·d)³/3; per block (nb = 2P
    for (C), P for (G)) the weighted Gram Gᵀdiag(μ/s)G, 2·n·d², its Cholesky factor and inverse, ≈ 2·d³; the
    products with X, ≈ 8·nb·n·d. Bytes: n ≤ P·d: Z and the n×n matrix; n > P·d: the (P·d)² Gram matrix and
    the copy of it that is factored (:func:`_pattern_gram`'s pair weights of a row chunk come before the
    copy); five (nb, d, d) block arrays, sixteen (nb, n) arrays (:func:`_ipm`'s scratch held 13 at most, with
    one or two correctors, and a certificate forms a few more) and the rows' packed outer products (n, d(d+1)/2),
    or a row chunk of them with its two gathered factors (:func:`_weighted_grams`).
    With the squared loss (``constant_lam``: constant Λ) the "pd" Gram matrix is formed in the first iteration
    only and kept (:class:`_IPMSystem`), and the form is chosen by :func:`newton_mode`: the estimate is that of the
    first iteration, an upper bound for the later ones.
    """
    nb = 2 * P if relu else P
    pd = P * d
    if newton_mode(n, d, P, constant_lam) == "n":
        gram_flops, gram_elems = float(n) * n * pd, n * pd + n * n
    else:
        npair = P * (P + 1) // 2  # _pattern_gram's pair weights of a row chunk
        gram_elems = 2.0 * pd * pd + _pattern_gram_rows(n, P) * npair
        gram_flops = n * float(pd) * pd / 2
    lo = min(n, pd)
    flops = gram_flops + lo ** 3 / 3 + nb * (2.0 * n * d * d + 2.0 * d ** 3) + 8.0 * nb * n * d
    T = d * (d + 1) // 2  # the rows' packed outer products, kept, or a row chunk of them (_weighted_grams)
    elems = gram_elems + 5 * nb * d * d + 16 * nb * n + (n * T if n * T <= OUTER_ROWS_LIMIT else 3 * OUTER_ROWS_CHUNK)
    return flops, 8.0 * elems


def _gram_rows(Z: torch.Tensor) -> torch.Tensor:
    """Z Zᵀ for Z (r, c), with its LOWER triangle exact (the upper one may be left unset: the result is
    only handed to Cholesky factorizations, which read the lower triangle). On the CPU in float64 it is
    one BLAS ``dsyrk`` (half the flops of a general product), else ``Z @ Zᵀ``."""
    if Z.device.type == "cpu" and Z.dtype == torch.float64 and Z.shape[0] >= 64:
        from scipy.linalg.blas import dsyrk

        # Z C-ordered is Zᵀ F-ordered: dsyrk(trans=1) forms (Zᵀ)ᵀZᵀ = Z Zᵀ in its upper triangle (F-order),
        # which is the lower triangle of the transposed (C-order) view
        C = dsyrk(1.0, Z.contiguous().numpy().T, trans=1)
        return torch.from_numpy(C).T
    return Z @ Z.T


class _Chol:
    """Cholesky factor of a symmetric positive definite K (its lower triangle is read; K may be
    overwritten); ``ok`` False when it failed. On the CPU in float64 LAPACK ``dpotrf``/``dpotrs`` (faster
    than torch's for the sizes here), else :func:`torch.linalg.cholesky_ex`/:func:`torch.cholesky_solve`."""

    def __init__(self, K: torch.Tensor) -> None:
        self.lapack = K.device.type == "cpu" and K.dtype == torch.float64 and K.shape[0] >= 64
        if self.lapack:
            from scipy.linalg.lapack import dpotrf

            # the lower triangle of K (C-order) is the upper one of the F-order array K.numpy().T (K is
            # overwritten when that array is F-contiguous, as from :func:`_gram_rows`)
            self.U, info = dpotrf(np.asfortranarray(K.numpy().T), lower=0, clean=1, overwrite_a=1)
            self.ok = info == 0
        else:
            self.L, bad = torch.linalg.cholesky_ex(K)
            self.ok = not bool(bad)

    def solve(self, B: torch.Tensor) -> torch.Tensor:
        """K⁻¹ B for B (m, k)."""
        if self.lapack:
            from scipy.linalg.lapack import dpotrs

            return torch.from_numpy(dpotrs(self.U, B.numpy(), lower=0)[0])
        return torch.cholesky_solve(B, self.L)


# the largest order of a matrix that :meth:`_IPMSystem.solve_checked` factors when the factored forms' direction is
# inaccurate, the whole Newton matrix in its reduced form (P·d, for (C)) or as it is (nb·d): order³/3 flops,
# ≈ 1–1.4 s at 3560–4312 on one thread, 8·order² bytes
DENSE_NEWTON_MAX = 4500


# ... and the factored direction's relative residual above which it does. bench_defaults --loss hinge, binary
# tables, one thread, 1e-6 against 1e-4: adult standardised 22 whole-matrix solves (N = 3000, residuals 1e-6–1e-4,
# 2.5e-5 after them) took its fit from 7 to 21 s, mushroom raw 24 (N = 3828) from 9 to 35 s, for the same results;
# adult raw, whose one direction there has N = 450, ended at 6.3e-5 against 2.0e-5
NEWTON_RESIDUAL_TOL = 1e-4


# above DENSE_NEWTON_CHEAP unknowns only a direction with a relative residual above DENSE_NEWTON_BAD is solved again
# (waveform raw, N = 4312: 135 of 258 directions solved again at 1e-4 with the whole matrix, 49 s of a 70 s fit that
# took 21 s without; with the reduced form, at 1e-4 for every size the hinge raw suites of bench_defaults certified
# the same fits to about the same gaps, binary in 80.6 s against 74.1 s, multi-class 347 s against 323 s)
DENSE_NEWTON_CHEAP = 2000


DENSE_NEWTON_BAD = 1e-2


def _equilibrated_solver(K: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """b ↦ K⁻¹b for b (m,), by the Cholesky factor of the symmetric positive definite K (m, m) symmetrically
    equilibrated (its diagonal scaled to ones; K is overwritten), with a rounding-level shift where that does not
    factor; None when even the shift does not make it factor."""
    sc = K.diagonal().clamp(min=1e-300).rsqrt()
    K.mul_(sc[:, None]).mul_(sc[None, :])
    L, _, ok = shifted_cholesky(K, (1e-14, 1e-12))
    if not ok:
        return None
    return lambda b: sc * torch.cholesky_solve((sc * b)[:, None], L)[:, 0]


class _IPMSystem:
    """The interior-point Newton matrix  FᵀΛF + blockdiag(S_b)  of one iteration, factored.

    S_b = ∇²h(x_b) + G_bᵀ diag(μ_b/s_b) G_b (d×d per block); F = [F_v, −F_v] with F_v = [D_1 X … D_P X]
    for (C). Two equivalent factorizations, whichever is smaller:
      "n"   (n ≤ P·d) Woodbury: F S⁻¹ Fᵀ = Σ_i D_i X M_i Xᵀ D_i with M_i = S_v,i⁻¹ + S_w,i⁻¹ (the signs of
            v and w cancel) and one n×n Cholesky factor of  I + Λ^½ F S⁻¹ Fᵀ Λ^½;
      "pd"  (P·d < n) the prediction depends on q = x_v − x_w only: (M⁻¹ + F_vᵀΛF_v) q = M⁻¹(S_v⁻¹r_v −
            S_w⁻¹r_w), then x_v = S_v⁻¹(r_v − F_vᵀΛF_v q), x_w = S_w⁻¹(r_w + F_vᵀΛF_v q): one (P·d)² factor
            (F_vᵀΛF_v by :func:`_pattern_gram`, without forming F_v; the solves apply it through that Gram).
    (For (G) the same with M = S⁻¹ and no w-blocks.)
    ``workspace``: a dict that keeps the "n" mode's (n, P·d) array from one iteration's system to the next (a
    method passes the same one to each of its systems; a system does not use it once built), and with
    ``constant_lam`` (Λ the same in every system of the method: the squared loss, λ = 1/n) the "pd" mode's
    F_vᵀΛF_v, formed by the first system only (its n·(P·d)²/2 flops are most of a "pd" iteration: 60000 rows,
    P·d = 5100, 1.6e12 against 4.4e10 for the factor).
    """

    def __init__(self, col: _Column, S: torch.Tensor, lam: torch.Tensor, workspace: dict | None = None,
                 constant_lam: bool = False) -> None:
        self.col = col
        n, d, P = col.n, col.d, col.P
        self.ok = False
        self._gamma_n: torch.Tensor | None = None  # Γ in mode "n", formed by :meth:`gamma` when first asked for
        Lb, S, ok = shifted_cholesky(S, (1e-12,))
        if not ok:
            return
        Sinv = torch.cholesky_inverse(Lb)
        M = Sinv[:P] + Sinv[P:] if col.relu else Sinv
        # M is positive definite, but the inverse of a nearly singular S_b (a block the shift above rescued) carries
        # rounding of the size of its largest entries, and M can then fail to factor: factored with a rounding-level
        # shift instead (the iterative refinement of :meth:`solve` corrects the direction against the unshifted M).
        # Seen on adult standardised, hinge loss, one thread: the barrier method stopped at its third Newton step
        # and the fit ended uncertified (relative gap 0.76); with two BLAS threads the rounding let it through.
        LM, M, ok = shifted_cholesky(M, (1e-14, 1e-12, 1e-10))
        if not ok:
            return
        self.S, self.Lb, self.lam = S, Lb, lam
        self.mode = newton_mode(n, d, P, constant_lam and workspace is not None)
        Dn = col.pb.D  # (n, P)
        if self.mode == "n":
            self.sl = lam.sqrt()
            # Z = Λ^½ [D_1 X L_1 … D_P X L_P] (n, P·d) by one product X·[L_1 … L_P] and the pattern mask, in
            # place in the workspace's array: two fresh (n, P·d) arrays per iteration cost more in page faults than
            # the product itself (n = 2000, P·d = 5100, one thread: 125 → 34 ms, against 450 ms for Z Zᵀ)
            Z = None if workspace is None else workspace.get("Z")
            if Z is None or Z.shape != (n, P * d) or Z.dtype != col.X.dtype or Z.device != col.X.device:
                Z = col.X.new_empty((n, P * d))
                if workspace is not None:
                    workspace["Z"] = Z
            torch.matmul(col.X, LM.permute(1, 0, 2).reshape(d, P * d), out=Z)
            Z.view(n, P, d).mul_((Dn * self.sl[:, None])[:, :, None])

            def matrix() -> torch.Tensor:
                K = _gram_rows(Z)
                K.diagonal().add_(1.0)
                return K
        else:
            self.LM = LM
            Minv = torch.cholesky_inverse(LM)  # (P, d, d)
            ip = torch.arange(P, device=Minv.device)

            gram = workspace.get("gram") if constant_lam and workspace is not None else None
            if gram is None:
                gram = _pattern_gram(col.X, Dn, lam)  # F_vᵀ Λ F_v, without forming F_v (n, P·d)
                if constant_lam and workspace is not None:
                    workspace["gram"] = gram
            self.gram = gram

            def matrix() -> torch.Tensor:
                K = gram.clone()  # (the factorization overwrites K, and a retry below needs the gram again)
                K.view(P, d, P, d)[ip, :, ip, :] += Minv  # + blockdiag(M⁻¹)
                return K

        # K is positive definite, yet rounding can defeat its factorization when its scaled condition is beyond
        # float64 (columns of X on scales 1e5 apart: adult raw, hinge loss, pd mode). Then K is formed again (the
        # factorization overwrites it) with each diagonal entry raised by a relative 1e-14, 1e-12, 1e-10: a shift
        # relative to the largest entry would wipe out the small-scale columns. :meth:`solve`'s iterative refinement
        # corrects the directions against the unshifted system.
        for shift in (0.0, 1e-14, 1e-12, 1e-10):
            K = matrix()
            if shift:
                K.diagonal().mul_(1.0 + shift)
            self.LK = _Chol(K)
            if self.LK.ok:
                self.ok = True
                return

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """(FᵀΛF + blockdiag S) v for v (nb, d)."""
        col = self.col
        Sv = (self.S @ v[:, :, None])[:, :, 0]
        if self.mode == "pd":
            return Sv + self._gram_apply(v[:col.P] - v[col.P:] if col.relu else v)
        return Sv + col.block_grad(self.lam * col.pred(v))

    def _gram_apply(self, q: torch.Tensor) -> torch.Tensor:
        """FᵀΛF_v q for q (P, d) by the (P·d)² Gram of the "pd" mode, (nb, d) (F = [F_v, −F_v] for (C)).

        (Through X and D instead it costs 4·n·P·d flops and (n, P) temporaries: at n = 36631, P·d = 1500 that is
        about 50 times the Gram's 2·(P·d)².)"""
        col = self.col
        Aq = (self.gram @ q.reshape(-1)).view(col.P, col.d)
        return torch.cat([Aq, -Aq]) if col.relu else Aq

    def solve(self, r: torch.Tensor, refine: int = 1) -> torch.Tensor:
        """(FᵀΛF + blockdiag S)⁻¹ r, with ``refine`` steps of iterative refinement."""
        return self._refined(self._solve, r, refine)

    def _refined(self, solve: Callable[[torch.Tensor], torch.Tensor], r: torch.Tensor, refine: int) -> torch.Tensor:
        """``solve(r)`` followed by ``refine`` steps of iterative refinement against this matrix (:meth:`apply`)."""
        x = solve(r)
        for _ in range(refine):
            x = x + solve(r - self.apply(x))
        return x

    def gamma(self) -> torch.Tensor:
        """Γ = F_vᵀΛF_v (P·d, P·d): the "pd" mode's Gram, or in mode "n" (which factors without it) formed by
        :func:`_pattern_gram` once, when first asked for (both whole-matrix solves of :meth:`solve_checked` use it).
        Not to be modified."""
        if self.mode == "pd":
            return self.gram
        if self._gamma_n is None:
            self._gamma_n = _pattern_gram(self.col.X, self.col.pb.D, self.lam)
        return self._gamma_n

    def dense(self) -> torch.Tensor:
        """The whole matrix FᵀΛF + blockdiag S, (nb·d, nb·d): for (C) [[Γ + S_v, −Γ], [−Γ, Γ + S_w]] with
        Γ = F_vᵀΛF_v (:meth:`gamma`), for (G) Γ + S."""
        col = self.col
        nb, d = col.nb, col.d
        gram = self.gamma()
        K = torch.cat([torch.cat([gram, -gram], 1), torch.cat([-gram, gram], 1)]) if col.relu else gram.clone()
        ib = torch.arange(nb, device=K.device)
        K.view(nb, d, nb, d)[ib, :, ib, :] += self.S
        return K

    def solve_checked(self, r: torch.Tensor, refine: int = 1, tol: float = NEWTON_RESIDUAL_TOL,
                      dense_max: int = DENSE_NEWTON_MAX) -> tuple[torch.Tensor, float]:
        """:meth:`solve`, then its relative residual ‖r − K x‖/‖r‖; above ``tol`` (above ``DENSE_NEWTON_BAD`` past
        ``DENSE_NEWTON_CHEAP`` unknowns) the whole matrix is factored instead, with ``refine`` steps of refinement:
        for (C) first in its reduced form (:meth:`_reduced_solver`, P·d unknowns), then, where its residual is still
        above that bound, as it is (:meth:`_dense_solver`, nb·d), each where its order is at most ``dense_max``.
        Returns (x, its relative residual): the best of the solves.

        (The factored forms go through S_b⁻¹, whose rounding grows with the blocks' condition: on raw features
        (magic, hinge barrier at τ = 4e-9) their direction's residual was 1e3 × ‖r‖, while the whole matrix's
        equilibrated condition was 4e13 and its Cholesky factor solved to 1e-9.)"""
        rn = max(float(torch.linalg.vector_norm(r)), 1e-300)

        def residual(x: torch.Tensor) -> float:
            return float(torch.linalg.vector_norm(r - self.apply(x))) / rn

        x = self.solve(r, refine)
        res = residual(x)
        bound = tol if r.numel() <= DENSE_NEWTON_CHEAP else max(tol, DENSE_NEWTON_BAD)
        col = self.col
        # (order of the matrix factored, its solver): for (C) the reduced form first, the whole matrix only where
        # that is not accurate enough either (adult raw, hinge barrier at τ = 7e-9: 1.8e5 against 2.3e-2)
        whole = [(col.P * col.d, self._reduced_solver)] if col.relu else []
        for order, make in whole + [(col.nb * col.d, self._dense_solver)]:
            if res <= bound:
                break
            solver = make() if order <= dense_max else None
            if solver is not None:
                z = self._refined(solver, r, refine)
                res_z = residual(z)
                if res_z < res:
                    x, res = z, res_z
        return x, res

    def _dense_solver(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """A solver of the whole matrix (:meth:`dense`, (nb·d)²) by its symmetrically equilibrated Cholesky factor
        (None when even a rounding-level shift does not make it factor)."""
        solve = _equilibrated_solver(self.dense())
        return None if solve is None else (lambda b: solve(b.reshape(-1)).view_as(b))

    def _reduced_solver(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """For (C): a solver of the whole matrix in a basis where it reduces to P·d unknowns, by Cholesky factors
        that do not go through S_b⁻¹ (None when even a rounding-level shift does not make them factor).

        In the coordinates q = (x_v − x_w)/2, p = (x_v + x_w)/2 (x_v = p + q, x_w = p − q) the matrix is
        [[4Γ + A, B], [B, A]] with the block-diagonal A = S_v + S_w and B = S_v − S_w (d×d per pattern), and the
        right-hand side is (r_v − r_w, r_v + r_w). The p-block is eliminated by A's per-pattern factors L_A
        (C = L_A⁻¹B): (4Γ + A − CᵀC) q = r_q − Cᵀz with z = L_A⁻¹r_p, then p = L_A⁻ᵀ(z − Cq). The Schur complement
        4Γ + A − CᵀC = 4(Γ + M⁻¹) is the "pd" mode's matrix, formed without inverting S_v and S_w, and factored
        symmetrically equilibrated: (P·d)³/3 flops against the whole matrix's (2P·d)³/3. A − CᵀC can cancel where
        S_v and S_w are on scales far apart (its rounding is of the size of the larger), which the whole matrix's
        equilibration avoids: where this direction is still inaccurate :meth:`solve_checked` goes on to that."""
        P, d = self.col.P, self.col.d
        Sv, Sw = self.S[:P], self.S[P:]
        LA, _, ok = shifted_cholesky(Sv + Sw, (1e-14, 1e-12))
        if not ok:
            return None
        C = torch.linalg.solve_triangular(LA, Sv - Sw, upper=False)  # (P, d, d)
        K = 4.0 * self.gamma()
        ip = torch.arange(P, device=K.device)
        K.view(P, d, P, d)[ip, :, ip, :] += Sv + Sw - C.mT @ C
        schur_solve = _equilibrated_solver(K)
        if schur_solve is None:
            return None

        def solve(r: torch.Tensor) -> torch.Tensor:
            rq, rp = r[:P] - r[P:], r[:P] + r[P:]
            z = torch.linalg.solve_triangular(LA, rp[:, :, None], upper=False)  # (P, d, 1)
            q = schur_solve((rq - (C.mT @ z)[:, :, 0]).reshape(-1)).view(P, d)
            p = torch.linalg.solve_triangular(LA.mT, z - C @ q[:, :, None], upper=True)[:, :, 0]
            return torch.cat([p + q, p - q])

        return solve

    def _block_solve(self, r: torch.Tensor, L: torch.Tensor | None = None) -> torch.Tensor:
        """S_b⁻¹ r_b for every block, r (nb, d), by two batched triangular solves with the factors L_b
        (``L``: other factors of the same shape).

        (On the CPU ``torch.cholesky_solve`` with one right-hand side per block was measured 6× slower than
        this at nb = 200, d = 300.)"""
        L = self.Lb if L is None else L
        z = torch.linalg.solve_triangular(L, r[:, :, None], upper=False)
        return torch.linalg.solve_triangular(L.mT, z, upper=True)[:, :, 0]

    def _solve(self, r: torch.Tensor) -> torch.Tensor:
        col, P, d = self.col, self.col.P, self.col.d
        Sr = self._block_solve(r)
        if self.mode == "n":
            wv = self.sl * self.LK.solve((self.sl * col.pred(Sr))[:, None])[:, 0]  # (F S⁻¹ r = pred(S⁻¹ r))
            return Sr - self._block_solve(col.block_grad(wv))
        u = Sr[:P] - Sr[P:] if col.relu else Sr
        rhs = self._block_solve(u, self.LM)  # M⁻¹ u
        q = self.LK.solve(rhs.reshape(P * d, 1))[:, 0]
        return Sr - self._block_solve(self._gram_apply(q.view(P, d)))  # FᵀΛF_v q


# the most entries of :func:`_pattern_gram`'s pair weights of one row chunk
PATTERN_GRAM_ENTRIES = 2 ** 24


def _pattern_gram_rows(n: int, P: int, chunk: int = 4096) -> int:
    """Rows per chunk of :func:`_pattern_gram` (n rows, P patterns): at most ``chunk``, and fewer where the
    chunk's P(P+1)/2 pair weights would pass :data:`PATTERN_GRAM_ENTRIES` entries."""
    return max(1, min(chunk, n, PATTERN_GRAM_ENTRIES // (P * (P + 1) // 2)))


def _pattern_gram(X: torch.Tensor, D: torch.Tensor, lam: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """F_vᵀ diag(λ) F_v for F_v = [D_1 X … D_P X] (n, P·d), as a full symmetric (P·d, P·d) matrix.

    Block (i, j) is Xᵀ diag(λ ⊙ d_i ⊙ d_j) X = Σ_r λ_r d_ri d_rj x_r x_rᵀ: a product of the (P(P+1)/2, n)
    weights of the pattern pairs i ≤ j with the (n, d(d+1)/2) products x_ra x_rb of the column pairs a ≤ b.
    Both symmetries are used, so this takes 2·n·P(P+1)/2·d(d+1)/2 ≈ n(P·d)²/2 flops, half of a ``syrk`` of
    F_v (which only uses the symmetry of the whole matrix); rows go in chunks (:func:`_pattern_gram_rows`), so no
    n × P·d array is formed.

    The pair weights are formed pattern-major, one contiguous row slice per pattern i, in one array reused by every
    chunk. (Row-major, in a fresh array per chunk, their strided products and page faults took longer than the
    product itself: PMLB adult standardised, n = 36631, d = 15, P = 100, one thread, 2.5 s → 1.45 s, of which the
    product is 1.1 s.)
    """
    n, d = X.shape
    P = D.shape[1]
    iu, ju = torch.triu_indices(P, P, device=X.device)
    au, bu = torch.triu_indices(d, d, device=X.device)
    npair = iu.numel()
    acc = X.new_zeros((npair, au.numel()))
    start = [0]
    for i in range(P):  # pairs (i, j ≥ i) are rows start[i] … start[i] + P − i − 1 (triu_indices' order)
        start.append(start[-1] + P - i)
    c = _pattern_gram_rows(n, P, chunk)
    W = X.new_empty((npair, c))  # λ d_i d_j per pattern pair (rows) and sample (columns) of a chunk
    XXc = X.new_empty((c, au.numel()))
    for r0 in range(0, n, c):
        r1 = min(n, r0 + c)
        Wc, XXr = W[:, :r1 - r0], XXc[:r1 - r0]
        Dt = D[r0:r1].T.to(X.dtype).contiguous()  # (P, rows)
        Dl = Dt * lam[None, r0:r1]
        for i in range(P):
            torch.mul(Dt[i:], Dl[i:i + 1], out=Wc[start[i]:start[i + 1]])
        _packed_outer(X[r0:r1], out=XXr)
        acc.addmm_(Wc, XXr)
    B = X.new_empty((npair, d, d))
    B[:, au, bu] = acc
    B[:, bu, au] = acc
    K = X.new_empty((P, d, P, d))
    K[iu, :, ju, :] = B
    K[ju, :, iu, :] = B.transpose(1, 2)
    return K.view(P * d, P * d)


# entries of the rows' packed outer products kept for the interior-point methods (:func:`_outer_rows`: 800 MB in
# float64), and of one row chunk of them where they are not kept (:func:`_weighted_grams`)
OUTER_ROWS_LIMIT = 100_000_000


OUTER_ROWS_CHUNK = 20_000_000


def _packed_outer(X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """The upper triangles (i ≤ j, row-major as ``torch.triu_indices``) of the rows' outer products x_r x_rᵀ,
    (n, d(d+1)/2): the symmetric half of Gᵀ diag(w) G, which :func:`_weighted_grams` forms as a product with
    them (half the flops and memory of all d² entries)."""
    d = X.shape[1]
    i, j = torch.triu_indices(d, d, device=X.device)
    return torch.mul(X[:, i], X[:, j], out=out)


def _outer_rows(X: torch.Tensor, limit: int = OUTER_ROWS_LIMIT) -> torch.Tensor | None:
    """The rows' packed outer products (:func:`_packed_outer`), (n, d(d+1)/2), formed in row chunks (each
    gathers two arrays of its size), or None when they have more than ``limit`` entries."""
    n, d = X.shape
    T = d * (d + 1) // 2
    if n * T > limit:
        return None
    XX = X.new_empty((n, T))
    step = max(1, OUTER_ROWS_CHUNK // T)
    for r in range(0, n, step):
        _packed_outer(X[r:r + step], out=XX[r:r + step])
    return XX


def _weighted_grams(X: torch.Tensor, XX: torch.Tensor | None, Wt: torch.Tensor,
                    chunk: int = OUTER_ROWS_CHUNK) -> torch.Tensor:
    """Xᵀ diag(w_b) X for every row w_b of Wt (B, n): (B, d, d). Their upper triangles by one (B, n)·(n, d(d+1)/2)
    product with the packed outer products ``XX`` (:func:`_outer_rows`); without them the same product in row
    chunks whose outer products have at most ``chunk`` entries; then mirrored. (A batched (B, d, n)·(n, d)
    product instead would build a B·d·n temporary: 150 GiB at n = 10⁶, d = 101, B = 200.)"""
    n, d = X.shape
    T = d * (d + 1) // 2
    if XX is not None:
        packed = Wt @ XX
    else:
        step = max(1, chunk // T)
        packed = Wt.new_zeros((Wt.shape[0], T))
        for r in range(0, n, step):
            packed.addmm_(Wt[:, r:r + step], _packed_outer(X[r:r + step]))
    i, j = torch.triu_indices(d, d, device=X.device)
    out = Wt.new_empty((Wt.shape[0], d, d))
    out[:, i, j] = packed
    out[:, j, i] = packed
    return out
