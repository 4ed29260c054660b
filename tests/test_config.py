"""Thread settings (convexnn._config): the default by program size, the BLAS pools limited with torch's, and
everything restored afterwards."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

import convexnn.solvers.newton as newton
from convexnn._config import SMALL_WORK, available_cores, num_threads


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def _blas_at_most(k: int) -> bool:
    """Every loaded BLAS pool runs at most k threads (a pool started with fewer keeps its own count)."""
    return all(t <= k for t in _blas_threads())


@pytest.fixture
def two_torch_threads():
    """torch at two threads for the test (conftest sets one), put back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_small_programs_run_on_one_thread_and_large_ones_on_the_default(two_torch_threads):
    blas_before = _blas_threads()
    with num_threads(None, work=SMALL_WORK / 10) as n:
        assert n == 1 and torch.get_num_threads() == 1
        assert _blas_at_most(1)  # SciPy's BLAS too
    assert torch.get_num_threads() == 2 and _blas_threads() == blas_before
    with num_threads(None, work=SMALL_WORK * 10) as n:
        assert n == min(2, available_cores()) and torch.get_num_threads() == n
    with num_threads(None) as n:  # no size given: the default as before
        assert n == min(2, available_cores())
    assert torch.get_num_threads() == 2


def test_a_thread_count_the_user_names_is_used_whatever_the_size(two_torch_threads):
    with num_threads(1, work=SMALL_WORK * 100) as n:
        assert n == 1 and torch.get_num_threads() == 1 and _blas_at_most(1)
    with num_threads(3, work=1.0) as n:
        assert n == 3 and torch.get_num_threads() == 3 and _blas_at_most(3)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(ValueError, match="n_threads must be a positive integer"):
        with num_threads(bad):
            pass


def test_estimator_fits_a_small_program_on_one_thread(two_torch_threads, monkeypatch):
    """ConvexReLURegressor without n_threads on 60 rows × 3 columns, 10 patterns: the solver runs with one
    torch thread and one BLAS thread; with n_threads=2 it runs with two."""
    import convexnn.estimators as est_mod
    from convexnn import ConvexReLURegressor

    seen = []
    real_solve = est_mod.solve

    def solve(problem, **kwargs):
        seen.append((torch.get_num_threads(), _blas_at_most(1)))
        return real_solve(problem, **kwargs)

    monkeypatch.setattr(est_mod, "solve", solve)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = np.maximum(X @ [1.0, -2.0, 0.5], 0.0)
    ConvexReLURegressor(n_patterns=10, random_state=0).fit(X, y)
    assert seen[-1] == (1, True)
    ConvexReLURegressor(n_patterns=10, random_state=0, n_threads=2).fit(X, y)
    assert seen[-1][0] == 2
    assert torch.get_num_threads() == 2


def test_column_generation_and_adam_baselines_use_the_small_program_default(two_torch_threads, monkeypatch):
    """n_patterns='grow' and the Adam baselines without n_threads on 60 rows × 3 columns run on one thread (two made
    them 1.2–2.4× slower on the development machine); a count the user names is used."""
    import convexnn.baselines as base_mod
    import convexnn.solvers.column_generation as cg_mod
    from convexnn import ConvexReLURegressor
    from convexnn.baselines import train_adam

    seen = []
    real_adcg, real_init = cg_mod.adcg, base_mod._init_layers

    def adcg(*args, **kwargs):
        seen.append(("adcg", torch.get_num_threads()))
        return real_adcg(*args, **kwargs)

    def init_layers(*args, **kwargs):
        seen.append(("adam", torch.get_num_threads()))
        return real_init(*args, **kwargs)

    monkeypatch.setattr(cg_mod, "adcg", adcg)  # the estimator imports it when it fits
    monkeypatch.setattr(base_mod, "_init_layers", init_layers)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = np.maximum(X @ [1.0, -2.0, 0.5], 0.0)
    ConvexReLURegressor(n_patterns="grow", random_state=0, max_time=5).fit(X, y)
    train_adam(X, y, width=8, alpha=1e-3, loss="squared", epochs=5, seed=0)
    train_adam(X, y, width=8, alpha=1e-3, loss="squared", epochs=5, seed=0, n_threads=2)
    assert seen == [("adcg", 1), ("adam", 1), ("adam", 2)]
    assert torch.get_num_threads() == 2


def test_output_columns_run_side_by_side_only_on_cores_the_threads_leave_idle(two_torch_threads):
    """column_workers: a small program without n_threads (one torch thread) may run its columns on the other cores;
    a large one (torch on every core), a count the user names (threads in all), or no num_threads context: one
    column at a time."""
    from convexnn._config import column_workers

    assert column_workers(10) == 1
    with num_threads(None, work=SMALL_WORK / 10):
        assert column_workers(10) == min(2, available_cores())
        assert column_workers(1) == 1
    with num_threads(None, work=SMALL_WORK * 10):
        assert column_workers(10) == 1
    for n in (1, 2):
        with num_threads(n, work=1.0):
            assert column_workers(10) == 1
    assert column_workers(10) == 1


def test_a_default_multiclass_fit_polishes_its_columns_on_the_idle_cores(two_torch_threads, monkeypatch):
    """ConvexReLUClassifier without n_threads on wine (three classes, a small program) hands polish two workers where
    two cores are free, and gives the same network as with n_threads=1 (one column at a time)."""

    from sklearn.datasets import load_wine

    from convexnn import ConvexReLUClassifier

    seen = []
    real = newton.driver.column_workers

    def column_workers(columns):
        seen.append(real(columns))
        return seen[-1]

    monkeypatch.setattr(newton.driver, "column_workers", column_workers)
    X, y = load_wine(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    a = ConvexReLUClassifier(n_patterns=10, random_state=0).fit(X, y)
    assert seen and max(seen) == min(2, available_cores())
    b = ConvexReLUClassifier(n_patterns=10, random_state=0, n_threads=1).fit(X, y)
    assert seen[-1] == 1
    assert np.array_equal(a.blocks_, b.blocks_) and a.certificate_.relative_gap <= a.tol
