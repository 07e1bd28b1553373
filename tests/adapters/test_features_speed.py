"""The fast paths of ``diag features`` give the serial, numpy-checked results.

- Local workers with the compiled kernel are threads of the process (``adapters.build._LocalThreads``):
  the dataset is the serial one bit for bit, and an error of a frame still on the threads is
  reported as the serial run reports it (first error in frame order).
- Without numba (a platform with no wheel), the numpy kernel runs: ``diag features`` in a process
  where ``import numba`` fails gives the features of the numba kernel (1e-6 relative).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from adapters.build import build_dataset
from adapters.config import FeaturesConfig, load_config
from adapters.dynamics import DynamicsConfig
from diag.errors import DataError
from diag.parallel import Scheduler

from .writers import SMALL_AUDIT_CONFIG, make_synthetic, write_hopping_trajectory, write_lammps

structure = pytest.importorskip("adapters.structure")
_NB, _NB_REASON = structure._numba_module()
needs_numba = pytest.mark.skipif(_NB is None, reason=f"numba kernel unavailable ({_NB_REASON})")

FIELDS = ("features", "label", "role", "natural", "group", "p_hop", "particle", "species", "temperature")


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("speed")
    paths = [d / "cold.dump", d / "hot.dump"]
    write_hopping_trajectory(paths[0], 0.6, 1)
    write_hopping_trajectory(paths[1], 0.9, 2)
    cfg = d / "features.json"
    cfg.write_text(json.dumps(SMALL_AUDIT_CONFIG))
    return paths, cfg


@needs_numba
def test_local_workers_are_threads_and_give_the_serial_dataset(two_files):
    paths, cfg = two_files
    config = load_config(str(cfg))
    a = build_dataset(paths, temperatures=[0.6, 0.9], config=config, scheduler=Scheduler.serial())
    with Scheduler.from_spec("processes:2") as sched:
        b = build_dataset(paths, temperatures=[0.6, 0.9], config=config, scheduler=sched)
        where = [w for _, _, w, _ in sched.log]
        assert not sched._pool_started  # no worker process was started
    assert where == ["threads", "threads"]  # one entry per file, every frame on the threads
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.conventions == b.conventions


def _coincident_then_truncated(path):
    """Two particles at one position at sampled frame 11, and the file cut inside its last frame."""
    syn = make_synthetic(n_side=4, n_frames=25, drift=None, seed=3)
    syn.unwrapped[11, 1] = syn.unwrapped[11, 0]
    write_lammps(path, syn, shuffle=False)
    text = path.read_text()
    path.write_text(text[: text.rstrip().rfind("\n") - 30])


@needs_numba
def test_a_frame_error_on_the_threads_is_reported_as_in_serial(tmp_path):
    path = tmp_path / "bad.dump"
    _coincident_then_truncated(path)
    scfg = structure.StructureConfig(species=("A", "B"), radial_r=(0.9, 1.0, 1.1), angular=((1.0, 1.0, 1.0),))
    config = FeaturesConfig(structure=scfg, dynamics=DynamicsConfig(window=4, persistence=4, every=5))
    messages = []
    for sched in (Scheduler.serial(), Scheduler.from_spec("processes:2")):
        with sched, pytest.raises(DataError) as exc:
            build_dataset([path], temperatures=[0.5], config=config, scheduler=sched)
        messages.append(str(exc.value))
    assert messages[0] == messages[1]
    assert "frame 11" in messages[0] and "same position" in messages[0], messages[0]


_NO_NUMBA = """
import sys
sys.modules["numba"] = None  # import numba raises ImportError, as on a platform without numba
from adapters import structure
from diag.cli import main
assert structure.StructureFunctions().kernel_ == "numpy", structure._numba_module()
assert "numba is not installed" in structure._numba_module()[1]
sys.exit(main(sys.argv[1:]))
"""


def test_without_numba_features_run_on_numpy_and_match(two_files, tmp_path):
    paths, cfg = two_files
    out = tmp_path / "numpy.h5"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root}
    res = subprocess.run(
        [sys.executable, "-c", _NO_NUMBA, "features", *map(str, paths), "--temperature", "0.6", "0.9",
         "--config", str(cfg), "-o", str(out), "--quiet"],
        capture_output=True, text=True, env=env, cwd=root,
    )
    assert res.returncode == 0, res.stderr
    from diag.dataset import read_dataset

    got = read_dataset(out)
    want = build_dataset(paths, temperatures=[0.6, 0.9], config=load_config(str(cfg)))  # numba when installed
    for name in FIELDS[1:]:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(got.features, want.features, rtol=1e-6, atol=1e-12)
