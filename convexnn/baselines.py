"""The non-convex baseline: the same two-layer ReLU network trained directly with Adam.

This is what a user would otherwise do, and what the convex solvers are compared against. Both sides
minimise exactly the same objective (the convention of the whole project):

    objective(W1, b1, w2) = (1/n) Σ_k Σ_c ℓ(ŷ_kc, Y_kc) + (alpha/2)(‖W1‖² + ‖b1‖² + ‖w2‖²)

    ŷ = f(X) = relu(X W1ᵀ + b1) w2        W1: (m, d),  b1: (m,),  w2: (m,) or (m, K)  (no output bias)

    squared   ℓ(a, y) = ½(a − y)²
    logistic  ℓ(a, y) = log(1 + exp(−y a))        (y = ±1)
    hinge     ℓ(a, y) = max(0, 1 − y a)           (y = ±1)

Targets (see :func:`encode_targets`):

* one output (K = 1): ``y`` of shape (n,) — real values for the squared loss (regression, or ±1
  labels), ±1 labels for logistic / hinge;
* K > 1 outputs: either class indices 0..K−1 of shape (n,), turned into one-vs-rest targets
  Y ∈ {−1, +1}^{n×K} (+1 in the true class's column, −1 elsewhere; for every loss, the squared one
  included), or an (n, K) matrix used as given (±1 for logistic / hinge; any real values for
  multi-target regression with the squared loss).

The first layer's bias b1 is penalised like the weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from convexnn._config import num_threads, resolve_device, resolve_dtype
from convexnn.network import TwoLayerReLU

__all__ = [
    "LOSSES",
    "AdamGridResult",
    "AdamResult",
    "adam_grid",
    "encode_targets",
    "nonconvex_objective",
    "objective_torch",
    "train_adam",
]

LOSSES = ("squared", "logistic", "hinge")
_EVAL_CHUNK = 16384  # rows per block when evaluating the full objective (bounds memory to chunk × m)


def _check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: expected one of {LOSSES}")
    return loss


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    return alpha


def _is_pos_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1


def _check_pm1(Y: np.ndarray, loss: str) -> None:
    if loss != "squared" and not np.all((Y == 1.0) | (Y == -1.0)):
        bad = np.unique(Y[(Y != 1.0) & (Y != -1.0)])[:5]
        raise ValueError(
            f"the {loss} loss needs labels ±1 (found e.g. {bad}); convert binary labels with "
            "convexnn.datasets.to_pm1(y, positive) or pass class indices 0..K-1 with K > 1 outputs"
        )


def _one_vs_rest(y: np.ndarray, K: int) -> np.ndarray:
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)) or np.any(y < 0) or np.any(y >= K):
        raise ValueError(
            f"with {K} outputs a 1-D y must hold class indices 0..{K - 1} "
            "(see convexnn.datasets.to_class_index), or pass an (n, K) target matrix"
        )
    Y = -np.ones((y.shape[0], K))
    Y[np.arange(y.shape[0]), y.astype(np.int64)] = 1.0
    return Y


def encode_targets(y: np.ndarray, loss: str, n_outputs: int | None = None) -> tuple[np.ndarray, int]:
    """Targets as the objective uses them: ``(Y, K)`` with ``Y`` float64 of shape (n,) for K = 1 or
    (n, K) for K > 1.

    Rules for ``y``:

    * 2-D (n, K): used as is (an (n, 1) matrix is flattened when K = 1); must be ±1 for
      logistic / hinge.
    * 1-D with ``n_outputs`` = 1: used as is (±1 required for logistic / hinge).
    * 1-D with ``n_outputs`` = K > 1: class indices 0..K−1 → one-vs-rest ±1 matrix (n, K).
    * 1-D with ``n_outputs=None``: squared loss → one output (regression). Logistic / hinge: labels
      in {−1, +1} → one output; integer labels 0..K−1 with K = max + 1 ≥ 3 → K one-vs-rest outputs.
      Labels {0, 1} are refused as ambiguous: use ``to_pm1`` for one output or ``n_outputs=2``.
    """
    _check_loss(loss)
    y = np.asarray(y, dtype=np.float64)
    if n_outputs is not None and not _is_pos_int(n_outputs):
        raise ValueError(f"n_outputs must be a positive integer or None, got {n_outputs!r}")
    if y.ndim == 2:
        K = y.shape[1]
        if n_outputs is not None and n_outputs != K:
            raise ValueError(f"y has {K} columns but n_outputs={n_outputs}")
        Y = y[:, 0].copy() if K == 1 else y.copy()
    elif y.ndim == 1:
        if n_outputs is None:
            if loss == "squared" or np.all((y == 1.0) | (y == -1.0)):
                K = 1
            else:
                ok = np.all(np.isfinite(y)) and np.all(y == np.round(y)) and np.all(y >= 0)
                K = int(y.max()) + 1 if ok and y.size else 0
                if K == 2:
                    raise ValueError(
                        f"labels {{0, 1}} are ambiguous for the {loss} loss: convert them to ±1 with "
                        "convexnn.datasets.to_pm1(y, 1) for one output, or pass n_outputs=2 for two "
                        "one-vs-rest outputs"
                    )
                if K < 2:
                    _check_pm1(y, loss)  # raises with the explanation
        else:
            K = int(n_outputs)
        Y = y.copy() if K == 1 else _one_vs_rest(y, K)
    else:
        raise ValueError(f"y must be 1-D (n,) or 2-D (n, K), got shape {y.shape}")
    if not np.all(np.isfinite(Y)):
        raise ValueError("y contains NaN or inf")
    _check_pm1(Y, loss)
    return Y, K


def _check_X(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("X has no rows")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or inf")
    return X


def _loss_numpy(loss: str, A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    if loss == "squared":
        return 0.5 * (A - Y) ** 2
    if loss == "logistic":
        return np.logaddexp(0.0, -Y * A)
    return np.maximum(0.0, 1.0 - Y * A)


def nonconvex_objective(
    network: TwoLayerReLU, X: np.ndarray, y: np.ndarray, alpha: float, loss: str = "squared"
) -> float:
    """The reference value of the objective (NumPy, float64).

        (1/n) Σ_k Σ_c ℓ(f(x_k)_c, Y_kc) + (alpha/2)(‖W1‖² + ‖b1‖² + ‖w2‖²)

    Parameters
    ----------
    network : the network; its number of outputs K fixes how ``y`` is read.
    X : (n, d) inputs.
    y : (n,) targets for K = 1 (real for squared, ±1 for logistic / hinge); for K > 1 either class
        indices 0..K−1 (n,) — one-vs-rest ±1 targets — or an (n, K) target matrix
        (see :func:`encode_targets`).
    alpha : weight-decay strength (≥ 0).
    loss : ``"squared"``, ``"logistic"`` or ``"hinge"``.
    """
    _check_loss(loss)
    alpha = _check_alpha(alpha)
    X = _check_X(X)
    Y, _ = encode_targets(y, loss, network.n_outputs)
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {Y.shape[0]}")
    A = network.forward(X)
    data = float(np.sum(_loss_numpy(loss, A, Y))) / X.shape[0]
    return data + alpha * network.penalty()


def _loss_torch(loss: str, A: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    if loss == "squared":
        return 0.5 * (A - Y) ** 2
    if loss == "logistic":
        # log(1 + e^{-ya}) without softplus's linear cut-off (exact in float64 for every margin)
        return torch.logaddexp(torch.zeros((), dtype=A.dtype, device=A.device), -Y * A)
    return torch.clamp(1.0 - Y * A, min=0.0)


def _penalty_torch(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(p.pow(2).sum() for p in params)  # type: ignore[return-value]


def objective_torch(
    W1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    X: torch.Tensor,
    Y: torch.Tensor,
    alpha: float,
    loss: str = "squared",
) -> torch.Tensor:
    """The objective as a differentiable torch scalar (the loss :func:`train_adam` minimises).

    ``W1`` (m, d), ``b1`` (m,), ``w2`` (m,) or (m, K), ``X`` (n, d), ``Y`` encoded targets of shape
    (n,) or (n, K) (see :func:`encode_targets`). Returns
    (1/n) Σ ℓ(relu(X W1ᵀ + b1) w2, Y) + (alpha/2)(‖W1‖² + ‖b1‖² + ‖w2‖²).
    """
    _check_loss(loss)
    A = torch.relu(X @ W1.T + b1) @ w2
    return _loss_torch(loss, A, Y).sum() / X.shape[0] + 0.5 * alpha * _penalty_torch((W1, b1, w2))


# ----------------------------------------------------------------------------------------------
# Adam
# ----------------------------------------------------------------------------------------------


@dataclass
class AdamResult:
    """Outcome of one Adam run.

    Attributes
    ----------
    network : the network after the last step (float64). If training diverged (a non-finite loss),
        the best network evaluated before that instead (``diverged`` is then True).
    objective : :func:`nonconvex_objective` of ``network`` on the training data (NumPy float64).
    best_objective : the lowest full-data objective seen at any evaluation (epoch ends and the end).
    best_network : the network that reached ``best_objective``.
    history : ``(epoch, wall_time_s, objective)`` at initialisation (epoch 0) and every
        ``log_every`` epochs; ``wall_time_s`` is the training time so far, *excluding* the time spent
        evaluating the objective; the objective is computed in the training dtype.
    time : training wall time in seconds (optimisation steps only, evaluations excluded).
    eval_time : seconds spent evaluating the full objective for ``history``.
    epochs : epochs run (an epoch stopped by ``max_time`` part-way counts as one).
    steps : Adam steps taken.
    stopped : ``"epochs"``, ``"max_time"`` or ``"diverged"``.
    lr, seed, batch_size, loss, alpha, width, n_outputs : the settings of the run (``batch_size`` is
        None for full-batch training, including when the asked-for size was ≥ n).
    extra : free-form room for callers (e.g. a benchmark's labels).
    """

    network: TwoLayerReLU
    objective: float
    best_objective: float
    best_network: TwoLayerReLU
    history: list[tuple[int, float, float]]
    time: float
    eval_time: float
    epochs: int
    steps: int
    stopped: str
    lr: float
    seed: int
    batch_size: int | None
    loss: str
    alpha: float
    width: int
    n_outputs: int
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.stopped == "diverged"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to_network(lin1: torch.nn.Linear, lin2: torch.nn.Linear, K: int) -> TwoLayerReLU:
    W1 = lin1.weight.detach().cpu().double().numpy().copy()
    b1 = lin1.bias.detach().cpu().double().numpy().copy()
    w2 = lin2.weight.detach().cpu().double().numpy().T.copy()
    return TwoLayerReLU(W1=W1, b1=b1, w2=w2[:, 0] if K == 1 else w2)


def _init_layers(d: int, width: int, K: int, seed: int, dev: torch.device, dt: torch.dtype,
                 init: TwoLayerReLU | None) -> tuple[torch.nn.Linear, torch.nn.Linear]:
    """``Linear(d, width)`` and ``Linear(width, K, bias=False)`` with torch's default initialisation under
    ``seed``, or the weights of ``init``. Initialised in torch's default dtype (as a user's nn.Linear
    would be), so that the same seed gives the same starting network whatever dtype training runs in."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lin1 = torch.nn.Linear(d, width)
        lin2 = torch.nn.Linear(width, K, bias=False)
    lin1 = lin1.to(device=dev, dtype=dt)
    lin2 = lin2.to(device=dev, dtype=dt)
    if init is not None:
        if (init.n_features, init.width, init.n_outputs) != (d, width, K):
            raise ValueError(
                f"init has (d, m, K) = {(init.n_features, init.width, init.n_outputs)}, expected {(d, width, K)}"
            )
        with torch.no_grad():
            lin1.weight.copy_(torch.as_tensor(init.W1))
            lin1.bias.copy_(torch.as_tensor(init.b1))
            lin2.weight.copy_(torch.as_tensor(init.w2.reshape(width, K).T))
    return lin1, lin2


def train_adam(
    X: np.ndarray,
    y: np.ndarray,
    width: int,
    alpha: float,
    loss: str = "squared",
    *,
    lr: float = 1e-3,
    epochs: int = 100,
    batch_size: int | None = None,
    seed: int = 0,
    max_time: float | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float64,
    log_every: int = 1,
    n_outputs: int | None = None,
    n_threads: int | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    init: TwoLayerReLU | None = None,
) -> AdamResult:
    """Train f(x) = relu(x W1ᵀ + b1) w2 (width m, no output bias) with Adam on the project objective

        (1/n) Σ_k Σ_c ℓ(f(x_k)_c, Y_kc) + (alpha/2)(‖W1‖² + ‖b1‖² + ‖w2‖²).

    The weight decay is part of the differentiated loss (plain coupled L2, not AdamW's decoupled
    decay). With mini-batches each step minimises the batch mean of the loss plus the *full*
    penalty, an unbiased estimate of the objective.

    Parameters
    ----------
    X : (n, d) inputs.  y : targets, see :func:`encode_targets` (K inferred unless ``n_outputs``).
    width : hidden neurons m.  alpha : weight decay (≥ 0).  loss : squared | logistic | hinge.
    lr, betas, eps : Adam's settings (``torch.optim.Adam``).
    epochs : passes over the data; with ``batch_size=None`` (full batch) one epoch is one step.
    batch_size : rows per step, reshuffled every epoch with a generator seeded by ``seed``.
    seed : seeds PyTorch's default ``nn.Linear`` initialisation (kaiming-uniform weights, uniform
        biases) and the shuffling; the global torch RNG state is left untouched.
    max_time : stop once the training time (evaluations excluded) exceeds this many seconds.
    device, dtype : where and in which precision to train (``float64`` by default).
    log_every : evaluate the full objective every this many epochs (and always at the start and the
        end). Evaluation is done without gradients in blocks of rows and its time is *excluded* from
        ``time`` and from the times in ``history`` (it is reported as ``eval_time``).
    n_threads : torch CPU threads (``None``: the project default for a step's work, batch × (d + 1) × width, see
        ``convexnn._config.default_num_threads``: one thread for small networks, where two made breast cancer's
        1000 epochs at width 61 take 1.2–1.6 s instead of 1.0 s on the 2-core development machine).
    init : start from this network instead of a random initialisation.

    Returns
    -------
    AdamResult with the final ``network`` and its exact float64 ``objective``, ``best_objective``,
    ``history`` and timings.
    """
    loss = _check_loss(loss)
    alpha = _check_alpha(alpha)
    X = _check_X(X)
    Y, K = encode_targets(y, loss, n_outputs)
    n, d = X.shape
    if Y.shape[0] != n:
        raise ValueError(f"X has {n} rows but y has {Y.shape[0]}")
    if not _is_pos_int(width):
        raise ValueError(f"width must be a positive integer, got {width!r}")
    width = int(width)
    if not (_is_pos_int(epochs) or (isinstance(epochs, int | np.integer) and epochs == 0)):
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not _is_pos_int(log_every):
        raise ValueError(f"log_every must be a positive integer, got {log_every!r}")
    if batch_size is not None and not _is_pos_int(batch_size):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if max_time is not None and not max_time > 0:
        raise ValueError(f"max_time must be positive or None, got {max_time!r}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    bs = n if batch_size is None or batch_size >= n else int(batch_size)

    with num_threads(n_threads, work=bs * (d + 1) * width):  # one product of a batch with the layer
        lin1, lin2 = _init_layers(d, width, K, seed, dev, dt, init)
        params = [lin1.weight, lin1.bias, lin2.weight]
        Xt = torch.as_tensor(X, dtype=dt, device=dev)
        Yt = torch.as_tensor(Y.reshape(n, K), dtype=dt, device=dev)
        opt = torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)
        gen = torch.Generator(device="cpu").manual_seed(seed)

        def batch_objective(Xb: torch.Tensor, Yb: torch.Tensor) -> torch.Tensor:
            A = torch.nn.functional.linear(torch.relu(lin1(Xb)), lin2.weight)
            return _loss_torch(loss, A, Yb).sum() / Xb.shape[0] + 0.5 * alpha * _penalty_torch(params)

        @torch.no_grad()
        def full_objective() -> float:
            total = torch.zeros((), dtype=dt, device=dev)
            for start in range(0, n, _EVAL_CHUNK):
                A = torch.nn.functional.linear(torch.relu(lin1(Xt[start : start + _EVAL_CHUNK])), lin2.weight)
                total = total + _loss_torch(loss, A, Yt[start : start + _EVAL_CHUNK]).sum()
            return float(total / n + 0.5 * alpha * _penalty_torch(params))

        history: list[tuple[int, float, float]] = []
        train_time = 0.0
        eval_time = 0.0
        best_obj = math.inf
        best_net: TwoLayerReLU | None = None

        def evaluate(epoch: int) -> float:
            nonlocal eval_time, best_obj, best_net
            t0 = time.perf_counter()
            obj = full_objective()
            if math.isfinite(obj):
                history.append((epoch, train_time, obj))
                if obj < best_obj:
                    best_obj = obj
                    best_net = _to_network(lin1, lin2, K)
            eval_time += time.perf_counter() - t0
            return obj

        evaluate(0)
        if best_net is None:
            raise FloatingPointError("the objective at initialisation is not finite (check X and y)")
        stopped = "epochs"
        epoch = 0
        steps = 0
        last_logged = 0
        while epoch < epochs and stopped == "epochs":
            epoch += 1
            _sync(dev)
            t0 = time.perf_counter()
            if bs == n:
                batches: Sequence[torch.Tensor | None] = [None]
            else:
                perm = torch.randperm(n, generator=gen).to(dev)
                batches = list(torch.split(perm, bs))
            for idx in batches:
                opt.zero_grad(set_to_none=True)
                obj_b = batch_objective(Xt, Yt) if idx is None else batch_objective(Xt[idx], Yt[idx])
                if not torch.isfinite(obj_b):
                    stopped = "diverged"
                    break
                obj_b.backward()
                opt.step()
                steps += 1
                if max_time is not None:
                    _sync(dev)
                    if train_time + time.perf_counter() - t0 >= max_time:
                        stopped = "max_time"
                        break
            _sync(dev)
            train_time += time.perf_counter() - t0
            if stopped == "diverged":
                break
            if epoch % log_every == 0 or epoch == epochs or stopped == "max_time":
                last_logged = epoch
                if not math.isfinite(evaluate(epoch)):
                    stopped = "diverged"
        if stopped != "diverged" and last_logged != epoch:
            evaluate(epoch)

    final = best_net if stopped == "diverged" else _to_network(lin1, lin2, K)
    return AdamResult(
        network=final,
        objective=nonconvex_objective(final, X, Y, alpha, loss),
        best_objective=best_obj,
        best_network=best_net,
        history=history,
        time=train_time,
        eval_time=eval_time,
        epochs=epoch,
        steps=steps,
        stopped=stopped,
        lr=float(lr),
        seed=int(seed),
        batch_size=None if bs == n else bs,
        loss=loss,
        alpha=alpha,
        width=width,
        n_outputs=K,
    )


@dataclass
class AdamGridResult:
    """All runs of :func:`adam_grid` (in grid order: lr, then batch size, then seed) and the best
    one (lowest final ``objective``; ties go to the earlier run)."""

    results: list[AdamResult]
    best: AdamResult

    def __iter__(self) -> Iterator[object]:  # allows ``results, best = adam_grid(...)``
        return iter((self.results, self.best))


def adam_grid(
    X: np.ndarray,
    y: np.ndarray,
    width: int,
    alpha: float,
    loss: str = "squared",
    *,
    lrs: Sequence[float] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    seeds: Sequence[int] = (0, 1, 2),
    batch_sizes: Sequence[int | None] = (None, 256),
    epochs: int = 100,
    max_time: float | None = None,
    **kwargs: object,
) -> AdamGridResult:
    """Run :func:`train_adam` over every (lr, batch_size, seed) and keep the best final objective.

    ``max_time`` is the budget of *each* run; other keyword arguments go to :func:`train_adam`.
    Diverged runs take part with the objective of the network they report. Returns an
    :class:`AdamGridResult` (unpacks as ``results, best``).
    """
    if not lrs or not seeds or not batch_sizes:
        raise ValueError("lrs, seeds and batch_sizes must each hold at least one value")
    results: list[AdamResult] = []
    for lr in lrs:
        for bs in batch_sizes:
            for seed in seeds:
                res = train_adam(
                    X, y, width, alpha, loss,
                    lr=lr, epochs=epochs, batch_size=bs, seed=seed, max_time=max_time,
                    **kwargs,  # type: ignore[arg-type]
                )
                results.append(res)
    best = min(results, key=lambda r: r.objective)
    return AdamGridResult(results=results, best=best)


# ----------------------------------------------------------------------------------------------
# Adam with PGD adversarial training (Madry et al.)
# ----------------------------------------------------------------------------------------------


def _pgd_perturb(
    forward,
    Xb: torch.Tensor,
    Yb: torch.Tensor,
    loss: str,
    eps: float,
    norm: str,
    steps: int,
    step_size: float,
    box: tuple[float, float] | None,
    gen: torch.Generator,
) -> torch.Tensor:
    """Inner maximisation of PGD training: ascend Σ ℓ(f(x + δ), y) over ‖δ‖ ≤ eps (and the box).

    Random start in the ball; ℓ∞ steps along sign(∇), ℓ2 steps along ∇/‖∇‖; projection onto the ball
    and then the box (exact for ℓ∞; for ℓ2 the result stays feasible)."""
    if eps <= 0 or steps <= 0:
        return Xb
    if norm == "inf":
        delta = (2 * torch.rand(Xb.shape, generator=gen, dtype=Xb.dtype) - 1).to(Xb.device) * eps
    else:
        g = torch.randn(Xb.shape, generator=gen, dtype=Xb.dtype).to(Xb.device)
        g = g / torch.clamp(torch.linalg.vector_norm(g, dim=1, keepdim=True), min=1e-300)
        r = torch.rand((Xb.shape[0], 1), generator=gen, dtype=Xb.dtype).to(Xb.device)
        delta = g * r * eps

    def project(d: torch.Tensor) -> torch.Tensor:
        if norm == "inf":
            d = torch.clamp(d, -eps, eps)
        else:
            nrm = torch.linalg.vector_norm(d, dim=1, keepdim=True)
            d = d * torch.clamp(eps / torch.clamp(nrm, min=1e-300), max=1.0)
        if box is not None:
            d = torch.clamp(Xb + d, box[0], box[1]) - Xb
        return d

    delta = project(delta)
    for _ in range(steps):
        delta.requires_grad_(True)
        lval = _loss_torch(loss, forward(Xb + delta), Yb).sum()
        (g,) = torch.autograd.grad(lval, delta)
        with torch.no_grad():
            if norm == "inf":
                step = g.sign()
            else:
                step = g / torch.clamp(torch.linalg.vector_norm(g, dim=1, keepdim=True), min=1e-300)
            delta = project(delta + step_size * step)
    return (Xb + delta).detach()


def train_adam_pgd(
    X: np.ndarray,
    y: np.ndarray,
    width: int,
    alpha: float,
    loss: str = "logistic",
    *,
    eps: float,
    norm: str = "inf",
    box: tuple[float, float] | None = None,
    pgd_steps: int = 10,
    pgd_step_size: float | None = None,
    ramp: float = 0.3,
    lr: float = 1e-3,
    epochs: int = 60,
    batch_size: int | None = 50,
    seed: int = 0,
    max_time: float | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float64,
    n_outputs: int | None = None,
    n_threads: int | None = None,
    init: TwoLayerReLU | None = None,
) -> AdamResult:
    """PGD adversarial training (Madry et al. 2018) of f(x) = relu(x W1ᵀ + b1) w2 with Adam:

        min_{W1, b1, w2}  (1/n) Σ_k max_{‖δ_k‖ ≤ ε, x_k + δ_k ∈ box} Σ_c ℓ(f(x_k + δ_k)_c, Y_kc)
                          + (alpha/2)(‖W1‖² + ‖b1‖² + ‖w2‖²)

    with the inner maximum approximated by ``pgd_steps`` steps of projected gradient ascent from a random
    start in the ball (step ``pgd_step_size``, default 2.5·ε/steps). The radius is ramped linearly from 0
    to ``eps`` over the first ``ramp`` fraction of the epochs (a common stabiliser), then held.

    Parameters
    ----------
    X, y, width, alpha, loss : as :func:`train_adam` (targets per :func:`encode_targets`).
    eps : attack radius ε ≥ 0 (ε = 0 is plain training).
    norm : "inf" or "2" (2 is also accepted as an int).
    box : optional (lo, hi) scalars the perturbed inputs are clipped to (e.g. (0, 1) for pixels).
    pgd_steps, pgd_step_size : the inner attack.
    ramp : fraction of the epochs over which ε grows from 0 (0 < ramp ≤ 1; 0 disables the ramp).
    lr, epochs, batch_size, seed, max_time, device, dtype, n_outputs, n_threads, init : as
        :func:`train_adam` (the batch size defaults to 50 here; the seed also seeds the PGD starts).

    Returns
    -------
    AdamResult whose ``objective`` is the *clean* objective (:func:`nonconvex_objective`) of the final
    network; ``history`` holds (epoch, seconds, mean adversarial training loss of the epoch's batches);
    ``extra`` records eps, norm, box, pgd_steps, pgd_step_size and ramp.
    """
    loss = _check_loss(loss)
    alpha = _check_alpha(alpha)
    X = _check_X(X)
    Y, K = encode_targets(y, loss, n_outputs)
    n, d = X.shape
    if Y.shape[0] != n:
        raise ValueError(f"X has {n} rows but y has {Y.shape[0]}")
    if not _is_pos_int(width):
        raise ValueError(f"width must be a positive integer, got {width!r}")
    width = int(width)
    eps = float(eps)
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    norm_s = str(norm).lower().replace("l", "")
    if norm_s not in ("inf", "2"):
        raise ValueError(f"norm must be 'inf' or 2, got {norm!r}")
    if not (isinstance(epochs, int | np.integer) and epochs >= 0):
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if batch_size is not None and not _is_pos_int(batch_size):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if not (isinstance(pgd_steps, int | np.integer) and pgd_steps >= 0):
        raise ValueError(f"pgd_steps must be a non-negative integer, got {pgd_steps!r}")
    if not (0.0 <= ramp <= 1.0):
        raise ValueError(f"ramp must lie in [0, 1], got {ramp!r}")
    if box is not None:
        box = (float(box[0]), float(box[1]))
        if not box[0] < box[1]:
            raise ValueError(f"box must be (lo, hi) with lo < hi, got {box!r}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    bs = n if batch_size is None or batch_size >= n else int(batch_size)

    with num_threads(n_threads, work=bs * (d + 1) * width):  # one product of a batch with the layer
        lin1, lin2 = _init_layers(d, width, K, seed, dev, dt, init)
        params = [lin1.weight, lin1.bias, lin2.weight]
        Xt = torch.as_tensor(X, dtype=dt, device=dev)
        Yt = torch.as_tensor(Y.reshape(n, K), dtype=dt, device=dev)
        opt = torch.optim.Adam(params, lr=lr)
        gen = torch.Generator(device="cpu").manual_seed(seed)

        def forward(Xb: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.linear(torch.relu(lin1(Xb)), lin2.weight)

        history: list[tuple[int, float, float]] = []
        train_time = 0.0
        stopped = "epochs"
        epoch = steps = 0
        while epoch < epochs and stopped == "epochs":
            epoch += 1
            t0 = time.perf_counter()
            e = eps if ramp == 0 else eps * min(1.0, epoch / max(1.0, ramp * epochs))
            ss = 2.5 * e / max(pgd_steps, 1) if pgd_step_size is None else float(pgd_step_size)
            perm = torch.randperm(n, generator=gen).to(dev)
            total = 0.0
            for idx in torch.split(perm, bs):
                Xb, Yb = Xt[idx], Yt[idx]
                Xa = _pgd_perturb(forward, Xb, Yb, loss, e, norm_s, int(pgd_steps), ss, box, gen)
                opt.zero_grad(set_to_none=True)
                data = _loss_torch(loss, forward(Xa), Yb).sum() / Xb.shape[0]
                obj = data + 0.5 * alpha * _penalty_torch(params)
                if not torch.isfinite(obj):
                    stopped = "diverged"
                    break
                obj.backward()
                opt.step()
                steps += 1
                total += float(data.detach()) * Xb.shape[0]
                if max_time is not None and train_time + time.perf_counter() - t0 >= max_time:
                    stopped = "max_time"
                    break
            _sync(dev)
            train_time += time.perf_counter() - t0
            history.append((epoch, train_time, total / n))

    final = _to_network(lin1, lin2, K)
    obj = nonconvex_objective(final, X, Y, alpha, loss)
    return AdamResult(
        network=final, objective=obj, best_objective=obj, best_network=final, history=history,
        time=train_time, eval_time=0.0, epochs=epoch, steps=steps, stopped=stopped, lr=float(lr),
        seed=int(seed), batch_size=None if bs == n else bs, loss=loss, alpha=alpha, width=width,
        n_outputs=K,
        extra={"eps": eps, "norm": norm_s, "box": box, "pgd_steps": int(pgd_steps),
               "pgd_step_size": pgd_step_size, "ramp": float(ramp)},
    )


__all__ += ["train_adam_pgd"]
