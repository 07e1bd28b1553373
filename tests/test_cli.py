"""The ``diag`` command end to end, through subprocesses."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "80"}


def diag(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "diag.cli", *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd
    )


@pytest.fixture(scope="module")
def small_toy(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "toy.h5"
    r = diag("toy", path, "--per-temperature", 20000, "--seed", 4)
    assert r.returncode == 0, r.stderr
    return path


def assert_one_line_error(r, code, *words):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


CORE = ("--no-rfe", "--no-coarsen", "--no-checks")  # the core pipeline only: fast


def test_toy_then_audit_writes_the_documented_json(small_toy, tmp_path):
    out = tmp_path / "r.json"
    r = diag("audit", small_toy, "--json", out, "--train-per-class", 2000, "--seed", 3, "--quiet", *CORE)
    assert r.returncode == 0, r.stderr
    assert "Variance criterion" in r.stdout and "Arrhenius" in r.stdout
    doc = json.loads(out.read_text())
    for key in ("dataset", "classifier", "softness", "arrhenius", "criterion", "truth", "warnings", "seed"):
        assert key in doc
    assert {"C", "n_train_per_class", "accuracy", "converged"} <= set(doc["classifier"])
    assert {"units", "w_norm"} <= set(doc["softness"])
    assert {"grid", "delta_e", "delta_e_ci", "sigma", "e0", "e1", "e1_ci"} <= set(doc["arrhenius"])
    assert {"variance", "variance_ci", "logp_variance"} <= set(doc["criterion"])
    assert {"slope", "intercept", "r2"} <= set(doc["truth"])
    assert doc["classifier"]["n_train_per_class"] == 2000 and doc["seed"] == 3
    assert len(doc["arrhenius"]["grid"]) == len(doc["arrhenius"]["delta_e"]) == len(doc["arrhenius"]["delta_e_ci"])
    # report lines fit in 80 columns
    assert max(len(ln) for ln in r.stdout.splitlines()) <= 80


def test_same_seed_gives_identical_json(small_toy, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for out in (a, b):
        assert diag("audit", small_toy, "--json", out, "--train-per-class", 500, "--quiet").returncode == 0
    doc = json.loads(a.read_text())
    assert doc["selection"]["rfe"] and doc["learning_curve"] and doc["c_sweep"] and doc["verdict"]
    assert a.read_bytes() == b.read_bytes()


def test_toy_refuses_to_overwrite(small_toy):
    before = small_toy.read_bytes()
    r = diag("toy", small_toy, "--per-temperature", 100)
    assert_one_line_error(r, 2, str(small_toy), "exists")
    assert small_toy.read_bytes() == before


def test_missing_and_non_hdf5_inputs(tmp_path):
    assert_one_line_error(diag("audit", tmp_path / "nope.h5"), 1, "nope.h5", "no such file")
    junk = tmp_path / "junk.h5"
    junk.write_text("hello")
    assert_one_line_error(diag("audit", junk), 1, "junk.h5", "not an HDF5 file")


def _copy_with(src, dst, edit):
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def test_bad_contents(small_toy, tmp_path):
    nan = _copy_with(small_toy, tmp_path / "nan.h5", lambda f: f["samples/features"].__setitem__((5, 2), np.inf))
    before = nan.read_bytes()
    assert_one_line_error(diag("audit", nan), 1, "nan.h5", "non-finite")
    assert nan.read_bytes() == before
    nogroup = _copy_with(small_toy, tmp_path / "ng.h5", lambda f: f["samples"].__delitem__("group"))
    assert_one_line_error(diag("audit", nogroup), 1, "ng.h5", "samples/group")

    def one_class(f):
        lab = f["samples/label"]
        lab[...] = np.zeros(lab.shape, dtype=lab.dtype)

    oc = _copy_with(small_toy, tmp_path / "oc.h5", one_class)
    assert_one_line_error(diag("audit", oc), 1, "oc.h5", "one class")


def test_too_few_samples_for_the_request(small_toy):
    r = diag("audit", small_toy, "--train-per-class", 10**6)
    assert_one_line_error(r, 1, str(small_toy), "requested 1000000")


def test_one_temperature_reports_what_it_can(tmp_path):
    path = tmp_path / "one.h5"
    assert diag("toy", path, "--temperatures", "1.0", "--per-temperature", 4000).returncode == 0
    out = tmp_path / "one.json"
    r = diag("audit", path, "--json", out, "--quiet", *CORE)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["arrhenius"] is None and doc["criterion"]["variance"] is None
    assert doc["criterion"]["logp_variance"] > 0 and doc["classifier"]["accuracy"] > 0.7
    assert any("one temperature" in w for w in doc["warnings"])


def test_usage_errors_exit_2(small_toy):
    r = diag("audit", small_toy, "--C", "-1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = diag("audit", small_toy, "--train-temperature", "0.55")
    assert_one_line_error(r, 2, "0.55", "not in the dataset")


def test_audit_recommends_the_energy_coordinates_on_the_cube_toy(tmp_path):
    """Issue 5: the full report on the (x, x^3) toy, end to end, with figures."""
    data, out, figs = tmp_path / "cube.h5", tmp_path / "cube.json", tmp_path / "figs"
    assert diag("toy", data, "--extra", "cube", "--n-noise", 0, "--per-temperature", 40000, "--seed", 2).returncode == 0
    r = diag("audit", data, "--C", "0.001", "--train-per-class", 1000, "--json", out, "--plots", figs, "--quiet")
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["selection"]["recommended"] == [f"x{k}" for k in range(1, 11)]
    assert doc["verdict"]["level"] == "biased-low"
    assert doc["verdict"]["recommended"] == doc["selection"]["recommended"]
    rows = {row["n_kept"]: row for row in doc["selection"]["rfe"]}
    assert set(rows) == set(range(1, 21))
    assert all({"n_kept", "removed", "variance", "variance_ci", "accuracy"} <= set(row) for row in rows.values())
    assert len(doc["learning_curve"]["rows"]) >= 5 and doc["c_sweep"]
    for section in ("Verdict", "recommended feature set", "Recursive feature elimination"):
        assert section in r.stdout
    assert max(len(ln) for ln in r.stdout.splitlines()) <= 80
    pngs = sorted(p.name for p in figs.iterdir())
    assert pngs == sorted(["logp_vs_softness.png", "arrhenius_lines.png", "barriers.png", "truth.png", "rfe.png",
                           "learning_curve.png"])
    for p in figs.iterdir():
        assert p.stat().st_size > 10_000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_and_validate_run():
    r = diag("demo", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "BIASED-LOW" in r.stdout and "x1, x2, x3, x4, x5, x6, x7, x8, x9, x10" in r.stdout
    v = diag("validate", "--quiet")
    assert v.returncode == 0, v.stdout + v.stderr
    assert "FAIL" not in v.stdout and "pass" in v.stdout


def test_planted_copy_is_audited_and_recorded(tmp_path):
    toy = tmp_path / "t.h5"
    assert diag("toy", toy, "--per-temperature", 4000, "--seed", 3).returncode == 0
    out = tmp_path / "r.json"
    r = diag("audit", toy, "--planted", 1, "--json", out, "--quiet", "--no-rfe", "--no-coarsen")
    assert r.returncode == 0, r.stderr
    assert "Planted barriers on your own features" in r.stdout
    doc = json.loads(out.read_text())
    p = doc["planted"]
    # a known barrier on four of the real features, event rates matched to the natural ones
    assert len(p["features"]) == 4 and set(p["features"]) <= set(doc["softness"]["weights"])
    assert p["seed"] == 1 and 0.8 < p["truth_slope"] < 1.3 and p["verdict_level"]
    assert p["outcome"]
