"""The Triton kernel of :mod:`convexnn.solvers.fused` (imported only when it is first used: this module needs
Triton, which PyTorch's CUDA builds ship with). Triton resolves the helpers a kernel calls among its
module's globals, hence a module of its own."""

import triton
import triton.language as tl


@triton.jit
def residual(bv, bw, tau, y, kappa, tol):
    """φ(τ) per output, whether it passes the acceptance test, and the active terms (c_v − τ)_+, (c_w + τ)_+."""
    ev = tl.maximum(bv - tau[None, :], 0.0)
    ew = tl.maximum(bw + tau[None, :], 0.0)
    sv = tl.sum(ev, 0)
    sw = tl.sum(ew, 0)
    phi = sv - sw - y - kappa * tau
    ok = tl.abs(phi) <= tol * (1.0 + tl.abs(y) + sv + sw + kappa * tl.abs(tau))
    return phi, ok, ev, ew


@triton.jit
def zstep_kernel(xu_ptr, nu_ptr, on_ptr, y_ptr, tau_ptr, consts_ptr, z_ptr, nu_out_ptr, r_ptr, done_ptr,
                 P, K, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr, ITERS: tl.constexpr):
    i = tl.program_id(0).to(tl.int64)
    jp = tl.arange(0, BLOCK_P)
    kk = tl.arange(0, BLOCK_K)
    mj = jp < P
    mk = kk < K
    m2 = mj[:, None] & mk[None, :]
    offv = i * 2 * P * K + jp[:, None] * K + kk[None, :]
    offw = offv + P * K
    cv = tl.load(xu_ptr + offv, mask=m2, other=0.0) + tl.load(nu_ptr + offv, mask=m2, other=0.0)
    cw = tl.load(xu_ptr + offw, mask=m2, other=0.0) + tl.load(nu_ptr + offw, mask=m2, other=0.0)
    on = tl.load(on_ptr + i * P + jp, mask=mj, other=0) != 0
    act = on[:, None] & m2
    y = tl.load(y_ptr + i * K + kk, mask=mk, other=0.0)
    tau = tl.load(tau_ptr + i * K + kk, mask=mk, other=0.0)
    kappa = tl.load(consts_ptr)
    tol = tl.load(consts_ptr + 1)
    bv = tl.where(act, cv, float("-inf"))
    bw = tl.where(act, cw, float("-inf"))
    lo = tl.full([BLOCK_K], float("-inf"), tau.dtype)
    hi = tl.full([BLOCK_K], float("inf"), tau.dtype)
    for _ in range(ITERS):
        phi, ok, ev, ew = residual(bv, bw, tau, y, kappa, tol)
        slope = tl.sum((ev > 0).to(tau.dtype), 0) + tl.sum((ew > 0).to(tau.dtype), 0) + kappa
        lo = tl.where(phi > 0, tl.maximum(lo, tau), lo)
        hi = tl.where(phi < 0, tl.minimum(hi, tau), hi)
        step = tau + phi / slope
        bracketed = (lo > float("-inf")) & (hi < float("inf"))
        mid = 0.5 * (tl.where(bracketed, lo, 0.0) + tl.where(bracketed, hi, 0.0))
        step = tl.where(bracketed & ((step <= lo) | (step >= hi)), mid, step)
        tau = tl.where(ok, tau, step)
    _, ok, _, _ = residual(bv, bw, tau, y, kappa, tol)  # the acceptance test at the final τ
    zv = tl.where(on[:, None], tl.maximum(cv - tau[None, :], 0.0), tl.minimum(cv, 0.0))
    zw = tl.where(on[:, None], tl.maximum(cw + tau[None, :], 0.0), tl.minimum(cw, 0.0))
    nv = cv - zv
    nw = cw - zw
    tl.store(z_ptr + offv, zv, mask=m2)
    tl.store(z_ptr + offw, zw, mask=m2)
    tl.store(nu_out_ptr + offv, nv, mask=m2)
    tl.store(nu_out_ptr + offw, nw, mask=m2)
    tl.store(r_ptr + offv, zv - nv, mask=m2)
    tl.store(r_ptr + offw, zw - nw, mask=m2)
    tl.store(tau_ptr + i * K + kk, tau, mask=mk)
    tl.store(done_ptr + i * K + kk, ok.to(tl.int8), mask=mk)
