"""diag.parallel: any scheduler gives the serial results (dataset and report), bit for bit.

A dask ``LocalCluster`` (2 worker processes, 1 thread each) is started once for the module
when dask.distributed is installed; local processes (loky) are forced with the small-job
rule switched off.
"""

from __future__ import annotations

import json
import pickle
import socket
import time

import numpy as np
import pytest

import diag.parallel as P
from diag.cli import main
from diag.errors import UsageError
from diag.parallel import Scheduler, SchedulerError

from .adapters.writers import SMALL_AUDIT_CONFIG as CONFIG
from .adapters.writers import write_hopping_trajectory as _trajectory

@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    d = tmp_path_factory.mktemp("traj")
    paths = [d / "cold.dump", d / "hot.dump"]
    _trajectory(paths[0], 0.6, 1)
    _trajectory(paths[1], 0.9, 2)
    cfg = d / "features.json"
    cfg.write_text(json.dumps(CONFIG))
    return paths, cfg


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as c:
        yield c.scheduler_address


@pytest.fixture(scope="module")
def local():
    """Two local processes that take every map, however small (the small-job rule off),
    started once for the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(P, "START_SECONDS", 0.0)
        with Scheduler.from_spec("processes:2") as s:
            yield s


def _square(shared, t):
    return shared[t] ** 2


def _ident(t):
    return t


# --------------------------------------------------------------------------- the API


def test_specs_and_errors(monkeypatch):
    assert Scheduler.from_spec("serial").kind == "serial"
    assert Scheduler.from_spec("processes:1").kind == "serial"
    s = Scheduler.from_spec("processes:2")
    assert (s.kind, s.n_workers, s.parallel) == ("processes", 2, True)
    assert Scheduler.from_spec(None).kind in ("processes", "serial")  # serial on a 1-core machine
    for bad in ("bogus", "processes:x", "processes:0"):
        with pytest.raises(UsageError):
            Scheduler.from_spec(bad)
    # pickled (inside options sent to a worker) a scheduler becomes serial: no nested pools
    assert pickle.loads(pickle.dumps(s)).kind == "serial"
    # a dask address without dask: one line saying what to install
    monkeypatch.setattr(P, "dask_available", lambda: False)
    with pytest.raises(UsageError, match=r"pip install 'glass-diag\[dask\]'"):
        Scheduler.from_spec("tcp://127.0.0.1:8786")


def test_unreachable_or_silent_address_is_a_one_line_error_naming_it():
    pytest.importorskip("distributed")
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    t = time.perf_counter()
    with pytest.raises(SchedulerError) as e:
        Scheduler.from_spec(f"tcp://127.0.0.1:{port}", timeout=1.0)
    assert str(e.value).startswith(f"tcp://127.0.0.1:{port}: ") and "\n" not in str(e.value)
    # a listener that never answers the dask handshake
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        addr = "tcp://127.0.0.1:%d" % silent.getsockname()[1]
        with pytest.raises(SchedulerError, match=addr):
            Scheduler.from_spec(addr, timeout=0.5)
    assert time.perf_counter() - t < 10


def test_map_keeps_order_and_small_jobs_stay_in_this_process():
    x = np.arange(50.0)
    assert Scheduler.serial().map(_square, range(50), shared=x) == list(x**2)
    with Scheduler.from_spec("processes:2") as s:
        # tiny tasks: the first is timed here, the rest would not repay starting workers
        assert s.map(_square, range(50), shared=x) == list(x**2)
        assert s.log[-1][2] == "here" and not s._pool_started
        # a stream of maps under one key is decided once
        assert s.map(_ident, [1, 2], key="k", total=10) == [1, 2]
        assert s.map(_ident, [3], key="k") == [3]
        assert s._decisions == {"k": False}


def test_local_processes_keep_order_and_progress(local):
    x = np.arange(300_000.0)  # 2.4 MB: memory-mapped for the workers, not copied
    seen = []
    out = local.map(_square, [5, 1, 299_999, 7], shared=x, done=lambda i, n: seen.append((i, n)))
    assert local.log[-1][2] == "processes"
    assert out == [25.0, 1.0, 299_999.0**2, 49.0]
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


# --------------------------------------------------------------------------- same results


def _toy():
    from toymodel import ToyModel

    return ToyModel(n_energy=5, n_noise=1, extra="cube").to_dataset(per_temperature=3000, seed=5, block_size=100)


def _selection_json(ds, scheduler):
    from diag.audit import AuditOptions
    from diag.selection import SelectionOptions, run_selection

    opts = AuditOptions(C=1e-3, train_per_class=300, seed=2)
    sel = SelectionOptions(seed=2, eval_n_draws=50, eval_n_boot=100, n_folds=2, lc_n_sizes=3, lc_repeats=2,
                           coarsen=False, families=False, c_grid_relative=(1.0, 100.0, 1e4))
    return json.dumps(run_selection(ds, opts, sel, scheduler=scheduler).to_dict(), sort_keys=True)


def test_selection_on_local_processes_equals_serial(local):
    ds = _toy()
    serial = _selection_json(ds, None)
    n_log = len(local.log)
    assert _selection_json(ds, local) == serial
    assert {w for _, _, w, _ in local.log[n_log:]} == {"processes"}


def test_features_on_local_processes_equal_serial(trajectories, local):
    from adapters.build import build_dataset
    from adapters.config import load_config

    paths, cfg = trajectories
    config = load_config(str(cfg))
    a = build_dataset(paths, temperatures=[0.6, 0.9], config=config)
    n_log = len(local.log)
    b = build_dataset(paths, temperatures=[0.6, 0.9], config=config, scheduler=local)
    from adapters.structure import _numba_module

    # with the numba kernel (it releases the GIL) local workers are threads in this process, else processes
    kind = "threads" if _numba_module()[0] is not None else "processes"
    assert kind in {w for _, _, w, _ in local.log[n_log:]}, local.log[n_log:]
    for name in ("features", "label", "group", "p_hop", "particle", "species", "temperature"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.conventions == b.conventions


def test_cli_on_a_dask_cluster_gives_the_serial_dataset_and_a_byte_identical_report(
        cluster, trajectories, tmp_path, capsys):
    from diag.dataset import read_dataset

    (cold, hot), cfg = trajectories
    common = [str(cold), str(hot), "--temperature", "0.6", "0.9", "--config", str(cfg), "--quiet",
              "--grid-points", "9", "--folds", "2"]
    outs = {}
    for name, spec in (("serial", "serial"), ("dask", cluster)):
        out, feat = tmp_path / f"{name}.json", tmp_path / f"{name}.h5"
        code = main(["audit", *common, "--scheduler", spec, "--json", str(out), "--save-features", str(feat)])
        assert code == 0, capsys.readouterr().err
        outs[name] = (out.read_bytes(), read_dataset(feat))
    assert outs["dask"][0] == outs["serial"][0]
    a, b = outs["serial"][1], outs["dask"][1]
    np.testing.assert_allclose(b.features, a.features, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(b.group, a.group)
    # diag features on the cluster too
    out = tmp_path / "f.h5"
    assert main(["features", str(cold), str(hot), "--temperature", "0.6", "0.9", "--config", str(cfg),
                 "-o", str(out), "--quiet", "--scheduler", cluster]) == 0
    np.testing.assert_array_equal(read_dataset(out).features, a.features)



def test_natural_population_stage_on_a_dask_cluster_equals_serial(cluster, tmp_path, monkeypatch):
    """Softness of a file-backed dataset in row blocks read by the workers, and the logistic fits,
    on a cluster: the same audit as in this process."""
    import diag.audit as A
    from diag.audit import AuditOptions, audit
    from diag.dataset import FeatureStore, read_dataset
    from diag.report.json import audit_to_dict, dumps
    from toymodel import ToyModel

    path = ToyModel().to_dataset(per_temperature=6000, seed=8).write(tmp_path / "toy.h5")
    ds = read_dataset(path, lazy=True)
    assert isinstance(ds.features, FeatureStore)
    opts = AuditOptions(n_draws=100, n_boot=100, seed=2)
    serial = dumps(audit_to_dict(audit(ds, opts)))
    # tasks of one SVM chunk (16384 rows): several softness tasks, bitwise the one-shot softness
    monkeypatch.setattr(A, "SOFTNESS_TASK_ROWS", 16384)
    with Scheduler.from_spec(cluster) as sched:
        n_log = len(sched.log)
        on_cluster = dumps(audit_to_dict(audit(ds, opts, scheduler=sched)))
        kinds = {(k, w) for k, _, w, _ in sched.log[n_log:]}
    assert on_cluster == serial
    assert ("logistic", "dask") in kinds, kinds
    assert any(isinstance(k, tuple) and k[0] == "softness" and w == "dask" for k, w in kinds), kinds
