"""Shared fixtures: toy datasets are drawn once per session (every draw seeded)."""

from __future__ import annotations

import os

import pytest

# one BLAS thread: faster on a shared 2-core machine, and results do not depend on threading
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def toy_default():
    """Default toy (10 energy + 4 noise coordinates), 50k samples at each of 6 temperatures."""
    from toymodel import ToyModel

    return ToyModel().to_dataset(per_temperature=50_000, seed=11)


@pytest.fixture(scope="session")
def toy_cube():
    """(x, x^3) toy: 10 energy coordinates and their cubes, no noise coordinates."""
    from toymodel import ToyModel

    return ToyModel(n_noise=0, extra="cube").to_dataset(per_temperature=50_000, seed=12)


@pytest.fixture(scope="session")
def toy_file(tmp_path_factory, toy_default):
    path = tmp_path_factory.mktemp("toy") / "toy.h5"
    toy_default.write(path)
    return path
