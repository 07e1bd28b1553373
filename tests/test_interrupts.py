"""Interrupted runs leave nothing behind.

A run stopped by Ctrl-C (SIGINT) or by a scheduler or ``kill`` (SIGTERM, which the CLI
turns into the same unwinding) must exit with code 130, print one line
``diag CMD: interrupted`` and no traceback, publish no output file, leave no temporary
file (the writer's ``.NAME.*.tmp``), keep an existing output it was asked to replace and
every input byte-identical, and leave no worker process behind.

Each test starts ``python -m diag.cli`` in its own session, waits until it is working
(running for a while, or until its temporary output file appears, for an interrupt
during the write), then signals it. Timing-robust: a run that finished before the signal
could be sent is skipped, not failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="POSIX signals and Linux /proc")

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
#: a toy run that takes ~10 s, ~1 s of it writing (18M samples)
TOY = ["toy", "OUT.h5", "--per-temperature", "3000000", "--seed", "1"]


def _start(argv, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "diag.cli", *argv],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # our signals reach it alone; cleanup can kill its group
    )


def _temp_files(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(".") and n.endswith(".tmp"))


def _children(pid: int) -> list[int]:
    """Direct child processes (Linux /proc), e.g. the workers of the features scheduler."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _wait_until(proc: subprocess.Popen, ready, timeout: float = 120.0) -> bool:
    """Poll until ``ready()``; False when the process ended first (or after ``timeout``)."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.005)
    return False


def _interrupt(proc: subprocess.Popen, sig: int, ready, what: str):
    """Signal ``proc`` once ``ready()``; returns (code, stdout, stderr, children at the signal)."""
    try:
        if not _wait_until(proc, ready):
            out, err = proc.communicate(timeout=120)
            pytest.skip(f"the run ended before the signal could be sent ({what}; code {proc.returncode})")
        kids = _children(proc.pid)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err, kids
    finally:
        if proc.poll() is None:  # a failure above: do not leave the run behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _check_interrupted(cmd: str, code: int, out: str, err: str) -> None:
    assert code == 130, (code, err)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.strip() == f"diag {cmd}: interrupted", err
    assert out.strip() == "", out


def _running_for(seconds: float, proc: subprocess.Popen, opened: Path | None = None, rss_mb: float = 0):
    """Ready after ``seconds`` once the run is surely working: it holds ``opened`` open, or
    uses more than ``rss_mb`` of memory (so the CLI's handlers are installed; a signal
    during the interpreter's start-up is not what is tested here)."""
    t0 = time.monotonic()

    def ready():
        if time.monotonic() - t0 < seconds:
            return False
        if opened is not None and not _has_open(proc.pid, opened):
            return False
        return _rss_mb(proc.pid) >= rss_mb

    return ready


def _has_open(pid: int, path: Path) -> bool:
    target = os.path.realpath(path)
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return True
            except OSError:
                continue
    except OSError:
        return False
    return False


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


# ---------------------------------------------------------------------------- toy
@pytest.mark.parametrize("sig", SIGNALS)
def test_toy_interrupted_while_computing(tmp_path, sig):
    proc = _start(TOY, tmp_path)
    code, out, err, _ = _interrupt(proc, sig, _running_for(1.0, proc, rss_mb=300), "drawing the samples")
    _check_interrupted("toy", code, out, err)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("sig", SIGNALS)
def test_toy_interrupted_while_writing(tmp_path, sig):
    """The signal arrives while h5py writes the temporary file.

    Regression: the KeyboardInterrupt used to be raised inside a weakref callback of
    h5py, printed as "Exception ignored ... Traceback" and dropped; the run then
    published its output and exited 0. ``Dataset.write`` now holds the signals.
    """
    proc = _start(TOY, tmp_path)
    code, out, err, _ = _interrupt(proc, sig, lambda: bool(_temp_files(tmp_path)), "writing")
    _check_interrupted("toy", code, out, err)
    assert os.listdir(tmp_path) == []


def test_toy_interrupted_while_replacing_keeps_the_old_file(tmp_path):
    old = tmp_path / "OUT.h5"
    old.write_bytes(b"the previous results")
    proc = _start([*TOY, "--force"], tmp_path)
    code, out, err, _ = _interrupt(proc, signal.SIGTERM, lambda: bool(_temp_files(tmp_path)), "writing")
    _check_interrupted("toy", code, out, err)
    assert os.listdir(tmp_path) == ["OUT.h5"] and old.read_bytes() == b"the previous results"


# ----------------------------------------------------------------------- features
@pytest.fixture(scope="module")
def big_trajectory(tmp_path_factory):
    """A 4096-particle, 600-frame H5MD trajectory (88 MB) and a configuration file with the
    defaults (166 structure functions): well over the 4 s at which the run is interrupted."""
    from tests.adapters.writers import make_synthetic, write_h5md

    d = tmp_path_factory.mktemp("big")
    path = d / "big.h5"
    write_h5md(path, make_synthetic(n_side=16, n_frames=600, seed=0, spacing=1.1))
    config = d / "features.json"
    config.write_text(json.dumps({}))
    return path, config


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("after", [0.5, 4.0], ids=["starting", "working"])
def test_features_interrupted(tmp_path, big_trajectory, sig, after):
    traj, config = big_trajectory
    before = _digest(traj), _digest(config)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start(["features", str(traj), "-o", str(out_dir / "data.h5"), "--config", str(config), "--quiet"],
                  tmp_path)
    code, out, err, kids = _interrupt(proc, sig, _running_for(after, proc, opened=traj), f"{after} s into the run")
    _check_interrupted("features", code, out, err)
    assert os.listdir(out_dir) == []
    assert (_digest(traj), _digest(config)) == before
    t_end = time.monotonic() + 20
    while any(_alive(k) for k in kids) and time.monotonic() < t_end:
        time.sleep(0.05)
    assert not [k for k in kids if _alive(k)], "worker processes outlived the interrupted run"


def test_features_interrupted_keeps_the_existing_output(tmp_path, big_trajectory):
    traj, config = big_trajectory
    out = tmp_path / "data.h5"
    out.write_bytes(b"yesterday's dataset")
    proc = _start(["features", str(traj), "-o", str(out), "--config", str(config), "--force", "--quiet"], tmp_path)
    code, stdout, err, _ = _interrupt(proc, signal.SIGINT, _running_for(2.0, proc, opened=traj), "2 s into the run")
    _check_interrupted("features", code, stdout, err)
    assert os.listdir(tmp_path) == ["data.h5"] and out.read_bytes() == b"yesterday's dataset"
