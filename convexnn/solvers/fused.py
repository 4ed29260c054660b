"""One fused GPU kernel (Triton) for the z-step of the prediction-split ADMM (:func:`convexnn.solvers.admm.zstep`).

In plain PyTorch the z-step is some thirty passes over the (n, 2P, K) predictions (each Newton step on τ
re-reads and re-writes them), which on a GPU cost more than the iteration's two matrix products. This
kernel reads X u and ν once per sample, solves every output's scalar equation for τ in registers, and writes
z, the new ν and the next u-step's right-hand side z − ν: five array passes in all.

For sample i and output k, with c = X u + ν (the v-blocks then the w-blocks) and the pattern D_i,

    φ(τ) = Σ_{j: D_ij=1} (c_vj − τ)_+ − Σ_{j: D_ij=1} (c_wj + τ)_+ − y_ik − κτ        (κ = nρ_z)

is piecewise linear and strictly decreasing. Newton steps from the previous iteration's τ, kept inside the
bracket [lo, hi] of points already seen with φ > 0 and φ < 0 (a step leaving it is replaced by the
midpoint), find the linear piece that holds the root, where one Newton step is exact. Then

    z_v = (c_v − τ)_+, z_w = (c_w + τ)_+ where D_ij = 1;   z = min(c, 0) elsewhere;   ν' = c − z.

The acceptance test is that of :func:`~convexnn.solvers.admm.zstep` (|φ| ≤ 64 eps × the size of its terms);
samples that have not passed it after ``iters`` steps are flagged, and the caller solves them exactly
by sorting. Triton is imported only when the kernel is first used: it ships with PyTorch's CUDA builds,
and without it (or off CUDA) the PyTorch z-step runs instead.
"""

from __future__ import annotations

import functools
import os

import torch


@functools.cache
def available() -> bool:
    """Whether the fused kernel can run here: Triton importable (on CUDA, or its CPU interpreter for tests)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or _interpreted()


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def usable(device: torch.device) -> bool:
    """Whether the kernel can run on tensors of ``device``: CUDA ones, or any under Triton's interpreter."""
    return available() and (device.type == "cuda" or _interpreted())


@functools.cache
def _kernel():
    from convexnn.solvers._zstep_kernel import zstep_kernel

    return zstep_kernel


def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def zstep_fused(XU: torch.Tensor, Nu: torch.Tensor, on: torch.Tensor, Y: torch.Tensor, kappa: float,
                tau0: torch.Tensor | None, iters: int = 12
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The z-step at c = X u + ν in one kernel.

    XU, Nu : (n, 2P, K) (v-blocks then w-blocks), contiguous, one float dtype.  on : (n, P) bool, the
    patterns.  Y : (n, K).  tau0 : (n, K) start of τ (None: 0).
    Returns (Z, ν' = c − Z, R = Z − ν' (the next u-step's input), τ (n, K), done (n, K) bool: samples whose
    τ passed the acceptance test; the others must be solved exactly).
    """
    n, P2, K = XU.shape
    P = P2 // 2
    dt = XU.dtype
    XU, Nu = XU.contiguous(), Nu.contiguous()
    onb = on.to(torch.int8).contiguous()
    Yc = Y.to(dt).contiguous()
    tau = torch.zeros_like(Yc) if tau0 is None else tau0.to(dt).clone().contiguous()
    consts = torch.tensor([kappa, 64 * torch.finfo(dt).eps], dtype=dt, device=XU.device)
    Z, Nu2, R = torch.empty_like(XU), torch.empty_like(XU), torch.empty_like(XU)
    done = torch.empty((n, K), dtype=torch.int8, device=XU.device)
    bp, bk = _next_pow2(P), _next_pow2(K)
    warps = min(16, max(4, bp * bk // 512))
    _kernel()[(n,)](XU, Nu, onb, Yc, tau, consts, Z, Nu2, R, done, P, K, BLOCK_P=bp, BLOCK_K=bk, ITERS=iters,
                    num_warps=warps)
    return Z, Nu2, R, tau, done.bool()
