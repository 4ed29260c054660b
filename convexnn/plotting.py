"""Plots of a fit's certificate and of a cross-validated choice of alpha (matplotlib, optional: ``pip install
convexnn[plot]``).

    plot_history(est.history_)          primal and dual bound against time, and the relative gap (log scale)
    plot_cv(cv_est)                     held-out score against alpha (mean ± std over folds), alpha_ marked
    plot_robustness(reports)            certified and attacked fractions against the radius eps
    save_figure(fig, path)              write a figure without ever leaving a half-written file
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convexnn.io import atomic_write


def _pyplot():
    """matplotlib.pyplot on the non-interactive Agg canvas, or an ImportError that says how to get it."""
    try:
        import matplotlib

        if matplotlib.get_backend().lower() != "agg" and not os.environ.get("DISPLAY"):
            matplotlib.use("Agg")  # no display: render to files only
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'convexnn[plot]'") from exc
    return plt


def require_matplotlib() -> None:
    """Raise the ImportError of :func:`_pyplot` now (before a long fit whose plot could not be drawn)."""
    _pyplot()


def _series(history: Sequence[dict]) -> tuple[np.ndarray, ...]:
    """(seconds, primal, dual, relative gap) of a list of history records."""
    return tuple(np.array([float(r[k]) for r in history]) for k in ("seconds", "primal", "dual", "relative_gap"))


def plot_history(history: Sequence[dict], axes: Any = None):
    """Two panels from a solver history (``est.history_``: dicts with ``seconds``, ``primal``, ``dual``,
    ``relative_gap``): the objective of the returned network's iterates (primal) and the proven lower bound
    (dual) against wall time, and the relative gap (primal − dual) / primal on a log scale.

    Records with a ``column`` (the interior-point method's iterates, one output column's program at a time)
    of a program with several columns (``columns`` > 1) are drawn per column on the gap panel only: their
    primal and dual are that column's, not the whole objective's.

    ``axes``: two matplotlib axes to draw on (default: a new figure). Returns the figure.
    """
    if not history:
        raise ValueError("the history is empty: nothing to plot")
    multi = any(int(r.get("columns", 1)) > 1 for r in history)
    total = [r for r in history if not (multi and "column" in r)]
    plt = _pyplot()
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    else:
        fig = axes[0].figure
    a, b = axes
    floor = 1e-17  # a certified exact optimum has gap 0: drawn at the floor of the axis, not dropped
    gaps = np.array([float(r["relative_gap"]) for r in history])
    if (gaps > 0).any():
        floor = max(float(gaps[gaps > 0].min()) / 10, 1e-17)
    if total:
        t, primal, dual, rel = _series(total)
        a.plot(t, primal, "o-", ms=3, label="primal (objective of the network)")
        a.plot(t, dual, "s-", ms=3, label="dual (proven lower bound)")
        fin_p, fin_d = primal[np.isfinite(primal)], dual[np.isfinite(dual)]
        best = float(fin_p.min()) if fin_p.size else 0.0
        if best > 0 and fin_d.size:
            # early first-order iterates can be orders of magnitude off: the axis spans the optimum's
            # neighbourhood (objectives are ≥ 0), [−0.1, 2] × the best objective at most
            lo, hi = max(float(fin_d.min()), -0.1 * best), min(float(fin_p.max()), 2.0 * best)
            if hi > lo:
                pad = 0.05 * (hi - lo)
                a.set_ylim(lo - pad, hi + pad)
        a.legend(loc="best", fontsize="small")
        b.semilogy(t, np.maximum(rel, floor), "o-", ms=3, label="all outputs" if multi else None)
    if multi:
        for k in sorted({int(r["column"]) for r in history if "column" in r}):
            t, _, _, rel = _series([r for r in history if r.get("column") == k])
            b.semilogy(t, np.maximum(rel, floor), ".--", ms=3, lw=0.8, label=f"output {k} (interior point)")
        b.legend(loc="best", fontsize="x-small")
    a.set_xlabel("seconds")
    a.set_ylabel("training objective")
    b.set_xlabel("seconds")
    b.set_ylabel("relative gap (primal − dual) / primal")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig


def plot_cv(cv_estimator: Any, ax: Any = None):
    """The held-out score of a fitted :class:`~convexnn.ConvexReLUClassifierCV` /
    :class:`~convexnn.ConvexReLURegressorCV` against alpha (log scale): the mean over folds with a band of
    ± one standard deviation, the chosen ``alpha_`` marked. Returns the figure."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(cv_estimator, "cv_scores_")
    alphas = np.asarray(cv_estimator.alphas_)
    scores = np.asarray(cv_estimator.cv_scores_)
    mean, std = scores.mean(1), scores.std(1)
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    else:
        fig = ax.figure
    ax.semilogx(alphas, mean, "o-", ms=4, label=f"mean of {scores.shape[1]} folds")
    ax.fill_between(alphas, mean - std, mean + std, alpha=0.25, label="± 1 std")
    ax.axvline(cv_estimator.alpha_, color="k", ls="--", lw=1, label=f"alpha_ = {cv_estimator.alpha_:.3g}")
    ax.set_xlabel("alpha")
    ax.set_ylabel("held-out score")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return fig


def plot_robustness(reports: Sequence[dict], ax: Any = None):
    """Robust accuracy against the radius, from :func:`~convexnn.robustness.certify_report` reports (one per eps,
    the same points): the certified fraction (a proven lower bound on the robust accuracy), 1 − the attacked
    fraction (an upper bound: an attack or a misclassified point refutes robustness), and between them, shaded,
    the undecided points. Returns the figure."""
    if not reports:
        raise ValueError("no certification reports: nothing to plot")
    eps = np.array([float(r["settings"]["eps"]) for r in reports])
    order = np.argsort(eps)
    eps = eps[order]
    cert = np.array([float(reports[i]["fractions"]["certified"]) for i in order])
    upper = np.array([1.0 - float(reports[i]["fractions"]["attacked"]) for i in order])
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    else:
        fig = ax.figure
    ax.plot(eps, upper, "v-", ms=4, label="1 − attacked (upper bound)")
    ax.plot(eps, cert, "^-", ms=4, label="certified (lower bound)")
    ax.fill_between(eps, cert, upper, alpha=0.2, label="undecided")
    first = reports[int(order[0])]
    ax.set_title(f"{first['settings']['method']}, ‖·‖_{first['settings']['norm']}, n = {first['n']}",
                 fontsize="medium")
    ax.set_xlabel("eps (radius of the perturbation ball)")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return fig


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` (format from the suffix: .png, .pdf, .svg) through a temporary file in the same
    folder, renamed into place: an interruption leaves either the old file or the new one, never half of one."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in ("png", "pdf", "svg"):
        raise ValueError(f"plot file {str(path)!r}: expected a .png, .pdf or .svg suffix")
    atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=dpi))
