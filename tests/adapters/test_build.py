"""Trajectories -> Dataset: planted hops labelled at the right frame, conventions, errors."""

from __future__ import annotations

import numpy as np
import pytest

from adapters.build import GROUP_STRIDE, build_dataset
from adapters.config import FeaturesConfig
from adapters.dynamics import DynamicsConfig
from diag.errors import DataError, InsufficientDataError, UsageError

from .conftest import StubStructureConfig, StubStructureFunctions
from .writers import EXT, make_synthetic, write, write_lammps, write_xyz

DYN = DynamicsConfig(window=4, persistence=4, every=5, hard_side="before")  # sampled frames 6, 11, 16, 21
HOPPER, HOP_FRAME = 5, 11


def planted(dim=3, n_side=4, n_frames=25, seed=0, **kw):
    e = np.zeros(dim)
    e[1] = 0.9
    return make_synthetic(dim=dim, n_side=n_side, n_frames=n_frames, hops={HOPPER: (HOP_FRAME, e)}, seed=seed, **kw)


def cfg(**kw):
    return FeaturesConfig(structure=StubStructureConfig(), dynamics=kw.pop("dynamics", DYN), **kw)


def one_line(exc_info, path=None):
    msg = str(exc_info.value)
    assert "\n" not in msg
    if path is not None:
        assert msg.startswith(f"{path}: "), msg
    return msg


@pytest.mark.parametrize("fmt,dim", [("lammps", 3), ("xyz", 2), ("h5md", 3), ("gsd", 2)])
def test_planted_hop_is_soft_at_the_right_frame(tmp_path, stub_structure, fmt, dim):
    syn = planted(dim=dim, seed=dim)
    path = tmp_path / f"t{EXT[fmt]}"
    write(fmt, path, syn)
    ds = build_dataset([path], temperatures=[0.45], config=cfg())

    frames = ds.group - 0 * GROUP_STRIDE
    assert sorted(set(frames.tolist())) == [6, 11, 16, 21]
    # the file's particle ids: LAMMPS ids are 1-based, the other formats use the index
    pid = HOPPER + 1 if fmt == "lammps" else HOPPER
    drift = syn.drifter + 1 if fmt == "lammps" else syn.drifter
    soft = {(int(g), int(p)) for g, p, r in zip(frames, ds.particle, ds.role) if r == 1}
    np.testing.assert_array_equal(ds.label, (ds.role == 1).astype(np.int8))  # soft <=> natural R = 1
    assert (HOP_FRAME, pid) in soft
    assert {p for g, p in soft if p != drift} == {pid}
    assert {g for g, p in soft if p == pid} == {HOP_FRAME}
    assert {g for g, p in soft if p == drift} == {6, 11, 16, 21}
    # hop by 0.9 at the centre of a W = 4 window: p_hop = 0.81 (2/3)^1.5 plus a little noise
    k = np.flatnonzero((frames == HOP_FRAME) & (ds.particle == pid))[0]
    assert ds.p_hop[k] == pytest.approx(0.81 * (2 / 3) ** 1.5, rel=0.1)
    # every particle is in the natural population at every sampled frame; every one is soft
    # or hard, except the hopper while the hop is in its persistence window (neither)
    assert (ds.natural == 1).all()
    for t in (6, 11, 16, 21):
        m = frames == t
        assert m.sum() == syn.n, t
        assert (ds.role[m] >= 0).sum() == syn.n - (1 if t == 16 else 0), t
    k16 = np.flatnonzero((frames == 16) & (ds.particle == pid))[0]
    assert ds.role[k16] == -1 and ds.label[k16] == 0
    assert np.isfinite(ds.features).all() and ds.features.shape == (ds.n_samples, 8)
    assert (ds.temperature == 0.45).all()
    # species are structure ids; B is every 5th particle from 2
    idx = ds.particle - (1 if fmt == "lammps" else 0)
    np.testing.assert_array_equal(ds.species, syn.typeid[idx])
    # features: the structure functions of the true wrapped configuration at that frame
    ref = StubStructureFunctions(StubStructureConfig())
    m = frames == HOP_FRAME
    cen = syn.centred()[HOP_FRAME]
    pts = np.column_stack([cen, np.zeros(syn.n)]) if dim == 2 else cen
    want = ref.compute(tuple(syn.lengths), pts, syn.typeid, query_indices=idx[m]).features
    np.testing.assert_allclose(ds.features[m], want, atol=2e-3 if fmt == "gsd" else 1e-5)
    # every natural sample is described, one call per sampled frame
    calls = stub_structure.instances[-1].calls
    assert len(calls) == 4 and sum(c.query.size for c in calls) == ds.n_samples


def test_conventions_and_provenance_are_recorded(tmp_path, stub_structure):
    syn = planted()
    path = tmp_path / "t.xyz"
    write_xyz(path, syn)
    ds = build_dataset([path], config=cfg())  # temperature from the file
    c = ds.conventions
    assert c["structure"]["stub"] is True
    d = c["dynamics"]
    assert (d["window_frames"], d["p_c"], d["p_hard"], d["persistence_frames"], d["every_frames"]) == (4, 0.2, 0.05, 4, 5)
    assert d["hard_side"] == "before" and d["frame_interval_time"] == pytest.approx(0.25)
    assert d["window_time"] == pytest.approx(1.0) and d["natural_fraction"] == 1.0
    assert c["species_names"] == ["A", "B"] and c["centre_species"] == ["A", "B"]
    assert "A = frames [t - W/2, t]" in d["p_hop"]
    rec = c["trajectories"][0]
    assert rec["file"] == str(path) and rec["format"] == "xyz" and rec["unwrap"] == "minimum-image"
    assert rec["temperature"] == 0.5 and "Temperature" in rec["temperature_source"]
    assert rec["frame_interval_steps"] == 50 and rec["window_steps"] == 200
    assert rec["frame_interval_time"] == pytest.approx(0.25) and rec["window_time"] == pytest.approx(1.0)
    assert rec["species_map"] == {"A": "A", "B": "B"} and 0 < rec["max_step_fraction"] < 0.5
    assert rec["n_sampled_frames"] == 4 and rec["n_soft"] == int((ds.role == 1).sum())
    assert rec["n_natural"] == ds.n_samples and rec["n_natural_rearranging"] == int(ds.label.sum())
    assert c["temperatures"] == [0.5]
    p = ds.provenance
    assert p["generator"] == "glass-diag features" and p["version"]
    assert p["inputs"] == [{"file": str(path), "size": path.stat().st_size, "format": "xyz"}]
    assert p["config"]["dynamics"]["window"] == 4 and p["config"]["structure"]["cutoff"] == 1.6
    assert ds.feature_names[0] == "G_A(r=0.8)" and ds.feature_families == ["radial"] * 8


def test_every_format_gives_the_same_dataset(tmp_path, stub_structure):
    syn = planted(dim=3, seed=7)
    got = {}
    for fmt in ("h5md", "gsd", "lammps", "xyz"):
        path = tmp_path / f"t{EXT[fmt]}"
        write(fmt, path, syn)
        got[fmt] = build_dataset([path], temperatures=[0.5], config=cfg())
    ref = got["h5md"]
    for fmt, ds in got.items():
        np.testing.assert_array_equal(ds.label, ref.label, err_msg=fmt)
        np.testing.assert_array_equal(ds.group, ref.group, err_msg=fmt)
        np.testing.assert_array_equal(ds.particle - (1 if fmt == "lammps" else 0), ref.particle, err_msg=fmt)
        np.testing.assert_allclose(ds.p_hop, ref.p_hop, rtol=1e-4, atol=1e-6, err_msg=fmt)
        np.testing.assert_allclose(ds.features, ref.features, atol=2e-3, err_msg=fmt)


def test_several_files_one_dataset_with_unique_groups(tmp_path, stub_structure):
    paths = []
    for i, fmt in enumerate(("lammps", "xyz", "h5md")):
        path = tmp_path / f"t{i}{EXT[fmt]}"
        write(fmt, path, planted(seed=10 + i))
        paths.append(path)
    ds = build_dataset(paths, temperatures=[0.4, 0.5, 0.6], config=cfg())
    for i, T in enumerate((0.4, 0.5, 0.6)):
        m = ds.group // GROUP_STRIDE == i
        assert m.any() and (ds.temperature[m] == T).all()
    assert np.unique(ds.group).size == 12
    assert ds.conventions["temperatures"] == [0.4, 0.5, 0.6]
    recs = ds.conventions["trajectories"]
    assert "command line" in recs[1]["temperature_source"] and "file says 0.5" in recs[1]["temperature_source"]


# ------------------------------------------------------------------- species
def test_species_maps(tmp_path, stub_structure):
    syn = planted()
    path = tmp_path / "t.dump"
    write_lammps(path, syn)
    ds = build_dataset([path], temperatures=[0.5], config=cfg())  # type 1 -> A, 2 -> B
    assert ds.conventions["trajectories"][0]["species_map"] == {"1": "A", "2": "B"}
    swapped = build_dataset([path], temperatures=[0.5], config=cfg(species_map={"1": "B", "2": "A"}))
    np.testing.assert_array_equal(swapped.species, 1 - ds.species)
    with pytest.raises(UsageError, match="not a structure species"):
        build_dataset([path], temperatures=[0.5], config=cfg(species_map={"1": "C"}))


def test_unknown_species_is_a_data_error_naming_file_and_species(tmp_path, stub_structure):
    syn = planted()
    path = tmp_path / "t.xyz"
    write_xyz(path, syn, names=["Si" if n == "B" else n for n in syn.names])
    with pytest.raises(DataError) as exc:
        build_dataset([path], config=cfg())
    msg = one_line(exc, path)
    assert "unknown species 'Si'" in msg and "A, B" in msg


# ---------------------------------------------------------------- bad input
def test_missing_temperature_names_the_file(tmp_path, stub_structure):
    good, bad = tmp_path / "a.xyz", tmp_path / "b.dump"
    write_xyz(good, planted())
    write_lammps(bad, planted())
    with pytest.raises(DataError) as exc:
        build_dataset([good, bad], config=cfg())
    assert "no temperature" in one_line(exc, bad)
    with pytest.raises(UsageError, match="1 value"):
        build_dataset([good, bad], temperatures=[0.5], config=cfg())
    with pytest.raises(UsageError, match="positive"):
        build_dataset([good], temperatures=[-1.0], config=cfg())


def test_fewer_frames_than_the_window(tmp_path, stub_structure):
    path = tmp_path / "short.xyz"
    write_xyz(path, planted(n_frames=DYN.min_frames - 1))
    with pytest.raises(DataError) as exc:
        build_dataset([path], config=cfg())
    msg = one_line(exc, path)
    assert f"fewer frames ({DYN.min_frames - 1})" in msg and f"({DYN.min_frames} =" in msg


def test_box_smaller_than_twice_the_cutoff_is_computed(tmp_path, stub_structure):
    # periodic images within the cutoff count (the engine's job); the builder no longer refuses
    path = tmp_path / "small.h5"
    write("h5md", path, planted(n_side=3))  # L = 3 < 2 * 1.6
    ds = build_dataset([path], temperatures=[0.5], config=cfg())
    assert ds.n_samples > 0 and np.isfinite(ds.features).all()


def test_centre_species_and_natural_subsample(tmp_path, stub_structure):
    syn = planted()
    path = tmp_path / "t.h5"
    write("h5md", path, syn)
    full = build_dataset([path], temperatures=[0.5], config=cfg())
    only_a = build_dataset([path], temperatures=[0.5], config=cfg(centre_species=["A"]))
    a = full.species == 0
    np.testing.assert_array_equal(only_a.particle, full.particle[a])
    np.testing.assert_array_equal(only_a.features, full.features[a])  # neighbours are still every species
    np.testing.assert_array_equal(only_a.role, full.role[a])
    assert only_a.conventions["centre_species"] == ["A"]
    # a seeded subsample of the natural population; soft and hard particles are always kept
    dyn = DynamicsConfig(window=4, persistence=4, every=5, hard_side="before", natural_fraction=0.25, natural_seed=3)
    sub = build_dataset([path], temperatures=[0.5], config=cfg(dynamics=dyn))
    again = build_dataset([path], temperatures=[0.5], config=cfg(dynamics=dyn))
    np.testing.assert_array_equal(sub.natural, again.natural)
    nat = sub.natural == 1
    assert 0.1 < nat.sum() / full.n_samples < 0.4
    assert ((sub.role >= 0) | nat).all()  # every stored sample is natural or in the training set
    assert (sub.role >= 0).sum() == (full.role >= 0).sum()
    key = lambda d, m: {(int(g), int(p)) for g, p in zip(d.group[m], d.particle[m])}  # noqa: E731
    assert key(sub, nat) <= key(full, full.natural == 1)
    assert sub.conventions["dynamics"]["natural_fraction"] == 0.25
    with pytest.raises(UsageError, match="--species C"):
        build_dataset([path], temperatures=[0.5], config=cfg(centre_species=["C"]))


def test_nothing_labelled_is_insufficient_data(tmp_path, stub_structure):
    path = tmp_path / "t.xyz"
    write_xyz(path, planted(drift=None))
    dyn = DynamicsConfig(window=4, persistence=4, every=5, p_c=100.0, p_hard=1e-12)
    with pytest.raises(InsufficientDataError) as exc:
        build_dataset([path], config=cfg(dynamics=dyn))
    assert "no centre particle was labelled soft or hard" in one_line(exc, path)


# ------------------------------------------------------------ end to end
def test_with_the_real_structure_functions(tmp_path):
    structure = pytest.importorskip("adapters.structure")
    scfg = structure.StructureConfig(species=("A", "B"), radial_r=(0.9, 1.0, 1.1), angular=((1.0, 1.0, 1.0),))
    syn = planted(n_side=5)
    path = tmp_path / "t.h5"
    write("h5md", path, syn)
    ds = build_dataset([path], config=FeaturesConfig(structure=scfg, dynamics=DYN))
    assert ds.n_features == scfg.n_features == 9
    assert ds.feature_names == scfg.feature_names()
    assert np.isfinite(ds.features).all()
    assert ds.conventions["structure"] == scfg.conventions()
    soft = ds.particle[(ds.label == 1) & (ds.group == HOP_FRAME)]
    assert HOPPER in soft.tolist()
    # the same particles, directly on the true wrapped configuration
    m = ds.group == HOP_FRAME
    want = structure.StructureFunctions(scfg).compute(tuple(syn.lengths), syn.centred()[HOP_FRAME], syn.typeid,
                                                      query_indices=ds.particle[m]).features
    np.testing.assert_allclose(ds.features[m], want, rtol=1e-5, atol=1e-6)


def test_structure_errors_name_the_file_and_frame(tmp_path, stub_structure):
    from diag.errors import DataError as DE

    def broken(self, box, points, types, query_indices=None):
        raise DE("non-finite position (particle 3)")

    stub_structure.StructureFunctions.compute = broken
    path = tmp_path / "t.xyz"
    write_xyz(path, planted())
    with pytest.raises(DataError) as exc:
        build_dataset([path], config=cfg())
    assert one_line(exc, path).endswith("frame 6: structure functions: non-finite position (particle 3)")
