"""Continue a Kob-Andersen production of the full set with LAMMPS, for more frames at one temperature.

The full set of ``make_ka.py`` has 1001 frames (500 tau) per temperature. At T = 0.50 that
gives about 110 soft A particles (p_hop > 0.2 with t_R = 10 tau) over its 48 sampled frames,
too few to train a softness SVM well. This script restarts from the last frame of a
full-set dump (positions and image flags as LAMMPS wrote them, read back with LAMMPS's own
``read_dump``), draws velocities at T (seeded; the structure is already equilibrated and the
velocities thermalise within a few tau), runs ``--rethermalise`` tau of NVT, then a
production of ``--frames`` frames every 100 steps (0.5 tau) with the same potential, integrator
and dump format as ``make_ka.py``. LAMMPS does all the dynamics.

Run by hand, never in CI::

    OMP_NUM_THREADS=1 LD_LIBRARY_PATH=/work/lmpvenv/lib /work/lmpvenv/bin/python \\
        tests/data/lammps/extend_ka.py /work/ka_full/ka_N1000_T0.50.dump 0.50 \\
        /work/ka_full/ka_N1000_T0.50_cont.dump --frames 4001

Measured: 4001 frames (2000 tau) at T = 0.50 in about 15 minutes on one shared core.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_ka import DT, DUMP_EVERY, FULL_FLOAT, TDAMP, box_length, dump_commands, interactions, new_lammps, run_averaged  # noqa: E402


def last_step(path: str) -> int:
    """Timestep of the last frame of a LAMMPS dump."""
    step = None
    with open(path) as fh:
        prev = ""
        for line in fh:
            if prev.startswith("ITEM: TIMESTEP"):
                step = int(line)
            prev = line
    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump")
    ap.add_argument("temperature", type=float)
    ap.add_argument("output")
    ap.add_argument("--frames", type=int, default=4001)
    ap.add_argument("--rethermalise", type=float, default=50.0, help="tau of NVT before the production")
    ap.add_argument("--seed", type=int, default=27182818)
    args = ap.parse_args(argv)
    L = box_length()
    T = args.temperature
    lmp = new_lammps(args.output + ".log")
    step = last_step(args.dump)
    lmp.commands_string(
        f"""
units lj
atom_style atomic
boundary p p p
atom_modify map array sort 0 0.0
region box block 0 {L:.10f} 0 {L:.10f} 0 {L:.10f}
create_box 2 box
mass * 1.0
read_dump {args.dump} {step} x y z ix iy iz add yes box no format native
{interactions()}
timestep {DT}
velocity all create {T} {args.seed} dist gaussian mom yes rot no
fix nvt all nvt temp {T} {T} {TDAMP}
"""
    )
    t0 = time.time()
    s = run_averaged(lmp, int(round(args.rethermalise / DT)))
    print("rethermalised:", s, flush=True)
    lmp.command("set group all image 0 0 0")
    lmp.command("reset_timestep 0")
    lmp.commands_string(dump_commands("full", args.output, FULL_FLOAT))
    s = run_averaged(lmp, DUMP_EVERY * (args.frames - 1))
    print("production:", s, f"total {time.time() - t0:.0f} s", flush=True)
    lmp.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
