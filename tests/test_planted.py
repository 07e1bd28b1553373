"""Planted barriers on a dataset's own features (diag.planted)."""

import json

import numpy as np
import pytest
from scipy.special import expit

from diag.audit import AuditOptions
from diag.planted import PlantedOptions, natural_rates, planted_audit, planted_copy, score
from diag.selection import SelectionOptions
from toymodel import ToyModel


@pytest.fixture(scope="module")
def correlated():
    """'Real-like' features: 10 coordinates and their cubes (strongly correlated pairs)."""
    return ToyModel(n_noise=2, extra="cube").to_dataset(per_temperature=20_000, seed=31)


def test_planted_copy_is_the_stated_law_on_the_same_features(correlated):
    ds = correlated
    pc = planted_copy(ds, PlantedOptions(n_planted=4, seed=5))
    c = pc.dataset
    # same features, temperatures, groups; one population whose roles are its labels
    np.testing.assert_array_equal(c.features, ds.features)
    np.testing.assert_array_equal(c.temperature, ds.temperature)
    np.testing.assert_array_equal(c.group, ds.group)
    np.testing.assert_array_equal(c.role, c.label)
    assert (c.natural == 1).all()
    # the barrier is exactly offset + sum_k c_k z_k over the planted, standardised features
    cols = [ds.feature_names.index(n) for n in pc.features]
    X = ds.features[:, cols].astype(np.float64)
    Z = (X - X.mean(0)) / X.std(0)
    np.testing.assert_allclose(c.energy, pc.offset + Z @ np.array(pc.coefficients), rtol=1e-6, atol=1e-6)
    assert c.energy.std() == pytest.approx(pc.barrier_std, rel=1e-6)
    assert len(pc.features) == 4 and set(pc.features) <= set(ds.feature_names)
    # toy rates are 1/2 at every temperature: E0 = 0 is the only offset that keeps them
    assert pc.offset == pytest.approx(0.0, abs=0.05)
    for t, r in pc.rates_planted.items():
        assert r == pytest.approx(0.5, abs=0.02)
    # labels follow P(R=1|E,T) = 1/(1+exp(E/T)): compare in bins of E/T
    u = c.energy / c.temperature
    bins = np.quantile(u, np.linspace(0, 1, 11))
    idx = np.clip(np.digitize(u, bins) - 1, 0, 9)
    for b in range(10):
        m = idx == b
        assert c.label[m].mean() == pytest.approx(expit(-u[m]).mean(), abs=0.02)
    # seeded: the same seed plants the same thing
    again = planted_copy(ds, PlantedOptions(n_planted=4, seed=5))
    np.testing.assert_array_equal(again.dataset.label, c.label)
    assert again.features == pc.features


def test_planted_copy_matches_rare_natural_events():
    """Kob-Andersen-like rates (rare events, Arrhenius in T) are reproduced by E0 and s."""
    ds = ToyModel(n_noise=0).to_dataset(per_temperature=30_000, seed=2)
    rates = {0.5: 0.002, 0.6: 0.006, 0.7: 0.013, 0.8: 0.022, 0.9: 0.032, 1.0: 0.045}
    pc = planted_copy(ds, PlantedOptions(seed=1), rates=rates)
    assert pc.offset > 0  # rare events: barriers mostly positive
    for t, r in rates.items():
        n = (ds.temperature == t).sum()
        se = np.sqrt(r * (1 - r) / n)
        assert pc.rates_planted[t] == pytest.approx(r, abs=max(5 * se, 0.15 * r))
    # a fixed spread is kept
    fixed = planted_copy(ds, PlantedOptions(seed=1, barrier_std=1.5), rates=rates)
    assert fixed.barrier_std == 1.5 and fixed.dataset.energy.std() == pytest.approx(1.5, rel=1e-6)


def test_natural_rates_and_score_bands(correlated):
    r = natural_rates(correlated)
    assert set(r) == set(correlated.temperatures.tolist())
    assert all(abs(v - 0.5) < 0.02 for v in r.values())
    assert score(0.7, "biased-low") == "hit" and score(0.7, "cannot-tell") == "miss"
    assert score(1.0, "biased-low") == "false-alarm" and score(1.0, "trustworthy") == "pass"
    assert score(0.92, "biased-low") == "grey" and score(None, "trustworthy") == "grey"


def test_planted_audit_sees_the_bias_of_correlated_extras(correlated):
    """Planted on the coordinates, audited with small C: the cubes bias it and the verdict says so."""
    planted = [f"x{k}" for k in range(1, 7)]
    pr = planted_audit(
        correlated, AuditOptions(C=1e-3, train_per_class=800, seed=0),
        SelectionOptions(n_folds=0, lc_repeats=2, c_sweep=False, families=False, coarsen=False),
        seed=3, planted_options=PlantedOptions(features=planted),
    )
    assert pr.copy.features == planted and pr.n_per_class == 800
    assert pr.truth_slope < 0.9  # the cubes of the planted coordinates pull the barriers low
    assert pr.verdict_level == "biased-low" and pr.outcome == "hit"
    assert pr.planted_kept == 1.0  # every planted feature survives selection
    assert pr.recommended_slope > pr.truth_slope
    doc = pr.to_dict()
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    assert doc["features"] == planted and doc["seed"] == 3 and doc["outcome"] == "hit"
