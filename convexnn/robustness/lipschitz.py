r"""Lipschitz bounds for f(x) = relu(x W1ᵀ + b1) w2 (MATH.md §10).

The constant bounded is, for each output k, L_k = sup_{x≠x'} |f_k(x) − f_k(x')| / ‖x − x'‖_p with p = ∞
or 2 (input norm) and |·| on the output. Because f_k is continuous and piecewise linear,
L_k = ess sup_x ‖∇f_k(x)‖_q (q the dual exponent: q = 1 for p = ∞, q = 2 for p = 2), and wherever it
exists ∇f_k(x) = Σ_{j active at x} w2_jk W1_j is one of the "subset sums" of the vectors w2_jk W1_j.

Global bounds (per output k; all valid, ``bound`` is the smallest):

* sum bound:      Σ_j |w2_jk| ‖W1_j‖_q                       (triangle inequality over the subset sum)
* product bound:  ℓ2:  ‖W1‖₂ ‖w2_k‖₂       ℓ∞:  √d ‖W1‖₂ ‖w2_k‖₂
  (∇f_k = W1ᵀ D w2_k with D diagonal, 0 ≤ D ≤ I, so ‖∇f_k‖₂ ≤ ‖W1‖₂ ‖w2_k‖₂, and ‖v‖₁ ≤ √d ‖v‖₂.
  The ℓ∞→ℓ∞ operator-norm product max_j ‖W1_j‖₁ · ‖w2_k‖₁ is never below the sum bound, so it is not
  reported.)
* vertex bound (only when m ≤ ``vertex_max_neurons``): max over all 2^m subsets S of
  ‖Σ_{j∈S} w2_jk W1_j‖_q — the largest gradient any activation pattern can produce.

Local bound over the ball ‖x − x₀‖_p ≤ ε (∩ box), per point and output: with interval bounds l ≤ z ≤ u on
the pre-activations, neurons with u_j ≤ 0 are off on the whole ball (contribute 0), neurons with
l_j ≥ 0 are on (their part of the gradient is the fixed vector a_k = Σ_{l_j ≥ 0} w2_jk W1_j), and the
unstable ones can contribute any subset, so on the ball (a convex set)

    L_k(x₀, ε) ≤ ‖a_k‖_q + Σ_{l_j < 0 < u_j} |w2_jk| ‖W1_j‖_q,

and the reported local bound is the minimum of this and the global bound (also valid locally). It is
therefore always ≤ the global bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from convexnn.network import TwoLayerReLU
from convexnn.robustness._checks import (
    check_box,
    check_eps,
    check_X,
    get_network,
    output_matrix,
    parse_norm,
    small_work_threads,
    to_torch,
)
from convexnn.robustness.bounds import _preact

__all__ = ["LipschitzBound", "lipschitz"]

_F64 = torch.float64


@dataclass(frozen=True)
class LipschitzBound:
    """Lipschitz bounds w.r.t. ‖·‖_p on the input and |·| on each output.

    For a single-output network every per-output field is a float (global) or (n,) array (local);
    for K outputs the global fields have shape (K,) and the local ones (n, K).

    Attributes
    ----------
    norm : "inf" or "2", the input norm p.
    bound : the global bound, the smallest of the candidates below.
    sum_bound : Σ_j |w2_jk| ‖W1_j‖_q.
    product_bound : ‖W1‖₂‖w2_k‖₂ (ℓ2) or √d ‖W1‖₂‖w2_k‖₂ (ℓ∞).
    vertex_bound : max over subsets S of ‖Σ_{j∈S} w2_jk W1_j‖_q, or None when m is too large.
    local : the local bound per point over its ball (None unless X and eps were given).
    n_active, n_unstable : (n,) neurons provably on / possibly switching over each ball (or None).
    """

    norm: str
    bound: float | np.ndarray
    sum_bound: float | np.ndarray
    product_bound: float | np.ndarray
    vertex_bound: float | np.ndarray | None = None
    local: np.ndarray | None = None
    n_active: np.ndarray | None = None
    n_unstable: np.ndarray | None = None


def _dual_norm(v: torch.Tensor, norm: str) -> torch.Tensor:
    """‖v‖_q along the last axis, q the dual of the input norm p."""
    return v.abs().sum(-1) if norm == "inf" else torch.linalg.vector_norm(v, dim=-1)


def _vertex_bound(W1: torch.Tensor, W2: torch.Tensor, norm: str, block: int = 4096) -> torch.Tensor:
    """max_S ‖Σ_{j∈S} w2_jk W1_j‖_q for every output k by enumerating the 2^m subsets, (K,)."""
    m = W1.shape[0]
    best = torch.zeros(W2.shape[1], dtype=_F64)
    bits = torch.arange(m)
    for start in range(0, 1 << m, block):
        codes = torch.arange(start, min(1 << m, start + block))
        S = ((codes[:, None] >> bits[None, :]) & 1).to(_F64)  # (b, m)
        for k in range(W2.shape[1]):
            grads = (S * W2[:, k][None, :]) @ W1  # (b, d)
            best[k] = torch.maximum(best[k], _dual_norm(grads, norm).max())
    return best


def _bounds(
    net: TwoLayerReLU,
    normp: str,
    Xa: np.ndarray | None,
    ea: np.ndarray | None,
    boxa: tuple[np.ndarray, np.ndarray] | None,
    use_vertex: bool,
) -> tuple:
    """The tensors behind :func:`lipschitz` on validated inputs (global fields (K,), local (n, K))."""
    W1 = to_torch(net.W1)
    W2 = to_torch(output_matrix(net))  # (m, K)
    d = W1.shape[1]
    row_q = _dual_norm(W1, normp)  # (m,)
    sum_bound = W2.abs().T @ row_q  # (K,)
    spec = torch.linalg.matrix_norm(W1, ord=2)
    product = spec * torch.linalg.vector_norm(W2, dim=0)
    if normp == "inf":
        product = product * np.sqrt(d)
    bound = torch.minimum(sum_bound, product)
    vertex = None
    if use_vertex:
        vertex = _vertex_bound(W1, W2, normp)
        bound = torch.minimum(bound, vertex)

    local = n_active = n_unstable = None
    if Xa is not None:
        lo, up = _preact(net, Xa, ea, normp, boxa)
        lo_t, up_t = torch.from_numpy(lo), torch.from_numpy(up)
        active = (lo_t >= 0).to(_F64)  # (n, m)
        unstable = ((lo_t < 0) & (up_t > 0)).to(_F64)
        n_pts, K = Xa.shape[0], W2.shape[1]
        local_t = torch.empty((n_pts, K), dtype=_F64)
        block = max(1, (1 << 22) // (K * d))
        for start in range(0, n_pts, block):
            sl = slice(start, min(n_pts, start + block))
            fixed = torch.einsum("nm,mk,md->nkd", active[sl], W2, W1)  # (b, K, d)
            switch = unstable[sl] @ (W2.abs() * row_q[:, None])  # (b, K)
            local_t[sl] = torch.minimum(_dual_norm(fixed, normp) + switch, bound[None, :])
        local = local_t.numpy()
        n_active = active.sum(1).numpy().astype(np.int64)
        n_unstable = unstable.sum(1).numpy().astype(np.int64)
    return bound, sum_bound, product, vertex, local, n_active, n_unstable


def lipschitz(
    model: object,
    norm: object = "inf",
    X: object = None,
    eps: object = None,
    box: object = None,
    vertex_max_neurons: int = 16,
) -> LipschitzBound:
    """Global (and, with X and eps, local) Lipschitz bounds; see the module docstring for formulas.

    Parameters
    ----------
    model : a network accepted by :func:`convexnn.network.as_network`.
    norm : input norm, "inf" or 2 (the output is measured with |·|, per output).
    X : (n, d) centres of the balls for local bounds (needs ``eps``).
    eps : radius ≥ 0, scalar or (n,).
    box : optional (lo, hi) intersected with the balls (only tightens the local bounds).
    vertex_max_neurons : compute the exact subset-enumeration bound when m ≤ this (cost 2^m·m·d).
    """
    net = get_network(model)
    normp = parse_norm(norm)
    if (X is None) != (eps is None):
        raise ValueError("local Lipschitz bounds need both X and eps (or neither for a global bound)")
    if box is not None and X is None:
        raise ValueError("box only applies to local bounds (give X and eps)")
    if isinstance(vertex_max_neurons, bool) or not isinstance(vertex_max_neurons, int) or vertex_max_neurons < 0:
        raise ValueError("vertex_max_neurons must be a non-negative integer")
    Xa = ea = boxa = None
    if X is not None:
        Xa = check_X(net, X)
        ea = check_eps(eps, Xa.shape[0])
        boxa = check_box(box, Xa)
    use_vertex = net.width <= vertex_max_neurons
    work = max(
        net.width * net.n_features,
        (1 << net.width) * net.width if use_vertex else 0,
        0 if Xa is None else Xa.shape[0] * net.n_outputs * net.n_features,
    )
    with small_work_threads(work):
        bound, sum_bound, product, vertex, local, n_active, n_unstable = _bounds(net, normp, Xa, ea, boxa, use_vertex)

    def out(v: torch.Tensor | np.ndarray | None) -> float | np.ndarray | None:
        if v is None:
            return None
        a = v.numpy() if isinstance(v, torch.Tensor) else v
        if net.n_outputs == 1:
            return float(a[0]) if a.ndim == 1 else a[:, 0].copy()
        return a.copy()

    return LipschitzBound(
        norm=normp,
        bound=out(bound),
        sum_bound=out(sum_bound),
        product_bound=out(product),
        vertex_bound=out(vertex),
        local=out(local),
        n_active=n_active,
        n_unstable=n_unstable,
    )
