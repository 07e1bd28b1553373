"""Fixtures for the adapter tests: a tiny stand-in for adapters.structure.

The build and CLI tests use :func:`stub_structure` so that they test the
adapters (reading, labels, assembly) quickly and independently of the real
structure functions, which have their own tests; ``test_build.py`` also runs
one end-to-end check with the real module when it is importable.
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest


class StubStructureConfig:
    """Radial densities G_X(i; r) on a 4-point grid, brute force, species A and B."""

    def __init__(self, species=("A", "B"), grid=(0.8, 1.0, 1.2, 1.4), width=0.1, cutoff=1.6):
        self.species = tuple(species)
        self.grid = tuple(grid)
        self.width = width
        self.cutoff = cutoff

    @classmethod
    def kob_andersen(cls):
        return cls()

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    def to_dict(self):
        return {"species": list(self.species), "grid": list(self.grid), "width": self.width, "cutoff": self.cutoff}

    @property
    def n_features(self):
        return len(self.species) * len(self.grid)

    def feature_names(self):
        return [f"G_{s}(r={r:g})" for s in self.species for r in self.grid]

    def feature_families(self):
        return ["radial"] * self.n_features

    def feature_params(self):
        return [{"species": s, "r": r, "width": self.width} for s in self.species for r in self.grid]

    def conventions(self):
        return {"stub": True, "radial": "sum_j exp(-(r_ij - r)^2 / (2 L^2))", "width": self.width,
                "cutoff": self.cutoff}


class StubStructureFunctions:
    def __init__(self, cfg):
        self.cfg = cfg
        self.calls = []

    def compute(self, box, points, types, query_indices=None):
        L = np.asarray(box, dtype=np.float64)
        if L.size == 6:  # freud's (Lx, Ly, Lz, xy, xz, yz): the stub knows orthorhombic boxes only
            assert not L[3:].any(), "the stub structure functions take orthorhombic boxes"
            L = L[:2] if L[2] == 0 else L[:3]
        pts = np.asarray(points, dtype=np.float64)
        assert pts.ndim == 2 and pts.shape[1] == 3, "points must be (N, 3)"
        d = len(L)
        # every point must be inside the centred box (wrapped positions)
        assert np.all(np.abs(pts[:, :d]) <= L / 2 + 1e-9), "points not wrapped into the centred box"
        if d == 2:
            assert np.all(pts[:, 2] == 0)
        q = np.arange(len(pts)) if query_indices is None else np.asarray(query_indices)
        self.calls.append(SimpleNamespace(box=tuple(L), n=len(pts), query=q.copy()))
        diff = pts[q, None, :d] - pts[None, :, :d]
        diff -= L * np.round(diff / L)
        r = np.sqrt((diff**2).sum(-1))
        r[np.arange(len(q)), q] = np.inf
        feats = []
        for s in range(len(self.cfg.species)):
            mask = (np.asarray(types)[None, :] == s) & (r < self.cfg.cutoff)
            for g in self.cfg.grid:
                feats.append((np.exp(-((r - g) ** 2) / (2 * self.cfg.width**2)) * mask).sum(1))
        return SimpleNamespace(features=np.stack(feats, 1).astype(np.float32), query_indices=q)


@pytest.fixture
def stub_structure(monkeypatch):
    """Install the stub as ``adapters.structure`` for one test; returns the module."""
    import adapters

    mod = types.ModuleType("adapters.structure")
    mod.StructureConfig = StubStructureConfig
    instances = []

    class Recording(StubStructureFunctions):
        def __init__(self, cfg):
            super().__init__(cfg)
            instances.append(self)

    mod.StructureFunctions = Recording
    mod.instances = instances
    monkeypatch.setitem(sys.modules, "adapters.structure", mod)
    monkeypatch.setattr(adapters, "structure", mod, raising=False)
    return mod
