"""Compiled (numba) kernels of :mod:`adapters.structure`; optional (``pip install 'glass-diag[fast]'``).

Importing this module imports numba (an ``ImportError`` means: use the numpy path). Nothing is
compiled at import: the kernels are compiled on their first call (~15 s in all on a 2-core
machine) and cached on disk (``cache=True``: in ``__pycache__`` beside this file, or, where that
is not writable, in numba's per-user cache directory; ``NUMBA_CACHE_DIR`` overrides both); later
sessions load them in well under a second. The callers always pass the same argument types
(int64 / float64 / float32, C-contiguous), so there is one compilation per kernel.

Layout. Neighbours of one chunk of query particles are a CSR structure: the bonds of query ``b``
are ``ptr[b] .. ptr[b+1]``, grouped by neighbour species in ascending order, each with its
species, its float64 bond vector ``(dx, dy, dz)`` (``dz = 0`` in 2D) and ``d2 = r^2``;
only ``0 < r^2 < rq^2`` is stored. The points are those of an orthorhombic box with ``rq`` below
half of every length (each neighbour has one image within ``rq``); for small or triclinic boxes
``adapters.structure`` passes the particles together with their explicit periodic images, and the
kernels run unchanged. :func:`cell_neighbours` builds it from the cell list of
``adapters.structure._Context`` (the same cells, stencil and periodic images as the numpy path);
the freud engine builds it in numpy. :func:`chunk_sums` turns it into features:

* radial, uniform grid: per bond two ``exp`` and the window values ``g q^w c_w`` by repeated
  multiplication (as the numpy path); non-uniform grid: one ``exp`` per (bond, grid point);
* angular: per unordered pair one dot product gives ``S = r_ij^2 + r_ik^2 + r_jk^2`` and
  ``cos theta_jik``; the Gaussian factors ``exp(-S / xi^2)`` come from a small "program" (one
  ``exp`` per pair when every ``1/xi^2`` is an integer multiple of a base, else one per (pair,
  xi)), the angular factors ``(1 + lambda cos)^zeta`` from another (repeated multiplication for
  integer zeta, ``pow`` otherwise). Pairs are collected into blocks of ``_BLK_A`` and every pass
  is element-wise over a block, products added into element-wise accumulators that are summed
  once per species pair: LLVM vectorises all of it without reassociating floating-point sums, so
  ``fastmath`` stays off. ``exp`` on blocks is :func:`_exp_array` (vectorisable, not libm).

Program encoding (rows of a small work matrix, one row per intermediate array over pairs)::

    kind 0: row[dst] = exp(T * val)            (Gaussian program; T = -scale * S)
    kind 3: row[dst] = 1 + val * cos           (angular program: the base)
    kind 1: row[dst] = row[a] * row[b]
    kind 2: row[dst] = max(row[a], 0) ** val   (non-integer zeta)
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["cell_neighbours", "chunk_sums", "chunk_features", "NUMBA_VERSION"]

NUMBA_VERSION = numba.__version__

_JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")

_BLK = 128  # bonds per block of the element-wise radial passes
_BLK_A = 256  # pairs per block of the element-wise angular passes (a power of two)


# ----------------------------------------------------------------------------- neighbours
@numba.njit(**_JIT)
def cell_neighbours(qidx, pts, cell_of, cell_coord, nc, L, inv_mi, stencil, o_all, st_all, ps,
                    rq2, ptr, nsp, dx, dy, dz, d2, err):
    """Fill the CSR bonds of the queries ``qidx`` (capacity ``d2.size``); return the number of
    bonds needed. ``err[0], err[1]`` get the first pair of distinct particles at one position.

    Queries of one cell (consecutive in ``qidx``, as ``_Context.groups`` orders them) share one
    candidate list: the particles of the cell's stencil, species by species, in the periodic
    image fixed by the stencil offset (as the numpy path). ``o_all``: particle ids sorted by
    (species, cell); ``st_all[s, c] .. st_all[s, c+1]``: species ``s`` in cell ``c``; ``ps``:
    their positions in that order. ``inv_mi[a] = 1/L[a]`` on axes with the minimum-image
    fallback (a single cell), else 0.
    """
    cap = d2.size
    ns = st_all.shape[0]
    nst = stencil.shape[0]
    B = qidx.size
    nc0, nc1, nc2 = nc[0], nc[1], nc[2]
    L0, L1, L2 = L[0], L[1], L[2]
    m0, m1, m2 = inv_mi[0], inv_mi[1], inv_mi[2]
    any_mi = m0 != 0.0 or m1 != 0.0 or m2 != 0.0
    ccap = 0
    cx = np.empty(0)
    cy = np.empty(0)
    cz = np.empty(0)
    cs = np.empty(0, dtype=np.int64)
    cj = np.empty(0, dtype=np.int64)
    r2w = np.empty(0)
    hit = np.empty(0, dtype=np.int64)
    cells = np.empty(nst, dtype=np.int64)
    shx = np.empty(nst)
    shy = np.empty(nst)
    shz = np.empty(nst)
    n = 0
    ptr[0] = 0
    b = 0
    while b < B:
        cell = cell_of[qidx[b]]
        e = b + 1
        while e < B and cell_of[qidx[e]] == cell:
            e += 1
        # ---- candidates of this cell: stencil cells, their periodic shifts
        i0 = qidx[b]
        c0, c1, c2 = cell_coord[i0, 0], cell_coord[i0, 1], cell_coord[i0, 2]
        tot = 0
        for t in range(nst):
            u0 = c0 + stencil[t, 0]
            u1 = c1 + stencil[t, 1]
            u2 = c2 + stencil[t, 2]
            w0 = u0 % nc0
            w1 = u1 % nc1
            w2 = u2 % nc2
            shx[t] = ((u0 - w0) // nc0) * L0
            shy[t] = ((u1 - w1) // nc1) * L1
            shz[t] = ((u2 - w2) // nc2) * L2
            cells[t] = (w0 * nc1 + w1) * nc2 + w2
            for s in range(ns):
                tot += st_all[s, cells[t] + 1] - st_all[s, cells[t]]
        if tot > ccap:
            ccap = tot + tot // 4 + 64
            cx = np.empty(ccap)
            cy = np.empty(ccap)
            cz = np.empty(ccap)
            cs = np.empty(ccap, dtype=np.int64)
            cj = np.empty(ccap, dtype=np.int64)
            r2w = np.empty(ccap)
            hit = np.empty(ccap, dtype=np.int64)
        m = 0
        for s in range(ns):  # species-major: each query's hits come out grouped by species
            for t in range(nst):
                sx = shx[t]
                sy = shy[t]
                sz = shz[t]
                for p in range(st_all[s, cells[t]], st_all[s, cells[t] + 1]):
                    cx[m] = ps[p, 0] + sx
                    cy[m] = ps[p, 1] + sy
                    cz[m] = ps[p, 2] + sz
                    cs[m] = s
                    cj[m] = o_all[p]
                    m += 1
        # ---- each query of the cell against the candidates
        for bq in range(b, e):
            i = qidx[bq]
            xi_ = pts[i, 0]
            yi_ = pts[i, 1]
            zi_ = pts[i, 2]
            if any_mi:
                for c in range(m):
                    ex = cx[c] - xi_
                    ey = cy[c] - yi_
                    ez = cz[c] - zi_
                    ex -= L0 * np.rint(ex * m0)
                    ey -= L1 * np.rint(ey * m1)
                    ez -= L2 * np.rint(ez * m2)
                    r2w[c] = ex * ex + ey * ey + ez * ez
            else:
                for c in range(m):
                    ex = cx[c] - xi_
                    ey = cy[c] - yi_
                    ez = cz[c] - zi_
                    r2w[c] = ex * ex + ey * ey + ez * ez
            nh = 0
            for c in range(m):  # branch-free compaction of the hits
                hit[nh] = c
                nh += r2w[c] < rq2
            for h in range(nh):
                c = hit[h]
                r2 = r2w[c]
                if r2 == 0.0:  # the query itself, or a coincident particle
                    if cj[c] != i and err[0] < 0:
                        err[0] = i
                        err[1] = cj[c]
                    continue
                if n < cap:
                    ex = cx[c] - xi_
                    ey = cy[c] - yi_
                    ez = cz[c] - zi_
                    if any_mi:
                        ex -= L0 * np.rint(ex * m0)
                        ey -= L1 * np.rint(ey * m1)
                        ez -= L2 * np.rint(ez * m2)
                    nsp[n] = cs[c]
                    dx[n] = ex
                    dy[n] = ey
                    dz[n] = ez
                    d2[n] = r2
                n += 1
            ptr[bq + 1] = n
        b = e
    return n


# ----------------------------------------------------------------------------- exp
# exp(x) on whole arrays with plain IEEE arithmetic, so that LLVM can vectorise it (a call to libm's
# scalar exp cannot be): x = m ln2 + r with |r| <= ln2/2 (Cody-Waite, m = rint(x / ln2) by the
# 1.5 * 2^52 rounding trick), exp(r) by its Taylor polynomial of degree 13 (truncation < 5e-18
# relative), times 2^m built in the exponent bits. Within a few ulp of libm's exp for
# -708.39 <= x <= 709; exp(x) = 0 below -708.39 (true value < 2.3e-308).
_LOG2E = 1.4426950408889634
_LN2HI = 6.93147180369123816490e-01  # ln 2 rounded to 32 significant bits: m * _LN2HI is exact
_LN2LO = 1.90821492927058770002e-10
_MAGIC = 6755399441055744.0  # 1.5 * 2^52
_MAGIC_BITS = 0x4338000000000000  # its IEEE bits
_X_UNDER = -708.3964185322641  # log of the smallest normal double
_C = (1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
      1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800)


@numba.njit(**_JIT)
def _exp_array(x, out, bits, n):
    """out[:n] = exp(x[:n]) (x and out may be the same array); bits: int64 work array >= n."""
    tf = bits.view(np.float64)
    c0, c1, c2, c3, c4, c5, c6 = _C[0], _C[1], _C[2], _C[3], _C[4], _C[5], _C[6]
    c7, c8, c9, c10, c11, c12, c13 = _C[7], _C[8], _C[9], _C[10], _C[11], _C[12], _C[13]
    for k in range(n):
        v = min(max(x[k], _X_UNDER), 709.0)
        t = v * _LOG2E + _MAGIC
        m = t - _MAGIC
        r = (v - m * _LN2HI) - m * _LN2LO
        p = c13
        p = p * r + c12
        p = p * r + c11
        p = p * r + c10
        p = p * r + c9
        p = p * r + c8
        p = p * r + c7
        p = p * r + c6
        p = p * r + c5
        p = p * r + c4
        p = p * r + c3
        p = p * r + c2
        p = p * r + c1
        p = p * r + c0
        tf[k] = t
        out[k] = p if x[k] >= _X_UNDER else 0.0
    for k in range(n):
        bits[k] = (bits[k] - _MAGIC_BITS + 1023) << 52
    for k in range(n):
        out[k] *= tf[k]


# ----------------------------------------------------------------------------- sums
@numba.njit(**_JIT)
def _run_program(kind, dst, a, b, val, src, W, tmp, bits, nk):
    """Apply a program (see module docstring) to nk pairs; src is T (Gaussian) or cos (angular)."""
    for o in range(kind.size):
        out = W[dst[o]]
        if kind[o] == 0:
            v = val[o]
            if v == 1.0:
                _exp_array(src, out, bits, nk)
            else:
                for k in range(nk):
                    tmp[k] = src[k] * v
                _exp_array(tmp, out, bits, nk)
        elif kind[o] == 3:
            v = val[o]
            for k in range(nk):
                out[k] = 1.0 + v * src[k]
        elif kind[o] == 1:
            x = W[a[o]]
            y = W[b[o]]
            for k in range(nk):
                out[k] = x[k] * y[k]
        else:
            x = W[a[o]]
            v = val[o]
            for k in range(nk):
                out[k] = max(x[k], 0.0) ** v


@numba.njit(**_JIT)
def _flush_pairs(T, C, nk, e_kind, e_dst, e_a, e_b, e_val, q_kind, q_dst, q_a, q_b, q_val,
                 WE, WQ, ACC, tmp, bits, ts, ea, qa):
    """Gaussian and angular factors of nk pairs; the products of triplet t are added
    element-wise into the accumulators ACC[t] (pair k into entry k). ``ts`` lists the triplets
    sorted by Gaussian row ``ea[t]``: triplets sharing a row are done in one pass, up to four
    at a time."""
    _run_program(e_kind, e_dst, e_a, e_b, e_val, T, WE, tmp, bits, nk)
    _run_program(q_kind, q_dst, q_a, q_b, q_val, C, WQ, tmp, bits, nk)
    n_t = ts.size
    i = 0
    while i < n_t:
        e = ea[ts[i]]
        j = i + 1
        while j < n_t and ea[ts[j]] == e:
            j += 1
        er = WE[e]
        while i + 4 <= j:
            a0 = ACC[ts[i]]
            a1 = ACC[ts[i + 1]]
            a2 = ACC[ts[i + 2]]
            a3 = ACC[ts[i + 3]]
            q0 = WQ[qa[ts[i]]]
            q1 = WQ[qa[ts[i + 1]]]
            q2 = WQ[qa[ts[i + 2]]]
            q3 = WQ[qa[ts[i + 3]]]
            for k in range(nk):
                x = er[k]
                a0[k] += x * q0[k]
                a1[k] += x * q1[k]
                a2[k] += x * q2[k]
                a3[k] += x * q3[k]
            i += 4
        if i + 2 <= j:
            a0 = ACC[ts[i]]
            a1 = ACC[ts[i + 1]]
            q0 = WQ[qa[ts[i]]]
            q1 = WQ[qa[ts[i + 1]]]
            for k in range(nk):
                x = er[k]
                a0[k] += x * q0[k]
                a1[k] += x * q1[k]
            i += 2
        if i < j:
            a0 = ACC[ts[i]]
            q0 = WQ[qa[ts[i]]]
            for k in range(nk):
                a0[k] += er[k] * q0[k]
            i += 1


@numba.njit(**_JIT)
def _lane_sum(a):
    """Sum of the _BLK_A entries of a by pairwise halving (element-wise, vectorisable); a is
    overwritten."""
    h = _BLK_A // 2
    while h >= 1:
        for k in range(h):
            a[k] += a[k + h]
        h //= 2
    return a[0]


@numba.njit(**_JIT)
def chunk_sums(ptr, nsp, dx, dy, dz, d2, pos, out, ns,
               rc_r2, rad_n, rad_uniform, rad_r, rad_order, rad_r0, rad_h, rad_W, rad_cw, rad_mlo,
               rad_next, rad_L,
               rc_a2, c2, slot_x, slot_y, slot_col, e_kind, e_dst, e_a, e_b, e_val, e_nrow, e_row,
               q_kind, q_dst, q_a, q_b, q_val, q_nrow, q_row, t_e, t_q):
    """Features of the queries of one CSR chunk into ``out[pos[b]]`` (float32 rows, zeroed here).

    Radial columns ``s * rad_n + g``; angular slot ``p`` (species ``slot_x[p] <= slot_y[p]``)
    at ``slot_col[p] + t`` for triplet ``t`` (Gaussian row ``e_row[t_e[t]]``, angular row
    ``q_row[t_q[t]]``).
    """
    B = pos.size
    nf = out.shape[1]
    n_t = t_e.size
    n_slots = slot_x.size
    feat = np.zeros(nf)
    bits = np.empty(_BLK, dtype=np.int64)
    # radial work
    acc = np.zeros(max(rad_next, 1))
    c_neg = -1.0 / (2.0 * rad_L * rad_L)
    c_q = rad_h / (rad_L * rad_L)
    inv_h = 1.0 / rad_h if rad_h > 0 else 0.0
    c_off = -rad_mlo
    X1 = np.empty(_BLK)
    X2 = np.empty(_BLK)
    RQ = np.empty(_BLK)
    RB = np.empty(_BLK)
    RC = np.empty(_BLK, dtype=np.int64)
    F = np.empty((2 * rad_W + 1, _BLK))
    # angular work
    maxn = 0
    for b in range(B):
        maxn = max(maxn, ptr[b + 1] - ptr[b])
    ax = np.empty(maxn)
    ay = np.empty(maxn)
    az = np.empty(maxn)
    a2 = np.empty(maxn)
    ir = np.empty(maxn)
    aoff = np.zeros(ns + 1, dtype=np.int64)
    T = np.empty(_BLK_A)
    C = np.empty(_BLK_A)
    tmpa = np.empty(_BLK_A)
    bitsa = np.empty(_BLK_A, dtype=np.int64)
    WE = np.empty((max(e_nrow, 1), _BLK_A))
    WQ = np.empty((max(q_nrow, 1), _BLK_A))
    ACC = np.empty((max(n_t, 1), _BLK_A))
    ea = np.empty(n_t, dtype=np.int64)
    qa = np.empty(n_t, dtype=np.int64)
    for t in range(n_t):
        ea[t] = e_row[t_e[t]]
        qa[t] = q_row[t_q[t]]
    ts = np.argsort(ea, kind="mergesort")
    do_ang = n_slots > 0 and n_t > 0
    for b in range(B):
        feat[:] = 0.0
        p0 = ptr[b]
        p1 = ptr[b + 1]
        # ------------------------------------------------------------ radial
        if rad_n > 0:
            # bonds are grouped by species: one run per species
            s0 = p0
            while s0 < p1:
                s = nsp[s0]
                s1 = s0
                while s1 < p1 and nsp[s1] == s:
                    s1 += 1
                col0 = s * rad_n
                if rad_uniform:
                    acc[:] = 0.0
                    for bb in range(s0, s1, _BLK):
                        nb = min(_BLK, s1 - bb)
                        for k in range(nb):
                            r2 = d2[bb + k]
                            d = math.sqrt(r2)
                            m = np.rint((d - rad_r0) * inv_h)
                            u = d - (rad_r0 + m * rad_h)
                            RC[k] = int(m) + c_off  # acc column of the window's first point
                            # bonds at or beyond the radial cutoff get g = exp(-inf) = 0
                            X1[k] = u * u * c_neg if r2 < rc_r2 else -np.inf
                            X2[k] = u * c_q
                        # window rows F[W + w] = c_w g q^w, w = -W..W, element-wise over bonds
                        F0 = F[rad_W]
                        _exp_array(X1, F0, bits, nb)
                        _exp_array(X2, RQ, bits, nb)
                        for k in range(nb):
                            RB[k] = 1.0 / RQ[k]
                        for w in range(1, rad_W + 1):
                            fp = F[rad_W + w]
                            fpp = F[rad_W + w - 1]
                            fm = F[rad_W - w]
                            fmp = F[rad_W - w + 1]
                            for k in range(nb):
                                fp[k] = fpp[k] * RQ[k]
                                fm[k] = fmp[k] * RB[k]
                        for w in range(2 * rad_W + 1):
                            fr = F[w]
                            if w != rad_W:
                                cwv = rad_cw[w]
                                for k in range(nb):
                                    fr[k] *= cwv
                            for k in range(nb):
                                acc[RC[k] + w] += fr[k]
                    for kk in range(rad_n):
                        feat[col0 + rad_order[kk]] = acc[kk - rad_mlo + rad_W]
                else:
                    for p in range(s0, s1):
                        r2 = d2[p]
                        if r2 >= rc_r2:
                            continue
                        d = math.sqrt(r2)
                        for g_ in range(rad_n):
                            e = d - rad_r[g_]
                            feat[col0 + g_] += math.exp(e * e * c_neg)
                s0 = s1
        # ------------------------------------------------------------ angular
        if do_ang:
            na = 0
            for s in range(ns):
                aoff[s] = na
                for p in range(p0, p1):
                    if nsp[p] == s and d2[p] < rc_a2:
                        ax[na] = dx[p]
                        ay[na] = dy[p]
                        az[na] = dz[p]
                        a2[na] = d2[p]
                        ir[na] = 1.0 / math.sqrt(d2[p])
                        na += 1
            aoff[ns] = na
            for sl in range(n_slots):
                X = slot_x[sl]
                Y = slot_y[sl]
                x0 = aoff[X]
                x1 = aoff[X + 1]
                y0 = aoff[Y]
                y1 = aoff[Y + 1]
                if x1 == x0 or y1 == y0:
                    continue
                ACC[:, :] = 0.0
                n = 0  # pairs waiting in T, C
                for j in range(x0, x1):
                    xj = ax[j]
                    yj = ay[j]
                    zj = az[j]
                    aj = a2[j]
                    irj = ir[j]
                    kb = j + 1 if X == Y else y0
                    while kb < y1:
                        nk = min(_BLK_A - n, y1 - kb)
                        for k in range(nk):
                            q = kb + k
                            dot = xj * ax[q] + yj * ay[q] + zj * az[q]
                            T[n + k] = c2 * (dot - aj - a2[q])  # -scale * S
                            C[n + k] = dot * irj * ir[q]  # cos theta_jik
                        n += nk
                        kb += nk
                        if n == _BLK_A:
                            _flush_pairs(T, C, n, e_kind, e_dst, e_a, e_b, e_val, q_kind, q_dst, q_a,
                                         q_b, q_val, WE, WQ, ACC, tmpa, bitsa, ts, ea, qa)
                            n = 0
                if n:
                    _flush_pairs(T, C, n, e_kind, e_dst, e_a, e_b, e_val, q_kind, q_dst, q_a,
                                 q_b, q_val, WE, WQ, ACC, tmpa, bitsa, ts, ea, qa)
                col = slot_col[sl]
                for t in range(n_t):
                    feat[col + t] = _lane_sum(ACC[t])
        o = out[pos[b]]
        for f in range(nf):
            o[f] = feat[f]


# ----------------------------------------------------------------------------- drivers
@numba.njit(**_JIT)
def chunk_features(qidx, pos, out, cap, pts, cell_of, cell_coord, nc, L, inv_mi, stencil, o_all, st_all, ps,
                   rq2, err, ns,
                   rc_r2, rad_n, rad_uniform, rad_r, rad_order, rad_r0, rad_h, rad_W, rad_cw, rad_mlo,
                   rad_next, rad_L,
                   rc_a2, c2, slot_x, slot_y, slot_col, e_kind, e_dst, e_a, e_b, e_val, e_nrow, e_row,
                   q_kind, q_dst, q_a, q_b, q_val, q_nrow, q_row, t_e, t_q):
    """Neighbours (cell list) and sums of one chunk; the CSR buffers grow when ``cap`` is short.
    Returns the capacity used (pass it back for the next chunk)."""
    B = qidx.size
    ptr = np.empty(B + 1, dtype=np.int64)
    while True:
        nsp = np.empty(cap, dtype=np.int64)
        dx = np.empty(cap)
        dy = np.empty(cap)
        dz = np.empty(cap)
        d2 = np.empty(cap)
        need = cell_neighbours(qidx, pts, cell_of, cell_coord, nc, L, inv_mi, stencil, o_all, st_all, ps,
                               rq2, ptr, nsp, dx, dy, dz, d2, err)
        if need <= cap:
            break
        cap = need + need // 8 + 16
    if err[0] >= 0:
        return cap
    chunk_sums(ptr, nsp, dx, dy, dz, d2, pos, out, ns,
               rc_r2, rad_n, rad_uniform, rad_r, rad_order, rad_r0, rad_h, rad_W, rad_cw, rad_mlo,
               rad_next, rad_L,
               rc_a2, c2, slot_x, slot_y, slot_col, e_kind, e_dst, e_a, e_b, e_val, e_nrow, e_row,
               q_kind, q_dst, q_a, q_b, q_val, q_nrow, q_row, t_e, t_q)
    return cap
