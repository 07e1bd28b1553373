"""The ``diag features`` configuration file (JSON).

Every section and key is optional::

    {
      "structure": { ... },          # adapters.structure.StructureConfig.from_dict
                                     # (default: StructureConfig.kob_andersen())
      "dynamics": {                  # adapters.dynamics.DynamicsConfig
        "window": 20,                # t_R in frames (even), or
        "window_time": 10.0,         #   in time units (default 10 when frames carry times)
        "p_c": 0.2,                  # soft and natural R = 1: p_hop > p_c
        "p_hard": 0.05,              # hard: p_hop < p_hard ...
        "persistence": 20,           # ... for the frames [t - P, t + P] (or persistence_time)
        "hard_side": "both",         # or "before": [t - P, t]
        "every": 21,                 # spacing of sampled frames
        "natural_fraction": 1.0,     # subsample of the natural population (seeded)
        "natural_seed": 0
      },
      "input": {
        "species_map": {"1": "A", "2": "B"},   # file species name -> structure species
        "h5md_group": "all",                    # H5MD particle group to read
        "centre_species": ["A"]                 # which particles are centres (default: all)
      }
    }

Command-line options (``--every``, ``--window``, ``--window-time``, ``--persistence``,
``--persistence-time``, ``--p-c``, ``--hard-side``, ``--natural-fraction``, ``--species``)
override the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any

from diag.errors import UsageError

from .dynamics import DynamicsConfig

_SECTIONS = ("structure", "dynamics", "input")
_INPUT_KEYS = ("species_map", "h5md_group", "centre_species")
_MAX_CONFIG_BYTES = 16 * 2**20


@dataclass
class FeaturesConfig:
    """Everything ``diag features`` needs besides the file names.

    Attributes
    ----------
    structure : adapters.structure.StructureConfig or None
        None means ``StructureConfig.kob_andersen()`` (resolved lazily, so that
        reading a config does not import freud).
    dynamics : DynamicsConfig
    species_map : dict of str to str, optional
        File species name (as the reader reports it: "1", "A", ...) to a
        species name of the structure configuration.
    h5md_group : str, optional
        Particle group of H5MD files.
    centre_species : list of str, optional
        Structure species whose particles are centres (samples); neighbours are always
        every species. Default: every species.
    source : str, optional
        The file the configuration came from, for messages.
    """

    structure: Any = None
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    species_map: dict[str, str] | None = None
    h5md_group: str | None = None
    centre_species: list[str] | None = None
    source: str | None = None

    def structure_config(self):
        """The :class:`StructureConfig` to use (default Kob-Andersen)."""
        if self.structure is None:
            from adapters.structure import StructureConfig

            self.structure = StructureConfig.kob_andersen()
        return self.structure

    def with_every(self, every: int | None) -> "FeaturesConfig":
        return self.with_overrides(every=every)

    def with_overrides(self, *, species: list[str] | None = None, **dynamics) -> "FeaturesConfig":
        """A copy with command-line overrides: centre species and dynamics settings (None: keep)."""
        out = self
        if any(v is not None for v in dynamics.values()):
            out = replace(out, dynamics=self.dynamics.replace(**dynamics))
        if species:
            out = replace(out, centre_species=[str(x) for x in species])
        return out

    def input_dict(self) -> dict[str, Any]:
        return {"species_map": self.species_map, "h5md_group": self.h5md_group, "centre_species": self.centre_species}

    def to_dict(self) -> dict[str, Any]:
        return {
            "structure": self.structure_config().to_dict(),
            "dynamics": self.dynamics.to_dict(),
            "input": self.input_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | None = None) -> "FeaturesConfig":
        if not isinstance(d, dict):
            raise UsageError("the configuration must be a JSON object", source)
        extra = sorted(set(d) - set(_SECTIONS))
        if extra:
            raise UsageError(
                f"unknown section(s) {', '.join(extra)} (known: {', '.join(_SECTIONS)})", source
            )
        structure = None
        if d.get("structure") is not None:
            from adapters.structure import StructureConfig

            if not isinstance(d["structure"], dict):
                raise UsageError("the 'structure' section must be a JSON object", source)
            try:
                structure = StructureConfig.from_dict(d["structure"])
            except UsageError as exc:
                raise UsageError(exc.message, source) from None
            except (TypeError, ValueError, KeyError) as exc:
                raise UsageError(f"invalid 'structure' section ({exc})", source) from None
        dyn = DynamicsConfig.from_dict(d.get("dynamics") or {}, source)
        inp = d.get("input") or {}
        if not isinstance(inp, dict):
            raise UsageError("the 'input' section must be a JSON object", source)
        extra = sorted(set(inp) - set(_INPUT_KEYS))
        if extra:
            raise UsageError(f"unknown key(s) in 'input': {', '.join(extra)} (known: {', '.join(_INPUT_KEYS)})", source)
        smap = inp.get("species_map")
        if smap is not None:
            if not isinstance(smap, dict) or not all(isinstance(v, str) for v in smap.values()):
                raise UsageError("input.species_map must map species names to species names (strings)", source)
            smap = {str(k): v for k, v in smap.items()}
        group = inp.get("h5md_group")
        if group is not None and not isinstance(group, str):
            raise UsageError("input.h5md_group must be a string", source)
        centres = inp.get("centre_species")
        if centres is not None:
            if isinstance(centres, str):
                centres = [centres]
            if not isinstance(centres, list) or not centres or not all(isinstance(c, str) for c in centres):
                raise UsageError("input.centre_species must be a list of species names", source)
        return cls(structure=structure, dynamics=dyn, species_map=smap, h5md_group=group,
                   centre_species=centres, source=source)


def load_config(path: str | os.PathLike | None) -> FeaturesConfig:
    """Read a configuration file; ``None`` gives the defaults.

    Raises
    ------
    UsageError
        Missing or unreadable file, invalid JSON, unknown sections or keys,
        invalid values; the message names the file.
    """
    if path is None:
        return FeaturesConfig()
    p = os.fspath(path)
    if os.path.isdir(p):
        raise UsageError("configuration path is a directory, expected a JSON file", p)
    if not os.path.isfile(p):
        what = "is not a regular file" if os.path.exists(p) else "not found"
        raise UsageError(f"configuration file {what}", p)
    if os.path.getsize(p) > _MAX_CONFIG_BYTES:
        raise UsageError(f"configuration file is larger than {_MAX_CONFIG_BYTES // 2**20} MiB; is it the right file?", p)
    try:
        with open(p, "r", encoding="utf-8") as f:
            d = json.load(f)
    except json.JSONDecodeError as exc:
        raise UsageError(f"invalid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", p) from None
    except RecursionError:
        raise UsageError("invalid JSON (nested too deeply)", p) from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read configuration (not UTF-8 text: byte {exc.start})", p) from None
    except OSError as exc:
        raise UsageError(f"cannot read configuration ({exc.strerror or exc})", p) from None
    return FeaturesConfig.from_dict(d, source=p)
