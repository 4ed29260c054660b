"""Plots of a fit's certificate history and of a cross-validated alpha: drawn from the data, written whole."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from convexnn import ConvexReLUClassifier, ConvexReLURegressorCV  # noqa: E402
from convexnn.plotting import plot_cv, plot_history, save_figure  # noqa: E402


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_history_plot_draws_the_certificates(breast_cancer):
    X, y = breast_cancer
    est = ConvexReLUClassifier(n_patterns=12, n_threads=1, random_state=0).fit(X[:150], y[:150])
    fig = plot_history(est.history_)
    left, right = fig.axes
    np.testing.assert_allclose(left.lines[0].get_ydata(), [r["primal"] for r in est.history_])
    np.testing.assert_allclose(left.lines[1].get_ydata(), [r["dual"] for r in est.history_])
    gaps = np.array([r["relative_gap"] for r in est.history_])
    np.testing.assert_allclose(right.lines[0].get_ydata()[gaps > 0], gaps[gaps > 0])
    assert right.get_yscale() == "log"


def test_history_plot_of_several_outputs_draws_each_column_on_the_gap_panel(iris):
    X, y = iris
    est = ConvexReLUClassifier(n_patterns=10, n_threads=1, random_state=0).fit(X, y)
    per_column = [r for r in est.history_ if "column" in r]
    assert {r["column"] for r in per_column} == {0, 1, 2}
    fig = plot_history(est.history_)
    left, right = fig.axes
    # the objective panel holds only whole-program records; the gap panel one line per output besides
    assert len(left.lines[0].get_ydata()) == len(est.history_) - len(per_column)
    assert len(right.lines) == 1 + 3
    with pytest.raises(ValueError, match="empty"):
        plot_history([])


def test_cv_plot_and_atomic_save(tmp_path, diabetes):
    X, y = diabetes
    cv = ConvexReLURegressorCV(n_alphas=3, cv=2, estimator_params={"n_patterns": 8, "n_threads": 1,
                                                                    "random_state": 0}).fit(X[:100], y[:100])
    fig = plot_cv(cv)
    (ax,) = fig.axes
    np.testing.assert_allclose(ax.lines[0].get_xdata(), cv.alphas_)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), cv.cv_scores_.mean(1))
    assert ax.lines[1].get_xdata()[0] == cv.alpha_
    out = tmp_path / "cv.png"
    save_figure(fig, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cv.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="suffix"):
        save_figure(fig, tmp_path / "cv.jpeg")


def test_robustness_plot_draws_the_bounds_on_robust_accuracy(breast_cancer):
    from convexnn.plotting import plot_robustness
    from convexnn.robustness import certify_report

    X, y = breast_cancer[0][:100], breast_cancer[1][:100]
    est = ConvexReLUClassifier(n_patterns=8, n_threads=1, random_state=0).fit(X, y)
    reports = [certify_report(est, X, y, eps=e, method="crown") for e in (0.3, 0.05)]  # given out of order
    fig = plot_robustness(reports)
    (ax,) = fig.axes
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0.05, 0.3])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1 - r["fractions"]["attacked"] for r in reports[::-1]])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [r["fractions"]["certified"] for r in reports[::-1]])
    with pytest.raises(ValueError, match="no certification reports"):
        plot_robustness([])
