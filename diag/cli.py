"""Command-line interface ``diag``: a thin layer over functions that return result objects.

Results go to stdout, progress and logs to stderr. Errors raised as
:class:`diag.errors.GlassDiagError` become a one-line message and exit code 1 (data)
or 2 (usage); argparse usage errors exit 2. Heavy libraries (sklearn, freud) are
imported inside the subcommands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from . import __version__
from .argtypes import floats as _floats, nonneg_int as _nonneg_int, positive_float as _positive_float, positive_int as _positive_int
from .errors import GlassDiagError, UsageError


def _stderr_console(quiet: bool = False):
    """Progress and logs: stderr, and only when it is a terminal (logs never pollute captured errors)."""
    from rich.console import Console

    return Console(stderr=True, quiet=quiet or not sys.stderr.isatty(), highlight=False)


def _stdout_console():
    from rich.console import Console

    return Console(highlight=False)


class _Progress:
    """Stage-by-stage progress bars on stderr; silent when quiet or stderr is not a terminal.

    Call it as ``progress(stage)`` for a stage of unknown length, or
    ``progress(stage, done, total)`` for a counted one.
    """

    def __init__(self, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self._bar = None
        self._tasks: dict[str, int] = {}
        self._last: str | None = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                console=_stderr_console(), transient=True,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False

    def __call__(self, stage: str, done: int | None = None, total: int | None = None) -> None:
        if self._bar is None:
            return
        if self._last is not None and self._last != stage and self._last in self._tasks:
            t = self._tasks[self._last]
            self._bar.update(t, completed=self._bar.tasks[t].total or 1, total=self._bar.tasks[t].total or 1)
        if stage not in self._tasks:
            self._tasks[stage] = self._bar.add_task(stage, total=total)
        if done is not None:
            self._bar.update(self._tasks[stage], completed=done, total=total)
        self._last = stage


# ----------------------------------------------------------------------------- toy
def _add_toy(sub) -> None:
    p = sub.add_parser(
        "toy",
        help="write a ground-truth toy dataset (METHOD section 3)",
        description="Draw toy-model samples with known barriers and write them in the dataset format.",
    )
    p.add_argument("out", metavar="OUT.h5", help="output dataset file")
    p.add_argument("--n-energy", type=_positive_int, default=10, help="coordinates that carry energy (default 10)")
    p.add_argument("--n-noise", type=_nonneg_int, default=4, help="pure-noise coordinates (default 4)")
    p.add_argument("--coef", type=_floats, default=[1.0], help="a_k: one value or one per energy coordinate (default 1.0)")
    p.add_argument("--extra", choices=["none", "cube", "triple"], default="none", help="correlated extras (default none)")
    p.add_argument("--offset", type=float, default=0.0, help="E0, added to every barrier (default 0)")
    p.add_argument("--temperatures", type=_floats, default=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0], help="comma-separated (default 0.5,...,1.0)")
    p.add_argument("--train-temperature", type=_positive_float, default=1.0, help="recorded training temperature (default 1.0)")
    p.add_argument("--per-temperature", type=_positive_int, default=50_000, help="samples per temperature (default 50000)")
    p.add_argument("--block-size", type=_positive_int, default=500, help="samples per group (default 500)")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_run_toy)


def _run_toy(args) -> int:
    from toymodel import ToyModel

    if any(t <= 0 for t in args.temperatures):
        raise UsageError("temperatures must be positive")
    model = ToyModel(
        n_energy=args.n_energy,
        n_noise=args.n_noise,
        coef=args.coef if len(args.coef) > 1 else args.coef[0],
        extra=args.extra,
        offset=args.offset,
    )
    ds = model.to_dataset(
        temperatures=args.temperatures,
        per_temperature=args.per_temperature,
        seed=args.seed,
        block_size=args.block_size,
        train_temperature=args.train_temperature,
    )
    path = ds.write(args.out, overwrite=args.force)
    print(
        f"wrote {path}: {ds.n_samples} samples x {ds.n_features} features at T = "
        + ", ".join(f"{t:g}" for t in ds.temperatures)
        + f" (seed {args.seed})"
    )
    return 0


# --------------------------------------------------------------------------- audit
def _add_audit_options(p) -> None:
    p.add_argument("--C", type=_positive_float, default=1.0, help="SVM C, hinge loss summed over samples (default 1.0)")
    p.add_argument("--train-temperature", type=_positive_float, default=None, help="default: recorded in the file, else the highest T")
    p.add_argument("--train-per-class", type=_positive_int, default=None, help="training samples per class (default: all the smaller class allows)")
    p.add_argument("--test-fraction", type=float, default=0.5, help="fraction of groups held out at the training T (default 0.5)")
    p.add_argument("--p-max", type=float, default=0.5, help="Arrhenius regime: P(R|S,T) <= p_max at every T (default 0.5)")
    p.add_argument("--grid-points", type=_positive_int, default=25, help="softness grid points (default 25)")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="seeds the split, subsampling and CIs (default 0)")
    p.add_argument("--species", nargs="+", metavar="NAME", default=None,
                   help="centre species to audit, each with its own SVM and barriers (default: every centre "
                   "species separately); 'all' pools them into one SVM (with a warning)")
    p.add_argument("--threads", type=_positive_int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--json", metavar="OUT.json", default=None, help="write the report as JSON")
    p.add_argument("--plots", metavar="DIR", default=None, help="write PNG figures into DIR (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    g = p.add_argument_group("feature-set diagnostics (docs/selection.md)")
    g.add_argument("--rfe", action=argparse.BooleanOptionalAction, default=True,
                   help="recursive feature elimination with the variance criterion (default on)")
    g.add_argument("--coarsen", action=argparse.BooleanOptionalAction, default=True,
                   help="compare grid coarsenings and feature families (default on)")
    g.add_argument("--checks", action=argparse.BooleanOptionalAction, default=True,
                   help="learning curve and C sweep (default on)")
    g.add_argument("--folds", type=_nonneg_int, default=3, help="grouped folds for RFE ranking stability (default 3)")
    g.add_argument("--planted", type=_nonneg_int, nargs="?", const=0, default=None, metavar="SEED",
                   help="also audit a copy of the data with a planted, known barrier on the same features, "
                   "temperatures, event rates and sample sizes: can the diagnostics see a bias here? "
                   "(docs/validation.md; SEED default 0)")


def _selection_from_args(args):
    """SelectionOptions from the flags, or None when every diagnostic is switched off."""
    if not (args.rfe or args.coarsen or args.checks):
        return None
    from .selection import SelectionOptions

    return SelectionOptions(
        rfe=args.rfe, coarsen=args.coarsen, families=args.coarsen, learning_curve=args.checks,
        c_sweep=args.checks, n_folds=args.folds, seed=args.seed,
    ).validate()


def _add_audit(sub) -> None:
    p = sub.add_parser(
        "audit",
        help="audit a dataset: train the softness SVM, infer barriers, judge them",
        description="Reproduce the softness / Arrhenius analysis on a dataset and measure how far its barriers can be trusted.",
    )
    p.add_argument(
        "data", metavar="DATA", nargs="+",
        help="one dataset file (docs/dataset.md), or trajectory files (one temperature each) to run the adapters on",
    )
    _add_audit_options(p)
    g = p.add_argument_group("trajectory input (when DATA are trajectories; see docs/adapters.md)")
    g.add_argument("--temperature", type=_positive_float, nargs="+", action="extend", metavar="T", default=None,
                   help="temperature of each trajectory, in order, placed after the files")
    from adapters.cli import add_label_arguments

    add_label_arguments(g)
    g.add_argument("--config", metavar="FILE", default=None, help="JSON features config (structure, dynamics, input)")
    g.add_argument("--format", default="auto", help="trajectory format: auto, h5md, gsd, lammps, xyz")
    g.add_argument("--save-features", metavar="OUT.h5", default=None, help="keep the dataset built from the trajectories")
    g.add_argument("--force", action="store_true", help="replace an existing --save-features file")
    _add_scheduler_option(p)
    p.set_defaults(func=_run_audit)


def _add_scheduler_option(p) -> None:
    p.add_argument(
        "--scheduler", metavar="WHERE", default="processes",
        help="where independent tasks run: serial, processes (default: local processes, used when a stage is "
        "large enough to gain from them; processes:N for N), or a dask scheduler address tcp://HOST:PORT "
        "(pip install 'glass-diag[dask]'); results do not depend on it (docs/scale.md)",
    )


def _options_from_args(args):
    from .audit import AuditOptions

    return AuditOptions(
        C=args.C,
        train_temperature=args.train_temperature,
        train_per_class=args.train_per_class,
        test_fraction=args.test_fraction,
        p_max=args.p_max,
        grid_points=args.grid_points,
        seed=args.seed,
    ).validate()


def _run_audit(args) -> int:
    from threadpoolctl import threadpool_limits

    from .audit import audit, species_populations
    from .report.terminal import render_audits

    from .atomic import check_output_path

    options = _options_from_args(args)
    inputs = [os.fspath(p) for p in args.data]
    outputs = [o for o in (args.json, args.save_features) if o]
    for out in outputs:
        for inp in inputs + ([args.config] if args.config else []):
            if os.path.exists(out) and os.path.exists(inp) and os.path.samefile(out, inp):
                raise UsageError("the output would overwrite an input file", out)
    if args.plots:
        _check_plots_available(args.plots)
    if args.json:
        check_output_path(args.json)  # fail before the work, not after it
    log = _stderr_console(args.quiet)
    from .parallel import Scheduler

    selection = _selection_from_args(args)
    with Scheduler.from_spec(args.scheduler, threads=args.threads) as sched:
        if selection is not None:
            selection.scheduler = sched
        with threadpool_limits(limits=args.threads), _Progress(args.quiet) as progress:
            ds = _load_or_build(args, inputs, progress, log, scheduler=sched)
            pops = species_populations(ds, args.species)
            results, plants = [], []
            for pop in pops:
                stage = progress if len(pops) == 1 else (
                    lambda stage, *a, _s=pop.species: progress(f"species {_s}: {stage}", *a))
                result = audit(pop.dataset, options, progress=stage, selection_options=selection,
                               population=pop.describe(), scheduler=sched)
                if getattr(args, "planted", None) is not None:
                    from .planted import planted_audit

                    planted = planted_audit(pop.dataset, options, selection, seed=args.planted, progress=stage)
                    result.extras["planted"] = planted.to_dict()
                    plants.append(planted)
                results.append(result)
    render_audits(results, _stdout_console())
    if plants:
        from .report.selection import planted_panel

        for r, planted in zip(results, plants):
            if len(results) > 1:
                _stdout_console().rule(f"[bold]planted barriers, centre species {r.population.get('species')}[/]")
            _stdout_console().print(planted_panel(planted))
    _write_outputs(results, args, log, protect=tuple(inputs))
    return 0


def _refuse_foreign_hdf5(paths: list[str]) -> None:
    """An HDF5 file that is neither a dataset nor H5MD gets a message about both."""
    import h5py

    from .errors import DataError

    for p in paths:
        try:
            if not (os.path.isfile(p) and h5py.is_hdf5(p)):
                continue
            with h5py.File(p, "r") as f:
                known = "samples" in f or "h5md" in f or "particles" in f
        except (OSError, ValueError):
            continue
        if not known:
            raise DataError(
                "HDF5 file is neither a glass-diag dataset (missing group 'samples') nor an H5MD trajectory", p
            )


def _load_or_build(args, inputs: list[str], progress, log, scheduler=None):
    """One dataset file is read; trajectory files go through the adapters first."""
    from .dataset import is_dataset_file, read_dataset

    kinds = [is_dataset_file(p) for p in inputs]
    if len(inputs) == 1 and kinds[0]:
        traj_only = ("save_features", "temperature", "config", "every", "window", "window_time", "persistence",
                     "persistence_time", "hard_side", "p_c", "natural_fraction")
        given = [k for k in traj_only if getattr(args, k, None)]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} applies to trajectory input only, not to a dataset file")
        return read_dataset(inputs[0])
    if any(kinds):
        first = inputs[kinds.index(True)]
        raise UsageError("give one dataset file, or trajectory files, not both", first)
    _refuse_foreign_hdf5(inputs)
    from adapters.build import build_dataset
    from adapters.cli import config_from_args

    from .atomic import check_output_path

    if args.save_features:
        check_output_path(args.save_features, overwrite=args.force)
    species = None if not args.species or "all" in args.species else args.species
    config = config_from_args(args, species=species)
    ds = build_dataset(
        inputs,
        temperatures=args.temperature,
        config=config,
        fmt=None if args.format == "auto" else args.format,
        progress=lambda i, path, done, total: progress(f"features {os.path.basename(path)}", done, total),
        scheduler=scheduler,
    )
    if args.save_features:
        ds.write(args.save_features, overwrite=args.force)
        log.print(f"wrote {args.save_features}")
    return ds


def _check_plots_available(folder: str) -> None:
    """Fail before the work, not after it, when figures cannot be written."""
    import importlib.util

    from .report.plots import MISSING_MATPLOTLIB

    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(MISSING_MATPLOTLIB)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError("the plots path exists and is not a folder", folder)


def _write_outputs(results, args, log, protect=()) -> None:
    """JSON (one document; several populations under 'populations') and figures (a folder per species)."""
    from .report.json import audit_to_dict, audits_to_dict, write_json

    if not isinstance(results, (list, tuple)):
        results = [results]
    if args.json:
        write_json(audits_to_dict(results), args.json, protect=protect)
        log.print(f"wrote {args.json}")
    if getattr(args, "plots", None):
        from .report.plots import write_figures

        for r in results:
            folder = args.plots if len(results) == 1 else os.path.join(args.plots, f"species-{r.population.get('species')}")
            for path in write_figures(audit_to_dict(r), folder):
                log.print(f"wrote {path}")


# ---------------------------------------------------------------------------- demo
def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="build a toy dataset in a temporary folder and audit it",
        description="The built-in default: a toy dataset with known barriers, audited end to end.",
    )
    p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=_positive_int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--json", metavar="OUT.json", default=None, help="write the report as JSON")
    p.add_argument("--plots", metavar="DIR", default=None, help="write PNG figures into DIR (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    import tempfile

    from threadpoolctl import threadpool_limits

    from toymodel import ToyModel

    from .audit import AuditOptions, audit
    from .dataset import read_dataset
    from .report.terminal import render_audit
    from .selection import SelectionOptions

    if args.plots:
        _check_plots_available(args.plots)
    log = _stderr_console(args.quiet)
    out = _stdout_console()
    out.rule("glass-diag demo")
    out.print(
        "A toy liquid with known barriers E = x1 + ... + x10 (METHOD section 3), described by 24 inputs: "
        "the 10 energy coordinates, 4 pure-noise coordinates and the 10 cubes x_k^3, which are strongly "
        "correlated with the coordinates but carry no energy. A linear SVM with a small C (1e-3, 1000 "
        "samples per class) predicts rearrangements almost as well as possible, yet its barriers come out "
        "too narrow. The audit detects this without the truth and recommends the feature set that fixes it; "
        "the last line of the verdict compares with the known barriers.\n",
        highlight=False,
    )
    with tempfile.TemporaryDirectory(prefix="glass-diag-demo-") as tmp:
        path = os.path.join(tmp, "toy.h5")
        ToyModel(extra="cube").to_dataset(per_temperature=50_000, seed=args.seed).write(path)
        ds = read_dataset(path)
        options = AuditOptions(C=1e-3, train_per_class=1000, seed=args.seed)
        with threadpool_limits(limits=args.threads), _Progress(args.quiet) as progress:
            result = audit(ds, options, progress=progress, selection_options=SelectionOptions(seed=args.seed))
        render_audit(result, out)
        _write_outputs(result, args, log)
    return 0


# ------------------------------------------------------------------------ validate
def _add_validate(sub) -> None:
    p = sub.add_parser(
        "validate",
        help="check this installation against the paper's claims on the toy model",
        description="Run the toy-model validation (METHOD section 4) and print a pass/fail table. "
        "Exit code 0 when every check passes, 1 otherwise.",
    )
    p.add_argument("data", metavar="DATA", nargs="?", default=None,
                   help="a dataset: run the planted-barrier check on its own features (each centre species) "
                   "instead of the toy checks")
    p.add_argument("--full", action="store_true",
                   help="the whole calibration suite (about 50 audits, 30-60 min): false-alarm and miss rates "
                   "of the verdict (docs/validation.md)")
    p.add_argument("--json", metavar="OUT.json", default=None, help="write the calibration or planted result as JSON")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=_positive_int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_run_validate)


def _run_validate(args) -> int:
    from rich.table import Table
    from threadpoolctl import threadpool_limits

    from .validate import run_validation

    if args.json:
        from .atomic import check_output_path

        check_output_path(args.json)  # fail before the work, not after it
    if args.data is not None:
        return _validate_planted(args)
    if args.full:
        from .report.json import _plain, write_json
        from .report.selection import calibration_table
        from .validate import run_calibration

        with threadpool_limits(limits=args.threads), _Progress(args.quiet) as progress:
            cal = run_calibration(full=True, progress=progress)
        _stdout_console().print(calibration_table(cal))
        if args.json:
            write_json(_plain(cal.to_dict()), args.json)
        ok = (cal.false_alarm_rate or 0) <= 0.05 and (cal.miss_rate or 0) <= 0.05
        return 0 if ok else 1
    with threadpool_limits(limits=args.threads), _Progress(args.quiet) as progress:
        checks = run_validation(seed=args.seed, progress=progress)
    table = Table(title=f"glass-diag {__version__}: toy-model validation (seed {args.seed})", show_lines=True)
    table.add_column("check", style="bold")
    table.add_column("measured")
    table.add_column("expected")
    table.add_column("result")
    for c in checks:
        table.add_row(f"{c.name}\n[dim]{c.claim}[/]", c.measured, c.expected, "[green]pass[/]" if c.passed else "[red]FAIL[/]")
    out = _stdout_console()
    out.print(table)
    n_pass = sum(c.passed for c in checks)
    out.print(f"{n_pass} of {len(checks)} checks passed")
    return 0 if n_pass == len(checks) else 1


def _validate_planted(args) -> int:
    """``diag validate DATA``: the planted-barrier check on the dataset's own features, per centre species."""
    from threadpoolctl import threadpool_limits

    from .audit import AuditOptions, species_populations
    from .dataset import read_dataset
    from .planted import planted_audit
    from .report.json import _plain, write_json
    from .report.selection import planted_panel
    from .selection import SelectionOptions

    ds = read_dataset(args.data)
    out, docs = _stdout_console(), []
    pops = species_populations(ds, None)
    with threadpool_limits(limits=args.threads), _Progress(args.quiet) as progress:
        for pop in pops:
            pr = planted_audit(pop.dataset, AuditOptions(seed=args.seed), SelectionOptions(seed=args.seed),
                               seed=args.seed, progress=progress)
            if len(pops) > 1:
                out.rule(f"[bold]centre species {pop.species}[/]")
            out.print(planted_panel(pr))
            docs.append({"population": pop.describe(), **pr.to_dict()})
    if args.json:
        write_json(_plain(docs[0] if len(docs) == 1 else {"populations": docs}), args.json)
    return 0


# ---------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diag",
        description="glass-diag: audit softness / energy-barrier analyses of glassy liquids.",
    )
    parser.add_argument("--version", action="version", version=f"glass-diag {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_toy(sub)
    _add_audit(sub)
    _add_demo(sub)
    _add_validate(sub)
    try:
        from adapters import cli as adapters_cli
    except ImportError:  # pragma: no cover - adapters are part of the distribution
        adapters_cli = None
    if adapters_cli is not None and hasattr(adapters_cli, "add_arguments"):
        p = sub.add_parser(
            "features",
            help="turn particle trajectories into a dataset (labels + structure functions)",
            description="Read trajectories (H5MD, GSD, LAMMPS dump, extended XYZ), label rearrangements "
            "with p_hop and compute structure functions into one dataset file.",
        )
        adapters_cli.add_arguments(p)
        p.set_defaults(func=adapters_cli.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diag`` console script; returns the exit code."""
    import signal

    parser = build_parser()
    args = parser.parse_args(argv)

    def _terminate(signum, frame):  # SIGTERM unwinds like Ctrl-C, so temporary outputs are removed
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except GlassDiagError as exc:
        print(f"diag {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"diag {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"diag {args.command}: error: out of memory", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
