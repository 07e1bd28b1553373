"""``diag audit`` on trajectory files: the adapters run first, --save-features keeps them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diag.cli import main
from diag.dataset import read_dataset

from .writers import SMALL_AUDIT_CONFIG as CONFIG
from .writers import write_hopping_trajectory as _trajectory

@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    d = tmp_path_factory.mktemp("traj")
    paths = [d / "cold.dump", d / "hot.dump"]
    _trajectory(paths[0], 0.6, 1)
    _trajectory(paths[1], 0.9, 2)
    cfg = d / "features.json"
    cfg.write_text(json.dumps(CONFIG))
    return paths, cfg


def test_audit_runs_the_adapters_and_saves_the_features(trajectories, tmp_path, capsys):
    (cold, hot), cfg = trajectories
    before = [p.read_bytes() for p in (cold, hot, cfg)]
    saved, out = tmp_path / "feat.h5", tmp_path / "r.json"
    code = main(["audit", str(cold), str(hot), "--temperature", "0.6", "0.9", "--config", str(cfg),
                 "--save-features", str(saved), "--json", str(out), "--quiet", "--grid-points", "9"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert [p.read_bytes() for p in (cold, hot, cfg)] == before
    ds = read_dataset(saved)
    assert sorted(ds.temperatures.tolist()) == [0.6, 0.9] and set(np.unique(ds.label)) == {0, 1}
    doc = json.loads(out.read_text())
    # two centre species: never pooled silently, one audit (SVM, barriers, verdict) per species
    pops = doc["populations"]
    assert [p["population"]["species"] for p in pops] == ["A", "B"]
    assert sum(p["dataset"]["n_samples"] for p in pops) == ds.n_samples
    for p, sid in zip(pops, (0, 1)):
        m = ds.species == sid
        assert p["dataset"]["n_samples"] == int(m.sum()) and p["dataset"]["n_features"] == ds.n_features
        assert p["classifier"]["train_temperature"] == 0.9 and p["verdict"] is not None
        for row in p["dataset"]["per_temperature"]:  # the natural population, counted directly
            mt = m & (ds.temperature == row["temperature"])
            assert row["n_natural"] == int(mt.sum())
            assert row["n_natural_rearranging"] == int(ds.label[mt].sum())
            assert row["p_rearranging"] == pytest.approx(ds.label[mt].mean())
            assert (row["n_soft"], row["n_hard"]) == (int((ds.role[mt] == 1).sum()), int((ds.role[mt] == 0).sum()))
    # the same dataset through `diag features` gives the same audit
    again = tmp_path / "again.h5"
    assert main(["features", str(cold), str(hot), "-o", str(again), "--temperature", "0.6", "0.9",
                 "--config", str(cfg), "--quiet"]) == 0
    np.testing.assert_array_equal(read_dataset(again).features, ds.features)


def test_mixing_a_dataset_with_trajectories_is_refused(trajectories, tmp_path, capsys):
    (cold, _), cfg = trajectories
    from toymodel import ToyModel

    ds_path = ToyModel().to_dataset(temperatures=[1.0], per_temperature=100).write(tmp_path / "d.h5")
    assert main(["audit", str(ds_path), str(cold)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["audit", str(ds_path), "--save-features", str(tmp_path / "x.h5")]) == 2
    assert "trajectory input only" in capsys.readouterr().err


def test_species_all_pools_with_a_warning_and_one_species_audits_alone(trajectories, tmp_path, capsys):
    (cold, hot), cfg = trajectories
    saved = tmp_path / "feat.h5"
    assert main(["features", str(cold), str(hot), "-o", str(saved), "--temperature", "0.6", "0.9",
                 "--config", str(cfg), "--quiet"]) == 0
    pooled, only_b = tmp_path / "pooled.json", tmp_path / "b.json"
    assert main(["audit", str(saved), "--species", "all", "--json", str(pooled), "--quiet", "--grid-points", "9",
                 "--no-rfe", "--no-coarsen", "--no-checks"]) == 0
    assert main(["audit", str(saved), "--species", "B", "--json", str(only_b), "--quiet", "--grid-points", "9",
                 "--no-rfe", "--no-coarsen", "--no-checks"]) == 0
    out = capsys.readouterr().out
    assert "pooled" in out
    p, b = json.loads(pooled.read_text()), json.loads(only_b.read_text())
    ds = read_dataset(saved)
    assert p["population"] == {"species": None, "pooled": True, "n_species": 2}
    assert p["dataset"]["n_samples"] == ds.n_samples
    assert any("pooled into one SVM" in w for w in p["warnings"])
    assert b["population"]["species"] == "B" and b["dataset"]["n_samples"] == int((ds.species == 1).sum())
    assert main(["audit", str(saved), "--species", "C", "--quiet"]) == 2
    assert "not a centre species" in capsys.readouterr().err
