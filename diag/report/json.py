"""JSON rendering of audit results (schema in ``docs/report.md``).

The output is deterministic: keys sorted, no timestamps, so the same inputs and seed
give byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_output, check_output_path
from ..errors import UsageError

REPORT_SCHEMA_VERSION = 1


def _plain(obj: Any) -> Any:
    """Numpy and dataclass values to JSON-able Python; non-finite floats to None."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return _plain(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def audit_to_dict(result) -> dict:
    """The JSON document of an :class:`diag.audit.AuditResult`, as plain Python objects."""
    clf = result.classifier
    opt = result.options
    doc: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "glass_diag_version": __version__,
        "seed": opt.seed,
        "options": asdict(opt),
        "dataset": result.dataset,
        "population": getattr(result, "population", {}),
        "classifier": {
            "C": clf.C,
            "loss": "hinge",
            "n_train_per_class": clf.n_train_per_class,
            "train_temperature": clf.train_temperature,
            "train_temperature_rule": clf.train_temperature_rule,
            "accuracy": clf.accuracy,
            "accuracy_ci": clf.accuracy_ci,
            "accuracy_kind": "balanced accuracy, soft against hard, on held-out groups at the training temperature",
            "n_test": clf.n_test,
            "converged": clf.converged,
            "n_iter": clf.n_iter,
            "objective": clf.objective,
            "tol": clf.tol,
        },
        "softness": {
            "units": result.softness_units,
            "w_norm": clf.w_norm,
            "intercept": clf.intercept,
            "weights": dict(zip(result.feature_names, clf.coef.tolist())),
        },
        "logistic": [
            {
                "temperature": f.temperature,
                "alpha": f.alpha,
                "beta": f.beta,
                "cov": f.cov,
                "n_samples": f.n_samples,
                "n_positive": f.n_positive,
                "n_groups": f.n_groups,
            }
            for f in result.logistic
        ],
        "arrhenius": None,
        "criterion": asdict(result.criterion),
        "truth": None if result.truth is None else asdict(result.truth),
        "warnings": list(result.warnings),
        "curves": result.curves,
    }
    a = result.arrhenius
    if a is not None:
        doc["arrhenius"] = {
            "temperatures": a.temperatures,
            "grid": a.grid_in_regime,
            "grid_all": a.grid,
            "delta_e": a.delta_e,
            "delta_e_ci": a.delta_e_ci,
            "sigma": a.sigma,
            "sigma_ci": a.sigma_ci,
            "r2": a.r2,
            "max_resid": a.max_resid,
            "chi2_p": a.chi2_p,
            "linear": a.linear,
            "linear_r2": a.linear_r2,
            "curvature": a.curvature,
            "linearity_alpha": a.alpha,
            "linearity_test": "chi-square of the weighted line through log P vs 1/T, propagated logistic covariances",
            "e0": a.e0,
            "e0_ci": a.e0_ci,
            "e1": a.e1,
            "e1_ci": a.e1_ci,
            "p_max": a.p_max,
            "r2_min": a.r2_min,
            "resid_tol": a.resid_tol,
            "ci_level": a.ci_level,
            "n_draws": a.n_draws,
        }
    if result.selection is not None:
        sel = result.selection.to_dict()
        doc["selection"] = sel["selection"]
        doc["learning_curve"] = sel["learning_curve"]
        doc["c_sweep"] = sel["c_sweep"]
        doc["recommendations"] = sel["recommendations"]
        doc["selection_notes"] = sel["notes"]
        # the selection's warnings are already merged into result.warnings
    if result.verdict is not None:
        doc["verdict"] = asdict(result.verdict)
    for key, val in result.extras.items():
        doc[key] = val
    return _plain(doc)


def audits_to_dict(results) -> dict:
    """The JSON document of several audits (one per centre species); one audit gives its own document."""
    if len(results) == 1:
        return audit_to_dict(results[0])
    return _plain({
        "schema_version": REPORT_SCHEMA_VERSION,
        "glass_diag_version": __version__,
        "populations": [audit_to_dict(r) for r in results],
    })


def dumps(doc: dict) -> str:
    """Serialise deterministically."""
    return json.dumps(doc, sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_json(doc: dict, path: str | os.PathLike, protect: tuple[str, ...] = ()) -> Path:
    """Write a JSON document atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    doc : dict
    path : path-like
    protect : tuple of str
        Input files that must never be overwritten.
    """
    path = check_output_path(path)
    for p in protect:
        if p and os.path.exists(p) and path.exists() and os.path.samefile(p, path):
            raise UsageError("the JSON output would overwrite an input file", str(path))
    with atomic_output(path) as tmp:
        with open(tmp, "w") as f:
            f.write(dumps(doc))
    return path
