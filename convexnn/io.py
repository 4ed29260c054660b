"""Model files: ``estimator.save(path)`` and :func:`load`.

Format (version 1): a NumPy ``.npz`` archive (a zip of ``.npy`` arrays) holding

- ``__metadata__``: a 0-d unicode array with JSON: ``{"format": "convexnn-model", "format_version": 1,
  "convexnn_version", "estimator", "params", "attributes"}``;
- the fitted arrays: ``gate_vectors_``, ``blocks_``, ``W1``, ``b1``, ``w2``, ``classes_`` (classifiers),
  ``feature_names_in_`` (when fitted on a DataFrame), ``param_gate_vectors`` (user gates).

Nothing is pickled: arrays are read with ``allow_pickle=False`` and the estimator class comes from a
fixed list, so loading a file cannot run code. The file is written to a temporary file in the target
folder and moved into place, so an interrupted save never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from convexnn._version import __version__
from convexnn.network import TwoLayerReLU
from convexnn.solvers.problem import Certificate

FORMAT = "convexnn-model"
FORMAT_VERSION = 1


def _estimator_classes() -> dict[str, type]:
    from convexnn.estimators import ConvexReLUClassifier, ConvexReLURegressor

    return {"ConvexReLUClassifier": ConvexReLUClassifier, "ConvexReLURegressor": ConvexReLURegressor}


def _plain(v: Any) -> Any:
    """JSON-able form of a parameter value (NumPy scalars to Python)."""
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(v)


def save_model(est: Any, path: str | os.PathLike) -> None:
    """Write a fitted estimator to ``path`` (see the module docstring)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "network_")
    params = est.get_params(deep=False)
    arrays: dict[str, np.ndarray] = {}
    gv = params.pop("gate_vectors")
    if gv is not None:
        arrays["param_gate_vectors"] = np.asarray(gv, dtype=np.float64)
    rs = params.get("random_state")
    if rs is not None and not isinstance(rs, int | np.integer):
        params["random_state"] = None  # a Generator's state is not stored; gates are saved anyway
    net: TwoLayerReLU = est.network_
    arrays.update(gate_vectors_=est.gate_vectors_, blocks_=est.blocks_, W1=net.W1, b1=net.b1, w2=net.w2)
    if hasattr(est, "classes_"):
        classes = np.asarray(est.classes_)
        if classes.dtype == object:
            classes = classes.astype(str) if all(isinstance(c, str) for c in classes) else classes
        if classes.dtype == object:
            raise TypeError("cannot save class labels of mixed or object type; use numbers or strings")
        arrays["classes_"] = classes
    if hasattr(est, "feature_names_in_"):
        arrays["feature_names_in_"] = np.asarray(est.feature_names_in_).astype(str)
    attributes = {
        "n_features_in_": int(est.n_features_in_),
        "certificate": {"primal": est.certificate_.primal, "dual": est.certificate_.dual},
        "n_iter_": int(est.n_iter_),
        "solver_": est.solver_,
        "history_": est.history_,
        "y_ndim": int(getattr(est, "_y_ndim", 1)),
    }
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "convexnn_version": __version__,
        "estimator": type(est).__name__,
        "params": {k: _plain(v) for k, v in params.items()},
        "attributes": attributes,
    }
    arrays["__metadata__"] = np.array(json.dumps(meta))
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _umask() -> int:
    """The process's file-creation mask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write a file whole or not at all: ``write(fh)`` into a temporary file in the same folder, then rename it
    over ``path`` (an interruption or an error leaves no half-written file and an existing ``path`` as it was).
    The file gets the permissions an ordinary ``open(path, "wb")`` would give it (0666 less the umask): the
    temporary file's own are 0600."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike) -> Any:
    """Read a model written by ``estimator.save(path)``.

    Raises
    ------
    FileNotFoundError if there is no such file; ValueError if the file is damaged, not a convexnn model,
    or of a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable convexnn model file ({exc})") from None
    if "__metadata__" not in arrays:
        raise ValueError(f"{path} is not a convexnn model file (no metadata)")
    try:
        meta = json.loads(str(arrays.pop("__metadata__")))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: damaged metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a convexnn model file (format {meta.get('format')!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written in format version {meta['format_version']} by convexnn "
            f"{meta.get('convexnn_version')}; this convexnn {__version__} reads up to {FORMAT_VERSION}"
        )
    classes = _estimator_classes()
    name = meta.get("estimator")
    if name not in classes:
        raise ValueError(f"{path}: unknown estimator {name!r}")
    try:
        params = dict(meta["params"])
        params["gate_vectors"] = arrays.get("param_gate_vectors")
        est = classes[name](**params)
        attrs = meta["attributes"]
        est.network_ = TwoLayerReLU(arrays["W1"], arrays["b1"], arrays["w2"])
        est.gate_vectors_ = arrays["gate_vectors_"]
        est.blocks_ = arrays["blocks_"]
        cert = attrs["certificate"]
        est.certificate_ = Certificate(primal=float(cert["primal"]), dual=float(cert["dual"]))
        est.objective_ = est.certificate_.primal
        est.n_iter_ = int(attrs["n_iter_"])
        est.solver_ = attrs["solver_"]
        est.history_ = attrs["history_"]
        est.n_features_in_ = int(attrs["n_features_in_"])
        est._y_ndim = int(attrs["y_ndim"])
        if "classes_" in arrays:
            est.classes_ = arrays["classes_"]
        if "feature_names_in_" in arrays:
            est.feature_names_in_ = arrays["feature_names_in_"].astype(object)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: damaged or incomplete convexnn model file ({exc})") from None
    if est.network_.n_features != est.n_features_in_:
        raise ValueError(f"{path}: network has {est.network_.n_features} inputs, metadata says "
                         f"{est.n_features_in_}")
    return est
