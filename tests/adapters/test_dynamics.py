"""p_hop against a hand computation, a closed form and a slow loop; streaming labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dynamics import (
    DynamicsConfig,
    HopLabeller,
    check_enough_frames,
    hop_labels,
    p_hop,
)
from diag.errors import DataError, UsageError


# ----------------------------------------------------------------- references
def p_hop_loop(X: np.ndarray, window: int) -> np.ndarray:
    """Slow, literal METHOD section 5: loops over frames and particles."""
    T, N, _ = X.shape
    h = window // 2
    out = np.full((T, N), np.nan)
    for t in range(h, T - h):
        A = X[t - h : t + 1]  # frames t - W/2 .. t
        B = X[t : t + h + 1]  # frames t .. t + W/2
        for i in range(N):
            mA = A[:, i].mean(axis=0)
            mB = B[:, i].mean(axis=0)
            a = np.mean([np.sum((r - mB) ** 2) for r in A[:, i]])
            b = np.mean([np.sum((r - mA) ** 2) for r in B[:, i]])
            out[t, i] = math.sqrt(a * b)
    return out


def planted_hop_expected(T: int, t0: int, a: float, window: int) -> np.ndarray:
    """Closed form for a particle at rest that jumps by a between frames t0-1 and t0."""
    h = window // 2
    n = h + 1
    out = np.full(T, np.nan)
    for t in range(h, T - h):
        fA = max(0, min(n, t - t0 + 1)) / n  # fraction of A = [t-h, t] after the jump
        fB = max(0, min(n, t + h - t0 + 1)) / n  # fraction of B = [t, t+h] after the jump
        D = (fA - fB) ** 2
        out[t] = a**2 * math.sqrt((fA * (1 - fA) + D) * (fB * (1 - fB) + D))
    return out


def labels_reference(P: np.ndarray, cfg: DynamicsConfig) -> dict[int, dict[int, int]]:
    """Training roles (soft 1 / hard 0) straight from the definition, on the full p_hop array."""
    T, N = P.shape
    out = {}
    for t in cfg.sampled_frames(T):
        lab = {}
        for i in range(N):
            if P[t, i] > cfg.p_c:
                lab[i] = 1
            elif all(P[s, i] < cfg.p_hard for s in range(t - cfg.persistence, t + cfg.persistence_after + 1)):
                lab[i] = 0
        out[t] = lab
    return out


def random_walk(T, N, d, step, seed, hops=0):
    rng = np.random.default_rng(seed)
    X = np.cumsum(rng.normal(0.0, step, size=(T, N, d)), axis=0) + rng.uniform(-50, 50, size=(1, N, d))
    for _ in range(hops):
        i, t0 = rng.integers(N), rng.integers(1, T)
        X[t0:, i] += rng.normal(0, 1.0, size=d)
    return X


# -------------------------------------------------------------------- p_hop
def test_hand_computed_planted_hop_window_4():
    """W = 4: half windows of 3 frames; the table below is worked out by hand."""
    a, t0, T = 1.3, 6, 13
    X = np.zeros((T, 1, 3))
    X[t0:, 0] = a * np.array([0.6, 0.0, 0.8])  # |jump| = a
    p = p_hop(X, 4)[:, 0]
    # t = t0: A = {0, 0, a} (mean a/3), B = {a, a, a}: <(r-a)^2>_A = 2a^2/3, <(r-a/3)^2>_B = 4a^2/9
    hand = {
        t0 - 3: 0.0,
        t0 - 2: a**2 / math.sqrt(27),
        t0 - 1: a**2 * math.sqrt(8 / 27),
        t0: a**2 * math.sqrt(8 / 27),
        t0 + 1: a**2 / math.sqrt(27),
        t0 + 2: 0.0,
    }
    for t, v in hand.items():
        assert p[t] == pytest.approx(v, abs=1e-12), t
    assert np.isnan(p[:2]).all() and np.isnan(p[-2:]).all()
    assert np.nanmax(p) == pytest.approx(a**2 * (1 - 1 / 3) ** 1.5)


@pytest.mark.parametrize("window", [2, 4, 10, 20])
@pytest.mark.parametrize("dim", [2, 3])
def test_planted_hop_matches_closed_form(window, dim):
    T, t0, a = 3 * window + 7, window + 3, 0.9
    X = np.zeros((T, 2, dim))
    X[:, 1] = 5.0  # a second particle that never moves
    e = np.zeros(dim)
    e[-1] = a
    X[t0:, 0] += e
    p = p_hop(X, window)
    np.testing.assert_allclose(p[:, 0], planted_hop_expected(T, t0, a, window), atol=1e-12, equal_nan=True)
    h = window // 2
    np.testing.assert_allclose(p[h : T - h, 1], 0.0, atol=1e-12)
    # the peak sits at t0 - 1 and t0, with value a^2 (1 - 1/n)^(3/2)
    peak = a**2 * (1 - 1 / (h + 1)) ** 1.5
    assert p[t0, 0] == pytest.approx(peak) and p[t0 - 1, 0] == pytest.approx(peak)


@pytest.mark.parametrize("window,dim,seed", [(2, 3, 0), (4, 2, 1), (6, 3, 2), (10, 3, 3)])
def test_p_hop_matches_slow_loop(window, dim, seed):
    X = random_walk(T=30, N=7, d=dim, step=0.1, seed=seed, hops=3)
    np.testing.assert_allclose(p_hop(X, window), p_hop_loop(X, window), rtol=1e-9, atol=1e-12, equal_nan=True)


def test_p_hop_invariant_under_translation_and_large_coordinates():
    X = random_walk(T=25, N=5, d=3, step=0.1, seed=4, hops=2)
    ref = p_hop(X, 6)
    np.testing.assert_allclose(p_hop(X + 1.0e4, 6), ref, rtol=1e-6, atol=1e-9, equal_nan=True)


def test_p_hop_short_or_bad_input():
    assert np.isnan(p_hop(np.zeros((4, 3, 3)), 4)).all()  # fewer than W + 1 frames
    with pytest.raises(ValueError):
        p_hop(np.zeros((10, 3, 3)), 3)
    with pytest.raises(ValueError):
        p_hop(np.zeros((10, 3)), 4)


# ------------------------------------------------------------------- config
def roles(fl) -> dict[int, int]:
    """{particle: role} of the soft and hard particles of one labelled frame."""
    keep = fl.role >= 0
    return dict(zip(fl.particles[keep].tolist(), fl.role[keep].tolist()))


def test_defaults_and_sampled_frames():
    cfg = DynamicsConfig()
    assert not cfg.resolved and (cfg.p_c, cfg.p_hard, cfg.hard_side) == (0.2, 0.05, "both")
    # no frame times: t_R = 10 frames, quiet over [t - 10, t + 10]
    cfg = cfg.resolve(None)
    assert (cfg.window, cfg.persistence, cfg.every, cfg.persistence_after) == (10, 10, 11, 10)
    assert cfg.first_frame == 15 and cfg.min_frames == 31
    frames = list(cfg.sampled_frames(70))
    assert frames == [15, 26, 37, 48]  # the last needs p_hop up to 58 and frames up to 63 <= 69
    # default spacing: p_hop windows [t - W/2, t + W/2] of consecutive samples are disjoint
    for t, u in zip(frames, frames[1:]):
        assert t + cfg.half < u - cfg.half
    assert list(cfg.sampled_frames(cfg.min_frames)) == [15]
    assert list(cfg.sampled_frames(cfg.min_frames - 1)) == []
    before = DynamicsConfig(window=10, hard_side="before")
    assert before.min_frames == 21 and list(before.sampled_frames(60)) == [15, 26, 37, 48]


def test_windows_in_time_become_frames_and_are_recorded():
    # frames every 0.5 tau: the default t_R = 10 tau is 20 frames, P = 20 frames
    cfg = DynamicsConfig().resolve(0.5)
    assert (cfg.window, cfg.persistence, cfg.every) == (20, 20, 21)
    conv = cfg.conventions()
    assert conv["window_time"] == 10.0 and conv["persistence_time"] == 10.0 and conv["frame_interval_time"] == 0.5
    cfg = DynamicsConfig(window_time=3.0, persistence_time=2.0, every=7).resolve(0.25)
    assert (cfg.window, cfg.persistence, cfg.every) == (12, 8, 7)
    assert cfg.conventions()["window_time_requested"] == 3.0
    # frame-based settings are kept as given, times recorded when known
    cfg = DynamicsConfig(window=20, every=20).resolve(0.5)
    assert (cfg.window, cfg.persistence, cfg.every) == (20, 20, 20) and cfg.conventions()["window_time"] == 10.0
    with pytest.raises(DataError, match="carry no times"):
        DynamicsConfig(window_time=10.0).resolve(None, "t.dump")
    with pytest.raises(DataError, match="shorter than two frame intervals"):
        DynamicsConfig(window_time=0.4).resolve(0.5)
    with pytest.raises(UsageError, match="not both"):
        DynamicsConfig(window=10, window_time=5.0)


@pytest.mark.parametrize(
    "kw",
    [
        {"window": 3},
        {"window": 0},
        {"window": 2.0},
        {"p_c": 0},
        {"p_c": float("nan")},
        {"p_hard": 0.3},
        {"p_hard": -1},
        {"persistence": -1},
        {"every": 0},
        {"every": True},
    ],
)
def test_bad_settings_are_usage_errors(kw):
    with pytest.raises(UsageError):
        DynamicsConfig(**kw)


def test_from_dict_rejects_unknown_keys():
    assert DynamicsConfig.from_dict({"window": 4, "every": 3}).every == 3
    with pytest.raises(UsageError, match="unknown key"):
        DynamicsConfig.from_dict({"windows": 4}, "cfg.json")


def test_too_few_frames_is_a_data_error_naming_the_file():
    cfg = DynamicsConfig(window=10, persistence=4)
    check_enough_frames(19, cfg, "traj.dump")
    with pytest.raises(DataError) as exc:
        check_enough_frames(18, cfg, "traj.dump")
    msg = str(exc.value)
    assert msg.startswith("traj.dump: fewer frames (18)") and "19" in msg and "\n" not in msg


# ------------------------------------------------------------------- labels
def test_planted_hop_is_soft_at_its_frame_and_still_particles_are_hard():
    cfg = DynamicsConfig(window=4, persistence=5, every=5, hard_side="before")  # sampled: 7, 12, 17, 22
    T, N = 26, 6
    rng = np.random.default_rng(5)
    X = rng.normal(0, 0.01, size=(T, N, 3))
    X[12:, 2, 0] += 1.0  # particle 2 jumps between frames 11 and 12
    out = {fl.frame: fl for fl in hop_labels(X, cfg)}
    assert sorted(out) == [7, 12, 17, 22]
    f12 = out[12]
    assert roles(f12)[2] == 1 and f12.label[2] == 1
    assert f12.n_soft == 1 and f12.n_hard == N - 1
    assert f12.p_hop[2] == pytest.approx((2 / 3) ** 1.5, rel=0.05)
    # p_hop of particle 2 is high at frames 10..13; frame 17 looks back to 12: neither role,
    # but it stays in the natural population with R = 0
    assert 2 not in roles(out[17]) and out[17].role[2] == -1 and out[17].label[2] == 0
    assert out[17].n_hard == N - 1 and out[22].n_hard == N and out[7].n_hard == N
    for fl in out.values():  # every particle is in the natural population
        assert fl.particles.tolist() == list(range(N))


def test_hard_rule_looks_after_the_frame_by_default():
    cfg = DynamicsConfig(window=4, persistence=5, every=5)  # both sides: sampled 7, 12 (up to T-1-2-5)
    T, N = 26, 6
    rng = np.random.default_rng(5)
    X = rng.normal(0, 0.01, size=(T, N, 3))
    X[12:, 2, 0] += 1.0  # hop at 11/12: p_hop of particle 2 is high at frames 10..13, inside [7 - 5, 7 + 5]
    out = {fl.frame: fl for fl in hop_labels(X, cfg)}
    assert sorted(out) == [7, 12, 17]
    assert out[7].role[2] == -1  # quiet before frame 7, but not over [2, 12]
    assert out[7].n_hard == N - 1 and out[12].role[2] == 1
    before = {fl.frame: fl for fl in hop_labels(X, DynamicsConfig(window=4, persistence=5, every=5, hard_side="before"))}
    assert before[7].role[2] == 0


@pytest.mark.parametrize("side", ["both", "before"])
@pytest.mark.parametrize("chunk", [1, 3, 8, 50])
def test_streaming_labels_match_reference_for_any_chunk(chunk, side):
    cfg = DynamicsConfig(window=4, p_c=0.05, p_hard=0.01, persistence=3, every=3, hard_side=side)
    X = random_walk(T=41, N=12, d=3, step=0.03, seed=6, hops=6)
    ref = labels_reference(p_hop_loop(X, cfg.window), cfg)
    got = hop_labels(X, cfg, chunk=chunk)
    assert [fl.frame for fl in got] == sorted(ref)
    P = p_hop(X, cfg.window)
    for fl in got:
        assert roles(fl) == ref[fl.frame]
        np.testing.assert_array_equal(fl.label, (P[fl.frame, fl.particles] > cfg.p_c).astype(np.int8))
        np.testing.assert_allclose(fl.p_hop, P[fl.frame, fl.particles], rtol=1e-6)
    assert any(fl.n_soft for fl in got) and any(fl.n_hard for fl in got)


def test_streaming_buffer_stays_bounded():
    cfg = DynamicsConfig(window=6)
    lab = HopLabeller(4, cfg, chunk=5)
    rng = np.random.default_rng(7)
    for _ in range(200):
        lab.push(rng.normal(size=(4, 2)))
        assert len(lab._buf) <= lab.chunk + cfg.window
    lab.finish()
    assert lab.n_frames == 200


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    half=st.integers(1, 4),
    persistence=st.integers(0, 5),
    every=st.integers(1, 6),
    chunk=st.integers(1, 12),
    T=st.integers(5, 40),
    seed=st.integers(0, 2**16),
    side=st.sampled_from(["both", "before"]),
)
def test_streaming_equals_batch_property(half, persistence, every, chunk, T, seed, side):
    cfg = DynamicsConfig(window=2 * half, p_c=0.02, p_hard=0.005, persistence=persistence, every=every, hard_side=side)
    X = random_walk(T=T, N=5, d=2, step=0.03, seed=seed, hops=2)
    ref = labels_reference(p_hop(X, cfg.window), cfg)
    got = hop_labels(X, cfg, chunk=chunk)
    assert {fl.frame: roles(fl) for fl in got} == ref
