"""The command line: demo, fit, info, certify, and errors."""

import json

import numpy as np
import pandas as pd
import pytest

from convexnn.cli import main


@pytest.fixture
def table(tmp_path, breast_cancer):
    X, y = breast_cancer
    df = pd.DataFrame(X[:120, :5], columns=[f"x{i}" for i in range(5)])
    df["target"] = (y[:120] > 0).astype(int)
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    return path


def test_fit_info_certify(tmp_path, table, capsys):
    model = tmp_path / "m.npz"
    assert main(["fit", str(table), "-o", str(model), "--patterns", "8", "--max-iter", "300", "--max-time", "60"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["gap"] >= 0 and model.exists()
    assert main(["info", str(model)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["network"]["n_features"] == 5
    assert main(["certify", str(model), str(table), "--eps", "0.01", "--method", "crown"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert sum(rep["counts"].values()) == 120


def test_demo_prints_one_table(capsys):
    assert main(["demo", "--patterns", "8", "--max-iter", "300", "--adam-epochs", "50", "--grow-seconds", "0.5",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "training objective" in out and "certificate gap" in out and "Adam" in out and "grown" in out


def test_errors_are_clean(tmp_path, table, capsys):
    assert main(["info", str(tmp_path / "missing.npz")]) == 2
    assert "error" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    bad.write_text("not a model")
    assert main(["info", str(bad)]) == 2
    with pytest.raises(SystemExit):
        main(["fit", str(table), "-o", str(tmp_path / "x.npz"), "--target", "nope"])
    assert main([]) == 2


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip()
    assert np.__version__  # keep numpy import used
