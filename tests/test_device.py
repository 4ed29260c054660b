"""The CUDA path against the CPU path: the same fits, the same certified objectives (to solver tolerance),
and the fused GPU z-step kernel against the PyTorch z-step.

The tests marked ``needs_cuda`` are skipped without a CUDA device (CI has none: they run on a GPU machine
with ``python -m pytest -q tests/test_device.py``); the code paths they compare are covered on CPU by the
other test modules. The fused kernel's tests also run on CPU under Triton's interpreter
(``TRITON_INTERPRET=1`` with Triton installed).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.preprocessing import StandardScaler

from convexnn import ConvexReLUClassifier, ConvexReLURegressor
from convexnn.ops.patterns import add_intercept, patterns_from_gates, sample_gates
from convexnn.solvers import fused, solve
from convexnn.solvers.admm import admm_relu_split, zstep
from convexnn.solvers.linsys import lstsq
from convexnn.solvers.problem import ConvexProblem

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
KERNEL_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_kernel = pytest.mark.skipif(not fused.available(), reason="needs Triton and CUDA (or TRITON_INTERPRET=1)")

TOL = 1e-6


def _scaled(loader, n: int):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X)[:n], y[:n]


def _problem(X, Y, P, alpha, loss, kind, device, dtype=torch.float64) -> ConvexProblem:
    Xa = add_intercept(X)
    D, H = patterns_from_gates(Xa, sample_gates(Xa.shape[1], P, 0))

    def t(a):
        return torch.as_tensor(a, dtype=dtype, device=device)

    return ConvexProblem(t(Xa), t(Y.reshape(len(Y), -1)), t(D), t(H), alpha, loss, kind)


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


@pytest.mark.parametrize(
    ("name", "loss", "kind"),
    [("diabetes", "squared", "relu"), ("diabetes", "squared", "gated"), ("breast_cancer", "logistic", "relu"),
     ("breast_cancer", "hinge", "relu"), ("breast_cancer", "logistic", "gated")],
)
@needs_cuda
def test_solve_auto_on_cuda_matches_cpu(name, loss, kind):
    """solve(auto) on CUDA and on CPU reach the same certified optimum, each certified to TOL."""
    if name == "diabetes":
        X, y = _scaled(load_diabetes, 200)
        y = (y - y.mean()) / y.std()
    else:
        X, y = _scaled(load_breast_cancer, 200)
        y = 2.0 * y - 1.0
    out = {}
    for dev in ("cpu", "cuda"):
        pb = _problem(X, y, 20, 1e-2, loss, kind, dev)
        res = solve(pb, tol=TOL)
        assert res.V.device.type == dev
        assert res.certificate.relative_gap <= TOL, (dev, res.certificate)
        out[dev] = res.certificate
    assert _close(out["cpu"].primal, out["cuda"].primal, 2 * TOL)


@needs_cuda
@pytest.mark.parametrize(("iter_dtype", "rel"), [(torch.float64, 1e-9), (torch.float32, 1e-3)])
def test_prediction_split_on_cuda_matches_cpu(iter_dtype, rel):
    """The prediction-split ADMM (the large-problem solver) follows the same path on both devices: after the
    same 1000 iterations the certified primal and dual agree (float64: to rounding; float32 iterations: to the
    float32 iterates' accuracy)."""
    X, y = _scaled(load_diabetes, 300)
    y = (y - y.mean()) / y.std()
    certs = {}
    for dev in ("cpu", "cuda"):
        pb = _problem(X, y, 30, 1e-2, "squared", "relu", dev)
        res = admm_relu_split(pb, tol=0.0, max_iter=1000, iter_dtype=iter_dtype)
        assert res.V.device.type == dev and res.V.dtype == torch.float64
        certs[dev] = res.certificate
    assert certs["cpu"].relative_gap <= 0.1  # it has got somewhere: the comparison is not of two zeros
    assert _close(certs["cpu"].primal, certs["cuda"].primal, rel)
    assert _close(certs["cpu"].dual, certs["cuda"].dual, rel)


@needs_cuda
def test_estimators_on_cuda_predict_as_on_cpu():
    """Classifier (3 classes) and regressor fitted with device="cuda": NumPy out, same predictions as on CPU."""
    X, y = _scaled(load_iris, 150)
    kw = dict(n_patterns=20, random_state=0, tol=1e-7)
    cpu = ConvexReLUClassifier(**kw).fit(X, y)
    gpu = ConvexReLUClassifier(device="cuda", **kw).fit(X, y)
    assert isinstance(gpu.decision_function(X), np.ndarray)
    assert gpu.certificate_.relative_gap <= 1e-7
    assert _close(cpu.objective_, gpu.objective_, 2e-7)
    np.testing.assert_allclose(gpu.decision_function(X), cpu.decision_function(X), atol=1e-3)
    Xr, yr = _scaled(load_diabetes, 150)
    r_cpu = ConvexReLURegressor(**kw).fit(Xr, yr / 100)
    r_gpu = ConvexReLURegressor(device="cuda", dtype="float32", **{**kw, "tol": 1e-4}).fit(Xr, yr / 100)
    assert r_gpu.certificate_.relative_gap <= 1e-4
    assert _close(r_cpu.objective_, r_gpu.objective_, 2e-4)


@needs_cuda
def test_warm_start_on_cuda_keeps_the_optimum():
    X, y = _scaled(load_diabetes, 200)
    pb = _problem(X, (y - y.mean()) / y.std(), 20, 1e-2, "squared", "relu", "cuda")
    cold = solve(pb, tol=TOL)
    warm = solve(pb, tol=TOL, warm_start=cold)
    assert warm.certificate.relative_gap <= TOL
    assert _close(cold.certificate.primal, warm.certificate.primal, 2 * TOL)


@needs_cuda
def test_lstsq_on_cuda_handles_rank_deficiency():
    """torch's CUDA lstsq (driver "gels") returns garbage for a singular matrix; linsys.lstsq must not."""
    g = torch.Generator().manual_seed(0)
    B = torch.randn(6, 3, generator=g, dtype=torch.float64)
    A = B @ B.T  # rank 3
    b = torch.randn(6, 2, generator=g, dtype=torch.float64)
    want = torch.linalg.pinv(A) @ b  # the least-squares solution (the minimum-norm one)
    got = lstsq(A.cuda(), b.cuda()).cpu()
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-10)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("n", "P", "K", "kappa", "tau_scale"),
                         [(40, 7, 3, 0.7, 0.1), (30, 33, 10, 1e-3, 100.0), (20, 100, 1, 1e-6, 1.0)])
def test_fused_zstep_matches_the_sorting_solution(dtype, n, P, K, kappa, tau_scale):
    """The kernel's safeguarded Newton from a poor start gives the exact z-step (by sorting) of zstep()."""
    g = torch.Generator().manual_seed(n + P)
    XU = 5 * torch.randn(n, 2 * P, K, generator=g, dtype=dtype)
    Nu = 0.3 * torch.randn(n, 2 * P, K, generator=g, dtype=dtype)
    on = torch.rand(n, P, generator=g) > 0.4
    Y = torch.randn(n, K, generator=g, dtype=dtype)
    tau0 = tau_scale * torch.randn(n, K, generator=g, dtype=dtype)
    C = XU + Nu
    Zr, taur = zstep(C, torch.cat([on, on], 1)[:, :, None], Y, kappa, None)  # no start: sorting
    dev = KERNEL_DEVICE
    Z, Nu2, R, tau, done = (a.cpu() for a in fused.zstep_fused(XU.to(dev), Nu.to(dev), on.to(dev), Y.to(dev),
                                                                 kappa, tau0.to(dev)))
    assert bool(done.all())
    tol = 64 * torch.finfo(dtype).eps * float(C.abs().sum(1).max())  # the scale of φ's terms
    assert float((tau - taur).abs().max()) <= tol
    assert float((Z - Zr).abs().max()) <= tol
    assert float((Nu2 - (C - Z)).abs().max()) <= 4 * torch.finfo(dtype).eps * float(C.abs().max())
    assert torch.equal(R, Z - Nu2)


@needs_kernel
def test_prediction_split_with_the_fused_kernel_follows_the_same_iterates():
    n, its = (120, 100) if KERNEL_DEVICE == "cuda" else (40, 30)  # Triton's CPU interpreter is slow
    X, y = _scaled(load_diabetes, n)
    y = (y - y.mean()) / y.std()
    Y = np.stack([y, -(y**2) / 3], 1)  # two outputs: the kernel's (sample, output) layout
    pb = _problem(X, Y, 12, 1e-2, "squared", "relu", KERNEL_DEVICE)
    a = admm_relu_split(pb, tol=0.0, max_iter=its, check_every=10, fused_zstep=False)
    b = admm_relu_split(pb, tol=0.0, max_iter=its, check_every=10, fused_zstep=True)
    assert a.certificate.relative_gap < 0.9  # it has moved (0.96 after one iteration)
    assert _close(a.certificate.primal, b.certificate.primal, 1e-9)
    assert _close(a.certificate.dual, b.certificate.dual, 1e-9)
    assert float((a.info["V_raw"] - b.info["V_raw"]).abs().max()) <= 1e-9 * float(a.info["V_raw"].abs().max())


@needs_kernel
def test_samples_the_kernel_leaves_unsettled_are_solved_exactly(monkeypatch):
    """With no Newton steps in the kernel most samples come back unsettled: the sorting fallback must give
    the same iterates as the PyTorch z-step."""

    n, its = (120, 40) if KERNEL_DEVICE == "cuda" else (30, 12)
    X, y = _scaled(load_diabetes, n)
    pb = _problem(X, (y - y.mean()) / y.std(), 8, 1e-2, "squared", "relu", KERNEL_DEVICE)
    a = admm_relu_split(pb, tol=0.0, max_iter=its, check_every=4, fused_zstep=False)
    seen = []
    real = fused.zstep_fused

    def no_newton(*args, **kw):
        out = real(*args, **{**kw, "iters": 0})
        seen.append(float(out[4].float().mean()))
        return out

    monkeypatch.setattr(fused, "zstep_fused", no_newton)
    b = admm_relu_split(pb, tol=0.0, max_iter=its, check_every=4, fused_zstep=True)
    assert min(seen) < 0.5  # the fallback did run, for most samples
    assert float((a.info["V_raw"] - b.info["V_raw"]).abs().max()) <= 1e-9 * float(a.info["V_raw"].abs().max())
    assert _close(a.certificate.primal, b.certificate.primal, 1e-9)


@needs_cuda
def test_device_limits_on_cuda():
    """The flop scale follows the device's measured float64 rate, within [1, CUDA_FLOP_SCALE]; the memory
    limit is positive and below the device's memory."""
    from convexnn.solvers import CUDA_FLOP_SCALE, device_limits

    X, y = _scaled(load_diabetes, 50)
    pb = _problem(X, y, 5, 1e-2, "squared", "relu", "cuda")
    scale, mem = device_limits(pb)
    assert 1.0 <= scale <= CUDA_FLOP_SCALE
    assert 0 < mem < torch.cuda.get_device_properties(0).total_memory
    assert device_limits(pb, 2**30) == (scale, 2**30)
