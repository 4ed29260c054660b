"""Tests of convexnn.robustness.lipschitz: validity of global and local bounds."""

from __future__ import annotations

import numpy as np
import pytest

from convexnn.network import TwoLayerReLU
from convexnn.robustness import LipschitzBound, lipschitz


def random_net(d: int, m: int, k: int, seed: int) -> TwoLayerReLU:
    rng = np.random.default_rng(seed)
    w2 = rng.normal(size=(m,) if k == 1 else (m, k))
    return TwoLayerReLU(rng.normal(size=(m, d)), rng.normal(size=m), w2)


def gradients(net: TwoLayerReLU, X: np.ndarray) -> np.ndarray:
    """∇f_k at each point, (n, K, d)."""
    act = (X @ net.W1.T + net.b1 > 0).astype(float)  # (n, m)
    W2 = net.w2.reshape(net.width, -1)
    return np.einsum("nm,mk,md->nkd", act, W2, net.W1)


def dual_norm(v: np.ndarray, norm: str) -> np.ndarray:
    return np.abs(v).sum(-1) if norm == "inf" else np.linalg.norm(v, axis=-1)


def as_2d(v, n_out: int) -> np.ndarray:
    return np.asarray(v, dtype=float).reshape(-1, n_out)


@pytest.mark.parametrize("norm", ["inf", 2])
@pytest.mark.parametrize(("d", "m", "k"), [(5, 8, 1), (10, 30, 1), (6, 12, 3), (3, 40, 2)])
def test_global_bound_dominates_sampled_gradients(norm, d: int, m: int, k: int) -> None:
    net = random_net(d, m, k, seed=d * m + k)
    res = lipschitz(net, norm=norm)
    assert isinstance(res, LipschitzBound)
    bound = as_2d(res.bound, k)[0]
    np.testing.assert_allclose(
        bound,
        np.minimum.reduce(
            [
                as_2d(res.sum_bound, k)[0],
                as_2d(res.product_bound, k)[0],
                *([as_2d(res.vertex_bound, k)[0]] if res.vertex_bound is not None else []),
            ]
        ),
    )
    assert (res.vertex_bound is not None) == (m <= 16)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, d)) * 3
    sampled = dual_norm(gradients(net, X), "inf" if norm == "inf" else "2").max(0)  # (K,)
    assert np.all(sampled <= bound * (1 + 1e-12))
    # finite differences |f(x) − f(x')| / ‖x − x'‖_p
    Xp = X + rng.normal(size=X.shape) * 0.5
    dist = np.abs(X - Xp).max(1) if norm == "inf" else np.linalg.norm(X - Xp, axis=1)
    ratio = np.abs(net(X) - net(Xp)).reshape(len(X), k) / dist[:, None]
    assert np.all(ratio.max(0) <= bound * (1 + 1e-9))
    if res.vertex_bound is not None:
        # the vertex bound is the largest subset gradient: the sampled gradients get close to it
        assert np.all(sampled <= as_2d(res.vertex_bound, k)[0] * (1 + 1e-12))


@pytest.mark.parametrize("norm", ["inf", 2])
@pytest.mark.parametrize("k", [1, 3])
def test_local_bound_between_sampled_and_global(norm, k: int) -> None:
    d, m = 6, 20
    net = random_net(d, m, k, seed=7 + k)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, d))
    eps = 0.3
    res = lipschitz(net, norm=norm, X=X, eps=eps)
    local = as_2d(res.local, k)
    assert local.shape == (60, k)
    glob = as_2d(res.bound, k)[0]
    assert np.all(local <= glob[None, :] * (1 + 1e-12))
    assert np.all(res.n_active + res.n_unstable <= m)
    # gradients at random points inside each ball
    for _ in range(200):
        g = rng.uniform(-1, 1, size=X.shape)
        if norm == 2:
            g = g / np.linalg.norm(g, axis=1, keepdims=True) * rng.random((len(X), 1))
        grads = gradients(net, X + eps * g)  # (n, K, d)
        assert np.all(dual_norm(grads, "inf" if norm == "inf" else "2") <= local * (1 + 1e-12))
    # a point far from every kink: the local bound is the exact gradient norm
    far = TwoLayerReLU(net.W1, net.b1 + 100.0, net.w2)
    exact = dual_norm(gradients(far, X[:5]), "inf" if norm == "inf" else "2")
    np.testing.assert_allclose(as_2d(lipschitz(far, norm=norm, X=X[:5], eps=0.1).local, k), exact, rtol=1e-12)


def test_local_bound_smaller_for_smaller_balls_and_box() -> None:
    net = random_net(5, 25, 1, seed=3)
    X = np.random.default_rng(2).uniform(0, 1, size=(100, 5))
    small = lipschitz(net, X=X, eps=0.01).local
    large = lipschitz(net, X=X, eps=0.5).local
    boxed = lipschitz(net, X=X, eps=0.5, box=(0, 1)).local
    assert np.all(small <= large + 1e-12)
    assert np.all(boxed <= large + 1e-12)
    assert small.mean() < large.mean()


def test_single_output_shapes_and_errors() -> None:
    net = random_net(4, 6, 1, seed=0)
    res = lipschitz(net, norm="inf")
    assert isinstance(res.bound, float) and res.local is None
    res = lipschitz(net, norm=2, X=np.zeros((3, 4)), eps=np.array([0.0, 0.1, 1.0]))
    assert res.local.shape == (3,)
    with pytest.raises(ValueError, match="both X and eps"):
        lipschitz(net, X=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="both X and eps"):
        lipschitz(net, eps=0.1)
    with pytest.raises(ValueError, match="norm"):
        lipschitz(net, norm=3)
    with pytest.raises(ValueError, match="shape"):
        lipschitz(net, X=np.zeros((3, 5)), eps=0.1)
    with pytest.raises(ValueError, match=">= 0"):
        lipschitz(net, X=np.zeros((3, 4)), eps=-1.0)
    with pytest.raises(TypeError):
        lipschitz([1, 2, 3])
