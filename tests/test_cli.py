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
    args = ["demo", "--patterns", "8", "--max-iter", "300", "--adam-epochs", "50", "--grow-rounds", "3", "--quiet",
            "--json"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "training objective" in out and "certificate gap" in out and "Adam" in out and "grown (3 rounds)" in out
    # the grown network is the same on every run (a round budget, not a time budget)
    grown = json.loads(out[out.index("{"):])["rows"][1]
    assert main(args) == 0
    again = capsys.readouterr().out
    assert json.loads(again[again.index("{"):])["rows"][1]["objective"] == grown["objective"]


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


def test_fit_with_cross_validated_alpha_and_a_plot(tmp_path, table, capsys):
    """--cv K: the report's alpha is the one of highest mean held-out score, the same as the CV estimator's on
    the same data; the saved model is that refit; --plot writes a PNG."""
    import pandas as pd

    from convexnn import ConvexReLUClassifierCV, load

    model, plot = tmp_path / "cv.npz", tmp_path / "cv.png"
    args = ["fit", str(table), "-o", str(model), "--patterns", "8", "--cv", "3", "--n-alphas", "3",
            "--threads", "1", "--plot", str(plot), "--quiet"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    cv = out["cv"]
    assert cv["folds"] == 3 and len(cv["alphas"]) == 3 and np.all(np.diff(cv["alphas"]) < 0)
    assert out["alpha"] == cv["alphas"][int(np.argmax(cv["mean_score"]))]
    df = pd.read_csv(table)
    y = df.pop("target").to_numpy()
    direct = ConvexReLUClassifierCV(n_alphas=3, cv=3, estimator_params={
        "n_patterns": 8, "n_threads": 1, "random_state": 0}).fit(df.to_numpy(dtype=float), y)
    assert out["alpha"] == pytest.approx(direct.alpha_, rel=1e-12)
    np.testing.assert_allclose(cv["mean_score"], direct.cv_scores_.mean(1), atol=1e-9)
    assert load(model).alpha == out["alpha"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_refuses_bad_options_before_fitting(tmp_path, table, capsys, monkeypatch):
    model = tmp_path / "m.npz"
    base = ["fit", str(table), "-o", str(model), "--patterns", "8", "--quiet"]
    assert main([*base, "--cv", "3", "--alpha", "0.1"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main([*base, "--cv", "1"]) == 2
    assert "at least 2 folds" in capsys.readouterr().err
    assert main([*base, "--plot", str(tmp_path / "p.jpeg")]) == 2
    assert ".png, .pdf or .svg" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if it were not installed
    assert main([*base, "--plot", str(tmp_path / "p.png")]) == 2
    assert "pip install 'convexnn[plot]'" in capsys.readouterr().err
    assert not model.exists() and list(tmp_path.iterdir()) == [table]


def test_certify_several_radii_with_a_plot(tmp_path, table, capsys):
    """--eps with several radii: one report per radius, each the same as certify_report's for that radius;
    with the exact method a larger ball never certifies more points nor refutes fewer; --plot draws the curve."""
    import pandas as pd

    from convexnn import load
    from convexnn.robustness import certify_report

    model, plot = tmp_path / "m.npz", tmp_path / "robust.png"
    assert main(["fit", str(table), "-o", str(model), "--patterns", "8", "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    radii = ["0.01", "0.05", "0.2"]
    assert main(["certify", str(model), str(table), "--eps", *radii, "--method", "exact", "--plot", str(plot),
                 "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["eps"] == [float(e) for e in radii] and len(out["reports"]) == 3
    cert = [r["fractions"]["certified"] for r in out["reports"]]
    attacked = [r["fractions"]["attacked"] for r in out["reports"]]
    assert cert == sorted(cert, reverse=True) and attacked == sorted(attacked) and cert[0] > cert[-1]
    df = pd.read_csv(table)
    y = 2.0 * df.pop("target").to_numpy() - 1.0
    direct = certify_report(load(model), df.to_numpy(dtype=float), y, eps=0.05, method="exact")
    assert direct["counts"] == out["reports"][1]["counts"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["certify", str(model), str(table), "--eps", "-0.1"]) == 2
    assert "finite and ≥ 0" in capsys.readouterr().err
