"""Robustness of trained two-layer ReLU networks: attacks, certification, Lipschitz bounds (MATH.md §10).

Every function takes ``model`` = anything :func:`convexnn.network.as_network` accepts (a
:class:`~convexnn.network.TwoLayerReLU`, a fitted estimator, a torch ``Sequential(Linear, ReLU, Linear)``
or a tuple ``(W1, b1, w2)``). Labels are ±1 for a single-output network (margin y·f(x)) and class
indices 0..K-1 for K outputs (margin f_y(x) − max_{j≠y} f_j(x)).

* :func:`pgd_attack` — projected gradient attack on the margin (ℓ∞ / ℓ2 ball, box, restarts).
* :func:`certify` — "certified" / "attacked" / "undecided" per point, with methods "ibp", "crown",
  "lp" (triangle LP; an SOCP for ℓ2) and "exact" (MILP for ℓ∞; branch and bound over SOCPs for ℓ2);
  returns a :class:`CertifyResult`.
* :func:`margin_bounds` — one method's lower bound of the worst-case margin on every point.
* :func:`certified_radius` — the largest radius a method certifies, by bisection.
* :func:`lipschitz` — global and local Lipschitz bounds (:class:`LipschitzBound`).
* :func:`certify_report` — a JSON-able summary of :func:`certify` for the command line.
"""

from convexnn.robustness._checks import UnsupportedNormError
from convexnn.robustness.attacks import pgd_attack
from convexnn.robustness.bounds import margin_bounds, preactivation_bounds
from convexnn.robustness.certify import CertifyResult, certified_radius, certify, certify_report
from convexnn.robustness.lipschitz import LipschitzBound, lipschitz

__all__ = [
    "CertifyResult",
    "LipschitzBound",
    "UnsupportedNormError",
    "certified_radius",
    "certify",
    "certify_report",
    "lipschitz",
    "margin_bounds",
    "pgd_attack",
    "preactivation_bounds",
]
