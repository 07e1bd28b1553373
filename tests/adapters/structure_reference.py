"""Brute-force reference for the structure functions (test side only; no freud).

Slow and deliberately plain: every query particle looks at every other particle through an
explicit minimum image; the angular sum loops over every unordered pair of neighbours. The only
truncation is the neighbour cutoff ``r_ij < cutoff`` of each family, passed in explicitly.

Definitions (see docs/structure-functions.md)::

    G_X(i; r)  = sum_{j in X, j != i, r_ij < rc_radial} exp(-(r_ij - r)^2 / (2 L^2))
    Psi_XY(i)  = sum over unordered pairs {j, k}, j != k, both != i, both r < rc_angular,
                 one in X and the other in Y, of
                 exp(-(r_ij^2 + r_ik^2 + r_jk^2) / xi^2) * (1 + lambda cos theta_jik)^zeta
    with r_jk = |d_ik - d_ij| (d = minimum-image bond vectors from i).
"""

from __future__ import annotations

import math

import numpy as np


def minimum_image(d: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Minimum-image displacement for an orthorhombic box (lengths per dimension used)."""
    d = np.array(d, dtype=np.float64, copy=True)
    for a, L in enumerate(lengths):
        d[..., a] -= L * np.round(d[..., a] / L)
    return d


def reference_features(lengths, points, types, species, radial_r, width, angular, pairs,
                       rc_radial, rc_angular, query=None, collect_dropped=False):
    """Features in the same column order as ``StructureConfig.feature_names()``.

    Parameters
    ----------
    lengths : sequence of 2 or 3 box lengths
    points : (N, 3) positions (z ignored in 2D)
    types : (N,) ints
    species : sequence of names
    radial_r, width : radial grid and L
    angular : sequence of (xi, lambda, zeta)
    pairs : sequence of (X, Y) species names
    rc_radial, rc_angular : neighbour cutoffs of the two families
    query : particle indices (default all)
    collect_dropped : if True also return the largest single term each family drops, relative to
        the largest value one term can take (1 radial, (1+|lambda|)^zeta angular).

    Returns
    -------
    (n_query, n_features) float64 array [, dict with "radial" and "angular" maxima]
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    dim = lengths.size
    pts = np.asarray(points, dtype=np.float64)[:, :dim]
    types = np.asarray(types)
    n = len(pts)
    query = np.arange(n) if query is None else np.asarray(query)
    radial_r = np.asarray(radial_r, dtype=np.float64)
    ns = len(species)
    rows = []
    dropped = {"radial": 0.0, "angular": 0.0}
    for i in query:
        d = minimum_image(pts - pts[i], lengths)
        r = np.sqrt(np.sum(d * d, axis=1))
        others = np.arange(n) != i
        feats = []
        # radial
        for s in range(ns):
            sel = others & (types == s) & (r < rc_radial)
            g = np.exp(-((r[sel][:, None] - radial_r[None, :]) ** 2) / (2.0 * width**2)).sum(axis=0)
            feats.extend(g.tolist() if radial_r.size else [])
            if collect_dropped and radial_r.size:
                far = others & (types == s) & (r >= rc_radial)
                if far.any():
                    v = np.exp(-((r[far][:, None] - radial_r[None, :]) ** 2) / (2.0 * width**2)).max()
                    dropped["radial"] = max(dropped["radial"], float(v))
        # angular
        nb = np.flatnonzero(others & (r < rc_angular))
        cand = np.flatnonzero(others) if collect_dropped else nb
        for x, y in pairs:
            tx, ty = species.index(x), species.index(y)
            acc = np.zeros(len(angular))
            for a, j in enumerate(cand):
                ks = cand[a + 1:]
                if ks.size == 0:
                    continue
                tj = types[j]
                tk = types[ks]
                ok = ((tj == tx) & (tk == ty)) | ((tj == ty) & (tk == tx))
                ks = ks[ok]
                if ks.size == 0:
                    continue
                dij = d[j]
                dik = d[ks]
                rij = r[j]
                rik = r[ks]
                djk = dik - dij
                rjk2 = np.sum(djk * djk, axis=1)
                cos = (dik @ dij) / (rij * rik)
                cos = np.clip(cos, -1.0, 1.0)
                inside = (rij < rc_angular) & (rik < rc_angular)
                s2 = rij * rij + rik * rik + rjk2
                for t, (xi, lam, zeta) in enumerate(angular):
                    term = np.exp(-s2 / xi**2) * (1.0 + lam * cos) ** zeta
                    acc[t] += term[inside].sum()
                    if collect_dropped and (~inside).any():
                        rel = term[~inside].max() / (1.0 + abs(lam)) ** zeta
                        dropped["angular"] = max(dropped["angular"], float(rel))
            feats.extend(acc.tolist())
        rows.append(feats)
    out = np.array(rows, dtype=np.float64).reshape(len(query), -1)
    if collect_dropped:
        return out, dropped
    return out


def reference_for_config(cfg, lengths, points, types, query=None, rc_radial=None, rc_angular=None,
                         collect_dropped=False):
    """:func:`reference_features` with the grid and (by default) the cutoffs of a StructureConfig."""
    return reference_features(
        lengths, points, types, list(cfg.species), cfg.radial_r, cfg.radial_width, cfg.angular,
        cfg.pairs,
        cfg.radial_cutoff if rc_radial is None else rc_radial,
        cfg.angular_cutoff if rc_angular is None else rc_angular,
        query=query, collect_dropped=collect_dropped,
    )


def hand_gaussian(r_ij: float, r: float, width: float) -> float:
    """One radial term, written out."""
    return math.exp(-((r_ij - r) ** 2) / (2.0 * width**2))
