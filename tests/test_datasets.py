"""Loaders of the real data sets in ../shared/data (skipped when that folder is absent)."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from convexnn import datasets as D


def _shared_root() -> Path | None:
    for root in D.candidate_roots():
        if (root / "pmlb").is_dir() and (root / "fashion-mnist").is_dir():
            return root
    return None


ROOT = _shared_root()
needs_data = pytest.mark.skipif(ROOT is None, reason="shared data folder (../shared/data) not found")


# ----------------------------------------------------------------------------------------------
# tiny synthetic IDX files (no shared data needed)
# ----------------------------------------------------------------------------------------------


def _idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_fake_fashion(
    root: Path, n: int = 6, *, images: bytes | None = None
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labs = np.arange(n, dtype=np.uint8) % 10
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "t10k"):
        img_bytes = images if images is not None else _idx_bytes(imgs, 2051)
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(img_bytes))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labs, 2049)))
    return imgs, labs


def test_fake_idx_roundtrip_and_data_dir(tmp_path: Path) -> None:
    imgs, labs = _write_fake_fashion(tmp_path)
    X, y = D.load_fashion_mnist("test", data_dir=tmp_path)
    assert X.shape == (6, 784) and X.dtype == np.float64 and y.dtype == np.float64
    np.testing.assert_array_equal(X, imgs.reshape(6, -1) / 255.0)
    np.testing.assert_array_equal(y, labs)
    # data_dir may also name the sub-folder itself; scale=False keeps 0..255
    X2, _ = D.load_fashion_mnist("train", scale=False, data_dir=tmp_path / "fashion-mnist")
    np.testing.assert_array_equal(X2, imgs.reshape(6, -1))


def test_env_var_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    imgs, _ = _write_fake_fashion(tmp_path, n=4)
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path))
    X, y = D.load_fashion_mnist("train")
    assert X.shape == (4, 784)
    assert D.candidate_roots()[0] == tmp_path


def test_truncated_gzip_is_value_error(tmp_path: Path) -> None:
    _write_fake_fashion(tmp_path)
    f = tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="damaged"):
        D.load_fashion_mnist("test", data_dir=tmp_path)


def test_truncated_payload_is_value_error(tmp_path: Path) -> None:
    imgs = np.zeros((6, 28, 28), dtype=np.uint8)
    good = _idx_bytes(imgs, 2051)
    _write_fake_fashion(tmp_path, images=good[:-100])  # valid gzip, payload shorter than the header says
    with pytest.raises(ValueError, match="damaged IDX"):
        D.load_fashion_mnist("train", data_dir=tmp_path)


def test_wrong_magic_is_value_error(tmp_path: Path) -> None:
    imgs = np.zeros((6, 28, 28), dtype=np.uint8)
    _write_fake_fashion(tmp_path, images=_idx_bytes(imgs, 2049)[:4] + _idx_bytes(imgs, 2051)[4:])
    with pytest.raises(ValueError, match="magic"):
        D.load_fashion_mnist("train", data_dir=tmp_path)


def test_label_count_mismatch_is_value_error(tmp_path: Path) -> None:
    _write_fake_fashion(tmp_path, n=6, images=_idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8), 2051))
    with pytest.raises(ValueError, match="labels"):
        D.load_fashion_mnist("train", data_dir=tmp_path)


def test_missing_dir_is_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for load in (
        lambda: D.load_fashion_mnist(data_dir=missing),
        lambda: D.load_mnist_test(data_dir=missing),
        lambda: D.load_mnist_5k(data_dir=missing),
        lambda: D.load_pmlb("iris", data_dir=missing),
        lambda: D.load_a9a(data_dir=missing),
    ):
        with pytest.raises(FileNotFoundError, match="nowhere"):
            load()


def test_verify_without_or_with_wrong_checksums(tmp_path: Path) -> None:
    _write_fake_fashion(tmp_path)
    with pytest.raises(ValueError, match="SHA256SUMS"):
        D.load_fashion_mnist("test", data_dir=tmp_path, verify=True)
    folder = tmp_path / "fashion-mnist"
    lines = []
    for f in sorted(folder.iterdir()):
        lines.append(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  ./fashion-mnist/{f.name}")
    (tmp_path / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    X, _ = D.load_fashion_mnist("test", data_dir=tmp_path, verify=True)
    assert X.shape == (6, 784)
    bad = "\n".join(("0" * 64) + line[64:] for line in lines) + "\n"
    (tmp_path / "SHA256SUMS").write_text(bad)
    with pytest.raises(ValueError, match="mismatch"):
        D.load_fashion_mnist("test", data_dir=tmp_path, verify=True)


def test_label_helpers() -> None:
    y = np.array([0.0, 6.0, 6.0, 0.0])
    np.testing.assert_array_equal(D.to_pm1(y, 6), [-1, 1, 1, -1])
    np.testing.assert_array_equal(D.to_pm1(np.array([1, 2, 3, 4]), (2, 4)), [-1, 1, -1, 1])
    assert D.to_pm1(y, 6).dtype == np.float64
    idx, classes = D.to_class_index(np.array([3.0, 5.0, 8.0, 3.0]))
    np.testing.assert_array_equal(idx, [0, 1, 2, 0])
    np.testing.assert_array_equal(classes[idx], [3, 5, 8, 3])


def test_pmlb_listing() -> None:
    names = D.list_pmlb()
    assert len(names) == 22
    assert sum(t == "binary" for t in names.values()) == 10
    assert len(D.list_pmlb("multiclass")) == 8
    assert list(D.list_pmlb("regression")) == ["537_houses", "197_cpu_act", "225_puma8NH", "529_pollen"]
    assert D.pmlb_task("iris") == "multiclass" and D.pmlb_task("sonar") == "binary"
    with pytest.raises(ValueError):
        D.pmlb_task("not_a_table")
    with pytest.raises(ValueError):
        D.list_pmlb("clustering")


# ----------------------------------------------------------------------------------------------
# the real files
# ----------------------------------------------------------------------------------------------


@needs_data
def test_fashion_mnist_subset() -> None:
    X, y = D.load_fashion_mnist("train", classes=(0, 6), n=200)
    assert X.shape == (200, 784) and X.dtype == np.float64 and y.shape == (200,) and y.dtype == np.float64
    assert set(np.unique(y)) == {0.0, 6.0}
    assert X.min() >= 0.0 and X.max() <= 1.0 and X.max() > 0.5
    X2, y2 = D.load_fashion_mnist("train", classes=(0, 6), n=200, scale=False)
    np.testing.assert_array_equal(X2 / 255.0, X)
    np.testing.assert_array_equal(y2, y)
    assert np.all(X2 == np.round(X2)) and X2.max() <= 255
    X3, _ = D.load_fashion_mnist("train", classes=(0, 6), n=200, seed=1)
    assert not np.array_equal(X3, X)
    pm = D.to_pm1(y, 6)
    assert set(np.unique(pm)) == {-1.0, 1.0}


@needs_data
def test_fashion_mnist_test_full() -> None:
    X, y = D.load_fashion_mnist("test", verify=True)
    assert X.shape == (10000, 784) and X.flags.c_contiguous
    np.testing.assert_array_equal(np.bincount(y.astype(int)), np.full(10, 1000))
    Xf, yf = D.load_fashion_mnist("test", n=50, seed=None)
    np.testing.assert_array_equal(Xf, X[:50])
    np.testing.assert_array_equal(yf, y[:50])


@needs_data
def test_mnist_test_and_5k() -> None:
    X, y = D.load_mnist_test(n=300)
    assert X.shape == (300, 784) and X.dtype == np.float64
    assert set(np.unique(y)) <= set(range(10)) and len(np.unique(y)) == 10
    assert 0.0 <= X.min() and X.max() <= 1.0
    X5, y5 = D.load_mnist_5k(verify=True)
    assert X5.shape == (5000, 784) and y5.shape == (5000,) and X5.dtype == np.float64
    np.testing.assert_array_equal(np.bincount(y5.astype(int)), np.full(10, 500))
    assert 0.0 <= X5.min() and X5.max() <= 1.0
    Xs, ys = D.load_mnist_5k(classes=(3, 8), n=100)
    assert Xs.shape == (100, 784) and set(np.unique(ys)) == {3.0, 8.0}


@needs_data
@pytest.mark.parametrize(
    ("name", "shape", "labels"),
    [
        ("sonar", (208, 60), {0.0, 1.0}),
        ("iris", (150, 4), {0.0, 1.0, 2.0}),
        ("vehicle", (846, 18), {1.0, 2.0, 3.0, 4.0}),
        ("wine_quality_red", (1599, 11), {3.0, 4.0, 5.0, 6.0, 7.0, 8.0}),
        ("529_pollen", (3848, 4), None),
    ],
)
def test_pmlb_tables(name: str, shape: tuple[int, int], labels: set[float] | None) -> None:
    X, y = D.load_pmlb(name, verify=True)
    assert X.shape == shape and y.shape == (shape[0],)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert np.all(np.isfinite(X)) and np.all(np.isfinite(y))
    if labels is None:
        assert D.pmlb_task(name) == "regression" and len(np.unique(y)) > 100
    else:
        assert set(np.unique(y)) == labels


@needs_data
def test_pmlb_subset_and_names() -> None:
    X, y, names = D.load_pmlb("iris", return_feature_names=True)
    assert names == ["sepal-length", "sepal-width", "petal-length", "petal-width"]
    np.testing.assert_allclose(X[0], [6.7, 3.0, 5.2, 2.3])  # first data row of the file
    assert y[0] == 2.0
    Xs, ys = D.load_pmlb("iris", n=20, seed=3)
    assert Xs.shape == (20, 4)
    rows = {tuple(r) + (t,) for r, t in zip(X, y, strict=True)}
    assert all(tuple(r) + (t,) in rows for r, t in zip(Xs, ys, strict=True))


@needs_data
def test_a9a() -> None:
    X, y = D.load_a9a("test", verify=True)
    assert X.shape == (16281, 123) and X.dtype == np.float64 and y.dtype == np.float64
    assert set(np.unique(y)) == {-1.0, 1.0}
    assert set(np.unique(X)) == {0.0, 1.0}
    Xt, yt = D.load_a9a("train", n=500)
    assert Xt.shape == (500, 123) and set(np.unique(yt)) == {-1.0, 1.0}
    with pytest.raises(ValueError):
        D.load_a9a("valid")


@needs_data
def test_copied_real_idx_truncated(tmp_path: Path) -> None:
    """A truncated copy of a real file (the brief's corrupted-file check on genuine data)."""
    src = ROOT / "mnist"
    dst = tmp_path / "mnist"
    dst.mkdir()
    shutil.copy(src / "t10k-labels-idx1-ubyte.gz", dst)
    raw = (src / "t10k-images-idx3-ubyte.gz").read_bytes()
    (dst / "t10k-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(ValueError, match="damaged"):
        D.load_mnist_test(data_dir=tmp_path)
