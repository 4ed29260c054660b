"""Activation patterns (MATH.md §2).

A gate vector h ∈ R^d defines the pattern D = diag(1[X h ≥ 0]). Patterns are stored as the columns of a
0/1 matrix ``D`` of shape (n, P), one column per pattern, with the gate that produced each column in the
matching column of ``H`` (d, P).
"""

from __future__ import annotations

import numpy as np


def add_intercept(X: np.ndarray) -> np.ndarray:
    """X̃ = [X, 1]: shape (n, d) → (n, d + 1)."""
    return np.hstack([X, np.ones((X.shape[0], 1), dtype=X.dtype)])


def sample_gates(d: int, n_gates: int, random_state: int | np.random.Generator | None) -> np.ndarray:
    """Gaussian gate vectors h_i ~ N(0, I_d), shape (d, n_gates)."""
    rng = np.random.default_rng(random_state)
    return rng.standard_normal((d, n_gates))


def patterns_from_gates(X: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct, non-empty patterns D = 1[X H ≥ 0] and the gates that produce them.

    Parameters
    ----------
    X : (n, d) data (with the column of ones already appended when there is an intercept).
    H : (d, P0) gate vectors.

    Returns
    -------
    D : (n, P) float64 0/1 matrix, P ≤ P0: duplicates and all-zero columns dropped, first occurrence kept
        (so the order of the gates is preserved).
    H : (d, P) the gate of each kept pattern.
    """
    A = (X @ H) >= 0
    nonempty = A.any(axis=0)
    packed = np.packbits(A, axis=0)  # one byte string per column, for exact de-duplication
    _, first = np.unique(packed, axis=1, return_index=True)
    keep = np.zeros(A.shape[1], dtype=bool)
    keep[first] = True
    keep &= nonempty
    idx = np.flatnonzero(keep)
    return A[:, idx].astype(np.float64), H[:, idx]


def _row_space(X: np.ndarray, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates Z = X V_r (n, r) of the rows of X in an orthonormal basis V_r (d, r) of its row space."""
    _, s, Vt = np.linalg.svd(X, full_matrices=False)
    r = int(np.sum(s > tol * max(s[0] if s.size else 0.0, 1e-300)))
    V = Vt[:r].T
    return X @ V, V


def _chambers_2d(Z: np.ndarray) -> np.ndarray:
    """Interior directions (2, P) of every chamber of the central line arrangement {h : z_kᵀh = 0} in R²."""
    nz = np.linalg.norm(Z, axis=1) > 0
    ang = np.arctan2(Z[nz, 1], Z[nz, 0])
    # the line z_kᵀh = 0 crosses the circle at the angles of z_k ± π/2
    crit = np.unique(np.mod(np.concatenate([ang + np.pi / 2, ang - np.pi / 2]), 2 * np.pi))
    if crit.size == 0:
        return np.array([[1.0], [0.0]])
    nxt = np.append(crit[1:], crit[0] + 2 * np.pi)
    mid = (crit + nxt) / 2
    return np.vstack([np.cos(mid), np.sin(mid)])


def _chambers_3d(Z: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Interior directions (3, P) of the chambers of the central plane arrangement {h : z_kᵀh = 0} in R³.

    Every chamber is a region of the great-circle arrangement on the sphere; since the z_k span R³, each
    region has a vertex p = ±(z_a × z_b)/‖·‖. Around each vertex the circles through it cut its tangent
    plane into sectors; a direction p + δ·(bisector of each sector) lies in the interior of each region
    incident to p, so visiting every vertex reaches every chamber.
    """
    Zn = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-300)
    Zn = Zn[np.linalg.norm(Z, axis=1) > 0]
    a, b = np.triu_indices(Zn.shape[0], k=1)
    C = np.cross(Zn[a], Zn[b])
    cn = np.linalg.norm(C, axis=1)
    C = C[cn > tol] / cn[cn > tol, None]
    if C.shape[0] == 0:
        raise ValueError("rows of X do not span R³")
    # unique vertices (as lines through the origin), both signs
    key = np.round(C * np.sign(C[np.arange(C.shape[0]), np.abs(C).argmax(axis=1)])[:, None], 9)
    _, idx = np.unique(key, axis=0, return_index=True)
    verts = C[idx]
    verts = np.vstack([verts, -verts])
    out = []
    for p in verts:
        through = np.abs(Zn @ p) <= tol
        # orthonormal basis (e1, e2) of the tangent plane at p
        e1 = np.cross(p, [1.0, 0.0, 0.0] if abs(p[0]) < 0.9 else [0.0, 1.0, 0.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(p, e1)
        t = np.cross(p, Zn[through])  # tangent directions of the circles through p
        theta = np.unique(np.round(np.mod(np.arctan2(t @ e2, t @ e1), np.pi), 12))
        theta = np.concatenate([theta, theta + np.pi])
        theta.sort()
        nxt = np.append(theta[1:], theta[0] + 2 * np.pi)
        mid = (theta + nxt) / 2
        dirs = np.outer(np.cos(mid), e1) + np.outer(np.sin(mid), e2)  # (s, 3) bisectors
        # step small enough to stay inside every sector: below the distance to the nearest other circle
        others = np.abs(Zn[~through] @ p)
        delta = 0.25 * (others.min() if others.size else 1.0)
        h = p[None, :] + delta * dirs
        out.append(h / np.linalg.norm(h, axis=1, keepdims=True))
    return np.vstack(out).T


def enumerate_patterns(X: np.ndarray, max_rank: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct non-empty pattern 1[X h ≥ 0] over chambers of the arrangement, for rank X ≤ 3.

    Returns ``(D, H)`` as :func:`patterns_from_gates`, with one interior gate vector per chamber
    (a gate in the open chamber, so that (2D_i − I) X h_i > 0 holds strictly).

    Raises
    ------
    ValueError if rank X > ``max_rank`` (exact enumeration is exponential in the rank).
    """
    Z, V = _row_space(np.asarray(X, dtype=np.float64))
    r = Z.shape[1]
    if r == 0:
        raise ValueError("X is zero: it has no activation patterns")
    if r > max_rank:
        raise ValueError(
            f"n_patterns='all' enumerates every activation pattern exactly and needs rank(X̃) ≤ {max_rank}; "
            f"this X̃ has rank {r}. Use a number of sampled patterns instead."
        )
    if r == 1:
        Hr = np.array([[1.0, -1.0]])
    elif r == 2:
        Hr = _chambers_2d(Z)
    else:
        Hr = _chambers_3d(Z)
    return patterns_from_gates(X, V @ Hr)
