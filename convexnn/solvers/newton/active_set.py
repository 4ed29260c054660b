"""The active-set Newton method of (C) and (G) (:class:`_ActiveSet`): Newton steps on the reduced problem of the
support blocks, each block kept in the null space of its working set of cone rows (MATH.md §3, §4); blocks enter
where their dual constraint fails and leave where dropping them lowers the objective; rows are added at the ratio
test and released at negative multipliers. Also the working sets guessed from an interior-point point
(:func:`_initial_working_sets`) and the lift of a solution onto its cones at rounding level
(:func:`_lift_to_cone`)."""

from __future__ import annotations

import math
import time

import torch

from convexnn.solvers.linsys import lstsq, shifted_cholesky
from convexnn.solvers.newton.column import _Column, _loss_grad, _loss_hess
from convexnn.solvers.newton.diagnostics import PolishInfo, _Deadline
from convexnn.solvers.newton.newton_system import _gram_rows
from convexnn.solvers.newton.nnls import _nnls


def active_set_bytes(n: int, d: int, blocks: int) -> float:
    """Bytes of the active-set method's Newton step with ``blocks`` support blocks, at most: each block's
    F_b N_b (n × d at most, kept and concatenated) and the dense Newton matrix, the smaller of m² and
    (n + blocks)², m = blocks·d (see :func:`_newton_direction`)."""
    m = blocks * d
    return 8.0 * (2.0 * n * m + min(m, n + blocks) ** 2 + blocks * d * d)


def _spd_solve(H: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """−H⁻¹g for a symmetric positive (semi)definite H (only its lower triangle is read): Cholesky, with a
    tiny ridge if needed."""
    Lc, _, ok = shifted_cholesky(H, (1e-12,))
    if not ok:
        H = torch.tril(H) + torch.tril(H, -1).T
        return -lstsq(H, g[:, None])[:, 0]
    return -torch.cholesky_solve(g[:, None], Lc)[:, 0]


def _newton_direction(A: torch.Tensor, h: torch.Tensor, zh: torch.Tensor, bn: torch.Tensor, sizes: list[int],
                      g: torch.Tensor, alpha: float, ridge: float = 0.0) -> torch.Tensor | None:
    """The Newton direction −H⁻¹g of the reduced problem, H = AᵀΛA + blockdiag(β_b (I − ẑ_b ẑ_bᵀ)),
    β_b = α/‖z_b‖ (A (n, m), Λ = diag(h)); with ``ridge`` > 0, −(H + ρI)⁻¹g, ρ = ridge·max_j H_jj.

    Dense Cholesky of the m×m matrix, or — when m is large compared with n — Woodbury through an
    (n + q)×(n + q) saddle-point system (q support blocks): H + ρI = B + U C Uᵀ with B = diag(β + ρ),
    U = [AᵀΛ^½, Ẑ] and C = diag(I, −β); then C⁻¹ + UᵀB⁻¹U = [[I + Λ^½AB⁻¹AᵀΛ^½, Λ^½AB⁻¹Ẑ], [·ᵀ, diag(1/(β + ρ)
    − 1/β)]] (‖ẑ_b‖ = 1; the corner is 0 without a ridge). One step of iterative refinement with the exact H + ρI
    follows. The ridge goes the same way: formed densely on wide data its m×m matrix would not fit (300 Fashion-MNIST
    images, 784 pixels: m = 43972, 14.4 GiB, against (n + q)² for the Woodbury form); the dense matrix is only a
    fallback (the saddle-point system does not factor) while it stays small (:data:`DENSE_FALLBACK_BYTES`), else there
    is no direction: None (the caller takes no step and tries a ridge).
    """
    n, m = A.shape
    q = len(sizes)
    beta = alpha / bn

    def dense() -> torch.Tensor:
        H = _gram_rows((A * h.sqrt()[:, None]).T.contiguous())  # AᵀΛA, lower triangle
        off = 0
        for j, sz in enumerate(sizes):
            u = zh[off:off + sz]
            blk = H[off:off + sz, off:off + sz]
            blk -= beta[j] * torch.outer(u, u)
            blk.diagonal().add_(beta[j])
            off += sz
        if ridge > 0:
            H.diagonal().add_(ridge * float(H.diagonal().abs().max()))
        return _spd_solve(H, g)

    if n * n * m + (n + q) ** 3 >= 0.7 * (n * m * m + m ** 3 / 3):
        return dense()

    def fallback() -> torch.Tensor | None:
        return dense() if 8.0 * m * m <= DENSE_FALLBACK_BYTES else None

    sizes_t = torch.as_tensor(sizes, device=A.device)
    idx = torch.repeat_interleave(torch.arange(q, device=A.device), sizes_t)
    bexp = beta[idx]
    rho = 0.0
    if ridge > 0:  # ρ relative to H's largest diagonal entry, Σ_r h_r A_rj² + β_j (1 − ẑ_j²), as dense() takes it
        rho = ridge * float(((h[:, None] * A * A).sum(0) + bexp * (1.0 - zh * zh)).abs().max())
    bb = bexp + rho
    sl = h.sqrt()
    At = A * (sl[:, None] / bb.sqrt()[None, :])
    K = A.new_zeros((n + q, n + q))
    K[:n, :n] = At @ At.T
    K[:n, :n].diagonal().add_(1.0)
    z = zh / bb * alpha  # without a ridge z = ẑ‖z‖ blockwise
    Az = torch.zeros((n, q), dtype=A.dtype, device=A.device).index_add_(1, idx, A * z[None, :])  # A_b z_b
    K[:n, n:] = sl[:, None] * Az / alpha
    K[n:, :n] = K[:n, n:].T
    if rho > 0:
        K[n:, n:].diagonal().copy_(1.0 / (beta + rho) - 1.0 / beta)

    def zdot(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(q, dtype=v.dtype, device=v.device).index_add_(0, idx, zh * v)

    def apply_H(v: torch.Tensor) -> torch.Tensor:
        Hv = A.T @ (h * (A @ v)) + bexp * v - zh * (beta * zdot(v))[idx]
        return Hv + rho * v if rho > 0 else Hv

    LU, piv, info = torch.linalg.lu_factor_ex(K)
    if bool(info):
        return fallback()

    def solve(r: torch.Tensor) -> torch.Tensor:
        Br = r / bb
        rhs = torch.cat([sl * (A @ Br), zdot(Br)])
        y = torch.linalg.lu_solve(LU, piv, rhs[:, None])[:, 0]
        return Br - (A.T @ (sl * y[:n]) + zh * y[n:][idx]) / bb

    dz = solve(-g)
    dz = dz + solve(-g - apply_H(dz))
    if not bool(torch.isfinite(dz).all()):
        return fallback()
    return dz


# the active-set Newton step's dense m×m matrix as a fallback of its Woodbury form: at most this many bytes
DENSE_FALLBACK_BYTES = 2.0 * 2**30


def _padded_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The row indices of each row of a boolean ``mask`` (B, n), padded: (idx (B, m), valid (B, m)) with m the
    largest count; row b's indices come first in increasing order, then padding (index 0, valid False)."""
    counts = mask.sum(1)
    m = int(counts.max()) if mask.shape[0] else 0
    # a stable sort of ~mask puts each row's True entries first, in order
    idx = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices[:, :m]
    valid = torch.arange(m, device=mask.device)[None, :] < counts[:, None]
    return torch.where(valid, idx, torch.zeros_like(idx)), valid


def _padded_cone_rows(col: _Column, blocks: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The cone rows (2D_i − I) x_r of each listed block at the padded row indices of :func:`_padded_rows`,
    (B, m, d), with zero rows for the padding."""
    sg = torch.gather(col.Sg[blocks], 1, idx) * valid
    return sg[:, :, None] * col.X[idx]


class _ActiveSet:
    """Primal feasible active-set Newton method on one column (see the module docstring)."""

    def __init__(self, col: _Column, x: torch.Tensor, W: torch.Tensor | None, info: PolishInfo,
                 nnls_method: str = "auto", mu: torch.Tensor | None = None) -> None:
        self.col = col
        self.x = x.clone()
        nb = col.nb
        self.sup = torch.linalg.vector_norm(self.x, dim=1) > 0
        self.W = W if W is not None else torch.zeros((nb, col.n), dtype=torch.bool, device=x.device)
        self.N: list[torch.Tensor | None] = [None] * nb
        self.A: list[torch.Tensor | None] = [None] * nb
        self.info = info
        self.nnls_method = nnls_method
        # (one SVD per block: a batched SVD of the padded working rows gives other bases of the same null spaces,
        # and on chess (binary features, a degenerate vertex) the method then cycled, +268/−277 rows in 326
        # Newton steps instead of +38/−38 in 24)
        for b in torch.nonzero(self.sup)[:, 0].tolist():
            self._rebasis(b)
        self.mu_W = x.new_zeros((nb, col.n))  # multipliers of the working rows (:meth:`working_multipliers`)
        # NNLS multipliers of zero blocks (warm starts of :meth:`_enter`): at first those of ``mu`` (nb, n), e.g.
        # the interior-point method's, which nearly settle the dual constraints of the blocks that stay at zero
        self.mu_cache: dict[int, torch.Tensor] = {}
        if mu is not None:
            self.mu_cache = dict(zip(torch.nonzero(~self.sup)[:, 0].tolist(), mu[~self.sup].clamp(min=0.0),
                                     strict=True))
        self._degenerate: set[tuple[int, int]] = set()  # (block, row) added by a zero step (see _step)

    def _rebasis(self, b: int) -> bool:
        """Recompute block b's null-space basis from its working set and project x_b on it.
        Returns False (and zeroes the block) if the null space is trivial."""
        col = self.col
        rows = torch.nonzero(self.W[b])[:, 0] if col.relu else torch.zeros(0, dtype=torch.long)
        N = col.null_basis(rows)
        if N.shape[1] == 0:
            self._zero(b)
            return False
        self.N[b] = N
        self.A[b] = col.F(b) @ N
        self.x[b] = N @ (N.T @ self.x[b])
        if float(torch.linalg.vector_norm(self.x[b])) == 0.0:
            self._zero(b)
            return False
        return True

    def _zero(self, b: int) -> None:
        self.x[b] = 0.0
        self.sup[b] = False
        self.W[b] = False
        self.N[b] = None
        self.A[b] = None

    # ---- multipliers of the working rows
    def working_multipliers(self, c: torch.Tensor) -> torch.Tensor:
        """μ on the working rows of each support block, (nb, n) (zero off the working rows and on blocks
        without any): least squares for G_Aᵀ μ = c_b + α v̂_b, all blocks in one batched solve (their
        working rows padded with zero rows, which leave each solution unchanged)."""
        col = self.col
        M = col.X.new_zeros((col.nb, col.n))
        bl = torch.nonzero(self.sup & self.W.any(1))[:, 0]
        if bl.numel() == 0:
            return M
        idx, valid = _padded_rows(self.W[bl])
        xb = self.x[bl]
        rhs = c[bl] + col.alpha * xb / torch.linalg.vector_norm(xb, dim=1, keepdim=True)
        mu = lstsq(_padded_cone_rows(col, bl, idx, valid).mT, rhs[:, :, None])[:, :, 0]
        M[bl[:, None].expand_as(idx)[valid], idx[valid]] = mu[valid]
        return M

    def run(self, max_newton: int = 300, gtol: float = 1e-13, drop_tol: float = 1e-12,
            enter_tol: float = 1e-12, max_changes: int | None = None, deadline: _Deadline | None = None,
            stall_tol: float = 1e-6) -> bool:
        """Iterate until the KKT conditions hold (returns True) or the budget is spent (False).

        Newton stops making progress at the rounding floor, where the largest reduced gradient
        max_b ‖g_b‖/α is ~1e-10 on well-scaled data; a stall with max_b ‖g_b‖/α > ``stall_tol`` is not that
        (an ill-conditioned reduced Hessian, e.g. on unscaled targets) and ends the method with False."""
        col, info = self.col, self.info
        alpha, loss, y = col.alpha, col.loss, col.y
        f = col.fval(self.x)
        changes = 0
        stalled = 0
        gmax = 0.0
        self._last_added = 0
        for _ in range(max_newton):
            if deadline is not None and deadline.passed():
                info.notes.append("active-set: time limit")
                return False
            if max_changes is not None and changes > max_changes:
                info.notes.append("active-set: too many working-set changes")
                return False
            t0 = time.perf_counter()
            bl = torch.nonzero(self.sup)[:, 0].tolist()
            if bl:
                sizes = [self.N[b].shape[1] for b in bl]
                Ared = torch.cat([self.A[b] for b in bl], dim=1)
                z = torch.cat([self.N[b].T @ self.x[b] for b in bl])
                a = Ared @ z
                gl = _loss_grad(loss, a, y)
                h = _loss_hess(loss, a, y)
                zs = torch.split(z, sizes)
                bn = torch.stack([torch.linalg.vector_norm(zz) for zz in zs])
                zh = torch.cat([zz / nn for zz, nn in zip(zs, bn, strict=True)])
                g = Ared.T @ gl + alpha * zh
                gmax = max(float(torch.linalg.vector_norm(gg)) for gg in torch.split(g, sizes)) / alpha
                if gmax > gtol:
                    dz = _newton_direction(Ared, h, zh, bn, sizes, g, alpha)
                    info.newton_iterations += 1
                    t0 = info.tick("newton system", t0)
                    stepped = dz is not None and self._step(bl, sizes, g, dz, f)
                    if not stepped and gmax > stall_tol:
                        # far from stationary yet no decrease: the reduced Hessian is (numerically) singular
                        # (the group norm is flat along a block's radius where two blocks predict alike, and
                        # an ill-conditioned X adds more), so the Newton step is garbage. Levenberg–Marquardt:
                        # the same system with a growing ridge, until a step decreases φ
                        for ridge in (1e-10, 1e-7, 1e-4):
                            dz = _newton_direction(Ared, h, zh, bn, sizes, g, alpha, ridge=ridge)
                            info.newton_iterations += 1
                            if dz is not None and self._step(bl, sizes, g, dz, f):
                                stepped = True
                                break
                        t0 = info.tick("newton system", t0)
                    if stepped:
                        f_new = col.fval(self.x)
                        changes += self._last_added
                        # a step that changes nothing but rounding: count towards the rounding floor
                        progress = self._last_added > 0 or f_new < f - 4 * col.eps * abs(f)
                        stalled = 0 if progress else stalled + 1
                        f = f_new
                        t0 = info.tick("line search", t0)
                        if stalled < 2:
                            continue
                    else:
                        # no decrease at all: the reduced problem is solved as far as rounding allows
                        stalled += 1
                        t0 = info.tick("line search", t0)
                        if stalled < 2:
                            continue
            # ---- stationary for the current working sets: release rows, enter blocks
            a = col.pred(self.x)
            gl = _loss_grad(loss, a, y)
            c = col.block_grad(gl)
            released = 0
            if col.relu:
                self.mu_W = self.working_multipliers(c)
                neg = self.W & (self.mu_W * col.xn[None, :] < -drop_tol * alpha)
                released = int(neg.sum())
                if released:
                    self.W &= ~neg
                    for b in torch.nonzero(neg.any(1))[:, 0].tolist():
                        self._rebasis(b)
                info.rows_released += released
                changes += released
            t0 = info.tick("multipliers", t0)
            if released:
                f = col.fval(self.x)
                stalled = 0
                continue
            entered = self._enter(c, f, enter_tol)
            t0 = info.tick("entering", t0)
            if entered:
                changes += entered
                f = col.fval(self.x)
                stalled = 0
                continue
            if bl and gmax > stall_tol:
                info.notes.append(f"active-set: Newton stalled at reduced gradient {gmax:.1e}·alpha")
                return False
            return True
        info.notes.append("active-set: Newton budget spent")
        return False

    def _step(self, bl: list[int], sizes: list[int], g: torch.Tensor, dz: torch.Tensor, f: float) -> bool:
        """Bent backtracking line search along the Newton direction; adds the blocking rows.
        Returns False when no decrease (at rounding level) was found."""
        col = self.col
        X = col.X
        dt = X.dtype
        self._last_added = 0
        # (one block at a time: batched sums round differently, and the method's path on ill-conditioned data
        # (magic, raw) follows rounding-level differences: with segment sums here and for the block norms in
        # run it lost its certificate there)
        dx = torch.zeros_like(self.x)
        gdz = torch.zeros(col.nb, dtype=dt, device=X.device)
        for b, gg, dzz in zip(bl, torch.split(g, sizes), torch.split(dz, sizes), strict=True):
            dx[b] = self.N[b] @ dzz
            gdz[b] = gg @ dzz
        blt = torch.as_tensor(bl, device=X.device)
        T = torch.full((col.nb,), math.inf, dtype=dt, device=X.device)
        blocker = torch.zeros(col.nb, dtype=torch.long, device=X.device)
        if col.relu:
            S = col.slack(self.x)
            R = col.slack(dx)
            dxn = torch.linalg.vector_norm(dx, dim=1)
            mask = (~self.W) & (R < -1e-13 * col.xn[None, :] * dxn[:, None])
            ratio = torch.where(mask, torch.clamp(S, min=0.0) / torch.where(mask, -R, torch.ones_like(R)),
                                torch.full_like(R, math.inf))
            T, blocker = ratio.min(dim=1)
        t = 1.0
        while t > 1e-12:
            tb = torch.clamp(T, max=t)
            xn_ = self.x + tb[:, None] * dx
            fn = col.fval(xn_)
            lin = float((tb * gdz).sum())
            if fn <= f + 1e-4 * min(lin, 0.0) and fn <= f:
                break
            t *= 0.5
        else:
            # no decrease: if rows at zero slack outside the working sets block some blocks at once (T_b ≈ 0,
            # a degenerate vertex), take the zero step and add them, so that the next direction respects them
            # (each row at most once per run: a row released and blocking again would otherwise cycle)
            at0 = blt[T[blt] <= 1e-12]
            stuck = [(b, r) for b, r in zip(at0.tolist(), blocker[at0].tolist(), strict=True)
                     if (b, r) not in self._degenerate]
            if not stuck:
                return False
            saved = (self.x.clone(), self.W.clone(), self.sup.clone(), list(self.N), list(self.A))
            for b, r in stuck:
                self._degenerate.add((b, r))
                self.W[b, r] = True
                self._rebasis(b)
            # the projection onto the new faces must be a rounding-level move (not a block set to zero)
            if not bool(self.sup[[b for b, _ in stuck]].all()) or col.fval(self.x) > f + 64 * col.eps * abs(f):
                self.x, self.W, self.sup, self.N, self.A = saved
                return False
            self.info.rows_added += len(stuck)
            self._last_added += len(stuck)
            return True
        self.x = xn_
        hit = blt[T[blt] <= t]
        for b, r in zip(hit.tolist(), blocker[hit].tolist(), strict=True):
            self.W[b, r] = True
            self.info.rows_added += 1
            self._last_added += 1
            self._rebasis(b)
        self._collapse(bl)
        return True

    def _collapse(self, bl: list[int]) -> None:
        """Set to zero the small support blocks whose removal decreases φ.

        Newton's method handles a block that should vanish badly (the norm has no radial curvature), so
        small blocks with α + c_bᵀv̂_b > 0 (φ decreases when the block shrinks) are tried at zero."""
        col = self.col
        nrm = torch.linalg.vector_norm(self.x, dim=1)
        top = float(nrm.max()) if nrm.numel() else 0.0
        if top == 0.0:
            return
        c = col.block_grad(_loss_grad(col.loss, col.pred(self.x), col.y))
        radial = col.alpha + (c * self.x).sum(1) / nrm.clamp(min=1e-300)
        blt = torch.as_tensor(bl, dtype=torch.long, device=nrm.device)
        blt = blt[self.sup[blt] & (nrm[blt] <= 0.05 * top) & (radial[blt] > 0)]
        cand = blt[torch.argsort(nrm[blt], stable=True)].tolist()
        f = col.fval(self.x)
        for b in cand:
            xt = self.x.clone()
            xt[b] = 0.0
            ft = col.fval(xt)
            if ft <= f:
                self._zero(b)
                self.info.blocks_dropped += 1
                f = ft

    def _enter(self, c: torch.Tensor, f: float, enter_tol: float) -> int:
        """Let the zero blocks that violate their dual constraint enter; returns how many did."""
        col = self.col
        alpha = col.alpha
        zero = torch.nonzero(~self.sup)[:, 0]
        if zero.numel() == 0:
            return 0
        cn = torch.linalg.vector_norm(c[zero], dim=1)
        cand = zero[cn > alpha * (1.0 + enter_tol)].tolist()
        if not cand:
            return 0
        dirs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if col.relu:
            mu0 = torch.stack([self.mu_cache.get(b, col.X.new_zeros(col.n)) for b in cand])
            tgt = col.X.new_full((len(cand),), alpha * (1.0 + enter_tol))
            Mu, res = _nnls(col, cand, c[cand], target=tgt, method=self.nnls_method, mu0=mu0)
            for j, b in enumerate(cand):
                self.mu_cache[b] = Mu[j]
            for j, b in enumerate(cand):
                if float(res[j]) <= alpha * (1.0 + enter_tol):
                    continue
                dvec = (col.Sg[b] * Mu[j]) @ col.X - c[b]
                rows = torch.nonzero(Mu[j] > 0)[:, 0]
                rows = col.independent_rows(rows[torch.argsort(Mu[j][rows], descending=True)])
                dirs[b] = (dvec, rows)
        else:
            for b in cand:
                dirs[b] = (-c[b], torch.zeros(0, dtype=torch.long))
        if not dirs:
            return 0
        # directions, projected on the null space of their working rows (a no-op up to rounding)
        D = torch.zeros_like(self.x)
        for b, (dvec, rows) in dirs.items():
            self.W[b] = False
            if rows.numel():
                self.W[b, rows] = True
            N = col.null_basis(rows)
            if N.shape[1] == 0:
                continue
            dv = N @ (N.T @ dvec)
            nd = float(torch.linalg.vector_norm(dv))
            if nd == 0.0:
                continue
            D[b] = dv / nd
        if float(torch.linalg.vector_norm(D)) == 0.0:
            return 0
        nrm = torch.linalg.vector_norm(self.x, dim=1)
        eps = float(nrm.max()) if bool(self.sup.any()) else 1.0
        xt = None
        while eps > 1e-14:
            xt = self.x + eps * D
            if col.fval(xt) < f:
                break
            eps *= 0.25
            xt = None
        if xt is None:
            for b in dirs:
                self.W[b] = False
            return 0
        self.x = xt
        count = 0
        for b in dirs:
            if float(torch.linalg.vector_norm(D[b])) > 0:
                self.sup[b] = True
                if self._rebasis(b):
                    count += 1
        self.info.blocks_entered += count
        return count

    def multipliers_dense(self) -> torch.Tensor:
        """The working-set multipliers as an (nb, n) tensor (clamped at 0; zero off the working sets)."""
        M = torch.clamp(self.mu_W * self.W, min=0.0)
        for b, mu in self.mu_cache.items():  # zero blocks: their last NNLS fit (from :meth:`_enter`)
            if not bool(self.sup[b]):
                M[b] = torch.clamp(mu, min=0.0)
        return M


def _initial_working_sets(col: _Column, x: torch.Tensor, mu: torch.Tensor | None, act_tol: float,
                          support_tol: float, info: PolishInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Guess support and working sets from an approximate point (and optionally multipliers), and move
    x onto the guessed faces: x_b ← N_b N_bᵀ x_b, adding violated rows (a few rounds) so that the
    result is cone-feasible; blocks that cannot be made feasible this way start at zero."""
    nb, n = col.nb, col.n
    x = x.clone()
    nrm = torch.linalg.vector_norm(x, dim=1)
    top = float(nrm.max()) if nrm.numel() else 0.0
    W = torch.zeros((nb, n), dtype=torch.bool, device=x.device)
    if top == 0.0:
        return x, W
    sup = nrm > support_tol * top
    x[~sup] = 0.0
    if not col.relu:
        return x, W
    S = col.slack(x)
    rel = S / (col.xn[None, :] * nrm[:, None]).clamp(min=1e-300)
    score = act_tol - rel  # > 0: slack below act_tol (relative), violated rows first
    if mu is not None:
        score = torch.maximum(score, mu * col.xn[None, :] / col.alpha - rel)
    for b in torch.nonzero(sup)[:, 0].tolist():
        cand = torch.nonzero(score[b] > 0)[:, 0]
        cand = cand[torch.argsort(score[b][cand], descending=True)][: 4 * col.d]
        ok = False
        xb = x[b]
        for _ in range(4):
            rows = col.independent_rows(cand)
            N = col.null_basis(rows)
            if N.shape[1] == 0:
                break
            xb = N @ (N.T @ x[b])
            sb = col.Sg[b] * (col.X @ xb)
            tol = 1e-12 * col.xn * float(torch.linalg.vector_norm(xb))
            mask = torch.ones(n, dtype=torch.bool, device=x.device)
            mask[rows] = False
            viol = torch.nonzero(mask & (sb < -tol))[:, 0]
            if viol.numel() == 0:
                ok = float(torch.linalg.vector_norm(xb)) > 0
                break
            viol = viol[torch.argsort(sb[viol])]
            cand = torch.cat([rows, viol])
        if ok:
            x[b] = xb
            W[b, rows] = True
        else:
            x[b] = 0.0
            info.blocks_dropped += 1
    return x, W


# the margin of :func:`_lift_to_cone` (in units of the rounding eps·‖x_r‖‖v_b‖) for a result rounded to float32: its
# cost in objective is proportional to it. Over 24 programs (12 PMLB tables, 400 rows standardised, 50 gates, alpha
# 1e-2 and 1e-3 × its maximum: each float64 optimum rounded, lifted and made feasible in float32) 2 cost 0.8e-6 …
# 1.5e-5 relative, 1 half that, with float64-evaluated slack as good (at 0.5 more rows fell ~1e-8 short in float64
# and the gate step moved some blocks by 1e-4); in float64 the margin's cost is ~1e-13 and the default 2 stays.
ROUNDING_MARGIN = 1.0


def _lift_to_cone(col: _Column, x: torch.Tensor, rounds: int = 3, limit: int = 25_000_000,
                  margin: float = 2.0) -> torch.Tensor:
    """Make every block strictly cone-feasible in floating point with a change at rounding level.

    The active-set solution has zero slack on its working rows up to rounding (±1e-16 relative), and
    :func:`certificates.make_feasible` would repair a tiny violation by a step along the gate, whose
    slack can be small on the same rows (a large step). Instead, the rows with slack below
    margin·eps·‖x_r‖‖v_b‖ are moved to that target by the least-norm correction G_Vᵀδ: one batched least-squares
    solve per round for all blocks that have such rows (their rows padded with zero rows, in groups of blocks
    whose padded rows have at most ``limit`` entries).
    """
    if not col.relu:
        return x
    x = x.clone()
    for _ in range(rounds):
        nrm = torch.linalg.vector_norm(x, dim=1)
        sb = col.slack(x)
        tgt = margin * col.eps * col.xn[None, :] * nrm[:, None]
        low = (sb < tgt) & (nrm > 0)[:, None]
        todo = torch.nonzero(low.any(1))[:, 0]
        if todo.numel() == 0:
            break
        per = max(1, limit // (col.d * max(int(low[todo].sum(1).max()), 1)))
        for bl in torch.split(todo, per):
            idx, valid = _padded_rows(low[bl])
            rhs = (torch.gather((tgt - sb)[bl], 1, idx) * valid)[:, :, None]
            x[bl] += lstsq(_padded_cone_rows(col, bl, idx, valid), rhs)[:, :, 0]
    return x
