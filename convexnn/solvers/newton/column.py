"""One output column of a program in block form (:class:`_Column`), and the losses' per-sample derivatives
the Newton methods use (convention L = (1/n) Σ ℓ; MATH.md §3, §4)."""

from __future__ import annotations

import math

import numpy as np
import torch

from convexnn.ops import certificates, losses, operators
from convexnn.solvers.problem import ConvexProblem

POLISH_LOSSES = ("squared", "logistic", "hinge")


# the losses' first and second derivatives per sample (convention L = (1/n) Σ ℓ)


def _loss_hess(loss: str, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Diagonal of ∇²L(a) (per sample, already divided by n)."""
    n = a.shape[0]
    if loss == "squared":
        return torch.full_like(a, 1.0 / n)
    if loss == "logistic":
        s = torch.sigmoid(-y * a)
        return s * (1.0 - s) / n
    raise ValueError(f"polish does not handle the {loss!r} loss")


def _loss_value(loss: str, a: torch.Tensor, y: torch.Tensor) -> float:
    return float(losses.per_sample(loss, a, y).sum()) / a.shape[0]


def _loss_grad(loss: str, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return losses.grad(loss, a[:, None], y[:, None])[:, 0]


class _Column:
    """The data of output column k in block form.

    Blocks b = 0..nb−1: for (C) the v-blocks i = 0..P−1 then the w-blocks (nb = 2P); for (G) nb = P.
    ``Dm[b]`` is s_b·D_i as a vector (the signed pattern: prediction a = Σ_b Dm_b ⊙ (X x_b)) and
    ``Sg[b]`` the diagonal of 2D_i − I (cone rows of block b: Sg_b ⊙ (X x_b) ≥ 0).
    """

    def __init__(self, pb: ConvexProblem, k: int) -> None:
        X, D = pb.X, pb.D
        self.pb = pb
        self.X = X
        self.n, self.d = X.shape
        self.P = D.shape[1]
        self.relu = pb.kind == "relu"
        self.nb = 2 * self.P if self.relu else self.P
        pat = torch.arange(self.nb, device=X.device) % self.P
        self.pat = pat
        sgn = torch.ones(self.nb, dtype=X.dtype, device=X.device)
        if self.relu:
            sgn[self.P:] = -1.0
        self.Dm = D.T[pat] * sgn[:, None]
        self.Sg = (2.0 * D - 1.0).T[pat]
        self.y = pb.Y[:, k]
        self.alpha = float(pb.alpha)
        self.loss = pb.loss
        self.xn = torch.linalg.vector_norm(X, dim=1)
        self.eps = torch.finfo(X.dtype).eps

    # --- evaluations
    # pred and block_grad go through the P patterns ((C): the v- and w-blocks of a pattern share its rows), whose
    # (n, P) temporaries are half the size of the (nb, n) ones of Dm: at n = 36631 these products are memory-bound
    def pred(self, x: torch.Tensor) -> torch.Tensor:
        """a = Σ_i D_i X (v_i − w_i) ((C)) or Σ_i D_i X u_i ((G)), (n,)."""
        q = x[:self.P] - x[self.P:] if self.relu else x
        return torch.mm(self.X, q.T).mul_(self.pb.D).sum(1)

    def fval(self, x: torch.Tensor) -> float:
        return _loss_value(self.loss, self.pred(x), self.y) + self.alpha * float(
            torch.linalg.vector_norm(x, dim=1).sum())

    def block_grad(self, gl: torch.Tensor) -> torch.Tensor:
        """c_b = s_b Xᵀ D_i ∇L for every block, (nb, d)."""
        c = torch.mm(torch.mul(self.pb.D, gl[:, None]).T, self.X)  # (P, d)
        return torch.cat([c, -c]) if self.relu else c

    def slack(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """G x: the cone rows' values Sg_b ⊙ (X x_b), (nb, n) (in ``out`` if given, else one fresh array)."""
        return torch.mm(x, self.X.T, out=out).mul_(self.Sg)

    def repaired(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """(C): the blocks x (nb, d) made exactly cone-feasible (:func:`certificates.make_feasible`), as
        (V, W) (P, d, 1) each, with their prediction (n, 1) and objective L + α Σ‖·‖ (the primal of a
        certificate, valid whatever x)."""
        pb, P = self.pb, self.P
        V = certificates.make_feasible(self.X, pb.D, pb.H, x[:P, :, None])
        W = certificates.make_feasible(self.X, pb.D, pb.H, x[P:, :, None])
        pred = operators.forward(self.X, pb.D, V - W)
        prim = float(losses.value(self.loss, pred, self.y[:, None]).sum()) + self.alpha * float(
            operators.group_norms(V).sum() + operators.group_norms(W).sum())
        return V, W, pred, prim

    def G(self, b: int) -> torch.Tensor:
        """The cone rows (2D_i − I) X of block b, (n, d)."""
        return self.Sg[b][:, None] * self.X

    def F(self, b: int) -> torch.Tensor:
        """s_b D_i X, (n, d)."""
        return self.Dm[b][:, None] * self.X

    # --- linear algebra of working sets
    def null_basis(self, rows: torch.Tensor) -> torch.Tensor:
        """Orthonormal basis (d, d − rank) of the null space of X[rows]."""
        d = self.d
        if rows.numel() == 0:
            return torch.eye(d, dtype=self.X.dtype, device=self.X.device)
        # on the CPU: these small (|rows| × d) SVDs, one per block and working-set change, are latency-bound on
        # a GPU (2.3 ms each on an H100, 0.9 s of a 4 s active-set phase at n = 2000, d = 51, P = 100)
        XA = self.X[rows].cpu()
        _, s, Vh = torch.linalg.svd(XA, full_matrices=True)
        r = int((s > 1e-10 * max(float(s[0]), 1e-300)).sum()) if s.numel() else 0
        return Vh[r:].T.contiguous().to(self.X.device)

    def independent_rows(self, cand: torch.Tensor, tol: float = 1e-8) -> torch.Tensor:
        """Greedy maximal linearly independent subset of the rows ``cand`` of X, in the given order
        (at most d − 1 rows: a block needs a non-trivial null space)."""
        if cand.numel() == 0:
            return cand
        R = self.X[cand].cpu().numpy()
        nrm = np.sqrt(np.einsum("ij,ij->i", R, R))
        Q = np.empty((self.d, self.d))  # orthonormal basis of the kept rows, columns 0..k−1
        keep: list[int] = []
        k = 0
        for j in range(R.shape[0]):
            if k >= self.d - 1:
                break
            if nrm[j] == 0:
                continue
            Qk = Q[:, :k]
            res = R[j] - Qk @ (Qk.T @ R[j])
            res -= Qk @ (Qk.T @ res)  # re-orthogonalise
            nres = math.sqrt(float(res @ res))
            if nres > tol * nrm[j]:
                Q[:, k] = res / nres
                k += 1
                keep.append(j)
        return cand[torch.as_tensor(keep, dtype=torch.long, device=cand.device)]
