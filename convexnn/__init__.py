"""convexnn: two-layer ReLU networks trained to their global optimum, with a certificate.

Public API:

- :class:`ConvexReLURegressor`, :class:`ConvexReLUClassifier`: scikit-learn estimators.
- :class:`TwoLayerReLU`: the trained network (NumPy weights, ``to_torch()``).
- :class:`ConvexReLURegressorCV`, :class:`ConvexReLUClassifierCV`, :func:`regularization_path`: alpha
  by cross-validation, warm-started paths.
- :func:`load`: read a model file written by ``estimator.save(path)``.
- :mod:`convexnn.solvers`, :mod:`convexnn.ops`: the solvers and the mathematics over tensors.
- :mod:`convexnn.robustness`: attacks, certification and Lipschitz bounds.
"""

from convexnn._version import __version__
from convexnn.estimators import ConvexReLUClassifier, ConvexReLURegressor
from convexnn.io import load
from convexnn.model_selection import ConvexReLUClassifierCV, ConvexReLURegressorCV, regularization_path
from convexnn.network import TwoLayerReLU
from convexnn.solvers.problem import Certificate

__all__ = [
    "Certificate",
    "ConvexReLUClassifier",
    "ConvexReLUClassifierCV",
    "ConvexReLURegressor",
    "ConvexReLURegressorCV",
    "TwoLayerReLU",
    "__version__",
    "load",
    "regularization_path",
]
