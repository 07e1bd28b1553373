"""Brute-force definition of the structure functions of :mod:`adapters.structure` (no freud).

Slow and deliberately plain: it *is* the definition the fast code is tested against. Every query
particle looks at every periodic image of every particle (itself included) through an explicit
loop over lattice shifts; the angular sum loops over every unordered pair of neighbours. The only
truncation is the neighbour cutoff ``0 < r < cutoff`` of each family, passed in explicitly.
Cost: O(N x images) per query for the radial sums and O(M^2) per query for the angular sums
(``M`` neighbours within the angular cutoff): use it on small systems or a few query particles.

Definitions (see docs/structure-functions.md), sums over the infinite periodic system::

    G_X(i; r)  = sum over images j' of particles j in X, 0 < r_ij' < rc_radial, of
                 exp(-(r_ij' - r)^2 / (2 L^2))
    Psi_XY(i)  = sum over unordered pairs {j', k'} of distinct images (j' != k', both at
                 0 < r < rc_angular from i), one of species X and the other Y, of
                 exp(-(r_ij'^2 + r_ik'^2 + r_j'k'^2) / xi^2) * (1 + lambda cos theta_j'ik')^zeta
    with r_j'k' = |d_ik' - d_ij'| (d = bond vectors from i to the images).

Images of ``i`` itself (at lattice vectors from ``i``) are neighbours like any other particle; only
``i`` at distance 0 is excluded. When every cutoff is below half the smallest perpendicular width
of the box, each particle has at most one image within the cutoff (the minimum image).

Boxes: lengths ``(Lx, Ly)`` / ``(Lx, Ly, Lz)`` (``Lz = 0``: 2D) or the freud/HOOMD 6-tuple
``(Lx, Ly, Lz, xy, xz, yz)``, whose lattice vectors (columns of :func:`box_matrix`) are
``a1 = (Lx, 0, 0)``, ``a2 = (xy Ly, Ly, 0)``, ``a3 = (xz Lz, yz Lz, Lz)``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["box_matrix", "minimum_image", "reference_features", "reference_for_config", "hand_gaussian",
           "perpendicular_widths"]


def box_matrix(box) -> np.ndarray:
    """Lattice vectors as the columns of a ``(dim, dim)`` matrix.

    Parameters
    ----------
    box : sequence of 2, 3 or 6 numbers
        ``(Lx, Ly)``, ``(Lx, Ly, Lz)`` or ``(Lx, Ly, Lz, xy, xz, yz)``; ``Lz = 0`` means 2D.
    """
    b = [float(x) for x in np.asarray(box, dtype=np.float64).reshape(-1)]
    if len(b) == 2:
        b = b + [0.0]
    if len(b) == 3:
        b = b + [0.0, 0.0, 0.0]
    if len(b) != 6:
        raise ValueError(f"box must have 2, 3 or 6 numbers, got {len(b)}")
    Lx, Ly, Lz, xy, xz, yz = b
    if Lz == 0.0:
        return np.array([[Lx, xy * Ly], [0.0, Ly]])
    return np.array([[Lx, xy * Ly, xz * Lz], [0.0, Ly, yz * Lz], [0.0, 0.0, Lz]])


def perpendicular_widths(A: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell spanned by the columns of ``A``, shape (dim,)."""
    return 1.0 / np.linalg.norm(np.linalg.inv(A), axis=1)


def minimum_image(d: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Minimum-image displacement for an orthorhombic box (lengths per dimension used)."""
    d = np.array(d, dtype=np.float64, copy=True)
    for a, L in enumerate(lengths):
        d[..., a] -= L * np.round(d[..., a] / L)
    return d


def _images(A: np.ndarray, pts: np.ndarray, i: int, reach: float):
    """Every periodic image of every particle within ``reach`` of particle ``i``.

    Returns (j, d, r): particle index of each image, bond vector from ``i`` (m, dim) and length.
    Includes ``i`` itself at distance 0 and ``i``'s own images.
    """
    inv = np.linalg.inv(A)
    f = (pts - pts[i]) @ inv.T
    f -= np.round(f)  # fractional offsets in [-1/2, 1/2]: the image nearest in fractional terms
    # an image n + f within reach has |n_a + f_a| <= reach / w_a along each reciprocal direction
    w = perpendicular_widths(A)
    nmax = [int(math.ceil(reach / wa + 0.5)) for wa in w]
    js, ds = [], []
    for n in itertools.product(*[range(-k, k + 1) for k in nmax]):
        d = (f + np.asarray(n, dtype=np.float64)) @ A.T
        r2 = np.sum(d * d, axis=1)
        keep = np.flatnonzero(r2 < reach * reach)
        js.append(keep)
        ds.append(d[keep])
    j = np.concatenate(js)
    d = np.concatenate(ds)
    return j, d, np.sqrt(np.sum(d * d, axis=1))


def reference_features(box, points, types, species, radial_r, width, angular, pairs,
                       rc_radial, rc_angular, query=None, collect_dropped=False):
    """Features in the same column order as ``StructureConfig.feature_names()``.

    Parameters
    ----------
    box : sequence of 2, 3 or 6 numbers
        ``(Lx, Ly)``, ``(Lx, Ly, Lz)`` or ``(Lx, Ly, Lz, xy, xz, yz)`` (``Lz = 0``: 2D).
    points : (N, 3) positions (z ignored in 2D), anywhere (not necessarily wrapped)
    types : (N,) ints
    species : sequence of names
    radial_r, width : radial grid and L
    angular : sequence of (xi, lambda, zeta)
    pairs : sequence of (X, Y) species names
    rc_radial, rc_angular : neighbour cutoffs of the two families
    query : particle indices (default all)
    collect_dropped : if True also return the largest single term each family drops (among images
        up to 1.5 x the larger cutoff), relative to the largest value one term can take (1 radial,
        (1+|lambda|)^zeta angular).

    Returns
    -------
    (n_query, n_features) float64 array [, dict with "radial" and "angular" maxima]
    """
    A = box_matrix(box)
    dim = A.shape[0]
    pts = np.asarray(points, dtype=np.float64)[:, :dim]
    types = np.asarray(types)
    n = len(pts)
    query = np.arange(n) if query is None else np.asarray(query)
    radial_r = np.asarray(radial_r, dtype=np.float64)
    ns = len(species)
    reach = max(rc_radial, rc_angular) * (1.5 if collect_dropped else 1.0)
    rows = []
    dropped = {"radial": 0.0, "angular": 0.0}
    for i in query:
        jj, d, r = _images(A, pts, int(i), reach)
        others = r > 0.0  # every image except i itself
        tj_all = types[jj]
        feats = []
        # radial
        for s in range(ns):
            sel = others & (tj_all == s) & (r < rc_radial)
            g = np.exp(-((r[sel][:, None] - radial_r[None, :]) ** 2) / (2.0 * width**2)).sum(axis=0)
            feats.extend(g.tolist() if radial_r.size else [])
            if collect_dropped and radial_r.size:
                far = others & (tj_all == s) & (r >= rc_radial)
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
                tj = tj_all[j]
                tk = tj_all[ks]
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


def reference_for_config(cfg, box, points, types, query=None, rc_radial=None, rc_angular=None,
                         collect_dropped=False):
    """:func:`reference_features` with the grid and (by default) the cutoffs of a StructureConfig."""
    return reference_features(
        box, points, types, list(cfg.species), cfg.radial_r, cfg.radial_width, cfg.angular,
        cfg.pairs,
        cfg.radial_cutoff if rc_radial is None else rc_radial,
        cfg.angular_cutoff if rc_angular is None else rc_angular,
        query=query, collect_dropped=collect_dropped,
    )


def hand_gaussian(r_ij: float, r: float, width: float) -> float:
    """One radial term, written out."""
    return math.exp(-((r_ij - r) ** 2) / (2.0 * width**2))
