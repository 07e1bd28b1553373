"""Catalogue of bad inputs to ``diag toy`` and ``diag audit``.

Each case: a one-line message naming the file and the problem, exit code 2 for usage
errors and 1 for data errors, no traceback, inputs byte-identical afterwards, and no
partial output file. Run in-process through ``diag.cli.main`` (an uncaught exception
would fail the test as a traceback would).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from diag.cli import main
from diag.dataset import SCHEMA_VERSION


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    from toymodel import ToyModel

    path = tmp_path_factory.mktemp("good") / "good.h5"
    ToyModel(n_noise=1).to_dataset(temperatures=[0.6, 1.0], per_temperature=3000, seed=2).write(path)
    return path


def _variant(good: Path, folder: Path, name: str, edit) -> Path:
    dst = folder / name
    dst.write_bytes(good.read_bytes())
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def _replace(f, key, data):
    del f[key]
    f[key] = data


def _bad_files(good: Path, d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected words in the message); all data errors (exit 1)."""
    empty = d / "empty.h5"
    empty.write_bytes(b"")
    text = d / "text.h5"
    text.write_text("hello, not a dataset\n")
    dump = d / "cut.dump"
    dump.write_text("ITEM: TIMESTEP\n0\n")
    trunc = d / "trunc.h5"
    raw = good.read_bytes()
    trunc.write_bytes(raw[: len(raw) * 2 // 3])
    other = d / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(3)
    return {
        "missing file": (d / "absent.h5", "no such file"),
        "directory": (d, "directory"),
        "empty file": (empty, "empty"),
        "text file named .h5": (text, "not an HDF5 file"),
        "cut LAMMPS dump": (dump, "not a LAMMPS dump"),
        "truncated": (trunc, ""),
        "foreign HDF5": (other, "missing group 'samples'"),
        "missing label": (_variant(good, d, "nolabel.h5", lambda f: f["samples"].__delitem__("label")), "samples/label"),
        "1-D features": (_variant(good, d, "flat.h5", lambda f: _replace(f, "samples/features", np.zeros(10))), "2-D"),
        "string features": (
            _variant(good, d, "strfeat.h5", lambda f: _replace(f, "samples/features", np.array([[b"a", b"b"]]))),
            "non-numeric",
        ),
        "label 2": (_variant(good, d, "label2.h5", lambda f: f["samples/label"].__setitem__(3, 2)), "only 0 and 1"),
        "NaN feature": (
            _variant(good, d, "nan.h5", lambda f: f["samples/features"].__setitem__((7, 1), np.nan)), "non-finite"
        ),
        "inf feature": (
            _variant(good, d, "inf.h5", lambda f: f["samples/features"].__setitem__((9, 0), -np.inf)), "non-finite"
        ),
        "negative temperature": (
            _variant(good, d, "negT.h5", lambda f: f["samples/temperature"].__setitem__(0, -0.5)), "positive"
        ),
        "NaN temperature": (
            _variant(good, d, "nanT.h5", lambda f: f["samples/temperature"].__setitem__(0, np.nan)), "temperature"
        ),
        "short labels": (
            _variant(good, d, "short.h5", lambda f: _replace(f, "samples/label", f["samples/label"][:-5])), "shape"
        ),
        "NaN energy": (_variant(good, d, "nanE.h5", lambda f: f["samples/energy"].__setitem__(0, np.nan)), "energy"),
        "one class": (
            _variant(good, d, "oneclass.h5", lambda f: f["samples/label"].__setitem__(slice(None), 0)), "one class"
        ),
        "group across temperatures": (
            _variant(good, d, "mixgroup.h5", lambda f: _replace(f, "samples/group", np.zeros(f["samples/group"].shape, int))),
            "more than one temperature",
        ),
        "newer schema": (
            _variant(good, d, "newer.h5", lambda f: f.attrs.__setitem__("schema_version", SCHEMA_VERSION + 1)), "newer"
        ),
        "bad params JSON": (
            _variant(good, d, "params.h5", lambda f: f["features/params"].__setitem__(0, "{oops")), "invalid JSON"
        ),
        "bad conventions JSON": (
            _variant(good, d, "conv.h5", lambda f: f.attrs.__setitem__("conventions", "[1, 2")), "not valid JSON"
        ),
        "duplicate feature names": (
            _variant(good, d, "dup.h5", lambda f: f["features/name"].__setitem__(1, "x1")), "duplicate feature names"
        ),
    }


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def _assert_one_line(err: str, *words: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_bad_dataset_files_for_audit(good, tmp_path, capsys):
    cases = _bad_files(good, tmp_path)
    assert len(cases) >= 20
    before = _snapshot(tmp_path)
    for name, (path, words) in cases.items():
        out = tmp_path / "out" / f"{path.stem}.json"
        out.parent.mkdir(exist_ok=True)
        code, err = _run(capsys, "audit", path, "--json", out, "--quiet")
        assert code == 1, (name, err)
        _assert_one_line(err, str(path), words)
        assert not out.exists(), name
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if "/out/" not in k} == before  # inputs untouched
    assert not any(Path(k).name.startswith(".") for k in after)  # no temporary files left


@pytest.mark.parametrize(
    "argv, code, words",
    [
        (["audit", "{good}", "--C", "0"], 2, ["--C"]),
        (["audit", "{good}", "--train-temperature", "0.7"], 2, ["{good}", "0.7", "not in the dataset"]),
        (["audit", "{good}", "--train-per-class", "999999"], 1, ["{good}", "requested 999999"]),
        (["audit", "{good}", "--test-fraction", "1.5"], 2, ["test fraction"]),
        (["audit", "{good}", "--json", "{good}"], 2, ["{good}", "overwrite"]),
        (["audit", "{good}", "--json", "{tmp}"], 2, ["{tmp}", "directory"]),
        (["audit", "{good}", "--json", "{tmp}/no/such/dir/r.json"], 2, ["output folder does not exist"]),
        (["audit", "{good}", "--plots", "{good}"], 2, ["{good}", "not a folder"]),
        (["toy", "{good}"], 2, ["{good}", "exists"]),
        (["toy", "{tmp}"], 2, ["{tmp}"]),
        (["toy", "{tmp}/no/such/dir/t.h5"], 2, ["output folder does not exist"]),
        (["toy", "{tmp}/t.h5", "--temperatures", "a,b"], 2, ["--temperatures"]),
        (["toy", "{tmp}/t.h5", "--temperatures", "0.5,-1"], 2, ["temperatures must be positive"]),
        (["toy", "{tmp}/t.h5", "--per-temperature", "-3"], 2, ["--per-temperature"]),
        (["toy", "{tmp}/t.h5", "--n-energy", "3", "--coef", "1,2"], 2, ["coef"]),
        (["toy", "{tmp}/t.h5", "--n-energy", "2", "--extra", "triple"], 2, ["triple"]),
        (["toy", "{tmp}/t.h5", "--extra", "square"], 2, ["--extra"]),
    ],
)
def test_bad_requests(good, tmp_path, capsys, argv, code, words):
    fill = {"good": str(good), "tmp": str(tmp_path)}
    before = good.read_bytes()
    listing = sorted(os.listdir(tmp_path))
    args = [a.format(**fill) for a in argv]
    try:
        got, err = _run(capsys, *args)
    except SystemExit as exc:  # argparse usage errors
        got, err = exc.code, capsys.readouterr().err
        err = err.strip().splitlines()[-1]  # argparse prints usage, then one error line
    assert got == code, err
    _assert_one_line(err, *[w.format(**fill) for w in words])
    assert good.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == listing  # nothing written


def test_one_temperature_is_not_an_error(good, tmp_path, capsys):
    path = _variant(good, tmp_path, "oneT.h5", lambda f: f["samples/temperature"].__setitem__(slice(None), 1.0))
    # groups now all sit at T = 1; the audit reports what it can and says why
    out = tmp_path / "r.json"
    code = main(["audit", str(path), "--json", str(out), "--quiet"])
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["arrhenius"] is None and any("one temperature" in w for w in doc["warnings"])
