"""Model files: round trip, no pickle, clear errors for damaged or foreign files."""

import json
import os
import stat
import zipfile

import numpy as np
import pytest

import convexnn
from convexnn import ConvexReLUClassifier, ConvexReLURegressor


@pytest.fixture(scope="module")
def fitted(breast_cancer):
    X, y = breast_cancer
    labels = np.where(y > 0, "malignant", "benign")
    return ConvexReLUClassifier(n_patterns=10, max_iter=300).fit(X, labels), X


def test_round_trip_identical_predictions(fitted, tmp_path):
    est, X = fitted
    path = tmp_path / "m.npz"
    est.save(path)
    back = convexnn.load(path)
    np.testing.assert_array_equal(back.decision_function(X), est.decision_function(X))
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    assert back.get_params() .keys() == est.get_params().keys()
    assert back.certificate_.gap == est.certificate_.gap


def test_round_trip_gated_regressor(diabetes, tmp_path):
    X, y = diabetes
    est = ConvexReLURegressor(kind="gated", n_patterns=8, max_iter=200).fit(X, y)
    est.save(tmp_path / "g.npz")
    np.testing.assert_array_equal(convexnn.load(tmp_path / "g.npz").predict(X), est.predict(X))


def test_file_holds_no_pickle(fitted, tmp_path):
    est, _ = fitted
    path = tmp_path / "m.npz"
    est.save(path)
    with np.load(path, allow_pickle=False) as z:  # would raise if any array needed pickle
        meta = json.loads(str(z["__metadata__"]))
        assert all(z[k].dtype != object for k in z.files)
    assert meta["format"] == "convexnn-model"
    assert meta["convexnn_version"] == convexnn.__version__


def test_damaged_and_foreign_files(fitted, tmp_path):
    est, _ = fitted
    good = tmp_path / "m.npz"
    est.save(good)
    truncated = tmp_path / "t.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable convexnn model"):
        convexnn.load(truncated)
    text = tmp_path / "x.npz"
    text.write_text("hello")
    with pytest.raises(ValueError):
        convexnn.load(text)
    foreign = tmp_path / "f.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ValueError, match="no metadata"):
        convexnn.load(foreign)
    with pytest.raises(FileNotFoundError):
        convexnn.load(tmp_path / "missing.npz")
    # a pickled object array inside the archive is refused, not executed
    evil = tmp_path / "e.npz"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(evil, "w") as zout:
        for item in zin.namelist():
            if item != "blocks_.npy":
                zout.writestr(item, zin.read(item))
        import io

        buf = io.BytesIO()
        np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
        zout.writestr("blocks_.npy", buf.getvalue())
    with pytest.raises(ValueError):
        convexnn.load(evil)


def test_newer_format_refused(fitted, tmp_path):
    est, _ = fitted
    path = tmp_path / "m.npz"
    est.save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["__metadata__"]))
    meta["format_version"] = 99
    arrays["__metadata__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="format version 99"):
        convexnn.load(path)


def test_save_is_atomic(fitted, tmp_path, monkeypatch):
    est, _ = fitted
    path = tmp_path / "m.npz"
    est.save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        est.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_saved_file_has_the_permissions_open_would_give(fitted, tmp_path, mask):
    """The temporary file that makes the save atomic is created 0600; the model file gets 0666 less the umask, as
    np.savez(path) would give it (it was 0600 whatever the umask), also when it replaces an existing file."""
    est, _ = fitted
    path = tmp_path / "m.npz"
    old = os.umask(mask)
    try:
        path.write_bytes(b"")
        os.chmod(path, 0o600)
        est.save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
