"""The ADMM u-system (MATH.md §6) and the ways to solve it.

With u = (v, w) and p = v + w, q = v − w the system  (I + GᵀG + c₀ FᵀF) u = r  splits, because
GᵀG = I_{2P} ⊗ XᵀX and F = [F_v, −F_v]:

    M p = r_v + r_w,            M = I_d + XᵀX  (one d×d matrix for every block)
    (I_P ⊗ M + 2 c₀ F_vᵀF_v) q = r_v − r_w

so only a (dP)-sized system is coupled. For (G) the same coupled system appears with M = I_d and c₀ in
place of 2c₀. :class:`QSystem` solves  (I_P ⊗ M + c F_vᵀF_v) q = r  for q of shape (P, d, K):

- "cholesky": the dense (dP)×(dP) matrix, factored once.  Memory 8(dP)² bytes.
- "woodbury": Q⁻¹ = M̃⁻¹ − M̃⁻¹F_vᵀ S⁻¹ F_v M̃⁻¹ with S = I_n/c + K ⊙ (D Dᵀ), K = X M⁻¹ Xᵀ:
  one n×n Cholesky; O(n² + ndP + d²P) per solve.  Memory 16 n² bytes.
- "pcg": matrix-free conjugate gradients, Q·q = M q_i (every block) + c Fᵀ(F q): O(ndP) per product,
  preconditioned by a randomized Nyström approximation of Q − I of rank r (Frangella, Tropp & Udell;
  CRONOS), warm-started from the previous solution, to a tolerance the caller tightens as ADMM converges.
  Memory O(nP + r·dP).
"""

from __future__ import annotations

import torch

from convexnn.ops import operators

STRATEGIES = ("cholesky", "woodbury", "pcg")


def lstsq(A: torch.Tensor, B: torch.Tensor, driver: str = "gelsd") -> torch.Tensor:
    """Least-squares solution X of A X = B (batched like torch.linalg.lstsq), rank-deficient A included, on
    any device: the minimum-norm solution, by LAPACK's SVD-based ``driver`` "gelsd" unless told otherwise.

    Not torch's CPU default "gelsy": in torch ≤ 2.13 its pivot array is not reset (pytorch/pytorch#187411), so
    on a rank-deficient A, a zero column for instance, it returns a wrong rank and a solution that does not
    even minimise the residual, differently from call to call (seen here: 3 calls in 5 on a 40 × 30 matrix
    with zero columns; with a batch, one matrix spoils the next). torch's CUDA lstsq has only "gels" (QR
    without pivoting: full-rank A only; a singular A gives inf or NaN), so off the CPU the system is solved on
    the CPU and the solution moved back. The callers are fallbacks on small systems (a Cholesky factorization
    that failed, a multiplier fit) or batches of small ones, so the copy is cheap."""
    if A.device.type == "cpu":
        return torch.linalg.lstsq(A, B, driver=driver).solution
    return torch.linalg.lstsq(A.cpu(), B.cpu(), driver=driver).solution.to(A.device)


def shifted_cholesky(A: torch.Tensor, shifts: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Lower Cholesky factor of a symmetric positive (semi)definite A, shape (m, m) or (b, m, m) (only the
    lower triangles are read), with a diagonal shift where rounding defeats it.

    When a factorization fails, A + δI is factored instead, δ = s × the largest |diagonal entry| (per
    matrix) for each s of ``shifts`` in turn; with a batch, every matrix gets its shift. Returns
    (L, the matrix that L factors, ok): ok False when even the last shift failed."""
    L, info = torch.linalg.cholesky_ex(A)
    if not bool(info.any()):
        return L, A, True
    top = A.diagonal(dim1=-2, dim2=-1).abs().amax(-1)
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    B = A
    for rel in shifts:
        B = A + (rel * top)[..., None, None] * eye
        L, info = torch.linalg.cholesky_ex(B)
        if not bool(info.any()):
            return L, B, True
    return L, B, False


def spd_cholesky(A: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factor of A = (PSD matrix) + (a positive multiple of I), shape (m, m).

    In floating point such an A can fail to factor when its PSD part is ~1/eps times larger than the
    identity part (features on very different scales, a small ADMM penalty). Then the factor of A + δI is
    returned, with δ = 1e-14, 1e-12, … × the largest diagonal entry: a rounding-level change, which only
    makes an ADMM step inexact (its certificates are computed from the iterates and stay valid)."""
    L, _, ok = shifted_cholesky(A, (1e-14, 1e-12, 1e-10, 1e-8, 1e-6))
    if not ok:
        raise torch.linalg.LinAlgError(f"a {A.shape[0]}×{A.shape[0]} system that should be positive definite "
                                       "did not factor, even with a diagonal shift of 1e-6 × its largest diagonal "
                                       "entry (the data holds NaN/Inf or is on extreme scales: standardise X)")
    return L


def block_solve(L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """M⁻¹ applied to every block of R (P, d, K), with L the Cholesky factor of M (d, d)."""
    P, d, K = R.shape
    out = torch.cholesky_solve(R.permute(1, 0, 2).reshape(d, P * K), L)
    return out.reshape(d, P, K).permute(1, 0, 2)


def memory_bytes(strategy: str, n: int, d: int, P: int, itemsize: int) -> int:
    """Bytes the strategy's factor needs (the dominant allocation)."""
    if strategy == "cholesky":
        return itemsize * ((d * P) ** 2 + n * d * P)
    if strategy == "woodbury":
        return itemsize * (3 * n * n)
    if strategy == "pcg":
        return itemsize * (NYSTROM_RANK * d * P + 8 * n * P + d * d)
    raise ValueError(f"unknown linear-system strategy {strategy!r}")


NYSTROM_RANK = 50


def cost_flops(strategy: str, n: int, d: int, P: int, K: int, iters: int = 300) -> float:
    """Rough flop count of setting the strategy up and running ``iters`` solves."""
    if strategy == "cholesky":
        return n * (d * P) ** 2 + (d * P) ** 3 / 3 + iters * 2 * (d * P) ** 2 * K
    if strategy == "woodbury":
        return n * n * (d + P) + n**3 / 3 + iters * (2 * n * n * K + 4 * n * d * P * K + 2 * d * d * P * K)
    if strategy == "pcg":  # Nyström sketch + ~10 CG products per solve
        per_product = 4 * n * d * P + 2 * d * d * P
        return NYSTROM_RANK * per_product + iters * 10 * per_product * K
    raise ValueError(f"unknown linear-system strategy {strategy!r}")


class QSystem:
    """Solver for (I_P ⊗ M + c F_vᵀF_v) q = r, factored once (see module docstring)."""

    def __init__(self, X: torch.Tensor, D: torch.Tensor, M: torch.Tensor, c: float, strategy: str) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown linear-system strategy {strategy!r}: expected one of {STRATEGIES}")
        self.X, self.D, self.c, self.strategy = X, D, c, strategy
        self.LM = spd_cholesky(M)
        n, d = X.shape
        P = D.shape[1]
        self.M = M
        self.cg_iters = 0
        if strategy == "pcg":
            self._nystrom(rank=min(NYSTROM_RANK, P * d))
        elif strategy == "cholesky":
            Z = (D[:, :, None] * X[:, None, :]).reshape(n, P * d)  # F_v, column (i, a) ↦ i·d + a
            Q = c * (Z.T @ Z)
            Q.view(P, d, P, d).diagonal(dim1=0, dim2=2).add_(M[:, :, None])  # + I_P ⊗ M
            self.LQ = spd_cholesky(Q)
        else:
            Kmat = X @ torch.cholesky_solve(X.T, self.LM)  # X M⁻¹ Xᵀ
            S = Kmat * (D @ D.T)
            S.diagonal().add_(1.0 / c)
            self.LS = spd_cholesky(S)

    def matvec(self, Q: torch.Tensor) -> torch.Tensor:
        """(I_P ⊗ M + c F_vᵀF_v) q for q (P, d, K)."""
        return self.M @ Q + self.c * operators.adjoint(self.X, self.D, operators.forward(self.X, self.D, Q))

    def _nystrom(self, rank: int) -> None:
        """Rank-r Nyström approximation U diag(lam) Uᵀ of A = Q − I (stable form, Tropp et al. 2017)."""
        X = self.X
        P, d = self.D.shape[1], X.shape[1]
        g = torch.Generator(device="cpu").manual_seed(0)
        Om = torch.randn(P * d, rank, generator=g, dtype=X.dtype).to(X.device)
        Om, _ = torch.linalg.qr(Om)
        Om3 = Om.reshape(P, d, rank)
        Y = (self.matvec(Om3) - Om3).reshape(P * d, rank)
        shift = torch.finfo(X.dtype).eps * float(torch.linalg.matrix_norm(Y))
        Y = Y + shift * Om
        C = torch.linalg.cholesky(Om.T @ Y)
        B = torch.linalg.solve_triangular(C, Y.T, upper=False).T  # Y C⁻ᵀ
        U, S, _ = torch.linalg.svd(B, full_matrices=False)
        self.nys_U = U
        self.nys_lam = torch.clamp(S**2 - shift, min=0.0)

    def precondition(self, R: torch.Tensor) -> torch.Tensor:
        """P⁻¹ r = U ((λ_r + 1)/(Λ + 1)) Uᵀ r + (r − U Uᵀ r) for Q = I + A."""
        P, d, K = R.shape
        r = R.reshape(P * d, K)
        Ur = self.nys_U.T @ r
        scale = (self.nys_lam[-1] + 1.0) / (self.nys_lam + 1.0)
        return (r + self.nys_U @ ((scale - 1.0)[:, None] * Ur)).reshape(P, d, K)

    def _pcg(self, R: torch.Tensor, x0: torch.Tensor | None, rtol: float, max_iter: int = 500) -> torch.Tensor:
        """Preconditioned CG on every output column at once (independent scalars per column)."""
        x = torch.zeros_like(R) if x0 is None else x0.clone()
        r = R - self.matvec(x) if x0 is not None else R.clone()
        bnorm = torch.linalg.vector_norm(R, dim=(0, 1)).clamp(min=torch.finfo(R.dtype).tiny)
        z = self.precondition(r)
        p = z.clone()
        rz = (r * z).sum((0, 1))
        for _ in range(max_iter):
            if bool((torch.linalg.vector_norm(r, dim=(0, 1)) <= rtol * bnorm).all()):
                break
            Ap = self.matvec(p)
            alpha = rz / (p * Ap).sum((0, 1)).clamp(min=torch.finfo(R.dtype).tiny)
            x = x + alpha * p
            r = r - alpha * Ap
            z = self.precondition(r)
            rz_new = (r * z).sum((0, 1))
            p = z + (rz_new / rz.clamp(min=torch.finfo(R.dtype).tiny)) * p
            rz = rz_new
            self.cg_iters += 1
        return x

    def solve(self, R: torch.Tensor, x0: torch.Tensor | None = None, rtol: float = 1e-10) -> torch.Tensor:
        """q = Q⁻¹ R. ``x0`` and ``rtol`` (relative residual) are used by the "pcg" strategy only."""
        P, d, K = R.shape
        if self.strategy == "pcg":
            return self._pcg(R, x0, rtol)
        if self.strategy == "cholesky":
            return torch.cholesky_solve(R.reshape(P * d, K), self.LQ).reshape(P, d, K)
        Y1 = block_solve(self.LM, R)
        t = operators.forward(self.X, self.D, Y1)
        w = torch.cholesky_solve(t, self.LS)
        return Y1 - block_solve(self.LM, operators.adjoint(self.X, self.D, w))

    def solve_M(self, R: torch.Tensor) -> torch.Tensor:
        """M⁻¹ R blockwise (the decoupled p-part of the relu system)."""
        return block_solve(self.LM, R)


def choose_strategy(n: int, d: int, P: int, K: int, itemsize: int, memory_limit: int) -> str:
    """The cheaper of dense Cholesky and Woodbury that fits in ``memory_limit`` bytes."""
    fits = [s for s in STRATEGIES if memory_bytes(s, n, d, P, itemsize) <= memory_limit]
    if not fits:
        need = min(memory_bytes(s, n, d, P, itemsize) for s in STRATEGIES)
        raise MemoryError(
            f"the ADMM linear system for n={n}, d={d}, P={P} needs at least {need / 2**30:.1f} GiB "
            f"with a direct factorisation, more than the {memory_limit / 2**30:.1f} GiB allowed; "
            "use fewer patterns, or solver='fista' with kind='gated'"
        )
    return min(fits, key=lambda s: cost_flops(s, n, d, P, K))
