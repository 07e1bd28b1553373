"""``diag features`` through argparse + run(args), and through the lead's ``diag`` entry point."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import adapters.cli as fcli
from diag.dataset import read_dataset
from diag.errors import DataError, UsageError

from .writers import EXT, make_synthetic, write, write_h5md, write_lammps, write_xyz

STUB_STRUCTURE = {"species": ["A", "B"], "grid": [0.8, 1.0, 1.2, 1.4], "width": 0.1, "cutoff": 1.6}
SMALL = {"dynamics": {"window": 4, "persistence": 4, "every": 5}}


def parse(argv):
    p = argparse.ArgumentParser(prog="diag features")
    fcli.add_arguments(p)
    return p.parse_args([str(a) for a in argv])


def run(argv):
    return fcli.run(parse(argv))


def synthetic(**kw):
    e = np.zeros(kw.get("dim", 3))
    e[0] = 0.9
    return make_synthetic(n_side=4, n_frames=kw.pop("n_frames", 25), hops={5: (11, e)}, seed=kw.pop("seed", 0), **kw)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "features.json"
    path.write_text(json.dumps({**SMALL, "structure": STUB_STRUCTURE}))
    return path


def files_in(folder):
    return sorted(os.listdir(folder))


def test_writes_a_dataset_and_a_summary(tmp_path, stub_structure, config_file, capsys):
    a, b = tmp_path / "a.xyz", tmp_path / "b.dump"
    write_xyz(a, synthetic(seed=1))
    write_lammps(b, synthetic(seed=2))
    out = tmp_path / "data.h5"
    assert run([a, b, "-o", out, "--temperature", 0.5, 0.6, "--config", config_file, "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out}: ") and "\n" not in line
    ds = read_dataset(out)
    nat = ds.natural == 1
    assert f"{ds.n_samples} samples x {ds.n_features} features" in line and "T = 0.5, 0.6" in line
    assert f"natural population {int(nat.sum())} ({int(ds.label[nat].sum())} with R = 1)" in line
    assert f"training set {int((ds.role == 1).sum())} soft, {int((ds.role == 0).sum())} hard" in line
    assert ds.provenance["generator"] == "glass-diag features"
    assert [i["file"] for i in ds.provenance["inputs"]] == [str(a), str(b)]
    assert ds.provenance["config_file"] == str(config_file)
    assert ds.conventions["dynamics"]["every_frames"] == 5
    assert set(ds.temperatures.tolist()) == {0.5, 0.6}
    assert ds.p_hop is not None and ds.species is not None and ds.particle is not None


def test_every_overrides_the_config(tmp_path, stub_structure, config_file):
    a = tmp_path / "a.h5"
    write_h5md(a, synthetic())
    out = tmp_path / "data.h5"
    assert run([a, "-o", out, "--config", config_file, "--every", 3, "--quiet"]) == 0
    ds = read_dataset(out)
    assert ds.conventions["dynamics"]["every_frames"] == 3
    # 25 frames, W = 4, P = 4 before and after: sampled frames 6, 9, ... up to 25 - 1 - 2 - 4 = 18 ...
    last = 25 - 1 - 2 - 4
    assert sorted(set(ds.group.tolist())) == list(range(6, last + 1, 3))
    # ... and with the hard rule looking only before, up to 25 - 1 - 2 = 22
    out2 = tmp_path / "before.h5"
    assert run([a, "-o", out2, "--config", config_file, "--every", 3, "--hard-side", "before", "--quiet"]) == 0
    assert sorted(set(read_dataset(out2).group.tolist())) == [6, 9, 12, 15, 18, 21]


def test_existing_output_needs_force_and_inputs_are_never_overwritten(tmp_path, stub_structure, config_file):
    a = tmp_path / "a.xyz"
    write_xyz(a, synthetic())
    out = tmp_path / "data.h5"
    out.write_bytes(b"precious")
    with pytest.raises(UsageError, match="exists"):
        run([a, "-o", out, "--config", config_file, "--quiet"])
    assert out.read_bytes() == b"precious"
    assert run([a, "-o", out, "--config", config_file, "--force", "--quiet"]) == 0
    assert read_dataset(out).n_samples > 0
    before = a.read_bytes()
    for target in (a, config_file):
        with pytest.raises(UsageError, match="overwrite the input"):
            run([a, "-o", target, "--config", config_file, "--force", "--quiet"])
    assert a.read_bytes() == before
    with pytest.raises(UsageError, match="folder does not exist"):
        run([a, "-o", tmp_path / "nope" / "d.h5", "--config", config_file, "--quiet"])


@pytest.mark.parametrize(
    "content,fragment",
    [
        ("{not json", "invalid JSON"),
        ('{"dynamic": {}}', "unknown section"),
        ('{"dynamics": {"window": 5}}', "even integer"),
        ('{"dynamics": {"p_c": 0.1, "p_hard": 0.2}}', "p_hard"),
        ('{"input": {"species_map": {"1": 2}}}', "species_map"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_bad_config_is_a_usage_error_naming_it(tmp_path, stub_structure, content, fragment):
    a = tmp_path / "a.xyz"
    write_xyz(a, synthetic(n_frames=3))
    conf = tmp_path / "bad.json"
    conf.write_text(content)
    out = tmp_path / "data.h5"
    with pytest.raises(UsageError) as exc:
        run([a, "-o", out, "--config", conf, "--quiet"])
    msg = str(exc.value)
    assert msg.startswith(f"{conf}: ") and fragment in msg and "\n" not in msg
    assert not out.exists()


def _far_outside(path, fmt):
    syn = synthetic()
    w = syn.wrapped.copy()
    w[3, 2, 0] -= 3 * syn.lengths[0]
    syn.stored_images, syn.stored_wrapped = syn.images.copy(), w
    write(fmt, path, syn)


def _truncate(path, fmt):
    write(fmt, path, synthetic())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD = {
    "truncated-h5md": ("h5md", _truncate, DataError, "truncated"),
    "truncated-gsd": ("gsd", _truncate, DataError, "GSD"),
    "truncated-lammps": ("lammps", _truncate, DataError, "truncated"),
    "truncated-xyz": ("xyz", _truncate, DataError, "truncated"),
    "far-outside": ("xyz", _far_outside, DataError, "more than one box length outside"),
    "zero-box": ("xyz", lambda p, f: write_xyz(p, synthetic(), lattice=[4, 0, 0, 0, 0, 0, 0, 0, 4]), DataError, "zero"),
    "non-periodic": ("lammps", lambda p, f: write_lammps(p, synthetic(), flags="pp pp fm"), DataError, "not periodic"),
    "unknown-species": (
        "xyz", lambda p, f: write_xyz(p, synthetic(), names=["C"] * 64), DataError, "unknown species 'C'"
    ),
    "missing-temperature": ("lammps", lambda p, f: write_lammps(p, synthetic()), DataError, "no temperature"),
    "too-few-frames": ("h5md", lambda p, f: write_h5md(p, synthetic(n_frames=8)), DataError, "fewer frames (8)"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_exits_with_a_typed_error_and_writes_nothing(tmp_path, stub_structure, config_file, name):
    fmt, make, err, fragment = BAD[name]
    good = tmp_path / "good.xyz"
    write_xyz(good, synthetic())
    bad = tmp_path / f"bad{EXT[fmt]}"
    make(bad, fmt)
    out = tmp_path / "data.h5"
    before = files_in(tmp_path)
    argv = [good, bad, "-o", out, "--config", config_file, "--quiet"]
    if name != "missing-temperature":
        argv += ["--temperature", 0.5, 0.6]
    with pytest.raises(err) as exc:
        run(argv)
    msg = str(exc.value)
    assert msg.startswith(f"{bad}: ") and fragment in msg and "\n" not in msg, msg
    assert files_in(tmp_path) == before and not out.exists()


def test_temperature_count_must_match(tmp_path, stub_structure, config_file):
    a = tmp_path / "a.xyz"
    write_xyz(a, synthetic())
    with pytest.raises(UsageError, match="2 value"):
        run([a, "-o", tmp_path / "d.h5", "--temperature", 0.5, 0.6, "--config", config_file, "--quiet"])
    with pytest.raises(SystemExit):
        parse([a, "-o", "d.h5", "--temperature", "-1"])
    with pytest.raises(SystemExit):
        parse([a, "-o", "d.h5", "--format", "pdb"])


def test_format_option_forces_the_reader(tmp_path, stub_structure, config_file):
    a = tmp_path / "a.dat"
    write_xyz(a, synthetic())
    out = tmp_path / "d.h5"
    assert run([a, "-o", out, "--format", "xyz", "--config", config_file, "--quiet"]) == 0
    with pytest.raises(DataError):
        run([a, "-o", out, "--force", "--format", "lammps", "--config", config_file, "--quiet"])


def test_module_import_is_light():
    code = (
        "import sys, adapters.cli; "
        "print(','.join(m for m in ('numpy', 'freud', 'gsd', 'h5py', 'rich', 'adapters.structure') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert res.stdout.strip() == ""


def test_through_the_diag_entry_point(tmp_path, stub_structure, config_file, capsys):
    main = pytest.importorskip("diag.cli").main
    a = tmp_path / "a.xyz"
    write_xyz(a, synthetic())
    out = tmp_path / "d.h5"
    try:
        code = main(["features", str(a), "-o", str(out), "--config", str(config_file), "--quiet"])
    except SystemExit as exc:  # the lead's parser does not register 'features' yet
        pytest.skip(f"diag features not registered ({exc})")
    assert code == 0 and out.exists()
    capsys.readouterr()
    bad = tmp_path / "b.dump"
    write_lammps(bad, synthetic())
    code = main(["features", str(bad), "-o", str(tmp_path / "e.h5"), "--config", str(config_file), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err == f"diag features: error: {bad}: no temperature in the file; give one per file with --temperature"
    code = main(["features", str(a), "-o", str(out), "--config", str(config_file), "--quiet"])
    assert code == 2 and "exists" in capsys.readouterr().err


def test_progress_bar_renders(capsys):
    with fcli._Progress(True) as progress:
        for k in range(1, 4):
            progress(0, "/some/where/a.dump", k, 3)
        progress(1, "b.h5", 1, 2)
    err = capsys.readouterr().err
    assert "a.dump" in err and "b.h5" in err
    with fcli._Progress(False) as progress:
        progress(0, "a.dump", 1, 3)  # disabled: a no-op
