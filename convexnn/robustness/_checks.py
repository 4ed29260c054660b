"""Input checking and small helpers shared by the robustness tools (MATH.md §10).

Everything here works on NumPy float64 arrays; the bound computations convert to torch afterwards.

Conventions used throughout :mod:`convexnn.robustness`
-------------------------------------------------------
* ``X``: (n, d) points, ``y``: (n,) labels.
* A network with a single output is a binary classifier with labels in {-1, +1}; its margin is
  ``y·f(x)``. A network with K ≥ 2 outputs uses class indices 0..K-1 and the margin
  ``f_y(x) − max_{j≠y} f_j(x)``.
* The margin is a minimum of S "specifications" g_s(x) = relu(x W1ᵀ + b1) · c_s, each a single-output
  network with output weights c_s ∈ R^m: S = 1 and c = y·w2 for a binary network; S = K − 1 and
  c_j = w2[:, y] − w2[:, j] (j ≠ y) for K outputs. Lower-bounding the margin over a set means
  lower-bounding every g_s and taking the minimum.
* ``norm`` is "inf" (ℓ∞ ball) or "2" (ℓ2 ball); ``eps`` is a scalar or one radius per point.
* ``box`` = (lo, hi), each a scalar or an array broadcastable to (n, d) (e.g. (0, 1) for pixels):
  the perturbed point must stay in the box as well as in the ball.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from numbers import Real

import numpy as np
import torch

from convexnn.network import TwoLayerReLU, as_network

NORMS = ("inf", "2")
METHODS = ("ibp", "crown", "lp", "exact")


class UnsupportedNormError(NotImplementedError, ValueError):
    """A method that does not support the requested norm (kept for compatibility: every method now
    supports ℓ∞ and ℓ2; ℓ2 "lp"/"exact" used to raise it).

    It is both a :class:`NotImplementedError` and a :class:`ValueError`, so either ``except`` works.
    """


def parse_norm(norm: object) -> str:
    """Normalise a norm name to ``"inf"`` or ``"2"``.

    Accepted: ``"inf"``, ``"linf"``, ``np.inf``, ``float("inf")`` for ℓ∞; ``2``, ``"2"``, ``"l2"`` for ℓ2.
    """
    if isinstance(norm, bool):
        raise TypeError(f"norm must be 'inf' or 2, got {norm!r}")
    if isinstance(norm, str):
        key = norm.strip().lower().replace("_", "").replace("ℓ", "l")
        if key in ("inf", "linf", "l∞", "∞", "infinity"):
            return "inf"
        if key in ("2", "l2"):
            return "2"
        raise ValueError(f"unknown norm {norm!r}: use 'inf' or 2")
    if isinstance(norm, Real):
        if math.isinf(float(norm)) and float(norm) > 0:
            return "inf"
        if float(norm) == 2:
            return "2"
        raise ValueError(f"unsupported norm {norm!r}: use 'inf' or 2")
    raise TypeError(f"norm must be 'inf' or 2, got {type(norm).__name__}")


def parse_method(method: object) -> str:
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, one of {METHODS}, got {type(method).__name__}")
    key = method.strip().lower()
    if key not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {METHODS}")
    return key


def get_network(model: object) -> TwoLayerReLU:
    """:func:`convexnn.network.as_network` (TypeError for anything else)."""
    return as_network(model)


def output_matrix(net: TwoLayerReLU) -> np.ndarray:
    """The output weights as an (m, K) matrix (K = 1 for a single output, also when w2 is (m, 1))."""
    return net.w2.reshape(net.width, -1)


def check_X(net: TwoLayerReLU, X: object, name: str = "X") -> np.ndarray:
    """(n, d) float64 view or copy of ``X`` (never modified); ValueError for a wrong shape or NaN/inf."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array of shape (n, d): {exc}") from None
    if arr.ndim != 2 or arr.shape[1] != net.n_features:
        raise ValueError(f"{name} must have shape (n, {net.n_features}) for this network, got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    # one pass without a temporary: NaN/inf propagate to the sum (an overflow falls back to the full test)
    if not np.isfinite(arr.sum()) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def check_labels(net: TwoLayerReLU, y: object, n: int) -> np.ndarray:
    """Labels as an int64 (n,) array: ±1 for a single-output network, 0..K-1 for K outputs."""
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"y must be a numeric array of shape (n,): {exc}") from None
    arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {np.shape(y)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("y contains NaN or inf")
    k = net.n_outputs
    if k == 1:
        bad = ~np.isin(arr, (-1.0, 1.0))
        if np.any(bad):
            found = np.unique(arr[bad])[:5]
            raise ValueError(
                "labels for a single-output (binary) network must be -1 or +1; found "
                f"{found.tolist()} (map class 0 to -1 before calling)"
            )
    else:
        if np.any(arr != np.round(arr)) or np.any(arr < 0) or np.any(arr > k - 1):
            raise ValueError(f"labels for a network with {k} outputs must be integers in 0..{k - 1}")
    return arr.astype(np.int64)


def check_eps(eps: object, n: int, name: str = "eps") -> np.ndarray:
    """Radii as a float64 (n,) array from a scalar or an (n,) array; ValueError if negative/NaN."""
    if isinstance(eps, bool):
        raise TypeError(f"{name} must be a number or an array of shape (n,)")
    try:
        arr = np.asarray(eps, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number or an array of shape (n,): {exc}") from None
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got NaN or inf")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0, got {arr.min()}")
    return arr.copy()


def check_box(box: object, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``box = (lo, hi)`` as two float64 arrays of shape (1, d) or (n, d); ``None`` stays ``None``.

    Each bound is a scalar or an array broadcastable to X's shape (n, d), and may be ±inf
    (e.g. ``(0, np.inf)``); ``lo <= hi`` and ``lo <= X <= hi`` are required. Use :func:`box_rows`
    to select rows.
    """
    if box is None:
        return None
    if not isinstance(box, tuple | list) or len(box) != 2:
        raise TypeError("box must be None or a pair (lo, hi) of scalars or arrays broadcastable to X")
    n, d = X.shape
    out = []
    for b in box:
        try:
            a = np.asarray(b, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"box bounds must be numeric: {exc}") from None
        try:
            if a.ndim > 2:
                raise ValueError
            np.broadcast_shapes(a.shape, X.shape)
        except ValueError:
            raise ValueError(f"box bounds must broadcast to X's shape {X.shape}, got {a.shape}") from None
        if a.ndim < 2 or a.shape[0] == 1:
            a = np.broadcast_to(a, (1, d)).copy()
        elif a.shape != (n, d):
            a = np.broadcast_to(a, (n, d)).copy()  # an (n, 1) column
        out.append(a)
    lo, hi = out
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
        raise ValueError("box contains NaN")
    if np.any(lo > hi):
        raise ValueError("box lower bound exceeds the upper bound")
    if lo.shape[0] == 1 and hi.shape[0] == 1:
        inside = np.all(X.min(axis=0) >= lo[0]) and np.all(X.max(axis=0) <= hi[0])
    else:
        inside = bool(np.all(X >= lo)) and bool(np.all(X <= hi))
    if not inside:
        raise ValueError("every point of X must lie inside the box (lo <= X <= hi)")
    return lo, hi


def box_rows(box: tuple[np.ndarray, np.ndarray] | None, rows: object) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows ``rows`` (a slice or an index array) of a box from :func:`check_box`."""
    if box is None:
        return None
    return tuple(b if b.shape[0] == 1 else b[rows] for b in box)  # type: ignore[return-value]


def other_classes(y: np.ndarray, k: int) -> np.ndarray:
    """(n, K-1) indices j ≠ y_i in increasing order."""
    idx = np.arange(k - 1)[None, :]
    return idx + (idx >= y[:, None])


def spec_weights(net: TwoLayerReLU, y: np.ndarray) -> np.ndarray:
    """Output weights of the margin specifications, (n, S, m).

    Binary: S = 1, c = y·w2. K outputs: S = K − 1, c_s = w2[:, y] − w2[:, j_s] for the j_s ≠ y.
    """
    W = output_matrix(net)  # (m, K)
    k = W.shape[1]
    if k == 1:
        return (y.astype(np.float64)[:, None] * W[:, 0][None, :])[:, None, :]
    Wt = W.T  # (K, m)
    return Wt[y][:, None, :] - Wt[other_classes(y, k)]


def margins(net: TwoLayerReLU, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The margin at each point by a float64 forward pass, (n,)."""
    out = net.hidden(X) @ output_matrix(net)  # (n, K)
    if out.shape[1] == 1:
        return y * out[:, 0]
    n = X.shape[0]
    own = out[np.arange(n), y]
    rest = out.copy()
    rest[np.arange(n), y] = -np.inf
    return own - rest.max(axis=1)


def in_set(
    Xp: np.ndarray,
    X: np.ndarray,
    eps: np.ndarray,
    norm: str,
    box: tuple[np.ndarray, np.ndarray] | None,
    rtol: float = 1e-12,
) -> np.ndarray:
    """Whether each row of ``Xp`` lies in the ball of radius eps around X (and in the box), (n,) bool.

    The radius is checked up to floating-point rounding: ‖Xp − X‖ ≤ eps·(1 + rtol) + 1e-300.
    """
    delta = Xp - X
    size = np.abs(delta).max(axis=1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    ok = size <= eps * (1.0 + rtol) + 1e-300
    if box is not None:
        ok &= np.all((Xp >= box[0]) & (Xp <= box[1]), axis=1)
    return ok & np.all(np.isfinite(Xp), axis=1)


def to_torch(a: object) -> torch.Tensor:
    """float64 torch tensor sharing memory with ``a`` when possible (copied if read-only)."""
    arr = np.ascontiguousarray(a, dtype=np.float64)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr)


#: Below this many tensor elements per call, torch runs with one thread (see :func:`small_work_threads`).
SMALL_WORK = 1 << 18


@contextlib.contextmanager
def small_work_threads(work: int) -> Iterator[None]:
    """Run small tensor work with a single torch thread, restoring the setting afterwards.

    On small tensors several intra-op threads bring no speed-up, and on a busy machine every parallel
    reduction waits for the other threads to be scheduled: PGD on a few points was measured 100× slower
    with 2 threads than with 1 on a loaded 2-core machine. Work of at least ``SMALL_WORK`` elements keeps
    the caller's thread count.
    """
    previous = torch.get_num_threads()
    if work >= SMALL_WORK or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
