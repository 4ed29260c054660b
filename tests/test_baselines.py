"""The non-convex objective and the Adam baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.preprocessing import StandardScaler

from convexnn.baselines import (
    LOSSES,
    adam_grid,
    encode_targets,
    nonconvex_objective,
    objective_torch,
    train_adam,
)
from convexnn.network import TwoLayerReLU


def _random_net(d: int, m: int, K: int, seed: int = 0) -> TwoLayerReLU:
    rng = np.random.default_rng(seed)
    w2 = rng.standard_normal(m) if K == 1 else rng.standard_normal((m, K))
    return TwoLayerReLU(rng.standard_normal((m, d)), rng.standard_normal(m), w2)


def _hand_objective(net: TwoLayerReLU, X: np.ndarray, Y: np.ndarray, alpha: float, loss: str) -> float:
    """Written out loop by loop, independent of the library code."""
    n = X.shape[0]
    total = 0.0
    for k in range(n):
        h = np.maximum(net.W1 @ X[k] + net.b1, 0.0)
        out = np.atleast_1d(h @ net.w2)
        targets = np.atleast_1d(Y[k])
        for a, t in zip(out, targets, strict=True):
            if loss == "squared":
                total += 0.5 * (a - t) ** 2
            elif loss == "logistic":
                total += np.log1p(np.exp(-t * a))
            else:
                total += max(0.0, 1.0 - t * a)
    pen = np.sum(net.W1**2) + np.sum(net.b1**2) + np.sum(net.w2**2)
    return total / n + 0.5 * alpha * pen


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), 2.0 * y - 1.0


# ----------------------------------------------------------------------------------------------
# the objective
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_objective_single_output(loss: str) -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 5))
    net = _random_net(5, 7, 1)
    y = rng.standard_normal(40) if loss == "squared" else np.sign(rng.standard_normal(40))
    alpha = 0.3
    got = nonconvex_objective(net, X, y, alpha, loss)
    assert isinstance(got, float)
    assert got == pytest.approx(_hand_objective(net, X, y, alpha, loss), rel=1e-12)
    if loss != "squared":  # an (n, 1) matrix of ±1 is accepted too
        assert nonconvex_objective(net, X, y[:, None], alpha, loss) == pytest.approx(got, rel=1e-14)


@pytest.mark.parametrize("loss", LOSSES)
def test_objective_multi_output(loss: str) -> None:
    rng = np.random.default_rng(2)
    n, d, m, K = 30, 4, 6, 3
    X = rng.standard_normal((n, d))
    net = _random_net(d, m, K)
    labels = rng.integers(0, K, size=n)
    Y = -np.ones((n, K))
    Y[np.arange(n), labels] = 1.0
    alpha = 0.05
    expected = _hand_objective(net, X, Y, alpha, loss)
    assert nonconvex_objective(net, X, labels, alpha, loss) == pytest.approx(expected, rel=1e-12)
    assert nonconvex_objective(net, X, Y, alpha, loss) == pytest.approx(expected, rel=1e-12)


def test_objective_multi_target_regression() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((25, 3))
    net = _random_net(3, 5, 2)
    Yreal = rng.standard_normal((25, 2))
    got = nonconvex_objective(net, X, Yreal, 0.1, "squared")
    assert got == pytest.approx(_hand_objective(net, X, Yreal, 0.1, "squared"), rel=1e-12)


def test_objective_large_margins_are_exact() -> None:
    X = np.array([[1.0], [-1.0]])
    net = TwoLayerReLU(np.array([[50.0]]), np.array([0.0]), np.array([1.0]))
    y = np.array([1.0, -1.0])  # margin 50 and 0 → ℓ = log1p(e^-50), log 2
    expected = 0.5 * (np.log1p(np.exp(-50.0)) + np.log(2.0))
    assert nonconvex_objective(net, X, y, 0.0, "logistic") == pytest.approx(expected, rel=1e-15)


def test_target_encoding_rules() -> None:
    with pytest.raises(ValueError, match="ambiguous"):
        encode_targets(np.array([0.0, 1.0, 1.0]), "logistic")
    with pytest.raises(ValueError, match="±1"):
        encode_targets(np.array([0.5, 1.0]), "hinge")
    Y, K = encode_targets(np.array([0.0, 1.0, 1.0]), "hinge", n_outputs=2)
    assert K == 2 and Y.tolist() == [[1, -1], [-1, 1], [-1, 1]]
    Y, K = encode_targets(np.array([2.0, 0.0, 1.0]), "logistic")
    assert K == 3 and Y.shape == (3, 3)
    Y, K = encode_targets(np.array([0.3, -2.0]), "squared")
    assert K == 1 and Y.tolist() == [0.3, -2.0]
    with pytest.raises(ValueError, match="class indices"):
        encode_targets(np.array([0.0, 3.0]), "squared", n_outputs=3)
    net = _random_net(2, 3, 1)
    with pytest.raises(ValueError, match="±1"):
        nonconvex_objective(net, np.zeros((2, 2)), np.array([0.0, 1.0]), 0.1, "logistic")


@pytest.mark.parametrize(("loss", "K"), [("squared", 1), ("logistic", 1), ("hinge", 1), ("logistic", 3)])
def test_autograd_matches_finite_differences(loss: str, K: int) -> None:
    rng = np.random.default_rng(4)
    n, d, m = 20, 3, 4
    X = rng.standard_normal((n, d))
    net = _random_net(d, m, K, seed=5)
    if K == 1:
        y = rng.standard_normal(n) if loss == "squared" else np.sign(rng.standard_normal(n))
    else:
        y = rng.integers(0, K, size=n).astype(float)
    Y, _ = encode_targets(y, loss, K)
    alpha = 0.2
    params = [torch.tensor(a, requires_grad=True) for a in (net.W1, net.b1, net.w2)]
    obj = objective_torch(*params, torch.tensor(X), torch.tensor(Y), alpha, loss)
    assert obj.item() == pytest.approx(nonconvex_objective(net, X, y, alpha, loss), rel=1e-13)
    obj.backward()
    h = 1e-6
    arrays = [net.W1, net.b1, net.w2]
    for i, p in enumerate(params):
        fd = np.zeros_like(arrays[i])
        for j in np.ndindex(arrays[i].shape):
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[i][j] += h
            minus[i][j] -= h
            fd[j] = (
                nonconvex_objective(TwoLayerReLU(*plus), X, y, alpha, loss)
                - nonconvex_objective(TwoLayerReLU(*minus), X, y, alpha, loss)
            ) / (2 * h)
        np.testing.assert_allclose(p.grad.numpy(), fd, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Adam
# ----------------------------------------------------------------------------------------------


def test_adam_decreases_objective_on_breast_cancer(cancer: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = cancer
    res = train_adam(X, y, width=32, alpha=1e-3, loss="logistic", lr=1e-2, epochs=100)
    initial = res.history[0][2]
    assert res.history[0][:2] == (0, 0.0)
    assert res.objective < 0.3 * initial
    assert res.best_objective <= res.objective + 1e-12
    assert res.objective == pytest.approx(nonconvex_objective(res.network, X, y, 1e-3, "logistic"), rel=1e-14)
    assert res.history[-1][0] == 100 and res.history[-1][2] == pytest.approx(res.objective, rel=1e-10)
    times = [t for _, t, _ in res.history]
    assert times == sorted(times) and res.time == pytest.approx(times[-1])
    assert res.steps == 100 and res.stopped == "epochs" and not res.diverged
    assert res.network.W1.shape == (32, 30) and res.network.w2.shape == (32,)


def test_adam_first_step_is_plain_adam_on_the_objective(cancer: tuple[np.ndarray, np.ndarray]) -> None:
    """One full-batch step equals Adam's first update (−lr·g/(|g|+eps)) on the gradient of the objective
    including the coupled L2 term, so no decoupled (AdamW) decay is involved."""
    X, y = cancer
    alpha, lr = 0.1, 1e-2
    start = train_adam(X, y, 8, alpha, "squared", epochs=0, seed=3).network
    one = train_adam(X, y, 8, alpha, "squared", epochs=1, lr=lr, seed=3).network
    params = [torch.tensor(a, requires_grad=True) for a in (start.W1, start.b1, start.w2)]
    objective_torch(*params, torch.tensor(X), torch.tensor(y), alpha, "squared").backward()
    for p, new in zip(params, (one.W1, one.b1, one.w2), strict=True):
        g = p.grad.numpy()
        expected = p.detach().numpy() - lr * g / (np.abs(g) + 1e-8)
        np.testing.assert_allclose(new, expected, rtol=1e-9, atol=1e-12)


def test_adam_is_deterministic(cancer: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = cancer
    kw = dict(width=10, alpha=1e-2, loss="hinge", lr=3e-3, epochs=3, batch_size=64)
    before = torch.random.get_rng_state()
    a = train_adam(X, y, seed=7, **kw)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is left alone
    b = train_adam(X, y, seed=7, **kw)
    c = train_adam(X, y, seed=8, **kw)
    np.testing.assert_array_equal(a.network.W1, b.network.W1)
    np.testing.assert_array_equal(a.network.w2, b.network.w2)
    assert [h[2] for h in a.history] == [h[2] for h in b.history]
    assert not np.array_equal(a.network.W1, c.network.W1)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("batch_size", [None, 100])
def test_train_adam_each_loss_runs(
    cancer: tuple[np.ndarray, np.ndarray], loss: str, batch_size: int | None
) -> None:
    X, y = cancer
    res = train_adam(X, y, 16, 1e-3, loss, lr=1e-2, epochs=5, batch_size=batch_size, log_every=2)
    assert [h[0] for h in res.history] == [0, 2, 4, 5]
    assert res.steps == (5 if batch_size is None else 5 * 6)
    assert res.batch_size == batch_size
    assert np.isfinite(res.objective) and res.objective < res.history[0][2]


def test_train_adam_multiclass_and_float32() -> None:
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X[:400])
    y = y[:400].astype(float)
    res = train_adam(X, y, 20, 1e-3, "logistic", lr=1e-2, epochs=10)
    assert res.n_outputs == 10 and res.network.w2.shape == (20, 10)
    assert res.objective < res.history[0][2]
    assert res.objective == pytest.approx(nonconvex_objective(res.network, X, y, 1e-3, "logistic"))
    res32 = train_adam(X, y, 20, 1e-3, "squared", lr=1e-2, epochs=10, n_outputs=10, dtype=torch.float32)
    assert res32.network.W1.dtype == np.float64
    assert res32.history[-1][2] == pytest.approx(res32.objective, rel=1e-5)


def test_train_adam_max_time_and_init(cancer: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = cancer
    res = train_adam(X, y, 8, 1e-3, "squared", epochs=10**7, max_time=0.2)
    assert res.stopped == "max_time" and res.time < 1.0 and res.epochs < 10**7
    again = train_adam(X, y, 8, 1e-3, "squared", epochs=0, init=res.network)
    np.testing.assert_array_equal(again.network.W1, res.network.W1)
    assert again.objective == pytest.approx(res.objective, rel=1e-14)
    with pytest.raises(ValueError):
        train_adam(X, y, 9, 1e-3, "squared", epochs=0, init=res.network)
    with pytest.raises(ValueError):
        train_adam(X, y, 8, -1.0)


def test_adam_grid_picks_lowest_final_objective(cancer: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = cancer
    grid = adam_grid(X[:200], y[:200], 8, 1e-3, "logistic", lrs=(1e-4, 1e-2), seeds=(0, 1),
                     batch_sizes=(None, 64), epochs=3)
    assert len(grid.results) == 8
    assert grid.best.objective == min(r.objective for r in grid.results)
    results, best = grid
    assert best is grid.best and results is grid.results
    assert {(r.lr, r.batch_size, r.seed) for r in results} == {
        (lr, bs, s) for lr in (1e-4, 1e-2) for bs in (None, 64) for s in (0, 1)
    }
