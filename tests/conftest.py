import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import StandardScaler

torch.set_num_threads(1)  # measured fastest for these small problems on 2-core CI machines


@pytest.fixture(scope="session")
def breast_cancer():
    """Standardised breast-cancer data with ±1 labels (569 × 30)."""
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), 2.0 * y - 1.0


@pytest.fixture(scope="session")
def diabetes():
    """Diabetes with X and y standardised (442 × 10)."""
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X), (y - y.mean()) / y.std()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
