r"""Projected gradient descent on the margin (an upper bound on the worst-case margin).

For each point x₀ with label y, PGD minimises the margin

    binary (one output, y ∈ {−1, +1}):  m(x) = y · f(x)
    K outputs (y ∈ 0..K−1):             m(x) = f_y(x) − max_{j≠y} f_j(x)

over the ball ‖x − x₀‖_p ≤ ε (p = ∞ or 2) intersected with an optional box, i.e. it maximises the
margin loss −m(x). Steps (α the step size, g = ∇m(x)):

    ℓ∞:  x ← Π(x − α sign(g)),        ℓ2:  x ← Π(x − α g / ‖g‖₂),

where Π projects onto the ball and then clips to the box. For ℓ∞ that is the exact projection onto
ball ∩ box (itself a box). For ℓ2 the result is feasible but not always the Euclidean projection onto
the intersection: clipping to a box that contains x₀ never increases ‖x − x₀‖₂, so ball-then-box stays
inside the ball. By default α decays geometrically from 0.25·ε to 0.001·ε over the steps (large moves
first, then convergence to a vertex or kink); a constant ``step_size`` may be given instead.
Restart 0 starts at x₀, the others uniformly at random in the ball. The lowest-margin
iterate over all steps and restarts is kept per point. Everything is batched in torch: the tensors have
shape (restarts, n, d); there is no Python loop over points.
"""

from __future__ import annotations

import numpy as np
import torch

from convexnn.network import TwoLayerReLU
from convexnn.robustness._checks import (
    box_rows,
    check_box,
    check_eps,
    check_labels,
    check_X,
    get_network,
    margins,
    output_matrix,
    parse_norm,
    small_work_threads,
    to_torch,
)

__all__ = ["pgd_attack"]

_F64 = torch.float64
#: Elements per block of (restarts × points × features) tensors.
_BLOCK_ELEMENTS = 1 << 23
_START, _END = 0.25, 1e-3


def _generator(random_state: object) -> torch.Generator:
    gen = torch.Generator()
    if random_state is None:
        seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> 1)
    elif isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(0, 2**62))
    elif isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        seed = int(random_state)
    else:
        raise TypeError("random_state must be None, an int or a numpy Generator")
    gen.manual_seed(seed)
    return gen


def _margin_t(z_out: torch.Tensor, y: torch.Tensor, binary: bool) -> torch.Tensor:
    """Margins from outputs (R, n, K) and labels (n,) (±1 if binary, else class indices)."""
    if binary:
        return y * z_out[..., 0]
    own = z_out.gather(-1, y.view(1, -1, 1).expand(z_out.shape[0], -1, 1))[..., 0]
    masked = z_out.scatter(-1, y.view(1, -1, 1).expand(z_out.shape[0], -1, 1), float("-inf"))
    return own - masked.max(dim=-1).values


def _pgd(
    net: TwoLayerReLU,
    X: np.ndarray,
    y: np.ndarray,
    eps: np.ndarray,
    norm: str,
    steps: int,
    restarts: int,
    step_size: float | np.ndarray | None,
    box: tuple[np.ndarray, np.ndarray] | None,
    gen: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Best perturbation (n, d) and its margin (n,) (float64 forward pass); inputs already validated."""
    n, d = X.shape
    W1 = to_torch(net.W1)
    b1 = to_torch(net.b1)
    W2 = to_torch(output_matrix(net))
    binary = W2.shape[1] == 1
    yt = torch.as_tensor(y, dtype=_F64 if binary else torch.int64)
    x0 = to_torch(X)
    e = to_torch(eps)
    if box is not None:
        lo_box = to_torch(box[0])
        hi_box = to_torch(box[1])
    # ℓ∞ ball ∩ box is the box [L, H].
    L = x0 - e[:, None]
    H = x0 + e[:, None]
    if box is not None:
        L, H = torch.maximum(L, lo_box), torch.minimum(H, hi_box)
    if step_size is None:
        # geometric decay from START·ε to END·ε over the steps
        ratio = (_END / _START) ** (1.0 / max(steps - 1, 1))
        alpha = _START * e
    else:
        ratio = 1.0
        alpha = torch.as_tensor(np.broadcast_to(np.asarray(step_size, dtype=np.float64), (n,)).copy())
    alpha = alpha[None, :, None]

    def project(x: torch.Tensor) -> torch.Tensor:
        if norm == "inf":
            return torch.minimum(torch.maximum(x, L), H)
        delta = x - x0
        size = torch.linalg.vector_norm(delta, dim=-1, keepdim=True)
        radius = (e * (1 - 1e-12))[None, :, None]
        factor = torch.where(size > radius, radius / torch.clamp(size, min=1e-300), torch.ones_like(size))
        x = x0 + delta * factor
        if box is not None:
            x = torch.minimum(torch.maximum(x, lo_box), hi_box)
        return x

    def margin(x: torch.Tensor) -> torch.Tensor:
        return _margin_t(torch.relu(x @ W1.T + b1) @ W2, yt, binary)

    R = max(1, restarts)
    x = x0.expand(R, n, d).clone()
    if R > 1:
        if norm == "inf":
            noise = (2 * torch.rand((R - 1, n, d), generator=gen, dtype=_F64) - 1) * e[None, :, None]
        else:
            g = torch.randn((R - 1, n, d), generator=gen, dtype=_F64)
            g = g / torch.clamp(torch.linalg.vector_norm(g, dim=-1, keepdim=True), min=1e-300)
            r = torch.rand((R - 1, n, 1), generator=gen, dtype=_F64) ** (1.0 / d)
            noise = g * r * e[None, :, None]
        x[1:] = x[1:] + noise
        x = project(x)
    best_x = x.clone()
    with torch.no_grad():
        best_m = margin(x)
    for _ in range(steps):
        x.requires_grad_(True)
        m = margin(x)
        (grad,) = torch.autograd.grad(m.sum(), x)
        with torch.no_grad():
            better = m.detach() < best_m
            best_m = torch.where(better, m.detach(), best_m)
            best_x = torch.where(better[..., None], x.detach(), best_x)
            if norm == "inf":
                direction = grad.sign()
            else:
                gn = torch.linalg.vector_norm(grad, dim=-1, keepdim=True)
                direction = grad / torch.clamp(gn, min=1e-300)
            x = project(x.detach() - alpha * direction)
            alpha = alpha * ratio
    with torch.no_grad():
        m = margin(x)
        better = m < best_m
        best_m = torch.where(better, m, best_m)
        best_x = torch.where(better[..., None], x, best_x)
        which = best_m.argmin(dim=0)  # (n,)
        out = best_x[which, torch.arange(n)].numpy().copy()
    return out, margins(net, out, y)


def pgd_attack(
    model: object,
    X: object,
    y: object,
    eps: object,
    norm: object = "inf",
    steps: int = 50,
    restarts: int = 10,
    step_size: float | np.ndarray | None = None,
    box: object = None,
    random_state: object = None,
    return_margin: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Projected gradient attack on the margin; returns perturbed points, (n, d) float64.

    Parameters
    ----------
    model : a network accepted by :func:`convexnn.network.as_network`.
    X : (n, d) clean points.
    y : (n,) labels: ±1 for a single-output network, class indices 0..K-1 for K outputs
        (anything else raises ValueError).
    eps : radius ≥ 0, scalar or (n,).
    norm : "inf" or 2.
    steps : gradient steps per restart.
    restarts : number of starts (the first at X itself, the rest uniform in the ball).
    step_size : constant α, scalar or (n,); default: a geometric schedule from 0.25·ε down to
        0.001·ε over the steps (large moves first, then fine convergence to a vertex/kink).
    box : optional (lo, hi) each a scalar or broadcastable to X (X must lie inside).
    random_state : None, int or numpy Generator (seeds the random starts).
    return_margin : also return the margins (n,) of the returned points (float64 forward pass).

    Every returned row lies in the ball (up to rounding, ≤ eps·(1 + 1e-12)) and in the box; it is the
    lowest-margin point met over all steps and restarts (X itself if nothing lower was found).
    """
    net = get_network(model)
    normp = parse_norm(norm)
    Xa = check_X(net, X)
    n = Xa.shape[0]
    ya = check_labels(net, y, n)
    ea = check_eps(eps, n)
    boxa = check_box(box, Xa)
    for name, val in (("steps", steps), ("restarts", restarts)):
        if not isinstance(val, int | np.integer) or isinstance(val, bool) or val < (0 if name == "steps" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'steps' else 'positive'} integer")
    if step_size is not None:
        sa = np.asarray(step_size, dtype=np.float64)
        if not np.all(np.isfinite(sa)) or np.any(sa < 0):
            raise ValueError("step_size must be finite and >= 0")
    out, m = run_pgd(net, Xa, ya, ea, normp, int(steps), int(restarts), step_size, boxa, random_state)
    return (out, m) if return_margin else out


def run_pgd(
    net: TwoLayerReLU,
    X: np.ndarray,
    y: np.ndarray,
    eps: np.ndarray,
    norm: str,
    steps: int,
    restarts: int,
    step_size: float | np.ndarray | None,
    box: tuple[np.ndarray, np.ndarray] | None,
    random_state: object,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pgd_attack` on validated inputs, in blocks of points to bound the memory."""
    gen = _generator(random_state)
    n, d = X.shape
    with small_work_threads(max(1, restarts) * n * max(d, net.width)):
        return _pgd_blocks(net, X, y, eps, norm, steps, restarts, step_size, box, gen)


def _pgd_blocks(
    net: TwoLayerReLU,
    X: np.ndarray,
    y: np.ndarray,
    eps: np.ndarray,
    norm: str,
    steps: int,
    restarts: int,
    step_size: float | np.ndarray | None,
    box: tuple[np.ndarray, np.ndarray] | None,
    gen: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    n, d = X.shape
    block = max(1, _BLOCK_ELEMENTS // (max(1, restarts) * d))
    outs, ms = [], []
    for start in range(0, n, block):
        sl = slice(start, min(n, start + block))
        sa = None if step_size is None or np.ndim(step_size) == 0 else np.asarray(step_size)[sl]
        sa = step_size if sa is None and step_size is not None else sa
        bx = box_rows(box, sl)
        o, m = _pgd(net, X[sl], y[sl], eps[sl], norm, steps, restarts, sa, bx, gen)
        outs.append(o)
        ms.append(m)
    return np.concatenate(outs), np.concatenate(ms)
